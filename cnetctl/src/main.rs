//! `cnetctl`: manage a cnet node's policies and endpoints (see the crate docs for exit codes).

use clap::{Parser, Subcommand, ValueEnum};
use cnet_cni::CniError;
use cnet_cni::cnet::identity::{LABEL_NAME, LABEL_NAMESPACE, LABEL_NETWORK};
use cnet_cni::cnet::policy::{engine_for, sync_state};
use cnet_cni::cnet::state::{EndpointRecord, NodeState, StateData, StateGuard};
use cnet_policy::endpoint::NAMESPACE_NAME_LABEL;
use cnetctl::{
    CtlError, Object, Outcome, is_dns_label, is_label_arg, load_documents, parse_label_args,
    parse_port, parse_port_specs, policy_files,
};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

const EXIT_CODES: &str = "Exit codes: 0 success (explain: allowed), 1 explain: denied, \
2 usage error, 3 bad policy file (nothing changed), 4 node state unusable (lock busy: retry), \
5 programming the kernel failed (nothing changed), 6 not found.";

/// Operator CLI of a cnet node: policies, endpoints, pod and namespace labels, container
/// ports, explain, render.
///
/// Works on one network's node state (the `cnet` plugin's `policy.stateDir/<network>`) and
/// programs nftables in the network namespace it runs in (run it in the node's).
///
/// What the runtime passes at ADD comes first: pod labels (`args.cni.labels`,
/// `runtimeConfig.labels`), container ports (`args.cni.ports`, `runtimeConfig.containerPorts`,
/// Kubernetes ContainerPort shape), `runtimeConfig.mac`; cnetctl adds what a CNI call cannot
/// carry (namespace labels, labels or ports that arrive later). See the README's "Use with
/// your runtime".
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
    /// Create or update policies and namespace labels from YAML/JSON files (NetworkPolicy,
    /// AdminNetworkPolicy, BaselineAdminNetworkPolicy, ClusterNetworkPolicy; projectcalico.org/v3
    /// NetworkPolicy, GlobalNetworkPolicy, the staged kinds, Tier, NetworkSet, GlobalNetworkSet,
    /// HostEndpoint, told apart by apiVersion; and v1 Namespace objects, whose
    /// `metadata.labels` become the namespace's labels); all or nothing.
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
    /// Delete the policies named in files (apiVersion, kind, namespace and name are used); a Namespace
    /// object removes that namespace's labels (its name label stays).
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
    /// List policies, endpoints (with their ports and labels) or namespaces (with labels).
    #[command(after_help = EXIT_CODES)]
    Get {
        /// What to list.
        what: What,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
        output: Format,
    },
    /// Set (`KEY=VALUE`) or remove (`KEY-`) labels of a pod or a namespace.
    ///
    /// `cnetctl label [pod] POD LABEL...`: POD is `namespace/name`, a pod name in `default`,
    /// or a container id. Marks the endpoint's labels as known (an endpoint isolated while
    /// waiting for labels gets its policy). The changes are also kept for the pod
    /// `namespace/name` in the node state and reapplied when the pod is attached again (a
    /// container restart is DEL then ADD).
    ///
    /// `cnetctl label namespace NAME LABEL...`: the namespace's labels, which
    /// `namespaceSelector`s match (the implicit `kubernetes.io/metadata.name: NAME` is always
    /// there and cannot be changed). Kept in the node state whether or not pods of the
    /// namespace exist yet.
    ///
    /// As with kubectl, changing the value of an existing label needs `--overwrite`.
    #[command(
        after_help = EXIT_CODES,
        override_usage = "cnetctl label [OPTIONS] [pod] POD KEY=VALUE|KEY-...\n       \
                          cnetctl label [OPTIONS] namespace NAME KEY=VALUE|KEY-..."
    )]
    Label {
        /// `[pod] POD` or `namespace NAME` (also `ns`), then `KEY=VALUE` to set, `KEY-` to
        /// remove.
        #[arg(required = true, num_args = 2.., value_name = "ARG")]
        args: Vec<String>,
        /// Allow replacing the value of a label that is already set.
        #[arg(long)]
        overwrite: bool,
    },
    /// Show or replace the container ports of a pod (what named-port rules resolve to).
    ///
    /// Each PORT is `[NAME=]NUMBER[/PROTO]` (protocol tcp, udp or sctp; tcp by default), e.g.
    /// `cnetctl ports prod/web http=8080 dns=53/udp`. The list replaces the ports the runtime
    /// supplied at ADD (`args.cni.ports` or `runtimeConfig.containerPorts`) and is kept for
    /// the pod across a restart, like labels. Without PORTs (and without `--none`) it prints
    /// the pod's ports.
    #[command(after_help = EXIT_CODES)]
    Ports {
        /// The pod: `namespace/name`, a pod name in `default`, or a container id.
        pod: String,
        /// Ports, `[NAME=]NUMBER[/PROTO]`.
        ports: Vec<String>,
        /// Remove all of the pod's container ports.
        #[arg(long, conflicts_with = "ports")]
        none: bool,
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
    /// Namespaces (with labels set on this node, or with pods here) and their labels.
    #[value(alias = "ns", alias = "namespace")]
    Namespaces,
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
            let outcome = match &d.object {
                Object::Policy(s) => apply_policy(&mut g.data, s, delete),
                Object::Namespace { name, labels } => {
                    apply_namespace(&mut g.data, name, labels, delete)
                }
            };
            report.push(format!("{} {outcome}", d.key()));
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
            (What::Namespaces, Format::Json) => {
                let list: Vec<serde_json::Value> = namespaces(&data)
                    .into_iter()
                    .map(|(name, (pods, labels))| {
                        serde_json::json!({"name": name, "pods": pods, "labels": labels})
                    })
                    .collect();
                print_json(&list);
            }
            (What::Namespaces, Format::Table) => {
                let mut rows = vec![["NAME", "PODS", "LABELS"].map(String::from).to_vec()];
                for (name, (pods, labels)) in namespaces(&data) {
                    let labels: Vec<String> =
                        labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    rows.push(vec![name, pods.to_string(), labels.join(",")]);
                }
                print_table(&rows);
            }
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
                        "PORTS",
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
                        e.ports
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(","),
                        labels,
                    ]);
                }
                print_table(&rows);
            }
        }
        Ok(0)
    }

    fn label(&self, args: &[String], overwrite: bool) -> Result<i32, CtlError> {
        // `[pod] POD LABEL...` or `namespace NAME LABEL...`; a kind word is a kind only when
        // a name (not a label change) follows it.
        let kinded = args.len() >= 3 && !is_label_arg(&args[1]);
        let (namespace, who, labels) = match args[0].as_str() {
            "namespace" | "namespaces" | "ns" if kinded => (true, &args[1], &args[2..]),
            "pod" | "pods" | "po" if kinded => (false, &args[1], &args[2..]),
            _ => (false, &args[0], &args[1..]),
        };
        let changes = parse_label_args(labels)?;
        if namespace {
            return self.label_namespace(who, &changes, overwrite);
        }
        for (k, _) in &changes {
            if [LABEL_NAME, LABEL_NAMESPACE, LABEL_NETWORK].contains(&k.as_str()) {
                return Err(CtlError::Usage(format!(
                    "label {k:?} is implicit and cannot be changed"
                )));
            }
        }
        let mut g = self.lock()?;
        let idx = find_endpoint(&g.data.endpoints, who)?;
        if !overwrite {
            refuse_overwrite(
                &g.data.endpoints[idx].labels,
                &changes,
                &g.data.endpoints[idx].pod(),
            )?;
        }
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

    fn label_namespace(
        &self,
        ns: &str,
        changes: &[(String, Option<String>)],
        overwrite: bool,
    ) -> Result<i32, CtlError> {
        if !is_dns_label(ns) {
            return Err(CtlError::Usage(format!(
                "namespace {ns:?}: expected a namespace name (1-63 of a-z, 0-9, '-')"
            )));
        }
        if changes.iter().any(|(k, _)| k == NAMESPACE_NAME_LABEL) {
            return Err(CtlError::Usage(format!(
                "label {NAMESPACE_NAME_LABEL:?} is implicit and cannot be changed"
            )));
        }
        let mut g = self.lock()?;
        let mut labels = g.data.namespaces.get(ns).cloned().unwrap_or_default();
        if !overwrite {
            refuse_overwrite(&labels, changes, &format!("namespace {ns}"))?;
        }
        for (k, v) in changes {
            match v {
                Some(v) => {
                    labels.insert(k.clone(), v.clone());
                }
                None => {
                    labels.remove(k);
                }
            }
        }
        if g.data.namespaces.get(ns) == Some(&labels) {
            println!("namespace {ns} not labeled (unchanged)");
            return Ok(0);
        }
        g.data.namespaces.insert(ns.to_string(), labels);
        self.program_and_commit(&mut g)?;
        println!("namespace {ns} labeled");
        Ok(0)
    }

    fn ports(&self, who: &str, ports: &[String], none: bool) -> Result<i32, CtlError> {
        if ports.is_empty() && !none {
            let data = self.read()?;
            let e = &data.endpoints[find_endpoint(&data.endpoints, who)?];
            for p in &e.ports {
                println!("{p}");
            }
            return Ok(0);
        }
        let list = parse_port_specs(ports)?;
        let mut g = self.lock()?;
        let idx = find_endpoint(&g.data.endpoints, who)?;
        let e = &mut g.data.endpoints[idx];
        e.ports.clone_from(&list);
        let (key, pod) = (format!("{}/{}", e.namespace, e.name), e.pod());
        // Kept per pod: a restarted container (DEL then ADD) gets them back on ADD.
        g.data.pod_labels.entry(key).or_default().ports = Some(list);
        self.program_and_commit(&mut g)?;
        println!("endpoint {pod} ports set");
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

/// kubectl's rule: changing an existing label's value needs `--overwrite`.
fn refuse_overwrite(
    current: &BTreeMap<String, String>,
    changes: &[(String, Option<String>)],
    what: &str,
) -> Result<(), CtlError> {
    for (k, v) in changes {
        if let (Some(v), Some(old)) = (v, current.get(k))
            && old != v
        {
            return Err(CtlError::Usage(format!(
                "{what}: label {k:?} already has the value {old:?}; use --overwrite to change it"
            )));
        }
    }
    Ok(())
}

fn apply_policy(
    data: &mut StateData,
    s: &cnet_cni::cnet::state::StoredPolicy,
    delete: bool,
) -> Outcome {
    if delete {
        return match data.remove_policy(&s.kind, &s.namespace, &s.name) {
            Some(_) => Outcome::Deleted,
            None => Outcome::NotFound,
        };
    }
    let existed = data
        .policies
        .iter()
        .any(|q| q.kind == s.kind && q.namespace == s.namespace && q.name == s.name);
    match (existed, data.upsert_policy(s.clone())) {
        (false, _) => Outcome::Created,
        (true, true) => Outcome::Configured,
        (true, false) => Outcome::Unchanged,
    }
}

fn apply_namespace(
    data: &mut StateData,
    name: &str,
    labels: &BTreeMap<String, String>,
    delete: bool,
) -> Outcome {
    if delete {
        return match data.namespaces.remove(name) {
            Some(_) => Outcome::Deleted,
            None => Outcome::NotFound,
        };
    }
    match data.namespaces.insert(name.to_string(), labels.clone()) {
        None => Outcome::Created,
        Some(old) if &old == labels => Outcome::Unchanged,
        Some(_) => Outcome::Configured,
    }
}

/// Every namespace the node knows (labelled, or with pods here): pods, labels as selectors see
/// them (the implicit name label included).
fn namespaces(data: &StateData) -> BTreeMap<String, (usize, BTreeMap<String, String>)> {
    let mut out: BTreeMap<String, (usize, BTreeMap<String, String>)> = BTreeMap::new();
    for (ns, labels) in &data.namespaces {
        out.entry(ns.clone()).or_default().1.clone_from(labels);
    }
    for e in &data.endpoints {
        out.entry(e.namespace.clone()).or_default().0 += 1;
    }
    for (ns, (_, labels)) in out.iter_mut() {
        labels.insert(NAMESPACE_NAME_LABEL.to_string(), ns.clone());
    }
    out
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

// musl's own malloc returns memory to the kernel at once (see cnet-cni's Cargo.toml).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = Cli::parse();
    let ctl = Ctl {
        state: NodeState::new(&cli.state_dir, Duration::from_millis(cli.lock_timeout_ms)),
    };
    let result = match &cli.cmd {
        Cmd::Apply { files } => ctl.apply(files, false),
        Cmd::Delete { files } => ctl.apply(files, true),
        Cmd::Get { what, output } => ctl.get(*what, *output),
        Cmd::Label { args, overwrite } => ctl.label(args, *overwrite),
        Cmd::Ports { pod, ports, none } => ctl.ports(pod, ports, *none),
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
