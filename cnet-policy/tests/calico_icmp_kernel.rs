//! Calico ICMP matches against real packets: `icmp` type/code and `notICMP` for ICMP and
//! ICMPv6, compiled by the nftables compiler (transparent mode) and programmed into a node
//! namespace routing between two pod namespaces. Expectations from the Calico rule reference:
//! `icmp: {type, code}` matches only ICMP packets of that type (and code); `notICMP` matches
//! every packet except those. Echo request is ICMP type 8 code 0, ICMPv6 type 128 code 0.
//! (The scenario runner probes TCP/UDP only, so ICMP gets its own kernel test.)
#![allow(clippy::unwrap_used)]

mod common;

use cnet_policy::calico::CalicoObjects;
use cnet_policy::compile::{Attachments, CompileOptions, Mode, compile};
use cnet_policy::nft::Programmer;
use cnet_policy::parse::ApiObject;
use cnet_policy::{Endpoint, Inventory, parse_yaml_objects};
use cnet_testsupport::{NetNs, require_priv};
use std::collections::BTreeMap;

/// node with pods p1 (10.9.1.2, fd00:1::2) on h1 and p2 (10.9.2.2, fd00:2::2) on h2.
fn topology() -> (NetNs, NetNs, NetNs) {
    common::routed_pair(["ick", "ic1", "ic2"], "h", "10.9", true)
}

fn inventory() -> (Inventory, Attachments) {
    let mut inv = Inventory::default();
    let mut att = Attachments::default();
    for (i, app) in [(1, "client"), (2, "server")] {
        let ep = Endpoint::new(
            "default",
            &format!("p{i}"),
            BTreeMap::from([("app".to_string(), app.to_string())]),
            vec![
                format!("10.9.{i}.2").parse().unwrap(),
                format!("fd00:{i}::2").parse().unwrap(),
            ],
        );
        att.host_ifname.insert(ep.id(), format!("h{i}"));
        inv.upsert_endpoint(ep);
    }
    (inv, att)
}

/// Program an ingress GlobalNetworkPolicy on the server with these rules (YAML list items).
fn program(node: &NetNs, prog: &mut Option<Programmer>, rules: &str) {
    let yaml = format!(
        "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: icmp}}\n\
         spec:\n  selector: app == 'server'\n  types: [Ingress]\n  ingress:\n{rules}"
    );
    let mut c = CalicoObjects::default();
    for o in parse_yaml_objects(&yaml).unwrap() {
        let ApiObject::Other { value, .. } = o else {
            panic!("not a Calico object")
        };
        c.add_value(value).unwrap();
    }
    let set = c.policy_set(&[], &[]).unwrap();
    let (inv, att) = inventory();
    let rs = compile(&set, &inv, &att, &CompileOptions::new(Mode::Transparent)).unwrap();
    node.in_netns(|| {
        let p = prog.get_or_insert_with(|| Programmer::new().unwrap());
        p.sync(&rs).unwrap();
    });
}

fn ping(from: &NetNs, v6: bool, addr: &str) -> bool {
    from.ok(&[
        "ping",
        if v6 { "-6" } else { "-4" },
        "-c",
        "1",
        "-W",
        "1",
        "-q",
        addr,
    ])
}

#[test]
fn calico_icmp_type_code_and_not_icmp_filter_real_pings() {
    require_priv!();
    let (node, p1, _p2) = topology();
    let up = (0..20).any(|_| ping(&p1, false, "10.9.2.2") && ping(&p1, true, "fd00:2::2"));
    assert!(up, "pods do not reach each other before any policy");
    let mut prog = None;
    let cases: [(&str, &str, bool, bool); 7] = [
        (
            "echo request type",
            "  - action: Allow\n    protocol: ICMP\n    icmp: {type: 8}\n",
            true,
            false,
        ),
        (
            "echo request type and code 0",
            "  - action: Allow\n    protocol: ICMP\n    icmp: {type: 8, code: 0}\n",
            true,
            false,
        ),
        (
            "echo request type, wrong code",
            "  - action: Allow\n    protocol: ICMP\n    icmp: {type: 8, code: 1}\n",
            false,
            false,
        ),
        (
            "ICMPv6 echo request",
            "  - action: Allow\n    protocol: ICMPv6\n    icmp: {type: 128, code: 0}\n",
            false,
            true,
        ),
        (
            "notICMP of the echo type does not deny echo",
            "  - action: Deny\n    protocol: ICMP\n    notICMP: {type: 8}\n  - action: Allow\n",
            true,
            true,
        ),
        (
            "notICMP of another type denies echo",
            "  - action: Deny\n    protocol: ICMP\n    notICMP: {type: 13}\n  - action: Allow\n",
            false,
            true,
        ),
        (
            "notProtocol ICMPv6 allows ICMP only",
            "  - action: Allow\n    notProtocol: ICMPv6\n",
            true,
            false,
        ),
    ];
    for (what, rules, v4, v6) in cases {
        program(&node, &mut prog, rules);
        assert_eq!(ping(&p1, false, "10.9.2.2"), v4, "{what}: IPv4 ping");
        assert_eq!(ping(&p1, true, "fd00:2::2"), v6, "{what}: IPv6 ping");
    }
}
