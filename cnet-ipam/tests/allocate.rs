//! Allocation behaviour, for both the in-memory and the disk allocator. Cases follow
//! host-local's allocator_test.go where it has one.

mod common;

use std::net::IpAddr;

use cnet_ipam::{AllocationRequest, Allocator, IpamError, Lease, MemoryAllocator, Owner, Pool};
use common::{backends, owner, sets, subnets};
use serde_json::json;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn alloc(a: &mut dyn Allocator, o: Owner) -> Result<Lease, IpamError> {
    a.allocate(&AllocationRequest::new(o))
}

fn first_ip(l: &Lease) -> String {
    l.addresses[0].address.ip().to_string()
}

#[test]
fn slash29_hands_out_2_to_6_then_exhausts_never_gateway_network_broadcast() {
    // host-local: "should not allocate the broadcast address"
    for (name, mut a, _d) in backends(&subnets(&[&["192.168.1.0/29"]])) {
        for i in 2..7 {
            let l = alloc(a.as_mut(), owner(i)).expect(name);
            assert_eq!(
                l.addresses[0].address.to_string(),
                format!("192.168.1.{i}/29")
            );
            assert_eq!(l.addresses[0].gateway, ip("192.168.1.1"));
        }
        let e = alloc(a.as_mut(), owner(8)).expect_err(name);
        assert!(
            matches!(e, IpamError::Exhausted { range_set: 0, .. }),
            "{name}: {e}"
        );
        assert!(
            e.to_string()
                .starts_with("no IP addresses available in range set")
        );
        assert_eq!(e.cni_code(), 50);
        let st = a.status().expect(name);
        assert!(st.exhausted());
        assert_eq!(
            (
                st.range_sets[0].capacity,
                st.range_sets[0].used,
                st.range_sets[0].free
            ),
            (5, 5, 0)
        );
    }
}

#[test]
fn round_robin_does_not_reuse_a_just_released_address() {
    // host-local: "should allocate in a round-robin fashion"
    for (name, mut a, _d) in backends(&subnets(&[&["192.168.1.0/29"]])) {
        let l = alloc(a.as_mut(), owner(1)).expect(name);
        assert_eq!(l.addresses[0].address.to_string(), "192.168.1.2/29");
        a.release(&owner(1)).expect(name);
        let l = alloc(a.as_mut(), owner(1)).expect(name);
        assert_eq!(l.addresses[0].address.to_string(), "192.168.1.3/29");
    }
}

/// host-local's table "should allocate ips in round robin": held addresses and last reserved.
#[test]
fn host_local_round_robin_table() {
    let cases: &[(&[&str], &[&str], &str, &str)] = &[
        (&["10.0.0.0/29"], &[], "", "10.0.0.2"),
        (&["2001:db8:1::0/64"], &[], "", "2001:db8:1::2"),
        (&["10.0.0.0/30"], &[], "", "10.0.0.2"),
        (&["10.0.0.0/29"], &["10.0.0.2"], "", "10.0.0.3"),
        (&["10.0.0.0/29"], &[], "10.0.0.5", "10.0.0.6"),
        (
            &["10.0.0.0/29"],
            &["10.0.0.4", "10.0.0.5"],
            "10.0.0.3",
            "10.0.0.6",
        ),
        (&["10.0.0.0/29"], &["10.0.0.6"], "10.0.0.5", "10.0.0.2"),
        (&["10.0.0.0/29"], &["10.0.0.2"], "10.0.0.128", "10.0.0.3"),
        (
            &["10.0.0.0/29"],
            &["10.0.0.2", "10.0.0.4", "10.0.0.5", "10.0.0.6"],
            "10.0.0.3",
            "10.0.0.3",
        ),
        (&["10.0.0.0/30", "10.0.1.0/30"], &[], "", "10.0.0.2"),
        (&["10.0.0.0/30", "10.0.1.0/30"], &[], "10.0.0.2", "10.0.1.2"),
        (
            &["10.0.0.0/30", "10.0.1.0/30", "10.0.2.0/30"],
            &[],
            "10.0.2.2",
            "10.0.0.2",
        ),
    ];
    for (i, (nets, held, last, expect)) in cases.iter().enumerate() {
        let s = subnets(&[nets]);
        let leases = held
            .iter()
            .enumerate()
            .map(|(k, h)| {
                let mut probe = MemoryAllocator::new(s.clone());
                probe
                    .allocate(&AllocationRequest::with_requested(
                        owner(100 + k),
                        vec![ip(h)],
                    ))
                    .expect("held address is allocatable")
            })
            .collect();
        let last = vec![(!last.is_empty()).then(|| ip(last))];
        let mut a = MemoryAllocator::from_pool(Pool::restore(s, leases, last).expect("restore"));
        let l = alloc(&mut a, owner(1)).unwrap_or_else(|e| panic!("case {i}: {e}"));
        assert_eq!(first_ip(&l), *expect, "case {i}");
    }
}

