//! Privileged tests on a virtual node: pods attached in bridge and transparent mode reach
//! each other, the node, and pods on another node through an underlay; detach, check and
//! failed attaches leave exactly what they should.

use std::net::IpAddr;

use cnet_route::{
    BridgeMode, Difference, EndpointSpec, Error, IntraNode, Node, Side, TransparentMode,
};
use cnet_testsupport::{NetNs, UPLINK, Underlay, VirtualNode, require_priv, unique_name};

#[derive(Clone, Copy, Debug)]
enum Fam {
    V4,
    V6,
    Dual,
}

/// Pod addresses for pod `host` in pod subnet number `net`.
fn addrs(fam: Fam, net: u8, host: u8) -> Vec<ipnetwork::IpNetwork> {
    let v4 = format!("10.{net}.0.{host}/24");
    let v6 = format!("fd00:{net}::{host}/64");
    let list = match fam {
        Fam::V4 => vec![v4],
        Fam::V6 => vec![v6],
        Fam::Dual => vec![v4, v6],
    };
    list.iter().map(|a| a.parse().expect("cidr")).collect()
}

fn cidrs(net: u8) -> [String; 2] {
    [format!("10.{net}.0.0/24"), format!("fd00:{net}::/64")]
}

fn spec(pod: &NetNs, addresses: Vec<ipnetwork::IpNetwork>) -> EndpointSpec {
    EndpointSpec::new(unique_name("ctr"), "eth0", pod.path(), addresses)
}

fn node(vn: &VirtualNode) -> Node {
    Node::open(vn.ns.path()).expect("open node netns")
}

fn bridge_mode() -> BridgeMode {
    BridgeMode::new(unique_name("cbr"))
}

fn ips(s: &EndpointSpec) -> Vec<IpAddr> {
    s.addresses.iter().map(|a| a.ip()).collect()
}

fn node_ips(vn: &VirtualNode, fam: Fam) -> Vec<IpAddr> {
    match fam {
        Fam::V4 => vec![vn.addr4.into()],
        Fam::V6 => vec![vn.addr6.into()],
        Fam::Dual => vec![vn.addr4.into(), vn.addr6.into()],
    }
}

/// Ping with a few tries (the first packet may wait for neighbour resolution); returns the
/// reply's TTL.
fn ping_ttl(from: &NetNs, to: IpAddr) -> Option<u32> {
    for _ in 0..3 {
        let out = from.exec(&["ping", "-c", "1", "-W", "2", &to.to_string()]);
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let ttl = text
                .split_whitespace()
                .find_map(|w| w.strip_prefix("ttl=").or_else(|| w.strip_prefix("hlim=")))
                .and_then(|v| v.parse().ok());
            return Some(ttl.unwrap_or(0));
        }
    }
    None
}

fn assert_ping(from: &NetNs, to: IpAddr, what: &str) -> u32 {
    ping_ttl(from, to).unwrap_or_else(|| panic!("{what}: no ping reply from {to}"))
}

fn assert_tcp(from: &NetNs, to_ns: &NetNs, to: IpAddr, what: &str) {
    let echo = to_ns.tcp_echo();
    assert!(
        from.tcp_ok(to, echo.port()),
        "{what}: TCP to {to}:{} failed",
        echo.port()
    );
}

