//! The `[tls]` section: the certificate and key (PEM) walcast's listener serves HTTPS/WSS with,
//! and how often it looks for new ones; plus the checks of the DATABASE_URL's own TLS settings
//! (`sslrootcert`). Checks files; it starts nothing (the listener is `crate::tls`, Postgres TLS
//! `crate::source`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{de_duration, ser_duration, Config, ConfigError};
use crate::source::{PgTls, RootCert};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// Certificate chain, PEM, leaf first (`tls.cert_file`, `WALCAST_TLS_CERT`). With `key_file`,
    /// `listen` serves HTTPS/WSS only; without both, plain HTTP/WS.
    pub cert_file: Option<PathBuf>,
    /// Private key, PEM: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) (`tls.key_file`, `WALCAST_TLS_KEY`).
    pub key_file: Option<PathBuf>,
    /// How often both files are read again; a changed, valid pair replaces the served one.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub reload_interval: Duration,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            cert_file: None,
            key_file: None,
            reload_interval: Duration::from_secs(5),
        }
    }
}

impl TlsSection {
    /// The certificate and key files when TLS is on.
    pub fn files(&self) -> Option<(&Path, &Path)> {
        Some((self.cert_file.as_deref()?, self.key_file.as_deref()?))
    }

    pub(super) fn apply_env(&mut self, get: &impl Fn(&str) -> Option<String>) {
        if let Some(v) = get("WALCAST_TLS_CERT") {
            self.cert_file = Some(PathBuf::from(v));
        }
        if let Some(v) = get("WALCAST_TLS_KEY") {
            self.key_file = Some(PathBuf::from(v));
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let (cert, key) =
            match (&self.cert_file, &self.key_file) {
                (None, None) => return Ok(()),
                (Some(cert), Some(key)) => (cert, key),
                (Some(_), None) => return Err(ConfigError::invalid(
                    "tls.key_file",
                    "tls.cert_file is set but tls.key_file is not: set both (WALCAST_TLS_KEY) to \
                     serve HTTPS, or neither for plain HTTP",
                )),
                (None, Some(_)) => return Err(ConfigError::invalid(
                    "tls.cert_file",
                    "tls.key_file is set but tls.cert_file is not: set both (WALCAST_TLS_CERT) \
                     to serve HTTPS, or neither for plain HTTP",
                )),
            };
        if self.reload_interval.is_zero() {
            return Err(ConfigError::invalid(
                "tls.reload_interval",
                "must be greater than zero; use e.g. \"5s\"",
            ));
        }
        readable("tls.cert_file", cert)?;
        readable("tls.key_file", key)?;
        crate::tls::load_server_config(cert, key).map_err(|e| {
            let key = match e {
                crate::tls::TlsError::Cert(..) => "tls.cert_file",
                _ => "tls.key_file",
            };
            ConfigError::invalid(key, e.to_string())
        })?;
        Ok(())
    }
}

fn readable(key: &str, path: &Path) -> Result<(), ConfigError> {
    std::fs::File::open(path).map(drop).map_err(|e| {
        ConfigError::invalid(
            key,
            format!(
                "cannot read {} ({e}); point it at a readable PEM file",
                path.display()
            ),
        )
    })
}

/// Checks the DATABASE_URL's TLS settings (`database_url` key): the root certificate file.
pub(super) fn validate_database_tls(tls: &PgTls) -> Result<(), ConfigError> {
    if let RootCert::File(_) = &tls.root_cert {
        tls.root_store().map_err(|message| {
            ConfigError::invalid(
                "database_url",
                format!("{message}; point sslrootcert at the PEM file of the CA that signed the server's certificate"),
            )
        })?;
    }
    Ok(())
}

impl Config {
    /// The DATABASE_URL's TLS settings (sslmode, sslrootcert); `None` without a database.
    /// `validate()` has already rejected URLs that do not parse.
    pub fn pg_tls(&self) -> Option<PgTls> {
        let url = self.database_url.as_deref()?;
        crate::source::parse_database_url(url)
            .ok()
            .map(|(_, tls)| tls)
    }
}
