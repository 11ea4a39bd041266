//! The pure core: from an [`EndpointSpec`] and a mode, compute the [`EndpointPlan`] — every
//! link, address, route, neighbour entry and sysctl the attachment needs. No IO here; the
//! shell executes a plan and CHECK compares the kernel's state against one.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

use crate::error::{Error, Side};
use crate::spec::{EndpointSpec, MacAddr, PodRoute, derived_mac, invalid};

/// The IPv4 gateway of transparent mode: link-local, answered by a permanent neighbour entry.
pub const V4_LINK_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The IPv6 gateway of transparent mode.
pub const V6_LINK_GATEWAY: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);

/// How the pod is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModePlan {
    /// Host ends enslaved to a Linux bridge that carries the gateway addresses.
    Bridge {
        /// Bridge name.
        bridge: String,
        /// Whether bridged traffic traverses the inet (iptables/nftables ip/ip6) hooks.
        br_netfilter: bool,
    },
    /// Routed: a host route per pod address, link-local gateways.
    Transparent,
}

/// The veth pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethPlan {
    /// Host end name (in the node netns).
    pub host: String,
    /// Host end MAC (the pod's gateway MAC in transparent mode).
    pub host_mac: MacAddr,
    /// Pod end name (created directly in the pod netns).
    pub pod: String,
    /// Pod end MAC.
    pub pod_mac: MacAddr,
    /// MTU of both ends.
    pub mtu: u32,
    /// Bridge that the host end joins (bridge mode).
    pub master: Option<String>,
    /// Alias of the host end naming its owner (`cnet:<container_id>:<ifname>`).
    pub host_alias: String,
    /// Whether the host end gets an IPv6 link-local address. Only a transparent-mode end of
    /// a pod with IPv6 addresses routes IPv6 (neighbour discovery needs it); a bridge port
    /// or the end of an IPv4-only pod is created without (`addr_gen_mode` none), which spares
    /// the node an address, two routes and their set-up per pod.
    pub host_ipv6: bool,
}

/// The node bridge (bridge mode), ensured idempotently and shared by all pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgePlan {
    /// Bridge name.
    pub name: String,
    /// A fixed MAC, so the gateway's MAC does not change as ports come and go.
    pub mac: MacAddr,
    /// MTU given at creation.
    pub mtu: u32,
    /// Gateway addresses with the pod subnet's prefix.
    pub addresses: Vec<IpNetwork>,
}

/// An address on an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPlan {
    /// Namespace.
    pub side: Side,
    /// Interface name.
    pub ifname: String,
    /// Address with prefix.
    pub address: IpNetwork,
    /// Skip duplicate address detection (IPv6), so the address is usable at once.
    pub nodad: bool,
}

/// A route in the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePlan {
    /// Namespace.
    pub side: Side,
    /// Output interface.
    pub ifname: String,
    /// Destination prefix (`0.0.0.0/0` for a default route).
    pub destination: IpNetwork,
    /// Next hop, if any.
    pub gateway: Option<IpAddr>,
    /// Scope link (a directly reachable destination) instead of universe.
    pub scope_link: bool,
    /// Path MTU metric, when set.
    pub mtu: Option<u32>,
    /// Advertised MSS metric, when set.
    pub advmss: Option<u32>,
}

impl fmt::Display for RoutePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.destination.prefix() == 0 {
            f.write_str("default")?;
        } else {
            write!(f, "{}", self.destination)?;
        }
        if let Some(g) = self.gateway {
            write!(f, " via {g}")?;
        }
        write!(f, " dev {}", self.ifname)?;
        if self.scope_link {
            f.write_str(" scope link")?;
        }
        if let Some(m) = self.mtu {
            write!(f, " mtu {m}")?;
        }
        if let Some(m) = self.advmss {
            write!(f, " advmss {m}")?;
        }
        Ok(())
    }
}

/// A neighbour entry: a permanent IP→MAC mapping, or a proxy (answer for this IP) entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighbourPlan {
    /// Namespace.
    pub side: Side,
    /// Interface name.
    pub ifname: String,
    /// IP address.
    pub address: IpAddr,
    /// MAC for a permanent entry; `None` for a proxy entry.
    pub mac: Option<MacAddr>,
}

