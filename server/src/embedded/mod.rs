//! The embedded throwaway Postgres that walcast starts when no database is configured, and the
//! demo table plus writer that give a first-time user something to watch. Owns the cluster's
//! processes and directories; it does not talk replication (that is `source/`).

mod cluster;
mod demo;
mod host;

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

pub use cluster::EmbeddedPostgres;
pub use demo::{seed_demo, spawn_demo_writer};

/// Why the embedded cluster or the demo could not be set up. Messages name the missing package
/// or setting so a first run on a fresh machine says what to install.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "PostgreSQL server binaries not found: {path} does not exist; install the Debian package \
         `postgresql-15` or point embedded.pg_bin (WALCAST_PG_BIN) at the bin directory"
    )]
    MissingBinaries { path: PathBuf },
    #[error(
        "the wal2json output plugin is not installed (looked for {looked}); install the Debian \
         package `postgresql-15-wal2json`"
    )]
    MissingWal2json { looked: String },
    #[error("embedded postgres: cannot {action}: {cause}")]
    Io {
        action: String,
        cause: std::io::Error,
    },
    #[error("embedded postgres: {command} failed ({status}): {output}")]
    Command {
        command: &'static str,
        status: ExitStatus,
        output: String,
    },
    #[error("embedded postgres exited during startup ({status}); server log:\n{log_tail}")]
    Exited {
        status: ExitStatus,
        log_tail: String,
    },
    #[error(
        "embedded postgres not ready after {timeout:?} ({last_error}); server log:\n{log_tail}"
    )]
    NotReady {
        timeout: Duration,
        last_error: String,
        log_tail: String,
    },
    #[error("demo data: cannot {action}: {cause}")]
    Sql {
        action: &'static str,
        cause: tokio_postgres::Error,
    },
}

impl EmbeddedError {
    fn io(action: impl Into<String>, cause: std::io::Error) -> Self {
        EmbeddedError::Io {
            action: action.into(),
            cause,
        }
    }
}

#[cfg(test)]
mod tests;
