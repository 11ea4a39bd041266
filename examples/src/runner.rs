//! The conformance runner: turns scenario records into a concrete virtual cluster
//! (addresses, endpoints, policies), asks an [`Oracle`] for each probe's outcome, and reports
//! as `shared/conformance/README.md` asks. Nothing here looks at a record's id or name except
//! to print it.

use crate::scenario::{PodInput, ProbeInput, Record, RecordInput};
use cnet_policy::admin::{self, AdminPolicyObject};
use cnet_policy::api::NetworkPolicy;
use cnet_policy::calico::CalicoObjects;
use cnet_policy::endpoint::{Endpoint, EndpointId, Inventory, NamedPort, Node};
use cnet_policy::parse::{ApiObject, objects_from_value};
use cnet_policy::validate::{network_of, validation_errors};
use cnet_policy::{Evaluator, Flow, PolicySet, Protocol, Verdict};
use ipnetwork::IpNetwork;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

/// How a record is prepared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Run records flagged `apiInvalid` instead of skipping them (policies the API would reject
    /// are then not applied, as the API server would refuse them).
    pub include_api_invalid: bool,
}

/// What a record asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// Whole connections (`cluster-probe-matrix`, `cluster-probe-list`): a probe succeeds when
    /// the connection is established; a deny must be a timeout.
    Connections,
    /// Only the first packet of a flow (`packet-verdict`).
    PacketVerdict,
}

/// A node of the virtual cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedNode {
    /// Name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The node's address.
    pub address: IpAddr,
}

/// A listening port of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedPort {
    /// Port number.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// Name, if named.
    pub name: Option<String>,
}

/// A pod with its assigned address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedPod {
    /// Namespace and name.
    pub id: EndpointId,
    /// Service account name (`None`: the namespace's `default`).
    pub service_account: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Its address (the node's for host-network pods, unless fixed).
    pub address: IpAddr,
    /// Shares the node's netns.
    pub host_network: bool,
    /// Node name.
    pub node: String,
    /// Ports it listens on; empty = every port a probe targets.
    pub ports: Vec<PreparedPort>,
}

impl PreparedPod {
    /// Whether the pod accepts connections on `port`/`protocol`.
    pub fn listens_on(&self, port: u16, protocol: Protocol) -> bool {
        self.ports.is_empty()
            || self
                .ports
                .iter()
                .any(|p| p.port == port && p.protocol == protocol)
    }
}

/// A probe with concrete addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedProbe {
    /// As written (`ns/name` or `ip:A`).
    pub from: String,
    /// As written.
    pub to: String,
    /// Index into [`PreparedRecord::pods`] of the source pod, if it is one.
    pub src_pod: Option<usize>,
    /// Index of the destination pod, if it is one.
    pub dst_pod: Option<usize>,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Fixed source port, if given.
    pub src_port: Option<u16>,
    /// Destination port.
    pub port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// Expected: connects (true) or times out (false).
    pub expect: bool,
}

/// A record made concrete: ready for an oracle.
#[derive(Debug, Clone)]
pub struct PreparedRecord {
    /// Record id (for printing).
    pub id: String,
    /// What is asked.
    pub kind: RecordKind,
    /// Nodes, sorted by name.
    pub nodes: Vec<PreparedNode>,
    /// Pods in record order.
    pub pods: Vec<PreparedPod>,
    /// Non-pod hosts.
    pub external_ips: Vec<IpAddr>,
    /// Valid NetworkPolicies, placeholders substituted.
    pub policies: Vec<NetworkPolicy>,
    /// Valid AdminNetworkPolicies and the BaselineAdminNetworkPolicy.
    pub admin_policies: Vec<AdminPolicyObject>,
    /// Policies the API server would reject (not applied), with the reason.
    pub rejected_policies: Vec<String>,
    /// The normalised policy set.
    pub policy_set: PolicySet,
    /// Namespaces, endpoints, nodes.
    pub inventory: Inventory,
    /// Probes to run.
    pub probes: Vec<PreparedProbe>,
    /// Probes that could not be prepared, each with the reason (counted as skipped).
    pub skipped_probes: Vec<String>,
}

