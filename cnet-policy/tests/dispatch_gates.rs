//! Dispatch without chain verdicts in maps: the compiled table holds no `goto`/`jump` set
//! element (a pod change never makes the kernel re-validate the table), a pod add or remove
//! through the engine changes only plain set elements and `drop` map elements, and on a real
//! kernel a pending pod drops while a selected pod is filtered by its policy.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;

use cnet_policy::compile::{Attachments, CompileOptions, Mode, compile};
use cnet_policy::engine::Engine;
use cnet_policy::nft::{
    Change, ChangeList, Element, Expr, MatchOp, Ruleset, SyncKind, Value, Verdict, diff,
};
use cnet_policy::{Endpoint, Inventory, PolicySet, parse_yaml};
use cnet_testsupport::require_priv;

/// Ingress and egress policies in two namespaces (a namespaced tier with two namespace
/// chains per direction).
const POLICIES: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api, namespace: prod}
spec:
  podSelector: {matchLabels: {app: api}}
  policyTypes: [Egress]
  egress:
  - to: [{podSelector: {matchLabels: {app: db}}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: dev}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
";

fn pod(ns: &str, name: &str, app: &str, i: u8) -> Endpoint {
    Endpoint::new(
        ns,
        name,
        BTreeMap::from([("app".to_string(), app.to_string())]),
        vec![
            format!("10.31.{i}.2").parse().unwrap(),
            format!("fd31::{i}:2").parse().unwrap(),
        ],
    )
}

fn ifname(i: u8) -> String {
    format!("cnetg{i:02x}")
}

fn chain_verdict(v: &Option<Verdict>) -> bool {
    matches!(v, Some(Verdict::Goto(_) | Verdict::Jump(_)))
}

/// Every element change of a change list: (set name, add?, element, verdict).
fn element_changes(cl: &ChangeList) -> Vec<(String, bool, Element, Option<Verdict>)> {
    let mut out = Vec::new();
    for c in &cl.changes {
        let (decl, elements, add) = match c {
            Change::AddElements { decl, elements, .. } => (decl, elements, true),
            Change::DeleteElements { decl, elements, .. } => (decl, elements, false),
            other => panic!("not an element change: {other:?}"),
        };
        for (e, v) in elements {
            out.push((decl.name.clone(), add, e.clone(), v.clone()));
        }
    }
    out
}

fn keys_of(mode: Mode, ep: &Endpoint, i: u8) -> Vec<Element> {
    match mode {
        Mode::Transparent => vec![Element::value(Value::Ifname(ifname(i)))],
        Mode::Bridge => ep
            .addresses
            .iter()
            .map(|a| Element::value(Value::addr(*a)))
            .collect(),
    }
}

#[test]
fn compiled_tables_hold_no_chain_verdict_elements() {
    let policies = PolicySet::from_network_policies(&parse_yaml(POLICIES).unwrap()).unwrap();
    let mut inv = Inventory::default();
    let mut att = Attachments::default();
    let apps = ["db", "api", "web"];
    for i in 0..30u8 {
        let ns = if i % 2 == 0 { "prod" } else { "dev" };
        let ep = pod(ns, &format!("p{i}"), apps[usize::from(i) % 3], i);
        att.host_ifname.insert(ep.id(), ifname(i));
        if i % 5 == 0 {
            att.pending.insert(ep.id());
        }
        inv.upsert_endpoint(ep);
    }
    for mode in [Mode::Transparent, Mode::Bridge] {
        let rs = compile(&policies, &inv, &att, &CompileOptions::new(mode)).unwrap();
        let t = rs.tables.values().next().unwrap();
        for s in t.sets.values() {
            for (e, v) in &s.elements {
                assert!(
                    !chain_verdict(v),
                    "{mode:?}: {}: {e:?} -> {v:?}",
                    s.decl.name
                );
            }
        }
        // Pending pods drop (6 of the 30), in both directions, for every key family.
        let maps: Vec<_> = t.sets.values().filter(|s| s.decl.verdict_map).collect();
        assert!(!maps.is_empty());
        for m in &maps {
            assert!(m.decl.name.contains("_dispatch"), "{}", m.decl.name);
            assert!(m.elements.values().all(|v| *v == Some(Verdict::Drop)));
            assert_eq!(m.elements.len(), 6, "{mode:?}: {}", m.decl.name);
        }
        // The namespaced tier reaches each namespace's chain through its hash bucket: one
        // rule per bucket on a bucket set, then one rule per namespace on a member set.
        let fams = if mode == Mode::Bridge { 2 } else { 1 };
        for tier in ["eg_t0", "ing_t0"] {
            let (to_bucket, to_ns) = tier_dispatch_rules(t, tier);
            assert!((1..=2 * fams).contains(&to_bucket), "{mode:?} {tier}");
            assert_eq!(to_ns, 2 * fams, "{mode:?} {tier}: prod and dev");
        }
    }
}

fn looks_up(r: &cnet_policy::nft::Rule, prefix: &str) -> bool {
    r.exprs.iter().any(
        |e| matches!(e, Expr::Match { op: MatchOp::InSet(set), .. } if set.starts_with(prefix)),
    )
}

/// (rules of a namespaced tier chain on bucket sets, rules of its bucket chains on namespace
/// member sets); panics when the tier chain holds anything else but its final verdict.
fn tier_dispatch_rules(t: &cnet_policy::nft::Table, tier: &str) -> (usize, usize) {
    let rules = &t.chains[tier].rules;
    let to_bucket = rules.iter().filter(|r| looks_up(r, "nsb")).count();
    assert_eq!(to_bucket + 1, rules.len(), "{tier}: {rules:?}");
    let to_ns = t
        .chains
        .iter()
        .filter(|(n, _)| n.starts_with(&format!("{tier}_b")))
        .flat_map(|(_, c)| &c.rules)
        .filter(|r| looks_up(r, "nsm"))
        .count();
    (to_bucket, to_ns)
}

/// `n` namespaces, each with a default-deny ingress policy.
fn deny_all(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: deny, \
                 namespace: ns{i}}}\nspec:\n  podSelector: {{}}\n  policyTypes: [Ingress]\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

