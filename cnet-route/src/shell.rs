//! The IO shell: executes an [`EndpointPlan`] over rtnetlink, tears it down, reads it back.
//!
//! Every operation runs on one short-lived OS thread that enters the node namespace; the pod
//! socket is created after a brief `setns` into the pod namespace on that same thread (sockets
//! stay bound to the namespace they were created in), then the thread returns to the node
//! namespace and drives both sockets. The caller's thread never changes namespace (unless the
//! node is the caller's own namespace: then the work runs inline).
//!
//! Attach, the hot path of every pod start, uses blocking sockets and sends each side's
//! requests in batches ([`crate::rtsync`]); the other operations drive rtnetlink's async
//! connection from a current-thread tokio runtime.

use std::os::fd::AsFd;

use crate::check::ObservedLink;
use crate::check::{Difference, Observed, diff};
use crate::error::{Error, Errors, Side, nl_errno};
use crate::mode::{Attachment, HostLink, IntraNode, Node};
use crate::netns::{Netns, route_socket};
use crate::nl::{self, Nl};
use crate::plan::{BridgePlan, EndpointPlan, NeighbourPlan, RoutePlan, SysctlPlan};
use crate::rtsync::Rt;
use crate::spec::{
    EndpointSpec, derived_mac, host_ifname, invalid, owner_alias, parse_owner_alias,
    validate_ifname, validate_owner,
};
use ipnetwork::IpNetwork;
use rtnetlink::packet_route::RouteNetlinkMessage;

/// MTU when neither the spec, the configured uplink nor a default route gives one.
pub const FALLBACK_MTU: u32 = 1500;

fn runtime(side: Side) -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|source| Error::Setup { side, source })
}

fn socket(side: Side) -> Result<std::os::fd::OwnedFd, Error> {
    route_socket().map_err(|source| Error::Setup { side, source })
}

/// Interface sysctls split into IPv4 settings netlink can carry (`(IPV4_DEVCONF_*, value)`)
/// and the rest.
fn split_inet_conf<'a>(
    sysctls: impl Iterator<Item = &'a SysctlPlan>,
) -> (Vec<(u16, u32)>, Vec<&'a SysctlPlan>) {
    let mut conf = Vec::new();
    let mut rest = Vec::new();
    for s in sysctls {
        match crate::netconf::inet_devconf(s) {
            Some(c) => conf.push(c),
            None => rest.push(s),
        }
    }
    (conf, rest)
}

/// Return the thread to `home` after a visit to another namespace. On a caller's thread
/// (`inline`) a failure aborts the process: it must never run on in the wrong namespace.
fn come_back(home: &Netns, inline: bool) -> Result<(), Error> {
    match home.enter() {
        Ok(()) => Ok(()),
        Err(_) if inline => std::process::abort(),
        Err(e) => Err(e),
    }
}

/// On a thread inside `home`: write sysctls inside `ns`, then come back.
fn sysctls_in(
    ns: &Netns,
    home: &Netns,
    sysctls: &[&SysctlPlan],
    inline: bool,
) -> Result<(), Error> {
    if sysctls.is_empty() {
        return Ok(());
    }
    ns.enter()?;
    let written = sysctls.iter().try_for_each(|s| write_sysctl(s));
    come_back(home, inline)?;
    written
}

/// On a thread of ours inside `home`: read sysctls inside `ns`, then come back.
fn read_sysctls_in(
    ns: &Netns,
    home: &Netns,
    sysctls: &[SysctlPlan],
) -> Result<Vec<(String, Option<String>)>, Error> {
    ns.enter()?;
    let values = sysctls
        .iter()
        .map(|s| (s.key.clone(), std::fs::read_to_string(s.proc_path()).ok()))
        .collect();
    home.enter()?;
    Ok(values)
}

/// On a thread inside the node namespace: open a socket in `pod`, then come back.
fn pod_socket(node: &Netns, pod: &Netns, inline: bool) -> Result<std::os::fd::OwnedFd, Error> {
    pod.enter()?;
    let fd = socket(Side::Pod);
    come_back(node, inline)?;
    fd
}

