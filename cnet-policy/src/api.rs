//! Kubernetes `networking.k8s.io/v1` NetworkPolicy, exactly as users write it.
//!
//! These types keep what the user wrote (optional fields stay `None`, strings stay strings)
//! so that rendering gives back an equivalent document. API defaulting (protocol `TCP`,
//! `policyTypes`) is applied by [`NetworkPolicy::with_defaults`] and by normalisation,
//! validation by [`crate::validate`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A label map: key → value, sorted.
pub type Labels = BTreeMap<String, String>;

/// The `apiVersion` of NetworkPolicy.
pub const API_VERSION: &str = "networking.k8s.io/v1";
/// The `kind` of NetworkPolicy.
pub const KIND: &str = "NetworkPolicy";

fn default_api_version() -> String {
    API_VERSION.to_string()
}
fn default_kind() -> String {
    KIND.to_string()
}

/// A Kubernetes NetworkPolicy object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicy {
    /// Always `networking.k8s.io/v1`.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// Always `NetworkPolicy`.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// Name, namespace, labels.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The policy itself.
    #[serde(default)]
    pub spec: NetworkPolicySpec,
}

/// The parts of `metadata` that matter to policy; other keys (uid, resourceVersion,
/// managedFields, ...) are accepted and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Object name (a DNS-1123 subdomain).
    #[serde(default)]
    pub name: String,
    /// Namespace; `None` means the default namespace (`default`), as with kubectl.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Object labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// Object annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `spec` of a NetworkPolicy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicySpec {
    /// Which pods of the policy's namespace this policy applies to; empty = all of them.
    #[serde(default)]
    pub pod_selector: LabelSelector,
    /// Ingress rules (any one allowing is enough).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<NetworkPolicyIngressRule>>,
    /// Egress rules (any one allowing is enough).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<NetworkPolicyEgressRule>>,
    /// `Ingress` and/or `Egress`; defaulted when absent (see [`NetworkPolicy::policy_types`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_types: Option<Vec<String>>,
}

/// A Kubernetes label selector (`matchLabels` AND `matchExpressions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Exact key=value requirements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<Labels>,
    /// Set-based requirements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_expressions: Option<Vec<LabelSelectorRequirement>>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// The label key.
    #[serde(default)]
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    #[serde(default)]
    pub operator: String,
    /// Values for `In`/`NotIn`; must be absent or empty for `Exists`/`DoesNotExist`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

/// An ingress rule: traffic from `from` to `ports`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyIngressRule {
    /// Destination ports on the selected pod; empty or absent = all ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<NetworkPolicyPort>>,
    /// Sources; empty or absent = all sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<NetworkPolicyPeer>>,
}

/// An egress rule: traffic to `to` on `ports`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyEgressRule {
    /// Destination ports; empty or absent = all ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<NetworkPolicyPort>>,
    /// Destinations; empty or absent = all destinations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<NetworkPolicyPeer>>,
}

/// A peer: pods (by pod and/or namespace selector) or an IP block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyPeer {
    /// Pods; in the policy's namespace unless `namespace_selector` is set too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// Namespaces; with `pod_selector`, pods matching both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Addresses; may not be combined with the selectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_block: Option<IpBlock>,
}

/// A CIDR with optional excluded sub-ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpBlock {
    /// The CIDR, e.g. `10.0.0.0/8`.
    #[serde(default)]
    pub cidr: String,
    /// CIDRs inside `cidr` that are excluded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub except: Option<Vec<String>>,
}

/// A port (or port range) with a protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicyPort {
    /// `TCP` (default), `UDP` or `SCTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// A port number or a named port; absent = all ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<IntOrString>,
    /// Last port of a range starting at the numeric `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<i32>,
}

/// Kubernetes `IntOrString`: a number or a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    /// A number.
    Int(i32),
    /// A name.
    String(String),
}

impl std::fmt::Display for IntOrString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntOrString::Int(i) => write!(f, "{i}"),
            IntOrString::String(s) => f.write_str(s),
        }
    }
}

/// The namespace used when `metadata.namespace` is absent.
pub const DEFAULT_NAMESPACE: &str = "default";

impl NetworkPolicy {
    /// The effective namespace (`default` when unset).
    pub fn namespace(&self) -> &str {
        self.metadata
            .namespace
            .as_deref()
            .unwrap_or(DEFAULT_NAMESPACE)
    }

    /// `NetworkPolicy ns/name`, for messages.
    pub fn describe(&self) -> String {
        format!("NetworkPolicy {}/{}", self.namespace(), self.metadata.name)
    }

    /// The effective policy types after API defaulting: an explicit list wins; otherwise
    /// `Ingress` always, plus `Egress` when there is at least one egress rule.
    /// Returns `(ingress, egress)`.
    pub fn policy_types(&self) -> (bool, bool) {
        match &self.spec.policy_types {
            Some(types) if !types.is_empty() => (
                types.iter().any(|t| t == "Ingress"),
                types.iter().any(|t| t == "Egress"),
            ),
            _ => (
                true,
                self.spec.egress.as_ref().is_some_and(|e| !e.is_empty()),
            ),
        }
    }

    /// A copy with the API server's defaults filled in: `policyTypes`, port `protocol: TCP`,
    /// and the namespace.
    pub fn with_defaults(&self) -> NetworkPolicy {
        let mut p = self.clone();
        let (i, e) = self.policy_types();
        let mut types = Vec::new();
        if i {
            types.push("Ingress".to_string());
        }
        if e {
            types.push("Egress".to_string());
        }
        p.spec.policy_types = Some(types);
        p.metadata.namespace = Some(self.namespace().to_string());
        let fix = |ports: &mut Option<Vec<NetworkPolicyPort>>| {
            for port in ports.iter_mut().flatten() {
                if port.protocol.is_none() {
                    port.protocol = Some("TCP".to_string());
                }
            }
        };
        for r in p.spec.ingress.iter_mut().flatten() {
            fix(&mut r.ports);
        }
        for r in p.spec.egress.iter_mut().flatten() {
            fix(&mut r.ports);
        }
        p
    }
}
