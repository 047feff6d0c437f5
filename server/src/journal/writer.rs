//! The writing side: `Journal::open` (lock, repair, resume), appends into one reused buffer, one
//! `write` per burst, fsync per policy, segment roll-over, and what the writer publishes for
//! readers. Retention is `trim.rs`, reading `reader.rs`.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;

use super::format::{
    encode_head, encode_segment_header, KIND_CHANGE, KIND_COMMIT, KIND_GAP, KIND_SCHEMA,
    MAX_PAYLOAD, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use super::identity::{self, Identity};
use super::recover::{recover, sync_dir};
use super::shared::{segment_path, IndexCursor, SegmentMeta, Shared, View};
use super::{Fsync, JournalConfig, JournalError, JournalReader};
use crate::vocab::{Lsn, Pos};

/// Appends are gathered here and written with one `write` per burst; a burst bigger than this
/// is written in pieces of about this size.
pub(super) const WRITE_BUF: usize = 1 << 20;

/// A commit marker's end LSN and the segment holding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Mark {
    pub end: Lsn,
    pub seq: u64,
}

/// The journal's single writer. Appends are synchronous and meant for the task that owns the
/// replication stream; readers (`Journal::reader`) may run on any thread meanwhile.
pub struct Journal {
    pub(super) cfg: JournalConfig,
    pub(super) shared: Arc<Shared>,
    /// Held for the journal's lifetime: the OS lock on `dir/LOCK` goes with it.
    _lock: File,
    file: File,
    path: PathBuf,
    pub(super) seq: u64,
    /// Bytes of the active segment already in the file (whole records only).
    written: u64,
    buf: Vec<u8>,
    /// The active segment as appended, published to readers at each write.
    first: Option<Pos>,
    last_in_segment: Option<Pos>,
    newest_ms: u64,
    index: IndexCursor,
    pending_index: Vec<(Pos, u64)>,
    last_pos: Option<Pos>,
    /// The transaction being appended: commit LSN and changes so far.
    open_txn: Option<(Lsn, u32)>,
    last_commit: Option<Lsn>,
    appended: Option<Mark>,
    pub(super) written_mark: Option<Mark>,
    pub(super) synced: Option<Mark>,
    unsynced: bool,
    /// Set by a failed write or fsync: the file's state is then unknown (and a failed fsync must
    /// not be retried as if the data were safe), so the journal refuses further work until it
    /// is reopened, which repairs the tail.
    broken: bool,
    /// Set when a change could not be journaled (an append refused, or `halt`): the journal has a
    /// hole from there on, so it takes no more records and confirms nothing past what it held.
    /// What it held before is still written and synced.
    halted: bool,
    /// Appends never sync nor roll: they say so (`settle_due_now`) and the owner calls `settle`
    /// off the async workers. Off by default (tests, benchmarks, tools), set by the intake.
    deferred: bool,
    /// The active segment reached `segment_bytes` while appends were deferred: `settle` seals it.
    roll_due: bool,
    /// `identity.json`, when the journal has one.
    pub(super) identity: Option<Identity>,
    /// Data fsyncs so far (`fsyncs`).
    fsyncs: u64,
}

/// How long `open` waits for the directory lock before saying another walcast holds it.
const LOCK_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

impl Journal {
    /// Creates `cfg.dir` if needed, locks it, repairs what a crash left, and resumes at the end
    /// of the last complete transaction.
    pub fn open(cfg: JournalConfig) -> Result<Journal, JournalError> {
        if cfg.segment_bytes < JournalConfig::MIN_SEGMENT_BYTES {
            return Err(JournalError::Config {
                key: "segment_bytes",
                reason: format!(
                    "{} is below the minimum of {} bytes",
                    cfg.segment_bytes,
                    JournalConfig::MIN_SEGMENT_BYTES
                ),
            });
        }
        let dir = cfg.dir.clone();
        fs::create_dir_all(&dir).map_err(JournalError::io("create directory", &dir))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(JournalError::io("open", &lock_path))?;
        // A short grace: a walcast that is just exiting, or a process forked by this one and not
        // yet at its exec (it shares the lock until then), lets go within moments.
        let give_up = std::time::Instant::now() + LOCK_GRACE;
        loop {
            match lock.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if std::time::Instant::now() < give_up => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(TryLockError::WouldBlock) => return Err(JournalError::Locked { dir }),
                Err(TryLockError::Error(e)) => return Err(JournalError::io("lock", &lock_path)(e)),
            }
        }

