//! The virtual-node lab and the kernel oracle: a record made real.
//!
//! For one [`PreparedRecord`]: a node network namespace; one pod namespace per pod-network
//! pod, attached with cnet-route in the chosen [`LabMode`] at the record's address (host-network
//! pods live in the node namespace, whose loopback carries the node address); TCP and UDP
//! servers on every container port (every probed port when a pod declares none); the record's
//! policies programmed with [`cnet_policy::engine::Engine`]; then every probe as a real
//! connection, in parallel, with a short timeout (a deny is a timeout, not a refusal).
//! Everything is torn down when the lab is dropped (servers stop, namespaces are deleted).
//!
//! Not simulated, reported as skipped with the reason: probes from or to addresses that are
//! not pods of the record (no external hosts), records whose pods span several nodes (no
//! underlay), and SCTP (this kernel has no SCTP sockets, see KERNEL-NOTES.md).

use crate::runner::{Oracle, Outcome, PreparedRecord, ProbeResult};
use cnet_policy::compile::{CompileOptions, Mode};
use cnet_policy::engine::Engine;
use cnet_policy::{EndpointId, Evaluator, Flow, Protocol};
use cnet_route::{BridgeMode, EndpointSpec, IntraNode, Node, TransparentMode};
use cnet_testsupport::NetNs;
use ipnetwork::IpNetwork;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How pods are attached in the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabMode {
    /// cnet-route transparent mode (routed host veths).
    Transparent,
    /// cnet-route bridge mode with br_netfilter on.
    Bridge,
}

/// Name of the bridge in bridge mode.
pub const LAB_BRIDGE: &str = "cnetbr0";

/// Answers probes with real packets through a virtual node.
#[derive(Debug, Clone)]
pub struct KernelOracle {
    /// Routing mode.
    pub mode: LabMode,
    /// How long a connection attempt may take before it counts as dropped.
    pub timeout: Duration,
    /// Probes in flight at once.
    pub parallelism: usize,
}

impl KernelOracle {
    /// An oracle with a 1 s timeout and 64 probes in flight.
    pub fn new(mode: LabMode) -> KernelOracle {
        KernelOracle {
            mode,
            timeout: Duration::from_secs(1),
            parallelism: 64,
        }
    }
}

/// A running virtual node for one record.
pub struct Lab {
    /// The node namespace (host-network pods live here).
    pub node: NetNs,
    /// Pod namespaces by pod index (`None` for host-network pods).
    pub pods: Vec<Option<NetNs>>,
    /// The policy engine programming the node.
    pub engine: Engine,
    stop: Arc<AtomicBool>,
    servers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab")
            .field("node", &self.node.name())
            .field("pods", &self.pods.len())
            .finish()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.servers.drain(..) {
            let _ = h.join();
        }
        // Namespaces go with their guards (pods first, then the node).
        self.pods.clear();
    }
}

/// Why a whole record cannot be built here, or `None`.
pub fn unsupported(rec: &PreparedRecord) -> Option<String> {
    let nodes: BTreeSet<&str> = rec.pods.iter().map(|p| p.node.as_str()).collect();
    (nodes.len() > 1).then(|| {
        format!(
            "pods on {} nodes: the multi-node lab (underlay) is not built",
            nodes.len()
        )
    })
}

pub(crate) fn ns_of<'a>(node: &'a NetNs, pods: &'a [Option<NetNs>], pod: usize) -> &'a NetNs {
    pods.get(pod).and_then(Option::as_ref).unwrap_or(node)
}

fn in_ns<R: Send>(ns: &NetNs, f: impl FnOnce() -> R + Send) -> R {
    ns.in_netns(f)
}

