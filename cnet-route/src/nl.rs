//! Thin rtnetlink wrappers: one [`Nl`] per namespace (a socket created in that namespace),
//! requests that name the object they act on in their errors, and readers that turn kernel
//! messages into the plain [`crate::check`] types.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};

use futures::TryStreamExt;
use ipnetwork::IpNetwork;
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL, NLM_F_REPLACE};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::packet_route::link::{
    InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteMetric, RouteScope, RouteType,
};
use rtnetlink::{
    AddressMessageBuilder, Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use crate::check::{ObservedLink, ObservedNeighbour, ObservedRoute, SideState};
use crate::error::{Error, Side, nl_errno};
use crate::plan::{BridgePlan, NeighbourPlan, RoutePlan, VethPlan};
use crate::spec::MacAddr;

/// TX and RX queues of each end of a pod's veth pair ([`Nl::create_veth`]).
pub(crate) const VETH_QUEUES: u32 = 1;

/// A route-netlink connection bound to one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Nl {
    pub(crate) h: Handle,
    pub(crate) side: Side,
}

impl Nl {
    /// Wrap a NETLINK_ROUTE socket fd (created in the wanted namespace). Must be called
    /// inside a tokio runtime; the connection task is spawned on it.
    pub(crate) fn connect(fd: OwnedFd, side: Side) -> Result<Nl, Error> {
        use std::os::fd::FromRawFd;
        // SAFETY: fd is an open NETLINK_ROUTE socket whose ownership moves into the socket.
        let sock = unsafe { rtnetlink::sys::TokioSocket::from_raw_fd(fd.into_raw_fd()) };
        let (conn, h, _) = rtnetlink::from_socket(sock);
        tokio::spawn(conn);
        Ok(Nl { h, side })
    }

    fn iface(&self, name: &str, op: &'static str, source: rtnetlink::Error) -> Error {
        Error::Interface {
            name: name.to_string(),
            side: self.side,
            op,
            source: Box::new(source),
        }
    }

    /// The link called `name`, or `None`.
    pub(crate) async fn link(&self, name: &str) -> Result<Option<ObservedLink>, Error> {
        let mut req = self.h.link().get().match_name(name.to_string()).execute();
        match req.try_next().await {
            Ok(Some(m)) => Ok(Some(observed_link(&m))),
            Ok(None) => Ok(None),
            Err(e) if matches!(nl_errno(&e), Some(libc::ENODEV)) => Ok(None),
            Err(e) => Err(self.iface(name, "get", e)),
        }
    }

    /// The link with `index`, or `None`.
    pub(crate) async fn link_by_index(&self, index: u32) -> Result<Option<ObservedLink>, Error> {
        let mut req = self.h.link().get().match_index(index).execute();
        match req.try_next().await {
            Ok(m) => Ok(m.as_ref().map(observed_link)),
            Err(e) if matches!(nl_errno(&e), Some(libc::ENODEV)) => Ok(None),
            Err(e) => Err(self.iface(&format!("#{index}"), "get", e)),
        }
    }

    /// All links (for listing attachments).
    pub(crate) async fn links(&self) -> Result<Vec<ObservedLink>, Error> {
        let mut s = self.h.link().get().execute();
        let mut out = Vec::new();
        loop {
            match s.try_next().await {
                Ok(Some(m)) => out.push(observed_link(&m)),
                Ok(None) => return Ok(out),
                Err(e) => return Err(self.iface("*", "list links", e)),
            }
        }
    }

    /// Delete the link called `name`; `Ok(false)` when it did not exist.
    pub(crate) async fn delete_link(&self, name: &str) -> Result<bool, Error> {
        let msg = LinkUnspec::new_with_name(name).build();
        match self.h.link().del_with_message(msg).execute().await {
            Ok(()) => Ok(true),
            Err(e) if matches!(nl_errno(&e), Some(libc::ENODEV)) => Ok(false),
            Err(e) => Err(self.iface(name, "delete", e)),
        }
    }

