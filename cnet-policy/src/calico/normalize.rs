//! Calico objects → validated → model tiers.

use super::api::{
    self, EntityRule, HostEndpointSpec, NetworkSetSpec, Object, PolicySpec, TierSpec,
};
use super::selector::{self, Expr};
use crate::admin::AdminPolicyObject;
use crate::endpoint::{SERVICE_ACCOUNT_LABEL, SERVICE_ACCOUNT_LABEL_PREFIX};
use crate::error::{PolicyError, Result};
use crate::model::*;
use ipnetwork::IpNetwork;
use serde_json::Value;
use std::net::IpAddr;

/// The order at which the AdminNetworkPolicy tier sits among Calico tiers.
pub const ANP_TIER_ORDER: f64 = 1000.0;
/// The order of Calico's `default` tier unless a Tier object named `default` sets one.
pub const DEFAULT_TIER_ORDER: f64 = 1_000_000.0;

/// Validated Calico objects, grouped by role.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CalicoObjects {
    /// NetworkPolicy and GlobalNetworkPolicy.
    pub policies: Vec<Object<PolicySpec>>,
    /// StagedNetworkPolicy and StagedGlobalNetworkPolicy.
    pub staged: Vec<Object<PolicySpec>>,
    /// Tier objects.
    pub tiers: Vec<Object<TierSpec>>,
    /// NetworkSet and GlobalNetworkSet.
    pub network_sets: Vec<Object<NetworkSetSpec>>,
    /// HostEndpoint objects (see [`super::host`]).
    pub host_endpoints: Vec<Object<HostEndpointSpec>>,
}

fn describe(kind: &str, m: &api::Metadata) -> String {
    match &m.namespace {
        Some(ns) => format!("{kind} {ns}/{}", m.name),
        None => format!("{kind} {}", m.name),
    }
}

fn is_namespaced(kind: &str) -> bool {
    matches!(kind, "NetworkPolicy" | "StagedNetworkPolicy" | "NetworkSet")
}

fn err(object: &str, field: &str, message: impl Into<String>) -> PolicyError {
    PolicyError::Calico {
        object: object.to_string(),
        field: field.to_string(),
        message: message.into(),
    }
}

fn typed<S: serde::de::DeserializeOwned + Default>(v: Value, obj: &str) -> Result<Object<S>> {
    serde_json::from_value(v).map_err(|e| err(obj, "spec", e.to_string()))
}

fn parse_sel(s: &Option<String>, obj: &str, field: &str) -> Result<Option<Expr>> {
    s.as_deref()
        .map(|s| selector::parse(s).map_err(|e| err(obj, field, format!("selector {s:?}: {e}"))))
        .transpose()
}

fn parse_net(s: &str, obj: &str, field: &str) -> Result<IpNetwork> {
    let n = if s.contains('/') {
        s.parse::<IpNetwork>()
            .map_err(|e| err(obj, field, format!("{s:?}: {e}")))?
    } else {
        let a: IpAddr = s
            .parse()
            .map_err(|e| err(obj, field, format!("{s:?}: {e}")))?;
        IpNetwork::from(a)
    };
    // Calico masks host bits.
    IpNetwork::new(n.network(), n.prefix()).map_err(|e| err(obj, field, e.to_string()))
}

fn protocol_number(p: &api::ProtocolValue, obj: &str, field: &str) -> Result<u8> {
    match p {
        api::ProtocolValue::Number(n) => u8::try_from(*n)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| err(obj, field, format!("protocol {n} out of range 1-255"))),
        api::ProtocolValue::Name(s) => match s.to_ascii_uppercase().as_str() {
            "TCP" => Ok(6),
            "UDP" => Ok(17),
            "ICMP" => Ok(1),
            "ICMPV6" => Ok(58),
            "SCTP" => Ok(132),
            "UDPLITE" => Ok(136),
            _ => Err(err(obj, field, format!("unknown protocol {s:?}"))),
        },
    }
}

