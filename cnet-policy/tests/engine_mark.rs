//! The kernel mark of a saved engine state ([`Engine::kernel_mark`], `EngineState::kernel`):
//! a process rebuilt from a state whose mark the kernel still shows (same nftables
//! generation, network namespace and boot) trusts our table without reading it back; any
//! commit by anyone, another namespace or another boot makes it check the table again.
//! Privileged: every case works in network namespaces of its own.

#![allow(clippy::unwrap_used)]

mod common;

use cnet_policy::compile::Mode;
use cnet_policy::engine::{Engine, EngineState, KernelMark};
use cnet_policy::nft::{Programmer, SyncKind};
use cnet_policy::parse_yaml;
use cnet_testsupport::{NetNs, require_priv};
use common::engine::{listing, pod_endpoint};

fn add_pod(e: &mut Engine, idx: u8) {
    let ep = pod_endpoint(0, idx, idx % 2, 0, 53);
    e.upsert_endpoint(ep, Some(format!("cnet78{idx:02x}")));
}

/// An engine with two pods synced in `ns`, then one more pod added by a process rebuilt from
/// its state: that sync reads the table back and ends with a certain mark.
fn marked_state(ns: &NetNs) -> EngineState {
    let mut e = Engine::new(Mode::Transparent);
    e.upsert_namespace("ns0", Default::default());
    // Every pod of ns0 is isolated for ingress, so each one has its own rules.
    let deny = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: ns0}\nspec: {podSelector: {}, policyTypes: [Ingress]}\n";
    for np in parse_yaml(deny).unwrap() {
        e.apply_policy(&np).unwrap();
    }
    add_pod(&mut e, 0);
    add_pod(&mut e, 1);
    let first = ns.in_netns(|| e.sync()).unwrap();
    assert_eq!(first.kind, SyncKind::Full);
    assert!(
        e.kernel_mark().is_none(),
        "a full replacement leaves no certain mark"
    );
    let mut next = Engine::from_state(&e.state()).unwrap();
    add_pod(&mut next, 2);
    let r = ns.in_netns(|| next.sync()).unwrap();
    assert_eq!(r.kind, SyncKind::Incremental, "{r:?}");
    let state = next.state();
    let mark = state
        .kernel
        .clone()
        .expect("an incremental sync from a saved state is marked");
    let now = ns
        .in_netns(|| Programmer::new().unwrap().generation())
        .unwrap();
    assert_eq!(
        mark.generation, now,
        "the mark is the generation after our commit"
    );
    state
}

/// Whether `ns` holds the engine's table (`inet cnet`).
fn has_table(ns: &NetNs) -> bool {
    ns.exec(&["nft", "list", "table", "inet", "cnet"])
        .status
        .success()
}

/// The mark `ns` shows now.
fn mark_now(ns: &NetNs) -> KernelMark {
    let mut p = ns.in_netns(Programmer::new).unwrap();
    KernelMark {
        generation: ns.in_netns(|| p.generation()).unwrap(),
        netns_cookie: p.netns_cookie().expect("SO_NETNS_COOKIE"),
        boot_id: std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .unwrap()
            .trim()
            .to_string(),
    }
}

#[test]
fn an_unchanged_kernel_is_trusted_and_the_next_mark_follows_our_commit() {
    require_priv!();
    let ns = NetNs::new("cmk");
    let state = marked_state(&ns);
    let mark = state.kernel.clone().unwrap();
    let mut e = Engine::from_state(&state).unwrap();
    add_pod(&mut e, 3);
    let r = ns.in_netns(|| e.sync()).unwrap();
    assert_eq!(r.kind, SyncKind::Incremental, "{r:?}");
    let next = e.kernel_mark().expect("marked again").clone();
    assert_eq!(next.generation, mark.generation.wrapping_add(1));
    assert_eq!(next.netns_cookie, mark.netns_cookie);
    assert!(listing(&ns).contains("cnet7803"), "pod 3 is programmed");
    // Nothing to send: the mark stays.
    let mut same = Engine::from_state(&e.state()).unwrap();
    let r = ns.in_netns(|| same.sync()).unwrap();
    assert_eq!(r.kind, SyncKind::NoChange, "{r:?}");
    assert_eq!(same.kernel_mark(), Some(&next));
}

#[test]
fn a_commit_by_anyone_since_the_mark_makes_the_next_sync_check_and_repair() {
    require_priv!();
    let ns = NetNs::new("cmc");
    let state = marked_state(&ns);
    let want = listing(&ns);
    // Someone else deletes our table: the generation moves on.
    let table = state.table.clone();
    ns.run(&["nft", "delete", "table", "inet", &table]);
    let mut e = Engine::from_state(&state).unwrap();
    let r = ns.in_netns(|| e.sync()).unwrap();
    assert_eq!(
        r.kind,
        SyncKind::Full,
        "the missing table is found and replaced: {r:?}"
    );
    assert_eq!(listing(&ns), want);
    assert!(e.kernel_mark().is_none());
}

#[test]
fn a_mark_of_another_namespace_or_boot_is_not_trusted() {
    require_priv!();
    let a = NetNs::new("cma");
    let mut state = marked_state(&a);
    // A fresh namespace without our table, and a mark that matches it but for one field:
    // trusting it would send a diff against a table that does not exist (or nothing at
    // all); checking finds the table missing and replaces it whole.
    for field in 0..3 {
        let b = NetNs::new("cmb");
        let mut mark = mark_now(&b);
        match field {
            0 => mark.netns_cookie = mark.netns_cookie.wrapping_add(1),
            1 => mark.boot_id = "00000000-0000-0000-0000-000000000000".into(),
            _ => mark.generation = mark.generation.wrapping_add(1),
        }
        state.kernel = Some(mark);
        let mut e = Engine::from_state(&state).unwrap();
        let r = b.in_netns(|| e.sync()).unwrap();
        assert_eq!(r.kind, SyncKind::Full, "field {field}: {r:?}");
        assert!(has_table(&b), "field {field}");
    }
    // The control: with all three right, the same state is trusted, so nothing is sent to
    // the empty namespace (which is why the mark must name the namespace and the boot).
    let b = NetNs::new("cmb");
    state.kernel = Some(mark_now(&b));
    let mut e = Engine::from_state(&state).unwrap();
    let r = b.in_netns(|| e.sync()).unwrap();
    assert_eq!(r.kind, SyncKind::NoChange, "{r:?}");
    assert!(!has_table(&b));
}
