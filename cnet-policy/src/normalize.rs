//! Kubernetes NetworkPolicy → the normalised [`crate::model`].

use crate::api::{self, IntOrString, NetworkPolicy};
use crate::error::{PolicyError, Result};
use crate::model::*;
use crate::validate::{network_of, parse_cidr, validate};
use std::collections::{BTreeMap, BTreeSet};

/// Name of the tier holding Kubernetes NetworkPolicies.
pub const KUBERNETES_TIER: &str = "kubernetes";

/// Normalise a label selector: `matchLabels` become single-value `In` requirements.
/// Unknown operators (rejected by validation) are an error here too.
pub fn selector(sel: &api::LabelSelector) -> Result<Selector> {
    let mut reqs = Vec::new();
    for (k, v) in sel.match_labels.iter().flatten() {
        reqs.push(Requirement {
            key: k.clone(),
            op: LabelOp::In(BTreeSet::from([v.clone()])),
        });
    }
    for r in sel.match_expressions.iter().flatten() {
        let vals: BTreeSet<String> = r.values.iter().flatten().cloned().collect();
        let op = match r.operator.as_str() {
            "In" => LabelOp::In(vals),
            "NotIn" => LabelOp::NotIn(vals),
            "Exists" => LabelOp::Exists,
            "DoesNotExist" => LabelOp::DoesNotExist,
            other => {
                return Err(PolicyError::Conversion {
                    object: "label selector".into(),
                    message: format!("unknown operator {other:?}"),
                });
            }
        };
        reqs.push(Requirement {
            key: r.key.clone(),
            op,
        });
    }
    Ok(Selector::from_requirements(reqs))
}

fn peer(p: &api::NetworkPolicyPeer, ns: &str) -> Result<Peer> {
    if let Some(b) = &p.ip_block {
        let cidr = parse_cidr(&b.cidr).map_err(|m| PolicyError::Conversion {
            object: format!("ipBlock {}", b.cidr),
            message: m,
        })?;
        let mut except = Vec::new();
        for x in b.except.iter().flatten() {
            let n = parse_cidr(x).map_err(|m| PolicyError::Conversion {
                object: format!("except {x}"),
                message: m,
            })?;
            except.push(network_of(n));
        }
        except.sort();
        except.dedup();
        return Ok(Peer::Cidr(CidrBlock {
            cidr: network_of(cidr),
            except,
        }));
    }
    let pods = match &p.pod_selector {
        Some(s) => selector(s)?,
        None => Selector::All,
    };
    let namespaces = match &p.namespace_selector {
        Some(s) => NamespaceMatch::Selector(selector(s)?),
        None => NamespaceMatch::Named(ns.to_string()),
    };
    Ok(Peer::Endpoints(EndpointSelector { namespaces, pods }))
}

fn peers(list: &Option<Vec<api::NetworkPolicyPeer>>, ns: &str) -> Result<PeerSet> {
    match list {
        None => Ok(PeerSet::Any),
        Some(l) if l.is_empty() => Ok(PeerSet::Any),
        Some(l) => Ok(PeerSet::Only(
            l.iter().map(|p| peer(p, ns)).collect::<Result<_>>()?,
        )),
    }
}

fn ports(list: &Option<Vec<api::NetworkPolicyPort>>) -> Result<PortSet> {
    let Some(l) = list.as_ref().filter(|l| !l.is_empty()) else {
        return Ok(PortSet::Any);
    };
    let mut out = Vec::new();
    for p in l {
        let proto_s = p.protocol.as_deref().unwrap_or("TCP");
        let protocol = Protocol::parse(proto_s).ok_or_else(|| PolicyError::Conversion {
            object: "port".into(),
            message: format!("unsupported protocol {proto_s:?}"),
        })?;
        let port = match &p.port {
            None => PortSpec::All,
            Some(IntOrString::String(name)) => PortSpec::Named(name.clone()),
            Some(IntOrString::Int(n)) => {
                let start = u16::try_from(*n).map_err(|_| PolicyError::Conversion {
                    object: "port".into(),
                    message: format!("port {n} out of range"),
                })?;
                let end = match p.end_port {
                    None => start,
                    Some(e) => u16::try_from(e).map_err(|_| PolicyError::Conversion {
                        object: "endPort".into(),
                        message: format!("endPort {e} out of range"),
                    })?,
                };
                PortSpec::Range { start, end }
            }
        };
        out.push(PortMatch {
            protocol: Some(protocol),
            port,
        });
    }
    Ok(PortSet::Only(out))
}

/// Normalise one (validated) NetworkPolicy: validation runs first, so an invalid object is a
/// [`PolicyError::Invalid`].
pub fn normalize_network_policy(np: &NetworkPolicy) -> Result<Policy> {
    validate(np)?;
    let ns = np.namespace();
    let (has_ingress, has_egress) = np.policy_types();
    let ingress = if has_ingress {
        let mut rules = Vec::new();
        for r in np.spec.ingress.iter().flatten() {
            rules.push(Rule {
                action: Action::Allow,
                peers: peers(&r.from, ns)?,
                ports: ports(&r.ports)?,
            });
        }
        Some(rules)
    } else {
        None
    };
    let egress = if has_egress {
        let mut rules = Vec::new();
        for r in np.spec.egress.iter().flatten() {
            rules.push(Rule {
                action: Action::Allow,
                peers: peers(&r.to, ns)?,
                ports: ports(&r.ports)?,
            });
        }
        Some(rules)
    } else {
        None
    };
    Ok(Policy {
        id: PolicyId {
            kind: PolicyKind::NetworkPolicy,
            namespace: Some(ns.to_string()),
            name: np.metadata.name.clone(),
        },
        subject: EndpointSelector {
            namespaces: NamespaceMatch::Named(ns.to_string()),
            pods: selector(&np.spec.pod_selector)?,
        },
        ingress,
        egress,
    })
}

/// The Kubernetes tier for a set of NetworkPolicies: validated, one policy per
/// namespace/name (a later object with the same name replaces an earlier one, as
/// `kubectl apply` would), sorted by namespace and name, `Allow` rules, default `Deny`.
pub fn kubernetes_tier(policies: &[NetworkPolicy]) -> Result<Tier> {
    let mut by_id = BTreeMap::new();
    for np in policies {
        let p = normalize_network_policy(np)?;
        by_id.insert(p.id.clone(), p);
    }
    Ok(Tier {
        name: KUBERNETES_TIER.to_string(),
        kind: TierKind::NetworkPolicy,
        policies: by_id.into_values().collect(),
        default: TierDefault::Deny,
    })
}

impl PolicySet {
    /// A policy set holding only Kubernetes NetworkPolicies (one tier).
    pub fn from_network_policies(policies: &[NetworkPolicy]) -> Result<PolicySet> {
        Ok(PolicySet {
            tiers: vec![kubernetes_tier(policies)?],
        })
    }
}
