//! A corpus of bad input through the `cnet-ipam` binary: each gives the spec's error JSON
//! with the right code on stdout, a non-zero exit, and leaves the store exactly as it was.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value, json};

fn none() -> Value {
    json!({})
}

fn ipam() -> Value {
    json!({"ranges": [[{"subnet": "10.1.2.0/29"}], [{"subnet": "2001:db8::/120"}]]})
}

/// A subject with one lease held by "keeper" (10.1.2.2, 2001:db8::2).
fn with_keeper() -> Subject {
    let s = Subject::ours();
    let out = s.call(&Call::new("ADD", "keeper"), "1.1.0", &ipam(), &none());
    assert_eq!(out.addresses(), ["10.1.2.2/29", "2001:db8::2/120"]);
    s
}

/// Run `stdin` with `env` against a store holding keeper's lease; assert the code and that the
/// store did not change.
fn rejects(s: &Subject, env: &[(&str, &str)], stdin: &str, code: u64) -> Value {
    let before = s.snapshot();
    let out = invoke_env(&s.bin, env, stdin);
    assert_eq!(out.err_code(), code, "stdin {stdin}: {}", out.stdout);
    assert!(out.stdout.contains("\"cniVersion\""), "{}", out.stdout);
    assert_eq!(s.snapshot(), before, "store changed by {stdin}");
    out.json()
}