/// The result of preparing one record.
#[derive(Debug, Clone)]
pub enum Preparation {
    /// Ready to run.
    Ready(Box<PreparedRecord>),
    /// Skipped as a whole.
    Skipped {
        /// Record id.
        id: String,
        /// Number of probes skipped.
        probes: usize,
        /// Why.
        reason: String,
    },
}

const MAX_NODES: usize = 200;

fn proto(s: Option<&str>) -> Result<Protocol, String> {
    let s = s.unwrap_or("TCP");
    Protocol::parse(s).ok_or_else(|| format!("unsupported protocol {s:?}"))
}

fn skipped(rec: &Record, reason: String) -> Preparation {
    Preparation::Skipped {
        id: rec.id.clone(),
        probes: rec.probes.len(),
        reason,
    }
}

/// Prepare a record: assign addresses, substitute placeholders, parse and validate policies,
/// resolve probes.
pub fn prepare(rec: &Record, opts: &RunOptions) -> Preparation {
    let kind = match rec.kind.as_str() {
        "packet-verdict" => RecordKind::PacketVerdict,
        "cluster-probe-matrix" | "cluster-probe-list" | "" => RecordKind::Connections,
        other => return skipped(rec, format!("unknown record kind {other:?}")),
    };
    if rec.api_invalid && !opts.include_api_invalid {
        return skipped(
            rec,
            "apiInvalid: the Kubernetes API would reject this record's objects".into(),
        );
    }
    match prepare_inner(rec, kind) {
        Ok(p) => Preparation::Ready(Box::new(p)),
        Err(reason) => skipped(rec, reason),
    }
}

fn parse_ip(s: &str, what: &str) -> Result<IpAddr, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{what}: {s:?} is not an IP address"))
}

