//! The allocator's face: owners, leases, requests, pool status and the [`Allocator`] trait.

use std::fmt;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Who holds a lease: a container's attachment, `(CNI_CONTAINERID, CNI_IFNAME)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Owner {
    /// `CNI_CONTAINERID` (surrounding white space is ignored, as host-local does).
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
}

impl Owner {
    /// An owner from a container id and interface name; the id is trimmed.
    pub fn new(container_id: impl AsRef<str>, ifname: impl Into<String>) -> Self {
        Owner {
            container_id: container_id.as_ref().trim().to_string(),
            ifname: ifname.into(),
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "container {:?} interface {:?}",
            self.container_id, self.ifname
        )
    }
}

/// One address of a lease: taken from range set `range_set`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeasedAddress {
    /// Index of the range set (in [`crate::IpamConfig::ranges`]) the address came from.
    pub range_set: usize,
    /// The address with its subnet's prefix length (`10.1.2.5/24`).
    pub address: IpNetwork,
    /// The gateway of the range the address lies in.
    pub gateway: IpAddr,
}

/// What an owner holds: one address per range set, in range-set order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lease {
    /// The holder.
    pub owner: Owner,
    /// One entry per range set, in range-set order.
    pub addresses: Vec<LeasedAddress>,
}

impl Lease {
    /// The bare addresses of this lease.
    pub fn ips(&self) -> Vec<IpAddr> {
        self.addresses.iter().map(|a| a.address.ip()).collect()
    }
}

/// A request for one address per range set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationRequest {
    /// Who will hold the lease.
    pub owner: Owner,
    /// Specific addresses asked for (see [`crate::requested_addresses`]); each must be used by
    /// some range set, at most one per range set, or the allocation fails.
    pub requested: Vec<IpAddr>,
}

impl AllocationRequest {
    /// A request for any free addresses.
    pub fn new(owner: Owner) -> Self {
        AllocationRequest {
            owner,
            requested: Vec::new(),
        }
    }

    /// A request that asks for specific addresses.
    pub fn with_requested(owner: Owner, requested: Vec<IpAddr>) -> Self {
        AllocationRequest { owner, requested }
    }
}

/// Occupancy of one range set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RangeSetStatus {
    /// Index of the range set.
    pub range_set: usize,
    /// Addresses that can ever be handed out (ranges minus gateways, network and broadcast).
    pub capacity: u128,
    /// Addresses leased now.
    pub used: u128,
    /// `capacity - used`.
    pub free: u128,
}

/// Occupancy of every range set; what CNI STATUS reports on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolStatus {
    /// One entry per range set, in order.
    pub range_sets: Vec<RangeSetStatus>,
    /// Number of leases (owners).
    pub leases: usize,
}

impl PoolStatus {
    /// True when some range set has no free address, so no ADD can succeed (STATUS answers 50).
    pub fn exhausted(&self) -> bool {
        self.range_sets.iter().any(|r| r.free == 0)
    }
}

/// Address management as CNI sees it. Implemented by [`crate::MemoryAllocator`] and
/// [`crate::DiskAllocator`].
///
/// Every method either succeeds or leaves the allocator exactly as it was.
pub trait Allocator {
    /// Take one address per range set for `request.owner`. All-or-nothing: if any range set
    /// fails, nothing is allocated in any. An owner that already holds a lease gets
    /// [`crate::IpamError::DuplicateAllocation`].
    fn allocate(&mut self, request: &AllocationRequest) -> Result<Lease>;

    /// Release what `owner` holds. Idempotent: releasing an unknown owner is `Ok(None)`.
    fn release(&mut self, owner: &Owner) -> Result<Option<Lease>>;

    /// Every lease, ordered by owner.
    fn leases(&mut self) -> Result<Vec<Lease>>;

    /// The lease of `owner`, if any (CNI CHECK).
    fn lease(&mut self, owner: &Owner) -> Result<Option<Lease>> {
        Ok(self.leases()?.into_iter().find(|l| &l.owner == owner))
    }

    /// Release every lease whose owner is not in `live`; returns the released leases.
    fn gc(&mut self, live: &[Owner]) -> Result<Vec<Lease>>;

    /// Free and used addresses per range set (CNI STATUS).
    fn status(&mut self) -> Result<PoolStatus>;
}
