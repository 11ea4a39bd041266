//! Bench `route`: attach and detach time per pod, cnet-route (bridge and transparent mode)
//! beside the reference CNI plugins doing the same job in the same run: `/usr/lib/cni/bridge`
//! and `/usr/lib/cni/ptp`, each with `/usr/lib/cni/host-local`.
//!
//! Each implementation gets its own virtual node (a private node netns on an underlay) and
//! its own pod namespaces; pods are attached interleaved (pod i by every implementation, then
//! pod i+1), then detached the same way, so all see the same noise. The reference plugins are
//! spawned from a thread that has entered the node netns (the child inherits it); the time
//! covers the plugin process (exec, IPAM, netlink), while cnet-route's covers the library call
//! (no process, no IPAM: addresses are given). Prints medians and ratios.
//!
//! `cargo bench -p cnet-benches --bench route` measures 200 pods per implementation (50 with
//! CNET_BENCH_PROFILE=quick); under `cargo test` it runs a smoke pass with 3. Results are also
//! recorded (`cnet_benches::record`).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cnet_route::{BridgeMode, EndpointSpec, IntraNode, Node, TransparentMode};
use cnet_testsupport::{NetNs, VirtualNode};

const CNI_DIR: &str = "/usr/lib/cni";

enum Impl {
    Ours {
        label: &'static str,
        mode: Box<dyn IntraNode>,
        node: Node,
    },
    Reference {
        label: &'static str,
        config: String,
    },
}

impl Impl {
    fn label(&self) -> &'static str {
        match self {
            Impl::Ours { label, .. } | Impl::Reference { label, .. } => label,
        }
    }
}

struct Lane {
    imp: Impl,
    vn: VirtualNode,
    _underlay: cnet_testsupport::Underlay,
    pods: Vec<NetNs>,
    net: u8,
    attach: Vec<f64>,
    detach: Vec<f64>,
}

fn spec(lane: &Lane, i: usize) -> EndpointSpec {
    let pod = &lane.pods[i];
    let ip = format!("10.{}.{}.{}/16", lane.net, 1 + i / 250, 1 + i % 250);
    EndpointSpec::new(
        format!("bench{i}"),
        "eth0",
        pod.path(),
        vec![ip.parse().expect("cidr")],
    )
}

fn run_plugin(vn: &VirtualNode, config: &str, command: &str, id: &str, pod: &NetNs) -> Duration {
    let plugin = serde_json::from_str::<serde_json::Value>(config)
        .ok()
        .and_then(|v| v["type"].as_str().map(str::to_string))
        .expect("plugin type");
    vn.ns.in_netns(|| {
        let start = Instant::now();
        let mut child = Command::new(Path::new(CNI_DIR).join(&plugin))
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", pod.path())
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", CNI_DIR)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn plugin");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(config.as_bytes())
            .expect("write config");
        let out = child.wait_with_output().expect("wait plugin");
        let took = start.elapsed();
        assert!(
            out.status.success(),
            "{plugin} {command}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        took
    })
}

fn step(lane: &mut Lane, i: usize, add: bool) {
    let took = match &lane.imp {
        Impl::Ours { mode, node, .. } => {
            let s = spec(lane, i);
            let start = Instant::now();
            if add {
                mode.attach(node, &s).expect("attach");
            } else {
                mode.detach(node, &s).expect("detach");
            }
            start.elapsed()
        }
        Impl::Reference { config, .. } => {
            let cmd = if add { "ADD" } else { "DEL" };
            run_plugin(&lane.vn, config, cmd, &format!("bench{i}"), &lane.pods[i])
        }
    };
    let ms = took.as_secs_f64() * 1e3;
    if add {
        lane.attach.push(ms);
    } else {
        lane.detach.push(ms);
    }
}

