//! Bench `dataplane`: what a loaded ruleset costs the traffic between two pods on one node.
//! Two pods are attached in transparent mode (cnet-route, in-process) to a virtual node; the
//! client pod talks to the server pod with
//!
//! - `throughput`: `iperf3` TCP, Gbit/s (one stream);
//! - `rr_rate`: request/response on one TCP connection, 1 byte each way (a Rust probe), per s;
//! - `crr_rate`: connect + 1-byte request/response + close per transaction, per s — every
//!   transaction is a new connection, so it walks the policy rules (the others mostly ride
//!   conntrack's established fast path).
//!
//! under four configurations of the node, one after another: `no policy` (the reference),
//! `cnet nft` (the cnet Engine's table for 10k endpoints x 1k policies in the quick and full
//! profiles), `ipset+iptables` (same workload) and `iptables per-pair` (the largest workload
//! whose per-pair rule count stays under the profile's cap; the case says which). Every
//! configuration allows the client-to-server flows through a policy in the middle of the list.
//!
//! `cargo bench -p cnet-benches --bench dataplane` (CNET_BENCH_PROFILE=quick|full); under
//! `cargo test` a smoke pass with a tiny ruleset and short runs.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cnet_benches::record::Recorder;
use cnet_benches::workload::Workload;
use cnet_route::{EndpointSpec, IntraNode, Node, TransparentMode};
use cnet_testsupport::{NetNs, VirtualNode};

const IPERF_PORT: u16 = 5201;
const RR_PORT: u16 = 5202;
const IPT: &str = "iptables-legacy-restore";

