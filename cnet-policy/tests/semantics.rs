//! One test per rule of the Kubernetes NetworkPolicy semantics. Each cites the sentence of
//! https://kubernetes.io/docs/concepts/services-networking/network-policies/ (or of the API
//! reference for networking.k8s.io/v1 NetworkPolicy) that it checks.

use cnet_policy::endpoint::{NamedPort, Node};
use cnet_policy::{
    Endpoint, Evaluator, EvaluatorOptions, Flow, Inventory, PolicySet, Protocol, SideReason,
    Verdict, parse_yaml,
};
use std::collections::BTreeMap;
use std::net::IpAddr;

fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// Namespaces x (team=a) and y (team=b); pods x/a 10.0.1.1, x/b 10.0.1.2, y/a 10.0.2.1,
/// y/b 10.0.2.2 labelled pod=<name>; every pod names port 80/TCP "http" and 53/UDP "dns".
/// All on node-1 (192.168.0.1), which also runs host-network pod x/h.
fn world() -> Inventory {
    let mut inv = Inventory::default();
    inv.upsert_namespace("x", labels(&[("team", "a")]));
    inv.upsert_namespace("y", labels(&[("team", "b")]));
    inv.upsert_node(Node {
        name: "node-1".into(),
        labels: labels(&[]),
        addresses: vec![ip("192.168.0.1")],
    });
    for (ns, name, addr) in [
        ("x", "a", "10.0.1.1"),
        ("x", "b", "10.0.1.2"),
        ("y", "a", "10.0.2.1"),
        ("y", "b", "10.0.2.2"),
    ] {
        let mut ep = Endpoint::new(ns, name, labels(&[("pod", name)]), vec![ip(addr)]);
        ep.named_ports.insert(
            "http".into(),
            NamedPort {
                port: 80,
                protocol: Protocol::Tcp,
            },
        );
        ep.named_ports.insert(
            "dns".into(),
            NamedPort {
                port: 53,
                protocol: Protocol::Udp,
            },
        );
        ep.node = Some("node-1".into());
        inv.upsert_endpoint(ep);
    }
    let mut h = Endpoint::new("x", "h", labels(&[("pod", "h")]), vec![ip("192.168.0.1")]);
    h.host_network = true;
    h.node = Some("node-1".into());
    inv.upsert_endpoint(h);
    inv
}

fn eval(yaml: &str) -> Evaluator {
    let nps = if yaml.trim().is_empty() {
        vec![]
    } else {
        parse_yaml(yaml).expect("valid policy")
    };
    Evaluator::new(
        PolicySet::from_network_policies(&nps).expect("normalises"),
        world(),
    )
}

fn addr(who: &str) -> IpAddr {
    ip(match who {
        "x/a" => "10.0.1.1",
        "x/b" => "10.0.1.2",
        "y/a" => "10.0.2.1",
        "y/b" => "10.0.2.2",
        "node" | "x/h" => "192.168.0.1",
        other => other,
    })
}

fn allowed(e: &Evaluator, from: &str, to: &str, port: u16, proto: Protocol) -> bool {
    let d = e.decide(&Flow {
        src: addr(from),
        dst: addr(to),
        protocol: proto,
        dst_port: port,
    });
    d.verdict == Verdict::Allow
}

fn tcp(e: &Evaluator, from: &str, to: &str, port: u16) -> bool {
    allowed(e, from, to, port, Protocol::Tcp)
}

const HEAD: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n";

#[test]
fn non_isolated_by_default() {
    // "By default, a pod is non-isolated for ingress; all inbound connections are allowed."
    // "By default, a pod is non-isolated for egress; all outbound connections are allowed."
    let e = eval("");
    for (f, t) in [
        ("x/a", "x/b"),
        ("x/a", "y/a"),
        ("10.9.9.9", "y/b"),
        ("y/b", "10.9.9.9"),
    ] {
        assert!(tcp(&e, f, t, 80), "{f} -> {t}");
    }
}