/// The address with the prefix the pod gets in bridge mode, and its gateway.
pub(crate) fn bridge_subnet(a: IpAddr) -> (IpNetwork, IpAddr) {
    match a {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            let (prefix, gw) = if o[0] == 10 && o[1] >= 100 {
                (16, Ipv4Addr::new(o[0], o[1], 0, 1))
            } else {
                (24, Ipv4Addr::new(o[0], o[1], o[2], 1))
            };
            let gw = if gw == v4 {
                Ipv4Addr::new(o[0], o[1], o[2], 254)
            } else {
                gw
            };
            (
                IpNetwork::new(a, prefix).unwrap_or(IpNetwork::from(a)),
                IpAddr::V4(gw),
            )
        }
        IpAddr::V6(v6) => {
            let mut s = v6.segments();
            s[4..].fill(0);
            s[7] = if v6.segments()[7] == 1 { 0xfffe } else { 1 };
            (
                IpNetwork::new(a, 64).unwrap_or(IpNetwork::from(a)),
                IpAddr::V6(s.into()),
            )
        }
    }
}

/// The node namespace of `rec` with its node addresses on `lo` (host-network pods use
/// them), and the node's name.
pub(crate) fn node_for(rec: &PreparedRecord) -> Result<(NetNs, Option<String>), String> {
    let node = NetNs::new("labn");
    let node_name = rec.pods.first().map(|p| p.node.clone());
    let mut node_addrs: BTreeSet<IpAddr> = BTreeSet::new();
    for n in &rec.nodes {
        if node_name.as_deref().is_none_or(|x| x == n.name) {
            node_addrs.insert(n.address);
        }
    }
    for p in rec.pods.iter().filter(|p| p.host_network) {
        node_addrs.insert(p.address);
    }
    for a in &node_addrs {
        let net = IpNetwork::from(*a).to_string();
        if !node.ok(&["ip", "addr", "add", &net, "dev", "lo"]) {
            return Err(format!("node address {net} could not be added"));
        }
    }
    Ok((node, node_name))
}

impl Lab {
    /// Build the node, attach the pods, start servers, program the policies.
    pub fn build(rec: &PreparedRecord, mode: LabMode) -> Result<Lab, String> {
        let (node, node_name) = node_for(rec)?;
        let route_node = Node::open(node.path()).map_err(|e| e.to_string())?;
        let bridge = BridgeMode {
            bridge: LAB_BRIDGE.to_string(),
            br_netfilter: true,
            uplink: None,
        };
        let transparent = TransparentMode::new();
        let attach: &dyn IntraNode = match mode {
            LabMode::Transparent => &transparent,
            LabMode::Bridge => &bridge,
        };
        let mut pods = Vec::new();
        let mut host_ifname: BTreeMap<EndpointId, String> = BTreeMap::new();
        for (i, p) in rec.pods.iter().enumerate() {
            if p.host_network {
                pods.push(None);
                continue;
            }
            let ns = NetNs::new("labp");
            let (net, gw) = match mode {
                LabMode::Transparent => (IpNetwork::from(p.address), None),
                LabMode::Bridge => {
                    let (n, g) = bridge_subnet(p.address);
                    (n, Some(g))
                }
            };
            let mut spec =
                EndpointSpec::new(format!("{}-{i}", node.name()), "eth0", ns.path(), vec![net]);
            spec.gateways = gw.into_iter().collect();
            spec.mtu = Some(1500);
            let a = attach
                .attach(&route_node, &spec)
                .map_err(|e| format!("attach pod {}: {e}", p.id))?;
            host_ifname.insert(p.id.clone(), a.host_ifname);
            pods.push(Some(ns));
        }
        let mut engine = Engine::with_options(CompileOptions {
            mode: match mode {
                LabMode::Transparent => Mode::Transparent,
                LabMode::Bridge => Mode::Bridge,
            },
            table: "cnet".into(),
            node: node_name,
            allow_from_resident_node: true,
        });
        for (ns, labels) in &rec.inventory.namespaces {
            engine.upsert_namespace(ns, labels.clone());
        }
        for n in rec.inventory.nodes.values() {
            engine.upsert_node(n.clone());
        }
        for ep in rec.inventory.endpoints.values() {
            let ifname = host_ifname.get(&ep.id()).cloned();
            engine.upsert_endpoint(ep.clone(), ifname);
        }
        engine.set_policy_set(rec.policy_set.clone());
        let mut lab = Lab::assemble(node, pods, engine);
        let Lab { node, engine, .. } = &mut lab;
        in_ns(node, || engine.sync()).map_err(|e| format!("program policies: {e}"))?;
        lab.start(rec)?;
        Ok(lab)
    }