/// Two pods on one node: pod↔pod, pod→node, node→pod by ICMP and TCP; then detach twice and
/// nothing is left.
fn same_node(mode: &dyn IntraNode, bridge: Option<&BridgeMode>, fam: Fam) {
    let [c4, c6] = cidrs(1);
    let (_ul, vn) = VirtualNode::single(&[&c4, &c6]);
    let n = node(&vn);
    let baseline = vn.snapshot();
    let (pa, pb) = (vn.pod(), vn.pod());
    let (sa, sb) = (spec(&pa, addrs(fam, 1, 10)), spec(&pb, addrs(fam, 1, 11)));
    let att_a = mode.attach(&n, &sa).expect("attach a");
    mode.attach(&n, &sb).expect("attach b");
    assert_eq!(mode.check(&n, &sa).expect("check a"), vec![]);
    assert_eq!(mode.check(&n, &sb).expect("check b"), vec![]);
    assert_eq!(att_a.mtu, 1500);
    assert!(
        pa.run(&["ip", "link", "show", "eth0"])
            .contains(&att_a.pod_mac.to_string())
    );
    // Only a transparent-mode host end of a pod with IPv6 has an IPv6 link-local address.
    let host_ll = vn
        .ns
        .run(&["ip", "-6", "addr", "show", "dev", &att_a.host_ifname]);
    let routes_v6 = bridge.is_none() && !matches!(fam, Fam::V4);
    assert_eq!(host_ll.contains("fe80::"), routes_v6, "{host_ll}");
    let sysctl = |ns: &NetNs, k: &str| ns.run(&["sysctl", "-n", k]).trim().to_string();
    if !matches!(fam, Fam::V4) {
        // No DAD anywhere on the pod's interface: nothing is left tentative.
        let a6 = pa.run(&["ip", "-6", "addr", "show", "dev", "eth0"]);
        assert!(!a6.contains("tentative"), "{a6}");
        assert_eq!(sysctl(&pa, "net.ipv6.conf.eth0.accept_dad"), "0");
        assert_eq!(sysctl(&pa, "net.ipv6.conf.eth0.accept_ra"), "0");
    }
    if !matches!(fam, Fam::V6) {
        assert_eq!(sysctl(&pa, "net.ipv4.conf.eth0.arp_notify"), "1");
    }

    for (a, b) in ips(&sa).into_iter().zip(ips(&sb)) {
        let ttl = assert_ping(&pa, b, "pod a -> pod b");
        // Transparent mode routes pod-to-pod through the node: one hop.
        let hops = if bridge.is_some() { 64 } else { 63 };
        assert_eq!(ttl, hops, "pod a -> pod b {b}: TTL shows the path");
        assert_ping(&pb, a, "pod b -> pod a");
        assert_ping(&vn.ns, a, "node -> pod a");
        assert_tcp(&pa, &pb, b, "pod a -> pod b");
        assert_tcp(&vn.ns, &pa, a, "node -> pod a");
    }
    for ip in node_ips(&vn, fam) {
        assert_ping(&pa, ip, "pod a -> node");
        assert_tcp(&pa, &vn.ns, ip, "pod a -> node");
    }

    for s in [&sa, &sb] {
        mode.detach(&n, s).expect("detach");
        mode.detach(&n, s).expect("detach again is success");
    }
    assert!(!pa.ok(&["ip", "link", "show", "eth0"]), "pod end removed");
    if let Some(b) = bridge {
        b.remove_bridge(&n).expect("remove bridge");
    }
    assert_eq!(vn.snapshot(), baseline, "node state after detach");
}

#[test]
fn bridge_v4() {
    require_priv!();
    let b = bridge_mode();
    same_node(&b, Some(&b), Fam::V4);
}

#[test]
fn bridge_v6() {
    require_priv!();
    let b = bridge_mode();
    same_node(&b, Some(&b), Fam::V6);
}

#[test]
fn bridge_dual_stack() {
    require_priv!();
    let b = bridge_mode();
    same_node(&b, Some(&b), Fam::Dual);
}

#[test]
fn transparent_v4() {
    require_priv!();
    same_node(&TransparentMode::new(), None, Fam::V4);
}

#[test]
fn transparent_v6() {
    require_priv!();
    same_node(&TransparentMode::new(), None, Fam::V6);
}

#[test]
fn transparent_dual_stack() {
    require_priv!();
    same_node(&TransparentMode::new(), None, Fam::Dual);
}

#[test]
fn bridge_pod_and_transparent_pod_reach_each_other() {
    require_priv!();
    let [b4, b6] = cidrs(1);
    let [t4, t6] = cidrs(2);
    let (_ul, vn) = VirtualNode::single(&[&b4, &b6, &t4, &t6]);
    let n = node(&vn);
    let baseline = vn.snapshot();
    let (bm, tm) = (bridge_mode(), TransparentMode::new());
    let (pb, pt) = (vn.pod(), vn.pod());
    let sb = spec(&pb, addrs(Fam::Dual, 1, 10));
    let st = spec(&pt, addrs(Fam::Dual, 2, 10));
    bm.attach(&n, &sb).expect("attach bridge pod");
    tm.attach(&n, &st).expect("attach transparent pod");
    for (b, t) in ips(&sb).into_iter().zip(ips(&st)) {
        assert_ping(&pb, t, "bridge pod -> transparent pod");
        assert_ping(&pt, b, "transparent pod -> bridge pod");
        assert_tcp(&pb, &pt, t, "bridge pod -> transparent pod");
        assert_tcp(&pt, &pb, b, "transparent pod -> bridge pod");
    }
    bm.detach(&n, &sb).expect("detach");
    tm.detach(&n, &st).expect("detach");
    bm.remove_bridge(&n).expect("remove bridge");
    assert_eq!(vn.snapshot(), baseline);
}

