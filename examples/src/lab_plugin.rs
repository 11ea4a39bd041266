//! The lab built the way a runtime builds a node: every pod attached through the real `cnet`
//! CNI plugin binary, policies applied with the real `cnetctl`.
//!
//! For one [`PreparedRecord`]: a node network namespace (as in [`crate::lab`]); a node state
//! directory of its own; for each pod-network pod a namespace and one `cnet` ADD run inside
//! the node namespace exactly as a runtime calls it (`CNI_*` environment, the network
//! configuration on stdin, `CNI_NETNS` the pod namespace, `K8S_POD_NAMESPACE`/`K8S_POD_NAME`
//! and the pod's scenario address as `IP=` in `CNI_ARGS`, its labels in `args.cni.labels`);
//! then `cnetctl --state-dir DIR apply -f DIR` with the record's policies. Servers, probes and
//! skip reasons are the kernel oracle's ([`crate::lab`]). On drop every pod is deleted with
//! `cnet` DEL, then the namespaces and the state directory go.
//!
//! Namespace labels beyond the implicit `kubernetes.io/metadata.name` go to the node as
//! `kind: Namespace` objects in the same `cnetctl apply -f`; pods' container ports (named ones
//! resolve named-port rules) go to the plugin at ADD as `args.cni.ports` in the Kubernetes
//! `ContainerPort` shape. Nothing reaches the node except through the two binaries.

use crate::lab::{LabMode, bridge_subnet, explained, node_for, run_parallel_with, skip_all};
use crate::runner::{Oracle, PreparedRecord, ProbeResult};
use cnet_policy::endpoint::NAMESPACE_NAME_LABEL;
use cnet_testsupport::NetNs;
use ipnetwork::IpNetwork;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The CNI network name used by the lab.
pub const NETWORK: &str = "lab";

/// Where the `cnet` and `cnetctl` binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The `cnet` CNI plugin.
    pub cnet: PathBuf,
    /// The `cnetctl` node tool.
    pub cnetctl: PathBuf,
}

impl Binaries {
    /// The binaries of this build's profile directory (the parent of the running executable's
    /// `deps/` or `examples/` directory), built with cargo (`$CARGO` or `cargo`) when missing.
    /// Looked up once per process.
    pub fn locate() -> Result<Binaries, String> {
        static FOUND: OnceLock<Result<Binaries, String>> = OnceLock::new();
        FOUND.get_or_init(locate_uncached).clone()
    }
}

fn locate_uncached() -> Result<Binaries, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate the target directory")?
        .to_path_buf();
    let bins = Binaries {
        cnet: profile.join("cnet"),
        cnetctl: profile.join("cnetctl"),
    };
    if bins.cnet.exists() && bins.cnetctl.exists() {
        return Ok(bins);
    }
    let target = profile
        .parent()
        .ok_or("cannot locate the target directory")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "-p",
        "cnet-cni",
        "-p",
        "cnetctl",
        "--bins",
        "--target-dir",
    ])
    .arg(target);
    if profile.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let st = cmd.status().map_err(|e| format!("cargo build: {e}"))?;
    if !st.success() || !bins.cnet.exists() || !bins.cnetctl.exists() {
        return Err("building cnet and cnetctl failed".into());
    }
    Ok(bins)
}

/// A node whose pods were attached by the `cnet` plugin.
pub struct PluginLab {
    lab: Option<crate::lab::Lab>,
    added: Vec<(String, Value, String)>,
    bins: Binaries,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for PluginLab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginLab")
            .field("state", &self.dir.path())
            .field("pods", &self.added.len())
            .finish()
    }
}

impl Drop for PluginLab {
    fn drop(&mut self) {
        if let Some(lab) = &self.lab {
            for (cid, conf, args) in &self.added {
                // Best effort: the node namespace goes next anyway.
                let _ = cni_call(&self.bins, &lab.node, "DEL", cid, None, args, conf);
            }
        }
        // Servers stop, then pod and node namespaces are deleted; the state dir goes last.
        self.lab = None;
    }
}