fn ported(proto: u8) -> Option<Protocol> {
    match proto {
        6 => Some(Protocol::Tcp),
        17 => Some(Protocol::Udp),
        132 => Some(Protocol::Sctp),
        _ => None,
    }
}

fn port_spec(p: &api::PortValue, obj: &str, field: &str) -> Result<PortSpec> {
    let num = |n: i64| {
        u16::try_from(n).map_err(|_| err(obj, field, format!("port {n} out of range 0-65535")))
    };
    match p {
        api::PortValue::Number(n) => {
            let n = num(*n)?;
            Ok(PortSpec::Range { start: n, end: n })
        }
        api::PortValue::Text(s) => {
            if let Some((a, b)) = s.split_once(':') {
                let parse = |x: &str| {
                    x.trim()
                        .parse::<i64>()
                        .map_err(|_| err(obj, field, format!("bad port range {s:?}")))
                        .and_then(num)
                };
                let (start, end) = (parse(a)?, parse(b)?);
                if start > end {
                    return Err(err(obj, field, format!("port range {s:?} has start > end")));
                }
                Ok(PortSpec::Range { start, end })
            } else if let Ok(n) = s.parse::<i64>() {
                let n = num(n)?;
                Ok(PortSpec::Range { start: n, end: n })
            } else if s.is_empty() {
                Err(err(obj, field, "empty port"))
            } else {
                Ok(PortSpec::Named(s.clone()))
            }
        }
    }
}

fn icmp(
    f: &Option<api::IcmpFields>,
    proto: Option<u8>,
    obj: &str,
    field: &str,
) -> Result<Option<IcmpMatch>> {
    let Some(f) = f else { return Ok(None) };
    if !matches!(proto, Some(1 | 58)) {
        return Err(err(obj, field, "ICMP fields need protocol ICMP or ICMPv6"));
    }
    let Some(t) = f.icmp_type else {
        if f.code.is_some() {
            return Err(err(obj, field, "code needs a type"));
        }
        return Ok(None);
    };
    let icmp_type = u8::try_from(t)
        .ok()
        .filter(|t| *t <= 254)
        .ok_or_else(|| err(obj, field, format!("type {t} out of range 0-254")))?;
    let code = f
        .code
        .map(|c| {
            u8::try_from(c).map_err(|_| err(obj, field, format!("code {c} out of range 0-255")))
        })
        .transpose()?;
    Ok(Some(IcmpMatch { icmp_type, code }))
}

/// A policy being normalised: what its rules need to know.
struct Ctx<'a> {
    obj: String,
    /// The policy's namespace (namespaced NetworkPolicy).
    namespace: Option<&'a str>,
    sets: &'a [Object<NetworkSetSpec>],
    /// Host endpoints (rule selectors match their `expectedIPs`, like global network sets).
    hosts: &'a [Object<HostEndpointSpec>],
}

