//! The configuration tree: TOML file, then env overrides, then CLI flags, then `validate()`.
//! Owns loading and checking settings; it never reads the process environment itself (callers
//! hand in an env lookup) and does not start anything.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod auth;
mod cli;
mod journal;
mod limits;
mod named;
mod sections;
mod tls;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use auth::{AdminSection, AuthMode, AuthSection, HttpSection};
pub use cli::{Cli, Command, PluginCommand};
pub use journal::{JournalSection, DEFAULT_JOURNAL_DIR};
pub use limits::{Limits, LimitsConfig};
pub use named::NamedSection;
pub use sections::{
    EmbeddedConfig, LogConfig, NotifyConfig, PluginsConfig, ReplicationConfig, SessionsConfig,
    SnapshotConfig, TablesConfig,
};
pub use tls::TlsSection;

/// Default config file looked up in the working directory when `--config` is not given.
const DEFAULT_CONFIG_FILE: &str = "walcast.toml";

/// A configuration problem; the message names the key and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Everything walcast needs to run. Secrets (the database URL's password) never appear in `Debug`.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP/WebSocket listen address (`listen`, `WALCAST_LISTEN`, `--listen`): `ip:port`, or
    /// `host:port` resolved at start to the first address the resolver gives.
    #[serde(deserialize_with = "de_socket_addr")]
    pub listen: SocketAddr,
    /// Postgres connection; `None` starts the embedded throwaway cluster with demo data.
    #[serde(serialize_with = "ser_secret")]
    pub database_url: Option<String>,
    pub replication: ReplicationConfig,
    pub tables: TablesConfig,
    pub sessions: SessionsConfig,
    pub embedded: EmbeddedConfig,
    pub plugins: PluginsConfig,
    pub journal: JournalSection,
    /// Bounds of the named subscriptions (`[named]`).
    pub named: NamedSection,
    /// Bounds on hostile input in the filter and plugin layers (`[limits]`).
    pub limits: LimitsConfig,
    /// HTTPS/WSS on `listen` (`[tls]`).
    pub tls: TlsSection,
    pub snapshot: SnapshotConfig,
    pub notify: NotifyConfig,
    pub log: LogConfig,
    pub auth: AuthSection,
    pub admin: AdminSection,
    pub http: HttpSection,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            database_url: None,
            replication: ReplicationConfig::default(),
            tables: TablesConfig::default(),
            sessions: SessionsConfig::default(),
            embedded: EmbeddedConfig::default(),
            plugins: PluginsConfig::default(),
            journal: JournalSection::default(),
            named: NamedSection::default(),
            limits: LimitsConfig::default(),
            tls: TlsSection::default(),
            snapshot: SnapshotConfig::default(),
            notify: NotifyConfig::default(),
            log: LogConfig::default(),
            auth: AuthSection::default(),
            admin: AdminSection::default(),
            http: HttpSection::default(),
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_database_url),
            )
            .field("replication", &self.replication)
            .field("tables", &self.tables)
            .field("sessions", &self.sessions)
            .field("embedded", &self.embedded)
            .field("journal", &self.journal)
            .field("named", &self.named)
            .field("tls", &self.tls)
            .field("log", &self.log)
            .field("auth", &self.auth)
            .field("admin", &self.admin)
            .field("http", &self.http)
            .finish()
    }
}

impl Config {
    /// The authentication mode in force (`auth.mode`, or `none` where `validate` allowed it).
    pub fn auth_mode(&self) -> AuthMode {
        match self.auth.mode {
            Some(mode) => mode,
            None => self
                .auth
                .resolve(self.listen, self.database_url.is_none())
                .unwrap_or(AuthMode::Jwt),
        }
    }

