//! Property tests of the pure plan: for any valid spec, in either mode, the plan is
//! internally consistent (no root needed).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cnet_route::plan::{EndpointPlan, ModePlan, plan_bridge, plan_transparent};
use cnet_route::{EndpointSpec, Side, V4_LINK_GATEWAY, V6_LINK_GATEWAY, host_ifname};
use ipnetwork::IpNetwork;
use proptest::prelude::*;

fn v4() -> impl Strategy<Value = IpNetwork> {
    (any::<u32>(), 8u8..=30).prop_filter_map("unicast host address", |(bits, prefix)| {
        let ip = Ipv4Addr::from(bits);
        let net = IpNetwork::new(IpAddr::V4(ip), prefix).ok()?;
        let host_part = bits & (u32::MAX >> prefix);
        let broadcast = u32::MAX >> prefix;
        let ok = !ip.is_unspecified()
            && !ip.is_multicast()
            && !ip.is_loopback()
            && !ip.is_broadcast()
            && !ip.is_link_local()
            && host_part > 1
            && host_part < broadcast;
        ok.then_some(net)
    })
}

fn v6() -> impl Strategy<Value = IpNetwork> {
    (any::<u128>(), 16u8..=120).prop_filter_map("unicast host address", |(bits, prefix)| {
        let ip = Ipv6Addr::from(bits);
        let host_part = bits & (u128::MAX >> prefix);
        let ok = !ip.is_unspecified()
            && !ip.is_multicast()
            && !ip.is_loopback()
            && !ip.is_unicast_link_local()
            && host_part > 1;
        ok.then(|| IpNetwork::new(IpAddr::V6(ip), prefix).ok())
            .flatten()
    })
}

fn spec() -> impl Strategy<Value = EndpointSpec> {
    (
        "[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}",
        "[a-z][a-z0-9]{0,14}",
        prop::option::of(v4()),
        prop::option::of(v6()),
        prop::option::of(576u32..9000),
    )
        .prop_filter_map("at least one address", |(cid, ifname, a4, a6, mtu)| {
            let addresses: Vec<IpNetwork> = a4.into_iter().chain(a6).collect();
            if addresses.is_empty() {
                return None;
            }
            let mut s = EndpointSpec::new(cid, ifname, "/var/run/netns/p", addresses);
            s.mtu = mtu;
            Some(s)
        })
}

