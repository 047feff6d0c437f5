//! Opening an existing journal: list the segments, verify every record's checksum, build the
//! sparse index, and cut what a crash left unfinished: a torn tail (a record cut short or
//! damaged at the very end of the newest segment, with nothing valid after it) and the changes
//! of a transaction whose commit marker never made it. Damage anywhere else is corruption and
//! fails the open: a torn write only ever loses the end of what was written, so valid records
//! after damage were written (and maybe synced and confirmed) after it, and cutting them would
//! delete them. Does not create segments or take the lock (`writer.rs`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tracing::warn;

use super::format::{
    self, HeaderError, KIND_CHANGE, KIND_COMMIT, KIND_GAP, KIND_SCHEMA, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};
use super::shared::{parse_segment_name, segment_path, IndexCursor, SegmentMeta};
use super::window::{Step, Window};
use super::JournalError;
use crate::vocab::{Lsn, Pos};

/// The journal as found on disk, after the cut.
pub(crate) struct Recovered {
    /// Oldest first, consecutive seqs; empty when there is nothing (usable) on disk.
    pub segments: Vec<SegmentMeta>,
    /// The last complete transaction: `(commit, end)`, and the seq of the segment holding its
    /// marker.
    pub last_commit: Option<(Lsn, Lsn, u64)>,
    /// The seq a new first segment takes when `segments` is empty.
    pub next_seq: u64,
}

/// The state of a segment right after its last commit marker, where a cut may land.
#[derive(Clone)]
struct CommitPoint {
    offset: u64,
    commit: Lsn,
    end: Lsn,
    first: Option<Pos>,
    last: Option<Pos>,
    newest_ms: u64,
    index_len: usize,
    /// Changes in the segment up to the marker.
    changes: u64,
}