    /// A lab over an already attached node and pods (no servers yet).
    pub(crate) fn assemble(node: NetNs, pods: Vec<Option<NetNs>>, engine: Engine) -> Lab {
        Lab {
            node,
            pods,
            engine,
            stop: Arc::new(AtomicBool::new(false)),
            servers: Vec::new(),
        }
    }

    /// Start the servers of `rec`'s pods and warm the links up.
    pub(crate) fn start(&mut self, rec: &PreparedRecord) -> Result<(), String> {
        self.start_servers(rec)?;
        self.warm_up(rec);
        Ok(())
    }

    /// The namespace a pod's sockets live in.
    fn ns_of(&self, pod: usize) -> &NetNs {
        ns_of(&self.node, &self.pods, pod)
    }

    /// Ping every pod from the node once (always allowed) so links are up and neighbour
    /// entries resolved before probes start: a first packet lost to a link coming up would
    /// otherwise look like a drop.
    fn warm_up(&self, rec: &PreparedRecord) {
        let children: Vec<_> = rec
            .pods
            .iter()
            .filter(|p| !p.host_network)
            .filter_map(|p| {
                let a = p.address.to_string();
                self.node
                    .command(&["ping", "-c", "1", "-W", "1", "-q", &a])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .ok()
            })
            .collect();
        for mut c in children {
            let _ = c.wait();
        }
    }

    fn start_servers(&mut self, rec: &PreparedRecord) -> Result<(), String> {
        // What each pod listens on.
        let mut want: BTreeMap<usize, BTreeSet<(u16, Protocol)>> = BTreeMap::new();
        for (i, p) in rec.pods.iter().enumerate() {
            let set = want.entry(i).or_default();
            for port in &p.ports {
                set.insert((port.port, port.protocol));
            }
        }
        for pr in &rec.probes {
            if let Some(d) = pr.dst_pod
                && rec.pods[d].ports.is_empty()
            {
                want.entry(d).or_default().insert((pr.port, pr.protocol));
            }
        }
        let mut bound: BTreeSet<(String, SocketAddr, Protocol)> = BTreeSet::new();
        let mut handles = Vec::new();
        for (i, ports) in want {
            let pod = &rec.pods[i];
            let ns = self.ns_of(i);
            let ip: IpAddr = if pod.host_network {
                pod.address
            } else {
                "::".parse().map_err(|_| "::".to_string())?
            };
            for (port, proto) in ports {
                let addr = SocketAddr::new(ip, port);
                if !bound.insert((ns.name().to_string(), addr, proto)) {
                    continue;
                }
                let stop = self.stop.clone();
                let handle = match proto {
                    Protocol::Tcp => {
                        let l = in_ns(ns, || TcpListener::bind(addr))
                            .map_err(|e| format!("pod {}: listen tcp {addr}: {e}", pod.id))?;
                        l.set_nonblocking(true).map_err(|e| e.to_string())?;
                        std::thread::spawn(move || serve_tcp(&l, &stop))
                    }
                    Protocol::Udp => {
                        let s = in_ns(ns, || UdpSocket::bind(addr))
                            .map_err(|e| format!("pod {}: listen udp {addr}: {e}", pod.id))?;
                        s.set_read_timeout(Some(Duration::from_millis(50)))
                            .map_err(|e| e.to_string())?;
                        std::thread::spawn(move || serve_udp(&s, &stop))
                    }
                    Protocol::Sctp => continue,
                };
                handles.push(handle);
            }
        }
        self.servers.extend(handles);
        Ok(())
    }

