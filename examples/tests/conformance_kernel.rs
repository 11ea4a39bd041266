//! The shared Kubernetes e2e conformance file against the kernel: a virtual node per record,
//! pods attached with cnet-route, policies programmed by the cnet-policy engine, real
//! connections. Every runnable probe must pass, in both routing modes; the only skipped
//! probes are SCTP (no SCTP in this kernel).
#![allow(clippy::unwrap_used)]

use cnet_examples::lab::{LabMode, run_records_parallel};
use cnet_examples::runner::RunOptions;
use cnet_examples::scenario::read_records;
use cnet_testsupport::require_priv;

mod common;

fn run(mode: LabMode) {
    let records = read_records(&common::shared_file("k8s-netpol-e2e.json")).unwrap();
    let report = run_records_parallel(&records, mode, &RunOptions::default());
    let (passed, skipped) =
        common::assert_passed_skipping_only_sctp(&report, &format!("{mode:?}"), 400);
    println!("{mode:?}: {passed} passed, {skipped} skipped (SCTP)");
}

#[test]
fn k8s_e2e_transparent_mode() {
    require_priv!();
    run(LabMode::Transparent);
}

#[test]
fn k8s_e2e_bridge_mode() {
    require_priv!();
    run(LabMode::Bridge);
}

/// IPv6 pods under default deny in both directions: neighbour discovery keeps working (the
/// node and the pods resolve each other), allowed connections and their replies pass, denied
/// ones time out.
fn ipv6(mode: LabMode) {
    let file = r#"[{"id": "v6", "kind": "cluster-probe-matrix",
      "namespaces": {"x": {}},
      "pods": [
        {"namespace": "x", "name": "a", "labels": {"pod": "a"}, "ip": "fd00:10::2",
         "containerPorts": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 53, "protocol": "UDP"}]},
        {"namespace": "x", "name": "b", "labels": {"pod": "b"}, "ip": "fd00:10::3",
         "containerPorts": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 53, "protocol": "UDP"}]},
        {"namespace": "x", "name": "c", "labels": {"pod": "c"}, "ip": "fd00:10::4",
         "containerPorts": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 53, "protocol": "UDP"}]}],
      "policies": [
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "b-in", "namespace": "x"},
         "spec": {"podSelector": {"matchLabels": {"pod": "b"}}, "policyTypes": ["Ingress", "Egress"],
                  "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "a"}}}]}]}}],
      "probes": [
        {"from": "x/a", "to": "x/b", "port": 80, "protocol": "TCP", "expect": true},
        {"from": "x/a", "to": "x/b", "port": 53, "protocol": "UDP", "expect": true},
        {"from": "x/c", "to": "x/b", "port": 80, "protocol": "TCP", "expect": false},
        {"from": "x/b", "to": "x/a", "port": 80, "protocol": "TCP", "expect": false},
        {"from": "x/b", "to": "x/c", "port": 53, "protocol": "UDP", "expect": false},
        {"from": "x/c", "to": "x/a", "port": 80, "protocol": "TCP", "expect": true}]}]"#;
    let records = cnet_examples::scenario::parse_records(file, "inline").unwrap();
    let report = run_records_parallel(&records, mode, &RunOptions::default());
    assert_eq!(
        report.totals(),
        (6, 0, 0),
        "{mode:?}:\n{}",
        report.render(true)
    );
}

#[test]
fn ipv6_default_deny_both_modes() {
    require_priv!();
    ipv6(LabMode::Transparent);
    ipv6(LabMode::Bridge);
}
