//! Many `cnet-ipam` processes at once, as a runtime starts them for different containers:
//! every ADD gets a distinct address, every DEL releases, nothing is left.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;
use std::collections::HashSet;

#[test]
fn parallel_adds_get_distinct_addresses_and_parallel_dels_release_all() {
    let s = Subject::ours();
    let ipam = json!({"ranges": [[{"subnet": "10.7.0.0/24"}], [{"subnet": "fd00:7::/64"}]]});
    let conf = s.conf("1.1.0", &ipam, &json!({}));
    let n = 48;
    let ids: Vec<String> = (0..n).map(|i| format!("par{i}")).collect();
    let outs: Vec<Out> = std::thread::scope(|sc| {
        let hs: Vec<_> = ids
            .iter()
            .map(|id| {
                let (bin, conf) = (&s.bin, &conf);
                sc.spawn(move || invoke(bin, &Call::new("ADD", id), conf))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut seen = HashSet::new();
    for o in &outs {
        for a in o.addresses() {
            assert!(seen.insert(a.clone()), "address {a} handed out twice");
        }
    }
    assert_eq!(seen.len(), 2 * n);
    std::thread::scope(|sc| {
        for id in &ids {
            let (bin, conf) = (&s.bin, &conf);
            sc.spawn(move || invoke(bin, &Call::new("DEL", id), conf).ok());
        }
    });
    // Nothing left: GC with no valid attachments finds nothing, and every CHECK fails.
    for id in &ids {
        assert_ne!(invoke(&s.bin, &Call::new("CHECK", id), &conf).status, 0);
    }
    let status = invoke_env(&s.bin, &[("CNI_COMMAND", "STATUS")], &conf);
    assert_eq!(status.status, 0);
}