#[test]
fn many_namespaces_dispatch_in_two_bounded_levels_and_engine_equals_compile() {
    let nps = parse_yaml(&deny_all(60)).unwrap();
    for mode in [Mode::Transparent, Mode::Bridge] {
        let mut e = Engine::new(mode);
        for np in &nps {
            e.apply_policy(np).unwrap();
        }
        e.prepare().unwrap();
        for i in 0..120u8 {
            let ns = format!("ns{}", i % 60);
            e.upsert_endpoint(pod(&ns, &format!("p{i}"), "db", i), Some(ifname(i)));
            if i % 7 == 0 {
                e.prepare().unwrap();
            }
        }
        for i in (0..120u8).step_by(3) {
            let ns = format!("ns{}", i % 60);
            e.remove_endpoint(&cnet_policy::EndpointId::new(&ns, format!("p{i}")));
        }
        let live = e.desired().unwrap();
        let set = e.policy_set().unwrap().clone();
        let full = compile(&set, e.inventory(), e.attachments(), e.options()).unwrap();
        assert!(live == full, "{mode:?}: {:?}", diff(&full, &live));
        let t = full.tables.values().next().unwrap();
        let fams = if mode == Mode::Bridge { 2 } else { 1 };
        let (to_bucket, to_ns) = tier_dispatch_rules(t, "ing_t0");
        assert!(to_bucket <= 16 * fams, "{mode:?}: {to_bucket}");
        assert!(
            to_bucket > 8 * fams,
            "{mode:?}: 60 namespaces spread: {to_bucket}"
        );
        assert_eq!(to_ns, 60 * fams, "{mode:?}");
        // Every bucket chain holds only its own namespaces (and the final verdict).
        for (name, c) in t.chains.iter().filter(|(n, _)| n.starts_with("ing_t0_b")) {
            assert!(c.rules.len() <= 60 * fams + 1, "{name}");
        }
    }
}

#[test]
fn pod_changes_through_the_engine_touch_only_plain_and_drop_elements() {
    for mode in [Mode::Transparent, Mode::Bridge] {
        let mut e = Engine::new(mode);
        for np in parse_yaml(POLICIES).unwrap() {
            e.apply_policy(&np).unwrap();
        }
        for i in 0..6u8 {
            let ns = if i % 2 == 0 { "prod" } else { "dev" };
            e.upsert_endpoint(pod(ns, &format!("p{i}"), "db", i), Some(ifname(i)));
        }
        let mut last = e.desired().unwrap();
        let mut step =
            |e: &mut Engine, what: &str| -> Vec<(String, bool, Element, Option<Verdict>)> {
                let now: Ruleset = e.desired().unwrap();
                let cl = diff(&last, &now);
                assert!(cl.is_elements_only(), "{mode:?} {what}: {cl:?}");
                let ch = element_changes(&cl);
                for (set, _, el, v) in &ch {
                    assert!(!chain_verdict(v), "{mode:?} {what}: {set}: {el:?} -> {v:?}");
                }
                last = now;
                ch
            };
        // A selected pod (db in prod: ingress) joins: its keys enter `ing_selected*` and
        // prod's member sets; nothing in any map.
        let db = pod("prod", "new-db", "db", 40);
        let keys = keys_of(mode, &db, 40);
        e.upsert_endpoint(db.clone(), Some(ifname(40)));
        let ch = step(&mut e, "add");
        assert!(
            ch.iter().all(|(_, add, _, v)| *add && v.is_none()),
            "{ch:?}"
        );
        for k in &keys {
            let sets: Vec<&str> = ch
                .iter()
                .filter(|(_, _, el, _)| el == k)
                .map(|(s, _, _, _)| s.as_str())
                .collect();
            assert!(
                sets.iter().any(|s| s.starts_with("ing_selected")),
                "{sets:?}"
            );
            assert!(sets.iter().any(|s| s.starts_with("nsm")), "{sets:?}");
            assert!(
                !sets.iter().any(|s| s.starts_with("eg_selected")),
                "{sets:?}"
            );
        }
        // Removed: the same elements go.
        e.remove_endpoint(&db.id());
        let ch = step(&mut e, "remove");
        assert!(ch.iter().all(|(_, add, _, _)| !*add), "{ch:?}");
        // Pending: its keys also get `drop` in both dispatch maps; becoming ready deletes
        // exactly those.
        e.upsert_pending_endpoint(db.clone(), Some(ifname(40)));
        let ch = step(&mut e, "pending add");
        let drops: Vec<_> = ch.iter().filter(|(_, _, _, v)| v.is_some()).collect();
        assert_eq!(drops.len(), 2 * keys.len(), "{drops:?}");
        assert!(
            drops
                .iter()
                .all(|(s, add, _, v)| *add && s.contains("_dispatch") && *v == Some(Verdict::Drop))
        );
        e.upsert_endpoint(db.clone(), Some(ifname(40)));
        let ch = step(&mut e, "ready");
        assert_eq!(ch.len(), 2 * keys.len(), "{ch:?}");
        assert!(
            ch.iter()
                .all(|(s, add, _, _)| !*add && s.contains("_dispatch"))
        );
    }
}

