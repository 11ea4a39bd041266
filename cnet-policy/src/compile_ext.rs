//! Compiling Calico-style extended rule matches ([`ExtendedMatch`]) into nftables rules.
//!
//! A Calico rule holds conditions on the protocol, on ICMP type/code and on both ends of the
//! flow (selector, notSelector, nets, notNets, ports, notPorts); all present conditions are
//! AND-ed and each `not*` field negates one condition. The compiler turns every condition into
//! one or more *alternatives* (a family constraint and a list of expressions): conditions that
//! are a single lookup (`ip saddr @set`, `th dport != 80`) add one expression to every
//! alternative; conditions that are a union of lookups (a selector: its pods' addresses or the
//! CIDRs of the network sets it selects) multiply the alternatives. The rule becomes one nft
//! rule per alternative. Every address or CIDR list is a named set shared by all rules that use
//! it, so the number of rules depends on the policies only, never on the pods.
//!
//! Semantics, as the evaluator reads them (Calico policy reference):
//! * `selector` on an end: the address belongs to a (pod-network) endpoint it selects, or lies
//!   in a network set it selects (a namespaced set only when its namespace is in scope).
//!   `notSelector`: neither. A namespace selector alone selects every endpoint in scope.
//! * `nets`: the address is in one of them; `notNets`: in none.
//! * `ports` (destination only; named ports resolve on the destination endpoint): the
//!   destination port is one of them; `notPorts`: none of them. Ports imply the rule's
//!   protocol (TCP, UDP or SCTP; the normaliser enforces it).
//! * `protocol` / `notProtocol`: the IP protocol is / is not that one.
//! * ICMP `type`/`code` (with protocol ICMP or ICMPv6): the first two bytes of the transport
//!   header are loaded as `th sport` (type in the high byte, code in the low byte), so a type
//!   is a 256-wide range and a type with a code one value. `notICMP` negates that, and a
//!   packet of another protocol always satisfies it.
//!
//! Source ports are refused (the model's flows carry no source port; the normaliser refuses
//! them too), so a compile never programs something more open than the model.

use ipnetwork::IpNetwork;

use super::{Alt, CompileError, Compiler, FAMS, Fam, SetDef, short_hash};
use crate::model::{
    EndpointSelector, EntityMatch, ExtendedMatch, IcmpMatch, NamespaceMatch, NetSetRef, PortMatch,
    PortSet, PortSpec,
};
use crate::nft::{Element, Expr, Field, Part, Set, Value};

/// ICMP protocol numbers (IPv4 ICMP and ICMPv6).
const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;

/// Which end of the flow an [`EntityMatch`] constrains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Source,
    Destination,
}

impl End {
    fn field(self, f: Fam) -> Field {
        match self {
            End::Source => f.saddr(),
            End::Destination => f.daddr(),
        }
    }
}

/// Conjunction of two alternative lists: every compatible pair, expressions concatenated.
fn and(a: Vec<Alt>, b: Vec<Alt>) -> Vec<Alt> {
    let mut out = Vec::new();
    for (af, ae) in &a {
        for (bf, be) in &b {
            let fam = match (af, bf) {
                (Some(x), Some(y)) if x != y => continue,
                (Some(x), _) | (None, Some(x)) => Some(*x),
                (None, None) => None,
            };
            let mut e = ae.clone();
            e.extend(be.iter().cloned());
            out.push((fam, e));
        }
    }
    out
}

/// One alternative without constraints (the neutral element of [`and`]).
fn always() -> Vec<Alt> {
    vec![(None, Vec::new())]
}

/// CIDRs of one family, deduplicated, with the ones inside another dropped (CIDRs are nested
/// or disjoint, so what is left is disjoint: valid interval set elements).
fn disjoint(nets: &[IpNetwork], f: Fam) -> Vec<IpNetwork> {
    let mut v: Vec<IpNetwork> = nets
        .iter()
        .filter(|n| (f == Fam::V4) == n.is_ipv4())
        .map(|n| IpNetwork::new(n.network(), n.prefix()).unwrap_or(*n))
        .collect();
    v.sort_by_key(|n| (n.prefix(), n.network()));
    v.dedup();
    let mut out: Vec<IpNetwork> = Vec::new();
    for n in v {
        if !out
            .iter()
            .any(|o| o.prefix() <= n.prefix() && o.contains(n.network()))
        {
            out.push(n);
        }
    }
    out
}

