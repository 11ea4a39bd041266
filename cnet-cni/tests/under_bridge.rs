//! `cnet-ipam` as the IPAM plugin of the real reference `bridge` plugin (/usr/lib/cni/bridge),
//! run inside a "node" network namespace exactly as a runtime runs it: two pods get our
//! addresses (IPv4 and IPv6), reach each other, and DEL releases their leases.
#![allow(clippy::unwrap_used)]

mod common;

use cnet_testsupport::{NetNs, require_priv};
use common::*;
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::process::Stdio;

const BRIDGE: &str = "/usr/lib/cni/bridge";

/// Run the bridge plugin inside `node` for `pod`.
fn bridge(node: &NetNs, cni_path: &str, cmd: &str, id: &str, pod: &NetNs, conf: &str) -> Out {
    let pod_path = pod.path().display().to_string();
    let mut c = node.command(&[BRIDGE]);
    c.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", &pod_path)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Out {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn bridge_conf(data_dir: &Path, extra: Value) -> String {
    let mut c = json!({
        "cniVersion": "1.0.0",
        "name": "cnetbr",
        "type": "bridge",
        "bridge": "cnbr0",
        "isGateway": true,
        "ipMasq": false,
        "ipam": {
            "type": "cnet-ipam",
            "dataDir": data_dir,
            "ranges": [[{"subnet": "10.88.0.0/24"}], [{"subnet": "fd00:88::/64"}]],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
        }
    });
    if let Value::Object(m) = extra {
        for (k, v) in m {
            c[k] = v;
        }
    }
    c.to_string()
}

/// The lease check, through our binary (CHECK by owner).
fn leased(data_dir: &Path, id: &str) -> bool {
    let conf = bridge_conf(data_dir, json!({}));
    invoke(&ours(), &Call::new("CHECK", id), &conf).status == 0
}

fn ping_eventually(from: &NetNs, addr: &str) -> bool {
    (0..5).any(|_| from.ping(addr))
}

fn addr_of(result: &Value, v4: bool) -> String {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["address"].as_str().unwrap().to_string())
        .find(|a| a.contains('.') == v4)
        .unwrap()
}

fn bare(a: &str) -> &str {
    a.split('/').next().unwrap()
}

#[test]
fn pods_on_the_reference_bridge_get_our_addresses_and_ping_each_other() {
    require_priv!();
    assert!(
        Path::new(BRIDGE).exists(),
        "{BRIDGE} missing: install containernetworking-plugins"
    );
    let data = tempfile::tempdir().unwrap();
    let bin_dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(ours(), bin_dir.path().join("cnet-ipam")).unwrap();
    let cni_path = format!("{}:/usr/lib/cni", bin_dir.path().display());

    let node = NetNs::new("node");
    let pod1 = NetNs::new("pod");
    let pod2 = NetNs::new("pod");
    let conf = bridge_conf(data.path(), json!({}));

    let r1 = bridge(&node, &cni_path, "ADD", "pod-one", &pod1, &conf);
    let r1 = r1.ok();
    let r2 = bridge(&node, &cni_path, "ADD", "pod-two", &pod2, &conf).ok();
    // Our allocation order: the first free addresses after the gateways.
    assert_eq!(addr_of(&r1, true), "10.88.0.2/24");
    assert_eq!(addr_of(&r2, true), "10.88.0.3/24");
    assert_eq!(addr_of(&r1, false), "fd00:88::2/64");
    assert_eq!(addr_of(&r2, false), "fd00:88::3/64");
    // The addresses are on the pods' interfaces, and our store holds the leases.
    assert!(
        pod1.run(&["ip", "-o", "addr", "show", "eth0"])
            .contains("10.88.0.2/24")
    );
    assert!(
        pod2.run(&["ip", "-o", "addr", "show", "eth0"])
            .contains("fd00:88::3/64")
    );
    assert!(leased(data.path(), "pod-one") && leased(data.path(), "pod-two"));

    // Pod to pod, both families; pod to its gateway on the node's bridge.
    assert!(ping_eventually(&pod1, "10.88.0.3"), "pod1 -> pod2 v4");
    assert!(ping_eventually(&pod2, "10.88.0.2"), "pod2 -> pod1 v4");
    assert!(ping_eventually(&pod1, "10.88.0.1"), "pod1 -> gateway");
    assert!(ping_eventually(&pod1, "fd00:88::3"), "pod1 -> pod2 v6");
    assert!(ping_eventually(&pod2, "fd00:88::2"), "pod2 -> pod1 v6");

    // CHECK through the bridge reaches our CHECK with prevResult.
    let mut check_conf: Value = serde_json::from_str(&conf).unwrap();
    check_conf["prevResult"] = r1.clone();
    let ck = bridge(
        &node,
        &cni_path,
        "CHECK",
        "pod-one",
        &pod1,
        &check_conf.to_string(),
    );
    assert_eq!(ck.status, 0, "{} {}", ck.stdout, ck.stderr);

    // DEL releases the lease; a second DEL is fine.
    let mut del_conf: Value = serde_json::from_str(&conf).unwrap();
    del_conf["prevResult"] = r1.clone();
    let del_conf = del_conf.to_string();
    bridge(&node, &cni_path, "DEL", "pod-one", &pod1, &del_conf).ok();
    bridge(&node, &cni_path, "DEL", "pod-one", &pod1, &del_conf).ok();
    assert!(!leased(data.path(), "pod-one"));
    assert!(leased(data.path(), "pod-two"));
    assert!(!pod1.ok(&["ip", "link", "show", "eth0"]));

    // The released addresses can be handed out again (asked for explicitly, since the
    // round-robin order would otherwise move on first).
    let pod3 = NetNs::new("pod");
    let again = bridge_conf(
        data.path(),
        json!({"args": {"cni": {"ips": [bare(&addr_of(&r1, true)), bare(&addr_of(&r1, false))]}}}),
    );
    let r3 = bridge(&node, &cni_path, "ADD", "pod-three", &pod3, &again).ok();
    assert_eq!(addr_of(&r3, true), "10.88.0.2/24");
    assert_eq!(addr_of(&r3, false), "fd00:88::2/64");
    assert!(ping_eventually(&pod3, "10.88.0.3"));

    for (id, pod) in [("pod-two", &pod2), ("pod-three", &pod3)] {
        bridge(&node, &cni_path, "DEL", id, pod, &conf).ok();
        assert!(!leased(data.path(), id));
    }
}
