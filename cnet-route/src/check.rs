//! CHECK's pure half: the kernel state the shell read back ([`Observed`]) compared against an
//! [`EndpointPlan`], giving a precise list of [`Difference`]s.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnetwork::IpNetwork;

use crate::error::Side;
use crate::plan::{EndpointPlan, RoutePlan};
use crate::spec::MacAddr;

/// A link as read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedLink {
    /// Interface index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// Index of the bridge it is enslaved to.
    pub master: Option<u32>,
    /// MAC address.
    pub mac: Option<MacAddr>,
    /// Interface alias (cnet-route stores the owner there).
    pub alias: Option<String>,
    /// Link kind (`veth`, `bridge`, …) when the kernel reports one.
    pub kind: Option<String>,
}

/// A route as read from the kernel (main table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedRoute {
    /// Destination prefix.
    pub destination: IpNetwork,
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
}

/// A neighbour entry as read from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedNeighbour {
    /// Interface index.
    pub ifindex: u32,
    /// IP address.
    pub address: IpAddr,
    /// Link-layer address.
    pub mac: Option<MacAddr>,
    /// State is PERMANENT.
    pub permanent: bool,
    /// A proxy entry.
    pub proxy: bool,
}

/// What one namespace holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SideState {
    /// Links (only the ones of interest).
    pub links: Vec<ObservedLink>,
    /// Addresses as (ifindex, address/prefix).
    pub addresses: Vec<(u32, IpNetwork)>,
    /// Routes of the main table.
    pub routes: Vec<ObservedRoute>,
    /// Neighbour and proxy entries.
    pub neighbours: Vec<ObservedNeighbour>,
}

impl SideState {
    fn link(&self, name: &str) -> Option<&ObservedLink> {
        self.links.iter().find(|l| l.name == name)
    }
}

/// The state read back for one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Node side.
    pub node: SideState,
    /// Pod side; `None` when the pod netns could not be opened.
    pub pod: Option<SideState>,
    /// Node sysctls: key and value (`None` when the key does not exist).
    pub sysctls: Vec<(String, Option<String>)>,
    /// Pod interface sysctls, likewise (empty when the pod netns is missing).
    pub pod_sysctls: Vec<(String, Option<String>)>,
}

/// One way the kernel's state differs from what the attachment needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    /// The pod's network namespace cannot be opened.
    NetnsMissing {
        /// Its path.
        path: PathBuf,
    },
    /// A link is missing.
    LinkMissing {
        /// Namespace.
        side: Side,
        /// Interface name.
        name: String,
    },
    /// A link is administratively down.
    LinkDown {
        /// Namespace.
        side: Side,
        /// Interface name.
        name: String,
    },
    /// A link has another MTU.
    MtuMismatch {
        /// Namespace.
        side: Side,
        /// Interface name.
        name: String,
        /// Planned MTU.
        expected: u32,
        /// Actual MTU.
        actual: u32,
    },
    /// The host veth's MAC is not the one the pod's gateway neighbour entry points at.
    MacMismatch {
        /// Interface name.
        name: String,
        /// Planned MAC.
        expected: MacAddr,
        /// Actual MAC.
        actual: Option<MacAddr>,
    },
    /// The host veth does not carry this attachment's owner alias (it is someone else's).
    OwnerMismatch {
        /// Host interface name.
        name: String,
        /// Expected alias.
        expected: String,
        /// Actual alias.
        actual: Option<String>,
    },
    /// The host veth is not a port of the bridge.
    NotEnslaved {
        /// Host interface name.
        name: String,
        /// The bridge.
        bridge: String,
    },
    /// An address is missing.
    AddressMissing {
        /// Namespace.
        side: Side,
        /// Interface name.
        ifname: String,
        /// Address with prefix.
        address: IpNetwork,
    },
    /// A route is missing.
    RouteMissing {
        /// Namespace.
        side: Side,
        /// The route, as `ip route` shows it.
        route: String,
    },
    /// A permanent or proxy neighbour entry is missing or points elsewhere.
    NeighbourMissing {
        /// Namespace.
        side: Side,
        /// Interface name.
        ifname: String,
        /// IP address.
        address: IpAddr,
    },
    /// A node sysctl has another value.
    SysctlMismatch {
        /// Dotted key.
        key: String,
        /// Planned value.
        expected: String,
        /// Actual value (`None`: key missing).
        actual: Option<String>,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::NetnsMissing { path } => {
                write!(f, "pod network namespace {path:?} is missing")
            }
            Difference::LinkMissing { side, name } => {
                write!(f, "interface {name:?} is missing in the {side} namespace")
            }
            Difference::LinkDown { side, name } => {
                write!(f, "interface {name:?} ({side}) is down")
            }
            Difference::MtuMismatch {
                side,
                name,
                expected,
                actual,
            } => write!(
                f,
                "interface {name:?} ({side}) has MTU {actual}, expected {expected}"
            ),
            Difference::MacMismatch {
                name,
                expected,
                actual,
            } => match actual {
                Some(a) => write!(f, "interface {name:?} has MAC {a}, expected {expected}"),
                None => write!(f, "interface {name:?} has no MAC, expected {expected}"),
            },
            Difference::OwnerMismatch {
                name,
                expected,
                actual,
            } => write!(
                f,
                "interface {name:?} is owned by {:?}, expected {expected:?}",
                actual.as_deref().unwrap_or("nobody")
            ),
            Difference::NotEnslaved { name, bridge } => {
                write!(f, "interface {name:?} is not a port of bridge {bridge:?}")
            }
            Difference::AddressMissing {
                side,
                ifname,
                address,
            } => write!(
                f,
                "address {address} is missing on interface {ifname:?} ({side})"
            ),
            Difference::RouteMissing { side, route } => {
                write!(f, "route {route} is missing in the {side} namespace")
            }
            Difference::NeighbourMissing {
                side,
                ifname,
                address,
            } => write!(
                f,
                "neighbour entry {address} on interface {ifname:?} ({side}) is missing or wrong"
            ),
            Difference::SysctlMismatch {
                key,
                expected,
                actual,
            } => match actual {
                Some(a) => write!(f, "sysctl {key} is {a}, expected {expected}"),
                None => write!(f, "sysctl {key} is missing, expected {expected}"),
            },
        }
    }
}

