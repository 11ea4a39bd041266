//! Incremental = full: after a random sequence of endpoint, namespace and policy changes, each
//! followed by an incremental sync, the ruleset the kernel holds (read back with
//! `nft list table` inside the namespace) equals a fresh full compile of the final state
//! programmed into another namespace. Also: pod churn is element-only (except when it makes
//! the first address of a family appear or the last one go: pods are IPv4-only, IPv6-only or
//! dual-stack, so those transitions are generated), and a flushed table is restored on the
//! next sync.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use cnet_policy::compile::Mode;
use cnet_policy::engine::Engine;
use cnet_policy::nft::{SyncKind, diff};
use cnet_policy::{EndpointId, parse_yaml};
use cnet_testsupport::{NetNs, require_priv};
use common::engine::{listing, network_policy_id, ns_name, pod_endpoint};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Pod {
        ns: u8,
        idx: u8,
        app: u8,
        tier: u8,
        /// 0: IPv4 only, 1: IPv6 only, 2: both.
        fams: u8,
    },
    RemovePod {
        ns: u8,
        idx: u8,
    },
    Namespace {
        ns: u8,
        team: u8,
    },
    Policy {
        ns: u8,
        name: u8,
        app: u8,
        peer_app: u8,
        port: u16,
        egress: bool,
    },
    DeletePolicy {
        ns: u8,
        name: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u8, 0..8u8, 0..3u8, 0..2u8, 0..3u8)
            .prop_map(|(ns, idx, app, tier, fams)| Op::Pod { ns, idx, app, tier, fams }),
        2 => (0..3u8, 0..8u8).prop_map(|(ns, idx)| Op::RemovePod { ns, idx }),
        1 => (0..3u8, 0..2u8).prop_map(|(ns, team)| Op::Namespace { ns, team }),
        2 => (0..3u8, 0..3u8, 0..3u8, 0..3u8, prop_oneof![Just(80u16), Just(0), Just(53)], any::<bool>())
            .prop_map(|(ns, name, app, peer_app, port, egress)| Op::Policy {
                ns, name, app, peer_app, port, egress
            }),
        1 => (0..3u8, 0..3u8).prop_map(|(ns, name)| Op::DeletePolicy { ns, name }),
    ]
}

fn policy_yaml(ns: u8, name: u8, app: u8, peer_app: u8, port: u16, egress: bool) -> String {
    let ports = if port == 0 {
        String::new()
    } else if port == 53 {
        "\n    ports: [{port: 53, protocol: UDP}, {port: dns}]".to_string()
    } else {
        format!("\n    ports: [{{port: {port}}}]")
    };
    let dir = if egress { "egress" } else { "ingress" };
    let peer = if egress { "to" } else { "from" };
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
         metadata: {{name: p{name}, namespace: {ns}}}\n\
         spec:\n  podSelector: {{matchLabels: {{app: a{app}}}}}\n  policyTypes: [{Dir}]\n  {dir}:\n  \
         - {peer}: [{{namespaceSelector: {{matchLabels: {{team: t1}}}}, podSelector: {{matchLabels: {{app: a{peer_app}}}}}}}, \
         {{ipBlock: {{cidr: 10.77.0.0/16, except: [10.77.1.0/24]}}}}]{ports}\n",
        ns = ns_name(ns),
        Dir = if egress { "Egress" } else { "Ingress" },
    )
}

