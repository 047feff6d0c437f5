//! Named subscriptions (`sub=<name>`): each remembers its owner, its query and the last position
//! its client acknowledged, in one small file beside the journal (`subscriptions.json`), so a
//! client that reconnects with the same name resumes right after what it acknowledged, even after
//! walcast was killed. Owns that file, the in-memory table, who may take a name (its owner), how
//! many names there may be (`[named]` bounds), the one-socket-per-name lease, the group commit of
//! acks and the idle expiry. Does not read the journal or serve sockets (`ws::session` does
//! both); the journal's retention asks it what must be kept (`keep_after`).
//!
//! Acks are persisted in batches: `ack` only records the position and wakes the writer task,
//! which writes the whole table (`file::write`), then tells every connected subscription how far
//! its acks are durable (`Claim::persisted`). Acks that arrive while a write is in flight go out
//! together in the next one. Retention keeps everything after the acks the file holds, never
//! after an ack only in memory: a crash between a trim and the next write must not leave a
//! subscription whose position the journal no longer has.
//!
//! A subscription without a socket for `named.idle_expiry` stops holding the journal (it is
//! marked `expired`, logged and counted): one abandoned name must not pause the stream for the
//! whole server once the journal is at `journal.max_bytes`. If it comes back while the journal
//! still holds what follows its ack it resumes (and holds again); otherwise the journal reader
//! answers 409 `position_expired`.

mod file;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::vocab::{close_code, Pos, SessionSignal};
use file::Stored;

#[cfg(test)]
mod tests;

/// The file beside the journal's segments.
pub const FILE_NAME: &str = "subscriptions.json";
/// A name: 1 to 64 of `A-Z a-z 0-9 _ . -`.
const MAX_NAME: usize = 64;
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

/// The `[named]` bounds, and whether names are served at all.
#[derive(Clone, Debug)]
pub struct NamedConfig {
    /// Names stored at most, all subjects together (`named.max_subscriptions`).
    pub max_subscriptions: usize,
    /// Names one subject may own (`named.max_per_subject`).
    pub max_per_subject: usize,
    /// How long a name without a socket holds the journal (`named.idle_expiry`).
    pub idle_expiry: Duration,
    /// `replication.temporary`: the slot does not survive a restart, so no acknowledged position
    /// would either; no name is served and stored ones hold nothing.
    pub temporary: bool,
}

impl Default for NamedConfig {
    fn default() -> Self {
        NamedConfig {
            max_subscriptions: 1000,
            max_per_subject: 100,
            idle_expiry: Duration::from_secs(7 * 24 * 3600),
            temporary: false,
        }
    }
}

/// Who a named subscription belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// Every client under `auth.mode = "none"`; also the owner of the names in a file written
    /// before owners were recorded.
    Anonymous,
    /// A verified token's `sub` claim.
    Subject(String),
}

impl Owner {
    /// As the file and the admin list show it: `None` for the anonymous subject.
    fn stored(&self) -> Option<String> {
        match self {
            Owner::Anonymous => None,
            Owner::Subject(sub) => Some(sub.clone()),
        }
    }

    fn owns(&self, stored: &Option<String>) -> bool {
        match (self, stored) {
            (Owner::Anonymous, None) => true,
            (Owner::Subject(sub), Some(owner)) => sub == owner,
            _ => false,
        }
    }
}

/// Which bound a new name would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// `named.max_subscriptions`, with its value.
    Total(usize),
    /// `named.max_per_subject`, with its value.
    PerSubject(usize),
}

/// Why a name cannot be claimed (each is a refusal before the upgrade).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimError {
    /// The slot is temporary: no name is served.
    Unavailable,
    /// Another subject owns it. Says nothing of its query.
    Forbidden,
    /// Another socket holds it.
    Busy,
    /// Its owner created it with another query (the caller's own query, so it may be shown).
    Mismatch { stored: String },
    /// A new name would pass a bound.
    TooMany(Bound),
}

/// Whether `name` is a valid subscription name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
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
    /// Which creation this is (the creating lease's id; 0 when read from the file), so a write
    /// that began before a delete and a re-creation never confirms the new one's acks.
    generation: u64,
    /// The acknowledged position the file holds: what retention keeps everything after.
    durable: Pos,
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
    /// The token subject that owns it; `None`: the anonymous subject.
    pub owner: Option<String>,
    /// It no longer holds the journal (idle past `named.idle_expiry`, or its position is gone).
    pub expired: bool,
}

