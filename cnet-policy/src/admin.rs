//! AdminNetworkPolicy and BaselineAdminNetworkPolicy (`policy.networking.k8s.io/v1alpha1`,
//! kubernetes-sigs/network-policy-api) as users write them, and their normalisation into the
//! tiers of [`crate::model`]:
//!
//! * ANPs form the first tier, ordered by `priority` (lower first; ties by name, which the API
//!   leaves to the implementation), rules in written order, first match wins: `Allow` and
//!   `Deny` decide, `Pass` skips to NetworkPolicy. Default when nothing matches: pass.
//! * The BANP (the single object named `default`) forms the tier after NetworkPolicy:
//!   `Allow`/`Deny`, default pass (then allow).
//! * Subjects and `namespaces`/`pods` peers never include host-network pods; egress peers
//!   `nodes` match node addresses and `networks` match any address (pods included).
//! * A peer with no known field fails closed as the API asks: it matches nothing in an
//!   `Allow` rule and turns a `Deny`/`Pass` rule into "deny all".
//! * ClusterNetworkPolicy (`v1alpha2`, `tier: Admin|Baseline`, actions `Accept`/`Deny`/`Pass`,
//!   `protocols`) maps onto the same two tiers, ordered by priority.

use crate::api::{LabelSelector, ObjectMeta};
use crate::error::{FieldError, FieldErrorKind as K, FieldErrors, PolicyError, Result};
use crate::model::*;
use crate::normalize::selector;
use crate::validate::{label_selector, network_of, parse_cidr};
use serde::{Deserialize, Serialize};

/// The API group/version of AdminNetworkPolicy and BaselineAdminNetworkPolicy.
pub const ADMIN_API_VERSION: &str = "policy.networking.k8s.io/v1alpha1";
/// Kind of an AdminNetworkPolicy.
pub const ANP_KIND: &str = "AdminNetworkPolicy";
/// Kind of a BaselineAdminNetworkPolicy.
pub const BANP_KIND: &str = "BaselineAdminNetworkPolicy";
/// The API group/version of ClusterNetworkPolicy.
pub const CNP_API_VERSION: &str = "policy.networking.k8s.io/v1alpha2";
/// Kind of a ClusterNetworkPolicy.
pub const CNP_KIND: &str = "ClusterNetworkPolicy";
/// Name of the tier holding AdminNetworkPolicies.
pub const ADMIN_TIER: &str = "admin";
/// Name of the tier holding the BaselineAdminNetworkPolicy.
pub const BASELINE_TIER: &str = "baseline";

/// An AdminNetworkPolicy or BaselineAdminNetworkPolicy object (the BANP has no priority and
/// no `Pass`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminPolicyObject {
    /// `policy.networking.k8s.io/v1alpha1`.
    #[serde(default)]
    pub api_version: String,
    /// `AdminNetworkPolicy` or `BaselineAdminNetworkPolicy`.
    #[serde(default)]
    pub kind: String,
    /// Name (cluster-scoped: no namespace).
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The policy.
    #[serde(default)]
    pub spec: AdminPolicySpec,
}

/// `spec` of an ANP/BANP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminPolicySpec {
    /// ClusterNetworkPolicy only: `Admin` or `Baseline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// 0–1000, lower first (ANP and ClusterNetworkPolicy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Whom the policy applies to.
    #[serde(default)]
    pub subject: AdminSubject,
    /// Ingress rules, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<AdminRule>,
    /// Egress rules, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<AdminRule>,
}

/// Exactly one of `namespaces` and `pods`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminSubject {
    /// All pods of the matching namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    /// Matching pods in matching namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
}

/// Pods by namespace selector AND pod selector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespacedPod {
    /// Namespaces (empty: all).
    #[serde(default)]
    pub namespace_selector: LabelSelector,
    /// Pods (empty: all).
    #[serde(default)]
    pub pod_selector: LabelSelector,
}

