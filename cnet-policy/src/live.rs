//! The engine's incremental state: the [`Structure`] of the table, a reference count per
//! element (two endpoints may contribute the same element; for map keys the endpoint with the
//! greatest id wins, as in the compiler) and the desired [`Ruleset`] kept up to date by
//! patching. Contributions are not stored: the engine keeps the state an endpoint had at the
//! last refresh and recomputes its old contribution from it (the structure is unchanged in
//! between, or the whole state is rebuilt). A pod change costs its old and new contributions
//! plus `O(changes · log n)` patching, and yields an element-only change list against what
//! was last taken ([`Live::take_changes`]).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::compile::{Attachments, CompileError, CompileOptions};
use crate::endpoint::{Endpoint, EndpointId, Inventory};
use crate::membership::{Gate, Item, SetId, Structure};
use crate::model::Labels;
use crate::nft::{Change, ChangeList, Element, Ruleset, Verdict};

/// A small fast hasher for element keys (not DoS-resistant; keys are our own data).
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Eight bytes per step (interface names and addresses are 4 to 16 bytes).
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.write_u64(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        // The multiply leaves its entropy in the high bits; the table indexes buckets with
        // the low ones (rustc-hash rotates the same way).
        self.0.rotate_left(26)
    }
}

type Fx = BuildHasherDefault<FxHasher>;

/// Contributors of one element: a count for plain sets; for map keys the contributing
/// endpoints with their verdicts, sorted by id (the last wins).
#[derive(Debug, Clone, Default)]
struct Refs {
    plain: u32,
    owners: Vec<(Arc<EndpointId>, Verdict)>,
}

impl Refs {
    fn effective(&self) -> Option<Option<Verdict>> {
        match self.owners.last() {
            Some((_, v)) => Some(Some(v.clone())),
            None if self.plain > 0 => Some(None),
            None => None,
        }
    }
    fn add(&mut self, id: &Arc<EndpointId>, v: &Option<Verdict>) {
        match v {
            None => self.plain += 1,
            Some(v) => {
                let pos = self.owners.partition_point(|(i, _)| **i < **id);
                self.owners.insert(pos, (id.clone(), v.clone()));
            }
        }
    }
    fn remove(&mut self, id: &EndpointId, v: &Option<Verdict>) {
        match v {
            None => self.plain = self.plain.saturating_sub(1),
            Some(_) => self.owners.retain(|(i, _)| **i != *id),
        }
    }
}

/// Incremental state of an engine (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Live {
    pub(crate) structure: Structure,
    /// Structure plus every contribution: what the kernel should hold.
    pub(crate) ruleset: Ruleset,
    refs: Vec<HashMap<Element, Refs, Fx>>,
    /// Elements changed since the last [`Live::take_changes`], with their value then
    /// (`None`: absent).
    touched: BTreeMap<(SetId, Element), Option<Option<Verdict>>>,
}

/// Contributions of some endpoints, bucketed by set: the endpoints with a contribution (in
/// the given order) and per set `(element, index of the endpoint, verdict)`.
type Gathered<'a> = (
    Vec<&'a EndpointId>,
    Vec<Vec<(Element, u32, Option<Verdict>)>>,
);

/// Reference counts and the set's elements (sorted, built in bulk) of one set.
type Folded = (
    HashMap<Element, Refs, Fx>,
    BTreeMap<Element, Option<Verdict>>,
);

fn gather<'a>(
    structure: &Structure,
    eps: &[(&'a EndpointId, &'a Endpoint)],
    inventory: &Inventory,
    att: &Attachments,
    opts: &CompileOptions,
    nsets: usize,
) -> Result<Gathered<'a>, CompileError> {
    let mut ns_labels: HashMap<&str, Labels> = HashMap::new();
    let mut owners: Vec<&EndpointId> = Vec::new();
    let mut per_set: Vec<Vec<(Element, u32, Option<Verdict>)>> = vec![Vec::new(); nsets];
    for (id, ep) in eps {
        let labels = ns_labels
            .entry(ep.namespace.as_str())
            .or_insert_with(|| inventory.namespace_labels(&ep.namespace));
        let items = structure.contribution(
            ep,
            labels,
            att.host_ifname.get(*id),
            att.pending.contains(*id),
            opts,
        )?;
        if items.is_empty() {
            continue;
        }
        let k = owners.len() as u32;
        owners.push(id);
        for (set, e, v) in items {
            if let Some(b) = per_set.get_mut(set as usize) {
                b.push((e, k, v));
            }
        }
    }
    Ok((owners, per_set))
}