fn prepare_inner(rec: &Record, kind: RecordKind) -> Result<PreparedRecord, String> {
    // Addresses fixed by the record: never hand them out.
    let mut used: BTreeSet<IpAddr> = BTreeSet::new();
    let mut external_ips = Vec::new();
    for e in &rec.external_ips {
        let a = parse_ip(e, "externalIPs")?;
        used.insert(a);
        external_ips.push(a);
    }
    for p in &rec.pods {
        if let Some(ip) = &p.ip {
            used.insert(parse_ip(ip, &format!("pod {}/{} ip", p.namespace, p.name))?);
        }
    }
    for pr in rec.probe_inputs().into_iter().flatten() {
        let named = [&pr.from, &pr.to]
            .into_iter()
            .filter_map(|s| s.strip_prefix("ip:"));
        for a in pr
            .src_ip
            .iter()
            .map(String::as_str)
            .chain(pr.dst_ip.iter().map(String::as_str))
            .chain(named)
        {
            if let Ok(a) = a.trim().parse::<IpAddr>() {
                used.insert(a);
            }
        }
    }

    // Nodes: the record's, plus any a pod names; one default node when none.
    let mut node_labels: BTreeMap<String, BTreeMap<String, String>> =
        rec.nodes.clone().unwrap_or_default();
    for p in &rec.pods {
        if let Some(n) = &p.node {
            node_labels.entry(n.clone()).or_default();
        }
    }
    if node_labels.is_empty() {
        node_labels.insert("node-1".to_string(), BTreeMap::new());
    }
    if node_labels.len() > MAX_NODES {
        return Err(format!(
            "{} nodes; at most {MAX_NODES} supported",
            node_labels.len()
        ));
    }
    let default_node = node_labels.keys().next().cloned().unwrap_or_default();
    let mut nodes = Vec::new();
    let mut next_node_host: u32 = 1;
    for (i, (name, labels)) in node_labels.iter().enumerate() {
        let address = next_free(&mut used, |k| v4(172, 31, k), &mut next_node_host)
            .ok_or_else(|| format!("no free node address for node {i}"))?;
        nodes.push(PreparedNode {
            name: name.clone(),
            labels: labels.clone(),
            address,
        });
    }
    let node_index: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.name.as_str(), i))
        .collect();

    // Pods.
    let mut pods = Vec::new();
    let mut seen = BTreeSet::new();
    let mut next_pod_host: Vec<u32> = vec![0; nodes.len()];
    for p in &rec.pods {
        let id = EndpointId::new(&p.namespace, &p.name);
        if !seen.insert(id.clone()) {
            return Err(format!("pod {id} is listed twice"));
        }
        let node = p.node.clone().unwrap_or_else(|| default_node.clone());
        let ni = *node_index
            .get(node.as_str())
            .ok_or_else(|| format!("pod {id}: unknown node {node}"))?;
        let address = match (&p.ip, p.host_network) {
            (Some(ip), _) => parse_ip(ip, "pod ip")?,
            (None, true) => nodes[ni].address,
            (None, false) => {
                let third = 100 + ni as u32;
                next_free(&mut used, |k| v4(10, third, k + 2), &mut next_pod_host[ni])
                    .ok_or_else(|| format!("no free pod address on node {node}"))?
            }
        };
        pods.push(PreparedPod {
            id,
            service_account: p.service_account_name.clone(),
            labels: p.labels.clone(),
            address,
            host_network: p.host_network,
            node,
            ports: ports_of(p)?,
        });
    }

    // Policies, with podCIDR placeholders substituted.
    let by_name: BTreeMap<String, IpAddr> =
        pods.iter().map(|p| (p.id.to_string(), p.address)).collect();
    let mut policies = Vec::new();
    let mut rejected_policies = Vec::new();
    let mut admin_policies = Vec::new();
    let mut calico = CalicoObjects::default();
    // ServiceAccount labels by (namespace, name).
    let mut service_accounts: BTreeMap<(String, String), BTreeMap<String, String>> =
        BTreeMap::new();
    for (i, raw) in rec.policies.iter().enumerate() {
        let mut v = raw.clone();
        substitute(&mut v, &by_name)?;
        let objs = match objects_from_value(v) {
            Ok(o) => o,
            Err(e) => {
                // The API server would refuse an object it cannot decode.
                rejected_policies.push(format!("policies[{i}]: {e}"));
                continue;
            }
        };
        for o in objs {
            match o {
                ApiObject::NetworkPolicy(np) => {
                    let errs = validation_errors(&np);
                    if errs.is_empty() {
                        policies.push(np);
                    } else {
                        let list: Vec<String> = errs.iter().map(ToString::to_string).collect();
                        rejected_policies.push(format!("{}: {}", np.describe(), list.join("; ")));
                    }
                }
                ApiObject::Other {
                    api_version,
                    kind,
                    value,
                } => {
                    if api_version == "v1" && kind == "ServiceAccount" {
                        let meta = &value["metadata"];
                        let name = meta["name"].as_str().unwrap_or_default().to_string();
                        let ns = meta["namespace"].as_str().unwrap_or("default").to_string();
                        let labels =
                            serde_json::from_value(meta["labels"].clone()).unwrap_or_default();
                        if name.is_empty() {
                            rejected_policies
                                .push(format!("policies[{i}]: ServiceAccount without a name"));
                        } else {
                            service_accounts.insert((ns, name), labels);
                        }
                        continue;
                    }
                    if CalicoObjects::accepts(&api_version, &kind) {
                        if let Err(e) = calico.add_value(value) {
                            rejected_policies.push(format!("policies[{i}]: {e}"));
                        }
                        continue;
                    }
                    let admin_kind = [admin::ANP_KIND, admin::BANP_KIND, admin::CNP_KIND]
                        .contains(&kind.as_str());
                    let version = if kind == admin::CNP_KIND {
                        admin::CNP_API_VERSION
                    } else {
                        admin::ADMIN_API_VERSION
                    };
                    if admin_kind && api_version == version {
                        let checked = AdminPolicyObject::from_value(value)
                            .and_then(|o| o.validate().map(|()| o));
                        match checked {
                            Ok(o) => admin_policies.push(o),
                            Err(e) => rejected_policies.push(format!("policies[{i}]: {e}")),
                        }
                        continue;
                    }
                    let why = if admin_kind {
                        "unsupported apiVersion"
                    } else {
                        "unsupported kind"
                    };
                    return Err(format!("policy {api_version}/{kind}: {why}"));
                }
            }
        }
    }
    if admin_policies
        .iter()
        .filter(|o| o.kind == admin::BANP_KIND)
        .count()
        > 1
    {
        return Err("more than one BaselineAdminNetworkPolicy".into());
    }
    // Every pod runs under a service account (`default` unless named); Calico selects on it
    // through labels (cnet_policy::Endpoint::with_service_account), which every oracle sees.
    for p in pods.iter_mut().filter(|p| !p.host_network) {
        let sa = p
            .service_account
            .clone()
            .unwrap_or_else(|| "default".into());
        let key = (p.id.namespace.clone(), sa.clone());
        let sa_labels = service_accounts.get(&key).cloned().unwrap_or_default();
        let ep = Endpoint::new(&p.id.namespace, &p.id.name, p.labels.clone(), vec![]);
        p.labels = ep.with_service_account(&sa, &sa_labels).labels;
    }
    // Calico tiers interleave with the ANP tier by order (cnet_policy::calico docs).
    let policy_set = calico
        .policy_set(&policies, &admin_policies)
        .map_err(|e| e.to_string())?;

    // Inventory.
    let mut inventory = Inventory::default();
    for (ns, labels) in &rec.namespaces {
        inventory.upsert_namespace(ns, labels.clone());
    }
    for n in &nodes {
        let mut addresses = vec![n.address];
        for p in pods.iter().filter(|p| p.host_network && p.node == n.name) {
            if !addresses.contains(&p.address) {
                addresses.push(p.address);
            }
        }
        inventory.upsert_node(Node {
            name: n.name.clone(),
            labels: n.labels.clone(),
            addresses,
        });
    }
    for p in &pods {
        let mut ep = Endpoint::new(
            &p.id.namespace,
            &p.id.name,
            p.labels.clone(),
            vec![p.address],
        );
        ep.host_network = p.host_network;
        ep.node = Some(p.node.clone());

        for port in &p.ports {
            if let Some(name) = &port.name {
                ep.named_ports.insert(
                    name.clone(),
                    NamedPort {
                        port: port.port,
                        protocol: port.protocol,
                    },
                );
            }
        }
        inventory.upsert_endpoint(ep);
    }

    // Probes.
    let pod_index: BTreeMap<String, usize> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.to_string(), i))
        .collect();
    let mut probes = Vec::new();
    let mut skipped_probes = Vec::new();
    for pr in rec.probe_inputs() {
        let prepared = pr.and_then(|pr| {
            prepare_probe(&pr, &pods, &pod_index)
                .map_err(|e| format!("{} -> {}:{}: {e}", pr.from, pr.to, pr.port))
        });
        match prepared {
            Ok(p) => probes.push(p),
            Err(reason) => skipped_probes.push(reason),
        }
    }
    Ok(PreparedRecord {
        id: rec.id.clone(),
        kind,
        nodes,
        pods,
        external_ips,
        policies,
        admin_policies,
        rejected_policies,
        policy_set,
        inventory,
        probes,
        skipped_probes,
    })
}