/// A sysctl written in the node namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysctlPlan {
    /// Dotted key, e.g. `net.ipv4.ip_forward`; an interface name stays one component.
    pub key: String,
    /// Value to write.
    pub value: String,
    /// The interface this key is about (written after the link exists).
    pub interface: Option<String>,
    /// A missing key is no error (e.g. br_netfilter keys when the module is absent and
    /// the wanted value is `0`).
    pub optional: bool,
}

impl SysctlPlan {
    /// The file under /proc/sys.
    pub fn proc_path(&self) -> String {
        // Interface names may contain dots; only the structural separators become slashes.
        match &self.interface {
            Some(ifname) => {
                let (pre, post) = self
                    .key
                    .split_once(ifname.as_str())
                    .unwrap_or((&self.key, ""));
                format!(
                    "/proc/sys/{}{}{}",
                    pre.replace('.', "/"),
                    ifname,
                    post.replace('.', "/")
                )
            }
            None => format!("/proc/sys/{}", self.key.replace('.', "/")),
        }
    }
}

/// Everything an attachment consists of. Order within each list is the order of creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointPlan {
    /// Mode.
    pub mode: ModePlan,
    /// Node bridge (bridge mode).
    pub bridge: Option<BridgePlan>,
    /// The veth pair.
    pub veth: VethPlan,
    /// Addresses (pod side).
    pub addresses: Vec<AddressPlan>,
    /// Routes (scope-link routes before the routes that use them).
    pub routes: Vec<RoutePlan>,
    /// Neighbour entries.
    pub neighbours: Vec<NeighbourPlan>,
    /// Sysctls in the node namespace (global ones first).
    pub sysctls: Vec<SysctlPlan>,
    /// Sysctls of the pod interface, in the pod namespace, set before it goes up.
    pub pod_sysctls: Vec<SysctlPlan>,
    /// The gateway used per family, for the CNI result.
    pub gateways: Vec<IpAddr>,
}

impl EndpointPlan {
    /// Items of a kind on one side.
    pub fn routes_on(&self, side: Side) -> impl Iterator<Item = &RoutePlan> {
        self.routes.iter().filter(move |r| r.side == side)
    }
    /// Neighbours on one side.
    pub fn neighbours_on(&self, side: Side) -> impl Iterator<Item = &NeighbourPlan> {
        self.neighbours.iter().filter(move |n| n.side == side)
    }
}

fn sysctl(key: String, value: &str, interface: Option<&str>, optional: bool) -> SysctlPlan {
    SysctlPlan {
        key,
        value: value.to_string(),
        interface: interface.map(str::to_string),
        optional,
    }
}

/// `0.0.0.0/0` or `::/0`.
fn default_route(v6: bool) -> IpNetwork {
    let any = if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    };
    // Prefix 0 is valid for both families; the fallback is never taken.
    IpNetwork::new(any, 0).unwrap_or(IpNetwork::from(any))
}

/// The prefix with its host bits cleared (the kernel refuses a route to `10.96.0.1/12`).
fn network_of(n: IpNetwork) -> IpNetwork {
    IpNetwork::new(n.network(), n.prefix()).unwrap_or(n)
}

/// The spec's extra routes on the pod side, each through `gateway_for(route)`.
fn extra_routes(
    spec: &EndpointSpec,
    pod_ifname: &str,
    gateway_for: impl Fn(usize, &PodRoute) -> Result<IpAddr, Error>,
) -> Result<Vec<RoutePlan>, Error> {
    let mut out: Vec<RoutePlan> = Vec::new();
    for (i, r) in spec.routes.iter().enumerate() {
        let plan = RoutePlan {
            side: Side::Pod,
            ifname: pod_ifname.to_string(),
            destination: network_of(r.destination),
            gateway: Some(gateway_for(i, r)?),
            scope_link: false,
            mtu: r.mtu,
            advmss: r.advmss,
        };
        if !out.iter().any(|o| o.destination == plan.destination) {
            out.push(plan);
        }
    }
    Ok(out)
}

