//! Privileged tests of the nftables programmer: every test works in its own network
//! namespaces (cnet_testsupport::NetNs) and never touches the root namespace's ruleset.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, Ipv6Addr};

use cnet_policy::nft::{
    Chain, ChainPolicy, Change, ChangeList, CtState, Element, Expr, Family, Field, Hook, KeyType,
    NftError, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, Part, Programmer, Rule, Ruleset, Set, SyncKind,
    Table, TableId, Value, Verdict, diff, render_ruleset,
};
use cnet_testsupport::{NetNs, require_priv};

fn v4(s: &str) -> Value {
    Value::V4(s.parse::<Ipv4Addr>().unwrap())
}

fn pfx(s: &str) -> Part {
    Part::prefix(s.parse().unwrap())
}

fn sample_table(name: &str) -> Table {
    let pods_v4 = Set::new("pods_v4", &[KeyType::Ipv4Addr])
        .interval()
        .with_element(Element(vec![pfx("10.0.0.0/24")]))
        .with_element(Element::value(v4("10.0.1.5")));
    let pods_v6 = Set::new("pods_v6", &[KeyType::Ipv6Addr])
        .interval()
        .with_element(Element(vec![pfx("fd00::/64")]))
        .with_element(Element::value(Value::V6(
            "fd01::7".parse::<Ipv6Addr>().unwrap(),
        )));
    let svc = Set::new(
        "svc",
        &[KeyType::Ipv4Addr, KeyType::InetProto, KeyType::InetService],
    )
    .interval()
    .with_element(Element(vec![
        Part::Single(v4("10.0.0.2")),
        Part::Single(Value::Proto(PROTO_TCP)),
        Part::Range(Value::Port(80), Value::Port(90)),
    ]))
    .with_element(Element(vec![
        pfx("10.0.0.0/28"),
        Part::Single(Value::Proto(PROTO_UDP)),
        Part::Single(Value::Port(53)),
    ]));
    let named =
        Set::new("named", &[KeyType::Ipv4Addr, KeyType::InetService]).with_element(Element(vec![
            Part::Single(v4("10.0.0.9")),
            Part::Single(Value::Port(8080)),
        ]));
    let ports = Set::new("ports", &[KeyType::InetService])
        .interval()
        .with_element(Element(vec![Part::Range(Value::Port(80), Value::Port(90))]))
        .with_element(Element::value(Value::Port(443)));
    let dispatch = Set::verdict_map("dispatch", &[KeyType::Ifname])
        .with_entry(
            Element::value(Value::Ifname("veth1".into())),
            Verdict::Jump("pol_a".into()),
        )
        .with_entry(Element::value(Value::Ifname("veth2".into())), Verdict::Drop);
    let by_addr = Set::verdict_map("by_addr", &[KeyType::Ipv4Addr])
        .interval()
        .with_entry(
            Element(vec![pfx("10.0.0.0/24")]),
            Verdict::Goto("pol_a".into()),
        );
    let forward = Chain::base("forward", Hook::Forward, 0, ChainPolicy::Accept)
        .with_rule(Rule::new(vec![
            Expr::ct_state(&[CtState::Established, CtState::Related]),
            Expr::verdict(Verdict::Accept),
        ]))
        .with_rule(Rule::new(vec![
            Expr::ct_state(&[CtState::Invalid]),
            Expr::verdict(Verdict::Drop),
        ]))
        .with_rule(Rule::new(vec![
            Expr::ipv6(),
            Expr::l4proto(PROTO_ICMPV6),
            Expr::range(
                Field::Icmpv6Type,
                Value::Icmpv6Type(133),
                Value::Icmpv6Type(137),
            ),
            Expr::verdict(Verdict::Accept),
        ]))
        .with_rule(Rule::new(vec![Expr::vmap(
            &[Field::MetaIifname],
            "dispatch",
        )]))
        .with_rule(Rule::new(vec![
            Expr::ipv4(),
            Expr::vmap(&[Field::IpDaddr], "by_addr"),
        ]));
    let pol_a = Chain::regular("pol_a")
        .with_rule(Rule::new(vec![
            Expr::ipv4(),
            Expr::in_set(&[Field::IpSaddr], "pods_v4"),
            Expr::in_set(&[Field::ThDport], "ports"),
            Expr::verdict(Verdict::Accept),
        ]))
        .with_rule(Rule::new(vec![
            Expr::ipv4(),
            Expr::in_set(&[Field::IpDaddr, Field::MetaL4proto, Field::ThDport], "svc"),
            Expr::Counter,
            Expr::verdict(Verdict::Accept),
        ]))
        .with_rule(Rule::new(vec![
            Expr::ipv4(),
            Expr::in_set(&[Field::IpDaddr, Field::ThDport], "named"),
            Expr::verdict(Verdict::Accept),
        ]))
        .with_rule(Rule::new(vec![
            Expr::ipv6(),
            Expr::in_set(&[Field::Ip6Saddr], "pods_v6"),
            Expr::verdict(Verdict::Accept),
        ]))
        .with_rule(
            Rule::new(vec![
                Expr::l4proto(PROTO_TCP),
                Expr::range(Field::ThDport, Value::Port(1000), Value::Port(2000)),
                Expr::ne(Field::ThDport, Value::Port(1500)),
                Expr::verdict(Verdict::Accept),
            ])
            .with_comment("tcp high ports"),
        )
        .with_rule(Rule::new(vec![
            Expr::ipv4(),
            Expr::not_in_set(&[Field::IpSaddr], "pods_v4"),
            Expr::Log {
                prefix: "cnet-deny ".into(),
            },
            Expr::verdict(Verdict::Drop),
        ]))
        .with_rule(Rule::new(vec![
            Expr::eq(Field::MetaOifname, Value::Ifname("veth9".into())),
            Expr::verdict(Verdict::Return),
        ]))
        .with_rule(Rule::new(vec![Expr::verdict(Verdict::Drop)]));
    Table::new(Family::Inet, name)
        .with_set(pods_v4)
        .with_set(pods_v6)
        .with_set(svc)
        .with_set(named)
        .with_set(ports)
        .with_set(dispatch)
        .with_set(by_addr)
        .with_chain(forward)
        .with_chain(pol_a)
}