        let found = recover(&dir)?;
        let (identity, starts_after) = match identity::read(&dir)? {
            Some((identity, starts_after)) => (Some(identity), starts_after),
            None => (None, None),
        };
        let mut segments = found.segments;
        if segments.is_empty() {
            create_segment(&dir, found.next_seq, Pos::ZERO)?;
            segments.push(SegmentMeta::new(found.next_seq, Pos::ZERO));
        }
        let active = segments.last().expect("at least one segment");
        let (seq, written, prev) = (active.seq, active.len, active.prev);
        let (first, last_in_segment, newest_ms) = (active.first, active.last, active.newest_ms);
        // Carry on indexing where the scan stopped, not right at the next record.
        let mut index = IndexCursor::new();
        if let Some(&(_, offset)) = active.index.last() {
            index.take(offset);
        }
        let path = segment_path(&dir, seq);
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(JournalError::io("open", &path))?;
        // What the previous run wrote may still be only in the page cache; `durable` must not
        // claim it before it is on disk.
        file.sync_data().map_err(JournalError::io("sync", &path))?;
        let mark = found.last_commit.map(|(_, end, seq)| Mark { end, seq });
        let shared = Arc::new(Shared {
            dir,
            view: RwLock::new(View {
                segments: segments.into(),
                floor: starts_after.unwrap_or(Pos::ZERO),
            }),
        });
        Ok(Journal {
            cfg,
            shared,
            _lock: lock,
            file,
            path,
            seq,
            written,
            buf: Vec::with_capacity(WRITE_BUF + RECORD_HEADER_LEN),
            first,
            last_in_segment,
            newest_ms,
            index,
            pending_index: Vec::new(),
            last_pos: last_in_segment.or((prev != Pos::ZERO).then_some(prev)),
            open_txn: None,
            last_commit: found.last_commit.map(|(commit, _, _)| commit),
            appended: mark,
            written_mark: mark,
            synced: mark,
            unsynced: false,
            broken: false,
            halted: false,
            deferred: false,
            roll_due: false,
            identity,
            fsyncs: 0,
        })
    }

    /// Appends one change (wal2json's payload as received, before decoding modifies it).
    /// Buffered: readers see it after the next write (`flush`, a full buffer, or a commit with
    /// `Fsync::Always`).
    pub fn append_change(
        &mut self,
        pos: Pos,
        wal_start: Lsn,
        payload: &[u8],
    ) -> Result<(), JournalError> {
        self.append_positioned(KIND_CHANGE, pos, wal_start, payload)
    }

    /// Appends a schema event of the open transaction at its own position among the
    /// transaction's changes (`payload`: `schema::SchemaEvent::to_record`). Ordered and bounded
    /// exactly as a change is.
    pub fn append_schema(
        &mut self,
        pos: Pos,
        lsn: Lsn,
        payload: &[u8],
    ) -> Result<(), JournalError> {
        self.append_positioned(KIND_SCHEMA, pos, lsn, payload)
    }

    fn append_positioned(
        &mut self,
        kind: u8,
        pos: Pos,
        wal_start: Lsn,
        payload: &[u8],
    ) -> Result<(), JournalError> {
        self.check()?;
        let refused = self.refusal(pos, payload.len());
        if let Some(error) = refused {
            self.halted = true;
            return Err(error);
        }
        self.roll_if_full()?;
        let offset = self.len();
        if self.index.take(offset) {
            self.pending_index.push((pos, offset));
        }
        self.first.get_or_insert(pos);
        self.last_in_segment = Some(pos);
        self.last_pos = Some(pos);
        let n = self.open_txn.map_or(0, |(_, n)| n);
        self.open_txn = Some((pos.commit, n + 1));
        self.put(kind, pos, wal_start, payload)
    }

    /// Why a change at `pos` cannot be appended, if it cannot.
    fn refusal(&self, pos: Pos, len: usize) -> Option<JournalError> {
        let refuse = |what| {
            Some(JournalError::OutOfOrder {
                what,
                last: self.last_pos,
                commit: self.last_commit,
            })
        };
        match self.open_txn {
            Some((commit, _)) if pos.commit != commit => {
                return refuse("a change of another transaction before the commit marker")
            }
            None if self.last_commit.is_some_and(|c| pos.commit <= c) => {
                return refuse("a change of a transaction already journaled")
            }
            _ => {}
        }
        if self.last_pos.is_some_and(|last| pos <= last) {
            return refuse("a change position not after the journal's end");
        }
        let max = self.cfg.max_payload.min(MAX_PAYLOAD);
        if len > max {
            return Some(JournalError::TooLarge { len, max });
        }
        None
    }

    /// Marks the transaction `commit` complete; the slot may be confirmed to `end` once
    /// `durable()` reaches it. A transaction without changes gets a marker too, so that
    /// `last_commit` and `durable` move past it.
    pub fn append_commit(&mut self, commit: Lsn, end: Lsn) -> Result<(), JournalError> {
        self.check()?;
        let changes = match self.open_txn {
            Some((open, n)) if open == commit => n,
            None if self.last_commit.is_none_or(|c| commit > c) => 0,
            _ => {
                self.halted = true;
                return Err(JournalError::OutOfOrder {
                    what: "a commit marker that does not close the open transaction",
                    last: self.last_pos,
                    commit: self.last_commit,
                });
            }
        };
        self.roll_if_full()?;
        self.open_txn = None;
        self.last_commit = Some(commit);
        self.put(KIND_COMMIT, Pos::new(commit, changes), end, &[])?;
        // Only now: `put` may first write out the buffer without this marker.
        self.appended = Some(Mark { end, seq: self.seq });
        if self.cfg.fsync == Fsync::Always && !self.deferred {
            self.write_buf()?;
            self.sync()?;
        }
        Ok(())
    }

    /// Records a gap in the stream (a temporary slot re-created after a disconnect: what was
    /// committed meanwhile never comes) between two transactions, so that readers of the
    /// journal hand it on where live subscribers got it. `frame` is the `gap` frame they got.
    /// Returns the gap's position: after every change before it and before every later one
    /// (the next ordinal of the last transaction, which is closed and never continues).
    pub fn append_gap(&mut self, frame: &[u8]) -> Result<Pos, JournalError> {
        self.check()?;
        let commit = self.last_commit.unwrap_or(Lsn(0));
        let pos = match self.last_pos {
            Some(last) if last.commit >= commit => last
                .ordinal
                .checked_add(1)
                .map(|ordinal| Pos::new(last.commit, ordinal)),
            _ => Some(Pos::new(commit, 1)),
        };
        let pos = match pos {
            Some(pos) if self.open_txn.is_none() && frame.len() <= MAX_PAYLOAD => pos,
            _ => {
                self.halted = true;
                return Err(JournalError::OutOfOrder {
                    what: "a gap inside an open transaction, or after the last ordinal",
                    last: self.last_pos,
                    commit: self.last_commit,
                });
            }
        };
        self.roll_if_full()?;
        let offset = self.len();
        if self.index.take(offset) {
            self.pending_index.push((pos, offset));
        }
        self.first.get_or_insert(pos);
        self.last_in_segment = Some(pos);
        self.last_pos = Some(pos);
        // Its `lsn` is the end of the last transaction, so that repair, which keeps the journal
        // up to its last boundary, finds the same end after it as before it.
        let end = self.appended.map_or(Lsn(0), |m| m.end);
        self.put(KIND_GAP, pos, end, frame)?;
        Ok(pos)
    }

    /// Stops the journal: a change could not be journaled (the intake could not tell its
    /// position), so the journal has a hole from here on. See `halted`.
    pub fn halt(&mut self) {
        self.halted = true;
    }

    /// A write or fsync failed: the journal must be reopened.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// The journal took no more records after a refused one (`halt`).
    pub fn is_halted(&self) -> bool {
        self.halted
    }

    /// From now on appends neither sync nor seal segments: `settle_due_now` says when the owner
    /// must call `settle` (an `Fsync::Always` commit, a full segment) and `settle_due` when a
    /// burst's `write_out` left something to sync. The owner runs `settle` off the async
    /// workers.
    pub fn defer_syncs(&mut self) {
        self.deferred = true;
    }

    /// Writes what is buffered (readers see it); no fsync. The first half of `flush`.
    pub fn write_out(&mut self) -> Result<(), JournalError> {
        if self.broken {
            return self.check();
        }
        self.write_buf()
    }

    /// The blocking half of `flush`: writes what is buffered, syncs per policy (a commit
    /// marker written since the last sync: `Fsync::Always` and `Burst`) and seals a full
    /// segment. Runs on a thread that may block.
    pub fn settle(&mut self) -> Result<(), JournalError> {
        if self.broken {
            return self.check();
        }
        self.write_buf()?;
        if self.cfg.fsync != Fsync::Never && self.unsynced && self.written_mark != self.synced {
            self.sync()?;
        }
        if self.roll_due {
            self.roll()?;
        }
        Ok(())
    }

    /// `settle` would sync or seal: a commit marker not yet synced (unless `Fsync::Never`) or a
    /// full segment.
    pub fn settle_due(&self) -> bool {
        !self.broken
            && (self.roll_due || (self.cfg.fsync != Fsync::Never && self.appended != self.synced))
    }

    /// With deferred syncs, `settle` is due before the next append: the segment is full, or a
    /// transaction was committed under `Fsync::Always` (one fsync per transaction).
    pub fn settle_due_now(&self) -> bool {
        !self.broken
            && (self.roll_due || (self.cfg.fsync == Fsync::Always && self.appended != self.synced))
    }

    /// How many times appended data was synced since `open` (group commit: one per burst with
    /// `Fsync::Burst`), segment seals included.
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs
    }

    /// The end LSN of the last transaction appended; `Lsn(0)` before any.
    pub fn end_lsn(&self) -> Lsn {
        self.appended.map_or(Lsn(0), |m| m.end)
    }
    /// The end of a burst: writes what is buffered and, with `Fsync::Burst`, syncs it when a
    /// commit marker was written since the last sync. Changes of a transaction still open need
    /// no sync yet: nothing of it can be confirmed before its marker, and repair cuts it when the
    /// marker is lost. So a large transaction is synced once, at its commit, not at every burst.
    pub fn flush(&mut self) -> Result<(), JournalError> {
        if self.broken {
            return self.check();
        }
        self.write_buf()?;
        if self.cfg.fsync == Fsync::Burst && self.unsynced && self.written_mark != self.synced {
            self.sync()?;
        }
        if self.roll_due {
            self.roll()?;
        }
        Ok(())
    }

    /// The end LSN of the last transaction durable under the fsync policy (with `Fsync::Never`:
    /// written to the OS); `Lsn(0)` before any. The slot may be confirmed up to here.
    pub fn durable(&self) -> Lsn {
        let mark = match self.cfg.fsync {
            Fsync::Never => self.written_mark,
            Fsync::Always | Fsync::Burst => self.synced,
        };
        mark.map_or(Lsn(0), |m| m.end)
    }

    /// The position the slot may be confirmed to, given `candidate` (the end of the last
    /// transaction handed over, or an idle keepalive's position past it): the candidate itself
    /// when every commit appended is durable (it then holds nothing the journal lacks), else no
    /// further than `durable`. A broken or halted journal confirms nothing more.
    pub fn confirmable(&self, candidate: Lsn) -> Lsn {
        let appended = self.appended.map_or(Lsn(0), |m| m.end);
        if !self.broken && !self.halted && self.durable() >= appended {
            candidate
        } else {
            candidate.min(self.durable())
        }
    }

    /// The commit LSN of the last complete transaction appended (after `open`: found on disk).
    /// Postgres resends transactions after the slot's confirmed position; those up to here are
    /// already journaled.
    pub fn last_commit(&self) -> Option<Lsn> {
        self.last_commit
    }

    /// The last change position appended (after `open`: found on disk).
    pub fn last_pos(&self) -> Option<Pos> {
        self.last_pos
    }

    /// The oldest change still retained.
    pub fn oldest(&self) -> Option<Pos> {
        let view = self.shared.view.read();
        view.segments.iter().find_map(|s| s.first).or(self.first)
    }

    /// Bytes on disk plus bytes buffered.
    pub fn bytes(&self) -> u64 {
        let view = self.shared.view.read();
        let sealed: u64 = view.segments.iter().map(|s| s.len).sum();
        sealed - view.active().len + self.len()
    }

    pub fn segments(&self) -> usize {
        self.shared.view.read().segments.len()
    }

    /// A handle other tasks use to open readers.
    pub fn handle(&self) -> super::JournalHandle {
        super::JournalHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// A reader of the changes after `after`, from what is written now and what will be.
    /// `JournalError::Expired` when retention already removed some of them.
    pub fn reader(&self, after: Pos) -> Result<JournalReader, JournalError> {
        JournalReader::new(Arc::clone(&self.shared), after)
    }

    /// The active segment's length, buffered bytes included.
    fn len(&self) -> u64 {
        self.written + self.buf.len() as u64
    }

    fn check(&self) -> Result<(), JournalError> {
        if self.broken {
            return Err(JournalError::Broken {
                path: self.path.clone(),
            });
        }
        if self.halted {
            return Err(JournalError::Halted);
        }
        Ok(())
    }

    fn put(&mut self, kind: u8, pos: Pos, lsn: Lsn, payload: &[u8]) -> Result<(), JournalError> {
        let now_ms = unix_ms(SystemTime::now());
        self.newest_ms = self.newest_ms.max(now_ms);
        let head = encode_head(kind, pos, lsn, now_ms, payload);
        if self.buf.len() + head.len() + payload.len() <= WRITE_BUF {
            self.buf.extend_from_slice(&head);
            self.buf.extend_from_slice(payload);
            return Ok(());
        }
        self.write_buf()?;
        if head.len() + payload.len() <= WRITE_BUF {
            self.buf.extend_from_slice(&head);
            self.buf.extend_from_slice(payload);
            return Ok(());
        }
        // Too big for the buffer: straight to the file, not into a buffer that would stay big.
        let written = self
            .file
            .write_all(&head)
            .and_then(|()| self.file.write_all(payload));
        self.after_write(written, (head.len() + payload.len()) as u64)
    }

    fn write_buf(&mut self) -> Result<(), JournalError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let written = self.file.write_all(&self.buf);
        let n = self.buf.len() as u64;
        self.buf.clear();
        self.after_write(written, n)
    }

    fn after_write(&mut self, result: std::io::Result<()>, n: u64) -> Result<(), JournalError> {
        if let Err(e) = result {
            self.broken = true;
            return Err(JournalError::io("write", &self.path)(e));
        }
        self.written += n;
        self.unsynced = true;
        self.written_mark = self.appended;
        self.publish();
        Ok(())
    }

    /// Lets readers see the records written so far: whole records only, since `written` only
    /// moves by whole buffers.
    fn publish(&mut self) {
        let mut view = self.shared.view.write();
        let seg = view.active_mut();
        seg.len = self.written;
        seg.first = self.first;
        seg.last = self.last_in_segment;
        seg.newest_ms = self.newest_ms;
        seg.index.append(&mut self.pending_index);
    }

    fn sync(&mut self) -> Result<(), JournalError> {
        self.fsyncs += 1;
        if let Err(e) = self.file.sync_data() {
            self.broken = true;
            return Err(JournalError::io("sync", &self.path)(e));
        }
        self.unsynced = false;
        self.synced = self.written_mark;
        Ok(())
    }

    /// Before a record: seals the active segment once it reached `segment_bytes`. Markers of
    /// transactions without changes count too, or a stream of them would grow one segment
    /// that retention can never remove.
    fn roll_if_full(&mut self) -> Result<(), JournalError> {
        if self.len() >= self.cfg.segment_bytes && self.len() > SEGMENT_HEADER_LEN as u64 {
            if self.deferred {
                // Sealing syncs: the owner does it off the async workers before the next append
                // (`settle_due_now`). This record joins the full segment meanwhile.
                self.roll_due = true;
                return Ok(());
            }
            self.roll()?;
        }
        Ok(())
    }

    /// Seals the active segment and starts the next one.
    fn roll(&mut self) -> Result<(), JournalError> {
        self.write_buf()?;
        // Synced whatever the policy: recovery can then take damage in a sealed segment for
        // corruption, never for a torn write, and refuse it instead of cutting data away.
        self.sync()?;
        let seq = self.seq + 1;
        let prev = self.last_pos.unwrap_or(Pos::ZERO);
        let (file, path) = create_segment(&self.shared.dir, seq, prev).inspect_err(|_| {
            self.broken = true;
        })?;
        self.shared
            .view
            .write()
            .segments
            .push_back(SegmentMeta::new(seq, prev));
        self.file = file;
        self.path = path;
        self.seq = seq;
        self.roll_due = false;
        self.written = SEGMENT_HEADER_LEN as u64;
        self.first = None;
        self.last_in_segment = None;
        self.newest_ms = 0;
        self.index = IndexCursor::new();
        Ok(())
    }
}

impl Drop for Journal {
    /// Best effort: a clean shutdown calls `flush` first; what is lost here is an unfinished
    /// transaction that the next open would cut anyway.
    fn drop(&mut self) {
        if !self.broken
            && self.write_buf().is_ok()
            && self.cfg.fsync != Fsync::Never
            && self.unsynced
        {
            let _ = self.file.sync_data();
        }
    }
}

/// Creates segment `seq` with its header, synced together with the directory entry.
fn create_segment(
    dir: &std::path::Path,
    seq: u64,
    prev: Pos,
) -> Result<(File, PathBuf), JournalError> {
    let path = segment_path(dir, seq);
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(JournalError::io("create", &path))?;
    file.write_all(&encode_segment_header(prev))
        .and_then(|()| file.sync_all())
        .map_err(JournalError::io("write", &path))?;
    sync_dir(dir)?;
    Ok((file, path))
}

pub(super) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
