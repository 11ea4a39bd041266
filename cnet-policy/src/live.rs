//! The engine's incremental state: the [`Structure`] of the table, every endpoint's
//! contribution, a reference list per element (two endpoints may contribute the same element)
//! and the desired [`Ruleset`] kept up to date by patching. A pod change costs its own
//! contribution plus `O(changes · log n)` patching, and yields an element-only change list
//! against what was last taken ([`Live::take_changes`]).

use std::collections::{BTreeMap, HashMap};

use crate::compile::{Attachments, CompileError, CompileOptions};
use crate::endpoint::{EndpointId, Inventory};
use crate::membership::{Item, Structure};
use crate::model::Labels;
use crate::nft::{Change, ChangeList, Element, Ruleset, Verdict};

/// Contributors of one element, sorted by endpoint id (the greatest wins a map key).
type Refs = Vec<(EndpointId, Option<Verdict>)>;

/// Incremental state of an engine (see the module docs).
#[derive(Debug, Clone)]
pub(crate) struct Live {
    pub(crate) structure: Structure,
    /// Structure plus every contribution: what the kernel should hold.
    pub(crate) ruleset: Ruleset,
    contrib: HashMap<EndpointId, Vec<Item>>,
    refs: HashMap<String, HashMap<Element, Refs>>,
    /// Elements changed since the last [`Live::take_changes`], with their value then
    /// (`None`: absent).
    touched: BTreeMap<(String, Element), Option<Option<Verdict>>>,
}

fn effective(refs: Option<&Refs>) -> Option<Option<Verdict>> {
    refs.and_then(|r| r.last()).map(|(_, v)| v.clone())
}

impl Live {
    /// Every endpoint's contribution on top of the structure.
    pub(crate) fn build(
        structure: Structure,
        inventory: &Inventory,
        att: &Attachments,
        opts: &CompileOptions,
    ) -> Result<Live, CompileError> {
        let mut live = Live {
            ruleset: structure.ruleset.clone(),
            structure,
            contrib: HashMap::with_capacity(inventory.endpoints.len()),
            refs: HashMap::new(),
            touched: BTreeMap::new(),
        };
        let mut ns_labels: HashMap<&str, Labels> = HashMap::new();
        for (id, ep) in &inventory.endpoints {
            let labels = ns_labels
                .entry(ep.namespace.as_str())
                .or_insert_with(|| inventory.namespace_labels(&ep.namespace));
            let items = live.structure.contribution(ep, labels, att, opts)?;
            // Endpoints come in id order: pushing keeps each reference list sorted.
            for (set, e, v) in &items {
                live.refs
                    .entry(set.clone())
                    .or_default()
                    .entry(e.clone())
                    .or_default()
                    .push((id.clone(), v.clone()));
            }
            if !items.is_empty() {
                live.contrib.insert(id.clone(), items);
            }
        }
        let table = live.structure.table.clone();
        if let Some(t) = live.ruleset.tables.get_mut(&table) {
            for (set, elems) in &live.refs {
                if let Some(s) = t.sets.get_mut(set) {
                    for (e, r) in elems {
                        if let Some(v) = effective(Some(r)) {
                            s.elements.insert(e.clone(), v);
                        }
                    }
                }
            }
        }
        Ok(live)
    }

    /// Replace an endpoint's contribution (empty: removed) and patch the ruleset.
    pub(crate) fn set_endpoint(&mut self, id: &EndpointId, items: Vec<Item>) {
        let old = self.contrib.remove(id).unwrap_or_default();
        if old == items {
            if !items.is_empty() {
                self.contrib.insert(id.clone(), items);
            }
            return;
        }
        let mut keys: Vec<(&String, &Element)> = old
            .iter()
            .chain(items.iter())
            .map(|(s, e, _)| (s, e))
            .collect();
        keys.sort();
        keys.dedup();
        let mut patches = Vec::new();
        for (set, e) in keys {
            let per_set = self.refs.entry(set.clone()).or_default();
            let before = effective(per_set.get(e));
            let r = per_set.entry(e.clone()).or_default();
            r.retain(|(i, _)| i != id);
            if let Some((_, _, v)) = items.iter().find(|(s, x, _)| s == set && x == e) {
                let pos = r.partition_point(|(i, _)| i < id);
                r.insert(pos, (id.clone(), v.clone()));
            }
            let after = effective(Some(r));
            if r.is_empty() {
                per_set.remove(e);
            }
            if before != after {
                self.touched
                    .entry((set.clone(), e.clone()))
                    .or_insert(before);
                patches.push((set.clone(), e.clone(), after));
            }
        }
        if let Some(t) = self.ruleset.tables.get_mut(&self.structure.table) {
            for (set, e, after) in patches {
                if let Some(s) = t.sets.get_mut(&set) {
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
        if !items.is_empty() {
            self.contrib.insert(id.clone(), items);
        }
    }

    /// The element changes since the last call: deletes first, then adds (a map entry whose
    /// verdict changed is deleted and re-added), so the batch never hits EEXIST or ENOENT
    /// when the kernel holds the state of the last call.
    pub(crate) fn take_changes(&mut self) -> ChangeList {
        let touched = std::mem::take(&mut self.touched);
        let table = self.structure.table.clone();
        let Some(t) = self.ruleset.tables.get(&table) else {
            return ChangeList::default();
        };
        let mut dels: BTreeMap<&str, Vec<(Element, Option<Verdict>)>> = BTreeMap::new();
        let mut adds: BTreeMap<&str, Vec<(Element, Option<Verdict>)>> = BTreeMap::new();
        for ((set, e), before) in touched {
            let Some((name, s)) = t.sets.get_key_value(&set) else {
                continue;
            };
            let now = s.elements.get(&e).cloned();
            if now == before {
                continue;
            }
            if before.is_some() {
                dels.entry(name.as_str())
                    .or_default()
                    .push((e.clone(), None));
            }
            if let Some(v) = now {
                adds.entry(name.as_str()).or_default().push((e, v));
            }
        }
        let mut cl = ChangeList::default();
        for (list, add) in [(dels, false), (adds, true)] {
            for (name, elements) in list {
                let Some(s) = t.sets.get(name) else { continue };
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
        }
        cl
    }
}
