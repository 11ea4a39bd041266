//! The disk-backed allocator (IO shell): one journal per network, an exclusive lock file with a
//! bounded wait, atomic snapshots. See [`DiskAllocator`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{IpamConfig, RangeSet};
use crate::error::Result;
use crate::types::{AllocationRequest, Allocator, Lease, Owner, PoolStatus};

/// Default bound on the wait for the store's lock.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// Tuning of a [`DiskAllocator`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskOptions {
    /// How long to wait for the exclusive lock before [`crate::IpamError::LockTimeout`].
    pub lock_timeout: Duration,
}

impl Default for DiskOptions {
    fn default() -> Self {
        DiskOptions {
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }
}

/// An [`Allocator`] whose leases live in `dataDir/<network>/`, safe across processes.
#[derive(Debug)]
pub struct DiskAllocator {
    dir: PathBuf,
    sets: Vec<RangeSet>,
    options: DiskOptions,
}

impl DiskAllocator {
    /// Open (creating the directory if needed) the store of `config` in
    /// `config.store_dir()`, with default options.
    pub fn open(config: &IpamConfig) -> Result<Self> {
        Self::open_with(config, DiskOptions::default())
    }

    /// As [`DiskAllocator::open`], with options.
    pub fn open_with(config: &IpamConfig, options: DiskOptions) -> Result<Self> {
        Self::open_dir(config.store_dir(), config.ranges.clone(), options)
    }

    /// Open the store in directory `dir` over `sets`.
    pub fn open_dir(
        dir: impl Into<PathBuf>,
        sets: Vec<RangeSet>,
        options: DiskOptions,
    ) -> Result<Self> {
        Ok(DiskAllocator {
            dir: dir.into(),
            sets,
            options,
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Allocator for DiskAllocator {
    fn allocate(&mut self, _request: &AllocationRequest) -> Result<Lease> {
        unimplemented!("DiskAllocator: in progress")
    }
    fn release(&mut self, _owner: &Owner) -> Result<Option<Lease>> {
        unimplemented!("DiskAllocator: in progress")
    }
    fn leases(&mut self) -> Result<Vec<Lease>> {
        unimplemented!("DiskAllocator: in progress")
    }
    fn gc(&mut self, _live: &[Owner]) -> Result<Vec<Lease>> {
        unimplemented!("DiskAllocator: in progress")
    }
    fn status(&mut self) -> Result<PoolStatus> {
        unimplemented!("DiskAllocator: in progress")
    }
}
