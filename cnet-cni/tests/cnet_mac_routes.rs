//! `runtimeConfig.mac` (the `mac` capability) on the pod interface and the IPAM's routes
//! besides the default route in the pod, through the `cnet` binary in a virtual node, in both
//! modes; a bad MAC is error 7 and leaves nothing behind.
#![allow(clippy::unwrap_used)]

mod cnet_lab;

use cnet_lab::*;
use cnet_testsupport::require_priv;
use serde_json::{Value, json};

const MAC: &str = "02:11:22:33:44:55";

fn lab(mode: &str) -> Lab {
    let mut lab = Lab::with_ipam(
        mode,
        json!({"type": "cnet-ipam",
               "ranges": [[{"subnet": SUBNET4}], [{"subnet": SUBNET6}]],
               "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.96.0.0/12"},
                          {"dst": "fd96::/64"},
                          {"dst": "192.168.50.0/24", "gw": "10.60.0.254"},
                          {"dst": "10.97.0.0/16", "mtu": 1400, "advmss": 1360}]}),
    );
    lab.conf["capabilities"] = json!({"mac": true});
    lab
}

fn add_with_mac(lab: &Lab, cid: &str, pod: &cnet_testsupport::NetNs, mac: &str) -> Out {
    let conf = lab.conf_with(&json!({"runtimeConfig": {"mac": mac}}));
    lab.call("ADD", cid, Some(&pod.path()), &conf)
}

fn mac_and_routes(mode: &str) {
    let lab = lab(mode);
    let pod = lab.node.pod();
    let r = add_with_mac(&lab, "macpod", &pod, MAC).ok();
    // The MAC: in the result and on the pod's interface.
    assert_eq!(r["interfaces"][1]["mac"], MAC, "{r}");
    let link = pod.run(&["ip", "-o", "link", "show", "eth0"]);
    assert!(link.contains(MAC), "{mode}: {link}");
    // The routes: in the pod and in the result.
    let via4 = if mode == "bridge" {
        "10.60.0.1"
    } else {
        "169.254.1.1"
    };
    let routes4 = pod.run(&["ip", "-4", "route", "show"]);
    assert!(
        routes4.contains(&format!("10.96.0.0/12 via {via4} dev eth0")),
        "{mode}: {routes4}"
    );
    let off = if mode == "bridge" {
        "192.168.50.0/24 via 10.60.0.254 dev eth0"
    } else {
        "192.168.50.0/24 via 169.254.1.1 dev eth0"
    };
    assert!(routes4.contains(off), "{mode}: {routes4}");
    // Route metrics (CNI 1.1 `mtu`, `advmss`) reach the kernel and the result.
    let line = routes4
        .lines()
        .find(|l| l.starts_with("10.97.0.0/16 "))
        .unwrap_or_default();
    assert!(
        line.contains(&format!("via {via4} dev eth0"))
            && line.contains("mtu 1400")
            && line.contains("advmss 1360"),
        "{mode}: {routes4}"
    );
    let metric = r["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["dst"] == "10.97.0.0/16")
        .cloned()
        .unwrap();
    assert_eq!(
        (metric["mtu"].clone(), metric["advmss"].clone()),
        (json!(1400), json!(1360))
    );
    let routes6 = pod.run(&["ip", "-6", "route", "show"]);
    assert!(routes6.contains("fd96::/64 via"), "{mode}: {routes6}");
    let dsts: Vec<&str> = r["routes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["dst"].as_str())
        .collect();
    for d in ["0.0.0.0/0", "10.96.0.0/12", "fd96::/64", "192.168.50.0/24"] {
        assert!(dsts.contains(&d), "{mode}: result routes {dsts:?}");
    }
    // The route carries traffic: without its default route the pod still reaches a service
    // address of the node inside 10.96.0.0/12.
    lab.node
        .ns
        .run(&["ip", "addr", "add", "10.96.0.10/32", "dev", "lo"]);
    let echo = lab.node.ns.tcp_echo();
    pod.run(&["ip", "-4", "route", "del", "default"]);
    assert!(
        pod.tcp_ok("10.96.0.10".parse().unwrap(), echo.port()),
        "{mode}: traffic over the IPAM route"
    );
    pod.run(&[
        "ip", "-4", "route", "add", "default", "via", via4, "dev", "eth0",
    ]);
    // CHECK with the result as prevResult passes (the MAC is what was asked for).
    let check = lab.conf_with(&json!({"prevResult": r, "runtimeConfig": {"mac": MAC}}));
    lab.call("CHECK", "macpod", Some(&pod.path()), &check).ok();
    // CHECK sees a missing IPAM route, and a MAC other than prevResult's.
    pod.run(&["ip", "-4", "route", "del", "10.96.0.0/12"]);
    let out = lab.call("CHECK", "macpod", Some(&pod.path()), &check);
    assert_eq!(out.versioned_err_code(), 110, "{mode}: route gone");
    let msg = out.json()["msg"].as_str().unwrap().to_string();
    assert!(msg.contains("10.96.0.0/12"), "{mode}: {msg}");
    pod.run(&[
        "ip",
        "-4",
        "route",
        "add",
        "10.96.0.0/12",
        "via",
        via4,
        "dev",
        "eth0",
    ]);
    lab.call("CHECK", "macpod", Some(&pod.path()), &check).ok();
    pod.run(&["ip", "link", "set", "eth0", "address", "02:11:22:33:44:66"]);
    let out = lab.call("CHECK", "macpod", Some(&pod.path()), &check);
    assert_eq!(out.versioned_err_code(), 110, "{mode}: MAC changed");
    let msg = out.json()["msg"].as_str().unwrap().to_string();
    assert!(msg.contains("02:11:22:33:44:66"), "{mode}: {msg}");
    lab.del("macpod", Some(&pod)).ok();
    lab.assert_clean();
}

#[test]
fn mac_and_ipam_routes_transparent() {
    require_priv!();
    mac_and_routes("transparent");
}

#[test]
fn mac_and_ipam_routes_bridge() {
    require_priv!();
    mac_and_routes("bridge");
}

/// A MAC that is malformed, multicast or zero: error 7 naming `runtimeConfig.mac`, and no
/// lease, link, route or record left; a wrong JSON type is error 6.
#[test]
fn bad_mac_is_rejected_and_leaves_nothing() {
    require_priv!();
    let lab = lab("transparent");
    let pod = lab.node.pod();
    for bad in [
        "zz:11:22:33:44:55",
        "02:11:22:33:44",
        "01:00:5e:00:00:01",
        "00:00:00:00:00:00",
    ] {
        let out = add_with_mac(&lab, "bad", &pod, bad);
        assert_eq!(out.versioned_err_code(), 7, "{bad}");
        let v: Value = out.json();
        assert!(
            v["msg"].as_str().unwrap().contains("runtimeConfig.mac"),
            "{v}"
        );
        lab.assert_clean();
    }
    let conf = lab.conf_with(&json!({"runtimeConfig": {"mac": 5}}));
    let out = lab.call("ADD", "bad", Some(&pod.path()), &conf);
    assert_eq!(out.versioned_err_code(), 6);
    lab.assert_clean();
    assert!(!pod.run(&["ip", "-o", "link"]).contains("eth0"));
}
