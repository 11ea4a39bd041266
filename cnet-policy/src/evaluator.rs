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
/// decision costs O(rules of the selecting policies), independent of the number of pods.
#[derive(Debug, Clone)]
pub struct Evaluator {
    policies: PolicySet,
    inventory: Inventory,
    options: EvaluatorOptions,
    /// Endpoints in id order (indices below point here).
    eps: Vec<Endpoint>,
    /// Effective namespace labels per endpoint (index into `ns_labels`).
    ep_ns: Vec<usize>,
    ns_labels: Vec<Labels>,
    pod_by_addr: HashMap<IpAddr, usize>,
    node_by_addr: HashMap<IpAddr, String>,
    /// Per endpoint: [ingress, egress] selecting (tier, policy) indices, in evaluation order.
    selection: Vec<[Vec<(usize, usize)>; 2]>,
}

/// Per tier: policies whose subject names one namespace, by namespace; and the rest.
type TierIndex<'a> = (BTreeMap<&'a str, Vec<usize>>, Vec<usize>);

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Ingress => 0,
        Direction::Egress => 1,
    }
}

/// A side's decision without allocations: indices into the policy set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RawReason {
    NotAPod,
    NotSelected,
    AllTiersPassed,
    ResidentNode,
    /// (action, tier, policy, rule)
    Rule(Action, usize, usize, usize),
    TierDefault(usize),
}

/// The two sides of a flow as endpoint indices.
#[derive(Debug, Clone, Copy)]
struct Sides {
    src: Option<usize>,
    dst: Option<usize>,
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
        let eps: Vec<Endpoint> = inventory.endpoints.values().cloned().collect();
        let mut ns_index: BTreeMap<&str, usize> = BTreeMap::new();
        let mut ns_labels = Vec::new();
        for ns in inventory
            .namespaces
            .keys()
            .chain(eps.iter().map(|e| &e.namespace))
        {
            if !ns_index.contains_key(ns.as_str()) {
                ns_index.insert(ns, ns_labels.len());
                ns_labels.push(inventory.namespace_labels(ns));
            }
        }
        let ep_ns: Vec<usize> = eps
            .iter()
            .map(|e| ns_index.get(e.namespace.as_str()).copied().unwrap_or(0))
            .collect();
        let mut pod_by_addr = HashMap::new();
        let mut node_by_addr = HashMap::new();
        for n in inventory.nodes.values() {
            for a in &n.addresses {
                node_by_addr.insert(*a, n.name.clone());
            }
        }
        for (i, ep) in eps.iter().enumerate() {
            for a in &ep.addresses {
                if ep.host_network {
                    node_by_addr
                        .entry(*a)
                        .or_insert_with(|| ep.node.clone().unwrap_or_default());
                } else {
                    pod_by_addr.insert(*a, i);
                }
            }
        }
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
        let mut selection = Vec::with_capacity(eps.len());
        for (e, ep) in eps.iter().enumerate() {
            let mut sel: [Vec<(usize, usize)>; 2] = [Vec::new(), Vec::new()];
            if !ep.host_network {
                let nsl = &ns_labels[ep_ns[e]];
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
            }
            selection.push(sel);
        }
        drop(by_ns);
        Evaluator {
            policies,
            inventory,
            options,
            eps,
            ep_ns,
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
        if let Some(&i) = self.pod_by_addr.get(&addr) {
            FlowSide::Pod(self.eps[i].id())
        } else if let Some(n) = self.node_by_addr.get(&addr) {
            FlowSide::Node(n.clone(), addr)
        } else {
            FlowSide::External(addr)
        }
    }

    fn sides(&self, flow: &Flow) -> Sides {
        Sides {
            src: self.pod_by_addr.get(&flow.src).copied(),
            dst: self.pod_by_addr.get(&flow.dst).copied(),
        }
    }

    /// The verdict alone, without building the reason (no allocation): for bulk checks.
    /// Always equal to `self.decide(flow).verdict`.
    pub fn verdict(&self, flow: &Flow) -> Verdict {
        let s = self.sides(flow);
        let (e, _) = self.egress_raw(flow, s, None);
        if e == Verdict::Deny {
            return Verdict::Deny;
        }
        self.ingress_raw(flow, s, None).0
    }

    fn egress_raw(
        &self,
        flow: &Flow,
        s: Sides,
        logged: Option<&mut Vec<(usize, usize, usize)>>,
    ) -> (Verdict, RawReason) {
        match s.src {
            None => (Verdict::Allow, RawReason::NotAPod),
            Some(ep) => self.side_raw(ep, Direction::Egress, flow, flow.dst, s.dst, s.dst, logged),
        }
    }

