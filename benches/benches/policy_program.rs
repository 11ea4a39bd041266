//! Bench `policy_program`: the cnet-policy compiler and engine at scale, beside the iptables
//! per-address-pair baseline (Azure NPM's first design) loaded with `iptables-legacy-restore`
//! inside a network namespace, for the same policies (`cnet_benches::workload`).
//!
//! Per scale (pods x policies, 1k/10k x 100/1k): compile time, full program time (compile +
//! one atomic netlink batch into a fresh namespace), one-pod add and remove (engine update +
//! sync: an element-only batch), rules and set elements in the kernel's table, and peak RSS of
//! this process (`VmHWM`). The per-pair baseline is loaded only while its rule count stays
//! under a cap (it grows with pods x peers); above it the computed rule count is printed.
//!
//! `cargo bench -p cnet-benches --bench policy_program`; under `cargo test` a smoke pass.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use cnet_benches::workload::Workload;
use cnet_benches::{measuring, median};
use cnet_policy::compile::{CompileOptions, Mode, compile};
use cnet_testsupport::NetNs;

const PAIR_RULE_CAP: usize = 300_000;

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn ifname(i: usize) -> String {
    format!("cnet{i:08x}")
}

fn restore(ns: &NetNs, text: &str) -> Result<f64, String> {
    ns.in_netns(|| {
        let t = Instant::now();
        let mut child = Command::new("iptables-legacy-restore")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("iptables-legacy-restore: {e}"))?;
        child
            .stdin
            .take()
            .ok_or("stdin")?
            .write_all(text.as_bytes())
            .map_err(|e| e.to_string())?;
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(ms(t))
    })
}

fn scale(pods: usize, policies: usize, reps: usize) {
    let w = Workload::new(pods, policies);
    let mut engine = match w.engine(&ifname) {
        Ok(e) => e,
        Err(e) => {
            println!("{pods} x {policies}: engine: {e}");
            return;
        }
    };
    // Compile (pure).
    let set = match engine.policy_set() {
        Ok(s) => s.clone(),
        Err(e) => {
            println!("{pods} x {policies}: {e}");
            return;
        }
    };
    let mut compile_ms = Vec::new();
    let mut rs = None;
    for _ in 0..reps {
        let t = Instant::now();
        let r = compile(
            &set,
            engine.inventory(),
            engine.attachments(),
            &CompileOptions::new(Mode::Transparent),
        );
        compile_ms.push(ms(t));
        rs = r.ok();
    }
    let Some(rs) = rs else {
        println!("{pods} x {policies}: compile failed");
        return;
    };
    let t = rs.tables.values().next();
    let (rules, elements) = t.map_or((0, 0), |t| (t.rule_count(), t.element_count()));
    // Full program into a fresh namespace, reps times.
    let mut full_ms = Vec::new();
    for _ in 0..reps {
        let ns = NetNs::new("ppf");
        let mut e = match w.engine(&ifname) {
            Ok(e) => e,
            Err(_) => return,
        };
        let r = ns.in_netns(|| {
            let t = Instant::now();
            e.sync().map(|_| ms(t))
        });
        match r {
            Ok(v) => full_ms.push(v),
            Err(err) => {
                println!("{pods} x {policies}: sync: {err}");
                return;
            }
        }
    }
    // One-pod add/remove on a programmed engine.
    let ns = NetNs::new("ppu");
    if let Err(err) = ns.in_netns(|| engine.sync()) {
        println!("{pods} x {policies}: sync: {err}");
        return;
    }
    let (mut add_ms, mut del_ms) = (Vec::new(), Vec::new());
    for k in 0..reps.max(3) {
        let p = w.extra_pod();
        let ep = Workload::endpoint(&p);
        let id = ep.id();
        let t = Instant::now();
        engine.upsert_endpoint(ep, Some(format!("cnetx{k:07x}")));
        if engine.sync().is_err() {
            return;
        }
        add_ms.push(ms(t));
        let t = Instant::now();
        engine.remove_endpoint(&id);
        if engine.sync().is_err() {
            return;
        }
        del_ms.push(ms(t));
    }
    let kernel = ns.run(&["nft", "list", "table", "inet", "cnet"]);
    let kernel_rules = kernel
        .lines()
        .filter(|l| {
            let l = l.trim();
            !l.is_empty()
                && !l.starts_with("type ")
                && !l.starts_with("flags ")
                && !l.starts_with("elements")
                && !l.starts_with("chain ")
                && !l.starts_with("set ")
                && !l.starts_with("map ")
                && !l.starts_with("table ")
                && l != "}"
                && !l.ends_with(',')
                && !l.ends_with('}')
        })
        .count();
    // Baseline: per-address-pair iptables rules.
    let pair_rules = w.per_pair_rule_count();
    let baseline = if pair_rules <= PAIR_RULE_CAP {
        let bns = NetNs::new("ppb");
        let mut v: Vec<f64> = (0..reps.min(3))
            .filter_map(|_| {
                let _ = bns.exec(&["iptables-legacy", "-F"]);
                let _ = bns.exec(&["iptables-legacy", "-X"]);
                restore(&bns, &w.per_pair_restore()).ok()
            })
            .collect();
        median(&mut v)
    } else {
        None
    };
    let full = median(&mut full_ms).unwrap_or(f64::NAN);
    println!(
        "{pods:>6} pods x {policies:>5} policies: compile {:.1} ms, full program {:.1} ms, \
         pod add {:.2} ms, pod remove {:.2} ms; IR {rules} rules, {elements} elements \
         (kernel ~{kernel_rules} rule lines); VmHWM {} MiB",
        median(&mut compile_ms).unwrap_or(f64::NAN),
        full,
        median(&mut add_ms).unwrap_or(f64::NAN),
        median(&mut del_ms).unwrap_or(f64::NAN),
        vm_hwm_kib() / 1024
    );
    match baseline {
        Some(b) => println!(
            "        iptables per-pair: {pair_rules} rules, restore {b:.1} ms -> cnet is {:.1}x faster",
            b / full
        ),
        None => println!(
            "        iptables per-pair: {pair_rules} rules (over the {PAIR_RULE_CAP} cap: not loaded; \
             see bench policy_baselines)"
        ),
    }
}

fn main() {
    if !cnet_testsupport::privileged("policy_program") {
        return;
    }
    if !measuring() {
        scale(200, 20, 1);
        return;
    }
    for (pods, policies) in [(1_000, 100), (1_000, 1_000), (10_000, 100), (10_000, 1_000)] {
        scale(pods, policies, 5);
    }
}
