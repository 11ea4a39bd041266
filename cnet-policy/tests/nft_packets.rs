//! Real packets through a ruleset programmed by the netlink programmer: two "pod" namespaces
//! routed through a "node" namespace over veth pairs. A forward-hook drop keyed by a set blocks
//! ICMP and TCP; removing the element (an element-only batch) lets them through again.
//! IPv6 forwarding keeps working under an input chain with policy drop because neighbour
//! discovery is accepted explicitly.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use cnet_policy::nft::{
    Chain, ChainPolicy, CtState, Element, Expr, Family, Field, Hook, KeyType, PROTO_ICMPV6,
    Programmer, Rule, Ruleset, Set, SyncKind, Table, Value, Verdict,
};
use cnet_testsupport::{NetNs, require_priv};

const SERVER: &str = "import socket,sys\n\
s=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)\n\
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
s.bind((sys.argv[1], 8080)); s.listen(16)\n\
while True:\n    c,_=s.accept(); c.sendall(b'ok'); c.close()\n";

const CLIENT: &str = "import socket,sys\n\
s=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)\n\
s.settimeout(1.5)\n\
try:\n    s.connect((sys.argv[1], 8080)); sys.exit(0 if s.recv(2)==b'ok' else 1)\n\
except Exception as e:\n    print(e); sys.exit(1)\n";

fn tcp_ok(from: &NetNs, addr: &str) -> bool {
    from.ok(&["/usr/bin/python3", "-c", CLIENT, addr])
}

fn ping6(from: &NetNs, addr: &str) -> bool {
    from.ok(&["ping", "-6", "-c", "1", "-W", "2", "-q", addr])
}

/// node with pods p1 (10.9.1.2, fd00:1::2) and p2 (10.9.2.2, fd00:2::2), routed via the node.
fn topology() -> (NetNs, NetNs, NetNs) {
    common::routed_pair(["pkn", "pk1", "pk2"], "h", "10.9", true)
}

fn ruleset(blocked_v4: &[&str], blocked_v6: &[&str]) -> Ruleset {
    let mut b4 = Set::new("blocked_v4", &[KeyType::Ipv4Addr]).interval();
    for a in blocked_v4 {
        b4 = b4.with_element(Element::value(Value::V4(a.parse().unwrap())));
    }
    let mut b6 = Set::new("blocked_v6", &[KeyType::Ipv6Addr]).interval();
    for a in blocked_v6 {
        b6 = b6.with_element(Element::value(Value::V6(a.parse().unwrap())));
    }
    let forward = Chain::base("forward", Hook::Forward, 0, ChainPolicy::Accept)
        .with_rule(Rule::new(vec![
            Expr::ct_state(&[CtState::Established, CtState::Related]),
            Expr::verdict(Verdict::Accept),
        ]))
        .with_rule(Rule::new(vec![
            Expr::ipv4(),
            Expr::in_set(&[Field::IpDaddr], "blocked_v4"),
            Expr::Counter,
            Expr::verdict(Verdict::Drop),
        ]))
        .with_rule(Rule::new(vec![
            Expr::ipv6(),
            Expr::in_set(&[Field::Ip6Daddr], "blocked_v6"),
            Expr::Counter,
            Expr::verdict(Verdict::Drop),
        ]));
    // Default deny towards the node itself, except neighbour discovery (without it, the pods'
    // IPv6 neighbour solicitations for their gateway die here and nothing is forwarded).
    let input = Chain::base("input", Hook::Input, 0, ChainPolicy::Drop)
        .with_rule(Rule::new(vec![
            Expr::ct_state(&[CtState::Established, CtState::Related]),
            Expr::verdict(Verdict::Accept),
        ]))
        .with_rule(
            Rule::new(vec![
                Expr::ipv6(),
                Expr::l4proto(PROTO_ICMPV6),
                Expr::range(
                    Field::Icmpv6Type,
                    Value::Icmpv6Type(133),
                    Value::Icmpv6Type(137),
                ),
                Expr::verdict(Verdict::Accept),
            ])
            .with_comment("neighbour discovery"),
        );
    Ruleset::new().with_table(
        Table::new(Family::Inet, "cnet")
            .with_set(b4)
            .with_set(b6)
            .with_chain(forward)
            .with_chain(input),
    )
}

#[test]
fn set_keyed_forward_drop_blocks_then_allows_real_traffic() {
    require_priv!();
    let (node, p1, p2) = topology();
    let mut servers = vec![
        p2.spawn(&["/usr/bin/python3", "-c", SERVER, "10.9.2.2"]),
        p2.spawn(&["/usr/bin/python3", "-c", SERVER, "fd00:2::2"]),
    ];
    // Before any policy: everything flows (and the servers are up).
    let mut up = false;
    for _ in 0..50 {
        if tcp_ok(&p1, "10.9.2.2") && tcp_ok(&p1, "fd00:2::2") {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(up, "servers not reachable before policy");

    let blocked = ruleset(&["10.9.2.2"], &["fd00:2::2"]);
    let (mut prog, r) = node.in_netns(|| {
        let mut p = Programmer::new().unwrap();
        let r = p.sync(&blocked).unwrap();
        (p, r)
    });
    assert_eq!(r.kind, SyncKind::Full);
    assert!(!p1.ping("10.9.2.2"), "ICMP to a blocked pod passed");
    assert!(!tcp_ok(&p1, "10.9.2.2"), "TCP to a blocked pod passed");
    assert!(!ping6(&p1, "fd00:2::2"), "ICMPv6 to a blocked pod passed");
    assert!(
        !tcp_ok(&p1, "fd00:2::2"),
        "TCP/IPv6 to a blocked pod passed"
    );
    // The reverse direction is not blocked: p2 -> p1 pings go through (replies are
    // established) — and the node's input policy drops pings to the node itself.
    assert!(p2.ping("10.9.1.2"));
    assert!(!p1.ping("10.9.1.1"), "input policy drop not applied");

    // Unblock: an element-only batch.
    let open = ruleset(&[], &[]);
    let r = prog.sync(&open).unwrap();
    assert_eq!(r.kind, SyncKind::Incremental);
    assert!(
        p1.ping("10.9.2.2"),
        "ICMP still blocked after the element was removed"
    );
    assert!(
        tcp_ok(&p1, "10.9.2.2"),
        "TCP still blocked after the element was removed"
    );
    // IPv6 forwarding works under input policy drop thanks to the ND rule.
    assert!(
        ping6(&p1, "fd00:2::2"),
        "ICMPv6 blocked (neighbour discovery broken?)"
    );
    assert!(tcp_ok(&p1, "fd00:2::2"));

    // Block again, incrementally.
    let r = prog.sync(&blocked).unwrap();
    assert_eq!(r.kind, SyncKind::Incremental);
    assert!(!tcp_ok(&p1, "10.9.2.2"));
    let counters = node.run(&["nft", "list", "chain", "inet", "cnet", "forward"]);
    assert!(
        !counters.contains("counter packets 0 bytes 0\n\t\tmeta nfproto"),
        "{counters}"
    );

    for s in &mut servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    drop(prog);
    // Cleanup check is done by the NetNs guards; make sure no stray processes remain.
    let _ = Command::new("true").status();
}
