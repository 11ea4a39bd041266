//! The `cnet` CNI plugin: addresses (IPAM), routing (cnet-route) and policy in one ADD, with
//! a crash-safe node state per network.
//!
//! # Configuration (`"type": "cnet"`)
//! ```json
//! {
//!   "cniVersion": "1.1.0", "name": "pods", "type": "cnet",
//!   "mode": "transparent",              // or "bridge" (then "bridge": "cnet0")
//!   "mtu": 1500,                        // optional; default: the node uplink's MTU
//!   "ipam": {"type": "cnet-ipam", "ranges": [[{"subnet": "10.1.0.0/24"}]]},
//!   "dns": {"nameservers": ["10.1.0.10"]},
//!   "policy": {"stateDir": "/var/lib/cni/cnet", "labels": "cni", "lockTimeoutMs": 10000,
//!              "table": "cnet"},
//!   "capabilities": {"ips": true, "portMappings": true}
//! }
//! ```
//! `ipam.type` `cnet-ipam` runs in-process; any other IPAM plugin is executed from `CNI_PATH`
//! with ADD, DEL, CHECK, GC and STATUS forwarded. `capabilities` is for the runtime:
//! `runtimeConfig.ips` reaches the IPAM, `portMappings` passes through to a chained `portmap`,
//! `runtimeConfig.mac` (capability `mac`) becomes the pod interface's MAC (otherwise derived
//! from the attachment; a multicast or malformed MAC is error 7), `runtimeConfig.containerPorts`
//! (capability `containerPorts`) gives the pod's container ports ([`ports`]). Routes the IPAM
//! returns besides default routes are installed in the pod (transparent mode: through the
//! link-local gateway; bridge mode: through their gateway, on the pod's subnet) and reported.
//!
//! # Commands
//! - **ADD**: lock the node state → record the endpoint as *pending* (intent) → allocate →
//!   program the endpoint's policy (on a helper thread) while the veth pair is created; the
//!   pair's ends go up only once the policy is in the kernel
//!   ([`cnet_route::IntraNode::attach_gated`]) → wait for the lease's flush → record *ready*. Any failure undoes address, links, routes and policy, and the
//!   record. A stale *pending* record of the same attachment (a killed ADD) is cleaned first.
//!   Labels an operator set with `cnetctl label` for the pod `namespace/name` are kept in the
//!   node state apart from the endpoint record and reapplied here, so a restarted container
//!   (DEL then ADD) keeps them; likewise container ports set with `cnetctl ports`. The pod's
//!   container ports come from `args.cni.ports` / `runtimeConfig.containerPorts`
//!   ([`ports`]); namespace labels from the node state (`cnetctl label namespace`).
//! - **DEL**: detach (idempotent, no netns needed), then release the lease and forget the
//!   endpoint. When the links cannot be removed, the lease and record are kept (so the address
//!   is never handed out while a route to the old pod exists) and the error is returned.
//!   By default (`"teardown": "deferred"`) detach *retires* the host end (down, so no route,
//!   neighbour entry or bridge forwarding is left; renamed out of the way) and a detached
//!   reaper deletes the veth pair after DEL returned; `"teardown": "sync"` deletes it inside
//!   DEL. See [`teardown`] for the design and why it is safe.
//! - **CHECK**: the record, `prevResult` (our interface and addresses, later plugins' additions
//!   ignored), the lease, and the kernel state: links, addresses, routes (the IPAM's routes
//!   the result listed included), neighbours, sysctls, and the pod interface's MAC as
//!   prevResult gives it (so a MAC set by a later `tuning` is expected; MTU changes on the pod
//!   side are tolerated).
//! - **GC**: every recorded attachment of this network that is not in
//!   `cni.dev/valid-attachments` is detached and forgotten; the IPAM collects leases likewise;
//!   every retired veth pair of the node (a deferred teardown whose reaper never ran) is
//!   deleted.
//! - **STATUS**: 50 when the pool is exhausted or the node state is unusable.
//!
//! # Error codes
//! The spec's codes (3 netns missing, 4 env, 5 I/O, 6 decode, 7 config, 11 state lock busy,
//! 50 not available), the IPAM's (100, 101, 102), and [`CODE_LINK_CONFLICT`],
//! [`CODE_CHECK_FAILED`], [`CODE_NOT_ATTACHED`], [`state::CODE_STATE_CORRUPT`],
//! [`CODE_POLICY`], [`policy::CODE_BAD_POLICY`]; a bug (a panic) is
//! [`crate::CODE_INTERNAL`] (199).

