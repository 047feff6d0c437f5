//! The journal's error type: every variant names the file (and offset) involved and, where there
//! is one, the fix. Decides nothing about retrying: the intake and the sessions do.

use std::io;
use std::path::{Path, PathBuf};

use super::Identity;
use crate::vocab::{Lsn, Pos};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("invalid journal setting {key}: {reason}")]
    Config { key: &'static str, reason: String },

    #[error(
        "another walcast holds the lock on journal directory {dir}: stop it or choose another \
         journal.dir"
    )]
    Locked { dir: PathBuf },

    #[error("journal I/O failed: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A checksum or framing error where a torn write cannot explain it (inside an older,
    /// sealed segment). Never skipped: the records after it would be silently lost.
    #[error(
        "journal segment {path} is corrupt at byte offset {offset}: {reason}; restore it from a \
         backup, or remove it and every older segment (catch-up readers lose that history)"
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: &'static str,
    },

    /// Damage followed by valid records, in the newest segment: a torn write ends the file, so
    /// this is corruption, and cutting at the damage would delete records that were synced.
    #[error(
        "journal segment {path} is damaged at byte offset {offset} ({reason}), yet holds a valid \
         record after the damage (at byte offset {valid_at}): that is corruption, not a torn \
         write, and repairing it would delete synced records. Restore the segment from a backup; \
         or, to give up every record from the damage on (clients resuming from the journal miss \
         those changes), truncate the file there: truncate -s {offset} {path}"
    )]
    Damaged {
        path: PathBuf,
        offset: u64,
        reason: &'static str,
        valid_at: u64,
    },

    #[error(
        "journal directory {dir} belongs to {journal}, but walcast is connected to {server}: a \
         journal continues the stream of one slot of one database, and resuming it here would \
         skip or miss changes. Point journal.dir (WALCAST_JOURNAL_DIR) at another directory for \
         this database, or delete {dir} to start a new journal (positions clients hold from it \
         and its named subscriptions are lost)"
    )]
    Foreign {
        dir: PathBuf,
        journal: Box<Identity>,
        server: Box<Identity>,
    },

    #[error(
        "replication slot {slot:?} did not exist and walcast had to create it, but journal \
         directory {dir} holds changes up to position {last} from the slot's earlier life: what \
         was committed in between is in neither, so the journal cannot continue it. Point \
         journal.dir (WALCAST_JOURNAL_DIR) at another directory, or delete {dir} to start a new \
         journal (positions clients hold from it and its named subscriptions are lost)"
    )]
    SlotRecreated {
        dir: PathBuf,
        slot: String,
        last: Pos,
    },

    #[error(
        "journal directory {dir} holds changes up to WAL position {end}, but the WAL of {identity} \
         ends at {server}: the journal was not written from this server's history (another \
         cluster, or one restored from a backup). Point journal.dir (WALCAST_JOURNAL_DIR) at \
         another directory, or delete {dir} to start a new journal (positions clients hold from \
         it and its named subscriptions are lost)"
    )]
    AheadOfServer {
        dir: PathBuf,
        end: Lsn,
        server: Lsn,
        identity: Box<Identity>,
    },

    #[error(
        "journal identity file {path} cannot be read: {reason}; restore it, or delete it to have \
         walcast adopt the journal for the database it connects to (only if that is the one it \
         was written from)"
    )]
    IdentityFile { path: PathBuf, reason: String },

    /// An append was refused (`OutOfOrder`, `TooLarge`) or the intake could not journal a
    /// change: the journal misses it, so it takes nothing more and confirms nothing past what it
    /// held before.
    #[error(
        "the journal stopped after it could not take a change (logged before): restart walcast; \
         Postgres resends from what the journal holds"
    )]
    Halted,

    #[error(
        "journal segment {path} has format version {version}, this walcast reads version \
         {supported}: run the walcast that wrote it, or move the journal directory away"
    )]
    Version {
        path: PathBuf,
        version: u32,
        supported: u32,
    },

    #[error(
        "journal segment {missing} is missing between {before} and {after}: segments are only \
         ever removed oldest first; restore it, or remove it and every older segment"
    )]
    Gap {
        before: PathBuf,
        missing: PathBuf,
        after: PathBuf,
    },

    /// The reader's start (or its current place) was removed by retention.
    #[error(
        "journal position {after} is no longer retained: retention removed everything up to \
         {horizon}; resume from {horizon} or later"
    )]
    Expired { after: Pos, horizon: Pos },

    /// The writer was handed positions that do not follow the journal's end: a wiring bug (a
    /// resent transaction that was not skipped), refused so that positions stay unique.
    #[error("journal append out of order: {what} (journal ends at {last:?}, commit {commit:?})")]
    OutOfOrder {
        what: &'static str,
        last: Option<Pos>,
        commit: Option<Lsn>,
    },

    #[error(
        "the journal stopped after a failed write or fsync on {path}: restart walcast (opening \
         the journal repairs its tail)"
    )]
    Broken { path: PathBuf },

    #[error("journal record payload of {len} bytes is over the {max} byte limit")]
    TooLarge { len: usize, max: usize },
}

impl JournalError {
    /// The journal belongs to another upstream (or cannot continue this one): an operator's fix,
    /// like an invalid setting.
    pub fn is_identity(&self) -> bool {
        matches!(
            self,
            JournalError::Foreign { .. }
                | JournalError::SlotRecreated { .. }
                | JournalError::AheadOfServer { .. }
                | JournalError::IdentityFile { .. }
        )
    }

    /// `map_err` helper; the closure owns its copy of the path.
    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self + use<> {
        let path = path.to_path_buf();
        move |source| JournalError::Io { op, path, source }
    }
}
