//! The engine's incremental path (structure + per-endpoint membership) against the compiler:
//! after any random sequence of pod, label, namespace, node and policy changes, the engine's
//! desired ruleset equals a fresh `compile()` of the final state (pure, many cases); and,
//! driven through `sync()` in a network namespace after every change, pod changes are
//! element-only incremental batches and the programmed model and the kernel's listing equal
//! a fresh full program of the final state (privileged).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use cnet_policy::compile::{CompileOptions, Mode, compile};
use cnet_policy::engine::Engine;
use cnet_policy::nft::SyncKind;
use cnet_policy::{Endpoint, EndpointId, Node, parse_yaml};
use cnet_testsupport::NetNs;
use common::engine::{listing, network_policy_id, ns_name, pod_endpoint};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Add or relabel a pod (`remote`: on another node; `pending`: fail closed; `fams`:
    /// 0 IPv4 only, 1 IPv6 only, 2 dual-stack, so the first address of a family appears and
    /// the last one goes, which changes the structure).
    Pod {
        ns: u8,
        idx: u8,
        app: u8,
        tier: u8,
        remote: bool,
        pending: bool,
        port: u16,
        fams: u8,
    },
    /// A host-network pod on a node (feeds node selectors).
    HostPod {
        idx: u8,
        zone: u8,
    },
    RemovePod {
        ns: u8,
        idx: u8,
    },
    Namespace {
        ns: u8,
        team: u8,
    },
    Node {
        zone: u8,
    },
    Policy {
        ns: u8,
        name: u8,
        app: u8,
        peer_app: u8,
        shape: u8,
        egress: bool,
    },
    DeletePolicy {
        ns: u8,
        name: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3u8, 0..10u8, 0..4u8, 0..2u8, prop::bool::weighted(0.2), prop::bool::weighted(0.15), 53..56u16, 0..3u8)
            .prop_map(|(ns, idx, app, tier, remote, pending, port, fams)| Op::Pod { ns, idx, app, tier, remote, pending, port, fams }),
        1 => (0..2u8, 0..2u8).prop_map(|(idx, zone)| Op::HostPod { idx, zone }),
        3 => (0..3u8, 0..10u8).prop_map(|(ns, idx)| Op::RemovePod { ns, idx }),
        1 => (0..3u8, 0..2u8).prop_map(|(ns, team)| Op::Namespace { ns, team }),
        1 => (0..2u8).prop_map(|zone| Op::Node { zone }),
        2 => (0..3u8, 0..3u8, 0..4u8, 0..4u8, 0..5u8, any::<bool>())
            .prop_map(|(ns, name, app, peer_app, shape, egress)| Op::Policy { ns, name, app, peer_app, shape, egress }),
        1 => (0..3u8, 0..3u8).prop_map(|(ns, name)| Op::DeletePolicy { ns, name }),
    ]
}

fn policy_yaml(ns: u8, name: u8, app: u8, peer_app: u8, shape: u8, egress: bool) -> String {
    let (dir, peer, kind) = if egress {
        ("egress", "to", "Egress")
    } else {
        ("ingress", "from", "Ingress")
    };
    let subject = if shape == 4 {
        "{}".to_string()
    } else {
        format!("{{matchLabels: {{app: a{app}}}}}")
    };
    let peers = match shape {
        0 => format!(
            "[{{namespaceSelector: {{matchLabels: {{team: t1}}}}, podSelector: {{matchLabels: {{app: a{peer_app}}}}}}}]"
        ),
        1 => format!(
            "[{{podSelector: {{matchExpressions: [{{key: tier, operator: In, values: [t{}]}}]}}}}]",
            peer_app % 2
        ),
        2 => "[{ipBlock: {cidr: 10.77.0.0/16, except: [10.77.1.0/24]}}]".to_string(),
        3 => format!(
            "[{{podSelector: {{matchLabels: {{app: a{peer_app}, tier: t1}}}}}}, {{namespaceSelector: {{}}}}]"
        ),
        _ => "[{podSelector: {}}]".to_string(),
    };
    let ports = match shape {
        0 => "\n    ports: [{port: dns, protocol: UDP}]",
        1 => "\n    ports: [{port: 80}, {port: dns}]",
        _ => "",
    };
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {{name: p{name}, namespace: {ns}}}\n\
         spec:\n  podSelector: {subject}\n  policyTypes: [{kind}]\n  {dir}:\n  - {peer}: {peers}{ports}\n",
        ns = ns_name(ns),
    )
}

