//! The shared Kubernetes e2e conformance file with every pod attached through the real `cnet`
//! CNI plugin binary (ADD/DEL as a runtime calls it) and policies applied with `cnetctl`, in
//! both routing modes. Every runnable probe must pass; the only skipped probes are SCTP (no
//! SCTP in this kernel), as with the cnet-route oracle. Nothing is left behind.
#![allow(clippy::unwrap_used)]

use cnet_examples::lab::LabMode;
use cnet_examples::lab_plugin::run_records_parallel;
use cnet_examples::runner::RunOptions;
use cnet_examples::scenario::read_records;
use cnet_testsupport::require_priv;

mod common;

fn run(mode: LabMode) {
    let records = read_records(&common::shared_file("k8s-netpol-e2e.json")).unwrap();
    let report = run_records_parallel(&records, mode, &RunOptions::default());
    let (passed, skipped) =
        common::assert_passed_skipping_only_sctp(&report, &format!("{mode:?}"), 400);
    println!("{mode:?} through the plugin: {passed} passed, {skipped} skipped (SCTP)");
}

/// Namespaces whose names the labs use (`labn*`, `labp*`), for the leak check.
fn lab_namespaces() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("labn") || n.starts_with("labp"))
        .map(str::to_string)
        .collect()
}

#[test]
fn k8s_e2e_through_plugin_both_modes() {
    require_priv!();
    // One test for both modes so the leak check below sees no other lab of this binary.
    let before = lab_namespaces();
    run(LabMode::Transparent);
    run(LabMode::Bridge);
    let after: Vec<String> = lab_namespaces()
        .into_iter()
        .filter(|n| !before.contains(n))
        .collect();
    assert!(after.is_empty(), "namespaces left behind: {after:?}");
}

/// IPv6 pods through the plugin (address requested with `IP=`), default deny both ways for b.
#[test]
fn ipv6_through_plugin() {
    require_priv!();
    let file = r#"[{"id": "v6", "kind": "cluster-probe-matrix",
      "namespaces": {"x": {}},
      "pods": [
        {"namespace": "x", "name": "a", "labels": {"pod": "a"}, "ip": "fd00:10::2",
         "containerPorts": [{"containerPort": 80, "protocol": "TCP"}]},
        {"namespace": "x", "name": "b", "labels": {"pod": "b"}, "ip": "fd00:10::3",
         "containerPorts": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 53, "protocol": "UDP"}]},
        {"namespace": "x", "name": "c", "labels": {"pod": "c"}, "ip": "fd00:10::4",
         "containerPorts": [{"containerPort": 80, "protocol": "TCP"}]}],
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
        {"from": "x/c", "to": "x/a", "port": 80, "protocol": "TCP", "expect": true}]}]"#;
    let records = cnet_examples::scenario::parse_records(file, "inline").unwrap();
    for mode in [LabMode::Transparent, LabMode::Bridge] {
        let report = run_records_parallel(&records, mode, &RunOptions::default());
        assert_eq!(
            report.totals(),
            (5, 0, 0),
            "{mode:?}:\n{}",
            report.render(true)
        );
    }
}