impl Ctx<'_> {
    /// Namespace scope of a rule selector.
    fn ns_match(&self, ns_sel: Option<Expr>) -> NamespaceMatch {
        match (ns_sel, self.namespace) {
            (Some(e), _) => NamespaceMatch::Selector(Selector::Calico(e)),
            (None, Some(ns)) => NamespaceMatch::Named(ns.to_string()),
            (None, None) => NamespaceMatch::Any,
        }
    }

    /// Network sets a selector matches within a namespace scope (namespaced sets under a
    /// namespace selector are checked at evaluation time).
    fn sets_for(&self, sel: &Expr, ns: &NamespaceMatch) -> Result<Vec<NetSetRef>> {
        let mut out = Vec::new();
        for s in self.sets {
            let global = s.kind == "GlobalNetworkSet";
            let ns_ok = match (global, ns) {
                (true, NamespaceMatch::Any) => true,
                (true, NamespaceMatch::Selector(Selector::Calico(e))) => {
                    e.eval(&Labels::new(), true)
                }
                (true, _) => false,
                (false, NamespaceMatch::Named(n)) => s.metadata.namespace.as_deref() == Some(n),
                (false, _) => true,
            };
            if ns_ok && sel.eval(&s.metadata.labels, global) {
                let obj = describe(&s.kind, &s.metadata);
                let nets = s
                    .spec
                    .nets
                    .iter()
                    .map(|n| parse_net(n, &obj, "spec.nets"))
                    .collect::<Result<Vec<_>>>()?;
                out.push(NetSetRef {
                    namespace: (!global).then(|| s.metadata.namespace.clone().unwrap_or_default()),
                    name: s.metadata.name.clone(),
                    nets,
                });
            }
        }
        // Host endpoints are cluster-scoped: in scope exactly like a global network set; a
        // selector that matches one matches its expected IPs (Calico host endpoint reference).
        let global_in_scope = match ns {
            NamespaceMatch::Any => true,
            NamespaceMatch::Selector(Selector::Calico(e)) => e.eval(&Labels::new(), true),
            _ => false,
        };
        for h in self.hosts.iter().filter(|_| global_in_scope) {
            if sel.eval(&h.metadata.labels, true) && !h.spec.expected_ips.is_empty() {
                let obj = describe("HostEndpoint", &h.metadata);
                let nets = h
                    .spec
                    .expected_ips
                    .iter()
                    .map(|a| parse_net(a, &obj, "spec.expectedIPs"))
                    .collect::<Result<Vec<_>>>()?;
                out.push(NetSetRef {
                    namespace: None,
                    name: format!("hostendpoint/{}", h.metadata.name),
                    nets,
                });
            }
        }
        Ok(out)
    }

    fn entity(
        &self,
        e: &EntityRule,
        proto: Option<u8>,
        field: &str,
        is_source: bool,
    ) -> Result<EntityMatch> {
        let obj = &self.obj;
        if e.services.is_some() {
            return Err(err(
                obj,
                &format!("{field}.services"),
                "service matches are not supported",
            ));
        }
        let ns_sel = parse_sel(
            &e.namespace_selector,
            obj,
            &format!("{field}.namespaceSelector"),
        )?;
        let sel = parse_sel(&e.selector, obj, &format!("{field}.selector"))?;
        let sa = e
            .service_accounts
            .as_ref()
            .map(|m| service_account_expr(m, obj, &format!("{field}.serviceAccounts")))
            .transpose()?;
        // serviceAccounts narrows the selector (Calico ANDs it into the entity selector).
        let sel = match (sel, sa) {
            (Some(s), Some(a)) => Some(Expr::and(s, a)),
            (s, a) => s.or(a),
        };
        let not_sel = parse_sel(&e.not_selector, obj, &format!("{field}.notSelector"))?;
        let has_ns = ns_sel.is_some();
        let ns = self.ns_match(ns_sel);
        let mut m = EntityMatch::default();
        // A namespace selector alone selects every endpoint in those namespaces.
        let sel = sel.or_else(|| has_ns.then_some(Expr::All));
        if let Some(s) = sel {
            m.selected_sets = self.sets_for(&s, &ns)?;
            m.selector = Some(EndpointSelector {
                namespaces: ns.clone(),
                pods: Selector::Calico(s),
            });
        }
        if let Some(s) = not_sel {
            m.not_sets = self.sets_for(&s, &ns)?;
            m.not_selector = Some(EndpointSelector {
                namespaces: ns,
                pods: Selector::Calico(s),
            });
        }
        for (i, n) in e.nets.iter().enumerate() {
            m.nets
                .push(parse_net(n, obj, &format!("{field}.nets[{i}]"))?);
        }
        for (i, n) in e.not_nets.iter().enumerate() {
            m.not_nets
                .push(parse_net(n, obj, &format!("{field}.notNets[{i}]"))?);
        }
        for (list, out, name) in [
            (&e.ports, &mut m.ports, "ports"),
            (&e.not_ports, &mut m.not_ports, "notPorts"),
        ] {
            if list.is_empty() {
                continue;
            }
            let f = format!("{field}.{name}");
            let Some(p) = proto.and_then(ported) else {
                return Err(err(obj, &f, "ports need protocol TCP, UDP or SCTP"));
            };
            if is_source {
                return Err(err(
                    obj,
                    &f,
                    "source ports are not supported (flows carry no source port)",
                ));
            }
            for (i, v) in list.iter().enumerate() {
                out.push(PortMatch {
                    protocol: Some(p),
                    port: port_spec(v, obj, &format!("{f}[{i}]"))?,
                });
            }
        }
        Ok(m)
    }

    fn rule(&self, r: &api::Rule, field: &str, dir: Direction) -> Result<Rule> {
        let obj = &self.obj;
        let action = match r.action.as_str() {
            "Allow" => Action::Allow,
            "Deny" => Action::Deny,
            "Pass" => Action::Pass,
            "Log" => Action::Log,
            a => {
                return Err(err(
                    obj,
                    &format!("{field}.action"),
                    format!("unknown action {a:?} (Allow, Deny, Pass, Log)"),
                ));
            }
        };
        if r.http.is_some() {
            return Err(err(
                obj,
                &format!("{field}.http"),
                "HTTP matches are not supported",
            ));
        }
        let protocol = r
            .protocol
            .as_ref()
            .map(|p| protocol_number(p, obj, &format!("{field}.protocol")))
            .transpose()?;
        let not_protocol = r
            .not_protocol
            .as_ref()
            .map(|p| protocol_number(p, obj, &format!("{field}.notProtocol")))
            .transpose()?;
        let mut x = ExtendedMatch {
            protocol,
            not_protocol,
            icmp: icmp(&r.icmp, protocol, obj, &format!("{field}.icmp"))?,
            not_icmp: icmp(&r.not_icmp, protocol, obj, &format!("{field}.notICMP"))?,
            source: self.entity(&r.source, protocol, &format!("{field}.source"), true)?,
            destination: self.entity(
                &r.destination,
                protocol,
                &format!("{field}.destination"),
                false,
            )?,
        };
        match r.ip_version {
            None => {}
            Some(4) => x.source.not_nets.push(IpNetwork::V6(
                "::/0".parse().map_err(|_| err(obj, field, "ipv6"))?,
            )),
            Some(6) => x.source.not_nets.push(IpNetwork::V4(
                "0.0.0.0/0".parse().map_err(|_| err(obj, field, "ipv4"))?,
            )),
            Some(v) => {
                return Err(err(
                    obj,
                    &format!("{field}.ipVersion"),
                    format!("{v} is not 4 or 6"),
                ));
            }
        }
        Ok(simplify(action, x, dir))
    }
}

