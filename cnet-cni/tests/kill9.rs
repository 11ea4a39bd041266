//! `kill -9` of `cnet-ipam` processes at random instants during ADD: an address whose ADD
//! returned is never handed to anyone else, and DEL/GC clean up after the killed ones.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn killed_adds_never_cause_double_allocation() {
    let s = Subject::ours();
    let ipam = json!({"ranges": [[{"subnet": "10.9.0.0/26"}]]});
    let conf = s.conf("1.1.0", &ipam, &json!({}));
    let mut held: HashMap<String, String> = HashMap::new(); // address -> owner
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..40 {
        // A victim ADD, killed after a pseudo-random delay (0..3 ms).
        let victim = format!("victim{round}");
        let mut child = Command::new(&s.bin)
            .env_clear()
            .env("CNI_COMMAND", "ADD")
            .env("CNI_CONTAINERID", &victim)
            .env("CNI_NETNS", DEFAULT_NETNS)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.as_bytes())
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_micros(seed % 3000));
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            // It finished before the kill: its lease counts.
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let a = v["ips"][0]["address"].as_str().unwrap().to_string();
            assert!(
                held.insert(a.clone(), victim.clone()).is_none(),
                "{a} twice"
            );
        }
        // A survivor ADD right after.
        let id = format!("ok{round}");
        let out = s.call(&Call::new("ADD", &id), "1.1.0", &ipam, &json!({}));
        for a in out.addresses() {
            if let Some(prev) = held.insert(a.clone(), id.clone()) {
                panic!("{a} handed to {id} while held by {prev}");
            }
        }
        // Keep the pool from filling: release survivors now and then.
        if round % 3 == 2 {
            let old = format!("ok{}", round - 2);
            s.call(&Call::new("DEL", &old), "1.1.0", &ipam, &json!({}))
                .ok();
            held.retain(|_, o| *o != old);
        }
    }
    // Every lease a survivor was told about is still there.
    for owner in held.values() {
        assert_eq!(
            s.call(&Call::new("CHECK", owner), "1.1.0", &ipam, &json!({}))
                .status,
            0,
            "{owner} lost its lease"
        );
    }
    // GC keeping only the known holders frees whatever killed ADDs left behind; then
    // releasing the holders empties the pool: 61 fresh owners fit again.
    let valid: Vec<_> = held
        .values()
        .map(|o| json!({"containerID": o, "ifname": "eth0"}))
        .collect();
    let gc_conf = s.conf("1.1.0", &ipam, &json!({"cni.dev/valid-attachments": valid}));
    invoke_env(
        &s.bin,
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/usr/lib/cni")],
        &gc_conf,
    )
    .ok();
    for owner in held.values() {
        s.call(&Call::new("DEL", owner), "1.1.0", &ipam, &json!({}))
            .ok();
    }
    for i in 0..61 {
        s.call(
            &Call::new("ADD", &format!("fresh{i}")),
            "1.1.0",
            &ipam,
            &json!({}),
        )
        .ok();
    }
}