struct Scanned {
    meta: SegmentMeta,
    path: PathBuf,
    commit: Option<CommitPoint>,
    /// `(offset, reason)` of the first byte that is not a whole record (newest segment only).
    torn: Option<(u64, &'static str)>,
    file_len: u64,
    changes: u64,
}

pub(crate) fn recover(dir: &Path) -> Result<Recovered, JournalError> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(dir).map_err(JournalError::io("list", dir))? {
        let entry = entry.map_err(JournalError::io("list", dir))?;
        if let Some(seq) = entry.file_name().to_str().and_then(parse_segment_name) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    for w in seqs.windows(2) {
        if w[1] != w[0] + 1 {
            return Err(JournalError::Gap {
                before: segment_path(dir, w[0]),
                missing: segment_path(dir, w[0] + 1),
                after: segment_path(dir, w[1]),
            });
        }
    }
    let mut window = Window::new(1 << 20);
    let mut scanned = Vec::with_capacity(seqs.len());
    for (i, &seq) in seqs.iter().enumerate() {
        let newest = i + 1 == seqs.len();
        match scan(dir, seq, newest, &mut window)? {
            Some(s) => scanned.push(s),
            None => {
                // Only the newest segment gets here, when its creation was torn (a crash between
                // creating the file and syncing its header) and nothing valid follows the
                // header: it never held a record.
                let path = segment_path(dir, seq);
                warn!(segment = %path.display(), "journal: removed a segment whose header was never completely written");
                fs::remove_file(&path).map_err(JournalError::io("remove", &path))?;
            }
        }
    }
    if scanned.is_empty() {
        sync_dir(dir)?;
        return Ok(Recovered {
            segments: Vec::new(),
            last_commit: None,
            next_seq: seqs.first().copied().unwrap_or(0),
        });
    }
    if let Some(last) = scanned.last() {
        if let Some((offset, reason)) = last.torn {
            warn!(
                segment = %last.path.display(),
                offset,
                bytes = last.file_len - offset,
                reason,
                "journal: cut a torn tail (a write interrupted by a crash or power loss)"
            );
        }
    }
    let last_commit = cut_incomplete(dir, &mut scanned)?;
    Ok(Recovered {
        next_seq: scanned.last().map_or(0, |s| s.meta.seq + 1),
        segments: scanned.into_iter().map(|s| s.meta).collect(),
        last_commit,
    })
}

/// Keeps everything up to the last commit marker and removes the rest from disk.
fn cut_incomplete(
    dir: &Path,
    scanned: &mut Vec<Scanned>,
) -> Result<Option<(Lsn, Lsn, u64)>, JournalError> {
    // Trimming never removes the segment of the last durable commit marker, so when there is
    // one it is among these; when there is none, nothing was ever trimmed.
    let keep = scanned
        .iter()
        .rposition(|s| s.commit.is_some())
        .unwrap_or(0);
    let mut changed = false;
    let mut cut_changes = 0;
    let mut removed_segments = 0;
    for s in scanned.drain(keep + 1..).rev() {
        fs::remove_file(&s.path).map_err(JournalError::io("remove", &s.path))?;
        cut_changes += s.changes;
        removed_segments += 1;
        changed = true;
    }
    let s = &mut scanned[keep];
    let point = s.commit.clone();
    let cut_at = point
        .as_ref()
        .map_or(SEGMENT_HEADER_LEN as u64, |p| p.offset);
    cut_changes += s.changes - point.as_ref().map_or(0, |p| p.changes);
    if cut_changes > 0 {
        warn!(
            segment = %s.path.display(),
            offset = cut_at,
            changes = cut_changes,
            removed_segments,
            "journal: cut the changes of a transaction without its commit marker"
        );
    }
    if cut_at < s.file_len {
        let f = OpenOptions::new()
            .write(true)
            .open(&s.path)
            .map_err(JournalError::io("open", &s.path))?;
        f.set_len(cut_at)
            .map_err(JournalError::io("truncate", &s.path))?;
        f.sync_all().map_err(JournalError::io("sync", &s.path))?;
        changed = true;
    }
    let meta = &mut s.meta;
    meta.len = cut_at;
    match &point {
        Some(p) => {
            meta.first = p.first;
            meta.last = p.last;
            meta.newest_ms = p.newest_ms;
            meta.index.truncate(p.index_len);
        }
        None => {
            meta.first = None;
            meta.last = None;
            meta.index.clear();
        }
    }
    if changed {
        sync_dir(dir)?;
    }
    Ok(point.map(|p| (p.commit, p.end, meta.seq)))
}

/// Reads one segment. `None`: the newest segment's header is damaged (torn at creation). Any
/// damage in an older segment is an error: it was synced when sealed, so no crash explains it.
fn scan(
    dir: &Path,
    seq: u64,
    newest: bool,
    w: &mut Window,
) -> Result<Option<Scanned>, JournalError> {
    let path = segment_path(dir, seq);
    let mut f = File::open(&path).map_err(JournalError::io("open", &path))?;
    let file_len = f.metadata().map_err(JournalError::io("stat", &path))?.len();
    w.reset();
    let read = JournalError::io("read", &path);
    let header = match w.bytes(&mut f, 0, SEGMENT_HEADER_LEN, file_len) {
        Ok(h) => format::decode_segment_header(h),
        Err(e) => return Err(read(e)),
    };
    let prev = match header {
        Ok(prev) => prev,
        Err(HeaderError::Damaged(reason)) if newest => {
            // Records are only ever written after the header was synced: a record behind a
            // damaged header means the header was damaged later.
            return match valid_record_after(&mut f, 1, file_len)
                .map_err(JournalError::io("read", &path))?
            {
                Some(valid_at) => Err(JournalError::Damaged {
                    path,
                    offset: 0,
                    reason,
                    valid_at,
                }),
                None => Ok(None),
            };
        }
        Err(HeaderError::Damaged(reason)) => {
            return Err(JournalError::Corrupt {
                path,
                offset: 0,
                reason,
            })
        }
        Err(HeaderError::Version(version)) => {
            return Err(JournalError::Version {
                path,
                version,
                supported: format::VERSION,
            })
        }
    };
    let mut meta = SegmentMeta::new(seq, prev);
    let mut index = IndexCursor::new();
    let mut commit = None;
    let mut torn = None;
    let mut changes = 0;
    let mut offset = SEGMENT_HEADER_LEN as u64;
    loop {
        let step = match w.step(&mut f, offset, file_len) {
            Ok(step) => step,
            Err(e) => return Err(JournalError::io("read", &path)(e)),
        };
        let head = match step {
            Step::Record(head) => head,
            Step::End => break,
            Step::Incomplete | Step::Invalid(_) => {
                let reason = match step {
                    Step::Invalid(reason) => reason,
                    _ => "record cut short",
                };
                if !newest {
                    return Err(corrupt(path, offset, reason));
                }
                // A torn write ends the file: anything valid after the damage is not one.
                if let Some(valid_at) = valid_record_after(&mut f, offset + 1, file_len)
                    .map_err(JournalError::io("read", &path))?
                {
                    return Err(JournalError::Damaged {
                        path,
                        offset,
                        reason,
                        valid_at,
                    });
                }
                torn = Some((offset, reason));
                break;
            }
        };
        if format::is_positioned(head.kind) {
            // A checksummed record out of order is not a torn write but a broken writer.
            if head.pos <= meta.last.unwrap_or(prev) {
                return Err(corrupt(path, offset, "change positions out of order"));
            }
            if head.kind == KIND_CHANGE || head.kind == KIND_SCHEMA {
                changes += 1;
            }
            meta.first.get_or_insert(head.pos);
            meta.last = Some(head.pos);
            if index.take(offset) {
                meta.index.push((head.pos, offset));
            }
        }
        meta.newest_ms = meta.newest_ms.max(head.written_at_ms);
        offset += head.record_len() as u64;
        // A commit marker ends a transaction; a gap sits between two, carrying the end of the
        // last one: the journal may end after either. Changes and schema events are inside one.
        if head.kind == KIND_COMMIT || head.kind == KIND_GAP {
            commit = Some(CommitPoint {
                offset,
                commit: head.pos.commit,
                end: head.lsn,
                first: meta.first,
                last: meta.last,
                newest_ms: meta.newest_ms,
                index_len: meta.index.len(),
                changes,
            });
        }
    }
    meta.len = offset;
    Ok(Some(Scanned {
        meta,
        path,
        commit,
        torn,
        file_len,
        changes,
    }))
}

/// How far in the future a record's write time may lie and still be taken for one (clocks get
/// corrected; random bytes are turned away all the same).
const CLOCK_SLACK: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The offset of the first whole record with a valid checksum that starts at or after `from`,
/// if any. Every offset is tried (the damage may have changed a length), each first through
/// `format::candidate`, so a scan costs about one pass over the bytes.
pub(crate) fn valid_record_after(
    f: &mut File,
    from: u64,
    file_len: u64,
) -> io::Result<Option<u64>> {
    const CHUNK: usize = 1 << 20;
    let max_ms = super::writer::unix_ms(SystemTime::now() + CLOCK_SLACK);
    let head_len = RECORD_HEADER_LEN as u64;
    let left = file_len.saturating_sub(from) as usize;
    let mut buf = vec![0u8; left.min(CHUNK + RECORD_HEADER_LEN)];
    let mut at = from;
    while at + head_len <= file_len {
        let n = (file_len - at).min(buf.len() as u64) as usize;
        f.seek(SeekFrom::Start(at))?;
        f.read_exact(&mut buf[..n])?;
        for i in 0..=(n - RECORD_HEADER_LEN) {
            let start = at + i as u64;
            let room = file_len - start - head_len;
            let head = &buf[i..i + RECORD_HEADER_LEN];
            if let Some(len) = format::candidate(head, room, max_ms) {
                let mut crc = format::head_hasher(head);
                let stored = format::stored_crc(head);
                if payload_checksum(f, start + head_len, len, &mut crc)? && crc.finalize() == stored
                {
                    return Ok(Some(start));
                }
            }
        }
        // The next chunk starts at the first offset not tried.
        at += (n - RECORD_HEADER_LEN + 1) as u64;
    }
    Ok(None)
}

/// Feeds `len` payload bytes at `offset` to `crc`; `false` if the file ends before.
fn payload_checksum(
    f: &mut File,
    offset: u64,
    len: usize,
    crc: &mut crc32fast::Hasher,
) -> io::Result<bool> {
    let mut buf = [0u8; 64 << 10];
    f.seek(SeekFrom::Start(offset))?;
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        match f.read_exact(&mut buf[..n]) {
            Ok(()) => crc.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e),
        }
        left -= n;
    }
    Ok(true)
}

fn corrupt(path: PathBuf, offset: u64, reason: &'static str) -> JournalError {
    JournalError::Corrupt {
        path,
        offset,
        reason,
    }
}

/// Makes file creations and removals in `dir` durable (a no-op where directories cannot be
/// opened as files).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(JournalError::io("sync", dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