/// Use the plain peer/port form the compiler already understands when the match fits it;
/// otherwise keep the extended match.
fn simplify(action: Action, x: ExtendedMatch, dir: Direction) -> Rule {
    let (peer, local) = match dir {
        Direction::Ingress => (&x.source, &x.destination),
        Direction::Egress => (&x.destination, &x.source),
    };
    let plain_proto = match x.protocol {
        None => Some(None),
        Some(p) => ported(p).map(Some),
    };
    let local_ok = local.selector.is_none()
        && local.not_selector.is_none()
        && local.nets.is_empty()
        && local.not_nets.is_empty()
        && local.not_ports.is_empty();
    let peer_ok = peer.not_selector.is_none()
        && (peer.not_nets.is_empty() || peer.selector.is_none())
        && peer.not_ports.is_empty()
        && (peer.selector.is_none() || peer.nets.is_empty())
        && peer.selected_sets.iter().all(|s| {
            s.namespace.is_none()
                || !matches!(
                    peer.selector.as_ref().map(|e| &e.namespaces),
                    Some(NamespaceMatch::Selector(_))
                )
        });
    let dst_ports = &x.destination.ports;
    let extended = x.not_protocol.is_some() || x.icmp.is_some() || x.not_icmp.is_some();
    if let (Some(proto), true, true, false) = (plain_proto, local_ok, peer_ok, extended) {
        let peers = if let Some(sel) = &peer.selector {
            let mut v = vec![Peer::Endpoints(sel.clone())];
            for s in &peer.selected_sets {
                v.extend(s.nets.iter().map(|n| {
                    Peer::Cidr(CidrBlock {
                        cidr: *n,
                        except: vec![],
                    })
                }));
            }
            PeerSet::Only(v)
        } else if !peer.nets.is_empty() || !peer.not_nets.is_empty() {
            PeerSet::Only(cidr_blocks(&peer.nets, &peer.not_nets))
        } else {
            PeerSet::Any
        };
        let ports = match (proto, dst_ports.is_empty()) {
            (None, _) => PortSet::Any,
            (Some(p), true) => PortSet::Only(vec![PortMatch {
                protocol: Some(p),
                port: PortSpec::All,
            }]),
            (Some(_), false) => PortSet::Only(dst_ports.clone()),
        };
        return Rule {
            action,
            peers,
            ports,
        };
    }
    Rule {
        action,
        peers: PeerSet::Extended(Box::new(x)),
        ports: PortSet::Any,
    }
}

