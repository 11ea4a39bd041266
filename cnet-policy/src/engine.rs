//! The [`Engine`]: the face other tools call. It holds namespaces, endpoints (with their host
//! interface), nodes and policies; compiles them ([`crate::compile`]) to the nftables IR and
//! programs the kernel with one minimal atomic batch per [`Engine::sync`].
//!
//! A one-shot process (a CNI plugin call) rebuilds the engine from its saved [`EngineState`]
//! with [`Engine::from_state`]; its first sync then checks cheaply that the kernel still holds
//! what that state compiles to and, if so, sends only the difference (else it replaces our
//! table whole).
//!
//! ```
//! use cnet_policy::compile::Mode;
//! use cnet_policy::engine::Engine;
//! use cnet_policy::{parse_yaml, Endpoint};
//! use std::collections::BTreeMap;
//!
//! let mut engine = Engine::new(Mode::Transparent);
//! let labels = BTreeMap::from([("app".to_string(), "db".to_string())]);
//! engine.upsert_endpoint(
//!     Endpoint::new("prod", "db-0", labels, vec!["10.0.0.2".parse()?]),
//!     Some("cnet0000aaaa".into()),
//! );
//! for np in parse_yaml(
//!     "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
//!      metadata: {name: deny-all, namespace: prod}\nspec: {podSelector: {}}\n",
//! )? {
//!     engine.apply_policy(&np)?;
//! }
//! let text = engine.render()?;
//! assert!(text.contains("table inet cnet"));
//! // engine.sync()?;  // needs root, in the node's network namespace
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::admin::{AdminPolicyObject, admin_tiers};
use crate::api::NetworkPolicy;
use crate::compile::{Attachments, CompileError, CompileOptions, Fam, Mode, compile};
use crate::endpoint::{Endpoint, EndpointId, Inventory, NamedPort, Node};
use crate::error::PolicyError;
use crate::live::Live;
use crate::membership::Structure;
use crate::model::{Labels, Policy, PolicyId, PolicyKind, PolicySet, Protocol, Tier};
use crate::nft::{NftError, Programmer, Ruleset, SyncKind, SyncReport, diff, render_ruleset};
use crate::normalize::{KUBERNETES_TIER, normalize_network_policy};

#[path = "engine_calico.rs"]
mod engine_calico;
pub use engine_calico::{CalicoKey, host_table_name};

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A policy object is invalid (nothing was changed).
    #[error("policy {object}: {source}")]
    Policy {
        /// `namespace/name` of the object.
        object: String,
        /// Why.
        source: PolicyError,
    },
    /// The state cannot be compiled (bad interface or table name).
    #[error("compile: {0}")]
    Compile(#[from] CompileError),
    /// Programming the kernel failed.
    #[error("program: {0}")]
    Nft(#[from] NftError),
    /// A saved state could not be read back.
    #[error("engine state: {0}")]
    State(String),
}

/// An endpoint as it was at the last refresh of the live state.
#[derive(Debug, Clone)]
struct Stashed {
    ep: Endpoint,
    ifname: Option<String>,
    pending: bool,
}

/// Policies, endpoints and the programmed state of one node.
pub struct Engine {
    opts: CompileOptions,
    inventory: Inventory,
    attachments: Attachments,
    network_policies: BTreeMap<PolicyId, (NetworkPolicy, Policy)>,
    admin_policies: BTreeMap<(String, String), AdminPolicyObject>,
    /// `projectcalico.org/v3` objects as applied (see [`Engine::apply_calico`]).
    calico: BTreeMap<CalicoKey, serde_json::Value>,
    /// Tiers set wholesale with [`Engine::set_policy_set`] (replaces the objects above).
    policy_set: Option<PolicySet>,
    cached: Option<PolicySet>,
    programmer: Option<Programmer>,
    /// Ruleset the kernel is assumed to hold (from a saved state), checked at the first sync.
    assumed: Option<Ruleset>,
    /// The saved state's [`KernelMark`]: when the kernel still shows it, the check above
    /// needs no read-back.
    assumed_mark: Option<KernelMark>,
    /// The mark of the last sync, when it is certain (see [`Engine::kernel_mark`]).
    mark: Option<KernelMark>,
    /// Incremental state (structure + per-endpoint contributions), when the table allows it.
    live: Option<Live>,
    /// Policies, namespaces, nodes or host-network endpoints changed: rebuild the structure.
    structure_dirty: bool,
    /// Endpoints changed since the live state was last brought up to date, with their state
    /// then (`None`: absent), from which their old contribution is recomputed.
    dirty: BTreeMap<EndpointId, Option<Stashed>>,
    /// The live state was rebuilt since the last sync: the next sync diffs whole.
    rebuilt: bool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("mode", &self.opts.mode)
            .field("table", &self.opts.table)
            .field("endpoints", &self.inventory.endpoints.len())
            .field("network_policies", &self.network_policies.len())
            .field("admin_policies", &self.admin_policies.len())
            .finish()
    }
}

