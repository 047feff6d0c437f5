//! The difference between two shapes of one table: columns added, dropped, renamed, retyped,
//! nullability, defaults and primary key, matched by attnum (by name where an attnum is not
//! known). Never reads DDL text.

use crate::filter::{ColumnShape, TableName, TableShape};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Renamed {
    pub from: String,
    pub to: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retyped {
    /// The column's name after the event.
    pub column: String,
    pub from: String,
    pub to: String,
}

/// A before/after pair of one column attribute (`nullability`: nullable; `defaults`: the
/// expression).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change<T> {
    pub column: String,
    pub from: T,
    pub to: T,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// `(from, to)` when the table was renamed or moved.
    pub table: Option<(TableName, TableName)>,
    pub added: Vec<ColumnShape>,
    pub dropped: Vec<ColumnShape>,
    pub renamed: Vec<Renamed>,
    pub retyped: Vec<Retyped>,
    pub nullability: Vec<Change<Option<bool>>>,
    pub defaults: Vec<Change<Option<String>>>,
    /// `(from, to)` when the primary key changed.
    pub primary_key: Option<(Vec<String>, Vec<String>)>,
}

impl Diff {
    /// `before`/`after` `None` mean created/dropped: every column is added/dropped.
    pub fn between(before: Option<&TableShape>, after: Option<&TableShape>) -> Diff {
        let (before, after) = match (before, after) {
            (Some(before), Some(after)) => (before, after),
            (None, Some(after)) => {
                return Diff {
                    added: after.columns.clone(),
                    ..Diff::default()
                }
            }
            (Some(before), None) => {
                return Diff {
                    dropped: before.columns.clone(),
                    ..Diff::default()
                }
            }
            (None, None) => return Diff::default(),
        };
        let pairs = pair_columns(before, after);
        let mut from_before = vec![None; after.columns.len()];
        for (b, a) in pairs.iter().enumerate() {
            if let Some(a) = *a {
                from_before[a] = Some(b);
            }
        }
        let mut diff = Diff {
            table: (before.schema != after.schema || before.table != after.table)
                .then(|| (before.name(), after.name())),
            dropped: before
                .columns
                .iter()
                .zip(&pairs)
                .filter(|(_, a)| a.is_none())
                .map(|(c, _)| c.clone())
                .collect(),
            ..Diff::default()
        };
        for (a, b) in after.columns.iter().zip(&from_before) {
            let Some(b) = b.map(|b| &before.columns[b]) else {
                diff.added.push(a.clone());
                continue;
            };
            if b.name != a.name {
                diff.renamed.push(Renamed {
                    from: b.name.clone(),
                    to: a.name.clone(),
                });
            }
            if b.type_name != a.type_name {
                diff.retyped.push(Retyped {
                    column: a.name.clone(),
                    from: b.type_name.clone(),
                    to: a.type_name.clone(),
                });
            }
            // Attributes are compared only where both shapes know them: an inferred column (seen
            // in a change only) has `nullable: None` and every other attribute unknown, while a
            // catalog or trigger column always has `nullable` (and `default: None` there means
            // "no default", which is a value worth reporting).
            if let (Some(from), Some(to)) = (b.nullable, a.nullable) {
                if from != to {
                    diff.nullability.push(Change {
                        column: a.name.clone(),
                        from: Some(from),
                        to: Some(to),
                    });
                }
                if b.default != a.default {
                    diff.defaults.push(Change {
                        column: a.name.clone(),
                        from: b.default.clone(),
                        to: a.default.clone(),
                    });
                }
            }
        }
        // The key as the before columns it names, carried to their after names: a renamed key
        // column is a rename, not a key change; a dropped one (`None`) is a key change.
        let carried = before.primary_key.iter().map(|name| {
            match before.columns.iter().position(|c| c.name == *name) {
                Some(b) => pairs[b].map(|a| after.columns[a].name.as_str()),
                None => Some(name.as_str()),
            }
        });
        let same_key = before.primary_key.len() == after.primary_key.len()
            && carried
                .zip(&after.primary_key)
                .all(|(from, to)| from == Some(to.as_str()));
        if !same_key {
            diff.primary_key = Some((before.primary_key.clone(), after.primary_key.clone()));
        }
        diff
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_none()
            && self.added.is_empty()
            && self.dropped.is_empty()
            && self.renamed.is_empty()
            && self.retyped.is_empty()
            && self.nullability.is_empty()
            && self.defaults.is_empty()
            && self.primary_key.is_none()
    }
}

/// For each column of `before`, the index of the same column in `after`, if it is still there.
/// Two columns are the same when both have an attnum and the attnums are equal; otherwise (one of
/// them inferred from a change) when their names are equal. A column dropped and added again
/// under its old name in one command has a new attnum, so it is a drop and an add, as it is in
/// Postgres (the values are gone).
pub(crate) fn pair_columns(before: &TableShape, after: &TableShape) -> Vec<Option<usize>> {
    let mut taken = vec![false; after.columns.len()];
    let mut pairs = vec![None; before.columns.len()];
    for (b, col) in before.columns.iter().enumerate() {
        let Some(attnum) = col.attnum else { continue };
        if let Some(a) =
            (0..after.columns.len()).find(|&a| !taken[a] && after.columns[a].attnum == Some(attnum))
        {
            taken[a] = true;
            pairs[b] = Some(a);
        }
    }
    for (b, col) in before.columns.iter().enumerate() {
        if pairs[b].is_some() {
            continue;
        }
        if let Some(a) = (0..after.columns.len()).find(|&a| {
            let other: &ColumnShape = &after.columns[a];
            !taken[a] && other.name == col.name && (other.attnum.is_none() || col.attnum.is_none())
        }) {
            taken[a] = true;
            pairs[b] = Some(a);
        }
    }
    pairs
}