pub(crate) fn attach<M: IntraNode + ?Sized>(
    mode: &M,
    node: &Node,
    spec: &EndpointSpec,
    gate: &mut (dyn FnMut() -> Result<(), String> + Send),
) -> Result<Attachment, Error> {
    // Everything that can be checked without the kernel is checked before touching it.
    let checked = mode.plan(spec, spec.mtu.unwrap_or(FALLBACK_MTU))?;
    let ns = node.netns();
    node.run(|inline| {
        let pod_ns = Netns::open(&spec.netns)?;
        let mut node_rt = Rt::new(socket(Side::Node)?, Side::Node);
        // Namespace-wide forwarding as netlink reports it (no /proc/sys walk; see netconf).
        let forwarding: Vec<(u8, bool)> = checked
            .sysctls
            .iter()
            .filter_map(crate::netconf::forwarding_family)
            .filter_map(|f| Some((f, crate::netconf::forwarding(node_rt.fd(), f)?)))
            .collect();
        let mut pod_rt = Rt::new(pod_socket(ns, &pod_ns, inline)?, Side::Pod);
        let mtu = match spec.mtu {
            Some(m) => m,
            None => uplink_mtu_blocking(&mut node_rt, mode.uplink())?,
        };
        let plan = mode.plan(spec, mtu)?;
        attach_plan(
            (&mut node_rt, &mut pod_rt),
            (ns, &pod_ns),
            plan,
            (&spec.container_id, &spec.ifname),
            (&forwarding, inline),
            gate,
        )
    })?
}

