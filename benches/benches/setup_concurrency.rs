//! Bench `setup_concurrency` (records as bench `setup`): pod network setup with 1, 4 and 16
//! concurrent ADDs (then DELs), the `cnet` plugin binary in bridge and transparent mode beside
//! the reference `bridge`+`host-local` and `ptp`+`host-local` plugins, and the floor: the same
//! netlink work done in-process by cnet-route with fixed addresses (no process, no IPAM, no
//! policy), which no plugin can beat. netavark (bridge driver, static addresses as podman
//! passes them, no IPAM of its own) runs as a further lane when installed.
//!
//! Each implementation gets its own virtual node (private netns on an underlay) and pod
//! namespaces. Plugins are spawned from threads that entered the node netns, as a runtime does;
//! a worker pool of C threads takes pods from a shared counter. Records per-call latency
//! (`add_latency`, `del_latency`, ms; ADD samples kept for the distribution plot) and
//! throughput (`pods_per_s` = pods / wall time of the round).
//!
//! `cargo bench -p cnet-benches --bench setup_concurrency` measures (CNET_BENCH_PROFILE=quick:
//! fewer pods); under `cargo test` a smoke pass with 2 pods runs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use cnet_benches::record::Recorder;
use cnet_route::{BridgeMode, EndpointSpec, IntraNode, Node, TransparentMode};
use cnet_testsupport::{NetNs, Underlay, VirtualNode};

const CNI_DIR: &str = "/usr/lib/cni";
const REFERENCE: &str = "ref bridge+host-local";

const NETAVARK: &str = "/usr/lib/podman/netavark";

enum Kind {
    Plugin {
        bin: PathBuf,
        conf: String,
    },
    /// netavark's bridge driver with static addresses, as podman drives it (see cni_plugin).
    Netavark {
        config_dir: PathBuf,
    },
    Floor {
        bridge: bool,
    },
}

struct Lane {
    label: &'static str,
    kind: Kind,
    vn: VirtualNode,
    _underlay: Underlay,
    pods: Vec<NetNs>,
    net: u8,
    cni_path: String,
    _dir: tempfile::TempDir,
    failed: Option<String>,
    /// A pod kept attached through all rounds (netavark: its bridge must exist, since
    /// concurrent first setups race on creating it).
    resident: Option<NetNs>,
}

