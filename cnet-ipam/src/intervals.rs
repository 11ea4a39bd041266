//! A set of `u128` values kept as disjoint, maximal closed intervals: O(log n) insert, remove
//! and "next value not in the set". This is the "bitmap" of used addresses; unlike a bitmap it
//! also fits an IPv6 /64.

use std::collections::BTreeMap;

/// Disjoint maximal intervals `start -> end` (inclusive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct IntervalSet {
    spans: BTreeMap<u128, u128>,
    len: u128,
}

impl IntervalSet {
    /// Number of values in the set.
    pub(crate) fn len(&self) -> u128 {
        self.len
    }

    /// The interval containing `x`, if any.
    fn span_of(&self, x: u128) -> Option<(u128, u128)> {
        self.spans
            .range(..=x)
            .next_back()
            .filter(|(_, e)| **e >= x)
            .map(|(s, e)| (*s, *e))
    }

    /// True when `x` is in the set.
    pub(crate) fn contains(&self, x: u128) -> bool {
        self.span_of(x).is_some()
    }

    /// Add `x`; false when it was already there.
    pub(crate) fn insert(&mut self, x: u128) -> bool {
        if self.contains(x) {
            return false;
        }
        let left = x
            .checked_sub(1)
            .and_then(|p| self.span_of(p))
            .map(|(s, _)| s);
        let right_end = x.checked_add(1).and_then(|n| self.spans.get(&n).copied());
        if let Some(n) = x.checked_add(1) {
            if right_end.is_some() {
                self.spans.remove(&n);
            }
        }
        let start = left.unwrap_or(x);
        let end = right_end.unwrap_or(x);
        self.spans.insert(start, end);
        self.len += 1;
        true
    }

    /// Remove `x`; false when it was not there.
    pub(crate) fn remove(&mut self, x: u128) -> bool {
        let Some((s, e)) = self.span_of(x) else {
            return false;
        };
        self.spans.remove(&s);
        if s < x {
            self.spans.insert(s, x - 1);
        }
        if x < e {
            self.spans.insert(x + 1, e);
        }
        self.len -= 1;
        true
    }

    /// The smallest value in `lo..=hi` that is not in the set.
    pub(crate) fn next_free(&self, lo: u128, hi: u128) -> Option<u128> {
        if lo > hi {
            return None;
        }
        match self.span_of(lo) {
            None => Some(lo),
            // Intervals are maximal, so end + 1 is free.
            Some((_, e)) => e.checked_add(1).filter(|n| *n <= hi),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::IntervalSet;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn behaves_like_a_set(ops in proptest::collection::vec((any::<bool>(), 0u128..64), 0..200),
                              lo in 0u128..70, hi in 0u128..70) {
            let mut s = IntervalSet::default();
            let mut model = BTreeSet::new();
            for (ins, x) in ops {
                if ins {
                    prop_assert_eq!(s.insert(x), model.insert(x));
                } else {
                    prop_assert_eq!(s.remove(x), model.remove(&x));
                }
                prop_assert_eq!(s.len(), model.len() as u128);
            }
            for x in 0..70 {
                prop_assert_eq!(s.contains(x), model.contains(&x));
            }
            let expect = (lo..=hi).find(|x| !model.contains(x));
            prop_assert_eq!(s.next_free(lo, hi), expect);
            // maximality: no two spans touch
            let spans: Vec<_> = s.spans.iter().map(|(a, b)| (*a, *b)).collect();
            for w in spans.windows(2) {
                prop_assert!(w[0].1 + 1 < w[1].0);
            }
        }
    }

    #[test]
    fn extremes_do_not_overflow() {
        let mut s = IntervalSet::default();
        assert!(s.insert(u128::MAX));
        assert!(s.insert(0));
        assert_eq!(s.next_free(u128::MAX, u128::MAX), None);
        assert_eq!(s.next_free(0, 5), Some(1));
        assert!(s.remove(u128::MAX));
        assert_eq!(s.len(), 1);
    }
}
