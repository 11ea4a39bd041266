//! Differential test for the extended model: random namespaces and labelled pods, random
//! ordered Calico policies (projectcalico.org/v3 GlobalNetworkPolicy and NetworkPolicy in
//! tiers with default actions, Allow/Deny/Pass/Log, selector expressions, namespace
//! selectors, network sets, nets/notNets, notSelector, protocol/notProtocol, ports/notPorts
//! including named ports, service accounts: policy serviceAccountSelector and rule
//! serviceAccounts, pods with and without serviceAccountName) plus AdminNetworkPolicy and
//! BaselineAdminNetworkPolicy. Every ordered pair of pods is probed on TCP 80, UDP 81 and TCP 81; the evaluator's verdict and
//! the kernel's (real packets through the virtual node, policies compiled and programmed by
//! the engine) must agree on every flow, in both routing modes. Failing cases are persisted
//! next to this file and replayed first.
#![allow(clippy::unwrap_used)]

mod common;

use cnet_examples::lab::LabMode;
use proptest::prelude::*;
use serde_json::{Value, json};

const PODS: usize = 6;

fn labels() -> impl Strategy<Value = Value> {
    (0..3u8, 0..2u8, any::<bool>()).prop_map(|(app, tier, role)| {
        let mut l = json!({"app": format!("a{app}"), "tier": format!("t{tier}")});
        if role {
            l["role"] = json!("db");
        }
        l
    })
}

/// A Calico selector expression over the pods' labels (and the network sets' `kind`).
fn atom() -> impl Strategy<Value = String> {
    prop_oneof![
        (0..3u8).prop_map(|a| format!("app == 'a{a}'")),
        (0..3u8).prop_map(|a| format!("app != 'a{a}'")),
        Just("app in {'a0', 'a1'}".to_string()),
        Just("app not in {'a2'}".to_string()),
        Just("has(role)".to_string()),
        Just("!has(role)".to_string()),
        Just("all()".to_string()),
        Just("tier starts with 't'".to_string()),
        Just("app ends with '1'".to_string()),
        Just("tier contains '0'".to_string()),
        Just("kind == 'ext'".to_string()),
    ]
}

fn selector() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => atom(),
        1 => (atom(), atom()).prop_map(|(a, b)| format!("{a} && {b}")),
        1 => (atom(), atom()).prop_map(|(a, b)| format!("({a}) || {b}")),
        1 => atom().prop_map(|a| format!("!({a})")),
    ]
}

/// A rule's `serviceAccounts`: names, a selector over the accounts' labels, or both.
fn service_accounts() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0..3u8).prop_map(|k| json!({"names": [format!("sa{k}")]})),
        Just(json!({"names": ["default", "sa1"]})),
        (0..2u8).prop_map(|t| json!({"selector": format!("team == 't{t}'")})),
        Just(json!({"names": ["sa0", "sa2"], "selector": "has(team)"})),
    ]
}

fn ns_selector() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("all()".to_string()),
        (0..2u8).prop_map(|t| format!("team == 't{t}'")),
        Just("has(team)".to_string()),
    ]
}

/// Nets over the lab's pod addresses (10.100.0.2 and up, in record order).
fn nets() -> impl Strategy<Value = Value> {
    prop::collection::vec(
        prop_oneof![
            Just("10.100.0.0/24"),
            Just("10.100.0.0/30"),
            Just("10.100.0.4/31"),
            Just("10.100.0.6/32"),
            Just("192.0.2.0/24"),
        ],
        1..3,
    )
    .prop_map(|v| json!(v))
}

fn entity(destination: bool, ported: bool) -> impl Strategy<Value = Value> {
    (
        prop::option::of(selector()),
        prop::option::of(selector()),
        prop::option::weighted(0.2, ns_selector()),
        prop::option::weighted(0.25, nets()),
        prop::option::weighted(0.25, nets()),
        prop::option::weighted(0.4, 0..5u8),
        prop::option::weighted(0.3, 0..4u8),
        prop::option::weighted(0.15, service_accounts()),
    )
        .prop_map(
            move |(sel, not_sel, ns, nets, not_nets, ports, not_ports, sa)| {
                let mut e = serde_json::Map::new();
                if let Some(sa) = sa {
                    e.insert("serviceAccounts".into(), sa);
                }
                if let Some(s) = sel {
                    e.insert("selector".into(), json!(s));
                }
                if let Some(s) = not_sel {
                    e.insert("notSelector".into(), json!(s));
                }
                if let Some(s) = ns {
                    e.insert("namespaceSelector".into(), json!(s));
                }
                if let Some(n) = nets {
                    e.insert("nets".into(), n);
                }
                if let Some(n) = not_nets {
                    e.insert("notNets".into(), n);
                }
                let port = |k: u8| match k {
                    0 => json!(80),
                    1 => json!("80:81"),
                    2 => json!("http"),
                    3 => json!("dns"),
                    _ => json!(81),
                };
                if destination && ported {
                    if let Some(k) = ports {
                        e.insert("ports".into(), json!([port(k)]));
                    }
                    if let Some(k) = not_ports {
                        e.insert("notPorts".into(), json!([port(k)]));
                    }
                }
                Value::Object(e)
            },
        )
}

