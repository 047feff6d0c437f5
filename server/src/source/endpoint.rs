//! Where walcast's Postgres connections go and how they are secured: the DATABASE_URL's
//! connection settings together with the TLS settings tokio-postgres's `Config` has no room for
//! (`verify-*`, `sslrootcert`), as one value that every connect function takes, so that no
//! connection of the process can be opened with weaker settings than the URL's. Parses no URL
//! (`url.rs`) and opens no connection (`conn.rs`, `tls.rs`).

use super::tls::{PgTls, RootCert, SslMode};

/// A Postgres server as walcast connects to it. Built once at start from the DATABASE_URL and
/// passed to every stage that connects (the source, the catalog, the relay, snapshots).
#[derive(Clone)]
pub struct PgEndpoint {
    /// Hosts (TCP or Unix directory), port, user, password, dbname, and the sslmode as
    /// tokio-postgres negotiates it.
    pub config: tokio_postgres::Config,
    /// sslmode with libpq's meaning, and the trusted roots.
    pub tls: PgTls,
}

impl PgEndpoint {
    pub fn new(config: tokio_postgres::Config, tls: PgTls) -> PgEndpoint {
        PgEndpoint { config, tls }
    }

    /// `config` with the TLS settings its own sslmode implies (`disable`, `prefer` or
    /// `require`, no `sslrootcert`, no verification): a connection described by a
    /// `tokio_postgres::Config` alone (tests).
    pub fn from_config(config: tokio_postgres::Config) -> PgEndpoint {
        let tls = PgTls {
            mode: SslMode::from_negotiation(config.get_ssl_mode()),
            root_cert: RootCert::Unset,
        };
        PgEndpoint { config, tls }
    }
}

impl std::fmt::Debug for PgEndpoint {
    // tokio_postgres::Config's Debug redacts the password; keep it that way here.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgEndpoint")
            .field("config", &self.config)
            .field("tls", &self.tls)
            .finish()
    }
}