fn wait_until(f: impl Fn() -> bool) -> bool {
    for _ in 0..40 {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

#[test]
fn pending_pod_drops_and_selected_pod_is_filtered_on_the_kernel() {
    require_priv!();
    // Host interfaces h1 (client 10.9x.1.2) and h2 (server 10.9x.2.2), transparent mode.
    let (node, p1, p2) = common::routed_pair(["dgn", "dg1", "dg2"], "h", "10.93", true);
    let echo = p2.tcp_echo();
    let port = echo.port();
    let server_v4: IpAddr = "10.93.2.2".parse().unwrap();
    let server_v6: IpAddr = "fd00:2::2".parse().unwrap();
    assert!(
        wait_until(|| p1.tcp_ok(server_v4, port) && p1.tcp_ok(server_v6, port)),
        "server not reachable before policy"
    );
    let endpoint = |name: &str, app: &str, i: u8| {
        Endpoint::new(
            "prod",
            name,
            BTreeMap::from([("app".to_string(), app.to_string())]),
            vec![
                format!("10.93.{i}.2").parse().unwrap(),
                format!("fd00:{i}::2").parse().unwrap(),
            ],
        )
    };
    let client = endpoint("client", "api", 1);
    let server = endpoint("server", "db", 2);
    let mut e = Engine::new(Mode::Transparent);
    for np in parse_yaml(POLICIES).unwrap() {
        e.apply_policy(&np).unwrap();
    }
    // Forty more namespaces with policies: prod's chain sits among many in the buckets.
    for np in parse_yaml(&deny_all(40)).unwrap() {
        e.apply_policy(&np).unwrap();
    }
    // The server attached but pending: all its traffic drops, even with no policy allowing
    // or selecting anything else.
    e.upsert_endpoint(client.clone(), Some("h1".into()));
    e.upsert_pending_endpoint(server.clone(), Some("h2".into()));
    node.in_netns(|| e.sync()).unwrap();
    for a in [server_v4, server_v6] {
        assert!(!p1.tcp_ok(a, port), "{a}: pending pod reachable");
    }
    assert!(!p2.ping("10.93.1.2"), "pending pod's egress passed");
    // Ready (an element-only batch): selected by `db`, which admits only app=web; the client
    // is app=api, so the server's rules drop it.
    e.upsert_endpoint(server.clone(), Some("h2".into()));
    let r = node.in_netns(|| e.sync()).unwrap();
    assert_eq!(r.kind, SyncKind::Incremental);
    for a in [server_v4, server_v6] {
        assert!(
            !p1.tcp_ok(a, port),
            "{a}: selected pod reachable against policy"
        );
    }
    // The server's egress is open (no egress policy selects db): ping the client.
    assert!(p2.ping("10.93.1.2"), "open egress dropped");
    // Relabel the client to web (a pod change): now the policy admits it.
    let mut web = client.clone();
    web.labels.insert("app".into(), "web".into());
    e.upsert_endpoint(web, Some("h1".into()));
    let r = node.in_netns(|| e.sync()).unwrap();
    assert_eq!(r.kind, SyncKind::Incremental);
    for a in [server_v4, server_v6] {
        assert!(p1.tcp_ok(a, port), "{a}: allowed peer dropped");
    }
    // The kernel's dispatch maps never held a chain verdict.
    let listed = node.run(&["nft", "list", "table", "inet", "cnet"]);
    for m in ["map eg_dispatch", "map ing_dispatch"] {
        let at = listed.find(m).unwrap();
        let block = &listed[at..at + listed[at..].find("\n\t}").unwrap()];
        assert!(
            !block.contains("goto") && !block.contains("jump"),
            "{block}"
        );
    }
    assert!(listed.contains("@ing_selected goto ing_start"), "{listed}");
}
