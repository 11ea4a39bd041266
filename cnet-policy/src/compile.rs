//! The compiler: normalised policy model + endpoints + namespaces + routing mode → one
//! nftables table (IR, see [`crate::nft`]). Pure: no IO.
//!
//! # Shape of the table (`inet cnet`, both routing modes)
//!
//! * Four hooks, two directions. Egress of a pod is decided in base chains on `forward` and
//!   `input` at priority 0, ingress on `forward` (and `output` when traffic from the resident
//!   node is not always allowed) at priority 10. Because `accept` only ends one base chain, a
//!   pod-to-pod packet is judged by the source's egress chain and then the destination's
//!   ingress chain; `drop` anywhere is final (a silent drop).
//! * Each base chain: `ct state established,related accept` first (replies of allowed
//!   connections), ICMPv6 neighbour discovery accepted, then dispatch keyed by the pod: its
//!   host interface (`iifname`/`oifname`) in transparent mode, its address (`ip saddr`/`ip
//!   daddr`) in bridge mode. First a verdict map `<dir>_dispatch` holding only terminal
//!   verdicts: a pending pod (attached, policy not programmed yet) maps to `drop` (fail
//!   closed). Then ONE rule `<key> @<dir>_selected goto <dir>_start` for the pods some
//!   policy selects for that direction (a hash lookup in a plain set, whatever the number of
//!   pods). A pod in neither is open in that direction, or not ours (remote, not a pod):
//!   the base chain's policy accepts.
//! * Why not `pod : goto <dir>_start` map elements: adding a `goto`/`jump` element makes
//!   the kernel re-validate the whole table at commit, walking every verdict-map element
//!   (milliseconds at 10k pods); plain set elements and `drop` elements cost nothing extra.
//!   So a pod change only ever adds or deletes plain set elements and `drop` map elements.
//!   A pending pod stays in `<dir>_selected` when policy selects it (the map's `drop` comes
//!   first), so becoming ready is one delete. The kernel commits a batch atomically; the
//!   engine's batches still add pending drops and members before the `selected` gates and
//!   delete the gates first (`live.rs`).
//! * `<dir>_start` drops `ct state invalid` and walks the tiers in order. A tier's chain jumps,
//!   for each policy in order, to the policy's chain when the pod is in the policy's subject
//!   set; then, for a tier whose default is `Deny`, drops pods of any of its subjects; then
//!   `goto`es the next tier. Tiers whose policies are all namespaced (NetworkPolicy) are split
//!   per namespace behind two levels of plain-set lookups: the tier chain holds one rule per
//!   hash bucket of namespaces (16 buckets), `<key> @nsb_<b> goto <dir>_t<k>_b<b>`, and a
//!   bucket chain one rule per namespace with policies in the tier, `<key> @<set of the
//!   selector "every pod of ns"> goto <namespace's tier chain>` (`nsb*`: the bucket's local
//!   pods; both kinds shared by tiers and directions, the namespace sets also with policies
//!   that select or admit a whole namespace). A packet walks at most 16 + its bucket's namespaces
//!   before its own namespace's policies, and the rule count follows namespaces, not pods.
//! * A policy chain holds its rules in order: `accept` (Allow), `drop` (Deny), `goto` the next
//!   tier (Pass; `accept` after the last tier), `log` without a verdict (Log).
//! * Every selector, ipBlock, node selector and named port is a named set shared by all rules
//!   that use it; pods only change set elements (and `drop` map elements), never rules.
//! * Address families: a positive match on a set filled from pod-network endpoints (selector
//!   addresses, named ports, bridge-mode dispatch keys) is emitted only for a family some
//!   pod-network endpoint (local or remote) has an address of; for another family the set
//!   would be empty and the rule could never match (`ip6 saddr @empty`), so leaving it out
//!   changes nothing but the kernel's work (an IPv4-only cluster gets no IPv6 pod sets).
//!   Negated matches, ipBlocks, network sets and node sets are emitted for both families.
//!   The first address of a family appearing (or the last one going) is therefore a
//!   structural change; the engine rebuilds then (`Structure::pod_fams`).
//!
//! # Bridge mode
//! The kernel here has no `nf_conntrack_bridge` (`ct state` in a `bridge` table fails with
//! EPROTO), and policy needs conntrack. Bridge mode therefore relies on br_netfilter: the node
//! sets `net.bridge.bridge-nf-call-iptables=1` and `-ip6tables=1` (cnet-route's
//! `BridgeMode { br_netfilter: true, .. }`), bridged pod-to-pod frames traverse the `inet`
//! forward hook with the bridge as interface, and dispatch is by address.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

#[path = "compile_ext.rs"]
mod ext;
#[path = "compile_host.rs"]
mod host;
pub use host::{HostOptions, compile_host};

use ipnetwork::IpNetwork;

use crate::endpoint::{Endpoint, EndpointId, Inventory};
use crate::membership::SetDef;
use crate::model::{
    Action, CidrBlock, Direction, EndpointSelector, Labels, NamespaceMatch, Peer, PeerSet, Policy,
    PolicySet, PortMatch, PortSet, PortSpec, Selector, TierDefault, TierKind,
};
use crate::nft::{
    Chain, ChainPolicy, CtState, Element, Expr, Family, Field, Hook, KeyType, PROTO_ICMPV6,
    PROTO_SCTP, PROTO_TCP, PROTO_UDP, Part, Rule, Ruleset, Set, Table, Value, Verdict,
};

