//! Host endpoints: Calico `HostEndpoint` objects and the policies that apply to them.
//!
//! A host endpoint is a node interface (`interfaceName`) with labels. GlobalNetworkPolicies
//! select host endpoints with their `selector` (evaluated on the host endpoint's labels, with
//! `global()` true; a policy with a `namespaceSelector`, and every namespaced NetworkPolicy,
//! selects no host endpoint). What applies, following Calico's host endpoint reference:
//!
//! * Normal policies: traffic between the host and the network through the interface —
//!   ingress on `input`, egress on `output`. A host endpoint that no policy selects for a
//!   direction denies that direction (except the failsafe ports).
//! * `applyOnForward: true` policies also apply to forwarded traffic through the interface
//!   (ingress: arriving on it, egress: leaving by it). Forwarded traffic is allowed in a
//!   direction when no `applyOnForward` policy selects the endpoint for it.
//! * `preDNAT: true` policies (ingress only, `applyOnForward` required) apply to traffic
//!   arriving on the interface before destination NAT: `Deny` drops, `Allow` lets the packet
//!   go on to the normal (and forward) policies; without a matching rule it goes on too.
//! * `doNotTrack: true` (untracked) policies ([`HostPolicies::do_not_track`], `applyOnForward`
//!   required) apply before connection tracking: ingress on packets arriving on the interface,
//!   egress on packets the host sends out of it. Allow skips connection tracking and the
//!   normal policies, Deny drops, no match goes on to the normal policies (see
//!   [`crate::compile::compile_host`]). Forwarded packets leaving by the interface are not
//!   judged by untracked egress rules.
//!
//! preDNAT and doNotTrack policies apply to host endpoints only: they are left out of the pod
//! pipeline ([`super::CalicoObjects::policy_set`]). In the other direction, rule selectors
//! (for pods as for host endpoints) match a host endpoint's `expectedIPs`, as they match a
//! global network set's nets.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::CalicoObjects;
use super::api::{self, Object, PolicySpec};
use crate::error::Result;
use crate::model::{EndpointSelector, Labels, NamespaceMatch, PolicyId, PolicySet, Selector};

/// A node interface policy can apply to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEndpoint {
    /// Object name.
    pub name: String,
    /// Node the interface belongs to.
    pub node: String,
    /// Interface name (`*`: every interface of the node).
    pub interface: Option<String>,
    /// The interface's addresses.
    pub expected_ips: Vec<IpAddr>,
    /// Labels policy selectors match.
    pub labels: Labels,
}

impl HostEndpoint {
    /// Whether a policy subject selects this host endpoint: only cluster-wide subjects do,
    /// their pod selector evaluated on the endpoint's labels with `global()` true.
    pub fn selected_by(&self, sel: &EndpointSelector) -> bool {
        if sel.namespaces != NamespaceMatch::Any {
            return false;
        }
        match &sel.pods {
            Selector::All => true,
            Selector::Labels(reqs) => reqs.iter().all(|r| r.matches(&self.labels)),
            Selector::Calico(e) => e.eval(&self.labels, true),
        }
    }
}

/// Host endpoints and the GlobalNetworkPolicies that can apply to them, per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPolicies {
    /// Host endpoints.
    pub endpoints: Vec<HostEndpoint>,
    /// Normal GlobalNetworkPolicies in tiers (host traffic; forwarded traffic for those in
    /// `apply_on_forward`).
    pub normal: PolicySet,
    /// Normal policies with `applyOnForward: true`.
    pub apply_on_forward: BTreeSet<PolicyId>,
    /// `preDNAT: true` policies in tiers (ingress only).
    pub pre_dnat: PolicySet,
    /// `doNotTrack: true` policies in tiers (compiled to raw-priority chains).
    pub do_not_track: PolicySet,
}

/// Whether a policy object is for host endpoints only (preDNAT or doNotTrack).
pub(super) fn host_only(o: &Object<PolicySpec>) -> bool {
    o.spec.pre_dnat || o.spec.do_not_track
}

impl CalicoObjects {
    /// The host endpoints and the policies that may apply to them (see the module docs).
    pub fn host_policies(&self) -> Result<HostPolicies> {
        let global: Vec<&Object<PolicySpec>> = self
            .policies
            .iter()
            .filter(|o| o.kind == "GlobalNetworkPolicy")
            .collect();
        let pick = |f: &dyn Fn(&api::PolicySpec) -> bool| -> Vec<Object<PolicySpec>> {
            global
                .iter()
                .filter(|o| f(&o.spec))
                .map(|o| (*o).clone())
                .collect()
        };
        let tiers = |list: Vec<Object<PolicySpec>>| -> Result<PolicySet> {
            Ok(PolicySet {
                tiers: self
                    .calico_tiers(&list)?
                    .into_iter()
                    .map(|t| t.2)
                    .filter(|t| !t.policies.is_empty())
                    .collect(),
            })
        };
        let normal = pick(&|s| !s.pre_dnat && !s.do_not_track);
        let apply_on_forward = normal
            .iter()
            .filter(|o| o.spec.apply_on_forward)
            .map(|o| PolicyId {
                kind: crate::model::PolicyKind::GlobalNetworkPolicy,
                namespace: None,
                name: o.metadata.name.clone(),
            })
            .collect();
        let mut endpoints = Vec::new();
        for o in &self.host_endpoints {
            endpoints.push(HostEndpoint {
                name: o.metadata.name.clone(),
                node: o.spec.node.clone(),
                interface: o.spec.interface_name.clone(),
                expected_ips: o
                    .spec
                    .expected_ips
                    .iter()
                    .filter_map(|a| a.parse().ok())
                    .collect(),
                labels: o.metadata.labels.clone(),
            });
        }
        Ok(HostPolicies {
            endpoints,
            normal: tiers(normal)?,
            apply_on_forward,
            pre_dnat: tiers(pick(&|s| s.pre_dnat))?,
            do_not_track: tiers(pick(&|s| s.do_not_track))?,
        })
    }
}