    /// All addresses as (ifindex, address/prefix).
    pub(crate) async fn addresses(&self) -> Result<Vec<(u32, IpNetwork)>, Error> {
        let mut s = self.h.address().get().execute();
        let mut out = Vec::new();
        loop {
            match s.try_next().await {
                Ok(Some(m)) => {
                    for a in &m.attributes {
                        if let AddressAttribute::Address(ip) = a
                            && let Ok(net) = IpNetwork::new(*ip, m.header.prefix_len)
                        {
                            out.push((m.header.index, net));
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(self.iface("*", "list addresses", e)),
            }
        }
        Ok(out)
    }

    /// Routes of the main table, both families.
    pub(crate) async fn routes(&self) -> Result<Vec<ObservedRoute>, Error> {
        let mut out = Vec::new();
        for msg in [
            RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        ] {
            let mut s = self.h.route().get(msg).execute();
            loop {
                match s.try_next().await {
                    Ok(Some(m)) => {
                        if let Some(r) = observed_route(&m) {
                            out.push(r);
                        }
                    }
                    Ok(None) => break,
                    Err(source) => {
                        return Err(Error::Route {
                            route: "*".into(),
                            side: self.side,
                            op: "list",
                            source: Box::new(source),
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Neighbour entries and proxy entries.
    pub(crate) async fn neighbours(&self) -> Result<Vec<ObservedNeighbour>, Error> {
        let mut out = Vec::new();
        for proxies in [false, true] {
            let mut req = self.h.neighbours().get();
            if proxies {
                req = req.proxies();
            }
            let mut s = req.execute();
            loop {
                match s.try_next().await {
                    Ok(Some(m)) => {
                        if let Some(n) = observed_neighbour(&m) {
                            out.push(n);
                        }
                    }
                    Ok(None) => break,
                    Err(source) => {
                        return Err(Error::Neighbour {
                            address: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                            ifname: "*".into(),
                            side: self.side,
                            op: "list",
                            source: Box::new(source),
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// The index of the link that carries traffic to the world ([`default_route_probes`]).
    pub(crate) async fn default_route_link(&self) -> Result<Option<u32>, Error> {
        for msg in default_route_probes() {
            let mut s = self.h.route().get(msg).execute();
            // No route (ENETUNREACH) is not an error here: try the next family.
            if let Ok(Some(m)) = s.try_next().await
                && let Some(oif) = route_oif(&m)
            {
                return Ok(Some(oif));
            }
        }
        Ok(None)
    }

    /// Everything of interest in this namespace, for CHECK.
    pub(crate) async fn state(&self, links: &[&str]) -> Result<SideState, Error> {
        let mut st = SideState::default();
        for name in links {
            if let Some(l) = self.link(name).await? {
                st.links.push(l);
            }
        }
        st.addresses = self.addresses().await?;
        st.routes = self.routes().await?;
        st.neighbours = self.neighbours().await?;
        Ok(st)
    }
}

/// The request that creates the veth pair with the pod end directly in `pod_ns` (one
/// RTM_NEWLINK, sent with NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO). The pod end is created
/// down: the kernel refuses to open a veth peer before the pair is linked (ENOTCONN), so it
/// is set up afterwards.
///
/// Kernels that honour NLM_F_ECHO (6.3+) send the new host link back, whose IFLA_LINK is
/// the pod end's index ([`echoed_pair`]), so no lookup is needed.
///
/// Both ends are created with one TX and one RX queue ([`VETH_QUEUES`]). Without the
/// counts the kernel allocates one queue per possible CPU and then lowers each end's
/// *real* queue count to 1, and lowering it on a registered device waits for an RCU
/// grace period under RTNL (`synchronize_net` in `netif_set_real_num_tx_queues`):
/// measured here ~0.4 ms of the ~0.56 ms the request took (an expedited grace period per
/// end, on every veth creation of the node). The pair behaves the same (one real queue
/// either way); what is lost is raising the queue count later (`ethtool -L`).
pub(crate) fn veth_message(
    v: &VethPlan,
    master: Option<u32>,
    pod_ns: BorrowedFd<'_>,
) -> RouteNetlinkMessage {
    let peer = LinkUnspec::new_with_name(&v.pod)
        .mtu(v.mtu)
        .address(v.pod_mac.0.to_vec())
        .setns_by_fd(pod_ns.as_raw_fd())
        .append_extra_attribute(LinkAttribute::NumTxQueues(VETH_QUEUES))
        .append_extra_attribute(LinkAttribute::NumRxQueues(VETH_QUEUES))
        .build();
    let mut b = LinkVeth::new(&v.host, &v.pod)
        .mtu(v.mtu)
        .address(v.host_mac.0.to_vec())
        .append_extra_attribute(LinkAttribute::NumTxQueues(VETH_QUEUES))
        .append_extra_attribute(LinkAttribute::NumRxQueues(VETH_QUEUES))
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)));
    if let Some(m) = master {
        b = b.controller(m);
    }
    RouteNetlinkMessage::NewLink(b.build())
}

/// Flags of [`veth_message`].
pub(crate) const VETH_FLAGS: u16 = NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO;
/// Flags of a request that creates an object that must not exist yet.
pub(crate) const CREATE_FLAGS: u16 = NLM_F_CREATE | NLM_F_EXCL;
/// Flags of a request that creates or replaces (neighbour entries).
pub(crate) const REPLACE_FLAGS: u16 = NLM_F_CREATE | NLM_F_REPLACE;

/// `(host index, pod index)` from the echo of [`veth_message`] for host end `host`.
pub(crate) fn echoed_pair(replies: &[RouteNetlinkMessage], host: &str) -> Option<(u32, u32)> {
    replies.iter().find_map(|m| match m {
        RouteNetlinkMessage::NewLink(l) => {
            let named = l
                .attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::IfName(n) if n == host));
            let peer = l.attributes.iter().find_map(|a| match a {
                LinkAttribute::Link(i) => Some(*i),
                _ => None,
            })?;
            named.then_some((l.header.index, peer))
        }
        _ => None,
    })
}

/// The request that creates the bridge (up); EEXIST when it exists.
pub(crate) fn bridge_message(b: &BridgePlan) -> RouteNetlinkMessage {
    RouteNetlinkMessage::NewLink(
        LinkBridge::new(&b.name)
            .mtu(b.mtu)
            .address(b.mac.0.to_vec())
            .up()
            .build(),
    )
}

/// The request that sets link `index` up (nothing else in it: see [`attributes_message`]).
pub(crate) fn set_up_message(index: u32) -> RouteNetlinkMessage {
    RouteNetlinkMessage::SetLink(LinkUnspec::new_with_index(index).up().build())
}

/// The request that sets link `index`'s alias (an alias given at creation is ignored by the
/// kernel) and IPv4 interface settings `(IPV4_DEVCONF_*, value)` (see [`crate::netconf`])
/// and leaves its flags alone; `None` when there is nothing to set.
///
/// Apart from the request that sets the link up: measured here, one request carrying an
/// alias *and* the up flag cost the kernel ~0.3 ms, the two requests ~0.04 ms together.
///
/// With `no_link_local` the link's IPv6 address generation is turned off too (before it
/// goes up, so it never gets a link-local address); where the kernel has no IPv6 for the
/// link (EAFNOSUPPORT) the caller repeats the request without that.
pub(crate) fn attributes_message(
    index: u32,
    alias: Option<&str>,
    inet_conf: &[(u16, u32)],
    no_link_local: bool,
) -> Option<RouteNetlinkMessage> {
    if alias.is_none() && inet_conf.is_empty() && !no_link_local {
        return None;
    }
    let mut b = LinkUnspec::new_with_index(index);
    if let Some(a) = alias {
        b = b.alias(a);
    }
    let mut msg = b.build();
    if !inet_conf.is_empty() || no_link_local {
        msg.attributes
            .push(crate::netconf::af_spec_attribute(inet_conf, no_link_local));
    }
    Some(RouteNetlinkMessage::SetLink(msg))
}

/// What [`attributes_message`] sets, for errors.
pub(crate) fn attributes_op(alias: Option<&str>, inet_conf: &[(u16, u32)]) -> &'static str {
    match (alias.is_some(), inet_conf.is_empty()) {
        (true, true) => "set alias",
        (false, _) => "set interface settings",
        (true, false) => "set alias and interface settings",
    }
}

/// The request that adds `address` to link `index` (without duplicate address detection
/// when `nodad`).
pub(crate) fn address_message(index: u32, address: IpNetwork, nodad: bool) -> RouteNetlinkMessage {
    let mut m = match address.ip() {
        IpAddr::V4(a) => AddressMessageBuilder::<std::net::Ipv4Addr>::new()
            .index(index)
            .address(a, address.prefix())
            .build(),
        IpAddr::V6(a) => AddressMessageBuilder::<std::net::Ipv6Addr>::new()
            .index(index)
            .address(a, address.prefix())
            .build(),
    };
    if nodad {
        m.header.flags |= AddressHeaderFlags::Nodad;
        m.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    RouteNetlinkMessage::NewAddress(m)
}

/// The request that adds route `r` through link `index`.
pub(crate) fn route_message(r: &RoutePlan, index: u32) -> RouteNetlinkMessage {
    let mut msg = match (r.destination, r.gateway) {
        (IpNetwork::V4(d), g) => {
            let mut b = RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .destination_prefix(d.ip(), d.prefix())
                .output_interface(index);
            if let Some(IpAddr::V4(g)) = g {
                b = b.gateway(g);
            }
            b.build()
        }
        (IpNetwork::V6(d), g) => {
            let mut b = RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .destination_prefix(d.ip(), d.prefix())
                .output_interface(index);
            if let Some(IpAddr::V6(g)) = g {
                b = b.gateway(g);
            }
            b.build()
        }
    };
    if r.scope_link {
        msg.header.scope = RouteScope::Link;
    }
    let metrics: Vec<RouteMetric> = r
        .mtu
        .map(RouteMetric::Mtu)
        .into_iter()
        .chain(r.advmss.map(RouteMetric::Advmss))
        .collect();
    if !metrics.is_empty() {
        msg.attributes.push(RouteAttribute::Metrics(metrics));
    }
    RouteNetlinkMessage::NewRoute(msg)
}

/// The request that adds a permanent (with MAC) or proxy (without) neighbour entry on link
/// `index` (sent with [`REPLACE_FLAGS`]: it replaces any).
pub(crate) fn neighbour_message(n: &NeighbourPlan, index: u32) -> RouteNetlinkMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = match n.address {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    m.header.ifindex = index;
    m.header.state = NeighbourState::Permanent;
    m.header.kind = RouteType::Unspec;
    m.attributes
        .push(NeighbourAttribute::Destination(match n.address {
            IpAddr::V4(a) => NeighbourAddress::Inet(a),
            IpAddr::V6(a) => NeighbourAddress::Inet6(a),
        }));
    match n.mac {
        Some(mac) => m
            .attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec())),
        None => m.header.flags = NeighbourFlags::Proxy,
    }
    RouteNetlinkMessage::NewNeighbour(m)
}

/// The request for the link called `name` (answered with it, or ENODEV).
pub(crate) fn get_link_message(name: &str) -> RouteNetlinkMessage {
    let mut m = LinkMessage::default();
    m.attributes.push(LinkAttribute::IfName(name.to_string()));
    RouteNetlinkMessage::GetLink(m)
}

/// The request for the link with `index`.
pub(crate) fn get_link_by_index_message(index: u32) -> RouteNetlinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    RouteNetlinkMessage::GetLink(m)
}

/// The request that deletes the link called `name` (ENODEV when there is none).
pub(crate) fn delete_link_message(name: &str) -> RouteNetlinkMessage {
    RouteNetlinkMessage::DelLink(LinkUnspec::new_with_name(name).build())
}

/// Route *lookups* (no dump, so their cost does not grow with the node's per-pod routes)
/// for documentation addresses (192.0.2.1, then 2001:db8::1), which only a default route
/// covers: the link that carries traffic to the world is the first answer's output link.
pub(crate) fn default_route_probes() -> [RouteMessage; 2] {
    [
        RouteMessageBuilder::<std::net::Ipv4Addr>::new()
            .destination_prefix(std::net::Ipv4Addr::new(192, 0, 2, 1), 32)
            .build(),
        RouteMessageBuilder::<std::net::Ipv6Addr>::new()
            .destination_prefix(
                std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
                128,
            )
            .build(),
    ]
}

/// The output link of a route lookup's answer.
pub(crate) fn route_oif(m: &RouteMessage) -> Option<u32> {
    m.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

/// The first link in `replies`, as observed.
pub(crate) fn first_link(replies: &[RouteNetlinkMessage]) -> Option<ObservedLink> {
    replies.iter().find_map(|m| match m {
        RouteNetlinkMessage::NewLink(l) => Some(observed_link(l)),
        _ => None,
    })
}

pub(crate) fn observed_link(m: &LinkMessage) -> ObservedLink {
    let mut l = ObservedLink {
        index: m.header.index,
        name: String::new(),
        mtu: 0,
        up: m.header.flags.contains(LinkFlags::Up),
        master: None,
        mac: None,
        alias: None,
        kind: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Mtu(v) => l.mtu = *v,
            LinkAttribute::Controller(c) => l.master = Some(*c),
            LinkAttribute::IfAlias(a) => l.alias = Some(a.clone()),
            LinkAttribute::LinkInfo(infos) => {
                l.kind = infos.iter().find_map(|i| match i {
                    LinkInfo::Kind(k) => Some(k.to_string()),
                    _ => None,
                });
            }
            LinkAttribute::Address(b) if b.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(b);
                l.mac = Some(MacAddr(mac));
            }
            _ => {}
        }
    }
    l
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn observed_route(m: &RouteMessage) -> Option<ObservedRoute> {
    let mut table = u32::from(m.header.table);
    let mut dst = None;
    let mut gateway = None;
    let mut oif = None;
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(d) => dst = route_ip(d),
            RouteAttribute::Gateway(g) => gateway = route_ip(g),
            RouteAttribute::Oif(i) => oif = Some(*i),
            _ => {}
        }
    }
    if table != 254 {
        return None;
    }
    let any = match m.header.address_family {
        rtnetlink::packet_route::AddressFamily::Inet => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        rtnetlink::packet_route::AddressFamily::Inet6 => {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        }
        _ => return None,
    };
    let destination =
        IpNetwork::new(dst.unwrap_or(any), m.header.destination_prefix_length).ok()?;
    Some(ObservedRoute {
        destination,
        gateway,
        oif,
    })
}

fn observed_neighbour(m: &NeighbourMessage) -> Option<ObservedNeighbour> {
    let mut address = None;
    let mut mac = None;
    for a in &m.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                address = Some(IpAddr::V4(*v4));
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                address = Some(IpAddr::V6(*v6));
            }
            NeighbourAttribute::LinkLayerAddress(b) if b.len() == 6 => {
                let mut x = [0u8; 6];
                x.copy_from_slice(b);
                mac = Some(MacAddr(x));
            }
            _ => {}
        }
    }
    Some(ObservedNeighbour {
        ifindex: m.header.ifindex,
        address: address?,
        mac,
        permanent: m.header.state == NeighbourState::Permanent,
        proxy: m.header.flags.contains(NeighbourFlags::Proxy),
    })
}