/// `nets` (all addresses when empty) minus `not_nets`, as CIDR blocks with exceptions (CIDRs
/// are nested or disjoint, so a block a not-net contains is dropped and the not-nets inside a
/// block become its exceptions).
fn cidr_blocks(nets: &[IpNetwork], not_nets: &[IpNetwork]) -> Vec<Peer> {
    let all: Vec<IpNetwork> = ["0.0.0.0/0", "::/0"]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let nets = if nets.is_empty() { &all[..] } else { nets };
    let same = |a: &IpNetwork, b: &IpNetwork| a.is_ipv4() == b.is_ipv4();
    let inside = |inner: &IpNetwork, outer: &IpNetwork| {
        same(inner, outer) && outer.prefix() <= inner.prefix() && outer.contains(inner.network())
    };
    nets.iter()
        .filter(|n| !not_nets.iter().any(|x| inside(n, x)))
        .map(|n| {
            Peer::Cidr(CidrBlock {
                cidr: *n,
                except: not_nets.iter().filter(|x| inside(x, n)).copied().collect(),
            })
        })
        .collect()
}

/// A rule's `serviceAccounts` as an endpoint selector: the account's labels (`selector`,
/// keys prefixed with `pcsa.`) and its name (`names`), both when both are given.
fn service_account_expr(m: &api::ServiceAccountMatch, obj: &str, field: &str) -> Result<Expr> {
    let by_labels = parse_sel(&m.selector, obj, &format!("{field}.selector"))?
        .map(|e| e.with_key_prefix(SERVICE_ACCOUNT_LABEL_PREFIX));
    let by_name = (!m.names.is_empty()).then(|| {
        Expr::In(
            SERVICE_ACCOUNT_LABEL.to_string(),
            m.names.iter().cloned().collect(),
        )
    });
    match (by_labels, by_name) {
        (Some(a), Some(b)) => Ok(Expr::and(a, b)),
        (Some(e), None) | (None, Some(e)) => Ok(e),
        // Neither: no constraint (as Calico converts an empty match).
        (None, None) => Ok(Expr::All),
    }
}

fn sort_key(o: Option<f64>) -> f64 {
    o.unwrap_or(f64::INFINITY)
}

impl CalicoObjects {
    /// Whether `(apiVersion, kind)` is a Calico object this module accepts.
    pub fn accepts(api_version: &str, kind: &str) -> bool {
        api_version == api::API_VERSION && super::KINDS.contains(&kind)
    }

