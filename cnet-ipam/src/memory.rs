//! The in-memory allocator: the pure [`Pool`] behind the [`Allocator`] trait.

use crate::config::RangeSet;
use crate::error::Result;
use crate::pool::{Event, Pool};
use crate::types::{AllocationRequest, Allocator, Lease, Owner, PoolStatus};

/// An [`Allocator`] that keeps its leases in memory only (tests, embedding, simulations).
#[derive(Debug, Clone)]
pub struct MemoryAllocator {
    pool: Pool,
}

impl MemoryAllocator {
    /// An empty allocator over validated range sets (e.g. `IpamConfig::ranges`).
    pub fn new(sets: Vec<RangeSet>) -> Self {
        MemoryAllocator {
            pool: Pool::new(sets),
        }
    }

    /// An allocator continuing from a pool (see [`Pool::restore`]).
    pub fn from_pool(pool: Pool) -> Self {
        MemoryAllocator { pool }
    }

    /// The pure core, for inspection.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

fn applied(pool: &mut Pool, event: &Event) -> Option<Lease> {
    // Events planned by the pool itself always apply.
    pool.apply(event).ok().flatten()
}

impl Allocator for MemoryAllocator {
    fn allocate(&mut self, request: &AllocationRequest) -> Result<Lease> {
        let (lease, event) = self.pool.plan_allocate(request)?;
        applied(&mut self.pool, &event);
        Ok(lease)
    }

    fn release(&mut self, owner: &Owner) -> Result<Option<Lease>> {
        Ok(applied(
            &mut self.pool,
            &Event::Release {
                owner: owner.clone(),
            },
        ))
    }

    fn leases(&mut self) -> Result<Vec<Lease>> {
        Ok(self.pool.leases().cloned().collect())
    }

    fn lease(&mut self, owner: &Owner) -> Result<Option<Lease>> {
        Ok(self.pool.lease(owner).cloned())
    }

    fn gc(&mut self, live: &[Owner]) -> Result<Vec<Lease>> {
        let events = self.pool.plan_gc(live);
        Ok(events
            .iter()
            .filter_map(|e| applied(&mut self.pool, e))
            .collect())
    }

    fn status(&mut self) -> Result<PoolStatus> {
        Ok(self.pool.status())
    }
}
