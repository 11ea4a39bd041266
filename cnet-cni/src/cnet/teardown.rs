//! How DEL tears an attachment down: *deferred* (the default) or *synchronous*.
//!
//! Deleting a veth pair costs ~20 ms of the kernel's netdev unregister (RCU barriers), most of
//! a DEL, and nothing about the pod's reachability depends on it. With `"teardown":
//! "deferred"` DEL therefore does synchronously everything that makes the pod unreachable and
//! releases its resources — the host end goes down (the kernel drops every route, neighbour
//! and proxy entry through it; a bridge stops forwarding to it) and is renamed out of the way
//! ([`cnet_route::retire`]), the lease is released, the endpoint's policy is removed and the
//! node state committed — and leaves the deletion of the retired pair to a **reaper**: this
//! forked child of the plugin ([`fork_reaper`], when the plugin is single-threaded, as it is
//! between calls), else this same binary started as `cnet reap <container_id> <ifname>`
//! ([`spawn_reaper`]); detached either way (its own session or process group,
//! stdin/stdout/stderr on `/dev/null`, so the runtime's pipes close when the plugin exits
//! and a terminal's signals do not reach it; it is not waited for and, once the plugin has
//! exited, is re-parented to init or the runtime's subreaper). One fork is enough: a second
//! only matters for daemons that must not reacquire a terminal, and the reaper never opens
//! one.
//!
//! The reaper is started while the plugin still holds its nftables socket, and inherits it:
//! the kernel's release of that socket waits for nf_tables' deferred destroy work (an RCU
//! grace period, ~10 ms here after a commit that removed elements), and the last holder pays
//! it — the reaper instead of the plugin the runtime waits for.
//!
//! If no reaper runs (it could not be started, or it was killed), nothing is lost: a retired
//! pair is unreachable, an ADD of the same `(container_id, ifname)` deletes it when it is in
//! the way, a repeated DEL starts a new reaper, and GC deletes every retired pair of the node.
//! `"teardown": "sync"` deletes the pair inside DEL (the behaviour of the reference plugins).

use crate::config::NetConf;
use crate::error::CniError;
use std::path::Path;
use std::process::{Command, Stdio};

/// The `teardown` network-config key.
pub const TEARDOWN_KEY: &str = "teardown";
/// The first argument that makes the `cnet` binary a reaper.
pub const REAP_ARG: &str = "reap";

/// DEL's teardown mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Teardown {
    /// Unreachable and released synchronously; the veth pair deleted by a detached reaper.
    #[default]
    Deferred,
    /// The veth pair deleted inside DEL.
    Sync,
}

impl Teardown {
    /// From the config's `teardown` key (`"deferred"` default, or `"sync"`): code 6 for a
    /// non-string, 7 for another value.
    pub fn from_config(conf: &NetConf) -> Result<Teardown, CniError> {
        match conf.extra.get(TEARDOWN_KEY) {
            None => Ok(Teardown::Deferred),
            Some(v) => match v.as_str() {
                Some("deferred") => Ok(Teardown::Deferred),
                Some("sync") => Ok(Teardown::Sync),
                Some(other) => Err(CniError::invalid_config(format!(
                    "cnet config: teardown {other:?} (expected \"deferred\" or \"sync\")"
                ))),
                None => Err(CniError::decode("cnet config: teardown: expected a string")),
            },
        }
    }
}

/// Start `exe reap <container_id> <ifname>` as a detached reaper for the retired pair of `(container_id, ifname)` in the calling
/// thread's network namespace (the node's). Returns once it is started; never waits for it.
pub fn spawn_reaper(exe: &Path, container_id: &str, ifname: &str) -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    Command::new(exe)
        .arg(REAP_ARG)
        .arg(container_id)
        .arg(ifname)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map(|_child| ())
}

/// Fork a reaper (no exec: cheaper than [`spawn_reaper`], whose parent waits for the child's
/// exec of a large binary) — only when this process is single-threaded, which the plugin is
/// between its calls (every netns worker thread has been joined). `Ok(false)`: not forked
/// (more than one thread), use [`spawn_reaper`]. The child starts its own session, puts
/// `/dev/null` on stdin/stdout/stderr (the runtime's pipes close when the plugin exits),
/// deletes the retired pair and leaves with `_exit` (no destructors, no buffered output of
/// the parent flushed twice). Meant for the `cnet` binary, which exits right after: a
/// long-lived caller would have to reap the child.
pub fn fork_reaper(container_id: &str, ifname: &str) -> std::io::Result<bool> {
    if std::fs::read_dir("/proc/self/task")?.count() != 1 {
        return Ok(false);
    }
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    // SAFETY: the process has one thread (checked above), so no other thread can hold a lock
    // (allocator, stdio) across the fork; the child only runs this function and `_exit`s.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(std::io::Error::last_os_error()),
        0 => {
            use std::os::fd::AsRawFd;
            // SAFETY: plain syscalls on fds this child owns.
            unsafe {
                libc::setsid();
                for fd in 0..3 {
                    libc::dup2(null.as_raw_fd(), fd);
                }
            }
            let code = run_reaper(&[container_id.to_string(), ifname.to_string()]);
            // SAFETY: leaves the child without running the parent's destructors or flushing
            // its copies of the parent's buffers.
            unsafe { libc::_exit(code) }
        }
        _ => Ok(true),
    }
}

/// The reaper's body (`cnet reap <container_id> <ifname>`): delete the retired pair. Exit
/// code 0 when it is gone (or was already), 1 on an error, 2 on bad arguments.
pub fn run_reaper(args: &[String]) -> i32 {
    let [cid, ifname] = args else {
        return 2;
    };
    match cnet_route::Node::current() {
        Ok(node) => match cnet_route::reap(&node, cid, ifname) {
            Ok(_) => 0,
            Err(_) => 1,
        },
        Err(_) => 1,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use serde_json::json;

    fn conf(extra: serde_json::Value) -> NetConf {
        let mut v = json!({"cniVersion": "1.1.0", "name": "n", "type": "cnet"});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        NetConf::parse(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn deferred_by_default_sync_on_request() {
        assert_eq!(
            Teardown::from_config(&conf(json!({}))).unwrap(),
            Teardown::Deferred
        );
        assert_eq!(
            Teardown::from_config(&conf(json!({"teardown": "deferred"}))).unwrap(),
            Teardown::Deferred
        );
        assert_eq!(
            Teardown::from_config(&conf(json!({"teardown": "sync"}))).unwrap(),
            Teardown::Sync
        );
        let bad = Teardown::from_config(&conf(json!({"teardown": "later"}))).unwrap_err();
        assert_eq!(bad.code, ErrorCode::InvalidNetworkConfig);
        let bad = Teardown::from_config(&conf(json!({"teardown": 1}))).unwrap_err();
        assert_eq!(bad.code, ErrorCode::DecodingFailure);
    }

    #[test]
    fn reaper_rejects_bad_arguments() {
        assert_eq!(run_reaper(&[]), 2);
        assert_eq!(run_reaper(&["only-one".into()]), 2);
    }
}
