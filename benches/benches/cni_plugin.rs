//! CNI ADD and DEL latency per pod, side by side in one run inside a virtual node:
//! `cnet` (transparent and bridge mode, in-process `cnet-ipam`, policy engine on, no
//! policies), the reference `bridge`+`host-local` and `ptp`+`host-local` plugins, and
//! netavark (`/usr/lib/podman/netavark setup|teardown`, bridge driver, static addresses as
//! podman passes them). Each call is one process started the way a runtime starts it, from a
//! thread inside the node namespace; the time is spawn to exit. Subjects are interleaved pod by
//! pod, so every subject sees the same node fill, in an order shuffled every round, so that
//! none always runs right after the same other one.
//!
//! `cargo bench -p cnet-benches --bench cni_plugin` measures 200 pods per subject; under
//! `cargo test` a smoke pass attaches 3. `cnet` is (re)built in this target and profile first
//! and run as an installed copy ([`cnet_benches::cni_binary`]).

use cnet_testsupport::{NetNs, VirtualNode};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const NETAVARK: &str = "/usr/lib/podman/netavark";

/// Environment variable naming a second `cnet` binary to measure beside this tree's.
const CANDIDATE_ENV: &str = "CNET_BENCH_CANDIDATE";

/// How a subject is called.
enum Kind {
    /// A CNI plugin with its config.
    Cni { bin: PathBuf, conf: Value },
    /// netavark with a per-pod static address in `subnet` (third octet fixed).
    Netavark { config_dir: PathBuf, prefix: String },
}

struct Subject {
    label: &'static str,
    kind: Kind,
    add: Vec<f64>,
    del: Vec<f64>,
    failures: Vec<String>,
    /// `cnet-trace` phase times (ms) by "CMD phase", with `CNET_BENCH_TRACE=1`.
    phases: std::collections::BTreeMap<String, Vec<f64>>,
}

/// Whether to run `cnet` with `CNET_TRACE=1` and print its phase medians.
fn tracing() -> bool {
    std::env::var_os("CNET_BENCH_TRACE").is_some_and(|v| v == "1")
}

