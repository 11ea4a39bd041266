//! Diff two IRs into an ordered change list that one netlink batch can apply.
//!
//! # Granularity
//! - **Elements**: when only a set's (or verdict map's) elements differ, the change is element
//!   deletes and adds only, so pods coming and going never touch rules. A map entry whose
//!   verdict changed is deleted and re-added. Only elements really absent are added and only
//!   elements really present are deleted, so the batch never hits EEXIST/ENOENT when the
//!   programmed state is what the diff was given.
//! - **Sets**: a set whose declaration changed (key, flags, map-ness), or a `constant` set whose
//!   elements changed, is deleted and re-added with all its elements; every chain that
//!   references it (before or after) is replaced too, because the kernel refuses to delete a
//!   set still bound to rules.
//! - **Chains**: a chain whose rules changed in any way is *replaced*: flushed (all rules
//!   deleted) and its rules re-added in order. Rule handles are never needed.
//! - **Tables**: a chain whose kind changed (base ↔ regular, hook, priority, policy) replaces
//!   the whole table (delete + add in the same batch), since jumps and map entries bind to it.
//!   Tables only in the old IR are deleted; tables only in the new one are added whole.
//!
//! # Order inside the batch
//! Deletes before adds, referencing objects before referenced ones: delete tables, flush
//! chains, delete elements, delete sets, delete chains; then add tables, chains, sets,
//! elements, rules. The kernel applies the batch atomically, so the order only has to be valid
//! step by step, never visible.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use super::ir::{Chain, ChainKind, Element, Rule, Ruleset, Set, SetDecl, Table, TableId, Verdict};

/// One change of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Create a table (no error if it exists).
    AddTable(TableId),
    /// Delete a table with everything in it.
    DeleteTable(TableId),
    /// Create a chain.
    AddChain {
        /// Table.
        table: TableId,
        /// Chain name.
        name: String,
        /// Base or regular.
        kind: ChainKind,
    },
    /// Delete every rule of a chain.
    FlushChain {
        /// Table.
        table: TableId,
        /// Chain name.
        chain: String,
    },
    /// Delete an (empty, unreferenced) chain.
    DeleteChain {
        /// Table.
        table: TableId,
        /// Chain name.
        chain: String,
    },
    /// Create a set or verdict map (without elements).
    AddSet {
        /// Table.
        table: TableId,
        /// Declaration.
        decl: SetDecl,
    },
    /// Delete a set or map (with its elements).
    DeleteSet {
        /// Table.
        table: TableId,
        /// Declaration.
        decl: SetDecl,
    },
    /// Add elements that are absent (create semantics).
    AddElements {
        /// Table.
        table: TableId,
        /// The set's declaration (needed to encode keys).
        decl: SetDecl,
        /// Elements with their verdicts (maps).
        elements: Vec<(Element, Option<Verdict>)>,
    },
    /// Delete elements that are present.
    DeleteElements {
        /// Table.
        table: TableId,
        /// The set's declaration.
        decl: SetDecl,
        /// Elements (verdicts are ignored).
        elements: Vec<(Element, Option<Verdict>)>,
    },
    /// Append a rule to a chain.
    AddRule {
        /// Table.
        table: TableId,
        /// Chain name.
        chain: String,
        /// The rule.
        rule: Rule,
    },
}

impl Change {
    /// Whether this change only adds or deletes set elements.
    pub fn is_element_change(&self) -> bool {
        matches!(
            self,
            Change::AddElements { .. } | Change::DeleteElements { .. }
        )
    }
}

/// An ordered list of changes, applied as one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeList {
    /// Changes in batch order.
    pub changes: Vec<Change>,
}

impl ChangeList {
    /// No changes.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Whether every change only touches set elements.
    pub fn is_elements_only(&self) -> bool {
        self.changes.iter().all(Change::is_element_change)
    }

    /// Number of element adds and deletes (counting elements, not messages).
    pub fn element_changes(&self) -> usize {
        self.changes
            .iter()
            .map(|c| match c {
                Change::AddElements { elements, .. } | Change::DeleteElements { elements, .. } => {
                    elements.len()
                }
                _ => 0,
            })
            .sum()
    }