fn v4(a: u8, b: u32, k: u32) -> Option<IpAddr> {
    // k numbers hosts inside a.b.0.0/16 from .0.1 on; stay below .255.255.
    let (c, d) = (k / 256, k % 256);
    (b <= 255 && c <= 254 && d != 0 && d != 255)
        .then(|| IpAddr::V4(Ipv4Addr::new(a, b as u8, c as u8, d as u8)))
}

fn next_free(
    used: &mut BTreeSet<IpAddr>,
    make: impl Fn(u32) -> Option<IpAddr>,
    next: &mut u32,
) -> Option<IpAddr> {
    while *next < 65536 {
        let k = *next;
        *next += 1;
        if let Some(a) = make(k) {
            if used.insert(a) {
                return Some(a);
            }
        }
    }
    None
}

fn ports_of(p: &PodInput) -> Result<Vec<PreparedPort>, String> {
    p.container_ports
        .iter()
        .map(|c| {
            let port = u16::try_from(c.container_port)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    format!(
                        "pod {}/{}: bad containerPort {}",
                        p.namespace, p.name, c.container_port
                    )
                })?;
            Ok(PreparedPort {
                port,
                protocol: proto(c.protocol.as_deref())?,
                name: c.name.clone(),
            })
        })
        .collect()
}