pub mod conf;
pub mod helper;
pub mod identity;
pub mod ipam_backend;
pub mod policy;
pub mod ports;
pub mod state;
pub mod teardown;
pub mod trace;

use crate::config::GcAttachment;
use crate::error::{CniError, ErrorCode};
use crate::plugin::{Plugin, Request};
use crate::result::{CniResult, Interface, IpConfig, Route};
use cnet_route::{BridgeMode, EndpointSpec, IntraNode, Node, TransparentMode};
use conf::{CnetConf, Mode};
use identity::{Identity, KNOWN_CNI_ARGS};
use ipam_backend::Ipam;
use state::{EndpointRecord, NodeState, Phase, StateData, StateGuard};

/// A host interface with the attachment's name exists and is not this attachment's, or the
/// pod already has an interface with `CNI_IFNAME`.
pub const CODE_LINK_CONFLICT: u32 = 103;
/// CHECK found the attachment different from what ADD created.
pub const CODE_CHECK_FAILED: u32 = 110;
/// CHECK (or a second ADD) about an attachment the node state does not know (or knows
/// as complete).
pub const CODE_NOT_ATTACHED: u32 = 111;
/// Programming the endpoint's policy failed.
pub const CODE_POLICY: u32 = 112;

/// What programs policy for the node state after each change (under the state lock).
pub trait PolicySync: Send {
    /// Make the kernel match `state` (endpoints and policies), in one transaction.
    fn sync(&mut self, conf: &CnetConf, state: &StateData) -> Result<(), CniError>;

    /// Start preparing the next sync from the node state directory (e.g. on a helper
    /// thread); may be called before the lock is taken (the sync checks what was prepared
    /// against the directory under the lock). Default: nothing.
    fn prepare(&mut self, _conf: &CnetConf) {}

    /// Begin a sync of `state` ahead of [`PolicySync::start_sync_endpoint`]: `state` is what
    /// will be synced except the record of the attachment being added, which has no
    /// addresses yet. Work that does not need that record (moving the programmed state to
    /// every other input) may start now, e.g. on a helper thread. Default: nothing.
    fn begin_sync(&mut self, _conf: &CnetConf, _state: &StateData) {}

    /// [`PolicySync::start_sync`] of a `state` that differs from the one given to
    /// [`PolicySync::begin_sync`] only in the record of `(container_id, ifname)`. Default:
    /// `start_sync`.
    fn start_sync_endpoint(
        &mut self,
        conf: &CnetConf,
        state: &StateData,
        _container_id: &str,
        _ifname: &str,
    ) -> Result<(), CniError> {
        self.start_sync(conf, state)
    }

    /// Start [`PolicySync::sync`] (e.g. on a helper thread); [`PolicySync::wait_programmed`]
    /// returns its outcome once the kernel is programmed. Default: sync here.
    fn start_sync(&mut self, conf: &CnetConf, state: &StateData) -> Result<(), CniError> {
        self.sync(conf, state)
    }

    /// Wait for the sync [`PolicySync::start_sync`] started: `Ok` once the kernel holds it.
    /// Default: nothing to wait for.
    fn wait_programmed(&mut self) -> Result<(), CniError> {
        Ok(())
    }

    /// Wait for what the last sync left running (e.g. writing its record); call before the
    /// node state lock is released. Default: nothing.
    fn settle(&mut self) -> Result<(), CniError> {
        Ok(())
    }

    /// Release what the last sync kept (e.g. its nftables socket). Default: nothing.
    fn release(&mut self) {}
}

/// No policy programming (policy disabled).
#[derive(Debug, Default)]
pub struct NoPolicy;

impl PolicySync for NoPolicy {
    fn sync(&mut self, _: &CnetConf, _: &StateData) -> Result<(), CniError> {
        Ok(())
    }
}

/// The `cnet` plugin.
pub struct CnetPlugin {
    policy: Box<dyn PolicySync>,
    trace: trace::Trace,
    reaper: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for CnetPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CnetPlugin").finish_non_exhaustive()
    }
}

impl Default for CnetPlugin {
    /// The plugin with nftables policy ([`policy::EngineSync`]).
    fn default() -> Self {
        CnetPlugin::new(Box::new(policy::EngineSync::default()))
    }
}