    /// Apply these changes to an IR, with the kernel's meaning (the model the programmer keeps
    /// of what it programmed): `add table`/`add chain` create when absent, `flush chain` empties,
    /// element adds insert and element deletes remove, rules append.
    pub fn apply_to(&self, rs: &mut Ruleset) {
        for c in &self.changes {
            match c {
                Change::AddTable(id) => {
                    rs.tables
                        .entry(id.clone())
                        .or_insert_with(|| Table::new(id.family, &id.name));
                }
                Change::DeleteTable(id) => {
                    rs.tables.remove(id);
                }
                Change::AddChain { table, name, kind } => {
                    if let Some(t) = rs.tables.get_mut(table) {
                        t.chains.entry(name.clone()).or_insert_with(|| Chain {
                            name: name.clone(),
                            kind: *kind,
                            rules: Vec::new(),
                        });
                    }
                }
                Change::FlushChain { table, chain } => {
                    if let Some(c) = rs
                        .tables
                        .get_mut(table)
                        .and_then(|t| t.chains.get_mut(chain))
                    {
                        c.rules.clear();
                    }
                }
                Change::DeleteChain { table, chain } => {
                    if let Some(t) = rs.tables.get_mut(table) {
                        t.chains.remove(chain);
                    }
                }
                Change::AddSet { table, decl } => {
                    if let Some(t) = rs.tables.get_mut(table) {
                        t.sets.insert(
                            decl.name.clone(),
                            Set {
                                decl: decl.clone(),
                                elements: BTreeMap::new(),
                            },
                        );
                    }
                }
                Change::DeleteSet { table, decl } => {
                    if let Some(t) = rs.tables.get_mut(table) {
                        t.sets.remove(&decl.name);
                    }
                }
                Change::AddElements {
                    table,
                    decl,
                    elements,
                } => {
                    if let Some(s) = rs
                        .tables
                        .get_mut(table)
                        .and_then(|t| t.sets.get_mut(&decl.name))
                    {
                        for (e, v) in elements {
                            s.elements.insert(e.clone(), v.clone());
                        }
                    }
                }
                Change::DeleteElements {
                    table,
                    decl,
                    elements,
                } => {
                    if let Some(s) = rs
                        .tables
                        .get_mut(table)
                        .and_then(|t| t.sets.get_mut(&decl.name))
                    {
                        for (e, _) in elements {
                            s.elements.remove(e);
                        }
                    }
                }
                Change::AddRule { table, chain, rule } => {
                    if let Some(c) = rs
                        .tables
                        .get_mut(table)
                        .and_then(|t| t.chains.get_mut(chain))
                    {
                        c.rules.push(rule.clone());
                    }
                }
            }
        }
    }

    /// Replace each table of `rs` atomically, whatever the kernel holds: `add table` (a no-op
    /// when it exists), `delete table`, then the whole table again. Used for the first sync and
    /// to restore after someone else flushed or changed our tables.
    pub fn replace_all(rs: &Ruleset) -> ChangeList {
        let mut p = Phases::default();
        for t in rs.tables.values() {
            p.del_table.push(Change::AddTable(t.id()));
            p.del_table.push(Change::DeleteTable(t.id()));
            add_whole_table(&mut p, t);
        }
        p.into_list()
    }

    /// Delete each of these tables if it exists (`add table` first makes the delete safe).
    pub fn delete_tables<'a>(ids: impl IntoIterator<Item = &'a TableId>) -> ChangeList {
        let mut p = Phases::default();
        for id in ids {
            p.del_table.push(Change::AddTable(id.clone()));
            p.del_table.push(Change::DeleteTable(id.clone()));
        }
        p.into_list()
    }
}

#[derive(Default)]
struct Phases {
    del_table: Vec<Change>,
    flush: Vec<Change>,
    del_elems: Vec<Change>,
    del_sets: Vec<Change>,
    del_chains: Vec<Change>,
    add_table: Vec<Change>,
    add_chains: Vec<Change>,
    add_sets: Vec<Change>,
    add_elems: Vec<Change>,
    add_rules: Vec<Change>,
}

impl Phases {
    fn into_list(self) -> ChangeList {
        let mut changes = Vec::new();
        for v in [
            self.del_table,
            self.flush,
            self.del_elems,
            self.del_sets,
            self.del_chains,
            self.add_table,
            self.add_chains,
            self.add_sets,
            self.add_elems,
            self.add_rules,
        ] {
            changes.extend(v);
        }
        ChangeList { changes }
    }
}

fn add_whole_table(p: &mut Phases, t: &Table) {
    let id = t.id();
    p.add_table.push(Change::AddTable(id.clone()));
    for c in t.chains.values() {
        p.add_chains.push(Change::AddChain {
            table: id.clone(),
            name: c.name.clone(),
            kind: c.kind,
        });
        add_rules(p, &id, &c.name, &c.rules);
    }
    for s in t.sets.values() {
        add_whole_set(p, &id, s);
    }
}

fn add_rules(p: &mut Phases, id: &TableId, chain: &str, rules: &[Rule]) {
    for r in rules {
        p.add_rules.push(Change::AddRule {
            table: id.clone(),
            chain: chain.to_string(),
            rule: r.clone(),
        });
    }
}

fn add_whole_set(p: &mut Phases, id: &TableId, s: &Set) {
    p.add_sets.push(Change::AddSet {
        table: id.clone(),
        decl: s.decl.clone(),
    });
    if !s.elements.is_empty() {
        p.add_elems.push(Change::AddElements {
            table: id.clone(),
            decl: s.decl.clone(),
            elements: s
                .elements
                .iter()
                .map(|(e, v)| (e.clone(), v.clone()))
                .collect(),
        });
    }
}

