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

pub mod check;
mod error;
mod mode;
pub mod netns;
mod nl;
pub mod plan;
mod shell;
mod spec;

pub use check::Difference;
pub use error::{Error, Errors, Side};
pub use mode::{Attachment, BridgeMode, IntraNode, Node, TransparentMode};
pub use netns::Netns;
pub use plan::{EndpointPlan, V4_LINK_GATEWAY, V6_LINK_GATEWAY};
pub use shell::FALLBACK_MTU;
pub use spec::{EndpointSpec, MacAddr, derived_mac, fnv1a64, host_ifname, validate_ifname};
