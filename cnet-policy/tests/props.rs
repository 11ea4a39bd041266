//! Property tests: additivity per direction, empty podSelector scope, render/parse round
//! trips, and arbitrary input into the parsers (no panic, only typed errors).

use cnet_policy::api::*;
use cnet_policy::endpoint::NamedPort;
use cnet_policy::parse::objects_from_value;
use cnet_policy::{
    Endpoint, Evaluator, Flow, Inventory, PolicySet, Protocol, SideReason, parse_json,
    parse_json_objects, parse_yaml, parse_yaml_objects, render_json, render_yaml,
};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::net::IpAddr;

const NAMESPACES: [&str; 3] = ["a", "b", "c"];

fn label_map(
    keys: &'static [&'static str],
    values: &'static [&'static str],
) -> impl Strategy<Value = Labels> {
    btree_map(
        proptest::sample::select(keys).prop_map(str::to_string),
        proptest::sample::select(values).prop_map(str::to_string),
        0..3,
    )
}

fn selector() -> impl Strategy<Value = LabelSelector> {
    let req = (
        proptest::sample::select(&["app", "tier", "env"][..]),
        prop_oneof![
            Just("In"),
            Just("NotIn"),
            Just("Exists"),
            Just("DoesNotExist")
        ],
        vec(
            proptest::sample::select(&["p", "q", "r", "1", "2", "x"][..]),
            1..3,
        ),
    )
        .prop_map(|(k, op, vals)| LabelSelectorRequirement {
            key: k.to_string(),
            operator: op.to_string(),
            values: matches!(op, "In" | "NotIn")
                .then(|| vals.into_iter().map(str::to_string).collect()),
        });
    (
        option::of(label_map(
            &["app", "tier", "env"],
            &["p", "q", "r", "1", "2", "x"],
        )),
        option::of(vec(req, 0..3)),
    )
        .prop_map(|(match_labels, match_expressions)| LabelSelector {
            match_labels,
            match_expressions,
        })
}

fn port() -> impl Strategy<Value = NetworkPolicyPort> {
    let proto =
        option::of(prop_oneof![Just("TCP"), Just("UDP"), Just("SCTP")].prop_map(str::to_string));
    let p = prop_oneof![
        Just((None, None)),
        (79i32..83).prop_map(|p| (Some(IntOrString::Int(p)), None)),
        (79i32..83, 0i32..3).prop_map(|(p, d)| (Some(IntOrString::Int(p)), Some(p + d))),
        prop_oneof![Just("http"), Just("dns"), Just("other")]
            .prop_map(|n| (Some(IntOrString::String(n.into())), None)),
    ];
    (proto, p).prop_map(|(protocol, (port, end_port))| NetworkPolicyPort {
        protocol,
        port,
        end_port,
    })
}

fn peer() -> impl Strategy<Value = NetworkPolicyPeer> {
    prop_oneof![
        selector().prop_map(|s| NetworkPolicyPeer {
            pod_selector: Some(s),
            ..Default::default()
        }),
        selector().prop_map(|s| NetworkPolicyPeer {
            namespace_selector: Some(s),
            ..Default::default()
        }),
        (selector(), selector()).prop_map(|(p, n)| NetworkPolicyPeer {
            pod_selector: Some(p),
            namespace_selector: Some(n),
            ..Default::default()
        }),
        (24u8..=32, 0u8..8, option::of(0u8..8)).prop_map(|(len, host, except)| NetworkPolicyPeer {
            ip_block: Some(IpBlock {
                cidr: format!("10.0.0.{host}/{len}"),
                except: except
                    .filter(|_| len <= 29)
                    .map(|x| vec![format!("10.0.0.{x}/32")]),
            }),
            ..Default::default()
        }),
    ]
}

fn rule_parts() -> impl Strategy<
    Value = (
        Option<Vec<NetworkPolicyPort>>,
        Option<Vec<NetworkPolicyPeer>>,
    ),
