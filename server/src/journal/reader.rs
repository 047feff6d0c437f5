//! Catch-up readers: each walks the segments from its own position, concurrently with the
//! writer, and never past what the writer has published (so never into a half-written record).
//! It returns changes, schema events and gaps; commit markers are skipped. Does not decode or filter payloads.

use std::fs::File;
use std::io;
use std::sync::Arc;

use super::format::{self, KIND_GAP, KIND_SCHEMA, SEGMENT_HEADER_LEN};
use super::shared::{segment_path, Shared};
use super::window::{Step, Window};
use super::JournalError;
use crate::vocab::{Lsn, Pos};

/// Reads are done in chunks of this size; a bigger record grows the window to fit.
const READ_WINDOW: usize = 256 << 10;

/// What a record returned by a reader is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// A change: the payload is wal2json's message.
    Change,
    /// A gap in the stream (`Journal::append_gap`): the payload is the `gap` frame live
    /// subscribers got, to be sent as it is.
    Gap,
    /// A schema event (`Journal::append_schema`): the payload is `schema::SchemaEvent`'s record.
    Schema,
}

/// One change (or gap). The payload lives in the reader's buffer until the next call, mutable
/// so that the decoder can parse it in place as on the live path.
pub struct Record<'a> {
    pub kind: RecordKind,
    pub pos: Pos,
    pub wal_start: Lsn,
    /// When the journal appended it, in milliseconds since the Unix epoch.
    pub written_at_ms: u64,
    pub payload: &'a mut [u8],
}

/// Row values stay out of logs: the payload shows as its length.
impl std::fmt::Debug for Record<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record")
            .field("kind", &self.kind)
            .field("pos", &self.pos)
            .field("wal_start", &self.wal_start)
            .field("written_at_ms", &self.written_at_ms)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// Changes of a transaction still being appended are returned as soon as they are written;
/// should walcast crash before its commit marker, repair cuts them and Postgres resends the
/// transaction at the same positions.
pub struct JournalReader {
    shared: Arc<Shared>,
    /// The last position returned, or the start.
    after: Pos,
    /// Until the first change `> after` is found (the start is found through the sparse index,
    /// a little before it).
    skipping: bool,
    seq: u64,
    file: Option<File>,
    offset: u64,
    /// How far this segment may be read, as last seen in the view.
    limit: u64,
    sealed: bool,
    window: Window,
}

impl JournalReader {
    pub(super) fn new(shared: Arc<Shared>, after: Pos) -> Result<JournalReader, JournalError> {
        let (seq, offset) = shared
            .view
            .read()
            .locate(after)
            .map_err(|horizon| JournalError::Expired { after, horizon })?;
        Ok(JournalReader {
            shared,
            after,
            skipping: true,
            seq,
            file: None,
            offset,
            limit: 0,
            sealed: false,
            window: Window::new(READ_WINDOW),
        })
    }

    /// The last position returned (or the start): a reader resumed after it misses nothing.
    pub fn position(&self) -> Pos {
        self.after
    }

    /// Whether `next` may find a record now: the writer has published bytes past where this
    /// reader stands (or a newer segment, or retention removed its segment, which `next`
    /// reports). `false` means `next` would return `None`. Takes the view's read lock only at
    /// the end of what the reader last saw; no I/O.
    pub fn has_unread(&self) -> bool {
        if self.offset < self.limit {
            return true;
        }
        let view = self.shared.view.read();
        match view.get(self.seq) {
            None => true,
            Some(seg) => seg.len > self.offset || seg.seq != view.active().seq,
        }
    }

    /// The next change or gap, or `None` at the end of what is written so far; call again later
    /// for newer ones. `JournalError::Expired` when retention removed the next segment to read.
    #[allow(clippy::should_implement_trait)] // lends its buffer: not an `Iterator`
    pub fn next(&mut self) -> Result<Option<Record<'_>>, JournalError> {
        loop {
            if self.offset >= self.limit && !self.refresh()? {
                return Ok(None);
            }
            let file = self.file.as_mut().expect("opened by refresh");
            let step = self
                .window
                .step(file, self.offset, self.limit)
                .map_err(|e| self.io_error("read", e))?;
            let head = match step {
                Step::Record(head) => head,
                Step::End => return Err(self.corrupt("segment shorter than what was written")),
                Step::Incomplete => return Err(self.corrupt("record cut short")),
                Step::Invalid(reason) => return Err(self.corrupt(reason)),
            };
            let at = self.offset;
            self.offset += head.record_len() as u64;
            if !format::is_positioned(head.kind) || (self.skipping && head.pos <= self.after) {
                continue;
            }
            self.skipping = false;
            self.after = head.pos;
            return Ok(Some(Record {
                kind: match head.kind {
                    KIND_GAP => RecordKind::Gap,
                    KIND_SCHEMA => RecordKind::Schema,
                    _ => RecordKind::Change,
                },
                pos: head.pos,
                wal_start: head.lsn,
                written_at_ms: head.written_at_ms,
                payload: self.window.payload(at, &head),
            }));
        }
    }

    /// Looks at the view again: `true` when there is more to read at `offset`.
    fn refresh(&mut self) -> Result<bool, JournalError> {
        let view = self.shared.view.read();
        loop {
            if self.file.is_some() && self.sealed && self.offset >= self.limit {
                // Done with a sealed segment: on to the next one, which must be the very next
                // seq (retention may have removed it meanwhile).
                let Some(next) = view.get(self.seq + 1) else {
                    return Err(self.expired(view.horizon()));
                };
                self.seq = next.seq;
                self.offset = SEGMENT_HEADER_LEN as u64;
                self.file = None;
                self.window.reset();
            }
            // Gone: sealed and removed by retention since the reader last looked.
            let Some(seg) = view.get(self.seq) else {
                return Err(self.expired(view.horizon()));
            };
            self.limit = seg.len;
            self.sealed = seg.seq != view.active().seq;
            if self.file.is_none() {
                // Opened under the read lock: retention takes a segment out of the view before
                // removing its file, so a segment seen here still has one.
                let path = segment_path(&self.shared.dir, self.seq);
                self.file = Some(File::open(&path).map_err(JournalError::io("open", &path))?);
            }
            if self.offset < self.limit {
                return Ok(true);
            }
            if !self.sealed {
                return Ok(false);
            }
        }
    }

    fn expired(&self, horizon: Pos) -> JournalError {
        JournalError::Expired {
            after: self.after,
            horizon,
        }
    }

    fn corrupt(&self, reason: &'static str) -> JournalError {
        JournalError::Corrupt {
            path: segment_path(&self.shared.dir, self.seq),
            offset: self.offset,
            reason,
        }
    }

    fn io_error(&self, op: &'static str, e: io::Error) -> JournalError {
        JournalError::io(op, &segment_path(&self.shared.dir, self.seq))(e)
    }
}
