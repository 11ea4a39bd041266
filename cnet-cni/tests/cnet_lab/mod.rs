//! A lab for black-box tests of the `cnet` binary: a virtual node (its own netns behind an
//! underlay), temp dirs for the node state and the leases, and calls made the way a runtime
//! makes them (env + stdin, the plugin process inside the node netns).
#![allow(dead_code, clippy::unwrap_used)]

use cnet_testsupport::{NetNs, Underlay, VirtualNode};
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The plugin under test.
pub fn cnet_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cnet"))
}

/// The directory holding `cnet` and `cnet-ipam` (for `CNI_PATH`), then the reference plugins.
pub fn cni_path() -> String {
    let ours = cnet_bin().parent().unwrap().display().to_string();
    format!("{ours}:/usr/lib/cni")
}

#[path = "../out/mod.rs"]
mod out;
pub use out::Out;

/// Run `bin` inside netns `ns` (or the current one) with exactly `env` and `stdin`.
pub fn run_plugin(ns: Option<&NetNs>, bin: &Path, env: &[(&str, String)], stdin: &[u8]) -> Out {
    let child = spawn_plugin(ns, bin, env, stdin);
    Out::from_output(&child.wait_with_output().unwrap())
}

/// Start `bin` inside `ns` with `env` and `stdin` written (stdin closed); the caller waits or
/// kills.
pub fn spawn_plugin(ns: Option<&NetNs>, bin: &Path, env: &[(&str, String)], stdin: &[u8]) -> Child {
    let bin_s = bin.display().to_string();
    let mut cmd = match ns {
        Some(ns) => ns.command(&[&bin_s]),
        None => Command::new(bin),
    };
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child
}

/// A node with the `cnet` network configured.
pub struct Lab {
    /// Keeps the node's uplink alive.
    pub underlay: Underlay,
    /// The node.
    pub node: VirtualNode,
    /// Node state root and lease data dir.
    pub dir: tempfile::TempDir,
    /// The network config (without runtime additions).
    pub conf: Value,
    /// A baseline snapshot of the node taken after the first ADD created shared
    /// infrastructure is not needed: taken at creation.
    pub baseline: String,
}

/// IPv4 pod subnet of the lab.
pub const SUBNET4: &str = "10.60.0.0/24";
/// IPv6 pod subnet of the lab.
pub const SUBNET6: &str = "fd00:60::/64";

impl Lab {
    /// A lab whose network uses `mode` (`transparent` or `bridge`) and in-process cnet-ipam.
    pub fn new(mode: &str) -> Lab {
        Self::with_ipam(
            mode,
            json!({"type": "cnet-ipam",
            "ranges": [[{"subnet": SUBNET4}], [{"subnet": SUBNET6}]]}),
        )
    }

    /// A lab with a given `ipam` section (`dataDir` is set to the lab's).
    pub fn with_ipam(mode: &str, mut ipam: Value) -> Lab {
        let (underlay, node) = VirtualNode::single(&[SUBNET4, SUBNET6]);
        let dir = tempfile::tempdir().unwrap();
        ipam["dataDir"] = json!(dir.path().join("ipam").display().to_string());
        let mut conf = json!({
            "cniVersion": "1.1.0",
            "name": "labnet",
            "type": "cnet",
            "mode": mode,
            "ipam": ipam,
            // A generous lock wait: 100 concurrent ADDs on a loaded 2-core CI machine queue
            // for the node state; code 11 would be a correct answer, but not the one tested.
            "policy": {"stateDir": dir.path().join("state").display().to_string(),
                       "lockTimeoutMs": 120_000},
        });
        if mode == "bridge" {
            conf["bridge"] = json!("cnetbr0");
        }
        let baseline = node.snapshot();
        Lab {
            underlay,
            node,
            dir,
            conf,
            baseline,
        }
    }

    /// The config bytes, with `extra` merged at the top level.
    pub fn conf_with(&self, extra: &Value) -> Vec<u8> {
        let mut c = self.conf.clone();
        if let Value::Object(m) = extra {
            for (k, v) in m {
                c[k] = v.clone();
            }
        }
        c.to_string().into_bytes()
    }

    /// The CNI environment of an attachment command.
    pub fn env(&self, cmd: &str, cid: &str, netns: Option<&Path>) -> Vec<(&'static str, String)> {
        let mut e = vec![
            ("CNI_COMMAND", cmd.to_string()),
            ("CNI_CONTAINERID", cid.to_string()),
            ("CNI_IFNAME", "eth0".to_string()),
            ("CNI_PATH", cni_path()),
        ];
        if let Some(n) = netns {
            e.push(("CNI_NETNS", n.display().to_string()));
        }
        e
    }

    /// Call the plugin in the node.
    pub fn call(&self, cmd: &str, cid: &str, netns: Option<&Path>, stdin: &[u8]) -> Out {
        run_plugin(
            Some(&self.node.ns),
            &cnet_bin(),
            &self.env(cmd, cid, netns),
            stdin,
        )
    }