    /// File (explicit `--config`, else `./walcast.toml` if present), then env, then CLI, then
    /// `validate()`. `env` is the environment lookup, so tests can pass a fake one.
    pub fn load(cli: &Cli, env: &impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let default_file = Path::new(DEFAULT_CONFIG_FILE);
        let path = match &cli.config {
            Some(path) => Some(path.as_path()),
            None if default_file.is_file() => Some(default_file),
            None => None,
        };
        let mut config = match path {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        config.apply_env(env)?;
        config.apply_cli(cli)?;
        config.validate()?;
        // Decided once, while "no database_url" still means the embedded demo.
        config.auth.mode = Some(
            config
                .auth
                .resolve(config.listen, config.database_url.is_none())?,
        );
        Ok(config)
    }

    /// Parses one TOML file (no env, CLI or validation).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_owned(),
            cause,
        })?;
        Config::from_toml_str(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text; the error text carries toml's line/column and the offending key.
    pub fn from_toml_str(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|err| err.to_string().trim_end().to_owned())
    }

    /// Applies the documented `DATABASE_URL` / `WALCAST_*` overrides. Empty values are ignored
    /// so that `WALCAST_SLOT=` in a compose file does not blank a setting.
    pub fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let get = |key: &str| env(key).filter(|v| !v.trim().is_empty());
        if let Some(url) = get("DATABASE_URL") {
            self.database_url = Some(url);
        }
        if let Some(v) = get("WALCAST_LISTEN") {
            self.listen = parse_listen("WALCAST_LISTEN", &v)?;
        }
        if let Some(v) = get("WALCAST_SLOT") {
            self.replication.slot = v;
        }
        if let Some(v) = get("WALCAST_TEMPORARY_SLOT") {
            self.replication.temporary = parse_bool("WALCAST_TEMPORARY_SLOT", &v)?;
        }
        if let Some(v) = get("WALCAST_TABLES") {
            self.tables.allow = split_list(std::iter::once(v.as_str()));
        }
        if let Some(v) = get("WALCAST_QUEUE_CAPACITY") {
            self.sessions.queue_capacity = parse_capacity("WALCAST_QUEUE_CAPACITY", &v)?;
        }
        if let Some(v) = get("WALCAST_NOTIFY_CHANNELS") {
            self.notify.channels = split_list(std::iter::once(v.as_str()));
        }
        if let Some(v) = get("WALCAST_SNAPSHOT_MAX_CONCURRENT") {
            self.snapshot.max_concurrent = parse_capacity("WALCAST_SNAPSHOT_MAX_CONCURRENT", &v)?;
        }
        if let Some(v) = get("WALCAST_MAX_SUBSCRIPTIONS_PER_SOCKET") {
            self.sessions.max_subscriptions_per_socket =
                parse_capacity("WALCAST_MAX_SUBSCRIPTIONS_PER_SOCKET", &v)?;
        }
        if let Some(v) = get("WALCAST_MAX_MESSAGES_PER_SECOND") {
            self.sessions.max_messages_per_second =
                u32::try_from(parse_capacity("WALCAST_MAX_MESSAGES_PER_SECOND", &v)?)
                    .unwrap_or(u32::MAX);
        }
        for (key, slot) in [
            ("WALCAST_WRITE_TIMEOUT", &mut self.sessions.write_timeout),
            ("WALCAST_PING_INTERVAL", &mut self.sessions.ping_interval),
            ("WALCAST_IDLE_TIMEOUT", &mut self.sessions.idle_timeout),
        ] {
            if let Some(v) = get(key) {
                *slot = parse_duration(&v).map_err(|message| ConfigError::invalid(key, message))?;
            }
        }
        if let Some(v) = get("WALCAST_PLUGIN_DIR") {
            self.plugins.dir = Some(PathBuf::from(v));
        }
        if let Some(v) = get("WALCAST_LOG") {
            self.log.level = v;
        }
        // The usual variable of Rust programs, honoured when set; `--log` still wins.
        if let Some(v) = get("RUST_LOG") {
            self.log.level = v;
        }
        if let Some(v) = get("WALCAST_LOG_FORMAT") {
            self.log.format = v;
        }
        if let Some(v) = get("WALCAST_PG_BIN") {
            self.embedded.pg_bin = PathBuf::from(v);
        }
        if let Some(v) = get("WALCAST_DATA_DIR") {
            self.embedded.data_dir = Some(PathBuf::from(v));
        }
        self.journal.apply_env(&get)?;
        self.named.apply_env(&get)?;
        self.limits.apply_env(&get)?;
        self.tls.apply_env(&get);
        self.auth.apply_env(&get)?;
        self.admin.apply_env(&get);
        self.http.apply_env(&get)?;
        Ok(())
    }

    /// Applies CLI flags; flags that were not given leave the value alone.
    pub fn apply_cli(&mut self, cli: &Cli) -> Result<(), ConfigError> {
        if let Some(v) = &cli.listen {
            self.listen = parse_listen("--listen", v)?;
        }
        if let Some(v) = &cli.database_url {
            self.database_url = Some(v.clone());
        }
        if let Some(v) = &cli.slot {
            self.replication.slot = v.clone();
        }
        if cli.temporary_slot {
            self.replication.temporary = true;
        }
        if !cli.tables.is_empty() {
            self.tables.allow = split_list(cli.tables.iter().map(String::as_str));
        }
        if let Some(v) = &cli.queue_capacity {
            self.sessions.queue_capacity = parse_capacity("--queue-capacity", v)?;
        }
        if let Some(v) = &cli.plugin_dir {
            self.plugins.dir = Some(v.clone());
        }
        if let Some(v) = &cli.log {
            self.log.level = v.clone();
        }
        if let Some(v) = &cli.log_format {
            self.log.format = v.clone();
        }
        if cli.no_demo {
            self.embedded.demo = false;
        }
        Ok(())
    }

    /// Checks every value; the first problem is returned, naming the key and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.journal.validate()?;
        self.named.validate()?;
        self.limits.validate()?;
        self.tls.validate()?;
        self.auth
            .resolve(self.listen, self.database_url.is_none())?;
        for (key, value) in [
            ("http.max_connections", self.http.max_connections),
            (
                "http.max_connections_per_ip",
                self.http.max_connections_per_ip,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        let slot = &self.replication.slot;
        if !is_valid_slot_name(slot) {
            return Err(ConfigError::invalid(
                "replication.slot",
                format!(
                    "{slot:?} is not a valid slot name; use lowercase letters, digits and \
                     underscores (max 63)"
                ),
            ));
        }
        if self.replication.status_interval.is_zero() {
            return Err(ConfigError::invalid(
                "replication.status_interval",
                "must be greater than zero; use e.g. \"10s\"",
            ));
        }
        if self.replication.max_backoff.is_zero() {
            return Err(ConfigError::invalid(
                "replication.max_backoff",
                "must be greater than zero; use e.g. \"30s\"",
            ));
        }
        if self.snapshot.max_concurrent == 0 {
            return Err(ConfigError::invalid(
                "snapshot.max_concurrent",
                "must be at least 1; use e.g. 4",
            ));
        }
        if self.sessions.max_messages_per_second == 0 {
            return Err(ConfigError::invalid(
                "sessions.max_messages_per_second",
                "must be at least 1",
            ));
        }
        if self.sessions.max_subscriptions_per_socket == 0 {
            return Err(ConfigError::invalid(
                "sessions.max_subscriptions_per_socket",
                "must be at least 1; use e.g. 100",
            ));
        }
        for (key, value) in [
            ("sessions.write_timeout", self.sessions.write_timeout),
            ("sessions.ping_interval", self.sessions.ping_interval),
            ("sessions.idle_timeout", self.sessions.idle_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::invalid(
                    key,
                    "must be greater than zero; use e.g. \"30s\"",
                ));
            }
        }
        if self.sessions.idle_timeout <= self.sessions.ping_interval {
            return Err(ConfigError::invalid(
                "sessions.idle_timeout",
                format!(
                    "{} is not longer than sessions.ping_interval ({}): a client could not answer \
                     a ping in time; use at least twice the ping interval, e.g. \"60s\" with \
                     \"20s\"",
                    humantime::format_duration(self.sessions.idle_timeout),
                    humantime::format_duration(self.sessions.ping_interval)
                ),
            ));
        }
        if self.sessions.queue_capacity == 0 {
            return Err(ConfigError::invalid(
                "sessions.queue_capacity",
                "must be at least 1; use e.g. 1024",
            ));
        }
        if !(4..=100_000).contains(&self.plugins.max_instances) {
            return Err(ConfigError::invalid(
                "plugins.max_instances",
                "must be between 4 and 100000; use e.g. 256 (one per live plugin group)",
            ));
        }
        if let Some(url) = &self.database_url {
            match crate::source::parse_database_url(url) {
                Ok((_, pg_tls)) => tls::validate_database_tls(&pg_tls)?,
                Err(err) => {
                    let message = scrub_password(url, &err);
                    return Err(ConfigError::invalid(
                        "database_url",
                        format!(
                            "{} is not a valid Postgres connection string ({message}); use e.g. \
                             postgres://user:password@host:5432/dbname",
                            redact_database_url(url)
                        ),
                    ));
                }
            }
        }
        self.tables.glob_set()?;
        if let Err(err) = tracing_subscriber::EnvFilter::builder().parse(&self.log.level) {
            return Err(ConfigError::invalid(
                "log.level",
                format!(
                    "{:?} is not a valid log filter ({err}); use e.g. \"info\" or \
                     \"info,walcast=debug\"",
                    self.log.level
                ),
            ));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ConfigError::invalid(
                "log.format",
                format!(
                    "{:?} is not a log format; use \"text\" or \"json\"",
                    self.log.format
                ),
            ));
        }
        Ok(())
    }

    /// The parsed connection settings, `None` when no database is configured (embedded mode).
    /// `validate()` has already rejected URLs that do not parse.
    /// Where every Postgres connection of this process goes, with the DATABASE_URL's TLS
    /// settings; `None` without a database. `validate()` has already rejected URLs that do not
    /// parse.
    pub fn pg_endpoint(&self) -> Option<crate::source::PgEndpoint> {
        let url = self.database_url.as_deref()?;
        let (config, tls) = crate::source::parse_database_url(url).ok()?;
        Some(crate::source::PgEndpoint::new(config, tls))
    }

    pub fn pg_config(&self) -> Option<tokio_postgres::Config> {
        self.database_url
            .as_deref()
            .and_then(|url| crate::source::parse_database_url(url).ok())
            .map(|(pg, _)| pg)
    }
}