fn route_present(state: &SideState, r: &RoutePlan) -> bool {
    let Some(link) = state.link(&r.ifname) else {
        return false;
    };
    state.routes.iter().any(|o| {
        o.destination == r.destination && o.gateway == r.gateway && o.oif == Some(link.index)
    })
}

/// Compare what the kernel holds with what the plan needs. `pod_netns` names the pod
/// namespace in a [`Difference::NetnsMissing`].
pub fn diff(
    plan: &EndpointPlan,
    observed: &Observed,
    pod_netns: &std::path::Path,
) -> Vec<Difference> {
    let mut out = Vec::new();
    let node = &observed.node;
    let v = &plan.veth;
    if let Some(b) = &plan.bridge {
        match node.link(&b.name) {
            None => out.push(Difference::LinkMissing {
                side: Side::Node,
                name: b.name.clone(),
            }),
            Some(l) => {
                if !l.up {
                    out.push(Difference::LinkDown {
                        side: Side::Node,
                        name: b.name.clone(),
                    });
                }
                for a in &b.addresses {
                    if !node.addresses.contains(&(l.index, *a)) {
                        out.push(Difference::AddressMissing {
                            side: Side::Node,
                            ifname: b.name.clone(),
                            address: *a,
                        });
                    }
                }
            }
        }
    }
    match node.link(&v.host) {
        None => out.push(Difference::LinkMissing {
            side: Side::Node,
            name: v.host.clone(),
        }),
        Some(l) => {
            link_props(&mut out, Side::Node, l, v.mtu, v.host_mac);
            if l.alias.as_deref() != Some(v.host_alias.as_str()) {
                out.push(Difference::OwnerMismatch {
                    name: v.host.clone(),
                    expected: v.host_alias.clone(),
                    actual: l.alias.clone(),
                });
            }
            if let Some(bridge) = &v.master {
                let bridge_index = node.link(bridge).map(|b| b.index);
                if bridge_index.is_none() || l.master != bridge_index {
                    out.push(Difference::NotEnslaved {
                        name: v.host.clone(),
                        bridge: bridge.clone(),
                    });
                }
            }
        }
    }
    let mut sides = vec![(Side::Node, Some(node))];
    match &observed.pod {
        None => out.push(Difference::NetnsMissing {
            path: pod_netns.to_path_buf(),
        }),
        Some(pod) => {
            match pod.link(&v.pod) {
                None => out.push(Difference::LinkMissing {
                    side: Side::Pod,
                    name: v.pod.clone(),
                }),
                Some(l) => link_props(&mut out, Side::Pod, l, v.mtu, v.pod_mac),
            }
            sides.push((Side::Pod, Some(pod)));
        }
    }
    for (side, state) in sides {
        let Some(state) = state else { continue };
        for a in plan.addresses.iter().filter(|a| a.side == side) {
            let present = state
                .link(&a.ifname)
                .is_some_and(|l| state.addresses.contains(&(l.index, a.address)));
            if !present {
                out.push(Difference::AddressMissing {
                    side,
                    ifname: a.ifname.clone(),
                    address: a.address,
                });
            }
        }
        for r in plan.routes_on(side) {
            if !route_present(state, r) {
                out.push(Difference::RouteMissing {
                    side,
                    route: r.to_string(),
                });
            }
        }
        for n in plan.neighbours_on(side) {
            let index = state.link(&n.ifname).map(|l| l.index);
            let present = state.neighbours.iter().any(|o| {
                Some(o.ifindex) == index
                    && o.address == n.address
                    && match n.mac {
                        Some(mac) => o.permanent && !o.proxy && o.mac == Some(mac),
                        None => o.proxy,
                    }
            });
            if !present {
                out.push(Difference::NeighbourMissing {
                    side,
                    ifname: n.ifname.clone(),
                    address: n.address,
                });
            }
        }
    }
    let pod_keys = if observed.pod.is_some() {
        plan.pod_sysctls
            .iter()
            .map(|s| (s, &observed.pod_sysctls))
            .collect()
    } else {
        Vec::new()
    };
    let node_keys = plan.sysctls.iter().map(|s| (s, &observed.sysctls));
    for (s, values) in node_keys.chain(pod_keys) {
        let actual = values
            .iter()
            .find(|(k, _)| *k == s.key)
            .and_then(|(_, v)| v.clone());
        let ok = match &actual {
            Some(a) => a.trim() == s.value,
            None => s.optional,
        };
        if !ok {
            out.push(Difference::SysctlMismatch {
                key: s.key.clone(),
                expected: s.value.clone(),
                actual,
            });
        }
    }
    out
}

