//! DEL's teardown modes through the `cnet` binary in a virtual node: *deferred* (default) makes
//! the pod unreachable and releases everything before DEL returns and leaves the veth pair to a
//! detached reaper; a retired pair nobody reaped is deleted by the next ADD of the same
//! attachment that needs its name, by a repeated DEL and by GC; `"teardown": "sync"` deletes
//! the pair inside DEL.
#![allow(clippy::unwrap_used)]

mod cnet_lab;

use cnet_lab::*;
use cnet_testsupport::{NetNs, require_priv};
use serde_json::json;

/// Retire an attachment without starting a reaper (what a DEL killed after its first step
/// leaves behind).
fn retire_only(lab: &Lab, cid: &str) -> String {
    let node = cnet_route::Node::open(lab.node.ns.path()).unwrap();
    let spec = cnet_route::EndpointSpec::new(cid, "eth0", "", Vec::new());
    cnet_route::retire(&node, &spec).unwrap().unwrap()
}

fn pod_links(pod: &NetNs) -> String {
    pod.run(&["ip", "-o", "link", "show"])
}

fn deferred_del_is_unreachable_at_once(mode: &str) {
    let lab = Lab::new(mode);
    let (p1, p2) = (lab.node.pod(), lab.node.pod());
    lab.add("t1", &p1).ok();
    let r2 = lab.add("t2", &p2).ok();
    let ip2 = result_ips(&r2);
    let echo = p2.tcp_echo();
    assert!(
        p1.tcp_ok(ip2[0], echo.port()),
        "{mode}: reachable before DEL"
    );
    lab.del("t2", Some(&p2)).ok();
    // Right after DEL returned, whether or not the reaper has run: no attached host end,
    // no route through any cnet link, no lease or record, and the old pod is unreachable.
    assert_eq!(lab.host_links().len(), 1, "{mode}: only t1 attached");
    for fam in ["-4", "-6"] {
        let routes = lab.node.ns.run(&["ip", fam, "route", "show"]);
        for ip in &ip2 {
            assert!(
                !routes
                    .lines()
                    .any(|l| l.starts_with(&format!("{ip} ")) && l.contains("dev cnet")),
                "{mode}: route to {ip} left: {routes}"
            );
        }
    }
    assert_eq!(lab.endpoints(), 1);
    assert_eq!(lab.leases().len(), 1, "{mode}: only t1's lease");
    assert!(
        !p1.tcp_ok(ip2[0], echo.port()),
        "{mode}: reachable after DEL"
    );
    drop(echo);
    // The reaper deletes the pair: the pod's interface goes too.
    lab.wait_reaped();
    assert!(!pod_links(&p2).contains("eth0"), "{mode}: pod end left");
    lab.del("t1", Some(&p1)).ok();
    lab.assert_clean();
}

#[test]
fn transparent_deferred_del_is_unreachable_at_once() {
    require_priv!();
    deferred_del_is_unreachable_at_once("transparent");
}

#[test]
fn bridge_deferred_del_is_unreachable_at_once() {
    require_priv!();
    deferred_del_is_unreachable_at_once("bridge");
}

#[test]
fn add_in_the_same_netns_deletes_an_unreaped_pair() {
    require_priv!();
    let lab = Lab::new("transparent");
    let (p1, p2) = (lab.node.pod(), lab.node.pod());
    lab.add("again", &p1).ok();
    let r2 = lab.add("peer", &p2).ok();
    // A DEL that retired the pair and was killed before anything else: the record and lease
    // are still there, the pod end still holds its name.
    let retired = retire_only(&lab, "again");
    assert_eq!(lab.retired_links(), vec![retired.clone()]);
    assert!(pod_links(&p1).contains("eth0"));
    // DEL again completes the teardown (and starts a reaper for the old pair).
    lab.del("again", Some(&p1)).ok();
    assert_eq!(lab.endpoints(), 1);
    // A new attachment of the same container and ifname, in the same netns, while a retired
    // pair is (possibly still) there: ADD deletes it and succeeds.
    lab.add("again", &p1).ok();
    retire_only(&lab, "again");
    lab.call(
        "DEL",
        "again",
        Some(&p1.path()),
        &lab.conf_with(&json!({"teardown": "sync"})),
    )
    .ok();
    let r1 = lab.add("again", &p1).ok();
    let echo = p2.tcp_echo();
    assert!(p1.tcp_ok(result_ips(&r2)[0], echo.port()));
    drop(echo);
    let echo = p1.tcp_echo();
    assert!(p2.tcp_ok(result_ips(&r1)[0], echo.port()));
    drop(echo);
    lab.del("again", Some(&p1)).ok();
    lab.del("peer", Some(&p2)).ok();
    lab.assert_clean();
}

#[test]
fn gc_reaps_retired_pairs() {
    require_priv!();
    let lab = Lab::new("bridge");
    let (p1, p2) = (lab.node.pod(), lab.node.pod());
    lab.add("keep", &p1).ok();
    lab.add("stale", &p2).ok();
    retire_only(&lab, "stale");
    lab.gc(&["keep"]).ok();
    assert_eq!(lab.retired_links(), Vec::<String>::new());
    assert_eq!(lab.host_links().len(), 1);
    assert_eq!(lab.endpoints(), 1);
    assert!(!pod_links(&p2).contains("eth0"));
    lab.del("keep", Some(&p1)).ok();
    lab.assert_clean();
}

#[test]
fn sync_teardown_deletes_the_pair_inside_del() {
    require_priv!();
    let lab = Lab::new("transparent");
    let pod = lab.node.pod();
    lab.add("s1", &pod).ok();
    lab.call(
        "DEL",
        "s1",
        Some(&pod.path()),
        &lab.conf_with(&json!({"teardown": "sync"})),
    )
    .ok();
    // No waiting: nothing of the pair is left when DEL returns.
    assert_eq!(lab.host_links(), Vec::<String>::new());
    assert_eq!(lab.retired_links(), Vec::<String>::new());
    assert!(!pod_links(&pod).contains("eth0"));
    lab.assert_clean();
    // A bad teardown value is a config error, and changes nothing.
    lab.add("s2", &pod).ok();
    let out = lab.call(
        "DEL",
        "s2",
        Some(&pod.path()),
        &lab.conf_with(&json!({"teardown": "later"})),
    );
    assert_eq!(out.err_code(), 7);
    assert_eq!(lab.host_links().len(), 1);
    lab.del("s2", Some(&pod)).ok();
    lab.assert_clean();
}