/// One request of a batch, for its error.
enum What<'a> {
    /// On the link called `.0`, doing `.1`.
    Link(&'a str, &'static str),
    Address(&'a str, IpNetwork),
    Route(&'a RoutePlan),
    Neighbour(&'a NeighbourPlan),
}

impl What<'_> {
    fn error(&self, side: Side, source: rtnetlink::Error) -> Error {
        let source = Box::new(source);
        match self {
            What::Link(name, op) => Error::Interface {
                name: (*name).to_string(),
                side,
                op,
                source,
            },
            What::Address(ifname, address) => Error::Address {
                address: *address,
                ifname: (*ifname).to_string(),
                side,
                source,
            },
            What::Route(r) => Error::Route {
                route: r.to_string(),
                side,
                op: "add",
                source,
            },
            What::Neighbour(n) => Error::Neighbour {
                address: n.address,
                ifname: n.ifname.clone(),
                side,
                op: "add",
                source,
            },
        }
    }
}

/// Send `reqs` in one batch; the first that failed (in order) is the error.
fn batch(rt: &mut Rt, reqs: Vec<(What<'_>, RouteNetlinkMessage, u16)>) -> Result<(), Error> {
    let (whats, msgs): (Vec<_>, Vec<_>) = reqs.into_iter().map(|(w, m, f)| (w, (m, f))).unzip();
    let answers = rt.exchange(msgs)?;
    for (what, answer) in whats.iter().zip(answers) {
        if let Some(e) = answer.error {
            return Err(what.error(rt.side, e));
        }
    }
    Ok(())
}

/// The link called `name`, or `None`.
fn link_blocking(rt: &mut Rt, name: &str) -> Result<Option<ObservedLink>, Error> {
    match rt.request(nl::get_link_message(name), 0)? {
        Ok(replies) => Ok(nl::first_link(&replies)),
        Err(e) if nl_errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(What::Link(name, "get").error(rt.side, e)),
    }
}

/// Delete the link called `name`; `Ok(false)` when it did not exist.
fn delete_link_blocking(rt: &mut Rt, name: &str) -> Result<bool, Error> {
    match rt.request(nl::delete_link_message(name), 0)? {
        Ok(_) => Ok(true),
        Err(e) if nl_errno(&e) == Some(libc::ENODEV) => Ok(false),
        Err(e) => Err(What::Link(name, "delete").error(rt.side, e)),
    }
}

/// The MTU of the uplink: the configured one, or the default route's link.
fn uplink_mtu_blocking(node: &mut Rt, uplink: Option<&str>) -> Result<u32, Error> {
    if let Some(name) = uplink {
        return match link_blocking(node, name)? {
            Some(l) => Ok(l.mtu),
            None => Err(Error::UplinkMissing {
                name: name.to_string(),
            }),
        };
    }
    // Both families' lookups in one batch; no route (ENETUNREACH) is not an error here.
    let probes = nl::default_route_probes()
        .into_iter()
        .map(|m| (RouteNetlinkMessage::GetRoute(m), 0))
        .collect();
    let oif = node.exchange(probes)?.into_iter().find_map(|a| {
        a.result().ok()?.iter().find_map(|m| match m {
            RouteNetlinkMessage::NewRoute(r) => nl::route_oif(r),
            _ => None,
        })
    });
    let Some(index) = oif else {
        return Ok(FALLBACK_MTU);
    };
    match node.request(nl::get_link_by_index_message(index), 0)? {
        Ok(replies) => Ok(nl::first_link(&replies).map_or(FALLBACK_MTU, |l| l.mtu)),
        Err(e) if nl_errno(&e) == Some(libc::ENODEV) => Ok(FALLBACK_MTU),
        Err(e) => Err(What::Link(&format!("#{index}"), "get").error(node.side, e)),
    }
}

async fn uplink_mtu(node: &Nl, uplink: Option<&str>) -> Result<u32, Error> {
    if let Some(name) = uplink {
        return match node.link(name).await? {
            Some(l) => Ok(l.mtu),
            None => Err(Error::UplinkMissing {
                name: name.to_string(),
            }),
        };
    }
    match node.default_route_link().await? {
        Some(index) => Ok(node
            .link_by_index(index)
            .await?
            .map_or(FALLBACK_MTU, |l| l.mtu)),
        None => Ok(FALLBACK_MTU),
    }
}

fn write_sysctl(s: &SysctlPlan) -> Result<(), Error> {
    // A node-wide key usually holds its value already (every attach sets it): read first.
    // Writing one is not free: `conf.all.forwarding` walks every interface under the RTNL
    // lock, which a concurrent link deletion may hold (the write then spins on a retry).
    if s.interface.is_none()
        && std::fs::read_to_string(s.proc_path()).is_ok_and(|v| v.trim() == s.value)
    {
        return Ok(());
    }
    match std::fs::write(s.proc_path(), &s.value) {
        Ok(()) => Ok(()),
        Err(e) if s.optional && e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Sysctl {
            key: s.key.clone(),
            source,
        }),
    }
}

fn ensure_bridge(node: &mut Rt, b: &BridgePlan) -> Result<u32, Error> {
    let link = match link_blocking(node, &b.name)? {
        Some(l) => l,
        None => {
            if let Err(e) = node.request(nl::bridge_message(b), nl::CREATE_FLAGS)?
                && nl_errno(&e) != Some(libc::EEXIST)
            {
                return Err(What::Link(&b.name, "create bridge").error(Side::Node, e));
            }
            link_blocking(node, &b.name)?.ok_or_else(|| Error::Vanished {
                name: b.name.clone(),
                side: Side::Node,
            })?
        }
    };
    if link.kind.as_deref() != Some("bridge") {
        return Err(Error::NotABridge {
            name: b.name.clone(),
            kind: link.kind,
        });
    }
    let mut reqs = Vec::new();
    if !link.up {
        reqs.push((
            What::Link(&b.name, "set up"),
            nl::set_up_message(link.index),
        ));
    }
    for a in &b.addresses {
        reqs.push((
            What::Address(&b.name, *a),
            nl::address_message(link.index, *a, a.is_ipv6()),
        ));
    }
    let (whats, msgs): (Vec<_>, Vec<_>) = reqs
        .into_iter()
        .map(|(w, m)| (w, (m, nl::CREATE_FLAGS)))
        .unzip();
    for (what, answer) in whats.iter().zip(node.exchange(msgs)?) {
        match (what, answer.error) {
            (_, None) => {}
            // The shared bridge's addresses are there already (another pod's attach).
            (What::Address(..), Some(e)) if nl_errno(&e) == Some(libc::EEXIST) => {}
            (w, Some(e)) => return Err(w.error(Side::Node, e)),
        }
    }
    Ok(link.index)
}

/// A node-wide sysctl: nothing to do when netlink already reported the wanted forwarding
/// value (`forwarding`: per family), otherwise [`write_sysctl`].
fn ensure_node_sysctl(s: &SysctlPlan, forwarding: &[(u8, bool)]) -> Result<(), Error> {
    let reported = crate::netconf::forwarding_family(s)
        .and_then(|f| forwarding.iter().find(|(g, _)| *g == f))
        .map(|(_, on)| if *on { "1" } else { "0" });
    if reported == Some(s.value.trim()) {
        return Ok(());
    }
    write_sysctl(s)
}

fn attach_plan(
    (node, pod): (&mut Rt, &mut Rt),
    (node_ns, pod_ns): (&Netns, &Netns),
    plan: EndpointPlan,
    owner: (&str, &str),
    (forwarding, inline): (&[(u8, bool)], bool),
    gate: &mut (dyn FnMut() -> Result<(), String> + Send),
) -> Result<Attachment, Error> {
    // Node-wide settings and the shared bridge are infrastructure: not undone on failure.
    for s in plan.sysctls.iter().filter(|s| s.interface.is_none()) {
        ensure_node_sysctl(s, forwarding)?;
    }
    let master = match &plan.bridge {
        Some(b) => Some(ensure_bridge(node, b)?),
        None => None,
    };
    let v = &plan.veth;
    // The host end is created down: per-interface sysctls (accept_dad) must be set before it
    // goes up, and its owner alias is set in the same request that sets it up.
    let create =
        |node: &mut Rt| node.request(nl::veth_message(v, master, pod_ns.as_fd()), nl::VETH_FLAGS);
    let mut created = create(node)?;
    if created
        .as_ref()
        .is_err_and(|e| nl_errno(e) == Some(libc::EEXIST))
        && remove_retired(node, owner.0, owner.1)?
    {
        // The pod end's name was held by a retired pair of this same attachment (a deferred
        // teardown not reaped yet): now deleted, create again.
        created = create(node)?;
    }
    let echoed = match created {
        Ok(replies) => nl::echoed_pair(&replies, &v.host),
        Err(e) => {
            if nl_errno(&e) == Some(libc::EEXIST) {
                let side = if link_blocking(node, &v.host)?.is_some() {
                    Side::Node
                } else {
                    Side::Pod
                };
                let name = if side == Side::Node { &v.host } else { &v.pod };
                return Err(Error::InterfaceExists {
                    name: name.clone(),
                    side,
                });
            }
            return Err(What::Link(&v.host, "create veth pair").error(Side::Node, e));
        }
    };
    // From here on the veth pair is ours: any failure deletes it (which also removes every
    // route, address and neighbour entry on either end). The pod end is configured and goes
    // up before the caller's gate: a veth carries nothing while its peer is down (no carrier;
    // the kernel drops what one end sends while the other is not up), and the host end goes
    // up, with its routes and neighbour entries, only once the gate returned `Ok`.
    match raise(node, pod, (node_ns, pod_ns, inline), &plan, echoed, gate) {
        Ok(pod_ifindex) => Ok(Attachment {
            host_ifname: v.host.clone(),
            host_mac: v.host_mac,
            pod_ifname: v.pod.clone(),
            pod_mac: v.pod_mac,
            pod_ifindex,
            mtu: v.mtu,
            addresses: plan.addresses.iter().map(|a| a.address).collect(),
            gateways: plan.gateways.clone(),
            plan,
        }),
        Err(e) => {
            let _ = delete_link_blocking(node, &v.host);
            Err(e)
        }
    }
}

/// The new pair's ends configured, the gate passed, the host end up: the pod end's index.
fn raise(
    node: &mut Rt,
    pod: &mut Rt,
    namespaces: (&Netns, &Netns, bool),
    plan: &EndpointPlan,
    echoed: Option<(u32, u32)>,
    gate: &mut (dyn FnMut() -> Result<(), String> + Send),
) -> Result<u32, Error> {
    let (host_index, pod_index) = prepare_ends(node, pod, namespaces, plan, echoed)?;
    if let Err(reason) = gate() {
        return Err(Error::Gate { reason });
    }
    raise_host(node, plan, host_index)?;
    Ok(pod_index)
}

/// Delete the retired pair of `(cid, ifname)` if there is one and it is ours.
fn remove_retired(node: &mut Rt, cid: &str, ifname: &str) -> Result<bool, Error> {
    let retired = crate::retire::retired_ifname(cid, ifname);
    match link_blocking(node, &retired)? {
        Some(l) if owned_by(&l, cid, ifname) => delete_link_blocking(node, &retired),
        Some(l) => Err(Error::NotOwned {
            name: retired,
            expected: owner_alias(cid, ifname),
            found: l.alias,
        }),
        None => Ok(false),
    }
}

fn index(rt: &mut Rt, name: &str) -> Result<u32, Error> {
    link_blocking(rt, name)?
        .map(|l| l.index)
        .ok_or_else(|| Error::Vanished {
            name: name.to_string(),
            side: rt.side,
        })
}

/// Set link `index`'s alias and IPv4 settings ([`nl::attributes_message`]); where the
/// kernel has no IPv6 for the link (EAFNOSUPPORT) again without turning its link-local
/// address off.
fn set_attributes(
    rt: &mut Rt,
    (name, index): (&str, u32),
    alias: Option<&str>,
    inet_conf: &[(u16, u32)],
    no_link_local: bool,
) -> Result<(), Error> {
    let what = What::Link(name, nl::attributes_op(alias, inet_conf));
    let Some(msg) = nl::attributes_message(index, alias, inet_conf, no_link_local) else {
        return Ok(());
    };
    let answer = match rt.request(msg, nl::CREATE_FLAGS)? {
        Err(e) if no_link_local && nl_errno(&e) == Some(libc::EAFNOSUPPORT) => {
            match nl::attributes_message(index, alias, inet_conf, false) {
                Some(msg) => rt.request(msg, nl::CREATE_FLAGS)?,
                None => return Ok(()),
            }
        }
        r => r,
    };
    answer.map(drop).map_err(|e| what.error(rt.side, e))
}

/// Everything of a new pair but what makes it carry traffic: the host end's settings (it
/// stays down), and the whole pod end (settings, up, addresses, routes, neighbour entries;
/// without its peer up it has no carrier). Returns the (host, pod) interface indexes.
fn prepare_ends(
    node: &mut Rt,
    pod: &mut Rt,
    (node_ns, pod_ns, inline): (&Netns, &Netns, bool),
    plan: &EndpointPlan,
    echoed: Option<(u32, u32)>,
) -> Result<(u32, u32), Error> {
    let v = &plan.veth;
    let (host_index, pod_index) = match echoed {
        Some(indexes) => indexes,
        None => (index(node, &v.host)?, index(pod, &v.pod)?),
    };
    // IPv4 interface settings travel in a request of their own (with the host end's alias)
    // before the one that sets the link up (the kernel stores them as a sysctl write
    // would; see netconf); others are sysctl writes.
    let (host_conf, host_sysctls) =
        split_inet_conf(plan.sysctls.iter().filter(|s| s.interface.is_some()));
    let (pod_conf, pod_sysctls) = split_inet_conf(plan.pod_sysctls.iter());
    for s in &host_sysctls {
        write_sysctl(s)?;
    }
    set_attributes(
        node,
        (&v.host, host_index),
        Some(&v.host_alias),
        &host_conf,
        !v.host_ipv6,
    )?;
    sysctls_in(pod_ns, node_ns, &pod_sysctls, inline)?;
    // The pod side's requests in one batch: the kernel handles them in order, so a route
    // is added after the link is up and the scope-link route before the route through it;
    // any error fails the attach (which deletes the pair).
    let mut reqs = Vec::new();
    if let Some(m) = nl::attributes_message(pod_index, None, &pod_conf, false) {
        reqs.push((
            What::Link(&v.pod, nl::attributes_op(None, &pod_conf)),
            m,
            nl::CREATE_FLAGS,
        ));
    }
    reqs.push((
        What::Link(&v.pod, "set up"),
        nl::set_up_message(pod_index),
        nl::CREATE_FLAGS,
    ));
    for a in plan.addresses.iter().filter(|a| a.side == Side::Pod) {
        reqs.push((
            What::Address(&a.ifname, a.address),
            nl::address_message(pod_index, a.address, a.nodad),
            nl::CREATE_FLAGS,
        ));
    }
    push_routes_and_neighbours(&mut reqs, plan, Side::Pod, pod_index);
    batch(pod, reqs)?;
    Ok((host_index, pod_index))
}

/// The host end goes up (the pair carries traffic from here on), then its routes and
/// neighbour entries (one batch, in that order).
fn raise_host(node: &mut Rt, plan: &EndpointPlan, host_index: u32) -> Result<(), Error> {
    let v = &plan.veth;
    let mut reqs = vec![(
        What::Link(&v.host, "set up"),
        nl::set_up_message(host_index),
        nl::CREATE_FLAGS,
    )];
    push_routes_and_neighbours(&mut reqs, plan, Side::Node, host_index);
    batch(node, reqs)
}

/// Queue the plan's routes, then its neighbour entries, on `side` through link `index`.
fn push_routes_and_neighbours<'a>(
    reqs: &mut Vec<(What<'a>, RouteNetlinkMessage, u16)>,
    plan: &'a EndpointPlan,
    side: Side,
    index: u32,
) {
    for r in plan.routes_on(side) {
        reqs.push((
            What::Route(r),
            nl::route_message(r, index),
            nl::CREATE_FLAGS,
        ));
    }
    for n in plan.neighbours_on(side) {
        reqs.push((
            What::Neighbour(n),
            nl::neighbour_message(n, index),
            nl::REPLACE_FLAGS,
        ));
    }
}

pub(crate) fn owned_by(l: &crate::check::ObservedLink, container_id: &str, ifname: &str) -> bool {
    match &l.alias {
        Some(a) => *a == owner_alias(container_id, ifname),
        // A link whose attach failed before the alias was set: its MAC, derived from the
        // same owner at creation, identifies it.
        None => l.mac == Some(derived_mac("host", container_id, ifname)),
    }
}

/// Delete the host end of `(container_id, ifname)` if it exists and is ours.
async fn remove_host(nl: &Nl, container_id: &str, ifname: &str) -> Result<bool, Error> {
    let host = host_ifname(container_id, ifname);
    match nl.link(&host).await? {
        None => Ok(false),
        Some(l) if owned_by(&l, container_id, ifname) => {
            // Deleting the host end deletes the pod end (a veth pair dies together) and with
            // them every address, route and neighbour entry attach put on either end.
            nl.delete_link(&host).await
        }
        Some(l) => Err(Error::NotOwned {
            name: host,
            expected: owner_alias(container_id, ifname),
            found: l.alias,
        }),
    }
}

pub(crate) fn detach(node: &Node, spec: &EndpointSpec) -> Result<(), Errors> {
    let mut errors = Vec::new();
    if let Err(e) = validate_owner(&spec.container_id, &spec.ifname) {
        errors.push(e);
    }
    if let Err(r) = validate_ifname(&spec.ifname) {
        errors.push(invalid("ifname", r));
    }
    if !errors.is_empty() {
        return Err(Errors(errors));
    }
    let result = node.run(|_| -> Result<(), Error> {
        let fd = socket(Side::Node)?;
        let rt = runtime(Side::Node)?;
        rt.block_on(async {
            let nl = Nl::connect(fd, Side::Node)?;
            // A host end that is gone (already detached, or its pod netns was deleted) is
            // success. A retired pair of the attachment (deferred teardown) goes too.
            remove_host(&nl, &spec.container_id, &spec.ifname).await?;
            crate::retire::remove_retired(&nl, &spec.container_id, &spec.ifname)
                .await
                .map(|_| ())
        })
    });
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) | Err(e) => {
            errors.push(e);
            Err(Errors(errors))
        }
    }
}

