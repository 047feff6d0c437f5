//! Without the event triggers: whether a change's columns differ from the shape walcast knows
//! for its table, and the shape the change implies.

use crate::decode::Change;
use crate::filter::TableShape;

/// Whether `change` (insert, update or delete) shows columns `shape` does not have.
pub fn differs(shape: &TableShape, change: &Change<'_>) -> bool {
    todo!()
}

/// The shape `change` implies, starting from `shape`.
pub fn infer(shape: &TableShape, change: &Change<'_>) -> TableShape {
    todo!()
}
