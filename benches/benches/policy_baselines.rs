//! Bench `policy_baselines` (records as bench `policy`): policy programming at scale, the
//! cnet [`Engine`] (compile + one nftables batch) beside two iptables baselines rendering the
//! same policies with the same verdicts (see `cnet_benches::workload`, whose unit test holds
//! the baselines' logic to the evaluator):
//!
//! - (a) `iptables per-pair`: one rule per (selected pod, peer, port) via
//!   `iptables-legacy-restore` (Azure NPM's first design as the seed describes it);
//! - (b) `ipset+iptables`: `ipset restore` then `iptables-legacy-restore`, one set per
//!   selector, one chain per policy (Calico's and kube-router's iptables designs).
//!
//! Per scale (pods x policies): full program (`full_program`), one pod added and removed
//! (`pod_add`, `pod_remove`), one policy changed (`policy_change`, cnet), cnet's compile time,
//! and the rule and set-element counts. Baseline (a) is programmed only up to a rule cap (it is
//! O(pods²)); above it its rule count is recorded, computed. Each engine works in its own
//! fresh network namespace.
//!
//! `cargo bench -p cnet-benches --bench policy_baselines` (CNET_BENCH_PROFILE=quick|full);
//! under `cargo test` a tiny smoke pass runs.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use cnet_benches::record::Recorder;
use cnet_benches::workload::Workload;
use cnet_testsupport::NetNs;

const IPT: &str = "iptables-legacy-restore";

/// Run a command with `stdin` inside `ns` (from a thread that entered it, so no
/// `ip netns exec` is timed); milliseconds, or the error output.
fn run_in(ns: &NetNs, argv: &[&str], stdin: &str) -> Result<f64, String> {
    ns.in_netns(|| {
        let t = Instant::now();
        let mut child = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{argv:?}: {e}"))?;
        if let Some(mut i) = child.stdin.take() {
            i.write_all(stdin.as_bytes())
                .map_err(|e| format!("{argv:?} stdin: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("{argv:?}: {e}"))?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if out.status.success() {
            Ok(ms)
        } else {
            Err(format!(
                "{argv:?}: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" | ")
            ))
        }
    })
}

fn clear_iptables(ns: &NetNs) {
    let _ = ns.exec(&["iptables-legacy", "-F"]);
    let _ = ns.exec(&["iptables-legacy", "-X"]);
    let _ = ns.exec(&["ipset", "destroy"]);
}

struct Scale {
    pods: usize,
    policies: usize,
}

/// Repetitions of the one-pod and one-policy updates.
fn updates(runs: usize) -> usize {
    runs.max(3)
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn cnet(rec: &mut Recorder, case: &str, s: &Scale, w: &Workload, runs: usize) {
    let eng = "cnet nft";
    let mut e = match w.engine(&|i| format!("cv{i:08x}")) {
        Ok(e) => e,
        Err(err) => return println!("policy: {err}"),
    };
    let mut compile = Vec::new();
    let mut rules = 0;
    let mut elements = 0;
    for _ in 0..runs {
        let t = Instant::now();
        match e.desired() {
            Ok(rs) => {
                compile.push(ms_since(t));
                rules = rs.tables.values().map(|t| t.rule_count()).sum();
                elements = rs.tables.values().map(|t| t.element_count()).sum();
            }
            Err(err) => return println!("policy: cnet compile failed at {case}: {err}"),
        }
    }
    let ns = NetNs::new("bpol");
    let res: Result<_, String> = ns.in_netns(|| {
        let mut full = Vec::new();
        for _ in 0..runs {
            e.forget_programmed();
            let t = Instant::now();
            e.sync().map_err(|err| err.to_string())?;
            full.push(ms_since(t));
        }
        let extra = w.extra_pod();
        let ep = Workload::endpoint(&extra);
        let id = ep.id();
        let (mut add, mut del, mut change) = (Vec::new(), Vec::new(), Vec::new());
        let mut np = w.k8s_policies().into_iter().next();
        for k in 0..updates(runs) {
            let t = Instant::now();
            e.upsert_endpoint(ep.clone(), Some("cvextra".into()));
            e.sync().map_err(|err| err.to_string())?;
            add.push(ms_since(t));
            let t = Instant::now();
            e.remove_endpoint(&id);
            e.sync().map_err(|err| err.to_string())?;
            del.push(ms_since(t));
            if let Some(np) = np.as_mut()
                && let Some(port) = np
                    .spec
                    .ingress
                    .as_mut()
                    .and_then(|i| i.first_mut())
                    .and_then(|r| r.ports.as_mut())
                    .and_then(|p| p.first_mut())
            {
                port.port = Some(cnet_policy::api::IntOrString::Int(9000 + (k % 2) as i32));
                let t = Instant::now();
                e.apply_policy(np).map_err(|err| err.to_string())?;
                e.sync().map_err(|err| err.to_string())?;
                change.push(ms_since(t));
            }
        }
        Ok((full, add, del, change))
    });
    let (full, add, del, change) = match res {
        Ok(v) => v,
        Err(err) => return println!("policy: cnet program failed at {case}: {err}"),
    };
    let p = |r: cnet_benches::record::Entry<'_>| {
        r.param("pods", s.pods as f64)
            .param("policies", s.policies as f64);
    };
    p(rec.samples(case, eng, "compile", "ms", &compile));
    p(rec.samples(case, eng, "full_program", "ms", &full));
    p(rec.samples(case, eng, "pod_add", "ms", &add));
    p(rec.samples(case, eng, "pod_remove", "ms", &del));
    p(rec.samples(case, eng, "policy_change", "ms", &change));
    p(rec.value(case, eng, "rules", "rules", rules as f64));
    p(rec.value(case, eng, "set_elements", "elements", elements as f64));
}

fn ipset(rec: &mut Recorder, case: &str, s: &Scale, w: &mut Workload, runs: usize) {
    let eng = "ipset+iptables";
    let (sets, rules) = w.ipset_restore();
    let ns = NetNs::new("bips");
    let mut full = Vec::new();
    for _ in 0..runs {
        clear_iptables(&ns);
        let r = run_in(&ns, &["ipset", "restore"], &sets)
            .and_then(|a| run_in(&ns, &[IPT], &rules).map(|b| a + b));
        match r {
            Ok(ms) => full.push(ms),
            Err(e) => return println!("policy: ipset+iptables failed at {case}: {e}"),
        }
    }
    let extra = w.extra_pod();
    w.pods.push(extra.clone());
    let (adds, dels) = w.ipset_pod_update(&extra);
    w.pods.pop();
    let (mut add, mut del) = (Vec::new(), Vec::new());
    for _ in 0..updates(runs) {
        match run_in(&ns, &["ipset", "restore", "-exist"], &adds)
            .and_then(|a| run_in(&ns, &["ipset", "restore", "-exist"], &dels).map(|d| (a, d)))
        {
            Ok((a, d)) => {
                add.push(a);
                del.push(d);
            }
            Err(e) => return println!("policy: ipset update failed at {case}: {e}"),
        }
    }
    clear_iptables(&ns);
    let p = |r: cnet_benches::record::Entry<'_>| {
        r.param("pods", s.pods as f64)
            .param("policies", s.policies as f64);
    };
    p(rec.samples(case, eng, "full_program", "ms", &full));
    p(rec.samples(case, eng, "pod_add", "ms", &add));
    p(rec.samples(case, eng, "pod_remove", "ms", &del));
    p(rec.value(case, eng, "rules", "rules", w.ipset_rule_count() as f64));
    let elements = sets.lines().filter(|l| l.starts_with("add ")).count();
    p(rec.value(case, eng, "set_elements", "elements", elements as f64));
}

fn per_pair(rec: &mut Recorder, case: &str, s: &Scale, w: &mut Workload, runs: usize, cap: usize) {
    let eng = "iptables per-pair";
    let n = w.per_pair_rule_count();
    let p = |r: cnet_benches::record::Entry<'_>| {
        r.param("pods", s.pods as f64)
            .param("policies", s.policies as f64)
            .reference();
    };
    if n > cap {
        p(rec
            .value(case, eng, "rules", "rules", n as f64)
            .note(&format!(
                "computed, not programmed: above this profile's cap of {cap} rules"
            )));
        return;
    }
    let text = w.per_pair_restore();
    let ns = NetNs::new("bppr");
    let runs = if n > 100_000 { 1 } else { runs };
    let mut full = Vec::new();
    for _ in 0..runs {
        clear_iptables(&ns);
        match run_in(&ns, &[IPT], &text) {
            Ok(ms) => full.push(ms),
            Err(e) => return println!("policy: per-pair failed at {case}: {e}"),
        }
    }
    let extra = w.extra_pod();
    w.pods.push(extra.clone());
    let (ins, del_text) = w.per_pair_pod_update(&extra);
    w.pods.pop();
    let (mut add, mut del) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(3) {
        match run_in(&ns, &[IPT, "--noflush"], &ins)
            .and_then(|a| run_in(&ns, &[IPT, "--noflush"], &del_text).map(|d| (a, d)))
        {
            Ok((a, d)) => {
                add.push(a);
                del.push(d);
            }
            Err(e) => return println!("policy: per-pair update failed at {case}: {e}"),
        }
    }
    clear_iptables(&ns);
    p(rec.samples(case, eng, "full_program", "ms", &full));
    p(rec.samples(case, eng, "pod_add", "ms", &add));
    p(rec.samples(case, eng, "pod_remove", "ms", &del));
    p(rec.value(case, eng, "rules", "rules", n as f64));
}