/// How pods are attached to the node (see the module docs for what each implies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// One veth per pod, routed by the node: dispatch on the host interface name.
    Transparent,
    /// Pods on a Linux bridge with br_netfilter on: dispatch on the pod address.
    Bridge,
}

/// Compiler options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileOptions {
    /// Routing mode.
    pub mode: Mode,
    /// Name of the `inet` table we own.
    pub table: String,
    /// The node this ruleset is for: endpoints on other nodes only fill peer sets. `None`:
    /// every endpoint is local.
    pub node: Option<String>,
    /// Traffic the node itself sends to its pods is always allowed (Kubernetes; the
    /// evaluator's `allow_from_resident_node`). When false, an `output` ingress chain
    /// applies policy to it too.
    pub allow_from_resident_node: bool,
}

impl CompileOptions {
    /// Options for a mode with the table `cnet`, all endpoints local, resident node allowed.
    pub fn new(mode: Mode) -> CompileOptions {
        CompileOptions {
            mode,
            table: "cnet".to_string(),
            node: None,
            allow_from_resident_node: true,
        }
    }
}

/// What the compiler needs to know about local pods beyond the policy [`Inventory`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attachments {
    /// Host-side interface of each local pod (transparent mode dispatches on it).
    pub host_ifname: BTreeMap<EndpointId, String>,
    /// Pods attached but whose policy must not be trusted yet: all their traffic drops.
    pub pending: BTreeSet<EndpointId>,
}

/// Errors of the compiler.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// A host interface name cannot be an nftables `ifname` (empty or longer than 15 bytes).
    #[error("endpoint {endpoint}: host interface name {ifname:?} is not a valid interface name")]
    BadIfname {
        /// The endpoint.
        endpoint: EndpointId,
        /// The name.
        ifname: String,
    },
    /// The model holds a match the compiler cannot express yet (the whole compile fails, so
    /// nothing is programmed that would be more open than the policy).
    #[error("cannot compile {0}")]
    Unsupported(String),
    /// The table name is not a valid nftables name.
    #[error("table name {0:?}: must be 1..=64 of [A-Za-z0-9_-], starting with a letter or _")]
    BadTable(String),
}

/// Direction tag used in names.
fn tag(d: Direction) -> &'static str {
    match d {
        Direction::Ingress => "ing",
        Direction::Egress => "eg",
    }
}

/// FNV-1a 64 of a string: stable names for sets and chains across processes.
fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Hash buckets of namespaces in a namespaced tier's dispatch.
pub(crate) const NS_BUCKETS: u64 = 16;

/// The dispatch bucket of a namespace (stable across processes).
pub(crate) fn ns_bucket(ns: &str) -> u8 {
    (fnv(ns) % NS_BUCKETS) as u8
}

fn short_hash(s: &str) -> String {
    format!("{:012x}", fnv(s) & 0xffff_ffff_ffff)
}

/// `[A-Za-z0-9_-]` only, at most `max` bytes.
fn sanitize(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect()
}

/// Family of an address-typed match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Fam {
    V4,
    V6,
}

impl Fam {
    pub(crate) fn of(a: IpAddr) -> Fam {
        if a.is_ipv4() { Fam::V4 } else { Fam::V6 }
    }
    fn nfproto(self) -> Expr {
        match self {
            Fam::V4 => Expr::ipv4(),
            Fam::V6 => Expr::ipv6(),
        }
    }
    fn addr_key(self) -> KeyType {
        match self {
            Fam::V4 => KeyType::Ipv4Addr,
            Fam::V6 => KeyType::Ipv6Addr,
        }
    }
    fn saddr(self) -> Field {
        match self {
            Fam::V4 => Field::IpSaddr,
            Fam::V6 => Field::Ip6Saddr,
        }
    }
    fn daddr(self) -> Field {
        match self {
            Fam::V4 => Field::IpDaddr,
            Fam::V6 => Field::Ip6Daddr,
        }
    }
    pub(crate) fn index(self) -> usize {
        match self {
            Fam::V4 => 0,
            Fam::V6 => 1,
        }
    }
    fn digit(self) -> &'static str {
        match self {
            Fam::V4 => "4",
            Fam::V6 => "6",
        }
    }
}

const FAMS: [Fam; 2] = [Fam::V4, Fam::V6];

/// Address families some pod-network endpoint of the inventory (local or remote) has an
/// address of, indexed `[V4, V6]`. A positive match on a pod-derived set (selector addresses,
/// named ports, bridge-mode dispatch keys) of a family outside this is never emitted: its set
/// would be empty, so the rule could never match. Negated matches are always emitted.
pub(crate) type PodFams = [bool; 2];

/// The [`PodFams`] of an inventory.
pub(crate) fn pod_families(inv: &Inventory) -> PodFams {
    let mut out = [false; 2];
    for ep in inv.endpoints.values().filter(|e| !e.host_network) {
        for a in &ep.addresses {
            out[Fam::of(*a).index()] = true;
        }
        if out == [true; 2] {
            break;
        }
    }
    out
}

