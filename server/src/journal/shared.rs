//! What the writer publishes to readers: the list of segments, how far each may be read, and a
//! sparse index per segment. Readers take the read lock only to find their start and when they
//! reach the end of what they last saw, never per record.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use parking_lot::RwLock;

use super::format::SEGMENT_HEADER_LEN;
use crate::vocab::Pos;

/// Bytes between two sparse-index entries: a reader scans at most this much (about 160 records
/// of 400 bytes) to find its start, and a 64 MiB segment costs 1024 entries of memory.
pub(crate) const INDEX_EVERY: u64 = 64 * 1024;

const SEGMENT_EXT: &str = "seg";

pub(crate) struct Shared {
    pub dir: PathBuf,
    pub view: RwLock<View>,
}

/// Invariants: segments have consecutive `seq`s, oldest first, and the last one is the active
/// segment (the only one that grows). A segment holds changes with positions `> prev` and every
/// older segment holds positions `<= prev`, so `prev` is non-decreasing along the list.
pub(crate) struct View {
    pub segments: VecDeque<SegmentMeta>,
    /// The position this journal's stream began after (`identity.json`'s `starts_after`): a
    /// journal started fresh against a slot that had already moved on holds nothing at or
    /// before it, even while its first segment's `prev` is still `ZERO`.
    pub floor: Pos,
}

pub(crate) struct SegmentMeta {
    pub seq: u64,
    /// The last change position written before this segment began (from its header).
    pub prev: Pos,
    /// Bytes readers may read: whole records only, never a half-written one. Final once sealed.
    pub len: u64,
    pub first: Option<Pos>,
    pub last: Option<Pos>,
    /// `written_at` of the newest record, for age-based retention.
    pub newest_ms: u64,
    /// `(position, offset)` of a change at least every `INDEX_EVERY` bytes, ascending.
    pub index: Vec<(Pos, u64)>,
}

impl SegmentMeta {
    pub fn new(seq: u64, prev: Pos) -> SegmentMeta {
        SegmentMeta {
            seq,
            prev,
            len: SEGMENT_HEADER_LEN as u64,
            first: None,
            last: None,
            newest_ms: 0,
            index: Vec::new(),
        }
    }
}

/// Decides which changes go into the sparse index while a segment is scanned or written.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IndexCursor {
    next_at: u64,
}

impl IndexCursor {
    pub fn new() -> IndexCursor {
        IndexCursor { next_at: 0 }
    }

    /// True when the change starting at `offset` should get an index entry.
    pub fn take(&mut self, offset: u64) -> bool {
        if offset < self.next_at {
            return false;
        }
        self.next_at = offset + INDEX_EVERY;
        true
    }
}

impl View {
    pub fn get(&self, seq: u64) -> Option<&SegmentMeta> {
        let front = self.segments.front()?.seq;
        self.segments
            .get(usize::try_from(seq.checked_sub(front)?).ok()?)
    }

    pub fn active(&self) -> &SegmentMeta {
        self.segments
            .back()
            .expect("a journal always has an active segment")
    }

    pub fn active_mut(&mut self) -> &mut SegmentMeta {
        self.segments
            .back_mut()
            .expect("a journal always has an active segment")
    }

    /// Everything at or before the horizon may have been removed; a reader must start after a
    /// position `>=` it.
    pub fn horizon(&self) -> Pos {
        let prev = self.segments.front().map_or(Pos::ZERO, |s| s.prev);
        prev.max(self.floor)
    }

    /// The segment and byte offset from which a scan finds the first change `> after`: every
    /// record before that offset is `<= after`. `Err(horizon)` when records `> after` are gone.
    pub fn locate(&self, after: Pos) -> Result<(u64, u64), Pos> {
        let horizon = self.horizon();
        if after < horizon {
            return Err(horizon);
        }
        // The last segment whose `prev <= after`: older ones hold nothing `> after`.
        let i = self.segments.partition_point(|s| s.prev <= after) - 1;
        let seg = &self.segments[i];
        let j = seg.index.partition_point(|&(pos, _)| pos <= after);
        let offset = match j {
            0 => SEGMENT_HEADER_LEN as u64,
            j => seg.index[j - 1].1,
        };
        Ok((seg.seq, offset))
    }
}

pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:016X}.{SEGMENT_EXT}"))
}

/// `Some(seq)` for a segment file name; other files in the directory are not ours to judge.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SEGMENT_EXT)?.strip_suffix('.')?;
    if stem.len() != 16 || !stem.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(stem, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Lsn;

    fn pos(c: u64, o: u32) -> Pos {
        Pos::new(Lsn(c), o)
    }

    #[test]
    fn segment_names_round_trip_and_sort_by_seq() {
        let dir = Path::new("/j");
        let a = segment_path(dir, 9);
        let b = segment_path(dir, 10);
        assert!(a.file_name() < b.file_name());
        let name = b.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse_segment_name(name), Some(10));
        for other in [
            "LOCK",
            "000000000000000A.seg.tmp",
            "A.seg",
            "000000000000000G.seg",
        ] {
            assert_eq!(parse_segment_name(other), None, "{other}");
        }
    }

    #[test]
    fn locate_uses_prev_and_the_sparse_index() {
        let mut s0 = SegmentMeta::new(4, pos(10, 2));
        s0.index = vec![(pos(11, 1), 32), (pos(20, 1), 70_000)];
        let s1 = SegmentMeta::new(5, pos(30, 4));
        let mut view = View {
            segments: VecDeque::from([s0, s1]),
            floor: Pos::ZERO,
        };
        assert_eq!(view.horizon(), pos(10, 2));
        assert_eq!(view.locate(pos(10, 1)), Err(pos(10, 2)));
        assert_eq!(view.locate(pos(10, 2)), Ok((4, 32)));
        assert_eq!(view.locate(pos(11, 1)), Ok((4, 32)));
        assert_eq!(view.locate(pos(19, 9)), Ok((4, 32)));
        assert_eq!(view.locate(pos(20, 1)), Ok((4, 70_000)));
        assert_eq!(view.locate(pos(30, 3)), Ok((4, 70_000)));
        assert_eq!(view.locate(pos(30, 4)), Ok((5, 32)));
        assert_eq!(view.locate(pos(u64::MAX, 0)), Ok((5, 32)));
        assert_eq!(view.get(5).map(|s| s.seq), Some(5));
        assert!(view.get(3).is_none() && view.get(6).is_none());
        // A journal that began after a later position vouches for nothing before it.
        view.floor = pos(11, 1);
        assert_eq!(view.horizon(), pos(11, 1));
        assert_eq!(view.locate(pos(10, 2)), Err(pos(11, 1)));
        assert_eq!(view.locate(pos(11, 1)), Ok((4, 32)));
    }
}
