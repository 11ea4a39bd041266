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
