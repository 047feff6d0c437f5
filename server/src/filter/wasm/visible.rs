//! The columns a guest may see when it is attached under a policy rule with `columns`: a sorted
//! list of names, built once per group and checked when a change is copied for the guest and when
//! the guest names a column to write. Does not decide which columns a rule allows (see
//! `auth::policy`) and does not render frames (see `output`).
//!
//! Why the copy is where columns are hidden: every host function reads the change through
//! `ChangeCopy`, and every rewrite is rendered from it, so a column left out of the copy is absent
//! for field lookup, `field_count`/`field_at`, raw JSON, `field_changed`, `out_copy` and the
//! untouched images of a rewrite alike, with one check per column per change and no allocation.

/// Column names, sorted and without duplicates.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Visible {
    names: Box<[Box<str>]>,
}

impl Visible {
    /// The set of `names` (any order, duplicates allowed).
    pub(crate) fn new(names: &[String]) -> Visible {
        let mut names: Vec<Box<str>> = names.iter().map(|n| n.as_str().into()).collect();
        names.sort_unstable();
        names.dedup();
        Visible {
            names: names.into_boxed_slice(),
        }
    }

    /// Whether the guest may see (and write) the column `name`.
    pub(crate) fn contains(&self, name: &[u8]) -> bool {
        self.names
            .binary_search_by(|n| n.as_bytes().cmp(name))
            .is_ok()
    }
}

/// `names` sorted and without duplicates: the form a group key holds, so two lists naming the
/// same columns in another order share a group.
pub(crate) fn canonical(names: &[String]) -> Vec<String> {
    let mut names = names.to_vec();
    names.sort_unstable();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_exactly_the_names_given() {
        let v = Visible::new(&["name".into(), "id".into(), "name".into()]);
        assert!(v.contains(b"id"));
        assert!(v.contains(b"name"));
        assert!(!v.contains(b"salary"));
        assert!(!v.contains(b""));
        assert!(!v.contains(b"Name"), "names are compared exactly");
        assert!(!Visible::new(&[]).contains(b"id"));
        assert_eq!(
            canonical(&["b".into(), "a".into(), "b".into()]),
            vec!["a".to_owned(), "b".to_owned()]
        );
    }
}