    /// Run every probe of `rec`, in parallel.
    pub fn probe_all(
        &self,
        rec: &PreparedRecord,
        timeout: Duration,
        parallelism: usize,
    ) -> Vec<Outcome> {
        let (node, pods) = (&self.node, &self.pods[..]);
        let next = AtomicUsize::new(0);
        let results: Vec<std::sync::Mutex<Option<Outcome>>> = rec
            .probes
            .iter()
            .map(|_| std::sync::Mutex::new(None))
            .collect();
        std::thread::scope(|s| {
            for _ in 0..parallelism.clamp(1, rec.probes.len().max(1)) {
                s.spawn(|| {
                    loop {
                        let k = next.fetch_add(1, Ordering::SeqCst);
                        let Some(pr) = rec.probes.get(k) else { break };
                        let _ = pr;
                        let out = probe_one(node, pods, rec, k, timeout);
                        if let Ok(mut slot) = results[k].lock() {
                            *slot = Some(out);
                        }
                    }
                });
            }
        });
        results
            .into_iter()
            .map(|m| {
                m.into_inner()
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| Outcome::Error("probe did not run".into()))
            })
            .collect()
    }
}

fn probe_one(
    node: &NetNs,
    pods: &[Option<NetNs>],
    rec: &PreparedRecord,
    k: usize,
    timeout: Duration,
) -> Outcome {
    {
        let pr = &rec.probes[k];
        let (Some(src), Some(_)) = (pr.src_pod, pr.dst_pod) else {
            return Outcome::Skipped("external hosts are not simulated in the lab".into());
        };
        if pr.protocol == Protocol::Sctp {
            return Outcome::Skipped("no SCTP in this kernel (KERNEL-NOTES.md)".into());
        }
        let ns = ns_of(node, pods, src);
        let dst = SocketAddr::new(pr.dst, pr.port);
        let bind = rec.pods[src].host_network.then_some(pr.src);
        match pr.protocol {
            Protocol::Tcp => in_ns(ns, || tcp_probe(dst, timeout)),
            Protocol::Udp => in_ns(ns, || udp_probe(bind, dst, timeout)),
            Protocol::Sctp => Outcome::Skipped("SCTP".into()),
        }
    }
}