/// Replaces the password of a URL (`user:pw@`) or key/value (`password=pw`) connection string.
pub fn redact_database_url(url: &str) -> String {
    match find_password(url) {
        Some((start, end)) => format!("{}***{}", &url[..start], &url[end..]),
        None => url.to_owned(),
    }
}

/// Byte range of the password in a connection string, found without a full parse so it also
/// works on strings that do not parse.
fn find_password(url: &str) -> Option<(usize, usize)> {
    if let Some(scheme_end) = url.find("://") {
        let rest_start = scheme_end + 3;
        let rest = &url[rest_start..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let at = rest[..authority_end].rfind('@')?;
        let colon = rest[..at].find(':')?;
        return Some((rest_start + colon + 1, rest_start + at));
    }
    let key = url.find("password")?;
    let after_key = &url[key + "password".len()..];
    let eq = after_key.find('=')?;
    if !after_key[..eq].trim().is_empty() {
        return None;
    }
    let value_start = key + "password".len() + eq + 1;
    let value = &url[value_start..];
    let skipped = value.len() - value.trim_start().len();
    let start = value_start + skipped;
    let value = &url[start..];
    let len = if let Some(quoted) = value.strip_prefix('\'') {
        quoted.find('\'').map_or(value.len(), |i| i + 2)
    } else {
        value.find(char::is_whitespace).unwrap_or(value.len())
    };
    Some((start, start + len))
}

/// Removes the password from a parser message in case the parser echoed it.
fn scrub_password(url: &str, message: &str) -> String {
    match find_password(url) {
        Some((start, end)) if end > start => message.replace(&url[start..end], "***"),
        _ => message.to_owned(),
    }
}

/// Postgres slot names: lowercase letters, digits and underscores, at most 63 bytes.
fn is_valid_slot_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn parse_listen(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    resolve_listen(value).map_err(|message| ConfigError::invalid(key, message))
}

/// `ip:port` as it is, or `host:port` resolved once, now: the first address the system resolver
/// gives (as `TcpListener::bind` would try first), so `localhost:7700` listens on 127.0.0.1 or
/// ::1 as `/etc/hosts` and `/etc/gai.conf` order them. The address is fixed from then on: a name
/// whose addresses change later is not looked up again.
fn resolve_listen(value: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let text = value.trim();
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let hint = "use host:port such as 127.0.0.1:7700, [::1]:7700 or localhost:7700";
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs.next().ok_or_else(|| {
            format!("{value:?} is not a listen address: the name has no address; {hint}")
        }),
        Err(err) => Err(format!("{value:?} is not a listen address ({err}); {hint}")),
    }
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::invalid(
            key,
            format!("{value:?} is not a boolean; use true or false"),
        )),
    }
}