/// Replace every `{"podCIDR": "ns/name", "prefix": N, "prefixIPv6": M, "maskHostBits": b}`
/// object inside `v` by the CIDR string it stands for.
pub fn substitute(v: &mut Value, pods: &BTreeMap<String, IpAddr>) -> Result<(), String> {
    match v {
        Value::Object(m) => {
            if let Some(pod) = m.get("podCIDR") {
                let pod = pod.as_str().ok_or("podCIDR must be a string")?;
                let addr = *pods
                    .get(pod)
                    .ok_or_else(|| format!("podCIDR refers to unknown pod {pod}"))?;
                let prefix = if addr.is_ipv4() {
                    m.get("prefix").and_then(Value::as_u64).unwrap_or(32)
                } else {
                    m.get("prefixIPv6").and_then(Value::as_u64).unwrap_or(128)
                };
                let prefix = u8::try_from(prefix).map_err(|_| format!("bad prefix {prefix}"))?;
                let net = IpNetwork::new(addr, prefix)
                    .map_err(|e| format!("podCIDR {pod}/{prefix}: {e}"))?;
                let mask = m
                    .get("maskHostBits")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let net = if mask { network_of(net) } else { net };
                *v = Value::String(format!("{}/{}", net.ip(), net.prefix()));
                return Ok(());
            }
            for x in m.values_mut() {
                substitute(x, pods)?;
            }
        }
        Value::Array(a) => {
            for x in a {
                substitute(x, pods)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn prepare_probe(
    pr: &ProbeInput,
    pods: &[PreparedPod],
    index: &BTreeMap<String, usize>,
) -> Result<PreparedProbe, String> {
    let side = |s: &str, over: &Option<String>| -> Result<(Option<usize>, IpAddr), String> {
        let (pod, addr) = if let Some(ip) = s.strip_prefix("ip:") {
            let a = parse_ip(ip, "probe address")?;
            (
                pods.iter().position(|p| p.address == a && !p.host_network),
                a,
            )
        } else {
            let i = *index.get(s).ok_or_else(|| format!("unknown pod {s}"))?;
            (Some(i), pods[i].address)
        };
        match over {
            Some(o) => Ok((pod, parse_ip(o, "probe srcIP/dstIP")?)),
            None => Ok((pod, addr)),
        }
    };
    let (src_pod, src) = side(&pr.from, &pr.src_ip)?;
    let (dst_pod, dst) = side(&pr.to, &pr.dst_ip)?;
    if src.is_ipv4() != dst.is_ipv4() {
        return Err(format!("{src} and {dst} are of different address families"));
    }
    let port = u16::try_from(pr.port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("bad port {}", pr.port))?;
    let src_port = match pr.src_port {
        None => None,
        Some(p) => Some(
            u16::try_from(p)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("bad srcPort {p}"))?,
        ),
    };
    Ok(PreparedProbe {
        from: pr.from.clone(),
        to: pr.to.clone(),
        src_pod,
        dst_pod,
        src,
        dst,
        src_port,
        port,
        protocol: proto(pr.protocol.as_deref())?,
        expect: pr.expect,
    })
}

/// What happened to a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Connected (or, for packet verdicts, the first packet passed).
    Connected,
    /// Dropped: the attempt timed out.
    Dropped,
    /// Refused or reset (nothing listening): a failure whatever was expected.
    Refused,
    /// The oracle could not run the probe.
    Error(String),
    /// The oracle cannot run this probe here (counted as skipped, with the reason).
    Skipped(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Connected => f.write_str("true"),
            Outcome::Dropped => f.write_str("false"),
            Outcome::Refused => f.write_str("refused"),
            Outcome::Error(e) => write!(f, "error ({e})"),
            Outcome::Skipped(why) => write!(f, "skipped ({why})"),
        }
    }
}

/// A probe's outcome with an optional explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// What happened.
    pub outcome: Outcome,
    /// Why (e.g. the evaluator's reason), for `--explain`.
    pub explanation: Option<String>,
}