/// Map a cnet-route error to a CNI error.
pub fn route_error(e: &cnet_route::Error) -> CniError {
    use cnet_route::Error as E;
    let code = match e {
        E::InvalidSpec { .. } => ErrorCode::InvalidNetworkConfig,
        E::InterfaceExists { .. } | E::NotOwned { .. } => ErrorCode::Other(CODE_LINK_CONFLICT),
        _ => ErrorCode::IoFailure,
    };
    CniError::new(code, format!("cnet: {e}"))
}

fn route_errors(e: &cnet_route::Errors) -> CniError {
    match e.0.as_slice() {
        [one] => route_error(one),
        _ => CniError::io(format!("cnet: {e}")),
    }
}

fn intra(conf: &CnetConf) -> Box<dyn IntraNode> {
    match &conf.mode {
        Mode::Transparent => Box::new(TransparentMode::new()),
        Mode::Bridge { bridge } => {
            let mut m = BridgeMode::new(bridge.clone());
            // Policy in bridge mode sees bridged traffic through the inet hooks.
            m.br_netfilter = conf.policy.enabled;
            Box::new(m)
        }
    }
}

/// `runtimeConfig.mac` (the `mac` capability) as the pod interface's MAC; code 7 when it is
/// not a unicast MAC.
fn requested_mac(req: &Request) -> Result<Option<cnet_route::MacAddr>, CniError> {
    let Some(text) = req
        .config
        .runtime_config
        .as_ref()
        .and_then(|r| r.mac.as_ref())
    else {
        return Ok(None);
    };
    let mac: cnet_route::MacAddr = text
        .parse()
        .map_err(|e| CniError::invalid_config(format!("runtimeConfig.mac: {e}")))?;
    if mac.0[0] & 0x01 != 0 || mac.0 == [0; 6] {
        return Err(CniError::invalid_config(format!(
            "runtimeConfig.mac: {text:?} is not a unicast MAC"
        )));
    }
    Ok(Some(mac))
}

/// The IPAM's routes other than default routes, for the families the pod has addresses in.
fn ipam_routes(ipam: &CniResult) -> Vec<cnet_route::PodRoute> {
    ipam.routes
        .iter()
        .filter(|r| r.dst.prefix() != 0)
        .filter(|r| {
            ipam.ips
                .iter()
                .any(|i| i.address.is_ipv4() == r.dst.is_ipv4())
        })
        .map(|r| cnet_route::PodRoute {
            destination: r.dst,
            gateway: r.gw.filter(|g| g.is_ipv4() == r.dst.is_ipv4()),
            mtu: r.mtu,
            advmss: r.advmss,
        })
        .collect()
}

/// The node: the plugin's namespace. The plugin's main thread is its own, so cnet-route
/// works on it directly (no worker thread per operation; see
/// [`Node::on_calling_thread`]).
fn node() -> Result<Node, CniError> {
    Node::current()
        .map(Node::on_calling_thread)
        .map_err(|e| route_error(&e))
}

/// The flush of an in-process IPAM lease (or release), running on its own thread (an `fdatasync` waits
/// for the disk, not the CPU, so the ADD's policy and link work overlap it). Dropped without
/// [`LeaseFlush::finish`] (an error path), it still waits for the flush to end.
struct LeaseFlush(Option<helper::Helper<Result<(), cnet_ipam::IpamError>>>);

impl LeaseFlush {
    /// Start flushing `durable` (nothing to do for `None`). When no thread can be started the
    /// flush runs here, before this returns.
    fn start(durable: Option<cnet_ipam::PendingSync>) -> Result<LeaseFlush, CniError> {
        let Some(sync) = durable else {
            return Ok(LeaseFlush(None));
        };
        match helper::spawn_with("lease-flush", sync, cnet_ipam::PendingSync::wait) {
            Ok(h) => Ok(LeaseFlush(Some(h))),
            Err(sync) => {
                sync.wait().map_err(|e| crate::ipam::ipam_error(&e))?;
                Ok(LeaseFlush(None))
            }
        }
    }

    /// Wait for the flush: `Ok` once the lease is durable.
    fn finish(mut self) -> Result<(), CniError> {
        match self.0.take().map(helper::Helper::join) {
            None => Ok(()),
            Some(Some(r)) => r.map_err(|e| crate::ipam::ipam_error(&e)),
            Some(None) => Err(CniError::io("cnet: the IPAM lease flush thread panicked")),
        }
    }
}

