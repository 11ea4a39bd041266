//! The compiled table split in two: its *structure* (chains, rules, set declarations and the
//! elements that do not depend on pods), which depends only on policies, namespaces, nodes,
//! host-network endpoints and options; and each pod's *membership*: the elements that one
//! endpoint contributes to selector sets, named-port sets and the dispatch sets (pending
//! `drop` maps, selected sets, namespace bucket sets).
//!
//! [`Structure::build`] runs the compiler without pod-network endpoints and keeps, for every
//! named set or map, what it stands for ([`SetDef`]) plus a [`SelectorIndex`] over the
//! selectors. [`Structure::contribution`] then computes one endpoint's elements with the same
//! rules the compiler uses, looking only at the selectors that can match it. The full table is
//! the structure plus every endpoint's contribution (for maps, the endpoint with the greatest
//! id wins a key two endpoints share, as in the compiler's iteration order); the engine keeps
//! contributions per endpoint ([`crate::live`]) so a pod change is an element delta.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::compile::{
    Attachments, CompileError, CompileOptions, Fam, Mode, PodFams, compile_with_defs, ns_bucket,
    pod_families, selects, valid_ifname,
};
use crate::endpoint::{Endpoint, Inventory};
use crate::model::{Direction, EndpointSelector, Labels, PolicySet};
use crate::nft::{Element, Part, Ruleset, TableId, Value, Verdict};
use crate::selector_index::SelectorIndex;

/// What a named set or verdict map of the compiled table stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SetDef {
    /// Elements independent of pod-network endpoints (CIDRs, node addresses, constants).
    Static,
    /// Addresses of one family of the pod-network endpoints a selector selects.
    Selector {
        /// The selector.
        sel: EndpointSelector,
        /// Address family.
        fam: Fam,
    },
    /// Host interfaces of the local endpoints a subject selector selects (transparent mode).
    SubjectIfnames {
        /// The selector.
        sel: EndpointSelector,
    },
    /// `address . protocol . port` of every pod-network endpoint with this named port.
    NamedPort {
        /// The port name.
        port: String,
        /// Address family.
        fam: Fam,
    },
    /// Dispatch map of a direction: local pending endpoint key → `drop` (fail closed). Only
    /// terminal verdicts, so a pod change never adds a `goto`/`jump` element.
    Pending {
        /// Direction.
        dir: Direction,
        /// Key family (`None`: interface name).
        fam: Option<Fam>,
    },
    /// Keys of the local endpoints some policy selects for a direction (pending or not):
    /// the base chain's one `goto <dir>_start` rule matches this set.
    Selected {
        /// Direction.
        dir: Direction,
        /// Key family (`None`: interface name).
        fam: Option<Fam>,
    },
    /// Keys of the local endpoints whose namespace is in a dispatch bucket (a namespaced
    /// tier's per-bucket rule).
    NsBucket {
        /// The bucket ([`crate::compile::ns_bucket`]).
        bucket: u8,
        /// Key family (`None`: interface name).
        fam: Option<Fam>,
    },
}

/// Index of a set in [`Structure::set_names`].
pub(crate) type SetId = u32;

/// One element an endpoint contributes: set, key, verdict (maps).
pub(crate) type Item = (SetId, Element, Option<Verdict>);

/// The part a set plays in dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// A pending map (`drop`): adding an element closes, deleting opens.
    Pending,
    /// A selected set: adding an element sends the pod to its rules.
    Selected,
    /// Any other set (membership the rules match on).
    Member,
}

/// What a selector feeds.
#[derive(Debug, Clone)]
enum Target {
    Addrs(SetId, Fam),
    Ifnames(SetId),
    Selected(usize),
}

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Egress => 0,
        Direction::Ingress => 1,
    }
}

