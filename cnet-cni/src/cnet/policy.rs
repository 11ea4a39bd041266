//! Policy for the node state: the [`StateData`] (endpoints and stored policy objects) becomes a
//! `cnet_policy` [`Engine`], which programs the node's nftables table in one atomic batch.
//!
//! - **Minimal batches across processes.** Each plugin or `cnetctl` process is one-shot. After
//!   every successful sync the engine's inputs are saved as `programmed.json` in the state
//!   directory; the next process rebuilds the engine from it ([`Engine::from_state`]), moves it
//!   to the new inputs and sends only the difference. The file is removed *before* programming,
//!   so a process killed mid-sync leaves no claim about the kernel and the next sync replaces
//!   the table whole. A failed incremental batch is retried once as a full replacement.
//!   The record also holds the kernel's mark after the sync (nftables generation, netns
//!   cookie, boot id: [`cnet_policy::engine::KernelMark`]); while the kernel still shows it,
//!   nobody has committed since and the next process skips reading the table back.
//!   The plugin reads and rebuilds the saved state on a helper thread from the start of ADD
//!   (and of DEL, under the lock) and checks it against the file's bytes under the lock
//!   ([`Prepared`]); the new record is written on a helper while the pod is attached and
//!   joined before the lock is released ([`EngineSync`]).
//! - **Fail closed.** ADD syncs the endpoint (addresses, host interface, labels) before the
//!   pod's interface is created, so its rules exist before it can carry a packet. An endpoint
//!   whose labels are expected from an outside source and have not arrived is programmed as
//!   *pending*: the dispatch maps send all its traffic to `drop`.
//! - Bridge mode dispatches by address and needs br_netfilter (set by the plugin when policy
//!   is enabled).

use crate::cnet::PolicySync;
use crate::cnet::conf::CnetConf;
use crate::cnet::helper::{Helper, spawn, spawn_with};
use crate::cnet::state::{EndpointRecord, StateData, StoredPolicy};
use crate::error::{CniError, ErrorCode};
use cnet_policy::admin::AdminPolicyObject;
use cnet_policy::engine::{Engine, EngineState, StateEndpoint};
use cnet_policy::{EndpointId, NetworkPolicy};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

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
    mode_named(&data.mode)
}