static EMPTY_LABELS: Labels = BTreeMap::new();

/// One way a rule's peer or port part can match: a family constraint and the expressions.
type Alt = (Option<Fam>, Vec<Expr>);

/// Name of the constant set of protocols that have ports.
pub const PORTED_PROTOS_SET: &str = "ported_protos";

/// Compile a policy set for the endpoints of `inventory` into one `inet` table.
pub fn compile(
    policies: &PolicySet,
    inventory: &Inventory,
    attachments: &Attachments,
    opts: &CompileOptions,
) -> Result<Ruleset, CompileError> {
    compile_with_defs(policies, inventory, attachments, opts, None).map(|(rs, _)| rs)
}

/// [`compile`], also returning what each named set or map stands for (see
/// [`crate::membership`]); a set the compiler did not describe has no entry. `pod_fams`
/// overrides the families of pod-network addresses (default: the inventory's, see
/// [`pod_families`]).
pub(crate) fn compile_with_defs(
    policies: &PolicySet,
    inventory: &Inventory,
    attachments: &Attachments,
    opts: &CompileOptions,
    pod_fams: Option<PodFams>,
) -> Result<(Ruleset, BTreeMap<String, SetDef>), CompileError> {
    let ok_table = !opts.table.is_empty()
        && opts.table.len() <= 64
        && opts
            .table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !opts
            .table
            .starts_with(|c: char| c.is_ascii_digit() || c == '-');
    if !ok_table {
        return Err(CompileError::BadTable(opts.table.clone()));
    }
    let mut c = Compiler::new(policies, inventory, attachments, opts)?;
    if let Some(f) = pod_fams {
        c.pod_fams = f;
    }
    for d in [Direction::Egress, Direction::Ingress] {
        c.direction(d)?;
    }
    let mut t = Table::new(Family::Inet, &opts.table);
    t.chains = c.chains;
    t.sets = c.sets;
    Ok((Ruleset::new().with_table(t), c.defs))
}

struct Compiler<'a> {
    policies: &'a PolicySet,
    inv: &'a Inventory,
    att: &'a Attachments,
    opts: &'a CompileOptions,
    ns_labels: BTreeMap<String, Labels>,
    /// Local pod-network endpoints (dispatched here).
    local: Vec<&'a Endpoint>,
    /// All endpoints by namespace.
    by_ns: BTreeMap<&'a str, Vec<&'a Endpoint>>,
    chains: BTreeMap<String, Chain>,
    sets: BTreeMap<String, Set>,
    /// What each set stands for (the engine's incremental path).
    defs: BTreeMap<String, SetDef>,
    /// Families of pod-network addresses (positive pod-set matches of others are left out).
    pod_fams: PodFams,
}