fn calico_rule() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            3 => Just("Allow"),
            3 => Just("Deny"),
            1 => Just("Pass"),
            1 => Just("Log"),
        ],
        0..5u8,
        prop::option::weighted(0.15, prop_oneof![Just("TCP"), Just("UDP")]),
        prop::option::weighted(0.5, entity(false, false)),
        (any::<bool>(), any::<bool>()).prop_flat_map(|(tcp, has)| {
            let ported = has;
            (
                Just(tcp),
                Just(has),
                prop::option::weighted(0.6, entity(true, ported)),
            )
        }),
    )
        .prop_map(|(action, proto, not_proto, src, (tcp, has, dst))| {
            let mut r = serde_json::Map::new();
            r.insert("action".into(), json!(action));
            // Ports need a protocol: a destination with ports pins TCP or UDP.
            let ported = has
                && dst
                    .as_ref()
                    .is_some_and(|d| d.get("ports").is_some() || d.get("notPorts").is_some());
            if ported {
                r.insert("protocol".into(), json!(if tcp { "TCP" } else { "UDP" }));
            } else if proto == 1 {
                r.insert("protocol".into(), json!("TCP"));
            } else if proto == 2 {
                r.insert("protocol".into(), json!(17));
            }
            if let Some(p) = not_proto {
                r.insert("notProtocol".into(), json!(p));
            }
            if let Some(s) = src {
                r.insert("source".into(), s);
            }
            if let Some(d) = dst {
                r.insert("destination".into(), d);
            }
            Value::Object(r)
        })
}

fn calico_policy(i: usize) -> impl Strategy<Value = Value> {
    (
        any::<bool>(),
        0..3u8,
        0..4u8,
        prop::option::of(0..4u8),
        selector(),
        prop::option::weighted(0.2, ns_selector()),
        0..3u8,
        prop::collection::vec(calico_rule(), 0..4),
        prop::collection::vec(calico_rule(), 0..4),
        prop::option::weighted(
            0.15,
            prop_oneof![
                Just("team == 't0'"),
                Just("projectcalico.org/name == 'sa1'"),
                Just("!has(team)")
            ],
        ),
    )
        .prop_map(
            move |(global, ns, tier, order, sel, ns_sel, types, ing, eg, sa_sel)| {
                let types = match types {
                    0 => json!(["Ingress"]),
                    1 => json!(["Egress"]),
                    _ => json!(["Ingress", "Egress"]),
                };
                let tier = ["default", "security", "platform", "default"][tier as usize];
                let mut spec = json!({"tier": tier, "selector": sel, "types": types,
                                      "ingress": ing, "egress": eg});
                if let Some(o) = order {
                    spec["order"] = json!(f64::from(o) * 10.0);
                }
                if let Some(a) = sa_sel {
                    spec["serviceAccountSelector"] = json!(a);
                }
                let mut meta = json!({"name": format!("{tier}.c{i}")});
                let kind = if global {
                    if let Some(n) = ns_sel {
                        spec["namespaceSelector"] = json!(n);
                    }
                    "GlobalNetworkPolicy"
                } else {
                    meta["namespace"] = json!(format!("n{ns}"));
                    "NetworkPolicy"
                };
                json!({"apiVersion": "projectcalico.org/v3", "kind": kind,
                       "metadata": meta, "spec": spec})
            },
        )
}

fn k8s_sel() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({})),
        (0..3u8).prop_map(|a| json!({"matchLabels": {"app": format!("a{a}")}})),
        (0..2u8).prop_map(|t| json!({"matchLabels": {"team": format!("t{t}")}})),
    ]
}

fn admin_peer() -> impl Strategy<Value = Value> {
    prop_oneof![
        k8s_sel().prop_map(|s| json!({"namespaces": s})),
        (k8s_sel(), k8s_sel())
            .prop_map(|(n, p)| json!({"pods": {"namespaceSelector": n, "podSelector": p}})),
    ]
}

fn admin_rule(dir: &'static str, baseline: bool) -> impl Strategy<Value = Value> {
    (
        0..3u8,
        prop::collection::vec(admin_peer(), 1..3),
        prop::option::of(prop_oneof![
            Just(json!([{"portNumber": {"protocol": "TCP", "port": 80}}])),
            Just(json!([{"namedPort": "dns"}])),
            Just(json!([{"portRange": {"protocol": "TCP", "start": 80, "end": 81}}])),
        ]),
    )
        .prop_map(move |(a, peers, ports)| {
            let action = match (baseline, a) {
                (true, 0) | (false, 0) => "Allow",
                (false, 1) => "Pass",
                _ => "Deny",
            };
            let mut r = json!({"name": format!("r{a}"), "action": action});
            r[dir] = json!(peers);
            if let Some(p) = ports {
                r["ports"] = p;
            }
            r
        })
}

