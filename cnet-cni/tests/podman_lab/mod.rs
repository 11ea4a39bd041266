//! A lab for running the `cnet` plugin under a real Podman (4.3, CNI backend) inside a
//! virtual node: every podman command of one lab runs in ONE long-lived shell that lives in a
//! private mount namespace (cgroup2 mounted, private tmpfs on `/run/netns` and `/var/lib/cni`)
//! and in the node's network namespace (`nsenter --net`, never `ip netns exec`, which
//! remounts `/sys`). Podman's storage, run root and temp dir are in a temp dir, so labs run in
//! parallel; dropping the lab removes every container and ends the shell (the private mounts
//! vanish with it).
#![allow(dead_code, clippy::unwrap_used)]

use cnet_testsupport::{NetNs, Underlay, VirtualNode};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// The image every lab imports (a static busybox, no registry).
pub const IMAGE: &str = "localhost/cnet-bb:1";
/// Options podman needs on this machine kind (see KERNEL-NOTES "A real container runtime").
pub const RUN_OPTS: &str = "--cgroups=disabled --ulimit nofile=1024:1024 --ulimit nproc=1024:1024";

/// The directory holding the built `cnet` and `cnet-ipam` (podman's first `cni_plugin_dirs`).
pub fn our_bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cnet"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `cnetctl` from the same target dir, built (or brought up to date) first.
/// (`cargo test --workspace` has built it already; this covers `-p cnet-cni` runs.)
pub fn cnetctl() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = our_bin_dir();
            let target = dir.parent().unwrap();
            let st = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "-q",
                    "-p",
                    "cnetctl",
                    "--bin",
                    "cnetctl",
                    "--target-dir",
                ])
                .arg(target)
                .status()
                .unwrap();
            let bin = dir.join("cnetctl");
            // A failed rebuild (a sibling crate mid-edit) falls back to the last good build.
            assert!(st.success() || bin.exists(), "building cnetctl");
            if !st.success() {
                eprintln!("warning: cnetctl rebuild failed; using {}", bin.display());
            }
            bin
        })
        .clone()
}

#[path = "../out/mod.rs"]
mod out;
pub use out::Out;

/// A shell in a private mount namespace inside the node netns.
pub struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    dir: PathBuf,
    n: u32,
}

impl Session {
    fn start(node: &NetNs, dir: &Path, env: &[(&str, String)]) -> Session {
        let inner = format!(
            "set -e; mount --make-rprivate /; mount -t cgroup2 none /sys/fs/cgroup; \
             mkdir -p /var/lib/cni; \
             exec nsenter --net={} bash -c 'set -e; mount -t tmpfs cnetpm /run/netns; \
             mount -t tmpfs cnetpm /var/lib/cni; exec bash'",
            node.path().display()
        );
        let mut cmd = Command::new("unshare");
        cmd.args(["-m", "bash", "-c", &inner])
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Session {
            child,
            stdin,
            stdout,
            dir: dir.to_path_buf(),
            n: 0,
        }
    }

    /// Run a bash script (bounded to 180 s) and collect its output.
    pub fn sh(&mut self, script: &str) -> Out {
        self.n += 1;
        let base = self.dir.join(format!("cmd{}", self.n));
        let (s, o, e) = (
            base.with_extension("sh"),
            base.with_extension("out"),
            base.with_extension("err"),
        );
        std::fs::write(&s, script).unwrap();
        writeln!(
            self.stdin,
            "timeout 180 bash {} >{} 2>{} </dev/null; echo \"__cnet_done__ $?\"",
            s.display(),
            o.display(),
            e.display()
        )
        .unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        let status = loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "podman session ended while running {script:?}");
            if let Some(rc) = line.trim().strip_prefix("__cnet_done__ ") {
                break rc.parse().unwrap_or(-1);
            }
        };
        Out {
            status,
            stdout: std::fs::read_to_string(&o).unwrap_or_default(),
            stderr: std::fs::read_to_string(&e).unwrap_or_default(),
        }
    }

    /// Run; panic unless it succeeds; stdout.
    pub fn run(&mut self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.success(),
            "{script:?} failed ({}): {}{}",
            out.status,
            out.stdout,
            out.stderr
        );
        out.stdout
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "podman rm -a -f -t 0 >/dev/null 2>&1; exit 0");
        let _ = self.stdin.flush();
        for _ in 0..600 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// IPv4 pod subnet of podman labs.
