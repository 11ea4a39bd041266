//! The normalised policy model that the evaluator and the nftables compiler consume.
//!
//! It is plain, deterministic data (sorted collections, no hash maps) built to be extended:
//!
//! * A [`PolicySet`] is an ordered list of [`Tier`]s. For one endpoint and one direction, tiers
//!   are consulted in order; a tier in which no policy selects the endpoint has no opinion.
//! * Inside a tier, the policies that select the endpoint are consulted in order, and their
//!   rules in order: the first rule that matches decides with its [`Action`] — `Allow` and
//!   `Deny` end the evaluation, `Pass` skips to the next tier, `Log` records and continues.
//! * When no rule of a tier decides, the tier's [`TierDefault`] applies to the endpoints the
//!   tier selected: `Deny` (Kubernetes NetworkPolicy: selected pods are isolated) or `Pass`
//!   (AdminNetworkPolicy: fall through).
//! * After the last tier, the flow is allowed (Kubernetes: a pod no policy selects is open).
//!
//! Kubernetes NetworkPolicies become one tier ([`TierKind::NetworkPolicy`]) with only `Allow`
//! rules and a `Deny` default. AdminNetworkPolicy (a tier before, ordered by priority),
//! BaselineAdminNetworkPolicy (a tier after) and Calico tiers fit the same shape, as do peers
//! that are nodes or network sets: [`Selector`], [`Peer`] and [`PolicyKind`] are enums meant to
//! grow.

use ipnetwork::IpNetwork;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

/// Labels of an endpoint, namespace or node.
pub type Labels = BTreeMap<String, String>;

/// All policies, as ordered tiers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySet {
    /// Tiers in evaluation order.
    pub tiers: Vec<Tier>,
}

/// Where a tier's policies come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TierKind {
    /// `policy.networking.k8s.io` AdminNetworkPolicy (before NetworkPolicy).
    AdminNetworkPolicy,
    /// Kubernetes `networking.k8s.io/v1` NetworkPolicy.
    NetworkPolicy,
    /// `policy.networking.k8s.io` BaselineAdminNetworkPolicy (after NetworkPolicy).
    BaselineAdminNetworkPolicy,
    /// A `projectcalico.org/v3` Tier (interleaved with the AdminNetworkPolicy tier by order).
    Calico,
}

/// What a tier does for an endpoint it selects when none of its rules decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TierDefault {
    /// Drop (Kubernetes NetworkPolicy isolation, Calico end-of-tier drop).
    Deny,
    /// Continue with the next tier (AdminNetworkPolicy).
    Pass,
}

/// An ordered group of policies with a default for the endpoints they select.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    /// Tier name, e.g. `kubernetes`.
    pub name: String,
    /// Source of the policies.
    pub kind: TierKind,
    /// Policies in evaluation order.
    pub policies: Vec<Policy>,
    /// Applied to selected endpoints when no rule decides.
    pub default: TierDefault,
}

