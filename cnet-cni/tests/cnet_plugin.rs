//! The `cnet` binary in a virtual node, called as a runtime calls it: ADD in both modes with
//! pod-to-pod and pod-to-node TCP, results in every version, CHECK, DEL (idempotent, missing
//! netns, no prevResult), GC, STATUS, delegated IPAM.
#![allow(clippy::unwrap_used)]

mod cnet_lab;

use cnet_lab::*;
use cnet_testsupport::require_priv;
use serde_json::json;

fn add_check_del_with_traffic(mode: &str) {
    let lab = Lab::new(mode);
    let (p1, p2) = (lab.node.pod(), lab.node.pod());
    let r1 = lab.add("pod1", &p1).ok();
    let r2 = lab.add("pod2", &p2).ok();
    let (ip1, ip2) = (result_ips(&r1), result_ips(&r2));
    assert_eq!(ip1.len(), 2, "{r1}");
    assert_ne!(ip1, ip2);
    assert_eq!(r1["interfaces"][1]["name"], "eth0");
    assert_eq!(
        r1["interfaces"][1]["sandbox"],
        p1.path().display().to_string()
    );
    assert_eq!(r1["ips"][0]["interface"], 1);
    // pod -> pod over IPv4 and IPv6, pod -> node.
    let echo = p2.tcp_echo();
    assert!(p1.tcp_ok(ip2[0], echo.port()), "{mode}: v4 pod to pod");
    assert!(p1.tcp_ok(ip2[1], echo.port()), "{mode}: v6 pod to pod");
    let node_echo = lab.node.ns.tcp_echo();
    assert!(p1.tcp_ok(lab.node.addr4.into(), node_echo.port()));
    // CHECK with the result as prevResult.
    let check = lab.conf_with(&json!({"prevResult": r1}));
    lab.call("CHECK", "pod1", Some(&p1.path()), &check).ok();
    // A second ADD of the same attachment is refused and changes nothing.
    assert_eq!(lab.add("pod1", &p1).versioned_err_code(), 101);
    lab.call("CHECK", "pod1", Some(&p1.path()), &check).ok();
    // Break the pod's default route: CHECK reports it.
    p1.run(&["ip", "route", "del", "default"]);
    assert_eq!(
        lab.call("CHECK", "pod1", Some(&p1.path()), &check)
            .versioned_err_code(),
        110
    );
    // DEL both; twice; without netns; the node is as before.
    lab.del("pod1", Some(&p1)).ok();
    lab.del("pod1", Some(&p1)).ok();
    lab.del("pod2", None).ok();
    drop(echo);
    lab.assert_clean();
    // CHECK of a deleted attachment fails.
    assert_eq!(
        lab.call("CHECK", "pod1", Some(&p1.path()), &check)
            .versioned_err_code(),
        111
    );
}

#[test]
fn transparent_mode_add_check_del_with_traffic() {
    require_priv!();
    add_check_del_with_traffic("transparent");
}

#[test]
fn bridge_mode_add_check_del_with_traffic() {
    require_priv!();
    add_check_del_with_traffic("bridge");
}

