//! The face others call: [`IntraNode`] with [`BridgeMode`] and [`TransparentMode`], acting
//! on a [`Node`] (the network namespace that holds host ends, host routes and the bridge).

use std::net::IpAddr;
use std::path::Path;

use ipnetwork::IpNetwork;

use crate::check::Difference;
use crate::error::{Error, Errors};
use crate::netns::Netns;
use crate::plan::{EndpointPlan, plan_bridge, plan_transparent};
use crate::shell;
use crate::spec::{EndpointSpec, MacAddr, invalid, validate_ifname};

/// The node side of attachments: a network namespace. Operations never change the calling
/// thread's namespace; they run on a short-lived thread that enters this one.
#[derive(Debug)]
pub struct Node {
    ns: Netns,
    on_calling_thread: bool,
}

impl Node {
    /// The namespace of the calling thread (usually the host's, for a CNI plugin).
    pub fn current() -> Result<Node, Error> {
        Ok(Node::from_netns(Netns::current_thread()?))
    }

    /// The namespace bound at `path` (tests and labs use a private node namespace).
    pub fn open(path: impl AsRef<Path>) -> Result<Node, Error> {
        Ok(Node::from_netns(Netns::open(path)?))
    }

    /// Wrap an open namespace.
    pub fn from_netns(ns: Netns) -> Node {
        Node {
            ns,
            on_calling_thread: false,
        }
    }

    /// Run attach, detach and retire on the calling thread when it is in this namespace,
    /// instead of on a short-lived worker thread (which costs a thread start and a
    /// cross-CPU wake-up per operation). The calling thread then enters the pod namespace
    /// for a moment (to open its netlink socket, or to write an IPv6 interface sysctl) and
    /// comes back; if it cannot come back the process aborts rather than run on in the
    /// wrong namespace. Only for a thread that is its own: a CNI plugin's main thread, not
    /// a tokio worker or blocking-pool thread, and not inside an async runtime (the
    /// operation runs its own current-thread runtime).
    pub fn on_calling_thread(mut self) -> Node {
        self.on_calling_thread = true;
        self
    }

    /// The namespace.
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// Run `f` inside this namespace: on the calling thread (see
    /// [`Node::on_calling_thread`]; `f` is told `true`) or on a worker thread (`false`).
    pub(crate) fn run<F, R>(&self, f: F) -> Result<R, Error>
    where
        F: FnOnce(bool) -> R + Send,
        R: Send,
    {
        if self.on_calling_thread && self.ns.is_current_thread() {
            Ok(f(true))
        } else {
            self.ns.run(|| f(false))
        }
    }
}

/// What attach created, for the CNI result and for later calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Host end of the veth pair (in the node namespace).
    pub host_ifname: String,
    /// Its MAC.
    pub host_mac: MacAddr,
    /// Pod end (in the pod namespace).
    pub pod_ifname: String,
    /// Its MAC.
    pub pod_mac: MacAddr,
    /// Its interface index inside the pod namespace.
    pub pod_ifindex: u32,
    /// MTU of both ends.
    pub mtu: u32,
    /// Addresses as configured in the pod (transparent mode: /32 and /128).
    pub addresses: Vec<IpNetwork>,
    /// The default gateway per address family as the pod sees it.
    pub gateways: Vec<IpAddr>,
    /// The full plan that was executed.
    pub plan: EndpointPlan,
}

/// A host veth created by cnet-route, as found on the node (see
/// [`list_attachments`](crate::list_attachments)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLink {
    /// Host interface name.
    pub host_ifname: String,
    /// Owner: container id.
    pub container_id: String,
    /// Owner: interface name in the pod.
    pub ifname: String,
}

/// Attaches pods to a node. Implementations differ only in their [`plan`](Self::plan); the
/// provided methods execute, tear down and verify that plan over netlink.
///
/// They block the calling thread (the work runs on a dedicated thread with its own
/// current-thread runtime); from async code, call them through `spawn_blocking`.
pub trait IntraNode: Sync {
    /// The pure plan for `spec` with the given MTU.
    fn plan(&self, spec: &EndpointSpec, mtu: u32) -> Result<EndpointPlan, Error>;

    /// The interface whose MTU is the default (`None`: the link of the default route).
    fn uplink(&self) -> Option<&str>;

