//! The `projectcalico.org/v3` objects as written (serde types, camelCase field names).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `apiVersion` of every Calico object.
pub const API_VERSION: &str = "projectcalico.org/v3";

/// Object metadata (the fields policy needs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Namespace (namespaced kinds; defaults to `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels (network sets, host endpoints are selected by them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// A protocol by name (`TCP`, `UDP`, `ICMP`, `ICMPv6`, `SCTP`, `UDPLite`) or number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProtocolValue {
    /// 1..=255.
    Number(i64),
    /// A name.
    Name(String),
}

/// A port: number, `"start:end"` range, or a named port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortValue {
    /// A number.
    Number(i64),
    /// `"8080"`, `"8000:8080"` or a port name.
    Text(String),
}

/// ICMP type and code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IcmpFields {
    /// ICMP type (0..=254).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<i64>,
    /// ICMP code (0..=255), only with a type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
}

/// `serviceAccounts` of an entity rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountMatch {
    /// Service account names.
    #[serde(default)]
    pub names: Vec<String>,
    /// Selector over service account labels.
    #[serde(default)]
    pub selector: Option<String>,
}

/// The `source`/`destination` of a rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntityRule {
    /// CIDRs, any of which the address must be in.
    #[serde(default)]
    pub nets: Vec<String>,
    /// CIDRs the address must not be in.
    #[serde(default)]
    pub not_nets: Vec<String>,
    /// Endpoints/network sets the address must belong to.
    #[serde(default)]
    pub selector: Option<String>,
    /// Endpoints/network sets the address must not belong to.
    #[serde(default)]
    pub not_selector: Option<String>,
    /// Namespaces the selector is applied in.
    #[serde(default)]
    pub namespace_selector: Option<String>,
    /// Ports (numbers, ranges, names).
    #[serde(default)]
    pub ports: Vec<PortValue>,
    /// Ports excluded.
    #[serde(default)]
    pub not_ports: Vec<PortValue>,
    /// Service accounts.
    #[serde(default)]
    pub service_accounts: Option<ServiceAccountMatch>,
    /// Kubernetes service match (not supported: rejected).
    #[serde(default)]
    pub services: Option<serde_json::Value>,
}

/// One ingress or egress rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// `Allow`, `Deny`, `Pass` or `Log`.
    pub action: String,
    /// Protocol.
    #[serde(default)]
    pub protocol: Option<ProtocolValue>,
    /// Excluded protocol.
    #[serde(default)]
    pub not_protocol: Option<ProtocolValue>,
    /// ICMP type/code.
    #[serde(default)]
    pub icmp: Option<IcmpFields>,
    /// Excluded ICMP type/code.
    #[serde(default, rename = "notICMP")]
    pub not_icmp: Option<IcmpFields>,
    /// 4 or 6.
    #[serde(default)]
    pub ip_version: Option<i64>,
    /// Source match.
    #[serde(default)]
    pub source: EntityRule,
    /// Destination match.
    #[serde(default)]
    pub destination: EntityRule,
    /// HTTP match (L7, not supported: rejected).
    #[serde(default)]
    pub http: Option<serde_json::Value>,
    /// Free-form metadata (ignored).
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

/// Spec of NetworkPolicy, GlobalNetworkPolicy and their staged forms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySpec {
    /// Tier name (`default` when unset).
    #[serde(default)]
    pub tier: Option<String>,
    /// Order in the tier, lower first; unset = last.
    #[serde(default)]
    pub order: Option<f64>,
    /// Endpoints the policy applies to.
    #[serde(default)]
    pub selector: Option<String>,
    /// Namespaces (GlobalNetworkPolicy only).
    #[serde(default)]
    pub namespace_selector: Option<String>,
    /// Service accounts of the selected endpoints.
    #[serde(default)]
    pub service_account_selector: Option<String>,
    /// `Ingress`/`Egress`.
    #[serde(default)]
    pub types: Option<Vec<String>>,
    /// Ingress rules.
    #[serde(default)]
    pub ingress: Vec<Rule>,
    /// Egress rules.
    #[serde(default)]
    pub egress: Vec<Rule>,
    /// Host endpoints: untracked policy.
    #[serde(default)]
    pub do_not_track: bool,
    /// Host endpoints: before DNAT.
    #[serde(default, rename = "preDNAT")]
    pub pre_dnat: bool,
    /// Host endpoints: also forwarded traffic.
    #[serde(default)]
    pub apply_on_forward: bool,
    /// Staged policies: `Set` (default) or `Delete`.
    #[serde(default)]
    pub staged_action: Option<String>,
}

/// Spec of a Tier.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TierSpec {
    /// Tier order, lower first; unset = last.
    #[serde(default)]
    pub order: Option<f64>,
    /// `Deny` (default) or `Pass`.
    #[serde(default)]
    pub default_action: Option<String>,
}

/// Spec of NetworkSet/GlobalNetworkSet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSetSpec {
    /// CIDRs (or single addresses).
    #[serde(default)]
    pub nets: Vec<String>,
    /// Domain names (not supported: ignored for matching).
    #[serde(default)]
    pub allowed_egress_domains: Vec<String>,
}

/// A named port of a host endpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointPort {
    /// Name.
    pub name: String,
    /// Protocol.
    pub protocol: String,
    /// Port.
    pub port: u16,
}

/// Spec of a HostEndpoint.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostEndpointSpec {
    /// Node name.
    #[serde(default)]
    pub node: String,
    /// Interface (`*` = all interfaces of the node).
    #[serde(default)]
    pub interface_name: Option<String>,
    /// Addresses of the interface.
    #[serde(default, rename = "expectedIPs")]
    pub expected_ips: Vec<String>,
    /// Profiles (not supported: ignored).
    #[serde(default)]
    pub profiles: Vec<String>,
    /// Named ports.
    #[serde(default)]
    pub ports: Vec<EndpointPort>,
}

/// A Calico object with a typed spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    bound(deserialize = "S: Deserialize<'de> + Default")
)]
pub struct Object<S> {
    /// `projectcalico.org/v3`.
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Metadata.
    #[serde(default)]
    pub metadata: Metadata,
    /// Spec.
    #[serde(default)]
    pub spec: S,
}
