//! The borrowed view of one decoded wal2json message. Owns no bytes: every string points into the
//! XLogData payload that simd-json unescaped in place. Does not parse (see `parser`) or encode
//! (see `frame`).

use std::ops::Range;

use crate::vocab::{Op, Pos};

/// Byte range of a value inside the payload buffer. `u32` keeps `Field` at 28 bytes; wal2json
/// messages are far below 4 GiB (Postgres caps a datum at 1 GiB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Span {
    pub(crate) const EMPTY: Span = Span { start: 0, end: 0 };

    pub(crate) fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// JSON type of a column value as wal2json wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    True,
    False,
    /// Raw number text exactly as Postgres printed it (never converted through f64/i64).
    Number,
    /// Unescaped string bytes.
    String,
}

/// One column of `columns` (new image) or `identity` (old image), as spans into the payload.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field {
    pub(crate) name: Span,
    pub(crate) type_name: Span,
    pub(crate) kind: Kind,
    pub(crate) value: Span,
}

/// What kind of wal2json message was decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    Begin,
    Commit,
    Change(Op),
    /// `pg_logical_emit_message`; `transactional` says whether it sits inside a B/C pair.
    Message {
        transactional: bool,
    },
}

/// A scalar column value borrowed from the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    /// Number text exactly as Postgres printed it.
    Number(&'a str),
    String(&'a str),
}

/// One column value with its name and Postgres type name (as wal2json prints it, e.g. `integer`,
/// `timestamp with time zone`, `character varying(20)`).
#[derive(Clone, Copy, Debug)]
pub struct Column<'a> {
    pub name: &'a str,
    pub type_name: &'a str,
    pub value: Value<'a>,
}

/// Which row image of a change to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Image {
    /// `columns`: the new row (insert, update).
    New,
    /// `identity`: the old row's replica-identity columns (update, delete).
    Old,
}

/// A decoded message. Valid until the decoder is used again.
#[derive(Clone, Copy, Debug)]
pub struct Change<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) action: Action,
    pub(crate) xid: Option<u64>,
    pub(crate) lsn: Span,
    pub(crate) timestamp: Span,
    pub(crate) schema: Span,
    pub(crate) table: Span,
    pub(crate) prefix: Span,
    pub(crate) content: Span,
    pub(crate) new: &'a [Field],
    pub(crate) old: &'a [Field],
    /// Where the change sits in the stream (set by the intake, not by the payload); written into
    /// the frame as `pos` when known.
    pub(crate) pos: Option<Pos>,
}

impl<'a> Change<'a> {
    /// The change's stream position, when the intake gave it one.
    pub fn pos(&self) -> Option<Pos> {
        self.pos
    }

    /// Give the change its stream position (the transaction's commit LSN and its ordinal).
    pub fn set_pos(&mut self, pos: Pos) {
        self.pos = Some(pos);
    }

    pub(crate) fn action(&self) -> Action {
        self.action
    }

    /// The row operation, `None` for B/C/M messages.
    pub fn op(&self) -> Option<Op> {
        match self.action {
            Action::Change(op) => Some(op),
            _ => None,
        }
    }

    pub fn xid(&self) -> Option<u64> {
        self.xid
    }

    /// Change LSN as wal2json prints it (`0/1526A58`); empty when absent.
    pub fn lsn(&self) -> &'a str {
        self.str(self.lsn)
    }

    /// Commit timestamp as Postgres prints it (`2026-11-21 23:54:51.28847+00`); empty when absent.
    pub fn timestamp(&self) -> &'a str {
        self.str(self.timestamp)
    }

    pub fn schema(&self) -> &'a str {
        self.str(self.schema)
    }

    pub fn table(&self) -> &'a str {
        self.str(self.table)
    }

    /// Logical message prefix (action `M`).
    pub fn prefix(&self) -> &'a str {
        self.str(self.prefix)
    }

    /// Logical message content (action `M`).
    pub fn content(&self) -> &'a str {
        self.str(self.content)
    }

    /// Number of columns in a row image.
    pub fn len(&self, image: Image) -> usize {
        self.fields(image).len()
    }

    /// Whether the image is present at all (update/delete may come without `identity`).
    pub fn has(&self, image: Image) -> bool {
        !self.fields(image).is_empty()
    }

    /// Column at position `i` of a row image.
    pub fn column_at(&self, image: Image, i: usize) -> Option<Column<'a>> {
        self.fields(image).get(i).map(|f| self.column(f))
    }

    /// Column by name. Linear: wal2json rows are short and names are compared by length first.
    /// An unchanged TOAST column is absent from `new` and yields `None` (absent is not null).
    pub fn get(&self, image: Image, name: &str) -> Option<Column<'a>> {
        let name = name.as_bytes();
        self.fields(image)
            .iter()
            .find(|f| &self.buf[f.name.range()] == name)
            .map(|f| self.column(f))
    }

    /// Iterate the columns of a row image in table order.
    pub fn columns(&self, image: Image) -> impl Iterator<Item = Column<'a>> + '_ {
        self.fields(image).iter().map(move |f| self.column(f))
    }

    pub(crate) fn fields(&self, image: Image) -> &'a [Field] {
        match image {
            Image::New => self.new,
            Image::Old => self.old,
        }
    }

    pub(crate) fn column(&self, f: &Field) -> Column<'a> {
        let value = match f.kind {
            Kind::Null => Value::Null,
            Kind::True => Value::Bool(true),
            Kind::False => Value::Bool(false),
            Kind::Number => Value::Number(self.str(f.value)),
            Kind::String => Value::String(self.str(f.value)),
        };
        Column {
            name: self.str(f.name),
            type_name: self.str(f.type_name),
            value,
        }
    }

    pub(crate) fn str(&self, span: Span) -> &'a str {
        str_at(self.buf, span)
    }
}

/// The parser only records spans of strings simd-json validated as UTF-8 (and number text, which is
/// ASCII), so the slice is always valid; the check is kept because it costs little next to a
/// socket write and keeps this crate free of `unsafe`.
fn str_at(buf: &[u8], span: Span) -> &str {
    std::str::from_utf8(&buf[span.range()]).unwrap_or_default()
}
