//! `format = "pgstream"`: the request body and headers pgstream's webhook notifier sends for one
//! change, so a receiver written for pgstream keeps working. Owns that shape only; it does not
//! choose endpoints, sign, send or retry.
//!
//! Read from xataio/pgstream at commit 19763069a1825294d9c8d249a3a6cf9159940abe:
//! - `pkg/wal/processor/webhook/webhook.go`: the body is `Payload{Data *wal.Data}`; the field has
//!   no JSON tag, so the key is `Data`.
//! - `pkg/wal/wal_data.go`: `Data` is, in this order, `action`, `timestamp`, `lsn`, `schema`,
//!   `table`, `columns`, `identity`, `xid` (omitempty), `prefix` (omitempty), `content`
//!   (omitempty), `metadata`; a `Column` is `id`, `name`, `type`, `value`. No other omitempty:
//!   an absent `columns` or `identity` is `null`, an absent string is `""`.
//! - `pkg/wal/listener/postgres/wal_pg_listener.go`: each wal2json message (format-version 2,
//!   `include-timestamp`, `include-lsn`, no `include-transaction`, and no `include-xids` unless
//!   configured; see `pkg/wal/replication/postgres/pg_replication_handler.go`) is unmarshalled
//!   straight into `Data`, integers as `int64`, other numbers as `float64`; `bytea.go` turns a
//!   `bytea` value's hex into bytes, which marshal as base64.
//! - `pkg/wal/processor/webhook/notifier/webhook_notify_msg.go`, `webhook_notifier.go`: the body
//!   is marshalled by `internal/json` (bytedance/sonic, default config: no HTML escaping); both
//!   headers carry `Data.LSN` and are left out when it is empty or `0/0`.
//!
//! `metadata` and each column's `id` are filled by pgstream's optional injector (pgstream's own
//! schema and column ids). walcast has no such ids, so they are what pgstream sends without the
//! injector: `{"schema_id":null,"table_pgstream_id":"","id_col_pgstream_id":null}` and `""`.
//!
//! A schema change reaches a pgstream receiver as an `M` message with prefix `pgstream.ddl`; here
//! an `M` message is sent as it is, so walcast's schema messages carry walcast's own prefix and
//! content, which such a receiver does not parse.

use crate::decode::{Change, Column, Image, Value};
use crate::vocab::Op;

use crate::decode::Action;

/// The header carrying the change's LSN. Go canonicalises it to `X-Pgstream-Lsn` on the wire;
/// header names are case-insensitive, and the lower-case form is what `http` stores.
pub const LSN_HEADER: &str = "x-pgstream-lsn";
/// pgstream's idempotency key: the change's LSN again.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// What pgstream's `metadata` is without its injector (`xid.ID`'s zero value marshals as `null`).
const METADATA: &str =
    r#""metadata":{"schema_id":null,"table_pgstream_id":"","id_col_pgstream_id":null}"#;

/// A message pgstream never turns into a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PgstreamError {
    /// pgstream asks wal2json for no transaction boundaries, so it never sends one.
    #[error("a transaction {0} message is not an event pgstream sends to a webhook")]
    Boundary(&'static str),
}