impl Drop for LeaseFlush {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

/// The spec for an attachment (addresses empty when only the owner matters).
fn spec_of(req: &Request, conf: &CnetConf, ipam: &CniResult) -> EndpointSpec {
    let netns = req.env.netns.clone().unwrap_or_default();
    let mut spec = EndpointSpec::new(
        req.env.container_id.clone(),
        req.env.ifname.clone(),
        netns,
        ipam.ips.iter().map(|i| i.address).collect(),
    );
    spec.mtu = conf.mtu;
    if matches!(conf.mode, Mode::Bridge { .. }) {
        for ip in &ipam.ips {
            if let Some(g) = ip.gateway
                && !spec.gateways.iter().any(|x| x.is_ipv4() == g.is_ipv4())
            {
                spec.gateways.push(g);
            }
        }
    }
    spec
}

impl CnetPlugin {
    /// The plugin with a policy programmer.
    pub fn new(policy: Box<dyn PolicySync>) -> CnetPlugin {
        CnetPlugin {
            policy,
            trace: trace::Trace::off(),
            reaper: None,
        }
    }

    /// End of the invocation (after the result is written): release the policy programmer's
    /// resources and print the trace's last phases and total (`CNET_TRACE=1`).
    pub fn finish(&mut self) {
        self.trace.phase("output");
        self.policy.release();
        self.trace.phase("release");
        self.trace = trace::Trace::off();
    }

    /// Let deferred teardowns ([`teardown`]) start `exe reap <container_id> <ifname>` as a
    /// detached reaper (the `cnet` binary passes itself, `/proc/self/exe`). Without one, DEL
    /// deletes the retired veth pair itself before it returns.
    pub fn with_reaper(mut self, exe: impl Into<std::path::PathBuf>) -> CnetPlugin {
        self.reaper = Some(exe.into());
        self
    }

    /// Delete a retired pair: hand it to the reaper, or do it here (no reaper configured, or
    /// it could not be started).
    fn reap(&self, req: &Request) {
        let (cid, ifname) = req.owner();
        if let Some(exe) = &self.reaper {
            if matches!(teardown::fork_reaper(cid, ifname), Ok(true)) {
                return;
            }
            if teardown::spawn_reaper(exe, cid, ifname).is_ok() {
                return;
            }
        }
        // Best effort: a retired pair left behind is deleted by the next ADD that needs its
        // name, a repeated DEL, or GC.
        if let Ok(node) = node() {
            let _ = cnet_route::reap(&node, cid, ifname);
        }
    }

    fn conf(req: &Request) -> Result<CnetConf, CniError> {
        CnetConf::from_request(&req.config, &req.stdin)
    }

    fn lock(conf: &CnetConf) -> Result<StateGuard, CniError> {
        NodeState::new(&conf.policy.state_dir, conf.policy.lock_timeout).lock()
    }

    /// Sync policy and wait for all of it (its record too).
    fn sync(&mut self, conf: &CnetConf, data: &StateData) -> Result<(), CniError> {
        self.sync_unsettled(conf, data)?;
        self.policy.settle()
    }

    /// Sync policy; what it leaves running is waited for by [`PolicySync::settle`].
    fn sync_unsettled(&mut self, conf: &CnetConf, data: &StateData) -> Result<(), CniError> {
        if conf.policy.enabled {
            self.policy.sync(conf, data)
        } else {
            Ok(())
        }
    }

    /// Undo a partial or stale attachment: links, lease, record. Best effort; first error.
    fn teardown(
        &mut self,
        req: &Request,
        conf: &CnetConf,
        guard: &mut StateGuard,
    ) -> Result<(), CniError> {
        let spec = spec_of(req, conf, &CniResult::default());
        intra(conf)
            .detach(&node()?, &spec)
            .map_err(|e| route_errors(&e))?;
        // The links are gone: the record goes whatever the IPAM says (a lease it still holds
        // is found by DEL and GC through the owner, which the IPAM keys it by).
        let released = Ipam::new(&conf.ipam).del(req);
        guard
            .data
            .remove_endpoint(&req.env.container_id, &req.env.ifname);
        let synced = self.sync(conf, &guard.data);
        guard.commit_endpoint(&req.env.container_id, &req.env.ifname)?;
        released.and(synced)
    }