/// The ICMP type/code of `m` as a `th sport` value or range (type high byte, code low byte).
fn icmp_value(m: &IcmpMatch) -> (u16, u16) {
    let base = u16::from(m.icmp_type) << 8;
    match m.code {
        Some(c) => (base | u16::from(c), base | u16::from(c)),
        None => (base, base | 0xff),
    }
}

fn icmp_expr(m: &IcmpMatch, negate: bool) -> Expr {
    let (a, b) = icmp_value(m);
    match (a == b, negate) {
        (true, false) => Expr::eq(Field::ThSport, Value::Port(a)),
        (true, true) => Expr::ne(Field::ThSport, Value::Port(a)),
        (false, false) => Expr::range(Field::ThSport, Value::Port(a), Value::Port(b)),
        (false, true) => Expr::Match {
            fields: vec![Field::ThSport],
            op: crate::nft::MatchOp::NotRange(Value::Port(a), Value::Port(b)),
        },
    }
}

impl Compiler<'_> {
    /// Alternatives (family constraint, expressions) of an extended match; combined with the
    /// rule's own port alternatives by the caller.
    pub(super) fn extended_alts(&mut self, x: &ExtendedMatch) -> Result<Vec<Alt>, CompileError> {
        let mut alts = always();
        if let Some(p) = x.protocol {
            alts = and(alts, vec![(None, vec![Expr::l4proto(p)])]);
        }
        if let Some(p) = x.not_protocol {
            let ne = Expr::ne(Field::MetaL4proto, Value::Proto(p));
            alts = and(alts, vec![(None, vec![ne])]);
        }
        let icmp_protos: Vec<u8> = match x.protocol {
            Some(p) => vec![p],
            None => vec![PROTO_ICMP, PROTO_ICMPV6],
        };
        if let Some(m) = &x.icmp {
            // Only ICMP packets carry a type; pin the protocol when the rule did not.
            let a = icmp_protos
                .iter()
                .filter(|p| matches!(p, &&PROTO_ICMP | &&PROTO_ICMPV6))
                .map(|p| {
                    let mut e = Vec::new();
                    if x.protocol.is_none() {
                        e.push(Expr::l4proto(*p));
                    }
                    e.push(icmp_expr(m, false));
                    (None, e)
                })
                .collect();
            alts = and(alts, a);
        }
        if let Some(m) = &x.not_icmp {
            let mut a: Vec<Alt> = Vec::new();
            if x.protocol.is_none() {
                // Packets of other protocols satisfy notICMP.
                a.push((
                    None,
                    vec![
                        Expr::ne(Field::MetaL4proto, Value::Proto(PROTO_ICMP)),
                        Expr::ne(Field::MetaL4proto, Value::Proto(PROTO_ICMPV6)),
                    ],
                ));
                for p in [PROTO_ICMP, PROTO_ICMPV6] {
                    a.push((None, vec![Expr::l4proto(p), icmp_expr(m, true)]));
                }
            } else if matches!(x.protocol, Some(PROTO_ICMP | PROTO_ICMPV6)) {
                a.push((None, vec![icmp_expr(m, true)]));
            } else {
                a = always();
            }
            alts = and(alts, a);
        }
        let src = self.entity_alts(&x.source, End::Source, x.protocol)?;
        alts = and(alts, src);
        let dst = self.entity_alts(&x.destination, End::Destination, x.protocol)?;
        Ok(and(alts, dst))
    }

    fn entity_alts(
        &mut self,
        m: &EntityMatch,
        end: End,
        rule_proto: Option<u8>,
    ) -> Result<Vec<Alt>, CompileError> {
        if end == End::Source && (!m.ports.is_empty() || !m.not_ports.is_empty()) {
            return Err(CompileError::Unsupported(
                "source ports (flows carry no source port in the model)".into(),
            ));
        }
        let mut alts = always();
        if let Some(sel) = &m.selector {
            let mut a = Vec::new();
            for f in FAMS {
                if self.pod_fams[f.index()] {
                    let s = self.selector_set(sel, f);
                    a.push((Some(f), vec![Expr::in_set(&[end.field(f)], &s)]));
                }
                if let Some(s) = self.netsets_set(sel, &m.selected_sets, f) {
                    a.push((Some(f), vec![Expr::in_set(&[end.field(f)], &s)]));
                }
            }
            alts = and(alts, a);
        }
        if let Some(sel) = &m.not_selector {
            let mut a = Vec::new();
            for f in FAMS {
                let s = self.selector_set(sel, f);
                let mut e = vec![Expr::not_in_set(&[end.field(f)], &s)];
                if let Some(s) = self.netsets_set(sel, &m.not_sets, f) {
                    e.push(Expr::not_in_set(&[end.field(f)], &s));
                }
                a.push((Some(f), e));
            }
            alts = and(alts, a);
        }
        if !m.nets.is_empty() {
            let mut a = Vec::new();
            for f in FAMS {
                if let Some(s) = self.union_set("xnet", &m.nets, f) {
                    a.push((Some(f), vec![Expr::in_set(&[end.field(f)], &s)]));
                }
            }
            alts = and(alts, a);
        }
        if !m.not_nets.is_empty() {
            let mut a = Vec::new();
            for f in FAMS {
                let mut e = Vec::new();
                if let Some(s) = self.union_set("xnet", &m.not_nets, f) {
                    e.push(Expr::not_in_set(&[end.field(f)], &s));
                }
                a.push((Some(f), e));
            }
            alts = and(alts, a);
        }
        if !m.ports.is_empty() {
            let a = self.port_alts(&PortSet::Only(m.ports.clone()));
            alts = and(alts, a);
        }
        for pm in &m.not_ports {
            let a = self.not_port_alts(pm, rule_proto);
            alts = and(alts, a);
        }
        Ok(alts)
    }

    /// Alternatives of "the destination port does not match `pm`": the protocol differs, or
    /// it is the protocol and the port is not in the spec.
    fn not_port_alts(&mut self, pm: &PortMatch, rule_proto: Option<u8>) -> Vec<Alt> {
        let mut out = Vec::new();
        let pinned = match pm.protocol {
            Some(p) => rule_proto == Some(p.number()),
            None => false,
        };
        let proto_eq = match pm.protocol {
            Some(p) => Expr::l4proto(p.number()),
            None => Expr::in_set(&[Field::MetaL4proto], super::PORTED_PROTOS_SET),
        };
        if !pinned {
            let proto_ne = match pm.protocol {
                Some(p) => Expr::ne(Field::MetaL4proto, Value::Proto(p.number())),
                None => Expr::not_in_set(&[Field::MetaL4proto], super::PORTED_PROTOS_SET),
            };
            out.push((None, vec![proto_ne]));
        }
        let head = |e: Expr| {
            let mut v = Vec::new();
            if !pinned {
                v.push(proto_eq.clone());
            }
            v.push(e);
            v
        };
        match &pm.port {
            // The protocol matches: no port of it is outside "all ports".
            PortSpec::All => {}
            PortSpec::Range { start, end } => {
                let e = if start == end {
                    Expr::ne(Field::ThDport, Value::Port(*start))
                } else {
                    Expr::Match {
                        fields: vec![Field::ThDport],
                        op: crate::nft::MatchOp::NotRange(Value::Port(*start), Value::Port(*end)),
                    }
                };
                out.push((None, head(e)));
            }
            PortSpec::Named(name) => {
                for f in FAMS {
                    let s = self.named_port_set(name, f);
                    let e = Expr::not_in_set(&[f.daddr(), Field::MetaL4proto, Field::ThDport], &s);
                    out.push((Some(f), head(e)));
                }
            }
        }
        out
    }

    /// An interval set holding the union of `nets` of one family; `None` when there are none
    /// of that family. Shared by every rule with the same list.
    fn union_set(&mut self, prefix: &str, nets: &[IpNetwork], f: Fam) -> Option<String> {
        let parts = disjoint(nets, f);
        if parts.is_empty() {
            return None;
        }
        let name = format!(
            "{prefix}{}_{}",
            f.digit(),
            short_hash(&format!("{parts:?}"))
        );
        if !self.sets.contains_key(&name) {
            let mut s = Set::new(&name, &[f.addr_key()]).interval();
            for n in parts {
                s.elements.insert(Element(vec![Part::prefix(n)]), None);
            }
            self.sets.insert(name.clone(), s);
            self.defs.insert(name.clone(), SetDef::Static);
        }
        Some(name)
    }

    /// The CIDRs of the network sets a selector matched, of one family, restricted to the
    /// sets whose namespace the selector's namespace scope covers (namespace labels are
    /// inventory data: they fill the set, the rule does not change with them). `None` when
    /// the sets hold no CIDR of that family.
    fn netsets_set(
        &mut self,
        sel: &EndpointSelector,
        sets: &[NetSetRef],
        f: Fam,
    ) -> Option<String> {
        let any = sets
            .iter()
            .flat_map(|s| &s.nets)
            .any(|n| (f == Fam::V4) == n.is_ipv4());
        if !any {
            return None;
        }
        let name = format!(
            "xns{}_{}",
            f.digit(),
            short_hash(&format!("{:?}{sets:?}", sel.namespaces))
        );
        if !self.sets.contains_key(&name) {
            let mut nets = Vec::new();
            for s in sets {
                let ns_ok = match (&s.namespace, &sel.namespaces) {
                    (None, _) | (Some(_), NamespaceMatch::Any) => true,
                    (Some(ns), NamespaceMatch::Named(n)) => ns == n,
                    (Some(ns), NamespaceMatch::Selector(sl)) => sl.matches(self.labels_of_ns(ns)),
                };
                if ns_ok {
                    nets.extend(s.nets.iter().copied());
                }
            }
            let mut s = Set::new(&name, &[f.addr_key()]).interval();
            for n in disjoint(&nets, f) {
                s.elements.insert(Element(vec![Part::prefix(n)]), None);
            }
            self.sets.insert(name.clone(), s);
            // Depends on network sets and namespace labels only (the structure).
            self.defs.insert(name.clone(), SetDef::Static);
        }
        Some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> Vec<IpNetwork> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn disjoint_drops_nested_and_duplicates_and_other_family() {
        let d = disjoint(
            &nets(&[
                "10.0.0.0/8",
                "10.1.0.0/16",
                "10.0.0.0/8",
                "192.168.1.0/24",
                "fd00::/8",
            ]),
            Fam::V4,
        );
        assert_eq!(d, nets(&["10.0.0.0/8", "192.168.1.0/24"]));
        assert_eq!(disjoint(&nets(&["10.0.0.0/8"]), Fam::V6), vec![]);
    }

    #[test]
    fn icmp_type_is_the_high_byte_of_th_sport() {
        let t = IcmpMatch {
            icmp_type: 8,
            code: None,
        };
        assert_eq!(icmp_value(&t), (0x0800, 0x08ff));
        let tc = IcmpMatch {
            icmp_type: 3,
            code: Some(4),
        };
        assert_eq!(icmp_value(&tc), (0x0304, 0x0304));
    }

    #[test]
    fn and_keeps_compatible_families_only() {
        let a = vec![
            (Some(Fam::V4), vec![Expr::l4proto(6)]),
            (Some(Fam::V6), vec![]),
        ];
        let b = vec![(Some(Fam::V4), vec![Expr::l4proto(17)]), (None, vec![])];
        let c = and(a, b);
        assert_eq!(c.len(), 3);
        assert!(c.iter().all(|(f, _)| f.is_some()));
    }
}