/// The changes that turn `old` (what is programmed) into `new` (what is desired).
pub fn diff(old: &Ruleset, new: &Ruleset) -> ChangeList {
    let mut p = Phases::default();
    for (id, _) in old
        .tables
        .iter()
        .filter(|(id, _)| !new.tables.contains_key(*id))
    {
        p.del_table.push(Change::DeleteTable(id.clone()));
    }
    for (id, n) in &new.tables {
        match old.tables.get(id) {
            None => add_whole_table(&mut p, n),
            Some(o) => diff_table(&mut p, o, n),
        }
    }
    p.into_list()
}

type Entries = Vec<(Element, Option<Verdict>)>;

/// Entries to delete and to add, by one merge walk over both sorted maps (O(n), no lookups):
/// sets hold tens of thousands of elements and a pod event changes one.
fn element_delta(
    old: &BTreeMap<Element, Option<Verdict>>,
    new: &BTreeMap<Element, Option<Verdict>>,
) -> (Entries, Entries) {
    let (mut dels, mut adds) = (Vec::new(), Vec::new());
    let mut a = old.iter().peekable();
    let mut b = new.iter().peekable();
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => dels.extend(a.by_ref().map(|(e, v)| (e.clone(), v.clone()))),
            (None, Some(_)) => adds.extend(b.by_ref().map(|(e, v)| (e.clone(), v.clone()))),
            (Some((ea, va)), Some((eb, vb))) => match ea.cmp(eb) {
                Ordering::Less => {
                    dels.push(((*ea).clone(), (*va).clone()));
                    a.next();
                }
                Ordering::Greater => {
                    adds.push(((*eb).clone(), (*vb).clone()));
                    b.next();
                }
                Ordering::Equal => {
                    if va != vb {
                        dels.push(((*ea).clone(), (*va).clone()));
                        adds.push(((*eb).clone(), (*vb).clone()));
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }
    (dels, adds)
}

fn diff_table(p: &mut Phases, o: &Table, n: &Table) {
    let id = n.id();
    let kind_changed = n
        .chains
        .iter()
        .any(|(name, c)| o.chains.get(name).is_some_and(|oc| oc.kind != c.kind));
    if kind_changed {
        p.del_table.push(Change::DeleteTable(id));
        add_whole_table(p, n);
        return;
    }
    // Sets.
    let mut replaced_sets: BTreeSet<&str> = BTreeSet::new();
    for (name, os) in &o.sets {
        if !n.sets.contains_key(name) {
            p.del_sets.push(Change::DeleteSet {
                table: id.clone(),
                decl: os.decl.clone(),
            });
        }
    }
    for (name, ns) in &n.sets {
        let Some(os) = o.sets.get(name) else {
            add_whole_set(p, &id, ns);
            continue;
        };
        let replace = os.decl != ns.decl || (ns.decl.constant && os.elements != ns.elements);
        if replace {
            replaced_sets.insert(name.as_str());
            p.del_sets.push(Change::DeleteSet {
                table: id.clone(),
                decl: os.decl.clone(),
            });
            add_whole_set(p, &id, ns);
            continue;
        }
        let (dels, adds) = element_delta(&os.elements, &ns.elements);
        if !dels.is_empty() {
            p.del_elems.push(Change::DeleteElements {
                table: id.clone(),
                decl: ns.decl.clone(),
                elements: dels,
            });
        }
        if !adds.is_empty() {
            p.add_elems.push(Change::AddElements {
                table: id.clone(),
                decl: ns.decl.clone(),
                elements: adds,
            });
        }
    }
    // Chains.
    for (name, oc) in &o.chains {
        if !n.chains.contains_key(name) {
            if !oc.rules.is_empty() {
                p.flush.push(Change::FlushChain {
                    table: id.clone(),
                    chain: name.clone(),
                });
            }
            p.del_chains.push(Change::DeleteChain {
                table: id.clone(),
                chain: name.clone(),
            });
        }
    }
    let touches_replaced = |rules: &[Rule]| {
        rules
            .iter()
            .flat_map(|r| r.set_refs())
            .any(|s| replaced_sets.contains(s))
    };
    for (name, nc) in &n.chains {
        let Some(oc) = o.chains.get(name) else {
            p.add_chains.push(Change::AddChain {
                table: id.clone(),
                name: name.clone(),
                kind: nc.kind,
            });
            add_rules(p, &id, name, &nc.rules);
            continue;
        };
        if oc.rules != nc.rules || touches_replaced(&oc.rules) || touches_replaced(&nc.rules) {
            if !oc.rules.is_empty() {
                p.flush.push(Change::FlushChain {
                    table: id.clone(),
                    chain: name.clone(),
                });
            }
            add_rules(p, &id, name, &nc.rules);
        }
    }
}
