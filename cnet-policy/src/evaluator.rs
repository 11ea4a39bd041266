//! The evaluator: "is this flow allowed, and why?" from the model alone.
//!
//! Semantics (Kubernetes NetworkPolicy, generalised to tiers as described in [`crate::model`]):
//! the source's egress and the destination's ingress are decided separately and both must
//! allow. For one side, tiers are consulted in order; a side no policy selects is open.
//! Named ports resolve on the destination pod. Peers match pods by labels (never host-network
//! pods, which are node traffic), CIDRs match any address (pod addresses included). Replies of
//! an allowed connection are allowed ([`Evaluator::decide_reply`]). Traffic from a pod's own
//! node to the pod is allowed when [`EvaluatorOptions::allow_from_resident_node`] is set (the
//! default; Kubernetes: pods cannot block access from their resident node).

use crate::endpoint::{Endpoint, EndpointId, Inventory};
use crate::model::*;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

/// A connection attempt: the first packet of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Protocol.
    pub protocol: Protocol,
    /// Destination port.
    pub dst_port: u16,
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The flow passes.
    Allow,
    /// The flow is dropped silently.
    Deny,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        })
    }
}

/// What an address turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowSide {
    /// A pod-network pod.
    Pod(EndpointId),
    /// A node (or a host-network pod on it).
    Node(String, IpAddr),
    /// Anything else.
    External(IpAddr),
}

impl fmt::Display for FlowSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlowSide::Pod(id) => write!(f, "pod {id}"),
            FlowSide::Node(n, a) => write!(f, "node {n} ({a})"),
            FlowSide::External(a) => write!(f, "{a}"),
        }
    }
}

/// A rule, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    /// Tier name.
    pub tier: String,
    /// Policy.
    pub policy: PolicyId,
    /// Direction of the rule list.
    pub direction: Direction,
    /// Index in that list.
    pub index: usize,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} rule {}[{}]", self.policy, self.direction, self.index)
    }
}

/// Why one direction decided as it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SideReason {
    /// This side is not a pod, so no policy applies to it.
    NotAPod,
    /// No policy selects the pod for this direction: open.
    NotSelected,
    /// Every tier that selected the pod passed: allowed by the end-of-pipeline default.
    AllTiersPassed,
    /// Traffic from the pod's own node.
    ResidentNode,
    /// A rule decided.
    Rule(Action, RuleRef),
    /// Selected in a tier, and no rule of that tier matched: the tier default applied.
    TierDefault(String),
}

/// One direction's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SideDecision {
    /// Verdict of this direction.
    pub verdict: Verdict,
    /// Why.
    pub reason: SideReason,
    /// Every policy (all tiers, in order) that selects the pod for this direction.
    pub selected_by: Vec<PolicyId>,
    /// `Log` rules that matched on the way.
    pub logged: Vec<RuleRef>,
}

impl SideDecision {
    fn open(reason: SideReason) -> Self {
        SideDecision {
            verdict: Verdict::Allow,
            reason,
            selected_by: Vec::new(),
            logged: Vec::new(),
        }
    }
}

/// The verdict on a flow with its reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allow only when both egress and ingress allow.
    pub verdict: Verdict,
    /// The flow decided.
    pub flow: Flow,
    /// What the source is.
    pub src: FlowSide,
    /// What the destination is.
    pub dst: FlowSide,
    /// The source's egress decision.
    pub egress: SideDecision,
    /// The destination's ingress decision.
    pub ingress: SideDecision,
    /// Set when this decision is about a reply of an allowed connection.
    pub reply: bool,
}

fn fmt_side(
    f: &mut fmt::Formatter<'_>,
    who: &FlowSide,
    dir: Direction,
    d: &SideDecision,
) -> fmt::Result {
    write!(f, "{dir} of {who}: {} — ", d.verdict)?;
    match &d.reason {
        SideReason::NotAPod => write!(f, "not a pod, no policy applies"),
        SideReason::NotSelected => write!(f, "no policy selects it for {dir}"),
        SideReason::AllTiersPassed => write!(f, "no tier decided (default allow)"),
        SideReason::ResidentNode => write!(f, "traffic from its own node is always allowed"),
        SideReason::Rule(action, r) => {
            let verb = match action {
                Action::Allow => "allowed",
                Action::Deny => "denied",
                Action::Pass => "passed",
                Action::Log => "logged",
            };
            write!(f, "{verb} by {r} (tier {})", r.tier)
        }
        SideReason::TierDefault(tier) => write!(f, "isolated by tier {tier} and no rule allows it"),
    }?;
    if !d.selected_by.is_empty() {
        let names: Vec<String> = d.selected_by.iter().map(ToString::to_string).collect();
        write!(f, "; selected by {}", names.join(", "))?;
    }
    Ok(())
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fl = &self.flow;
        write!(
            f,
            "{} {} -> {}:{}/{}",
            self.verdict, fl.src, fl.dst, fl.dst_port, fl.protocol
        )?;
        if self.reply {
            return write!(f, " (reply of an allowed connection)");
        }
        write!(f, "\n  ")?;
        fmt_side(f, &self.src, Direction::Egress, &self.egress)?;
        write!(f, "\n  ")?;
        fmt_side(f, &self.dst, Direction::Ingress, &self.ingress)
    }
}