/// One set's contributions: sorted by element (then endpoint, so each owner list comes out
/// sorted by id), equal elements folded into their reference counts, and the set's elements
/// built from the sorted runs (no hash-order walk, one bulk tree build).
fn fold(mut items: Vec<(Element, u32, Option<Verdict>)>, owners: &[&EndpointId]) -> Folded {
    items.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut m: HashMap<Element, Refs, Fx> =
        HashMap::with_capacity_and_hasher(items.len(), Fx::default());
    let mut v: Vec<(Element, Option<Verdict>)> = Vec::with_capacity(items.len());
    let mut it = items.into_iter().peekable();
    while let Some((e, k, verdict)) = it.next() {
        let mut r = Refs::default();
        let mut add = |k: u32, verdict: Option<Verdict>| match verdict {
            None => r.plain += 1,
            // Map keys only (few: pending pods' drops): an id copy per owner entry.
            Some(vd) => {
                if let Some(o) = owners.get(k as usize) {
                    r.owners.push((Arc::new((*o).clone()), vd));
                }
            }
        };
        add(k, verdict);
        while let Some((_, k2, v2)) = it.next_if(|n| n.0 == e) {
            add(k2, v2);
        }
        if let Some(eff) = r.effective() {
            v.push((e.clone(), eff));
        }
        m.insert(e, r);
    }
    // Sorted and unique: a bulk build (no per-element tree insert).
    (m, v.into_iter().collect())
}

/// Endpoints from which [`Live::build`] splits its work over two threads.
const PARALLEL_MIN_ENDPOINTS: usize = 2048;

impl Live {
    /// Every endpoint's contribution on top of the structure.
    pub(crate) fn build(
        structure: Structure,
        inventory: &Inventory,
        att: &Attachments,
        opts: &CompileOptions,
    ) -> Result<Live, CompileError> {
        let nsets = structure.set_names.len();
        let eps: Vec<(&EndpointId, &Endpoint)> = inventory.endpoints.iter().collect();
        let st = &structure;
        // Two halves of the endpoints, then two halves of the sets, on this thread and a
        // helper each (inline when the helper cannot be spawned, or when the node is small:
        // a thread start and join costs more than it saves below PARALLEL_MIN_ENDPOINTS, and
        // on a busy machine the helper may wait milliseconds for a CPU, which a CNI ADD of
        // one pod among a few hundred pays in full).
        let parallel = eps.len() >= PARALLEL_MIN_ENDPOINTS;
        let (first, second) = eps.split_at(eps.len() / 2);
        let ((mut owners, mut per_set), rest) = std::thread::scope(|s| {
            let h = parallel
                .then(|| {
                    std::thread::Builder::new()
                        .name("live-build".into())
                        .spawn_scoped(s, || gather(st, second, inventory, att, opts, nsets))
                        .ok()
                })
                .flatten();
            let a = gather(st, first, inventory, att, opts, nsets);
            let b = match h.map(|h| h.join()) {
                Some(Ok(b)) => b,
                Some(Err(panic)) => std::panic::resume_unwind(panic),
                None => gather(st, second, inventory, att, opts, nsets),
            };
            a.and_then(|a| b.map(|b| (a, b)))
        })?;
        let offset = owners.len() as u32;
        owners.extend(rest.0);
        for (bucket, more) in per_set.iter_mut().zip(rest.1) {
            bucket.extend(more.into_iter().map(|(e, k, v)| (e, k + offset, v)));
        }
        // Split the sets where half of all contributions lie.
        let total: usize = per_set.iter().map(Vec::len).sum();
        let mut acc = 0;
        let mid = per_set
            .iter()
            .position(|b| {
                acc += b.len();
                acc * 2 >= total
            })
            .map_or(nsets, |i| i + 1);
        // The helper takes its half out of a mutex, so a helper that failed to spawn leaves it
        // for this thread.
        let tail = std::sync::Mutex::new(per_set.split_off(mid.min(nsets)));
        let owners = &owners;
        let fold_all = |buckets: Vec<Vec<(Element, u32, Option<Verdict>)>>| -> Vec<Folded> {
            buckets.into_iter().map(|b| fold(b, owners)).collect()
        };
        let take_tail = || std::mem::take(&mut *tail.lock().unwrap_or_else(|e| e.into_inner()));
        let folded: Vec<Folded> = std::thread::scope(|s| {
            let h = parallel
                .then(|| {
                    std::thread::Builder::new()
                        .name("live-fold".into())
                        .spawn_scoped(s, || fold_all(take_tail()))
                        .ok()
                })
                .flatten();
            let mut out = fold_all(per_set);
            let more = match h.map(|h| h.join()) {
                Some(Ok(more)) => more,
                Some(Err(panic)) => std::panic::resume_unwind(panic),
                None => fold_all(take_tail()),
            };
            out.extend(more);
            out
        });
        let mut ruleset = structure.ruleset.clone();
        let mut table = ruleset.tables.get_mut(&structure.table);
        let mut refs: Vec<HashMap<Element, Refs, Fx>> = Vec::with_capacity(nsets);
        for (name, (m, elements)) in structure.set_names.iter().zip(folded) {
            if let Some(s) = table.as_mut().and_then(|t| t.sets.get_mut(name)) {
                if s.elements.is_empty() {
                    s.elements = elements;
                } else {
                    s.elements.extend(elements);
                }
            }
            refs.push(m);
        }
        Ok(Live {
            structure,
            ruleset,
            refs,
            touched: BTreeMap::new(),
        })
    }

