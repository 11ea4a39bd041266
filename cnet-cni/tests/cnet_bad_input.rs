//! A corpus of bad input through the `cnet` binary in a virtual node: each gives the spec's
//! error JSON with the right code and leaves nothing behind (node links and routes, leases,
//! endpoint records, the pod's netns all as before).
#![allow(clippy::unwrap_used)]

mod cnet_lab;

use cnet_lab::*;
use cnet_testsupport::{NetNs, require_priv};
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;

/// Run one bad ADD and check the code and that nothing changed.
fn rejects(lab: &Lab, pod: &NetNs, env: &[(&str, String)], stdin: &[u8], code: u64, what: &str) {
    let pod_before = pod.run(&["ip", "-o", "link", "show"]);
    let out = run_plugin(Some(&lab.node.ns), &cnet_bin(), env, stdin);
    assert_eq!(out.versioned_err_code(), code, "{what}: {}", out.stdout);
    assert_eq!(lab.node.snapshot(), lab.baseline, "{what}: node changed");
    assert!(lab.leases().is_empty(), "{what}: lease left");
    assert_eq!(lab.endpoints(), 0, "{what}: record left");
    assert_eq!(
        pod.run(&["ip", "-o", "link", "show"]),
        pod_before,
        "{what}: pod changed"
    );
}

fn patched(lab: &Lab, patch: Value) -> Vec<u8> {
    lab.conf_with(&patch)
}

#[test]
fn bad_configs() {
    require_priv!();
    let lab = Lab::new("transparent");
    let pod = lab.node.pod();
    let env = lab.env("ADD", "bad1", Some(&pod.path()));
    let cases: Vec<(&str, Vec<u8>, u64)> = vec![
        ("empty stdin", b"".to_vec(), 6),
        (
            "truncated JSON",
            b"{\"cniVersion\": \"1.1.0\", \"name\"".to_vec(),
            6,
        ),
        ("not an object", b"[1, 2]".to_vec(), 6),
        ("name is a number", patched(&lab, json!({"name": 5})), 6),
        ("mode is a number", patched(&lab, json!({"mode": 3})), 6),
        ("mtu is a string", patched(&lab, json!({"mtu": "big"})), 6),
        ("policy is a number", patched(&lab, json!({"policy": 1})), 6),
        (
            "dns is a string",
            patched(&lab, json!({"dns": "8.8.8.8"})),
            6,
        ),
        ("unknown mode", patched(&lab, json!({"mode": "vxlan"})), 7),
        ("mtu too small", patched(&lab, json!({"mtu": 20})), 7),
        (
            "bad bridge name",
            patched(&lab, json!({"mode": "bridge", "bridge": "a/b"})),
            7,
        ),
        (
            "no ipam",
            {
                let mut c = lab.conf.clone();
                c.as_object_mut().unwrap().remove("ipam");
                c.to_string().into_bytes()
            },
            7,
        ),
        (
            "ipam without ranges",
            patched(&lab, json!({"ipam": {"type": "cnet-ipam"}})),
            7,
        ),
        (
            "ipam subnet garbage",
            patched(
                &lab,
                json!({"ipam": {"type": "cnet-ipam", "subnet": "10.0.0.0/99"}}),
            ),
            7,
        ),
        (
            "missing name",
            {
                let mut c = lab.conf.clone();
                c.as_object_mut().unwrap().remove("name");
                c.to_string().into_bytes()
            },
            7,
        ),
        (
            "bad cniVersion",
            patched(&lab, json!({"cniVersion": "9.9.9"})),
            1,
        ),
        (
            "cniVersion not a version",
            patched(&lab, json!({"cniVersion": "one"})),
            1,
        ),
        (
            "unknown label source",
            patched(&lab, json!({"policy": {"labels": "maybe"}})),
            7,
        ),
        (
            "bad runtime labels",
            patched(&lab, json!({"runtimeConfig": {"labels": 3}})),
            6,
        ),
        (
            "bad requested ip",
            patched(&lab, json!({"args": {"cni": {"ips": ["10.99.0.5"]}}})),
            7,
        ),
        (
            "ipam plugin missing",
            patched(&lab, json!({"ipam": {"type": "no-such-ipam"}})),
            5,
        ),
        (
            "ipam type with a path",
            patched(&lab, json!({"ipam": {"type": "../../bin/sh"}})),
            7,
        ),
    ];
    for (what, stdin, code) in cases {
        rejects(&lab, &pod, &env, &stdin, code, what);
    }
}

