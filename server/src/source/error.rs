//! The source stage's error type and the retryable/fatal split; it does not decide when to retry
//! (that is the run loop's backoff).

use std::io;

/// A server `ErrorResponse`, reduced to the fields walcast uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerError {
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (SQLSTATE {})", self.message, self.code)?;
        if let Some(detail) = &self.detail {
            write!(f, "; detail: {detail}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; hint: {hint}")?;
        }
        Ok(())
    }
}

/// Everything that can stop the replication source. Fatal variants name the fix.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("invalid database configuration: {0}")]
    Config(String),
    #[error("{context}: {cause}")]
    Io {
        context: &'static str,
        cause: io::Error,
    },
    #[error("TLS handshake with the server failed: {0}")]
    Tls(io::Error),
    #[error("the server's TLS certificate was rejected: {0}")]
    TlsVerify(String),
    #[error("the server refused TLS but sslmode={0}: enable ssl on the server or use sslmode=prefer/disable")]
    TlsRefused(&'static str),
    #[error("the server closed the replication connection")]
    Closed,
    #[error("replication protocol violation: {0}")]
    Protocol(String),
    #[error(
        "authentication failed for user {user:?}: {server}; check the password in DATABASE_URL"
    )]
    AuthFailed { user: String, server: ServerError },
    #[error("the server asked for a password but DATABASE_URL has none: add one")]
    PasswordMissing,
    #[error("the server asked for unsupported authentication {0}: use scram-sha-256, md5, password or trust in pg_hba.conf")]
    UnsupportedAuth(String),
    #[error("connection rejected: {0}; add a pg_hba.conf entry for this user/database or use an allowed role")]
    NotAllowed(ServerError),
    #[error("database does not exist: {0}; create it or fix the database name in DATABASE_URL")]
    UnknownDatabase(ServerError),
    #[error("role {user:?} may not start logical replication: {server}; run ALTER ROLE {user} REPLICATION (or use a superuser)")]
    MissingPrivilege { user: String, server: ServerError },
    #[error("logical decoding is off: {0}; set wal_level = logical in postgresql.conf and restart Postgres")]
    WalLevel(ServerError),
    #[error("the wal2json output plugin is not installed: {0}; install postgresql-<version>-wal2json (e.g. postgresql-15-wal2json)")]
    Wal2jsonMissing(ServerError),
    #[error("the server does not allow wal2json as output plugin: {0}; add wal2json to output_plugin_libraries (e.g. output_plugin_libraries = 'pgoutput,test_decoding,wal2json') and reload")]
    PluginNotAllowed(ServerError),
    #[error("no free replication slot: {0}; raise max_replication_slots or drop unused slots (pg_drop_replication_slot)")]
    SlotsExhausted(ServerError),
    /// Postgres invalidated the slot (`max_slot_wal_keep_size`, or a removed WAL file): what it
    /// had not sent is gone from WAL, and no retry brings it back.
    #[error("the replication slot was invalidated and can no longer stream: {0}; the changes it had not sent are gone from WAL. Drop it (SELECT pg_drop_replication_slot('<the slot named above>')), move or delete journal.dir (WALCAST_JOURNAL_DIR: its positions cannot be continued), start walcast again, and have clients read their rows again (snapshot=true); raise max_slot_wal_keep_size or keep walcast running to avoid it")]
    SlotInvalidated(ServerError),
    #[error("replication slot is in use by another connection: {0}")]
    SlotActive(ServerError),
    #[error("replication slot {slot:?} uses output plugin {plugin:?}, not wal2json: drop it (SELECT pg_drop_replication_slot('{slot}')) or choose another slot name")]
    SlotWrongPlugin { slot: String, plugin: String },
    #[error("server error: {0}")]
    Server(ServerError),
    /// The consumer refused what the connection found (`Consumer::on_connect`): the journal
    /// belongs to another upstream, or cannot continue a re-created slot.
    #[error("{0}")]
    Refused(String),
    /// tokio-postgres says only "error connecting to server": the cause (refused, DNS, timeout)
    /// sits in its source chain, which the message spells out.
    #[error("{context}: {}", error_chain(.cause))]
    Sql {
        context: &'static str,
        cause: tokio_postgres::Error,
    },
}

/// An error and every `source()` below it, joined with `: ` (parts a message already repeats
/// are left out).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = cause.source();
    }
    text
}