fn host_net(ip: IpAddr) -> IpNetwork {
    IpNetwork::from(ip)
}

fn global_forwarding(spec: &EndpointSpec) -> Vec<SysctlPlan> {
    let mut out = Vec::new();
    if spec.addresses.iter().any(|a| a.is_ipv4()) {
        out.push(sysctl("net.ipv4.ip_forward".into(), "1", None, false));
    }
    if spec.addresses.iter().any(|a| a.is_ipv6()) {
        out.push(sysctl(
            "net.ipv6.conf.all.forwarding".into(),
            "1",
            None,
            false,
        ));
    }
    out
}

/// Pod-side interface settings: no IPv6 DAD or router advertisements on the pod end (its
/// routes are ours), and a gratuitous ARP when it comes up (a reused address with a new MAC
/// is learned at once by the node and by pods on the same bridge).
fn pod_sysctls(spec: &EndpointSpec) -> Vec<SysctlPlan> {
    let p = spec.ifname.as_str();
    let mut out = Vec::new();
    if spec.addresses.iter().any(|a| a.is_ipv4()) {
        out.push(sysctl(
            format!("net.ipv4.conf.{p}.arp_notify"),
            "1",
            Some(p),
            false,
        ));
    }
    if spec.addresses.iter().any(|a| a.is_ipv6()) {
        out.push(sysctl(
            format!("net.ipv6.conf.{p}.accept_dad"),
            "0",
            Some(p),
            false,
        ));
        out.push(sysctl(
            format!("net.ipv6.conf.{p}.accept_ra"),
            "0",
            Some(p),
            false,
        ));
    }
    out
}

fn veth(spec: &EndpointSpec, mtu: u32, master: Option<String>) -> VethPlan {
    VethPlan {
        host: spec.host_ifname(),
        host_mac: derived_mac("host", &spec.container_id, &spec.ifname),
        pod: spec.ifname.clone(),
        pod_mac: spec
            .mac
            .unwrap_or_else(|| derived_mac("pod", &spec.container_id, &spec.ifname)),
        mtu,
        host_ipv6: master.is_none() && spec.addresses.iter().any(IpNetwork::is_ipv6),
        master,
        host_alias: spec.owner_alias(),
    }
}

