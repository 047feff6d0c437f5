//! The `[auth]`, `[admin]` and `[http]` sections: who may connect (JWT keys and checks, the policy
//! file), the admin token, allowed browser origins and host names, trusted proxies. Decides which
//! authentication mode applies when none is set (only the embedded demo and a loopback listener
//! may run without one); loading keys and checking tokens is `auth`'s work.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{de_duration, ser_duration, ser_secret, split_list, ConfigError};

/// `auth.mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Anyone who reaches the port reads every allowed table.
    None,
    /// A JWT is required on every request but `/healthz` and `/readyz`.
    Jwt,
}

impl AuthMode {
    fn parse(key: &str, text: &str) -> Result<AuthMode, ConfigError> {
        match text {
            "none" => Ok(AuthMode::None),
            "jwt" => Ok(AuthMode::Jwt),
            other => Err(ConfigError::invalid(
                key,
                format!("{other:?}: give \"jwt\" or \"none\""),
            )),
        }
    }
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// `none` or `jwt` (`WALCAST_AUTH_MODE`). Unset: `none` for the embedded demo and a loopback
    /// listener; walcast refuses to start otherwise.
    pub mode: Option<AuthMode>,
    /// HMAC secret for HS256/384/512 tokens (`WALCAST_JWT_SECRET`). Never logged.
    #[serde(serialize_with = "ser_secret")]
    pub jwt_secret: Option<String>,
    /// PEM public keys (RSA, EC P-256/P-384, Ed25519) for RS*/PS*/ES*/EdDSA tokens.
    pub public_keys: Vec<PathBuf>,
    /// A local JWKS file (`{"keys":[...]}`), read again when it changes (`WALCAST_JWKS_FILE`).
    pub jwks_file: Option<PathBuf>,
    /// Accepted `aud` values; when set, tokens must carry one of them.
    pub audience: Vec<String>,
    /// Accepted `iss` values; when set, tokens must carry one of them.
    pub issuer: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub leeway: Duration,
    /// The policy file (TOML): per role, which tables, operations, columns, rows, plugins and
    /// channels (`WALCAST_POLICY_FILE`).
    pub policy_file: Option<PathBuf>,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            mode: None,
            jwt_secret: None,
            public_keys: Vec::new(),
            jwks_file: None,
            audience: Vec::new(),
            issuer: Vec::new(),
            leeway: Duration::from_secs(30),
            policy_file: None,
        }
    }
}

impl std::fmt::Debug for AuthSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSection")
            .field("mode", &self.mode)
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("public_keys", &self.public_keys)
            .field("jwks_file", &self.jwks_file)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("leeway", &self.leeway)
            .field("policy_file", &self.policy_file)
            .finish()
    }
}

impl AuthSection {
    pub(super) fn apply_env(
        &mut self,
        get: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(v) = get("WALCAST_AUTH_MODE") {
            self.mode = Some(AuthMode::parse("WALCAST_AUTH_MODE", v.trim())?);
        }
        if let Some(v) = get("WALCAST_JWT_SECRET") {
            self.jwt_secret = Some(v);
        }
        if let Some(v) = get("WALCAST_JWKS_FILE") {
            self.jwks_file = Some(PathBuf::from(v));
        }
        if let Some(v) = get("WALCAST_JWT_AUDIENCE") {
            self.audience = split_list(std::iter::once(v.as_str()));
        }
        if let Some(v) = get("WALCAST_JWT_ISSUER") {
            self.issuer = split_list(std::iter::once(v.as_str()));
        }
        if let Some(v) = get("WALCAST_POLICY_FILE") {
            self.policy_file = Some(PathBuf::from(v));
        }
        Ok(())
    }

    /// The mode in force: the one set, or `none` where that is safe (the embedded demo, a
    /// loopback listener); otherwise an error naming the fix.
    pub fn resolve(&self, listen: SocketAddr, embedded: bool) -> Result<AuthMode, ConfigError> {
        let mode = match self.mode {
            Some(mode) => mode,
            None if embedded || listen.ip().is_loopback() => AuthMode::None,
            None => {
                return Err(ConfigError::invalid(
                    "auth.mode",
                    format!(
                        "not set, and walcast listens on {listen}, which is not a loopback \
                         address: anyone who reaches the port could read every table. Set \
                         auth.mode = \"jwt\" (WALCAST_AUTH_MODE=jwt) with auth.jwt_secret, \
                         auth.public_keys or auth.jwks_file, or auth.mode = \"none\" to serve \
                         without authentication on purpose"
                    ),
                ))
            }
        };
        if mode == AuthMode::Jwt
            && self.jwt_secret.as_deref().is_none_or(str::is_empty)
            && self.public_keys.is_empty()
            && self.jwks_file.is_none()
        {
            return Err(ConfigError::invalid(
                "auth.mode",
                "\"jwt\" needs a key: set auth.jwt_secret (WALCAST_JWT_SECRET), \
                 auth.public_keys (PEM files) or auth.jwks_file (WALCAST_JWKS_FILE)",
            ));
        }
        if mode == AuthMode::None && self.policy_file.is_some() {
            return Err(ConfigError::invalid(
                "auth.policy_file",
                "policies bind rules to token claims: set auth.mode = \"jwt\" to use them",
            ));
        }
        Ok(mode)
    }
}