/// An ingress or egress rule (`from` for ingress, `to` for egress).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminRule {
    /// Optional rule name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `Allow`, `Deny` or (ANP only) `Pass`.
    #[serde(default)]
    pub action: String,
    /// Ingress peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<AdminPeer>>,
    /// Egress peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<AdminPeer>>,
    /// Ports; absent = all ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<AdminPort>>,
    /// ClusterNetworkPolicy: protocols and ports; absent = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocols: Option<Vec<CnpProtocol>>,
}

/// A ClusterNetworkPolicy protocol entry: exactly one field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CnpProtocol {
    /// TCP, optionally one port or range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<CnpProtocolPorts>,
    /// UDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub udp: Option<CnpProtocolPorts>,
    /// SCTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sctp: Option<CnpProtocolPorts>,
    /// A named port on the destination pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_named_port: Option<String>,
}

/// Ports of a ClusterNetworkPolicy protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CnpProtocolPorts {
    /// One port or a range; absent = all ports of the protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_port: Option<CnpPort>,
}

/// `number` or `range`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CnpPort {
    /// One port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<i32>,
    /// An inclusive range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<AdminPortRange>,
}

/// Exactly one field set (`nodes` and `networks` for egress only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminPeer {
    /// All pods of matching namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<LabelSelector>,
    /// Matching pods in matching namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<NamespacedPod>,
    /// Node addresses of matching nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<LabelSelector>,
    /// CIDRs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<String>>,
    /// Domain names (not supported: treated as an unknown peer, i.e. fail closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_names: Option<Vec<String>>,
}

/// Exactly one of the fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminPort {
    /// One port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_number: Option<AdminPortNumber>,
    /// A named container port on the destination pod (any protocol).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub named_port: Option<String>,
    /// An inclusive range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_range: Option<AdminPortRange>,
}

/// `portNumber`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminPortNumber {
    /// Default TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// 1–65535.
    #[serde(default)]
    pub port: i32,
}

/// `portRange`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdminPortRange {
    /// Default TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// First port.
    #[serde(default)]
    pub start: i32,
    /// Last port.
    #[serde(default)]
    pub end: i32,
}

impl AdminPolicyObject {
    /// Read an object (JSON value) of either kind.
    pub fn from_value(v: serde_json::Value) -> Result<Self> {
        serde_json::from_value(v).map_err(|e| PolicyError::Conversion {
            object: "AdminNetworkPolicy/BaselineAdminNetworkPolicy".into(),
            message: e.to_string(),
        })
    }

    fn is_baseline(&self) -> bool {
        self.kind == BANP_KIND || (self.is_cnp() && self.spec.tier.as_deref() == Some("Baseline"))
    }

    fn is_cnp(&self) -> bool {
        self.kind == CNP_KIND
    }

    fn describe(&self) -> String {
        format!("{} {}", self.kind, self.metadata.name)
    }