/// A `bridge`-family table as bridge mode uses it: frames between ports of one bridge,
/// matched on ether type first. (No `ct state` here: conntrack in the bridge family needs the
/// nf_conntrack_bridge module, which this kernel does not have loaded: EPROTO.)
fn bridge_table() -> Table {
    let pods = Set::new("pods", &[KeyType::Ipv4Addr])
        .interval()
        .with_element(Element(vec![pfx("10.0.0.0/24")]));
    let pods6 = Set::new("pods6", &[KeyType::Ipv6Addr]).with_element(Element::value(Value::V6(
        "fd00::5".parse::<Ipv6Addr>().unwrap(),
    )));
    let fwd = Chain::base("forward", Hook::Forward, -200, ChainPolicy::Accept)
        .with_rule(Rule::new(vec![
            Expr::eq(Field::MetaProtocol, Value::EtherType(0x0800)),
            Expr::in_set(&[Field::IpDaddr], "pods"),
            Expr::verdict(Verdict::Drop),
        ]))
        .with_rule(Rule::new(vec![
            Expr::eq(Field::MetaProtocol, Value::EtherType(0x86dd)),
            Expr::in_set(&[Field::Ip6Daddr], "pods6"),
            Expr::verdict(Verdict::Drop),
        ]));
    Table::new(Family::Bridge, "cnet")
        .with_set(pods)
        .with_set(pods6)
        .with_chain(fwd)
}

fn sample() -> Ruleset {
    Ruleset::new()
        .with_table(sample_table("cnet"))
        .with_table(bridge_table())
}

/// `nft list table` without handles and with counters zeroed, for comparisons.
fn listing(ns: &NetNs, family: &str, table: &str) -> String {
    let out = ns.run(&["nft", "list", "table", family, table]);
    let out = out
        .lines()
        .map(|l| {
            let mut l = l.to_string();
            if let Some(i) = l.find("counter packets") {
                let rest = &l[i..];
                let end = rest
                    .find(" bytes ")
                    .and_then(|b| rest[b + 7..].find(' ').map(|e| b + 7 + e))
                    .unwrap_or(rest.len());
                l.replace_range(i..i + end, "counter");
            }
            l
        })
        .collect::<Vec<_>>()
        .join("\n");
    canon(&out)
}

