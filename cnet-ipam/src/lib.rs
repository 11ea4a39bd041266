//! cnet-ipam: address management for containers, compatible with the CNI `host-local` IPAM
//! plugin's configuration and behaviour.
//!
//! - [`IpamConfig`] parses and validates the `ipam` object of a CNI network config (range sets,
//!   legacy single-range keys, routes, `dataDir`, `resolvConf`) as host-local does.
//! - [`requested_addresses`] collects specific addresses asked for through `CNI_ARGS` `IP=`,
//!   `args.cni.ips` and `runtimeConfig.ips`.
//! - The [`Allocator`] trait hands out one address per range set to an [`Owner`]
//!   (`(container_id, ifname)`), all-or-nothing, round-robin from the last reserved address.
//!   [`MemoryAllocator`] keeps leases in memory; [`DiskAllocator`] keeps them in
//!   `dataDir/<network>/`, safe across concurrent plugin processes and `kill -9`.
//! - Every failure is an [`IpamError`] with a CNI error code ([`IpamError::cni_code`]).
//!
//! ```
//! use cnet_ipam::{AllocationRequest, Allocator, IpamConfig, MemoryAllocator, Owner};
//!
//! let ipam = serde_json::json!({
//!     "type": "cnet-ipam",
//!     "ranges": [
//!         [{ "subnet": "10.1.2.0/24", "rangeStart": "10.1.2.10" }],
//!         [{ "subnet": "fd00:1::/64" }]
//!     ]
//! });
//! let config = IpamConfig::from_ipam("mynet", &ipam)?;
//! let mut alloc = MemoryAllocator::new(config.ranges.clone());
//!
//! let owner = Owner::new("c0ffee", "eth0");
//! let lease = alloc.allocate(&AllocationRequest::new(owner.clone()))?;
//! assert_eq!(lease.addresses[0].address.to_string(), "10.1.2.10/24");
//! assert_eq!(lease.addresses[0].gateway.to_string(), "10.1.2.1");
//! assert_eq!(lease.addresses[1].address.to_string(), "fd00:1::2/64");
//!
//! // A second ADD for the same owner is refused, as in host-local.
//! let again = alloc.allocate(&AllocationRequest::new(owner.clone()));
//! assert_eq!(again.unwrap_err().cni_code(), cnet_ipam::CODE_DUPLICATE_ALLOCATION);
//!
//! alloc.release(&owner)?;
//! assert!(alloc.release(&owner)?.is_none()); // idempotent
//! # Ok::<(), cnet_ipam::IpamError>(())
//! ```

//!
//! # The disk store
//!
//! [`DiskAllocator`] keeps `dataDir/<network>/cnet-ipam.journal` (leases) and
//! `cnet-ipam.lock`. Every call takes an exclusive `flock` on the lock file, waiting at most
//! [`DiskOptions::lock_timeout`] (10 s by default) before [`IpamError::LockTimeout`] (CNI 11,
//! "try again later"). A change is one checksummed journal line, `fdatasync`ed before the call
//! returns; the journal is rewritten as a snapshot (temp file, fsync, rename, fsync of the
//! directory) when it is created and when it grows past twice the live leases. A line cut short
//! by `kill -9` was never acknowledged and is ignored; any other damage is
//! [`IpamError::CorruptState`] and the store refuses to allocate until repaired, since starting
//! empty could hand an address out twice.
//!
//! # Allocation
//!
//! Each range set resumes after the address it last reserved (host-local's round robin, so a
//! just-released address is not reused at once), walking its ranges in order and wrapping.
//! Used addresses are kept as maximal intervals in a B-tree per range, so finding the next
//! free address is O(log n) in any fill state, also for IPv6 ranges too large for a bitmap.
//!
//! # Differences from host-local (all stricter or additive)
//!
//! - The network address (and, for IPv4, the broadcast address) is never handed out, even when
//!   an explicit `rangeStart`/`rangeEnd` includes it; a `gateway` must lie inside its subnet.
//! - A second allocation for an owner that holds a lease fails whether or not specific
//!   addresses were requested (host-local only checks the non-requested path).
//! - `CNI_ARGS` `IP=` accepts a comma-separated list; unknown `CNI_ARGS` keys are ignored.
//! - Requested addresses are matched to range sets in the order given (host-local iterates a
//!   Go map, so its choice between two candidates for one set is random).

mod addr;
mod config;
mod disk;
mod error;
mod intervals;
mod memory;
mod pool;
mod request;
mod types;

pub use config::{DEFAULT_DATA_DIR, IpamConfig, Range, RangeSet, Route};
pub use disk::{DEFAULT_LOCK_TIMEOUT, DiskAllocator, DiskOptions, PendingSync};
pub use error::{CODE_ADDRESS_UNAVAILABLE, CODE_DUPLICATE_ALLOCATION, IpamError, Result};
pub use memory::MemoryAllocator;
pub use pool::Pool;
pub use request::{parse_cni_args, requested_addresses};
pub use types::{
    AllocationRequest, Allocator, Lease, LeasedAddress, Owner, PoolStatus, RangeSetStatus,
};