impl Engine {
    /// An empty engine for a mode, table `cnet`, every endpoint local.
    pub fn new(mode: Mode) -> Engine {
        Engine::with_options(CompileOptions::new(mode))
    }

    /// An empty engine with explicit compiler options.
    pub fn with_options(opts: CompileOptions) -> Engine {
        Engine {
            opts,
            inventory: Inventory::default(),
            attachments: Attachments::default(),
            network_policies: BTreeMap::new(),
            admin_policies: BTreeMap::new(),
            calico: BTreeMap::new(),
            policy_set: None,
            cached: None,
            programmer: None,
            assumed: None,
            assumed_mark: None,
            mark: None,
            live: None,
            structure_dirty: true,
            dirty: BTreeMap::new(),
            rebuilt: true,
        }
    }

    /// The compiler options.
    pub fn options(&self) -> &CompileOptions {
        &self.opts
    }

    /// Namespaces, endpoints and nodes as the evaluator sees them.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// Host interfaces and pending endpoints.
    pub fn attachments(&self) -> &Attachments {
        &self.attachments
    }

    /// Add or replace an endpoint; `host_ifname` is its host-side interface on this node
    /// (required for dispatch in transparent mode). Clears a pending mark.
    pub fn upsert_endpoint(&mut self, ep: Endpoint, host_ifname: Option<String>) {
        let id = ep.id();
        self.endpoint_changed(&id, ep.host_network);
        self.attachments.pending.remove(&id);
        match host_ifname {
            Some(n) => {
                self.attachments.host_ifname.insert(id, n);
            }
            None => {
                self.attachments.host_ifname.remove(&id);
            }
        }
        self.inventory.upsert_endpoint(ep);
    }

    /// Add an endpoint whose traffic must drop until [`Engine::upsert_endpoint`] is called
    /// for it (fail closed while a pod is being set up).
    pub fn upsert_pending_endpoint(&mut self, ep: Endpoint, host_ifname: Option<String>) {
        let id = ep.id();
        self.upsert_endpoint(ep, host_ifname);
        self.attachments.pending.insert(id);
    }

    /// Remove an endpoint; returns whether it was known.
    pub fn remove_endpoint(&mut self, id: &EndpointId) -> bool {
        self.endpoint_changed(id, false);
        self.attachments.pending.remove(id);
        self.attachments.host_ifname.remove(id);
        self.inventory.remove_endpoint(id).is_some()
    }

    /// Mark an endpoint for the incremental path; host-network endpoints feed node sets,
    /// which belong to the structure.
    fn endpoint_changed(&mut self, id: &EndpointId, host_network: bool) {
        let was_host = self
            .inventory
            .endpoints
            .get(id)
            .is_some_and(|e| e.host_network);
        if host_network || was_host {
            self.structure_dirty = true;
        }
        if self.structure_dirty || self.live.is_none() {
            // The next refresh rebuilds everything: nothing to remember.
            self.dirty.clear();
            return;
        }
        if !self.dirty.contains_key(id) {
            let then = self.inventory.endpoints.get(id).map(|ep| Stashed {
                ep: ep.clone(),
                ifname: self.attachments.host_ifname.get(id).cloned(),
                pending: self.attachments.pending.contains(id),
            });
            self.dirty.insert(id.clone(), then);
        }
    }