    /// Validate as the CRD's schema and CEL rules do (the parts that matter to evaluation).
    pub fn validate(&self) -> Result<()> {
        let mut e = Vec::new();
        if self.metadata.name.is_empty() {
            e.push(FieldError::new(
                "metadata.name",
                K::Required,
                "",
                "name is required",
            ));
        }
        if self.is_cnp() {
            match self.spec.tier.as_deref() {
                Some("Admin" | "Baseline") => {}
                other => e.push(FieldError::new(
                    "spec.tier",
                    K::NotSupported,
                    other.unwrap_or(""),
                    "supported values: \"Admin\", \"Baseline\"",
                )),
            }
        }
        if self.kind == BANP_KIND {
            if self.metadata.name != "default" {
                e.push(FieldError::new(
                    "metadata.name",
                    K::Invalid,
                    &self.metadata.name,
                    "only one baseline admin network policy with metadata.name=\"default\" can be created",
                ));
            }
        } else {
            match self.spec.priority {
                Some(p) if (0..=1000).contains(&p) => {}
                Some(p) => e.push(FieldError::new(
                    "spec.priority",
                    K::Invalid,
                    p.to_string(),
                    "must be 0–1000",
                )),
                None => e.push(FieldError::new(
                    "spec.priority",
                    K::Required,
                    "",
                    "priority is required",
                )),
            }
        }
        let s = &self.spec.subject;
        match (&s.namespaces, &s.pods) {
            (Some(n), None) => label_selector(n, "spec.subject.namespaces", &mut e),
            (None, Some(p)) => {
                label_selector(
                    &p.namespace_selector,
                    "spec.subject.pods.namespaceSelector",
                    &mut e,
                );
                label_selector(&p.pod_selector, "spec.subject.pods.podSelector", &mut e);
            }
            _ => e.push(FieldError::new(
                "spec.subject",
                K::Invalid,
                "",
                "exactly one of namespaces, pods",
            )),
        }
        for (dir, rules) in [
            ("ingress", &self.spec.ingress),
            ("egress", &self.spec.egress),
        ] {
            for (i, r) in rules.iter().enumerate() {
                let path = format!("spec.{dir}[{i}]");
                let ok = match r.action.as_str() {
                    "Allow" => !self.is_cnp(),
                    "Accept" | "Pass" => {
                        self.is_cnp() || (r.action == "Pass" && self.kind == ANP_KIND)
                    }
                    "Deny" => true,
                    _ => false,
                };
                if !ok {
                    e.push(FieldError::new(
                        format!("{path}.action"),
                        K::NotSupported,
                        &r.action,
                        "unsupported action",
                    ));
                }
                let peers = if dir == "ingress" { &r.from } else { &r.to };
                if peers.as_ref().is_none_or(Vec::is_empty) {
                    let f = if dir == "ingress" { "from" } else { "to" };
                    e.push(FieldError::new(
                        format!("{path}.{f}"),
                        K::Required,
                        "",
                        "at least one peer",
                    ));
                }
                for (j, p) in r.ports.iter().flatten().enumerate() {
                    let pp = format!("{path}.ports[{j}]");
                    if let Err(m) = port(p) {
                        e.push(FieldError::new(pp, K::Invalid, "", m));
                    }
                }
                for (j, p) in r.protocols.iter().flatten().enumerate() {
                    if let Err(m) = cnp_protocol(p) {
                        e.push(FieldError::new(
                            format!("{path}.protocols[{j}]"),
                            K::Invalid,
                            "",
                            m,
                        ));
                    }
                }
                for (j, p) in peers.iter().flatten().enumerate() {
                    for (k, n) in p.networks.iter().flatten().enumerate() {
                        if let Err(m) = parse_cidr(n) {
                            e.push(FieldError::new(
                                format!("{path}.to[{j}].networks[{k}]"),
                                K::Invalid,
                                n,
                                m,
                            ));
                        }
                    }
                }
            }
        }
        if e.is_empty() {
            Ok(())
        } else {
            Err(PolicyError::Invalid {
                object: self.describe(),
                errors: FieldErrors(e),
            })
        }
    }

    /// Normalise into a model [`Policy`] (validates first).
    pub fn to_policy(&self) -> Result<Policy> {
        self.validate()?;
        let s = &self.spec.subject;
        let subject = match (&s.namespaces, &s.pods) {
            (Some(n), _) => EndpointSelector {
                namespaces: NamespaceMatch::Selector(selector(n)?),
                pods: Selector::All,
            },
            (None, Some(p)) => namespaced_pod(p)?,
            (None, None) => unreachable_subject()?,
        };
        let rules = |list: &[AdminRule], ingress: bool| -> Result<Option<Vec<Rule>>> {
            if list.is_empty() {
                return Ok(None);
            }
            list.iter()
                .map(|r| rule(r, ingress))
                .collect::<Result<Vec<_>>>()
                .map(Some)
        };
        Ok(Policy {
            id: PolicyId {
                kind: if self.is_baseline() {
                    PolicyKind::BaselineAdminNetworkPolicy
                } else {
                    PolicyKind::AdminNetworkPolicy
                },
                namespace: None,
                name: self.metadata.name.clone(),
            },
            subject,
            ingress: rules(&self.spec.ingress, true)?,
            egress: rules(&self.spec.egress, false)?,
        })
    }
}

