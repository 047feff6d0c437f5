//! Builds the outgoing `change` frame of the client protocol from a decoded view, once per change
//! (or once per distinct projection). The frame is a `String` built from `&str` pieces, so it
//! becomes shared bytes without another UTF-8 check or copy. Does not decide who receives it.

use super::change::{Change, Field, Image, Kind};
use crate::vocab::Op;

/// Encodes frames. Each frame is one allocation sized from the payload, filled by appending
/// `&str` pieces (values are copied once, escaped only when they need it).
pub struct FrameEncoder {
    /// Size of the last frame, to size the next allocation well.
    pub(super) last_len: usize,
}

/// How a subscription's change frames are shaped (`format=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Format {
    /// The `change` frame of the client protocol.
    #[default]
    Walcast,
    /// `format=wal2json-v1`: one element of wal2json format-version 1's `change` array.
    Wal2jsonV1,
}

impl Format {
    /// The `format=` value, or `None` when it names no format.
    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "walcast" => Some(Format::Walcast),
            "wal2json-v1" => Some(Format::Wal2jsonV1),
            _ => None,
        }
    }
}

impl Default for FrameEncoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Which columns of `new`/`old` a frame carries.
#[derive(Clone, Copy)]
pub enum Projection<'p> {
    All,
    /// Only these columns (by name), in table order.
    Only(&'p [Box<str>]),
}

impl<'p> Projection<'p> {
    /// What a `select=` list keeps: only its columns, or all of them without one.
    pub fn of(select: Option<&'p [Box<str>]>) -> Projection<'p> {
        match select {
            Some(columns) => Projection::Only(columns),
            None => Projection::All,
        }
    }
}

impl FrameEncoder {
    pub fn new() -> Self {
        FrameEncoder { last_len: 256 }
    }

    /// Encode the frame of an I/U/D/T message in `format`.
    pub fn encode(
        &mut self,
        change: &Change<'_>,
        projection: Projection<'_>,
        format: Format,
    ) -> String {
        match format {
            Format::Walcast => self.change(change, projection),
            Format::Wal2jsonV1 => self.v1(change, projection),
        }
    }

    /// Encode a `change` frame. `change` must be an I/U/D/T message.
    pub fn change(&mut self, change: &Change<'_>, projection: Projection<'_>) -> String {
        self.change_with(change, &mut |image, b| {
            put_row(b, change, image, projection)
        })
    }

    /// Encode a snapshot `row` frame, `{"type":"row","row":{...}}`, from an insert: the row is
    /// written exactly as `new` is in a change frame.
    pub fn row(&mut self, change: &Change<'_>, projection: Projection<'_>) -> String {
        let mut b = String::with_capacity((change.buf.len() + 32).max(self.last_len));
        b.push_str("{\"type\":\"row\",\"row\":");
        put_row(&mut b, change, Image::New, projection);
        b.push('}');
        b
    }