/// Whether an endpoint selector selects a pod-network endpoint (as the evaluator does).
pub(crate) fn selects(sel: &EndpointSelector, ep: &Endpoint, ns_labels: &Labels) -> bool {
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

pub(crate) fn valid_ifname(n: &str) -> bool {
    !n.is_empty() && n.len() <= 15 && !n.contains(['/', ' ', '\0'])
}

impl<'a> Compiler<'a> {
    fn new(
        policies: &'a PolicySet,
        inv: &'a Inventory,
        att: &'a Attachments,
        opts: &'a CompileOptions,
    ) -> Result<Self, CompileError> {
        let mut ns_labels = BTreeMap::new();
        for ns in inv
            .namespaces
            .keys()
            .chain(inv.endpoints.values().map(|e| &e.namespace))
        {
            ns_labels
                .entry(ns.clone())
                .or_insert_with(|| inv.namespace_labels(ns));
        }
        let mut by_ns: BTreeMap<&'a str, Vec<&'a Endpoint>> = BTreeMap::new();
        for ep in inv.endpoints.values() {
            by_ns.entry(ep.namespace.as_str()).or_default().push(ep);
        }
        let mut local = Vec::new();
        for ep in inv.endpoints.values() {
            let here = match (&opts.node, &ep.node) {
                (Some(n), Some(m)) => n == m,
                _ => true,
            };
            if ep.host_network || !here {
                continue;
            }
            if opts.mode == Mode::Transparent {
                match att.host_ifname.get(&ep.id()) {
                    Some(n) if valid_ifname(n) => {}
                    Some(n) => {
                        return Err(CompileError::BadIfname {
                            endpoint: ep.id(),
                            ifname: n.clone(),
                        });
                    }
                    // Not attached here: only a peer.
                    None => continue,
                }
            }
            local.push(ep);
        }
        let mut c = Compiler {
            policies,
            inv,
            att,
            opts,
            ns_labels,
            local,
            by_ns,
            chains: BTreeMap::new(),
            sets: BTreeMap::new(),
            defs: BTreeMap::new(),
            pod_fams: pod_families(inv),
        };
        let ported = Set::new(PORTED_PROTOS_SET, &[KeyType::InetProto])
            .with_element(Element::value(Value::Proto(PROTO_TCP)))
            .with_element(Element::value(Value::Proto(PROTO_UDP)))
            .with_element(Element::value(Value::Proto(PROTO_SCTP)));
        c.sets.insert(PORTED_PROTOS_SET.to_string(), ported);
        c.defs.insert(PORTED_PROTOS_SET.to_string(), SetDef::Static);
        Ok(c)
    }

    /// The families whose positive pod-set matches are emitted (see [`PodFams`]).
    fn fams(&self) -> Vec<Fam> {
        FAMS.into_iter()
            .filter(|f| self.pod_fams[f.index()])
            .collect()
    }

    fn labels_of_ns(&self, ns: &str) -> &Labels {
        self.ns_labels.get(ns).unwrap_or(&EMPTY_LABELS)
    }

    /// Endpoints a selector may select: one namespace's for a namespaced selector.
    fn candidates(&self, sel: &EndpointSelector) -> Vec<&'a Endpoint> {
        match &sel.namespaces {
            NamespaceMatch::Named(ns) => self.by_ns.get(ns.as_str()).cloned().unwrap_or_default(),
            _ => self.inv.endpoints.values().collect(),
        }
    }

    /// Local endpoints some policy selects for `d`.
    fn selected_ids(&self, d: Direction) -> BTreeSet<EndpointId> {
        let mut subjects: BTreeSet<&EndpointSelector> = BTreeSet::new();
        for p in self.policies.tiers.iter().flat_map(|t| &t.policies) {
            if p.rules(d).is_some() {
                subjects.insert(&p.subject);
            }
        }
        let local: BTreeSet<EndpointId> = self.local.iter().map(|e| e.id()).collect();
        let mut out = BTreeSet::new();
        for sel in subjects {
            for ep in self.candidates(sel) {
                if selects(sel, ep, self.labels_of_ns(&ep.namespace)) && local.contains(&ep.id()) {
                    out.insert(ep.id());
                }
            }
        }
        out
    }

    fn add_chain(&mut self, ch: Chain) {
        self.chains.insert(ch.name.clone(), ch);
    }

    /// The dispatch key expressions (per family in bridge mode) of a pod for a direction.
    fn key_fields(&self, d: Direction) -> Vec<(Option<Fam>, Field)> {
        match (self.opts.mode, d) {
            (Mode::Transparent, Direction::Egress) => vec![(None, Field::MetaIifname)],
            (Mode::Transparent, Direction::Ingress) => vec![(None, Field::MetaOifname)],
            (Mode::Bridge, Direction::Egress) => {
                self.fams().iter().map(|f| (Some(*f), f.saddr())).collect()
            }
            (Mode::Bridge, Direction::Ingress) => {
                self.fams().iter().map(|f| (Some(*f), f.daddr())).collect()
            }
        }
    }

    /// Keys of one local endpoint for a key field family (`None`: interface name).
    fn keys_of(&self, ep: &Endpoint, fam: Option<Fam>) -> Vec<Element> {
        match fam {
            None => self
                .att
                .host_ifname
                .get(&ep.id())
                .map(|n| vec![Element::value(Value::Ifname(n.clone()))])
                .unwrap_or_default(),
            Some(f) => ep
                .addresses
                .iter()
                .filter(|a| Fam::of(**a) == f)
                .map(|a| Element::value(Value::addr(*a)))
                .collect(),
        }
    }

    fn key_type(fam: Option<Fam>) -> KeyType {
        fam.map_or(KeyType::Ifname, Fam::addr_key)
    }

    /// A verdict map keyed like the dispatch for `d`; one per key family.
    fn vmap_name(base: &str, fam: Option<Fam>) -> String {
        match fam {
            None => base.to_string(),
            Some(f) => format!("{base}{}", f.digit()),
        }
    }

    fn direction(&mut self, d: Direction) -> Result<(), CompileError> {
        let t = tag(d);
        let start = format!("{t}_start");
        // Dispatch: a verdict map with terminal verdicts only (pending pods drop) and a
        // plain set of the pods selected for this direction, matched by one rule that
        // `goto`es the start chain. A pod change then never adds a `goto`/`jump` map element
        // (which would make the kernel re-validate every verdict-map element of the table at
        // commit).
        let keys = self.key_fields(d);
        let sel_ids = self.selected_ids(d);
        for (fam, _) in &keys {
            let name = Self::vmap_name(&format!("{t}_dispatch"), *fam);
            let mut m = Set::verdict_map(&name, &[Self::key_type(*fam)]);
            let sname = Self::vmap_name(&format!("{t}_selected"), *fam);
            let mut s = Set::new(&sname, &[Self::key_type(*fam)]);
            for ep in &self.local {
                let id = ep.id();
                if self.att.pending.contains(&id) {
                    for k in self.keys_of(ep, *fam) {
                        m.elements.insert(k, Some(Verdict::Drop));
                    }
                }
                // Open for this direction: in neither (falling off the base chain, policy
                // accept).
                if sel_ids.contains(&id) {
                    for k in self.keys_of(ep, *fam) {
                        s.elements.insert(k, None);
                    }
                }
            }
            self.sets.insert(name.clone(), m);
            self.defs
                .insert(name, SetDef::Pending { dir: d, fam: *fam });
            self.sets.insert(sname.clone(), s);
            self.defs
                .insert(sname, SetDef::Selected { dir: d, fam: *fam });
        }
        // Base chains.
        let hooks: Vec<(Hook, &str)> = match d {
            Direction::Egress => vec![(Hook::Forward, "fwd"), (Hook::Input, "input")],
            Direction::Ingress if self.opts.allow_from_resident_node => {
                vec![(Hook::Forward, "fwd")]
            }
            Direction::Ingress => vec![(Hook::Forward, "fwd"), (Hook::Output, "output")],
        };
        let prio = match d {
            Direction::Egress => 0,
            Direction::Ingress => 10,
        };
        for (hook, hname) in hooks {
            let mut ch = Chain::base(&format!("{t}_{hname}"), hook, prio, ChainPolicy::Accept);
            ch.rules.push(
                Rule::new(vec![
                    Expr::ct_state(&[CtState::Established, CtState::Related]),
                    Expr::verdict(Verdict::Accept),
                ])
                .with_comment("replies of allowed connections"),
            );
            ch.rules.push(
                Rule::new(vec![
                    Expr::ipv6(),
                    Expr::l4proto(PROTO_ICMPV6),
                    Expr::range(
                        Field::Icmpv6Type,
                        Value::Icmpv6Type(133),
                        Value::Icmpv6Type(137),
                    ),
                    Expr::verdict(Verdict::Accept),
                ])
                .with_comment("neighbour discovery"),
            );
            // Per key family: pending pods drop first, then selected pods go to policy.
            for (fam, field) in &keys {
                let mut exprs = Vec::new();
                if let Some(f) = fam {
                    exprs.push(f.nfproto());
                }
                exprs.push(Expr::vmap(
                    &[*field],
                    &Self::vmap_name(&format!("{t}_dispatch"), *fam),
                ));
                ch.rules
                    .push(Rule::new(exprs).with_comment("pending pods drop (fail closed)"));
                let mut selected = key_lookup(
                    *fam,
                    *field,
                    &Self::vmap_name(&format!("{t}_selected"), *fam),
                );
                selected.push(Expr::verdict(Verdict::Goto(start.clone())));
                ch.rules
                    .push(Rule::new(selected).with_comment("selected pods: to their policy"));
            }
            self.add_chain(ch);
        }
        // Tiers.
        let ntiers = self.policies.tiers.len();
        let entry = |k: usize| -> Verdict {
            if k < ntiers {
                Verdict::Goto(format!("{t}_t{k}"))
            } else {
                Verdict::Accept
            }
        };
        self.add_chain(
            Chain::regular(&start)
                .with_rule(Rule::new(vec![
                    Expr::ct_state(&[CtState::Invalid]),
                    Expr::verdict(Verdict::Drop),
                ]))
                .with_rule(Rule::new(vec![Expr::verdict(entry(0))])),
        );
        for (k, tier) in self.policies.tiers.iter().enumerate() {
            let next = entry(k + 1);
            let pols: Vec<&Policy> = tier
                .policies
                .iter()
                .filter(|p| p.rules(d).is_some())
                .collect();
            let namespaced = tier.kind == TierKind::NetworkPolicy
                && pols
                    .iter()
                    .all(|p| matches!(p.subject.namespaces, NamespaceMatch::Named(_)));
            let deny = tier.default == TierDefault::Deny;
            let tier_chain = format!("{t}_t{k}");
            if !namespaced {
                let ch = self.tier_chain(&tier_chain, d, &pols, deny, &next)?;
                self.add_chain(ch);
                continue;
            }
            // Per namespace: one rule per namespace with policies in the tier, matching the
            // namespace's local pods (a plain set) and `goto`ing its chain. The rule count
            // follows namespaces, never pods; a packet walks its own namespace's policies.
            let mut by_ns: BTreeMap<&str, Vec<&Policy>> = BTreeMap::new();
            for p in &pols {
                if let NamespaceMatch::Named(ns) = &p.subject.namespaces {
                    by_ns.entry(ns.as_str()).or_default().push(p);
                }
            }
            let mut entry_chain = Chain::regular(&tier_chain);
            let mut ns_chain_of: BTreeMap<&str, String> = BTreeMap::new();
            for (ns, list) in &by_ns {
                let name = format!("{t}_t{k}_{}_{}", sanitize(ns, 32), &short_hash(ns)[..6]);
                let ch = self.tier_chain(&name, d, list, deny, &next)?;
                self.add_chain(ch);
                ns_chain_of.insert(ns, name);
            }
            // Two levels of plain-set lookups: the namespace's hash bucket, then the
            // namespace (at most NS_BUCKETS + the bucket's namespaces per packet).
            let mut by_bucket: BTreeMap<u8, Vec<(&str, &String)>> = BTreeMap::new();
            for (ns, chain) in &ns_chain_of {
                by_bucket
                    .entry(ns_bucket(ns))
                    .or_default()
                    .push((ns, chain));
            }
            for (b, list) in by_bucket {
                let bname = format!("{t}_t{k}_b{b:02x}");
                let mut bucket_chain = Chain::regular(&bname);
                for (ns, chain) in list {
                    for (fam, field) in &keys {
                        let members = self.ns_members_set(ns, *fam);
                        let mut exprs = key_lookup(*fam, *field, &members);
                        exprs.push(Expr::verdict(Verdict::Goto(chain.clone())));
                        bucket_chain
                            .rules
                            .push(Rule::new(exprs).with_comment("to the pod's namespace"));
                    }
                }
                bucket_chain
                    .rules
                    .push(Rule::new(vec![Expr::verdict(next.clone())]));
                self.add_chain(bucket_chain);
                for (fam, field) in &keys {
                    let members = self.ns_bucket_set(b, *fam);
                    let mut exprs = key_lookup(*fam, *field, &members);
                    exprs.push(Expr::verdict(Verdict::Goto(bname.clone())));
                    entry_chain
                        .rules
                        .push(Rule::new(exprs).with_comment("to the namespace's bucket"));
                }
            }
            entry_chain.rules.push(Rule::new(vec![Expr::verdict(next)]));
            self.add_chain(entry_chain);
        }
        Ok(())
    }

    /// Subject-membership matches for a policy (one per key family).
    fn subject_matches(&mut self, subject: &EndpointSelector, d: Direction) -> Vec<Vec<Expr>> {
        let keys = self.key_fields(d);
        let mut out = Vec::new();
        for (fam, field) in keys {
            let set = match fam {
                None => self.subject_ifname_set(subject),
                Some(f) => self.selector_set(subject, f),
            };
            out.push(key_lookup(fam, field, &set));
        }
        out
    }

    fn tier_chain(
        &mut self,
        name: &str,
        d: Direction,
        pols: &[&Policy],
        deny: bool,
        next: &Verdict,
    ) -> Result<Chain, CompileError> {
        let mut ch = Chain::regular(name);
        for p in pols {
            let pchain = self.policy_chain(p, d, next)?;
            let subj = self.subject_matches(&p.subject, d);
            if !pchain.rules.is_empty() {
                for mut m in subj.clone() {
                    m.push(Expr::verdict(Verdict::Jump(pchain.name.clone())));
                    ch.rules.push(Rule::new(m));
                }
            }
            self.add_chain(pchain);
        }
        if deny {
            let mut seen = BTreeSet::new();
            for p in pols {
                if !seen.insert(&p.subject) {
                    continue;
                }
                for mut m in self.subject_matches(&p.subject, d) {
                    m.push(Expr::verdict(Verdict::Drop));
                    ch.rules
                        .push(Rule::new(m).with_comment("selected: default deny"));
                }
            }
        }
        ch.rules.push(Rule::new(vec![Expr::verdict(next.clone())]));
        Ok(ch)
    }

    fn policy_chain(
        &mut self,
        p: &Policy,
        d: Direction,
        next: &Verdict,
    ) -> Result<Chain, CompileError> {
        let id = p.id.to_string();
        let label = format!(
            "{}_{}",
            p.id.namespace.as_deref().unwrap_or("cluster"),
            p.id.name
        );
        let name = format!("{}_p_{}_{}", tag(d), sanitize(&label, 36), short_hash(&id));
        let mut ch = Chain::regular(&name);
        for (i, rule) in p.rules(d).unwrap_or(&[]).iter().enumerate() {
            let verdict = match rule.action {
                Action::Allow => Some(Verdict::Accept),
                Action::Deny => Some(Verdict::Drop),
                Action::Pass => Some(next.clone()),
                Action::Log => None,
            };
            let peers = self.peer_alts(&rule.peers, d).map_err(|e| match e {
                CompileError::Unsupported(w) => CompileError::Unsupported(format!("{}: {w}", p.id)),
                other => other,
            })?;
            let ports = self.port_alts(&rule.ports);
            for (pf, pe) in &peers {
                for (qf, qe) in &ports {
                    let fam = match (pf, qf) {
                        (Some(a), Some(b)) if a != b => continue,
                        (Some(a), _) | (None, Some(a)) => Some(*a),
                        (None, None) => None,
                    };
                    let mut exprs = Vec::new();
                    if let Some(f) = fam {
                        exprs.push(f.nfproto());
                    }
                    exprs.extend(pe.iter().cloned());
                    exprs.extend(qe.iter().cloned());
                    if rule.action == Action::Log {
                        exprs.push(Expr::Log {
                            prefix: format!("cnet {} {}[{i}] ", p.id.name, tag(d)),
                        });
                    }
                    if let Some(v) = &verdict {
                        exprs.push(Expr::verdict(v.clone()));
                    }
                    let comment = format!("{} {}[{i}]", p.id, d);
                    let comment: String = comment.chars().filter(|c| *c != '"').take(120).collect();
                    ch.rules.push(Rule::new(exprs).with_comment(&comment));
                }
            }
        }
        Ok(ch)
    }

    /// Peer alternatives: (family constraint, match expressions without the nfproto check).
    fn peer_alts(&mut self, peers: &PeerSet, d: Direction) -> Result<Vec<Alt>, CompileError> {
        let field = |f: Fam| match d {
            Direction::Ingress => f.saddr(),
            Direction::Egress => f.daddr(),
        };
        let list = if let PeerSet::Only(list) = peers {
            list
        } else if let PeerSet::Extended(x) = peers {
            return self.extended_alts(x);
        } else {
            return Ok(vec![(None, Vec::new())]);
        };
        let mut out = Vec::new();
        for peer in list {
            match peer {
                Peer::Endpoints(sel) => {
                    for f in self.fams() {
                        let s = self.selector_set(sel, f);
                        out.push((Some(f), vec![Expr::in_set(&[field(f)], &s)]));
                    }
                }
                Peer::Cidr(block) => {
                    let f = Fam::of(block.cidr.ip());
                    let s = self.cidr_set(block);
                    out.push((Some(f), vec![Expr::in_set(&[field(f)], &s)]));
                }
                Peer::Nodes(sel) => {
                    for f in FAMS {
                        let s = self.node_set(sel, f);
                        out.push((Some(f), vec![Expr::in_set(&[field(f)], &s)]));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Port alternatives: (family constraint, match expressions).
    fn port_alts(&mut self, ports: &PortSet) -> Vec<Alt> {
        let list = match ports {
            PortSet::Any => return vec![(None, Vec::new())],
            PortSet::Only(list) => list,
        };
        let mut out = Vec::new();
        for PortMatch { protocol, port } in list {
            let proto = match protocol {
                Some(p) => Expr::l4proto(p.number()),
                None => Expr::in_set(&[Field::MetaL4proto], PORTED_PROTOS_SET),
            };
            match port {
                PortSpec::All => out.push((None, vec![proto])),
                PortSpec::Range { start, end } => {
                    let m = if start == end {
                        Expr::eq(Field::ThDport, Value::Port(*start))
                    } else {
                        Expr::range(Field::ThDport, Value::Port(*start), Value::Port(*end))
                    };
                    out.push((None, vec![proto, m]));
                }
                PortSpec::Named(name) => {
                    for f in self.fams() {
                        let s = self.named_port_set(name, f);
                        let mut exprs = Vec::new();
                        if protocol.is_some() {
                            exprs.push(proto.clone());
                        }
                        exprs.push(Expr::in_set(
                            &[f.daddr(), Field::MetaL4proto, Field::ThDport],
                            &s,
                        ));
                        out.push((Some(f), exprs));
                    }
                }
            }
        }
        out
    }

    /// The address set of a pod selector for one family (shared by every user).
    fn selector_set(&mut self, sel: &EndpointSelector, f: Fam) -> String {
        let name = format!("sel{}_{}", f.digit(), short_hash(&format!("{sel:?}")));
        if !self.sets.contains_key(&name) {
            let mut s = Set::new(&name, &[f.addr_key()]);
            for ep in self.candidates(sel) {
                if selects(sel, ep, self.labels_of_ns(&ep.namespace)) {
                    for a in ep.addresses.iter().filter(|a| Fam::of(**a) == f) {
                        s.elements.insert(Element::value(Value::addr(*a)), None);
                    }
                }
            }
            self.sets.insert(name.clone(), s);
            let def = SetDef::Selector {
                sel: sel.clone(),
                fam: f,
            };
            self.defs.insert(name.clone(), def);
        }
        name
    }

    /// The set matching a namespace's pods, keyed like the dispatch (`None`: host interface
    /// names; else addresses of one family): the set of the selector "every pod of `ns`",
    /// shared with every policy that selects or admits a whole namespace (default deny,
    /// namespace isolation), by every namespaced tier and both directions.
    fn ns_members_set(&mut self, ns: &str, fam: Option<Fam>) -> String {
        let sel = EndpointSelector {
            namespaces: NamespaceMatch::Named(ns.to_string()),
            pods: Selector::All,
        };
        match fam {
            None => self.subject_ifname_set(&sel),
            Some(f) => self.selector_set(&sel, f),
        }
    }

    /// The set of the local pods whose namespace falls in hash bucket `b` (see
    /// [`ns_bucket`]), keyed like the dispatch; shared by every namespaced tier and both
    /// directions.
    fn ns_bucket_set(&mut self, b: u8, fam: Option<Fam>) -> String {
        let digit = fam.map_or("", Fam::digit);
        let name = format!("nsb{digit}_{b:02x}");
        if !self.sets.contains_key(&name) {
            let mut s = Set::new(&name, &[Self::key_type(fam)]);
            for ep in self.local.iter().filter(|e| ns_bucket(&e.namespace) == b) {
                for k in self.keys_of(ep, fam) {
                    s.elements.insert(k, None);
                }
            }
            self.sets.insert(name.clone(), s);
            self.defs
                .insert(name.clone(), SetDef::NsBucket { bucket: b, fam });
        }
        name
    }

    /// The host-interface set of a subject selector (transparent mode; local pods only).
    fn subject_ifname_set(&mut self, sel: &EndpointSelector) -> String {
        let name = format!("subj_{}", short_hash(&format!("{sel:?}")));
        if !self.sets.contains_key(&name) {
            let mut s = Set::new(&name, &[KeyType::Ifname]);
            for ep in &self.local {
                if selects(sel, ep, self.labels_of_ns(&ep.namespace)) {
                    for k in self.keys_of(ep, None) {
                        s.elements.insert(k, None);
                    }
                }
            }
            self.sets.insert(name.clone(), s);
            let def = SetDef::SubjectIfnames { sel: sel.clone() };
            self.defs.insert(name.clone(), def);
        }
        name
    }

    fn cidr_set(&mut self, block: &CidrBlock) -> String {
        let f = Fam::of(block.cidr.ip());
        let name = format!("cidr{}_{}", f.digit(), short_hash(&format!("{block:?}")));
        if !self.sets.contains_key(&name) {
            let mut s = Set::new(&name, &[f.addr_key()]).interval();
            for part in cidr_minus(block) {
                s.elements.insert(Element(vec![part]), None);
            }
            self.sets.insert(name.clone(), s);
            self.defs.insert(name.clone(), SetDef::Static);
        }
        name
    }

    fn node_set(&mut self, sel: &Selector, f: Fam) -> String {
        let name = format!("node{}_{}", f.digit(), short_hash(&format!("{sel:?}")));
        if !self.sets.contains_key(&name) {
            let mut s = Set::new(&name, &[f.addr_key()]);
            for a in node_addresses(self.inv, sel) {
                if Fam::of(a) == f {
                    s.elements.insert(Element::value(Value::addr(a)), None);
                }
            }
            self.sets.insert(name.clone(), s);
            self.defs.insert(name.clone(), SetDef::Static);
        }
        name
    }

    fn named_port_set(&mut self, port: &str, f: Fam) -> String {
        let name = format!("np{}_{}", f.digit(), sanitize(port, 40));
        let name = if name.len() > 56 || sanitize(port, 40) != port {
            format!("np{}_{}", f.digit(), short_hash(port))
        } else {
            name
        };
        if !self.sets.contains_key(&name) {
            let mut s = Set::new(
                &name,
                &[f.addr_key(), KeyType::InetProto, KeyType::InetService],
            );
            for ep in self.inv.endpoints.values().filter(|e| !e.host_network) {
                let Some(np) = ep.named_ports.get(port) else {
                    continue;
                };
                for a in ep.addresses.iter().filter(|a| Fam::of(**a) == f) {
                    s.elements.insert(
                        Element::concat(vec![
                            Part::Single(Value::addr(*a)),
                            Part::Single(Value::Proto(np.protocol.number())),
                            Part::Single(Value::Port(np.port)),
                        ]),
                        None,
                    );
                }
            }
            self.sets.insert(name.clone(), s);
            let def = SetDef::NamedPort {
                port: port.to_string(),
                fam: f,
            };
            self.defs.insert(name.clone(), def);
        }
        name
    }
}

/// Addresses a node selector matches, as the evaluator resolves them: node addresses and
/// host-network pods' addresses, attributed to their node.
fn node_addresses(inv: &Inventory, sel: &Selector) -> BTreeSet<IpAddr> {
    let mut by_addr: BTreeMap<IpAddr, String> = BTreeMap::new();
    for n in inv.nodes.values() {
        for a in &n.addresses {
            by_addr.insert(*a, n.name.clone());
        }
    }
    for ep in inv.endpoints.values().filter(|e| e.host_network) {
        for a in &ep.addresses {
            by_addr
                .entry(*a)
                .or_insert_with(|| ep.node.clone().unwrap_or_default());
        }
    }
    by_addr
        .into_iter()
        .filter(|(_, n)| inv.nodes.get(n).is_some_and(|n| sel.matches(&n.labels)))
        .map(|(a, _)| a)
        .collect()
}

fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn from_u128(v: u128, v4: bool) -> Value {
    if v4 {
        Value::V4(std::net::Ipv4Addr::from(v as u32))
    } else {
        Value::V6(std::net::Ipv6Addr::from(v))
    }
}

fn span(n: &IpNetwork) -> (u128, u128) {
    let bits: u32 = if n.is_ipv4() { 32 } else { 128 };
    let host = bits - u32::from(n.prefix());
    let start = to_u128(n.network());
    let end = if host == 0 {
        start
    } else if host >= 128 {
        u128::MAX
    } else {
        start | ((1u128 << host) - 1)
    };
    (start, end)
}

/// A CIDR minus its exceptions, as disjoint sorted interval parts.
pub fn cidr_minus(block: &CidrBlock) -> Vec<Part> {
    let v4 = block.cidr.is_ipv4();
    let mut ranges = vec![span(&block.cidr)];
    let mut excepts: Vec<(u128, u128)> = block
        .except
        .iter()
        .filter(|x| x.is_ipv4() == v4)
        .map(span)
        .collect();
    excepts.sort_unstable();
    for (xs, xe) in excepts {
        let mut next = Vec::new();
        for (s, e) in ranges {
            if xe < s || xs > e {
                next.push((s, e));
                continue;
            }
            if xs > s {
                next.push((s, xs - 1));
            }
            if xe < e {
                next.push((xe + 1, e));
            }
        }
        ranges = next;
    }
    ranges
        .into_iter()
        .map(|(s, e)| {
            if s == e {
                Part::Single(from_u128(s, v4))
            } else {
                Part::Range(from_u128(s, v4), from_u128(e, v4))
            }
        })
        .collect()
}

/// `[meta nfproto <fam>] <field> @set`: the lookup of a dispatch key (interface name, or a
/// family's address) in a plain set.
fn key_lookup(fam: Option<Fam>, field: Field, set: &str) -> Vec<Expr> {
    let mut exprs = Vec::with_capacity(2);
    if let Some(f) = fam {
        exprs.push(f.nfproto());
    }
    exprs.push(Expr::in_set(&[field], set));
    exprs
}