/// The policy mode of a network mode name (`bridge`, else transparent).
fn mode_named(name: &str) -> cnet_policy::compile::Mode {
    if name == "bridge" {
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
    let attached = || data.endpoints.iter().filter(|r| !r.addresses.is_empty());
    let mut per_pod: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for r in attached() {
        *per_pod.entry((&r.namespace, &r.name)).or_default() += 1;
    }
    for r in attached() {
        st.namespaces.entry(r.namespace.clone()).or_default();
        let shared = per_pod.get(&(r.namespace.as_str(), r.name.as_str())) > Some(&1);
        st.endpoints.push(state_endpoint(r, shared));
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

/// The engine input of one attachment's record (which has addresses). `shared`: another
/// record with addresses is of the same pod (a new sandbox while the old one's attachment is
/// still recorded, or a pod with two attachments of this network).
///
/// The engine keys endpoints by pod name, so an attachment that shares its pod's name gets
/// the name `<pod>/<host interface>`: each attachment is then an endpoint of its own, with
/// the pod's labels and its own addresses and interface, and the pod's policy holds on every
/// one of them (policy selects by labels and namespace, never by name; a Kubernetes name
/// has no '/', so no other pod's name is taken). The name depends only on the records, so an
/// engine moved there incrementally equals one built from scratch.
fn state_endpoint(r: &EndpointRecord, shared: bool) -> StateEndpoint {
    StateEndpoint {
        namespace: r.namespace.clone(),
        name: if shared {
            format!("{}/{}", r.name, r.host_ifname)
        } else {
            r.name.clone()
        },
        labels: r.labels.clone(),
        addresses: r.addresses.iter().map(|a| a.ip()).collect(),
        host_ifname: Some(r.host_ifname.clone()),
        pending: !r.labels_known,
        named_ports: crate::cnet::ports::named_ports(&r.ports),
        ..StateEndpoint::default()
    }
}

/// An engine holding exactly the inputs of `data`, with nothing assumed about the kernel.
pub fn engine_for(data: &StateData) -> Result<Engine, CniError> {
    engine_of(&engine_state(data)?)
}

/// An engine holding exactly the inputs `st`, with nothing assumed about the kernel.
fn engine_of(st: &EngineState) -> Result<Engine, CniError> {
    let mut opts = cnet_policy::compile::CompileOptions::new(mode_named(&st.mode));
    opts.table = st.table.clone();
    opts.node.clone_from(&st.node);
    let mut e = Engine::with_options(opts);
    apply_inputs(&mut e, &EngineState::default(), st)?;
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
        upsert_state_endpoint(e, s)?;
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

/// Give the engine one endpoint input (added, or replacing the endpoint of its name).
fn upsert_state_endpoint(e: &mut Engine, s: &StateEndpoint) -> Result<(), CniError> {
    let mut ep =
        cnet_policy::Endpoint::new(&s.namespace, &s.name, s.labels.clone(), s.addresses.clone());
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
    Ok(())
}

fn read_programmed(dir: &Path) -> Option<EngineState> {
    let bytes = read_programmed_bytes(dir)?;
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

/// What a sync starts from: the inputs recorded in `programmed.json` by the last successful
/// sync and the engine rebuilt from them ([`Engine::from_state`]). Reading and rebuilding
/// depend only on the file's bytes, so [`prepare`] can run on another thread, even before the
/// node state lock is taken: [`Prepared::current`] (under the lock) compares the bytes with
/// the file's and rebuilds only when they differ.
pub struct Prepared {
    /// The file's contents (`None`: no file).
    bytes: Option<Vec<u8>>,
    saved: Option<EngineState>,
    engine: Option<Result<Engine, cnet_policy::engine::EngineError>>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("saved", &self.saved.is_some())
            .finish_non_exhaustive()
    }
}

impl Prepared {
    fn from_bytes(bytes: Option<Vec<u8>>) -> Prepared {
        let saved: Option<EngineState> = bytes
            .as_deref()
            .and_then(|b| serde_json::from_slice(b).ok());
        let engine = saved.as_ref().map(Engine::from_state);
        Prepared {
            bytes,
            saved,
            engine,
        }
    }

    /// This start if `programmed.json` in `dir` still holds the bytes it was prepared from,
    /// else one prepared from the file as it is now. Call with the node state lock held:
    /// the result then stands for the file the sync replaces.
    pub fn current(self, dir: &Path) -> Prepared {
        let now = read_programmed_bytes(dir);
        if now == self.bytes {
            self
        } else {
            Prepared::from_bytes(now)
        }
    }
}

fn read_programmed_bytes(dir: &Path) -> Option<Vec<u8>> {
    std::fs::read(dir.join(PROGRAMMED_FILE)).ok()
}

/// Read `programmed.json` in `dir` and rebuild its engine. Without the node state lock the
/// file may change meanwhile: check the result with [`Prepared::current`] under the lock.
pub fn prepare(dir: &Path) -> Prepared {
    Prepared::from_bytes(read_programmed_bytes(dir))
}

/// Program the kernel (in the calling thread's netns) for `data`, state kept in `dir`. Call
/// with the node state lock held. Returns the engine (for rendering and explaining).
pub fn sync_state(dir: &Path, data: &StateData) -> Result<Engine, CniError> {
    let (engine, record) = sync_state_from(dir, data, prepare(dir))?;
    record.write()?;
    Ok(engine)
}

/// The record of a successful sync, still to be written to `programmed.json`
/// ([`ProgrammedRecord::write`]) while the lock is held: until it is, the state directory
/// claims nothing about the kernel (the next sync replaces the table whole).
#[derive(Debug)]
#[must_use = "the next sync replaces the table whole unless the record is written"]
pub struct ProgrammedRecord {
    dir: PathBuf,
    state: EngineState,
}

impl ProgrammedRecord {
    /// Write `programmed.json` (atomically: temporary file, rename).
    pub fn write(self) -> Result<(), CniError> {
        write_programmed(&self.dir, &self.state)
    }
}

/// [`sync_state`] from a [`Prepared`] start (checked against the file here, so it may have
/// been prepared before the lock was taken), leaving the record of the programmed inputs to
/// the caller. Call with the node state lock held.
pub fn sync_state_from(
    dir: &Path,
    data: &StateData,
    prepared: Prepared,
) -> Result<(Engine, ProgrammedRecord), CniError> {
    program(dir, stage(dir, data, prepared)?)
}

/// The inputs of a sync and, when the programmed state could be used, the engine moved to
/// them in memory (nothing sent to the kernel yet).
struct Staged {
    desired: EngineState,
    /// `None`: no usable programmed state; [`program`] builds the engine from `desired` and
    /// replaces the table whole.
    engine: Option<Engine>,
}

/// Move the prepared engine to the inputs of `data` (checked against `programmed.json`;
/// call with the node state lock held).
fn stage(dir: &Path, data: &StateData, prepared: Prepared) -> Result<Staged, CniError> {
    let desired = engine_state(data)?;
    let usable = |s: &EngineState| s.mode == desired.mode && s.table == desired.table;
    let engine = match prepared.current(dir) {
        Prepared {
            saved: Some(s),
            engine: Some(Ok(mut e)),
            ..
        } if usable(&s) => {
            apply_inputs(&mut e, &s, &desired)?;
            Some(e)
        }
        _ => None,
    };
    Ok(Staged { desired, engine })
}

/// Program a staged sync into the kernel.
fn program(dir: &Path, staged: Staged) -> Result<(Engine, ProgrammedRecord), CniError> {
    let Staged { desired, engine } = staged;
    // No claim about the kernel while we change it.
    match std::fs::remove_file(dir.join(PROGRAMMED_FILE)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(CniError::io(format!("{}: {e}", dir.display()))),
    }
    let mut engine = match engine {
        Some(e) => e,
        None => engine_of(&desired)?,
    };
    if let Err(first) = engine.sync() {
        // The kernel was not as assumed: replace the table whole.
        engine.forget_programmed();
        engine
            .sync()
            .map_err(|e| policy_error(format!("programming nftables: {e} (after: {first})")))?;
    }
    // Recorded with the inputs: while nobody commits to nftables in this netns, the next
    // process trusts the table without reading it back.
    let mut state = desired;
    state.kernel = engine.kernel_mark().cloned();
    Ok((
        engine,
        ProgrammedRecord {
            dir: dir.to_path_buf(),
            state,
        },
    ))
}

/// CHECK's policy half: the last successful sync programmed this endpoint with its current
/// addresses, host interface and labels (`Err` says what differs).
pub fn check_programmed(dir: &Path, rec: &EndpointRecord) -> Result<(), String> {
    let Some(saved) = read_programmed(dir) else {
        return Err("no successful policy sync is recorded for this node".into());
    };
    // By interface: the engine's name of an attachment that shares its pod's name is
    // qualified ([`state_endpoint`]).
    let Some(ep) = saved.endpoints.iter().find(|e| {
        e.namespace == rec.namespace
            && e.host_ifname.as_deref() == Some(rec.host_ifname.as_str())
            && (e.name == rec.name || e.name == format!("{}/{}", rec.name, rec.host_ifname))
    }) else {
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
///
/// Off the critical path, on helper threads: [`PolicySync::prepare`] reads and rebuilds the
/// programmed state while the caller works on; given the node state by
/// [`PolicySync::begin_sync`], the same thread moves the engine to every input but the
/// attachment being added (while its address is allocated), so that
/// [`PolicySync::start_sync_endpoint`] only adds that one endpoint before programming. A
/// sync's record (`programmed.json`) is written while the caller attaches, and
/// [`PolicySync::settle`] waits for it.
#[derive(Default)]
pub struct EngineSync {
    last: Option<Engine>,
    preparing: Option<Preparing>,
    programming: Option<Helper<WorkerEnd>>,
    /// Told by the helper in `programming` as soon as the kernel holds the sync (before it
    /// writes the record and frees its engine).
    programmed_signal: Option<mpsc::Receiver<Signal>>,
    /// The same channel once [`Signal::Programmed`] came: [`Signal::Recorded`] follows.
    recorded_signal: Option<mpsc::Receiver<Signal>>,
    recording: Option<Helper<Result<(), CniError>>>,
    /// A helper that programmed a sync and is writing its record ([`Signal::Recorded`]).
    finishing: Option<Helper<WorkerEnd>>,
}

/// What a sync on a helper thread hands back.
type Programmed = Result<(Engine, ProgrammedRecord), CniError>;

/// The helper thread [`PolicySync::prepare`] started, and the steps it may still be given.
struct Preparing {
    dir: PathBuf,
    steps: mpsc::Sender<Step>,
    /// [`Step::Begin`] was sent.
    begun: bool,
    helper: Helper<WorkerEnd>,
}

/// A step for the preparing thread.
enum Step {
    /// Stage the sync of this node state (the attachment being added has no addresses yet).
    Begin(Box<StateData>),
    /// The attachment's record as it is now (with its addresses): finish and program, say
    /// so on the sender once the kernel holds it ([`Signal::Programmed`]), then write the
    /// record, say so ([`Signal::Recorded`]) and free the engine (off the caller's path).
    Finish(Box<EndpointRecord>, mpsc::Sender<Signal>),
}

/// What the helper of a [`Step::Finish`] tells as it goes.
enum Signal {
    /// The kernel holds the sync.
    Programmed,
    /// Its record was written (the result of the write).
    Recorded(Result<(), CniError>),
}

/// How a policy helper thread ended.
enum WorkerEnd {
    /// Joined without steps: the programmed state it read and rebuilt.
    Prepared(Prepared),
    /// It programmed a sync.
    Programmed(Programmed),
    /// It programmed a sync, said so, and wrote its record (the result of the write, when
    /// it could not be told on the signal channel).
    Recorded(Result<(), CniError>),
    /// A begun sync was abandoned (the ADD failed before its address was known).
    Abandoned,
}

fn prepare_and_work(dir: PathBuf, steps: mpsc::Receiver<Step>) -> WorkerEnd {
    let prepared = prepare(&dir);
    let Ok(Step::Begin(data)) = steps.recv() else {
        return WorkerEnd::Prepared(prepared);
    };
    let staged = stage(&dir, &data, prepared);
    match steps.recv() {
        Ok(Step::Finish(rec, programmed)) => {
            match staged
                .and_then(|st| stage_endpoint(*data, st, *rec))
                .and_then(|st| program(&dir, st))
            {
                Ok((engine, record)) if programmed.send(Signal::Programmed).is_ok() => {
                    let written = record.write();
                    let end = match programmed.send(Signal::Recorded(written)) {
                        Ok(()) => WorkerEnd::Recorded(Ok(())),
                        Err(mpsc::SendError(Signal::Recorded(w))) => WorkerEnd::Recorded(w),
                        Err(_) => WorkerEnd::Recorded(Ok(())),
                    };
                    // Freeing the engine and the staged state (and closing the nftables
                    // socket) costs ~0.1 ms: here, after the record was told, while the
                    // caller releases the lock and reports (nobody waits for it).
                    drop(engine);
                    end
                }
                done => WorkerEnd::Programmed(done),
            }
        }
        _ => WorkerEnd::Abandoned,
    }
}

/// Finish staging a sync of `data` (staged without the attachment of `rec`), now that `rec`
/// (its record with addresses) is known: the engine gets that one endpoint (and its
/// namespace) instead of a comparison of every input. The result equals [`stage`] of
/// `data` with `rec`; where a shortcut could differ (another record of the same pod, the
/// record already staged with addresses, no usable programmed state) every input is
/// compared as there.
fn stage_endpoint(
    mut data: StateData,
    mut staged: Staged,
    rec: EndpointRecord,
) -> Result<Staged, CniError> {
    let was_staged = data
        .endpoint(&rec.container_id, &rec.ifname)
        .is_some_and(|r| !r.addresses.is_empty());
    let same_pod = data.endpoints.iter().any(|r| {
        !r.is(&rec.container_id, &rec.ifname)
            && !r.addresses.is_empty()
            && r.namespace == rec.namespace
            && r.name == rec.name
    });
    let one = (!was_staged && !same_pod && !rec.addresses.is_empty())
        .then(|| state_endpoint(&rec, false));
    data.upsert_endpoint(rec);
    match (one, staged.engine.as_mut()) {
        (Some(ep), Some(e)) => {
            if !staged.desired.namespaces.contains_key(&ep.namespace) {
                e.upsert_namespace(&ep.namespace, Default::default());
                staged
                    .desired
                    .namespaces
                    .insert(ep.namespace.clone(), Default::default());
            }
            upsert_state_endpoint(e, &ep)?;
            staged.desired.endpoints.push(ep);
        }
        (_, engine) => {
            let desired = engine_state(&data)?;
            if let Some(e) = engine {
                apply_inputs(e, &staged.desired, &desired)?;
            }
            staged.desired = desired;
        }
    }
    Ok(staged)
}

/// A sync to run on a helper thread: the state directory, the node state, and what was
/// being prepared for it.
struct Background {
    dir: PathBuf,
    data: StateData,
    preparing: Option<Preparing>,
}

/// The programmed state to start a sync in `dir` from: the preparing thread's when it read
/// that directory and was given no sync, else read here.
fn take_prepared(dir: &Path, preparing: Option<Preparing>) -> Prepared {
    let Some(Preparing {
        dir: d,
        steps,
        begun,
        helper,
    }) = preparing
    else {
        return prepare(dir);
    };
    drop(steps);
    match helper.join() {
        Some(WorkerEnd::Prepared(p)) if d == dir && !begun => p,
        _ => prepare(dir),
    }
}

fn run_background(b: Background) -> WorkerEnd {
    let prepared = take_prepared(&b.dir, b.preparing);
    WorkerEnd::Programmed(sync_state_from(&b.dir, &b.data, prepared))
}

impl std::fmt::Debug for EngineSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineSync")
            .field("holds_engine", &self.last.is_some())
            .field("preparing", &self.preparing.is_some())
            .field("programming", &self.programming.is_some())
            .field("recording", &self.recording.is_some())
            .field("finishing", &self.finishing.is_some())
            .finish()
    }
}

impl EngineSync {
    /// The start for a sync in `dir`: the helper's, when it prepared that directory (checked
    /// against the file by [`sync_state_from`]), else read here.
    fn take_prepared(&mut self, dir: &Path) -> Prepared {
        take_prepared(dir, self.preparing.take())
    }

    /// Keep a sync's engine and write its record on a helper thread.
    fn programmed(&mut self, engine: Engine, record: ProgrammedRecord) -> Result<(), CniError> {
        self.last = Some(engine);
        match spawn_with("policy-record", record, ProgrammedRecord::write) {
            Ok(h) => self.recording = Some(h),
            Err(record) => record.write()?,
        }
        Ok(())
    }

    /// Before a new sync: wait for the last one and its record, and drop its engine.
    fn finish_last(&mut self) -> Result<(), CniError> {
        let _ = self.wait_programmed();
        self.last = None;
        self.settle_record()
    }
}

impl PolicySync for EngineSync {
    fn prepare(&mut self, conf: &CnetConf) {
        self.settle_quietly();
        let dir = conf.policy.state_dir.clone();
        let (steps, rx) = mpsc::channel();
        let d = dir.clone();
        if let Some(helper) = spawn("policy-prepare", move || prepare_and_work(d, rx)) {
            self.preparing = Some(Preparing {
                dir,
                steps,
                begun: false,
                helper,
            });
        }
    }

    fn sync(&mut self, conf: &CnetConf, state: &StateData) -> Result<(), CniError> {
        self.finish_last()?;
        let dir = &conf.policy.state_dir;
        let prepared = self.take_prepared(dir);
        let (engine, record) = sync_state_from(dir, state, prepared)?;
        self.programmed(engine, record)
    }

    fn begin_sync(&mut self, conf: &CnetConf, state: &StateData) {
        if let Some(p) = self.preparing.as_mut()
            && p.dir == conf.policy.state_dir
            && !p.begun
        {
            p.begun = p.steps.send(Step::Begin(Box::new(state.clone()))).is_ok();
        }
    }

    fn start_sync(&mut self, conf: &CnetConf, state: &StateData) -> Result<(), CniError> {
        self.finish_last()?;
        let job = Background {
            dir: conf.policy.state_dir.clone(),
            data: state.clone(),
            preparing: self.preparing.take(),
        };
        match spawn_with("policy-sync", job, run_background) {
            Ok(h) => {
                self.programming = Some(h);
                Ok(())
            }
            Err(job) => match run_background(job) {
                WorkerEnd::Programmed(r) => {
                    let (engine, record) = r?;
                    self.programmed(engine, record)
                }
                _ => Err(CniError::io("the policy sync ended without programming")),
            },
        }
    }

    fn start_sync_endpoint(
        &mut self,
        conf: &CnetConf,
        state: &StateData,
        container_id: &str,
        ifname: &str,
    ) -> Result<(), CniError> {
        let begun = self
            .preparing
            .as_ref()
            .is_some_and(|p| p.begun && p.dir == conf.policy.state_dir);
        if let (true, Some(rec)) = (begun, state.endpoint(container_id, ifname)) {
            self.finish_last()?;
            if let Some(p) = self.preparing.take() {
                let (tx, rx) = mpsc::channel();
                if p.steps
                    .send(Step::Finish(Box::new(rec.clone()), tx))
                    .is_ok()
                {
                    self.programming = Some(p.helper);
                    self.programmed_signal = Some(rx);
                    return Ok(());
                }
                // The thread is gone: sync the whole state below.
                let _ = p.helper.join();
            }
        }
        self.start_sync(conf, state)
    }

    fn wait_programmed(&mut self) -> Result<(), CniError> {
        if let Some(signal) = self.programmed_signal.take()
            && matches!(signal.recv(), Ok(Signal::Programmed))
        {
            // Programmed; the helper writes the record, waited for by `settle_record`.
            self.finishing = self.programming.take();
            self.recorded_signal = Some(signal);
            return Ok(());
        }
        match self.programming.take().map(Helper::join) {
            None => Ok(()),
            Some(Some(WorkerEnd::Programmed(Ok((engine, record))))) => {
                self.programmed(engine, record)
            }
            Some(Some(WorkerEnd::Programmed(Err(e)))) => Err(e),
            Some(Some(_)) => Err(CniError::io("the policy sync ended without programming")),
            Some(None) => Err(CniError::io("the policy sync thread panicked")),
        }
    }

    fn settle(&mut self) -> Result<(), CniError> {
        if let Some(p) = self.preparing.take() {
            drop(p.steps);
            let _ = p.helper.join();
        }
        let programmed = self.wait_programmed();
        self.settle_record().and(programmed)
    }

    fn release(&mut self) {
        self.settle_quietly();
        self.last = None;
    }
}

impl EngineSync {
    /// Wait for the last sync's record to be written.
    fn settle_record(&mut self) -> Result<(), CniError> {
        if let (Some(signal), Some(helper)) = (self.recorded_signal.take(), self.finishing.take()) {
            match signal.recv() {
                // The record is written; the helper frees its engine on its own (detached:
                // it touches nothing anyone reads, and ends by itself or with the process).
                Ok(Signal::Recorded(r)) => {
                    drop(helper);
                    return r.and(self.settle_recording());
                }
                _ => self.finishing = Some(helper),
            }
        }
        let finished = match self.finishing.take().map(Helper::join) {
            None => Ok(()),
            Some(Some(WorkerEnd::Recorded(r))) => r,
            Some(Some(_)) => Err(CniError::io("the policy sync ended without its record")),
            Some(None) => Err(CniError::io("the policy sync thread panicked")),
        };
        finished.and(self.settle_recording())
    }

    /// Wait for a record thread's write.
    fn settle_recording(&mut self) -> Result<(), CniError> {
        match self.recording.take().map(Helper::join) {
            None => Ok(()),
            Some(Some(r)) => r,
            Some(None) => Err(CniError::io("the policy record thread panicked")),
        }
    }

    fn settle_quietly(&mut self) {
        let _ = self.settle();
    }
}

impl Drop for EngineSync {
    fn drop(&mut self) {
        self.settle_quietly();
    }
}

/// The state directory of a network: `root/<network>`.
pub fn state_dir(root: &Path, network: &str) -> PathBuf {
    root.join(network)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cnet::state::Phase;

    fn rec(cid: &str, ns: &str, name: &str, addr: Option<&str>, app: &str) -> EndpointRecord {
        let labels = [("app", app), ("cnet.io/namespace", ns)]
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        EndpointRecord {
            container_id: cid.into(),
            ifname: "eth0".into(),
            netns: format!("/var/run/netns/{cid}"),
            host_ifname: format!("cnet{cid}"),
            addresses: addr.map(|a| a.parse().unwrap()).into_iter().collect(),
            namespace: ns.into(),
            name: name.into(),
            labels,
            labels_known: true,
            mode: "transparent".into(),
            phase: if addr.is_some() {
                Phase::Ready
            } else {
                Phase::Pending
            },
            ports: Vec::new(),
        }
    }

    fn node(endpoints: Vec<EndpointRecord>) -> StateData {
        let np = serde_json::json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "web", "namespace": "a"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                                  "ports": [{"port": 80, "protocol": "TCP"}]}]}
        });
        let mut d = StateData {
            mode: "transparent".into(),
            table: "cnet_t".into(),
            endpoints,
            policies: vec![StoredPolicy {
                kind: "NetworkPolicy".into(),
                namespace: "a".into(),
                name: "web".into(),
                object: np,
            }],
            ..StateData::default()
        };
        d.endpoints
            .sort_by(|x, y| (&x.container_id, &x.ifname).cmp(&(&y.container_id, &y.ifname)));
        d
    }

    fn sorted(mut st: EngineState) -> EngineState {
        st.endpoints.sort_by(|x, y| {
            (&x.namespace, &x.name, &x.addresses).cmp(&(&y.namespace, &y.name, &y.addresses))
        });
        st
    }

    /// Staging an ADD in two steps (every input but the new attachment, then that one) equals
    /// staging the final node state at once, and (`scratch`) a from-scratch engine.
    fn two_steps_equal_one(
        programmed: &StateData,
        begin: StateData,
        added: EndpointRecord,
        scratch: bool,
    ) {
        let dir = tempfile::tempdir().unwrap();
        write_programmed(dir.path(), &engine_state(programmed).unwrap()).unwrap();
        let mut fin = begin.clone();
        fin.upsert_endpoint(added.clone());
        let staged = stage(dir.path(), &begin, prepare(dir.path())).unwrap();
        assert!(staged.engine.is_some(), "the programmed state is used");
        let two = stage_endpoint(begin, staged, added).unwrap();
        let one = stage(dir.path(), &fin, prepare(dir.path())).unwrap();
        assert_eq!(sorted(two.desired.clone()), sorted(one.desired.clone()));
        assert_eq!(
            sorted(two.desired.clone()),
            sorted(engine_state(&fin).unwrap())
        );
        let text = |s: Staged| s.engine.unwrap().render().unwrap();
        let from_scratch = engine_for(&fin).unwrap().render().unwrap();
        let (two, one) = (text(two), text(one));
        assert_eq!(two, one);
        if scratch {
            assert_eq!(two, from_scratch);
        }
    }

    fn running() -> Vec<EndpointRecord> {
        vec![
            rec("c1", "a", "web-1", Some("10.1.0.2/32"), "web"),
            rec("c2", "a", "client-1", Some("10.1.0.3/32"), "client"),
            rec("c3", "b", "other", Some("10.1.0.4/32"), "client"),
        ]
    }

    #[test]
    fn add_to_an_existing_namespace_in_two_steps() {
        let before = node(running());
        let mut begin = running();
        begin.push(rec("c9", "a", "web-2", None, "web"));
        let added = rec("c9", "a", "web-2", Some("10.1.0.9/32"), "web");
        two_steps_equal_one(&before, node(begin), added, true);
    }

    #[test]
    fn add_in_a_new_namespace_and_with_pending_labels_in_two_steps() {
        let before = node(running());
        let mut begin = running();
        begin.push(rec("c9", "new", "client-9", None, "client"));
        let added = rec("c9", "new", "client-9", Some("10.1.0.9/32"), "client");
        two_steps_equal_one(&before, node(begin.clone()), added, true);
        let mut pending = rec("c9", "new", "client-9", Some("10.1.0.9/32"), "client");
        pending.labels_known = false;
        two_steps_equal_one(&before, node(begin), pending, true);
    }

    #[test]
    fn a_second_record_of_the_same_pod_compares_every_input() {
        // The pod restarted: its old attachment is still recorded with an address. Each of
        // the two is an endpoint of its own (named after its interface), whichever path
        // moved the engine there.
        let before = node(running());
        let mut begin = running();
        begin.push(rec("c0", "a", "web-1", None, "web"));
        let added = rec("c0", "a", "web-1", Some("10.1.0.9/32"), "web");
        two_steps_equal_one(&before, node(begin.clone()), added.clone(), true);
        let mut fin = node(begin);
        fin.upsert_endpoint(added);
        let st = engine_state(&fin).unwrap();
        let mut web: Vec<(&str, Option<&str>)> = st
            .endpoints
            .iter()
            .filter(|e| e.labels.get("app").map(String::as_str) == Some("web"))
            .map(|e| (e.name.as_str(), e.host_ifname.as_deref()))
            .collect();
        web.sort_unstable();
        assert_eq!(
            web,
            [
                ("web-1/cnetc0", Some("cnetc0")),
                ("web-1/cnetc1", Some("cnetc1"))
            ]
        );
        // Both interfaces are in the policy's subject set of the rendered table.
        let text = engine_for(&fin).unwrap().render().unwrap();
        assert!(
            text.contains("\"cnetc0\"") && text.contains("\"cnetc1\""),
            "{text}"
        );
        // One goes: the other is the pod's only attachment again, under the pod's name.
        fin.remove_endpoint("c1", "eth0");
        let st = engine_state(&fin).unwrap();
        assert!(st.endpoints.iter().any(|e| e.name == "web-1"));
        // CHECK finds each attachment's programmed endpoint by its interface.
        let dir = tempfile::tempdir().unwrap();
        let mut two = node(running());
        two.upsert_endpoint(rec("c0", "a", "web-1", Some("10.1.0.9/32"), "web"));
        write_programmed(dir.path(), &engine_state(&two).unwrap()).unwrap();
        for r in &two.endpoints {
            check_programmed(dir.path(), r).unwrap();
        }
    }
}
