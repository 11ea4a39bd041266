//! Differential test: random namespaces, labelled pods and NetworkPolicies; every ordered pair
//! of pods probed on TCP 80, UDP 81 and TCP 81 (nothing listens there: refused when allowed).
//! The evaluator's answer and the kernel's (real packets through the virtual node, policies
//! compiled and programmed by the engine) must agree on every flow, in both routing modes.
//! Failing cases are persisted next to this file and replayed first.
#![allow(clippy::unwrap_used)]

mod common;

use cnet_examples::lab::LabMode;
use proptest::prelude::*;
use serde_json::{Value, json};

const PODS: usize = 7;

fn labels() -> impl Strategy<Value = Value> {
    (0..3u8, 0..2u8)
        .prop_map(|(app, tier)| json!({"app": format!("a{app}"), "tier": format!("t{tier}")}))
}

fn selector() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({})),
        (0..3u8).prop_map(|a| json!({"matchLabels": {"app": format!("a{a}")}})),
        (0..2u8).prop_map(|t| json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": [format!("t{t}")]}]})),
        Just(json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["a0", "a1"]}]})),
    ]
}

fn ns_selector() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({})),
        (0..2u8).prop_map(|t| json!({"matchLabels": {"team": format!("t{t}")}})),
        (0..3u8)
            .prop_map(|n| json!({"matchLabels": {"kubernetes.io/metadata.name": format!("n{n}")}})),
    ]
}

fn peer() -> impl Strategy<Value = Value> {
    prop_oneof![
        selector().prop_map(|s| json!({"podSelector": s})),
        ns_selector().prop_map(|s| json!({"namespaceSelector": s})),
        (ns_selector(), selector()).prop_map(|(n, p)| json!({"namespaceSelector": n, "podSelector": p})),
        (2..9u8).prop_map(|x| json!({"ipBlock": {"cidr": "10.100.0.0/24", "except": [format!("10.100.0.{x}/32")]}})),
    ]
}

fn port() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"port": 80})),
        Just(json!({"port": "http"})),
        Just(json!({"port": 81, "protocol": "UDP"})),
        Just(json!({"port": "dns", "protocol": "UDP"})),
        Just(json!({"port": 80, "endPort": 81})),
        Just(json!({"protocol": "UDP"})),
    ]
}

fn rule(dir: &'static str) -> impl Strategy<Value = Value> {
    (
        prop::option::of(prop::collection::vec(peer(), 1..3)),
        prop::option::of(prop::collection::vec(port(), 1..3)),
    )
        .prop_map(move |(peers, ports)| {
            let mut r = serde_json::Map::new();
            if let Some(p) = peers {
                r.insert(dir.into(), Value::Array(p));
            }
            if let Some(p) = ports {
                r.insert("ports".into(), Value::Array(p));
            }
            Value::Object(r)
        })
}

fn policy(i: usize) -> impl Strategy<Value = Value> {
    (
        0..3u8,
        selector(),
        0..3u8,
        prop::collection::vec(rule("from"), 0..3),
        prop::collection::vec(rule("to"), 0..3),
    )
        .prop_map(move |(ns, sel, types, ing, eg)| {
            let types = match types {
                0 => json!(["Ingress"]),
                1 => json!(["Egress"]),
                _ => json!(["Ingress", "Egress"]),
            };
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": format!("p{i}"), "namespace": format!("n{ns}")},
                "spec": {"podSelector": sel, "policyTypes": types, "ingress": ing, "egress": eg}
            })
        })
}

fn record() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(0..2u8, 3),
        prop::collection::vec((0..3u8, labels()), PODS),
        (0..4usize).prop_flat_map(|n| (0..n).map(policy).collect::<Vec<_>>()),
    )
        .prop_map(|(teams, pods, policies)| {
            let namespaces: serde_json::Map<String, Value> = teams
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("n{i}"), json!({"team": format!("t{t}")})))
                .collect();
            let pods: Vec<Value> = pods
                .iter()
                .enumerate()
                .map(|(i, (ns, l))| {
                    json!({"namespace": format!("n{ns}"), "name": format!("p{i}"), "labels": l,
                       "containerPorts": [{"name": "http", "containerPort": 80, "protocol": "TCP"},
                                          {"name": "dns", "containerPort": 81, "protocol": "UDP"}]})
                })
                .collect();
            let probes = common::all_pairs_probes(&pods);
            json!([{"id": "diff", "kind": "cluster-probe-matrix", "namespaces": namespaces,
                    "pods": pods, "policies": policies, "probes": probes}])
        })
}

fn differential(mode: LabMode, cases: u32) {
    let (_, flows, dropped) = common::differential(
        mode,
        cases,
        "tests/differential_kernel.proptest-regressions",
        record(),
        false,
    );
    println!("{mode:?}: {flows} flows agreed, {dropped} of them dropped");
    assert!(dropped > 0, "the generated policies never denied anything");
}

#[test]
fn evaluator_equals_kernel_transparent() {
    if !cnet_testsupport::privileged("evaluator_equals_kernel_transparent") {
        return;
    }
    differential(LabMode::Transparent, 16);
}

#[test]
fn evaluator_equals_kernel_bridge() {
    if !cnet_testsupport::privileged("evaluator_equals_kernel_bridge") {
        return;
    }
    differential(LabMode::Bridge, 16);
}