fn two_nodes(mode_a: &dyn IntraNode, mode_b: &dyn IntraNode, bridges: &[&BridgeMode]) {
    let ul = Underlay::new();
    let [a4, a6] = cidrs(1);
    let [b4, b6] = cidrs(2);
    let va = ul.add_node(&[&a4, &a6]);
    let vb = ul.add_node(&[&b4, &b6]);
    let (na, nb) = (node(&va), node(&vb));
    let (base_a, base_b) = (va.snapshot(), vb.snapshot());
    let (pa, pb) = (va.pod(), vb.pod());
    let sa = spec(&pa, addrs(Fam::Dual, 1, 10));
    let sb = spec(&pb, addrs(Fam::Dual, 2, 10));
    mode_a.attach(&na, &sa).expect("attach on node a");
    mode_b.attach(&nb, &sb).expect("attach on node b");
    for (a, b) in ips(&sa).into_iter().zip(ips(&sb)) {
        assert_ping(&pa, b, "pod on a -> pod on b");
        assert_ping(&pb, a, "pod on b -> pod on a");
        assert_tcp(&pa, &pb, b, "pod on a -> pod on b");
        assert_tcp(&pb, &pa, a, "pod on b -> pod on a");
    }
    mode_a.detach(&na, &sa).expect("detach a");
    mode_b.detach(&nb, &sb).expect("detach b");
    for b in bridges {
        b.remove_bridge(&na).expect("remove bridge a");
        b.remove_bridge(&nb).expect("remove bridge b");
    }
    assert_eq!(va.snapshot(), base_a);
    assert_eq!(vb.snapshot(), base_b);
}

#[test]
fn two_nodes_bridge() {
    require_priv!();
    let b = bridge_mode();
    two_nodes(&b, &b, &[&b]);
}

#[test]
fn two_nodes_transparent() {
    require_priv!();
    two_nodes(&TransparentMode::new(), &TransparentMode::new(), &[]);
}

#[test]
fn detach_after_pod_netns_deleted() {
    require_priv!();
    for bridged in [false, true] {
        let [c4, c6] = cidrs(1);
        let (_ul, vn) = VirtualNode::single(&[&c4, &c6]);
        let n = node(&vn);
        let baseline = vn.snapshot();
        let b = bridge_mode();
        let t = TransparentMode::new();
        let mode: &dyn IntraNode = if bridged { &b } else { &t };
        let pod = vn.pod();
        let s = spec(&pod, addrs(Fam::Dual, 1, 10));
        mode.attach(&n, &s).expect("attach");
        drop(pod);
        assert!(
            mode.check(&n, &s)
                .expect("check")
                .contains(&Difference::NetnsMissing {
                    path: s.netns.clone()
                })
        );
        mode.detach(&n, &s).expect("detach with the pod netns gone");
        mode.detach(&n, &s).expect("and again");
        if bridged {
            b.remove_bridge(&n).expect("remove bridge");
        }
        assert_eq!(vn.snapshot(), baseline);
    }
}

#[test]
fn attach_with_existing_names_fails_and_leaves_nothing() {
    require_priv!();
    let [c4, c6] = cidrs(1);
    let (_ul, vn) = VirtualNode::single(&[&c4, &c6]);
    let n = node(&vn);
    let baseline = vn.snapshot();
    let mode = TransparentMode::new();
    let pod = vn.pod();
    let s = spec(&pod, addrs(Fam::Dual, 1, 10));
    mode.attach(&n, &s).expect("attach");
    let attached = vn.snapshot();

    // Same container and ifname again: the host end exists.
    let err = mode.attach(&n, &s).expect_err("second attach");
    assert!(
        matches!(&err, Error::InterfaceExists { side: Side::Node, name } if *name == s.host_ifname()),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("interface \"{}\"", s.host_ifname()))
    );
    // Another container, same pod netns and ifname: the pod end exists.
    let mut other = s.clone();
    other.container_id = unique_name("ctr");
    let err = mode.attach(&n, &other).expect_err("clashing pod ifname");
    assert!(
        matches!(&err, Error::InterfaceExists { side: Side::Pod, name } if name == "eth0"),
        "{err}"
    );
    assert_eq!(vn.snapshot(), attached, "failed attaches changed nothing");
    assert_eq!(
        mode.check(&n, &s).expect("check"),
        vec![],
        "first attachment intact"
    );

    mode.detach(&n, &s).expect("detach");
    assert_eq!(vn.snapshot(), baseline);
}

