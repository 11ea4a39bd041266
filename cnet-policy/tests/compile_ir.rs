//! IR-level tests of the compiler's scaling rules: rules depend on policies, never on pods;
//! selectors are shared named sets; dispatch is a verdict map; no per-address rules. Plus:
//! the rendered text is accepted by `nft -c -f` and the IR programs over netlink.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;

use cnet_policy::compile::{Attachments, CompileOptions, Mode, compile};
use cnet_policy::nft::{Expr, MatchOp, Programmer, Ruleset, diff, render_ruleset};
use cnet_policy::{Endpoint, Inventory, PolicySet, parse_yaml};
use cnet_testsupport::{NetNs, require_priv};

const POLICIES: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: api}}}]
    ports: [{port: 5432}, {port: pg, protocol: TCP}]
  - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api, namespace: prod}
spec:
  podSelector: {matchLabels: {app: api}}
  policyTypes: [Ingress, Egress]
  ingress:
  - from: [{namespaceSelector: {matchLabels: {team: web}}, podSelector: {matchLabels: {app: web}}}]
  egress:
  - to: [{podSelector: {matchLabels: {app: db}}}]
  - ports: [{port: 53, protocol: UDP}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: also-db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: api}}}]
";

fn policy_set() -> PolicySet {
    PolicySet::from_network_policies(&parse_yaml(POLICIES).unwrap()).unwrap()
}

/// `n` pods spread over apps and two namespaces, each with a host interface and a named port.
fn world(n: usize) -> (Inventory, Attachments) {
    let mut inv = Inventory::default();
    inv.upsert_namespace("prod", BTreeMap::new());
    inv.upsert_namespace("web", BTreeMap::from([("team".into(), "web".into())]));
    let mut att = Attachments::default();
    let apps = ["db", "api", "web"];
    for i in 0..n {
        let app = apps[i % 3];
        let ns = if app == "web" { "web" } else { "prod" };
        let v4 = format!("10.2.{}.{}", i / 250, i % 250 + 2).parse().unwrap();
        let v6 = format!("fd00::2:{i:x}").parse().unwrap();
        let mut ep = Endpoint::new(
            ns,
            &format!("{app}-{i}"),
            BTreeMap::from([("app".to_string(), app.to_string())]),
            vec![v4, v6],
        );
        ep.named_ports.insert(
            "pg".into(),
            cnet_policy::NamedPort {
                port: 5432,
                protocol: cnet_policy::Protocol::Tcp,
            },
        );
        att.host_ifname.insert(ep.id(), format!("cnet{i:08x}"));
        inv.upsert_endpoint(ep);
    }
    (inv, att)
}

fn compiled(n: usize, mode: Mode) -> Ruleset {
    let (inv, att) = world(n);
    compile(&policy_set(), &inv, &att, &CompileOptions::new(mode)).unwrap()
}

#[test]
fn rule_count_is_independent_of_pods_and_pods_change_only_elements() {
    for mode in [Mode::Transparent, Mode::Bridge] {
        let small = compiled(6, mode);
        let big = compiled(600, mode);
        let (ts, tb) = (
            small.tables.values().next().unwrap(),
            big.tables.values().next().unwrap(),
        );
        assert_eq!(ts.rule_count(), tb.rule_count(), "{mode:?}");
        assert_eq!(
            ts.chains.keys().collect::<Vec<_>>(),
            tb.chains.keys().collect::<Vec<_>>()
        );
        assert_eq!(
            ts.sets.keys().collect::<Vec<_>>(),
            tb.sets.keys().collect::<Vec<_>>()
        );
        assert!(tb.element_count() > 50 * ts.element_count() / 10);
        let changes = diff(&small, &big);
        assert!(changes.is_elements_only(), "{mode:?}: {changes:?}");
    }
}

