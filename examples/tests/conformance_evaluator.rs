//! The shared upstream NetworkPolicy e2e scenarios must pass 100% with the evaluator oracle.

use cnet_examples::runner::{EvaluatorOracle, RecordStatus, RunOptions, run_records};
use cnet_examples::scenario::{RecordInput, parse_records, read_records};

mod common;
use common::shared_file;

#[test]
fn k8s_netpol_e2e_passes_fully_with_the_evaluator() {
    let records = read_records(&shared_file("k8s-netpol-e2e.json")).expect("scenario file parses");
    assert!(
        records.iter().all(|r| matches!(r, RecordInput::Ok(_))),
        "every record is well-formed"
    );
    let report = run_records(&records, &mut EvaluatorOracle, &RunOptions::default());
    let text = report.render(true);
    let (passed, failed, skipped) = report.totals();
    assert_eq!((failed, skipped), (0, 0), "{text}");
    assert!(passed >= 506, "{text}");
    assert!(
        report
            .records
            .iter()
            .all(|r| r.status == RecordStatus::Pass),
        "{text}"
    );
    assert!(text.ends_with(&format!(
        "conformance: {passed} passed, 0 failed, 0 skipped\n"
    )));
}

const POD_X_A: &str = r#"{"namespace": "x", "name": "a", "labels": {"pod": "a"},
  "containerPorts": [{"name": "serve-80-tcp", "containerPort": 80, "protocol": "TCP"}]}"#;
const POD_X_B: &str = r#"{"namespace": "x", "name": "b", "labels": {"pod": "b"},
  "containerPorts": [{"name": "serve-80-tcp", "containerPort": 80, "protocol": "TCP"}]}"#;

fn run(json: &str) -> cnet_examples::runner::Report {
    let records = parse_records(json, "inline").expect("parses");
    run_records(&records, &mut EvaluatorOracle, &RunOptions::default())
}

#[test]
fn failing_probe_is_reported_in_the_readme_format() {
    let json = format!(
        r#"[{{"id": "r1", "kind": "cluster-probe-matrix", "namespaces": {{"x": {{}}}},
           "pods": [{POD_X_A}, {POD_X_B}], "policies": [],
           "probes": [{{"from": "x/a", "to": "x/b", "port": 80, "protocol": "TCP", "expect": false}}]}}]"#
    );
    let report = run(&json);
    assert_eq!(report.totals(), (0, 1, 0));
    let text = report.render(false);
    assert!(text.contains("r1 fail"), "{text}");
    assert!(
        text.contains("  x/a -> x/b:80/TCP expected false got true\n"),
        "{text}"
    );
    assert!(
        text.ends_with("\nconformance: 0 passed, 1 failed, 0 skipped\n"),
        "{text}"
    );
    assert!(!report.success());
}

#[test]
fn unlistened_port_is_refused_and_fails_either_way() {
    let json = format!(
        r#"[{{"id": "r2", "kind": "cluster-probe-matrix", "namespaces": {{"x": {{}}}},
           "pods": [{POD_X_A}, {POD_X_B}], "policies": [],
           "probes": [{{"from": "x/a", "to": "x/b", "port": 81, "protocol": "TCP", "expect": true}},
                      {{"from": "x/a", "to": "x/b", "port": 81, "protocol": "TCP", "expect": false}}]}}]"#
    );
    let report = run(&json);
    assert_eq!(report.totals(), (0, 2, 0));
    assert!(report.render(false).contains("got refused"));
}

#[test]
fn anp_unknown_kinds_api_invalid_and_malformed_records_are_skipped_not_crashes() {
    let json = format!(
        r#"[
        {{"id": "anp", "kind": "cluster-probe-matrix", "namespaces": {{"x": {{}}}},
          "pods": [{POD_X_A}, {POD_X_B}],
          "policies": [{{"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "ClusterNetworkPolicy",
                         "metadata": {{"name": "p"}}, "spec": {{"priority": 1}}}}],
          "probes": [{{"from": "x/a", "to": "x/b", "port": 80, "protocol": "TCP", "expect": false}}]}},
        {{"id": "weird", "kind": "cluster-probe-matrix", "namespaces": {{}}, "pods": [{POD_X_A}],
          "policies": [{{"apiVersion": "example.com/v1", "kind": "Frobnicator"}}],
          "probes": [{{"from": "x/a", "to": "ip:10.9.9.9", "port": 80, "protocol": "TCP", "expect": true}}]}},
        {{"id": "inv", "apiInvalid": true, "kind": "cluster-probe-matrix", "pods": [{POD_X_A}],
          "probes": [{{"from": "x/a", "to": "ip:10.9.9.9", "port": 80, "expect": true}}]}},
        {{"id": "bad", "pods": "not a list", "probes": [{{}}, {{}}]}},
        {{"id": "kind?", "kind": "something-new", "probes": [{{}}]}}
        ]"#
    );
    let report = run(&json);
    assert_eq!(report.totals(), (0, 0, 6), "{}", report.render(true));
    assert!(
        report
            .records
            .iter()
            .all(|r| matches!(r.status, RecordStatus::Skipped(_)))
    );
    assert!(report.success());
}

