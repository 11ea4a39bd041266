//! Bench `policy_program`: the cnet-policy compiler and engine at scale, beside the iptables
//! per-address-pair baseline (Azure NPM's first design) loaded with `iptables-legacy-restore`
//! inside a network namespace, for the same policies (`cnet_benches::workload`).
//!
//! Per scale (pods x policies, 1k/10k x 100/1k): `compile()` (the whole compiler, the reference
//! the engine's state must equal: checked each run); full program of a fresh engine into a
//! fresh namespace, split into the engine's build (structure + every pod's membership) and the
//! atomic batch, wall and process CPU time (user + system of every thread: the kernel's
//! commit runs in our `sendmsg`, the programmer's model copy on a helper thread; on a loaded
//! machine CPU time is the better estimate of an idle one); one-pod add
//! and remove through the [`Engine`](cnet_policy::engine::Engine) (update + `sync()`: an
//! element-only batch; median of 60 each), with the engine's own part of the add; rules and
//! set elements, and how many carry a chain verdict (`goto`/`jump`), in the table and in one
//! pod add (adding such an element makes the kernel re-validate every verdict-map element at
//! commit); how many dispatch rules a new connection walks in the namespaced ingress tier
//! before its namespace's chain (max and mean); peak RSS (`VmHWM`); the load average at
//! start and end. The per-pair baseline is loaded while its rule count stays under a cap (it
//! grows with pods x peers); above it the computed rule count is printed.
//!
//! `cargo bench -p cnet-benches --bench policy_program` (`CNET_POLICY_SCALES=10000x1000,...`
//! and `CNET_POLICY_REPS=5` narrow a run); under `cargo test` a smoke pass.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use cnet_benches::workload::Workload;
use cnet_benches::{Profile, measuring, median, profile};
use cnet_policy::compile::{CompileOptions, Mode, compile};
use cnet_policy::engine::{Engine, EngineError};
use cnet_policy::nft::{Change, Verdict, diff};
use cnet_testsupport::NetNs;

/// Above this the per-pair baseline is not loaded (its restore input alone would be
/// gigabytes); between [`PAIR_RULE_ONE_REP`] and this it is loaded once.
const PAIR_RULE_CAP: usize = 2_000_000;
const PAIR_RULE_ONE_REP: usize = 300_000;

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

/// CPU time of the calling thread (user + system: the kernel's commit work runs in our
/// `sendmsg`), in milliseconds. On a loaded machine it is closer to the unloaded wall time.
fn thread_cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}

/// CPU time of the whole process (every thread: the programmer copies its model and frees
/// batch messages on helper threads while the kernel commits), in milliseconds.
fn process_cpu_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec to a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return f64::NAN;
    }
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
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

/// Medians of one scale (wall, and thread CPU time where measured).
struct Row {
    compile: f64,
    build: f64,
    build_cpu: f64,
    program: f64,
    full: f64,
    full_cpu: f64,
    add: f64,
    add_cpu: f64,
    add_prepare: f64,
    remove: f64,
    remove_cpu: f64,
}

fn kernel_rule_lines(listing: &str) -> usize {
    listing
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
        .count()
}

fn chain_verdict(v: &Option<Verdict>) -> bool {
    matches!(v, Some(Verdict::Goto(_) | Verdict::Jump(_)))
}

/// One pod add's element adds (the diff of the engine's desired state; the pod is removed
/// again, nothing is programmed): (elements, elements with a chain verdict).
fn probe(engine: &mut Engine, w: &Workload) -> Result<(usize, usize), EngineError> {
    let before = engine.desired()?;
    let ep = Workload::endpoint(&w.extra_pod());
    let id = ep.id();
    engine.upsert_endpoint(ep, Some("cnetprobe".to_string()));
    let cl = diff(&before, &engine.desired()?);
    engine.remove_endpoint(&id);
    engine.prepare()?;
    let elements: Vec<_> = cl
        .changes
        .iter()
        .filter_map(|c| match c {
            Change::AddElements { elements, .. } => Some(elements),
            _ => None,
        })
        .flatten()
        .collect();
    let chain = elements.iter().filter(|(_, v)| chain_verdict(v)).count();
    Ok((elements.len(), chain))
}

