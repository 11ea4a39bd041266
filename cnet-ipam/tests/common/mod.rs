//! Helpers shared by the integration tests.
#![allow(dead_code)]

use cnet_ipam::{
    Allocator, DiskAllocator, DiskOptions, IpamConfig, MemoryAllocator, Owner, RangeSet,
};
use serde_json::Value;

/// Range sets from an `ipam` object.
pub fn sets(ipam: Value) -> Vec<RangeSet> {
    IpamConfig::from_ipam("testnet", &ipam)
        .expect("valid config")
        .ranges
}

/// Range sets, each one subnet.
pub fn subnets(list: &[&[&str]]) -> Vec<RangeSet> {
    let ranges: Vec<Vec<Value>> = list
        .iter()
        .map(|set| {
            set.iter()
                .map(|s| serde_json::json!({ "subnet": s }))
                .collect()
        })
        .collect();
    sets(serde_json::json!({ "ranges": ranges }))
}

pub fn owner(i: usize) -> Owner {
    Owner::new(format!("container-{i}"), "eth0")
}

/// Both implementations over the same sets; the temp dir keeps the disk one alive.
pub fn backends(sets: &[RangeSet]) -> Vec<(&'static str, Box<dyn Allocator>, tempfile::TempDir)> {
    let mem_dir = tempfile::tempdir().expect("tempdir");
    let disk_dir = tempfile::tempdir().expect("tempdir");
    let disk = DiskAllocator::open_dir(
        disk_dir.path().join("net"),
        sets.to_vec(),
        DiskOptions::default(),
    )
    .expect("open disk store");
    vec![
        (
            "memory",
            Box::new(MemoryAllocator::new(sets.to_vec())),
            mem_dir,
        ),
        ("disk", Box::new(disk), disk_dir),
    ]
}
