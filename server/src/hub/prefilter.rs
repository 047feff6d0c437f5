//! The catch-up's pre-filter: reads the operation, schema and table a wal2json (format 2) change
//! names at the head of its payload, without decoding it, so that a reader of the journal skips
//! records of other tables and operations for the cost of a few byte searches instead of a full
//! decode. Owns no state beyond what one subscription asked for; does not decode or filter rows.
//!
//! wal2json writes `{"action":"I","xid":..,"timestamp":"..","lsn":"..","schema":"..","table":"..",
//! "columns":[..]}`: the action first, then scalars, then the schema and the table, each key
//! once. The head is read as JSON, strictly: keys of lowercase letters, values that are numbers,
//! `null` or strings without a backslash, up to `"schema":"..","table":".."`. Anything else (an
//! escaped name, another layout, a damaged payload) is "unknown", and an unknown record is
//! decoded in full. So a record is skipped only when its head says, beyond doubt, that the
//! decoder would read another table or an operation the subscription did not ask for: a skipped
//! record is never one that would have matched.

use crate::vocab::Op;

/// How many keys may come before `schema` (wal2json writes at most four: action, xid,
/// timestamp, lsn); past it the head is not wal2json's and reads as unknown.
const MAX_HEAD_KEYS: usize = 8;

/// What the head of a change payload says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head<'a> {
    pub action: u8,
    pub schema: &'a [u8],
    pub table: &'a [u8],
}