fn apply(e: &mut Engine, op: &Op) {
    match *op {
        Op::Pod {
            ns,
            idx,
            app,
            tier,
            fams,
        } => {
            let mut ep = pod_endpoint(ns, idx, app, tier, 53 + u16::from(app));
            match fams {
                0 => ep.addresses.retain(|a| a.is_ipv4()),
                1 => ep.addresses.retain(|a| a.is_ipv6()),
                _ => {}
            }
            e.upsert_endpoint(ep, Some(format!("cnet77{ns:02x}{idx:02x}00")));
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
        Op::Policy {
            ns,
            name,
            app,
            peer_app,
            port,
            egress,
        } => {
            for np in parse_yaml(&policy_yaml(ns, name, app, peer_app, port, egress)).unwrap() {
                e.apply_policy(&np).unwrap();
            }
        }
        Op::DeletePolicy { ns, name } => {
            e.delete_policy(&network_policy_id(ns, name));
        }
    }
}

/// Whether some endpoint has an IPv4 / IPv6 address.
fn pod_families(e: &Engine) -> (bool, bool) {
    let addrs = || {
        e.inventory()
            .endpoints
            .values()
            .flat_map(|ep| &ep.addresses)
    };
    (addrs().any(|a| a.is_ipv4()), addrs().any(|a| a.is_ipv6()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn incremental_equals_full(ops in prop::collection::vec(op(), 1..25), bridge in any::<bool>()) {
        if !cnet_testsupport::privileged("incremental_equals_full") {
            return Ok(());
        }
        let mode = if bridge { Mode::Bridge } else { Mode::Transparent };
        let inc_ns = NetNs::new("cinc");
        let full_ns = NetNs::new("cful");
        let mut inc = Engine::new(mode);
        let mut first = true;
        for op in &ops {
            let before = inc.desired().unwrap();
            let fams_before = pod_families(&inc);
            apply(&mut inc, op);
            let after = inc.desired().unwrap();
            let report = inc_ns.in_netns(|| inc.sync()).unwrap();
            if matches!(op, Op::Pod { .. } | Op::RemovePod { .. })
                && pod_families(&inc) == fams_before
            {
                // Pod churn never touches rules or chains while the families stay.
                prop_assert!(diff(&before, &after).is_elements_only(), "{op:?}");
            }
            if !first {
                prop_assert!(report.kind != SyncKind::Full, "full replace after {:?}: {:?}", op, report);
            }
            first = false;
        }
        // A fresh engine with the final state, programmed whole.
        let mut fresh = Engine::new(mode);
        let st = inc.state();
        let rebuilt = Engine::from_state(&st).unwrap();
        prop_assert_eq!(rebuilt.state(), st.clone());
        for op in &ops { apply(&mut fresh, op); }
        prop_assert_eq!(fresh.desired().unwrap(), inc.desired().unwrap());
        full_ns.in_netns(|| fresh.sync()).unwrap();
        prop_assert_eq!(listing(&inc_ns), listing(&full_ns));
    }
}

#[test]
fn flushed_table_is_restored_and_saved_state_syncs_a_diff() {
    require_priv!();
    let ns = NetNs::new("crec");
    let mut e = Engine::new(Mode::Transparent);
    for op in [
        Op::Namespace { ns: 0, team: 1 },
        Op::Pod {
            ns: 0,
            idx: 0,
            app: 0,
            tier: 0,
            fams: 2,
        },
        Op::Pod {
            ns: 0,
            idx: 1,
            app: 1,
            tier: 0,
            fams: 2,
        },
        Op::Policy {
            ns: 0,
            name: 0,
            app: 0,
            peer_app: 1,
            port: 80,
            egress: false,
        },
    ] {
        apply(&mut e, &op);
    }
    let first = ns.in_netns(|| e.sync()).unwrap();
    assert_eq!(first.kind, SyncKind::Full);
    let want = listing(&ns);
    apply(
        &mut e,
        &Op::Pod {
            ns: 0,
            idx: 2,
            app: 0,
            tier: 1,
            fams: 2,
        },
    );
    let inc = ns.in_netns(|| e.sync()).unwrap();
    assert_eq!(inc.kind, SyncKind::Incremental);
    ns.run(&["nft", "flush", "ruleset"]);
    let restored = ns.in_netns(|| e.sync()).unwrap();
    assert!(restored.drift, "{restored:?}");
    let after = listing(&ns);
    assert!(after.contains("vmap @eg_dispatch"));
    assert_ne!(want, after, "pod 2 is in the restored table");
    // A one-shot process: rebuild from the saved state, add a pod, sync only the diff.
    let state = e.state();
    let mut again = Engine::from_state(&state).unwrap();
    apply(
        &mut again,
        &Op::Pod {
            ns: 0,
            idx: 3,
            app: 1,
            tier: 0,
            fams: 2,
        },
    );
    let r = ns.in_netns(|| again.sync()).unwrap();
    assert_eq!(r.kind, SyncKind::Incremental, "{r:?}");
    assert!(listing(&ns).contains("10.77.0.5"));
}
