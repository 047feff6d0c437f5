//! The `schema` frame a subscriber receives (see README and docs/reference/protocol.md), built
//! per subscriber shape: only the columns it may see.

use std::fmt::Write;

use crate::decode::put_str;
use crate::filter::ColumnShape;
use crate::vocab::Pos;

use super::diff::{Diff, Renamed};
use super::event::SchemaEvent;

/// Which shape a column name belongs to, for the visibility test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Before,
    After,
}

/// Appends the frame to `out`. `visible(side, column)` says whether the subscriber may see a
/// column; `rebound` lists the renamed columns its request used.
///
/// Every column list is filtered: before-side lists (`before`, `diff.dropped`, the key before)
/// by the before name, the rest by the after name; a rename is shown when its new name is
/// visible. A key change that only hidden columns make (the visible parts of both keys equal) is
/// `null`, so the frame does not hint at columns the subscriber may not see.
pub fn encode_frame(
    out: &mut String,
    event: &SchemaEvent,
    diff: &Diff,
    pos: Option<Pos>,
    visible: &dyn Fn(Side, &str) -> bool,
    rebound: &[Renamed],
) {
    let before = |name: &str| visible(Side::Before, name);
    let after = |name: &str| visible(Side::After, name);
    out.push_str("{\"type\":\"schema\"");
    if let Some(pos) = pos {
        out.push_str(",\"pos\":\"");
        pos.push_text(out);
        out.push('"');
    }
    out.push_str(",\"source\":");
    put_str(out, source_str(event));
    out.push_str(",\"command\":");
    put_opt_str(out, event.command.as_deref());
    out.push_str(",\"event\":");
    put_str(out, event.kind().as_str());
    out.push_str(",\"table\":");
    put_str(out, &event.table().to_string());
    out.push_str(",\"oid\":");
    match event.oid {
        Some(oid) => {
            let _ = write!(out, "{oid}");
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"columns\":");
    match &event.after {
        Some(shape) => put_columns(out, &shape.columns, &after),
        None => out.push_str("null"),
    }
    out.push_str(",\"primary_key\":");
    match &event.after {
        Some(shape) => put_names(out, &shape.primary_key, &after),
        None => out.push_str("null"),
    }
    out.push_str(",\"before\":");
    match &event.before {
        Some(shape) => {
            out.push_str("{\"table\":");
            put_str(out, &shape.name().to_string());
            out.push_str(",\"columns\":");
            put_columns(out, &shape.columns, &before);
            out.push_str(",\"primary_key\":");
            put_names(out, &shape.primary_key, &before);
            out.push('}');
        }
        None => out.push_str("null"),
    }
    put_diff(out, diff, &before, &after);
    if !rebound.is_empty() {
        out.push_str(",\"rebound\":[");
        for (i, r) in rebound.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            put_rename(out, r);
        }
        out.push(']');
    }
    out.push('}');
}

/// Whether `diff` shows nothing to a subscriber that sees only the `visible` columns (no table
/// rename and every entry filtered out), for a caller that skips frames with nothing to say.
pub fn diff_is_invisible(diff: &Diff, visible: &dyn Fn(Side, &str) -> bool) -> bool {
    let before = |name: &str| visible(Side::Before, name);
    let after = |name: &str| visible(Side::After, name);
    diff.table.is_none()
        && !diff.added.iter().any(|c| after(&c.name))
        && !diff.dropped.iter().any(|c| before(&c.name))
        && !diff.renamed.iter().any(|r| after(&r.to))
        && !diff.retyped.iter().any(|r| after(&r.column))
        && !diff.nullability.iter().any(|c| after(&c.column))
        && !diff.defaults.iter().any(|c| after(&c.column))
        && !key_change_visible(diff, &before, &after)
}

fn source_str(event: &SchemaEvent) -> &'static str {
    match event.source {
        super::Source::Trigger => "trigger",
        super::Source::Inferred => "inferred",
    }
}

fn key_change_visible(
    diff: &Diff,
    before: &dyn Fn(&str) -> bool,
    after: &dyn Fn(&str) -> bool,
) -> bool {
    // Shown as the diff has it when every key column is visible (a key dropped and re-added under
    // the same names is still a change); once hidden columns are filtered out, only when what is
    // left differs.
    match &diff.primary_key {
        Some((from, to)) => {
            (from.iter().all(|n| before(n)) && to.iter().all(|n| after(n)))
                || !from
                    .iter()
                    .filter(|n| before(n))
                    .eq(to.iter().filter(|n| after(n)))
        }
        None => false,
    }
}

