//! Privileged tests of `IntraNode::attach_gated`: the gate runs while both ends of the new
//! pair exist, the host end is down and the pod end (configured already) has no carrier (no `LOWER_UP`), a
//! refusing gate leaves nothing behind, an accepting one gives the usual attachment.

use cnet_route::{EndpointSpec, Error, IntraNode, Node, TransparentMode};
use cnet_testsupport::{NetNs, VirtualNode, require_priv};

fn link(ns: &NetNs, name: &str) -> String {
    ns.run(&["ip", "-o", "link", "show"])
        .lines()
        .find(|l| l.contains(&format!(" {name}@")) || l.contains(&format!(" {name}:")))
        .unwrap_or_default()
        .to_string()
}

/// The flags (`<...,UP,...>`) of a link line hold `flag`.
fn has_flag(line: &str, flag: &str) -> bool {
    line.split(['<', '>'])
        .nth(1)
        .is_some_and(|flags| flags.split(',').any(|f| f == flag))
}

/// The administrative flags of a link line say it is up.
fn is_up(line: &str) -> bool {
    has_flag(line, "UP")
}

#[test]
fn gate_sees_the_host_end_down_and_a_refusal_leaves_nothing() {
    require_priv!();
    let (_u, vn) = VirtualNode::single(&["10.78.0.0/24"]);
    let node = Node::open(vn.ns.path()).expect("node");
    let mode = TransparentMode::new();
    let pod = vn.pod();
    let cid = cnet_testsupport::unique_name("gate");
    let spec = EndpointSpec::new(
        cid.as_str(),
        "eth0",
        pod.path(),
        vec!["10.78.0.5/32".parse().expect("cidr")],
    );
    let host = cnet_route::host_ifname(&cid, "eth0");

    let mut seen = Vec::new();
    let e = mode
        .attach_gated(&node, &spec, &mut || {
            seen.push((
                link(&vn.ns, &host),
                link(&pod, "eth0"),
                pod.run(&["ip", "-4", "addr", "show", "dev", "eth0"]),
            ));
            Err("policy not programmed".into())
        })
        .expect_err("a refusing gate stops the attach");
    assert!(matches!(e, Error::Gate { ref reason } if reason == "policy not programmed"));
    assert_eq!(seen.len(), 1, "gate called once");
    let (h, p, pod_addrs) = &seen[0];
    assert!(
        !h.is_empty() && !p.is_empty(),
        "both ends exist: {h:?} {p:?}"
    );
    // Nothing can pass: the host end is down, so the pod end has no carrier.
    assert!(!is_up(h), "host end down at the gate: {h}");
    assert!(
        !has_flag(p, "LOWER_UP"),
        "pod end without carrier at the gate: {p}"
    );
    // The pod end is configured before the gate (only the host end waits for it).
    assert!(pod_addrs.contains("10.78.0.5/32"), "{pod_addrs}");
    assert!(link(&vn.ns, &host).is_empty(), "host end deleted");
    assert!(link(&pod, "eth0").is_empty(), "pod end deleted");
    assert!(!vn.ns.run(&["ip", "-4", "route"]).contains("10.78.0.5"));

    let mut calls = 0;
    let att = mode
        .attach_gated(&node, &spec, &mut || {
            calls += 1;
            Ok(())
        })
        .expect("attach");
    assert_eq!(calls, 1);
    assert_eq!(att.host_ifname, host);
    assert!(is_up(&link(&vn.ns, &host)) && is_up(&link(&pod, "eth0")));
    assert!(
        has_flag(&link(&pod, "eth0"), "LOWER_UP"),
        "carrier once both are up"
    );
    assert!(vn.ns.run(&["ip", "-4", "route"]).contains("10.78.0.5 dev"));
    mode.detach(&node, &spec).expect("detach");
    assert!(link(&vn.ns, &host).is_empty());
}
