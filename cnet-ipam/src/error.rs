//! The one error type of this crate, with the CNI error code each variant maps to.

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::types::Owner;

/// CNI plugin-specific code (100+): a requested address is held by another owner, or is one
/// that is never handed out (gateway, network, broadcast).
pub const CODE_ADDRESS_UNAVAILABLE: u32 = 100;
/// CNI plugin-specific code (100+): the owner already holds a lease (ADD twice without DEL).
pub const CODE_DUPLICATE_ALLOCATION: u32 = 101;

/// Everything that can go wrong in cnet-ipam.
///
/// Every variant maps to a CNI error code with [`IpamError::cni_code`]:
///
/// | variant | code | CNI meaning |
/// |---|---|---|
/// | [`InvalidConfig`](IpamError::InvalidConfig) | 7 | invalid network config |
/// | [`RequestedOutsideRanges`](IpamError::RequestedOutsideRanges), [`RequestedNotUsed`](IpamError::RequestedNotUsed) | 7 | invalid network config (the request contradicts the ranges) |
/// | [`InvalidArgs`](IpamError::InvalidArgs) | 4 | invalid environment variables (`CNI_ARGS`) |
/// | [`InvalidOwner`](IpamError::InvalidOwner) | 4 | invalid `CNI_CONTAINERID` / `CNI_IFNAME` |
/// | [`Exhausted`](IpamError::Exhausted) | 50 | plugin cannot service ADD requests (the spec's wording for STATUS; ADD uses it too) |
/// | [`AddressUnavailable`](IpamError::AddressUnavailable) | 100 | plugin-specific: requested address taken or reserved |
/// | [`DuplicateAllocation`](IpamError::DuplicateAllocation) | 101 | plugin-specific: ADD twice without DEL |
/// | [`LockTimeout`](IpamError::LockTimeout) | 11 | try again later |
/// | [`Io`](IpamError::Io), [`DataDir`](IpamError::DataDir) | 5 | I/O failure |
/// | [`CorruptState`](IpamError::CorruptState) | 6 | failed to decode content (the lease file) |
/// | [`Decode`](IpamError::Decode) | 6 | failed to decode content (malformed JSON config) |
///
/// Exhaustion on ADD uses 50 on purpose: it is the spec's "cannot service ADD requests", and a
/// runtime that sees it knows that retrying will not help until something is released.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IpamError {
    /// The `ipam` configuration is invalid; `field` is a JSON path such as `ranges[0][1].subnet`.
    #[error("invalid ipam config: {field}: {reason}")]
    InvalidConfig {
        /// Where in the configuration (JSON path).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The network configuration is not valid JSON.
    #[error("cannot decode network config: {reason}")]
    Decode {
        /// The parser's message (with line and column).
        reason: String,
    },
    /// `CNI_ARGS` could not be understood.
    #[error("invalid CNI_ARGS {var}: {reason}")]
    InvalidArgs {
        /// The offending key (or the whole string).
        var: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The owner (container id / interface name) is unusable.
    #[error("invalid owner {owner}: {reason}")]
    InvalidOwner {
        /// The owner as given.
        owner: Owner,
        /// What is wrong with it.
        reason: String,
    },
    /// A requested address lies in no range set.
    #[error("requested address {addr} is not in any range set")]
    RequestedOutsideRanges {
        /// The requested address.
        addr: IpAddr,
    },
    /// Requested addresses that no range set used (host-local: "failed to allocate all requested IPs").
    #[error("failed to allocate all requested IPs: {}", join(addrs))]
    RequestedNotUsed {
        /// The addresses left over.
        addrs: Vec<IpAddr>,
    },
    /// A requested address is held by someone else or is never handed out.
    #[error("requested address {addr} in range set {range_set} is not available: {reason}")]
    AddressUnavailable {
        /// The requested address.
        addr: IpAddr,
        /// Index of the range set it belongs to.
        range_set: usize,
        /// Why ("held by ...", "is the gateway", "is the network address", ...).
        reason: String,
    },
    /// The owner already holds a lease; release it first (CNI forbids ADD twice without DEL).
    #[error(
        "{owner} already holds {}; duplicate allocation is not allowed",
        join(addrs)
    )]
    DuplicateAllocation {
        /// The owner.
        owner: Owner,
        /// The addresses it holds.
        addrs: Vec<IpAddr>,
    },
    /// No free address left in a range set.
    #[error("no IP addresses available in range set {range_set}: {ranges}")]
    Exhausted {
        /// Index of the exhausted range set.
        range_set: usize,
        /// The range set, as `start-end,start-end`.
        ranges: String,
    },
    /// The store's lock could not be taken within the bounded wait.
    #[error("lease store {path} is locked by another process (waited {waited:?}); try again later")]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
    /// The data directory is missing and cannot be created, or is not writable.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An I/O operation on the store failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What we were doing ("write", "fsync", "rename", ...).
        op: &'static str,
        /// On which file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The lease file cannot be decoded. Nothing is allocated until an operator repairs it:
    /// starting empty could hand an address out twice.
    #[error("corrupt lease state {path} (record {record}): {reason}")]
    CorruptState {
        /// The lease file.
        path: PathBuf,
        /// 1-based record (line) number.
        record: u64,
        /// What is wrong.
        reason: String,
    },
}

fn join(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

impl IpamError {
    /// The CNI error code for this error (see the table on [`IpamError`]).
    pub fn cni_code(&self) -> u32 {
        match self {
            IpamError::InvalidConfig { .. }
            | IpamError::RequestedOutsideRanges { .. }
            | IpamError::RequestedNotUsed { .. } => 7,
            IpamError::InvalidArgs { .. } | IpamError::InvalidOwner { .. } => 4,
            IpamError::Exhausted { .. } => 50,
            IpamError::AddressUnavailable { .. } => CODE_ADDRESS_UNAVAILABLE,
            IpamError::DuplicateAllocation { .. } => CODE_DUPLICATE_ALLOCATION,
            IpamError::LockTimeout { .. } => 11,
            IpamError::Io { .. } | IpamError::DataDir { .. } => 5,
            IpamError::CorruptState { .. } | IpamError::Decode { .. } => 6,
        }
    }

    /// Short message for the CNI error JSON's `msg` field.
    pub fn cni_msg(&self) -> &'static str {
        match self.cni_code() {
            4 => "Invalid environment variables",
            5 => "I/O failure",
            6 => "Failed to decode content",
            7 => "Invalid network config",
            11 => "Try again later",
            50 => "Address pool exhausted",
            CODE_ADDRESS_UNAVAILABLE => "Requested address not available",
            CODE_DUPLICATE_ALLOCATION => "Duplicate allocation",
            _ => "IPAM error",
        }
    }

    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        IpamError::InvalidConfig {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = IpamError> = std::result::Result<T, E>;
