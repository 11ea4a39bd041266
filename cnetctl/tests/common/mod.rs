//! The virtual node of the cnetctl end-to-end tests: pods attached through the real `cnet`
//! binary (called as a runtime calls it), `cnetctl` run inside the node netns.
#![allow(clippy::unwrap_used, dead_code)]

use cnet_testsupport::{NetNs, VirtualNode};
use serde_json::{Value, json};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub fn cnetctl() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cnetctl"))
}

/// The `cnet` plugin beside `cnetctl`, built first when missing.
pub fn cnet() -> PathBuf {
    let dir = cnetctl().parent().unwrap().to_path_buf();
    let bin = dir.join("cnet");
    if !bin.exists() {
        let target = dir.parent().unwrap();
        let st = Command::new(env!("CARGO"))
            .args(["build", "-p", "cnet-cni", "--bin", "cnet", "--target-dir"])
            .arg(target)
            .status()
            .unwrap();
        assert!(st.success(), "building cnet");
    }
    bin
}

pub struct Lab {
    /// The underlay the node is attached to (its `uplink0` peer).
    pub ul: cnet_testsupport::Underlay,
    /// The virtual node.
    pub node: VirtualNode,
    /// State, IPAM and scratch files.
    pub dir: tempfile::TempDir,
    /// The network configuration.
    pub conf: Value,
}

impl Lab {
    pub fn new(mode: &str, labels: &str) -> Lab {
        let (ul, node) = VirtualNode::single(&["10.61.0.0/24"]);
        let dir = tempfile::tempdir().unwrap();
        let conf = json!({
            "cniVersion": "1.1.0", "name": "pol", "type": "cnet", "mode": mode,
            "ipam": {"type": "cnet-ipam", "subnet": "10.61.0.0/24",
                     "dataDir": dir.path().join("ipam").display().to_string()},
            "policy": {"stateDir": dir.path().join("state").display().to_string(),
                       "labels": labels, "nodeName": "node1"},
        });
        Lab {
            ul,
            node,
            dir,
            conf,
        }
    }

    pub fn state_dir(&self) -> String {
        self.dir.path().join("state/pol").display().to_string()
    }

    /// ADD through the plugin binary; returns the pod's IPv4 address.
    pub fn add(&self, pod: &NetNs, ns: &str, name: &str, labels: &[(&str, &str)]) -> IpAddr {
        let mut conf = self.conf.clone();
        if !labels.is_empty() {
            let l: Vec<Value> = labels
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            conf["args"] = json!({"cni": {"labels": l}});
        }
        self.add_conf_ok(pod, ns, name, &conf)
    }

    /// ADD through the plugin binary with a whole configuration, which must succeed; returns
    /// the pod's first (IPv4) address.
    pub fn add_conf_ok(&self, pod: &NetNs, ns: &str, name: &str, conf: &Value) -> IpAddr {
        let (ok, v) = self.add_conf(pod, ns, name, conf);
        assert!(ok, "{v}");
        v["ips"][0]["address"]
            .as_str()
            .unwrap()
            .parse::<ipnetwork::IpNetwork>()
            .unwrap()
            .ip()
    }

    /// ADD through the plugin binary with a whole configuration: success and the printed
    /// result or error JSON.
    pub fn add_conf(&self, pod: &NetNs, ns: &str, name: &str, conf: &Value) -> (bool, Value) {
        let out = self.run_plugin("ADD", pod, ns, name, conf);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.success(), v)
    }

    /// DEL through the plugin binary.
    pub fn del(&self, pod: &NetNs, ns: &str, name: &str) {
        let out = self.run_plugin("DEL", pod, ns, name, &self.conf);
        assert!(
            out.status.success(),
            "DEL: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    /// Run the plugin binary for `command` on `pod` (container `{ns}-{name}`, pod namespace and
    /// name in CNI_ARGS) with `conf` and wait for it; stdout captured.
    fn run_plugin(&self, command: &str, pod: &NetNs, ns: &str, name: &str, conf: &Value) -> Output {
        let args = format!("IgnoreUnknown=1;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name}");
        let id = format!("{ns}-{name}");
        self.spawn_plugin(command, &id, Some(pod), Some(&args), conf, Stdio::piped())
            .wait_with_output()
            .unwrap()
    }

    /// Start the plugin binary inside the node netns as a runtime does: a clean environment
    /// with CNI_COMMAND, CNI_CONTAINERID, CNI_IFNAME=eth0, CNI_PATH=/usr/lib/cni, CNI_NETNS
    /// (the pod's path) and CNI_ARGS when given; `conf` is written to its stdin, which is then
    /// closed; stdout goes to `stdout`.
    pub fn spawn_plugin(
        &self,
        command: &str,
        container_id: &str,
        pod: Option<&NetNs>,
        cni_args: Option<&str>,
        conf: &Value,
        stdout: Stdio,
    ) -> Child {
        let bin = cnet().display().to_string();
        let mut cmd = self.node.ns.command(&[&bin]);
        cmd.env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", container_id)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/usr/lib/cni");
        if let Some(pod) = pod {
            cmd.env("CNI_NETNS", pod.path());
        }
        if let Some(args) = cni_args {
            cmd.env("CNI_ARGS", args);
        }
        let mut child = cmd.stdin(Stdio::piped()).stdout(stdout).spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(conf.to_string().as_bytes())
            .unwrap();
        child
    }

    pub fn ctl(&self, args: &[&str]) -> Output {
        let bin = cnetctl().display().to_string();
        let sd = self.state_dir();
        let mut argv = vec![bin.as_str(), "--state-dir", sd.as_str()];
        argv.extend_from_slice(args);
        self.node.ns.command(&argv).output().unwrap()
    }

    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let o = self.ctl(args);
        assert!(
            o.status.success(),
            "cnetctl {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}