    /// Add or replace a namespace and its labels.
    pub fn upsert_namespace(&mut self, name: &str, labels: Labels) {
        if self.inventory.namespaces.get(name) != Some(&labels) {
            self.structure_dirty = true;
        }
        self.inventory.upsert_namespace(name, labels);
    }

    /// Add or replace a node (its addresses feed node-selector peers).
    pub fn upsert_node(&mut self, node: Node) {
        self.structure_dirty = true;
        self.inventory.upsert_node(node);
    }

    /// Add or replace a Kubernetes NetworkPolicy (validated; an invalid one changes nothing).
    pub fn apply_policy(&mut self, np: &NetworkPolicy) -> Result<PolicyId, EngineError> {
        let p = normalize_network_policy(np).map_err(|source| EngineError::Policy {
            object: np.describe(),
            source,
        })?;
        let id = p.id.clone();
        self.network_policies.insert(id.clone(), (np.clone(), p));
        self.cached = None;
        self.structure_dirty = true;
        Ok(id)
    }

    /// Add or replace an AdminNetworkPolicy or BaselineAdminNetworkPolicy.
    pub fn apply_admin_policy(&mut self, o: &AdminPolicyObject) -> Result<PolicyId, EngineError> {
        let p = o.to_policy().map_err(|source| EngineError::Policy {
            object: format!("{} {}", o.kind, o.metadata.name.clone()),
            source,
        })?;
        let key = (o.kind.clone(), o.metadata.name.clone());
        self.admin_policies.insert(key, o.clone());
        self.cached = None;
        self.structure_dirty = true;
        Ok(p.id)
    }

    /// Delete a policy by id; returns whether it was there.
    pub fn delete_policy(&mut self, id: &PolicyId) -> bool {
        let found = match id.kind {
            PolicyKind::NetworkPolicy => self.network_policies.remove(id).is_some(),
            _ => {
                let key = self
                    .admin_policies
                    .iter()
                    .find(|(_, o)| o.to_policy().is_ok_and(|p| p.id == *id))
                    .map(|(k, _)| k.clone());
                key.is_some_and(|k| self.admin_policies.remove(&k).is_some())
            }
        };
        if found {
            self.cached = None;
            self.structure_dirty = true;
        }
        found
    }

    /// Replace every policy with an already normalised policy set (labs, tests). Objects
    /// applied before are dropped; later `apply_*` calls go back to object mode.
    pub fn set_policy_set(&mut self, set: PolicySet) {
        self.network_policies.clear();
        self.admin_policies.clear();
        self.calico.clear();
        self.policy_set = Some(set);
        self.cached = None;
        self.structure_dirty = true;
    }

    /// The policy tiers as the compiler and the evaluator see them.
    pub fn policy_set(&mut self) -> Result<&PolicySet, EngineError> {
        if self.cached.is_none() {
            let set = if self.network_policies.is_empty()
                && self.admin_policies.is_empty()
                && self.calico.is_empty()
            {
                self.policy_set.clone().unwrap_or_default()
            } else {
                self.build_policy_set()?
            };
            self.cached = Some(set);
        }
        Ok(self.cached.get_or_insert_with(PolicySet::default))
    }

    fn build_policy_set(&self) -> Result<PolicySet, EngineError> {
        if !self.calico.is_empty() {
            return self.build_calico_policy_set();
        }
        let admin: Vec<AdminPolicyObject> = self.admin_policies.values().cloned().collect();
        let (anp, banp) = admin_tiers(&admin).map_err(|source| EngineError::Policy {
            object: "admin policies".into(),
            source,
        })?;
        let k8s = Tier {
            name: KUBERNETES_TIER.to_string(),
            kind: crate::model::TierKind::NetworkPolicy,
            policies: self
                .network_policies
                .values()
                .map(|(_, p)| p.clone())
                .collect(),
            default: crate::model::TierDefault::Deny,
        };
        Ok(PolicySet {
            tiers: [anp, k8s, banp]
                .into_iter()
                .filter(|t| !t.policies.is_empty())
                .collect(),
        })
    }