#[test]
fn out_of_ips_table() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["10.0.0.0/30"], &["10.0.0.2"]),
        (
            &["10.0.0.0/29"],
            &["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"],
        ),
        (&["10.0.0.0/30", "10.0.1.0/30"], &["10.0.0.2", "10.0.1.2"]),
    ];
    for (nets, held) in cases {
        for (name, mut a, _d) in backends(&subnets(&[nets])) {
            for (k, h) in held.iter().enumerate() {
                a.allocate(&AllocationRequest::with_requested(owner(k), vec![ip(h)]))
                    .expect(name);
            }
            let e = alloc(a.as_mut(), owner(99)).expect_err(name);
            assert!(matches!(e, IpamError::Exhausted { .. }), "{name}: {e}");
        }
    }
}

#[test]
fn multi_range_set_walks_ranges_in_order_and_wraps() {
    for (name, mut a, _d) in backends(&subnets(&[&["10.0.0.0/30", "10.0.1.0/30"]])) {
        let got: Vec<String> = (0..2)
            .map(|i| first_ip(&alloc(a.as_mut(), owner(i)).expect(name)))
            .collect();
        assert_eq!(got, ["10.0.0.2", "10.0.1.2"], "{name}");
        a.release(&owner(0)).expect(name);
        assert_eq!(
            first_ip(&alloc(a.as_mut(), owner(5)).expect(name)),
            "10.0.0.2"
        );
        // The lease carries the gateway of the range the address came from.
        let l = a.lease(&owner(1)).expect(name).expect("held");
        assert_eq!(l.addresses[0].gateway, ip("10.0.1.1"));
    }
}

#[test]
fn requested_address_is_honoured_and_conflicts_are_typed() {
    // host-local: "must allocate the requested IP" / "must fail when the requested IP is allocated"
    for (name, mut a, _d) in backends(&subnets(&[&["192.168.1.0/29"]])) {
        let req = |o, s: &str| AllocationRequest::with_requested(o, vec![ip(s)]);
        let l = a.allocate(&req(owner(1), "192.168.1.5")).expect(name);
        assert_eq!(first_ip(&l), "192.168.1.5");
        let e = a.allocate(&req(owner(2), "192.168.1.5")).expect_err(name);
        assert!(
            matches!(e, IpamError::AddressUnavailable { .. }),
            "{name}: {e}"
        );
        assert_eq!(e.cni_code(), cnet_ipam::CODE_ADDRESS_UNAVAILABLE);
        for reserved in ["192.168.1.1", "192.168.1.0", "192.168.1.7"] {
            let e = a.allocate(&req(owner(3), reserved)).expect_err(name);
            // .1 is the gateway (in range); .0 and .7 lie outside rangeStart..rangeEnd.
            assert!(
                matches!(
                    e,
                    IpamError::AddressUnavailable { .. } | IpamError::RequestedOutsideRanges { .. }
                ),
                "{name} {reserved}: {e}"
            );
        }
        let e = a.allocate(&req(owner(3), "10.9.9.9")).expect_err(name);
        assert!(
            matches!(e, IpamError::RequestedOutsideRanges { .. }),
            "{name}: {e}"
        );
        assert_eq!(e.cni_code(), 7);
        // Round robin continues after the requested address (host-local records it as last).
        assert_eq!(
            first_ip(&alloc(a.as_mut(), owner(4)).expect(name)),
            "192.168.1.6"
        );
        assert_eq!(a.leases().expect(name).len(), 2);
    }
}

#[test]
fn explicit_range_with_network_and_broadcast_never_hands_them_out() {
    let s = sets(json!({"ranges": [[{
        "subnet": "10.5.0.0/30", "rangeStart": "10.5.0.0", "rangeEnd": "10.5.0.3", "gateway": "10.5.0.2"
    }]]}));
    for (name, mut a, _d) in backends(&s) {
        assert_eq!(
            first_ip(&alloc(a.as_mut(), owner(1)).expect(name)),
            "10.5.0.1"
        );
        assert!(
            matches!(
                alloc(a.as_mut(), owner(2)),
                Err(IpamError::Exhausted { .. })
            ),
            "{name}"
        );
        assert_eq!(a.status().expect(name).range_sets[0].capacity, 1);
    }
}

#[test]
fn ipv6_range_allocates_from_start_and_excludes_gateway() {
    let s = sets(json!({"ranges": [[{
        "subnet": "fd00:10::/64", "rangeStart": "fd00:10::fffe", "rangeEnd": "fd00:10::1:1", "gateway": "fd00:10::ffff"
    }]]}));
    for (name, mut a, _d) in backends(&s) {
        let got: Vec<String> = (0..3)
            .map(|i| {
                alloc(a.as_mut(), owner(i)).expect(name).addresses[0]
                    .address
                    .to_string()
            })
            .collect();
        assert_eq!(
            got,
            ["fd00:10::fffe/64", "fd00:10::1:0/64", "fd00:10::1:1/64"],
            "{name}"
        );
        assert!(matches!(
            alloc(a.as_mut(), owner(9)),
            Err(IpamError::Exhausted { .. })
        ));
    }
}