/// The policy-dependent part of the compiled table and how to compute pods' elements.
#[derive(Debug, Clone)]
pub(crate) struct Structure {
    /// The table compiled without pod-network endpoints.
    pub(crate) ruleset: Ruleset,
    /// Our table.
    pub(crate) table: TableId,
    /// Names of the sets of the table, by [`SetId`].
    pub(crate) set_names: Vec<String>,
    index: SelectorIndex<Vec<Target>>,
    named_ports: HashMap<String, Vec<(SetId, Fam)>>,
    /// Pending maps: (set, key family).
    pending: Vec<(SetId, Option<Fam>)>,
    /// Selected sets: (set, direction, key family).
    selected: Vec<(SetId, Direction, Option<Fam>)>,
    /// Namespace bucket → its member sets (set, key family).
    ns_buckets: HashMap<u8, Vec<(SetId, Option<Fam>)>>,
    /// Families of pod-network addresses the structure was compiled for: a family's
    /// positive pod-set matches exist only when some endpoint has an address of it, so an
    /// endpoint change that makes a family appear or disappear needs a new structure.
    pub(crate) pod_fams: PodFams,
}

fn addrs_of(ep: &Endpoint, f: Fam) -> impl Iterator<Item = &std::net::IpAddr> {
    ep.addresses.iter().filter(move |a| Fam::of(**a) == f)
}

