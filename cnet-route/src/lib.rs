//! cnet-route attaches a pod's network namespace to its node, in *bridge* or *transparent*
//! mode, over rtnetlink — and detaches and checks it.
//!
//! The crate is a pure core ([`plan`]: which links, addresses, routes, neighbour entries and
//! sysctls a mode needs; [`check::diff`]: how the kernel's state differs from a plan) and a
//! thin IO shell that executes plans on a dedicated thread inside the node namespace.
//!
//! ```no_run
//! use cnet_route::{EndpointSpec, IntraNode, Node, TransparentMode};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::current()?; // or Node::open("/var/run/netns/node1")
//! let spec = EndpointSpec::new(
//!     "c0ffee",                  // container id
//!     "eth0",                    // interface name in the pod
//!     "/var/run/netns/pod1",     // pod netns (CNI_NETNS)
//!     vec!["10.1.0.5/24".parse()?, "fd00:1::5/64".parse()?],
//! );
//! let mode = TransparentMode::new();
//! let att = mode.attach(&node, &spec)?;
//! println!("{} <-> {} mtu {}", att.host_ifname, att.pod_ifname, att.mtu);
//! assert!(mode.check(&node, &spec)?.is_empty());
//! mode.detach(&node, &spec)?;
//! mode.detach(&node, &spec)?; // idempotent
//! # Ok(())
//! # }
//! ```
//!
//! The pure plan needs no root:
//!
//! ```
//! let spec = cnet_route::EndpointSpec::new(
//!     "c0ffee", "eth0", "/var/run/netns/pod1", vec!["10.1.0.5/24".parse().unwrap()]);
//! let plan = cnet_route::plan::plan_transparent(&spec, 1500).unwrap();
//! assert_eq!(plan.routes[1].to_string(), "default via 169.254.1.1 dev eth0");
//! assert_eq!(plan.veth.host, cnet_route::host_ifname("c0ffee", "eth0"));
//! ```
//!
//! # Decisions and kernel facts this crate relies on
//! - **One thread per call.** attach/detach/check run on a short-lived OS thread that enters
//!   the node netns; the pod's socket is opened after a brief `setns` into the pod netns on
//!   that thread. Node-side and pod-side requests then run concurrently on one
//!   current-thread tokio runtime. The caller's thread never changes namespace.
//! - **The pod end is created in place**: one RTM_NEWLINK carries the peer's netns fd. The
//!   peer cannot be created *up* (the kernel refuses to open a veth whose pair is not linked
//!   yet: ENOTCONN), so it is set up afterwards, in the pod netns.
//! - **Names and MACs are derived** from `(container_id, ifname)` with FNV-1a (stable across
//!   runs): host end `cnetXXXXXXXX`, locally administered MACs for both ends and the bridge.
//!   The pod's gateway neighbour entry therefore needs no lookup of the host MAC, and the
//!   bridge's MAC never changes as ports come and go.
//! - **Indexes without lookups**: the veth RTM_NEWLINK carries NLM_F_ECHO; the echoed host
//!   link gives its index and, in IFLA_LINK, the pod end's (kernels before 6.3 do not echo:
//!   then both are looked up by name).
//! - **IPv6 without DAD delay**: pod and bridge addresses carry `IFA_F_NODAD`; the pod end
//!   (`accept_dad=0`, `accept_ra=0`) and the host veth of transparent mode (`accept_dad=0`)
//!   are configured before they go up, so nothing is ever tentative. The pod end also gets
//!   `arp_notify=1`: a reused address with a new MAC is announced when it comes up.
//! - **Transparent mode**: the pod holds its addresses as /32 and /128, a scope-link route to
//!   169.254.1.1 before the default route through it, a default route via `fe80::1`, and
//!   permanent neighbour entries for both gateways pointing at the host veth's MAC. The host
//!   veth has `proxy_arp=1`, `proxy_ndp=1` and a proxy entry for `fe80::1` as a fallback.
//! - **Bridge mode and br_netfilter**: off by default ([`BridgeMode::br_netfilter`]), set
//!   explicitly in the node netns, so bridged pod-to-pod traffic is seen by the nftables
//!   `bridge` family only, not a second time by the `inet` hooks with the bridge as
//!   `iifname`.
//! - **Sysctls are set, never assumed**: `ip_forward` / `conf.all.forwarding` per family in
//!   use and the host-veth keys inside the node netns, the pod-end keys inside the pod netns
//!   (by a brief `setns` of the worker thread); CHECK reads them all back.
//! - **Default MTU** ([`FALLBACK_MTU`] otherwise): the configured uplink's, else that of the
//!   link a route *lookup* for a documentation address (192.0.2.1, then 2001:db8::1) resolves
//!   to — the default route's link, found without dumping a table that grows with pods.
//! - **Ownership without state**: the host end carries the alias `cnet:<container_id>:<ifname>`
//!   (set with the request that sets it up; the kernel ignores an alias at creation). Detach
//!   deletes only a link it owns (alias, or the derived MAC before the alias is set), and
//!   [`list_attachments`] / [`gc`] find attachments from the aliases alone.
//! - **Detach is one RTM_GETLINK (ownership) and one RTM_DELLINK** of the host end: the kernel removes the pod end and every
//!   address, route and neighbour entry on either end with it. Its time is dominated by the
//!   kernel's synchronous netdev unregister (an RCU barrier, ~10–20 ms here), the same floor
//!   every veth-based plugin pays.
//! - **Deferred teardown** ([`retire`], [`reap`], [`reap_retired`]): a caller that must not
//!   wait for that unregister retires the host end instead — down (the kernel drops every
//!   route, neighbour and proxy entry through it) and renamed to `cnetx…` — and deletes the
//!   pair later. Attach deletes a retired pair of the same attachment when it holds the pod
//!   end's name (EEXIST), detach deletes it too.

pub mod check;
mod error;
mod mode;
mod netconf;
pub mod netns;
mod nl;
pub mod plan;
pub mod retire;
mod rtsync;
mod shell;
mod spec;

pub use check::Difference;
pub use error::{Error, Errors, Side};
pub use mode::{Attachment, BridgeMode, HostLink, IntraNode, Node, TransparentMode};
pub use netns::Netns;
pub use plan::{EndpointPlan, V4_LINK_GATEWAY, V6_LINK_GATEWAY};
pub use retire::{RETIRED_PREFIX, reap, reap_retired, retire, retired_ifname};
pub use shell::{FALLBACK_MTU, gc, list_attachments};
pub use spec::{
    EndpointSpec, MacAddr, OWNER_PREFIX, PodRoute, derived_mac, fnv1a64, host_ifname, owner_alias,
    parse_owner_alias, validate_ifname,
};
