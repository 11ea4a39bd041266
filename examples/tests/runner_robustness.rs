//! The runner takes any file: arbitrary JSON shaped like scenario records (known keys, random
//! values) never makes it panic; every probe is counted as passed, failed or skipped.

use cnet_examples::runner::{EvaluatorOracle, RunOptions, run_records};
use cnet_examples::scenario::parse_records;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::{Value, json};

fn value() -> impl Strategy<Value = Value> {
    let key = proptest::sample::select(
        &[
            "id",
            "kind",
            "namespaces",
            "pods",
            "policies",
            "probes",
            "nodes",
            "externalIPs",
            "namespace",
            "name",
            "labels",
            "containerPorts",
            "containerPort",
            "protocol",
            "ip",
            "hostNetwork",
            "node",
            "from",
            "to",
            "port",
            "expect",
            "srcIP",
            "dstIP",
            "srcPort",
            "apiInvalid",
            "podCIDR",
            "prefix",
            "maskHostBits",
            "apiVersion",
            "spec",
            "podSelector",
            "ingress",
            "egress",
            "ipBlock",
            "cidr",
            "except",
            "metadata",
        ][..],
    );
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-5i64..70000).prop_map(Value::from),
        proptest::sample::select(
            &[
                "x",
                "x/a",
                "y/b",
                "ip:10.0.0.1",
                "ip:nonsense",
                "TCP",
                "UDP",
                "SCTP",
                "ICMP",
                "10.0.0.0/8",
                "fd00::1",
                "192.168.1.11",
                "NetworkPolicy",
                "networking.k8s.io/v1",
                "packet-verdict",
                "cluster-probe-matrix",
                "",
            ][..]
        )
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(5, 96, 6, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(key.clone().prop_map(str::to_string), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn pod() -> impl Strategy<Value = Value> {
    (
        proptest::sample::select(&["x", "y"][..]),
        proptest::sample::select(&["a", "b", "c"][..]),
        proptest::option::of(value()),
        any::<bool>(),
    )
        .prop_map(|(ns, name, extra, host)| {
            let mut p = json!({"namespace": ns, "name": name, "labels": {"pod": name}, "hostNetwork": host});
            if let (Some(Value::Object(m)), Value::Object(p)) = (extra, &mut p) {
                p.extend(m);
            }
            p
        })
}

fn probe() -> impl Strategy<Value = Value> {
    let who = proptest::sample::select(
        &[
            "x/a",
            "x/b",
            "y/c",
            "ip:10.0.0.1",
            "ip:fd00::1",
            "z/q",
            "ip:bad",
        ][..],
    );
    (who.clone(), who, -1i64..70000, proptest::sample::select(&["TCP", "udp", "SCTP", "ICMP"][..]), any::<bool>())
        .prop_map(|(from, to, port, protocol, expect)| {
            json!({"from": from, "to": to, "port": port, "protocol": protocol, "expect": expect})
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_records_never_panic(records in vec(value(), 0..4)) {
        let text = Value::Array(records).to_string();
        if let Ok(inputs) = parse_records(&text, "fuzz") {
            let report = run_records(&inputs, &mut EvaluatorOracle, &RunOptions::default());
            let rendered = report.render(true);
            prop_assert!(rendered.ends_with("skipped\n"));
        }
    }

    #[test]
    fn plausible_records_never_panic(pods in vec(pod(), 0..4), policies in vec(value(), 0..3),
                                     probes in vec(prop_oneof![3 => probe(), 1 => value()], 0..6), include_invalid in any::<bool>()) {
        let rec = json!([{"id": "r", "kind": "cluster-probe-matrix", "namespaces": {"x": {}},
                          "pods": pods, "policies": policies, "probes": probes}]);
        let inputs = parse_records(&rec.to_string(), "fuzz").expect("array of records");
        let opts = RunOptions { include_api_invalid: include_invalid };
        let report = run_records(&inputs, &mut EvaluatorOracle, &opts);
        let (p, f, s) = report.totals();
        let n = rec[0]["probes"].as_array().map_or(0, Vec::len);
        prop_assert_eq!(p + f + s, n, "every probe is counted once: {}", report.render(true));
    }

    #[test]
    fn arbitrary_text_is_an_error_not_a_panic(s in any::<String>()) {
        let _ = parse_records(&s, "fuzz");
    }
}