/// Evaluator options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvaluatorOptions {
    /// Allow traffic from a pod's own node (including host-network pods there) regardless of
    /// ingress policy. Default `true`.
    pub allow_from_resident_node: bool,
}

impl Default for EvaluatorOptions {
    fn default() -> Self {
        EvaluatorOptions {
            allow_from_resident_node: true,
        }
    }
}

/// Policies and inventory, indexed for per-flow decisions: address → endpoint/node lookups
/// and, per endpoint and direction, the policies selecting it are computed once, so a
/// decision costs O(rules of the selecting policies).
#[derive(Debug, Clone)]
pub struct Evaluator {
    policies: PolicySet,
    inventory: Inventory,
    options: EvaluatorOptions,
    ns_labels: BTreeMap<String, Labels>,
    pod_by_addr: HashMap<IpAddr, EndpointId>,
    node_by_addr: HashMap<IpAddr, String>,
    /// endpoint → [ingress, egress] selecting (tier, policy) indices, in evaluation order.
    selection: HashMap<EndpointId, [Vec<(usize, usize)>; 2]>,
}

/// Per tier: policies whose subject names one namespace, by namespace; and the rest.
type TierIndex<'a> = (BTreeMap<&'a str, Vec<usize>>, Vec<usize>);

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
}

impl Evaluator {
    /// Index a policy set against an inventory with default options.
    pub fn new(policies: PolicySet, inventory: Inventory) -> Self {
        Self::with_options(policies, inventory, EvaluatorOptions::default())
    }

    /// Index with explicit options.
    pub fn with_options(
        policies: PolicySet,
        inventory: Inventory,
        options: EvaluatorOptions,
    ) -> Self {
        let mut ns_labels = BTreeMap::new();
        for ns in inventory
            .namespaces
            .keys()
            .chain(inventory.endpoints.values().map(|e| &e.namespace))
        {
            if !ns_labels.contains_key(ns) {
                ns_labels.insert(ns.clone(), inventory.namespace_labels(ns));
            }
        }
        let mut pod_by_addr = HashMap::new();
        let mut node_by_addr = HashMap::new();
        for n in inventory.nodes.values() {
            for a in &n.addresses {
                node_by_addr.insert(*a, n.name.clone());
            }
        }
        for ep in inventory.endpoints.values() {
            for a in &ep.addresses {
                if ep.host_network {
                    node_by_addr
                        .entry(*a)
                        .or_insert_with(|| ep.node.clone().unwrap_or_default());
                } else {
                    pod_by_addr.insert(*a, ep.id());
                }
            }
        }
        // Per tier: policies whose subject names one namespace, by namespace; the rest.
        let mut by_ns: Vec<TierIndex<'_>> = Vec::new();
        for tier in &policies.tiers {
            let mut named: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
            let mut other = Vec::new();
            for (i, p) in tier.policies.iter().enumerate() {
                match &p.subject.namespaces {
                    NamespaceMatch::Named(ns) => named.entry(ns.as_str()).or_default().push(i),
                    _ => other.push(i),
                }
            }
            by_ns.push((named, other));
        }
        let mut selection = HashMap::new();
        for ep in inventory.endpoints.values().filter(|e| !e.host_network) {
            let mut sel: [Vec<(usize, usize)>; 2] = [Vec::new(), Vec::new()];
            let empty = Labels::new();
            let nsl = ns_labels.get(&ep.namespace).unwrap_or(&empty);
            for (t, tier) in policies.tiers.iter().enumerate() {
                let (named, other) = &by_ns[t];
                let mut cands: Vec<usize> = named
                    .get(ep.namespace.as_str())
                    .cloned()
                    .unwrap_or_default();
                cands.extend(other.iter().copied());
                cands.sort_unstable();
                for i in cands {
                    let p = &tier.policies[i];
                    if subject_matches(&p.subject, ep, nsl) {
                        for d in [Direction::Ingress, Direction::Egress] {
                            if p.rules(d).is_some() {
                                sel[dir_index(d)].push((t, i));
                            }
                        }
                    }
                }
            }
            selection.insert(ep.id(), sel);
        }
        Evaluator {
            policies,
            inventory,
            options,
            ns_labels,
            pod_by_addr,
            node_by_addr,
            selection,
        }
    }