#[test]
fn default_deny_ingress_isolates_selected_pods_only_for_ingress() {
    // "You can create a "default" ingress isolation policy for a namespace by creating a
    // NetworkPolicy that selects all pods but does not allow any ingress traffic to those pods."
    let e = eval(&format!(
        "{HEAD}metadata: {{name: deny, namespace: x}}\nspec: {{podSelector: {{}}}}\n"
    ));
    assert!(!tcp(&e, "x/a", "x/b", 80));
    assert!(!tcp(&e, "y/a", "x/a", 80));
    assert!(
        tcp(&e, "x/a", "y/a", 80),
        "egress of x stays open, y is not isolated"
    );
    assert!(tcp(&e, "y/a", "y/b", 80));
}

#[test]
fn default_deny_egress() {
    // "You can create a "default" egress isolation policy for a namespace by creating a
    // NetworkPolicy that selects all pods but does not allow any egress traffic from those pods."
    let e = eval(&format!(
        "{HEAD}metadata: {{name: deny, namespace: x}}\nspec: {{podSelector: {{}}, policyTypes: [Egress]}}\n"
    ));
    assert!(!tcp(&e, "x/a", "y/a", 80));
    assert!(!tcp(&e, "x/a", "10.9.9.9", 443));
    assert!(
        tcp(&e, "y/a", "x/a", 80),
        "ingress of x is not isolated by an Egress-only policy"
    );
}

#[test]
fn isolated_pod_accepts_what_some_ingress_rule_allows() {
    // "When a pod is isolated for ingress, the only allowed connections into the pod are those
    // from the pod's node and those allowed by the ingress list of some NetworkPolicy that
    // applies to the pod for ingress."
    let e = eval(&format!(
        "{HEAD}metadata: {{name: p, namespace: x}}\nspec:\n  podSelector: {{matchLabels: {{pod: b}}}}\n  \
         ingress: [{{from: [{{podSelector: {{matchLabels: {{pod: a}}}}}}]}}]\n"
    ));
    assert!(tcp(&e, "x/a", "x/b", 80));
    assert!(
        !tcp(&e, "y/a", "x/b", 80),
        "podSelector alone means the policy's namespace"
    );
    assert!(
        tcp(&e, "node", "x/b", 80),
        "the pod's node is always allowed"
    );
    assert!(
        tcp(&e, "x/h", "x/b", 80),
        "a host-network pod is node traffic"
    );
}

#[test]
fn resident_node_exception_can_be_turned_off() {
    // Same sentence as above ("those from the pod's node"), with the option off.
    let nps = parse_yaml(&format!(
        "{HEAD}metadata: {{name: d, namespace: x}}\nspec: {{podSelector: {{}}}}\n"
    ))
    .expect("valid");
    let e = Evaluator::with_options(
        PolicySet::from_network_policies(&nps).expect("normalises"),
        world(),
        EvaluatorOptions {
            allow_from_resident_node: false,
        },
    );
    assert!(!tcp(&e, "node", "x/b", 80));
}

#[test]
fn policies_are_additive() {
    // "Network policies do not conflict; they are additive. If any policy or policies apply to
    // a given pod for a given direction, the connections allowed in that direction from that
    // pod is the union of what the applicable policies allow."
    let e = eval(&format!(
        "{HEAD}metadata: {{name: deny, namespace: x}}\nspec: {{podSelector: {{}}}}\n---\n\
         {HEAD}metadata: {{name: allow-y, namespace: x}}\nspec:\n  podSelector: {{}}\n  \
         ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{team: b}}}}}}]}}]\n"
    ));
    assert!(tcp(&e, "y/a", "x/b", 80));
    assert!(!tcp(&e, "x/a", "x/b", 80));
}