/// Every attachment whose host end is in the node (found by the owner alias).
pub fn list_attachments(node: &Node) -> Result<Vec<HostLink>, Error> {
    node.netns().run(|| {
        let fd = socket(Side::Node)?;
        let rt = runtime(Side::Node)?;
        rt.block_on(async { list(&Nl::connect(fd, Side::Node)?).await })
    })?
}

async fn list(nl: &Nl) -> Result<Vec<HostLink>, Error> {
    Ok(nl
        .links()
        .await?
        .into_iter()
        .filter_map(|l| {
            let (container_id, ifname) = parse_owner_alias(l.alias.as_deref()?)?;
            (l.name == host_ifname(&container_id, &ifname)).then_some(HostLink {
                host_ifname: l.name,
                container_id,
                ifname,
            })
        })
        .collect())
}

/// Garbage-collect: detach every attachment on the node whose `(container_id, ifname)` is
/// not in `valid` (CNI GC's `cni.dev/valid-attachments`). Returns what was removed; on
/// errors, keeps going and returns all of them.
pub fn gc(node: &Node, valid: &[(String, String)]) -> Result<Vec<HostLink>, Errors> {
    let result = node
        .netns()
        .run(|| -> Result<(Vec<HostLink>, Vec<Error>), Error> {
            let fd = socket(Side::Node)?;
            let rt = runtime(Side::Node)?;
            rt.block_on(async {
                let nl = Nl::connect(fd, Side::Node)?;
                let mut removed = Vec::new();
                let mut errors = Vec::new();
                for h in list(&nl).await? {
                    if valid
                        .iter()
                        .any(|(c, i)| *c == h.container_id && *i == h.ifname)
                    {
                        continue;
                    }
                    match remove_host(&nl, &h.container_id, &h.ifname).await {
                        Ok(_) => removed.push(h),
                        Err(e) => errors.push(e),
                    }
                }
                Ok((removed, errors))
            })
        });
    match result {
        Ok(Ok((removed, errors))) if errors.is_empty() => Ok(removed),
        Ok(Ok((_, errors))) => Err(Errors(errors)),
        Ok(Err(e)) | Err(e) => Err(Errors(vec![e])),
    }
}

