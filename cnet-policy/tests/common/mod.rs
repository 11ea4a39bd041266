//! Pieces shared by the cnet-policy integration tests: the kernel lab harness (here) and the
//! engine property tests' model ([`engine`]). Each test uses only some of them.
#![allow(dead_code)]

pub mod engine;

use cnet_testsupport::NetNs;

/// A node namespace routing between two leaf namespaces over veth pairs.
///
/// `names` are the namespace prefixes (node, leaf 1, leaf 2). Leaf `i` (1 or 2) is wired by a
/// veth pair: `{nic}{i}` in the node with `{v4}.{i}.1/24`, `eth0` in the leaf with
/// `{v4}.{i}.2/24` and a default route via the node. With `v6`, the pair also carries
/// `fd00:{i}::1/64` / `fd00:{i}::2/64` (no DAD) with an IPv6 default route, and the node
/// forwards IPv6 too. Returns (node, leaf 1, leaf 2).
pub fn routed_pair(names: [&str; 3], nic: &str, v4: &str, v6: bool) -> (NetNs, NetNs, NetNs) {
    let node = NetNs::new(names[0]);
    let l1 = NetNs::new(names[1]);
    let l2 = NetNs::new(names[2]);
    node.sysctl("net.ipv4.ip_forward=1");
    if v6 {
        node.sysctl("net.ipv6.conf.all.forwarding=1");
    }
    for (i, leaf) in [(1, &l1), (2, &l2)] {
        let host = format!("{nic}{i}");
        node.run(&[
            "ip",
            "link",
            "add",
            &host,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            leaf.name(),
        ]);
        node.run(&["ip", "addr", "add", &format!("{v4}.{i}.1/24"), "dev", &host]);
        if v6 {
            let a = format!("fd00:{i}::1/64");
            node.run(&["ip", "addr", "add", &a, "dev", &host, "nodad"]);
        }
        node.run(&["ip", "link", "set", &host, "up"]);
        leaf.run(&[
            "ip",
            "addr",
            "add",
            &format!("{v4}.{i}.2/24"),
            "dev",
            "eth0",
        ]);
        if v6 {
            let a = format!("fd00:{i}::2/64");
            leaf.run(&["ip", "addr", "add", &a, "dev", "eth0", "nodad"]);
        }
        leaf.run(&["ip", "link", "set", "eth0", "up"]);
        leaf.run(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &format!("{v4}.{i}.1"),
        ]);
        if v6 {
            let gw = format!("fd00:{i}::1");
            leaf.run(&["ip", "-6", "route", "add", "default", "via", &gw]);
        }
    }
    (node, l1, l2)
}