#[test]
fn both_egress_of_source_and_ingress_of_destination_must_allow() {
    // "For a connection from a source pod to a destination pod to be allowed, both the egress
    // policy on the source pod and the ingress policy on the destination pod need to allow the
    // connection. If either side does not allow the connection, it will not happen."
    let e = eval(&format!(
        "{HEAD}metadata: {{name: egress-to-y, namespace: x}}\nspec:\n  podSelector: {{}}\n  \
         egress: [{{to: [{{namespaceSelector: {{matchLabels: {{team: b}}}}}}]}}]\n---\n\
         {HEAD}metadata: {{name: ingress-none, namespace: y}}\nspec:\n  podSelector: {{matchLabels: {{pod: b}}}}\n"
    ));
    assert!(tcp(&e, "x/a", "y/a", 80), "egress allows, y/a not isolated");
    assert!(
        !tcp(&e, "x/a", "y/b", 80),
        "egress allows, ingress of y/b does not"
    );
    assert!(
        !tcp(&e, "x/a", "x/b", 80),
        "ingress of x/b open, egress of x/a does not allow"
    );
    let d = e.decide(&Flow {
        src: addr("x/a"),
        dst: addr("y/b"),
        protocol: Protocol::Tcp,
        dst_port: 80,
    });
    assert!(matches!(d.egress.reason, SideReason::Rule(..)));
    assert!(matches!(d.ingress.reason, SideReason::TierDefault(_)));
    let text = d.to_string();
    assert!(text.contains("NetworkPolicy y/ingress-none"), "{text}");
    assert!(
        text.contains("NetworkPolicy x/egress-to-y rule egress[0]"),
        "{text}"
    );
}

#[test]
fn replies_of_allowed_connections_are_allowed() {
    // "Reply traffic for those allowed connections will also be implicitly allowed."
    let e = eval(&format!(
        "{HEAD}metadata: {{name: d, namespace: x}}\nspec: {{podSelector: {{}}, policyTypes: [Ingress, Egress]}}\n"
    ));
    let f = Flow {
        src: addr("y/a"),
        dst: addr("10.9.9.9"),
        protocol: Protocol::Tcp,
        dst_port: 80,
    };
    assert_eq!(e.decide_reply(&f).verdict, Verdict::Allow);
    let g = Flow {
        src: addr("y/a"),
        dst: addr("x/a"),
        protocol: Protocol::Tcp,
        dst_port: 80,
    };
    assert_eq!(
        e.decide_reply(&g).verdict,
        Verdict::Deny,
        "a reply exists only for an allowed connection"
    );
}

#[test]
fn empty_pod_selector_selects_all_pods_in_the_namespace() {
    // "An empty podSelector selects all pods in the namespace."
    let e = eval(&format!(
        "{HEAD}metadata: {{name: d, namespace: y}}\nspec: {{podSelector: {{}}}}\n"
    ));
    assert!(!tcp(&e, "x/a", "y/a", 80) && !tcp(&e, "x/a", "y/b", 80));
    assert!(tcp(&e, "y/a", "x/a", 80) && tcp(&e, "y/a", "x/b", 80));
}

#[test]
fn policy_types_default_ingress_always_egress_when_rules_exist() {
    // "If no policyTypes are specified on a NetworkPolicy then by default Ingress will always
    // be set and Egress will be set if the NetworkPolicy has any egress rules."
    let e = eval(&format!(
        "{HEAD}metadata: {{name: p, namespace: x}}\nspec:\n  podSelector: {{matchLabels: {{pod: a}}}}\n  \
         egress: [{{to: [{{podSelector: {{matchLabels: {{pod: b}}}}}}]}}]\n"
    ));
    assert!(
        !tcp(&e, "x/b", "x/a", 80),
        "Ingress defaulted: x/a isolated for ingress"
    );
    assert!(tcp(&e, "x/a", "x/b", 80));
    assert!(
        !tcp(&e, "x/a", "y/a", 80),
        "Egress defaulted because of the egress rule"
    );
}

#[test]
fn namespace_selector_alone_selects_all_pods_of_matching_namespaces() {
    // "namespaceSelector: This selects particular namespaces for which all Pods should be
    // allowed as ingress sources or egress destinations."
    let e = eval(&format!(
        "{HEAD}metadata: {{name: p, namespace: x}}\nspec:\n  podSelector: {{}}\n  \
         ingress: [{{from: [{{namespaceSelector: {{matchExpressions: [{{key: team, operator: NotIn, values: [a]}}]}}}}]}}]\n"
    ));
    assert!(tcp(&e, "y/a", "x/a", 80) && tcp(&e, "y/b", "x/a", 80));
    assert!(!tcp(&e, "x/b", "x/a", 80));
}