    /// Create the pod's interface and everything it needs. On error nothing created by this
    /// call is left behind (the node bridge and node-wide sysctls, being shared, stay).
    fn attach(&self, node: &Node, spec: &EndpointSpec) -> Result<Attachment, Error> {
        shell::attach(self, node, spec, &mut || Ok(()))
    }

    /// [`attach`](Self::attach), calling `gate` once the veth pair exists and its pod end is
    /// configured, and before the host end goes up: a veth carries nothing while one of its
    /// ends is down (no carrier on the other; what the pod end sends is dropped), and the
    /// host end gets its routes and neighbour entries only after it is up, so nothing the
    /// pod sends or receives can pass before `gate` returned `Ok`. A caller can finish work
    /// the pod's traffic depends on (e.g. its policy) concurrently with the link creation.
    /// `Err(reason)` stops the attach ([`Error::Gate`]) and deletes the pair; `gate` is not
    /// called when the attach fails earlier.
    fn attach_gated(
        &self,
        node: &Node,
        spec: &EndpointSpec,
        gate: &mut (dyn FnMut() -> Result<(), String> + Send),
    ) -> Result<Attachment, Error> {
        shell::attach(self, node, spec, gate)
    }

    /// Remove the attachment. Idempotent: a missing link or pod namespace is success. Only
    /// `container_id` and `ifname` of the spec are needed. Best effort: returns every error.
    fn detach(&self, node: &Node, spec: &EndpointSpec) -> Result<(), Errors> {
        shell::detach(node, spec)
    }

    /// What is missing or different from what attach would have created (empty: all good).
    fn check(&self, node: &Node, spec: &EndpointSpec) -> Result<Vec<Difference>, Error> {
        shell::check(self, node, spec)
    }
}

/// Bridge mode: host ends are ports of a Linux bridge that holds the gateway address(es).
///
/// `br_netfilter` (default `false`) sets `net.bridge.bridge-nf-call-iptables` and
/// `-ip6tables` in the node namespace. Off: pod-to-pod traffic on the bridge is seen only by
/// nftables' `bridge` family (where cnet-policy matches it by address), and not a second
/// time by the `inet` hooks with the bridge as `iifname`. Routed traffic (pod to node or
/// beyond) reaches the `inet` hooks either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeMode {
    /// Bridge name.
    pub bridge: String,
    /// Whether bridged traffic also traverses the ip/ip6 netfilter hooks.
    pub br_netfilter: bool,
    /// Interface whose MTU is the default (`None`: the default route's link).
    pub uplink: Option<String>,
}

impl BridgeMode {
    /// Bridge mode with the given bridge, br_netfilter off, uplink from the default route.
    pub fn new(bridge: impl Into<String>) -> BridgeMode {
        BridgeMode {
            bridge: bridge.into(),
            br_netfilter: false,
            uplink: None,
        }
    }

    /// Delete the bridge (after its last pod; for labs and tests). Missing is success.
    pub fn remove_bridge(&self, node: &Node) -> Result<(), Error> {
        validate_ifname(&self.bridge).map_err(|r| invalid("bridge", r))?;
        shell::delete_node_link(node, &self.bridge).map(|_| ())
    }
}

impl IntraNode for BridgeMode {
    fn plan(&self, spec: &EndpointSpec, mtu: u32) -> Result<EndpointPlan, Error> {
        plan_bridge(spec, &self.bridge, self.br_netfilter, mtu)
    }
    fn uplink(&self) -> Option<&str> {
        self.uplink.as_deref()
    }
}

/// Transparent mode: no bridge; a host route per pod address to the host veth; link-local
/// gateways in the pod behind permanent neighbour entries. Pod-to-pod traffic on one node
/// is routed through the node, so policy sees it per host interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransparentMode {
    /// Interface whose MTU is the default (`None`: the default route's link).
    pub uplink: Option<String>,
}

impl TransparentMode {
    /// Transparent mode, MTU from the default route's link.
    pub fn new() -> TransparentMode {
        TransparentMode::default()
    }
}

impl IntraNode for TransparentMode {
    fn plan(&self, spec: &EndpointSpec, mtu: u32) -> Result<EndpointPlan, Error> {
        plan_transparent(spec, mtu)
    }
    fn uplink(&self) -> Option<&str> {
        self.uplink.as_deref()
    }
}