    /// The desired nftables state.
    pub fn desired(&mut self) -> Result<Ruleset, EngineError> {
        self.refresh()?;
        match &self.live {
            Some(live) => Ok(live.ruleset.clone()),
            None => self.compile_whole(),
        }
    }

    fn compile_whole(&mut self) -> Result<Ruleset, EngineError> {
        self.policy_set()?;
        let empty = PolicySet::default();
        let set = self.cached.as_ref().unwrap_or(&empty);
        let pods = compile(set, &self.inventory, &self.attachments, &self.opts)?;
        self.with_host_table(pods)
    }

    /// Compute the desired state without touching the kernel (what [`Engine::sync`] does
    /// first): after endpoint changes only, just their elements; after policy, namespace,
    /// node or host-network changes, the whole table. An error (bad interface name) leaves
    /// the pending changes pending.
    pub fn prepare(&mut self) -> Result<(), EngineError> {
        self.refresh()
    }

    /// Bring the live state up to date: rebuild it when the structure changed, else replace
    /// the contributions of the changed endpoints only. Without a live state (a table whose
    /// sets the membership rules do not all describe) the engine compiles whole.
    fn refresh(&mut self) -> Result<(), EngineError> {
        self.policy_set()?;
        if self.structure_dirty || self.live.is_none() {
            self.live = None;
            self.rebuilt = true;
            let empty = PolicySet::default();
            let set = self.cached.as_ref().unwrap_or(&empty);
            // With host endpoints the host table is compiled with the pod table, whole.
            if self.has_host_endpoints() {
                return Ok(());
            }
            if let Some(structure) = Structure::build(set, &self.inventory, &self.opts)? {
                let live = Live::build(structure, &self.inventory, &self.attachments, &self.opts)?;
                self.live = Some(live);
                self.structure_dirty = false;
                self.dirty.clear();
            }
            return Ok(());
        }
        if self.pod_families_changed() {
            // A family's positive pod-set matches appear or go: a new structure.
            self.structure_dirty = true;
            self.dirty.clear();
            return self.refresh();
        }
        let Some(live) = self.live.as_mut() else {
            return Ok(());
        };
        // Compute every contribution first: an error (bad interface name) changes nothing.
        let mut updates = Vec::with_capacity(self.dirty.len());
        let s = &live.structure;
        for (id, then) in &self.dirty {
            let old = match then {
                Some(t) => {
                    let labels = self.inventory.namespace_labels(&t.ep.namespace);
                    s.contribution(&t.ep, &labels, t.ifname.as_ref(), t.pending, &self.opts)?
                }
                None => Vec::new(),
            };
            let new = match self.inventory.endpoints.get(id) {
                Some(ep) => {
                    let labels = self.inventory.namespace_labels(&ep.namespace);
                    let ifname = self.attachments.host_ifname.get(id);
                    let pending = self.attachments.pending.contains(id);
                    s.contribution(ep, &labels, ifname, pending, &self.opts)?
                }
                None => Vec::new(),
            };
            updates.push((id, old, new));
        }
        for (id, old, new) in updates {
            live.set_endpoint(id, &old, &new);
        }
        self.dirty.clear();
        Ok(())
    }

    /// Whether the changed endpoints make an address family of pod-network endpoints appear
    /// or disappear relative to the live structure (see [`crate::compile`]'s `PodFams`).
    fn pod_families_changed(&self) -> bool {
        let Some(live) = &self.live else {
            return false;
        };
        let has = |ep: &Endpoint, f: Fam| {
            !ep.host_network && ep.addresses.iter().any(|a| Fam::of(*a) == f)
        };
        for f in [Fam::V4, Fam::V6] {
            let compiled = live.structure.pod_fams[f.index()];
            let mut added = false;
            let mut removed = false;
            for (id, then) in &self.dirty {
                added |= self.inventory.endpoints.get(id).is_some_and(|e| has(e, f));
                removed |= then.as_ref().is_some_and(|t| has(&t.ep, f));
            }
            if added && !compiled {
                return true;
            }
            if removed && compiled && !added {
                let now = self.inventory.endpoints.values().any(|e| has(e, f));
                if !now {
                    return true;
                }
            }
        }
        false
    }