fn unreachable_subject() -> Result<EndpointSelector> {
    Err(PolicyError::Conversion {
        object: "subject".into(),
        message: "no subject".into(),
    })
}

fn namespaced_pod(p: &NamespacedPod) -> Result<EndpointSelector> {
    Ok(EndpointSelector {
        namespaces: NamespaceMatch::Selector(selector(&p.namespace_selector)?),
        pods: selector(&p.pod_selector)?,
    })
}

fn proto(p: &Option<String>) -> std::result::Result<Protocol, String> {
    let s = p.as_deref().unwrap_or("TCP");
    Protocol::parse(s)
        .filter(|_| s == s.to_ascii_uppercase())
        .ok_or_else(|| format!("unsupported protocol {s:?}"))
}

fn port(p: &AdminPort) -> std::result::Result<PortMatch, String> {
    let in_range = |n: i32| {
        u16::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("port {n} not in 1–65535"))
    };
    match (&p.port_number, &p.named_port, &p.port_range) {
        (Some(n), None, None) => {
            let port = in_range(n.port)?;
            Ok(PortMatch {
                protocol: Some(proto(&n.protocol)?),
                port: PortSpec::Range {
                    start: port,
                    end: port,
                },
            })
        }
        (None, Some(name), None) => Ok(PortMatch {
            protocol: None,
            port: PortSpec::Named(name.clone()),
        }),
        (None, None, Some(r)) => {
            let (start, end) = (in_range(r.start)?, in_range(r.end)?);
            if start >= end {
                return Err("portRange start must be less than end".into());
            }
            Ok(PortMatch {
                protocol: Some(proto(&r.protocol)?),
                port: PortSpec::Range { start, end },
            })
        }
        _ => Err("exactly one of portNumber, namedPort, portRange".into()),
    }
}

fn cnp_protocol(p: &CnpProtocol) -> std::result::Result<PortMatch, String> {
    let in_range = |n: i32| {
        u16::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("port {n} not in 1–65535"))
    };
    let one =
        |protocol: Protocol, ports: &CnpProtocolPorts| -> std::result::Result<PortMatch, String> {
            let port = match &ports.destination_port {
                None => PortSpec::All,
                Some(CnpPort {
                    number: Some(n),
                    range: None,
                }) => {
                    let n = in_range(*n)?;
                    PortSpec::Range { start: n, end: n }
                }
                Some(CnpPort {
                    number: None,
                    range: Some(r),
                }) => {
                    let (start, end) = (in_range(r.start)?, in_range(r.end)?);
                    if start >= end {
                        return Err("range start must be less than end".into());
                    }
                    PortSpec::Range { start, end }
                }
                Some(_) => return Err("destinationPort: exactly one of number, range".into()),
            };
            Ok(PortMatch {
                protocol: Some(protocol),
                port,
            })
        };
    match (&p.tcp, &p.udp, &p.sctp, &p.destination_named_port) {
        (Some(x), None, None, None) => one(Protocol::Tcp, x),
        (None, Some(x), None, None) => one(Protocol::Udp, x),
        (None, None, Some(x), None) => one(Protocol::Sctp, x),
        (None, None, None, Some(n)) => Ok(PortMatch {
            protocol: None,
            port: PortSpec::Named(n.clone()),
        }),
        _ => Err("exactly one of tcp, udp, sctp, destinationNamedPort".into()),
    }
}