    /// Parse, validate and add one object (JSON value with apiVersion/kind). A namespaced
    /// kind without a namespace goes to `default`.
    pub fn add_value(&mut self, v: Value) -> Result<()> {
        let kind = v
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let name = v
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let obj = format!("{kind} {name}");
        if name.is_empty() {
            return Err(err(&obj, "metadata.name", "required"));
        }
        match kind.as_str() {
            "NetworkPolicy"
            | "GlobalNetworkPolicy"
            | "StagedNetworkPolicy"
            | "StagedGlobalNetworkPolicy" => {
                let mut o: Object<PolicySpec> = typed(v, &obj)?;
                self.fix_namespace(&mut o.metadata, &kind);
                let staged = kind.starts_with("Staged");
                // Validate by normalising against no network sets.
                let ctx = Ctx {
                    obj: describe(&kind, &o.metadata),
                    namespace: None,
                    sets: &[],
                    hosts: &[],
                };
                policy_of(&o, &ctx)?;
                if staged {
                    match o.spec.staged_action.as_deref() {
                        None | Some("Set") | Some("Delete") => {}
                        Some(a) => {
                            return Err(err(
                                &obj,
                                "spec.stagedAction",
                                format!("{a:?} is not Set or Delete"),
                            ));
                        }
                    }
                    self.staged.push(o);
                } else {
                    self.policies.push(o);
                }
            }
            "Tier" => {
                let o: Object<TierSpec> = typed(v, &obj)?;
                match o.spec.default_action.as_deref() {
                    None | Some("Deny") | Some("Pass") => {}
                    Some(a) => {
                        return Err(err(
                            &obj,
                            "spec.defaultAction",
                            format!("{a:?} is not Deny or Pass"),
                        ));
                    }
                }
                self.tiers.push(o);
            }
            "NetworkSet" | "GlobalNetworkSet" => {
                let mut o: Object<NetworkSetSpec> = typed(v, &obj)?;
                self.fix_namespace(&mut o.metadata, &kind);
                for (i, n) in o.spec.nets.iter().enumerate() {
                    parse_net(n, &obj, &format!("spec.nets[{i}]"))?;
                }
                self.network_sets.push(o);
            }
            "HostEndpoint" => {
                let o: Object<HostEndpointSpec> = typed(v, &obj)?;
                if o.spec.node.is_empty() {
                    return Err(err(&obj, "spec.node", "required"));
                }
                if o.spec.interface_name.is_none() && o.spec.expected_ips.is_empty() {
                    return Err(err(
                        &obj,
                        "spec",
                        "interfaceName or expectedIPs is required",
                    ));
                }
                for (i, a) in o.spec.expected_ips.iter().enumerate() {
                    a.parse::<IpAddr>()
                        .map_err(|e| err(&obj, &format!("spec.expectedIPs[{i}]"), e.to_string()))?;
                }
                self.host_endpoints.push(o);
            }
            k => return Err(err(&obj, "kind", format!("unsupported Calico kind {k:?}"))),
        }
        Ok(())
    }

    fn fix_namespace(&self, m: &mut api::Metadata, kind: &str) {
        if is_namespaced(kind) {
            m.namespace.get_or_insert_with(|| "default".to_string());
        } else {
            m.namespace = None;
        }
    }