/// Spawn-to-exit time of one call, and its stderr (phase lines with `CNET_TRACE=1`).
fn timed(node: &NetNs, mut cmd: Command, stdin: &[u8]) -> Result<(Duration, String), String> {
    node.in_netns(|| {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let t = Instant::now();
        let mut child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
        if let Some(mut i) = child.stdin.take() {
            i.write_all(stdin).map_err(|e| format!("stdin: {e}"))?;
        }
        let out = child.wait_with_output().map_err(|e| format!("wait: {e}"))?;
        let d = t.elapsed();
        if out.status.success() {
            Ok((d, String::from_utf8_lossy(&out.stderr).into_owned()))
        } else {
            Err(format!(
                "{} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    })
}

impl Subject {
    fn call(&mut self, node: &NetNs, add: bool, i: usize, pod: &NetNs) {
        // Container ids differ per subject: host interface names derive from them.
        let tag: String = self
            .label
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        let cid = format!("{tag}{i}");
        let (cmd, stdin) = match &self.kind {
            Kind::Cni { bin, conf } => {
                let mut c = Command::new(bin);
                c.env_clear()
                    .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
                    .env("CNI_COMMAND", if add { "ADD" } else { "DEL" })
                    .env("CNI_CONTAINERID", &cid)
                    .env("CNI_NETNS", pod.path())
                    .env("CNI_IFNAME", "eth0")
                    .env("CNET_TRACE", if tracing() { "1" } else { "0" })
                    .env(
                        "CNI_PATH",
                        format!(
                            "{}:/usr/lib/cni",
                            bin.parent().unwrap_or(Path::new("/")).display()
                        ),
                    );
                (c, conf.to_string().into_bytes())
            }
            Kind::Netavark { config_dir, prefix } => {
                let mut c = Command::new(NETAVARK);
                c.arg("--config")
                    .arg(config_dir)
                    .arg(if add { "setup" } else { "teardown" })
                    .arg(pod.path());
                let ip = format!("{prefix}.{}.{}", 1 + (i + 2) / 250, (i + 2) % 250 + 2);
                let opts = json!({
                    "container_id": format!("{cid}0000000000"),
                    "container_name": cid,
                    "networks": {"bench": {"interface_name": "eth0", "static_ips": [ip]}},
                    "network_info": {"bench": {
                        "dns_enabled": false, "driver": "bridge", "id": "b".repeat(64),
                        "internal": false, "ipv6_enabled": false, "name": "bench",
                        "network_interface": "navbr0",
                        "subnets": [{"subnet": format!("{prefix}.0.0/16"),
                                     "gateway": format!("{prefix}.0.1")}]}}
                });
                (c, opts.to_string().into_bytes())
            }
        };
        match timed(node, cmd, &stdin) {
            Ok((d, stderr)) => {
                (if add { &mut self.add } else { &mut self.del }).push(d.as_secs_f64() * 1e3);
                for l in stderr.lines() {
                    let mut w = l.split_whitespace();
                    if let (Some("cnet-trace"), Some(c), Some(p), Some(ms)) =
                        (w.next(), w.next(), w.next(), w.next())
                        && let Ok(ms) = ms.trim_end_matches("ms").parse::<f64>()
                    {
                        self.phases.entry(format!("{c} {p}")).or_default().push(ms);
                    }
                }
            }
            Err(e) => self.failures.push(format!(
                "{} {} pod {i}: {}",
                self.label,
                if add { "ADD" } else { "DEL" },
                e.trim()
            )),
        }
    }
}

fn main() {
    if !cnet_testsupport::privileged("cni_plugin bench") {
        return;
    }
    let measuring = cnet_benches::measuring();
    let pods = if measuring { 200 } else { 3 };
    let cnet = match cnet_benches::cni_binary("cnet") {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cni_plugin bench: {e}");
            std::process::exit(1);
        }
    };
    let (_underlay, node) = VirtualNode::single(&[]);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let d = |s: &str| dir.path().join(s).display().to_string();
    let cnet_conf = |mode: &str, subnet: &str| {
        let mut c = json!({
            "cniVersion": "1.1.0", "name": format!("cnet{mode}"), "type": "cnet", "mode": mode,
            "ipam": {"type": "cnet-ipam", "subnet": subnet, "dataDir": d("ipam")},
            "policy": {"stateDir": d("state"), "table": format!("cnet_{mode}")},
        });
        if mode == "bridge" {
            c["bridge"] = json!("cnetbench0");
        }
        c
    };
    let reference = |t: &str, subnet: &str| {
        let mut c = json!({
            "cniVersion": "1.0.0", "name": format!("ref{t}"), "type": t,
            "ipam": {"type": "host-local", "subnet": subnet, "dataDir": d("hl")},
        });
        if t == "bridge" {
            c["bridge"] = json!("refbr0");
            c["isGateway"] = json!(true);
        }
        c
    };
    let mut subjects = vec![
        Subject {
            label: "cnet transparent",
            kind: Kind::Cni {
                bin: cnet.clone(),
                conf: cnet_conf("transparent", "10.70.0.0/16"),
            },
            add: vec![],
            del: vec![],
            failures: vec![],
            phases: Default::default(),
        },
        Subject {
            label: "cnet bridge",
            kind: Kind::Cni {
                bin: cnet.clone(),
                conf: cnet_conf("bridge", "10.71.0.0/16"),
            },
            add: vec![],
            del: vec![],
            failures: vec![],
            phases: Default::default(),
        },
        Subject {
            label: "bridge+host-local",
            kind: Kind::Cni {
                bin: PathBuf::from("/usr/lib/cni/bridge"),
                conf: reference("bridge", "10.72.0.0/16"),
            },
            add: vec![],
            del: vec![],
            failures: vec![],
            phases: Default::default(),
        },
        Subject {
            label: "ptp+host-local",
            kind: Kind::Cni {
                bin: PathBuf::from("/usr/lib/cni/ptp"),
                conf: reference("ptp", "10.73.0.0/16"),
            },
            add: vec![],
            del: vec![],
            failures: vec![],
            phases: Default::default(),
        },
    ];
    // A candidate `cnet` binary measured beside this tree's, interleaved in the same run (an
    // A/B comparison finer than the noise between two runs): `CNET_BENCH_CANDIDATE=PATH`.
    if let Some(candidate) = std::env::var_os(CANDIDATE_ENV).map(PathBuf::from) {
        for (label, mode, subnet) in [
            ("candidate transparent", "transparent", "10.75.0.0/16"),
            ("candidate bridge", "bridge", "10.76.0.0/16"),
        ] {
            let mut conf = cnet_conf(mode, subnet);
            conf["name"] = json!(format!("cand{mode}"));
            conf["ipam"]["dataDir"] = json!(d("ipam-candidate"));
            conf["policy"]["stateDir"] = json!(d("state-candidate"));
            conf["policy"]["table"] = json!(format!("cand_{mode}"));
            if mode == "bridge" {
                conf["bridge"] = json!("candbench0");
            }
            subjects.push(Subject {
                label,
                kind: Kind::Cni {
                    bin: candidate.clone(),
                    conf,
                },
                add: vec![],
                del: vec![],
                failures: vec![],
                phases: Default::default(),
            });
        }
    }
    if Path::new(NETAVARK).exists() {
        subjects.push(Subject {
            label: "netavark",
            kind: Kind::Netavark {
                config_dir: dir.path().join("netavark"),
                prefix: "10.74".into(),
            },
            add: vec![],
            del: vec![],
            failures: vec![],
            phases: Default::default(),
        });
    } else {
        println!("netavark not installed ({NETAVARK}): install the netavark package");
    }
    let netns: Vec<Vec<NetNs>> = subjects
        .iter()
        .map(|_| (0..pods).map(|_| node.pod()).collect())
        .collect();
    // Every round calls the subjects in a new order (a seeded shuffle), so that none always
    // runs right after the same other one: the kernel work a call leaves behind lands on the
    // next call (with a fixed order, the same binary measured ~0.5 ms slower right after
    // netavark than later in the round).
    let n = subjects.len();
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    for add in [true, false] {
        for i in 0..pods {
            let mut order: Vec<usize> = (0..n).collect();
            for k in (1..n).rev() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                order.swap(k, usize::try_from(seed % (k as u64 + 1)).unwrap_or(0));
            }
            for j in order {
                let pods_of = &netns[j];
                subjects[j].call(&node.ns, add, i, &pods_of[i]);
            }
        }
    }
    println!(
        "\nCNI ADD / DEL latency per pod, {pods} pods per subject, interleaved, in one node netns ({})",
        if measuring { "measured" } else { "smoke pass" }
    );
    println!(
        "{:<20} {:>10} {:>10} {:>12} {:>12} {:>9}",
        "subject", "ADD med ms", "DEL med ms", "ADD/ref", "DEL/ref", "failures"
    );
    let mut meds: Vec<(f64, f64)> = subjects
        .iter_mut()
        .map(|s| {
            (
                cnet_benches::median(&mut s.add).unwrap_or(f64::NAN),
                cnet_benches::median(&mut s.del).unwrap_or(f64::NAN),
            )
        })
        .collect();
    let (ref_add, ref_del) = meds[2];
    for (s, (a, dl)) in subjects.iter().zip(meds.iter_mut()) {
        println!(
            "{:<20} {:>10.2} {:>10.2} {:>11.2}x {:>11.2}x {:>9}",
            s.label,
            *a,
            *dl,
            *a / ref_add,
            *dl / ref_del,
            s.failures.len()
        );
    }
    println!("(ratios against the reference bridge+host-local; targets: ADD <= 0.3x, DEL <= 0.2x)");
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        println!("load average at the end: {}", l.trim());
    }
    for s in subjects.iter_mut().filter(|s| !s.phases.is_empty()) {
        println!("{} phase medians (CNET_TRACE):", s.label);
        for (phase, v) in s.phases.iter_mut() {
            println!(
                "  {phase:<22} {:>8.3} ms",
                cnet_benches::median(v).unwrap_or(f64::NAN)
            );
        }
    }
    let mut failed = false;
    for s in &subjects {
        for f in s.failures.iter().take(3) {
            println!("  failure: {f}");
        }
        // Only our own plugin's failures fail the run; a peer that cannot run here is reported.
        if (s.label.starts_with("cnet") || s.label.starts_with("candidate"))
            && !s.failures.is_empty()
        {
            failed = true;
        }
    }
    if failed {
        std::process::exit(1);
    }
}
