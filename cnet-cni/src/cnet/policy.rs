//! Policy for the node state: the [`StateData`] (endpoints and stored policy objects) becomes a
//! `cnet_policy` [`Engine`], which programs the node's nftables table in one atomic batch.
//!
//! - **Minimal batches across processes.** Each plugin or `cnetctl` process is one-shot. After
//!   every successful sync the engine's inputs are saved as `programmed.json` in the state
//!   directory; the next process rebuilds the engine from it ([`Engine::from_state`]), moves it
//!   to the new inputs and sends only the difference. The file is removed *before* programming,
//!   so a process killed mid-sync leaves no claim about the kernel and the next sync replaces
//!   the table whole. A failed incremental batch is retried once as a full replacement.
//! - **Fail closed.** ADD syncs the endpoint (addresses, host interface, labels) before the
//!   pod's interface is created, so its rules exist before it can carry a packet. An endpoint
//!   whose labels are expected from an outside source and have not arrived is programmed as
//!   *pending*: the dispatch maps send all its traffic to `drop`.
//! - Bridge mode dispatches by address and needs br_netfilter (set by the plugin when policy
//!   is enabled).

use crate::cnet::PolicySync;
use crate::cnet::conf::CnetConf;
use crate::cnet::state::{EndpointRecord, StateData, StoredPolicy};
use crate::error::{CniError, ErrorCode};
use cnet_policy::admin::AdminPolicyObject;
use cnet_policy::engine::{Engine, EngineState, StateEndpoint};
use cnet_policy::{EndpointId, NetworkPolicy};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// File (in the state directory) holding the engine inputs last programmed.
pub const PROGRAMMED_FILE: &str = "programmed.json";

/// Plugin-specific code: a stored policy object cannot be used (cnetctl validates before
/// storing, so this means the state was edited by hand).
pub const CODE_BAD_POLICY: u32 = 113;

/// Kinds `cnetctl apply` accepts and the engine programs (besides the Calico kinds,
/// [`CALICO_KINDS`]).
pub const POLICY_KINDS: [&str; 4] = [
    "NetworkPolicy",
    "AdminNetworkPolicy",
    "BaselineAdminNetworkPolicy",
    "ClusterNetworkPolicy",
];

/// `apiVersion` of the Calico objects.
pub const CALICO_API_VERSION: &str = "projectcalico.org/v3";

/// `projectcalico.org/v3` kinds `cnetctl apply` accepts. They are stored under the kind
/// `<Kind>.projectcalico.org` (see [`stored_kind`]), so a Calico NetworkPolicy and a
/// Kubernetes one of the same name are distinct objects.
pub const CALICO_KINDS: &[&str] = cnet_policy::calico::KINDS;

/// Suffix of the stored kind of a Calico object.
pub const CALICO_KIND_SUFFIX: &str = ".projectcalico.org";

/// The kind an object is stored under (`None`: not a policy object the node accepts):
/// the kind itself for the Kubernetes and admin policy kinds, `<Kind>.projectcalico.org` for
/// Calico objects.
pub fn stored_kind(api_version: &str, kind: &str) -> Option<String> {
    if api_version == CALICO_API_VERSION {
        CALICO_KINDS
            .contains(&kind)
            .then(|| format!("{kind}{CALICO_KIND_SUFFIX}"))
    } else if api_version == cnet_policy::api::API_VERSION || kind != "NetworkPolicy" {
        POLICY_KINDS.contains(&kind).then(|| kind.to_string())
    } else {
        None
    }
}

/// Whether a stored object is namespaced (its key has a namespace).
pub fn stored_kind_is_namespaced(stored_kind: &str) -> bool {
    matches!(
        stored_kind,
        "NetworkPolicy"
            | "NetworkPolicy.projectcalico.org"
            | "StagedNetworkPolicy.projectcalico.org"
            | "NetworkSet.projectcalico.org"
    )
}

fn policy_error(msg: String) -> CniError {
    CniError::new(ErrorCode::Other(crate::cnet::CODE_POLICY), msg)
}