> {
    (option::of(vec(port(), 0..3)), option::of(vec(peer(), 0..3)))
}

prop_compose! {
    fn policy()(ns in proptest::sample::select(&NAMESPACES[..]), n in 0u32..1000, pod_selector in selector(),
                ingress in option::of(vec(rule_parts(), 0..3)), egress in option::of(vec(rule_parts(), 0..3)),
                types in option::of(proptest::sample::subsequence(vec!["Ingress", "Egress"], 0..=2)))
        -> NetworkPolicy {
        NetworkPolicy {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            metadata: ObjectMeta { name: format!("p{n}"), namespace: Some(ns.into()), ..Default::default() },
            spec: NetworkPolicySpec {
                pod_selector,
                ingress: ingress.map(|v| v.into_iter().map(|(ports, from)| NetworkPolicyIngressRule { ports, from }).collect()),
                egress: egress.map(|v| v.into_iter().map(|(ports, to)| NetworkPolicyEgressRule { ports, to }).collect()),
                policy_types: types.map(|t| t.into_iter().map(str::to_string).collect()),
            },
        }
    }
}

fn world() -> impl Strategy<Value = Inventory> {
    (
        vec(label_map(&["env"], &["x", "y"]), 3),
        vec(
            (
                0usize..3,
                label_map(&["app", "tier"], &["p", "q", "r", "1", "2"]),
                any::<bool>(),
                any::<bool>(),
            ),
            1..8,
        ),
    )
        .prop_map(|(ns_labels, pods)| {
            let mut inv = Inventory::default();
            for (ns, l) in NAMESPACES.iter().zip(ns_labels) {
                inv.upsert_namespace(ns, l);
            }
            for (i, (ns, labels, http, dns)) in pods.into_iter().enumerate() {
                let addr: IpAddr = format!("10.0.0.{}", i + 1).parse().expect("addr");
                let mut ep = Endpoint::new(NAMESPACES[ns], &format!("pod{i}"), labels, vec![addr]);
                if http {
                    ep.named_ports.insert(
                        "http".into(),
                        NamedPort {
                            port: 80,
                            protocol: Protocol::Tcp,
                        },
                    );
                }
                if dns {
                    ep.named_ports.insert(
                        "dns".into(),
                        NamedPort {
                            port: 81,
                            protocol: Protocol::Udp,
                        },
                    );
                }
                inv.upsert_endpoint(ep);
            }
            inv
        })
}

fn flows(inv: &Inventory) -> Vec<Flow> {
    let mut addrs: Vec<IpAddr> = inv
        .endpoints
        .values()
        .flat_map(|e| e.addresses.clone())
        .collect();
    addrs.push("192.0.2.9".parse().expect("addr"));
    let mut out = Vec::new();
    for &src in &addrs {
        for &dst in &addrs {
            if src == dst {
                continue;
            }
            for (protocol, dst_port) in [
                (Protocol::Tcp, 80),
                (Protocol::Tcp, 81),
                (Protocol::Udp, 81),
                (Protocol::Sctp, 82),
            ] {
                out.push(Flow {
                    src,
                    dst,
                    protocol,
                    dst_port,
                });
            }
        }
    }
    out
}