/// Where a connection goes, for messages: `host:port` per host (a Unix socket directory as
/// `/dir (Unix socket, port 5432)`), comma-separated.
pub fn describe_target(pg: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let ports = pg.get_ports();
    pg.get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports
                .get(i)
                .or_else(|| ports.first())
                .copied()
                .unwrap_or(5432);
            match host {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{} (Unix socket, port {port})", dir.display()),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl SourceError {
    /// Whether reconnecting after a backoff can help. Fatal errors need an operator's fix.
    pub fn is_retryable(&self) -> bool {
        match self {
            SourceError::Io { .. }
            | SourceError::Tls(_)
            // The server's certificate may be replaced while walcast retries (at start it ends
            // walcast: `is_retryable_at_start`).
            | SourceError::TlsVerify(_)
            | SourceError::Closed
            | SourceError::Protocol(_)
            | SourceError::SlotActive(_)
            | SourceError::Server(_) => true,
            // A lost SQL connection is worth retrying; a server-side SQL error is not.
            SourceError::Sql { cause, .. } => cause.as_db_error().is_none(),
            _ => false,
        }
    }

    /// Whether walcast, still starting, should wait for the server and try again: what a
    /// reconnect retries (the server is down, starting up, restarting, out of connections),
    /// except a TLS certificate the server presents and walcast rejects, which at start is a
    /// configuration to fix, not a server to wait for.
    pub fn is_retryable_at_start(&self) -> bool {
        !matches!(self, SourceError::TlsVerify(_)) && self.is_retryable()
    }

    pub(crate) fn io(context: &'static str) -> impl FnOnce(io::Error) -> SourceError {
        move |cause| SourceError::Io { context, cause }
    }

    /// Maps a tokio-postgres error, sorting server errors like replication-protocol ones.
    pub(crate) fn from_sql(
        context: &'static str,
        source: tokio_postgres::Error,
        user: &str,
    ) -> SourceError {
        match source.as_db_error() {
            Some(db) => SourceError::from_server(
                ServerError {
                    code: db.code().code().to_owned(),
                    message: db.message().to_owned(),
                    detail: db.detail().map(str::to_owned),
                    hint: db.hint().map(str::to_owned),
                },
                user,
            ),
            None => SourceError::Sql {
                context,
                cause: source,
            },
        }
    }

    /// Maps a server `ErrorResponse` to the variant whose message names the fix.
    pub(crate) fn from_server(server: ServerError, user: &str) -> SourceError {
        let msg = server.message.as_str();
        let user = user.to_owned();
        if msg.contains("may not be used as an output plugin") {
            return SourceError::PluginNotAllowed(server);
        }
        match server.code.as_str() {
            "28P01" => SourceError::AuthFailed { user, server },
            "28000" => SourceError::NotAllowed(server),
            "3D000" => SourceError::UnknownDatabase(server),
            "42501" => SourceError::MissingPrivilege { user, server },
            "55000" if msg.contains("wal_level") => SourceError::WalLevel(server),
            "55000"
                if msg.contains("can no longer get changes from replication slot")
                    || server
                        .detail
                        .as_deref()
                        .is_some_and(|d| d.contains("has been invalidated")) =>
            {
                SourceError::SlotInvalidated(server)
            }
            "58P01" if msg.contains("wal2json") => SourceError::Wal2jsonMissing(server),
            "53400" => SourceError::SlotsExhausted(server),
            "55006" => SourceError::SlotActive(server),
            _ => SourceError::Server(server),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str, message: &str) -> ServerError {
        ServerError {
            code: code.into(),
            message: message.into(),
            ..Default::default()
        }
    }

    #[test]
    fn classifies_fatal_errors_with_fixes() {
        let cases = [
            (
                "28P01",
                "password authentication failed for user \"x\"",
                "check the password",
                false,
            ),
            (
                "42501",
                "must be superuser or replication role to start walsender",
                "REPLICATION",
                false,
            ),
            (
                "55000",
                "logical decoding requires wal_level >= logical",
                "wal_level = logical",
                false,
            ),
            (
                "58P01",
                "could not access file \"wal2json\": No such file or directory",
                "install postgresql-",
                false,
            ),
            (
                "53400",
                "all replication slots are in use",
                "max_replication_slots",
                false,
            ),
            (
                "42501",
                "library \"wal2json\" may not be used as an output plugin",
                "output_plugin_libraries",
                false,
            ),
            (
                "55000",
                "can no longer get changes from replication slot \"s\"",
                "pg_drop_replication_slot",
                false,
            ),
            (
                "55006",
                "replication slot \"s\" is active for PID 42",
                "in use",
                true,
            ),
            (
                "57P01",
                "terminating connection due to administrator command",
                "server error",
                true,
            ),
        ];
        for (code, msg, fix, retryable) in cases {
            let err = SourceError::from_server(server(code, msg), "walcast");
            assert!(err.to_string().contains(fix), "{err}");
            assert_eq!(err.is_retryable(), retryable, "{err}");
        }
    }

    #[test]
    fn start_up_waits_for_a_server_that_is_not_up_yet_only() {
        let starting = SourceError::from_server(
            server("57P03", "the database system is starting up"),
            "walcast",
        );
        assert!(starting.is_retryable_at_start(), "{starting}");
        let refused = SourceError::Io {
            context: "connecting over TCP",
            cause: io::Error::from(io::ErrorKind::ConnectionRefused),
        };
        assert!(refused.is_retryable_at_start());
        for fatal in [
            SourceError::from_server(server("28P01", "password authentication failed"), "w"),
            SourceError::from_server(server("3D000", "database \"x\" does not exist"), "w"),
            SourceError::from_server(server("58P01", "could not access file \"wal2json\""), "w"),
            SourceError::TlsVerify("unknown issuer".into()),
            SourceError::Config("DATABASE_URL names no user".into()),
        ] {
            assert!(!fatal.is_retryable_at_start(), "{fatal}");
        }
    }

    #[test]
    fn the_error_chain_names_the_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("error connecting to server")]
        struct Outer(#[source] io::Error);
        let e = Outer(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        ));
        assert_eq!(
            error_chain(&e),
            "error connecting to server: Connection refused (os error 111)"
        );
        let pg: tokio_postgres::Config = "host=db.internal,/run/pg port=6543 user=u"
            .parse()
            .expect("config");
        assert_eq!(
            describe_target(&pg),
            "db.internal:6543, /run/pg (Unix socket, port 6543)"
        );
    }
}