/// Append the body pgstream sends for `change`: `{"Data":{...}}`, byte for byte as pgstream's
/// notifier marshals the same wal2json message, except for the values described below.
///
/// Values keep the JSON type wal2json gave them. Where walcast differs from pgstream, and why:
/// - Numbers are written as Postgres printed them. pgstream reads any number that is not an
///   integer within `int64` into a `float64`, so `numeric` `1.10` reaches its receivers as `1.1`,
///   and `123456789012345678901234567890.123` as `1.2345678901234568e+29`; one beyond `float64`'s
///   range fails pgstream's unmarshal and stops its pipeline. Rounding a value on its way out
///   would lose data, so walcast sends the exact text, which is still a JSON number.
/// - `xid` is left out, as pgstream does by default (`include_xids: false`), although walcast
///   always asks wal2json for it.
/// - `json`/`jsonb` values are strings holding the JSON text, as wal2json and pgstream send them
///   (walcast's own frames embed them as JSON instead); only the escaping could differ from
///   wal2json's, and it follows sonic's, so the text and its bytes are pgstream's.
/// - A present but empty `columns` or `identity` array is sent as `null` (the decoded change
///   does not tell empty from absent); wal2json writes neither for a table with columns.
///
/// Begin and commit messages have no pgstream body and are refused before anything is written.
pub fn body(change: &Change<'_>, out: &mut String) -> Result<(), PgstreamError> {
    let action = match change.action() {
        Action::Change(Op::Insert) => "I",
        Action::Change(Op::Update) => "U",
        Action::Change(Op::Delete) => "D",
        Action::Change(Op::Truncate) => "T",
        Action::Message { .. } => "M",
        Action::Begin => return Err(PgstreamError::Boundary("begin")),
        Action::Commit => return Err(PgstreamError::Boundary("commit")),
    };
    out.reserve(change.buf.len() + 192);
    out.push_str(r#"{"Data":{"action":""#);
    out.push_str(action);
    out.push_str(r#"","timestamp":"#);
    put_go_str(out, change.timestamp());
    out.push_str(r#","lsn":"#);
    put_go_str(out, change.lsn());
    out.push_str(r#","schema":"#);
    put_go_str(out, change.schema());
    out.push_str(r#","table":"#);
    put_go_str(out, change.table());
    out.push_str(r#","columns":"#);
    put_columns(out, change, Image::New);
    out.push_str(r#","identity":"#);
    put_columns(out, change, Image::Old);
    // `prefix` and `content` are omitempty; only an `M` message has them.
    if !change.prefix().is_empty() {
        out.push_str(r#","prefix":"#);
        put_go_str(out, change.prefix());
    }
    if !change.content().is_empty() {
        out.push_str(r#","content":"#);
        put_go_str(out, change.content());
    }
    out.push(',');
    out.push_str(METADATA);
    out.push_str("}}");
    Ok(())
}

/// The headers pgstream adds to the request: `X-Pgstream-LSN` and `Idempotency-Key`, both the
/// change's own LSN (not its transaction's commit LSN). `None` when pgstream would send neither:
/// an empty LSN or `0/0` (its snapshot rows).
///
/// The key is pgstream's, not a unique one: the `T` messages of one `TRUNCATE a, b` share one
/// WAL record and so one LSN, and a receiver that drops repeated keys keeps only the first table.
pub fn headers(change: &Change<'_>) -> Option<[(&'static str, String); 2]> {
    let lsn = change.lsn();
    if lsn.is_empty() || lsn == "0/0" {
        return None;
    }
    Some([
        (LSN_HEADER, lsn.to_owned()),
        (IDEMPOTENCY_KEY_HEADER, lsn.to_owned()),
    ])
}

/// `[{"id":"","name":..,"type":..,"value":..},..]`, or `null` when wal2json wrote no image.
fn put_columns(out: &mut String, change: &Change<'_>, image: Image) {
    if !change.has(image) {
        out.push_str("null");
        return;
    }
    out.push('[');
    for (i, column) in change.columns(image).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"id":"","name":"#);
        put_go_str(out, column.name);
        out.push_str(r#","type":"#);
        put_go_str(out, column.type_name);
        out.push_str(r#","value":"#);
        put_value(out, &column);
        out.push('}');
    }
    out.push(']');
}

fn put_value(out: &mut String, column: &Column<'_>) {
    match column.value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(text) => out.push_str(text),
        Value::String(text) => match bytea(column.type_name, text) {
            Some(bytes) => put_base64(out, &bytes),
            None => put_go_str(out, text),
        },
    }
}

/// pgstream's listener decodes a `bytea` value's hex (wal2json writes it without `\x`; a leading
/// `\x` is accepted) into bytes, which Go marshals as base64. Text that is not hex stays text.
fn bytea(type_name: &str, text: &str) -> Option<Vec<u8>> {
    if type_name != "bytea" {
        return None;
    }
    let hex = text.strip_prefix("\\x").unwrap_or(text).as_bytes();
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Standard base64 with padding, as Go's `encoding/json` and sonic write a `[]byte`.
fn put_base64(out: &mut String, bytes: &[u8]) {
    use base64::Engine as _;
    out.push('"');
    base64::engine::general_purpose::STANDARD.encode_string(bytes, out);
    out.push('"');
}

/// A JSON string escaped as sonic's default encoder does (its `_SingleQuoteTab`): `"` and `\`,
/// `\t`, `\n`, `\r` short, other control characters as lower-case `\u00xx`, everything else
/// (`<`, `>`, `&`, U+2028, non-ASCII) as is. serde_json would write `\b` and `\f` short.
fn put_go_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, c) in s.bytes().enumerate() {
        let short = match c {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\t' => "\\t",
            b'\n' => "\\n",
            b'\r' => "\\r",
            0..=0x1f => "",
            _ => continue,
        };
        // `c` is ASCII, so `i` is a character boundary.
        out.push_str(&s[start..i]);
        if short.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(c >> 4)]));
            out.push(char::from(HEX[usize::from(c & 15)]));
        } else {
            out.push_str(short);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests;