#[test]
fn bad_environments() {
    require_priv!();
    let lab = Lab::new("transparent");
    let pod = lab.node.pod();
    let conf = lab.conf_with(&json!({}));
    let base = lab.env("ADD", "bad2", Some(&pod.path()));
    let without = |k: &str| -> Vec<(&str, String)> {
        base.iter().filter(|(x, _)| *x != k).cloned().collect()
    };
    let with = |k: &'static str, v: &str| -> Vec<(&str, String)> {
        let mut e: Vec<(&str, String)> = base.iter().filter(|(x, _)| *x != k).cloned().collect();
        e.push((k, v.to_string()));
        e
    };
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, u64);
    let cases: Vec<Case<'_>> = vec![
        ("no CNI_COMMAND", without("CNI_COMMAND"), 4),
        ("unknown command", with("CNI_COMMAND", "FROB"), 4),
        ("no CNI_NETNS", without("CNI_NETNS"), 4),
        ("no CNI_IFNAME", without("CNI_IFNAME"), 4),
        ("no CNI_CONTAINERID", without("CNI_CONTAINERID"), 4),
        ("ifname with slash", with("CNI_IFNAME", "eth/0"), 4),
        (
            "ifname too long",
            with("CNI_IFNAME", "averyveryverylongname"),
            4,
        ),
        ("ifname dot", with("CNI_IFNAME", "."), 4),
        (
            "container id starts with dash",
            with("CNI_CONTAINERID", "-abc"),
            4,
        ),
        ("container id with space", with("CNI_CONTAINERID", "a b"), 4),
        ("malformed CNI_ARGS", with("CNI_ARGS", "K8S_POD_NAME"), 4),
        ("unknown CNI_ARGS key", with("CNI_ARGS", "FOO=bar"), 4),
        (
            "netns does not exist",
            with("CNI_NETNS", "/var/run/netns/cnet-no-such-ns"),
            3,
        ),
    ];
    for (what, env, code) in cases {
        rejects(&lab, &pod, &env, &conf, code, what);
    }
}

/// A delegated IPAM that prints an error (its code must reach the runtime) and one that
/// crashes without output (code 5); neither leaves anything behind.
#[test]
fn failing_ipam_delegates() {
    require_priv!();
    let lab = Lab::with_ipam("transparent", json!({"type": "failing-ipam"}));
    let pod = lab.node.pod();
    let bin = tempfile::tempdir().unwrap();
    let script = bin.path().join("failing-ipam");
    std::fs::write(
        &script,
        "#!/bin/sh\ncat >/dev/null\necho '{\"cniVersion\":\"1.1.0\",\"code\":42,\"msg\":\"no addresses today\"}'\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let crash = bin.path().join("crashing-ipam");
    std::fs::write(&crash, "#!/bin/sh\nkill -9 $$\n").unwrap();
    std::fs::set_permissions(&crash, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut env = lab.env("ADD", "bad3", Some(&pod.path()));
    env.retain(|(k, _)| *k != "CNI_PATH");
    env.push((
        "CNI_PATH",
        format!("{}:{}", bin.path().display(), cni_path()),
    ));
    let conf = lab.conf_with(&json!({}));
    rejects(&lab, &pod, &env, &conf, 42, "delegate error");
    let conf = lab.conf_with(&json!({"ipam": {"type": "crashing-ipam"}}));
    rejects(&lab, &pod, &env, &conf, 5, "delegate crash");
}

/// A failure after the address was allocated (the pod already has an `eth0`): the lease, the
/// host link and the record are all undone.
#[test]
fn failure_after_allocation_is_undone() {
    require_priv!();
    let lab = Lab::new("transparent");
    let pod = lab.node.pod();
    pod.run(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other0",
    ]);
    let env = lab.env("ADD", "bad4", Some(&pod.path()));
    rejects(
        &lab,
        &pod,
        &env,
        &lab.conf_with(&json!({})),
        103,
        "eth0 exists",
    );
    // The same container id can be added once the conflict is gone.
    pod.run(&["ip", "link", "del", "eth0"]);
    lab.add("bad4", &pod).ok();
    lab.del("bad4", Some(&pod)).ok();
    lab.assert_clean();
}