/// Invariants shared by both modes.
fn common(spec: &EndpointSpec, p: &EndpointPlan) {
    assert_eq!(p.veth.host, host_ifname(&spec.container_id, &spec.ifname));
    assert!(p.veth.host.len() <= 15);
    assert_eq!(p.veth.pod, spec.ifname);
    assert_ne!(p.veth.host_mac, p.veth.pod_mac);
    for m in [p.veth.host_mac, p.veth.pod_mac] {
        assert_eq!(m.0[0] & 0x03, 0x02, "local unicast MAC");
    }
    // Every object sits on an interface of its own side.
    for a in &p.addresses {
        assert_eq!(
            (a.side, a.ifname.as_str()),
            (Side::Pod, p.veth.pod.as_str())
        );
        assert_eq!(a.nodad, a.address.is_ipv6());
    }
    for r in &p.routes {
        let dev = if r.side == Side::Pod {
            &p.veth.pod
        } else {
            &p.veth.host
        };
        assert_eq!(&r.ifname, dev);
        if let Some(g) = r.gateway {
            assert_eq!(g.is_ipv4(), r.destination.is_ipv4(), "gateway family");
            // A gateway is reachable before the route that uses it: through a pod address's
            // subnet, an earlier scope-link route, or IPv6 link-local.
            let pos = p.routes.iter().position(|x| x == r).unwrap_or(usize::MAX);
            let via_subnet = p.addresses.iter().any(|a| a.address.contains(g));
            let via_link_route = p.routes[..pos]
                .iter()
                .any(|x| x.scope_link && x.side == r.side && x.destination.contains(g));
            let link_local = matches!(g, IpAddr::V6(v6) if v6.segments()[0] == 0xfe80);
            assert!(
                via_subnet || via_link_route || link_local,
                "{r} unreachable gateway"
            );
        }
    }
    // One default route per family in use, in the pod.
    for fam4 in [true, false] {
        let used = spec.addresses.iter().any(|a| a.is_ipv4() == fam4);
        let defaults = p
            .routes_on(Side::Pod)
            .filter(|r| r.destination.prefix() == 0 && r.destination.is_ipv4() == fam4)
            .count();
        assert_eq!(defaults, usize::from(used));
        let fwd = if fam4 {
            "net.ipv4.ip_forward"
        } else {
            "net.ipv6.conf.all.forwarding"
        };
        assert_eq!(
            p.sysctls.iter().any(|s| s.key == fwd && s.value == "1"),
            used
        );
    }
    // Per-interface sysctls name their interface in the key and path.
    for s in p.sysctls.iter().chain(&p.pod_sysctls) {
        if let Some(i) = &s.interface {
            assert!(s.key.contains(&format!(".{i}.")));
            assert!(s.proc_path().contains(&format!("/{i}/")));
        }
    }
    assert_eq!(p.veth.mtu, spec.mtu.unwrap_or(1500));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn transparent_plans_are_consistent(spec in spec()) {
        let p = plan_transparent(&spec, spec.mtu.unwrap_or(1500)).expect("valid spec plans");
        common(&spec, &p);
        prop_assert_eq!(&p.mode, &ModePlan::Transparent);
        prop_assert!(p.bridge.is_none() && p.veth.master.is_none());
        // Host prefixes in the pod, one node route per address, to the host veth.
        for (a, s) in p.addresses.iter().zip(&spec.addresses) {
            prop_assert_eq!(a.address.ip(), s.ip());
            prop_assert_eq!(a.address.prefix(), if s.is_ipv4() { 32 } else { 128 });
            prop_assert!(p.routes_on(Side::Node).any(|r| r.destination == a.address && r.gateway.is_none()));
        }
        prop_assert_eq!(p.routes_on(Side::Node).count(), spec.addresses.len());
        // Gateways are the link-local ones, each behind a permanent entry for the host MAC.
        for g in &p.gateways {
            prop_assert!(*g == IpAddr::V4(V4_LINK_GATEWAY) || *g == IpAddr::V6(V6_LINK_GATEWAY));
            prop_assert!(p.neighbours_on(Side::Pod).any(|n| n.address == *g && n.mac == Some(p.veth.host_mac)));
        }
    }

    #[test]
    fn bridge_plans_are_consistent(spec in spec()) {
        let p = plan_bridge(&spec, "cbr0", false, spec.mtu.unwrap_or(1500)).expect("valid spec plans");
        common(&spec, &p);
        let b = p.bridge.as_ref().expect("bridge");
        prop_assert_eq!(p.veth.master.as_deref(), Some("cbr0"));
        prop_assert!(p.routes_on(Side::Node).next().is_none());
        prop_assert!(p.neighbours.is_empty());
        for (a, s) in p.addresses.iter().zip(&spec.addresses) {
            prop_assert_eq!(a.address, *s, "bridge mode keeps the subnet prefix");
            let gw = b.addresses.iter().find(|g| g.is_ipv4() == s.is_ipv4()).expect("gateway");
            prop_assert_eq!(gw.prefix(), s.prefix());
            prop_assert!(s.contains(gw.ip()));
            prop_assert_ne!(gw.ip(), s.ip());
        }
    }

    #[test]
    fn planning_is_deterministic(spec in spec()) {
        prop_assert_eq!(plan_transparent(&spec, 1500).ok(), plan_transparent(&spec, 1500).ok());
        prop_assert_eq!(
            plan_bridge(&spec, "b", true, 1500).ok(),
            plan_bridge(&spec, "b", true, 1500).ok()
        );
    }
}
