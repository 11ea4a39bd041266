//! Privileged tests of deferred teardown on a virtual node: a retired attachment has no
//! route and no reachability at once, its name is free for a new attach, retiring again
//! while an older retired pair of the same attachment exists works, and reap / reap_retired
//! delete the pairs.

use cnet_route::{EndpointSpec, IntraNode, Node, TransparentMode};
use cnet_testsupport::{NetNs, VirtualNode, require_priv};

fn links(ns: &NetNs) -> String {
    ns.run(&["ip", "-o", "link", "show"])
}

#[test]
fn retire_reattach_retire_again_and_reap() {
    require_priv!();
    let (_u, vn) = VirtualNode::single(&["10.77.0.0/24"]);
    let node = Node::open(vn.ns.path()).expect("node");
    let mode = TransparentMode::new();
    let (p1, p2) = (vn.pod(), vn.pod());
    let cid = cnet_testsupport::unique_name("ret");
    let at = |pod: &NetNs, host: u8| {
        EndpointSpec::new(
            cid.as_str(),
            "eth0",
            pod.path(),
            vec![format!("10.77.0.{host}/32").parse().expect("cidr")],
        )
    };
    let host = cnet_route::host_ifname(&cid, "eth0");
    let retired = cnet_route::retired_ifname(&cid, "eth0");
    mode.attach(&node, &at(&p1, 5)).expect("attach in p1");
    assert!(vn.ns.run(&["ip", "-4", "route"]).contains("10.77.0.5 dev"));
    // Retire: the host end is renamed and down, its route is gone at once.
    assert_eq!(
        cnet_route::retire(&node, &at(&p1, 5)).expect("retire"),
        Some(retired.clone())
    );
    let l = links(&vn.ns);
    assert!(!l.contains(&format!("{host}@")), "{l}");
    assert!(l.contains(&format!("{retired}@")), "{l}");
    assert!(!vn.ns.run(&["ip", "-4", "route"]).contains("10.77.0.5"));
    // Retiring again finds the retired pair (for a reaper) and changes nothing.
    assert_eq!(
        cnet_route::retire(&node, &at(&p1, 5)).expect("retire again"),
        Some(retired.clone())
    );
    // The same attachment in another netns, while the retired pair still exists.
    mode.attach(&node, &at(&p2, 6)).expect("attach in p2");
    // Retire it too: the older retired pair holds the name and is deleted first.
    assert_eq!(
        cnet_route::retire(&node, &at(&p2, 6)).expect("retire over older"),
        Some(retired.clone())
    );
    assert!(!links(&p1).contains("eth0"), "older pair deleted");
    assert!(
        links(&p2).contains("eth0"),
        "newer pair retired, not deleted"
    );
    assert!(cnet_route::reap(&node, &cid, "eth0").expect("reap"));
    assert!(!cnet_route::reap(&node, &cid, "eth0").expect("reap again"));
    assert!(!links(&p2).contains("eth0"));
    assert!(!links(&vn.ns).contains("cnet"));
    // Nothing of the attachment: retire is a no-op.
    assert_eq!(cnet_route::retire(&node, &at(&p2, 6)).expect("noop"), None);
}

#[test]
fn reap_retired_deletes_every_retired_pair_and_nothing_else() {
    require_priv!();
    let (_u, vn) = VirtualNode::single(&["10.78.0.0/24"]);
    let node = Node::open(vn.ns.path()).expect("node");
    let mode = TransparentMode::new();
    let pods: Vec<NetNs> = (0..3).map(|_| vn.pod()).collect();
    let specs: Vec<EndpointSpec> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| {
            EndpointSpec::new(
                cnet_testsupport::unique_name("rr"),
                "eth0",
                p.path(),
                vec![format!("10.78.0.{}/32", i + 2).parse().expect("cidr")],
            )
        })
        .collect();
    for s in &specs {
        mode.attach(&node, s).expect("attach");
    }
    cnet_route::retire(&node, &specs[0]).expect("retire 0");
    cnet_route::retire(&node, &specs[1]).expect("retire 1");
    let mut gone = cnet_route::reap_retired(&node).expect("reap_retired");
    gone.sort();
    let mut want = vec![
        cnet_route::retired_ifname(&specs[0].container_id, "eth0"),
        cnet_route::retired_ifname(&specs[1].container_id, "eth0"),
    ];
    want.sort();
    assert_eq!(gone, want);
    assert!(links(&vn.ns).contains(&specs[2].host_ifname()));
    mode.detach(&node, &specs[2]).expect("detach");
    assert!(!links(&vn.ns).contains("cnet"));
}
