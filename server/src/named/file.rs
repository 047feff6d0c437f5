//! `subscriptions.json`: what the file holds per named subscription, how it is read (versions 1
//! and 2) and how it is replaced crash-safely. Does not decide what goes into it (`Store` does).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::NamedError;
use crate::vocab::Pos;

/// The version written. Version 2 added `owner`, `idle_since` and `expired`; a version 1 file
/// (no owners) is read as owned by the anonymous subject. An older release refuses a version 2
/// file rather than ignore its owners and let anyone take every name.
const VERSION: u32 = 2;

/// What the file holds per subscription.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct Stored {
    pub name: String,
    /// The canonical query (every parameter but `sub=` and `from=`, sorted, URL-encoded).
    pub query: String,
    /// `schema.table`.
    pub table: String,
    /// The position the client acknowledged (at creation: the position it started after).
    pub acked: Pos,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// The token subject (`sub`) that created it; `null`, and absent in version 1 files: the
    /// anonymous subject (`auth.mode = "none"`).
    #[serde(default)]
    pub owner: Option<String>,
    /// When its last socket let go (Unix seconds); `null` while a socket held it when the file was
    /// written (and in version 1 files): then it counts as idle from when walcast read the file.
    #[serde(default)]
    pub idle_since: Option<u64>,
    /// It went without a socket for longer than `named.idle_expiry` (or its position was found
    /// gone) and no longer holds the journal.
    #[serde(default)]
    pub expired: bool,
}

#[derive(Serialize, Deserialize)]
struct FileBody {
    version: u32,
    subscriptions: Vec<Stored>,
}

/// Reads the file (none yet: an empty table).
pub(super) fn read(path: &Path) -> Result<Vec<Stored>, NamedError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(NamedError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let body: FileBody = serde_json::from_slice(&bytes).map_err(|e| NamedError::Invalid {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    if !(1..=VERSION).contains(&body.version) {
        return Err(NamedError::Invalid {
            path: path.to_owned(),
            message: format!("unknown version {}", body.version),
        });
    }
    Ok(body.subscriptions)
}

/// Replaces the file with `subscriptions`: a temporary file, synced, renamed over the old one,
/// the directory synced, so the file is always either the old or the new table.
pub(super) fn write(path: &PathBuf, subscriptions: Vec<Stored>) -> Result<(), NamedError> {
    let err = |source| NamedError::Write {
        path: path.clone(),
        source,
    };
    let body = FileBody {
        version: VERSION,
        subscriptions,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    let text = serde_json::to_vec_pretty(&body).map_err(|e| err(e.into()))?;
    tmp.write_all(&text).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)
}