pub const SUBNET: &str = "10.62.0.0/24";
/// IPv6 pod subnet of podman labs.
pub const SUBNET6: &str = "fd00:62::/64";

/// A virtual node with podman configured for one conflist.
pub struct PodmanLab {
    /// The shell (dropped first: containers go before the node).
    pub sh: Session,
    /// The node.
    pub node: VirtualNode,
    /// The underlay (a peer outside the node).
    pub underlay: Underlay,
    /// Storage, state and config.
    pub dir: tempfile::TempDir,
    /// Network name.
    pub network: String,
    /// Node snapshot before any container.
    pub baseline: String,
}

impl PodmanLab {
    /// A lab whose network is `conflist` (`name` is the network name). `CNET_TMP` in any
    /// string of the conflist is replaced by the lab's temp dir.
    pub fn new(conflist: &Value) -> PodmanLab {
        for tool in ["podman", "crun", "busybox", "unshare", "nsenter"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                found,
                "{tool} is not installed: run scripts/deps.sh (as root)"
            );
        }
        let (underlay, node) = VirtualNode::single(&[SUBNET, SUBNET6]);
        let dir = tempfile::Builder::new()
            .prefix("cnet-podman")
            .tempdir()
            .unwrap();
        let d = dir.path();
        for sub in ["net", "root", "run", "tmp", "img/bin", "cmd"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let text = conflist
            .to_string()
            .replace("CNET_TMP", &d.display().to_string());
        let network = conflist["name"].as_str().unwrap().to_string();
        std::fs::write(d.join("net").join(format!("{network}.conflist")), text).unwrap();
        std::fs::write(
            d.join("containers.conf"),
            format!(
                "[network]\nnetwork_backend = \"cni\"\n\
                 cni_plugin_dirs = [\"{}\", \"/usr/lib/cni\"]\n\
                 network_config_dir = \"{}\"\n\
                 [engine]\ntmp_dir = \"{}\"\ncgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\nevents_logfile_path = \"{}\"\n",
                our_bin_dir().display(),
                d.join("net").display(),
                d.join("tmp").display(),
                d.join("tmp/events.log").display(),
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                d.join("root").display(),
                d.join("run").display()
            ),
        )
        .unwrap();
        let baseline = node.snapshot();
        let env = [
            (
                "CONTAINERS_CONF",
                d.join("containers.conf").display().to_string(),
            ),
            (
                "CONTAINERS_STORAGE_CONF",
                d.join("storage.conf").display().to_string(),
            ),
        ];
        let mut sh = Session::start(&node.ns, &d.join("cmd"), &env);
        // The image: static busybox and a few applet links, imported from a tar.
        std::fs::copy("/bin/busybox", d.join("img/bin/busybox")).unwrap();
        for a in ["sh", "ip", "ping", "nc", "sleep", "cat", "echo"] {
            std::os::unix::fs::symlink("busybox", d.join("img/bin").join(a)).unwrap();
        }
        sh.run(&format!(
            "tar -C {img} -cf {img}.tar . && podman import -q {img}.tar {IMAGE}",
            img = d.join("img").display()
        ));
        PodmanLab {
            sh,
            node,
            underlay,
            dir,
            network,
            baseline,
        }
    }

    /// `podman run -d` a container named `name` on the lab network; `cmd` runs in it.
    pub fn run(&mut self, name: &str, opts: &str, cmd: &str) {
        let net = self.network.clone();
        self.sh.run(&format!(
            "podman run -d -q --name {name} {RUN_OPTS} --network {net} {opts} {IMAGE} {cmd}"
        ));
    }

    /// A container that answers every TCP connection on port 80 with `hi-<name>`.
    pub fn server(&mut self, name: &str, opts: &str) {
        self.run(name, opts, &format!("nc -ll -p 80 -e echo hi-{name}"));
    }

    /// The container's address on the lab network.
    pub fn ip(&mut self, name: &str) -> IpAddr {
        let net = self.network.clone();
        let s = self.sh.run(&format!(
            "podman inspect -f '{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}' {name}"
        ));
        s.trim()
            .parse()
            .unwrap_or_else(|e| panic!("address of {name}: {s:?}: {e}"))
    }

    /// The container's IPv6 address on the lab network.
    pub fn ip6(&mut self, name: &str) -> IpAddr {
        let net = self.network.clone();
        let s = self.sh.run(&format!(
            "podman inspect -f '{{{{(index .NetworkSettings.Networks \"{net}\").GlobalIPv6Address}}}}' {name}"
        ));
        s.trim()
            .parse()
            .unwrap_or_else(|e| panic!("IPv6 address of {name}: {s:?}: {e}"))
    }

