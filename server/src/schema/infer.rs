//! Without the event triggers: whether a change's columns differ from the shape walcast knows
//! for its table, and the shape the change implies.
//!
//! A change shows names and types only, so an inferred shape knows less than a trigger's: a
//! column first seen in a change has no attnum and unknown attributes, and a rename is told from
//! a drop and an add only when an insert shows it unambiguously.

use crate::decode::{Change, Column, Image};
use crate::filter::{ColumnShape, TableShape};
use crate::vocab::Op;

/// Whether `change` (insert, update or delete) shows columns `shape` does not have.
///
/// Runs on every change of a table when no trigger is installed: compares names and types in
/// place, allocating nothing. An insert shows every column in attnum order, so it must match the
/// shape exactly; an update leaves out unchanged TOAST values and a delete shows only the replica
/// identity, so there each column shown must exist with its type (absent is not dropped).
pub fn differs(shape: &TableShape, change: &Change<'_>) -> bool {
    match change.op() {
        Some(Op::Insert) => {
            change.len(Image::New) != shape.columns.len()
                || change
                    .columns(Image::New)
                    .zip(&shape.columns)
                    .any(|(c, s)| !same_column(s, &c))
        }
        Some(Op::Update) => {
            !all_known(shape, change, Image::New) || !all_known(shape, change, Image::Old)
        }
        Some(Op::Delete) => !all_known(shape, change, Image::Old),
        Some(Op::Truncate) | None => false,
    }
}

/// The shape `change` implies, starting from `shape`: for an insert, the columns it shows; for an
/// update or delete, `shape`'s columns with the retyped ones changed and the unknown ones
/// appended. Its `oid` is `None` (a change does not show it).
pub fn infer(shape: &TableShape, change: &Change<'_>) -> TableShape {
    let mut inferred = match change.op() {
        Some(Op::Insert) => infer_insert(shape, change),
        Some(Op::Update) | Some(Op::Delete) => {
            let mut columns = shape.columns.clone();
            for image in [Image::New, Image::Old] {
                for c in change.columns(image) {
                    match columns.iter().position(|s| s.name == c.name) {
                        Some(i) if same_type(&columns[i].type_name, c.type_name) => {}
                        Some(i) => columns[i] = retyped(&columns[i], c.type_name),
                        None => columns.push(ColumnShape::named(c.name, c.type_name)),
                    }
                }
            }
            TableShape {
                columns,
                ..shape.clone()
            }
        }
        Some(Op::Truncate) | None => shape.clone(),
    };
    inferred.oid = None;
    inferred
}

/// An insert shows every column: those it does not show were dropped. One column missing and one
/// new name at the same position with the same type is taken for a rename (it keeps the attnum,
/// so a filter on it keeps working); anything else is drops and adds.
fn infer_insert(shape: &TableShape, change: &Change<'_>) -> TableShape {
    let shown: Vec<Column<'_>> = change.columns(Image::New).collect();
    let mut missing = shape
        .columns
        .iter()
        .enumerate()
        .filter(|(_, s)| !shown.iter().any(|c| c.name == s.name))
        .map(|(i, _)| i);
    let mut new = shown
        .iter()
        .enumerate()
        .filter(|(_, c)| shape.column(c.name).is_none())
        .map(|(i, _)| i);
    let rename = match (missing.next(), missing.next(), new.next(), new.next()) {
        (Some(gone), None, Some(added), None)
            if gone == added
                && same_type(&shape.columns[gone].type_name, shown[added].type_name) =>
        {
            Some(gone)
        }
        _ => None,
    };
    let mut columns: Vec<ColumnShape> = shown
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if rename == Some(i) {
                return ColumnShape {
                    name: c.name.to_owned(),
                    ..shape.columns[i].clone()
                };
            }
            match shape.column(c.name) {
                Some(s) if same_type(&s.type_name, c.type_name) => s.clone(),
                Some(s) => retyped(s, c.type_name),
                None => ColumnShape::named(c.name, c.type_name),
            }
        })
        .collect();
    // Postgres drops the whole key with any of its columns; a renamed key column stays in it.
    let mut primary_key = Vec::with_capacity(shape.primary_key.len());
    for name in &shape.primary_key {
        let carried = match shape.columns.iter().position(|s| s.name == *name) {
            Some(i) if rename == Some(i) => Some(&columns[i].name),
            _ => columns.iter().find(|c| c.name == *name).map(|c| &c.name),
        };
        match carried {
            Some(name) => primary_key.push(name.clone()),
            None => {
                primary_key.clear();
                break;
            }
        }
    }
    if primary_key.is_empty() {
        for c in &mut columns {
            c.primary_key = false;
        }
    }
    TableShape {
        schema: shape.schema.clone(),
        table: shape.table.clone(),
        oid: shape.oid,
        columns,
        primary_key,
    }
}

/// The same column with another type: its attnum and key membership stay, the attributes a
/// change does not show become unknown.
fn retyped(column: &ColumnShape, type_name: &str) -> ColumnShape {
    ColumnShape {
        attnum: column.attnum,
        primary_key: column.primary_key,
        ..ColumnShape::named(column.name.clone(), type_name)
    }
}

fn all_known(shape: &TableShape, change: &Change<'_>, image: Image) -> bool {
    change
        .columns(image)
        .all(|c| shape.columns.iter().any(|s| same_column(s, &c)))
}

fn same_column(shape: &ColumnShape, column: &Column<'_>) -> bool {
    shape.name == column.name && same_type(&shape.type_name, column.type_name)
}

/// Whether a catalog type (`format_type`) and a change's type are the same. wal2json prints
/// `format_type`'s text too, except that a type name that starts with a double quote (a quoted
/// identifier such as `"Mood"`, not an array) is written without escaping, so its quotes are the
/// JSON string's and the change shows `Mood`.
fn same_type(catalog: &str, change: &str) -> bool {
    if catalog == change {
        return true;
    }
    let c = catalog.as_bytes();
    c.len() >= 2
        && c[0] == b'"'
        && c[c.len() - 1] == b'"'
        && catalog.len() - 2 == change.len()
        && &catalog[1..catalog.len() - 1] == change
}