#[test]
fn results_in_every_version() {
    require_priv!();
    let lab = Lab::new("transparent");
    for (i, v) in ["0.2.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
        .iter()
        .enumerate()
    {
        let pod = lab.node.pod();
        let cid = format!("ver{i}");
        let out = lab.call(
            "ADD",
            &cid,
            Some(&pod.path()),
            &lab.conf_with(&json!({"cniVersion": v})),
        );
        let r = out.ok();
        assert_eq!(r["cniVersion"], *v);
        if *v == "0.2.0" {
            assert!(r["ip4"]["ip"].is_string(), "{r}");
            assert!(r["ip6"]["ip"].is_string(), "{r}");
        } else {
            assert_eq!(r["ips"].as_array().unwrap().len(), 2);
            let has_version = r["ips"][0].get("version").is_some();
            assert_eq!(has_version, *v != "1.0.0" && *v != "1.1.0", "{r}");
        }
        lab.call(
            "DEL",
            &cid,
            Some(&pod.path()),
            &lab.conf_with(&json!({"cniVersion": v})),
        )
        .ok();
    }
    lab.assert_clean();
}

#[test]
fn del_with_missing_netns_and_empty_prev_result() {
    require_priv!();
    let lab = Lab::new("transparent");
    let pod = lab.node.pod();
    let path = pod.path();
    lab.add("gone", &pod).ok();
    drop(pod); // the runtime deleted the netns first: the pod end died with it
    let conf = lab.conf_with(&json!({"prevResult": {}}));
    lab.call("DEL", "gone", Some(&path), &conf).ok();
    lab.call("DEL", "gone", None, &conf).ok();
    // DEL of something never added is success too.
    lab.call("DEL", "never", None, &conf).ok();
    lab.assert_clean();
}

#[test]
fn gc_removes_everything_not_valid() {
    require_priv!();
    let lab = Lab::new("bridge");
    let pods: Vec<_> = (0..4).map(|_| lab.node.pod()).collect();
    for (i, p) in pods.iter().enumerate() {
        lab.add(&format!("g{i}"), p).ok();
    }
    lab.gc(&["g1", "g3"]).ok();
    assert_eq!(lab.endpoints(), 2);
    assert_eq!(lab.leases().len(), 2);
    assert_eq!(lab.host_links().len(), 2);
    // The kept pods still talk.
    let echo = pods[3].tcp_echo();
    let st = lab.state();
    let ip3: std::net::IpAddr = st["endpoints"][1]["addresses"][0]
        .as_str()
        .unwrap()
        .parse::<ipnetwork::IpNetwork>()
        .unwrap()
        .ip();
    assert!(pods[1].tcp_ok(ip3, echo.port()));
    drop(echo);
    lab.gc(&[]).ok();
    lab.assert_clean();
}

#[test]
fn status_reports_exhaustion_and_unusable_state() {
    require_priv!();
    let lab = Lab::with_ipam(
        "transparent",
        json!({"type": "cnet-ipam", "ranges": [[{"subnet": "10.60.0.0/30"}]]}),
    );
    let status = |lab: &Lab| {
        run_plugin(
            Some(&lab.node.ns),
            &cnet_bin(),
            &[("CNI_COMMAND", "STATUS".to_string())],
            &lab.conf_with(&json!({})),
        )
    };
    status(&lab).ok();
    let pod = lab.node.pod();
    lab.add("only", &pod).ok();
    assert_eq!(status(&lab).versioned_err_code(), 50);
    // The pool is full: ADD fails with 50 and leaves nothing of its own behind.
    let other = lab.node.pod();
    assert_eq!(lab.add("second", &other).versioned_err_code(), 50);
    assert_eq!(lab.endpoints(), 1);
    lab.del("only", Some(&pod)).ok();
    status(&lab).ok();
    // A node state that does not decode: STATUS 50, ADD refuses (120) and changes nothing.
    std::fs::write(lab.dir.path().join("state/labnet/state.json"), b"{torn").unwrap();
    assert_eq!(status(&lab).versioned_err_code(), 50);
    assert_eq!(lab.add("x", &other).versioned_err_code(), 120);
    assert!(lab.host_links().is_empty());
    assert!(lab.leases().is_empty());
}

#[test]
fn delegated_host_local_ipam() {
    require_priv!();
    let lab = Lab::with_ipam(
        "transparent",
        json!({"type": "host-local", "ranges": [[{"subnet": SUBNET4}]]}),
    );
    // Debian's host-local speaks CNI up to 1.0.0.
    let mut lab = lab;
    lab.conf["cniVersion"] = json!("1.0.0");
    let (p1, p2) = (lab.node.pod(), lab.node.pod());
    let r1 = lab.add("h1", &p1).ok();
    let r2 = lab.add("h2", &p2).ok();
    let echo = p2.tcp_echo();
    assert!(p1.tcp_ok(result_ips(&r2)[0], echo.port()));
    let check = lab.conf_with(&json!({"prevResult": r1}));
    lab.call("CHECK", "h1", Some(&p1.path()), &check).ok();
    lab.del("h1", Some(&p1)).ok();
    lab.del("h2", Some(&p2)).ok();
    assert!(lab.host_links().is_empty());
    assert_eq!(lab.endpoints(), 0);
    // host-local's files: only its lock and last-reserved markers remain.
    let dir = lab.dir.path().join("ipam/labnet");
    let leases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("10."))
        .collect();
    assert!(leases.is_empty(), "{leases:?}");
}

#[test]
fn labels_and_identity_are_recorded() {
    require_priv!();
    let lab = Lab::new("transparent");
    let pod = lab.node.pod();
    let mut env = lab.env("ADD", "k1", Some(&pod.path()));
    env.push((
        "CNI_ARGS",
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web-0".into(),
    ));
    let conf = lab.conf_with(&json!({
        "args": {"cni": {"labels": [{"key": "app", "value": "web"}]}},
        "runtimeConfig": {"labels": {"tier": "front"}}
    }));
    run_plugin(Some(&lab.node.ns), &cnet_bin(), &env, &conf).ok();
    let st = lab.state();
    let e = &st["endpoints"][0];
    assert_eq!(e["namespace"], "prod");
    assert_eq!(e["name"], "web-0");
    assert_eq!(e["labels"]["app"], "web");
    assert_eq!(e["labels"]["tier"], "front");
    assert_eq!(e["labels"]["cnet.io/name"], "web-0");
    assert_eq!(e["labels"]["cnet.io/namespace"], "prod");
    assert_eq!(e["phase"], "ready");
    lab.del("k1", Some(&pod)).ok();
}