    fn add_locked(
        &mut self,
        req: &Request,
        conf: &CnetConf,
        id: Identity,
        guard: &mut StateGuard,
    ) -> Result<CniResult, CniError> {
        let (cid, ifname) = req.owner();
        match guard.data.endpoint(cid, ifname).map(|r| r.phase) {
            Some(Phase::Ready) => {
                return Err(CniError::new(
                    ErrorCode::Other(cnet_ipam::CODE_DUPLICATE_ALLOCATION),
                    format!("cnet: container {cid:?} interface {ifname:?} is already attached"),
                )
                .with_details("DEL it before adding it again"));
            }
            Some(Phase::Pending) => self.teardown(req, conf, guard)?,
            None => {}
        }
        // Intent first: from here on DEL and GC of this network know the attachment.
        guard.data.mode = conf.mode.name().to_string();
        guard.data.table = conf.policy.table.clone();
        guard.data.node.clone_from(&conf.policy.node_name);
        // Operator labels (`cnetctl label`) outlive the record (DEL then ADD on restart).
        let mut labels = id.labels;
        let mut labels_known = id.labels_known;
        let mut ports = id.ports;
        if let Some(o) = guard.data.pod_label_override(&id.namespace, &id.name) {
            o.apply(&mut labels);
            labels_known |= !o.set.is_empty() || !o.removed.is_empty();
            if let Some(p) = &o.ports {
                ports.clone_from(p);
            }
        }
        guard.data.upsert_endpoint(EndpointRecord {
            container_id: cid.to_string(),
            ifname: ifname.to_string(),
            netns: req
                .env
                .netns
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            host_ifname: cnet_route::host_ifname(cid, ifname),
            addresses: Vec::new(),
            namespace: id.namespace,
            name: id.name,
            labels,
            labels_known,
            mode: conf.mode.name().to_string(),
            phase: Phase::Pending,
            ports,
        });
        // Volatile (no fsync): enough for `kill -9` (see `state`); after a power loss the
        // attachment's links are gone and its lease is found by DEL/GC through the owner. The
        // ADD's only fsync is the IPAM's lease.
        guard.commit_endpoint(cid, ifname)?;
        self.trace.phase("commit-pending");
        match self.attach(req, conf, guard) {
            Ok(r) => Ok(r),
            Err(e) => {
                // Undo everything this ADD did; the original error is what the runtime sees.
                let _ = self.teardown(req, conf, guard);
                Err(e)
            }
        }
    }