#[test]
fn namespace_selector_by_name_label() {
    // "The Kubernetes control plane sets an immutable label kubernetes.io/metadata.name on all
    // namespaces, the value of the label is the namespace name."
    let e = eval(&format!(
        "{HEAD}metadata: {{name: p, namespace: x}}\nspec:\n  podSelector: {{}}\n  \
         ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: y}}}}}}]}}]\n"
    ));
    assert!(tcp(&e, "y/b", "x/a", 80));
    assert!(!tcp(&e, "x/b", "x/a", 80));
}

#[test]
fn namespace_and_pod_selector_in_one_peer_is_and_two_peers_is_or() {
    // "namespaceSelector and podSelector: A single to/from entry that specifies both
    // namespaceSelector and podSelector selects particular Pods within particular namespaces."
    let and = eval(&format!(
        "{HEAD}metadata: {{name: p, namespace: x}}\nspec:\n  podSelector: {{}}\n  \
         ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{team: b}}}}, podSelector: {{matchLabels: {{pod: a}}}}}}]}}]\n"
    ));
    assert!(tcp(&and, "y/a", "x/b", 80));
    assert!(!tcp(&and, "y/b", "x/b", 80));
    assert!(!tcp(&and, "x/a", "x/b", 80));
    let or = eval(&format!(
        "{HEAD}metadata: {{name: p, namespace: x}}\nspec:\n  podSelector: {{}}\n  \
         ingress: [{{from: [{{namespaceSelector: {{matchLabels: {{team: b}}}}}}, {{podSelector: {{matchLabels: {{pod: a}}}}}}]}}]\n"
    ));
    assert!(tcp(&or, "y/b", "x/b", 80));
    assert!(tcp(&or, "x/a", "x/b", 80));
}

#[test]
fn ip_block_matches_addresses_including_pods_with_except() {
    // "ipBlock: This selects particular IP CIDR ranges to allow as ingress sources or egress
    // destinations." (The upstream e2e suite uses pod addresses in ipBlock; matching is by
    // address, whoever holds it.)
    let e = eval(&format!(
        "{HEAD}metadata: {{name: p, namespace: x}}\nspec:\n  podSelector: {{matchLabels: {{pod: a}}}}\n  \
         policyTypes: [Egress]\n  egress: [{{to: [{{ipBlock: {{cidr: 10.0.0.0/16, except: [10.0.2.2/32]}}}}]}}]\n"
    ));
    assert!(tcp(&e, "x/a", "y/a", 80));
    assert!(!tcp(&e, "x/a", "y/b", 80), "except");
    assert!(!tcp(&e, "x/a", "10.1.0.1", 80));
}

#[test]
fn ip_block_with_host_bits_set_matches_its_network() {
    // API reference, IPBlock.cidr: "cidr is a string representing the IPBlock Valid examples
    // are "192.168.1.0/24" or "2001:db8::/64"" — legacy validation accepts host bits, which
    // then do not narrow the block.
    let e = eval(&format!(
        "{HEAD}metadata: {{name: p, namespace: x}}\nspec:\n  podSelector: {{matchLabels: {{pod: a}}}}\n  \
         policyTypes: [Egress]\n  egress: [{{to: [{{ipBlock: {{cidr: 10.0.2.2/24}}}}]}}]\n"
    ));
    assert!(tcp(&e, "x/a", "y/a", 80));
}

#[test]
fn ports_and_protocols() {
    // API reference, NetworkPolicyPort.protocol: "If not specified, this field defaults to TCP."
    // "ports ... If this field is empty or missing, this rule matches all ports".
    let e = eval(&format!(
        "{HEAD}metadata: {{name: p, namespace: x}}\nspec:\n  podSelector: {{}}\n  \
         ingress: [{{ports: [{{port: 80}}, {{port: 53, protocol: UDP}}, {{protocol: SCTP}}]}}]\n"
    ));
    assert!(tcp(&e, "y/a", "x/a", 80));
    assert!(
        !allowed(&e, "y/a", "x/a", 80, Protocol::Udp),
        "port 80 defaults to TCP"
    );
    assert!(allowed(&e, "y/a", "x/a", 53, Protocol::Udp));
    assert!(!tcp(&e, "y/a", "x/a", 53));
    assert!(
        allowed(&e, "y/a", "x/a", 9999, Protocol::Sctp),
        "protocol without port: all ports"
    );
}