/// Rules a first packet walks in the namespaced ingress tier (`ing_t0`) before it reaches
/// its namespace's chain: (max, mean) over the namespaces with policies there.
fn ns_walk(rs: &cnet_policy::nft::Ruleset) -> Option<(usize, f64)> {
    let t = rs.tables.values().next()?;
    let gotos = |chain: &str| -> Vec<(usize, String)> {
        t.chains.get(chain).map_or(Vec::new(), |c| {
            c.rules
                .iter()
                .enumerate()
                .filter_map(|(i, r)| match r.exprs.last() {
                    Some(cnet_policy::nft::Expr::Verdict(Verdict::Goto(to))) => {
                        Some((i + 1, to.clone()))
                    }
                    _ => None,
                })
                .collect()
        })
    };
    let mut walks = Vec::new();
    for (i, bucket) in gotos("ing_t0") {
        for (j, _) in gotos(&bucket) {
            walks.push(i + j);
        }
    }
    let max = walks.iter().copied().max()?;
    Some((max, walks.iter().sum::<usize>() as f64 / walks.len() as f64))
}

fn med(v: &mut [f64]) -> f64 {
    median(v).unwrap_or(f64::NAN)
}

fn scale(pods: usize, policies: usize, reps: usize, updates: usize) -> Option<Row> {
    let w = Workload::new(pods, policies);
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        println!("{pods} x {policies}: {what}: {e}");
    };
    let mut engine = w.engine(&ifname).map_err(|e| fail("engine", &e)).ok()?;
    let set = engine
        .policy_set()
        .map_err(|e| fail("policies", &e))
        .ok()?
        .clone();
    // The whole compiler (the reference the engine's incremental state must equal).
    let mut compile_ms = Vec::new();
    let mut rs = None;
    // CNET_POLICY_COMPILE_REPS (default: reps) narrows a profile to the program part.
    let compile_reps = std::env::var("CNET_POLICY_COMPILE_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(reps)
        .max(1);
    for _ in 0..compile_reps {
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
        return None;
    };
    let (rules, elements) = rs
        .tables
        .values()
        .next()
        .map_or((0, 0), |t| (t.rule_count(), t.element_count()));
    if std::env::var_os("CNET_POLICY_IR_STATS").is_some() {
        ir_stats(&rs);
    }
    // Full program of a fresh engine into a fresh namespace: the engine's build (structure
    // + every pod's membership) and the atomic batch.
    let (mut build_ms, mut program_ms, mut full_ms) = (Vec::new(), Vec::new(), Vec::new());
    let (mut full_cpu, mut build_cpu) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let ns = NetNs::new("ppf");
        let mut e = w.engine(&ifname).map_err(|e| fail("engine", &e)).ok()?;
        let r = ns.in_netns(|| {
            let c = process_cpu_ms();
            let t = Instant::now();
            e.prepare()?;
            let b = ms(t);
            let bc = process_cpu_ms() - c;
            let t2 = Instant::now();
            e.sync()?;
            let p = ms(t2);
            let f = ms(t);
            let cpu = process_cpu_ms() - c;
            let same = e.desired()? == rs;
            Ok::<_, cnet_policy::engine::EngineError>((b, bc, p, f, cpu, same))
        });
        match r {
            Ok((b, bc, p, f, cpu, same)) => {
                if !same {
                    println!("{pods} x {policies}: engine state differs from compile()");
                    return None;
                }
                build_ms.push(b);
                build_cpu.push(bc);
                program_ms.push(p);
                full_ms.push(f);
                full_cpu.push(cpu);
            }
            Err(err) => {
                fail("sync", &err);
                return None;
            }
        }
    }
    // CPU-independent evidence: what one pod add changes (the diff of the engine's desired
    // state), and how many map elements carry a chain verdict (`goto`/`jump`: adding one
    // makes the kernel re-validate every verdict-map element of the table at commit).
    let (batch, batch_chain) = probe(&mut engine, &w).map_err(|e| fail("probe", &e)).ok()?;
    let table_chain = rs
        .tables
        .values()
        .flat_map(|t| t.sets.values())
        .flat_map(|s| s.elements.values())
        .filter(|v| chain_verdict(v))
        .count();
    let (walk_max, walk_mean) = ns_walk(&rs).unwrap_or((0, 0.0));
    // One-pod add/remove through the engine (update + sync: an element-only batch), in the
    // thread that opened the programmer (the namespace's thread).
    let ns = NetNs::new("ppu");
    let (mut add_ms, mut del_ms) = (Vec::new(), Vec::new());
    let (mut add_cpu, mut del_cpu, mut add_prep) = (Vec::new(), Vec::new(), Vec::new());
    let mut kinds = std::collections::BTreeMap::new();
    let r = ns.in_netns(|| {
        engine.sync()?;
        for k in 0..updates {
            let p = w.extra_pod();
            let ep = Workload::endpoint(&p);
            let id = ep.id();
            let (c, t) = (thread_cpu_ms(), Instant::now());
            engine.upsert_endpoint(ep, Some(format!("cnetx{k:07x}")));
            engine.prepare()?;
            add_prep.push(ms(t));
            let r = engine.sync()?;
            add_ms.push(ms(t));
            add_cpu.push(thread_cpu_ms() - c);
            *kinds.entry(format!("{:?}", r.kind)).or_insert(0) += 1;
            let (c, t) = (thread_cpu_ms(), Instant::now());
            engine.remove_endpoint(&id);
            let r = engine.sync()?;
            del_ms.push(ms(t));
            del_cpu.push(thread_cpu_ms() - c);
            *kinds.entry(format!("{:?}", r.kind)).or_insert(0) += 1;
        }
        Ok::<_, cnet_policy::engine::EngineError>(())
    });
    if let Err(err) = r {
        fail("pod add/remove", &err);
        return None;
    }
    let listing = ns.run(&["nft", "list", "table", "inet", "cnet"]);
    let kernel_rules = kernel_rule_lines(&listing);
    drop(ns);
    let row = Row {
        compile: med(&mut compile_ms),
        build: med(&mut build_ms),
        build_cpu: med(&mut build_cpu),
        program: med(&mut program_ms),
        full: med(&mut full_ms),
        full_cpu: med(&mut full_cpu),
        add: med(&mut add_ms),
        add_cpu: med(&mut add_cpu),
        add_prepare: med(&mut add_prep),
        remove: med(&mut del_ms),
        remove_cpu: med(&mut del_cpu),
    };
    println!(
        "{pods:>6} pods x {policies:>5} policies: compile() {:.1} ms; full program {:.1} ms \
         wall / {:.1} ms process CPU (engine build {:.1} wall / {:.1} CPU + batch {:.1}); pod add {:.3} ms wall / \
         {:.3} ms CPU (engine part {:.3} ms), pod remove {:.3} ms wall / {:.3} ms CPU \
         (medians of {updates} each, syncs {kinds:?}); {rules} rules ({kernel_rules} in the \
         kernel listing), {elements} elements ({table_chain} with goto/jump); a pod add \
         adds {batch} elements ({batch_chain} with goto/jump); a new connection walks at most \
         {walk_max} (mean {walk_mean:.1}) dispatch rules to its namespace's ingress chain; \
         VmHWM {} MiB",
        row.compile,
        row.full,
        row.full_cpu,
        row.build,
        row.build_cpu,
        row.program,
        row.add,
        row.add_cpu,
        row.add_prepare,
        row.remove,
        row.remove_cpu,
        vm_hwm_kib() / 1024
    );
    // Baseline: per-address-pair iptables rules.
    let pair_rules = w.per_pair_rule_count();
    let cap = profile().pick(PAIR_RULE_ONE_REP, PAIR_RULE_ONE_REP, PAIR_RULE_CAP);
    if pair_rules <= cap {
        let bns = NetNs::new("ppb");
        let text = w.per_pair_restore();
        let n = if pair_rules > PAIR_RULE_ONE_REP {
            1
        } else {
            reps.min(3)
        };
        let mut v: Vec<f64> = (0..n)
            .filter_map(|_| {
                let _ = bns.exec(&["iptables-legacy", "-F"]);
                let _ = bns.exec(&["iptables-legacy", "-X"]);
                restore(&bns, &text)
                    .map_err(|e| println!("        iptables per-pair restore: {e}"))
                    .ok()
            })
            .collect();
        if let Some(b) = median(&mut v) {
            println!(
                "        iptables per-pair: {pair_rules} rules, restore {b:.1} ms -> cnet full \
                 program is {:.1}x faster",
                b / row.full
            );
        }
    } else {
        println!(
            "        iptables per-pair: {pair_rules} rules (over the {cap} cap: not \
             loaded; see bench policy_baselines)"
        );
    }
    Some(row)
}