fn put_diff(
    out: &mut String,
    diff: &Diff,
    before: &dyn Fn(&str) -> bool,
    after: &dyn Fn(&str) -> bool,
) {
    out.push_str(",\"diff\":{\"table\":");
    match &diff.table {
        Some((from, to)) => {
            out.push_str("{\"from\":");
            put_str(out, &from.to_string());
            out.push_str(",\"to\":");
            put_str(out, &to.to_string());
            out.push('}');
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"added\":");
    put_columns(out, &diff.added, after);
    out.push_str(",\"dropped\":");
    put_columns(out, &diff.dropped, before);
    out.push_str(",\"renamed\":");
    put_list(
        out,
        diff.renamed.iter().filter(|r| after(&r.to)),
        put_rename,
    );
    out.push_str(",\"retyped\":");
    put_list(
        out,
        diff.retyped.iter().filter(|r| after(&r.column)),
        |out, r| {
            out.push_str("{\"column\":");
            put_str(out, &r.column);
            out.push_str(",\"from\":");
            put_str(out, &r.from);
            out.push_str(",\"to\":");
            put_str(out, &r.to);
            out.push('}');
        },
    );
    out.push_str(",\"nullability\":");
    put_list(
        out,
        diff.nullability.iter().filter(|c| after(&c.column)),
        |out, c| {
            out.push_str("{\"column\":");
            put_str(out, &c.column);
            out.push_str(",\"from\":");
            put_opt_bool(out, c.from);
            out.push_str(",\"to\":");
            put_opt_bool(out, c.to);
            out.push('}');
        },
    );
    out.push_str(",\"defaults\":");
    put_list(
        out,
        diff.defaults.iter().filter(|c| after(&c.column)),
        |out, c| {
            out.push_str("{\"column\":");
            put_str(out, &c.column);
            out.push_str(",\"from\":");
            put_opt_str(out, c.from.as_deref());
            out.push_str(",\"to\":");
            put_opt_str(out, c.to.as_deref());
            out.push('}');
        },
    );
    out.push_str(",\"primary_key\":");
    match &diff.primary_key {
        Some((from, to)) if key_change_visible(diff, before, after) => {
            out.push_str("{\"from\":");
            put_names(out, from, before);
            out.push_str(",\"to\":");
            put_names(out, to, after);
            out.push('}');
        }
        _ => out.push_str("null"),
    }
    out.push('}');
}

fn put_list<T>(
    out: &mut String,
    items: impl Iterator<Item = T>,
    mut put: impl FnMut(&mut String, T),
) {
    out.push('[');
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        put(out, item);
    }
    out.push(']');
}

fn put_rename(out: &mut String, r: &Renamed) {
    out.push_str("{\"from\":");
    put_str(out, &r.from);
    out.push_str(",\"to\":");
    put_str(out, &r.to);
    out.push('}');
}

fn put_names(out: &mut String, names: &[String], visible: &dyn Fn(&str) -> bool) {
    put_list(out, names.iter().filter(|n| visible(n)), |out, n| {
        put_str(out, n)
    });
}

fn put_columns(out: &mut String, columns: &[ColumnShape], visible: &dyn Fn(&str) -> bool) {
    put_list(out, columns.iter().filter(|c| visible(&c.name)), put_column);
}

/// A column with every key, in the order of the `walcast.ddl` message.
fn put_column(out: &mut String, c: &ColumnShape) {
    out.push_str("{\"attnum\":");
    match c.attnum {
        Some(n) => {
            let _ = write!(out, "{n}");
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"name\":");
    put_str(out, &c.name);
    out.push_str(",\"type\":");
    put_str(out, &c.type_name);
    out.push_str(",\"nullable\":");
    put_opt_bool(out, c.nullable);
    out.push_str(",\"default\":");
    put_opt_str(out, c.default.as_deref());
    out.push_str(",\"generated\":");
    put_opt_str(out, c.generated.as_deref());
    out.push_str(",\"generation_expression\":");
    put_opt_str(out, c.generation_expression.as_deref());
    out.push_str(",\"identity\":");
    put_opt_str(out, c.identity.as_deref());
    out.push_str(",\"primary_key\":");
    out.push_str(if c.primary_key { "true" } else { "false" });
    out.push('}');
}

fn put_opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => put_str(out, s),
        None => out.push_str("null"),
    }
}

fn put_opt_bool(out: &mut String, b: Option<bool>) {
    out.push_str(match b {
        Some(true) => "true",
        Some(false) => "false",
        None => "null",
    });
}
