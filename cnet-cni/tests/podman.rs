//! The `cnet` plugin under a real runtime: Podman 4.3 (CNI backend) runs busybox containers on
//! a conflist whose first plugin is `cnet`, chained with the reference `portmap` and `tuning`,
//! inside a virtual node. Lifecycle (run, exec, restart, rm), port mappings from outside the
//! node, and NetworkPolicy between containers through `cnetctl`, in both modes.
#![allow(clippy::unwrap_used)]

mod podman_lab;

use cnet_testsupport::require_priv;
use podman_lab::*;
use serde_json::Value;
use std::net::IpAddr;

fn endpoints(lab: &PodmanLab) -> Vec<Value> {
    lab.state()["endpoints"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn record<'a>(eps: &'a [Value], name: &str) -> &'a Value {
    eps.iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no endpoint {name} in {eps:?}"))
}

fn in_subnet(ip: IpAddr) -> bool {
    let net: ipnetwork::IpNetwork = SUBNET.parse().unwrap();
    net.contains(ip)
}

fn lifecycle(mode: &str) {
    let conf = conflist("pmnet", mode, "cni");
    let mut lab = PodmanLab::new(&conf);
    let node: IpAddr = lab.node.addr4.into();
    lab.run("a", "", "sleep 3600");
    lab.server("b", "-p 8080:80");
    let (a, b) = (lab.ip("a"), lab.ip("b"));
    assert!(in_subnet(a) && in_subnet(b) && a != b, "{a} {b}");

    // Addresses come from cnet-ipam; the node state knows both containers by name.
    let mut leases = lab.leases(&conf["plugins"][0]["ipam"]);
    leases.sort();
    let mut want = vec![a.to_string(), b.to_string()];
    want.sort();
    assert_eq!(leases, want);
    let eps = endpoints(&lab);
    assert_eq!(eps.len(), 2);
    for (n, ip) in [("a", a), ("b", b)] {
        let r = record(&eps, n);
        assert_eq!(r["phase"], "ready");
        assert_eq!(r["labels"]["cnet.io/name"], n);
        assert_eq!(r["labels"]["cnet.io/network"], "pmnet");
        assert!(
            r["addresses"][0]
                .as_str()
                .unwrap()
                .starts_with(&ip.to_string())
        );
    }

    // Containers reach each other and the node; the node reaches them.
    assert_eq!(lab.tcp_from("a", b, 80), "hi-b");
    assert!(lab.ping_from("a", node));
    assert!(lab.ping_from("b", a));
    assert!(lab.node.ns.ping(&a.to_string()));
    assert_eq!(lab.tcp_from_node(b, 80), "hi-b");

    // portmap: node address : host port, from outside the node, reaches b.
    assert_eq!(nc(&lab.underlay.ns, node, 8080), "hi-b");
    // tuning ran in the container's netns.
    assert_eq!(
        lab.exec("a", "cat /proc/sys/net/ipv4/conf/eth0/arp_notify")
            .stdout
            .trim(),
        "1"
    );

    // Restart: a new netns, a new attachment, a working network again.
    lab.sh.run("podman restart -t 0 a");
    let a2 = lab.ip("a");
    assert!(in_subnet(a2));
    assert!(lab.ping_from("a", node));
    assert_eq!(lab.tcp_from("a", b, 80), "hi-b");
    assert_eq!(endpoints(&lab).len(), 2, "one record per container");
    lab.sh.run("podman stop -t 0 b && podman start b");
    let b2 = lab.ip("b");
    assert_eq!(lab.tcp_from("a", b2, 80), "hi-b");
    assert_eq!(nc(&lab.underlay.ns, node, 8080), "hi-b");
    assert_eq!(lab.leases(&conf["plugins"][0]["ipam"]).len(), 2);

    // rm -f removes every trace: links, routes, leases, records, policy endpoints, netns
    // bind mounts, port mappings.
    lab.sh.run("podman rm -f -t 0 a b");
    // (The bridge is the network's shared infrastructure and stays, as with `bridge`.)
    let left: Vec<String> = lab
        .node
        .snapshot()
        .lines()
        .filter(|l| !l.contains("cnetpm0"))
        .map(str::to_string)
        .collect();
    assert_eq!(left.join("\n"), lab.baseline, "node links/routes after rm");
    assert!(endpoints(&lab).is_empty());
    assert!(lab.leases(&conf["plugins"][0]["ipam"]).is_empty());
    assert_eq!(lab.sh.run("ls -A /run/netns").trim(), "");
    let nat = lab.sh.run("iptables-save -t nat");
    assert!(!nat.contains("8080"), "port mapping left: {nat}");
    let nft = lab.sh.run("nft list ruleset");
    for ip in [a, b, a2, b2] {
        assert!(!nft.contains(&ip.to_string()), "{ip} still in nft: {nft}");
    }
    let got = lab.cnetctl("get endpoints -o json");
    assert!(got.ok(), "{got:?}");
    let v: Value = serde_json::from_str(&got.stdout).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(0), "{v}");
}

#[test]
fn podman_transparent_lifecycle_portmap_tuning() {
    require_priv!();
    lifecycle("transparent");
}

#[test]
fn podman_bridge_lifecycle_portmap_tuning() {
    require_priv!();
    lifecycle("bridge");
}
