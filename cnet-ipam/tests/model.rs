//! Property test: random sequences of allocate / release / gc / crash-reopen against the disk
//! store, with the in-memory allocator as the model. After every step: same outcome as the
//! model, no address held twice, never a gateway/network/broadcast, every lease inside its
//! range; a released address can be requested again at once; a reopened store (after a crash
//! that may leave a stray temp file or a torn record) holds exactly the committed leases.

mod common;

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use cnet_ipam::{
    AllocationRequest, Allocator, DiskAllocator, DiskOptions, Lease, MemoryAllocator, Owner,
    RangeSet,
};
use proptest::prelude::*;
use serde_json::json;

fn sets() -> Vec<RangeSet> {
    common::sets(json!({"ranges": [
        [{"subnet": "10.0.0.0/29"},
         {"subnet": "10.0.1.0/30", "rangeStart": "10.0.1.0", "rangeEnd": "10.0.1.3", "gateway": "10.0.1.2"}],
        [{"subnet": "fd00::/125"}]
    ]}))
}

fn candidates() -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = (0..8)
        .map(|i| format!("10.0.0.{i}").parse().expect("ip"))
        .collect();
    v.extend((0..4).map(|i| format!("10.0.1.{i}").parse::<IpAddr>().expect("ip")));
    v.extend((0..8).map(|i| format!("fd00::{i}").parse::<IpAddr>().expect("ip")));
    v.push("10.9.9.9".parse().expect("ip"));
    v
}

#[derive(Debug, Clone)]
enum Crash {
    Plain,
    StrayTemp,
    TornTail,
}

#[derive(Debug, Clone)]
enum Op {
    Alloc(usize, Vec<usize>),
    Release(usize),
    /// Release, then another owner requests exactly the released addresses.
    Reclaim(usize),
    Gc(u16),
    Crash(Crash),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0usize..12, proptest::collection::vec(0usize..21, 0..3)).prop_map(|(o, r)| Op::Alloc(o, r)),
        3 => (0usize..12).prop_map(Op::Release),
        1 => (0usize..12).prop_map(Op::Reclaim),
        1 => any::<u16>().prop_map(Op::Gc),
        1 => prop_oneof![Just(Crash::Plain), Just(Crash::StrayTemp), Just(Crash::TornTail)].prop_map(Op::Crash),
    ]
}

fn owner(i: usize) -> Owner {
    Owner::new(format!("c{i}"), if i % 2 == 0 { "eth0" } else { "net1" })
}

fn open(dir: &Path) -> DiskAllocator {
    DiskAllocator::open_dir(
        dir,
        sets(),
        DiskOptions {
            compact_min_records: 6,
            ..Default::default()
        },
    )
    .expect("open")
}

fn outcome<T: PartialEq + std::fmt::Debug>(r: cnet_ipam::Result<T>) -> Result<T, String> {
    r.map_err(|e| e.to_string())
}

fn check_invariants(leases: &[Lease], sets: &[RangeSet]) -> Result<(), TestCaseError> {
    let mut seen = HashSet::new();
    for l in leases {
        prop_assert_eq!(l.addresses.len(), sets.len());
        for a in &l.addresses {
            let ip = a.address.ip();
            prop_assert!(seen.insert(ip), "{} held twice", ip);
            let (_, r) = sets[a.range_set].range_for(ip).ok_or_else(|| {
                TestCaseError::fail(format!("{ip} outside range set {}", a.range_set))
            })?;
            prop_assert!(r.is_allocatable(ip), "{} is reserved", ip);
            prop_assert_ne!(ip, r.gateway);
            prop_assert_ne!(ip, r.subnet.network());
            if r.subnet.is_ipv4() {
                prop_assert_ne!(ip, r.subnet.broadcast());
            }
            prop_assert_eq!(a.address.prefix(), r.subnet.prefix());
            prop_assert_eq!(a.gateway, r.gateway);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn disk_store_matches_model_through_crashes(ops in proptest::collection::vec(op(), 1..40)) {
        let d = tempfile::tempdir().expect("tmp");
        let dir = d.path().join("net");
        let sets = sets();
        let cands = candidates();
        let mut model = MemoryAllocator::new(sets.clone());
        let mut disk = open(&dir);
        for op in ops {
            match op {
                Op::Alloc(o, req) => {
                    let r = AllocationRequest::with_requested(owner(o), req.iter().map(|i| cands[*i]).collect());
                    prop_assert_eq!(outcome(disk.allocate(&r)), outcome(model.allocate(&r)));
                }
                Op::Release(o) => {
                    prop_assert_eq!(outcome(disk.release(&owner(o))), outcome(model.release(&owner(o))));
                }
                Op::Reclaim(o) => {
                    let released = outcome(disk.release(&owner(o)));
                    prop_assert_eq!(&released, &outcome(model.release(&owner(o))));
                    if let Ok(Some(l)) = released {
                        let r = AllocationRequest::with_requested(Owner::new("reclaimer", "eth0"), l.ips());
                        let got = outcome(disk.allocate(&r));
                        prop_assert_eq!(&got, &outcome(model.allocate(&r)));
                        prop_assert!(got.is_ok(), "released addresses not allocatable again: {:?}", got);
                        prop_assert_eq!(got.map(|x| x.ips()).ok(), Some(l.ips()));
                        disk.release(&r.owner).expect("release reclaimer");
                        model.release(&r.owner).expect("release reclaimer");
                    }
                }
                Op::Gc(mask) => {
                    let live: Vec<Owner> = (0..12).filter(|i| mask & (1 << i) != 0).map(owner).collect();
                    prop_assert_eq!(outcome(disk.gc(&live)), outcome(model.gc(&live)));
                }
                Op::Crash(kind) => {
                    drop(disk);
                    match kind {
                        Crash::Plain => {}
                        Crash::StrayTemp => {
                            fs::write(dir.join("cnet-ipam.journal.tmp.4242.7"), b"{\"op\":\"snap").expect("w");
                        }
                        Crash::TornTail => {
                            if let Ok(mut f) = fs::OpenOptions::new().append(true).open(dir.join("cnet-ipam.journal")) {
                                f.write_all(b"12345678 {\"op\":\"commit\",\"ev").expect("w");
                            }
                        }
                    }
                    disk = open(&dir);
                }
            }
            let held = disk.leases().expect("leases");
            prop_assert_eq!(&held, &model.leases().expect("leases"));
            prop_assert_eq!(disk.status().expect("status"), model.status().expect("status"));
            check_invariants(&held, &sets)?;
        }
        // A fresh handle sees exactly the committed leases.
        prop_assert_eq!(open(&dir).leases().expect("leases"), model.leases().expect("leases"));
    }
}
