//! Calico host endpoints on a real virtual node: a node namespace with two interfaces, `eth1`
//! to an "outside" namespace (10.77.1.2) and `eth2` to a second one (10.77.2.2). `eth1` is a
//! HostEndpoint labelled `role: edge`. Host endpoint policy is compiled by
//! `compile_host` and programmed into the node; expectations follow Calico's host endpoint
//! reference (default deny for host traffic through a host endpoint, failsafe ports,
//! `applyOnForward`, pre-DNAT policy before the node's DNAT).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cnet_policy::calico::CalicoObjects;
use cnet_policy::compile::{CompileError, HostOptions, compile_host};
use cnet_policy::nft::Programmer;
use cnet_policy::parse::ApiObject;
use cnet_policy::{Inventory, parse_yaml_objects};
use cnet_testsupport::{NetNs, require_priv};

const HEP: &str = "apiVersion: projectcalico.org/v3\nkind: HostEndpoint\n\
    metadata: {name: node1-eth1, labels: {role: edge}}\n\
    spec: {node: node1, interfaceName: eth1, expectedIPs: [10.77.1.1]}\n";

fn objects(yaml: &str) -> CalicoObjects {
    let mut c = CalicoObjects::default();
    for doc in yaml.split("\n---\n") {
        for o in parse_yaml_objects(doc).unwrap() {
            let ApiObject::Other { value, .. } = o else {
                panic!("not a Calico object")
            };
            c.add_value(value).unwrap();
        }
    }
    c
}

