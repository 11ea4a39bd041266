//! `cnetctl`: manage a cnet node's policies and endpoints (see the crate docs for exit codes).

use clap::{Parser, Subcommand, ValueEnum};
use cnet_cni::CniError;
use cnet_cni::cnet::identity::{LABEL_NAME, LABEL_NAMESPACE, LABEL_NETWORK};
use cnet_cni::cnet::policy::{engine_for, sync_state};
use cnet_cni::cnet::state::{EndpointRecord, NodeState, StateData, StateGuard};
use cnetctl::{CtlError, Outcome, load_documents, parse_label_args, parse_port, policy_files};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

const EXIT_CODES: &str = "Exit codes: 0 success (explain: allowed), 1 explain: denied, \
2 usage error, 3 bad policy file (nothing changed), 4 node state unusable (lock busy: retry), \
5 programming the kernel failed (nothing changed), 6 not found.";

/// Operator CLI of a cnet node: policies, endpoints, labels, explain, render.
///
/// Works on one network's node state (the `cnet` plugin's `policy.stateDir/<network>`) and
/// programs nftables in the network namespace it runs in (run it in the node's).
#[derive(Debug, Parser)]
#[command(name = "cnetctl", version, after_help = EXIT_CODES)]
struct Cli {
    /// The network's state directory (`policy.stateDir` + `/` + network name).
    #[arg(
        long,
        global = true,
        default_value = "/var/lib/cni/cnet/cnet",
        value_name = "DIR"
    )]
    state_dir: PathBuf,
    /// Longest wait for the node state lock, in milliseconds (then exit 4).
    #[arg(long, global = true, default_value_t = 10_000, value_name = "MS")]
    lock_timeout_ms: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create or update policies from YAML/JSON files (NetworkPolicy, AdminNetworkPolicy,
    /// BaselineAdminNetworkPolicy, ClusterNetworkPolicy); all or nothing.
    #[command(after_help = EXIT_CODES)]
    Apply {
        /// A file, or a directory of .yaml/.yml/.json files; repeatable.
        #[arg(
            short = 'f',
            long = "filename",
            required = true,
            value_name = "FILE|DIR"
        )]
        files: Vec<PathBuf>,
    },
    /// Delete the policies named in files (kind, namespace and name are used).
    #[command(after_help = EXIT_CODES)]
    Delete {
        /// A file, or a directory of .yaml/.yml/.json files; repeatable.
        #[arg(
            short = 'f',
            long = "filename",
            required = true,
            value_name = "FILE|DIR"
        )]
        files: Vec<PathBuf>,
    },
    /// List policies or endpoints.
    #[command(after_help = EXIT_CODES)]
    Get {
        /// What to list.
        what: What,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Set (`KEY=VALUE`) or remove (`KEY-`) labels of an endpoint; marks its labels as known
    /// (an endpoint isolated while waiting for labels gets its policy). The changes are also
    /// kept for the pod `namespace/name` in the node state and reapplied when the pod is
    /// attached again (a container restart is DEL then ADD).
    #[command(after_help = EXIT_CODES)]
    Label {
        /// The endpoint: `namespace/name`, a pod name in `default`, or a container id.
        endpoint: String,
        /// Labels: `KEY=VALUE` to set, `KEY-` to remove.
        #[arg(required = true)]
        labels: Vec<String>,
    },
    /// Explain whether a flow is allowed, and why (from the policy evaluator).
    #[command(after_help = EXIT_CODES)]
    Explain {
        /// Source: `namespace/name`, a container id, or an IP address.
        from: String,
        /// Destination: `namespace/name`, a container id, or an IP address.
        to: String,
        /// Destination port and protocol, e.g. `80/tcp`.
        port: String,
    },
    /// Print the nftables ruleset of the node's current state (as `nft -f` text).
    #[command(after_help = EXIT_CODES)]
    Render,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum What {
    /// Stored policy objects.
    Policies,
    /// Endpoints (attachments) on this node.
    Endpoints,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Aligned columns.
    Table,
    /// JSON.
    Json,
}

struct Ctl {
    state: NodeState,
}

fn state_err(state: &NodeState, e: CniError) -> CtlError {
    CtlError::State {
        dir: state.dir().to_path_buf(),
        message: format!("{} {}", e.msg, e.details).trim().to_string(),
    }
}

impl Ctl {
    fn lock(&self) -> Result<StateGuard, CtlError> {
        self.state.lock().map_err(|e| state_err(&self.state, e))
    }

    fn read(&self) -> Result<StateData, CtlError> {
        self.state.read().map_err(|e| state_err(&self.state, e))
    }

    /// Program then persist: a failure leaves both kernel and state as they were.
    fn program_and_commit(&self, g: &mut StateGuard) -> Result<(), CtlError> {
        sync_state(self.state.dir(), &g.data).map_err(|e| CtlError::Program(e.msg))?;
        g.commit().map_err(|e| state_err(&self.state, e))
    }

    fn apply(&self, files: &[PathBuf], delete: bool) -> Result<i32, CtlError> {
        let mut docs = Vec::new();
        for f in files {
            for p in policy_files(f)? {
                docs.extend(load_documents(&p)?);
            }
        }
        let mut g = self.lock()?;
        let mut report = Vec::new();
        for d in &docs {
            let s = &d.stored;
            let outcome = if delete {
                match g.data.remove_policy(&s.kind, &s.namespace, &s.name) {
                    Some(_) => Outcome::Deleted,
                    None => Outcome::NotFound,
                }
            } else {
                let existed =
                    g.data.policies.iter().any(|q| {
                        q.kind == s.kind && q.namespace == s.namespace && q.name == s.name
                    });
                match (existed, g.data.upsert_policy(s.clone())) {
                    (false, _) => Outcome::Created,
                    (true, true) => Outcome::Configured,
                    (true, false) => Outcome::Unchanged,
                }
            };
            report.push(format!("{} {outcome}", s.key()));
        }
        if report
            .iter()
            .any(|r| !r.ends_with("unchanged") && !r.ends_with("not found"))
        {
            self.program_and_commit(&mut g)?;
        }
        for r in report {
            println!("{r}");
        }
        Ok(0)
    }

    fn get(&self, what: What, output: Format) -> Result<i32, CtlError> {
        let data = self.read()?;
        match (what, output) {
            (What::Policies, Format::Json) => print_json(&data.policies),
            (What::Endpoints, Format::Json) => print_json(&data.endpoints),
            (What::Policies, Format::Table) => {
                let mut rows = vec![vec!["KIND".into(), "NAMESPACE".into(), "NAME".into()]];
                for p in &data.policies {
                    rows.push(vec![p.kind.clone(), p.namespace.clone(), p.name.clone()]);
                }
                print_table(&rows);
            }
            (What::Endpoints, Format::Table) => {
                let mut rows = vec![
                    [
                        "POD",
                        "CONTAINER",
                        "IFNAME",
                        "HOST-IF",
                        "ADDRESSES",
                        "PHASE",
                        "LABELS",
                    ]
                    .map(String::from)
                    .to_vec(),
                ];
                for e in &data.endpoints {
                    let labels: Vec<String> = e
                        .labels
                        .iter()
                        .filter(|(k, _)| {
                            ![LABEL_NAME, LABEL_NAMESPACE, LABEL_NETWORK].contains(&k.as_str())
                        })
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    let labels = if e.labels_known {
                        labels.join(",")
                    } else {
                        "<isolated: labels not known yet>".into()
                    };
                    rows.push(vec![
                        e.pod(),
                        short(&e.container_id),
                        e.ifname.clone(),
                        e.host_ifname.clone(),
                        e.addresses
                            .iter()
                            .map(|a| a.ip().to_string())
                            .collect::<Vec<_>>()
                            .join(","),
                        format!("{:?}", e.phase).to_lowercase(),
                        labels,
                    ]);
                }
                print_table(&rows);
            }
        }
        Ok(0)
    }

    fn label(&self, who: &str, labels: &[String]) -> Result<i32, CtlError> {
        let changes = parse_label_args(labels)?;
        for (k, _) in &changes {
            if [LABEL_NAME, LABEL_NAMESPACE, LABEL_NETWORK].contains(&k.as_str()) {
                return Err(CtlError::Usage(format!(
                    "label {k:?} is implicit and cannot be changed"
                )));
            }
        }
        let mut g = self.lock()?;
        let idx = find_endpoint(&g.data.endpoints, who)?;
        let (namespace, name) = (
            g.data.endpoints[idx].namespace.clone(),
            g.data.endpoints[idx].name.clone(),
        );
        // Kept per pod as well: a restarted container (DEL then ADD) gets them back on ADD.
        g.data.record_pod_labels(&namespace, &name, &changes);
        let e = &mut g.data.endpoints[idx];
        for (k, v) in changes {
            match v {
                Some(v) => {
                    e.labels.insert(k, v);
                }
                None => {
                    e.labels.remove(&k);
                }
            }
        }
        e.labels_known = true;
        let pod = e.pod();
        self.program_and_commit(&mut g)?;
        println!("endpoint {pod} labeled");
        Ok(0)
    }

    fn explain(&self, from: &str, to: &str, port: &str) -> Result<i32, CtlError> {
        let (dst_port, protocol) = parse_port(port)?;
        let data = self.read()?;
        let (src_ep, src_ips) = resolve(&data.endpoints, from)?;
        let (dst_ep, dst_ips) = resolve(&data.endpoints, to)?;
        let (src, dst) = src_ips
            .iter()
            .find_map(|s| {
                dst_ips
                    .iter()
                    .find(|d| d.is_ipv4() == s.is_ipv4())
                    .map(|d| (*s, *d))
            })
            .ok_or_else(|| {
                CtlError::NotFound(format!("{from} and {to} share no address family"))
            })?;
        let name = |ep: Option<&EndpointRecord>, ip: IpAddr| {
            ep.map_or(ip.to_string(), |e| format!("{} ({ip})", e.pod()))
        };
        let head = format!(
            "{} -> {} {dst_port}/{protocol}",
            name(src_ep, src),
            name(dst_ep, dst)
        );
        for ep in [src_ep, dst_ep].into_iter().flatten() {
            if !ep.labels_known {
                println!(
                    "DENY {head}\n  {} is isolated: its labels come from an outside source and have not been supplied (cnetctl label)",
                    ep.pod()
                );
                return Ok(1);
            }
        }
        let mut engine = engine_for(&data).map_err(|e| CtlError::Program(e.msg))?;
        let set = engine
            .policy_set()
            .map_err(|e| CtlError::Program(e.to_string()))?
            .clone();
        let eval = cnet_policy::Evaluator::new(set, engine.inventory().clone());
        let d = eval.decide(&cnet_policy::Flow {
            src,
            dst,
            protocol,
            dst_port,
        });
        let allowed = d.verdict == cnet_policy::Verdict::Allow;
        println!("{} {head}", if allowed { "ALLOW" } else { "DENY" });
        let text = d.to_string();
        for line in text.lines().skip(1) {
            println!("{line}");
        }
        Ok(if allowed { 0 } else { 1 })
    }

    fn render(&self) -> Result<i32, CtlError> {
        let data = self.read()?;
        let mut engine = engine_for(&data).map_err(|e| CtlError::Program(e.msg))?;
        let text = engine
            .render()
            .map_err(|e| CtlError::Program(e.to_string()))?;
        print!("{text}");
        Ok(0)
    }
}

fn short(cid: &str) -> String {
    cid.chars().take(12).collect()
}

fn find_endpoint(eps: &[EndpointRecord], who: &str) -> Result<usize, CtlError> {
    let (ns, name) = who.split_once('/').unwrap_or(("default", who));
    eps.iter()
        .position(|e| e.namespace == ns && e.name == name)
        .or_else(|| eps.iter().position(|e| e.container_id == who))
        .ok_or_else(|| CtlError::NotFound(format!("no endpoint {who:?} on this node")))
}

fn resolve<'a>(
    eps: &'a [EndpointRecord],
    who: &str,
) -> Result<(Option<&'a EndpointRecord>, Vec<IpAddr>), CtlError> {
    if let Ok(ip) = who.parse::<IpAddr>() {
        let ep = eps
            .iter()
            .find(|e| e.addresses.iter().any(|a| a.ip() == ip));
        return Ok((ep, vec![ip]));
    }
    let i = find_endpoint(eps, who)?;
    let ep = &eps[i];
    Ok((Some(ep), ep.addresses.iter().map(|a| a.ip()).collect()))
}

fn print_json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn print_table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s:<w$}", w = widths[i]))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

fn main() {
    let cli = Cli::parse();
    let ctl = Ctl {
        state: NodeState::new(&cli.state_dir, Duration::from_millis(cli.lock_timeout_ms)),
    };
    let result = match &cli.cmd {
        Cmd::Apply { files } => ctl.apply(files, false),
        Cmd::Delete { files } => ctl.apply(files, true),
        Cmd::Get { what, output } => ctl.get(*what, *output),
        Cmd::Label { endpoint, labels } => ctl.label(endpoint, labels),
        Cmd::Explain { from, to, port } => ctl.explain(from, to, port),
        Cmd::Render => ctl.render(),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
