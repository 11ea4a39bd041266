//! Calico objects (`projectcalico.org/v3`) in the [`Engine`]: policies, network sets, tiers and
//! host endpoints join the one ordered pipeline (see [`crate::calico`] for where Calico tiers
//! sit among AdminNetworkPolicy, Kubernetes NetworkPolicy and BaselineAdminNetworkPolicy), and
//! host endpoints get their own table (`<table>_host`, see [`crate::compile::compile_host`]) programmed
//! in the same batch as the pod table.
//!
//! Objects are kept as applied (upsert by kind, namespace and name) and survive
//! [`Engine::state`] / [`Engine::from_state`]. Each object is validated on its own when applied;
//! references between objects (a policy's tier) are checked when the pipeline is built
//! ([`Engine::policy_set`], [`Engine::sync`]), so a batch can name a Tier after its policies.
//!
//! ```
//! use cnet_policy::compile::Mode;
//! use cnet_policy::engine::Engine;
//!
//! let mut engine = Engine::new(Mode::Transparent);
//! let gnp = serde_json::json!({
//!     "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
//!     "metadata": {"name": "no-udp"},
//!     "spec": {"selector": "all()", "order": 10, "ingress": [{"action": "Deny", "protocol": "UDP"}]},
//! });
//! let key = engine.apply_calico(&gnp)?;
//! assert_eq!(key.to_string(), "GlobalNetworkPolicy no-udp");
//! assert_eq!(engine.policy_set()?.tiers[0].name, "default");
//! assert!(engine.delete_calico(&key));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde_json::Value;

use super::{Engine, EngineError};
use crate::calico::CalicoObjects;
use crate::compile::{HostOptions, compile_host};
use crate::model::PolicySet;
use crate::nft::Ruleset;

/// Identity of a Calico object in an engine: kind, namespace (namespaced kinds; `default`
/// when the object names none) and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CalicoKey {
    /// `kind`.
    pub kind: String,
    /// `metadata.namespace` of a namespaced kind.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

impl std::fmt::Display for CalicoKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

impl CalicoKey {
    /// The key of an object (JSON with `kind` and `metadata`).
    pub fn of(v: &Value) -> CalicoKey {
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        let namespaced = matches!(
            kind.as_str(),
            "NetworkPolicy" | "StagedNetworkPolicy" | "NetworkSet"
        );
        let namespace = namespaced.then(|| {
            v["metadata"]["namespace"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or("default")
                .to_string()
        });
        CalicoKey {
            kind,
            namespace,
            name: v["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        }
    }
}

/// The host table's name for a pod table `table`.
pub fn host_table_name(table: &str) -> String {
    format!("{table}_host")
}

impl Engine {
    /// Add or replace a `projectcalico.org/v3` object (NetworkPolicy, GlobalNetworkPolicy,
    /// their staged kinds, Tier, NetworkSet, GlobalNetworkSet, HostEndpoint). The object is
    /// validated on its own (an invalid one changes nothing); see the module docs.
    pub fn apply_calico(&mut self, object: &Value) -> Result<CalicoKey, EngineError> {
        let key = CalicoKey::of(object);
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        if !CalicoObjects::accepts(api_version, &key.kind) {
            return Err(EngineError::Policy {
                object: key.to_string(),
                source: crate::error::PolicyError::Calico {
                    object: key.to_string(),
                    field: "apiVersion/kind".into(),
                    message: format!(
                        "{api_version}/{} is not a projectcalico.org/v3 kind this engine accepts",
                        key.kind
                    ),
                },
            });
        }
        CalicoObjects::default()
            .add_value(object.clone())
            .map_err(|source| EngineError::Policy {
                object: key.to_string(),
                source,
            })?;
        self.calico.insert(key.clone(), object.clone());
        self.calico_changed();
        Ok(key)
    }

    /// Remove a Calico object; returns whether it was there.
    pub fn delete_calico(&mut self, key: &CalicoKey) -> bool {
        let found = self.calico.remove(key).is_some();
        if found {
            self.calico_changed();
        }
        found
    }

    /// The Calico objects applied, in key order.
    pub fn calico_values(&self) -> impl Iterator<Item = (&CalicoKey, &Value)> {
        self.calico.iter()
    }

    /// The applied Calico objects, validated and grouped.
    pub fn calico_objects(&self) -> Result<CalicoObjects, EngineError> {
        let mut c = CalicoObjects::default();
        for (k, v) in &self.calico {
            c.add_value(v.clone())
                .map_err(|source| EngineError::Policy {
                    object: k.to_string(),
                    source,
                })?;
        }
        Ok(c)
    }

    /// Whether any Calico object is applied.
    pub fn has_calico(&self) -> bool {
        !self.calico.is_empty()
    }

    /// Whether a HostEndpoint for this node (every node when the engine has none set) is
    /// applied: the engine then programs the host table and compiles whole.
    pub fn has_host_endpoints(&self) -> bool {
        self.calico.iter().any(|(k, v)| {
            k.kind == "HostEndpoint"
                && self
                    .opts
                    .node
                    .as_deref()
                    .is_none_or(|n| v["spec"]["node"].as_str() == Some(n))
        })
    }

    /// The host endpoint compiler's options: table `<table>_host`, this node, Calico's
    /// default failsafe ports.
    pub fn host_options(&self) -> HostOptions {
        let mut o = HostOptions::calico_defaults(self.opts.node.as_deref());
        o.table = host_table_name(&self.opts.table);
        o
    }

    /// The host endpoint table, or `None` when no host endpoint of this node is applied.
    pub fn host_ruleset(&self) -> Result<Option<Ruleset>, EngineError> {
        if !self.has_host_endpoints() {
            return Ok(None);
        }
        let hosts =
            self.calico_objects()?
                .host_policies()
                .map_err(|source| EngineError::Policy {
                    object: "host endpoint policies".into(),
                    source,
                })?;
        Ok(Some(compile_host(
            &hosts,
            &self.inventory,
            &self.host_options(),
        )?))
    }

    /// Add the host table (if any) to a compiled pod ruleset.
    pub(crate) fn with_host_table(&self, mut rs: Ruleset) -> Result<Ruleset, EngineError> {
        if let Some(h) = self.host_ruleset()? {
            rs.tables.extend(h.tables);
        }
        Ok(rs)
    }

    /// The whole pipeline with Calico tiers (Calico tiers and the ANP tier by order, then
    /// Kubernetes NetworkPolicy, then BANP).
    pub(crate) fn build_calico_policy_set(&self) -> Result<PolicySet, EngineError> {
        let nps: Vec<crate::api::NetworkPolicy> = self
            .network_policies
            .values()
            .map(|(np, _)| np.clone())
            .collect();
        let admin: Vec<crate::admin::AdminPolicyObject> =
            self.admin_policies.values().cloned().collect();
        self.calico_objects()?
            .policy_set(&nps, &admin)
            .map_err(|source| EngineError::Policy {
                object: "Calico policies".into(),
                source,
            })
    }

    fn calico_changed(&mut self) {
        self.cached = None;
        self.structure_dirty = true;
    }
}
