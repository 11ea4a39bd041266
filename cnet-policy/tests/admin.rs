//! AdminNetworkPolicy / BaselineAdminNetworkPolicy semantics. Each test cites the API
//! documentation (kubernetes-sigs/network-policy-api, apis/v1alpha1) sentence it checks.

use cnet_policy::admin::AdminPolicyObject;
use cnet_policy::endpoint::{NamedPort, Node};
use cnet_policy::{
    Endpoint, Evaluator, Flow, Inventory, PolicyError, PolicySet, Protocol, Verdict, parse_yaml,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::IpAddr;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// Namespaces x, y; pods x/a 10.0.1.1, x/b 10.0.1.2, y/a 10.0.2.1 (label pod=<name>, port
/// "http" = 80/TCP); node-1 (192.168.0.1, role=worker) with host-network pod y/h.
fn world() -> Inventory {
    let mut inv = Inventory::default();
    inv.upsert_namespace("x", BTreeMap::new());
    inv.upsert_namespace("y", BTreeMap::new());
    inv.upsert_node(Node {
        name: "node-1".into(),
        labels: BTreeMap::from([("role".into(), "worker".into())]),
        addresses: vec![ip("192.168.0.1")],
    });
    for (ns, name, a) in [
        ("x", "a", "10.0.1.1"),
        ("x", "b", "10.0.1.2"),
        ("y", "a", "10.0.2.1"),
    ] {
        let mut ep = Endpoint::new(
            ns,
            name,
            BTreeMap::from([("pod".into(), name.into())]),
            vec![ip(a)],
        );
        ep.named_ports.insert(
            "http".into(),
            NamedPort {
                port: 80,
                protocol: Protocol::Tcp,
            },
        );
        ep.node = Some("node-1".into());
        inv.upsert_endpoint(ep);
    }
    let mut h = Endpoint::new("y", "h", BTreeMap::new(), vec![ip("192.168.0.1")]);
    h.host_network = true;
    h.node = Some("node-1".into());
    inv.upsert_endpoint(h);
    inv
}

fn ns(name: &str) -> Value {
    json!({"matchLabels": {"kubernetes.io/metadata.name": name}})
}

fn anp(
    name: &str,
    priority: i32,
    subject_ns: &str,
    ingress: Value,
    egress: Value,
) -> AdminPolicyObject {
    AdminPolicyObject::from_value(json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
        "metadata": {"name": name},
        "spec": {"priority": priority, "subject": {"namespaces": ns(subject_ns)}, "ingress": ingress, "egress": egress}
    }))
    .expect("object")
}

fn banp(ingress: Value) -> AdminPolicyObject {
    AdminPolicyObject::from_value(json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
        "metadata": {"name": "default"},
        "spec": {"subject": {"namespaces": {}}, "ingress": ingress}
    }))
    .expect("object")
}

fn from_ns(action: &str, n: &str) -> Value {
    json!([{"action": action, "from": [{"namespaces": ns(n)}]}])
}

fn eval(nps: &str, admin: &[AdminPolicyObject]) -> Evaluator {
    let nps = if nps.is_empty() {
        vec![]
    } else {
        parse_yaml(nps).expect("valid")
    };
    Evaluator::new(
        PolicySet::from_objects(&nps, admin).expect("valid"),
        world(),
    )
}

fn ok(e: &Evaluator, src: &str, dst: &str, port: u16) -> bool {
    e.decide(&Flow {
        src: ip(src),
        dst: ip(dst),
        protocol: Protocol::Tcp,
        dst_port: port,
    })
    .verdict
        == Verdict::Allow
}

const ALLOW_ALL_X: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: all, namespace: x}\n\
                           spec: {podSelector: {}, ingress: [{}]}\n";
const DENY_ALL_X: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: none, namespace: x}\nspec: {podSelector: {}}\n";

