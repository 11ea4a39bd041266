//! Pieces of the engine property tests (`engine_live`, `engine_incremental`).

use std::collections::BTreeMap;

use cnet_policy::model::{PolicyId, PolicyKind};
use cnet_policy::{Endpoint, NamedPort, Protocol};
use cnet_testsupport::NetNs;

/// The namespace name of namespace number `ns`.
pub fn ns_name(ns: u8) -> String {
    format!("ns{ns}")
}

/// Pod `ns{ns}/p{idx}` labelled `app: a{app}`, `tier: t{tier}`, with addresses
/// 10.77.{ns}.{idx+2} and fd77::{ns}:{idx+2} and the named port `dns` = `dns_port`/UDP.
pub fn pod_endpoint(ns: u8, idx: u8, app: u8, tier: u8, dns_port: u16) -> Endpoint {
    let mut ep = Endpoint::new(
        &ns_name(ns),
        &format!("p{idx}"),
        BTreeMap::from([
            ("app".to_string(), format!("a{app}")),
            ("tier".to_string(), format!("t{tier}")),
        ]),
        vec![
            format!("10.77.{ns}.{}", idx + 2).parse().unwrap(),
            format!("fd77::{ns}:{}", idx + 2).parse().unwrap(),
        ],
    );
    ep.named_ports.insert(
        "dns".into(),
        NamedPort {
            port: dns_port,
            protocol: Protocol::Udp,
        },
    );
    ep
}

/// The id of the NetworkPolicy `p{name}` in namespace number `ns`.
pub fn network_policy_id(ns: u8, name: u8) -> PolicyId {
    PolicyId {
        kind: PolicyKind::NetworkPolicy,
        namespace: Some(ns_name(ns)),
        name: format!("p{name}"),
    }
}

/// `nft list table inet cnet` in `ns`, with its sets, maps and chains sorted by name (the
/// kernel lists objects in creation order, which differs between incremental and full
/// programming).
pub fn listing(ns: &NetNs) -> String {
    let text = ns.run(&["nft", "list", "table", "inet", "cnet"]);
    let mut blocks: Vec<Vec<&str>> = Vec::new();
    for line in text.lines() {
        if line.starts_with("\tset ") || line.starts_with("\tmap ") || line.starts_with("\tchain ")
        {
            blocks.push(vec![line]);
        } else if line.starts_with("\t\t") || line == "\t}" {
            if let Some(b) = blocks.last_mut() {
                b.push(line);
            }
        }
    }
    blocks.sort();
    blocks
        .into_iter()
        .map(|b| b.join("\n"))
        .collect::<Vec<_>>()
        .join("\n")
}
