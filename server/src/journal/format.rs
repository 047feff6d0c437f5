//! The on-disk format: the segment header and the record framing (see the module doc of
//! `journal` for the layout). Pure encoding and decoding; no I/O.

use crate::vocab::{Lsn, Pos};

pub(crate) const MAGIC: [u8; 8] = *b"WALCASTJ";
pub(crate) const VERSION: u32 = 1;
pub(crate) const SEGMENT_HEADER_LEN: usize = 32;
pub(crate) const RECORD_HEADER_LEN: usize = 37;
/// Postgres cannot produce a bigger message (`MaxAllocSize`); anything larger in a length field
/// is damage, which lets a torn length be told apart from a huge record without reading on.
pub(crate) const MAX_PAYLOAD: usize = 1 << 30;

pub(crate) const KIND_CHANGE: u8 = 1;
pub(crate) const KIND_COMMIT: u8 = 2;
/// A gap in the stream (a temporary slot re-created after a disconnect): readers hand it on like a
/// change; its payload is the `gap` frame as live subscribers got it.
pub(crate) const KIND_GAP: u8 = 3;
/// A schema event inside a transaction, at its own position among the transaction's changes: its
/// payload is the event as `schema::SchemaEvent::to_record` wrote it.
pub(crate) const KIND_SCHEMA: u8 = 4;

/// Records that readers return (they skip commit markers) and that take a position in the
/// journal's strictly increasing order.
pub(crate) fn is_positioned(kind: u8) -> bool {
    kind == KIND_CHANGE || kind == KIND_GAP || kind == KIND_SCHEMA
}

/// Segment header: `magic[8] | version u32 | prev.commit u64 | prev.ordinal u32 | reserved u32 |
/// crc32 u32` (little-endian; the crc covers bytes 0..28).
pub(crate) fn encode_segment_header(prev: Pos) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&prev.commit.0.to_le_bytes());
    h[20..24].copy_from_slice(&prev.ordinal.to_le_bytes());
    let crc = crc32fast::hash(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// Short, wrong magic or wrong checksum: a segment whose creation was torn, or not ours.
    Damaged(&'static str),
    Version(u32),
}

/// Returns the segment's `prev`: the last change position written before the segment began.
pub(crate) fn decode_segment_header(h: &[u8]) -> Result<Pos, HeaderError> {
    if h.len() < SEGMENT_HEADER_LEN {
        return Err(HeaderError::Damaged("segment header is cut short"));
    }
    if h[..8] != MAGIC {
        return Err(HeaderError::Damaged(
            "not a walcast journal segment (bad magic)",
        ));
    }
    if crc32fast::hash(&h[..28]) != u32_at(h, 28) {
        return Err(HeaderError::Damaged("segment header checksum mismatch"));
    }
    let version = u32_at(h, 8);
    if version != VERSION {
        return Err(HeaderError::Version(version));
    }
    Ok(Pos::new(Lsn(u64_at(h, 12)), u32_at(h, 20)))
}

/// The fixed part of a record. For a change `pos` is its position and `lsn` its `wal_start`;
/// for a commit marker `pos.commit` is the commit LSN, `pos.ordinal` the number of changes
/// written for the transaction, and `lsn` the transaction's end LSN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub kind: u8,
    pub pos: Pos,
    pub lsn: Lsn,
    pub written_at_ms: u64,
    pub payload_len: usize,
}

impl Head {
    pub fn record_len(&self) -> usize {
        RECORD_HEADER_LEN + self.payload_len
    }
}

