//! Builds the outgoing `change` frame of the client protocol from a decoded view, once per change
//! (or once per distinct projection) into a shared `Bytes`. Does not decide who receives it.

use bytes::{BufMut, Bytes, BytesMut};

use super::change::{Change, Field, Image, Kind, Op};

/// Encodes frames into one growing buffer and splits each finished frame off as `Bytes`, so a
/// frame costs one memcpy of its values and no allocation once the buffer has warmed up.
pub struct FrameEncoder {
    buf: BytesMut,
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

impl FrameEncoder {
    pub fn new() -> Self {
        FrameEncoder { buf: BytesMut::with_capacity(64 * 1024) }
    }

    /// Encode a `change` frame. `change` must be an I/U/D/T message.
    pub fn change(&mut self, change: &Change<'_>, projection: Projection<'_>) -> Bytes {
        let op = change.op().unwrap_or(Op::Insert);
        let estimate = change.buf.len() + 128;
        if self.buf.capacity() < estimate {
            self.buf.reserve(estimate.max(64 * 1024));
        }
        let b = &mut self.buf;
        b.put_slice(b"{\"type\":\"change\",\"op\":\"");
        b.put_slice(op.as_str().as_bytes());
        b.put_slice(b"\",\"schema\":");
        put_str(b, change.schema());
        b.put_slice(b",\"table\":");
        put_str(b, change.table());
        b.put_slice(b",\"lsn\":");
        put_str(b, change.lsn());
        b.put_slice(b",\"xid\":");
        match change.xid() {
            Some(x) => {
                let mut itoa = itoa::Buffer::new();
                b.put_slice(itoa.format(x).as_bytes());
            }
            None => b.put_slice(b"null"),
        }
        b.put_slice(b",\"ts\":");
        let ts = change.timestamp();
        if ts.is_empty() {
            b.put_slice(b"null");
        } else {
            put_rfc3339(b, ts);
        }
        b.put_slice(b",\"new\":");
        match op {
            Op::Insert | Op::Update => put_row(b, change, Image::New, projection),
            Op::Delete | Op::Truncate => b.put_slice(b"null"),
        }
        b.put_slice(b",\"old\":");
        match op {
            Op::Update | Op::Delete if change.has(Image::Old) => {
                put_row(b, change, Image::Old, projection)
            }
            _ => b.put_slice(b"null"),
        }
        b.put_u8(b'}');
        self.buf.split().freeze()
    }
}

fn put_row(b: &mut BytesMut, change: &Change<'_>, image: Image, projection: Projection<'_>) {
    b.put_u8(b'{');
    let mut first = true;
    for f in change.fields(image) {
        let name = &change.buf[f.name.range()];
        if let Projection::Only(cols) = projection {
            if !cols.iter().any(|c| c.as_bytes() == name) {
                continue;
            }
        }
        if !first {
            b.put_u8(b',');
        }
        first = false;
        put_str(b, change.str(f.name));
        b.put_u8(b':');
        put_value(b, change, f);
    }
    b.put_u8(b'}');
}

fn put_value(b: &mut BytesMut, change: &Change<'_>, f: &Field) {
    match f.kind {
        Kind::Null => b.put_slice(b"null"),
        Kind::True => b.put_slice(b"true"),
        Kind::False => b.put_slice(b"false"),
        Kind::Number => b.put_slice(&change.buf[f.value.range()]),
        Kind::String => {
            let ty = &change.buf[f.type_name.range()];
            let text = change.str(f.value);
            // json/jsonb arrive as strings holding JSON text Postgres already validated: embed it.
            if (ty == b"json" || ty == b"jsonb") && !text.is_empty() {
                b.put_slice(text.as_bytes());
            } else {
                put_str(b, text);
            }
        }
    }
}

/// Write `s` as a JSON string. Most values need no escaping and are copied in one memcpy.
pub(crate) fn put_str(b: &mut BytesMut, s: &str) {
    let needs_escape = s.bytes().any(|c| c < 0x20 || c == b'"' || c == b'\\');
    if !needs_escape {
        b.put_u8(b'"');
        b.put_slice(s.as_bytes());
        b.put_u8(b'"');
    } else {
        // serde_json's escaper writes into any io::Write; BytesMut cannot fail.
        let _ = serde_json::to_writer(b.writer(), s);
    }
}

/// Convert Postgres' ISO output (`2026-11-21 23:54:51.28847+00`, `...+05:30`, `...-08`) to
/// RFC 3339 (`2026-11-21T23:54:51.28847Z`) by rewriting bytes; anything unexpected (BC dates,
/// infinity, offsets with seconds) is parsed by chrono or passed through as a plain string.
fn put_rfc3339(b: &mut BytesMut, ts: &str) {
    let bytes = ts.as_bytes();
    let offset_at = bytes.iter().rposition(|c| *c == b'+' || *c == b'-').filter(|&i| i > 10);
    let shape_ok = bytes.len() >= 22 && bytes[10] == b' ' && bytes[4] == b'-';
    match (shape_ok, offset_at) {
        (true, Some(at)) => {
            let offset = &bytes[at..];
            b.put_u8(b'"');
            b.put_slice(&bytes[..10]);
            b.put_u8(b'T');
            b.put_slice(&bytes[11..at]);
            match offset.len() {
                3 if &offset[1..] == b"00" => b.put_u8(b'Z'),
                3 => {
                    b.put_slice(offset);
                    b.put_slice(b":00");
                }
                6 => b.put_slice(offset),
                _ => {
                    // `+HH:MM:SS` (historic zones): let chrono produce a valid RFC 3339 offset.
                    b.truncate(b.len() - (at + 1));
                    return put_rfc3339_slow(b, ts);
                }
            }
            b.put_u8(b'"');
        }
        _ => put_rfc3339_slow(b, ts),
    }
}

fn put_rfc3339_slow(b: &mut BytesMut, ts: &str) {
    match utc_from_pg(ts) {
        Some(t) => {
            b.put_u8(b'"');
            b.put_slice(t.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string().as_bytes());
            b.put_u8(b'"');
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
        let n: i64 = part.parse().ok()?;
        seconds += n * [3600, 60, 1].get(i)?;
    }
    local.checked_sub_signed(chrono::TimeDelta::seconds(sign * seconds))
}
