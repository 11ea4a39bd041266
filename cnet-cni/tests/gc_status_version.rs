//! GC, STATUS and VERSION of the `cnet-ipam` binary (host-local has no GC or STATUS).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value, json};

fn ipam() -> Value {
    json!({"ranges": [[{"subnet": "10.3.0.0/29"}], [{"subnet": "2001:db8:3::/125"}]]})
}

fn gc(s: &Subject, valid: Option<Value>) -> Out {
    let mut top = json!({});
    if let Some(v) = valid {
        top["cni.dev/valid-attachments"] = v;
    }
    invoke_env(
        &s.bin,
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/usr/lib/cni")],
        &s.conf("1.1.0", &ipam(), &top),
    )
}

fn holds(s: &Subject, id: &str, ifname: &str) -> bool {
    s.call(
        &Call::new("CHECK", id).ifname(ifname),
        "1.1.0",
        &ipam(),
        &json!({}),
    )
    .status
        == 0
}

#[test]
fn gc_releases_every_lease_not_listed() {
    let s = Subject::ours();
    for (id, ifname) in [("a", "eth0"), ("a", "eth1"), ("b", "eth0"), ("c", "eth0")] {
        s.call(
            &Call::new("ADD", id).ifname(ifname),
            "1.1.0",
            &ipam(),
            &json!({}),
        )
        .ok();
    }
    let out = gc(
        &s,
        Some(
            json!([{"containerID": "a", "ifname": "eth0"}, {"containerID": "c", "ifname": "eth0"},
                    {"containerID": "zzz", "ifname": "eth9"}]),
        ),
    );
    assert_eq!((out.status, out.stdout.as_str()), (0, ""));
    assert!(holds(&s, "a", "eth0"));
    assert!(!holds(&s, "a", "eth1"));
    assert!(!holds(&s, "b", "eth0"));
    assert!(holds(&s, "c", "eth0"));
    // GC is idempotent.
    gc(
        &s,
        Some(
            json!([{"containerID": "a", "ifname": "eth0"}, {"containerID": "c", "ifname": "eth0"}]),
        ),
    )
    .ok();
    assert!(holds(&s, "a", "eth0") && holds(&s, "c", "eth0"));
    // An empty list (or none: libcni omits an empty list) releases everything.
    gc(&s, None).ok();
    assert!(!holds(&s, "a", "eth0") && !holds(&s, "c", "eth0"));
}

#[test]
fn gc_with_malformed_attachments_is_code_6_and_keeps_leases() {
    let s = Subject::ours();
    s.call(&Call::new("ADD", "a"), "1.1.0", &ipam(), &json!({}))
        .ok();
    let before = s.snapshot();
    for bad in [
        json!("a"),
        json!([{"containerID": 5, "ifname": "eth0"}]),
        json!([{"ifname": "eth0"}]),
    ] {
        assert_eq!(gc(&s, Some(bad)).err_code(), 6);
    }
    assert_eq!(s.snapshot(), before);
    assert!(holds(&s, "a", "eth0"));
}

#[test]
fn status_is_50_exactly_while_a_range_set_is_full() {
    let s = Subject::ours();
    let status = || {
        invoke_env(
            &s.bin,
            &[("CNI_COMMAND", "STATUS")],
            &s.conf("1.1.0", &ipam(), &json!({})),
        )
    };
    assert_eq!(status().status, 0, "empty pool is available");
    // 10.3.0.0/29: .2-.6 usable (5 addresses); the v6 /125 has 6.
    for id in ["a", "b", "c", "d", "e"] {
        assert_eq!(status().status, 0);
        s.call(&Call::new("ADD", id), "1.1.0", &ipam(), &json!({}))
            .ok();
    }
    let out = status();
    assert_eq!(out.err_code(), 50);
    assert_eq!(out.json()["cniVersion"], "1.1.0");
    s.call(&Call::new("DEL", "c"), "1.1.0", &ipam(), &json!({}))
        .ok();
    assert_eq!(status().status, 0);
}

#[test]
fn version_reports_every_supported_version() {
    for asked in ["0.3.1", "1.0.0", "1.1.0"] {
        let out = invoke_env(
            &ours(),
            &[("CNI_COMMAND", "VERSION")],
            &json!({"cniVersion": asked}).to_string(),
        );
        let v = out.ok();
        assert_eq!(v["cniVersion"], asked);
        assert_eq!(
            v["supportedVersions"],
            json!([
                "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"
            ])
        );
    }
}

#[test]
fn results_in_every_version() {
    for ver in ALL_VERSIONS {
        let s = Subject::ours();
        let out = s.call(&Call::new("ADD", "a"), ver, &ipam(), &json!({}));
        let v = out.ok();
        assert_eq!(v["cniVersion"], ver);
        assert_eq!(out.addresses(), ["10.3.0.2/29", "2001:db8:3::2/125"]);
        let has_version = matches!(ver, "0.3.0" | "0.3.1" | "0.4.0");
        if has_ips_list(ver) {
            assert_eq!(v["ips"][0].get("version").is_some(), has_version, "{ver}");
            assert!(v["ips"][0].get("interface").is_none());
            assert!(v.get("interfaces").is_none());
        }
    }
}