impl Structure {
    /// Compile the structure. `Ok(None)` when the compiled table has a set whose membership
    /// is not described (the caller then compiles whole every time).
    pub(crate) fn build(
        policies: &PolicySet,
        inventory: &Inventory,
        opts: &CompileOptions,
    ) -> Result<Option<Structure>, CompileError> {
        let stripped = Inventory {
            namespaces: inventory.namespaces.clone(),
            endpoints: inventory
                .endpoints
                .iter()
                .filter(|(_, e)| e.host_network)
                .map(|(k, e)| (k.clone(), e.clone()))
                .collect(),
            nodes: inventory.nodes.clone(),
        };
        let pod_fams = pod_families(inventory);
        let (ruleset, defs) = compile_with_defs(
            policies,
            &stripped,
            &Attachments::default(),
            opts,
            Some(pod_fams),
        )?;
        let Some(table) = ruleset.tables.keys().next().cloned() else {
            return Ok(None);
        };
        let Some(t) = ruleset.tables.get(&table) else {
            return Ok(None);
        };
        if t.sets.keys().any(|n| !defs.contains_key(n)) {
            return Ok(None);
        }
        let set_names: Vec<String> = t.sets.keys().cloned().collect();
        let ids: HashMap<&str, SetId> = set_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i as SetId))
            .collect();
        let mut by_sel: BTreeMap<EndpointSelector, Vec<Target>> = BTreeMap::new();
        let mut named_ports: HashMap<String, Vec<(SetId, Fam)>> = HashMap::new();
        let mut pending = Vec::new();
        let mut selected = Vec::new();
        let mut ns_buckets: HashMap<u8, Vec<(SetId, Option<Fam>)>> = HashMap::new();
        for (name, def) in defs {
            let Some(&name) = ids.get(name.as_str()) else {
                continue;
            };
            match def {
                SetDef::Static => {}
                SetDef::Selector { sel, fam } => {
                    by_sel
                        .entry(sel)
                        .or_default()
                        .push(Target::Addrs(name, fam));
                }
                SetDef::SubjectIfnames { sel } => {
                    by_sel.entry(sel).or_default().push(Target::Ifnames(name));
                }
                SetDef::NamedPort { port, fam } => {
                    named_ports.entry(port).or_default().push((name, fam));
                }
                SetDef::Pending { fam, .. } => pending.push((name, fam)),
                SetDef::Selected { dir, fam } => selected.push((name, dir, fam)),
                SetDef::NsBucket { bucket, fam } => {
                    ns_buckets.entry(bucket).or_default().push((name, fam));
                }
            }
        }
        // Which endpoints a direction's dispatch sends to policy: those some policy with
        // rules for that direction selects (as the compiler's `selected_ids`).
        for d in [Direction::Egress, Direction::Ingress] {
            let subjects: BTreeSet<&EndpointSelector> = policies
                .tiers
                .iter()
                .flat_map(|t| &t.policies)
                .filter(|p| p.rules(d).is_some())
                .map(|p| &p.subject)
                .collect();
            for s in subjects {
                by_sel
                    .entry(s.clone())
                    .or_default()
                    .push(Target::Selected(dir_index(d)));
            }
        }
        let mut index = SelectorIndex::default();
        for (sel, targets) in by_sel {
            index.insert(sel, targets);
        }
        Ok(Some(Structure {
            ruleset,
            table,
            set_names,
            index,
            named_ports,
            pending,
            selected,
            ns_buckets,
            pod_fams,
        }))
    }

    /// The part a set plays in dispatch (the order of a batch's element changes).
    pub(crate) fn gate(&self, set: SetId) -> Gate {
        if self.pending.iter().any(|(s, _)| *s == set) {
            Gate::Pending
        } else if self.selected.iter().any(|(s, _, _)| *s == set) {
            Gate::Selected
        } else {
            Gate::Member
        }
    }

    /// The elements one endpoint contributes, sorted by (set, key), each once, given its
    /// host interface and pending mark.
    pub(crate) fn contribution(
        &self,
        ep: &Endpoint,
        ns_labels: &Labels,
        ifname: Option<&String>,
        pending: bool,
        opts: &CompileOptions,
    ) -> Result<Vec<Item>, CompileError> {
        let mut out: Vec<Item> = Vec::new();
        if ep.host_network {
            return Ok(out);
        }
        let here = match (&opts.node, &ep.node) {
            (Some(n), Some(m)) => n == m,
            _ => true,
        };
        let local = here
            && match opts.mode {
                Mode::Bridge => true,
                Mode::Transparent => match ifname {
                    Some(n) if valid_ifname(n) => true,
                    Some(n) => {
                        return Err(CompileError::BadIfname {
                            endpoint: ep.id(),
                            ifname: n.clone(),
                        });
                    }
                    None => false,
                },
            };
        let mut selected = [false; 2];
        for (sel, targets) in self.index.candidates(ep) {
            if !selects(sel, ep, ns_labels) {
                continue;
            }
            for t in targets {
                match t {
                    Target::Addrs(set, f) => {
                        for a in addrs_of(ep, *f) {
                            out.push((*set, Element::value(Value::addr(*a)), None));
                        }
                    }
                    Target::Ifnames(set) => {
                        if let (true, Some(n)) = (local, ifname) {
                            out.push((*set, Element::value(Value::Ifname(n.clone())), None));
                        }
                    }
                    Target::Selected(d) => selected[*d] = true,
                }
            }
        }
        for (pname, np) in &ep.named_ports {
            for (set, f) in self.named_ports.get(pname).into_iter().flatten() {
                for a in addrs_of(ep, *f) {
                    let e = Element::concat(vec![
                        Part::Single(Value::addr(*a)),
                        Part::Single(Value::Proto(np.protocol.number())),
                        Part::Single(Value::Port(np.port)),
                    ]);
                    out.push((*set, e, None));
                }
            }
        }
        if local {
            let keys = |fam: Option<Fam>| -> Vec<Element> {
                match fam {
                    None => ifname
                        .map(|n| Element::value(Value::Ifname(n.clone())))
                        .into_iter()
                        .collect(),
                    Some(f) => addrs_of(ep, f)
                        .map(|a| Element::value(Value::addr(*a)))
                        .collect(),
                }
            };
            if pending {
                for (set, fam) in &self.pending {
                    for k in keys(*fam) {
                        out.push((*set, k, Some(Verdict::Drop)));
                    }
                }
            }
            for (set, d, fam) in &self.selected {
                if selected[dir_index(*d)] {
                    for k in keys(*fam) {
                        out.push((*set, k, None));
                    }
                }
            }
            let bucket = self.ns_buckets.get(&ns_bucket(&ep.namespace));
            for (set, fam) in bucket.into_iter().flatten() {
                for k in keys(*fam) {
                    out.push((*set, k, None));
                }
            }
        }
        out.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        out.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
        Ok(out)
    }
}
