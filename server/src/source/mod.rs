//! The replication source: our own logical-replication client (postgres-protocol over TCP, Unix
//! sockets or rustls), the wal2json slot, LSN feedback and reconnects. It hands raw wal2json
//! payloads to a `Consumer`; it does not decode them (decode/) or fan them out (hub/). It also
//! opens the process's other Postgres connections (SQL, LISTEN), all from one `PgEndpoint` with
//! the DATABASE_URL's TLS settings, and owns the reconnect waits they share (`Backoff`); what
//! those connections are for is their stages' business.

mod backoff;
mod conn;
mod endpoint;
mod error;
mod prereq;
mod proto;
mod stream;
#[cfg(test)]
mod tests;
mod tls;
mod url;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::vocab::Lsn;

pub use backoff::Backoff;
pub use endpoint::PgEndpoint;
pub use error::{describe_target, error_chain, ServerError, SourceError};
pub use prereq::{check_prerequisites, drop_slot, slot_confirmed_flush, slot_exists};
pub use stream::{identify, run};
pub use tls::{connect_listening, connect_sql, PgTls, RootCert, SslMode};
pub use url::parse_database_url;

/// Settings of the replication source.
#[derive(Clone)]
pub struct SourceConfig {
    /// Parsed DATABASE_URL: hosts (TCP or Unix directory), port, user, password, dbname, and
    /// the TLS settings.
    pub pg: PgEndpoint,
    pub slot: String,
    /// `CREATE_REPLICATION_SLOT ... TEMPORARY`: the slot dies with each connection.
    pub temporary: bool,
    /// Standby status update period.
    pub status_interval: Duration,
    /// Reconnect backoff cap.
    pub max_backoff: Duration,
    /// wal2json's `add-tables` option; `None` omits it.
    pub add_tables: Option<String>,
}

impl SourceConfig {
    /// Defaults: persistent slot, 10 s status interval, 30 s backoff cap, all tables.
    pub fn new(pg: PgEndpoint, slot: impl Into<String>) -> SourceConfig {
        SourceConfig {
            pg,
            slot: slot.into(),
            temporary: false,
            status_interval: Duration::from_secs(10),
            max_backoff: Duration::from_secs(30),
            add_tables: None,
        }
    }
}

impl std::fmt::Debug for SourceConfig {
    // PgEndpoint's Debug redacts the password; keep it that way here.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceConfig")
            .field("pg", &self.pg)
            .field("slot", &self.slot)
            .field("temporary", &self.temporary)
            .field("status_interval", &self.status_interval)
            .field("max_backoff", &self.max_backoff)
            .field("add_tables", &self.add_tables)
            .finish()
    }
}

/// What a replication connection found before streaming: `IDENTIFY_SYSTEM`'s answer and whether
/// the slot had to be created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// The cluster's system identifier (`initdb` sets it; replicas and restored backups keep it).
    pub system_identifier: String,
    pub database: String,
    pub slot: String,
    /// Where the server's WAL ends now.
    pub server_lsn: Lsn,
    /// The persistent slot did not exist and walcast created it on this connection (always
    /// false for a temporary slot, created on every connection by design).
    pub slot_created: bool,
}

/// Where a message leaves the stream relative to transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boundary {
    InsideTransaction,
    Clean,
}

/// Receives every XLogData payload in WAL order, synchronously, inside the source task.
pub trait Consumer: Send {
    /// `payload` may be modified in place (the decoder unescapes strings in it). Return
    /// `Boundary::Clean` when no transaction is open after this message (after a C, or an M
    /// outside a transaction).
    fn on_data(&mut self, wal_start: Lsn, wal_end: Lsn, payload: &mut [u8]) -> Boundary;
    /// Back-pressure: whether the consumer can take the next message. The source asks before
    /// every XLogData and, on `false`, keeps the walsender's timeout fed and asks again, so a
    /// consumer that must pause (its journal full of what a named subscription still needs) holds
    /// the stream (and Postgres keeps the WAL) instead of dropping data. A `false` answer should
    /// take a while (up to a second) to come.
    fn ready(&mut self) -> impl std::future::Future<Output = bool> + Send {
        std::future::ready(true)
    }
    /// The source has handed over every message it has read so far and is about to wait for more:
    /// a consumer that defers work per burst (waking sessions) does it now.
    fn flush(&mut self) {}
    /// After `flush`, before the position is confirmed: makes durable what `flush` handed over
    /// (the journal's fsync). Slow work runs off the async workers; the source waits for it.
    fn sync(&mut self) -> impl std::future::Future<Output = ()> + Send {
        std::future::ready(())
    }
    /// On every connection, after `IDENTIFY_SYSTEM` and the slot's creation, before streaming:
    /// `Err` (a message naming the fix) refuses this upstream, and the source stops with
    /// `SourceError::Refused` (dropping the slot if it created it on this connection).
    fn on_connect(&mut self, _upstream: &Upstream) -> Result<(), String> {
        Ok(())
    }
    /// The connection was lost; the next message replays from the slot's confirmed position.
    fn on_reconnect(&mut self);
    /// The position the slot may be confirmed to, given `candidate` (the end of the last
    /// transaction handed over, or an idle keepalive's position): a consumer that keeps what it
    /// takes (the journal) holds it back to what it has made durable.
    fn confirmable(&self, candidate: Lsn) -> Lsn {
        candidate
    }
}

/// Shared, lock-free view of the source for /readyz and /metrics (only the rarely written last
/// error sits behind a mutex).
#[derive(Debug, Default)]
pub struct SourceStatus {
    connected: AtomicBool,
    flushed: AtomicU64,
    received: AtomicU64,
    server_end: AtomicU64,
    reconnects: AtomicU64,
    last_error: parking_lot::Mutex<Option<String>>,
}

impl SourceStatus {
    /// Streaming (CopyBoth established) right now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Last flush position reported to the server.
    pub fn flushed(&self) -> Lsn {
        Lsn(self.flushed.load(Ordering::Relaxed))
    }

    /// Highest wal_end received in XLogData.
    pub fn received(&self) -> Lsn {
        Lsn(self.received.load(Ordering::Relaxed))
    }

    /// Server WAL end from the last keepalive/XLogData.
    pub fn server_end(&self) -> Lsn {
        Lsn(self.server_end.load(Ordering::Relaxed))
    }

    /// `server_end - flushed`, saturating.
    pub fn lag_bytes(&self) -> u64 {
        self.server_end().0.saturating_sub(self.flushed().0)
    }

    /// Connection losses so far.
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().clone()
    }

    fn set_last_error(&self, error: String) {
        *self.last_error.lock() = Some(error);
    }
}