/// A stored object as the engine's type.
pub enum PolicyObject {
    /// `networking.k8s.io/v1` NetworkPolicy.
    Network(Box<NetworkPolicy>),
    /// AdminNetworkPolicy, BaselineAdminNetworkPolicy or ClusterNetworkPolicy.
    Admin(Box<AdminPolicyObject>),
    /// A `projectcalico.org/v3` object (policy, staged policy, tier, network set, host
    /// endpoint).
    Calico(Box<serde_json::Value>),
}

impl std::fmt::Debug for PolicyObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyObject::Network(np) => write!(f, "{}", np.describe()),
            PolicyObject::Admin(o) => write!(f, "{} {}", o.kind, o.metadata.name),
            PolicyObject::Calico(v) => write!(f, "{}", cnet_policy::engine::CalicoKey::of(v)),
        }
    }
}

impl PolicyObject {
    /// Decode a stored object.
    pub fn from_stored(p: &StoredPolicy) -> Result<PolicyObject, CniError> {
        let bad = |e: String| {
            CniError::new(
                ErrorCode::Other(CODE_BAD_POLICY),
                format!("stored policy {}: {e}", p.key()),
            )
        };
        if p.kind.ends_with(CALICO_KIND_SUFFIX)
            || p.object["apiVersion"].as_str() == Some(CALICO_API_VERSION)
        {
            Ok(PolicyObject::Calico(Box::new(p.object.clone())))
        } else if p.kind == "NetworkPolicy" {
            serde_json::from_value::<NetworkPolicy>(p.object.clone())
                .map(|np| PolicyObject::Network(Box::new(np)))
                .map_err(|e| bad(e.to_string()))
        } else {
            serde_json::from_value::<AdminPolicyObject>(p.object.clone())
                .map(|o| PolicyObject::Admin(Box::new(o)))
                .map_err(|e| bad(e.to_string()))
        }
    }

    /// Apply to an engine (validates: an invalid object changes nothing).
    pub fn apply(&self, e: &mut Engine) -> Result<(), CniError> {
        match self {
            PolicyObject::Network(np) => e.apply_policy(np).map(drop),
            PolicyObject::Admin(o) => e.apply_admin_policy(o).map(drop),
            PolicyObject::Calico(v) => e.apply_calico(v).map(drop),
        }
        .map_err(|e| policy_error(e.to_string()))
    }
}

/// The policy mode of a node state (its recorded network mode).
pub fn compile_mode(data: &StateData) -> cnet_policy::compile::Mode {
    if data.mode == "bridge" {
        cnet_policy::compile::Mode::Bridge
    } else {
        cnet_policy::compile::Mode::Transparent
    }
}

/// The engine inputs a node state stands for.
pub fn engine_state(data: &StateData) -> Result<EngineState, CniError> {
    let mut st = EngineState {
        mode: if data.mode == "bridge" {
            "bridge".into()
        } else {
            "transparent".into()
        },
        table: if data.table.is_empty() {
            crate::cnet::conf::DEFAULT_TABLE.into()
        } else {
            data.table.clone()
        },
        node: (!data.node.is_empty()).then(|| data.node.clone()),
        allow_from_resident_node: true,
        ..EngineState::default()
    };
    st.namespaces.clone_from(&data.namespaces);
    for r in data.endpoints.iter().filter(|r| !r.addresses.is_empty()) {
        st.namespaces.entry(r.namespace.clone()).or_default();
        st.endpoints.push(StateEndpoint {
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            labels: r.labels.clone(),
            addresses: r.addresses.iter().map(|a| a.ip()).collect(),
            host_ifname: Some(r.host_ifname.clone()),
            pending: !r.labels_known,
            named_ports: crate::cnet::ports::named_ports(&r.ports),
            ..StateEndpoint::default()
        });
    }
    for p in &data.policies {
        match PolicyObject::from_stored(p)? {
            PolicyObject::Network(np) => st.network_policies.push(*np),
            PolicyObject::Admin(o) => st.admin_policies.push(*o),
            PolicyObject::Calico(v) => st.calico_objects.push(*v),
        }
    }
    Ok(st)
}