pub(crate) fn check<M: IntraNode + ?Sized>(
    mode: &M,
    node: &Node,
    spec: &EndpointSpec,
) -> Result<Vec<Difference>, Error> {
    let keys = mode.plan(spec, spec.mtu.unwrap_or(FALLBACK_MTU))?;
    let ns = node.netns();
    ns.run(|| {
        let node_fd = socket(Side::Node)?;
        let (pod_fd, pod_sysctls) = match Netns::open(&spec.netns) {
            Ok(pod_ns) => (
                Some(pod_socket(ns, &pod_ns, false)?),
                read_sysctls_in(&pod_ns, ns, &keys.pod_sysctls)?,
            ),
            Err(_) => (None, Vec::new()),
        };
        let rt = runtime(Side::Node)?;
        rt.block_on(async {
            let node_nl = Nl::connect(node_fd, Side::Node)?;
            let mtu = match spec.mtu {
                Some(m) => m,
                None => uplink_mtu(&node_nl, mode.uplink()).await?,
            };
            let plan = mode.plan(spec, mtu)?;
            let mut node_links = vec![plan.veth.host.as_str()];
            if let Some(b) = &plan.bridge {
                node_links.push(&b.name);
            }
            let mut observed = Observed {
                node: node_nl.state(&node_links).await?,
                pod: None,
                sysctls: plan
                    .sysctls
                    .iter()
                    .map(|s| (s.key.clone(), std::fs::read_to_string(s.proc_path()).ok()))
                    .collect(),
                pod_sysctls,
            };
            if let Some(fd) = pod_fd {
                let pod_nl = Nl::connect(fd, Side::Pod)?;
                observed.pod = Some(pod_nl.state(&[plan.veth.pod.as_str()]).await?);
            }
            Ok(diff(&plan, &observed, &spec.netns))
        })
    })?
}

/// Delete a link by name in the node namespace (`Ok(false)`: it did not exist).
pub(crate) fn delete_node_link(node: &Node, name: &str) -> Result<bool, Error> {
    node.netns().run(|| {
        let fd = socket(Side::Node)?;
        let rt = runtime(Side::Node)?;
        rt.block_on(async { Nl::connect(fd, Side::Node)?.delete_link(name).await })
    })?
}
