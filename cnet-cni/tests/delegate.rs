//! Delegation (spec section 4): executing an IPAM plugin found in `CNI_PATH` with the same
//! environment and stdin, with the real host-local and with our own binary.
#![allow(clippy::unwrap_used)]

mod common;

use cnet_cni::delegate::{delegate, delegate_add, find_plugin};
use cnet_cni::{Command, Env, ErrorCode, Version};
use common::*;
use serde_json::json;
use std::collections::HashMap;

fn env(cmd: &str, id: &str, path: &str) -> Env {
    let m: HashMap<&str, String> = [
        ("CNI_COMMAND", cmd.to_string()),
        ("CNI_CONTAINERID", id.to_string()),
        ("CNI_NETNS", "/var/run/netns/x".to_string()),
        ("CNI_IFNAME", "eth0".to_string()),
        ("CNI_PATH", path.to_string()),
    ]
    .into_iter()
    .collect();
    Env::from_lookup(|k| m.get(k).cloned()).unwrap()
}

fn conf(plugin: &str, dir: &std::path::Path) -> String {
    json!({
        "cniVersion": "1.0.0", "name": "dnet", "type": "bridge",
        "ipam": {"type": plugin, "dataDir": dir, "subnet": "10.5.0.0/24",
                 "routes": [{"dst": "0.0.0.0/0"}]}
    })
    .to_string()
}

#[test]
fn delegates_add_and_del_to_host_local_and_to_cnet_ipam() {
    let bin_dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(ours(), bin_dir.path().join("cnet-ipam")).unwrap();
    let path = format!("{}:/usr/lib/cni", bin_dir.path().display());
    let mut plugins = vec!["cnet-ipam"];
    if have_host_local() {
        plugins.push("host-local");
    }
    for plugin in plugins {
        let data = tempfile::tempdir().unwrap();
        let stdin = conf(plugin, data.path());
        let add = env("ADD", "c1", &path);
        let r = delegate_add(plugin, &add, stdin.as_bytes(), Version::V1_0_0).unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.5.0.2/24", "{plugin}");
        assert_eq!(r.ips[0].gateway.unwrap().to_string(), "10.5.0.1");
        assert_eq!(r.routes[0].dst.to_string(), "0.0.0.0/0");
        // The same owner again: the delegate's error comes back as a CniError.
        let e = delegate_add(plugin, &add, stdin.as_bytes(), Version::V1_0_0).unwrap_err();
        assert!(!e.msg.is_empty(), "{plugin}");
        delegate(
            plugin,
            Command::Check,
            &env("CHECK", "c1", &path),
            stdin.as_bytes(),
        )
        .unwrap();
        delegate(
            plugin,
            Command::Del,
            &env("DEL", "c1", &path),
            stdin.as_bytes(),
        )
        .unwrap();
        assert!(
            delegate(
                plugin,
                Command::Check,
                &env("CHECK", "c1", &path),
                stdin.as_bytes()
            )
            .is_err()
        );
    }
}

#[test]
fn delegate_error_codes_pass_through() {
    let bin_dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(ours(), bin_dir.path().join("cnet-ipam")).unwrap();
    let path = bin_dir.path().display().to_string();
    let data = tempfile::tempdir().unwrap();
    let bad = conf("cnet-ipam", data.path()).replace("10.5.0.0/24", "10.5.0.0/33");
    let e = delegate_add(
        "cnet-ipam",
        &env("ADD", "c1", &path),
        bad.as_bytes(),
        Version::V1_0_0,
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidNetworkConfig);
    let e = find_plugin("no-such-plugin", &[bin_dir.path().to_path_buf()]).unwrap_err();
    assert_eq!(e.code, ErrorCode::IoFailure);
}