/// Which API a policy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyKind {
    /// `networking.k8s.io/v1` NetworkPolicy.
    NetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha1` AdminNetworkPolicy.
    AdminNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha1` BaselineAdminNetworkPolicy.
    BaselineAdminNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha2` ClusterNetworkPolicy (either tier).
    ClusterNetworkPolicy,
    /// `projectcalico.org/v3` NetworkPolicy (namespaced).
    CalicoNetworkPolicy,
    /// `projectcalico.org/v3` GlobalNetworkPolicy.
    GlobalNetworkPolicy,
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PolicyKind::NetworkPolicy => "NetworkPolicy",
            PolicyKind::AdminNetworkPolicy => "AdminNetworkPolicy",
            PolicyKind::BaselineAdminNetworkPolicy => "BaselineAdminNetworkPolicy",
            PolicyKind::ClusterNetworkPolicy => "ClusterNetworkPolicy",
            PolicyKind::CalicoNetworkPolicy => "projectcalico.org/NetworkPolicy",
            PolicyKind::GlobalNetworkPolicy => "GlobalNetworkPolicy",
        })
    }
}

/// A policy's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyId {
    /// Source API.
    pub kind: PolicyKind,
    /// Namespace for namespaced policies, `None` for cluster-scoped ones.
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Traffic direction, seen from the selected endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// Traffic arriving at the endpoint.
    Ingress,
    /// Traffic leaving the endpoint.
    Egress,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        })
    }
}

/// One policy: whom it selects and, per direction, its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Identity.
    pub id: PolicyId,
    /// The endpoints the policy applies to.
    pub subject: EndpointSelector,
    /// `Some` when the policy applies to ingress (an empty list isolates without allowing).
    pub ingress: Option<Vec<Rule>>,
    /// `Some` when the policy applies to egress.
    pub egress: Option<Vec<Rule>>,
}

impl Policy {
    /// The rules for a direction, `None` when the policy does not apply to it.
    pub fn rules(&self, dir: Direction) -> Option<&[Rule]> {
        match dir {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Accept; evaluation ends for this direction.
    Allow,
    /// Drop silently; evaluation ends.
    Deny,
    /// Skip the rest of this tier.
    Pass,
    /// Record and continue with the next rule.
    Log,
}

/// A rule: when the other side matches `peers` and the destination port matches `ports`,
/// apply `action`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rule {
    /// What happens on a match.
    pub action: Action,
    /// The other side of the flow (source for ingress, destination for egress).
    pub peers: PeerSet,
    /// Destination protocol/port.
    pub ports: PortSet,
}

/// A set of peers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerSet {
    /// Every source/destination.
    Any,
    /// Any of these (an empty list matches nothing).
    Only(Vec<Peer>),
    /// A Calico-style rule match on both ends of the flow and the protocol (see
    /// [`ExtendedMatch`]); the rule's `ports` still apply (AND).
    Extended(Box<ExtendedMatch>),
}

/// A rule match on source and destination (each: endpoints, network sets, nets, ports and
/// their negations) and protocol, as Calico rules express it. Every present condition must
/// hold.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExtendedMatch {
    /// IP protocol numbers of which the flow's must be one (`None`: any).
    pub protocol: Option<u8>,
    /// IP protocol number the flow's must not be.
    pub not_protocol: Option<u8>,
    /// ICMP type/code the flow must carry (only ICMP flows can match).
    pub icmp: Option<IcmpMatch>,
    /// ICMP type/code the flow must not carry (non-ICMP flows always satisfy it).
    pub not_icmp: Option<IcmpMatch>,
    /// Conditions on the source.
    pub source: EntityMatch,
    /// Conditions on the destination.
    pub destination: EntityMatch,
}

/// ICMP type and optional code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IcmpMatch {
    /// ICMP type.
    pub icmp_type: u8,
    /// ICMP code.
    pub code: Option<u8>,
}

/// Conditions on one end of a flow.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntityMatch {
    /// When set, the address must belong to a pod this selects or be inside one of
    /// `selected_sets`.
    pub selector: Option<EndpointSelector>,
    /// Network sets the selector matched (resolved when normalising).
    pub selected_sets: Vec<NetSetRef>,
    /// When set, the address must belong to no pod this selects and lie in none of `not_sets`.
    pub not_selector: Option<EndpointSelector>,
    /// Network sets the not-selector matched.
    pub not_sets: Vec<NetSetRef>,
    /// When non-empty, the address must be in one of these.
    pub nets: Vec<IpNetwork>,
    /// The address must be in none of these.
    pub not_nets: Vec<IpNetwork>,
    /// When non-empty, the port (destination port for the destination, source port for the
    /// source) must match one.
    pub ports: Vec<PortMatch>,
    /// The port must match none of these.
    pub not_ports: Vec<PortMatch>,
}

/// A network set's CIDRs, with the namespace of a namespaced set (checked against the
/// selector's namespace match at evaluation time).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NetSetRef {
    /// Namespace (`None` for a global network set).
    pub namespace: Option<String>,
    /// Set name.
    pub name: String,
    /// Its CIDRs.
    pub nets: Vec<IpNetwork>,
}

/// One peer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Peer {
    /// Pod endpoints selected by namespace and labels (never host-network pods).
    Endpoints(EndpointSelector),
    /// Addresses in a CIDR minus exceptions (pod addresses included).
    Cidr(CidrBlock),
    /// The addresses of nodes whose labels match.
    Nodes(Selector),
}

/// A CIDR with exceptions; all stored with host bits cleared.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CidrBlock {
    /// The block.
    pub cidr: IpNetwork,
    /// Excluded sub-blocks.
    pub except: Vec<IpNetwork>,
}

impl CidrBlock {
    /// Whether `addr` is in the block and in none of the exceptions.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.cidr.contains(addr) && !self.except.iter().any(|x| x.contains(addr))
    }
}

/// Selects endpoints by namespace and labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EndpointSelector {
    /// Which namespaces.
    pub namespaces: NamespaceMatch,
    /// Which pods in them.
    pub pods: Selector,
}

/// Which namespaces an [`EndpointSelector`] covers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NamespaceMatch {
    /// Every namespace.
    Any,
    /// Exactly this one (a namespaced policy's own namespace).
    Named(String),
    /// Namespaces whose labels match.
    Selector(Selector),
}

/// A label selector; an enum so other selector languages (Calico expressions) can join.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Selector {
    /// Matches everything (an empty Kubernetes selector).
    All,
    /// All requirements must hold (sorted, deduplicated, never empty).
    Labels(Vec<Requirement>),
    /// A Calico selector expression (`global()` is false for pods, namespaces and nodes).
    Calico(crate::calico::selector::Expr),
}

impl Selector {
    /// Whether `labels` satisfy the selector.
    pub fn matches(&self, labels: &Labels) -> bool {
        match self {
            Selector::All => true,
            Selector::Labels(reqs) => reqs.iter().all(|r| r.matches(labels)),
            Selector::Calico(e) => e.matches(labels),
        }
    }

    /// Build from requirements: sorted and deduplicated; none means [`Selector::All`].
    pub fn from_requirements(mut reqs: Vec<Requirement>) -> Selector {
        reqs.sort();
        reqs.dedup();
        if reqs.is_empty() {
            Selector::All
        } else {
            Selector::Labels(reqs)
        }
    }
}

/// One label requirement.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Requirement {
    /// Label key.
    pub key: String,
    /// Condition on the value.
    pub op: LabelOp,
}

/// A condition on one label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LabelOp {
    /// Present with one of these values (`matchLabels` entries become `In` of one value).
    In(BTreeSet<String>),
    /// Absent, or present with none of these values.
    NotIn(BTreeSet<String>),
    /// Present with any value.
    Exists,
    /// Absent.
    DoesNotExist,
}

impl Requirement {
    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.key);
        match &self.op {
            LabelOp::In(vals) => v.is_some_and(|v| vals.contains(v)),
            LabelOp::NotIn(vals) => v.is_none_or(|v| !vals.contains(v)),
            LabelOp::Exists => v.is_some(),
            LabelOp::DoesNotExist => v.is_none(),
        }
    }
}

/// A set of destination ports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortSet {
    /// Every protocol and port.
    Any,
    /// Any of these (never empty when built from Kubernetes policy).
    Only(Vec<PortMatch>),
}

/// A protocol with a port, port range or named port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortMatch {
    /// Protocol; `None` = any protocol that has ports.
    pub protocol: Option<Protocol>,
    /// Which ports.
    pub port: PortSpec,
}

/// Ports of a [`PortMatch`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortSpec {
    /// All ports of the protocol.
    All,
    /// `start..=end`.
    Range {
        /// First port.
        start: u16,
        /// Last port (inclusive).
        end: u16,
    },
    /// A container port name, resolved on the destination endpoint.
    Named(String),
}

/// Transport protocols policy can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// Parse `TCP`/`UDP`/`SCTP` (case-insensitive).
    pub fn parse(s: &str) -> Option<Protocol> {
        match s.to_ascii_uppercase().as_str() {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        })
    }
}