    /// Replace an endpoint's contribution `old` (empty: it was absent) by `items` (empty:
    /// removed) and patch the ruleset.
    pub(crate) fn set_endpoint(&mut self, id: &EndpointId, old: &[Item], items: &[Item]) {
        if old == items {
            return;
        }
        let arc = Arc::new(id.clone());
        // Both lists are sorted by (set, element): walk them together.
        let (mut i, mut j) = (0, 0);
        let mut patches: Vec<(SetId, Element, Option<Option<Verdict>>)> = Vec::new();
        while i < old.len() || j < items.len() {
            let ord = match (old.get(i), items.get(j)) {
                (Some(a), Some(b)) => (a.0, &a.1).cmp(&(b.0, &b.1)),
                (Some(_), None) => std::cmp::Ordering::Less,
                _ => std::cmp::Ordering::Greater,
            };
            let (gone, came) = match ord {
                std::cmp::Ordering::Less => (old.get(i), None),
                std::cmp::Ordering::Greater => (None, items.get(j)),
                std::cmp::Ordering::Equal => (old.get(i), items.get(j)),
            };
            if gone.is_some() {
                i += 1;
            }
            if came.is_some() {
                j += 1;
            }
            let Some((set, e, _)) = gone.or(came) else {
                break;
            };
            if gone.map(|g| &g.2) == came.map(|c| &c.2) {
                continue;
            }
            let Some(m) = self.refs.get_mut(*set as usize) else {
                continue;
            };
            let r = m.entry(e.clone()).or_default();
            let before = r.effective();
            if let Some((_, _, v)) = gone {
                r.remove(id, v);
            }
            if let Some((_, _, v)) = came {
                r.add(&arc, v);
            }
            let after = r.effective();
            if after.is_none() {
                m.remove(e);
            }
            if before != after {
                self.touched.entry((*set, e.clone())).or_insert(before);
                patches.push((*set, e.clone(), after));
            }
        }
        if let Some(t) = self.ruleset.tables.get_mut(&self.structure.table) {
            for (set, e, after) in patches {
                let name = &self.structure.set_names[set as usize];
                if let Some(s) = t.sets.get_mut(name) {
                    match after {
                        Some(v) => {
                            s.elements.insert(e, v);
                        }
                        None => {
                            s.elements.remove(&e);
                        }
                    }
                }
            }
        }
    }