/// Plan a bridge-mode attachment. `br_netfilter` decides whether bridged pod-to-pod traffic
/// also traverses the ip/ip6 netfilter hooks (sysctl `net.bridge.bridge-nf-call-*`).
pub fn plan_bridge(
    spec: &EndpointSpec,
    bridge: &str,
    br_netfilter: bool,
    mtu: u32,
) -> Result<EndpointPlan, Error> {
    spec.validate()?;
    crate::spec::validate_ifname(bridge).map_err(|r| invalid("bridge", r))?;
    let veth = veth(spec, mtu, Some(bridge.to_string()));
    let mut bridge_addrs: Vec<IpNetwork> = Vec::new();
    let mut addresses = Vec::new();
    let mut routes = Vec::new();
    let mut gateways = Vec::new();
    for (i, a) in spec.addresses.iter().enumerate() {
        let field = format!("addresses[{i}]");
        let max = if a.is_ipv4() { 32 } else { 128 };
        if a.prefix() >= max - 1 {
            return Err(invalid(
                &field,
                "bridge mode needs a subnet prefix with room for a gateway",
            ));
        }
        let gw = match spec.gateways.iter().find(|g| g.is_ipv4() == a.is_ipv4()) {
            Some(g) => *g,
            None => first_host(*a),
        };
        if !a.contains(gw) {
            return Err(invalid(&field, &format!("gateway {gw} is outside {a}")));
        }
        if gw == a.ip() {
            return Err(invalid(&field, "the pod address equals the gateway"));
        }
        addresses.push(AddressPlan {
            side: Side::Pod,
            ifname: veth.pod.clone(),
            address: *a,
            nodad: a.is_ipv6(),
        });
        let gw_net = IpNetwork::new(gw, a.prefix()).map_err(|e| invalid(&field, &e.to_string()))?;
        if !bridge_addrs.contains(&gw_net) {
            bridge_addrs.push(gw_net);
        }
        if !gateways.contains(&gw)
            && !gateways
                .iter()
                .any(|g: &IpAddr| g.is_ipv4() == gw.is_ipv4())
        {
            gateways.push(gw);
            routes.push(RoutePlan {
                side: Side::Pod,
                ifname: veth.pod.clone(),
                destination: default_route(a.is_ipv6()),
                gateway: Some(gw),
                scope_link: false,
                mtu: None,
                advmss: None,
            });
        }
    }
    routes.extend(extra_routes(spec, &veth.pod, |i, r| {
        let v4 = r.destination.is_ipv4();
        match r.gateway {
            Some(g) if spec.addresses.iter().any(|a| a.ip() == g) => Err(invalid(
                &format!("routes[{i}]"),
                &format!("gateway {g} is the pod's own address"),
            )),
            Some(g) if spec.addresses.iter().any(|a| a.contains(g)) => Ok(g),
            Some(g) => Err(invalid(
                &format!("routes[{i}]"),
                &format!("gateway {g} is not on the pod's subnet"),
            )),
            None => gateways
                .iter()
                .copied()
                .find(|g| g.is_ipv4() == v4)
                .ok_or_else(|| invalid(&format!("routes[{i}]"), "no gateway of its family")),
        }
    })?);
    let mut sysctls = global_forwarding(spec);
    let nf = if br_netfilter { "1" } else { "0" };
    // With the value 0 a missing key (br_netfilter absent) already means what we want.
    let optional = !br_netfilter;
    sysctls.push(sysctl(
        "net.bridge.bridge-nf-call-iptables".into(),
        nf,
        None,
        optional,
    ));
    sysctls.push(sysctl(
        "net.bridge.bridge-nf-call-ip6tables".into(),
        nf,
        None,
        optional,
    ));
    Ok(EndpointPlan {
        mode: ModePlan::Bridge {
            bridge: bridge.to_string(),
            br_netfilter,
        },
        bridge: Some(BridgePlan {
            name: bridge.to_string(),
            mac: derived_mac("bridge", bridge, ""),
            mtu,
            addresses: bridge_addrs,
        }),
        veth,
        addresses,
        routes,
        neighbours: Vec::new(),
        sysctls,
        pod_sysctls: pod_sysctls(spec),
        gateways,
    })
}

fn first_host(net: IpNetwork) -> IpAddr {
    match net {
        IpNetwork::V4(n) => IpAddr::V4(Ipv4Addr::from(u32::from(n.network()).wrapping_add(1))),
        IpNetwork::V6(n) => IpAddr::V6(Ipv6Addr::from(u128::from(n.network()).wrapping_add(1))),
    }
}