    fn attach(
        &mut self,
        req: &Request,
        conf: &CnetConf,
        guard: &mut StateGuard,
    ) -> Result<CniResult, CniError> {
        let (cid, ifname) = req.owner();
        // Everything the endpoint's policy needs but its addresses is staged (on a helper
        // thread) while they are allocated.
        if conf.policy.enabled {
            self.policy.begin_sync(conf, &guard.data);
        }
        self.trace.phase("policy-begin");
        // The lease is written now and flushed on a second thread while policy and links are
        // set up; joined (below) before the attachment is recorded ready and reported.
        let (ipam, durable) = Ipam::new(&conf.ipam).add_deferred(req)?;
        let flush = LeaseFlush::start(durable)?;
        self.trace.phase("ipam");
        if ipam.ips.is_empty() {
            return Err(CniError::invalid_config(
                "cnet: IPAM returned no address for the pod",
            ));
        }
        let mut spec = spec_of(req, conf, &ipam);
        spec.mac = requested_mac(req)?;
        spec.routes = ipam_routes(&ipam);
        let mode = intra(conf);
        let plan = mode
            .plan(&spec, conf.mtu.unwrap_or(cnet_route::FALLBACK_MTU))
            .map_err(|e| route_error(&e))?;
        if let Some(rec) = guard.data.endpoint_mut(cid, ifname) {
            rec.addresses = plan.addresses.iter().map(|a| a.address).collect();
        }
        // Policy before traffic: the endpoint's rules are programmed (on a helper thread)
        // while its links are created, and the host end of the pair goes up (the pair carries
        // traffic) only once they are (the attach's gate). The record of what was programmed
        // is written meanwhile; settled below.
        let policy_error = |e: CniError| {
            CniError::new(ErrorCode::Other(CODE_POLICY), e.msg).with_details(e.details)
        };
        if conf.policy.enabled {
            self.policy
                .start_sync_endpoint(conf, &guard.data, cid, ifname)
                .map_err(policy_error)?;
        }
        self.trace.phase("policy");
        let mut refused: Option<CniError> = None;
        let mut gate_wait = std::time::Duration::ZERO;
        let policy = &mut self.policy;
        let mut gate = || -> Result<(), String> {
            let t = std::time::Instant::now();
            let programmed = policy.wait_programmed();
            gate_wait = t.elapsed();
            programmed.map_err(|e| {
                let reason = e.msg.clone();
                refused = Some(e);
                reason
            })
        };
        let attached = mode.attach_gated(&node()?, &spec, &mut gate);
        self.trace.part("attach-gate-wait", gate_wait);
        let att = match attached {
            Ok(a) => a,
            Err(e) => {
                return Err(match refused {
                    Some(p) => policy_error(p),
                    None => route_error(&e),
                });
            }
        };
        self.trace.phase("attach");
        // The lease is durable before anything reports it (an error here is undone by the
        // caller like any other: the lease is released, the links removed).
        let t = std::time::Instant::now();
        flush.finish()?;
        self.trace.part("settle-flush-wait", t.elapsed());
        self.policy.settle()?;
        self.trace.phase("settle");
        if let Some(rec) = guard.data.endpoint_mut(cid, ifname) {
            rec.addresses = att.addresses.clone();
            rec.phase = Phase::Ready;
        }
        // Volatile too: a *ready* record describes kernel state (links, routes, nftables)
        // that a power loss erases with it; the lease is durable in the IPAM and found by
        // DEL/GC through the owner. `kill -9` cannot tear it (see `state`).
        guard.commit_endpoint(cid, ifname)?;
        self.trace.phase("commit-ready");
        let sandbox = req
            .env
            .netns
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let gw = |v4: bool| att.gateways.iter().copied().find(|g| g.is_ipv4() == v4);
        Ok(CniResult {
            interfaces: vec![
                Interface {
                    name: att.host_ifname.clone(),
                    mac: att.host_mac.to_string(),
                    ..Interface::default()
                },
                Interface {
                    name: att.pod_ifname.clone(),
                    mac: att.pod_mac.to_string(),
                    mtu: Some(att.mtu),
                    sandbox,
                    ..Interface::default()
                },
            ],
            ips: att
                .addresses
                .iter()
                .map(|a| IpConfig {
                    interface: Some(1),
                    address: *a,
                    gateway: gw(a.is_ipv4()),
                })
                .collect(),
            routes: att
                .plan
                .routes_on(cnet_route::Side::Pod)
                .filter(|r| !r.scope_link)
                .map(|r| Route {
                    mtu: r.mtu,
                    advmss: r.advmss,
                    ..Route::new(r.destination, r.gateway)
                })
                .collect(),
            dns: conf.dns.clone().unwrap_or(ipam.dns),
        })
    }

    /// DEL under the lock: release the lease, forget the endpoint, sync policy, commit.
    fn del_locked(&mut self, req: &Request, conf: &CnetConf) -> Result<(), CniError> {
        let conf = conf.clone();
        let mut guard = Self::lock(&conf)?;
        let known = guard
            .data
            .endpoint(&req.env.container_id, &req.env.ifname)
            .is_some();
        if conf.policy.enabled && known {
            // Read and rebuild the programmed policy state while the lease is released.
            self.policy.prepare(&conf);
        }
        self.trace.phase("lock");
        let result = self.del_records(req, &conf, &mut guard);
        // Nothing runs on after the lock is released.
        let _ = self.policy.settle();
        drop(guard);
        result
    }

    /// DEL's work under the lock.
    fn del_records(
        &mut self,
        req: &Request,
        conf: &CnetConf,
        guard: &mut StateGuard,
    ) -> Result<(), CniError> {
        // The release record is flushed on a second thread while policy is synced and the
        // record committed; joined before DEL reports.
        let flush = Ipam::new(&conf.ipam)
            .del_deferred(req)
            .and_then(LeaseFlush::start);
        self.trace.phase("ipam");
        let removed = guard
            .data
            .remove_endpoint(&req.env.container_id, &req.env.ifname);
        if removed.is_some() {
            let synced = self.sync(conf, &guard.data);
            self.trace.phase("policy");
            // Volatile: a power loss that undoes it leaves a record of links that died with
            // the node; DEL again or GC removes it.
            guard.commit_endpoint(&req.env.container_id, &req.env.ifname)?;
            self.trace.phase("commit");
            synced?;
        }
        let released = flush.and_then(LeaseFlush::finish);
        self.trace.phase("ipam-sync");
        released
    }