    /// The Calico tiers in order with their sort keys (order, name).
    pub(super) fn calico_tiers(
        &self,
        policies: &[Object<PolicySpec>],
    ) -> Result<Vec<(f64, String, Tier)>> {
        let mut tiers: Vec<(f64, String, Tier)> = Vec::new();
        let mut tier_of = |name: &str| -> Result<usize> {
            if let Some(i) = tiers.iter().position(|t| t.1 == name) {
                return Ok(i);
            }
            let spec = self
                .tiers
                .iter()
                .find(|t| t.metadata.name == name)
                .map(|t| &t.spec);
            let order = match (spec, name) {
                (Some(s), _) if s.order.is_some() => sort_key(s.order),
                (_, "default") => DEFAULT_TIER_ORDER,
                (Some(s), _) => sort_key(s.order),
                (None, _) => {
                    return Err(err(
                        &format!("Tier {name}"),
                        "metadata.name",
                        "policy refers to a tier that does not exist",
                    ));
                }
            };
            let default = match spec.and_then(|s| s.default_action.as_deref()) {
                Some("Pass") => TierDefault::Pass,
                _ => TierDefault::Deny,
            };
            tiers.push((
                order,
                name.to_string(),
                Tier {
                    name: name.to_string(),
                    kind: TierKind::Calico,
                    policies: vec![],
                    default,
                },
            ));
            Ok(tiers.len() - 1)
        };
        let mut keyed: Vec<(usize, f64, Policy)> = Vec::new();
        for o in policies {
            let ctx = Ctx {
                obj: describe(&o.kind, &o.metadata),
                namespace: o.metadata.namespace.as_deref(),
                sets: &self.network_sets,
                hosts: &self.host_endpoints,
            };
            let p = policy_of(o, &ctx)?;
            let t = tier_of(o.spec.tier.as_deref().unwrap_or("default"))?;
            keyed.push((t, sort_key(o.spec.order), p));
        }
        keyed.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.2.id.cmp(&b.2.id)));
        for (t, _, p) in keyed {
            tiers[t].2.policies.push(p);
        }
        tiers.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        Ok(tiers)
    }

    fn pipeline(
        &self,
        policies: &[Object<PolicySpec>],
        network_policies: &[crate::api::NetworkPolicy],
        admin: &[AdminPolicyObject],
    ) -> Result<PolicySet> {
        let (anp, banp) = crate::admin::admin_tiers(admin)?;
        // preDNAT and doNotTrack policies apply to host endpoints only.
        let pod_policies: Vec<Object<PolicySpec>> = policies
            .iter()
            .filter(|o| !super::host::host_only(o))
            .cloned()
            .collect();
        let mut ordered = self.calico_tiers(&pod_policies)?;
        ordered.push((ANP_TIER_ORDER, "adminnetworkpolicy".into(), anp));
        ordered.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        let k8s = crate::normalize::kubernetes_tier(network_policies)?;
        let tiers = ordered
            .into_iter()
            .map(|t| t.2)
            .chain([k8s, banp])
            .filter(|t| !t.policies.is_empty())
            .collect();
        Ok(PolicySet { tiers })
    }

    /// The enforced pipeline: Calico tiers interleaved with the ANP tier by order, then
    /// Kubernetes NetworkPolicy, then BANP (see the module docs).
    pub fn policy_set(
        &self,
        network_policies: &[crate::api::NetworkPolicy],
        admin: &[AdminPolicyObject],
    ) -> Result<PolicySet> {
        self.pipeline(&self.policies, network_policies, admin)
    }

    /// The pipeline as it would be if the staged policies were committed (a staged `Set`
    /// replaces or adds its policy, a staged `Delete` removes it). For reporting only: the
    /// enforced set is [`CalicoObjects::policy_set`].
    pub fn staged_policy_set(
        &self,
        network_policies: &[crate::api::NetworkPolicy],
        admin: &[AdminPolicyObject],
    ) -> Result<PolicySet> {
        let mut list = self.policies.clone();
        for s in &self.staged {
            let kind = s.kind.trim_start_matches("Staged").to_string();
            list.retain(|p| {
                !(p.kind == kind
                    && p.metadata.name == s.metadata.name
                    && p.metadata.namespace == s.metadata.namespace)
            });
            if s.spec.staged_action.as_deref() != Some("Delete") {
                let mut p = s.clone();
                p.kind = kind;
                list.push(p);
            }
        }
        self.pipeline(&list, network_policies, admin)
    }
}