#[test]
fn failure_half_way_undoes_the_attach() {
    require_priv!();
    let [c4, c6] = cidrs(1);
    let (_ul, vn) = VirtualNode::single(&[&c4, &c6]);
    let n = node(&vn);
    // Someone else already routes the pod's address: the node route cannot be added.
    vn.ns
        .run(&["ip", "route", "add", "10.1.0.10/32", "via", "10.255.1.1"]);
    let baseline = vn.snapshot();
    let pod = vn.pod();
    let s = spec(&pod, addrs(Fam::Dual, 1, 10));
    let err = TransparentMode::new()
        .attach(&n, &s)
        .expect_err("route clash");
    assert!(
        matches!(
            &err,
            Error::Route {
                side: Side::Node,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("10.1.0.10/32"), "{err}");
    assert_eq!(
        vn.snapshot(),
        baseline,
        "the veth pair and its routes are gone"
    );
    assert!(!pod.ok(&["ip", "link", "show", "eth0"]), "pod end gone");
}

#[test]
fn check_reports_what_someone_removed() {
    require_priv!();
    let [c4, c6] = cidrs(1);
    let (_ul, vn) = VirtualNode::single(&[&c4, &c6]);
    let n = node(&vn);
    let baseline = vn.snapshot();
    let mode = TransparentMode::new();
    let pod = vn.pod();
    let s = spec(&pod, addrs(Fam::Dual, 1, 10));
    let att = mode.attach(&n, &s).expect("attach");
    let host = att.host_ifname.clone();
    vn.ns
        .run(&["ip", "route", "del", "10.1.0.10/32", "dev", &host]);
    pod.run(&[
        "ip", "-6", "route", "del", "default", "via", "fe80::1", "dev", "eth0",
    ]);
    pod.run(&["ip", "link", "set", "eth0", "mtu", "1400"]);
    let diffs = mode.check(&n, &s).expect("check");
    assert!(
        diffs.contains(&Difference::RouteMissing {
            side: Side::Node,
            route: format!("10.1.0.10/32 dev {host} scope link")
        }),
        "{diffs:?}"
    );
    assert!(
        diffs.contains(&Difference::RouteMissing {
            side: Side::Pod,
            route: "default via fe80::1 dev eth0".into()
        }),
        "{diffs:?}"
    );
    assert!(
        diffs.contains(&Difference::MtuMismatch {
            side: Side::Pod,
            name: "eth0".into(),
            expected: 1500,
            actual: 1400
        }),
        "{diffs:?}"
    );
    assert_eq!(diffs.len(), 3, "{diffs:?}");
    mode.detach(&n, &s).expect("detach");
    assert_eq!(vn.snapshot(), baseline);
}

#[test]
fn mtu_comes_from_the_uplink_unless_given() {
    require_priv!();
    let [c4, c6] = cidrs(1);
    let (_ul, vn) = VirtualNode::single(&[&c4, &c6]);
    vn.ns.run(&["ip", "link", "set", UPLINK, "mtu", "1400"]);
    let n = node(&vn);
    let baseline = vn.snapshot();
    let b = bridge_mode();
    let (p1, p2) = (vn.pod(), vn.pod());
    let s1 = spec(&p1, addrs(Fam::V4, 1, 10));
    let att = b.attach(&n, &s1).expect("attach");
    assert_eq!(att.mtu, 1400);
    assert!(p1.run(&["ip", "link", "show", "eth0"]).contains("mtu 1400"));
    let mut s2 = spec(&p2, addrs(Fam::V4, 1, 11));
    s2.mtu = Some(1300);
    let t = TransparentMode {
        uplink: Some(UPLINK.into()),
    };
    assert_eq!(t.attach(&n, &s2).expect("attach").mtu, 1300);
    assert!(p2.run(&["ip", "link", "show", "eth0"]).contains("mtu 1300"));
    let missing = TransparentMode {
        uplink: Some("nosuchlink".into()),
    };
    let p3 = vn.pod();
    let err = missing
        .attach(&n, &spec(&p3, addrs(Fam::V4, 2, 1)))
        .expect_err("missing uplink");
    assert!(matches!(err, Error::UplinkMissing { .. }), "{err}");
    b.detach(&n, &s1).expect("detach");
    t.detach(&n, &s2).expect("detach");
    b.remove_bridge(&n).expect("remove bridge");
    assert_eq!(vn.snapshot(), baseline);
}

#[test]
fn named_namespaces_are_created_and_deleted() {
    require_priv!();
    let name = unique_name("cntlab");
    let ns = cnet_route::Netns::create_named(&name).expect("create");
    assert!(std::path::Path::new("/var/run/netns").join(&name).exists());
    let here = cnet_route::Netns::current_thread().expect("current");
    assert!(!ns.same_as(&here));
    let inside = ns
        .run(|| std::fs::read_to_string("/proc/net/dev").unwrap_or_default())
        .expect("run inside");
    assert!(inside.contains("lo:") && !inside.contains(UPLINK));
    assert!(
        ns.run(|| cnet_route::Netns::current_thread().map(|t| t.same_as(&ns)))
            .expect("run")
            .expect("open")
    );
    assert!(
        cnet_route::Netns::create_named(&name).is_err(),
        "exists already"
    );
    drop(ns);
    cnet_route::Netns::delete_named(&name).expect("delete");
    cnet_route::Netns::delete_named(&name).expect("delete again");
    assert!(!std::path::Path::new("/var/run/netns").join(&name).exists());
}

#[test]
fn transparent_falls_back_to_proxy_arp_and_ndp() {
    require_priv!();
    let [c4, c6] = cidrs(1);
    let (_ul, vn) = VirtualNode::single(&[&c4, &c6]);
    let n = node(&vn);
    let baseline = vn.snapshot();
    let mode = TransparentMode::new();
    let pod = vn.pod();
    let s = spec(&pod, addrs(Fam::Dual, 1, 10));
    mode.attach(&n, &s).expect("attach");
    // Without the permanent gateway entries the pod must resolve the gateways itself; the
    // host veth answers by proxy ARP / proxy NDP.
    pod.run(&["ip", "neigh", "del", "169.254.1.1", "dev", "eth0"]);
    pod.run(&["ip", "-6", "neigh", "del", "fe80::1", "dev", "eth0"]);
    let diffs = mode.check(&n, &s).expect("check");
    assert_eq!(diffs.len(), 2, "{diffs:?}");
    assert!(diffs.iter().all(|d| matches!(
        d,
        Difference::NeighbourMissing {
            side: Side::Pod,
            ..
        }
    )));
    assert_ping(&pod, vn.addr4.into(), "pod -> node via proxy ARP");
    assert_ping(&pod, vn.addr6.into(), "pod -> node via proxy NDP");
    let neigh = pod.run(&["ip", "neigh", "show", "dev", "eth0"]);
    let host_mac = cnet_route::derived_mac("host", &s.container_id, &s.ifname).to_string();
    assert!(
        neigh.contains("169.254.1.1") && neigh.contains(&host_mac),
        "{neigh}"
    );
    mode.detach(&n, &s).expect("detach");
    assert_eq!(vn.snapshot(), baseline);
}

#[test]
fn concurrent_attaches_share_one_bridge() {
    require_priv!();
    let [c4, c6] = cidrs(1);
    let (_ul, vn) = VirtualNode::single(&[&c4, &c6]);
    let n = node(&vn);
    let baseline = vn.snapshot();
    let b = bridge_mode();
    let pods: Vec<NetNs> = (0..6).map(|_| vn.pod()).collect();
    let specs: Vec<EndpointSpec> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| spec(p, addrs(Fam::Dual, 1, 20 + i as u8)))
        .collect();
    std::thread::scope(|sc| {
        for s in &specs {
            let (b, n) = (&b, &n);
            sc.spawn(move || b.attach(n, s).expect("concurrent attach"));
        }
    });
    for s in &specs {
        assert_eq!(b.check(&n, s).expect("check"), vec![]);
    }
    let last = ips(&specs[5]);
    for ip in &last {
        assert_ping(&pods[0], *ip, "first pod -> last pod");
    }
    std::thread::scope(|sc| {
        for s in &specs {
            let (b, n) = (&b, &n);
            sc.spawn(move || b.detach(n, s).expect("concurrent detach"));
        }
    });
    b.remove_bridge(&n).expect("remove bridge");
    assert_eq!(vn.snapshot(), baseline);
}

#[test]
fn bridge_mode_sets_the_node_sysctls_it_relies_on() {
    require_priv!();
    let [c4, c6] = cidrs(1);
    let (_ul, vn) = VirtualNode::single(&[&c4, &c6]);
    vn.ns.sysctl("net.ipv4.ip_forward=0");
    let n = node(&vn);
    let baseline = vn.snapshot();
    let pod = vn.pod();
    let s = spec(&pod, addrs(Fam::V4, 1, 10));
    let mut b = bridge_mode();
    b.attach(&n, &s).expect("attach");
    let get = |k: &str| vn.ns.run(&["sysctl", "-n", k]).trim().to_string();
    assert_eq!(get("net.ipv4.ip_forward"), "1");
    if std::path::Path::new("/proc/sys/net/bridge").exists() {
        assert_eq!(get("net.bridge.bridge-nf-call-iptables"), "0");
        // Someone turns br_netfilter back on: check notices.
        vn.ns.sysctl("net.bridge.bridge-nf-call-iptables=1");
        let d = b.check(&n, &s).expect("check");
        assert!(
            d.iter().any(|x| matches!(x, Difference::SysctlMismatch { key, .. } if key == "net.bridge.bridge-nf-call-iptables")),
            "{d:?}"
        );
        vn.ns.sysctl("net.bridge.bridge-nf-call-ip6tables=1");
        b.br_netfilter = true;
        assert_eq!(b.check(&n, &s).expect("check"), vec![]);
    }
    b.detach(&n, &s).expect("detach");
    b.remove_bridge(&n).expect("remove bridge");
    assert_eq!(vn.snapshot(), baseline);
}

#[test]
fn invalid_specs_touch_nothing() {
    require_priv!();
    let [c4, c6] = cidrs(1);
    let (_ul, vn) = VirtualNode::single(&[&c4, &c6]);
    let n = node(&vn);
    let baseline = vn.snapshot();
    let pod = vn.pod();
    let mut s = spec(&pod, addrs(Fam::V4, 1, 10));
    s.ifname = "name/with/slash".into();
    assert!(matches!(
        TransparentMode::new().attach(&n, &s),
        Err(Error::InvalidSpec { .. })
    ));
    let s = spec(&pod, vec!["10.1.0.10/32".parse().expect("cidr")]);
    let b = bridge_mode();
    assert!(matches!(b.attach(&n, &s), Err(Error::InvalidSpec { .. })));
    let mut s = spec(&pod, addrs(Fam::V4, 1, 10));
    s.netns = "/var/run/netns/does-not-exist".into();
    let err = TransparentMode::new()
        .attach(&n, &s)
        .expect_err("missing pod netns");
    assert!(err.to_string().contains("does-not-exist"), "{err}");
    assert!(
        TransparentMode::new().detach(&n, &s).is_ok(),
        "detach with no netns"
    );
    // A path that exists but is no network namespace.
    let file = std::env::temp_dir().join(unique_name("notns"));
    std::fs::write(&file, b"").expect("temp file");
    s.netns = file.clone();
    let err = TransparentMode::new()
        .attach(&n, &s)
        .expect_err("not a netns");
    let _ = std::fs::remove_file(&file);
    assert!(matches!(&err, Error::Netns { op: "setns", .. }), "{err}");
    assert_eq!(vn.snapshot(), baseline);
}

#[test]
fn detach_leaves_links_it_does_not_own_alone() {
    require_priv!();
    let [c4, c6] = cidrs(1);
    let (_ul, vn) = VirtualNode::single(&[&c4, &c6]);
    let n = node(&vn);
    let pod = vn.pod();
    let s = spec(&pod, addrs(Fam::V4, 1, 10));
    let host = s.host_ifname();
    // A foreign link that happens to carry the derived name.
    vn.ns.run(&[
        "ip", "link", "add", &host, "type", "veth", "peer", "name", "foreign0",
    ]);
    let errs = TransparentMode::new().detach(&n, &s).expect_err("not ours");
    assert!(
        matches!(errs.0.as_slice(), [Error::NotOwned { .. }]),
        "{errs}"
    );
    assert!(
        vn.ns.ok(&["ip", "link", "show", &host]),
        "foreign link kept"
    );
    let err = TransparentMode::new()
        .attach(&n, &s)
        .expect_err("name taken");
    assert!(
        matches!(
            err,
            Error::InterfaceExists {
                side: Side::Node,
                ..
            }
        ),
        "{err}"
    );
    vn.ns.run(&["ip", "link", "del", &host]);
    let baseline = vn.snapshot();

    // Our own link whose alias someone changed: check says so.
    let mode = TransparentMode::new();
    mode.attach(&n, &s).expect("attach");
    vn.ns
        .run(&["ip", "link", "set", &host, "alias", "someone-else"]);
    let d = mode.check(&n, &s).expect("check");
    assert!(
        matches!(d.as_slice(), [Difference::OwnerMismatch { actual: Some(a), .. }] if a == "someone-else"),
        "{d:?}"
    );
    vn.ns
        .run(&["ip", "link", "set", &host, "alias", &s.owner_alias()]);
    mode.detach(&n, &s).expect("detach");
    assert_eq!(vn.snapshot(), baseline);
}

#[test]
fn gc_removes_exactly_the_stale_attachments() {
    require_priv!();
    let [c4, c6] = cidrs(1);
    let (_ul, vn) = VirtualNode::single(&[&c4, &c6]);
    let n = node(&vn);
    let baseline = vn.snapshot();
    let b = bridge_mode();
    let t = TransparentMode::new();
    let pods: Vec<NetNs> = (0..3).map(|_| vn.pod()).collect();
    let specs: Vec<EndpointSpec> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| spec(p, addrs(Fam::Dual, 1, 30 + i as u8)))
        .collect();
    b.attach(&n, &specs[0]).expect("attach");
    t.attach(&n, &specs[1]).expect("attach");
    t.attach(&n, &specs[2]).expect("attach");
    let mut listed = cnet_route::list_attachments(&n).expect("list");
    listed.sort_by(|x, y| x.container_id.cmp(&y.container_id));
    let mut want: Vec<(String, String, String)> = specs
        .iter()
        .map(|s| (s.container_id.clone(), s.ifname.clone(), s.host_ifname()))
        .collect();
    want.sort();
    let got: Vec<(String, String, String)> = listed
        .iter()
        .map(|h| {
            (
                h.container_id.clone(),
                h.ifname.clone(),
                h.host_ifname.clone(),
            )
        })
        .collect();
    assert_eq!(got, want);

    let keep = vec![(specs[1].container_id.clone(), "eth0".to_string())];
    let removed = cnet_route::gc(&n, &keep).expect("gc");
    assert_eq!(removed.len(), 2);
    let left = cnet_route::list_attachments(&n).expect("list");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].container_id, specs[1].container_id);
    assert_eq!(
        t.check(&n, &specs[1]).expect("check"),
        vec![],
        "kept attachment intact"
    );
    assert!(!pods[0].ok(&["ip", "link", "show", "eth0"]));
    t.detach(&n, &specs[1]).expect("detach");
    assert_eq!(cnet_route::gc(&n, &[]).expect("gc of nothing"), vec![]);
    b.remove_bridge(&n).expect("remove bridge");
    assert_eq!(vn.snapshot(), baseline);
}

#[test]
fn a_non_bridge_under_the_bridge_name_is_refused() {
    require_priv!();
    let [c4, c6] = cidrs(1);
    let (_ul, vn) = VirtualNode::single(&[&c4, &c6]);
    let n = node(&vn);
    let b = bridge_mode();
    vn.ns.run(&[
        "ip", "link", "add", &b.bridge, "type", "veth", "peer", "name", "other0",
    ]);
    let baseline = vn.snapshot();
    let pod = vn.pod();
    let s = spec(&pod, addrs(Fam::V4, 1, 10));
    let err = b.attach(&n, &s).expect_err("not a bridge");
    assert!(
        matches!(&err, Error::NotABridge { kind: Some(k), .. } if k == "veth"),
        "{err}"
    );
    assert_eq!(vn.snapshot(), baseline);
    assert!(!pod.ok(&["ip", "link", "show", "eth0"]));
}