    /// Encode a `change` frame whose row images are written by `row(image, out)`, which appends
    /// one JSON object for that image (used for plugin rewrites). Images that the operation does
    /// not carry are `null` without calling `row`.
    pub fn change_with(
        &mut self,
        change: &Change<'_>,
        row: &mut dyn FnMut(Image, &mut String),
    ) -> String {
        let op = change.op().unwrap_or(Op::Insert);
        let mut b = String::with_capacity((change.buf.len() + 160).max(self.last_len));
        b.push_str("{\"type\":\"change\",\"op\":\"");
        b.push_str(op.as_str());
        b.push_str("\",\"schema\":");
        put_str(&mut b, change.schema());
        b.push_str(",\"table\":");
        put_str(&mut b, change.table());
        b.push_str(",\"lsn\":");
        put_str(&mut b, change.lsn());
        if let Some(pos) = change.pos() {
            b.push_str(",\"pos\":\"");
            pos.push_text(&mut b);
            b.push('"');
        }
        b.push_str(",\"xid\":");
        match change.xid() {
            Some(x) => b.push_str(itoa::Buffer::new().format(x)),
            None => b.push_str("null"),
        }
        b.push_str(",\"ts\":");
        let ts = change.timestamp();
        if ts.is_empty() {
            b.push_str("null");
        } else {
            put_rfc3339(&mut b, ts);
        }
        b.push_str(",\"new\":");
        match op {
            Op::Insert | Op::Update => row(Image::New, &mut b),
            Op::Delete | Op::Truncate => b.push_str("null"),
        }
        b.push_str(",\"old\":");
        match op {
            Op::Update | Op::Delete if change.has(Image::Old) => row(Image::Old, &mut b),
            _ => b.push_str("null"),
        }
        b.push('}');
        self.last_len = b.len();
        b
    }
}

/// Append the value of column `index` of `image` as JSON (as in a normal frame).
pub fn put_column_value(b: &mut String, change: &Change<'_>, image: Image, index: usize) {
    if let Some(f) = change.fields(image).get(index) {
        put_value(b, change, f);
    } else {
        b.push_str("null");
    }
}

fn put_row(b: &mut String, change: &Change<'_>, image: Image, projection: Projection<'_>) {
    b.push('{');
    let mut first = true;
    for f in change.fields(image) {
        let name = change.str(f.name);
        if let Projection::Only(cols) = projection {
            if !cols.iter().any(|c| &**c == name) {
                continue;
            }
        }
        if !first {
            b.push(',');
        }
        first = false;
        put_str(b, name);
        b.push(':');
        put_value(b, change, f);
    }
    b.push('}');
}

fn put_value(b: &mut String, change: &Change<'_>, f: &Field) {
    match f.kind {
        Kind::Null => b.push_str("null"),
        Kind::True => b.push_str("true"),
        Kind::False => b.push_str("false"),
        Kind::Number => b.push_str(change.str(f.value)),
        Kind::String => {
            let ty = &change.buf[f.type_name.range()];
            let text = change.str(f.value);
            // json/jsonb arrive as strings holding JSON text Postgres already validated: embed it.
            if (ty == b"json" || ty == b"jsonb") && !text.is_empty() {
                b.push_str(text);
            } else {
                put_str(b, text);
            }
        }
    }
}

/// Write `s` as a JSON string. Most values need no escaping and are copied in one memcpy.
pub fn put_str(b: &mut String, s: &str) {
    let needs_escape = s.bytes().any(|c| c < 0x20 || c == b'"' || c == b'\\');
    if !needs_escape {
        b.push('"');
        b.push_str(s);
        b.push('"');
    } else {
        // Serialising a &str cannot fail.
        b.push_str(&serde_json::to_string(s).unwrap_or_default());
    }
}

/// Convert Postgres' ISO output (`2026-11-21 23:54:51.28847+00`, `...+05:30`, `...-08`) to
/// RFC 3339 (`2026-11-21T23:54:51.28847Z`) by rewriting the text; anything unexpected (BC dates,
/// infinity, offsets with seconds) is parsed by chrono or passed through as a plain string.
fn put_rfc3339(b: &mut String, ts: &str) {
    let bytes = ts.as_bytes();
    let offset_at = bytes
        .iter()
        .rposition(|c| *c == b'+' || *c == b'-')
        .filter(|&i| i > 10);
    // Only Postgres' own characters take the fast path, which copies the text unescaped.
    let shape_ok = bytes.len() >= 22
        && bytes[10] == b' '
        && bytes[4] == b'-'
        && bytes
            .iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b' ' | b'-' | b':' | b'.' | b'+'));
    let (true, Some(at)) = (shape_ok, offset_at) else {
        return put_rfc3339_slow(b, ts);
    };
    let offset = &ts[at..];
    let offset = match offset.len() {
        3 if &offset[1..] == "00" => "Z",
        3 | 6 => offset,
        // `+HH:MM:SS` (historic zones) has no RFC 3339 form: convert to UTC.
        _ => return put_rfc3339_slow(b, ts),
    };
    b.push('"');
    b.push_str(&ts[..10]);
    b.push('T');
    b.push_str(&ts[11..at]);
    b.push_str(offset);
    if offset.len() == 3 {
        b.push_str(":00");
    }
    b.push('"');
}

fn put_rfc3339_slow(b: &mut String, ts: &str) {
    match utc_from_pg(ts) {
        Some(t) => {
            b.push('"');
            b.push_str(&t.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string());
            b.push('"');
        }
        None => put_str(b, ts),
    }
}

/// Parse Postgres ISO output with any offset form (`+HH`, `+HH:MM`, `+HH:MM:SS`) into UTC.
fn utc_from_pg(ts: &str) -> Option<chrono::NaiveDateTime> {
    let at = ts.rfind(['+', '-']).filter(|&i| i > 10)?;
    let local = chrono::NaiveDateTime::parse_from_str(&ts[..at], "%Y-%m-%d %H:%M:%S%.f").ok()?;
    let sign = if ts.as_bytes()[at] == b'-' { -1 } else { 1 };
    let mut seconds = 0i64;
    for (i, part) in ts[at + 1..].split(':').enumerate() {
        // Postgres offsets are at most 15:59:59; anything larger is not a timestamp it wrote.
        let n: i64 = part.parse().ok().filter(|n| (0..100).contains(n))?;
        seconds += n * [3600, 60, 1].get(i)?;
    }
    local.checked_sub_signed(chrono::TimeDelta::try_seconds(sign * seconds)?)
}
