//! Network namespaces: open one by path or fd, run work inside one on a dedicated OS thread
//! (`setns` changes only the calling thread, so it never happens on a caller's or a tokio
//! thread), and create or delete named namespaces under `/var/run/netns` for labs and tests.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;

use crate::error::Error;

/// Where named namespaces live (as `ip netns` keeps them).
pub const NETNS_DIR: &str = "/var/run/netns";

/// An open network namespace (an fd on its nsfs inode).
#[derive(Debug)]
pub struct Netns {
    file: File,
    path: PathBuf,
}

fn os_err(path: &Path, op: &'static str, source: std::io::Error) -> Error {
    Error::Netns {
        path: path.to_path_buf(),
        op,
        source,
    }
}

fn nix_err(path: &Path, op: &'static str, e: nix::errno::Errno) -> Error {
    os_err(path, op, std::io::Error::from_raw_os_error(e as i32))
}

impl Netns {
    /// Open the namespace bound at `path` (e.g. `CNI_NETNS`, `/var/run/netns/NAME`,
    /// `/proc/PID/ns/net`).
    pub fn open(path: impl AsRef<Path>) -> Result<Netns, Error> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| os_err(path, "open", e))?;
        Ok(Netns {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Wrap an fd that refers to a network namespace.
    pub fn from_fd(fd: OwnedFd) -> Netns {
        let raw = fd.as_raw_fd();
        Netns {
            file: File::from(fd),
            path: PathBuf::from(format!("fd:{raw}")),
        }
    }

    /// The namespace of the calling thread (`/proc/thread-self/ns/net`).
    pub fn current_thread() -> Result<Netns, Error> {
        Netns::open("/proc/thread-self/ns/net")
    }

    /// The path it was opened from (or `fd:N`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether two handles refer to the same namespace.
    pub fn same_as(&self, other: &Netns) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), other.file.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }

    /// Whether the calling thread is in this namespace now.
    pub fn is_current_thread(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (
            std::fs::metadata("/proc/thread-self/ns/net"),
            self.file.metadata(),
        ) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }

    /// Move the calling thread into this namespace. Only for threads this crate owns.
    pub(crate) fn enter(&self) -> Result<(), Error> {
        nix::sched::setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| nix_err(&self.path, "setns", e))
    }

    /// Run `f` on a fresh OS thread that has entered this namespace, and return its result.
    /// Sockets created inside `f` stay bound to the namespace after it returns.
    pub fn run<F, R>(&self, f: F) -> Result<R, Error>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.enter()?;
                Ok(f())
            })
            .join()
            .map_err(|p| Error::Worker(panic_text(&p)))?
        })
    }

    /// Create a named namespace at `/var/run/netns/NAME` (like `ip netns add`, without
    /// forking): a dedicated thread unshares and bind-mounts its namespace. Its `lo` is down.
    pub fn create_named(name: &str) -> Result<Netns, Error> {
        crate::spec::validate_ifname(name).map_err(|r| crate::spec::invalid("netns name", r))?;
        let dir = Path::new(NETNS_DIR);
        let path = dir.join(name);
        std::fs::create_dir_all(dir).map_err(|e| os_err(dir, "create directory", e))?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| os_err(&path, "create", e))?;
        let bound = std::thread::scope(|s| {
            s.spawn(|| -> Result<(), Error> {
                nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                    .map_err(|e| nix_err(&path, "unshare", e))?;
                nix::mount::mount(
                    Some("/proc/thread-self/ns/net"),
                    &path,
                    None::<&str>,
                    nix::mount::MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| nix_err(&path, "bind mount", e))
            })
            .join()
            .map_err(|p| Error::Worker(panic_text(&p)))?
        });
        if let Err(e) = bound {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Netns::open(&path)
    }

    /// Delete the named namespace `/var/run/netns/NAME` (unmount and remove the file).
    /// A namespace that does not exist is success. The namespace itself goes away when the
    /// last process and fd inside it are gone.
    pub fn delete_named(name: &str) -> Result<(), Error> {
        crate::spec::validate_ifname(name).map_err(|r| crate::spec::invalid("netns name", r))?;
        let path = Path::new(NETNS_DIR).join(name);
        match nix::mount::umount2(&path, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(nix_err(&path, "unmount", e)),
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(os_err(&path, "remove", e)),
        }
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

pub(crate) fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Open a NETLINK_ROUTE socket in the calling thread's namespace.
pub(crate) fn route_socket() -> std::io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the returned fd is owned below.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a freshly created descriptor that nothing else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_a_missing_path_names_it() {
        let e = Netns::open("/nonexistent/netns").expect_err("missing");
        let text = e.to_string();
        assert!(
            text.contains("/nonexistent/netns") && text.contains("open"),
            "{text}"
        );
    }

    #[test]
    fn bad_names_are_rejected() {
        assert!(Netns::create_named("a/b").is_err());
        assert!(Netns::delete_named("").is_err());
    }
}
