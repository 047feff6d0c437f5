//! Parses one wal2json format-version 2 payload in place with simd-json and records spans into it.
//! Owns the reusable simd-json buffers and tape; does not interpret values (see `change`).

use simd_json::{Buffers, Node, StaticNode, Tape};

use super::change::{Action, Change, Field, Kind, Span};
use super::wide::{self, Masked};
use crate::vocab::Op;

/// Why a payload is not a wal2json v2 message. Cheap to build: no allocation on the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("payload is not valid JSON")]
    InvalidJson,
    #[error("payload is not a JSON object")]
    NotAnObject,
    #[error("message has no \"action\"")]
    MissingAction,
    #[error("unknown action")]
    UnknownAction,
    #[error("malformed column entry")]
    BadColumn,
    #[error("{0} has the wrong JSON type")]
    BadType(&'static str),
    #[error("payload larger than 4 GiB")]
    TooLarge,
}

/// A number whose raw text is located after the tape is released.
#[derive(Clone, Copy)]
struct PendingNumber {
    tape_index: u32,
    old: bool,
    field: u32,
}

/// Reusable decoder: after warm-up a decode allocates nothing.
pub struct Decoder {
    buffers: Buffers,
    tape: Option<Tape<'static>>,
    new: Vec<Field>,
    old: Vec<Field>,
    pending: Vec<PendingNumber>,
    /// Numbers beyond f64's range, masked for the parse (see `wide`).
    masked: Masked,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Top-level scalars collected while walking the tape.
#[derive(Default)]
struct Header {
    action: Option<Action>,
    transactional: bool,
    xid: Option<u64>,
    lsn: Span,
    timestamp: Span,
    schema: Span,
    table: Span,
    prefix: Span,
    content: Span,
}

impl Decoder {
    pub fn new() -> Self {
        Decoder {
            buffers: Buffers::new(4096),
            tape: Some(Tape::null().reset()),
            new: Vec::with_capacity(32),
            old: Vec::with_capacity(32),
            pending: Vec::with_capacity(32),
            masked: Masked::default(),
        }
    }