    fn ingress_raw(
        &self,
        flow: &Flow,
        s: Sides,
        logged: Option<&mut Vec<(usize, usize, usize)>>,
    ) -> (Verdict, RawReason) {
        match s.dst {
            None => (Verdict::Allow, RawReason::NotAPod),
            Some(ep) => {
                if self.options.allow_from_resident_node
                    && self.is_resident_node_traffic(&self.eps[ep], flow.src)
                {
                    (Verdict::Allow, RawReason::ResidentNode)
                } else {
                    self.side_raw(ep, Direction::Ingress, flow, flow.src, s.src, s.dst, logged)
                }
            }
        }
    }

    /// Decide a connection attempt, with the reasons.
    pub fn decide(&self, flow: &Flow) -> Decision {
        let s = self.sides(flow);
        let mut elog = Vec::new();
        let mut ilog = Vec::new();
        let (ev, er) = self.egress_raw(flow, s, Some(&mut elog));
        let (iv, ir) = self.ingress_raw(flow, s, Some(&mut ilog));
        let egress = self.side_decision(s.src, Direction::Egress, ev, er, &elog);
        let ingress = self.side_decision(s.dst, Direction::Ingress, iv, ir, &ilog);
        let verdict = if ev == Verdict::Allow && iv == Verdict::Allow {
            Verdict::Allow
        } else {
            Verdict::Deny
        };
        Decision {
            verdict,
            flow: *flow,
            src: self.resolve(flow.src),
            dst: self.resolve(flow.dst),
            egress,
            ingress,
            reply: false,
        }
    }

    fn rule_ref(&self, t: usize, p: usize, dir: Direction, index: usize) -> RuleRef {
        let tier = &self.policies.tiers[t];
        RuleRef {
            tier: tier.name.clone(),
            policy: tier.policies[p].id.clone(),
            direction: dir,
            index,
        }
    }

    fn side_decision(
        &self,
        ep: Option<usize>,
        dir: Direction,
        verdict: Verdict,
        raw: RawReason,
        logged: &[(usize, usize, usize)],
    ) -> SideDecision {
        let reason = match raw {
            RawReason::NotAPod => SideReason::NotAPod,
            RawReason::NotSelected => SideReason::NotSelected,
            RawReason::AllTiersPassed => SideReason::AllTiersPassed,
            RawReason::ResidentNode => SideReason::ResidentNode,
            RawReason::Rule(a, t, p, i) => SideReason::Rule(a, self.rule_ref(t, p, dir, i)),
            RawReason::TierDefault(t) => {
                SideReason::TierDefault(self.policies.tiers[t].name.clone())
            }
        };
        let selected_by = ep
            .map(|e| {
                self.selection[e][dir_index(dir)]
                    .iter()
                    .map(|&(t, i)| self.policies.tiers[t].policies[i].id.clone())
                    .collect()
            })
            .unwrap_or_default();
        SideDecision {
            verdict,
            reason,
            selected_by,
            logged: logged
                .iter()
                .map(|&(t, p, i)| self.rule_ref(t, p, dir, i))
                .collect(),
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

    /// Decide one direction at endpoint `ep`. `other` is the address of the other side,
    /// `other_ep` its pod (if any), `dst_ep` the destination pod (for named ports).
    #[allow(clippy::too_many_arguments)]
    fn side_raw(
        &self,
        ep: usize,
        dir: Direction,
        flow: &Flow,
        other: IpAddr,
        other_ep: Option<usize>,
        dst_ep: Option<usize>,
        mut logged: Option<&mut Vec<(usize, usize, usize)>>,
    ) -> (Verdict, RawReason) {
        let sel = &self.selection[ep][dir_index(dir)];
        if sel.is_empty() {
            return (Verdict::Allow, RawReason::NotSelected);
        }
        let other_ep_i = other_ep;
        let other_ep = other_ep.map(|i| (&self.eps[i], &self.ns_labels[self.ep_ns[i]]));
        let dst_ep = dst_ep.map(|i| &self.eps[i]);
        let mut k = 0;
        while k < sel.len() {
            let t = sel[k].0;
            let tier = &self.policies.tiers[t];
            let mut passed = false;
            'tier: while k < sel.len() && sel[k].0 == t {
                let pi = sel[k].1;
                k += 1;
                let rules = tier.policies[pi].rules(dir).unwrap_or(&[]);
                for (index, rule) in rules.iter().enumerate() {
                    let matched = match &rule.peers {
                        PeerSet::Extended(x) => {
                            let (src_i, dst_i) = match dir {
                                Direction::Ingress => (other_ep_i, Some(ep)),
                                Direction::Egress => (Some(ep), other_ep_i),
                            };
                            self.extended_matches(x, &rule.ports, flow, src_i, dst_i)
                        }
                        _ => self.rule_matches(rule, flow, other, other_ep, dst_ep),
                    };
                    if !matched {
                        continue;
                    }
                    match rule.action {
                        Action::Allow | Action::Deny => {
                            let v = if rule.action == Action::Allow {
                                Verdict::Allow
                            } else {
                                Verdict::Deny
                            };
                            return (v, RawReason::Rule(rule.action, t, pi, index));
                        }
                        Action::Log => {
                            if let Some(l) = logged.as_deref_mut() {
                                l.push((t, pi, index));
                            }
                        }
                        Action::Pass => {
                            passed = true;
                            break 'tier;
                        }
                    }
                }
            }
            // Skip what is left of this tier (after a Pass).
            while k < sel.len() && sel[k].0 == t {
                k += 1;
            }
            if !passed && tier.default == TierDefault::Deny {
                return (Verdict::Deny, RawReason::TierDefault(t));
            }
        }
        (Verdict::Allow, RawReason::AllTiersPassed)
    }

    fn rule_matches(
        &self,
        rule: &Rule,
        flow: &Flow,
        other: IpAddr,
        other_ep: Option<(&Endpoint, &Labels)>,
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
            PeerSet::Extended(_) => false,
        }
    }