/// A listing with its top-level blocks (sets, maps, chains) sorted by text: the kernel lists
/// them in creation order, which an incremental update legitimately changes.
fn canon(listing: &str) -> String {
    let mut blocks: Vec<String> = Vec::new();
    let mut cur: Option<String> = None;
    let mut head = Vec::new();
    for l in listing.lines() {
        if let Some(b) = cur.as_mut() {
            b.push_str(l);
            b.push('\n');
            if l == "\t}" {
                blocks.push(cur.take().unwrap());
            }
        } else if l.starts_with('\t') && l.ends_with('{') {
            cur = Some(format!("{l}\n"));
        } else if !l.trim().is_empty() {
            head.push(l.to_string());
        }
    }
    blocks.sort();
    format!("{}\n{}", head.join("\n"), blocks.concat())
}

fn write_tmp(text: &str) -> tempfile::NamedTempFile {
    use std::io::Write;
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn rendered_text_is_accepted_by_nft() {
    require_priv!();
    let ns = NetNs::new("nftc");
    let text = render_ruleset(&sample());
    let f = write_tmp(&text);
    let out = ns.exec(&["nft", "-c", "-f", f.path().to_str().unwrap()]);
    assert!(
        out.status.success(),
        "nft -c rejected:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn netlink_program_equals_nft_f_of_rendered_text() {
    require_priv!();
    let a = NetNs::new("nfta");
    let b = NetNs::new("nftb");
    let rs = sample();
    let report = a.in_netns(|| {
        let mut p = Programmer::new().unwrap();
        p.sync(&rs).unwrap()
    });
    assert_eq!(report.kind, SyncKind::Full);
    let f = write_tmp(&render_ruleset(&rs));
    b.run(&["nft", "-f", f.path().to_str().unwrap()]);
    let ours = listing(&a, "inet", "cnet");
    let theirs = listing(&b, "inet", "cnet");
    assert_eq!(ours, theirs, "netlink-programmed vs nft -f listing differ");
    assert_eq!(
        listing(&a, "bridge", "cnet"),
        listing(&b, "bridge", "cnet"),
        "bridge table differs"
    );
    assert!(
        ours.contains("ip daddr . meta l4proto . th dport @svc"),
        "{ours}"
    );
    assert!(ours.contains("iifname vmap @dispatch"), "{ours}");
}

fn prog(ns: &NetNs, rs: &Ruleset) -> (Programmer, cnet_policy::nft::SyncReport) {
    // A Programmer's socket stays in the namespace it was created in, so it is created inside
    // the namespace and then used from this thread.
    ns.in_netns(|| {
        let mut p = Programmer::new().unwrap();
        let r = p.sync(rs).unwrap();
        (p, r)
    })
}

fn cnet_id() -> TableId {
    TableId {
        family: Family::Inet,
        name: "cnet".into(),
    }
}

#[test]
fn pods_coming_and_going_are_element_only_batches() {
    require_priv!();
    let ns = NetNs::new("nfte");
    let old = sample();
    let (mut p, _) = prog(&ns, &old);
    let mut new = old.clone();
    {
        let t = new.tables.get_mut(&cnet_id()).unwrap();
        let pods = t.sets.get_mut("pods_v4").unwrap();
        pods.elements.remove(&Element::value(v4("10.0.1.5")));
        pods.elements
            .insert(Element(vec![pfx("10.0.2.0/24")]), None);
        pods.elements.insert(Element::value(v4("10.0.3.9")), None);
        let d = t.sets.get_mut("dispatch").unwrap();
        d.elements.insert(
            Element::value(Value::Ifname("veth3".into())),
            Some(Verdict::Jump("pol_a".into())),
        );
        // A changed verdict: delete + add of the same key.
        d.elements.insert(
            Element::value(Value::Ifname("veth2".into())),
            Some(Verdict::Accept),
        );
    }
    let changes = diff(&old, &new);
    assert!(changes.is_elements_only(), "{changes:?}");
    assert_eq!(changes.element_changes(), 6);
    let r = p.sync(&new).unwrap();
    assert_eq!(r.kind, SyncKind::Incremental);
    let l = listing(&ns, "inet", "cnet");
    assert!(l.contains("10.0.2.0/24") && l.contains("10.0.3.9"), "{l}");
    assert!(!l.contains("10.0.1.5"), "{l}");
    assert!(
        l.contains("\"veth3\" : jump pol_a") && l.contains("\"veth2\" : accept"),
        "{l}"
    );
    // And back: removing them again is element-only too.
    let r = p.sync(&old).unwrap();
    assert_eq!(r.kind, SyncKind::Incremental);
    let fresh = NetNs::new("nftf");
    prog(&fresh, &old);
    assert_eq!(
        listing(&ns, "inet", "cnet"),
        listing(&fresh, "inet", "cnet")
    );
    // Syncing the same state again is a no-op.
    assert_eq!(p.sync(&old).unwrap().kind, SyncKind::NoChange);
    // Someone else committing elsewhere makes us compare snapshots: still no drift, also
    // after element-only updates (element counts follow the IR).
    p.sync(&new).unwrap();
    ns.run(&["nft", "add", "table", "ip", "someone_else"]);
    let r = p.sync(&new).unwrap();
    assert_eq!((r.kind, r.drift), (SyncKind::NoChange, false));
}

#[test]
fn duplicate_element_fails_whole_batch_and_leaves_nothing() {
    require_priv!();
    let ns = NetNs::new("nftx");
    let rs = sample();
    let (mut p, _) = prog(&ns, &rs);
    let before = listing(&ns, "inet", "cnet");
    let t = rs.tables.get(&cnet_id()).unwrap();
    let decl = t.sets["pods_v4"].decl.clone();
    let bad = ChangeList {
        changes: vec![
            Change::AddChain {
                table: cnet_id(),
                name: "extra".into(),
                kind: cnet_policy::nft::ChainKind::Regular,
            },
            Change::AddElements {
                table: cnet_id(),
                decl: decl.clone(),
                elements: vec![(Element::value(v4("192.168.9.9")), None)],
            },
            // Already present: the kernel answers EEXIST and aborts everything.
            Change::AddElements {
                table: cnet_id(),
                decl,
                elements: vec![(Element::value(v4("10.0.1.5")), None)],
            },
        ],
    };
    let err = p.apply(&bad).unwrap_err();
    match &err {
        NftError::Rejected { errno, errors } => {
            assert_eq!(*errno, libc_eexist(), "{err}");
            assert!(errors.iter().any(|e| e.contains("10.0.1.5")), "{err}");
        }
        other => panic!("expected Rejected, got {other}"),
    }
    assert_eq!(
        listing(&ns, "inet", "cnet"),
        before,
        "a failed batch changed the kernel"
    );
    // The diff never produces that batch: adding what is present is no change at all.
    assert!(diff(&rs, &rs).is_empty());
    // Deleting a missing element is ENOENT, also all-or-nothing.
    let t = rs.tables.get(&cnet_id()).unwrap();
    let missing = ChangeList {
        changes: vec![Change::DeleteElements {
            table: cnet_id(),
            decl: t.sets["ports"].decl.clone(),
            elements: vec![(Element::value(Value::Port(9999)), None)],
        }],
    };
    match p.apply(&missing).unwrap_err() {
        NftError::Rejected { errno, .. } => assert_eq!(errno, 2),
        other => panic!("expected ENOENT, got {other}"),
    }
    assert_eq!(listing(&ns, "inet", "cnet"), before);
}

fn libc_eexist() -> i32 {
    17
}

#[test]
fn flushed_or_changed_table_is_restored_on_next_sync() {
    require_priv!();
    let ns = NetNs::new("nftr");
    let rs = sample();
    let (mut p, _) = prog(&ns, &rs);
    let want = listing(&ns, "inet", "cnet");
    let cases: [&[&str]; 5] = [
        &["nft", "flush", "ruleset"],
        &["nft", "flush", "chain", "inet", "cnet", "pol_a"],
        &["nft", "add", "rule", "inet", "cnet", "forward", "accept"],
        &[
            "nft",
            "delete",
            "element",
            "inet",
            "cnet",
            "pods_v4",
            "{ 10.0.1.5 }",
        ],
        &["nft", "delete", "table", "inet", "cnet"],
    ];
    for cmd in cases {
        ns.run(cmd);
        assert_ne!(listing_or_empty(&ns), want, "{cmd:?} changed nothing?");
        let r = p.sync(&rs).unwrap();
        assert!(r.drift, "{cmd:?} not detected");
        assert_eq!(r.kind, SyncKind::Full);
        assert_eq!(
            listing(&ns, "inet", "cnet"),
            want,
            "not restored after {cmd:?}"
        );
        // Nothing changed since: the fast path.
        assert_eq!(p.sync(&rs).unwrap().kind, SyncKind::NoChange);
    }
}

fn listing_or_empty(ns: &NetNs) -> String {
    let out = ns.exec(&["nft", "list", "table", "inet", "cnet"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn other_owners_tables_and_iptables_are_untouched() {
    require_priv!();
    let ns = NetNs::new("nfto");
    let other = write_tmp(
        "table ip other {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t\tip saddr 192.0.2.1 drop\n\t}\n}\n",
    );
    ns.run(&["nft", "-f", other.path().to_str().unwrap()]);
    let iptables = ns.ok(&[
        "iptables",
        "-A",
        "INPUT",
        "-s",
        "198.51.100.7",
        "-j",
        "DROP",
    ]);
    let before_other = ns.run(&["nft", "list", "table", "ip", "other"]);
    let rs = sample();
    let (mut p, _) = prog(&ns, &rs);
    // Outside change to someone else's table: ours is still fine, theirs stays.
    ns.run(&[
        "nft",
        "add",
        "rule",
        "ip",
        "other",
        "input",
        "ip",
        "saddr",
        "192.0.2.2",
        "drop",
    ]);
    let r = p.sync(&rs).unwrap();
    assert!(!r.drift);
    assert_eq!(r.kind, SyncKind::NoChange);
    let before_other2 = ns.run(&["nft", "list", "table", "ip", "other"]);
    assert!(before_other2.contains("192.0.2.2"));
    // A full replacement of ours and then removing ours leave theirs alone.
    p.forget();
    assert_eq!(p.sync(&rs).unwrap().kind, SyncKind::Full);
    assert_eq!(
        ns.run(&["nft", "list", "table", "ip", "other"]),
        before_other2
    );
    p.sync(&Ruleset::new()).unwrap();
    assert!(
        !ns.ok(&["nft", "list", "table", "inet", "cnet"]),
        "our table not deleted"
    );
    assert_eq!(
        ns.run(&["nft", "list", "table", "ip", "other"]),
        before_other2
    );
    assert!(before_other.contains("192.0.2.1"));
    if iptables {
        let saved = ns.run(&["iptables", "-S", "INPUT"]);
        assert!(saved.contains("198.51.100.7"), "{saved}");
    }
}

#[test]
fn policy_change_touches_only_its_chain_and_sets() {
    require_priv!();
    let ns = NetNs::new("nftp");
    let old = sample();
    let (mut p, _) = prog(&ns, &old);
    let mut new = old.clone();
    {
        let t = new.tables.get_mut(&cnet_id()).unwrap();
        t.chains.get_mut("pol_a").unwrap().rules.insert(
            0,
            Rule::new(vec![
                Expr::l4proto(PROTO_UDP),
                Expr::eq(Field::ThDport, Value::Port(5353)),
                Expr::verdict(Verdict::Accept),
            ]),
        );
        // Declaration change: the set is replaced, and pol_a (which uses it) with it.
        t.sets.get_mut("named").unwrap().decl.constant = true;
        t.sets.insert(
            "extra".into(),
            Set::new("extra", &[KeyType::InetProto])
                .with_element(Element::value(Value::Proto(PROTO_TCP))),
        );
    }
    let changes = diff(&old, &new);
    for c in &changes.changes {
        match c {
            Change::FlushChain { chain, .. } | Change::AddRule { chain, .. } => {
                assert_eq!(chain, "pol_a", "{c}")
            }
            Change::DeleteSet { decl, .. } => assert_eq!(decl.name, "named"),
            Change::AddSet { decl, .. } | Change::AddElements { decl, .. } => {
                assert!(decl.name == "named" || decl.name == "extra", "{c}")
            }
            other => panic!("unexpected change {other}"),
        }
    }
    assert_eq!(p.sync(&new).unwrap().kind, SyncKind::Incremental);
    let fresh = NetNs::new("nftq");
    prog(&fresh, &new);
    assert_eq!(
        listing(&ns, "inet", "cnet"),
        listing(&fresh, "inet", "cnet")
    );
}

#[test]
fn element_added_by_someone_else_does_not_break_our_add() {
    require_priv!();
    let ns = NetNs::new("nftd");
    let old = sample();
    let (mut p, _) = prog(&ns, &old);
    // Someone adds the very element we are about to add: a blind "create element" would fail
    // the batch with EEXIST. The generation check sees the outside commit, the snapshot sees
    // the element count change, and the sync becomes a full replacement instead.
    ns.run(&[
        "nft",
        "add",
        "element",
        "inet",
        "cnet",
        "pods_v4",
        "{ 10.0.9.9 }",
    ]);
    let mut new = old.clone();
    new.tables
        .get_mut(&cnet_id())
        .unwrap()
        .sets
        .get_mut("pods_v4")
        .unwrap()
        .elements
        .insert(Element::value(v4("10.0.9.9")), None);
    let r = p.sync(&new).unwrap();
    assert!(r.drift);
    assert_eq!(r.kind, SyncKind::Full);
    let fresh = NetNs::new("nftg");
    prog(&fresh, &new);
    assert_eq!(
        listing(&ns, "inet", "cnet"),
        listing(&fresh, "inet", "cnet")
    );
    // Without a reconcile check (a programmer that believes its model), the same batch is
    // refused as a whole and leaves the kernel as it was.
    ns.run(&["nft", "add", "element", "inet", "cnet", "ports", "{ 7777 }"]);
    let decl = new.tables[&cnet_id()].sets["ports"].decl.clone();
    let blind = ChangeList {
        changes: vec![Change::AddElements {
            table: cnet_id(),
            decl,
            elements: vec![(Element::value(Value::Port(7777)), None)],
        }],
    };
    let before = listing(&ns, "inet", "cnet");
    assert!(matches!(
        p.apply(&blind),
        Err(NftError::Rejected { errno: 17, .. })
    ));
    assert_eq!(listing(&ns, "inet", "cnet"), before);
}

#[test]
fn tables_no_longer_desired_are_deleted_even_after_a_failed_sync() {
    require_priv!();
    let ns = NetNs::new("nftw");
    let (mut p, _) = prog(&ns, &sample());
    // A ruleset the kernel refuses (a jump loop: ELOOP), which also drops our tables.
    let looped = Table::new(Family::Inet, "cnetx")
        .with_chain(
            Chain::base("forward", Hook::Forward, 0, ChainPolicy::Accept)
                .with_rule(Rule::new(vec![Expr::verdict(Verdict::Jump("a".into()))])),
        )
        .with_chain(
            Chain::regular("a")
                .with_rule(Rule::new(vec![Expr::verdict(Verdict::Jump("b".into()))])),
        )
        .with_chain(
            Chain::regular("b")
                .with_rule(Rule::new(vec![Expr::verdict(Verdict::Jump("a".into()))])),
        );
    let bad = Ruleset::new().with_table(looped);
    match p.sync(&bad) {
        Err(NftError::Rejected { .. }) => {}
        other => panic!("expected a rejected batch, got {other:?}"),
    }
    // The refused batch changed nothing.
    assert!(ns.ok(&["nft", "list", "table", "inet", "cnet"]));
    assert!(!ns.ok(&["nft", "list", "table", "inet", "cnetx"]));
    // The state is unknown now; the next sync replaces, and still deletes what we owned.
    let r = p.sync(&Ruleset::new()).unwrap();
    assert_eq!(r.kind, SyncKind::Full);
    for (fam, t) in [("inet", "cnet"), ("bridge", "cnet"), ("inet", "cnetx")] {
        assert!(!ns.ok(&["nft", "list", "table", fam, t]), "{fam} {t} left");
    }
}

/// After a full replacement the programmer records the snapshot it predicts (handles are
/// numbered per table in creation order) instead of dumping every rule: it must equal the
/// kernel's dump, into an empty namespace and when replacing our own tables, so another
/// user's commit later shows no drift.
#[test]
fn full_replacement_snapshot_is_predicted() {
    require_priv!();
    let ns = NetNs::new("nftp");
    let rs = sample();
    let (mut p, r) = prog(&ns, &rs);
    assert_eq!(r.kind, SyncKind::Full);
    for round in 0..2 {
        for id in rs.tables.keys() {
            let dumped = p.snapshot(id).unwrap();
            assert!(dumped.as_ref().is_some_and(|d| !d.rules.is_empty()));
            assert_eq!(
                dumped.as_ref(),
                p.recorded_snapshot(id),
                "{id}, round {round}"
            );
        }
        p.forget();
        assert_eq!(p.sync(&rs).unwrap().kind, SyncKind::Full);
    }
    ns.run(&["nft", "add", "table", "ip", "someone_else"]);
    let r = p.sync(&rs).unwrap();
    assert_eq!((r.kind, r.drift), (SyncKind::NoChange, false));
}
