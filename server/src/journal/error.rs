//! The journal's error type: every variant names the file (and offset) involved and, where there
//! is one, the fix.

use std::io;
use std::path::{Path, PathBuf};

use super::Pos;
use crate::source::Lsn;

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
    /// `map_err` helper; the closure owns its copy of the path.
    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Self + use<> {
        let path = path.to_path_buf();
        move |source| JournalError::Io { op, path, source }
    }
}