    /// The desired state as `nft -f` text.
    pub fn render(&mut self) -> Result<String, EngineError> {
        Ok(render_ruleset(&self.desired()?))
    }

    /// Use this programmer (opened in the node's network namespace) instead of opening one
    /// in the calling thread's namespace at the first sync.
    pub fn set_programmer(&mut self, p: Programmer) {
        self.programmer = Some(p);
    }

    /// Bring the kernel to the desired state in one atomic batch: the diff against what was
    /// programmed last, or a full replacement of our table when it was deleted, flushed or
    /// changed by someone else (or on the first sync of an engine without a known state).
    pub fn sync(&mut self) -> Result<SyncReport, EngineError> {
        // Certain again only where the incremental path below says so.
        self.mark = None;
        self.refresh()?;
        if self.programmer.is_none() {
            self.programmer = Some(Programmer::new()?);
        }
        if self.assumed.is_none()
            && let Some(live) = self.live.as_mut()
        {
            let changes = live.take_changes();
            let Some(p) = self.programmer.as_mut() else {
                return Err(EngineError::State("no programmer".into()));
            };
            let report = if self.rebuilt {
                p.sync(&live.ruleset)
            } else {
                p.sync_elements(&changes, &live.ruleset)
            };
            // On failure the programmer forgot its state: the next sync replaces whole.
            self.rebuilt = false;
            return Ok(report?);
        }
        let desired = self.desired()?;
        if let Some(live) = self.live.as_mut() {
            live.take_changes();
        }
        self.rebuilt = false;
        let Some(p) = self.programmer.as_mut() else {
            return Err(EngineError::State("no programmer".into()));
        };
        if let Some(assumed) = self.assumed.take() {
            // Read before anything else: a commit by anyone after this moves it on.
            let before = KernelMark::now(p)?;
            let unchanged = before.is_some() && before == self.assumed_mark.take();
            if !unchanged && !kernel_has_shape(p, &assumed)? {
                return Ok(p.sync(&desired)?);
            }
            // The kernel holds what the saved state compiles to (no commit at all since it
            // was recorded, or the same shape): send only the difference.
            let changes = diff(&assumed, &desired);
            let n = changes.changes.len();
            if n > 0 {
                p.apply(&changes)?;
            }
            // Certain only if no other commit came between the read above and ours.
            self.mark = match before {
                Some(m) if n == 0 => Some(m),
                Some(mut m) => {
                    let after = p.generation()?;
                    (after == m.generation.wrapping_add(1)).then(|| {
                        m.generation = after;
                        m
                    })
                }
                None => None,
            };
            return Ok(SyncReport {
                kind: if n == 0 {
                    SyncKind::NoChange
                } else {
                    SyncKind::Incremental
                },
                changes: n,
                drift: false,
            });
        }
        Ok(p.sync(&desired)?)
    }

    /// What the kernel held right after the last sync, when that is certain: the nftables
    /// generation of our commit (or of the read-back, when nothing was sent), in this
    /// network namespace and boot. Saved with the inputs ([`EngineState::kernel`]), it lets the
    /// next process skip the read-back check of [`Engine::from_state`] as long as nobody has
    /// committed anything since. `None` after a full replacement (whose generation may have
    /// been moved by another commit before it was read) and after errors.
    pub fn kernel_mark(&self) -> Option<&KernelMark> {
        self.mark.as_ref()
    }

    /// The ruleset the programmer last programmed successfully (its model of the kernel),
    /// if any.
    pub fn programmed(&self) -> Option<&Ruleset> {
        self.programmer.as_ref().and_then(Programmer::programmed)
    }

    /// Forget what was programmed: the next sync replaces our table whole.
    pub fn forget_programmed(&mut self) {
        if let Some(p) = self.programmer.as_mut() {
            p.forget();
        }
    }

    /// Everything needed to rebuild this engine in another process.
    pub fn state(&self) -> EngineState {
        EngineState::capture(self)
    }

