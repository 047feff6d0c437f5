//! Named subscriptions (`sub=<name>`): each remembers its query and the last position its client
//! acknowledged, in one small file beside the journal (`subscriptions.json`), so a client that
//! reconnects with the same name resumes right after what it acknowledged, even after walcast was
//! killed. Owns that file, the in-memory table, the one-socket-per-name lease and the group
//! commit of acks. Does not read the journal or serve sockets (`ws::session` does both); the
//! journal's retention asks it what must be kept (`keep_after`).
//!
//! Acks are persisted in batches: `ack` only records the position and wakes the writer task,
//! which writes the whole table to a temporary file, syncs it, renames it over the old one and
//! syncs the directory (so the file is always either the old or the new table), then tells every
//! connected subscription how far its acks are durable (`Claim::persisted`). Acks that arrive
//! while a write is in flight go out together in the next one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::hub::SessionSignal;
use crate::journal::Pos;

#[cfg(test)]
mod tests;

/// The file beside the journal's segments.
pub const FILE_NAME: &str = "subscriptions.json";
/// A name: 1 to 64 of `A-Z a-z 0-9 _ . -`.
const MAX_NAME: usize = 64;
/// Close code for the session of a subscription deleted through the admin API.
pub const DELETED_CLOSE_CODE: u16 = 4011;
/// How long a failed write waits before the next try.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum NamedError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid subscriptions file: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Why a name cannot be claimed (each is a 409 before the upgrade).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimError {
    /// Another socket holds it.
    Busy,
    /// It was created with another query.
    Mismatch { stored: String },
}

/// Whether `name` is a valid subscription name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// What the file holds per subscription.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Stored {
    name: String,
    /// The canonical query (every parameter but `sub=` and `from=`, sorted, URL-encoded).
    query: String,
    /// `schema.table`.
    table: String,
    /// The position the client acknowledged (at creation: the position it started after).
    acked: Pos,
    /// Seconds since the Unix epoch.
    created_at: u64,
}

#[derive(Serialize, Deserialize)]
struct FileBody {
    version: u32,
    subscriptions: Vec<Stored>,
}

struct Lease {
    id: u64,
    signal: Arc<SessionSignal>,
    persisted: watch::Sender<Pos>,
}

struct Entry {
    stored: Stored,
    /// Not yet in the file: created by a socket that has not started yet.
    pending: bool,
    lease: Option<Lease>,
}

/// One row of `GET /v1/subscriptions` (lag is added by the caller, from the journal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub query: String,
    pub table: String,
    pub acked: Pos,
    pub connected: bool,
    pub created_at: u64,
}

pub struct Store {
    path: PathBuf,
    entries: Mutex<BTreeMap<String, Entry>>,
    /// Bumped by every change to `entries` that the file must show.
    changed: AtomicU64,
    wake: Notify,
    next_lease: AtomicU64,
    /// Bumped after every successful write, with `written` the `changed` value it covered.
    written: watch::Sender<u64>,
}

/// A socket's hold on one name; dropping it releases the name.
pub struct Claim {
    store: Arc<Store>,
    name: String,
    lease: u64,
    /// Where the subscription resumes after; `None` for one created by this claim.
    resume: Option<Pos>,
    persisted: watch::Receiver<Pos>,
}