fn reference_config(plugin: &str, net: u8, data: &Path) -> String {
    let mut conf = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": format!("bench-{plugin}"),
        "type": plugin,
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": format!("10.{net}.0.0/16")}]],
            "dataDir": data,
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

fn main() {
    if !cnet_testsupport::privileged("bench route") {
        return;
    }
    for p in ["bridge", "ptp", "host-local"] {
        if !Path::new(CNI_DIR).join(p).exists() {
            println!("SKIPPED bench route: {CNI_DIR}/{p} missing (containernetworking-plugins)");
            return;
        }
    }
    let pods = cnet_benches::profile().pick(3, 50, 200);
    let data = tempfile::tempdir().expect("tempdir");
    let mut lanes = Vec::new();
    for (net, name) in [
        (81u8, "cnet bridge"),
        (82, "cnet transparent"),
        (83, "ref bridge+host-local"),
        (84, "ref ptp+host-local"),
    ] {
        let cidr = format!("10.{net}.0.0/16");
        let (underlay, vn) = VirtualNode::single(&[&cidr]);
        let imp = match net {
            81 => Impl::Ours {
                label: name,
                mode: Box::new(BridgeMode::new("cnetbr0")),
                node: Node::open(vn.ns.path()).expect("node"),
            },
            82 => Impl::Ours {
                label: name,
                mode: Box::new(TransparentMode::new()),
                node: Node::open(vn.ns.path()).expect("node"),
            },
            _ => {
                let plugin = if net == 83 { "bridge" } else { "ptp" };
                Impl::Reference {
                    label: name,
                    config: reference_config(plugin, net, &data.path().join(plugin)),
                }
            }
        };
        let pod_ns = (0..pods).map(|_| vn.pod()).collect();
        lanes.push(Lane {
            imp,
            vn,
            _underlay: underlay,
            pods: pod_ns,
            net,
            attach: Vec::new(),
            detach: Vec::new(),
        });
    }
    for i in 0..pods {
        for lane in lanes.iter_mut() {
            step(lane, i, true);
        }
    }
    // Spot-check that every implementation produced a working pod.
    for lane in &lanes {
        let gw = match lane.imp {
            Impl::Ours { .. } => lane.vn.addr4.to_string(),
            Impl::Reference { .. } => lane.vn.addr4.to_string(),
        };
        assert!(
            lane.pods[0].ping(&gw),
            "{}: pod 0 cannot reach its node",
            lane.imp.label()
        );
    }
    for i in 0..pods {
        for lane in lanes.iter_mut() {
            step(lane, i, false);
        }
    }

    println!("route: attach/detach per pod, {pods} pods per implementation, IPv4 (ms, median)");
    println!(
        "{:<24} {:>10} {:>17} {:>10} {:>17}",
        "implementation", "attach", "(min-max)", "detach", "(min-max)"
    );
    let mut med = Vec::new();
    let mut rec = cnet_benches::record::Recorder::new("route");
    for lane in lanes.iter_mut() {
        // Bridge lanes compare with the reference bridge, routed ones with the reference ptp.
        let (case, is_ref) = match lane.net {
            81 => ("bridge mode", false),
            83 => ("bridge mode", true),
            82 => ("routed (transparent vs ptp)", false),
            _ => ("routed (transparent vs ptp)", true),
        };
        rec.samples(case, lane.imp.label(), "attach", "ms", &lane.attach)
            .reference_if(is_ref);
        rec.samples(case, lane.imp.label(), "detach", "ms", &lane.detach)
            .reference_if(is_ref);
        let a = cnet_benches::median(&mut lane.attach).unwrap_or(f64::NAN);
        let d = cnet_benches::median(&mut lane.detach).unwrap_or(f64::NAN);
        // median() sorted the samples.
        let range = |v: &[f64]| {
            format!(
                "({:.2}-{:.2})",
                v.first().copied().unwrap_or(f64::NAN),
                v.last().copied().unwrap_or(f64::NAN)
            )
        };
        println!(
            "{:<24} {:>10.3} {:>17} {:>10.3} {:>17}",
            lane.imp.label(),
            a,
            range(&lane.attach),
            d,
            range(&lane.detach)
        );
        med.push((a, d));
    }
    let ratio = |ours: usize, reference: usize| {
        let (oa, od) = med[ours];
        let (ra, rd) = med[reference];
        println!(
            "ratio {} / {}: attach {:.3}x, detach {:.3}x",
            lanes[ours].imp.label(),
            lanes[reference].imp.label(),
            oa / ra,
            od / rd
        );
    };
    ratio(0, 2);
    ratio(1, 3);
    println!(
        "note: reference times include process start and host-local IPAM; cnet-route's are the \
         library call with addresses given."
    );
}