#[test]
fn no_rule_names_an_address_or_interface() {
    for mode in [Mode::Transparent, Mode::Bridge] {
        let rs = compiled(30, mode);
        for t in rs.tables.values() {
            for c in t.chains.values() {
                for r in &c.rules {
                    for e in &r.exprs {
                        if let Expr::Match {
                            op: MatchOp::Eq(v) | MatchOp::Ne(v),
                            ..
                        } = e
                        {
                            assert!(
                                matches!(
                                    v,
                                    cnet_policy::nft::Value::Nfproto(_)
                                        | cnet_policy::nft::Value::Proto(_)
                                        | cnet_policy::nft::Value::Port(_)
                                ),
                                "{mode:?}: literal {v:?} in chain {}",
                                c.name
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn dispatch_is_a_verdict_map_and_selectors_are_shared_sets() {
    let rs = compiled(9, Mode::Transparent);
    let t = rs.tables.values().next().unwrap();
    for base in ["eg_fwd", "eg_input", "ing_fwd"] {
        let c = &t.chains[base];
        assert!(
            c.rules
                .iter()
                .any(|r| r.exprs.iter().any(|e| matches!(e, Expr::Vmap { .. }))),
            "{base} dispatches by vmap"
        );
    }
    assert!(t.sets["eg_dispatch"].decl.verdict_map);
    // The dispatch maps hold only pending pods (`drop`); none is pending here. Pods a policy
    // selects for the direction are in the direction's plain `selected` set, matched by one
    // `goto <dir>_start` rule; open pods are in neither and fall off the base chain, whose
    // policy accepts.
    for m in ["eg_dispatch", "ing_dispatch"] {
        assert!(t.sets[m].elements.is_empty(), "{m}");
    }
    for s in ["eg_selected", "ing_selected"] {
        assert!(!t.sets[s].decl.verdict_map, "{s}");
    }
    assert_eq!(t.sets["eg_selected"].elements.len(), 3, "the 3 api pods");
    assert_eq!(
        t.sets["ing_selected"].elements.len(),
        6,
        "the db and api pods"
    );
    for (base, dir) in [("eg_fwd", "eg"), ("eg_input", "eg"), ("ing_fwd", "ing")] {
        let to_start = t.chains[base]
            .rules
            .iter()
            .filter(|r| {
                r.exprs.iter().any(|e| {
                    matches!(e, Expr::Verdict(cnet_policy::nft::Verdict::Goto(c)) if *c == format!("{dir}_start"))
                })
            })
            .count();
        assert_eq!(to_start, 1, "{base}: one rule to the start chain");
    }
    // `app: api` in prod is a subject of two policies and a peer of two rules: one set per
    // family (sel4/sel6) and one subject ifname set.
    let sel4 = t.sets.keys().filter(|k| k.starts_with("sel4_")).count();
    let peers_and_subjects = 4; // {db, api, web@team=web} peers + {api, db} subjects ≤ 5 distinct
    assert!(sel4 <= peers_and_subjects + 1, "{sel4} v4 selector sets");
    // ipBlock with except: one interval set with the remainder ranges.
    let cidr: Vec<_> = t
        .sets
        .values()
        .filter(|s| s.decl.name.starts_with("cidr4_"))
        .collect();
    assert_eq!(cidr.len(), 1);
    assert!(cidr[0].decl.interval);
    assert_eq!(
        cidr[0].elements.len(),
        2,
        "10.0.0.0/8 minus 10.1.0.0/16 is two ranges"
    );
    // Named ports: addr . proto . port.
    let np = &t.sets["np4_pg"];
    assert_eq!(np.decl.key.len(), 3);
    assert_eq!(np.elements.len(), 9);
}

#[test]
fn pending_endpoint_drops_in_both_directions() {
    let (inv, mut att) = world(3);
    let id = inv.endpoints.keys().next().unwrap().clone();
    att.pending.insert(id.clone());
    let rs = compile(
        &policy_set(),
        &inv,
        &att,
        &CompileOptions::new(Mode::Transparent),
    )
    .unwrap();
    let t = rs.tables.values().next().unwrap();
    let ifname = att.host_ifname[&id].clone();
    for m in ["eg_dispatch", "ing_dispatch"] {
        let v = t.sets[m]
            .elements
            .iter()
            .find(|(k, _)| format!("{k:?}").contains(&ifname))
            .map(|(_, v)| v.clone());
        assert_eq!(v, Some(Some(cnet_policy::nft::Verdict::Drop)), "{m}");
    }
}

#[test]
fn rendered_text_is_accepted_by_nft_and_programs_over_netlink() {
    require_priv!();
    let ns = NetNs::new("cmpir");
    for mode in [Mode::Transparent, Mode::Bridge] {
        let rs = compiled(12, mode);
        let text = render_ruleset(&rs);
        let mut child = ns
            .command(&["nft", "-c", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{mode:?}: nft -c rejected:\n{}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        ns.in_netns(|| {
            let mut p = Programmer::new().unwrap();
            p.sync(&rs).unwrap();
        });
        let listed = ns.run(&["nft", "list", "table", "inet", "cnet"]);
        assert!(listed.contains("vmap @eg_dispatch"), "{listed}");
        ns.run(&["nft", "delete", "table", "inet", "cnet"]);
    }
}

/// An address family no pod has gets no pod-derived sets and no rules matching them (they
/// could never match); the first pod of that family brings them back, and a v6 ipBlock is
/// kept whatever the pods.
#[test]
fn families_without_pods_get_no_pod_sets() {
    let v6_sets = |rs: &Ruleset| -> Vec<String> {
        let t = rs.tables.values().next().unwrap();
        t.sets
            .values()
            .filter(|s| s.decl.key.contains(&cnet_policy::nft::KeyType::Ipv6Addr))
            .map(|s| s.decl.name.clone())
            .collect()
    };
    for mode in [Mode::Transparent, Mode::Bridge] {
        let opts = CompileOptions::new(mode);
        let (mut inv, att) = world(30);
        let dual = compile(&policy_set(), &inv, &att, &opts).unwrap();
        assert!(!v6_sets(&dual).is_empty(), "{mode:?}");
        for ep in inv.endpoints.values_mut() {
            ep.addresses.retain(|a| a.is_ipv4());
        }
        let v4 = compile(&policy_set(), &inv, &att, &opts).unwrap();
        assert_eq!(v6_sets(&v4), Vec::<String>::new(), "{mode:?}");
        let (td, t4) = (
            dual.tables.values().next().unwrap(),
            v4.tables.values().next().unwrap(),
        );
        assert!(t4.rule_count() < td.rule_count(), "{mode:?}");
        // A v6 ipBlock peer stays: external IPv6 traffic can match it.
        let with_block = POLICIES.replace("10.0.0.0/8, except: [10.1.0.0/16]", "fd00::/8");
        let set = PolicySet::from_network_policies(&parse_yaml(&with_block).unwrap()).unwrap();
        let rs = compile(&set, &inv, &att, &opts).unwrap();
        let names = v6_sets(&rs);
        assert_eq!(names.len(), 1, "{mode:?}: {names:?}");
        assert!(names[0].starts_with("cidr6_"), "{names:?}");
    }
}
