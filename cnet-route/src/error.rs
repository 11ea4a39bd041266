//! The crate's one error type; every variant names the object it failed on.

use std::fmt;
use std::path::PathBuf;

/// Where an object lives: in the node's network namespace or in the pod's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The node (host) network namespace.
    Node,
    /// The pod's network namespace.
    Pod,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Node => "node",
            Side::Pod => "pod",
        })
    }
}

/// Everything that can fail in cnet-route.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint spec is not valid (checked before anything is touched).
    #[error("invalid endpoint spec: {field}: {reason}")]
    InvalidSpec {
        /// The offending field, e.g. `addresses[1]`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A network namespace could not be opened, entered, created or deleted.
    #[error("network namespace {path:?}: {op}: {source}")]
    Netns {
        /// Path of the namespace (or a description when it has none).
        path: PathBuf,
        /// What was being done: `open`, `setns`, `create`, …
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The interface to be created already exists; nothing was changed.
    #[error("interface {name:?}: already exists in the {side} namespace")]
    InterfaceExists {
        /// Interface name.
        name: String,
        /// Where it exists.
        side: Side,
    },
    /// A netlink operation on an interface failed.
    #[error("interface {name:?} ({side}): {op}: {source}")]
    Interface {
        /// Interface name.
        name: String,
        /// Namespace side.
        side: Side,
        /// Operation: `create`, `delete`, `get`, `set up`, …
        op: &'static str,
        /// The netlink error.
        #[source]
        source: Box<rtnetlink::Error>,
    },
    /// Adding an address failed.
    #[error("address {address} on interface {ifname:?} ({side}): {source}")]
    Address {
        /// The address with prefix.
        address: ipnetwork::IpNetwork,
        /// Interface name.
        ifname: String,
        /// Namespace side.
        side: Side,
        /// The netlink error.
        #[source]
        source: Box<rtnetlink::Error>,
    },
    /// Adding, deleting or listing a route failed.
    #[error("route {route} ({side}): {op}: {source}")]
    Route {
        /// The route, rendered like `ip route` prints it.
        route: String,
        /// Namespace side.
        side: Side,
        /// Operation.
        op: &'static str,
        /// The netlink error.
        #[source]
        source: Box<rtnetlink::Error>,
    },
    /// Adding or listing a neighbour entry failed.
    #[error("neighbour {address} on interface {ifname:?} ({side}): {op}: {source}")]
    Neighbour {
        /// Neighbour IP address.
        address: std::net::IpAddr,
        /// Interface name.
        ifname: String,
        /// Namespace side.
        side: Side,
        /// Operation.
        op: &'static str,
        /// The netlink error.
        #[source]
        source: Box<rtnetlink::Error>,
    },
    /// Reading or writing a sysctl in the node namespace failed.
    #[error("sysctl {key}: {source}")]
    Sysctl {
        /// Key under /proc/sys, with dots (`net.ipv4.ip_forward`).
        key: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The configured uplink interface, used to derive the MTU, does not exist.
    #[error("uplink interface {name:?}: does not exist in the node namespace")]
    UplinkMissing {
        /// Interface name.
        name: String,
    },
    /// A host interface with the derived name exists but belongs to another attachment (a
    /// name collision or a foreign link); it was left alone.
    #[error("interface {name:?}: not owned by {expected:?} (alias {found:?}); left alone")]
    NotOwned {
        /// Interface name.
        name: String,
        /// The owner this call acts for.
        expected: String,
        /// The alias found on the link.
        found: Option<String>,
    },
    /// The interface named as the node bridge exists but is not a bridge.
    #[error("interface {name:?}: exists but is not a bridge (kind {kind:?})")]
    NotABridge {
        /// Interface name.
        name: String,
        /// Its kind.
        kind: Option<String>,
    },
    /// The caller's gate ([`crate::IntraNode::attach_gated`]) refused to let the pod's
    /// interface go up; the pair was deleted.
    #[error("attach stopped before the pod's interface went up: {reason}")]
    Gate {
        /// What the gate reported.
        reason: String,
    },
    /// An interface this call created disappeared before it was configured.
    #[error("interface {name:?} ({side}): disappeared while being configured")]
    Vanished {
        /// Interface name.
        name: String,
        /// Namespace side.
        side: Side,
    },
    /// A netlink socket or the tokio runtime could not be set up.
    #[error("netlink setup in the {side} namespace: {source}")]
    Setup {
        /// Namespace side.
        side: Side,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The worker thread that runs inside a namespace panicked.
    #[error("namespace worker thread panicked: {0}")]
    Worker(String),
}

impl Error {
    /// The errno carried by a netlink error, if any (positive, e.g. `libc::EEXIST`).
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Interface { source, .. }
            | Error::Address { source, .. }
            | Error::Route { source, .. }
            | Error::Neighbour { source, .. } => nl_errno(source.as_ref()),
            Error::Netns { source, .. } | Error::Sysctl { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// The positive errno of a netlink error reply.
pub(crate) fn nl_errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// All errors of a best-effort operation (detach), in the order they happened.
#[derive(Debug, Default)]
pub struct Errors(pub Vec<Error>);

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error(s)", self.0.len())?;
        for (i, e) in self.0.iter().enumerate() {
            write!(f, "{}{e}", if i == 0 { ": " } else { "; " })?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}