fn plugin_call(
    lane: &Lane,
    bin: &Path,
    conf: &str,
    cmd: &str,
    id: &str,
    pod: &NetNs,
) -> Result<f64, String> {
    let start = Instant::now();
    let mut child = Command::new(bin)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", pod.path())
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", &lane.cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: spawn {}: {e}", lane.label, bin.display()))?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(conf.as_bytes())
            .map_err(|e| format!("{}: stdin: {e}", lane.label))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{}: wait: {e}", lane.label))?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() {
        return Err(format!(
            "{} {cmd} {id}: {}{}",
            lane.label,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(ms)
}

fn netavark_call(
    lane: &Lane,
    dir: &Path,
    add: bool,
    id: &str,
    i: usize,
    pod: &NetNs,
) -> Result<f64, String> {
    let prefix = format!("10.{}", lane.net);
    let ip = format!("{prefix}.{}.{}", 1 + i / 250, 2 + i % 250);
    let opts = serde_json::json!({
        "container_id": format!("{id}0000000000"),
        "container_name": id,
        "networks": {"bench": {"interface_name": "eth0", "static_ips": [ip]}},
        "network_info": {"bench": {
            "dns_enabled": false, "driver": "bridge", "id": "b".repeat(64),
            "internal": false, "ipv6_enabled": false, "name": "bench",
            "network_interface": "navbr0",
            "subnets": [{"subnet": format!("{prefix}.0.0/16"), "gateway": format!("{prefix}.0.1")}]}}
    });
    let start = Instant::now();
    let mut child = Command::new(NETAVARK)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .arg("--config")
        .arg(dir)
        .arg(if add { "setup" } else { "teardown" })
        .arg(pod.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("netavark: spawn: {e}"))?;
    if let Some(mut s) = child.stdin.take() {
        s.write_all(opts.to_string().as_bytes())
            .map_err(|e| format!("netavark: stdin: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("netavark: wait: {e}"))?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() {
        return Err(format!(
            "netavark {id}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(ms)
}

fn floor_spec(lane: &Lane, i: usize) -> EndpointSpec {
    let ip = format!("10.{}.{}.{}/16", lane.net, 1 + i / 250, 1 + i % 250);
    EndpointSpec::new(
        format!("floor{i}"),
        "eth0",
        lane.pods[i].path(),
        vec![ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}"))],
    )
}

/// One round: every pod ADDed (or DELed) by `c` workers. Per-call ms and wall seconds.
fn round(lane: &Lane, c: usize, add: bool, tag: &str) -> Result<(Vec<f64>, f64), String> {
    let next = AtomicUsize::new(0);
    let lat = Mutex::new(Vec::new());
    let errors = Mutex::new(Vec::new());
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..c {
            s.spawn(|| {
                lane.vn.ns.in_netns(|| {
                    let floor: Option<(Node, Box<dyn IntraNode>)> = match lane.kind {
                        Kind::Floor { bridge } => {
                            let node = Node::open(lane.vn.ns.path());
                            let mode: Box<dyn IntraNode> = if bridge {
                                Box::new(BridgeMode::new("cnetbr0"))
                            } else {
                                Box::new(TransparentMode::new())
                            };
                            match node {
                                Ok(n) => Some((n, mode)),
                                Err(e) => {
                                    errors
                                        .lock()
                                        .unwrap_or_else(|p| p.into_inner())
                                        .push(e.to_string());
                                    return;
                                }
                            }
                        }
                        Kind::Plugin { .. } | Kind::Netavark { .. } => None,
                    };
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= lane.pods.len() {
                            break;
                        }
                        let r = match (&lane.kind, &floor) {
                            (Kind::Plugin { bin, conf }, _) => plugin_call(
                                lane,
                                bin,
                                conf,
                                if add { "ADD" } else { "DEL" },
                                &format!("{tag}-{i}"),
                                &lane.pods[i],
                            ),
                            (Kind::Netavark { config_dir }, _) => netavark_call(
                                lane,
                                config_dir,
                                add,
                                &format!("{tag}-{i}"),
                                i,
                                &lane.pods[i],
                            ),
                            (Kind::Floor { .. }, Some((node, mode))) => {
                                let spec = floor_spec(lane, i);
                                let t = Instant::now();
                                let r = if add {
                                    mode.attach(node, &spec)
                                        .map(|_| ())
                                        .map_err(|e| e.to_string())
                                } else {
                                    mode.detach(node, &spec).map_err(|e| e.to_string())
                                };
                                r.map(|()| t.elapsed().as_secs_f64() * 1e3)
                            }
                            (Kind::Floor { .. }, None) => Err("no node".into()),
                        };
                        match r {
                            Ok(ms) => lat.lock().unwrap_or_else(|p| p.into_inner()).push(ms),
                            Err(e) => errors.lock().unwrap_or_else(|p| p.into_inner()).push(e),
                        }
                    }
                })
            });
        }
    });
    let wall = start.elapsed().as_secs_f64();
    let errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(e) = errors.first() {
        return Err(format!("{} errors, first: {e}", errors.len()));
    }
    Ok((lat.into_inner().unwrap_or_else(|p| p.into_inner()), wall))
}

fn reference_conf(plugin: &str, net: u8, data: &Path) -> String {
    let mut conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": format!("bench-{plugin}"),
        "type": plugin,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": format!("10.{net}.0.0/16")}]],
            "dataDir": data.join("ipam"),
        }
    });
    if plugin == "bridge" {
        conf["bridge"] = "cnibr0".into();
        conf["isGateway"] = true.into();
        conf["isDefaultGateway"] = true.into();
    } else {
        conf["ipam"]["routes"] = serde_json::json!([{"dst": "0.0.0.0/0"}]);
    }
    conf.to_string()
}

fn cnet_conf(mode: &str, net: u8, data: &Path) -> String {
    let mut conf = serde_json::json!({
        "cniVersion": "1.1.0",
        "name": format!("bench-cnet-{mode}"),
        "type": "cnet",
        "mode": mode,
        "ipam": {
            "type": "cnet-ipam",
            "ranges": [[{"subnet": format!("10.{net}.0.0/16")}]],
            "dataDir": data.join("ipam"),
        },
        "policy": {"stateDir": data.join("state")},
    });
    if mode == "bridge" {
        conf["bridge"] = "cnetbr0".into();
    }
    conf.to_string()
}