    /// The element changes since the last call, ordered so that every prefix of the batch
    /// fails closed (the kernel commits a batch atomically; this is defence in depth): a
    /// replaced map entry's delete first (so the batch never hits EEXIST or ENOENT when the
    /// kernel holds the state of the last call), then new pending `drop`s, deleted `selected`
    /// gates, other deletes, other adds (the sets a selected pod's rules match), new
    /// `selected` gates, and last the deleted pending `drop`s.
    pub(crate) fn take_changes(&mut self) -> ChangeList {
        let touched = std::mem::take(&mut self.touched);
        let table = self.structure.table.clone();
        let Some(t) = self.ruleset.tables.get(&table) else {
            return ChangeList::default();
        };
        type Entries = Vec<(Element, Option<Verdict>)>;
        let phase = |set: SetId, add: bool| -> u8 {
            match (self.structure.gate(set), add) {
                (Gate::Pending, true) => 1,
                (Gate::Selected, false) => 2,
                (Gate::Member, false) => 3,
                (Gate::Member, true) => 4,
                (Gate::Selected, true) => 5,
                (Gate::Pending, false) => 6,
            }
        };
        // (phase, set, add) → elements.
        let mut groups: BTreeMap<(u8, SetId, bool), Entries> = BTreeMap::new();
        for ((set, e), before) in touched {
            let Some(s) = t.sets.get(&self.structure.set_names[set as usize]) else {
                continue;
            };
            let now = s.elements.get(&e).cloned();
            if now == before {
                continue;
            }
            if before.is_some() {
                let p = if now.is_some() { 0 } else { phase(set, false) };
                groups
                    .entry((p, set, false))
                    .or_default()
                    .push((e.clone(), None));
            }
            if let Some(v) = now {
                groups
                    .entry((phase(set, true), set, true))
                    .or_default()
                    .push((e, v));
            }
        }
        let mut cl = ChangeList::default();
        for ((_, set, add), elements) in groups {
            let Some(s) = t.sets.get(&self.structure.set_names[set as usize]) else {
                continue;
            };
            let (table, decl) = (table.clone(), s.decl.clone());
            cl.changes.push(if add {
                Change::AddElements {
                    table,
                    decl,
                    elements,
                }
            } else {
                Change::DeleteElements {
                    table,
                    decl,
                    elements,
                }
            });
        }
        cl
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::compile::Mode;
    use crate::endpoint::Endpoint;
    use crate::model::PolicySet;
    use crate::nft::Change;

    const POLICY: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db, namespace: prod}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from: [{podSelector: {matchLabels: {app: web}}}]
";

    /// (set name, add?) of each change, in batch order.
    fn order(cl: &ChangeList) -> Vec<(String, bool)> {
        cl.changes
            .iter()
            .map(|c| match c {
                Change::AddElements { decl, .. } => (decl.name.clone(), true),
                Change::DeleteElements { decl, .. } => (decl.name.clone(), false),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn position(o: &[(String, bool)], prefix: &str, add: bool) -> usize {
        o.iter()
            .position(|(n, a)| n.starts_with(prefix) && *a == add)
            .unwrap_or_else(|| panic!("{prefix} {add}: {o:?}"))
    }

    #[test]
    fn batches_open_gates_last_and_close_them_first() {
        let set = PolicySet::from_network_policies(&crate::parse_yaml(POLICY).unwrap()).unwrap();
        let opts = CompileOptions::new(Mode::Transparent);
        let inv = Inventory::default();
        let structure = Structure::build(&set, &inv, &opts).unwrap().unwrap();
        let mut live = Live::build(structure, &inv, &Attachments::default(), &opts).unwrap();
        let ep = Endpoint::new(
            "prod",
            "db",
            std::collections::BTreeMap::from([("app".to_string(), "db".to_string())]),
            vec!["10.1.0.2".parse().unwrap()],
        );
        let ifname = "cnet0001".to_string();
        let labels = Labels::new();
        let items = |pending: bool| {
            let s = &live.structure;
            s.contribution(&ep, &labels, Some(&ifname), pending, &opts)
                .unwrap()
        };
        let (pending, ready) = (items(true), items(false));
        // Added pending: the drop comes before every other element, the gate last.
        live.set_endpoint(&ep.id(), &[], &pending);
        let o = order(&live.take_changes());
        assert!(
            o[..2].iter().all(|(n, a)| n.ends_with("_dispatch") && *a),
            "{o:?}"
        );
        assert_eq!(position(&o, "ing_selected", true), o.len() - 1, "{o:?}");
        // Ready: only the drops go.
        live.set_endpoint(&ep.id(), &pending, &ready);
        let o = order(&live.take_changes());
        let drops = ["eg_dispatch", "ing_dispatch"].map(|n| (n.to_string(), false));
        assert_eq!(o, drops.to_vec());
        // Removed: the gate goes first.
        live.set_endpoint(&ep.id(), &ready, &[]);
        let o = order(&live.take_changes());
        assert_eq!(position(&o, "ing_selected", false), 0, "{o:?}");
        assert!(o.iter().all(|(_, add)| !add), "{o:?}");
        // Added ready: members before the gate.
        live.set_endpoint(&ep.id(), &[], &ready);
        let o = order(&live.take_changes());
        assert_eq!(position(&o, "ing_selected", true), o.len() - 1, "{o:?}");
        assert!(o.len() > 2, "{o:?}");
    }
}
