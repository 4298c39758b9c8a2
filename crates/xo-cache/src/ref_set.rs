//! `RefSet`: the dependents of one record in the reverse dependency indexes. Most records have one to a few
//! dependents, for which a vector is a fraction of a hash set's memory; a record with many (a pool, a shared
//! SR) switches to a hash set so that removals stay cheap.

use crate::hash::HashSet;
use std::hash::Hash;

/// Above this many entries the set is hashed.
const SMALL: usize = 16;

/// A set of dependents.
#[derive(Debug, Clone)]
pub(crate) enum RefSet<T> {
    Few(Vec<T>),
    Many(HashSet<T>),
}

impl<T> Default for RefSet<T> {
    fn default() -> Self {
        RefSet::Few(Vec::new())
    }
}

impl<T: Eq + Hash + Clone> RefSet<T> {
    pub fn insert(&mut self, v: T) {
        match self {
            RefSet::Few(items) if items.contains(&v) => {}
            RefSet::Few(items) if items.len() < SMALL => items.push(v),
            RefSet::Few(items) => {
                let mut set: HashSet<T> = items.drain(..).collect();
                set.insert(v);
                *self = RefSet::Many(set);
            }
            RefSet::Many(set) => {
                set.insert(v);
            }
        }
    }

    pub fn remove(&mut self, v: &T) {
        match self {
            RefSet::Few(items) => {
                if let Some(i) = items.iter().position(|x| x == v) {
                    items.swap_remove(i);
                }
            }
            RefSet::Many(set) => {
                set.remove(v);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            RefSet::Few(items) => items.is_empty(),
            RefSet::Many(set) => set.is_empty(),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        let (few, many) = match self {
            RefSet::Few(items) => (items.as_slice(), None),
            RefSet::Many(set) => (&[][..], Some(set)),
        };
        few.iter().chain(many.into_iter().flatten())
    }

    /// Release spare capacity (after a bulk build).
    pub fn shrink(&mut self) {
        match self {
            RefSet::Few(items) => items.shrink_to_fit(),
            RefSet::Many(set) => set.shrink_to_fit(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_sets_behave_as_sets() {
        let mut s: RefSet<u32> = RefSet::default();
        for n in [1, 2, 2, 3] {
            s.insert(n);
        }
        assert!(matches!(s, RefSet::Few(ref v) if v.len() == 3));
        s.remove(&2);
        s.remove(&9);
        let mut got: Vec<u32> = s.iter().copied().collect();
        got.sort_unstable();
        assert_eq!(got, [1, 3]);
        for n in 0..40 {
            s.insert(n);
        }
        assert!(matches!(s, RefSet::Many(ref h) if h.len() == 40));
        for n in 0..40 {
            s.remove(&n);
        }
        assert!(s.is_empty());
    }
}
