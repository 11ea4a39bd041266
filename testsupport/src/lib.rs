//! Test support for privileged cnet tests: private network namespaces that are always
//! removed (a guard with `Drop`, also on panic), unique names so tests run in parallel, and
//! the privilege gate every kernel-touching test goes through.
//!
//! ```no_run
//! use cnet_testsupport::{require_priv, NetNs};
//! fn my_test() {
//!     require_priv!();
//!     let node = NetNs::new("node");
//!     node.run(&["ip", "link", "set", "lo", "up"]);
//! } // `node` is deleted here, with every link inside it
//! ```
//!
//! Nothing here touches the root network namespace: every command runs through
//! `ip netns exec` in a namespace the guard created.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Whether this process may run privileged tests. When it may not, prints that the test was
/// skipped; when `CNET_REQUIRE_PRIV=1` a skip is a failure (panics).
pub fn privileged(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        return true;
    }
    if std::env::var("CNET_REQUIRE_PRIV").as_deref() == Ok("1") {
        panic!("{test}: privileged test cannot run (not root) but CNET_REQUIRE_PRIV=1");
    }
    eprintln!("SKIPPED {test}: needs root (network namespaces, netlink, nftables)");
    println!("SKIPPED {test}: needs root");
    false
}

/// Return early from a test that needs root, printing that it skipped (see [`privileged`]).
#[macro_export]
macro_rules! require_priv {
    () => {
        if !$crate::privileged(module_path!()) {
            return;
        }
    };
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// xorshift64: a reproducible stream of pseudo-random numbers for tests (no dependency).
/// The seed must not be 0.
#[derive(Debug, Clone)]
pub struct XorShift(pub u64);

impl XorShift {
    /// The next number of the stream.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A name unique to this process and call: `<prefix><pid base36><counter>`, at most 15
/// characters so it also fits an interface name.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let mut s = format!("{}{}{}", prefix, base36(pid), base36(n));
    if s.len() > 15 {
        let cut = s.len() - 15;
        s.drain(0..cut);
    }
    s
}

fn base36(mut v: u32) -> String {
    const D: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(D[(v % 36) as usize]);
        v /= 36;
        if v == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// A named network namespace (`/var/run/netns/<name>`) owned by a test. Dropping it kills the
/// processes still inside and deletes it.
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Create a namespace with a unique name starting with `prefix`; `lo` is brought up.
    /// Panics when it cannot be created (tests only).
    pub fn new(prefix: &str) -> NetNs {
        let name = unique_name(&format!("cnt{prefix}"));
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("run ip netns add");
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ns = NetNs { name };
        ns.run(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mount path, as a CNI runtime passes it in `CNI_NETNS`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/netns/{}", self.name))
    }

    /// A command that runs inside this namespace.
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(argv);
        c
    }

    /// Run a command inside and return its output, whatever its status.
    pub fn exec(&self, argv: &[&str]) -> Output {
        self.command(argv)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("exec {argv:?} in {}: {e}", self.name))
    }

    /// Run a command inside; panic unless it succeeds; return its stdout.
    pub fn run(&self, argv: &[&str]) -> String {
        let out = self.exec(argv);
        assert!(
            out.status.success(),
            "in netns {}: {argv:?} failed: {}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether a command inside succeeds.
    pub fn ok(&self, argv: &[&str]) -> bool {
        self.exec(argv).status.success()
    }

    /// Start a long-running command inside (a server); the caller kills it, and dropping the
    /// namespace kills whatever is left.
    pub fn spawn(&self, argv: &[&str]) -> Child {
        self.command(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {argv:?} in {}: {e}", self.name))
    }

    /// Set a sysctl inside this namespace (`net.ipv4.ip_forward=1`).
    pub fn sysctl(&self, kv: &str) {
        self.run(&["sysctl", "-q", "-w", kv]);
    }

    /// Run `f` on a fresh OS thread that has entered this namespace (`setns`), and return its
    /// result. Sockets created inside `f` (netlink, nftables, TCP) stay bound to this
    /// namespace. Never enters the namespace on the calling thread.
    pub fn in_netns<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let path = self.path();
        std::thread::scope(|s| {
            s.spawn(move || {
                let file = std::fs::File::open(&path)
                    .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
                use std::os::fd::AsRawFd;
                // SAFETY: setns on a valid namespace fd affects only this thread.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(
                    rc,
                    0,
                    "setns {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                );
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// `ping -c1` to `addr` from inside; true when a reply came.
    pub fn ping(&self, addr: &str) -> bool {
        self.ok(&["ping", "-c", "1", "-W", "2", "-q", addr])
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: kill has no memory-safety preconditions.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_short() {
        let a = unique_name("cntnode");
        let b = unique_name("cntnode");
        assert_ne!(a, b);
        assert!(a.len() <= 15 && b.len() <= 15);
    }

    #[test]
    fn netns_is_created_and_removed() {
        require_priv!();
        let ns = NetNs::new("t");
        let path = ns.path();
        assert!(path.exists());
        assert!(ns.run(&["ip", "-o", "link"]).contains("lo"));
        let links = ns.in_netns(|| std::fs::read_to_string("/proc/net/dev").unwrap_or_default());
        assert!(links.contains("lo:"));
        drop(ns);
        assert!(!path.exists());
    }
}

/// A TCP echo server listening on `[::]:PORT` (IPv4 and IPv6) inside a namespace, started by
/// [`NetNs::tcp_echo`]. Stopped on drop.
#[derive(Debug)]
pub struct TcpEcho {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TcpEcho {
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn echo_once(mut s: std::net::TcpStream) {
    use std::io::{Read, Write};
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    let mut buf = [0u8; 64];
    if let Ok(n) = s.read(&mut buf) {
        let _ = s.write_all(&buf[..n]);
    }
}

impl NetNs {
    /// Start a TCP echo server inside this namespace on an ephemeral port of `[::]`
    /// (dual-stack). The socket is created inside the namespace; the accept loop runs on an
    /// ordinary thread (a socket stays bound to the namespace it was created in).
    pub fn tcp_echo(&self) -> TcpEcho {
        let listener = self.in_netns(|| {
            std::net::TcpListener::bind("[::]:0").unwrap_or_else(|e| panic!("bind [::]:0: {e}"))
        });
        let port = listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("{e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("nonblocking: {e}"));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        std::thread::spawn(move || echo_once(s));
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        TcpEcho {
            port,
            stop,
            thread: Some(thread),
        }
    }

    /// From inside this namespace: connect to `addr:port` (2 s timeout), send a line and
    /// expect it echoed back. True on success.
    pub fn tcp_ok(&self, addr: std::net::IpAddr, port: u16) -> bool {
        use std::io::{Read, Write};
        self.in_netns(|| {
            let sa = std::net::SocketAddr::new(addr, port);
            let Ok(mut s) =
                std::net::TcpStream::connect_timeout(&sa, std::time::Duration::from_secs(2))
            else {
                return false;
            };
            let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            if s.write_all(b"cnet\n").is_err() {
                return false;
            }
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).is_ok() && &buf == b"cnet\n"
        })
    }
}

/// A stand-in for the cloud network (Azure's VNET): one namespace that routes each node's
/// pod prefixes to that node. Nodes join it through a veth pair (`uplink0` in the node).
#[derive(Debug)]
pub struct Underlay {
    /// The underlay namespace.
    pub ns: NetNs,
    nodes: AtomicU32,
}

/// A virtual node: a network namespace with an uplink (`uplink0`) to an [`Underlay`], a
/// default route through it (IPv4 and IPv6), and addresses `10.255.N.2/24` and
/// `fd00:255:N::2/64`. Pods are further namespaces ([`NetNs`]) attached to it by the code
/// under test.
#[derive(Debug)]
pub struct VirtualNode {
    /// The node namespace.
    pub ns: NetNs,
    /// Node number within its underlay (1-based).
    pub index: u32,
    /// The node's IPv4 address on its uplink.
    pub addr4: std::net::Ipv4Addr,
    /// The node's IPv6 address on its uplink.
    pub addr6: std::net::Ipv6Addr,
}

/// The uplink interface name inside every [`VirtualNode`].
pub const UPLINK: &str = "uplink0";

impl Default for Underlay {
    fn default() -> Self {
        Underlay::new()
    }
}

impl Underlay {
    /// An underlay namespace with forwarding on.
    pub fn new() -> Underlay {
        let ns = NetNs::new("ul");
        ns.sysctl("net.ipv4.ip_forward=1");
        ns.sysctl("net.ipv6.conf.all.forwarding=1");
        Underlay {
            ns,
            nodes: AtomicU32::new(0),
        }
    }

    /// Add a node whose pods use `pod_cidrs` (the underlay routes them to the node).
    pub fn add_node(&self, pod_cidrs: &[&str]) -> VirtualNode {
        let n = self.nodes.fetch_add(1, Ordering::Relaxed) + 1;
        let ns = NetNs::new("node");
        let peer = format!("n{n}");
        self.ns.run(&[
            "ip",
            "link",
            "add",
            &peer,
            "type",
            "veth",
            "peer",
            "name",
            UPLINK,
            "netns",
            ns.name(),
        ]);
        let (u4, u6) = (format!("10.255.{n}.1"), format!("fd00:255:{n}::1"));
        let (n4, n6) = (format!("10.255.{n}.2"), format!("fd00:255:{n}::2"));
        self.ns
            .run(&["ip", "addr", "add", &format!("{u4}/24"), "dev", &peer]);
        self.ns.run(&[
            "ip",
            "addr",
            "add",
            &format!("{u6}/64"),
            "dev",
            &peer,
            "nodad",
        ]);
        self.ns.run(&["ip", "link", "set", &peer, "up"]);
        ns.run(&["ip", "addr", "add", &format!("{n4}/24"), "dev", UPLINK]);
        ns.run(&[
            "ip",
            "addr",
            "add",
            &format!("{n6}/64"),
            "dev",
            UPLINK,
            "nodad",
        ]);
        ns.run(&["ip", "link", "set", UPLINK, "up"]);
        ns.run(&["ip", "route", "add", "default", "via", &u4]);
        ns.run(&["ip", "-6", "route", "add", "default", "via", &u6]);
        for c in pod_cidrs {
            let via = if c.contains(':') { &n6 } else { &n4 };
            self.ns.run(&["ip", "route", "add", c, "via", via]);
        }
        VirtualNode {
            ns,
            index: n,
            addr4: n4.parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
            addr6: n6.parse().unwrap_or(std::net::Ipv6Addr::UNSPECIFIED),
        }
    }
}

impl VirtualNode {
    /// One node on its own underlay (keep the underlay alive as long as the node).
    pub fn single(pod_cidrs: &[&str]) -> (Underlay, VirtualNode) {
        let u = Underlay::new();
        let n = u.add_node(pod_cidrs);
        (u, n)
    }

    /// A new pod namespace (lo up).
    pub fn pod(&self) -> NetNs {
        NetNs::new("pod")
    }

    /// What attachments may leave behind on the node, as sorted text: link names, routes of
    /// the main tables (IPv4, IPv6), permanent and proxy neighbour entries. Compare a
    /// snapshot taken before attaching with one taken after detaching.
    pub fn snapshot(&self) -> String {
        let mut lines: Vec<String> = Vec::new();
        for l in self.ns.run(&["ip", "-o", "link", "show"]).lines() {
            if let Some(name) = l.split(": ").nth(1) {
                lines.push(format!("link {}", name.split('@').next().unwrap_or(name)));
            }
        }
        for (fam, what) in [
            ("-4", "route"),
            ("-6", "route"),
            ("-4", "neigh-permanent"),
            ("-6", "neigh-permanent"),
            ("-4", "neigh-proxy"),
            ("-6", "neigh-proxy"),
        ] {
            let argv: Vec<&str> = match what {
                "route" => vec!["ip", fam, "route", "show"],
                "neigh-permanent" => vec!["ip", fam, "neigh", "show", "nud", "permanent"],
                _ => vec!["ip", fam, "neigh", "show", "proxy"],
            };
            for l in self.ns.run(&argv).lines() {
                lines.push(format!("{what}{fam} {}", l.trim()));
            }
        }
        lines.sort();
        lines.join("\n")
    }
}
