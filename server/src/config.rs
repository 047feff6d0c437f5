//! The configuration tree: file, then env overrides, then CLI flags, then `validate()`.
//! (skeleton: field set is the contract; loading is filled in by the config work)

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything walcast needs to run. Secrets (the database URL's password) never appear in `Debug`.
#[derive(Clone)]
pub struct Config {
    /// HTTP/WebSocket listen address (`listen`, `WALCAST_LISTEN`, `--listen`).
    pub listen: SocketAddr,
    /// Postgres connection; `None` starts the embedded throwaway cluster with demo data.
    pub database_url: Option<String>,
    pub replication: ReplicationConfig,
    pub tables: TablesConfig,
    pub sessions: SessionsConfig,
    pub embedded: EmbeddedConfig,
    pub log: LogConfig,
}

#[derive(Clone, Debug)]
pub struct ReplicationConfig {
    /// Slot name (`replication.slot`), created with wal2json when missing.
    pub slot: String,
    /// Temporary slot: dropped by Postgres when the connection ends.
    pub temporary: bool,
    /// Standby status update interval.
    pub status_interval: Duration,
    /// Upper bound of the reconnect backoff.
    pub max_backoff: Duration,
}

#[derive(Clone, Debug)]
pub struct TablesConfig {
    /// Glob patterns over `schema.table`; empty means every table outside system schemas.
    pub allow: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct SessionsConfig {
    /// Frames a session may have queued before it is closed with 4008.
    pub queue_capacity: usize,
}

#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    /// Where the embedded cluster lives; `None` uses a fresh temporary directory.
    pub data_dir: Option<PathBuf>,
    /// Create the demo table and writer.
    pub demo: bool,
    /// Postgres binaries directory.
    pub pg_bin: PathBuf,
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    /// `tracing` env-filter directive, e.g. `info,walcast=debug`.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}