    /// Decode `payload` in place (simd-json unescapes strings inside it). The returned view borrows
    /// both the payload and this decoder.
    pub fn decode<'a>(&'a mut self, payload: &'a mut [u8]) -> Result<Change<'a>, DecodeError> {
        if u32::try_from(payload.len()).is_err() {
            return Err(DecodeError::TooLarge);
        }
        self.new.clear();
        self.old.clear();
        self.pending.clear();
        let base = payload.as_ptr() as usize;
        // simd-json refuses numbers beyond f64's range and may already have unescaped strings in
        // place when it does, so they are masked before the parse, never retried after.
        let masked = wide::may_hold_wide_numbers(payload) && self.masked.mask(payload) > 0;

        let mut tape = self
            .tape
            .take()
            .map(Tape::reset)
            .unwrap_or_else(|| Tape::null().reset());
        let walked = match simd_json::fill_tape(payload, &mut self.buffers, &mut tape) {
            Ok(()) => walk(
                &tape.0,
                base,
                &mut self.new,
                &mut self.old,
                &mut self.pending,
            ),
            Err(_) => Err(DecodeError::InvalidJson),
        };
        self.tape = Some(tape.reset());
        if masked {
            self.masked.restore(payload);
        }
        let header = walked?;

        // The tape is released: the payload may be read again to find raw number text.
        resolve_numbers(
            payload,
            self.buffers.structural_indexes(),
            &self.pending,
            &mut self.new,
            &mut self.old,
        )?;

        let action = header.action.ok_or(DecodeError::MissingAction)?;
        let action = match action {
            Action::Message { .. } => Action::Message {
                transactional: header.transactional,
            },
            other => other,
        };
        Ok(Change {
            buf: payload,
            action,
            xid: header.xid,
            lsn: header.lsn,
            timestamp: header.timestamp,
            schema: header.schema,
            table: header.table,
            prefix: header.prefix,
            content: header.content,
            new: &self.new,
            old: &self.old,
            pos: None,
        })
    }
}

fn span_of(s: &str, base: usize) -> Span {
    let start = (s.as_ptr() as usize - base) as u32;
    Span {
        start,
        end: start + s.len() as u32,
    }
}

/// Number of tape nodes taken by the value starting at `i` (itself included).
fn node_len(tape: &[Node<'_>], i: usize) -> usize {
    match tape[i] {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

fn walk(
    tape: &[Node<'_>],
    base: usize,
    new: &mut Vec<Field>,
    old: &mut Vec<Field>,
    pending: &mut Vec<PendingNumber>,
) -> Result<Header, DecodeError> {
    let Some(Node::Object { len, .. }) = tape.first() else {
        return Err(DecodeError::NotAnObject);
    };
    let mut h = Header::default();
    let mut i = 1;
    for _ in 0..*len {
        let Node::String(key) = tape[i] else {
            return Err(DecodeError::NotAnObject);
        };
        i += 1;
        let value = tape[i];
        match key {
            "action" => {
                let Node::String(a) = value else {
                    return Err(DecodeError::BadType("action"));
                };
                h.action = Some(match a {
                    "I" => Action::Change(Op::Insert),
                    "U" => Action::Change(Op::Update),
                    "D" => Action::Change(Op::Delete),
                    "T" => Action::Change(Op::Truncate),
                    "B" => Action::Begin,
                    "C" => Action::Commit,
                    "M" => Action::Message {
                        transactional: false,
                    },
                    _ => return Err(DecodeError::UnknownAction),
                });
            }
            "xid" => {
                h.xid = match value {
                    Node::Static(StaticNode::U64(x)) => Some(x),
                    Node::Static(StaticNode::I64(x)) if x >= 0 => Some(x as u64),
                    Node::Static(StaticNode::Null) => None,
                    _ => return Err(DecodeError::BadType("xid")),
                }
            }
            "lsn" => h.lsn = opt_str(value, base, "lsn")?,
            "timestamp" => h.timestamp = opt_str(value, base, "timestamp")?,
            "schema" => h.schema = opt_str(value, base, "schema")?,
            "table" => h.table = opt_str(value, base, "table")?,
            "prefix" => h.prefix = opt_str(value, base, "prefix")?,
            "content" => h.content = opt_str(value, base, "content")?,
            "transactional" => {
                h.transactional = matches!(value, Node::Static(StaticNode::Bool(true)));
            }
            "columns" => columns(tape, i, base, false, new, pending)?,
            "identity" => columns(tape, i, base, true, old, pending)?,
            _ => {}
        }
        i += node_len(tape, i);
    }
    Ok(h)
}

fn opt_str(node: Node<'_>, base: usize, what: &'static str) -> Result<Span, DecodeError> {
    match node {
        Node::String(s) => Ok(span_of(s, base)),
        Node::Static(StaticNode::Null) => Ok(Span::EMPTY),
        _ => Err(DecodeError::BadType(what)),
    }
}

fn columns(
    tape: &[Node<'_>],
    at: usize,
    base: usize,
    old: bool,
    out: &mut Vec<Field>,
    pending: &mut Vec<PendingNumber>,
) -> Result<(), DecodeError> {
    let Node::Array { len, .. } = tape[at] else {
        return Err(DecodeError::BadType("columns"));
    };
    let mut i = at + 1;
    for _ in 0..len {
        let Node::Object { len: keys, .. } = tape[i] else {
            return Err(DecodeError::BadColumn);
        };
        let mut field = Field {
            name: Span::EMPTY,
            type_name: Span::EMPTY,
            kind: Kind::Null,
            value: Span::EMPTY,
        };
        let mut has_name = false;
        let mut j = i + 1;
        for _ in 0..keys {
            let Node::String(key) = tape[j] else {
                return Err(DecodeError::BadColumn);
            };
            j += 1;
            let v = tape[j];
            match (key, v) {
                ("name", Node::String(s)) => {
                    field.name = span_of(s, base);
                    has_name = true;
                }
                ("type", Node::String(s)) => field.type_name = span_of(s, base),
                ("value", Node::String(s)) => {
                    field.kind = Kind::String;
                    field.value = span_of(s, base);
                }
                ("value", Node::Static(StaticNode::Null)) => field.kind = Kind::Null,
                ("value", Node::Static(StaticNode::Bool(b))) => {
                    field.kind = if b { Kind::True } else { Kind::False };
                }
                ("value", Node::Static(_)) => {
                    field.kind = Kind::Number;
                    pending.push(PendingNumber {
                        tape_index: j as u32,
                        old,
                        field: out.len() as u32,
                    });
                }
                ("value", _) | ("name", _) | ("type", _) => return Err(DecodeError::BadColumn),
                _ => {}
            }
            j += node_len(tape, j);
        }
        if !has_name {
            return Err(DecodeError::BadColumn);
        }
        out.push(field);
        i = j;
    }
    Ok(())
}

/// Map tape indexes of number nodes to their raw text. Every tape node starts at one structural
/// index; the structurals `:` `,` `]` `}` start no node. Pending numbers are in tape order unless
/// `identity` came before `columns`, so they are sorted first when needed.
fn resolve_numbers(
    payload: &[u8],
    structurals: &[u32],
    pending: &[PendingNumber],
    new: &mut [Field],
    old: &mut [Field],
) -> Result<(), DecodeError> {
    if pending.is_empty() {
        return Ok(());
    }
    let mut order: order::Order = order::Order::new(pending);
    let mut node = 0u32;
    let mut next = order.next();
    for &pos in structurals {
        let Some(p) = next else { break };
        match payload.get(pos as usize) {
            Some(b':' | b',' | b']' | b'}') | None => continue,
            _ => {}
        }
        if node == p.tape_index {
            let start = pos as usize;
            let end = payload[start..]
                .iter()
                .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                .map_or(payload.len(), |n| start + n);
            // The text goes into frames as it is: it must be one JSON number, ended by what may
            // follow a value (simd-json lets some malformed long numbers through).
            let ends_well = matches!(
                payload.get(end),
                Some(b' ' | b'\t' | b'\n' | b'\r' | b',' | b']' | b'}')
            );
            if !ends_well || !super::wide::is_json_number(&payload[start..end]) {
                return Err(DecodeError::InvalidJson);
            }
            let span = Span {
                start: start as u32,
                end: end as u32,
            };
            let list: &mut [Field] = if p.old { old } else { new };
            list[p.field as usize].value = span;
            next = order.next();
        }
        node += 1;
    }
    Ok(())
}

mod order {
    //! Yields pending numbers in tape order without allocating when they already are (the usual
    //! case: `columns` precedes `identity`).
    use super::PendingNumber;

    pub(super) struct Order<'p> {
        pending: &'p [PendingNumber],
        sorted: Option<Vec<PendingNumber>>,
        at: usize,
    }

    impl<'p> Order<'p> {
        pub(super) fn new(pending: &'p [PendingNumber]) -> Self {
            let in_order = pending
                .windows(2)
                .all(|w| w[0].tape_index < w[1].tape_index);
            let sorted = (!in_order).then(|| {
                let mut v = pending.to_vec();
                v.sort_unstable_by_key(|p| p.tape_index);
                v
            });
            Order {
                pending,
                sorted,
                at: 0,
            }
        }

        pub(super) fn next(&mut self) -> Option<PendingNumber> {
            let list = self.sorted.as_deref().unwrap_or(self.pending);
            let p = list.get(self.at).copied();
            self.at += 1;
            p
        }
    }
}

/// What can still be read from a payload that failed to decode, for the `decode_failed` error
/// frame and log line: its schema and table when they appear as plain strings.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Undecoded<'a> {
    pub schema: Option<&'a str>,
    pub table: Option<&'a str>,
}

impl<'a> Undecoded<'a> {
    /// Best effort, byte search only: the parser may have left the payload half unescaped, so a
    /// value containing a backslash (or not UTF-8) is not trusted and reads as unknown.
    pub fn peek(payload: &'a [u8]) -> Undecoded<'a> {
        let plain = |key: &str| -> Option<&'a str> {
            let at = find(payload, key.as_bytes())? + key.len();
            let rest = &payload[at..];
            let end = rest.iter().position(|&b| b == b'"')?;
            let value = &rest[..end];
            if value.contains(&b'\\') {
                return None;
            }
            std::str::from_utf8(value).ok()
        };
        Undecoded {
            schema: plain(r#""schema":""#),
            table: plain(r#""table":""#),
        }
    }

    /// The action letter of a payload as wal2json 2.5 writes it (`{"action":"I",...`), read
    /// without parsing; `None` when the payload does not start that way.
    pub fn action_prefix(payload: &[u8]) -> Option<u8> {
        const PREFIX: &[u8] = br#"{"action":""#;
        match payload.get(PREFIX.len() + 1) {
            Some(b'"') if payload.starts_with(PREFIX) => Some(payload[PREFIX.len()]),
            _ => None,
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
