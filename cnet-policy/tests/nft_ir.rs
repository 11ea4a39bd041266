//! Pure tests of the nftables IR: validation, rendering, and the diff (including a property
//! test that applying `diff(a, b)` to `a` gives `b`, with element-only changes whenever only
//! elements differ).
#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use cnet_policy::nft::{
    Chain, ChainKind, ChainPolicy, Change, ChangeList, Element, Expr, Family, Field, Hook, KeyType,
    NftError, PROTO_TCP, Part, Rule, Ruleset, Set, Table, Value, Verdict, diff, render_entry,
    render_ruleset, validate,
};
use proptest::prelude::*;

fn v4(a: u32) -> Value {
    Value::V4(Ipv4Addr::from(a))
}

fn base_table() -> Table {
    Table::new(Family::Inet, "cnet")
        .with_set(
            Set::new("pods", &[KeyType::Ipv4Addr])
                .interval()
                .with_element(Element::prefix("10.0.0.0/24".parse().unwrap())),
        )
        .with_chain(Chain::base("forward", Hook::Forward, 0, ChainPolicy::Drop))
        .with_chain(Chain::regular("pol"))
}

fn invalid(t: Table) -> String {
    match validate(&Ruleset::new().with_table(t)) {
        Err(NftError::Invalid { what, .. }) => what,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn inet_payload_needs_nfproto_first() {
    let t = base_table().with_chain(Chain::regular("pol").with_rule(Rule::new(vec![
        Expr::in_set(&[Field::IpSaddr], "pods"),
        Expr::verdict(Verdict::Accept),
    ])));
    assert!(invalid(t).contains("meta nfproto"));
    let ok = base_table().with_chain(Chain::regular("pol").with_rule(Rule::new(vec![
        Expr::ipv4(),
        Expr::in_set(&[Field::IpSaddr], "pods"),
        Expr::verdict(Verdict::Accept),
    ])));
    validate(&Ruleset::new().with_table(ok)).unwrap();
}

#[test]
fn lookups_must_match_the_set_key_and_kind() {
    let t = base_table().with_chain(Chain::regular("pol").with_rule(Rule::new(vec![
        Expr::ipv4(),
        Expr::in_set(&[Field::IpSaddr, Field::ThDport], "pods"),
    ])));
    assert!(invalid(t).contains("do not match the key"));
    let t = base_table().with_chain(Chain::regular("pol").with_rule(Rule::new(vec![
        Expr::ipv4(),
        Expr::vmap(&[Field::IpSaddr], "pods"),
    ])));
    assert!(invalid(t).contains("verdict map"));
    let t = base_table().with_chain(
        Chain::regular("pol")
            .with_rule(Rule::new(vec![Expr::in_set(&[Field::ThDport], "missing")])),
    );
    assert!(invalid(t).contains("no set"));
}

#[test]
fn jumps_must_target_existing_regular_chains_and_verdicts_end_rules() {
    let t = base_table().with_chain(
        Chain::regular("pol")
            .with_rule(Rule::new(vec![Expr::verdict(Verdict::Jump("nope".into()))])),
    );
    assert!(invalid(t).contains("no chain"));
    let t =
        base_table().with_chain(
            Chain::regular("pol").with_rule(Rule::new(vec![Expr::verdict(Verdict::Jump(
                "forward".into(),
            ))])),
        );
    assert!(invalid(t).contains("base chain"));
    let t = base_table().with_chain(Chain::regular("pol").with_rule(Rule::new(vec![
        Expr::verdict(Verdict::Accept),
        Expr::Counter,
    ])));
    assert!(invalid(t).contains("last"));
}

#[test]
fn overlapping_intervals_and_bad_elements_are_rejected() {
    let mut t = base_table();
    t.sets
        .get_mut("pods")
        .unwrap()
        .elements
        .insert(Element::value(Value::V4(Ipv4Addr::new(10, 0, 0, 7))), None);
    assert!(invalid(t).contains("overlap"));
    let t = base_table().with_set(
        Set::new("ports", &[KeyType::InetService])
            .with_element(Element(vec![Part::Range(Value::Port(1), Value::Port(2))])),
    );
    assert!(invalid(t).contains("interval"));
    let t = base_table()
        .with_set(Set::new("ports", &[KeyType::InetService]).with_element(Element::value(v4(1))));
    assert!(invalid(t).contains("not of type"));
    let t = base_table().with_set(
        Set::new("ifs", &[KeyType::Ifname])
            .with_element(Element::value(Value::Ifname("x".repeat(16)))),
    );
    assert!(invalid(t).contains("interface name"));
    let mut t = base_table();
    t.name = "bad name".into();
    assert!(invalid(t).contains("table name"));
}

#[test]
fn rendering_is_readable_nft_syntax() {
    let t = base_table()
        .with_set(
            Set::new(
                "svc",
                &[KeyType::Ipv4Addr, KeyType::InetProto, KeyType::InetService],
            )
            .interval()
            .with_element(Element(vec![
                Part::prefix("10.1.0.0/16".parse().unwrap()),
                Part::Single(Value::Proto(PROTO_TCP)),
                Part::Range(Value::Port(8000), Value::Port(8080)),
            ])),
        )
        .with_set(Set::verdict_map("dispatch", &[KeyType::Ifname]).with_entry(
            Element::value(Value::Ifname("cnet1a2b".into())),
            Verdict::Jump("pol".into()),
        ))
        .with_chain(
            Chain::base("forward", Hook::Forward, 0, ChainPolicy::Drop).with_rule(Rule::new(vec![
                Expr::vmap(&[Field::MetaIifname], "dispatch"),
            ])),
        );
    let text = render_ruleset(&Ruleset::new().with_table(t));
    for want in [
        "table inet cnet {",
        "type ipv4_addr . inet_proto . inet_service",
        "flags interval",
        "10.1.0.0/16 . tcp . 8000-8080",
        "map dispatch {",
        "type ifname : verdict",
        "\"cnet1a2b\" : jump pol",
        "type filter hook forward priority 0; policy drop;",
        "meta iifname vmap @dispatch",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    // A range that is not a prefix renders as a range.
    let e = Element(vec![Part::Range(
        Value::V4(Ipv4Addr::new(10, 0, 0, 1)),
        Value::V4(Ipv4Addr::new(10, 0, 0, 5)),
    )]);
    assert_eq!(render_entry(&e, None), "10.0.0.1-10.0.0.5");
    let e = Element::prefix("fd00::/64".parse().unwrap());
    assert_eq!(render_entry(&e, None), "fd00::/64");
}

#[test]
fn chain_changes_flush_and_readd_and_kind_changes_replace_the_table() {
    let a = Ruleset::new().with_table(base_table());
    let mut b = a.clone();
    b.tables.values_mut().next().unwrap().chains.insert(
        "pol".into(),
        Chain::regular("pol").with_rule(Rule::new(vec![Expr::verdict(Verdict::Accept)])),
    );
    let d = diff(&a, &b);
    assert_eq!(
        d.changes.len(),
        1,
        "empty chain gaining a rule: only the add ({d:?})"
    );
    let mut c = b.clone();
    c.tables.values_mut().next().unwrap().chains.insert(
        "pol".into(),
        Chain::regular("pol").with_rule(Rule::new(vec![Expr::verdict(Verdict::Drop)])),
    );
    let d = diff(&b, &c);
    assert!(matches!(d.changes[0], Change::FlushChain { .. }), "{d:?}");
    assert!(matches!(d.changes[1], Change::AddRule { .. }), "{d:?}");
    let mut k = c.clone();
    k.tables
        .values_mut()
        .next()
        .unwrap()
        .chains
        .get_mut("forward")
        .unwrap()
        .kind = ChainKind::Base {
        hook: Hook::Input,
        priority: 0,
        policy: ChainPolicy::Drop,
    };
    let d = diff(&c, &k);
    assert!(matches!(d.changes[0], Change::DeleteTable(_)), "{d:?}");
}

// ---- property: apply(diff(a, b), a) == b --------------------------------------------------

fn arb_table() -> impl Strategy<Value = Table> {
    let elems = proptest::collection::btree_set(0u32..64, 0..12);
    let ports = proptest::collection::btree_set(1u16..40, 0..6);
    let map = proptest::collection::btree_map(0u8..6, 0u8..3, 0..5);
    let rules = proptest::collection::vec((0u8..4, 1u16..100), 0..5);
    let constant = any::<bool>();
    (elems, ports, map, rules, constant).prop_map(|(elems, ports, map, rules, constant)| {
        let mut pods = Set::new("pods", &[KeyType::Ipv4Addr]).interval();
        for e in elems {
            // Disjoint /30 blocks or single addresses.
            let a = 0x0a00_0000 + e * 4;
            let el = if e % 2 == 0 {
                Element(vec![Part::Range(v4(a), v4(a + 3))])
            } else {
                Element::value(v4(a))
            };
            pods = pods.with_element(el);
        }
        let mut svc = Set::new("svc", &[KeyType::Ipv4Addr, KeyType::InetService]);
        if constant {
            svc = svc.constant();
        }
        for p in ports {
            svc = svc.with_element(Element(vec![
                Part::Single(v4(0x0a00_0001)),
                Part::Single(Value::Port(p)),
            ]));
        }
        let mut vmap = Set::verdict_map("dispatch", &[KeyType::Ifname]);
        for (i, v) in map {
            let verdict = match v {
                0 => Verdict::Accept,
                1 => Verdict::Drop,
                _ => Verdict::Jump("pol".into()),
            };
            vmap = vmap.with_entry(Element::value(Value::Ifname(format!("veth{i}"))), verdict);
        }
        let mut pol = Chain::regular("pol");
        for (kind, port) in rules {
            let r = match kind {
                0 => Rule::new(vec![
                    Expr::ipv4(),
                    Expr::in_set(&[Field::IpSaddr], "pods"),
                    Expr::verdict(Verdict::Accept),
                ]),
                1 => Rule::new(vec![
                    Expr::ipv4(),
                    Expr::in_set(&[Field::IpDaddr, Field::ThDport], "svc"),
                    Expr::verdict(Verdict::Accept),
                ]),
                2 => Rule::new(vec![
                    Expr::eq(Field::ThDport, Value::Port(port)),
                    Expr::verdict(Verdict::Drop),
                ]),
                _ => Rule::new(vec![Expr::Counter]).with_comment("c"),
            };
            pol = pol.with_rule(r);
        }
        let forward = Chain::base("forward", Hook::Forward, 0, ChainPolicy::Accept).with_rule(
            Rule::new(vec![Expr::vmap(&[Field::MetaIifname], "dispatch")]),
        );
        Table::new(Family::Inet, "cnet")
            .with_set(pods)
            .with_set(svc)
            .with_set(vmap)
            .with_chain(forward)
            .with_chain(pol)
    })
}

fn arb_ruleset() -> impl Strategy<Value = Ruleset> {
    (arb_table(), any::<bool>(), any::<bool>()).prop_map(|(t, present, other)| {
        let mut rs = Ruleset::new();
        if present {
            rs = rs.with_table(t);
        }
        if other {
            rs = rs.with_table(Table::new(Family::Bridge, "cnetbr"));
        }
        rs
    })
}

proptest! {
    #[test]
    fn diff_applied_gives_target(a in arb_ruleset(), b in arb_ruleset()) {
        validate(&a).unwrap();
        validate(&b).unwrap();
        let d = diff(&a, &b);
        let mut m = a.clone();
        d.apply_to(&mut m);
        prop_assert_eq!(&m, &b);
        prop_assert!(diff(&b, &b).is_empty());
        // Full replacement applied to anything gives b's tables.
        let mut junk = a.clone();
        ChangeList::replace_all(&b).apply_to(&mut junk);
        for (id, t) in &b.tables {
            prop_assert_eq!(junk.tables.get(id), Some(t));
        }
    }

    #[test]
    fn element_only_changes_stay_element_only(a in arb_table(), extra in 64u32..200, drop_first in any::<bool>()) {
        let old = Ruleset::new().with_table(a.clone());
        let mut t = a;
        let pods = t.sets.get_mut("pods").unwrap();
        if drop_first {
            let first = pods.elements.keys().next().cloned();
            if let Some(f) = first {
                pods.elements.remove(&f);
            }
        }
        pods.elements.insert(Element::value(v4(0x0a00_0000 + extra * 4 + 1)), None);
        let new = Ruleset::new().with_table(t);
        let d = diff(&old, &new);
        prop_assert!(d.is_elements_only(), "{:?}", d);
        let mut m = old.clone();
        d.apply_to(&mut m);
        prop_assert_eq!(m, new);
    }
}
