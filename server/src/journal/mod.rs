//! The durable journal: every change taken from the replication slot, appended as wal2json's raw
//! payload with its position, so catch-up readers can read from a position at their own pace
//! and walcast can confirm the slot only up to what is journaled. Owns the segment files under
//! `journal.dir`, their format, crash repair, retention and readers. Does not decode payloads,
//! talk to Postgres, or decide what a reader sends to whom (wiring is `app.rs` / `hub/`).
//!
//! # Layout on disk
//!
//! `journal.dir` holds a `LOCK` file (an exclusive OS lock held while walcast runs),
//! `identity.json` (the cluster, database and slot the journal continues: `identity.rs`) and
//! segment files named by a 16-digit upper-case hex sequence number, `0000000000000007.seg`, so that name
//! order is position order. Only the newest (active) segment grows; it is sealed (synced, then
//! never written again) when it reaches `segment_bytes`, and retention removes whole segments,
//! oldest first. All integers are little-endian.
//!
//! Segment header, 32 bytes:
//!
//! ```text
//! magic "WALCASTJ" [8] | version u32 (1) | prev.commit u64 | prev.ordinal u32 | reserved u32 |
//! crc32 u32 (of the 28 bytes before it)
//! ```
//!
//! `prev` is the last change position written before the segment began: the segment holds
//! positions `> prev`, every older one `<= prev`. It is how a reader finds its segment, and how
//! the journal knows, after retention, which positions are gone.
//!
//! Records follow back to back, 37 bytes of header then the payload:
//!
//! ```text
//! len u32 | crc32 u32 | kind u8 | commit u64 | ordinal u32 | lsn u64 | written_at_ms u64 |
//! payload [len]
//! ```
//!
//! The crc (CRC-32, IEEE) covers `len` and every byte after the crc field. `kind` 1 is a change:
//! `(commit, ordinal)` is its position, `lsn` its `wal_start`, the payload wal2json's message as
//! Postgres sent it. `kind` 2 is a commit marker with an empty payload: `commit` is the
//! transaction's commit LSN, `ordinal` the number of changes journaled for it, `lsn` its end
//! LSN (what the slot may be confirmed to). `kind` 3 is a gap (a temporary slot re-created: what
//! was committed meanwhile never comes) between two transactions: its position is the next
//! ordinal of the last transaction (closed for good), `lsn` that transaction's end, the payload
//! the `gap` frame live subscribers got. `kind` 4 is a schema event (a DDL's effect on one
//! table) inside its transaction, at its own position among the transaction's changes; `lsn` is
//! the message's `wal_start`, the payload the event as JSON (`schema::SchemaEvent::to_record`),
//! and the commit marker's count includes it. `written_at_ms` is the wall-clock time of the append,
//! used by age-based retention.
//!
//! # Crash repair
//!
//! On open every record of every segment is checksummed. In the newest segment the first byte
//! that does not start a whole, valid record, with no valid record anywhere after it, is a torn
//! tail (a write cut by `kill -9` or a power loss): it and everything after it are cut. Damage
//! that a valid record follows is not a torn write (a tear loses the end of what was written,
//! never the middle), nor is damage in an older segment (synced when sealed), nor a damaged
//! header on a segment holding records: the open fails, naming file and offset, and nothing is
//! deleted. Then the changes after the last commit marker or gap (a transaction cut off mid-way)
//! are cut too, so the journal always ends at a transaction boundary: Postgres resends that
//! transaction whole, since the slot was never confirmed past it. Every cut is logged with
//! segment and offset.
//!
//! # Syncs
//!
//! By default appends sync and seal inline (tests, benchmarks). The intake sets `defer_syncs`:
//! appends then never block on the disk, and it runs `settle` (fsync, sealing) off the async
//! workers, at the end of each burst and, when `settle_due_now` says so, before the next append.

mod error;
mod format;
mod handle;
mod identity;
mod reader;
mod recover;
mod shared;
mod trim;
mod window;
mod writer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_integrity;
#[cfg(test)]
mod tests_recovery;
#[cfg(test)]
mod tests_trim;

use std::path::PathBuf;
use std::time::Duration;

use crate::vocab::Pos;

pub use error::JournalError;
pub use handle::JournalHandle;
pub use identity::{Bound, Identity};
pub use reader::{JournalReader, Record, RecordKind};
pub use writer::Journal;

/// When appended records are forced to disk. `Journal::durable` (the position the slot may be
/// confirmed to) only moves over what the policy made durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fsync {
    /// At every commit marker: a confirmed transaction survives a power loss, at the cost of
    /// one fsync per transaction. Changes of an open transaction are not synced on their own:
    /// nothing is confirmed before the commit, and repair cuts an unfinished transaction anyway.
    Always,
    /// At `flush`, once per burst read from Postgres (group commit): the same guarantee for what
    /// is confirmed, one fsync per burst.
    #[default]
    Burst,
    /// Never (except when a segment is sealed): records reach the OS at `flush` and `durable`
    /// follows what was written. Survives a walcast crash, not a power loss; the slot may then
    /// be confirmed past what the journal kept.
    Never,
}

/// Where and how the journal keeps its segments. Built by the config layer.
#[derive(Clone, Debug)]
pub struct JournalConfig {
    pub dir: PathBuf,
    pub fsync: Fsync,
    /// Size at which the active segment is sealed and a new one started. Retention removes
    /// whole segments, so this is also its granularity.
    pub segment_bytes: u64,
    /// Remove the oldest segments while the journal is bigger than this. `None`: no limit.
    pub max_bytes: Option<u64>,
    /// Remove segments whose newest record is older than this. `None`: no limit.
    pub max_age: Option<Duration>,
    /// The largest payload an append takes: `format::MAX_PAYLOAD` (1 GiB, more than Postgres
    /// can send in one message), unless a test lowers it to provoke a refused append.
    pub max_payload: usize,
}

impl JournalConfig {
    pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
    /// Smaller segments would spend more on headers and file operations than on records.
    pub const MIN_SEGMENT_BYTES: u64 = 4 << 10;

    /// `Fsync::Burst`, 64 MiB segments, no retention limit.
    pub fn new(dir: impl Into<PathBuf>) -> JournalConfig {
        JournalConfig {
            dir: dir.into(),
            fsync: Fsync::Burst,
            segment_bytes: Self::DEFAULT_SEGMENT_BYTES,
            max_bytes: None,
            max_age: None,
            max_payload: format::MAX_PAYLOAD,
        }
    }
}

/// What one `Journal::trim` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrimOutcome {
    pub deleted_segments: usize,
    pub deleted_bytes: u64,
    /// Readers must start after a position `>=` this one (`Pos::ZERO` while nothing was ever
    /// removed).
    pub horizon: Pos,
    /// The journal is still over `max_bytes` after trimming.
    pub over_max_bytes: bool,
    /// ... because the oldest segment holds positions after `keep_after`: the caller pauses the
    /// stream and says which subscription holds it.
    pub held_by_keep_after: bool,
}