    /// A Calico-style match: protocol conditions, then each end (address, pod, port).
    fn extended_matches(
        &self,
        x: &ExtendedMatch,
        ports: &PortSet,
        flow: &Flow,
        src: Option<usize>,
        dst: Option<usize>,
    ) -> bool {
        let proto = flow.protocol.number();
        if x.protocol.is_some_and(|p| p != proto) || x.not_protocol == Some(proto) {
            return false;
        }
        // Flows are TCP/UDP/SCTP: an ICMP type match never holds, a notICMP always does.
        if x.icmp.is_some() {
            return false;
        }
        let dst_ep = dst.map(|i| &self.eps[i]);
        if let PortSet::Only(list) = ports {
            if !list.iter().any(|m| port_matches(m, flow, dst_ep)) {
                return false;
            }
        }
        self.entity_matches(&x.source, flow.src, src, None, flow)
            && self.entity_matches(&x.destination, flow.dst, dst, dst_ep, flow)
    }

    fn entity_matches(
        &self,
        m: &EntityMatch,
        addr: IpAddr,
        ep: Option<usize>,
        dst_ep: Option<&Endpoint>,
        flow: &Flow,
    ) -> bool {
        let in_sets = |sel: &EndpointSelector, sets: &[NetSetRef]| {
            let pod = ep.is_some_and(|i| {
                subject_matches(sel, &self.eps[i], &self.ns_labels[self.ep_ns[i]])
            });
            pod || sets.iter().any(|s| {
                let ns_ok = match (&s.namespace, &sel.namespaces) {
                    (None, _) => true,
                    (Some(ns), NamespaceMatch::Selector(sl)) => {
                        sl.matches(&self.inventory.namespace_labels(ns))
                    }
                    (Some(ns), NamespaceMatch::Named(n)) => ns == n,
                    (Some(_), NamespaceMatch::Any) => true,
                };
                ns_ok && s.nets.iter().any(|n| n.contains(addr))
            })
        };
        if let Some(sel) = &m.selector {
            if !in_sets(sel, &m.selected_sets) {
                return false;
            }
        }
        if let Some(sel) = &m.not_selector {
            if in_sets(sel, &m.not_sets) {
                return false;
            }
        }
        if !m.nets.is_empty() && !m.nets.iter().any(|n| n.contains(addr)) {
            return false;
        }
        if m.not_nets.iter().any(|n| n.contains(addr)) {
            return false;
        }
        if !m.ports.is_empty() && !m.ports.iter().any(|p| port_matches(p, flow, dst_ep)) {
            return false;
        }
        !m.not_ports.iter().any(|p| port_matches(p, flow, dst_ep))
    }

    fn peer_matches(
        &self,
        peer: &Peer,
        other: IpAddr,
        other_ep: Option<(&Endpoint, &Labels)>,
    ) -> bool {
        match peer {
            Peer::Cidr(b) => b.contains(other),
            Peer::Endpoints(sel) => other_ep.is_some_and(|(ep, nsl)| subject_matches(sel, ep, nsl)),
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