#[test]
fn pod_cidr_placeholders_fixed_addresses_and_packet_verdicts() {
    // x/b is isolated for ingress except from 192.168.1.0/24 minus x/a's /32.
    let json = r#"[{"id": "pv", "kind": "packet-verdict", "namespaces": {"x": {}},
           "pods": [
             {"namespace": "x", "name": "a", "labels": {"pod": "a"}, "ip": "192.168.1.11"},
             {"namespace": "x", "name": "b", "labels": {"pod": "b"}, "ip": "192.168.1.12"},
             {"namespace": "x", "name": "c", "labels": {"pod": "c"}, "ip": "192.168.1.13"}],
           "externalIPs": ["192.168.1.200", "10.1.1.1"],
           "policies": [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": "p", "namespace": "x"},
             "spec": {"podSelector": {"matchLabels": {"pod": "b"}},
               "ingress": [{"from": [{"ipBlock": {
                  "cidr": {"podCIDR": "x/b", "prefix": 24, "maskHostBits": true},
                  "except": [{"podCIDR": "x/a", "prefix": 32}]}}]}]}}],
           "probes": [
             {"from": "x/a", "to": "x/b", "port": 80, "protocol": "TCP", "expect": false},
             {"from": "x/c", "to": "x/b", "port": 80, "protocol": "UDP", "expect": true},
             {"from": "ip:192.168.1.200", "to": "x/b", "port": 80, "protocol": "SCTP", "expect": true, "srcPort": 5000},
             {"from": "ip:10.1.1.1", "to": "x/b", "port": 80, "protocol": "TCP", "expect": false},
             {"from": "ip:10.1.1.1", "to": "ip:192.168.1.13", "port": 80, "expect": true,
               "srcIP": "10.1.1.1", "dstIP": "192.168.1.13"}]}]"#;
    let report = run(json);
    assert_eq!(report.totals(), (5, 0, 0), "{}", report.render(true));
}

#[test]
fn admin_policies_host_network_pods_and_nodes_run() {
    // ANP (priority 1) denies x -> y/b; NetworkPolicy isolates y; BANP denies everything
    // into x from y. Two nodes; x/h is a host-network pod on node-b.
    let json = r#"[{"id": "anp", "kind": "cluster-probe-matrix",
        "namespaces": {"x": {}, "y": {}},
        "nodes": {"node-a": {"zone": "1"}, "node-b": {"zone": "2"}},
        "pods": [
          {"namespace": "x", "name": "a", "labels": {"pod": "a"}, "node": "node-a"},
          {"namespace": "x", "name": "h", "labels": {"pod": "h"}, "hostNetwork": true, "node": "node-b"},
          {"namespace": "y", "name": "a", "labels": {"pod": "a"}, "node": "node-a"},
          {"namespace": "y", "name": "b", "labels": {"pod": "b"}, "node": "node-b"}],
        "policies": [
          {"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
           "metadata": {"name": "deny-x-to-yb"},
           "spec": {"priority": 1, "subject": {"pods": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}},
                                                        "podSelector": {"matchLabels": {"pod": "b"}}}},
                    "ingress": [{"action": "Deny", "from": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "x"}}}]},
                                {"action": "Allow", "from": [{"namespaces": {}}]}]}},
          {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": "isolate", "namespace": "y"}, "spec": {"podSelector": {}}},
          {"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
           "metadata": {"name": "default"},
           "spec": {"subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "x"}}},
                    "ingress": [{"action": "Deny", "from": [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}]}]}}],
        "probes": [
          {"from": "x/a", "to": "y/b", "port": 80, "protocol": "TCP", "expect": false},
          {"from": "y/a", "to": "y/b", "port": 80, "protocol": "TCP", "expect": true},
          {"from": "x/a", "to": "y/a", "port": 80, "protocol": "TCP", "expect": false},
          {"from": "y/a", "to": "x/a", "port": 80, "protocol": "TCP", "expect": false},
          {"from": "x/h", "to": "y/a", "port": 80, "protocol": "TCP", "expect": false},
          {"from": "x/h", "to": "y/b", "port": 80, "protocol": "TCP", "expect": true},
          {"from": "y/a", "to": "x/h", "port": 80, "protocol": "TCP", "expect": true}]}]"#;
    let report = run(json);
    assert_eq!(report.totals(), (7, 0, 0), "{}", report.render(true));
}