fn add_env(id: &str) -> Vec<(&str, &str)> {
    vec![
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", id),
        ("CNI_NETNS", "/var/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
    ]
}

fn keeper_still_holds(s: &Subject) {
    let out = s.call(&Call::new("CHECK", "keeper"), "1.1.0", &ipam(), &none());
    assert_eq!(out.status, 0, "{}", out.stdout);
}

#[test]
fn malformed_json_is_code_6() {
    let s = with_keeper();
    for stdin in ["", "{", "[1,2]", "null", "{\"name\": \"mynet\", }"] {
        rejects(&s, &add_env("c1"), stdin, 6);
    }
    keeper_still_holds(&s);
}

#[test]
fn wrong_types_are_code_6_at_the_top_and_7_in_ipam() {
    let s = with_keeper();
    let dir = s.dir.path().display().to_string();
    let top_level = [
        json!({"cniVersion": "1.1.0", "name": 5, "ipam": {}}),
        json!({"cniVersion": 1, "name": "mynet"}),
        json!({"cniVersion": "1.1.0", "name": "mynet", "dns": "x", "ipam": {}}),
        json!({"cniVersion": "1.1.0", "name": "mynet", "args": {"cni": {"ips": "10.1.2.3"}}, "ipam": {}}),
    ];
    for c in top_level {
        rejects(&s, &add_env("c1"), &c.to_string(), 6);
    }
    let in_ipam = [
        json!("not an object"),
        json!({"type": "cnet-ipam", "dataDir": dir, "ranges": "10.1.2.0/24"}),
        json!({"type": "cnet-ipam", "dataDir": dir, "ranges": [[{"subnet": 5}]]}),
        json!({"type": "cnet-ipam", "dataDir": dir, "subnet": ["10.1.2.0/24"]}),
        json!({"type": "cnet-ipam", "dataDir": 7, "subnet": "10.1.2.0/24"}),
        json!({"type": "cnet-ipam", "dataDir": dir, "subnet": "10.1.2.0/24", "routes": [{"dst": 1}]}),
        json!({"type": "cnet-ipam", "dataDir": dir, "subnet": "10.1.2.0/24", "routes": [{"dst": "0.0.0.0/0", "gw": "nope"}]}),
    ];
    for i in in_ipam {
        let c = json!({"cniVersion": "1.1.0", "name": "mynet", "ipam": i});
        rejects(&s, &add_env("c1"), &c.to_string(), 7);
    }
    keeper_still_holds(&s);
}

#[test]
fn unknown_ipam_keys_are_ignored_like_host_local() {
    let s = with_keeper();
    let mut i = ipam();
    i["frobnicate"] = json!({"deeply": ["odd", 1, null]});
    let out = s.call(&Call::new("ADD", "c1"), "1.1.0", &i, &none());
    assert_eq!(out.addresses(), ["10.1.2.3/29", "2001:db8::3/120"]);
}

#[test]
fn bad_cidrs_ranges_and_names_are_code_7() {
    let s = with_keeper();
    let bad = [
        json!({"subnet": "10.1.2.0/33"}),
        json!({"subnet": "10.1.2.300/24"}),
        json!({"subnet": "banana"}),
        json!({"subnet": "10.1.2.0"}),
        json!({"subnet": "10.1.2.8/24"}),
        json!({"subnet": "10.1.2.0/31"}),
        json!({"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.20", "rangeEnd": "10.1.2.10"}),
        json!({"subnet": "10.1.2.0/24", "rangeEnd": "10.1.3.10"}),
        json!({"ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "10.1.2.128/25"}]]}),
        json!({"ranges": [[{"subnet": "10.1.2.0/24"}, {"subnet": "2001:db8::/64"}]]}),
        json!({"ranges": [[]]}),
        json!({}),
    ];
    for mut b in bad {
        b["type"] = json!("cnet-ipam");
        b["dataDir"] = json!(s.dir.path());
        let c = json!({"cniVersion": "1.1.0", "name": "mynet", "ipam": b});
        rejects(&s, &add_env("c1"), &c.to_string(), 7);
    }
    let c = json!({"cniVersion": "1.1.0", "ipam": ipam()});
    rejects(&s, &add_env("c1"), &c.to_string(), 7);
    let c = json!({"cniVersion": "1.1.0", "name": "my/net", "ipam": ipam()});
    rejects(&s, &add_env("c1"), &c.to_string(), 7);
    keeper_still_holds(&s);
}

#[test]
fn requested_addresses_outside_taken_or_malformed() {
    let s = with_keeper();
    let conf = |top: Value| s.conf("1.1.0", &ipam(), &top);
    // Outside every range set: 7.
    let mut env = add_env("c1");
    env.push(("CNI_ARGS", "IP=192.168.7.7"));
    rejects(&s, &env, &conf(none()), 7);
    rejects(
        &s,
        &add_env("c1"),
        &conf(json!({"args": {"cni": {"ips": ["10.9.9.9"]}}})),
        7,
    );
    // Two addresses for one range set: one is left unused, 7.
    rejects(
        &s,
        &add_env("c1"),
        &conf(json!({"runtimeConfig": {"ips": ["10.1.2.4", "10.1.2.5"]}})),
        7,
    );
    // Held by keeper: plugin-specific 100; the gateway: 100 too.
    let v = rejects(
        &s,
        &add_env("c1"),
        &conf(json!({"args": {"cni": {"ips": ["10.1.2.2"]}}})),
        100,
    );
    assert!(v["details"].as_str().unwrap().contains("10.1.2.2"));
    rejects(
        &s,
        &add_env("c1"),
        &conf(json!({"args": {"cni": {"ips": ["10.1.2.1"]}}})),
        100,
    );
    // Malformed in CNI_ARGS: 4 (an environment variable); in the config: 7.
    let mut env = add_env("c1");
    env.push(("CNI_ARGS", "IP=10.1.2.x"));
    rejects(&s, &env, &conf(none()), 4);
    rejects(
        &s,
        &add_env("c1"),
        &conf(json!({"args": {"cni": {"ips": ["10.1.2.x"]}}})),
        7,
    );
    // Unknown CNI_ARGS key without IgnoreUnknown: 4.
    let mut env = add_env("c1");
    env.push(("CNI_ARGS", "FOO=bar"));
    rejects(&s, &env, &conf(none()), 4);
    // ADD twice for one owner: plugin-specific 101.
    rejects(&s, &add_env("keeper"), &conf(none()), 101);
    keeper_still_holds(&s);
}

#[test]
fn exhausted_pool_is_code_50_and_all_or_nothing() {
    let s = with_keeper();
    // 10.1.2.0/29: .2-.6 usable; keeper holds .2.
    for id in ["c1", "c2", "c3", "c4"] {
        s.call(&Call::new("ADD", id), "1.1.0", &ipam(), &none())
            .ok();
    }
    let v = rejects(&s, &add_env("c5"), &s.conf("1.1.0", &ipam(), &none()), 50);
    assert!(v["details"].as_str().unwrap().contains("range set 0"));
    // The IPv6 set still had room, but nothing was taken there either (checked by the
    // unchanged store) and STATUS reports the pool cannot serve ADD.
    let status = s.call(&Call::new("STATUS", ""), "1.1.0", &ipam(), &none());
    assert_eq!(status.err_code(), 50);
    s.call(&Call::new("DEL", "c1"), "1.1.0", &ipam(), &none())
        .ok();
    s.call(&Call::new("STATUS", ""), "1.1.0", &ipam(), &none())
        .ok();
}

#[test]
fn missing_data_dir_is_created_unwritable_one_is_code_5() {
    let s = Subject::ours();
    let nested = s.dir.path().join("a/b/c");
    let c = conf("1.1.0", "cnet-ipam", &nested, ipam(), none());
    let out = invoke(&s.bin, &Call::new("ADD", "c1"), &c);
    assert_eq!(out.addresses(), ["10.1.2.2/29", "2001:db8::2/120"]);
    // A data dir below a regular file cannot exist.
    let file = s.dir.path().join("plainfile");
    std::fs::write(&file, "x").unwrap();
    let below = file.join("data");
    let before = s.snapshot();
    let c = conf("1.1.0", "cnet-ipam", &below, ipam(), none());
    for cmd in ["ADD", "CHECK"] {
        let out = invoke(&s.bin, &Call::new(cmd, "c2"), &c);
        assert_eq!(out.err_code(), 5, "{cmd}: {}", out.stdout);
    }
    assert_eq!(s.snapshot(), before);
    assert!(!below.exists());
}

fn journal(s: &Subject) -> std::path::PathBuf {
    let dir = s.dir.path().join("mynet");
    std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .ends_with(".journal")
        })
        .unwrap_or_else(|| panic!("no journal in {}", dir.display()))
}

#[test]
fn corrupt_state_is_code_6_and_never_hands_out_an_address() {
    let s = with_keeper();
    let path = journal(&s);
    let text = std::fs::read_to_string(&path).unwrap();
    // Damage a committed record in place (same length, so it is not a torn tail).
    let damaged = text.replacen("10.1.2.2", "10.1.2.X", 1);
    assert_ne!(damaged, text);
    std::fs::write(&path, &damaged).unwrap();
    for id in ["c1", "keeper"] {
        rejects(&s, &add_env(id), &s.conf("1.1.0", &ipam(), &none()), 6);
    }
    // Requests for keeper's address are refused too (no double hand-out).
    rejects(
        &s,
        &add_env("c2"),
        &s.conf(
            "1.1.0",
            &ipam(),
            &json!({"args": {"cni": {"ips": ["10.1.2.2"]}}}),
        ),
        6,
    );
    // Garbage instead of the journal.
    std::fs::write(&path, "this is not a lease journal\n{{{{\n").unwrap();
    rejects(&s, &add_env("c1"), &s.conf("1.1.0", &ipam(), &none()), 6);
    let mut gc_env = vec![("CNI_COMMAND", "GC"), ("CNI_PATH", "/usr/lib/cni")];
    rejects(&s, &gc_env, &s.conf("1.1.0", &ipam(), &none()), 6);
    gc_env[0].1 = "STATUS";
    rejects(&s, &gc_env, &s.conf("1.1.0", &ipam(), &none()), 6);
}

#[test]
fn bad_container_id_ifname_and_missing_env_are_code_4() {
    let s = with_keeper();
    let c = s.conf("1.1.0", &ipam(), &none());
    for id in ["-lead", "has space", "a/b", "ünïcode"] {
        rejects(&s, &add_env(id), &c, 4);
    }
    for ifname in [
        "",
        "waytoolonginterfacename",
        "a/b",
        "a:b",
        "a b",
        ".",
        "..",
    ] {
        let mut env = add_env("c1");
        env.retain(|(k, _)| *k != "CNI_IFNAME");
        env.push(("CNI_IFNAME", ifname));
        rejects(&s, &env, &c, 4);
    }
    for missing in ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
        let mut env = add_env("c1");
        env.retain(|(k, _)| *k != missing);
        let v = rejects(&s, &env, &c, 4);
        assert!(v["msg"].as_str().unwrap().contains(missing), "{v}");
    }
    let mut env = add_env("c1");
    env[0].1 = "FROBNICATE";
    rejects(&s, &env, &c, 4);
    // GC needs CNI_PATH.
    rejects(&s, &[("CNI_COMMAND", "GC")], &c, 4);
    keeper_still_holds(&s);
}