fn serve_tcp(l: &TcpListener, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match l.accept() {
            Ok((mut c, _)) => {
                let _ = c.set_nonblocking(false);
                let _ = c.write_all(b"ok");
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn serve_udp(s: &UdpSocket, stop: &AtomicBool) {
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::SeqCst) {
        if let Ok((_, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(b"ok", from);
        }
    }
}

fn tcp_probe(dst: SocketAddr, timeout: Duration) -> Outcome {
    match TcpStream::connect_timeout(&dst, timeout) {
        Ok(mut c) => {
            // The handshake already proved both directions pass the policy; the reply only
            // needs the server thread to run, which a loaded machine can delay well past the
            // connect timeout. Wait longer for it: a filtered reply is the rare case.
            let _ = c.set_read_timeout(Some(timeout.max(Duration::from_secs(2)) * 5));
            let mut b = [0u8; 2];
            match c.read_exact(&mut b) {
                Ok(()) if &b == b"ok" => Outcome::Connected,
                Ok(()) => Outcome::Error("unexpected reply".into()),
                // Connected, but the server's data never came back: replies are filtered.
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    Outcome::Error("connected but no data came back".into())
                }
                Err(e) => Outcome::Error(format!("read: {e}")),
            }
        }
        Err(e) if e.kind() == ErrorKind::TimedOut || e.kind() == ErrorKind::WouldBlock => {
            Outcome::Dropped
        }
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Outcome::Refused,
        Err(e) => Outcome::Error(format!("connect: {e}")),
    }
}

fn udp_probe(bind: Option<IpAddr>, dst: SocketAddr, timeout: Duration) -> Outcome {
    let local = match (bind, dst) {
        (Some(a), _) => SocketAddr::new(a, 0),
        (None, SocketAddr::V4(_)) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        (None, SocketAddr::V6(_)) => SocketAddr::new("::".parse().unwrap_or(dst.ip()), 0),
    };
    let s = match UdpSocket::bind(local).and_then(|s| s.connect(dst).map(|()| s)) {
        Ok(s) => s,
        Err(e) => return Outcome::Error(format!("udp socket: {e}")),
    };
    let start = Instant::now();
    let step = timeout / 3;
    let mut buf = [0u8; 16];
    while start.elapsed() < timeout {
        if let Err(e) = s.send(b"probe") {
            if e.kind() == ErrorKind::ConnectionRefused {
                return Outcome::Refused;
            }
            return Outcome::Error(format!("udp send: {e}"));
        }
        let _ = s.set_read_timeout(Some(step.max(Duration::from_millis(10))));
        match s.recv(&mut buf) {
            Ok(n) if &buf[..n] == b"ok" => return Outcome::Connected,
            Ok(_) => return Outcome::Error("unexpected udp reply".into()),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => return Outcome::Refused,
            Err(_) => {}
        }
    }
    Outcome::Dropped
}

impl Oracle for KernelOracle {
    fn run(&mut self, rec: &PreparedRecord) -> Result<Vec<ProbeResult>, String> {
        if let Some(skipped) = skip_all(rec) {
            return Ok(skipped);
        }
        let lab = Lab::build(rec, self.mode)?;
        let outcomes = lab.probe_all(rec, self.timeout, self.parallelism);
        Ok(explained(rec, outcomes))
    }
}

/// Whole-record skips: every probe skipped with the reason, or `None` when the record can
/// be built.
pub(crate) fn skip_all(rec: &PreparedRecord) -> Option<Vec<ProbeResult>> {
    let why = unsupported(rec)?;
    Some(
        rec.probes
            .iter()
            .map(|_| ProbeResult {
                outcome: Outcome::Skipped(why.clone()),
                explanation: None,
            })
            .collect(),
    )
}

/// Probe outcomes with the evaluator's reason attached to each.
pub(crate) fn explained(rec: &PreparedRecord, outcomes: Vec<Outcome>) -> Vec<ProbeResult> {
    {
        let eval = Evaluator::new(rec.policy_set.clone(), rec.inventory.clone());
        rec.probes
            .iter()
            .zip(outcomes)
            .map(|(p, outcome)| {
                let d = eval.decide(&Flow {
                    src: p.src,
                    dst: p.dst,
                    protocol: p.protocol,
                    dst_port: p.port,
                });
                ProbeResult {
                    outcome,
                    explanation: Some(format!("evaluator: {d}")),
                }
            })
            .collect()
    }
}

/// Run records with the kernel oracle, several records at once (each in its own virtual
/// node), keeping file order in the report.
pub fn run_records_parallel(
    inputs: &[crate::scenario::RecordInput],
    mode: LabMode,
    opts: &crate::runner::RunOptions,
) -> crate::runner::Report {
    run_parallel_with(inputs, opts, || KernelOracle::new(mode))
}

/// Run records with one oracle per worker (from `make`), several records at once, keeping
/// file order in the report.
pub(crate) fn run_parallel_with<O: Oracle>(
    inputs: &[crate::scenario::RecordInput],
    opts: &crate::runner::RunOptions,
    make: impl Fn() -> O + Sync,
) -> crate::runner::Report {
    let workers = std::thread::available_parallelism()
        .map_or(2, std::num::NonZeroUsize::get)
        .clamp(2, 8);
    let next = AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<crate::runner::RecordReport>>> =
        inputs.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let mut oracle = make();
                loop {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    let Some(input) = inputs.get(k) else { break };
                    let r = crate::runner::run_record(input, &mut oracle, opts);
                    if let Ok(mut slot) = slots[k].lock() {
                        *slot = Some(r);
                    }
                }
            });
        }
    });
    crate::runner::Report {
        records: slots
            .into_iter()
            .filter_map(|m| m.into_inner().ok().flatten())
            .collect(),
    }
}