/// An engine holding exactly the inputs of `data`, with nothing assumed about the kernel.
pub fn engine_for(data: &StateData) -> Result<Engine, CniError> {
    let st = engine_state(data)?;
    let mut opts = cnet_policy::compile::CompileOptions::new(compile_mode(data));
    opts.table = st.table.clone();
    opts.node.clone_from(&st.node);
    let mut e = Engine::with_options(opts);
    apply_inputs(&mut e, &EngineState::default(), &st)?;
    Ok(e)
}

/// Move an engine whose inputs are `from` to the inputs `to`, touching only what differs:
/// an unchanged endpoint or policy is not upserted again, so the engine's incremental path
/// recomputes only the changed endpoints' elements (one pod per ADD or DEL).
fn apply_inputs(e: &mut Engine, from: &EngineState, to: &EngineState) -> Result<(), CniError> {
    let id = |s: &StateEndpoint| EndpointId::new(s.namespace.clone(), s.name.clone());
    let keep: BTreeSet<EndpointId> = to.endpoints.iter().map(id).collect();
    let before: std::collections::BTreeMap<EndpointId, &StateEndpoint> =
        from.endpoints.iter().map(|s| (id(s), s)).collect();
    for s in &from.endpoints {
        if !keep.contains(&id(s)) {
            e.remove_endpoint(&id(s));
        }
    }
    // A namespace gone from the inputs keeps only its implicit name label.
    for ns in from.namespaces.keys() {
        if !to.namespaces.contains_key(ns) {
            e.upsert_namespace(ns, Default::default());
        }
    }
    for (ns, labels) in &to.namespaces {
        e.upsert_namespace(ns, labels.clone());
    }
    for s in &to.endpoints {
        if before.get(&id(s)) == Some(&s) {
            continue;
        }
        let mut ep = cnet_policy::Endpoint::new(
            &s.namespace,
            &s.name,
            s.labels.clone(),
            s.addresses.clone(),
        );
        for (name, (port, proto)) in &s.named_ports {
            let protocol = cnet_policy::Protocol::parse(proto).ok_or_else(|| {
                policy_error(format!(
                    "endpoint {}/{}: named port {name}: protocol {proto:?}",
                    s.namespace, s.name
                ))
            })?;
            ep.named_ports.insert(
                name.clone(),
                cnet_policy::endpoint::NamedPort {
                    port: *port,
                    protocol,
                },
            );
        }
        if s.pending {
            e.upsert_pending_endpoint(ep, s.host_ifname.clone());
        } else {
            e.upsert_endpoint(ep, s.host_ifname.clone());
        }
    }
    for np in &from.network_policies {
        if !to
            .network_policies
            .iter()
            .any(|q| q.metadata.name == np.metadata.name && q.namespace() == np.namespace())
            && let Ok(pid) = e.apply_policy(np)
        {
            e.delete_policy(&pid);
        }
    }
    for o in &from.admin_policies {
        if !to
            .admin_policies
            .iter()
            .any(|q| q.kind == o.kind && q.metadata.name == o.metadata.name)
            && let Ok(pid) = e.apply_admin_policy(o)
        {
            e.delete_policy(&pid);
        }
    }
    let key = cnet_policy::engine::CalicoKey::of;
    for o in &from.calico_objects {
        if !to.calico_objects.iter().any(|q| key(q) == key(o)) {
            e.delete_calico(&key(o));
        }
    }
    for o in to
        .calico_objects
        .iter()
        .filter(|o| !from.calico_objects.contains(o))
    {
        e.apply_calico(o).map_err(|x| policy_error(x.to_string()))?;
    }
    for np in to
        .network_policies
        .iter()
        .filter(|np| !from.network_policies.contains(np))
    {
        e.apply_policy(np)
            .map_err(|x| policy_error(x.to_string()))?;
    }
    for o in to
        .admin_policies
        .iter()
        .filter(|o| !from.admin_policies.contains(o))
    {
        e.apply_admin_policy(o)
            .map_err(|x| policy_error(x.to_string()))?;
    }
    Ok(())
}