/// Shape of the IR (sets by kind and size), for profiling the kernel's share.
fn ir_stats(rs: &cnet_policy::nft::Ruleset) {
    for t in rs.tables.values() {
        let mut kinds: std::collections::BTreeMap<String, (usize, usize, usize)> =
            std::collections::BTreeMap::new();
        for s in t.sets.values() {
            let d = &s.decl;
            let k = format!(
                "{:?}{}{}{}",
                d.key,
                if d.interval { " interval" } else { "" },
                if d.verdict_map { " vmap" } else { "" },
                if d.constant { " constant" } else { "" }
            );
            let e = kinds.entry(k).or_default();
            e.0 += 1;
            e.1 += s.elements.len();
            e.2 = e.2.max(s.elements.len());
        }
        println!(
            "        table {}: {} chains, {} rules, {} sets",
            t.name,
            t.chains.len(),
            t.rule_count(),
            t.sets.len()
        );
        for (k, (n, el, max)) in kinds {
            println!("          {n} sets {k}: {el} elements (largest {max})");
        }
        // Lookups by set (the kernel finds a set by walking the table's list of sets).
        let mut refs: std::collections::BTreeMap<&str, usize> =
            t.sets.keys().map(|k| (k.as_str(), 0)).collect();
        for c in t.chains.values() {
            for r in &c.rules {
                for e in &r.exprs {
                    use cnet_policy::nft::{Expr, MatchOp};
                    let name = match e {
                        Expr::Match {
                            op: MatchOp::InSet(s) | MatchOp::NotInSet(s),
                            ..
                        }
                        | Expr::Vmap { map: s, .. } => s.as_str(),
                        _ => continue,
                    };
                    *refs.entry(name).or_default() += 1;
                }
            }
        }
        let walk =
            |order: &[usize]| -> usize { order.iter().enumerate().map(|(i, n)| (i + 1) * n).sum() };
        let by_name: Vec<usize> = refs.values().copied().collect();
        let mut by_refs = by_name.clone();
        by_refs.sort_unstable_by(|a, b| b.cmp(a));
        let names: usize = t.sets.keys().map(|k| k.len()).sum();
        println!(
            "          lookups {}; set-list steps by name order {}, by reference count {}; \
             mean set name {} bytes; max refs {}",
            by_name.iter().sum::<usize>(),
            walk(&by_name),
            walk(&by_refs),
            names / t.sets.len().max(1),
            by_refs.first().copied().unwrap_or(0)
        );
    }
}

/// Scales from `CNET_POLICY_SCALES` (`10000x1000,1000x100`), else the four.
fn scales() -> Vec<(usize, usize)> {
    let parsed: Vec<(usize, usize)> = std::env::var("CNET_POLICY_SCALES")
        .unwrap_or_default()
        .split(',')
        .filter_map(|s| {
            let (a, b) = s.trim().split_once('x')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect();
    if parsed.is_empty() {
        vec![(1_000, 100), (1_000, 1_000), (10_000, 100), (10_000, 1_000)]
    } else {
        parsed
    }
}

fn main() {
    if !cnet_testsupport::privileged("policy_program") {
        return;
    }
    if !measuring() {
        scale(200, 20, 1, 3);
        return;
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at start: {}", load.trim());
    // Quick profile (scripts/bench): fewer full programs, the baseline only up to 300k rules.
    let reps = std::env::var("CNET_POLICY_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if profile() == Profile::Quick { 2 } else { 5 });
    for (pods, policies) in scales() {
        scale(pods, policies, reps, 60);
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average at end: {}", load.trim());
}