pub struct Store {
    path: PathBuf,
    cfg: NamedConfig,
    metrics: Arc<Metrics>,
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
    pub fn open(
        dir: &Path,
        cfg: NamedConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Store>, NamedError> {
        let path = dir.join(FILE_NAME);
        let now = unix_secs(SystemTime::now());
        let entries: BTreeMap<String, Entry> = file::read(&path)?
            .into_iter()
            .map(|mut stored| {
                // Held by a socket when the file was written (or unknown): idle from now on.
                stored.idle_since.get_or_insert(now);
                let entry = Entry {
                    durable: stored.acked,
                    stored,
                    pending: false,
                    lease: None,
                    generation: 0,
                };
                (entry.stored.name.clone(), entry)
            })
            .collect();
        if cfg.temporary && !entries.is_empty() {
            tracing::warn!(
                subscriptions = entries.len(),
                "replication.temporary is set: the stored named subscriptions are not served and do not hold the journal"
            );
        }
        Ok(Arc::new(Store {
            path,
            cfg,
            metrics,
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

    /// Take `name` for one socket of `owner`. A known name must belong to `owner` and have been
    /// created with the same `query`; an unknown one is reserved within the bounds (created for
    /// good by `Claim::create`).
    pub fn claim(
        self: &Arc<Self>,
        name: &str,
        query: &str,
        table: &str,
        owner: &Owner,
        signal: Arc<SessionSignal>,
    ) -> Result<Claim, ClaimError> {
        if self.cfg.temporary {
            return Err(ClaimError::Unavailable);
        }
        let mut entries = self.entries.lock();
        let lease = self.next_lease.fetch_add(1, Ordering::Relaxed);
        // What is in the file: a known name resumes after it (an ack still on its way to the file
        // may never get there) and only later acks are confirmed.
        let known = entries.get(name).map_or(Pos::ZERO, |e| e.durable);
        let (persisted, rx) = watch::channel(known);
        let lease_of = |signal| Lease {
            id: lease,
            signal,
            persisted,
        };
        let resume = match entries.get_mut(name) {
            Some(entry) => {
                // Ownership first: another subject learns nothing of the name's query or use.
                if !owner.owns(&entry.stored.owner) {
                    return Err(ClaimError::Forbidden);
                }
                if entry.lease.is_some() {
                    return Err(ClaimError::Busy);
                }
                if entry.stored.query != query {
                    return Err(ClaimError::Mismatch {
                        stored: entry.stored.query.clone(),
                    });
                }
                entry.lease = Some(lease_of(signal));
                // Held by a socket: not idle (written, so a crash restarts the idle clock).
                if entry.stored.idle_since.take().is_some() {
                    drop(entries);
                    self.mark_changed();
                }
                Some(known)
            }
            None => {
                // Reservations count: concurrent creations cannot pass a bound together.
                if entries.len() >= self.cfg.max_subscriptions {
                    return Err(ClaimError::TooMany(Bound::Total(
                        self.cfg.max_subscriptions,
                    )));
                }
                let owned = entries
                    .values()
                    .filter(|e| owner.owns(&e.stored.owner))
                    .count();
                if owned >= self.cfg.max_per_subject {
                    return Err(ClaimError::TooMany(Bound::PerSubject(
                        self.cfg.max_per_subject,
                    )));
                }
                let stored = Stored {
                    name: name.to_owned(),
                    query: query.to_owned(),
                    table: table.to_owned(),
                    acked: Pos::ZERO,
                    created_at: unix_secs(SystemTime::now()),
                    owner: owner.stored(),
                    idle_since: None,
                    expired: false,
                };
                entries.insert(
                    name.to_owned(),
                    Entry {
                        stored,
                        pending: true,
                        lease: Some(lease_of(signal)),
                        generation: lease,
                        durable: Pos::ZERO,
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

    /// What the journal must keep everything after: the lowest acknowledged position that is in
    /// the file, among the subscriptions that hold the journal. Marks those idle past
    /// `named.idle_expiry` expired first (logged, counted): they hold nothing any more.
    pub fn keep_after(&self) -> Option<(Pos, String)> {
        self.keep_after_at(SystemTime::now())
    }

    fn keep_after_at(&self, now: SystemTime) -> Option<(Pos, String)> {
        if self.cfg.temporary {
            return None;
        }
        let mut entries = self.entries.lock();
        let now = unix_secs(now);
        let idle_expiry = self.cfg.idle_expiry.as_secs();
        let mut expired = 0;
        for entry in entries.values_mut() {
            let Some(since) = entry.stored.idle_since else {
                continue;
            };
            if entry.pending || entry.stored.expired || entry.lease.is_some() {
                continue;
            }
            // Strictly longer, in whole seconds: never early.
            if now.saturating_sub(since) <= idle_expiry {
                continue;
            }
            entry.stored.expired = true;
            expired += 1;
            tracing::warn!(
                subscription = %entry.stored.name,
                acked = %entry.stored.acked,
                idle_secs = now.saturating_sub(since),
                "named subscription {:?} had no socket for longer than named.idle_expiry: it no longer holds the journal; if it comes back after retention removed what follows its ack it gets 409 position_expired",
                entry.stored.name
            );
        }
        let keep = entries
            .values()
            .filter(|e| !e.pending && !e.stored.expired)
            .map(|e| (e.durable, e.stored.name.clone()))
            .min();
        drop(entries);
        if expired > 0 {
            self.metrics.named_expired.inc_by(expired);
            self.mark_changed();
        }
        keep
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
                owner: e.stored.owner.clone(),
                expired: e.stored.expired,
            })
            .collect()
    }

    /// The position `name` resumes after, when it exists and has acknowledged one.
    pub fn acked(&self, name: &str) -> Option<Pos> {
        let entries = self.entries.lock();
        let entry = entries.get(name).filter(|e| !e.pending)?;
        (entry.stored.acked > Pos::ZERO).then_some(entry.stored.acked)
    }

    /// Forget `name` (its connected session, if any, is closed with 4011). False when unknown.
    pub fn delete(&self, name: &str) -> bool {
        let mut entries = self.entries.lock();
        let Some(entry) = entries.get(name).filter(|e| !e.pending) else {
            return false;
        };
        if let Some(lease) = &entry.lease {
            lease.signal.close_with(
                close_code::SUBSCRIPTION_ENDED,
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

    /// Write the table now if it changed since the last write; then retention may trim behind
    /// the acks it holds, and connected subscriptions hear how far their acks are durable.
    pub fn persist(&self) -> Result<(), NamedError> {
        let seq = self.changed.load(Ordering::Acquire);
        if *self.written.borrow() >= seq {
            return Ok(());
        }
        let (subscriptions, acked) = {
            let entries = self.entries.lock();
            let written = entries.values().filter(|e| !e.pending);
            let subscriptions: Vec<Stored> = written.clone().map(|e| e.stored.clone()).collect();
            let acked: Vec<(String, u64, Pos)> = written
                .map(|e| (e.stored.name.clone(), e.generation, e.stored.acked))
                .collect();
            (subscriptions, acked)
        };
        file::write(&self.path, subscriptions)?;
        self.written.send_modify(|w| *w = (*w).max(seq));
        let mut entries = self.entries.lock();
        for (name, generation, pos) in acked {
            let Some(entry) = entries
                .get_mut(&name)
                .filter(|e| e.generation == generation)
            else {
                continue;
            };
            entry.durable = entry.durable.max(pos);
            if let Some(lease) = &entry.lease {
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

    /// The writer task: writes whenever the table changed, until `stop`, then once more.
    pub async fn run_writer(self: Arc<Self>, metrics: Arc<Metrics>, stop: CancellationToken) {
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

    /// The journal still holds what follows the ack (a reader was opened after it): a
    /// subscription that had expired holds the journal again.
    pub fn resumable(&self) {
        self.set_expired(false);
    }

    /// The journal no longer holds what follows the ack: the subscription can never resume, so
    /// it must not hold the journal (until an operator deletes it).
    pub fn position_gone(&self) {
        self.set_expired(true);
    }

    fn set_expired(&self, expired: bool) {
        let mut entries = self.store.entries.lock();
        let Some(entry) = entries.get_mut(&self.name) else {
            return;
        };
        if entry.lease.as_ref().is_none_or(|l| l.id != self.lease)
            || entry.stored.expired == expired
        {
            return;
        }
        entry.stored.expired = expired;
        drop(entries);
        self.store.mark_changed();
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
                        // Nothing before the start is needed, with or without the file.
                        entry.durable = start;
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

    /// The client acknowledged everything up to `pos`; older acks are ignored. Retention goes
    /// past the old ack only once this one is in the file.
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
            return;
        }
        entry.lease = None;
        // The idle clock starts; written, so it survives a restart.
        entry.stored.idle_since = Some(unix_secs(SystemTime::now()));
        drop(entries);
        self.store.mark_changed();
    }
}

fn unix_secs(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