/// Echo servers on fixed ports inside a namespace, stopped on drop.
struct Servers {
    stop: Arc<AtomicBool>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(ns: &NetNs, ports: &[u16]) -> Servers {
    let stop = Arc::new(AtomicBool::new(false));
    for &port in ports {
        let l = ns.in_netns(|| TcpListener::bind(("0.0.0.0", port)).unwrap());
        l.set_nonblocking(true).unwrap();
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let mut b = [0u8; 5];
                        if s.read_exact(&mut b).is_ok() {
                            let _ = s.write_all(&b);
                        }
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
    }
    Servers { stop }
}

/// node with outside peers out1 (10.77.1.2 via eth1) and out2 (10.77.2.2 via eth2), IPv4 only.
fn topology() -> (NetNs, NetNs, NetNs) {
    common::routed_pair(["hen", "ho1", "ho2"], "eth", "10.77", false)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn program(node: &NetNs, prog: &mut Option<Programmer>, yaml: &str) {
    let hosts = objects(yaml).host_policies().unwrap();
    let rs = compile_host(
        &hosts,
        &Inventory::default(),
        &HostOptions::calico_defaults(Some("node1")),
    )
    .unwrap();
    node.in_netns(|| {
        let p = prog.get_or_insert_with(|| Programmer::new().unwrap());
        p.sync(&rs).unwrap();
    });
}

#[test]
fn host_endpoint_policy_filters_host_forwarded_and_pre_dnat_traffic() {
    require_priv!();
    let (node, out1, out2) = topology();
    let _s = (
        serve(&node, &[22, 8080, 8081, 8082]),
        serve(&out1, &[179, 8080, 8081]),
        serve(&out2, &[8080]),
    );
    let up =
        (0..40).any(|_| out1.tcp_ok(ip("10.77.1.1"), 8080) && out2.tcp_ok(ip("10.77.1.2"), 8080));
    assert!(up, "no connectivity before policy");
    let mut prog = None;

    // Normal host policy: ingress to the host through eth1 allowed on 8080 only; port 22 is
    // denied by a rule but open as a failsafe port; no egress policy: host egress through
    // eth1 is denied by default; forwarded traffic is not affected (no applyOnForward).
    let edge_in = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
        metadata: {name: edge-in}\nspec:\n  selector: role == 'edge'\n  types: [Ingress]\n  ingress:\n\
        \x20 - action: Deny\n    protocol: TCP\n    destination: {ports: [22]}\n\
        \x20 - action: Allow\n    protocol: TCP\n    source: {nets: [10.77.1.0/24]}\n    destination: {ports: [8080]}\n";
    program(&node, &mut prog, &format!("{HEP}\n---\n{edge_in}"));
    assert!(
        out1.tcp_ok(ip("10.77.1.1"), 8080),
        "allowed ingress to host"
    );
    assert!(out1.tcp_ok(ip("10.77.1.1"), 22), "failsafe port");
    assert!(!out1.tcp_ok(ip("10.77.1.1"), 8081), "end of tier deny");
    assert!(
        !node.tcp_ok(ip("10.77.1.2"), 8080),
        "host egress: default deny"
    );
    assert!(
        node.tcp_ok(ip("10.77.1.2"), 179),
        "outbound failsafe port (BGP)"
    );
    assert!(
        out2.tcp_ok(ip("10.77.1.2"), 8080),
        "forwarded: no applyOnForward policy"
    );
    // eth2 is no host endpoint: the host is open there.
    assert!(out2.tcp_ok(ip("10.77.2.1"), 8081), "not a host endpoint");

    // applyOnForward egress policy: applies to host egress and to forwarded traffic leaving
    // by eth1.
    let edge_fwd = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
        metadata: {name: edge-fwd}\nspec:\n  selector: role == 'edge'\n  applyOnForward: true\n  types: [Egress]\n  egress:\n\
        \x20 - action: Allow\n    protocol: TCP\n    destination: {ports: [8080]}\n";
    program(
        &node,
        &mut prog,
        &format!("{HEP}\n---\n{edge_in}\n---\n{edge_fwd}"),
    );
    assert!(node.tcp_ok(ip("10.77.1.2"), 8080), "host egress allowed");
    assert!(out2.tcp_ok(ip("10.77.1.2"), 8080), "forwarded, allowed");
    assert!(!out2.tcp_ok(ip("10.77.1.2"), 8081), "forwarded, denied");

    // Tiers: a security tier (order 100) passes 8080/8081 from eth1's network to the next
    // tier, where edge-8081 (Log, then Allow 8081) and edge-in decide; 8082 is not passed:
    // the security tier's end-of-tier deny.
    let tiers = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: security}\nspec: {order: 100}\n\
        ---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
        metadata: {name: security.edge}\nspec:\n  tier: security\n  selector: role == 'edge'\n  types: [Ingress]\n  ingress:\n\
        \x20 - action: Pass\n    protocol: TCP\n    source: {nets: [10.77.1.0/24]}\n    destination: {ports: [8080, 8081]}\n\
        ---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
        metadata: {name: edge-8081}\nspec:\n  selector: role == 'edge'\n  types: [Ingress]\n  ingress:\n\
        \x20 - action: Log\n  - action: Allow\n    protocol: TCP\n    destination: {ports: [8081]}\n";
    program(
        &node,
        &mut prog,
        &format!("{HEP}\n---\n{edge_in}\n---\n{edge_fwd}\n---\n{tiers}"),
    );
    assert!(out1.tcp_ok(ip("10.77.1.1"), 8081), "passed, then allowed");
    assert!(
        out1.tcp_ok(ip("10.77.1.1"), 8080),
        "passed, allowed by edge-in"
    );
    assert!(
        !out1.tcp_ok(ip("10.77.1.1"), 8082),
        "security tier end-of-tier deny"
    );

    // Pre-DNAT: the node DNATs eth1:80 to out2:8080. Without pre-DNAT policy the
    // translated, forwarded connection passes (no applyOnForward ingress policy); a pre-DNAT
    // Deny on port 80 (the original port) stops it, and leaves other traffic alone.
    for cmd in [
        "add table ip nat",
        "add chain ip nat pre { type nat hook prerouting priority -100; }",
        "add rule ip nat pre iifname eth1 tcp dport 80 dnat to 10.77.2.2:8080",
    ] {
        let argv: Vec<&str> = std::iter::once("nft").chain(cmd.split(' ')).collect();
        node.run(&argv);
    }
    assert!(
        out1.tcp_ok(ip("10.77.1.1"), 80),
        "DNAT before pre-DNAT policy"
    );
    let pre = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
        metadata: {name: edge-pre}\nspec:\n  selector: role == 'edge'\n  preDNAT: true\n  applyOnForward: true\n  types: [Ingress]\n  ingress:\n\
        \x20 - action: Deny\n    protocol: TCP\n    destination: {ports: [80]}\n";
    program(
        &node,
        &mut prog,
        &format!("{HEP}\n---\n{edge_in}\n---\n{edge_fwd}\n---\n{pre}"),
    );
    assert!(
        !out1.tcp_ok(ip("10.77.1.1"), 80),
        "pre-DNAT deny on the original port"
    );
    assert!(
        out1.tcp_ok(ip("10.77.1.1"), 8080),
        "other traffic goes on to normal policy"
    );
}

#[test]
fn pre_dnat_and_untracked_policies_stay_out_of_the_pod_pipeline_and_untracked_compiles_to_raw() {
    let c = objects(&format!(
        "{HEP}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
         metadata: {{name: dnt}}\nspec:\n  selector: all()\n  doNotTrack: true\n  applyOnForward: true\n  ingress:\n  - action: Deny\n"
    ));
    assert!(c.policy_set(&[], &[]).unwrap().tiers.is_empty());
    let hosts = c.host_policies().unwrap();
    assert_eq!(hosts.do_not_track.tiers.len(), 1);
    // Compiled into raw-priority chains before connection tracking.
    let rs = compile_host(
        &hosts,
        &Inventory::default(),
        &HostOptions::calico_defaults(None),
    )
    .unwrap();
    let text = cnet_policy::nft::render_ruleset(&rs);
    assert!(text.contains("hook prerouting priority -300"), "{text}");
    assert!(text.contains("ct state untracked accept"), "{text}");
    // Every interface is still refused.
    let star = objects(&HEP.replace("interfaceName: eth1", "interfaceName: \"*\""));
    let e = compile_host(
        &star.host_policies().unwrap(),
        &Inventory::default(),
        &HostOptions::calico_defaults(None),
    );
    assert!(matches!(e, Err(CompileError::Unsupported(_))), "{e:?}");
    // Namespaced policies and GNPs with a namespace selector never select host endpoints.
    let c = objects(&format!(
        "{HEP}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
         metadata: {{name: ns}}\nspec:\n  selector: all()\n  namespaceSelector: all()\n  ingress:\n  - action: Deny\n"
    ));
    let hosts = c.host_policies().unwrap();
    let p = &hosts.normal.tiers[0].policies[0];
    assert!(!hosts.endpoints[0].selected_by(&p.subject));
}

#[test]
fn rule_selectors_match_host_endpoints_by_their_expected_ips() {
    use cnet_policy::{Endpoint, Evaluator, Flow, Protocol, Verdict};
    let c = objects(&format!(
        "{HEP}\n---\napiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
         metadata: {{name: web}}\nspec:\n  selector: app == 'web'\n  ingress:\n\
         \x20 - action: Allow\n    source: {{selector: role == 'edge'}}\n"
    ));
    let set = c.policy_set(&[], &[]).unwrap();
    let mut inv = Inventory::default();
    inv.upsert_endpoint(Endpoint::new(
        "prod",
        "web",
        [("app".to_string(), "web".to_string())].into(),
        vec![ip("10.0.0.5")],
    ));
    let e = Evaluator::new(set.clone(), inv.clone());
    let from = |src: &str| {
        e.decide(&Flow {
            src: ip(src),
            dst: ip("10.0.0.5"),
            protocol: Protocol::Tcp,
            dst_port: 80,
        })
        .verdict
    };
    assert_eq!(
        from("10.77.1.1"),
        Verdict::Allow,
        "the host endpoint's expected IP"
    );
    assert_eq!(from("10.77.1.9"), Verdict::Deny, "another address");
    let rs = cnet_policy::compile::compile(
        &set,
        &inv,
        &cnet_policy::compile::Attachments::default(),
        &cnet_policy::compile::CompileOptions::new(cnet_policy::compile::Mode::Bridge),
    )
    .unwrap();
    let text = cnet_policy::nft::render_ruleset(&rs);
    assert!(text.contains("10.77.1.1"), "{text}");
}

/// Untracked (`doNotTrack`) policy in the kernel: a Deny before connection tracking beats a
/// normal Allow; an Allow (both directions, as nothing is tracked: egress to the client) opens a port the normal
/// policy leaves closed, and its packets are never tracked; other ports go on to the normal
/// policy.
#[test]
fn untracked_policy_is_enforced_before_conntrack() {
    require_priv!();
    let (node, out1, _out2) = topology();
    let _s = serve(&node, &[8080, 8081, 8082, 8083]);
    let up = (0..40).any(|_| out1.tcp_ok(ip("10.77.1.1"), 8080));
    assert!(up, "no connectivity before policy");
    let mut prog = None;
    let normal = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
        metadata: {name: normal}\nspec:\n  selector: role == 'edge'\n  ingress:\n\
        \x20 - action: Allow\n    protocol: TCP\n    destination: {ports: [8080, 8081]}\n  egress:\n  - action: Allow\n";
    let untracked = "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n\
        metadata: {name: raw}\nspec:\n  selector: role == 'edge'\n  doNotTrack: true\n  applyOnForward: true\n  ingress:\n\
        \x20 - action: Deny\n    protocol: TCP\n    destination: {ports: [8081]}\n\
        \x20 - action: Allow\n    protocol: TCP\n    destination: {ports: [8082]}\n  egress:\n\
        \x20 - action: Allow\n    protocol: TCP\n    destination: {nets: [10.77.1.2/32]}\n";
    program(&node, &mut prog, &format!("{HEP}\n---\n{normal}"));
    assert!(out1.tcp_ok(ip("10.77.1.1"), 8081), "normal allow");
    assert!(!out1.tcp_ok(ip("10.77.1.1"), 8082), "normal default deny");
    program(
        &node,
        &mut prog,
        &format!("{HEP}\n---\n{normal}\n---\n{untracked}"),
    );
    let listed = node.run(&["nft", "list", "table", "inet", "cnet_host"]);
    assert!(listed.contains("notrack"), "{listed}");
    assert!(
        out1.tcp_ok(ip("10.77.1.1"), 8080),
        "no untracked rule: normal allow"
    );
    assert!(
        !out1.tcp_ok(ip("10.77.1.1"), 8081),
        "untracked deny beats normal allow"
    );
    assert!(
        out1.tcp_ok(ip("10.77.1.1"), 8082),
        "untracked allow skips normal policy"
    );
    assert!(
        !out1.tcp_ok(ip("10.77.1.1"), 8083),
        "normal default deny still applies"
    );
    // The untracked connection left no conntrack entry (the tracked one did).
    let entries = node.run(&["conntrack", "-L"]);
    assert!(!entries.contains("dport=8082"), "{entries}");
    assert!(entries.contains("dport=8080"), "{entries}");
}