fn rule(r: &AdminRule, ingress: bool) -> Result<Rule> {
    let action = match r.action.as_str() {
        "Allow" | "Accept" => Action::Allow,
        "Deny" => Action::Deny,
        _ => Action::Pass,
    };
    let conv = |m: String| PolicyError::Conversion {
        object: "protocols".into(),
        message: m,
    };
    let ports = match (&r.ports, &r.protocols) {
        (_, Some(list)) => PortSet::Only(
            list.iter()
                .map(cnp_protocol)
                .collect::<std::result::Result<_, _>>()
                .map_err(conv)?,
        ),
        (None, None) => PortSet::Any,
        (Some(list), None) => PortSet::Only(
            list.iter()
                .map(port)
                .collect::<std::result::Result<_, _>>()
                .map_err(|m| PolicyError::Conversion {
                    object: "port".into(),
                    message: m,
                })?,
        ),
    };
    let mut peers = Vec::new();
    let list = if ingress { &r.from } else { &r.to };
    for p in list.iter().flatten() {
        let known = match (&p.namespaces, &p.pods, &p.nodes, &p.networks) {
            (Some(n), None, None, None) => Some(vec![Peer::Endpoints(EndpointSelector {
                namespaces: NamespaceMatch::Selector(selector(n)?),
                pods: Selector::All,
            })]),
            (None, Some(pp), None, None) => Some(vec![Peer::Endpoints(namespaced_pod(pp)?)]),
            (None, None, Some(n), None) if !ingress => Some(vec![Peer::Nodes(selector(n)?)]),
            (None, None, None, Some(nets)) if !ingress && !nets.is_empty() => {
                let mut out = Vec::new();
                for n in nets {
                    let net = parse_cidr(n).map_err(|m| PolicyError::Conversion {
                        object: n.clone(),
                        message: m,
                    })?;
                    out.push(Peer::Cidr(CidrBlock {
                        cidr: network_of(net),
                        except: Vec::new(),
                    }));
                }
                Some(out)
            }
            _ => None,
        };
        match known {
            Some(ps) => peers.extend(ps),
            // Unknown peer: fail closed.
            None if action == Action::Allow => {}
            None => {
                return Ok(Rule {
                    action: Action::Deny,
                    peers: PeerSet::Any,
                    ports: PortSet::Any,
                });
            }
        }
    }
    Ok(Rule {
        action,
        peers: PeerSet::Only(peers),
        ports,
    })
}

/// The admin tier (ANPs and Admin-tier ClusterNetworkPolicies by priority, then name) and
/// the baseline tier (the BANP and Baseline-tier ClusterNetworkPolicies, by priority), from
/// objects of all three kinds; invalid objects are an error.
pub fn admin_tiers(objects: &[AdminPolicyObject]) -> Result<(Tier, Tier)> {
    let mut anps = Vec::new();
    let mut banp = Vec::new();
    for o in objects {
        let p = o.to_policy()?;
        let key = o.spec.priority.unwrap_or(i32::MAX);
        if o.is_baseline() {
            banp.push((key, p));
        } else {
            anps.push((key, p));
        }
    }
    for list in [&mut anps, &mut banp] {
        list.sort_by(|a, b| (a.0, &a.1.id).cmp(&(b.0, &b.1.id)));
        list.dedup_by(|b, a| a.1.id == b.1.id);
    }
    Ok((
        Tier {
            name: ADMIN_TIER.into(),
            kind: TierKind::AdminNetworkPolicy,
            policies: anps.into_iter().map(|(_, p)| p).collect(),
            default: TierDefault::Pass,
        },
        Tier {
            name: BASELINE_TIER.into(),
            kind: TierKind::BaselineAdminNetworkPolicy,
            policies: banp.into_iter().map(|(_, p)| p).collect(),
            default: TierDefault::Pass,
        },
    ))
}

impl PolicySet {
    /// The full pipeline: AdminNetworkPolicies, then Kubernetes NetworkPolicies, then the
    /// BaselineAdminNetworkPolicy. Empty tiers are left out.
    pub fn from_objects(
        network_policies: &[crate::api::NetworkPolicy],
        admin: &[AdminPolicyObject],
    ) -> Result<PolicySet> {
        let (anp, banp) = admin_tiers(admin)?;
        let k8s = crate::normalize::kubernetes_tier(network_policies)?;
        Ok(PolicySet {
            tiers: [anp, k8s, banp]
                .into_iter()
                .filter(|t| !t.policies.is_empty())
                .collect(),
        })
    }
}