#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Bearer token for `/metrics` and `/v1/*` (`WALCAST_ADMIN_TOKEN`). Never logged.
    #[serde(serialize_with = "ser_secret")]
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSection")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl AdminSection {
    pub(super) fn apply_env(&mut self, get: &impl Fn(&str) -> Option<String>) {
        if let Some(v) = get("WALCAST_ADMIN_TOKEN") {
            self.token = Some(v);
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Origins (`https://app.example.com`) whose pages may open sockets. Empty: only same-origin
    /// pages and pages served from a loopback origin (`http://localhost:3000`,
    /// `http://127.0.0.1:8080`, `http://[::1]`); `["*"]`: every origin. A request without
    /// `Origin` (not a browser) is always let in (`WALCAST_ALLOWED_ORIGINS`, comma list).
    pub allowed_origins: Vec<String>,
    /// Host names (`walcast.example.com`, or `name:port` for one port only) requests may
    /// address besides IP literals and loopback names: a browser reaching walcast through a
    /// name outside the list is refused (DNS rebinding); `["*"]`: any name
    /// (`WALCAST_PUBLIC_HOSTS`, comma list).
    pub public_hosts: Vec<String>,
    /// Sockets (`/ws`, `/listen`) open at once (`WALCAST_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Sockets open at once from one client address (IPv6: one /64); loopback addresses are
    /// not counted (`WALCAST_MAX_CONNECTIONS_PER_IP`).
    pub max_connections_per_ip: usize,
    /// Reverse proxies (IP addresses or CIDR blocks) whose `X-Forwarded-For` / `Forwarded`
    /// headers name the client (`WALCAST_TRUSTED_PROXIES`, comma list). Empty: the TCP peer is
    /// the client.
    #[serde(deserialize_with = "de_nets", serialize_with = "ser_nets")]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            allowed_origins: Vec::new(),
            public_hosts: Vec::new(),
            max_connections: 100_000,
            max_connections_per_ip: 1_000,
            trusted_proxies: Vec::new(),
        }
    }
}

impl HttpSection {
    pub(super) fn apply_env(
        &mut self,
        get: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(v) = get("WALCAST_ALLOWED_ORIGINS") {
            self.allowed_origins = split_list(std::iter::once(v.as_str()));
        }
        if let Some(v) = get("WALCAST_PUBLIC_HOSTS") {
            self.public_hosts = split_list(std::iter::once(v.as_str()));
        }
        if let Some(v) = get("WALCAST_MAX_CONNECTIONS") {
            self.max_connections = super::parse_capacity("WALCAST_MAX_CONNECTIONS", &v)?;
        }
        if let Some(v) = get("WALCAST_MAX_CONNECTIONS_PER_IP") {
            self.max_connections_per_ip =
                super::parse_capacity("WALCAST_MAX_CONNECTIONS_PER_IP", &v)?;
        }
        if let Some(v) = get("WALCAST_TRUSTED_PROXIES") {
            self.trusted_proxies = split_list(std::iter::once(v.as_str()))
                .iter()
                .map(|text| parse_net(text))
                .collect::<Result<_, _>>()
                .map_err(|message| ConfigError::invalid("WALCAST_TRUSTED_PROXIES", message))?;
        }
        Ok(())
    }
}

/// An address (`10.0.0.7`, `::1`: that address alone) or a CIDR block (`10.0.0.0/8`).
pub(crate) fn parse_net(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<std::net::IpAddr>() {
        return Ok(ipnet::IpNet::from(ip));
    }
    text.parse::<ipnet::IpNet>().map_err(|_| {
        format!(
            "{text:?} is neither an IP address nor a CIDR block; use e.g. 10.0.0.7 or 10.0.0.0/8"
        )
    })
}

fn ser_nets<S: serde::Serializer>(nets: &[ipnet::IpNet], ser: S) -> Result<S::Ok, S::Error> {
    ser.collect_seq(nets.iter().map(ToString::to_string))
}

fn de_nets<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|text| parse_net(text).map_err(serde::de::Error::custom))
        .collect()
}