#[test]
fn anp_deny_and_allow_override_network_policy() {
    // "Allow: allows the selected traffic (even if it would otherwise have been denied by
    // NetworkPolicy)" / "Deny: denies the selected traffic"; "All AdminNetworkPolicy rules have
    // higher precedence than NetworkPolicy or BaselineAdminNetworkPolicy rules."
    let deny = eval(
        ALLOW_ALL_X,
        &[anp("d", 10, "x", from_ns("Deny", "y"), json!([]))],
    );
    assert!(!ok(&deny, "10.0.2.1", "10.0.1.2", 80));
    assert!(ok(&deny, "10.0.1.1", "10.0.1.2", 80));
    let allow = eval(
        DENY_ALL_X,
        &[anp("a", 10, "x", from_ns("Allow", "y"), json!([]))],
    );
    assert!(ok(&allow, "10.0.2.1", "10.0.1.2", 80));
    assert!(
        !ok(&allow, "10.0.1.1", "10.0.1.2", 80),
        "NetworkPolicy still isolates the rest"
    );
    let d = allow.decide(&Flow {
        src: ip("10.0.2.1"),
        dst: ip("10.0.1.2"),
        protocol: Protocol::Tcp,
        dst_port: 80,
    });
    assert!(
        d.to_string()
            .contains("allowed by AdminNetworkPolicy a rule ingress[0] (tier admin)"),
        "{d}"
    );
}

#[test]
fn lower_priority_value_wins() {
    // "Policies with lower priority values have higher precedence, and are checked before
    // policies with higher priority values."
    let a = eval(
        "",
        &[
            anp("allow", 5, "x", from_ns("Allow", "y"), json!([])),
            anp("deny", 10, "x", from_ns("Deny", "y"), json!([])),
        ],
    );
    assert!(ok(&a, "10.0.2.1", "10.0.1.1", 80));
    let d = eval(
        "",
        &[
            anp("allow", 15, "x", from_ns("Allow", "y"), json!([])),
            anp("deny", 10, "x", from_ns("Deny", "y"), json!([])),
        ],
    );
    assert!(!ok(&d, "10.0.2.1", "10.0.1.1", 80));
}

#[test]
fn rules_in_written_order_first_match_wins() {
    // "The relative precedence of ingress rules within a single ANP object (all of which share
    // the priority) will be determined by the order in which the rule is written."
    let rules = json!([{"action": "Allow", "from": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "a"}}}}]},
                       {"action": "Deny", "from": [{"namespaces": {}}]}]);
    let e = eval("", &[anp("p", 1, "x", rules, json!([]))]);
    assert!(ok(&e, "10.0.2.1", "10.0.1.2", 80));
    assert!(ok(&e, "10.0.1.1", "10.0.1.2", 80));
    assert!(!ok(&e, "10.0.1.2", "10.0.1.1", 80));
}

#[test]
fn pass_delegates_to_network_policy_then_baseline() {
    // "Pass: instructs the selected traffic to skip any remaining ANP rules, and then pass
    // execution to any NetworkPolicies that select the pod. If the pod is not selected by any
    // NetworkPolicies then execution is passed to any BaselineAdminNetworkPolicies that select
    // the pod."
    let pass = anp("pass", 1, "x", from_ns("Pass", "y"), json!([]));
    let deny = anp("deny", 2, "x", from_ns("Deny", "y"), json!([]));
    let e = eval(ALLOW_ALL_X, &[pass.clone(), deny.clone()]);
    assert!(
        ok(&e, "10.0.2.1", "10.0.1.1", 80),
        "NetworkPolicy allows after the pass"
    );
    let e = eval(
        "",
        &[pass.clone(), deny.clone(), banp(from_ns("Deny", "y"))],
    );
    assert!(
        !ok(&e, "10.0.2.1", "10.0.1.1", 80),
        "no NetworkPolicy: the baseline denies"
    );
    let e = eval("", &[pass, deny]);
    assert!(
        ok(&e, "10.0.2.1", "10.0.1.1", 80),
        "nothing decides: allowed"
    );
}