fn apply(e: &mut Engine, op: &Op) {
    match *op {
        Op::Pod {
            ns,
            idx,
            app,
            tier,
            remote,
            pending,
            port,
            fams,
        } => {
            let mut ep = pod_endpoint(ns, idx, app, tier, port);
            match fams {
                0 => ep.addresses.retain(|a| a.is_ipv4()),
                1 => ep.addresses.retain(|a| a.is_ipv6()),
                _ => {}
            }
            ep.node = Some(if remote {
                "other".into()
            } else {
                "here".into()
            });
            let ifname = (!remote).then(|| format!("cnet77{ns:02x}{idx:02x}00"));
            if pending {
                e.upsert_pending_endpoint(ep, ifname);
            } else {
                e.upsert_endpoint(ep, ifname);
            }
        }
        Op::HostPod { idx, zone } => {
            let mut ep = Endpoint::new(
                "kube-system",
                &format!("h{idx}"),
                BTreeMap::new(),
                vec![format!("10.78.0.{}", idx + 2).parse().unwrap()],
            );
            ep.host_network = true;
            ep.node = Some(format!("n{zone}"));
            e.upsert_endpoint(ep, None);
        }
        Op::RemovePod { ns, idx } => {
            e.remove_endpoint(&EndpointId::new(ns_name(ns), format!("p{idx}")));
        }
        Op::Namespace { ns, team } => {
            e.upsert_namespace(
                &ns_name(ns),
                BTreeMap::from([("team".to_string(), format!("t{team}"))]),
            );
        }
        Op::Node { zone } => e.upsert_node(Node {
            name: format!("n{zone}"),
            labels: BTreeMap::from([("zone".to_string(), format!("z{zone}"))]),
            addresses: vec![format!("10.79.0.{}", zone + 2).parse().unwrap()],
        }),
        Op::Policy {
            ns,
            name,
            app,
            peer_app,
            shape,
            egress,
        } => {
            for np in parse_yaml(&policy_yaml(ns, name, app, peer_app, shape, egress)).unwrap() {
                e.apply_policy(&np).unwrap();
            }
        }
        Op::DeletePolicy { ns, name } => {
            e.delete_policy(&network_policy_id(ns, name));
        }
    }
}

fn engine(bridge: bool) -> Engine {
    let mode = if bridge {
        Mode::Bridge
    } else {
        Mode::Transparent
    };
    let mut opts = CompileOptions::new(mode);
    opts.node = Some("here".into());
    Engine::with_options(opts)
}

fn full_compile(e: &mut Engine) -> cnet_policy::nft::Ruleset {
    let set = e.policy_set().unwrap().clone();
    compile(&set, e.inventory(), e.attachments(), e.options()).unwrap()
}

fn is_pod_op(op: &Op) -> bool {
    matches!(op, Op::Pod { .. } | Op::RemovePod { .. })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Pure: the live ruleset equals a fresh compile after every step.
    #[test]
    fn live_state_equals_compile(ops in prop::collection::vec(op(), 1..40), bridge in any::<bool>()) {
        let mut e = engine(bridge);
        for (k, op) in ops.iter().enumerate() {
            apply(&mut e, op);
            // Bring the live state up to date only every other step, so several changes
            // accumulate between two refreshes.
            if k % 2 == 1 || k + 1 == ops.len() {
                let live = e.desired().unwrap();
                prop_assert_eq!(live, full_compile(&mut e), "after {:?}", op);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]

    /// Kernel: sync after every change; pod changes are element-only batches; the programmed
    /// model and the kernel equal a fresh full program of the final state.
    #[test]
    fn engine_path_programs_what_compile_says(ops in prop::collection::vec(op(), 1..30), bridge in any::<bool>()) {
        if !cnet_testsupport::privileged("engine_path_programs_what_compile_says") {
            return Ok(());
        }
        let inc_ns = NetNs::new("clive");
        let full_ns = NetNs::new("cfull");
        let mut e = engine(bridge);
        let mut synced = false;
        for op in &ops {
            apply(&mut e, op);
            let report = inc_ns.in_netns(|| e.sync()).unwrap();
            if synced && is_pod_op(op) {
                prop_assert!(report.kind != SyncKind::Full, "{:?}: {:?}", op, report);
            }
            synced = true;
        }
        let want = full_compile(&mut e);
        prop_assert_eq!(e.programmed(), Some(&want));
        let mut fresh = engine(bridge);
        for op in &ops {
            apply(&mut fresh, op);
        }
        full_ns.in_netns(|| fresh.sync()).unwrap();
        prop_assert_eq!(listing(&inc_ns), listing(&full_ns));
    }
}

/// Pure, one large node: the live build splits its work over two threads from 2,048
/// endpoints (`live.rs`), a size the random cases above never reach. 3,000 local and remote
/// pods in 30 namespaces with every policy shape, some pending: the live ruleset equals a
/// fresh compile after the whole build, and again after relabels and removals.
#[test]
fn large_node_live_build_equals_compile() {
    for bridge in [false, true] {
        let mut e = engine(bridge);
        let mut ops = Vec::new();
        for ns in 0..30u8 {
            ops.push(Op::Namespace { ns, team: ns % 3 });
            for name in 0..2u8 {
                ops.push(Op::Policy {
                    ns,
                    name,
                    app: ns % 4,
                    peer_app: (ns + name) % 4,
                    shape: (ns + name) % 4,
                    egress: name == 1,
                });
            }
            for idx in 0..100u8 {
                ops.push(Op::Pod {
                    ns,
                    idx,
                    app: idx % 4,
                    tier: idx % 3,
                    remote: idx % 10 == 9,
                    pending: idx % 17 == 5,
                    port: 5300 + u16::from(idx % 2),
                    fams: 2,
                });
            }
        }
        for op in &ops {
            apply(&mut e, op);
        }
        assert!(e.inventory().endpoints.len() >= 3000);
        let live = e.desired().unwrap();
        assert_eq!(
            live,
            full_compile(&mut e),
            "bridge={bridge}: after the build"
        );
        // Incremental changes on top of the large live state.
        for k in 0..60u8 {
            let op = if k % 3 == 0 {
                Op::RemovePod { ns: k % 30, idx: k }
            } else {
                Op::Pod {
                    ns: k % 30,
                    idx: k,
                    app: (k + 1) % 4,
                    tier: (k + 2) % 3,
                    remote: false,
                    pending: false,
                    port: 5301,
                    fams: 2,
                }
            };
            apply(&mut e, &op);
        }
        let live = e.desired().unwrap();
        assert_eq!(
            live,
            full_compile(&mut e),
            "bridge={bridge}: after the changes"
        );
    }
}