    /// `podman exec`.
    pub fn exec(&mut self, name: &str, cmd: &str) -> Out {
        self.sh.sh(&format!("podman exec {name} {cmd}"))
    }

    /// From container `from`: connect to `to:port` and return what the server said (empty when
    /// the connection failed or timed out after 3 s).
    pub fn tcp_from(&mut self, from: &str, to: IpAddr, port: u16) -> String {
        let out = self.exec(from, &format!("nc -w 3 {to} {port}"));
        out.stdout.trim().to_string()
    }

    /// From the node itself (outside any container).
    pub fn tcp_from_node(&self, to: IpAddr, port: u16) -> String {
        nc(&self.node.ns, to, port)
    }

    /// Ping from container `from`.
    pub fn ping_from(&mut self, from: &str, to: IpAddr) -> bool {
        self.exec(from, &format!("ping -c 1 -W 3 {to}")).success()
    }

    /// The node state document of the lab network (with its journal applied).
    pub fn state(&self) -> Value {
        let p = self.dir.path().join("state").join(&self.network);
        let st = cnet_cni::cnet::state::NodeState::new(p, std::time::Duration::from_secs(10));
        serde_json::to_value(st.read().unwrap()).unwrap()
    }

    /// The network's state directory (for `cnetctl --state-dir`).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state").join(&self.network)
    }

    /// Run `cnetctl ARGS` in the node (inside the session).
    pub fn cnetctl(&mut self, args: &str) -> Out {
        let c = cnetctl();
        let sd = self.state_dir();
        self.sh.sh(&format!(
            "{} --state-dir {} {args}",
            c.display(),
            sd.display()
        ))
    }

    /// Write a file in the lab dir; its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Leases the network's cnet-ipam store holds (`ipam` is the conflist's ipam section).
    pub fn leases(&self, ipam: &Value) -> Vec<String> {
        use cnet_ipam::Allocator as _;
        let text = ipam
            .to_string()
            .replace("CNET_TMP", &self.dir.path().display().to_string());
        let ipam: Value = serde_json::from_str(&text).unwrap();
        let cfg = cnet_ipam::IpamConfig::from_ipam(&self.network, &ipam).unwrap();
        let mut a = cnet_ipam::DiskAllocator::open(&cfg).unwrap();
        a.leases()
            .unwrap()
            .into_iter()
            .flat_map(|l| l.addresses.into_iter().map(|x| x.address.ip().to_string()))
            .collect()
    }
}

/// From inside `ns` (a plain namespace, through `ip netns exec`): connect to `to:port` and
/// return what the server said (empty on failure; 3 s timeout).
pub fn nc(ns: &NetNs, to: IpAddr, port: u16) -> String {
    let out = ns
        .command(&["nc", "-w", "3", &to.to_string(), &port.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A dual-stack `cnet` conflist for podman (cniVersion 1.0.0, what podman 4.3's libcni speaks) with
/// `portmap` and `tuning` chained after `cnet`; `cnet` declares `portMappings` (passed on to
/// `portmap`) and `ips` (`podman run --ip`).
pub fn conflist(name: &str, mode: &str, labels: &str) -> Value {
    let mut cnet = json!({
        "type": "cnet",
        "mode": mode,
        "ipam": {"type": "cnet-ipam", "ranges": [[{"subnet": SUBNET}], [{"subnet": SUBNET6}]],
                 "dataDir": "CNET_TMP/ipam"},
        "policy": {"stateDir": "CNET_TMP/state", "labels": labels},
        "capabilities": {"portMappings": true, "ips": true}
    });
    if mode == "bridge" {
        cnet["bridge"] = json!("cnetpm0");
    }
    json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            cnet,
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}}
        ]
    })
}

/// The node's snapshot once the `cnet` reapers of deferred DELs are done: polled until no
/// retired (`cnetx…`) link is left, with a generous bound (a liveness check, not a speed
/// assertion). Routes and neighbour entries of a retired pair are gone when DEL returns.
pub fn settled_snapshot(node: &VirtualNode) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let snap = node.snapshot();
        let retired = snap
            .lines()
            .any(|l| l.starts_with(&format!("link {}", cnet_route::RETIRED_PREFIX)));
        if !retired || std::time::Instant::now() >= deadline {
            return snap;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