/// Plan a transparent-mode attachment: pod addresses as /32 and /128, host routes to the
/// host veth, link-local gateways behind permanent neighbour entries, proxy ARP/NDP on the
/// host veth as a fallback.
pub fn plan_transparent(spec: &EndpointSpec, mtu: u32) -> Result<EndpointPlan, Error> {
    spec.validate()?;
    let veth = veth(spec, mtu, None);
    let has4 = spec.addresses.iter().any(|a| a.is_ipv4());
    let has6 = spec.addresses.iter().any(|a| a.is_ipv6());
    let mut addresses = Vec::new();
    let mut routes = Vec::new();
    let mut neighbours = Vec::new();
    let mut gateways = Vec::new();
    for a in &spec.addresses {
        addresses.push(AddressPlan {
            side: Side::Pod,
            ifname: veth.pod.clone(),
            address: host_net(a.ip()),
            nodad: a.is_ipv6(),
        });
    }
    if has4 {
        let gw = IpAddr::V4(V4_LINK_GATEWAY);
        gateways.push(gw);
        routes.push(RoutePlan {
            side: Side::Pod,
            ifname: veth.pod.clone(),
            destination: host_net(gw),
            gateway: None,
            scope_link: true,
            mtu: None,
            advmss: None,
        });
        routes.push(RoutePlan {
            side: Side::Pod,
            ifname: veth.pod.clone(),
            destination: default_route(false),
            gateway: Some(gw),
            scope_link: false,
            mtu: None,
            advmss: None,
        });
        neighbours.push(NeighbourPlan {
            side: Side::Pod,
            ifname: veth.pod.clone(),
            address: gw,
            mac: Some(veth.host_mac),
        });
    }
    if has6 {
        let gw = IpAddr::V6(V6_LINK_GATEWAY);
        gateways.push(gw);
        routes.push(RoutePlan {
            side: Side::Pod,
            ifname: veth.pod.clone(),
            destination: default_route(true),
            gateway: Some(gw),
            scope_link: false,
            mtu: None,
            advmss: None,
        });
        neighbours.push(NeighbourPlan {
            side: Side::Pod,
            ifname: veth.pod.clone(),
            address: gw,
            mac: Some(veth.host_mac),
        });
        neighbours.push(NeighbourPlan {
            side: Side::Node,
            ifname: veth.host.clone(),
            address: gw,
            mac: None,
        });
    }
    // Every pod route leads to the node: through the family's link-local gateway.
    routes.extend(extra_routes(spec, &veth.pod, |_, r| {
        Ok(if r.destination.is_ipv4() {
            IpAddr::V4(V4_LINK_GATEWAY)
        } else {
            IpAddr::V6(V6_LINK_GATEWAY)
        })
    })?);
    for a in &spec.addresses {
        routes.push(RoutePlan {
            side: Side::Node,
            ifname: veth.host.clone(),
            destination: host_net(a.ip()),
            gateway: None,
            scope_link: true,
            mtu: None,
            advmss: None,
        });
    }
    let mut sysctls = global_forwarding(spec);
    let h = veth.host.as_str();
    if has4 {
        sysctls.push(sysctl(
            format!("net.ipv4.conf.{h}.proxy_arp"),
            "1",
            Some(h),
            false,
        ));
    }
    if has6 {
        sysctls.push(sysctl(
            format!("net.ipv6.conf.{h}.accept_dad"),
            "0",
            Some(h),
            false,
        ));
        sysctls.push(sysctl(
            format!("net.ipv6.conf.{h}.proxy_ndp"),
            "1",
            Some(h),
            false,
        ));
    }
    Ok(EndpointPlan {
        mode: ModePlan::Transparent,
        bridge: None,
        veth,
        addresses,
        routes,
        neighbours,
        sysctls,
        pod_sysctls: pod_sysctls(spec),
        gateways,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().expect("cidr")
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }
    fn spec(addrs: &[&str]) -> EndpointSpec {
        EndpointSpec::new(
            "ctr1",
            "eth0",
            "/var/run/netns/p",
            addrs.iter().map(|a| net(a)).collect(),
        )
    }

    #[test]
    fn only_a_transparent_host_end_of_an_ipv6_pod_keeps_ipv6() {
        let v4 = spec(&["10.1.0.5/24"]);
        let v6 = spec(&["fd00::5/64"]);
        let dual = spec(&["10.1.0.5/24", "fd00::5/64"]);
        let t = |s: &EndpointSpec| plan_transparent(s, 1500).expect("plan").veth.host_ipv6;
        let b = |s: &EndpointSpec| {
            plan_bridge(s, "br0", false, 1500)
                .expect("plan")
                .veth
                .host_ipv6
        };
        assert!(!t(&v4));
        assert!(t(&v6));
        assert!(t(&dual));
        assert!(!b(&v4) && !b(&v6) && !b(&dual));
    }

    #[test]
    fn bridge_dual_stack() {
        let p = plan_bridge(&spec(&["10.1.0.5/24", "fd00:1::5/64"]), "cbr0", false, 1400)
            .expect("plan");
        let b = p.bridge.as_ref().expect("bridge");
        assert_eq!(b.addresses, vec![net("10.1.0.1/24"), net("fd00:1::1/64")]);
        assert_eq!(b.mtu, 1400);
        assert_eq!(p.veth.master.as_deref(), Some("cbr0"));
        assert_eq!(p.veth.mtu, 1400);
        assert_eq!(p.veth.pod, "eth0");
        assert_eq!(p.veth.host, spec(&[]).host_ifname());
        assert_eq!(p.addresses.len(), 2);
        assert_eq!(p.addresses[0].address, net("10.1.0.5/24"));
        assert!(!p.addresses[0].nodad);
        assert!(p.addresses[1].nodad, "IPv6 without DAD");
        assert!(p.addresses.iter().all(|a| a.side == Side::Pod));
        let r: Vec<String> = p.routes.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            r,
            vec![
                "default via 10.1.0.1 dev eth0",
                "default via fd00:1::1 dev eth0"
            ]
        );
        assert!(p.routes.iter().all(|r| r.side == Side::Pod));
        assert!(p.neighbours.is_empty());
        assert_eq!(p.gateways, vec![ip("10.1.0.1"), ip("fd00:1::1")]);
        let keys: Vec<(&str, &str)> = p
            .sysctls
            .iter()
            .map(|s| (s.key.as_str(), s.value.as_str()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("net.ipv4.ip_forward", "1"),
                ("net.ipv6.conf.all.forwarding", "1"),
                ("net.bridge.bridge-nf-call-iptables", "0"),
                ("net.bridge.bridge-nf-call-ip6tables", "0"),
            ]
        );
        assert!(p.sysctls[2].optional);
    }

    #[test]
    fn bridge_explicit_gateway_and_br_netfilter() {
        let mut s = spec(&["10.1.0.5/24"]);
        s.gateways = vec![ip("10.1.0.254")];
        let p = plan_bridge(&s, "cbr0", true, 1500).expect("plan");
        assert_eq!(
            p.bridge.expect("bridge").addresses,
            vec![net("10.1.0.254/24")]
        );
        assert_eq!(p.gateways, vec![ip("10.1.0.254")]);
        assert!(
            p.sysctls
                .iter()
                .any(|s| s.key.ends_with("iptables") && s.value == "1" && !s.optional)
        );
        assert!(p.sysctls.iter().all(|s| !s.key.contains("ipv6")));
    }

    #[test]
    fn bridge_rejects_bad_gateways_and_host_prefixes() {
        let mut s = spec(&["10.1.0.5/24"]);
        s.gateways = vec![ip("10.2.0.1")];
        assert!(plan_bridge(&s, "cbr0", false, 1500).is_err());
        s.gateways = vec![ip("10.1.0.5")];
        assert!(plan_bridge(&s, "cbr0", false, 1500).is_err());
        assert!(plan_bridge(&spec(&["10.1.0.5/32"]), "cbr0", false, 1500).is_err());
        assert!(plan_bridge(&spec(&["fd00::5/128"]), "cbr0", false, 1500).is_err());
        assert!(plan_bridge(&spec(&["10.1.0.5/24"]), "bad/name", false, 1500).is_err());
    }

    #[test]
    fn bridge_v6_only_has_no_v4_sysctl() {
        let p = plan_bridge(&spec(&["fd00:1::5/64"]), "cbr0", false, 1500).expect("plan");
        assert!(!p.sysctls.iter().any(|s| s.key == "net.ipv4.ip_forward"));
        assert!(
            p.sysctls
                .iter()
                .any(|s| s.key == "net.ipv6.conf.all.forwarding")
        );
        assert_eq!(p.routes.len(), 1);
    }

    #[test]
    fn transparent_v4() {
        let p = plan_transparent(&spec(&["10.1.0.5/24"]), 1500).expect("plan");
        assert!(p.bridge.is_none());
        assert!(p.veth.master.is_none());
        assert_eq!(p.addresses.len(), 1);
        assert_eq!(
            p.addresses[0].address,
            net("10.1.0.5/32"),
            "pod gets a host address"
        );
        let r: Vec<String> = p.routes.iter().map(|r| format!("{}:{r}", r.side)).collect();
        let host = &p.veth.host;
        assert_eq!(
            r,
            vec![
                "pod:169.254.1.1/32 dev eth0 scope link".to_string(),
                "pod:default via 169.254.1.1 dev eth0".to_string(),
                format!("node:10.1.0.5/32 dev {host} scope link"),
            ]
        );
        assert_eq!(
            p.neighbours,
            vec![NeighbourPlan {
                side: Side::Pod,
                ifname: "eth0".into(),
                address: ip("169.254.1.1"),
                mac: Some(p.veth.host_mac)
            }]
        );
        let keys: Vec<String> = p
            .sysctls
            .iter()
            .map(|s| format!("{}={}", s.key, s.value))
            .collect();
        assert_eq!(
            keys,
            vec![
                "net.ipv4.ip_forward=1".to_string(),
                format!("net.ipv4.conf.{host}.proxy_arp=1")
            ]
        );
        assert_eq!(p.gateways, vec![ip("169.254.1.1")]);
        let pod: Vec<String> = p
            .pod_sysctls
            .iter()
            .map(|s| format!("{}={}", s.key, s.value))
            .collect();
        assert_eq!(pod, vec!["net.ipv4.conf.eth0.arp_notify=1"]);
    }

    #[test]
    fn transparent_v6_and_dual() {
        let p = plan_transparent(&spec(&["fd00:1::5/64"]), 1500).expect("plan");
        assert_eq!(p.addresses[0].address, net("fd00:1::5/128"));
        assert!(p.addresses[0].nodad);
        let host = p.veth.host.clone();
        let r: Vec<String> = p.routes.iter().map(|r| format!("{}:{r}", r.side)).collect();
        assert_eq!(
            r,
            vec![
                "pod:default via fe80::1 dev eth0".to_string(),
                format!("node:fd00:1::5/128 dev {host} scope link")
            ]
        );
        assert!(
            p.neighbours
                .iter()
                .any(|n| n.side == Side::Node && n.mac.is_none() && n.address == ip("fe80::1"))
        );
        assert!(
            p.sysctls
                .iter()
                .any(|s| s.key == format!("net.ipv6.conf.{host}.accept_dad") && s.value == "0")
        );
        assert!(!p.sysctls.iter().any(|s| s.key.contains("ipv4")));
        let pod: Vec<&str> = p.pod_sysctls.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(
            pod,
            vec![
                "net.ipv6.conf.eth0.accept_dad",
                "net.ipv6.conf.eth0.accept_ra"
            ]
        );

        let d = plan_transparent(&spec(&["10.1.0.5/24", "fd00:1::5/64"]), 1500).expect("plan");
        assert_eq!(d.routes_on(Side::Node).count(), 2);
        assert_eq!(d.routes_on(Side::Pod).count(), 3);
        assert_eq!(d.neighbours_on(Side::Pod).count(), 2);
        assert_eq!(d.gateways, vec![ip("169.254.1.1"), ip("fe80::1")]);
        // The scope-link route to the IPv4 gateway comes before the default route through it.
        let pos = |s: &str| d.routes.iter().position(|r| r.to_string() == s).expect(s);
        assert!(
            pos("169.254.1.1/32 dev eth0 scope link") < pos("default via 169.254.1.1 dev eth0")
        );
    }

    #[test]
    fn transparent_ignores_ipam_gateway_and_is_deterministic() {
        let mut s = spec(&["10.1.0.5/24"]);
        s.gateways = vec![ip("10.1.0.1")];
        let a = plan_transparent(&s, 1500).expect("plan");
        let b = plan_transparent(&s, 1500).expect("plan");
        assert_eq!(a, b);
        assert_eq!(a.gateways, vec![ip("169.254.1.1")]);
    }

    #[test]
    fn sysctl_paths_keep_interface_names_whole() {
        let s = SysctlPlan {
            key: "net.ipv4.conf.a.b.proxy_arp".into(),
            value: "1".into(),
            interface: Some("a.b".into()),
            optional: false,
        };
        assert_eq!(s.proc_path(), "/proc/sys/net/ipv4/conf/a.b/proxy_arp");
        let g = SysctlPlan {
            key: "net.ipv4.ip_forward".into(),
            value: "1".into(),
            interface: None,
            optional: false,
        };
        assert_eq!(g.proc_path(), "/proc/sys/net/ipv4/ip_forward");
    }

    #[test]
    fn invalid_spec_is_rejected_before_planning() {
        let s = spec(&[]);
        assert!(plan_transparent(&s, 1500).is_err());
        assert!(plan_bridge(&s, "cbr0", false, 1500).is_err());
    }

    #[test]
    fn mac_and_extra_routes_transparent() {
        let mut s = spec(&["10.1.0.5/24", "fd00::5/64"]);
        s.mac = Some("02:00:00:aa:bb:cc".parse().expect("mac"));
        s.routes = vec![
            PodRoute {
                destination: net("10.96.0.1/12"),
                gateway: Some(ip("10.1.0.1")),
                mtu: None,
                advmss: None,
            },
            PodRoute {
                destination: net("fd10::/64"),
                gateway: None,
                mtu: None,
                advmss: None,
            },
        ];
        let p = plan_transparent(&s, 1500).expect("plan");
        assert_eq!(p.veth.pod_mac, MacAddr([2, 0, 0, 0xaa, 0xbb, 0xcc]));
        let r: Vec<String> = p.routes_on(Side::Pod).map(|r| r.to_string()).collect();
        assert!(
            r.contains(&"10.96.0.0/12 via 169.254.1.1 dev eth0".to_string()),
            "{r:?}"
        );
        assert!(
            r.contains(&"fd10::/64 via fe80::1 dev eth0".to_string()),
            "{r:?}"
        );
    }

    #[test]
    fn extra_routes_bridge_and_invalid_ones() {
        let mut s = spec(&["10.1.0.5/24"]);
        s.routes = vec![
            PodRoute {
                destination: net("10.96.0.0/12"),
                gateway: None,
                mtu: None,
                advmss: None,
            },
            PodRoute {
                destination: net("192.168.7.0/24"),
                gateway: Some(ip("10.1.0.254")),
                mtu: None,
                advmss: None,
            },
        ];
        let p = plan_bridge(&s, "br0", false, 1500).expect("plan");
        let r: Vec<String> = p.routes_on(Side::Pod).map(|r| r.to_string()).collect();
        assert_eq!(
            r,
            vec![
                "default via 10.1.0.1 dev eth0",
                "10.96.0.0/12 via 10.1.0.1 dev eth0",
                "192.168.7.0/24 via 10.1.0.254 dev eth0"
            ]
        );
        let bad = |routes: Vec<PodRoute>, mac: Option<&str>| {
            let mut s = spec(&["10.1.0.5/24"]);
            s.routes = routes;
            s.mac = mac.map(|m| m.parse().expect("mac"));
            plan_bridge(&s, "br0", false, 1500).is_err()
                && (s.routes.iter().any(|r| r.gateway.is_some())
                    || plan_transparent(&s, 1500).is_err())
        };
        let route = |d: &str, g: Option<&str>| PodRoute {
            destination: net(d),
            gateway: g.map(ip),
            mtu: None,
            advmss: None,
        };
        assert!(bad(vec![route("0.0.0.0/0", None)], None), "default");
        assert!(bad(vec![route("fd10::/64", None)], None), "no v6 address");
        assert!(
            bad(vec![route("10.9.0.0/16", Some("fd00::1"))], None),
            "family"
        );
        assert!(
            bad(vec![route("10.9.0.0/16", Some("10.2.0.1"))], None),
            "off-link"
        );
        assert!(
            bad(vec![route("10.9.0.0/16", Some("10.1.0.5"))], None),
            "own address"
        );
        assert!(bad(vec![], Some("01:00:5e:00:00:01")), "multicast MAC");
        assert!(bad(vec![], Some("00:00:00:00:00:00")), "zero MAC");
        assert!("02:00:00:00:00".parse::<MacAddr>().is_err());
        assert!("02:00:00:00:00:zz".parse::<MacAddr>().is_err());
        assert_eq!(
            "02-42-AC-11-00-02".parse::<MacAddr>(),
            Ok(MacAddr([2, 0x42, 0xac, 0x11, 0, 2]))
        );
    }
}