    /// Rebuild an engine from a saved state, assuming the kernel holds what that state
    /// compiles to: the first [`Engine::sync`] verifies that cheaply (table, chain and set
    /// names, rule and element counts; no read-back at all when the kernel still shows the
    /// state's [`KernelMark`]) and then sends only the difference.
    pub fn from_state(state: &EngineState) -> Result<Engine, EngineError> {
        let mut e = state.restore()?;
        e.assumed = Some(e.desired()?);
        e.assumed_mark = state.kernel.clone();
        Ok(e)
    }
}

/// A serialisable snapshot of an engine's inputs (not of the kernel).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EngineState {
    /// `transparent` or `bridge`.
    pub mode: String,
    /// Table name.
    pub table: String,
    /// This node's name.
    #[serde(default)]
    pub node: Option<String>,
    /// Whether node-originated traffic to pods is always allowed.
    pub allow_from_resident_node: bool,
    /// Namespaces and their labels.
    #[serde(default)]
    pub namespaces: BTreeMap<String, Labels>,
    /// Endpoints.
    #[serde(default)]
    pub endpoints: Vec<StateEndpoint>,
    /// Nodes.
    #[serde(default)]
    pub nodes: Vec<StateNode>,
    /// Kubernetes NetworkPolicies as applied.
    #[serde(default)]
    pub network_policies: Vec<NetworkPolicy>,
    /// Admin and baseline admin policies as applied.
    #[serde(default)]
    pub admin_policies: Vec<AdminPolicyObject>,
    /// `projectcalico.org/v3` objects as applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calico_objects: Vec<serde_json::Value>,
    /// What the kernel held when these inputs were recorded ([`Engine::kernel_mark`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelMark>,
}

/// Where and when the kernel held exactly what an [`EngineState`] compiles to: the nftables
/// generation (moved on by every committed batch, from anyone) of one network namespace
/// (its cookie, unique within a boot) in one boot. A later process that reads the same three
/// knows that nothing was committed since, so our table is still as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KernelMark {
    /// nftables generation.
    pub generation: u32,
    /// `SO_NETNS_COOKIE` of the programmer's socket.
    pub netns_cookie: u64,
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
}

impl KernelMark {
    /// The mark of the kernel as it is now, for `p`'s namespace (`None` when the kernel
    /// cannot tell the namespace or the boot).
    fn now(p: &mut Programmer) -> Result<Option<KernelMark>, EngineError> {
        let (Some(netns_cookie), Some(boot_id)) = (p.netns_cookie(), boot_id()) else {
            return Ok(None);
        };
        Ok(Some(KernelMark {
            generation: p.generation()?,
            netns_cookie,
            boot_id,
        }))
    }
}

/// This boot's id (read once per process).
fn boot_id() -> Option<String> {
    static ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    })
    .clone()
}

/// An endpoint in an [`EngineState`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateEndpoint {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Labels.
    #[serde(default)]
    pub labels: Labels,
    /// Addresses.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    /// Named ports: name → (port, `TCP`/`UDP`/`SCTP`).
    #[serde(default)]
    pub named_ports: BTreeMap<String, (u16, String)>,
    /// Host-network pod.
    #[serde(default)]
    pub host_network: bool,
    /// Node name.
    #[serde(default)]
    pub node: Option<String>,
    /// Host-side interface.
    #[serde(default)]
    pub host_ifname: Option<String>,
    /// Pending (fail closed).
    #[serde(default)]
    pub pending: bool,
}

/// A node in an [`EngineState`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateNode {
    /// Name.
    pub name: String,
    /// Labels.
    #[serde(default)]
    pub labels: Labels,
    /// Addresses.
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
}