impl<'a> Head<'a> {
    /// The head of `payload`, or `None` when it cannot be read beyond doubt.
    pub fn read(payload: &'a [u8]) -> Option<Head<'a>> {
        let mut at = Cursor {
            buf: payload,
            pos: 0,
        };
        at.expect(br#"{"action":""#)?;
        let action = at.byte()?;
        at.expect(b"\"")?;
        for _ in 0..MAX_HEAD_KEYS {
            at.expect(b",")?;
            let key = at.key()?;
            if key == b"schema" {
                let schema = at.string()?;
                at.expect(b",")?;
                if at.key()? != b"table" {
                    return None;
                }
                let table = at.string()?;
                return Some(Head {
                    action,
                    schema,
                    table,
                });
            }
            at.scalar()?;
        }
        None
    }

    /// The row operation of the action letter; `None` for anything else.
    pub fn op(&self) -> Option<Op> {
        match self.action {
            b'I' => Some(Op::Insert),
            b'U' => Some(Op::Update),
            b'D' => Some(Op::Delete),
            b'T' => Some(Op::Truncate),
            _ => None,
        }
    }
}

/// One subscription's pre-filter: its table and its operation mask.
pub(crate) struct Prefilter {
    schema: Box<[u8]>,
    table: Box<[u8]>,
    ops: u8,
}

impl Prefilter {
    pub fn new(schema: &str, table: &str, ops: u8) -> Prefilter {
        Prefilter {
            schema: schema.as_bytes().into(),
            table: table.as_bytes().into(),
            ops,
        }
    }

    /// `false` when the payload's head says it names another table, or a row operation outside
    /// the mask: such a record cannot match (nor, for another table, earn a `decode_failed`
    /// frame). `true` when it may match or its head cannot be read: decode it.
    pub fn may_match(&self, payload: &[u8]) -> bool {
        let Some(head) = Head::read(payload) else {
            return true;
        };
        if head.schema != &*self.schema || head.table != &*self.table {
            return false;
        }
        head.op().is_none_or(|op| self.ops & op.bit() != 0)
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn expect(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.pos + bytes.len();
        (self.buf.get(self.pos..end)? == bytes).then(|| self.pos = end)
    }

    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    /// `"name":` with a name of lowercase ASCII letters or `_`.
    fn key(&mut self) -> Option<&'a [u8]> {
        let key = self.string()?;
        let plain = !key.is_empty() && key.iter().all(|b| b.is_ascii_lowercase() || *b == b'_');
        self.expect(b":")?;
        plain.then_some(key)
    }

    /// A string without escapes: the bytes between its quotes are the value itself.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.expect(b"\"")?;
        let rest = &self.buf[self.pos..];
        let len = memchr::memchr(b'"', rest)?;
        let value = &rest[..len];
        if memchr::memchr(b'\\', value).is_some() {
            return None;
        }
        self.pos += len + 1;
        Some(value)
    }

    /// A value before `schema`: a string without escapes, or a number, `null`, `true` or
    /// `false` (never an object or array: those would end the head).
    fn scalar(&mut self) -> Option<()> {
        if self.buf.get(self.pos) == Some(&b'"') {
            return self.string().map(drop);
        }
        let rest = &self.buf[self.pos..];
        let len = rest
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.')))?;
        if len == 0 {
            return None;
        }
        self.pos += len;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INSERT: &[u8] = br#"{"action":"I","xid":725,"timestamp":"2026-11-22 00:31:09.836807+00","lsn":"0/1529830","schema":"public","table":"people","columns":[{"name":"pk","type":"integer","value":1}]}"#;

    #[test]
    fn reads_the_head_of_every_change_in_the_samples() {
        let samples = include_str!("../../testdata/wal2json_v2_samples.jsonl");
        let mut read = 0;
        for line in samples.lines() {
            let action = line.as_bytes()[11];
            match Head::read(line.as_bytes()) {
                Some(head) => {
                    assert!(matches!(action, b'I' | b'U' | b'D' | b'T'), "{line}");
                    assert_eq!((head.action, head.schema), (action, &b"public"[..]));
                    read += 1;
                }
                // Begin, commit and message payloads name no table.
                None => assert!(matches!(action, b'B' | b'C' | b'M'), "{line}"),
            }
        }
        assert!(read >= 5, "the samples hold changes");
    }

    #[test]
    fn reads_a_change_without_the_optional_keys() {
        let head = Head::read(br#"{"action":"D","schema":"s","table":"t","identity":[]}"#);
        assert_eq!(
            head,
            Some(Head {
                action: b'D',
                schema: b"s",
                table: b"t"
            })
        );
        assert_eq!(head.and_then(|h| h.op()), Some(Op::Delete));
    }

    #[test]
    fn anything_but_the_plain_layout_is_unknown() {
        for payload in [
            // Escaped names: the bytes are not the name.
            &br#"{"action":"I","schema":"public","table":"pe\"ople","columns":[]}"#[..],
            br#"{"action":"I","schema":"pub\\lic","table":"people","columns":[]}"#,
            // Escaped key, other key order, columns before the table, whitespace.
            br#"{"action":"I","sch\u0065ma":"public","table":"people"}"#,
            br#"{"action":"I","table":"people","schema":"public"}"#,
            br#"{"action":"I","columns":[],"schema":"public","table":"people"}"#,
            br#"{"action": "I","schema":"public","table":"people"}"#,
            br#"{ "action":"I","schema":"public","table":"people"}"#,
            // Cut short, empty, not JSON, no schema at all.
            br#"{"action":"I","xid":725,"schema":"publ"#,
            b"",
            b"\xff\xfe",
            br#"{"action":"B","xid":724,"lsn":"0/1528FC0","nextlsn":"0/15297C8"}"#,
            br#"{"action":"I","a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"schema":"public","table":"people"}"#,
        ] {
            assert_eq!(
                Head::read(payload),
                None,
                "{}",
                String::from_utf8_lossy(payload)
            );
        }
    }

    #[test]
    fn skips_other_tables_and_operations_only() {
        let people = Prefilter::new("public", "people", Op::Insert.bit());
        assert!(people.may_match(INSERT));
        assert!(!Prefilter::new("public", "people", Op::Update.bit()).may_match(INSERT));
        assert!(!Prefilter::new("public", "other", Op::Insert.bit()).may_match(INSERT));
        assert!(!Prefilter::new("other", "people", Op::Insert.bit()).may_match(INSERT));
        // A name that is a prefix of the other's is another name.
        assert!(!Prefilter::new("public", "peopl", Op::Insert.bit()).may_match(INSERT));
        // Unknown heads are decoded.
        assert!(people.may_match(b"not json"));
        assert!(people.may_match(br#"{"action":"X","schema":"public","table":"people"}"#));
    }
}