#[test]
fn baseline_applies_only_where_network_policy_does_not_select() {
    // BaselineAdminNetworkPolicy rules are evaluated after NetworkPolicy: a pod selected by a
    // NetworkPolicy is decided by it ("All AdminNetworkPolicy rules have higher precedence than
    // NetworkPolicy or BaselineAdminNetworkPolicy rules").
    let b = banp(from_ns("Deny", "y"));
    assert!(!ok(
        &eval("", std::slice::from_ref(&b)),
        "10.0.2.1",
        "10.0.1.1",
        80
    ));
    assert!(ok(
        &eval(ALLOW_ALL_X, std::slice::from_ref(&b)),
        "10.0.2.1",
        "10.0.1.1",
        80
    ));
    assert!(
        ok(&eval("", &[b]), "10.0.1.2", "10.0.1.1", 80),
        "x is not denied by the baseline"
    );
}

#[test]
fn egress_networks_and_nodes() {
    // Networks: "cluster-internal traffic will be checked against the rule as well";
    // Nodes: "the nodeIPs as the peer type by matching on the IPs"; host-networked pods carry
    // node IPs.
    let egress = json!([{"action": "Deny", "to": [{"nodes": {"matchLabels": {"role": "worker"}}}]},
                        {"action": "Deny", "to": [{"networks": ["10.0.2.0/24"]}]}]);
    let e = eval("", &[anp("p", 1, "x", json!([]), egress)]);
    assert!(
        !ok(&e, "10.0.1.1", "192.168.0.1", 22),
        "to the node (and host-network pod y/h)"
    );
    assert!(
        !ok(&e, "10.0.1.1", "10.0.2.1", 80),
        "a pod inside the network"
    );
    assert!(ok(&e, "10.0.1.1", "10.0.1.2", 80));
    assert!(
        ok(&e, "10.0.2.1", "192.168.0.1", 22),
        "y is not the subject"
    );
}

#[test]
fn named_ports_and_port_ranges() {
    // NamedPort "selects a port on a pod(s) based on name"; PortRange "defines an inclusive
    // range of ports from the the assigned Start value to End value".
    let rules = json!([{"action": "Allow", "from": [{"namespaces": {}}], "ports": [{"namedPort": "http"}, {"portRange": {"start": 8000, "end": 8080}}]},
                       {"action": "Deny", "from": [{"namespaces": {}}]}]);
    let e = eval("", &[anp("p", 1, "x", rules, json!([]))]);
    assert!(ok(&e, "10.0.2.1", "10.0.1.1", 80));
    assert!(ok(&e, "10.0.2.1", "10.0.1.1", 8080));
    assert!(!ok(&e, "10.0.2.1", "10.0.1.1", 81));
    assert!(!ok(&e, "10.0.2.1", "10.0.1.1", 8081));
}

#[test]
fn subject_excludes_host_network_pods() {
    // "Note that host-networked pods are not included in subject selection."
    let e = eval("", &[anp("p", 1, "y", from_ns("Deny", "x"), json!([]))]);
    assert!(ok(&e, "10.0.1.1", "192.168.0.1", 80));
    assert!(!ok(&e, "10.0.1.1", "10.0.2.1", 80));
}

#[test]
fn unknown_peers_fail_closed() {
    // "For "Allow" rules, "fail closed" means: "treat the rule as matching no traffic". For
    // "Deny" and "Pass" rules, "fail closed" means: "treat the rule as a 'Deny all' rule"."
    let unknown = json!([{"action": "Deny", "to": [{"domainNames": ["example.com"]}]}]);
    let e = eval("", &[anp("p", 1, "x", json!([]), unknown)]);
    assert!(!ok(&e, "10.0.1.1", "10.0.2.1", 80));
    let unknown = json!([{"action": "Allow", "to": [{"domainNames": ["example.com"]}]},
                         {"action": "Deny", "to": [{"networks": ["10.0.2.0/24"]}]}]);
    let e = eval("", &[anp("p", 1, "x", json!([]), unknown)]);
    assert!(!ok(&e, "10.0.1.1", "10.0.2.1", 80));
    assert!(ok(&e, "10.0.1.1", "10.0.1.2", 80));
}