impl EngineState {
    fn capture(e: &Engine) -> EngineState {
        let endpoints = e
            .inventory
            .endpoints
            .values()
            .map(|ep| StateEndpoint {
                namespace: ep.namespace.clone(),
                name: ep.name.clone(),
                labels: ep.labels.clone(),
                addresses: ep.addresses.clone(),
                named_ports: ep
                    .named_ports
                    .iter()
                    .map(|(k, v)| (k.clone(), (v.port, v.protocol.to_string())))
                    .collect(),
                host_network: ep.host_network,
                node: ep.node.clone(),
                host_ifname: e.attachments.host_ifname.get(&ep.id()).cloned(),
                pending: e.attachments.pending.contains(&ep.id()),
            })
            .collect();
        EngineState {
            mode: match e.opts.mode {
                Mode::Transparent => "transparent".into(),
                Mode::Bridge => "bridge".into(),
            },
            table: e.opts.table.clone(),
            node: e.opts.node.clone(),
            allow_from_resident_node: e.opts.allow_from_resident_node,
            namespaces: e.inventory.namespaces.clone(),
            endpoints,
            nodes: e
                .inventory
                .nodes
                .values()
                .map(|n| StateNode {
                    name: n.name.clone(),
                    labels: n.labels.clone(),
                    addresses: n.addresses.clone(),
                })
                .collect(),
            network_policies: e
                .network_policies
                .values()
                .map(|(np, _)| np.clone())
                .collect(),
            admin_policies: e.admin_policies.values().cloned().collect(),
            calico_objects: e.calico.values().cloned().collect(),
            kernel: e.mark.clone(),
        }
    }

    fn restore(&self) -> Result<Engine, EngineError> {
        let mode = match self.mode.as_str() {
            "transparent" => Mode::Transparent,
            "bridge" => Mode::Bridge,
            other => return Err(EngineError::State(format!("unknown mode {other:?}"))),
        };
        let mut e = Engine::with_options(CompileOptions {
            mode,
            table: self.table.clone(),
            node: self.node.clone(),
            allow_from_resident_node: self.allow_from_resident_node,
        });
        for (ns, l) in &self.namespaces {
            e.upsert_namespace(ns, l.clone());
        }
        for n in &self.nodes {
            e.upsert_node(Node {
                name: n.name.clone(),
                labels: n.labels.clone(),
                addresses: n.addresses.clone(),
            });
        }
        for s in &self.endpoints {
            let mut named = BTreeMap::new();
            for (k, (port, proto)) in &s.named_ports {
                let protocol = Protocol::parse(proto).ok_or_else(|| {
                    EngineError::State(format!(
                        "endpoint {}/{}: named port {k}: protocol {proto:?}",
                        s.namespace, s.name
                    ))
                })?;
                named.insert(
                    k.clone(),
                    NamedPort {
                        port: *port,
                        protocol,
                    },
                );
            }
            let ep = Endpoint {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                labels: s.labels.clone(),
                addresses: s.addresses.clone(),
                named_ports: named,
                host_network: s.host_network,
                node: s.node.clone(),
            };
            if s.pending {
                e.upsert_pending_endpoint(ep, s.host_ifname.clone());
            } else {
                e.upsert_endpoint(ep, s.host_ifname.clone());
            }
        }
        for np in &self.network_policies {
            e.apply_policy(np)?;
        }
        for o in &self.admin_policies {
            e.apply_admin_policy(o)?;
        }
        for o in &self.calico_objects {
            e.apply_calico(o)?;
        }
        Ok(e)
    }
}

/// The cheap reconcile check: our table exists with exactly the assumed chains and sets, the
/// same number of rules in each chain and the same number of elements in each plain set.
fn kernel_has_shape(p: &mut Programmer, assumed: &Ruleset) -> Result<bool, EngineError> {
    for (id, t) in &assumed.tables {
        let Some(snap) = p.snapshot(id)? else {
            return Ok(false);
        };
        if !snap.chains.keys().eq(t.chains.keys()) || !snap.sets.keys().eq(t.sets.keys()) {
            return Ok(false);
        }
        for (name, c) in &t.chains {
            if snap.rules.iter().filter(|(ch, _)| ch == name).count() != c.rules.len() {
                return Ok(false);
            }
        }
        for (name, s) in &t.sets {
            if !s.decl.interval && snap.elements.get(name).copied() != Some(s.elements.len()) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Ids of the endpoints an engine holds (handy for callers that garbage-collect).
pub fn endpoint_ids(e: &Engine) -> BTreeSet<EndpointId> {
    e.inventory.endpoints.keys().cloned().collect()
}