/// Something that answers probes: the evaluator, or (another issue) the kernel.
pub trait Oracle {
    /// Answer every probe of `rec.probes`, in order. An `Err` fails the whole record.
    fn run(&mut self, rec: &PreparedRecord) -> Result<Vec<ProbeResult>, String>;
}

/// Answers probes with [`cnet_policy::Evaluator`]: no kernel involved.
#[derive(Debug, Default)]
pub struct EvaluatorOracle;

impl Oracle for EvaluatorOracle {
    fn run(&mut self, rec: &PreparedRecord) -> Result<Vec<ProbeResult>, String> {
        let eval = Evaluator::new(rec.policy_set.clone(), rec.inventory.clone());
        Ok(rec
            .probes
            .iter()
            .map(|p| {
                let d = eval.decide(&Flow {
                    src: p.src,
                    dst: p.dst,
                    protocol: p.protocol,
                    dst_port: p.port,
                });
                let listening = p
                    .dst_pod
                    .is_none_or(|i| rec.pods[i].listens_on(p.port, p.protocol));
                let outcome = match (d.verdict, rec.kind) {
                    (Verdict::Deny, _) => Outcome::Dropped,
                    (Verdict::Allow, RecordKind::PacketVerdict) => Outcome::Connected,
                    (Verdict::Allow, RecordKind::Connections) if listening => Outcome::Connected,
                    (Verdict::Allow, RecordKind::Connections) => Outcome::Refused,
                };
                ProbeResult {
                    outcome,
                    explanation: Some(d.to_string()),
                }
            })
            .collect())
    }
}

/// Pass, fail or skip of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordStatus {
    /// Every probe passed (some may be skipped).
    Pass,
    /// At least one probe failed.
    Fail,
    /// Not run.
    Skipped(String),
}

/// One record's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordReport {
    /// Record id.
    pub id: String,
    /// Status.
    pub status: RecordStatus,
    /// Probes that passed.
    pub passed: usize,
    /// Probes that failed.
    pub failed: usize,
    /// Probes skipped.
    pub skipped: usize,
    /// One line per failing probe: `from -> to:port/proto expected X got Y`.
    pub failures: Vec<String>,
    /// Explanations of failing probes (printed with `--explain`).
    pub explanations: Vec<String>,
    /// Remarks: skipped probes, policies the API would reject.
    pub notes: Vec<String>,
}

/// A whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Per record, in file order.
    pub records: Vec<RecordReport>,
}

impl Report {
    /// `(passed, failed, skipped)` probe totals.
    pub fn totals(&self) -> (usize, usize, usize) {
        self.records.iter().fold((0, 0, 0), |(p, f, s), r| {
            (p + r.passed, f + r.failed, s + r.skipped)
        })
    }

    /// True when no probe failed.
    pub fn success(&self) -> bool {
        self.totals().1 == 0
    }

    /// The text the runner prints: one line per record, an indented line per failing probe,
    /// and the final `conformance: N passed, N failed, N skipped` line.
    pub fn render(&self, explain: bool) -> String {
        let mut out = String::new();
        for r in &self.records {
            let _ = match &r.status {
                RecordStatus::Pass => writeln!(
                    out,
                    "{} pass ({} probes{})",
                    r.id,
                    r.passed,
                    skipped_note(r.skipped)
                ),
                RecordStatus::Fail => writeln!(
                    out,
                    "{} fail ({} passed, {} failed{})",
                    r.id,
                    r.passed,
                    r.failed,
                    skipped_note(r.skipped)
                ),
                RecordStatus::Skipped(why) => {
                    writeln!(out, "{} skipped ({} probes): {}", r.id, r.skipped, why)
                }
            };
            for (i, f) in r.failures.iter().enumerate() {
                let _ = writeln!(out, "  {f}");
                if explain {
                    if let Some(e) = r.explanations.get(i) {
                        for line in e.lines() {
                            let _ = writeln!(out, "      {line}");
                        }
                    }
                }
            }
            if explain {
                for n in &r.notes {
                    let _ = writeln!(out, "  note: {n}");
                }
            }
        }
        let (p, f, s) = self.totals();
        let _ = writeln!(out, "conformance: {p} passed, {f} failed, {s} skipped");
        out
    }
}