fn main() {
    if !cnet_testsupport::privileged("bench setup_concurrency") {
        return;
    }
    let profile = cnet_benches::profile();
    let pods = profile.pick(2, 32, 128);
    let levels: Vec<usize> = profile.pick(vec![1, 2], vec![1, 4, 16], vec![1, 4, 16]);
    let cnet = match cnet_benches::cni_binary("cnet") {
        Ok(p) => Some(p),
        Err(e) => {
            println!("setup: cnet plugin lanes skipped: {e}");
            None
        }
    };
    let refs_ok = ["bridge", "ptp", "host-local"]
        .iter()
        .all(|p| Path::new(CNI_DIR).join(p).exists());
    if !refs_ok {
        println!("setup: reference lanes skipped: {CNI_DIR}/{{bridge,ptp,host-local}} missing");
    }
    let our_dir = cnet
        .as_ref()
        .and_then(|p| p.parent())
        .map_or_else(String::new, |d| format!("{}:", d.display()));
    let cni_path = format!("{our_dir}{CNI_DIR}");
    let mut lanes = Vec::new();
    let plan: [(u8, &'static str); 7] = [
        (91, "cnet bridge"),
        (92, "cnet transparent"),
        (93, REFERENCE),
        (94, "ref ptp+host-local"),
        (95, "floor transparent (cnet-route in-process)"),
        (96, "floor bridge (cnet-route in-process)"),
        (97, "netavark"),
    ];
    for (net, label) in plan {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let kind = match net {
            91 | 92 => match &cnet {
                Some(bin) => Kind::Plugin {
                    bin: bin.clone(),
                    conf: cnet_conf(
                        if net == 91 { "bridge" } else { "transparent" },
                        net,
                        dir.path(),
                    ),
                },
                None => continue,
            },
            93 | 94 if refs_ok => {
                let p = if net == 93 { "bridge" } else { "ptp" };
                Kind::Plugin {
                    bin: Path::new(CNI_DIR).join(p),
                    conf: reference_conf(p, net, dir.path()),
                }
            }
            93 | 94 => continue,
            97 if Path::new(NETAVARK).exists() => Kind::Netavark {
                config_dir: dir.path().join("netavark"),
            },
            97 => {
                println!("setup: netavark lane skipped: {NETAVARK} missing");
                continue;
            }
            _ => Kind::Floor { bridge: net == 96 },
        };
        let cidr = format!("10.{net}.0.0/16");
        let (underlay, vn) = VirtualNode::single(&[&cidr]);
        let pod_ns = (0..pods).map(|_| vn.pod()).collect();
        lanes.push(Lane {
            label,
            kind,
            vn,
            _underlay: underlay,
            pods: pod_ns,
            net,
            cni_path: cni_path.clone(),
            _dir: dir,
            failed: None,
            resident: None,
        });
        if let Some(lane) = lanes.last_mut()
            && let Kind::Netavark { config_dir } = &lane.kind
        {
            let pod = lane.vn.pod();
            let r = lane
                .vn
                .ns
                .in_netns(|| netavark_call(lane, config_dir, true, "resident", pods, &pod));
            if let Err(e) = r {
                println!("setup: netavark resident pod: {e}");
            }
            lane.resident = Some(pod);
        }
    }
    println!(
        "setup: {pods} pods per implementation and round, concurrency {levels:?} (profile {})",
        profile.name()
    );
    let mut rec = Recorder::new("setup");
    for &c in &levels {
        let case = format!("concurrency {c}");
        for lane in lanes.iter_mut() {
            if lane.failed.is_some() {
                continue;
            }
            let tag = format!("c{c}");
            let added = round(lane, c, true, &tag);
            if c == levels[0] && added.is_ok() && !lane.pods[0].ping(&lane.vn.addr4.to_string()) {
                println!(
                    "setup: {}: pod 0 cannot reach its node (measured anyway)",
                    lane.label
                );
            }
            let deleted = round(lane, c, false, &tag);
            match (added, deleted) {
                (Ok((add, add_wall)), Ok((del, _))) => {
                    let is_ref = lane.label == REFERENCE;
                    rec.samples(&case, lane.label, "add_latency", "ms", &add)
                        .param("concurrency", c as f64)
                        .keep_samples(&add)
                        .reference_if(is_ref);
                    rec.samples(&case, lane.label, "del_latency", "ms", &del)
                        .reference_if(is_ref);
                    let rate = add.len() as f64 / add_wall;
                    rec.value(&case, lane.label, "pods_per_s", "pods/s", rate)
                        .higher()
                        .param("concurrency", c as f64)
                        .reference_if(is_ref);
                }
                (Err(e), _) | (_, Err(e)) => {
                    println!("setup: {} failed at concurrency {c}: {e}", lane.label);
                    lane.failed = Some(e);
                }
            }
        }
    }
    rec.print_table();
    println!(
        "note: plugin times include process start and IPAM (cnet also programs its nftables \
         policy table); the floor is the library call with addresses given."
    );
}
