//! The Calico-style model (`projectcalico.org/v3`): NetworkPolicy, GlobalNetworkPolicy,
//! Tier, NetworkSet, GlobalNetworkSet, HostEndpoint and the staged policy kinds, with our own
//! parser for Calico's [`selector`] language, validation, and normalisation into the shared
//! [`crate::model`] tiers.
//!
//! # Where Calico tiers go in the pipeline
//!
//! Calico tiers are ordered by `spec.order` (lower first, unset last, ties by name). The
//! AdminNetworkPolicy tier takes part in that ordering at order [`ANP_TIER_ORDER`] (1000, the
//! order Calico gives its own `adminnetworkpolicy` tier), so a Calico tier with order < 1000
//! is consulted before every ANP and one with a higher order after them. All Calico tiers,
//! including `default` (order 1,000,000 unless a Tier object says otherwise), come before the
//! Kubernetes NetworkPolicy tier, which is followed by the BaselineAdminNetworkPolicy tier.
//! (In Calico proper, Kubernetes NetworkPolicies share the `default` tier; here they form
//! their own tier right after it, as the cnet pipeline prescribes.)
//!
//! Inside a tier, policies run by `order` (lower first, unset last, ties by name). The
//! first matching rule decides: `Allow`/`Deny` end evaluation, `Pass` skips to the next tier,
//! `Log` records and continues. An endpoint that a tier's policies select (for the direction)
//! and that no rule decided gets the tier's `defaultAction` (`Deny` unless the Tier says
//! `Pass`). Staged policies never enforce: see [`CalicoObjects::staged_policy_set`].
//!
//! Host endpoints: see [`host`] (normal, `applyOnForward`, `preDNAT` and `doNotTrack`
//! policies compile to their own table). Not yet covered: the
//! implicit Calico labels (`projectcalico.org/namespace`, ...) are not added; rules with
//! `services`, `http` or source ports are rejected. Service accounts (`serviceAccountSelector`,
//! rule `serviceAccounts`) select on the labels [`crate::Endpoint::with_service_account`] sets
//! (`projectcalico.org/serviceaccount`, `pcsa.<key>`), as Calico does. Rules that need an
//! [`crate::model::ExtendedMatch`] (notSelector, notNets, notPorts, notProtocol, ICMP
//! type/code, destination conditions, selector with nets) are evaluated and compiled (see
//! the compiler's `compile_ext` module).
//!
//! ```
//! use cnet_policy::calico::{selector, CalicoObjects};
//! use cnet_policy::parse::{parse_yaml_objects, ApiObject};
//!
//! let e = selector::parse("app == 'db' && env in {'prod', 'stage'}")?;
//! let labels = [("app", "db"), ("env", "prod")].map(|(k, v)| (k.to_string(), v.to_string()));
//! assert!(e.matches(&labels.into_iter().collect()));
//! assert_eq!(selector::parse("app = 'db'").unwrap_err().column, 5);
//!
//! let mut calico = CalicoObjects::default();
//! for o in parse_yaml_objects(
//!     "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: db}\n\
//!      spec:\n  selector: app == 'db'\n  ingress:\n  - action: Deny\n    protocol: UDP\n",
//! )? {
//!     if let ApiObject::Other { value, .. } = o {
//!         calico.add_value(value)?;
//!     }
//! }
//! let set = calico.policy_set(&[], &[])?; // + Kubernetes NetworkPolicies and ANP/BANP
//! assert_eq!(set.tiers[0].name, "default");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod api;
pub mod host;
mod normalize;
pub mod selector;

pub use normalize::{ANP_TIER_ORDER, CalicoObjects, DEFAULT_TIER_ORDER};

/// Calico kinds this module accepts.
pub const KINDS: &[&str] = &[
    "NetworkPolicy",
    "GlobalNetworkPolicy",
    "StagedNetworkPolicy",
    "StagedGlobalNetworkPolicy",
    "Tier",
    "NetworkSet",
    "GlobalNetworkSet",
    "HostEndpoint",
];