    /// The policy set.
    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// The inventory.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// What an address is: a pod, a node (or host-network pod), or external.
    pub fn resolve(&self, addr: IpAddr) -> FlowSide {
        if let Some(id) = self.pod_by_addr.get(&addr) {
            FlowSide::Pod(id.clone())
        } else if let Some(n) = self.node_by_addr.get(&addr) {
            FlowSide::Node(n.clone(), addr)
        } else {
            FlowSide::External(addr)
        }
    }

    fn pod(&self, side: &FlowSide) -> Option<&Endpoint> {
        match side {
            FlowSide::Pod(id) => self.inventory.endpoints.get(id),
            _ => None,
        }
    }

    /// Decide a connection attempt.
    pub fn decide(&self, flow: &Flow) -> Decision {
        let src = self.resolve(flow.src);
        let dst = self.resolve(flow.dst);
        let src_ep = self.pod(&src);
        let dst_ep = self.pod(&dst);
        let egress = match src_ep {
            None => SideDecision::open(SideReason::NotAPod),
            Some(ep) => self.side(ep, Direction::Egress, flow, flow.dst, dst_ep, dst_ep),
        };
        let ingress = match dst_ep {
            None => SideDecision::open(SideReason::NotAPod),
            Some(ep) => {
                if self.options.allow_from_resident_node
                    && self.is_resident_node_traffic(ep, flow.src)
                {
                    let mut d = SideDecision::open(SideReason::ResidentNode);
                    d.selected_by = self.selected_by(ep, Direction::Ingress);
                    d
                } else {
                    self.side(ep, Direction::Ingress, flow, flow.src, src_ep, dst_ep)
                }
            }
        };
        let verdict = if egress.verdict == Verdict::Allow && ingress.verdict == Verdict::Allow {
            Verdict::Allow
        } else {
            Verdict::Deny
        };
        Decision {
            verdict,
            flow: *flow,
            src,
            dst,
            egress,
            ingress,
            reply: false,
        }
    }

    /// Decide a connection from one endpoint to another by id, using the first address pair
    /// of one family (IPv4 first). `None` when an endpoint is unknown or they share no family.
    pub fn decide_between(
        &self,
        src: &EndpointId,
        dst: &EndpointId,
        protocol: Protocol,
        dst_port: u16,
    ) -> Option<Decision> {
        let s = self.inventory.endpoints.get(src)?;
        let d = self.inventory.endpoints.get(dst)?;
        let pick = |v4: bool| {
            let a = s.addresses.iter().find(|a| a.is_ipv4() == v4)?;
            let b = d.addresses.iter().find(|a| a.is_ipv4() == v4)?;
            Some((*a, *b))
        };
        let (src, dst) = pick(true).or_else(|| pick(false))?;
        Some(self.decide(&Flow {
            src,
            dst,
            protocol,
            dst_port,
        }))
    }

    /// Decide a reply packet (from `original.dst` back to `original.src`) of a connection that
    /// `original` opened: allowed exactly when the original was (connection tracking).
    pub fn decide_reply(&self, original: &Flow) -> Decision {
        let mut d = self.decide(original);
        d.reply = true;
        d
    }

    fn is_resident_node_traffic(&self, ep: &Endpoint, src: IpAddr) -> bool {
        let Some(node) = &ep.node else { return false };
        self.node_by_addr.get(&src) == Some(node)
    }