fn skipped_note(n: usize) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(", {n} skipped")
    }
}

/// Run one record through an oracle.
pub fn run_record(input: &RecordInput, oracle: &mut dyn Oracle, opts: &RunOptions) -> RecordReport {
    let rec = match input {
        RecordInput::Malformed { id, probes, reason } => {
            return RecordReport {
                id: id.clone(),
                status: RecordStatus::Skipped(reason.clone()),
                passed: 0,
                failed: 0,
                skipped: *probes,
                failures: vec![],
                explanations: vec![],
                notes: vec![],
            };
        }
        RecordInput::Ok(r) => r,
    };
    let prep = match prepare(rec, opts) {
        Preparation::Skipped { id, probes, reason } => {
            return RecordReport {
                id,
                status: RecordStatus::Skipped(reason),
                passed: 0,
                failed: 0,
                skipped: probes,
                failures: vec![],
                explanations: vec![],
                notes: vec![],
            };
        }
        Preparation::Ready(p) => p,
    };
    let mut report = RecordReport {
        id: prep.id.clone(),
        status: RecordStatus::Pass,
        passed: 0,
        failed: 0,
        skipped: prep.skipped_probes.len(),
        failures: vec![],
        explanations: vec![],
        notes: prep
            .rejected_policies
            .iter()
            .map(|r| format!("rejected as the API server would: {r}"))
            .collect(),
    };
    for why in &prep.skipped_probes {
        report.notes.push(format!("probe skipped: {why}"));
    }
    let results = match oracle.run(&prep) {
        Ok(r) if r.len() == prep.probes.len() => r,
        Ok(r) => {
            let e = format!(
                "oracle answered {} of {} probes",
                r.len(),
                prep.probes.len()
            );
            prep.probes
                .iter()
                .map(|_| ProbeResult {
                    outcome: Outcome::Error(e.clone()),
                    explanation: None,
                })
                .collect()
        }
        Err(e) => prep
            .probes
            .iter()
            .map(|_| ProbeResult {
                outcome: Outcome::Error(e.clone()),
                explanation: None,
            })
            .collect(),
    };
    for (probe, res) in prep.probes.iter().zip(results) {
        if let Outcome::Skipped(why) = &res.outcome {
            report.skipped += 1;
            report.notes.push(format!(
                "probe skipped: {} -> {}:{}/{}: {why}",
                probe.from, probe.to, probe.port, probe.protocol
            ));
            continue;
        }
        let ok = match res.outcome {
            Outcome::Connected => probe.expect,
            Outcome::Dropped => !probe.expect,
            Outcome::Refused | Outcome::Error(_) | Outcome::Skipped(_) => false,
        };
        if ok {
            report.passed += 1;
        } else {
            report.failed += 1;
            report.failures.push(format!(
                "{} -> {}:{}/{} expected {} got {}",
                probe.from, probe.to, probe.port, probe.protocol, probe.expect, res.outcome
            ));
            report
                .explanations
                .push(res.explanation.unwrap_or_default());
        }
    }
    if report.failed > 0 {
        report.status = RecordStatus::Fail;
    }
    report
}

/// Run every record of a file's contents.
pub fn run_records(inputs: &[RecordInput], oracle: &mut dyn Oracle, opts: &RunOptions) -> Report {
    Report {
        records: inputs.iter().map(|r| run_record(r, oracle, opts)).collect(),
    }
}