/// A veth end's state: up, its MTU and its MAC.
fn link_props(out: &mut Vec<Difference>, side: Side, l: &ObservedLink, mtu: u32, mac: MacAddr) {
    if !l.up {
        out.push(Difference::LinkDown {
            side,
            name: l.name.clone(),
        });
    }
    if l.mtu != mtu {
        out.push(Difference::MtuMismatch {
            side,
            name: l.name.clone(),
            expected: mtu,
            actual: l.mtu,
        });
    }
    if l.mac != Some(mac) {
        out.push(Difference::MacMismatch {
            name: l.name.clone(),
            expected: mac,
            actual: l.mac,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{plan_bridge, plan_transparent};
    use crate::spec::EndpointSpec;
    use std::path::Path;

    fn spec() -> EndpointSpec {
        EndpointSpec::new(
            "c1",
            "eth0",
            "/var/run/netns/p",
            vec![
                "10.1.0.5/24".parse().expect("cidr"),
                "fd00::5/64".parse().expect("cidr"),
            ],
        )
    }

    /// The state a correct attachment leaves, built from the plan itself.
    fn perfect(plan: &EndpointPlan) -> Observed {
        let mut node = SideState::default();
        let mut pod = SideState::default();
        let mut next = 10;
        let mut link = |state: &mut SideState, name: &str, mac: Option<MacAddr>| {
            next += 1;
            state.links.push(ObservedLink {
                index: next,
                name: name.to_string(),
                mtu: plan.veth.mtu,
                up: true,
                master: None,
                mac,
                alias: None,
                kind: None,
            });
            next
        };
        let bridge_index = plan
            .bridge
            .as_ref()
            .map(|b| link(&mut node, &b.name, Some(b.mac)));
        let host = link(&mut node, &plan.veth.host, Some(plan.veth.host_mac));
        let host_link = node.links.last_mut().expect("link");
        host_link.master = bridge_index;
        host_link.alias = Some(plan.veth.host_alias.clone());
        link(&mut pod, &plan.veth.pod, Some(plan.veth.pod_mac));
        if let (Some(b), Some(i)) = (&plan.bridge, bridge_index) {
            node.addresses.extend(b.addresses.iter().map(|a| (i, *a)));
        }
        let _ = host;
        for (side, st) in [(Side::Node, &mut node), (Side::Pod, &mut pod)] {
            let idx = |st: &SideState, n: &str| st.link(n).map(|l| l.index).expect("index");
            for a in plan.addresses.iter().filter(|a| a.side == side) {
                let i = idx(st, &a.ifname);
                st.addresses.push((i, a.address));
            }
            for r in plan.routes_on(side) {
                let i = idx(st, &r.ifname);
                st.routes.push(ObservedRoute {
                    destination: r.destination,
                    gateway: r.gateway,
                    oif: Some(i),
                });
            }
            for n in plan.neighbours_on(side) {
                let i = idx(st, &n.ifname);
                st.neighbours.push(ObservedNeighbour {
                    ifindex: i,
                    address: n.address,
                    mac: n.mac,
                    permanent: true,
                    proxy: n.mac.is_none(),
                });
            }
        }
        Observed {
            node,
            pod: Some(pod),
            sysctls: plan
                .sysctls
                .iter()
                .map(|s| (s.key.clone(), Some(format!("{}\n", s.value))))
                .collect(),
            pod_sysctls: plan
                .pod_sysctls
                .iter()
                .map(|s| (s.key.clone(), Some(s.value.clone())))
                .collect(),
        }
    }

    #[test]
    fn a_correct_attachment_has_no_differences() {
        for plan in [
            plan_bridge(&spec(), "cbr0", false, 1500).expect("plan"),
            plan_transparent(&spec(), 1500).expect("plan"),
        ] {
            let obs = perfect(&plan);
            assert_eq!(diff(&plan, &obs, Path::new("/p")), vec![]);
        }
    }

    #[test]
    fn each_deviation_is_reported_precisely() {
        let plan = plan_transparent(&spec(), 1500).expect("plan");
        let host = plan.veth.host.clone();
        let good = perfect(&plan);

        let mut o = good.clone();
        o.node
            .routes
            .retain(|r| r.destination.ip() != "10.1.0.5".parse::<IpAddr>().expect("ip"));
        assert_eq!(
            diff(&plan, &o, Path::new("/p")),
            vec![Difference::RouteMissing {
                side: Side::Node,
                route: format!("10.1.0.5/32 dev {host} scope link")
            }]
        );

        let mut o = good.clone();
        o.pod.as_mut().expect("pod").links[0].mtu = 9000;
        assert_eq!(
            diff(&plan, &o, Path::new("/p")),
            vec![Difference::MtuMismatch {
                side: Side::Pod,
                name: "eth0".into(),
                expected: 1500,
                actual: 9000
            }]
        );

        let mut o = good.clone();
        o.pod.as_mut().expect("pod").addresses.pop();
        assert!(matches!(
            diff(&plan, &o, Path::new("/p")).as_slice(),
            [Difference::AddressMissing {
                side: Side::Pod,
                ..
            }]
        ));

        let mut o = good.clone();
        o.pod.as_mut().expect("pod").neighbours[0].mac = Some(MacAddr([2, 0, 0, 0, 0, 1]));
        assert!(matches!(
            diff(&plan, &o, Path::new("/p")).as_slice(),
            [Difference::NeighbourMissing {
                side: Side::Pod,
                ..
            }]
        ));

        let mut o = good.clone();
        o.sysctls[0].1 = Some("0".into());
        assert!(matches!(
            diff(&plan, &o, Path::new("/p")).as_slice(),
            [Difference::SysctlMismatch { .. }]
        ));

        let mut o = good.clone();
        o.node.links.clear();
        let d = diff(&plan, &o, Path::new("/p"));
        assert!(d.contains(&Difference::LinkMissing {
            side: Side::Node,
            name: host.clone()
        }));
        assert!(d.iter().any(|x| matches!(
            x,
            Difference::RouteMissing {
                side: Side::Node,
                ..
            }
        )));

        let mut o = good.clone();
        for s in &mut o.pod_sysctls {
            if s.0.ends_with("accept_dad") {
                s.1 = Some("1".into());
            }
        }
        assert!(matches!(
            diff(&plan, &o, Path::new("/p")).as_slice(),
            [Difference::SysctlMismatch { key, .. }] if key == "net.ipv6.conf.eth0.accept_dad"
        ));

        let mut o = good;
        o.pod = None;
        assert_eq!(
            diff(&plan, &o, Path::new("/p")),
            vec![Difference::NetnsMissing { path: "/p".into() }]
        );
    }

    #[test]
    fn bridge_port_and_gateway_address_are_checked() {
        let plan = plan_bridge(&spec(), "cbr0", false, 1500).expect("plan");
        let mut o = perfect(&plan);
        o.node.links[1].master = None;
        o.node.addresses.pop();
        o.node.links[0].up = false;
        let d = diff(&plan, &o, Path::new("/p"));
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(
            d.iter()
                .any(|x| matches!(x, Difference::NotEnslaved { .. }))
        );
        assert!(d.iter().any(|x| matches!(x, Difference::LinkDown { .. })));
        assert!(d.iter().any(|x| x.to_string().contains("fd00::1/64")));
    }

    #[test]
    fn optional_sysctls_may_be_absent() {
        let plan = plan_bridge(&spec(), "cbr0", false, 1500).expect("plan");
        let mut o = perfect(&plan);
        for s in &mut o.sysctls {
            if s.0.starts_with("net.bridge") {
                s.1 = None;
            }
        }
        assert_eq!(diff(&plan, &o, Path::new("/p")), vec![]);
    }
}