#[test]
fn validation() {
    let bad = |v: Value| {
        matches!(
            AdminPolicyObject::from_value(v).and_then(|o| o.validate()),
            Err(PolicyError::Invalid { .. })
        )
    };
    let base = |spec: Value| json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy", "metadata": {"name": "p"}, "spec": spec});
    assert!(bad(base(
        json!({"priority": 1001, "subject": {"namespaces": {}}})
    )));
    assert!(bad(base(json!({"subject": {"namespaces": {}}}))));
    assert!(bad(base(json!({"priority": 1, "subject": {}}))));
    assert!(bad(base(
        json!({"priority": 1, "subject": {"namespaces": {}}, "ingress": [{"action": "Drop", "from": [{"namespaces": {}}]}]})
    )));
    assert!(bad(base(
        json!({"priority": 1, "subject": {"namespaces": {}}, "ingress": [{"action": "Deny", "from": []}]})
    )));
    assert!(bad(base(
        json!({"priority": 1, "subject": {"namespaces": {}}, "ingress": [{"action": "Deny", "from": [{"namespaces": {}}], "ports": [{"portRange": {"start": 90, "end": 80}}]}]})
    )));
    let banp = |name: &str, action: &str| {
        json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy", "metadata": {"name": name},
        "spec": {"subject": {"namespaces": {}}, "ingress": [{"action": action, "from": [{"namespaces": {}}]}]}})
    };
    assert!(bad(banp("other", "Deny")));
    assert!(bad(banp("default", "Pass")));
    assert!(!bad(banp("default", "Deny")));
}

fn cnp(name: &str, tier: &str, priority: i32, ingress: Value) -> AdminPolicyObject {
    AdminPolicyObject::from_value(json!({
        "apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
        "metadata": {"name": name},
        "spec": {"tier": tier, "priority": priority, "subject": {"namespaces": ns("x")}, "ingress": ingress}
    }))
    .expect("object")
}

#[test]
fn cluster_network_policy_tiers_and_protocols() {
    // v1alpha2 ClusterNetworkPolicy: "Tier is used as the top-level grouping for network policy
    // prioritization"; Admin before NetworkPolicy, Baseline after; "Accept: Accepts the
    // selected traffic"; "Pass: Skips all further ClusterNetworkPolicy rules in the current tier".
    let accept_80 = json!([{"action": "Accept", "from": [{"namespaces": ns("y")}],
                            "protocols": [{"tcp": {"destinationPort": {"number": 80}}},
                                          {"udp": {"destinationPort": {"range": {"start": 50, "end": 60}}}},
                                          {"destinationNamedPort": "http"}]},
                           {"action": "Deny", "from": [{"namespaces": {}}]}]);
    let e = eval(DENY_ALL_X, &[cnp("admin", "Admin", 1, accept_80)]);
    assert!(ok(&e, "10.0.2.1", "10.0.1.1", 80));
    assert!(!ok(&e, "10.0.2.1", "10.0.1.1", 81));
    assert!(
        e.decide(&Flow {
            src: ip("10.0.2.1"),
            dst: ip("10.0.1.1"),
            protocol: Protocol::Udp,
            dst_port: 55
        })
        .verdict
            == Verdict::Allow
    );
    let base_deny = cnp("base", "Baseline", 5, from_ns("Deny", "y"));
    let base_pass = cnp("pass", "Baseline", 1, from_ns("Pass", "y"));
    assert!(!ok(
        &eval("", std::slice::from_ref(&base_deny)),
        "10.0.2.1",
        "10.0.1.1",
        80
    ));
    assert!(
        ok(
            &eval("", &[base_pass, base_deny.clone()]),
            "10.0.2.1",
            "10.0.1.1",
            80
        ),
        "Pass in the baseline tier: default allow"
    );
    assert!(
        ok(&eval(ALLOW_ALL_X, &[base_deny]), "10.0.2.1", "10.0.1.1", 80),
        "NetworkPolicy decides first"
    );
    let bad = AdminPolicyObject::from_value(json!({"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
        "metadata": {"name": "b"}, "spec": {"tier": "Middle", "priority": 1, "subject": {"namespaces": {}}}}))
    .expect("object");
    assert!(bad.validate().is_err());
}