/// A 1-byte echo server in a pod: every connection is served until the peer closes.
struct Echo {
    stop: Arc<AtomicBool>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn echo_server(pod: &NetNs) -> Result<Echo, String> {
    let l = pod
        .in_netns(|| TcpListener::bind(("0.0.0.0", RR_PORT)))
        .map_err(|e| format!("bind {RR_PORT}: {e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut s, _)) => {
                    std::thread::spawn(move || {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_nodelay(true);
                        let mut b = [0u8; 1];
                        while let Ok(1) = s.read(&mut b) {
                            if s.write_all(&b).is_err() {
                                break;
                            }
                        }
                    });
                }
                // Blocking accept: no polling delay in the connect rate. The thread ends with
                // the process.
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    Ok(Echo { stop })
}

/// Transactions per second for `secs`: on one connection (`new_conn` false) or a new
/// connection per transaction.
fn rr(client: &NetNs, server: IpAddr, secs: f64, new_conn: bool) -> Result<f64, String> {
    client.in_netns(|| {
        let sa = SocketAddr::new(server, RR_PORT);
        let connect = || -> Result<TcpStream, String> {
            let s = TcpStream::connect_timeout(&sa, Duration::from_secs(2))
                .map_err(|e| format!("connect {sa}: {e}"))?;
            let _ = s.set_nodelay(true);
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            Ok(s)
        };
        let one = |s: &mut TcpStream| -> Result<(), String> {
            let mut b = [7u8; 1];
            s.write_all(&b).map_err(|e| format!("write: {e}"))?;
            s.read_exact(&mut b).map_err(|e| format!("read: {e}"))
        };
        let start = Instant::now();
        let mut n = 0u64;
        let mut conn = if new_conn { None } else { Some(connect()?) };
        while start.elapsed().as_secs_f64() < secs {
            match conn.as_mut() {
                Some(s) => one(s)?,
                None => {
                    let mut s = connect()?;
                    one(&mut s)?;
                }
            }
            n += 1;
        }
        Ok(n as f64 / start.elapsed().as_secs_f64())
    })
}

/// One iperf3 run from the client pod, Gbit/s received: for `secs` (whole seconds, at
/// least 1), or of 20 MB when `secs` is below one second (smoke pass).
fn iperf(client: &NetNs, server: IpAddr, secs: f64) -> Result<f64, String> {
    let (flag, amount) = if secs < 1.0 {
        ("-n", "20M".to_string())
    } else {
        ("-t", format!("{}", secs.round() as u64))
    };
    let out = client.exec(&[
        "iperf3",
        "-c",
        &server.to_string(),
        "-p",
        "5201",
        flag,
        &amount,
        "-J",
    ]);
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("iperf3 output: {e}"))?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .ok_or_else(|| format!("iperf3: {}", v["error"]))
}

fn run_stdin(ns: &NetNs, argv: &[&str], stdin: &str) -> Result<(), String> {
    let mut c = ns
        .command(argv)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{argv:?}: {e}"))?;
    if let Some(mut i) = c.stdin.take() {
        i.write_all(stdin.as_bytes()).map_err(|e| e.to_string())?;
    }
    let out = c.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{argv:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn clear(node: &NetNs) {
    let _ = node.exec(&["nft", "delete", "table", "inet", "cnet"]);
    let _ = node.exec(&["iptables-legacy", "-F"]);
    let _ = node.exec(&["iptables-legacy", "-X"]);
    let _ = node.exec(&["ipset", "destroy"]);
}

fn main() {
    if !cnet_testsupport::privileged("bench dataplane") {
        return;
    }
    let profile = cnet_benches::profile();
    let (pods, policies) = profile.pick((20, 4), (10_000, 1000), (10_000, 1000));
    let secs = profile.pick(0.3, 2.0, 5.0);
    let samples = profile.pick(1, 3, 5);
    let cap = profile.pick(20_000, 200_000, 1_000_000);
    let ports = [IPERF_PORT, RR_PORT];
    let have_iperf = Command::new("iperf3")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok();

    let (_underlay, vn) = VirtualNode::single(&["10.128.0.0/16"]);
    let client = vn.pod();
    let server = vn.pod();
    let mode = TransparentMode::new();
    let node = Node::open(vn.ns.path()).unwrap_or_else(|e| panic!("node: {e}"));
    let w = Workload::new(pods, policies).with_pair_allow(&ports);
    let mut ifnames = Vec::new();
    for (i, pod) in [&client, &server].into_iter().enumerate() {
        let ip = format!("{}/16", w.pods[i].addr);
        let spec = EndpointSpec::new(
            format!("dp{i}"),
            "eth0",
            pod.path(),
            vec![ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}"))],
        );
        let a = mode
            .attach(&node, &spec)
            .unwrap_or_else(|e| panic!("attach: {e}"));
        ifnames.push(a.host_ifname);
    }
    // The connect-rate probe opens thousands of connections: let the client reuse its
    // TIME_WAIT ports instead of stalling on them.
    client.sysctl("net.ipv4.tcp_tw_reuse=1");
    let server_ip = IpAddr::V4(w.pods[1].addr);
    let _echo = echo_server(&server).unwrap_or_else(|e| panic!("{e}"));
    let _iperf = have_iperf.then(|| server.spawn(&["iperf3", "-s", "-p", "5201"]));
    if !have_iperf {
        println!("dataplane: iperf3 missing; throughput not measured");
    }
    std::thread::sleep(Duration::from_millis(300));

    // The per-pair workload: the largest whose rule count stays under the cap.
    let pp = [(pods, policies), (1000, 100), (100, 10), (20, 4)]
        .into_iter()
        .map(|(p, q)| Workload::new(p, q).with_pair_allow(&ports))
        .find(|w| w.per_pair_rule_count() <= cap);

    let big = format!("{pods} pods x {policies} policies");
    let mut rec = Recorder::new("dataplane");
    let configs = [
        "no policy",
        "cnet nft",
        "ipset+iptables",
        "iptables per-pair",
    ];
    for cfg in configs {
        clear(&vn.ns);
        let t = Instant::now();
        let loaded: Result<String, String> = match cfg {
            "no policy" => Ok("no ruleset".into()),
            "cnet nft" => w
                .engine(&|i| {
                    ifnames
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| format!("cv{i:08x}"))
                })
                .and_then(|mut e| {
                    vn.ns
                        .in_netns(|| e.sync().map(|_| ()).map_err(|err| err.to_string()))
                })
                .map(|()| big.clone()),
            "ipset+iptables" => {
                let (sets, rules) = w.ipset_restore();
                run_stdin(&vn.ns, &["ipset", "restore"], &sets)
                    .and_then(|()| run_stdin(&vn.ns, &[IPT], &rules))
                    .map(|()| big.clone())
            }
            _ => match &pp {
                Some(p) => run_stdin(&vn.ns, &[IPT], &p.per_pair_restore()).map(|()| {
                    format!(
                        "{} pods x {} policies, {} rules",
                        p.pods.len(),
                        p.policies.len() - 1,
                        p.per_pair_rule_count()
                    )
                }),
                None => Err("no workload under the rule cap".into()),
            },
        };
        let what = match loaded {
            Ok(w) => w,
            Err(e) => {
                println!("dataplane: {cfg}: not loaded: {e}");
                continue;
            }
        };
        println!(
            "dataplane: {cfg}: {what} loaded in {:.0} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
        if !cnet_testsupport::NetNs::tcp_ok(&client, server_ip, RR_PORT) {
            println!("dataplane: {cfg}: client cannot reach the server; skipped");
            continue;
        }
        let is_ref = cfg == "no policy";
        let note = format!("ruleset: {what}");
        let mut run = |metric: &str, unit: &str, f: &dyn Fn() -> Result<f64, String>| {
            let mut v = Vec::new();
            for _ in 0..samples {
                match f() {
                    Ok(x) => v.push(x),
                    Err(e) => {
                        println!("dataplane: {cfg} {metric}: {e}");
                        return;
                    }
                }
            }
            let case = match metric {
                "throughput" => "tcp throughput",
                "rr_rate" => "tcp request/response",
                _ => "tcp connect/request/response",
            };
            rec.samples(case, cfg, metric, unit, &v)
                .higher()
                .reference_if(is_ref)
                .note(&note);
        };
        if have_iperf {
            run("throughput", "Gbit/s", &|| iperf(&client, server_ip, secs));
        }
        run("rr_rate", "transactions/s", &|| {
            rr(&client, server_ip, secs, false)
        });
        run("crr_rate", "connections/s", &|| {
            rr(&client, server_ip, secs, true)
        });
    }
    clear(&vn.ns);
    rec.print_table();
    println!("note: ratios are to no policy at all (higher is better; 1.0 = no cost).");
}