fn evaluator(policies: &[NetworkPolicy], inv: &Inventory) -> Evaluator {
    Evaluator::new(
        PolicySet::from_network_policies(policies).expect("generated policies are valid"),
        inv.clone(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Additivity, per direction: adding policy Q (1) changes nothing for a pod Q does not
    /// select in that direction, (2) never closes a flow for a pod that was already selected
    /// in that direction, and (3) opens a flow that was closed only through a rule of Q.
    #[test]
    fn adding_a_policy_is_additive_per_direction(inv in world(), base in vec(policy(), 0..4), extra in policy()) {
        let mut extra = extra;
        extra.metadata.name = "added".into();
        let before = evaluator(&base, &inv);
        let mut all = base.clone();
        all.push(extra.clone());
        let after = evaluator(&all, &inv);
        for f in flows(&inv) {
            let (b, a) = (before.decide(&f), after.decide(&f));
            for (sb, sa) in [(&b.egress, &a.egress), (&b.ingress, &a.ingress)] {
                let q_selects = sa.selected_by.iter().any(|p| p.name == "added");
                if !q_selects {
                    prop_assert_eq!(sb.verdict, sa.verdict, "{} vs {}", b, a);
                    continue;
                }
                if !sb.selected_by.is_empty() && sb.verdict == cnet_policy::Verdict::Allow {
                    prop_assert_eq!(sa.verdict, cnet_policy::Verdict::Allow, "closed: {} vs {}", b, a);
                }
                if sb.verdict == cnet_policy::Verdict::Deny && sa.verdict == cnet_policy::Verdict::Allow {
                    let via_q = matches!(&sa.reason, SideReason::Rule(_, r) if r.policy.name == "added");
                    prop_assert!(via_q, "opened not by the added policy: {} vs {}", b, a);
                }
            }
        }
    }

    /// The allocation-free fast path agrees with the explained decision on every flow.
    #[test]
    fn fast_verdict_equals_decision(inv in world(), ps in vec(policy(), 0..5)) {
        let e = evaluator(&ps, &inv);
        for f in flows(&inv) {
            prop_assert_eq!(e.verdict(&f), e.decide(&f).verdict);
        }
    }

    /// An empty podSelector selects every pod of the policy's namespace and none elsewhere.
    #[test]
    fn empty_pod_selector_selects_exactly_its_namespace(inv in world(), p in policy()) {
        let mut p = p;
        p.spec.pod_selector = LabelSelector::default();
        p.spec.policy_types = Some(vec!["Ingress".into(), "Egress".into()]);
        let e = evaluator(std::slice::from_ref(&p), &inv);
        for ep in inv.endpoints.values() {
            let f = Flow { src: "192.0.2.9".parse().expect("addr"), dst: ep.addresses[0], protocol: Protocol::Tcp, dst_port: 80 };
            let selected = !e.decide(&f).ingress.selected_by.is_empty();
            prop_assert_eq!(selected, ep.namespace == p.namespace(), "{}/{}", ep.namespace, ep.name);
        }
    }

    /// parse(render(policy)) == policy, for YAML and JSON.
    #[test]
    fn render_then_parse_is_identity(ps in vec(policy(), 1..4)) {
        let yaml = render_yaml(&ps).expect("render yaml");
        prop_assert_eq!(&parse_yaml(&yaml).expect("parse yaml"), &ps);
        let json = render_json(&ps).expect("render json");
        prop_assert_eq!(&parse_json(&json).expect("parse json"), &ps);
    }

    /// Strings that look like other YAML scalars survive a round trip.
    #[test]
    fn tricky_label_values_round_trip(v in prop_oneof![Just("null".to_string()), Just("true".to_string()),
                                                        Just("1".to_string()), Just("0x1F".to_string()),
                                                        Just("".to_string()), "[a-z0-9]{1,8}"]) {
        let mut p = NetworkPolicy {
            api_version: API_VERSION.into(), kind: KIND.into(),
            metadata: ObjectMeta { name: "p".into(), ..Default::default() },
            spec: NetworkPolicySpec::default(),
        };
        p.spec.pod_selector.match_labels = Some(BTreeMap::from([("k".to_string(), v)]));
        let yaml = render_yaml(std::slice::from_ref(&p)).expect("render");
        let back = parse_yaml_objects(&yaml).expect("parse");
        prop_assert_eq!(back, vec![cnet_policy::parse::ApiObject::NetworkPolicy(p)]);
    }

    /// Arbitrary text into every entry point: typed errors, never a panic.
    #[test]
    fn arbitrary_text_never_panics(s in any::<String>()) {
        let _ = parse_yaml(&s);
        let _ = parse_json(&s);
        let _ = parse_yaml_objects(&s);
        let _ = parse_json_objects(&s);
    }

    /// Arbitrary bytes (lossily decoded) likewise.
    #[test]
    fn arbitrary_bytes_never_panic(b in vec(any::<u8>(), 0..512)) {
        let s = String::from_utf8_lossy(&b);
        let _ = parse_yaml(&s);
        let _ = parse_json(&s);
    }

    /// Valid documents with random edits: typed errors or policies, never a panic.
    #[test]
    fn mutated_documents_never_panic(p in policy(), at in any::<prop::sample::Index>(),
                                     insert in "[\\[\\]{}:,\"'\\-\\n #&*!|>0-9a-zA-Z]{0,6}", cut in 0usize..8) {
        for text in [render_yaml(std::slice::from_ref(&p)).expect("yaml"), render_json(std::slice::from_ref(&p)).expect("json")] {
            let mut chars: Vec<char> = text.chars().collect();
            let i = at.index(chars.len() + 1);
            let end = (i + cut).min(chars.len());
            chars.splice(i..end, insert.chars());
            let s: String = chars.into_iter().collect();
            if let Ok(ps) = parse_yaml(&s) { let _ = PolicySet::from_network_policies(&ps); }
            if let Ok(ps) = parse_json(&s) { let _ = PolicySet::from_network_policies(&ps); }
        }
    }

    /// Arbitrary JSON shaped like policies (known keys, random values): no panic through
    /// parsing, validation and normalisation.
    #[test]
    fn arbitrary_policy_shaped_json_never_panics(v in json_value()) {
        let doc = serde_json::json!({"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "p"}, "spec": v});
        if let Ok(objs) = objects_from_value(doc) {
            for o in objs {
                if let cnet_policy::parse::ApiObject::NetworkPolicy(np) = o {
                    let _ = cnet_policy::validate::validate(&np);
                    let _ = PolicySet::from_network_policies(&[np]);
                }
            }
        }
    }
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let key = proptest::sample::select(
        &[
            "podSelector",
            "ingress",
            "egress",
            "policyTypes",
            "from",
            "to",
            "ports",
            "port",
            "endPort",
            "protocol",
            "ipBlock",
            "cidr",
            "except",
            "namespaceSelector",
            "matchLabels",
            "matchExpressions",
            "key",
            "operator",
            "values",
        ][..],
    );
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-2i64..70000).prop_map(Value::from),
        prop_oneof![
            Just("TCP"),
            Just("In"),
            Just("Exists"),
            Just("10.0.0.0/8"),
            Just("10.1.0.0/16"),
            Just("::/0"),
            Just("http"),
            Just("Ingress"),
            Just("Egress"),
            Just(""),
            Just("a/b")
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(key.clone().prop_map(str::to_string), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A deliberately naive reading of the Kubernetes semantics straight off the API objects
/// (no normalisation, no indexes): the evaluator must agree with it on every flow.
mod naive {
    use super::*;
    use cnet_policy::validate::{network_of, parse_cidr};

    fn sel(s: &LabelSelector, l: &Labels) -> bool {
        s.match_labels
            .iter()
            .flatten()
            .all(|(k, v)| l.get(k) == Some(v))
            && s.match_expressions.iter().flatten().all(|r| {
                let vals = r.values.clone().unwrap_or_default();
                let v = l.get(&r.key);
                match r.operator.as_str() {
                    "In" => v.is_some_and(|v| vals.contains(v)),
                    "NotIn" => v.is_none_or(|v| !vals.contains(v)),
                    "Exists" => v.is_some(),
                    _ => v.is_none(),
                }
            })
    }

    fn ports_ok(ports: &Option<Vec<NetworkPolicyPort>>, f: &Flow, dst: Option<&Endpoint>) -> bool {
        let Some(ports) = ports.as_ref().filter(|p| !p.is_empty()) else {
            return true;
        };
        ports.iter().any(|p| {
            let proto = Protocol::parse(p.protocol.as_deref().unwrap_or("TCP")).expect("valid");
            proto == f.protocol
                && match &p.port {
                    None => true,
                    Some(IntOrString::Int(n)) => {
                        let end = p.end_port.unwrap_or(*n);
                        (*n..=end).contains(&i32::from(f.dst_port))
                    }
                    Some(IntOrString::String(name)) => dst
                        .and_then(|d| d.named_ports.get(name))
                        .is_some_and(|np| np.port == f.dst_port && np.protocol == f.protocol),
                }
        })
    }

    fn peers_ok(
        peers: &Option<Vec<NetworkPolicyPeer>>,
        policy_ns: &str,
        addr: IpAddr,
        ep: Option<&Endpoint>,
        inv: &Inventory,
    ) -> bool {
        let Some(peers) = peers.as_ref().filter(|p| !p.is_empty()) else {
            return true;
        };
        peers.iter().any(|p| {
            if let Some(b) = &p.ip_block {
                let c = network_of(parse_cidr(&b.cidr).expect("valid"));
                return c.contains(addr)
                    && !b
                        .except
                        .iter()
                        .flatten()
                        .any(|x| parse_cidr(x).expect("valid").contains(addr));
            }
            let Some(ep) = ep else { return false };
            let ns_ok = match &p.namespace_selector {
                None => ep.namespace == policy_ns,
                Some(s) => sel(s, &inv.namespace_labels(&ep.namespace)),
            };
            ns_ok && p.pod_selector.as_ref().is_none_or(|s| sel(s, &ep.labels))
        })
    }

    pub fn allowed(policies: &[NetworkPolicy], inv: &Inventory, f: &Flow) -> bool {
        let pod = |a: IpAddr| inv.endpoints.values().find(|e| e.addresses.contains(&a));
        let (src, dst) = (pod(f.src), pod(f.dst));
        let egress_ok = src.is_none_or(|s| {
            let applying: Vec<_> = policies
                .iter()
                .filter(|p| {
                    p.namespace() == s.namespace
                        && sel(&p.spec.pod_selector, &s.labels)
                        && p.policy_types().1
                })
                .collect();
            applying.is_empty()
                || applying.iter().any(|p| {
                    p.spec.egress.iter().flatten().any(|r| {
                        ports_ok(&r.ports, f, dst)
                            && peers_ok(&r.to, p.namespace(), f.dst, dst, inv)
                    })
                })
        });
        let ingress_ok = dst.is_none_or(|d| {
            let applying: Vec<_> = policies
                .iter()
                .filter(|p| {
                    p.namespace() == d.namespace
                        && sel(&p.spec.pod_selector, &d.labels)
                        && p.policy_types().0
                })
                .collect();
            applying.is_empty()
                || applying.iter().any(|p| {
                    p.spec.ingress.iter().flatten().any(|r| {
                        ports_ok(&r.ports, f, dst)
                            && peers_ok(&r.from, p.namespace(), f.src, src, inv)
                    })
                })
        });
        egress_ok && ingress_ok
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Differential: the normalised, indexed evaluator equals the naive reading of the API.
    #[test]
    fn evaluator_equals_naive_reading(inv in world(), ps in vec(policy(), 0..6)) {
        // Unique names: the evaluator keeps one object per namespace/name, as the API does.
        let ps: Vec<NetworkPolicy> = ps
            .into_iter()
            .enumerate()
            .map(|(i, mut p)| {
                p.metadata.name = format!("p{i}");
                p
            })
            .collect();
        let e = evaluator(&ps, &inv);
        for f in flows(&inv) {
            let want = naive::allowed(&ps, &inv, &f);
            prop_assert_eq!(e.verdict(&f) == cnet_policy::Verdict::Allow, want, "{}", e.decide(&f));
        }
    }
}