fn main() {
    if !cnet_testsupport::privileged("bench policy_baselines") {
        return;
    }
    let profile = cnet_benches::profile();
    let scales: Vec<(usize, usize)> = profile.pick(
        vec![(50, 4)],
        vec![(100, 10), (1000, 100), (10_000, 1000)],
        vec![
            (100, 10),
            (100, 100),
            (1000, 10),
            (1000, 100),
            (1000, 1000),
            (10_000, 10),
            (10_000, 100),
            (10_000, 1000),
        ],
    );
    let runs = profile.pick(1, 2, 7);
    let cap = profile.pick(20_000, 200_000, 1_000_000);
    let have = |bin: &str| {
        Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    let baselines = have(IPT) && have("ipset");
    if !baselines {
        println!(
            "policy: baselines skipped: {IPT} or ipset missing (apt-get install iptables ipset)"
        );
    }
    let mut rec = Recorder::new("policy");
    for (pods, policies) in scales {
        let s = Scale { pods, policies };
        let case = format!("{pods} pods x {policies} policies");
        println!("policy: {case} ...");
        let mut w = Workload::new(pods, policies);
        cnet(&mut rec, &case, &s, &w, runs);
        if baselines {
            ipset(&mut rec, &case, &s, &mut w, runs);
            per_pair(&mut rec, &case, &s, &mut w, runs, cap);
        }
    }
    rec.print_table();
    println!(
        "note: ratios are to iptables per-pair (a). cnet pod_add/pod_remove/policy_change are \
         Engine updates + sync (diff + one batch); baselines' are ipset/iptables-restore processes."
    );
}