/// Record: `len u32 | crc32 u32 | kind u8 | commit u64 | ordinal u32 | lsn u64 |
/// written_at_ms u64 | payload[len]`. The crc covers `len` and everything after the crc, so a
/// zero-filled tail (a file extended but never written) does not pass for an empty record.
pub(crate) fn encode_head(
    kind: u8,
    pos: Pos,
    lsn: Lsn,
    written_at_ms: u64,
    payload: &[u8],
) -> [u8; RECORD_HEADER_LEN] {
    debug_assert!(payload.len() <= MAX_PAYLOAD);
    let mut h = [0u8; RECORD_HEADER_LEN];
    h[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[8] = kind;
    h[9..17].copy_from_slice(&pos.commit.0.to_le_bytes());
    h[17..21].copy_from_slice(&pos.ordinal.to_le_bytes());
    h[21..29].copy_from_slice(&lsn.0.to_le_bytes());
    h[29..37].copy_from_slice(&written_at_ms.to_le_bytes());
    let crc = checksum(&h, payload);
    h[4..8].copy_from_slice(&crc.to_le_bytes());
    h
}

fn checksum(head: &[u8], payload: &[u8]) -> u32 {
    let mut c = head_hasher(head);
    c.update(payload);
    c.finalize()
}

/// The checksum state after a record's header fields: feed it the payload, then compare with
/// the stored crc (`u32` at bytes 4..8).
pub(crate) fn head_hasher(head: &[u8]) -> crc32fast::Hasher {
    let mut c = crc32fast::Hasher::new();
    c.update(&head[..4]);
    c.update(&head[8..RECORD_HEADER_LEN]);
    c
}

pub(crate) fn stored_crc(head: &[u8]) -> u32 {
    u32_at(head, 4)
}

/// A cheap look at the `RECORD_HEADER_LEN` bytes `h` that may start a record, before its
/// checksum is verified: a known kind, an empty commit marker, a payload that ends within
/// `room` bytes after the header, a write time before `max_ms`. Returns the payload length.
/// Random bytes almost never pass (the time alone turns away all but about one in ten million,
/// the kind all but 4 in 256), so a scan for records after damage verifies few checksums.
pub(crate) fn candidate(h: &[u8], room: u64, max_ms: u64) -> Option<usize> {
    let kind = h[8];
    let len = u32_at(h, 0) as usize;
    let known =
        matches!(kind, KIND_CHANGE | KIND_GAP | KIND_SCHEMA) || (kind == KIND_COMMIT && len == 0);
    let fits = len <= MAX_PAYLOAD && len as u64 <= room;
    (known && fits && u64_at(h, 29) <= max_ms).then_some(len)
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    Record(Head),
    /// `buf` ends inside the record (its header or its payload).
    Incomplete,
    /// The bytes cannot be a record written by the journal.
    Invalid(&'static str),
}

/// Parses the record that starts at `buf[0]`; `buf` may hold more after it.
pub(crate) fn parse(buf: &[u8]) -> Parsed {
    if buf.len() < RECORD_HEADER_LEN {
        return Parsed::Incomplete;
    }
    let payload_len = u32_at(buf, 0) as usize;
    if payload_len > MAX_PAYLOAD {
        return Parsed::Invalid("record length out of range");
    }
    let end = RECORD_HEADER_LEN + payload_len;
    if buf.len() < end {
        return Parsed::Incomplete;
    }
    if checksum(buf, &buf[RECORD_HEADER_LEN..end]) != u32_at(buf, 4) {
        return Parsed::Invalid("record checksum mismatch");
    }
    let kind = buf[8];
    if !matches!(kind, KIND_CHANGE | KIND_COMMIT | KIND_GAP | KIND_SCHEMA) {
        return Parsed::Invalid("unknown record kind");
    }
    Parsed::Record(Head {
        kind,
        pos: Pos::new(Lsn(u64_at(buf, 9)), u32_at(buf, 17)),
        lsn: Lsn(u64_at(buf, 21)),
        written_at_ms: u64_at(buf, 29),
        payload_len,
    })
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u8, pos: Pos, payload: &[u8]) -> Vec<u8> {
        let mut r = encode_head(kind, pos, Lsn(7), 1234, payload).to_vec();
        r.extend_from_slice(payload);
        r
    }

    #[test]
    fn record_round_trips() {
        let pos = Pos::new(Lsn(0x152A058), 3);
        let mut r = record(KIND_CHANGE, pos, b"{\"action\":\"I\"}");
        r.extend_from_slice(b"next record");
        let Parsed::Record(h) = parse(&r) else {
            panic!("not parsed")
        };
        assert_eq!(
            (h.kind, h.pos, h.lsn, h.written_at_ms),
            (KIND_CHANGE, pos, Lsn(7), 1234)
        );
        assert_eq!(&r[RECORD_HEADER_LEN..h.record_len()], b"{\"action\":\"I\"}");
    }

    #[test]
    fn every_prefix_is_incomplete_and_every_flip_is_invalid() {
        let r = record(KIND_COMMIT, Pos::new(Lsn(9), 2), b"payload");
        for cut in 0..r.len() {
            assert_eq!(parse(&r[..cut]), Parsed::Incomplete, "cut at {cut}");
        }
        for at in 0..r.len() {
            let mut bad = r.clone();
            bad[at] ^= 0x40;
            // A flip in the length may make the record look longer than the buffer.
            assert!(
                matches!(parse(&bad), Parsed::Invalid(_) | Parsed::Incomplete),
                "flip at {at}"
            );
            if at >= 4 {
                assert!(matches!(parse(&bad), Parsed::Invalid(_)), "flip at {at}");
            }
        }
    }

    #[test]
    fn zeros_are_not_a_record() {
        assert!(matches!(parse(&[0u8; 64]), Parsed::Invalid(_)));
    }

    #[test]
    fn segment_header_round_trips_and_detects_damage() {
        let prev = Pos::new(Lsn(42), 5);
        let h = encode_segment_header(prev);
        assert_eq!(decode_segment_header(&h), Ok(prev));
        assert!(matches!(
            decode_segment_header(&h[..31]),
            Err(HeaderError::Damaged(_))
        ));
        let mut bad = h;
        bad[13] ^= 1;
        assert!(matches!(
            decode_segment_header(&bad),
            Err(HeaderError::Damaged(_))
        ));
        let mut v2 = h;
        v2[8] = 2;
        let crc = crc32fast::hash(&v2[..28]);
        v2[28..32].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_segment_header(&v2), Err(HeaderError::Version(2)));
    }
}