fn read_programmed(dir: &Path) -> Option<EngineState> {
    let bytes = std::fs::read(dir.join(PROGRAMMED_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write_programmed(dir: &Path, st: &EngineState) -> Result<(), CniError> {
    let path = dir.join(PROGRAMMED_FILE);
    let tmp = dir.join(format!("{PROGRAMMED_FILE}.tmp.{}", std::process::id()));
    let bytes = serde_json::to_vec(st)
        .map_err(|e| CniError::io(format!("encode {}: {e}", path.display())))?;
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| CniError::io(format!("write {}: {e}", path.display())))
}

/// Program the kernel (in the calling thread's netns) for `data`, state kept in `dir`. Call
/// with the node state lock held. Returns the engine (for rendering and explaining).
pub fn sync_state(dir: &Path, data: &StateData) -> Result<Engine, CniError> {
    let desired = engine_state(data)?;
    let saved = read_programmed(dir).filter(|s| s.mode == desired.mode && s.table == desired.table);
    // No claim about the kernel while we change it.
    match std::fs::remove_file(dir.join(PROGRAMMED_FILE)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(CniError::io(format!("{}: {e}", dir.display()))),
    }
    let mut engine = match &saved {
        Some(s) => match Engine::from_state(s) {
            Ok(mut e) => {
                apply_inputs(&mut e, s, &desired)?;
                e
            }
            Err(_) => engine_for(data)?,
        },
        None => engine_for(data)?,
    };
    if let Err(first) = engine.sync() {
        // The kernel was not as assumed: replace the table whole.
        engine.forget_programmed();
        engine
            .sync()
            .map_err(|e| policy_error(format!("programming nftables: {e} (after: {first})")))?;
    }
    write_programmed(dir, &desired)?;
    Ok(engine)
}

/// CHECK's policy half: the last successful sync programmed this endpoint with its current
/// addresses, host interface and labels (`Err` says what differs).
pub fn check_programmed(dir: &Path, rec: &EndpointRecord) -> Result<(), String> {
    let Some(saved) = read_programmed(dir) else {
        return Err("no successful policy sync is recorded for this node".into());
    };
    let Some(ep) = saved
        .endpoints
        .iter()
        .find(|e| e.namespace == rec.namespace && e.name == rec.name)
    else {
        return Err(format!("endpoint {} is not programmed", rec.pod()));
    };
    let addrs: Vec<std::net::IpAddr> = rec.addresses.iter().map(|a| a.ip()).collect();
    if ep.addresses != addrs
        || ep.host_ifname.as_deref() != Some(rec.host_ifname.as_str())
        || ep.labels != rec.labels
        || ep.pending == rec.labels_known
        || ep.named_ports != crate::cnet::ports::named_ports(&rec.ports)
    {
        return Err(format!(
            "endpoint {} is programmed with other addresses, interface, labels or ports",
            rec.pod()
        ));
    }
    Ok(())
}

/// The plugin's policy programmer: [`sync_state`] in the node netns (the plugin's).
///
/// It keeps the last engine, and with it the engine's nftables socket, until it is dropped:
/// a reaper started meanwhile inherits the socket, and closing it (which waits for the
/// kernel's deferred nf_tables destroy work) is then the reaper's cost (see
/// [`crate::cnet::teardown`]).
#[derive(Default)]
pub struct EngineSync {
    last: Option<Engine>,
}

impl std::fmt::Debug for EngineSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineSync")
            .field("holds_engine", &self.last.is_some())
            .finish()
    }
}

impl PolicySync for EngineSync {
    fn sync(&mut self, conf: &CnetConf, state: &StateData) -> Result<(), CniError> {
        self.last = None;
        self.last = Some(sync_state(&conf.policy.state_dir, state)?);
        Ok(())
    }

    fn release(&mut self) {
        self.last = None;
    }
}

/// The state directory of a network: `root/<network>`.
pub fn state_dir(root: &Path, network: &str) -> PathBuf {
    root.join(network)
}
