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
pub use disk::{DEFAULT_LOCK_TIMEOUT, DiskAllocator, DiskOptions};
pub use error::{CODE_ADDRESS_UNAVAILABLE, CODE_DUPLICATE_ALLOCATION, IpamError, Result};
pub use memory::MemoryAllocator;
pub use pool::Pool;
pub use request::{parse_cni_args, requested_addresses};
pub use types::{
    AllocationRequest, Allocator, Lease, LeasedAddress, Owner, PoolStatus, RangeSetStatus,
};