    fn selected_by(&self, ep: &Endpoint, dir: Direction) -> Vec<PolicyId> {
        self.selection
            .get(&ep.id())
            .map(|s| {
                s[dir_index(dir)]
                    .iter()
                    .map(|&(t, i)| self.policies.tiers[t].policies[i].id.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Decide one direction at `ep`. `other` is the address of the other side, `other_ep` its
    /// pod (if any), `dst_ep` the destination pod (for named ports).
    fn side(
        &self,
        ep: &Endpoint,
        dir: Direction,
        flow: &Flow,
        other: IpAddr,
        other_ep: Option<&Endpoint>,
        dst_ep: Option<&Endpoint>,
    ) -> SideDecision {
        let Some(sel) = self.selection.get(&ep.id()) else {
            return SideDecision::open(SideReason::NotSelected);
        };
        let sel = &sel[dir_index(dir)];
        if sel.is_empty() {
            return SideDecision::open(SideReason::NotSelected);
        }
        let selected_by: Vec<PolicyId> = sel
            .iter()
            .map(|&(t, i)| self.policies.tiers[t].policies[i].id.clone())
            .collect();
        let mut logged = Vec::new();
        let mut k = 0;
        while k < sel.len() {
            let t = sel[k].0;
            let tier = &self.policies.tiers[t];
            let mut passed = false;
            'tier: while k < sel.len() && sel[k].0 == t {
                let p = &tier.policies[sel[k].1];
                k += 1;
                for (index, rule) in p.rules(dir).unwrap_or(&[]).iter().enumerate() {
                    if !self.rule_matches(rule, flow, other, other_ep, dst_ep) {
                        continue;
                    }
                    let r = RuleRef {
                        tier: tier.name.clone(),
                        policy: p.id.clone(),
                        direction: dir,
                        index,
                    };
                    let verdict = match rule.action {
                        Action::Allow => Verdict::Allow,
                        Action::Deny => Verdict::Deny,
                        Action::Log => {
                            logged.push(r);
                            continue;
                        }
                        Action::Pass => {
                            passed = true;
                            break 'tier;
                        }
                    };
                    return SideDecision {
                        verdict,
                        reason: SideReason::Rule(rule.action, r),
                        selected_by,
                        logged,
                    };
                }
            }
            // Skip what is left of this tier (after a Pass).
            while k < sel.len() && sel[k].0 == t {
                k += 1;
            }
            if !passed && tier.default == TierDefault::Deny {
                return SideDecision {
                    verdict: Verdict::Deny,
                    reason: SideReason::TierDefault(tier.name.clone()),
                    selected_by,
                    logged,
                };
            }
        }
        SideDecision {
            verdict: Verdict::Allow,
            reason: SideReason::AllTiersPassed,
            selected_by,
            logged,
        }
    }

    fn rule_matches(
        &self,
        rule: &Rule,
        flow: &Flow,
        other: IpAddr,
        other_ep: Option<&Endpoint>,
        dst_ep: Option<&Endpoint>,
    ) -> bool {
        let port_ok = match &rule.ports {
            PortSet::Any => true,
            PortSet::Only(list) => list.iter().any(|m| port_matches(m, flow, dst_ep)),
        };
        if !port_ok {
            return false;
        }
        match &rule.peers {
            PeerSet::Any => true,
            PeerSet::Only(list) => list.iter().any(|p| self.peer_matches(p, other, other_ep)),
        }
    }

    fn peer_matches(&self, peer: &Peer, other: IpAddr, other_ep: Option<&Endpoint>) -> bool {
        match peer {
            Peer::Cidr(b) => b.contains(other),
            Peer::Endpoints(sel) => other_ep.is_some_and(|ep| {
                let empty = Labels::new();
                let nsl = self.ns_labels.get(&ep.namespace).unwrap_or(&empty);
                subject_matches(sel, ep, nsl)
            }),
            Peer::Nodes(sel) => self
                .node_by_addr
                .get(&other)
                .and_then(|n| self.inventory.nodes.get(n))
                .is_some_and(|n| sel.matches(&n.labels)),
        }
    }
}

/// Whether an endpoint selector selects a (pod-network) endpoint whose namespace has `ns_labels`.
fn subject_matches(sel: &EndpointSelector, ep: &Endpoint, ns_labels: &Labels) -> bool {
    if ep.host_network {
        return false;
    }
    let ns_ok = match &sel.namespaces {
        NamespaceMatch::Any => true,
        NamespaceMatch::Named(ns) => *ns == ep.namespace,
        NamespaceMatch::Selector(s) => s.matches(ns_labels),
    };
    ns_ok && sel.pods.matches(&ep.labels)
}

fn port_matches(m: &PortMatch, flow: &Flow, dst_ep: Option<&Endpoint>) -> bool {
    if m.protocol.is_some_and(|p| p != flow.protocol) {
        return false;
    }
    match &m.port {
        PortSpec::All => true,
        PortSpec::Range { start, end } => (*start..=*end).contains(&flow.dst_port),
        PortSpec::Named(name) => dst_ep
            .and_then(|ep| ep.named_ports.get(name))
            .is_some_and(|np| np.port == flow.dst_port && np.protocol == flow.protocol),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn labels(kv: &[(&str, &str)]) -> Labels {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn label_operators() {
        // Kubernetes label selectors: NotIn and DoesNotExist match objects without the key.
        let l = labels(&[("app", "web")]);
        let r = |key: &str, op: LabelOp| Requirement {
            key: key.into(),
            op,
        };
        assert!(r("app", LabelOp::In(set(&["web", "db"]))).matches(&l));
        assert!(!r("app", LabelOp::In(set(&["db"]))).matches(&l));
        assert!(!r("tier", LabelOp::In(set(&["db"]))).matches(&l));
        assert!(r("tier", LabelOp::NotIn(set(&["db"]))).matches(&l));
        assert!(!r("app", LabelOp::NotIn(set(&["web"]))).matches(&l));
        assert!(r("app", LabelOp::Exists).matches(&l) && !r("tier", LabelOp::Exists).matches(&l));
        assert!(
            r("tier", LabelOp::DoesNotExist).matches(&l)
                && !r("app", LabelOp::DoesNotExist).matches(&l)
        );
        assert_eq!(Selector::from_requirements(vec![]), Selector::All);
    }

    fn tier(default: TierDefault, actions: &[Action]) -> Tier {
        let rules = actions
            .iter()
            .map(|a| Rule {
                action: *a,
                peers: PeerSet::Any,
                ports: PortSet::Any,
            })
            .collect();
        Tier {
            name: format!("{default:?}"),
            kind: TierKind::NetworkPolicy,
            default,
            policies: vec![Policy {
                id: PolicyId {
                    kind: PolicyKind::NetworkPolicy,
                    namespace: Some("x".into()),
                    name: "p".into(),
                },
                subject: EndpointSelector {
                    namespaces: NamespaceMatch::Any,
                    pods: Selector::All,
                },
                ingress: Some(rules),
                egress: None,
            }],
        }
    }

    fn verdict(tiers: Vec<Tier>) -> (Verdict, SideReason, usize) {
        let mut inv = Inventory::default();
        inv.upsert_endpoint(Endpoint::new(
            "x",
            "a",
            Labels::new(),
            vec!["10.0.0.1".parse().expect("ip")],
        ));
        let e = Evaluator::new(PolicySet { tiers }, inv);
        let d = e.decide(&Flow {
            src: "10.0.0.9".parse().expect("ip"),
            dst: "10.0.0.1".parse().expect("ip"),
            protocol: Protocol::Tcp,
            dst_port: 1,
        });
        (d.verdict, d.ingress.reason, d.ingress.logged.len())
    }

    #[test]
    fn tiers_actions_and_defaults() {
        // First matching rule decides; Log continues; Pass skips to the next tier; a tier's
        // default applies when nothing in it decided; after the last tier, allow.
        let (v, r, logs) = verdict(vec![tier(
            TierDefault::Pass,
            &[Action::Log, Action::Deny, Action::Allow],
        )]);
        assert_eq!((v, logs), (Verdict::Deny, 1));
        assert!(matches!(r, SideReason::Rule(Action::Deny, _)));
        let (v, r, _) = verdict(vec![tier(TierDefault::Deny, &[Action::Pass, Action::Deny])]);
        assert_eq!(
            v,
            Verdict::Allow,
            "Pass skipped the tier's rules and its default"
        );
        assert_eq!(r, SideReason::AllTiersPassed);
        let (v, r, _) = verdict(vec![
            tier(TierDefault::Pass, &[]),
            tier(TierDefault::Deny, &[]),
        ]);
        assert_eq!(v, Verdict::Deny);
        assert_eq!(r, SideReason::TierDefault("Deny".into()));
        let (v, _, _) = verdict(vec![
            tier(TierDefault::Pass, &[Action::Pass]),
            tier(TierDefault::Pass, &[Action::Allow]),
        ]);
        assert_eq!(v, Verdict::Allow);
    }

    #[test]
    fn decide_between_endpoints_by_id() {
        let mut inv = Inventory::default();
        inv.upsert_endpoint(Endpoint::new(
            "x",
            "a",
            Labels::new(),
            vec!["fd00::1".parse().expect("ip")],
        ));
        inv.upsert_endpoint(Endpoint::new(
            "x",
            "b",
            Labels::new(),
            vec![
                "10.0.0.2".parse().expect("ip"),
                "fd00::2".parse().expect("ip"),
            ],
        ));
        let e = Evaluator::new(PolicySet::default(), inv);
        let d = e
            .decide_between(
                &EndpointId::new("x", "a"),
                &EndpointId::new("x", "b"),
                Protocol::Udp,
                53,
            )
            .expect("common family");
        assert_eq!(d.flow.dst, "fd00::2".parse::<IpAddr>().expect("ip"));
        assert_eq!(d.verdict, Verdict::Allow);
        assert!(
            e.decide_between(
                &EndpointId::new("x", "a"),
                &EndpointId::new("x", "zz"),
                Protocol::Udp,
                53
            )
            .is_none()
        );
    }
}
