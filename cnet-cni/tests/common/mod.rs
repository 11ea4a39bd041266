//! Shared helpers for the black-box tests of the `cnet-ipam` binary: invoke a CNI plugin binary
//! with an environment and stdin, the way a runtime does, and look at its output and store.
#![allow(dead_code, clippy::unwrap_used)]

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Our binary.
pub fn ours() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cnet-ipam"))
}

/// The reference plugin from Debian's containernetworking-plugins.
pub const HOST_LOCAL: &str = "/usr/lib/cni/host-local";

/// Whether the reference host-local plugin is installed.
pub fn have_host_local() -> bool {
    Path::new(HOST_LOCAL).exists()
}

#[path = "../out/mod.rs"]
mod out;
pub use out::Out;

/// `CNI_NETNS` when no namespace is at hand (IPAM plugins never enter it).
pub const DEFAULT_NETNS: &str = "/var/run/netns/cnet-test-nonexistent";

/// One invocation's parameters.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    /// `CNI_COMMAND`.
    pub command: &'a str,
    /// `CNI_CONTAINERID`.
    pub container_id: &'a str,
    /// `CNI_IFNAME`.
    pub ifname: &'a str,
    /// `CNI_NETNS`.
    pub netns: &'a str,
    /// `CNI_ARGS`, if any.
    pub args: Option<&'a str>,
}

impl<'a> Call<'a> {
    /// A call for `command` by container `id` on `eth0`.
    pub fn new(command: &'a str, id: &'a str) -> Call<'a> {
        Call {
            command,
            container_id: id,
            ifname: "eth0",
            netns: DEFAULT_NETNS,
            args: None,
        }
    }

    /// Set `CNI_IFNAME`.
    pub fn ifname(mut self, ifname: &'a str) -> Self {
        self.ifname = ifname;
        self
    }

    /// Set `CNI_ARGS`.
    pub fn args(mut self, args: &'a str) -> Self {
        self.args = Some(args);
        self
    }

    /// Set `CNI_NETNS`.
    pub fn netns(mut self, netns: &'a str) -> Self {
        self.netns = netns;
        self
    }
}

/// Run `bin` with exactly the CNI variables of `call` (plus `CNI_PATH=/usr/lib/cni`) and
/// `stdin`.
pub fn invoke(bin: &Path, call: &Call<'_>, stdin: &str) -> Out {
    let mut env: Vec<(&str, &str)> = vec![
        ("CNI_COMMAND", call.command),
        ("CNI_CONTAINERID", call.container_id),
        ("CNI_IFNAME", call.ifname),
        ("CNI_NETNS", call.netns),
        ("CNI_PATH", "/usr/lib/cni"),
    ];
    if let Some(a) = call.args {
        env.push(("CNI_ARGS", a));
    }
    invoke_env(bin, &env, stdin)
}

/// Run `bin` with only `env` (the process environment is cleared but for PATH) and `stdin`.
pub fn invoke_env(bin: &Path, env: &[(&str, &str)], stdin: &str) -> Out {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    Out::from_output(&child.wait_with_output().unwrap())
}

/// A network config `{"cniVersion", "name": "mynet", "type": "ipvlan", "ipam": ipam}` whose
/// ipam section gets `"type": <plugin type>` and `"dataDir": data_dir` added, merged with
/// `top` (extra top-level keys such as `args` or `runtimeConfig`).
pub fn conf(version: &str, plugin_type: &str, data_dir: &Path, ipam: Value, top: Value) -> String {
    let mut ipam = ipam;
    ipam["type"] = json!(plugin_type);
    ipam["dataDir"] = json!(data_dir.display().to_string());
    let mut c = json!({
        "cniVersion": version,
        "name": "mynet",
        "type": "ipvlan",
        "master": "foo0",
        "ipam": ipam,
    });
    if let Value::Object(extra) = top {
        for (k, v) in extra {
            c[k] = v;
        }
    }
    c.to_string()
}

/// A plugin under test with its own data directory.
#[derive(Debug)]
pub struct Subject {
    /// The binary.
    pub bin: PathBuf,
    /// Its `type` in the ipam section.
    pub plugin_type: &'static str,
    /// Its data directory (a temp dir).
    pub dir: tempfile::TempDir,
    /// A real network namespace passed as `CNI_NETNS` (when running as root; IPAM plugins do
    /// not enter it, but the spec requires one for ADD and CHECK).
    pub ns: Option<cnet_testsupport::NetNs>,
}

fn test_netns() -> Option<cnet_testsupport::NetNs> {
    // SAFETY: geteuid has no preconditions.
    (unsafe { libc::geteuid() } == 0).then(|| cnet_testsupport::NetNs::new("ipam"))
}

impl Subject {
    /// Our plugin, with a fresh data directory.
    pub fn ours() -> Subject {
        Subject {
            bin: ours(),
            plugin_type: "cnet-ipam",
            dir: tempfile::tempdir().unwrap(),
            ns: test_netns(),
        }
    }

    /// The reference host-local, with a fresh data directory.
    pub fn host_local() -> Subject {
        Subject {
            bin: PathBuf::from(HOST_LOCAL),
            plugin_type: "host-local",
            dir: tempfile::tempdir().unwrap(),
            ns: test_netns(),
        }
    }

    /// The config for this subject.
    pub fn conf(&self, version: &str, ipam: &Value, top: &Value) -> String {
        conf(
            version,
            self.plugin_type,
            self.dir.path(),
            ipam.clone(),
            top.clone(),
        )
    }

    /// Invoke with a config built from `ipam` and `top`.
    /// The subject's namespace path is passed as `CNI_NETNS` unless the call set another.
    pub fn call(&self, call: &Call<'_>, version: &str, ipam: &Value, top: &Value) -> Out {
        let path = self.ns.as_ref().map(|n| n.path().display().to_string());
        let mut call = call.clone();
        if let Some(p) = &path {
            if call.netns == DEFAULT_NETNS {
                call.netns = p;
            }
        }
        invoke(&self.bin, &call, &self.conf(version, ipam, top))
    }

    /// Every file under the data directory with its contents (the whole store, for
    /// "unchanged" assertions).
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        snapshot_dir(self.dir.path())
    }
}

/// Every file under `dir` (recursively) with its contents; lock files are skipped since
/// taking a lock may create one.
pub fn snapshot_dir(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if !p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().contains("lock"))
            {
                out.insert(p.clone(), std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    out
}

/// The versions both plugins speak (Debian's host-local stops at 1.0.0).
pub const SHARED_VERSIONS: [&str; 6] = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/// Every version we speak.
pub const ALL_VERSIONS: [&str; 7] = [
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// Whether results in `v` carry `ips` (0.3.0 and later) rather than `ip4`/`ip6`.
pub fn has_ips_list(v: &str) -> bool {
    !matches!(v, "0.1.0" | "0.2.0")
}