/// A transcription of network-policy-api's AdminNetworkPolicyEgressInlineCIDRPeers
/// (conformance/tests/admin-network-policy-standard-egress-inline-cidr-rules.go), both steps,
/// with expectations taken from the upstream test.
#[test]
fn upstream_anp_egress_inline_cidr_peers() {
    let houses = ["gryffindor", "hufflepuff", "ravenclaw", "slytherin"];
    let people = [
        "harry-potter",
        "cedric-diggory",
        "luna-lovegood",
        "draco-malfoy",
    ];
    let mut pods = Vec::new();
    for (house, person) in houses.iter().zip(people) {
        for i in 0..2 {
            pods.push(serde_json::json!({
                "namespace": format!("network-policy-conformance-{house}"), "name": format!("{person}-{i}"),
                "labels": {"conformance-house": house},
                "containerPorts": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 53, "protocol": "UDP"},
                                   {"containerPort": 9003, "protocol": "SCTP"}]}));
        }
    }
    let namespaces: serde_json::Map<String, serde_json::Value> = houses
        .iter()
        .map(|h| {
            (
                format!("network-policy-conformance-{h}"),
                serde_json::json!({"conformance-house": h}),
            )
        })
        .collect();
    let sel = |h: &str| serde_json::json!({"matchLabels": {"conformance-house": h}});
    let anp = |extra: Vec<serde_json::Value>| {
        let mut egress = extra;
        egress.push(serde_json::json!({"name": "allow-egress-to-slytherin", "action": "Allow",
            "to": [{"pods": {"namespaceSelector": sel("slytherin"), "podSelector": sel("slytherin")}}]}));
        egress.push(
            serde_json::json!({"name": "deny-egress-to-internet", "action": "Deny",
            "to": [{"networks": ["0.0.0.0/0", "::/0"]}]}),
        );
        serde_json::json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
            "metadata": {"name": "inline-cidr-as-peers-example"},
            "spec": {"priority": 85, "subject": {"pods": {"namespaceSelector": sel("gryffindor"), "podSelector": sel("gryffindor")}},
                     "egress": egress}})
    };
    let probes = |to: &[(&str, bool)]| -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for (pod, expect) in to {
            for (port, proto) in [(80, "TCP"), (53, "UDP"), (9003, "SCTP")] {
                out.push(serde_json::json!({"from": "network-policy-conformance-gryffindor/harry-potter-1",
                    "to": pod, "port": port, "protocol": proto, "expect": expect}));
            }
        }
        out
    };
    let allow_ips = serde_json::json!({"name": "allow-egress-to-specific-podIPs", "action": "Allow", "to": [{"networks": [
        {"podCIDR": "network-policy-conformance-ravenclaw/luna-lovegood-0", "prefix": 32, "prefixIPv6": 128},
        {"podCIDR": "network-policy-conformance-hufflepuff/cedric-diggory-0", "prefix": 32, "prefixIPv6": 128}]}]});
    let records = serde_json::json!([
        {"id": "anp-cidr-1", "kind": "cluster-probe-list", "namespaces": namespaces, "pods": pods, "policies": [anp(vec![])],
         "probes": probes(&[("network-policy-conformance-ravenclaw/luna-lovegood-0", false),
                            ("network-policy-conformance-hufflepuff/cedric-diggory-0", false),
                            ("network-policy-conformance-slytherin/draco-malfoy-0", true)])},
        {"id": "anp-cidr-2", "kind": "cluster-probe-list", "namespaces": namespaces, "pods": pods, "policies": [anp(vec![allow_ips])],
         "probes": probes(&[("network-policy-conformance-ravenclaw/luna-lovegood-0", true),
                            ("network-policy-conformance-hufflepuff/cedric-diggory-0", true),
                            ("network-policy-conformance-ravenclaw/luna-lovegood-1", false),
                            ("network-policy-conformance-hufflepuff/cedric-diggory-1", false)])}
    ]);
    let report = run(&records.to_string());
    assert_eq!(report.totals(), (21, 0, 0), "{}", report.render(true));
}