#[test]
fn dual_stack_failure_in_one_family_leaves_nothing_in_the_other() {
    let s = subnets(&[&["10.0.0.0/29"], &["fd00::/126"]]);
    for (name, mut a, _d) in backends(&s) {
        let l = alloc(a.as_mut(), owner(1)).expect(name);
        assert_eq!(l.ips(), vec![ip("10.0.0.2"), ip("fd00::2")], "{name}");
        let l = alloc(a.as_mut(), owner(2)).expect(name);
        assert_eq!(l.ips(), vec![ip("10.0.0.3"), ip("fd00::3")], "{name}");
        let before_leases = a.leases().expect(name);
        let before_status = a.status().expect(name);
        // IPv6 is exhausted: the allocation fails and takes no IPv4 address.
        let e = alloc(a.as_mut(), owner(3)).expect_err(name);
        assert!(
            matches!(e, IpamError::Exhausted { range_set: 1, .. }),
            "{name}: {e}"
        );
        assert_eq!(a.leases().expect(name), before_leases, "{name}");
        assert_eq!(a.status().expect(name), before_status, "{name}");
        // A requested IPv6 address that is taken: same, nothing in IPv4.
        let e = a
            .allocate(&AllocationRequest::with_requested(
                owner(4),
                vec![ip("fd00::2")],
            ))
            .expect_err(name);
        assert!(
            matches!(e, IpamError::AddressUnavailable { range_set: 1, .. }),
            "{name}: {e}"
        );
        assert_eq!(a.leases().expect(name), before_leases, "{name}");
        // The failed attempts did not move round-robin either: next IPv4 is .4.
        a.release(&owner(1)).expect(name);
        let l = alloc(a.as_mut(), owner(3)).expect(name);
        assert_eq!(l.ips(), vec![ip("10.0.0.4"), ip("fd00::2")], "{name}");
    }
}

#[test]
fn duplicate_allocation_release_idempotent_and_gc() {
    for (name, mut a, _d) in backends(&subnets(&[&["10.0.0.0/24"]])) {
        for i in 0..5 {
            alloc(a.as_mut(), owner(i)).expect(name);
        }
        let e = alloc(a.as_mut(), owner(2)).expect_err(name);
        assert!(
            matches!(e, IpamError::DuplicateAllocation { .. }),
            "{name}: {e}"
        );
        assert_eq!(e.cni_code(), cnet_ipam::CODE_DUPLICATE_ALLOCATION);
        // Same container, other interface: a separate owner.
        alloc(a.as_mut(), Owner::new("container-2", "net1")).expect(name);
        assert!(a.release(&owner(4)).expect(name).is_some());
        assert!(a.release(&owner(4)).expect(name).is_none());
        assert!(a.release(&owner(77)).expect(name).is_none());
        let live = [owner(0), Owner::new("container-2", "net1")];
        let mut gone: Vec<Owner> = a
            .gc(&live)
            .expect(name)
            .into_iter()
            .map(|l| l.owner)
            .collect();
        gone.sort();
        assert_eq!(gone, vec![owner(1), owner(2), owner(3)], "{name}");
        let mut left: Vec<Owner> = a
            .leases()
            .expect(name)
            .into_iter()
            .map(|l| l.owner)
            .collect();
        left.sort();
        let mut want = live.to_vec();
        want.sort();
        assert_eq!(left, want, "{name}");
        assert!(a.gc(&live).expect(name).is_empty());
        assert_eq!(a.status().expect(name).range_sets[0].used, 2);
    }
}

#[test]
fn requested_addresses_must_all_be_used() {
    let s = subnets(&[&["10.1.2.0/24"], &["10.1.3.0/24"]]);
    for (name, mut a, _d) in backends(&s) {
        // host-local: "fails if a requested custom IP is not used"
        let e = a
            .allocate(&AllocationRequest::with_requested(
                owner(1),
                vec![ip("10.1.2.88"), ip("10.1.2.77")],
            ))
            .expect_err(name);
        match &e {
            IpamError::RequestedNotUsed { addrs } => assert_eq!(addrs, &vec![ip("10.1.2.77")]),
            other => panic!("{name}: {other}"),
        }
        assert!(
            e.to_string()
                .starts_with("failed to allocate all requested IPs: 10.1.2.")
        );
        assert!(a.leases().expect(name).is_empty());
        // "allocates custom IPs from multiple ranges"
        let l = a
            .allocate(&AllocationRequest::with_requested(
                owner(1),
                vec![ip("10.1.2.88"), ip("10.1.3.77")],
            ))
            .expect(name);
        assert_eq!(l.ips(), vec![ip("10.1.2.88"), ip("10.1.3.77")]);
    }
}

#[test]
fn invalid_owner_is_rejected() {
    let mut a = MemoryAllocator::new(subnets(&[&["10.0.0.0/24"]]));
    let e = alloc(&mut a, Owner::new("  ", "eth0")).expect_err("empty id");
    assert_eq!(e.cni_code(), 4);
}