    /// GC of the recorded attachments (links, records, leases, policy).
    fn gc_records(&mut self, req: &Request, valid: &[GcAttachment]) -> Result<(), CniError> {
        let conf = Self::conf(req)?;
        let mut guard = Self::lock(&conf)?;
        let node = node()?;
        let mode = intra(&conf);
        let mut keep: Vec<GcAttachment> = valid.to_vec();
        let mut first_error = None;
        let stale: Vec<EndpointRecord> = guard
            .data
            .endpoints
            .iter()
            .filter(|r| !valid.iter().any(|v| r.is(&v.container_id, &v.ifname)))
            .cloned()
            .collect();
        for r in &stale {
            let spec = EndpointSpec::new(r.container_id.clone(), r.ifname.clone(), "", Vec::new());
            match mode.detach(&node, &spec) {
                Ok(()) => {
                    guard.data.remove_endpoint(&r.container_id, &r.ifname);
                }
                Err(e) => {
                    keep.push(GcAttachment {
                        container_id: r.container_id.clone(),
                        ifname: r.ifname.clone(),
                    });
                    first_error.get_or_insert(route_errors(&e));
                }
            }
        }
        let ipam = Ipam::new(&conf.ipam).gc(req, &keep);
        let synced = self.sync(&conf, &guard.data);
        guard.commit_volatile()?;
        if let Some(e) = first_error {
            return Err(e);
        }
        ipam?;
        synced
    }
}

fn check_netns(req: &Request) -> Result<(), CniError> {
    if let Some(ns) = &req.env.netns
        && !ns.exists()
    {
        return Err(crate::env::unknown_container(ns));
    }
    Ok(())
}

impl Plugin for CnetPlugin {
    fn add(&mut self, req: &Request) -> Result<CniResult, CniError> {
        self.trace = trace::Trace::new("ADD");
        req.env.args.check_known(&KNOWN_CNI_ARGS)?;
        let conf = Self::conf(req)?;
        let id = Identity::from_request(&req.env, &req.config, conf.policy.labels)?;
        requested_mac(req)?;
        check_netns(req)?;
        self.trace.phase("parse");
        if conf.policy.enabled {
            // Read and rebuild the programmed policy state while the lock is taken, the
            // endpoint recorded and its address allocated (checked against the file under
            // the lock before it is used).
            self.policy.prepare(&conf);
        }
        let guard = Self::lock(&conf);
        self.trace.phase("lock");
        let mut guard = match guard {
            Ok(g) => g,
            Err(e) => {
                let _ = self.policy.settle();
                return Err(e);
            }
        };
        let result = self.add_locked(req, &conf, id, &mut guard);
        // Nothing runs on after the lock is released (on success this already happened).
        let _ = self.policy.settle();
        drop(guard);
        result
    }