impl Store {
    /// Reads `dir/subscriptions.json` (none yet: an empty table).
    pub fn open(dir: &Path) -> Result<Arc<Store>, NamedError> {
        let path = dir.join(FILE_NAME);
        let stored = match std::fs::read(&path) {
            Ok(bytes) => {
                let body: FileBody =
                    serde_json::from_slice(&bytes).map_err(|e| NamedError::Invalid {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                if body.version != 1 {
                    return Err(NamedError::Invalid {
                        path,
                        message: format!("unknown version {}", body.version),
                    });
                }
                body.subscriptions
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => return Err(NamedError::Read { path, source }),
        };
        let entries = stored
            .into_iter()
            .map(|stored| {
                let entry = Entry {
                    stored,
                    pending: false,
                    lease: None,
                };
                (entry.stored.name.clone(), entry)
            })
            .collect();
        Ok(Arc::new(Store {
            path,
            entries: Mutex::new(entries),
            changed: AtomicU64::new(0),
            wake: Notify::new(),
            next_lease: AtomicU64::new(1),
            written: watch::Sender::new(0),
        }))
    }

    pub fn len(&self) -> usize {
        self.entries.lock().values().filter(|e| !e.pending).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Take `name` for one socket. A known name must have been created with the same `query`;
    /// an unknown one is reserved (created for good by `Claim::create`).
    pub fn claim(
        self: &Arc<Self>,
        name: &str,
        query: &str,
        table: &str,
        signal: Arc<SessionSignal>,
    ) -> Result<Claim, ClaimError> {
        let mut entries = self.entries.lock();
        let lease = self.next_lease.fetch_add(1, Ordering::Relaxed);
        // Starts at what is already in the file: only later acks are confirmed.
        let known = entries.get(name).map_or(Pos::ZERO, |e| e.stored.acked);
        let (persisted, rx) = watch::channel(known);
        let resume = match entries.get_mut(name) {
            Some(entry) => {
                if entry.lease.is_some() {
                    return Err(ClaimError::Busy);
                }
                if entry.stored.query != query {
                    return Err(ClaimError::Mismatch {
                        stored: entry.stored.query.clone(),
                    });
                }
                entry.lease = Some(Lease {
                    id: lease,
                    signal,
                    persisted,
                });
                Some(entry.stored.acked)
            }
            None => {
                let stored = Stored {
                    name: name.to_owned(),
                    query: query.to_owned(),
                    table: table.to_owned(),
                    acked: Pos::ZERO,
                    created_at: unix_secs(),
                };
                let lease = Lease {
                    id: lease,
                    signal,
                    persisted,
                };
                entries.insert(
                    name.to_owned(),
                    Entry {
                        stored,
                        pending: true,
                        lease: Some(lease),
                    },
                );
                None
            }
        };
        Ok(Claim {
            store: self.clone(),
            name: name.to_owned(),
            lease,
            resume,
            persisted: rx,
        })
    }

    /// The smallest acknowledged position: the journal keeps everything after it.
    pub fn keep_after(&self) -> Option<(Pos, String)> {
        self.entries
            .lock()
            .values()
            .filter(|e| !e.pending)
            .map(|e| (e.stored.acked, e.stored.name.clone()))
            .min()
    }

    pub fn list(&self) -> Vec<Listed> {
        self.entries
            .lock()
            .values()
            .filter(|e| !e.pending)
            .map(|e| Listed {
                name: e.stored.name.clone(),
                query: e.stored.query.clone(),
                table: e.stored.table.clone(),
                acked: e.stored.acked,
                connected: e.lease.is_some(),
                created_at: e.stored.created_at,
            })
            .collect()
    }

    /// Forget `name` (its connected session, if any, is closed with 4011). False when unknown.
    pub fn delete(&self, name: &str) -> bool {
        let mut entries = self.entries.lock();
        let Some(entry) = entries.get(name).filter(|e| !e.pending) else {
            return false;
        };
        if let Some(lease) = &entry.lease {
            lease.signal.close_with(
                DELETED_CLOSE_CODE,
                Some("subscription deleted by an operator"),
            );
        }
        entries.remove(name);
        drop(entries);
        self.mark_changed();
        true
    }

    fn mark_changed(&self) -> u64 {
        let seq = self.changed.fetch_add(1, Ordering::AcqRel) + 1;
        self.wake.notify_one();
        seq
    }

    /// Write the table now if it changed since the last write; tells connected subscriptions
    /// how far their acks are durable.
    pub fn persist(&self) -> Result<(), NamedError> {
        let seq = self.changed.load(Ordering::Acquire);
        if *self.written.borrow() >= seq {
            return Ok(());
        }
        let (body, acked) = {
            let entries = self.entries.lock();
            let subscriptions: Vec<Stored> = entries
                .values()
                .filter(|e| !e.pending)
                .map(|e| e.stored.clone())
                .collect();
            let acked: Vec<(String, Pos)> = subscriptions
                .iter()
                .map(|s| (s.name.clone(), s.acked))
                .collect();
            let body = FileBody {
                version: 1,
                subscriptions,
            };
            (body, acked)
        };
        self.write_file(&body)?;
        self.written.send_modify(|w| *w = (*w).max(seq));
        let entries = self.entries.lock();
        for (name, pos) in acked {
            if let Some(lease) = entries.get(&name).and_then(|e| e.lease.as_ref()) {
                lease.persisted.send_if_modified(|p| {
                    let newer = pos > *p;
                    if newer {
                        *p = pos;
                    }
                    newer
                });
            }
        }
        Ok(())
    }

    /// Waits until every change made before the call is in the file.
    async fn durable(&self) {
        let seq = self.changed.load(Ordering::Acquire);
        let mut written = self.written.subscribe();
        let _ = written.wait_for(|w| *w >= seq).await;
    }

    fn write_file(&self, body: &FileBody) -> Result<(), NamedError> {
        let err = |source| NamedError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
        let text = serde_json::to_vec_pretty(body).map_err(|e| err(e.into()))?;
        tmp.write_all(&text).map_err(err)?;
        tmp.as_file().sync_all().map_err(err)?;
        tmp.persist(&self.path).map_err(|e| err(e.error))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err)
    }

    /// The writer task: writes whenever the table changed, until `stop`, then once more.
    pub async fn run_writer(
        self: Arc<Self>,
        metrics: Arc<crate::metrics::Metrics>,
        stop: CancellationToken,
    ) {
        loop {
            let stopping = tokio::select! {
                _ = self.wake.notified() => false,
                _ = stop.cancelled() => true,
            };
            metrics
                .named_subscriptions
                .set(i64::try_from(self.len()).unwrap_or(i64::MAX));
            let store = self.clone();
            match tokio::task::spawn_blocking(move || store.persist()).await {
                Ok(Ok(())) => {
                    metrics.ack_persists.inc();
                }
                Ok(Err(error)) => {
                    tracing::error!(%error, "named subscriptions not persisted; retrying");
                    if !stopping {
                        tokio::time::sleep(RETRY).await;
                        self.wake.notify_one();
                    }
                }
                Err(_) => tracing::error!("named subscriptions writer panicked"),
            }
            if stopping {
                return;
            }
        }
    }
}

impl Claim {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where a known subscription resumes after; `None` when this claim created it.
    pub fn resume_after(&self) -> Option<Pos> {
        self.resume
    }

    /// Record a new subscription's start for good: after this returns the name survives a crash.
    pub async fn create(&mut self, start: Pos) {
        {
            let mut entries = self.store.entries.lock();
            if let Some(entry) = entries.get_mut(&self.name) {
                if let Some(lease) = entry.lease.as_ref().filter(|l| l.id == self.lease) {
                    if entry.pending {
                        entry.pending = false;
                        entry.stored.acked = start;
                        // The start is not an ack: no `acked` for it.
                        lease.persisted.send_replace(start);
                    }
                }
            }
        }
        self.persisted.borrow_and_update();
        self.resume = Some(start);
        self.store.mark_changed();
        self.store.durable().await;
    }

    /// The client acknowledged everything up to `pos`; older acks are ignored.
    pub fn ack(&self, pos: Pos) {
        let mut entries = self.store.entries.lock();
        let Some(entry) = entries.get_mut(&self.name) else {
            return;
        };
        if entry.lease.as_ref().is_none_or(|l| l.id != self.lease) || pos <= entry.stored.acked {
            return;
        }
        entry.stored.acked = pos;
        drop(entries);
        self.store.mark_changed();
    }

    /// The highest acknowledged position known to be in the file; changes when a write lands.
    pub fn persisted(&mut self) -> &mut watch::Receiver<Pos> {
        &mut self.persisted
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut entries = self.store.entries.lock();
        let Some(entry) = entries.get_mut(&self.name) else {
            return;
        };
        if entry.lease.as_ref().is_none_or(|l| l.id != self.lease) {
            return;
        }
        if entry.pending {
            entries.remove(&self.name);
        } else {
            entry.lease = None;
        }
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
