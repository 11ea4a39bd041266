//! The `cnet` binary under concurrency and `kill -9`, inside a virtual node:
//! - 100 ADDs in parallel as separate processes: 100 distinct addresses, no error; then 100
//!   DELs in parallel: nothing left (links, routes, leases, state entries);
//! - ADDs killed at random instants, each followed by DEL (and, separately, by GC): nothing
//!   leaks and no address is ever held by two attachments.
#![allow(clippy::unwrap_used)]

mod cnet_lab;

use cnet_lab::*;
use cnet_testsupport::{NetNs, require_priv};
use serde_json::json;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

#[test]
fn hundred_parallel_adds_then_hundred_parallel_dels() {
    require_priv!();
    let lab = Lab::new("transparent");
    let n = 100;
    let pods: Vec<NetNs> = (0..n).map(|_| lab.node.pod()).collect();
    let conf = lab.conf_with(&json!({}));
    let children: Vec<_> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| {
            spawn_plugin(
                Some(&lab.node.ns),
                &cnet_bin(),
                &lab.env("ADD", &format!("par{i}"), Some(&p.path())),
                &conf,
            )
        })
        .collect();
    let mut seen: HashMap<IpAddr, usize> = HashMap::new();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        let out = Out {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        for ip in result_ips(&out.ok()) {
            if let Some(j) = seen.insert(ip, i) {
                panic!("{ip} handed to par{j} and par{i}");
            }
        }
    }
    assert_eq!(seen.len(), 2 * n);
    assert_eq!(lab.endpoints(), n);
    assert_eq!(lab.leases().len(), n);
    assert_eq!(lab.host_links().len(), n);
    // Spot-check traffic between the first and the last pod.
    let echo = pods[n - 1].tcp_echo();
    let last = seen
        .iter()
        .find(|(ip, i)| **i == n - 1 && ip.is_ipv4())
        .map(|(ip, _)| *ip)
        .unwrap();
    assert!(pods[0].tcp_ok(last, echo.port()));
    drop(echo);
    let children: Vec<_> = pods
        .iter()
        .enumerate()
        .map(|(i, p)| {
            spawn_plugin(
                Some(&lab.node.ns),
                &cnet_bin(),
                &lab.env("DEL", &format!("par{i}"), Some(&p.path())),
                &conf,
            )
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    lab.assert_clean();
}

/// One ADD killed after `delay`; returns the addresses it reported if it finished first.
fn killed_add(lab: &Lab, cid: &str, pod: &NetNs, delay: Duration) -> Option<Vec<IpAddr>> {
    let mut child = spawn_plugin(
        Some(&lab.node.ns),
        &cnet_bin(),
        &lab.env("ADD", cid, Some(&pod.path())),
        &lab.conf_with(&json!({})),
    );
    std::thread::sleep(delay);
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    out.status.success().then(|| {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        result_ips(&v)
    })
}

/// The addresses every attachment holds, by container id: from leases, links' routes and
/// records; asserts no address is held by two attachments.
fn assert_no_double_holding(lab: &Lab) {
    let mut holder: HashMap<IpAddr, String> = HashMap::new();
    for l in lab.leases() {
        for ip in l.ips() {
            if let Some(prev) = holder.insert(ip, l.owner.container_id.clone()) {
                panic!("{ip} leased to {prev} and {}", l.owner.container_id);
            }
        }
    }
    let st = lab.state();
    for e in st["endpoints"].as_array().unwrap() {
        let cid = e["containerId"].as_str().unwrap();
        for a in e["addresses"].as_array().unwrap() {
            let ip = a
                .as_str()
                .unwrap()
                .parse::<ipnetwork::IpNetwork>()
                .unwrap()
                .ip();
            if let Some(h) = holder.get(&ip) {
                assert_eq!(h, cid, "{ip} recorded for {cid} but leased to {h}");
            }
        }
    }
}

fn kill_rounds(then_gc: bool) {
    let lab = Lab::new(if then_gc { "bridge" } else { "transparent" });
    // A reproducible stream of delays.
    let mut rng = cnet_testsupport::XorShift(if then_gc {
        0xdead_beef
    } else {
        0x9e37_79b9_7f4a_7c15
    });
    // Survivors hold addresses throughout; a killed ADD must never take theirs.
    // Their ADD times set the range of kill delays (0 to 1.5 times an ADD), so kills land
    // before, during and after each step of ADD.
    let mut span = Duration::ZERO;
    let survivors: Vec<(String, NetNs, Vec<IpAddr>)> = (0..3)
        .map(|i| {
            let pod = lab.node.pod();
            let cid = format!("keep{i}");
            let t = std::time::Instant::now();
            let ips = result_ips(&lab.add(&cid, &pod).ok());
            span = span.max(t.elapsed());
            (cid, pod, ips)
        })
        .collect();
    let span_us = (span.as_micros() as u64 * 3 / 2).max(1000);
    let keep: Vec<&str> = survivors.iter().map(|(c, _, _)| c.as_str()).collect();
    let mut finished = 0;
    for round in 0..30 {
        let pod = lab.node.pod();
        let cid = format!("victim{round}");
        let delay = Duration::from_micros(rng.next() % span_us);
        if let Some(ips) = killed_add(&lab, &cid, &pod, delay) {
            finished += 1;
            for (_, _, held) in &survivors {
                assert!(
                    ips.iter().all(|ip| !held.contains(ip)),
                    "{ips:?} vs {held:?}"
                );
            }
        }
        assert_no_double_holding(&lab);
        if then_gc {
            lab.gc(&keep).ok();
        } else {
            lab.del(&cid, Some(&pod)).ok();
        }
        // Nothing of the victim is left; the survivors are intact.
        let links = lab.host_links();
        assert_eq!(links.len(), survivors.len(), "round {round}: {links:?}");
        assert_eq!(lab.leases().len(), survivors.len(), "round {round}");
        assert_eq!(lab.endpoints(), survivors.len(), "round {round}");
    }
    eprintln!("{finished} of 30 killed ADDs had completed before the kill");
    // The survivors still work and pass CHECK.
    let echo = survivors[1].1.tcp_echo();
    assert!(survivors[0].1.tcp_ok(survivors[1].2[0], echo.port()));
    drop(echo);
    for (cid, pod, _) in &survivors {
        lab.del(cid, Some(pod)).ok();
    }
    lab.assert_clean();
}

#[test]
fn killed_adds_then_del_leak_nothing() {
    require_priv!();
    kill_rounds(false);
}

#[test]
fn killed_adds_then_gc_leak_nothing() {
    require_priv!();
    kill_rounds(true);
}