    /// ADD `cid` in `pod`.
    pub fn add(&self, cid: &str, pod: &NetNs) -> Out {
        self.call("ADD", cid, Some(&pod.path()), &self.conf_with(&json!({})))
    }

    /// DEL `cid` (netns given when `pod` is).
    pub fn del(&self, cid: &str, pod: Option<&NetNs>) -> Out {
        let p = pod.map(|p| p.path());
        self.call("DEL", cid, p.as_deref(), &self.conf_with(&json!({})))
    }

    /// GC keeping `valid` container ids (ifname eth0).
    pub fn gc(&self, valid: &[&str]) -> Out {
        let v: Vec<Value> = valid
            .iter()
            .map(|c| json!({"containerID": c, "ifname": "eth0"}))
            .collect();
        let env = vec![("CNI_COMMAND", "GC".to_string()), ("CNI_PATH", cni_path())];
        run_plugin(
            Some(&self.node.ns),
            &cnet_bin(),
            &env,
            &self.conf_with(&json!({"cni.dev/valid-attachments": v})),
        )
    }

    /// The node state document (with its journal applied).
    pub fn state(&self) -> Value {
        let p = self.dir.path().join("state/labnet");
        if !p.join("state.json").exists() && !p.join("state.journal").exists() {
            return json!({"endpoints": []});
        }
        let st = cnet_cni::cnet::state::NodeState::new(p, std::time::Duration::from_secs(10));
        serde_json::to_value(st.read().unwrap()).unwrap()
    }

    /// Number of endpoint records.
    pub fn endpoints(&self) -> usize {
        self.state()["endpoints"].as_array().map_or(0, Vec::len)
    }

    /// Leases held in the lab's store (read through the library).
    pub fn leases(&self) -> Vec<cnet_ipam::Lease> {
        use cnet_ipam::Allocator;
        if self.conf["ipam"]["type"] != "cnet-ipam" {
            return Vec::new();
        }
        let bytes = self.conf_with(&json!({}));
        let cfg = cnet_ipam::IpamConfig::from_net_conf_bytes(&bytes).unwrap();
        cnet_ipam::DiskAllocator::open(&cfg)
            .unwrap()
            .leases()
            .unwrap()
    }

    fn cnet_links(&self) -> Vec<String> {
        self.node
            .ns
            .run(&["ip", "-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_string())
            .filter(|n| n.starts_with("cnet") && n != "cnetbr0")
            .collect()
    }

    /// Host ends of attachments on the node (`cnet…`, not the bridge, not retired pairs).
    pub fn host_links(&self) -> Vec<String> {
        self.cnet_links()
            .into_iter()
            .filter(|n| !n.starts_with(cnet_route::RETIRED_PREFIX))
            .collect()
    }

    /// Retired host ends (`cnetx…`): DELed attachments whose veth pair the reaper has not
    /// deleted yet.
    pub fn retired_links(&self) -> Vec<String> {
        self.cnet_links()
            .into_iter()
            .filter(|n| n.starts_with(cnet_route::RETIRED_PREFIX))
            .collect()
    }

    /// Wait until the reapers of deferred teardowns are done (a liveness bound, not a speed
    /// assertion): panics if retired pairs are still there after a minute.
    pub fn wait_reaped(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let left = self.retired_links();
            if left.is_empty() {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "retired links not reaped: {left:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Assert that nothing of any attachment is left: no host veth, no host route to a pod,
    /// no lease, no endpoint record — at once — and, once the reapers are done, no retired
    /// veth pair either.
    pub fn assert_clean(&self) {
        assert_eq!(self.host_links(), Vec::<String>::new(), "host links left");
        // The bridge (bridge mode) and its subnet route are shared infrastructure and stay.
        // A retired pair carries no route: this holds before it is reaped.
        for fam in ["-4", "-6"] {
            let routes = self.node.ns.run(&["ip", fam, "route", "show"]);
            let left: Vec<&str> = routes
                .lines()
                .filter(|l| l.contains("dev cnet") && !l.contains("dev cnetbr0"))
                .collect();
            assert!(left.is_empty(), "host routes left: {left:?}");
        }
        self.wait_reaped();
        assert_eq!(self.cnet_links(), Vec::<String>::new(), "links left");
        assert_eq!(self.leases(), Vec::new(), "leases left");
        assert_eq!(
            self.endpoints(),
            0,
            "endpoint records left: {}",
            self.state()
        );
    }
}

/// The addresses (without prefix) of a result.
pub fn result_ips(v: &Value) -> Vec<std::net::IpAddr> {
    v["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i["address"]
                .as_str()
                .unwrap()
                .parse::<ipnetwork::IpNetwork>()
                .unwrap()
                .ip()
        })
        .collect()
}