/// One NetworkPolicy/GlobalNetworkPolicy → model policy.
fn policy_of(o: &Object<PolicySpec>, ctx: &Ctx<'_>) -> Result<Policy> {
    let obj = &ctx.obj;
    let s = &o.spec;
    let global = !is_namespaced(&o.kind);
    if !global && s.namespace_selector.is_some() {
        return Err(err(
            obj,
            "spec.namespaceSelector",
            "only GlobalNetworkPolicy has a namespaceSelector",
        ));
    }
    // The policy applies to endpoints its selector selects whose service account the
    // serviceAccountSelector selects (on the account's labels, carried as `pcsa.` labels).
    let sa_sel = parse_sel(
        &s.service_account_selector,
        obj,
        "spec.serviceAccountSelector",
    )?
    .map(|e| e.with_key_prefix(SERVICE_ACCOUNT_LABEL_PREFIX));
    if s.do_not_track || s.pre_dnat || s.apply_on_forward {
        // Host-endpoint options: accepted as Calico validates them; they only concern host
        // endpoints, which are not enforced yet.
        if s.pre_dnat && (s.do_not_track || !s.egress.is_empty()) {
            return Err(err(
                obj,
                "spec.preDNAT",
                "preDNAT excludes doNotTrack and egress rules",
            ));
        }
        if (s.do_not_track || s.pre_dnat) && !s.apply_on_forward {
            return Err(err(
                obj,
                "spec.applyOnForward",
                "must be true with doNotTrack or preDNAT",
            ));
        }
    }
    let pods = parse_sel(&s.selector, obj, "spec.selector")?.unwrap_or(Expr::All);
    let pods = match sa_sel {
        Some(sa) => Expr::and(pods, sa),
        None => pods,
    };
    let ns_sel = parse_sel(&s.namespace_selector, obj, "spec.namespaceSelector")?;
    let namespaces = match (&o.metadata.namespace, ns_sel) {
        (Some(ns), _) if !global => NamespaceMatch::Named(ns.clone()),
        (_, Some(e)) => NamespaceMatch::Selector(Selector::Calico(e)),
        _ => NamespaceMatch::Any,
    };
    let (mut ing, mut eg) = (true, !s.egress.is_empty());
    if let Some(types) = &s.types {
        ing = false;
        eg = false;
        for (i, t) in types.iter().enumerate() {
            match t.as_str() {
                "Ingress" => ing = true,
                "Egress" => eg = true,
                _ => {
                    return Err(err(
                        obj,
                        &format!("spec.types[{i}]"),
                        format!("{t:?} is not Ingress or Egress"),
                    ));
                }
            }
        }
        if !ing && !s.ingress.is_empty() {
            return Err(err(
                obj,
                "spec.ingress",
                "ingress rules without Ingress in types",
            ));
        }
        if !eg && !s.egress.is_empty() {
            return Err(err(
                obj,
                "spec.egress",
                "egress rules without Egress in types",
            ));
        }
    }
    let rules = |list: &[api::Rule], name: &str, d: Direction| -> Result<Vec<Rule>> {
        list.iter()
            .enumerate()
            .map(|(i, r)| ctx.rule(r, &format!("spec.{name}[{i}]"), d))
            .collect()
    };
    Ok(Policy {
        id: PolicyId {
            kind: if global {
                PolicyKind::GlobalNetworkPolicy
            } else {
                PolicyKind::CalicoNetworkPolicy
            },
            namespace: if global {
                None
            } else {
                o.metadata.namespace.clone()
            },
            name: o.metadata.name.clone(),
        },
        subject: EndpointSelector {
            namespaces,
            pods: Selector::Calico(pods),
        },
        ingress: if ing {
            Some(rules(&s.ingress, "ingress", Direction::Ingress)?)
        } else {
            None
        },
        egress: if eg {
            Some(rules(&s.egress, "egress", Direction::Egress)?)
        } else {
            None
        },
    })
}