    fn del(&mut self, req: &Request) -> Result<(), CniError> {
        self.trace = trace::Trace::new("DEL");
        let conf = Self::conf(req)?;
        let mode = teardown::Teardown::from_config(&req.config)?;
        self.trace.phase("parse");
        // Links first, outside the lock: the lease is released only once no route can lead to
        // the old pod. Deferred (default): the host end goes down and out of the way now (no
        // route, neighbour entry or bridge forwarding is left), and the kernel's slow
        // unregister of the pair happens after the state is committed, in a reaper (see
        // `teardown`).
        let spec = spec_of(req, &conf, &CniResult::default());
        let retired = match mode {
            teardown::Teardown::Sync => {
                intra(&conf)
                    .detach(&node()?, &spec)
                    .map_err(|e| route_errors(&e))?;
                self.trace.phase("detach");
                false
            }
            teardown::Teardown::Deferred => {
                let r = cnet_route::retire(&node()?, &spec).map_err(|e| route_errors(&e))?;
                self.trace.phase("retire");
                r.is_some()
            }
        };
        let result = self.del_locked(req, &conf);
        if retired {
            // After the policy sync: the reaper inherits the nftables socket (see `teardown`).
            self.reap(req);
            self.trace.phase("reaper");
        }
        result
    }
    fn check(&mut self, req: &Request) -> Result<(), CniError> {
        let conf = Self::conf(req)?;
        check_netns(req)?;
        let (cid, ifname) = req.owner();
        let Some(prev) = &req.config.prev_result else {
            return Err(CniError::invalid_config(
                "cnet: CHECK: required prevResult missing",
            ));
        };
        let prev = CniResult::parse(prev, req.version)?;
        let data = NodeState::new(&conf.policy.state_dir, conf.policy.lock_timeout).read()?;
        let not_attached = |why: String| {
            CniError::new(
                ErrorCode::Other(CODE_NOT_ATTACHED),
                format!("cnet: CHECK: {why}"),
            )
        };
        let rec = data.endpoint(cid, ifname).ok_or_else(|| {
            not_attached(format!(
                "container {cid:?} interface {ifname:?} is not attached"
            ))
        })?;
        if rec.phase != Phase::Ready {
            return Err(not_attached(format!(
                "container {cid:?} interface {ifname:?}: ADD did not complete"
            )));
        }
        let failed = |why: String| {
            CniError::new(
                ErrorCode::Other(CODE_CHECK_FAILED),
                format!("cnet: CHECK: {why}"),
            )
        };
        let sandbox = req.env.netns.as_ref().map(|p| p.display().to_string());
        let idx = prev
            .interfaces
            .iter()
            .position(|i| i.name == ifname && Some(&i.sandbox) == sandbox.as_ref())
            .ok_or_else(|| {
                failed(format!(
                    "prevResult has no interface {ifname:?} in the sandbox"
                ))
            })?;
        for a in &rec.addresses {
            let listed = prev
                .ips
                .iter()
                .any(|i| i.address.ip() == a.ip() && i.interface.is_none_or(|x| x == idx));
            if !listed {
                return Err(failed(format!("address {a} is not in prevResult")));
            }
        }
        Ipam::new(&conf.ipam).check(req)?;
        if conf.policy.enabled {
            policy::check_programmed(&conf.policy.state_dir, rec)
                .map_err(|why| failed(format!("policy: {why}")))?;
        }
        let lease = CniResult {
            ips: prev
                .ips
                .iter()
                .filter(|i| rec.addresses.iter().any(|a| a.ip() == i.address.ip()))
                .cloned()
                .collect(),
            ..CniResult::default()
        };
        let mut spec = spec_of(req, &conf, &lease);
        // The addresses as configured (transparent: /32 and /128; bridge: the subnet's).
        spec.addresses = rec.addresses.clone();
        // The pod interface's MAC as prevResult says (a later plugin such as `tuning` may
        // have changed it and says so there), else as asked for at ADD, else derived.
        let prev_mac = prev.interfaces[idx].mac.as_str();
        spec.mac = if prev_mac.is_empty() {
            requested_mac(req)?
        } else {
            Some(prev_mac.parse().map_err(|e| {
                failed(format!(
                    "prevResult interface {ifname:?}: mac {prev_mac:?}: {e}"
                ))
            })?)
        };
        // The routes besides the default ones that the result listed (the IPAM's).
        spec.routes = ipam_routes(&prev);
        let diffs = intra(&conf)
            .check(&node()?, &spec)
            .map_err(|e| route_error(&e))?;
        let diffs: Vec<String> = diffs
            .into_iter()
            .filter(|d| {
                !matches!(
                    d,
                    cnet_route::Difference::MtuMismatch {
                        side: cnet_route::Side::Pod,
                        ..
                    }
                )
            })
            .map(|d| d.to_string())
            .collect();
        if !diffs.is_empty() {
            return Err(failed(diffs.join("; ")));
        }
        Ok(())
    }

    fn gc(&mut self, req: &Request, valid: &[GcAttachment]) -> Result<(), CniError> {
        let result = self.gc_records(req, valid);
        // Retired pairs (deferred teardowns whose reaper did not run) are never valid.
        let reaped = node().and_then(|n| {
            cnet_route::reap_retired(&n)
                .map(|_| ())
                .map_err(|e| route_errors(&e))
        });
        result.and(reaped)
    }
    fn status(&mut self, req: &Request) -> Result<(), CniError> {
        let conf = Self::conf(req)?;
        let unusable = |e: CniError| {
            CniError::new(ErrorCode::NotAvailable, "cnet: node state is unusable").with_details(
                format!(
                    "{}: {} {}",
                    conf.policy.state_dir.display(),
                    e.msg,
                    e.details
                ),
            )
        };
        let state = NodeState::new(&conf.policy.state_dir, conf.policy.lock_timeout);
        std::fs::create_dir_all(state.dir()).map_err(|e| unusable(CniError::io(e.to_string())))?;
        state.read().map_err(unusable)?;
        Ipam::new(&conf.ipam).status(req)
    }
}