#[test]
fn end_port_targets_a_range() {
    // "When writing a NetworkPolicy, you can target a range of ports instead of a single port.
    // This is achievable with the usage of the endPort field"
    let e = eval(&format!(
        "{HEAD}metadata: {{name: p, namespace: x}}\nspec:\n  podSelector: {{}}\n  \
         ingress: [{{ports: [{{port: 32000, endPort: 32768, protocol: TCP}}]}}]\n"
    ));
    assert!(!tcp(&e, "y/a", "x/a", 31999));
    assert!(tcp(&e, "y/a", "x/a", 32000) && tcp(&e, "y/a", "x/a", 32768));
    assert!(!tcp(&e, "y/a", "x/a", 32769));
}

#[test]
fn named_ports_resolve_on_the_destination_pod() {
    // API reference, NetworkPolicyPort.port: "port represents the port on the given protocol.
    // This can either be a numerical or named port on a pod."
    let e = eval(&format!(
        "{HEAD}metadata: {{name: in, namespace: x}}\nspec:\n  podSelector: {{matchLabels: {{pod: a}}}}\n  \
         ingress: [{{ports: [{{port: http}}]}}]\n---\n\
         {HEAD}metadata: {{name: out, namespace: y}}\nspec:\n  podSelector: {{matchLabels: {{pod: a}}}}\n  \
         policyTypes: [Egress]\n  egress: [{{ports: [{{port: dns, protocol: UDP}}]}}]\n"
    ));
    assert!(tcp(&e, "y/b", "x/a", 80));
    assert!(!tcp(&e, "y/b", "x/a", 81));
    // Egress named port: resolved on the destination (x/b names 53/UDP "dns").
    assert!(allowed(&e, "y/a", "x/b", 53, Protocol::Udp));
    assert!(
        !allowed(&e, "y/a", "x/b", 53, Protocol::Tcp),
        "protocol must match the named port's"
    );
    assert!(
        !allowed(&e, "y/a", "10.9.9.9", 53, Protocol::Udp),
        "a non-pod has no named ports"
    );
}

#[test]
fn host_network_pods_are_node_traffic_not_selected() {
    // "The network plugin cannot properly distinguish hostNetwork pod traffic, and so it
    // ignores hostNetwork pods when matching podSelector and namespaceSelector. Traffic to/from
    // hostNetwork pods is treated the same as all other traffic to/from the node IP. (This is
    // the most common implementation.)"
    let deny_in = eval(&format!(
        "{HEAD}metadata: {{name: d, namespace: x}}\nspec: {{podSelector: {{}}}}\n"
    ));
    assert!(
        tcp(&deny_in, "y/a", "x/h", 80),
        "x/h is not selected by x's podSelector: {{}}"
    );
    let egress = eval(&format!(
        "{HEAD}metadata: {{name: p, namespace: x}}\nspec:\n  podSelector: {{}}\n  policyTypes: [Egress]\n  \
         egress: [{{to: [{{podSelector: {{}}}}]}}]\n"
    ));
    assert!(
        !tcp(&egress, "x/a", "x/h", 80),
        "x/h does not match the egress podSelector: {{}}"
    );
    assert!(tcp(&egress, "x/a", "x/b", 80));
    assert!(
        tcp(&egress, "x/h", "y/a", 80),
        "x/h's own egress is not isolated"
    );
}

#[test]
fn ipv6_and_dual_stack() {
    // "ipBlock: This selects particular IP CIDR ranges" — IPv6 ranges apply to IPv6 addresses.
    let mut inv = world();
    let mut ep = inv.endpoints.values().next().expect("pod").clone();
    ep.addresses.push(ip("fd00::1"));
    inv.upsert_endpoint(ep);
    let nps = parse_yaml(&format!(
        "{HEAD}metadata: {{name: p, namespace: x}}\nspec:\n  podSelector: {{}}\n  \
         ingress: [{{from: [{{ipBlock: {{cidr: 'fd00:99::/64'}}}}]}}]\n"
    ))
    .expect("valid");
    let e = Evaluator::new(PolicySet::from_network_policies(&nps).expect("ok"), inv);
    assert!(allowed(&e, "fd00:99::5", "fd00::1", 80, Protocol::Tcp));
    assert!(!allowed(&e, "fd00:98::5", "fd00::1", 80, Protocol::Tcp));
}