#[test]
fn unsupported_versions_are_code_1() {
    let s = with_keeper();
    for v in ["2.0.0", "0.5.0", "banana"] {
        rejects(&s, &add_env("c1"), &s.conf(v, &ipam(), &none()), 1);
    }
    // CHECK needs 0.4.0, GC and STATUS need 1.1.0.
    let mut env = add_env("keeper");
    env[0].1 = "CHECK";
    rejects(&s, &env, &s.conf("0.3.1", &ipam(), &none()), 1);
    for cmd in ["GC", "STATUS"] {
        let env = [("CNI_COMMAND", cmd), ("CNI_PATH", "/usr/lib/cni")];
        rejects(&s, &env, &s.conf("1.0.0", &ipam(), &none()), 1);
    }
    // Two IPv4 range sets cannot be expressed in 0.2.0.
    let two_v4 = json!({"ranges": [[{"subnet": "10.1.2.0/29"}], [{"subnet": "10.1.3.0/29"}]]});
    let out = s.call(&Call::new("ADD", "c1"), "0.2.0", &two_v4, &none());
    assert_ne!(out.status, 0);
    keeper_still_holds(&s);
}

#[test]
fn locked_store_is_code_11_try_again_later() {
    let s = with_keeper();
    let lock = std::fs::read_dir(s.dir.path().join("mynet"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().ends_with(".lock"))
        .expect("lock file");
    let f = std::fs::File::open(&lock).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a valid descriptor we own.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) }, 0);
    rejects(&s, &add_env("c1"), &s.conf("1.1.0", &ipam(), &none()), 11);
    drop(f);
    s.call(&Call::new("ADD", "c1"), "1.1.0", &ipam(), &none())
        .ok();
}

#[test]
fn del_with_bad_input_changes_nothing() {
    let s = with_keeper();
    let mut env = add_env("keeper");
    env[0].1 = "DEL";
    rejects(&s, &env, "{", 6);
    rejects(&s, &env, &s.conf("9.9.9", &ipam(), &none()), 1);
    let bad = json!({"subnet": "10.1.2.0/33"});
    rejects(&s, &env, &s.conf("1.1.0", &bad, &none()), 7);
    keeper_still_holds(&s);
}