/// One plugin call inside `node`; returns stdout on success.
fn cni_call(
    bins: &Binaries,
    node: &NetNs,
    command: &str,
    container_id: &str,
    netns: Option<&Path>,
    cni_args: &str,
    conf: &Value,
) -> Result<String, String> {
    let bin = bins.cnet.display().to_string();
    let mut cmd = node.command(&[&bin]);
    cmd.env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container_id)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .env("CNI_ARGS", cni_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(n) = netns {
        cmd.env("CNI_NETNS", n);
    }
    let mut child = cmd.spawn().map_err(|e| format!("cnet {command}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(conf.to_string().as_bytes())
            .map_err(|e| format!("cnet {command}: stdin: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("cnet {command}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "cnet {command} {container_id}: {} {}",
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn cnetctl(bins: &Binaries, node: &NetNs, args: &[&str]) -> Result<String, String> {
    let bin = bins.cnetctl.display().to_string();
    let mut all = vec![bin.as_str()];
    all.extend_from_slice(args);
    let out = node
        .command(&all)
        .output()
        .map_err(|e| format!("cnetctl: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "cnetctl {}: {} {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl PluginLab {
    /// Build the node, ADD every pod through `cnet`, apply the policies with `cnetctl`, start
    /// the servers.
    pub fn build(rec: &PreparedRecord, mode: LabMode, bins: &Binaries) -> Result<Self, String> {
        let (node, _) = node_for(rec)?;
        let dir = tempfile::Builder::new()
            .prefix("cnet-lab-")
            .tempdir()
            .map_err(|e| format!("state dir: {e}"))?;
        let mut me = PluginLab {
            lab: None,
            added: Vec::new(),
            bins: bins.clone(),
            dir,
        };
        let mut base = json!({
            "cniVersion": "1.1.0", "name": NETWORK, "type": "cnet", "mtu": 1500,
            "policy": {"stateDir": me.dir.path().join("state").display().to_string()},
        });
        if mode == LabMode::Bridge {
            base["mode"] = json!("bridge");
            base["bridge"] = json!(crate::lab::LAB_BRIDGE);
        }
        let ipam_dir = me.dir.path().join("ipam").display().to_string();
        let mut pods = Vec::new();
        let mut first_err = None;
        for (i, p) in rec.pods.iter().enumerate() {
            if p.host_network {
                pods.push(None);
                continue;
            }
            let ns = NetNs::new("labp");
            let (net, gw) = bridge_subnet(p.address);
            let subnet = IpNetwork::new(net.network(), net.prefix()).unwrap_or(net);
            let mut conf = base.clone();
            conf["ipam"] = json!({"type": "cnet-ipam", "dataDir": ipam_dir,
                "ranges": [[{"subnet": subnet.to_string(), "gateway": gw.to_string()}]]});
            let labels: Vec<Value> = p
                .labels
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            let ports: Vec<Value> = p
                .ports
                .iter()
                .map(|q| {
                    let mut port =
                        json!({"containerPort": q.port, "protocol": q.protocol.to_string()});
                    if let Some(n) = &q.name {
                        port["name"] = json!(n);
                    }
                    port
                })
                .collect();
            conf["args"] = json!({"cni": {"labels": labels, "ports": ports}});
            let cid = format!("lab{i}-{}-{}", p.id.namespace, p.id.name);
            let args = format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};IP={}",
                p.id.namespace, p.id.name, p.address
            );
            match cni_call(bins, &node, "ADD", &cid, Some(&ns.path()), &args, &conf) {
                Ok(_) => me.added.push((cid, conf, args)),
                Err(e) => {
                    first_err = Some(format!("pod {}: {e}", p.id));
                    pods.push(Some(ns));
                    break;
                }
            }
            pods.push(Some(ns));
        }
        let engine = cnet_policy::engine::Engine::new(cnet_policy::compile::Mode::Transparent);
        me.lab = Some(crate::lab::Lab::assemble(node, pods, engine));
        if let Some(e) = first_err {
            return Err(e);
        }
        me.apply_policies(rec)?;
        if let Some(lab) = me.lab.as_mut() {
            lab.start(rec)?;
        }
        Ok(me)
    }

    /// The running lab (servers, namespaces).
    pub fn lab(&self) -> Option<&crate::lab::Lab> {
        self.lab.as_ref()
    }

    /// This network's node state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state").join(NETWORK)
    }

    fn node(&self) -> Result<&NetNs, String> {
        self.lab
            .as_ref()
            .map(|l| &l.node)
            .ok_or_else(|| "lab not built".to_string())
    }

    fn apply_policies(&self, rec: &PreparedRecord) -> Result<(), String> {
        let files = self.dir.path().join("policies");
        std::fs::create_dir_all(&files).map_err(|e| format!("{}: {e}", files.display()))?;
        let mut docs: Vec<Value> = Vec::new();
        // Namespaces with labels beyond their name, as the Namespace objects a user has.
        for (ns, labels) in &rec.inventory.namespaces {
            let extra: std::collections::BTreeMap<&String, &String> = labels
                .iter()
                .filter(|(k, _)| k.as_str() != NAMESPACE_NAME_LABEL)
                .collect();
            if !extra.is_empty() {
                docs.push(json!({"apiVersion": "v1", "kind": "Namespace",
                                 "metadata": {"name": ns, "labels": extra}}));
            }
        }
        for p in &rec.policies {
            docs.push(serde_json::to_value(p).map_err(|e| e.to_string())?);
        }
        for p in &rec.admin_policies {
            docs.push(serde_json::to_value(p).map_err(|e| e.to_string())?);
        }
        if docs.is_empty() {
            return Ok(());
        }
        for (i, d) in docs.iter().enumerate() {
            let f = files.join(format!("{i:04}.json"));
            std::fs::write(&f, d.to_string()).map_err(|e| format!("{}: {e}", f.display()))?;
        }
        let state = self.state_dir().display().to_string();
        let files = files.display().to_string();
        cnetctl(
            &self.bins,
            self.node()?,
            &["--state-dir", &state, "apply", "-f", &files],
        )
        .map(|_| ())
    }
}

/// Answers probes with real packets through a node whose pods the `cnet` plugin attached.
#[derive(Debug, Clone)]
pub struct PluginOracle {
    /// Routing mode (the plugin's `mode`).
    pub mode: LabMode,
    /// How long a connection attempt may take before it counts as dropped.
    pub timeout: Duration,
    /// Probes in flight at once.
    pub parallelism: usize,
    /// The binaries (`None`: [`Binaries::locate`] on first use).
    pub binaries: Option<Binaries>,
}

impl PluginOracle {
    /// An oracle with a 1 s timeout and 64 probes in flight.
    pub fn new(mode: LabMode) -> PluginOracle {
        PluginOracle {
            mode,
            timeout: Duration::from_secs(1),
            parallelism: 64,
            binaries: None,
        }
    }
}

impl Oracle for PluginOracle {
    fn run(&mut self, rec: &PreparedRecord) -> Result<Vec<ProbeResult>, String> {
        if let Some(skipped) = skip_all(rec) {
            return Ok(skipped);
        }
        let bins = match &self.binaries {
            Some(b) => b.clone(),
            None => {
                let b = Binaries::locate()?;
                self.binaries = Some(b.clone());
                b
            }
        };
        let lab = PluginLab::build(rec, self.mode, &bins)?;
        let inner = lab.lab().ok_or("lab not built")?;
        let outcomes = inner.probe_all(rec, self.timeout, self.parallelism);
        Ok(explained(rec, outcomes))
    }
}

/// Run records with the plugin oracle, several records at once (each in its own virtual node
/// with its own node state), keeping file order in the report.
pub fn run_records_parallel(
    inputs: &[crate::scenario::RecordInput],
    mode: LabMode,
    opts: &crate::runner::RunOptions,
) -> crate::runner::Report {
    run_parallel_with(inputs, opts, || PluginOracle::new(mode))
}
