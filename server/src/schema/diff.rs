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
        todo!()
    }

    pub fn is_empty(&self) -> bool {
        todo!()
    }
}
