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

/// (rules of a namespaced tier chain on bucket sets, rules of its bucket chains on the sets
/// of "every pod of a namespace"); panics when the tier chain holds anything else but its
/// final verdict.
fn tier_dispatch_rules(t: &cnet_policy::nft::Table, tier: &str) -> (usize, usize) {
    let rules = &t.chains[tier].rules;
    let to_bucket = rules.iter().filter(|r| looks_up(r, "nsb")).count();
    assert_eq!(to_bucket + 1, rules.len(), "{tier}: {rules:?}");
    let to_ns = t
        .chains
        .iter()
        .filter(|(n, _)| n.starts_with(&format!("{tier}_b")))
        .flat_map(|(_, c)| &c.rules)
        .filter(|r| looks_up(r, "subj_") || looks_up(r, "sel"))
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
        // prod's bucket and namespace sets; nothing in any map.
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
            assert!(sets.iter().any(|s| s.starts_with("nsb")), "{sets:?}");
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

/// A pod's two addresses in the kernel tests.
struct Pod<'a> {
    ns: &'a cnet_testsupport::NetNs,
    v4: IpAddr,
    v6: IpAddr,
    /// Host interface (transparent mode).
    ifname: Option<String>,
}

fn pod_at<'a>(
    ns: &'a cnet_testsupport::NetNs,
    v4: &str,
    v6: &str,
    ifname: Option<&str>,
) -> Pod<'a> {
    Pod {
        ns,
        v4: v4.parse().unwrap(),
        v6: v6.parse().unwrap(),
        ifname: ifname.map(str::to_string),
    }
}

/// A pending server drops everything; once ready, its policy filters the client; a client
/// relabel (a pod change) lets it in. Every step after the first is an element-only batch,
/// and no map in the kernel ever holds a chain verdict.
fn pending_then_filtered(mode: Mode, node: &cnet_testsupport::NetNs, c: &Pod<'_>, s: &Pod<'_>) {
    let echo = s.ns.tcp_echo();
    let port = echo.port();
    assert!(
        wait_until(|| c.ns.tcp_ok(s.v4, port) && c.ns.tcp_ok(s.v6, port)),
        "{mode:?}: server not reachable before policy"
    );
    let endpoint = |name: &str, app: &str, p: &Pod<'_>| {
        Endpoint::new(
            "prod",
            name,
            BTreeMap::from([("app".to_string(), app.to_string())]),
            vec![p.v4, p.v6],
        )
    };
    let client = endpoint("client", "api", c);
    let server = endpoint("server", "db", s);
    let mut e = Engine::new(mode);
    for np in parse_yaml(POLICIES).unwrap() {
        e.apply_policy(&np).unwrap();
    }
    // Forty more namespaces with policies: prod's chain sits among many in the buckets.
    for np in parse_yaml(&deny_all(40)).unwrap() {
        e.apply_policy(&np).unwrap();
    }
    // The server attached but pending: all its traffic drops.
    e.upsert_endpoint(client.clone(), c.ifname.clone());
    e.upsert_pending_endpoint(server.clone(), s.ifname.clone());
    node.in_netns(|| e.sync()).unwrap();
    for a in [s.v4, s.v6] {
        assert!(!c.ns.tcp_ok(a, port), "{mode:?} {a}: pending pod reachable");
    }
    assert!(
        !s.ns.ping(&c.v4.to_string()),
        "{mode:?}: pending pod's egress passed"
    );
    // Ready (an element-only batch): selected by `db`, which admits only app=web; the client
    // is app=api, so the server's rules drop it.
    e.upsert_endpoint(server.clone(), s.ifname.clone());
    let r = node.in_netns(|| e.sync()).unwrap();
    assert_eq!(r.kind, SyncKind::Incremental);
    for a in [s.v4, s.v6] {
        assert!(
            !c.ns.tcp_ok(a, port),
            "{mode:?} {a}: selected pod reachable against policy"
        );
    }
    // The server's egress is open (no egress policy selects db): ping the client.
    assert!(
        s.ns.ping(&c.v4.to_string()),
        "{mode:?}: open egress dropped"
    );
    // Relabel the client to web (a pod change): now the policy admits it.
    let mut web = client.clone();
    web.labels.insert("app".into(), "web".into());
    e.upsert_endpoint(web, c.ifname.clone());
    let r = node.in_netns(|| e.sync()).unwrap();
    assert_eq!(r.kind, SyncKind::Incremental);
    for a in [s.v4, s.v6] {
        assert!(c.ns.tcp_ok(a, port), "{mode:?} {a}: allowed peer dropped");
    }
    // No map in the kernel holds a chain verdict; the selected pods go to policy by one rule.
    let listed = node.run(&["nft", "list", "table", "inet", "cnet"]);
    let mut in_map = false;
    for line in listed.lines() {
        if line.starts_with("\tmap ") {
            in_map = true;
        } else if line == "\t}" {
            in_map = false;
        }
        assert!(
            !(in_map && (line.contains("goto") || line.contains("jump"))),
            "{mode:?}: {line}"
        );
    }
    let key = if mode == Mode::Bridge { "4" } else { "" };
    let rule = format!("@ing_selected{key} goto ing_start");
    assert!(listed.contains(&rule), "{mode:?}: {listed}");
}

#[test]
fn pending_pod_drops_and_selected_pod_is_filtered_on_the_kernel_transparent() {
    require_priv!();
    // Host interfaces h1 (client) and h2 (server), routed by the node.
    let (node, p1, p2) = common::routed_pair(["dgn", "dg1", "dg2"], "h", "10.93", true);
    let c = pod_at(&p1, "10.93.1.2", "fd00:1::2", Some("h1"));
    let s = pod_at(&p2, "10.93.2.2", "fd00:2::2", Some("h2"));
    pending_then_filtered(Mode::Transparent, &node, &c, &s);
}

#[test]
fn pending_pod_drops_and_selected_pod_is_filtered_on_the_kernel_bridge() {
    require_priv!();
    // Two pods on one bridge in the node; br_netfilter sends bridged frames through the inet
    // forward hook (set explicitly in the node namespace).
    let node = cnet_testsupport::NetNs::new("dgbn");
    let pods = [
        cnet_testsupport::NetNs::new("dgb1"),
        cnet_testsupport::NetNs::new("dgb2"),
    ];
    node.sysctl("net.bridge.bridge-nf-call-iptables=1");
    node.sysctl("net.bridge.bridge-nf-call-ip6tables=1");
    node.run(&["ip", "link", "add", "br0", "type", "bridge"]);
    node.run(&["ip", "link", "set", "br0", "up"]);
    for (i, p) in pods.iter().enumerate() {
        let host = format!("hb{i}");
        let argv = ["ip", "link", "add", &host, "type", "veth"];
        let peer = ["peer", "name", "eth0", "netns", p.name()];
        node.run(&[&argv[..], &peer[..]].concat());
        node.run(&["ip", "link", "set", &host, "master", "br0", "up"]);
        p.run(&[
            "ip",
            "addr",
            "add",
            &format!("10.94.0.{}/24", i + 2),
            "dev",
            "eth0",
        ]);
        let v6 = format!("fd00:94::{}/64", i + 2);
        p.run(&["ip", "addr", "add", &v6, "dev", "eth0", "nodad"]);
        p.run(&["ip", "link", "set", "eth0", "up"]);
    }
    let c = pod_at(&pods[0], "10.94.0.2", "fd00:94::2", None);
    let s = pod_at(&pods[1], "10.94.0.3", "fd00:94::3", None);
    pending_then_filtered(Mode::Bridge, &node, &c, &s);
}
