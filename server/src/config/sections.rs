//! The smaller sections of the configuration tree, each with its documented defaults:
//! `[replication]`, `[tables]`, `[sessions]`, `[snapshot]`, `[notify]`, `[plugins]`,
//! `[embedded]` and `[log]`. Holds values only: the environment and the command line are applied,
//! and every section validated, by `Config` (mod.rs); the larger sections have files of their own.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{de_duration, ser_duration, ConfigError};

/// The LISTEN/NOTIFY relay (`[notify]`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Globs over channel names a socket may follow (`notify.channels`,
    /// `WALCAST_NOTIFY_CHANNELS` comma list); others get 403 `channel_not_allowed`.
    pub channels: Vec<String>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            channels: vec!["*".into()],
        }
    }
}

/// Snapshots (`[snapshot]`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotConfig {
    /// Snapshots read at once; more wait in order (`snapshot.max_concurrent`,
    /// `WALCAST_SNAPSHOT_MAX_CONCURRENT`).
    pub max_concurrent: usize,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig { max_concurrent: 4 }
    }
}

/// Wasm filter plugins (`[plugins]`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Directory watched for `*.wasm` modules (file stem = plugin name); `None` disables plugins
    /// (`plugins.dir`, `WALCAST_PLUGIN_DIR`, `--plugin-dir`).
    pub dir: Option<PathBuf>,
    /// Epoch deadline for one `walcast_init` / `walcast_filter` call.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub call_deadline: Duration,
    /// Linear-memory cap per instance, bytes.
    pub memory_limit: usize,
    /// Wasm stack cap per instance, bytes.
    pub stack_limit: usize,
    /// Consecutive failed calls (trap, deadline, ERROR verdict) after which a group's sessions
    /// are closed with 4010.
    pub max_failures: u32,
    /// Instance slots of the pooling allocator: one per live (plugin, params) group, plus a few
    /// transient ones while a group re-instantiates or a module is validated. Each slot reserves
    /// address space for `memory_limit`, not memory.
    pub max_instances: u32,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: None,
            call_deadline: Duration::from_millis(10),
            memory_limit: 16 << 20,
            stack_limit: 512 << 10,
            max_failures: 5,
            max_instances: 256,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicationConfig {
    /// Slot name (`replication.slot`), created with wal2json when missing.
    pub slot: String,
    /// Temporary slot: dropped by Postgres when the connection ends.
    pub temporary: bool,
    /// Standby status update interval.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub status_interval: Duration,
    /// Upper bound of the reconnect backoff.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub max_backoff: Duration,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TablesConfig {
    /// Glob patterns over `schema.table`; empty means every table outside system schemas.
    pub allow: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// Frames a cohort log may hold that one of its sessions has not read yet. When it is full,
    /// the sessions holding its oldest frame go on from the journal (the stream never waits).
    pub queue_capacity: usize,
    /// Subscriptions one socket may hold at once (`subscribe` messages beyond it get
    /// `too_many_subscriptions`).
    pub max_subscriptions_per_socket: usize,
    /// Client messages one socket may send per second, with bursts of twice as many; beyond it
    /// a message is dropped with a `rate_limited` error frame (`WALCAST_MAX_MESSAGES_PER_SECOND`).
    pub max_messages_per_second: u32,
    /// A socket whose writes make no progress for this long is closed with 4008, letting go of
    /// its snapshot slot and transaction and its journal reader (`WALCAST_WRITE_TIMEOUT`).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub write_timeout: Duration,
    /// How often the server pings every socket (`WALCAST_PING_INTERVAL`).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub ping_interval: Duration,
    /// A socket from which nothing (a pong or any message) arrived for this long is closed with
    /// 4009 (`WALCAST_IDLE_TIMEOUT`).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub idle_timeout: Duration,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedConfig {
    /// Where the embedded cluster lives; `None` uses a fresh temporary directory.
    pub data_dir: Option<PathBuf>,
    /// Create the demo table and writer.
    pub demo: bool,
    /// Postgres binaries directory.
    pub pg_bin: PathBuf,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` env-filter directive, e.g. `info,walcast=debug`.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            slot: "walcast".to_owned(),
            temporary: false,
            status_interval: Duration::from_secs(10),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            queue_capacity: 1024,
            max_subscriptions_per_socket: 100,
            max_messages_per_second: 100,
            write_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            data_dir: None,
            demo: true,
            pg_bin: PathBuf::from("/usr/lib/postgresql/15/bin"),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
            format: "text".to_owned(),
        }
    }
}

impl TablesConfig {
    /// Compiles `allow` into one matcher over `schema.table`.
    pub fn glob_set(&self) -> Result<globset::GlobSet, ConfigError> {
        let mut builder = globset::GlobSetBuilder::new();
        for (i, pattern) in self.allow.iter().enumerate() {
            let glob = globset::GlobBuilder::new(pattern)
                .literal_separator(false)
                .build()
                .map_err(|err| {
                    ConfigError::invalid(
                        format!("tables.allow[{i}]"),
                        format!(
                            "{pattern:?} is not a valid glob ({}); use e.g. \"public.*\" or \
                             \"sales.orders\"",
                            err.kind()
                        ),
                    )
                })?;
            builder.add(glob);
        }
        builder
            .build()
            .map_err(|err| ConfigError::invalid("tables.allow", err.to_string()))
    }
}