fn parse_capacity(key: &str, value: &str) -> Result<usize, ConfigError> {
    value.trim().parse().map_err(|_| {
        ConfigError::invalid(
            key,
            format!("{value:?} is not a whole number; use e.g. 1024"),
        )
    })
}

/// Flattens comma lists (`a,b`) and repeated values into trimmed, non-empty entries.
fn split_list<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    values
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parses a human duration such as `500ms`, `10s`, `2m`, `1h 30m` with `humantime`. The wrapper
/// only adds the walcast message style (the offending text plus an example of the fix); the key
/// is named by the caller (toml's error names the line and key around this message).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    humantime::parse_duration(text).map_err(|err| {
        format!(
            "{text:?} is not a duration ({err}); use a number with a unit, e.g. \"500ms\", \
             \"10s\", \"2m\" or \"1h 30m\""
        )
    })
}

fn de_duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(de)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// Serialized as `humantime` prints it (`7days`), which `parse_duration` reads back.
pub(super) fn ser_duration<S: Serializer>(value: &Duration, ser: S) -> Result<S::Ok, S::Error> {
    ser.collect_str(&humantime::format_duration(*value))
}

/// A secret serializes as whether it is set, never as its value.
fn ser_secret<S: Serializer>(value: &Option<String>, ser: S) -> Result<S::Ok, S::Error> {
    value.as_ref().map(|_| "<redacted>").serialize(ser)
}

fn de_socket_addr<'de, D: Deserializer<'de>>(de: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(de)?;
    resolve_listen(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests;
