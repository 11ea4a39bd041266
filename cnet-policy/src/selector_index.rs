//! An index of endpoint selectors so that finding the selectors an endpoint may satisfy costs
//! about the number of selectors that can match it, not the number of selectors.
//!
//! Each selector goes into exactly one bucket, keyed by what it requires for sure:
//! - its namespace, when it is namespace-scoped ([`NamespaceMatch::Named`]);
//! - one `key = value` it requires (a `matchLabels` entry: [`LabelOp::In`] of one value);
//! - both, one, or neither (the residual list: `{}`, `matchExpressions` only, Calico
//!   expressions, namespace selectors without a pod label).
//!
//! [`SelectorIndex::candidates`] visits the buckets an endpoint's namespace and labels can
//! reach; the caller still evaluates each candidate (the bucket key is a necessary condition
//! only).

use std::collections::HashMap;

use crate::endpoint::Endpoint;
use crate::model::{EndpointSelector, LabelOp, NamespaceMatch, Selector};

/// Selectors with a payload each, indexed by namespace and one required label.
#[derive(Debug, Clone)]
pub(crate) struct SelectorIndex<T> {
    entries: Vec<(EndpointSelector, T)>,
    ns_label: HashMap<String, HashMap<String, HashMap<String, Vec<usize>>>>,
    ns_only: HashMap<String, Vec<usize>>,
    label_only: HashMap<String, HashMap<String, Vec<usize>>>,
    residual: Vec<usize>,
}

impl<T> Default for SelectorIndex<T> {
    fn default() -> Self {
        SelectorIndex {
            entries: Vec::new(),
            ns_label: HashMap::new(),
            ns_only: HashMap::new(),
            label_only: HashMap::new(),
            residual: Vec::new(),
        }
    }
}

/// One `key = value` a selector requires, if any.
fn required_label(sel: &Selector) -> Option<(&str, &str)> {
    let Selector::Labels(reqs) = sel else {
        return None;
    };
    reqs.iter().find_map(|r| match &r.op {
        LabelOp::In(vals) if vals.len() == 1 => {
            vals.iter().next().map(|v| (r.key.as_str(), v.as_str()))
        }
        _ => None,
    })
}

impl<T> SelectorIndex<T> {
    /// Add a selector with its payload.
    pub(crate) fn insert(&mut self, sel: EndpointSelector, payload: T) {
        let i = self.entries.len();
        let ns = match &sel.namespaces {
            NamespaceMatch::Named(ns) => Some(ns.clone()),
            _ => None,
        };
        let label = required_label(&sel.pods).map(|(k, v)| (k.to_string(), v.to_string()));
        match (ns, label) {
            (Some(ns), Some((k, v))) => self
                .ns_label
                .entry(ns)
                .or_default()
                .entry(k)
                .or_default()
                .entry(v)
                .or_default()
                .push(i),
            (Some(ns), None) => self.ns_only.entry(ns).or_default().push(i),
            (None, Some((k, v))) => self
                .label_only
                .entry(k)
                .or_default()
                .entry(v)
                .or_default()
                .push(i),
            (None, None) => self.residual.push(i),
        }
        self.entries.push((sel, payload));
    }

    /// Number of selectors.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Every selector that may select `ep` (a superset of those that do), each once.
    pub(crate) fn candidates<'s>(
        &'s self,
        ep: &'s Endpoint,
    ) -> impl Iterator<Item = &'s (EndpointSelector, T)> + 's {
        let ns = ep.namespace.as_str();
        let by_ns_label = self.ns_label.get(ns);
        let labelled = ep.labels.iter().flat_map(move |(k, v)| {
            let a = by_ns_label
                .and_then(|m| m.get(k.as_str()))
                .and_then(|m| m.get(v.as_str()));
            let b = self
                .label_only
                .get(k.as_str())
                .and_then(|m| m.get(v.as_str()));
            a.into_iter().chain(b).flatten()
        });
        self.ns_only
            .get(ns)
            .into_iter()
            .flatten()
            .chain(self.residual.iter())
            .chain(labelled)
            .map(|i| &self.entries[*i])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::Requirement;
    use std::collections::{BTreeMap, BTreeSet};

    fn sel(ns: Option<&str>, app: Option<&str>) -> EndpointSelector {
        EndpointSelector {
            namespaces: ns.map_or(NamespaceMatch::Any, |n| NamespaceMatch::Named(n.into())),
            pods: match app {
                None => Selector::All,
                Some(a) => Selector::from_requirements(vec![Requirement {
                    key: "app".into(),
                    op: LabelOp::In(BTreeSet::from([a.to_string()])),
                }]),
            },
        }
    }

    #[test]
    fn candidates_are_a_superset_of_matches_and_skip_other_buckets() {
        let mut idx = SelectorIndex::default();
        let cases = [
            (Some("a"), Some("db")),
            (Some("a"), Some("web")),
            (Some("b"), Some("db")),
            (Some("a"), None),
            (Some("b"), None),
            (None, Some("db")),
            (None, Some("web")),
            (None, None),
        ];
        for (k, (ns, app)) in cases.iter().enumerate() {
            idx.insert(sel(*ns, *app), k);
        }
        assert_eq!(idx.len(), cases.len());
        let ep = Endpoint::new(
            "a",
            "p",
            BTreeMap::from([("app".to_string(), "db".to_string())]),
            vec![],
        );
        let mut got: Vec<usize> = idx.candidates(&ep).map(|(_, k)| *k).collect();
        got.sort_unstable();
        // ns a + app db, ns a only, any ns + app db, residual.
        assert_eq!(got, vec![0, 3, 5, 7]);
    }
}
