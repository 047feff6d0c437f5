//! Frames shaped like one element of wal2json format-version 1's `change` array (what
//! speculare-pgcdc clients read), built from the same decoded view as the `change` frame:
//! `{"kind","schema","table","columnnames","columntypes","columnvalues","oldkeys":{"keynames",
//! "keytypes","keyvalues"}}`. Values are written as format-version 1 writes them: `json`/`jsonb`
//! as strings, numbers exactly as Postgres printed them. Does not decide who receives a frame.

use super::change::{Change, Field, Image, Kind};
use super::frame::{put_str, FrameEncoder, Projection};
use crate::vocab::Op;

/// Which array of a row image a writer appends (without the brackets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Names,
    Types,
    Values,
}

impl FrameEncoder {
    /// Encode a format-version-1 frame of an I/U/D/T message.
    pub fn v1(&mut self, change: &Change<'_>, projection: Projection<'_>) -> String {
        self.v1_with(change, &mut |image, part, b| {
            put_part(b, change, image, part, projection)
        })
    }

    /// Encode a format-version-1 frame whose row images are written by `part(image, part, out)`,
    /// which appends the comma-separated items of one array (used for plugin rewrites).
    ///
    /// Shape per operation, as wal2json 2.5 prints it: insert has the three `column*` arrays;
    /// update has them and `oldkeys` (the replica-identity columns); delete has `oldkeys` only.
    /// Format-version 1 prints nothing for a truncate; walcast sends `{"kind":"truncate",
    /// "schema","table"}` so a subscriber that asked for truncates is never left unaware.
    pub fn v1_with(
        &mut self,
        change: &Change<'_>,
        part: &mut dyn FnMut(Image, Part, &mut String),
    ) -> String {
        let op = change.op().unwrap_or(Op::Insert);
        let mut b = String::with_capacity((change.buf.len() + 96).max(self.last_len));
        b.push_str("{\"kind\":\"");
        b.push_str(op.as_str());
        b.push_str("\",\"schema\":");
        put_str(&mut b, change.schema());
        b.push_str(",\"table\":");
        put_str(&mut b, change.table());
        if matches!(op, Op::Insert | Op::Update) {
            for (key, p) in [
                (",\"columnnames\":[", Part::Names),
                (",\"columntypes\":[", Part::Types),
                (",\"columnvalues\":[", Part::Values),
            ] {
                b.push_str(key);
                part(Image::New, p, &mut b);
                b.push(']');
            }
        }
        if matches!(op, Op::Update | Op::Delete) && change.has(Image::Old) {
            for (key, p) in [
                (",\"oldkeys\":{\"keynames\":[", Part::Names),
                ("],\"keytypes\":[", Part::Types),
                ("],\"keyvalues\":[", Part::Values),
            ] {
                b.push_str(key);
                part(Image::Old, p, &mut b);
            }
            b.push_str("]}");
        }
        b.push('}');
        self.last_len = b.len();
        b
    }
}

/// Append one array's items of `image`, with `select=` applied.
fn put_part(b: &mut String, change: &Change<'_>, image: Image, part: Part, proj: Projection<'_>) {
    let mut first = true;
    for f in change.fields(image) {
        let name = change.str(f.name);
        if let Projection::Only(cols) = proj {
            if !cols.iter().any(|c| &**c == name) {
                continue;
            }
        }
        if !first {
            b.push(',');
        }
        first = false;
        match part {
            Part::Names => put_str(b, name),
            Part::Types => put_str(b, change.str(f.type_name)),
            Part::Values => put_v1_value(b, change, f),
        }
    }
}

/// A value as format-version 1 prints it: like the `change` frame, except that `json`/`jsonb`
/// stay strings.
pub(super) fn put_v1_value(b: &mut String, change: &Change<'_>, f: &Field) {
    match f.kind {
        Kind::Null => b.push_str("null"),
        Kind::True => b.push_str("true"),
        Kind::False => b.push_str("false"),
        Kind::Number => b.push_str(change.str(f.value)),
        Kind::String => put_str(b, change.str(f.value)),
    }
}

/// Append the format-version-1 value of column `index` of `image`.
pub fn put_column_value_v1(b: &mut String, change: &Change<'_>, image: Image, index: usize) {
    match change.fields(image).get(index) {
        Some(f) => put_v1_value(b, change, f),
        None => b.push_str("null"),
    }
}
