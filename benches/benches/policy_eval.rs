//! Bench `policy_eval`: the evaluator's cost per flow with 1k policies and 10k endpoints, and
//! parse + normalise time for 1k policies (YAML), in one run. Under `cargo test` (no
//! `--bench`) a tiny smoke pass runs instead.
//!
//! `cargo bench -p cnet-benches --bench policy_eval`

use cnet_benches::{measuring, median};
use cnet_policy::api::*;
use cnet_policy::endpoint::NamedPort;
use cnet_policy::{
    Endpoint, Evaluator, Flow, Inventory, PolicySet, Protocol, Verdict, parse_yaml, render_yaml,
};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

/// A small deterministic generator (no extra dependency, same numbers every run).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

const APPS: usize = 10;

fn sel(kv: &[(&str, String)]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(kv.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()),
        match_expressions: None,
    }
}

fn pod_peer(app: usize) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(sel(&[("app", format!("app{app}"))])),
        ..Default::default()
    }
}

/// Realistic shapes, cycling: app tiers (ingress from one app on a port), namespace
/// isolation (from namespaces with a label), ipBlocks with except, named ports, egress
/// default-deny with a DNS exception.
fn policies(namespaces: usize, per_ns: usize) -> Vec<NetworkPolicy> {
    let mut out = Vec::new();
    for ns in 0..namespaces {
        for i in 0..per_ns {
            let app = i % APPS;
            let spec = match i % 5 {
                0 => NetworkPolicySpec {
                    pod_selector: sel(&[("app", format!("app{app}"))]),
                    ingress: Some(vec![NetworkPolicyIngressRule {
                        from: Some(vec![pod_peer((app + 1) % APPS)]),
                        ports: Some(vec![NetworkPolicyPort {
                            protocol: Some("TCP".into()),
                            port: Some(IntOrString::Int(8080)),
                            end_port: None,
                        }]),
                    }]),
                    ..Default::default()
                },
                1 => NetworkPolicySpec {
                    pod_selector: LabelSelector::default(),
                    ingress: Some(vec![NetworkPolicyIngressRule {
                        from: Some(vec![NetworkPolicyPeer {
                            namespace_selector: Some(sel(&[("team", format!("t{}", ns % 4))])),
                            ..Default::default()
                        }]),
                        ports: None,
                    }]),
                    ..Default::default()
                },
                2 => NetworkPolicySpec {
                    pod_selector: sel(&[("tier", "db".into())]),
                    ingress: Some(vec![NetworkPolicyIngressRule {
                        from: Some(vec![NetworkPolicyPeer {
                            ip_block: Some(IpBlock {
                                cidr: "10.0.0.0/8".into(),
                                except: Some(vec![format!("10.{}.0.0/16", ns % 200)]),
                            }),
                            ..Default::default()
                        }]),
                        ports: Some(vec![NetworkPolicyPort {
                            protocol: None,
                            port: Some(IntOrString::Int(5432)),
                            end_port: Some(5440),
                        }]),
                    }]),
                    ..Default::default()
                },
                3 => NetworkPolicySpec {
                    pod_selector: sel(&[("app", format!("app{app}"))]),
                    ingress: Some(vec![NetworkPolicyIngressRule {
                        from: Some(vec![NetworkPolicyPeer {
                            namespace_selector: Some(LabelSelector::default()),
                            pod_selector: Some(sel(&[("tier", "web".into())])),
                            ip_block: None,
                        }]),
                        ports: Some(vec![NetworkPolicyPort {
                            protocol: None,
                            port: Some(IntOrString::String("http".into())),
                            end_port: None,
                        }]),
                    }]),
                    ..Default::default()
                },
                _ => NetworkPolicySpec {
                    pod_selector: sel(&[("app", format!("app{app}"))]),
                    egress: Some(vec![NetworkPolicyEgressRule {
                        to: Some(vec![NetworkPolicyPeer {
                            namespace_selector: Some(sel(&[(
                                "kubernetes.io/metadata.name",
                                "kube-system".into(),
                            )])),
                            ..Default::default()
                        }]),
                        ports: Some(vec![NetworkPolicyPort {
                            protocol: Some("UDP".into()),
                            port: Some(IntOrString::Int(53)),
                            end_port: None,
                        }]),
                    }]),
                    policy_types: Some(vec!["Egress".into()]),
                    ..Default::default()
                },
            };
            out.push(NetworkPolicy {
                api_version: API_VERSION.into(),
                kind: KIND.into(),
                metadata: ObjectMeta {
                    name: format!("p{i}"),
                    namespace: Some(format!("ns{ns}")),
                    ..Default::default()
                },
                spec,
            });
        }
    }
    out
}

fn inventory(namespaces: usize, per_ns: usize) -> (Inventory, Vec<IpAddr>) {
    let mut inv = Inventory::default();
    let mut addrs = Vec::new();
    let tiers = ["web", "api", "db"];
    for ns in 0..namespaces {
        inv.upsert_namespace(
            &format!("ns{ns}"),
            BTreeMap::from([("team".to_string(), format!("t{}", ns % 4))]),
        );
        for p in 0..per_ns {
            let n = ns * per_ns + p;
            let addr = IpAddr::V4(Ipv4Addr::new(10, (n >> 16) as u8, (n >> 8) as u8, n as u8));
            let labels = BTreeMap::from([
                ("app".to_string(), format!("app{}", p % APPS)),
                ("tier".to_string(), tiers[p % 3].to_string()),
            ]);
            let mut ep = Endpoint::new(&format!("ns{ns}"), &format!("pod{p}"), labels, vec![addr]);
            ep.named_ports.insert(
                "http".into(),
                NamedPort {
                    port: 8080,
                    protocol: Protocol::Tcp,
                },
            );
            inv.upsert_endpoint(ep);
            addrs.push(addr);
        }
    }
    (inv, addrs)
}