fn admin(baseline: bool) -> impl Strategy<Value = Value> {
    (
        0..20u8,
        prop_oneof![
            k8s_sel().prop_map(|s| json!({"namespaces": s})),
            (k8s_sel(), k8s_sel())
                .prop_map(|(n, p)| json!({"pods": {"namespaceSelector": n, "podSelector": p}})),
        ],
        prop::collection::vec(admin_rule("from", baseline), 0..3),
        prop::collection::vec(admin_rule("to", baseline), 0..3),
    )
        .prop_map(move |(prio, subject, ing, eg)| {
            if baseline {
                json!({"apiVersion": "policy.networking.k8s.io/v1alpha1",
                       "kind": "BaselineAdminNetworkPolicy", "metadata": {"name": "default"},
                       "spec": {"subject": subject, "ingress": ing, "egress": eg}})
            } else {
                json!({"apiVersion": "policy.networking.k8s.io/v1alpha1",
                       "kind": "AdminNetworkPolicy", "metadata": {"name": format!("anp{prio}")},
                       "spec": {"priority": prio, "subject": subject, "ingress": ing, "egress": eg}})
            }
        })
}

fn fixed_objects() -> Vec<Value> {
    vec![
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier",
               "metadata": {"name": "security"}, "spec": {"order": 100}}),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "Tier",
               "metadata": {"name": "platform"}, "spec": {"order": 2000, "defaultAction": "Pass"}}),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet",
               "metadata": {"name": "ext", "labels": {"kind": "ext"}},
               "spec": {"nets": ["10.100.0.4/31", "198.51.100.0/24"]}}),
        json!({"apiVersion": "projectcalico.org/v3", "kind": "NetworkSet",
               "metadata": {"name": "near", "namespace": "n1", "labels": {"kind": "ext"}},
               "spec": {"nets": ["10.100.0.2/32"]}}),
    ]
}

fn record() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(0..3u8, 3),
        prop::collection::vec((0..3u8, labels(), prop::option::of(0..3u8)), PODS),
        (1..4usize).prop_flat_map(|n| (0..n).map(calico_policy).collect::<Vec<_>>()),
        prop::option::weighted(0.3, admin(false)),
        prop::option::weighted(0.3, admin(true)),
    )
        .prop_map(|(teams, pods, calico, anp, banp)| {
            let namespaces: serde_json::Map<String, Value> = teams
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let l = if *t == 2 {
                        json!({})
                    } else {
                        json!({"team": format!("t{t}")})
                    };
                    (format!("n{i}"), l)
                })
                .collect();
            let pods: Vec<Value> = pods
                .iter()
                .enumerate()
                .map(|(i, (ns, l, sa))| {
                    let mut p = json!({"namespace": format!("n{ns}"), "name": format!("p{i}"), "labels": l,
                       "containerPorts": [{"name": "http", "containerPort": 80, "protocol": "TCP"},
                                          {"name": "dns", "containerPort": 81, "protocol": "UDP"}]});
                    if let Some(k) = sa {
                        p["serviceAccountName"] = json!(format!("sa{k}"));
                    }
                    p
                })
                .collect();
            let mut policies = fixed_objects();
            // Service accounts sa0..sa2 in every namespace; sa0 and sa1 labelled by team.
            for n in 0..3 {
                for (k, team) in [(0, Some("t0")), (1, Some("t1")), (2, None)] {
                    let mut meta = json!({"name": format!("sa{k}"), "namespace": format!("n{n}")});
                    if let Some(t) = team {
                        meta["labels"] = json!({"team": t});
                    }
                    policies.push(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}));
                }
            }
            policies.extend(calico);
            policies.extend(anp);
            policies.extend(banp);
            let probes = common::all_pairs_probes(&pods);
            json!([{"id": "diff-calico", "kind": "cluster-probe-matrix", "namespaces": namespaces,
                    "pods": pods, "policies": policies, "probes": probes}])
        })
}

fn differential(mode: LabMode, cases: u32) {
    let (records, flows, dropped) = common::differential(
        mode,
        cases,
        "tests/differential_calico.proptest-regressions",
        record(),
        true,
    );
    println!("{mode:?}: {records} records, {flows} flows agreed, {dropped} of them dropped");
    assert!(dropped > 0, "the generated policies never denied anything");
    assert!(dropped < flows, "the generated policies denied everything");
}

#[test]
fn calico_evaluator_equals_kernel_transparent() {
    if !cnet_testsupport::privileged("calico_evaluator_equals_kernel_transparent") {
        return;
    }
    differential(LabMode::Transparent, 40);
}

#[test]
fn calico_evaluator_equals_kernel_bridge() {
    if !cnet_testsupport::privileged("calico_evaluator_equals_kernel_bridge") {
        return;
    }
    differential(LabMode::Bridge, 40);
}
