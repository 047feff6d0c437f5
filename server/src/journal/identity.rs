//! Which cluster, database and slot the journal belongs to: `identity.json` in the journal
//! directory, written when the journal is first bound to a replication source and checked every
//! time walcast connects. A journal is a continuation of one slot's stream: its positions are
//! commit LSNs of one cluster's WAL, and on start walcast skips what the journal already holds.
//! Bound to another cluster, database or slot (or to a slot that had to be created anew) it would
//! skip or miss changes without a word, so binding refuses instead. Does not talk to Postgres.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::recover::sync_dir;
use super::{Journal, JournalError};
use crate::vocab::{Lsn, Pos};

pub(crate) const IDENTITY_FILE: &str = "identity.json";

/// What a journal continues: the stream of one slot of one database of one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// `IDENTIFY_SYSTEM`'s `systemid`: set by `initdb`, kept by replicas and restored backups.
    pub system_identifier: String,
    pub database: String,
    pub slot: String,
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cluster {} database {:?} slot {:?}",
            self.system_identifier, self.database, self.slot
        )
    }
}

/// `identity.json`: the identity, and for a journal bound while it held nothing, the position
/// its stream began after (nothing at or before it was ever in this journal).
#[derive(Serialize, Deserialize)]
struct IdentityFile {
    #[serde(flatten)]
    identity: Identity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    starts_after: Option<super::Pos>,
}

/// How `Journal::bind` accepted an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// `identity.json` names this upstream.
    Matched,
    /// A journal without records: `identity.json` was written.
    New,
    /// A journal with records but no `identity.json` (written by a walcast before the file
    /// existed): nothing contradicts the upstream, so the file was written for it. Logged.
    Adopted,
}

impl Journal {
    /// The position this journal's stream began after (`identity.json`'s `starts_after`), if it
    /// was bound while empty to a slot that had moved on: where the hub's position starts.
    pub fn starts_after(&self) -> Option<super::Pos> {
        let floor = self.shared.view.read().floor;
        (floor != super::Pos::ZERO).then_some(floor)
    }

    /// The identity in `identity.json`, if the journal has one.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// Checks that this journal continues the stream of `upstream` (as `IDENTIFY_SYSTEM` and
    /// the slot name tell it; `server_lsn` is where the server's WAL ends now), and records it
    /// in `identity.json` when the journal has no identity yet. Refused: another cluster,
    /// database or slot (`Foreign`); a slot walcast had to create (`slot_created`; never set for
    /// a temporary slot, created on every connection by design) while the journal holds
    /// changes of the old one (`SlotRecreated`); a journal that ends past the server's WAL
    /// (`AheadOfServer`: another cluster, or one restored from a backup). Blocking: writes and
    /// syncs the file when there was none.
    ///
    /// `stream_start` is where the stream this journal is about to receive begins, for a slot
    /// that existed before this start: its confirmed position (`None` for a slot created now or
    /// a temporary one, whose stream holds nothing from before this journal). A journal that
    /// holds nothing yet records it as `starts_after`, so a position from before it (another
    /// journal's, in a directory that was emptied or replaced while the slot went on) is refused
    /// as expired instead of replaying from this journal's first record over a silent hole.
    pub fn bind(
        &mut self,
        upstream: &Identity,
        server_lsn: Lsn,
        slot_created: bool,
        stream_start: Option<Lsn>,
    ) -> Result<Bound, JournalError> {
        let dir = self.shared.dir.clone();
        if let Some(own) = &self.identity {
            if own != upstream {
                return Err(JournalError::Foreign {
                    dir,
                    journal: Box::new(own.clone()),
                    server: Box::new(upstream.clone()),
                });
            }
        }
        let holds = self.last_commit().is_some() || self.last_pos().is_some();
        if holds && slot_created {
            return Err(JournalError::SlotRecreated {
                dir,
                slot: upstream.slot.clone(),
                last: self.last_pos().unwrap_or(Pos::ZERO),
            });
        }
        let end = self.end_lsn();
        if end > server_lsn {
            return Err(JournalError::AheadOfServer {
                dir,
                end,
                server: server_lsn,
                identity: Box::new(upstream.clone()),
            });
        }
        if self.identity.is_some() {
            return Ok(Bound::Matched);
        }
        // A confirmed transaction's commit record starts before the confirmed position (its
        // end), and the slot sends every transaction whose commit starts at or after it: so a
        // position is this journal's to serve exactly when its commit is not before it.
        let starts_after = stream_start
            .filter(|_| !holds)
            .map(|lsn| super::Pos::new(lsn, 0));
        write(&dir, upstream, starts_after)?;
        if let Some(floor) = starts_after {
            self.shared.view.write().floor = floor;
        }
        self.identity = Some(upstream.clone());
        Ok(if holds { Bound::Adopted } else { Bound::New })
    }
}

/// `identity.json` (the identity and `starts_after`), or `None` when the directory has none.
pub(crate) fn read(dir: &Path) -> Result<Option<(Identity, Option<super::Pos>)>, JournalError> {
    let path = dir.join(IDENTITY_FILE);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(JournalError::io("read", &path)(e)),
    };
    serde_json::from_slice::<IdentityFile>(&text)
        .map(|file| Some((file.identity, file.starts_after)))
        .map_err(|e| JournalError::IdentityFile {
            path,
            reason: e.to_string(),
        })
}

/// Writes `identity.json` crash-safely: a synced temporary file renamed over it, then the
/// directory synced, so the file is whole or absent.
fn write(
    dir: &Path,
    identity: &Identity,
    starts_after: Option<super::Pos>,
) -> Result<(), JournalError> {
    let path: PathBuf = dir.join(IDENTITY_FILE);
    let err = JournalError::io("write", &path);
    let file = IdentityFile {
        identity: identity.clone(),
        starts_after,
    };
    let mut text = serde_json::to_vec_pretty(&file).expect("an identity serializes");
    text.push(b'\n');
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(JournalError::io("write", dir))?;
    tmp.write_all(&text)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(err)?;
    tmp.persist(&path)
        .map_err(|e| JournalError::io("rename", &path)(e.error))?;
    sync_dir(dir)
}