fn run(namespaces: usize, policies_per_ns: usize, pods_per_ns: usize, flows: usize, rounds: usize) {
    let nps = policies(namespaces, policies_per_ns);
    let (inv, addrs) = inventory(namespaces, pods_per_ns);
    println!(
        "policy_eval: {} policies, {} endpoints, {} flows x {} rounds",
        nps.len(),
        addrs.len(),
        flows,
        rounds
    );

    // Parse + normalise.
    let yaml = match render_yaml(&nps) {
        Ok(y) => y,
        Err(e) => return eprintln!("policy_eval: render failed: {e}"),
    };
    let mut parse_ms = Vec::new();
    let mut set = None;
    for _ in 0..rounds {
        let t = Instant::now();
        let parsed = parse_yaml(&yaml);
        let normalised = parsed.and_then(|p| PolicySet::from_network_policies(&p));
        parse_ms.push(t.elapsed().as_secs_f64() * 1e3);
        match normalised {
            Ok(s) => set = Some(s),
            Err(e) => return eprintln!("policy_eval: parse failed: {e}"),
        }
    }
    let Some(set) = set else { return };
    println!(
        "  parse+normalise {} policies ({} KiB YAML): median {:.2} ms",
        nps.len(),
        yaml.len() / 1024,
        median(&mut parse_ms).unwrap_or(f64::NAN)
    );

    // Index build.
    let mut index_ms = Vec::new();
    let mut eval = None;
    for _ in 0..rounds.min(5) {
        let t = Instant::now();
        let e = Evaluator::new(set.clone(), inv.clone());
        index_ms.push(t.elapsed().as_secs_f64() * 1e3);
        eval = Some(e);
    }
    let Some(eval) = eval else { return };
    println!(
        "  evaluator index build (incl. clone of inputs): median {:.2} ms",
        median(&mut index_ms).unwrap_or(f64::NAN)
    );

    // Per-flow decisions.
    let mut rng = Lcg(42);
    let ports = [
        (Protocol::Tcp, 8080),
        (Protocol::Tcp, 5432),
        (Protocol::Udp, 53),
        (Protocol::Tcp, 80),
    ];
    let sample: Vec<Flow> = (0..flows)
        .map(|_| {
            let (protocol, dst_port) = ports[rng.next(ports.len())];
            Flow {
                src: addrs[rng.next(addrs.len())],
                dst: addrs[rng.next(addrs.len())],
                protocol,
                dst_port,
            }
        })
        .collect();
    let mut per_flow_ns = Vec::new();
    let mut allowed = 0usize;
    for _ in 0..rounds {
        let t = Instant::now();
        for f in &sample {
            if black_box(eval.decide(black_box(f))).verdict == Verdict::Allow {
                allowed += 1;
            }
        }
        per_flow_ns.push(t.elapsed().as_secs_f64() * 1e9 / sample.len().max(1) as f64);
    }
    let case = format!("{} policies x {} endpoints", nps.len(), addrs.len());
    let mut rec = cnet_benches::record::Recorder::new("policy_eval");
    rec.samples(&case, "evaluator", "parse_normalise", "ms", &parse_ms);
    rec.samples(&case, "evaluator decide()", "per_flow", "ns", &per_flow_ns);
    let med = median(&mut per_flow_ns).unwrap_or(f64::NAN);
    println!(
        "  decide() with reasons: median {:.0} ns/flow ({:.2} M flows/s), {:.1}% allowed",
        med,
        1e3 / med,
        100.0 * allowed as f64 / (sample.len() * rounds).max(1) as f64
    );
    let mut fast_ns = Vec::new();
    let mut fast_allowed = 0usize;
    for _ in 0..rounds {
        let t = Instant::now();
        for f in &sample {
            if black_box(eval.verdict(black_box(f))) == Verdict::Allow {
                fast_allowed += 1;
            }
        }
        fast_ns.push(t.elapsed().as_secs_f64() * 1e9 / sample.len().max(1) as f64);
    }
    rec.samples(&case, "evaluator verdict()", "per_flow", "ns", &fast_ns);
    let fast = median(&mut fast_ns).unwrap_or(f64::NAN);
    println!(
        "  verdict() fast path: median {:.0} ns/flow ({:.2} M flows/s); decide/verdict = {:.1}x; same verdicts: {}",
        fast,
        1e3 / fast,
        med / fast,
        fast_allowed == allowed
    );
}

fn main() {
    if cnet_benches::profile() == cnet_benches::Profile::Quick {
        run(100, 10, 100, 5_000, 5);
    } else if measuring() {
        // 100 namespaces x 10 policies = 1k policies; 100 x 100 pods = 10k endpoints.
        run(100, 10, 100, 20_000, 11);
    } else {
        run(4, 5, 5, 200, 3);
    }
}
