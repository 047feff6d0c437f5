//! Who a request is and what it may see: JWT verification (`auth.mode = "jwt"`: HS/RS/PS/ES/EdDSA
//! from a secret, PEM files or a local JWKS file), the token's place in a request
//! (`Authorization: Bearer`, a `bearer.<jwt>` WebSocket subprotocol, `access_token=`), the admin
//! token, the browser origin and host checks (`origin`), and policies (`policy`) that turn a role's rules and the
//! token's claims into the subscription's own parameters before the hub sees them. Does not serve
//! sockets or evaluate changes: a policy's row filters become ordinary conditions.

mod keys;
mod origin;
pub mod policy;

use std::sync::Arc;

use axum::http::{header, HeaderMap};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Validation};
use serde_json::{Map, Value};

use crate::config::{AuthMode, Config};
pub use keys::KeyError;
use keys::KeyStore;
pub use policy::{Policy, PolicyError};

/// The WebSocket subprotocol prefix that carries a token (`bearer.<jwt>`), for browsers, which
/// cannot set headers on a WebSocket.
pub const BEARER_PROTOCOL: &str = "bearer.";
/// The subprotocol walcast answers with when a client offers it beside its token.
pub const WALCAST_PROTOCOL: &str = "walcast";

/// A verified token's holder.
#[derive(Clone, Debug)]
pub struct Principal {
    /// Every claim of the token.
    pub claims: Map<String, Value>,
    /// `exp` (seconds since the epoch).
    pub expires: Option<u64>,
}

impl Principal {
    /// A claim by dotted path (`sub`, `claims.tenant` = `tenant`, `app.org.id`).
    pub fn claim(&self, path: &str) -> Option<&Value> {
        let path = path.strip_prefix("claims.").unwrap_or(path);
        let mut parts = path.split('.');
        let mut v = self.claims.get(parts.next()?)?;
        for p in parts {
            v = v.get(p)?;
        }
        Some(v)
    }

    /// The `sub` claim, when it is a string.
    pub fn subject(&self) -> Option<&str> {
        self.claims.get("sub").and_then(Value::as_str)
    }
}

/// Why a token was refused: the message says which check failed (never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unauthorized(pub String);

/// What a request presented.
pub enum Credentials {
    /// No token anywhere.
    Missing,
    Token(String),
}

pub struct Authenticator {
    mode: AuthMode,
    keys: Option<KeyStore>,
    audience: Vec<String>,
    issuer: Vec<String>,
    leeway: u64,
    admin_token: Option<String>,
    allowed_origins: origin::Origins,
    public_hosts: origin::Hosts,
    policy: Option<Arc<Policy>>,
}

impl Authenticator {
    /// Loads the keys and the policy named by the configuration.
    pub fn from_config(config: &Config) -> Result<Authenticator, AuthSetupError> {
        let mode = config.auth_mode();
        let a = &config.auth;
        let keys = match mode {
            AuthMode::None => None,
            AuthMode::Jwt => Some(KeyStore::load(
                a.jwt_secret.as_deref(),
                &a.public_keys,
                a.jwks_file.as_deref(),
            )?),
        };
        let policy = match &a.policy_file {
            None => None,
            Some(path) => Some(Arc::new(Policy::load(path)?)),
        };
        Ok(Authenticator {
            mode,
            keys,
            audience: a.audience.clone(),
            issuer: a.issuer.clone(),
            leeway: a.leeway.as_secs(),
            admin_token: config.admin.token.clone().filter(|t| !t.is_empty()),
            allowed_origins: origin::Origins::new(&config.http.allowed_origins),
            public_hosts: origin::Hosts::new(&config.http.public_hosts),
            policy,
        })
    }

    /// No authentication, no policy: what tests of other stages use.
    pub fn open() -> Authenticator {
        Authenticator {
            mode: AuthMode::None,
            keys: None,
            audience: Vec::new(),
            issuer: Vec::new(),
            leeway: 0,
            admin_token: None,
            allowed_origins: origin::Origins::new(&[]),
            public_hosts: origin::Hosts::new(&[]),
            policy: None,
        }
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    pub fn policy(&self) -> Option<&Arc<Policy>> {
        self.policy.as_ref()
    }

    /// The request's principal: `None` in mode `none`; in mode `jwt` a verified token or 401.
    pub fn authenticate(&self, creds: &Credentials) -> Result<Option<Principal>, Unauthorized> {
        if self.mode == AuthMode::None {
            return Ok(None);
        }
        match creds {
            Credentials::Missing => Err(Unauthorized(
                "a token is required: send Authorization: Bearer <jwt>, the WebSocket subprotocol \
                 bearer.<jwt>, or access_token=<jwt>"
                    .into(),
            )),
            Credentials::Token(token) => self.verify(token).map(Some),
        }
    }

    /// Verifies a token's signature (with a key of its algorithm's family only), `exp`, `nbf`,
    /// `aud` and `iss`.
    pub fn verify(&self, token: &str) -> Result<Principal, Unauthorized> {
        let Some(keys) = &self.keys else {
            return Err(Unauthorized("no verification keys are configured".into()));
        };
        // `alg: none` (and any algorithm the crate does not know) fails here.
        let header = decode_header(token).map_err(|e| Unauthorized(describe(e.kind())))?;
        let candidates = keys.candidates(&header);
        if candidates.is_empty() {
            return Err(Unauthorized(format!(
                "no configured key verifies {:?} tokens{} (configured: {})",
                header.alg,
                header
                    .kid
                    .as_deref()
                    .map(|k| format!(" with kid {k:?}"))
                    .unwrap_or_default(),
                keys.describe()
            )));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if self.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.audience);
            required.push("aud");
        }
        if !self.issuer.is_empty() {
            validation.set_issuer(&self.issuer);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let mut last = ErrorKind::InvalidSignature;
        for key in &candidates {
            match decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => {
                    let expires = data.claims.get("exp").and_then(Value::as_u64);
                    return Ok(Principal {
                        claims: data.claims,
                        expires,
                    });
                }
                // Another key may hold the signature; any other failure is the token's.
                Err(e) if *e.kind() == ErrorKind::InvalidSignature => {}
                Err(e) => return Err(Unauthorized(describe(e.kind()))),
            }
            last = ErrorKind::InvalidSignature;
        }
        Err(Unauthorized(describe(&last)))
    }

    /// Whether the admin endpoints (`/metrics`, `/v1/*`) may be read with these headers: with
    /// `admin.token` set, only with it; without one, only while authentication is off.
    pub fn admin_allowed(&self, headers: &HeaderMap) -> Result<(), Unauthorized> {
        match &self.admin_token {
            Some(token) => match bearer(headers) {
                Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => Ok(()),
                Some(_) => Err(Unauthorized("the admin token is wrong".into())),
                None => Err(Unauthorized(
                    "the admin endpoints need Authorization: Bearer <admin.token>".into(),
                )),
            },
            None if self.mode == AuthMode::None => Ok(()),
            None => Err(Unauthorized(
                "the admin endpoints are closed: set admin.token (WALCAST_ADMIN_TOKEN) and send \
                 it as Authorization: Bearer <token>"
                    .into(),
            )),
        }
    }

    /// Whether a browser page of this `Origin` may open a socket: no `Origin` (not a browser),
    /// a same-origin page, a listed origin, or (with no list) a loopback origin; `["*"]` any.
    pub fn origin_allowed(&self, headers: &HeaderMap) -> Result<(), String> {
        // An `Origin` that is not text matches no allowed origin.
        let origin = headers
            .get(header::ORIGIN)
            .map(|v| v.to_str().unwrap_or("(not text)"));
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        self.allowed_origins.allows(origin, host)
    }

    /// Whether a request may address this host (`Host`, else the URI's authority as HTTP/2
    /// sends it): an IP literal, a loopback name or one of `http.public_hosts`.
    pub fn host_allowed(&self, headers: &HeaderMap, uri: &axum::http::Uri) -> Result<(), String> {
        let host = match headers.get(header::HOST) {
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| "the Host header is not text".to_owned())?,
            ),
            None => uri.authority().map(|a| a.as_str()),
        };
        self.public_hosts.allows(host)
    }
}

/// A socket's principal: what its subscriptions are authorised as, and until when. A fresh token
/// (`{"type":"access_token"}`) moves the expiry; it must name the same subject and role and carry
/// the same value for every claim the policy binds (`{claims.tenant}` in a row filter or
/// channel), since the socket's subscriptions were authorised with them.
pub struct SessionAuth {
    auth: Arc<Authenticator>,
    principal: parking_lot::RwLock<Principal>,
}

impl SessionAuth {
    pub fn new(auth: Arc<Authenticator>, principal: Principal) -> Arc<SessionAuth> {
        Arc::new(SessionAuth {
            auth,
            principal: parking_lot::RwLock::new(principal),
        })
    }

    pub fn principal(&self) -> Principal {
        self.principal.read().clone()
    }

    pub fn authenticator(&self) -> &Arc<Authenticator> {
        &self.auth
    }

    /// `exp` of the token in force.
    pub fn expires(&self) -> Option<u64> {
        self.principal.read().expires
    }

    /// Checks a fresh token and makes it the socket's; its `exp` on success.
    pub fn refresh(&self, token: &str) -> Result<Option<u64>, Unauthorized> {
        let fresh = self.auth.verify(token)?;
        let current = self.principal.read().clone();
        if fresh.subject() != current.subject() {
            return Err(Unauthorized(
                "the new token names another subject (sub) than the socket's".into(),
            ));
        }
        if let Some(policy) = &self.auth.policy {
            if policy.role_of(&fresh) != policy.role_of(&current) {
                return Err(Unauthorized(
                    "the new token has another role than the socket's; open a new socket".into(),
                ));
            }
            // The socket's subscriptions were authorised with these claims bound into their
            // filters and channels: a token with other values would inherit them.
            let bound = policy.bound_claims(&current);
            if let Some((path, _)) = bound
                .iter()
                .zip(policy.bound_claims(&fresh))
                .find(|((_, old), (_, new))| *old != *new)
                .map(|(old, _)| old)
            {
                return Err(Unauthorized(format!(
                    "the new token's claim {path:?} differs from the socket's, and the policy \
                     binds it into this socket's subscriptions; open a new socket"
                )));
            }
        }
        let expires = fresh.expires;
        *self.principal.write() = fresh;
        Ok(expires)
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why the keys or the policy could not be loaded at start.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("auth: {0}")]
    Keys(#[from] KeyError),
    #[error("auth.policy_file: {0}")]
    Policy(#[from] PolicyError),
}

/// The token a request carries: `Authorization: Bearer`, then a `bearer.<jwt>` subprotocol,
/// then `access_token=` (already taken out of the query parameters by the caller).
pub fn credentials(headers: &HeaderMap, access_token: Option<&str>) -> Credentials {
    if let Some(t) = bearer(headers) {
        return Credentials::Token(t.to_owned());
    }
    if let Some(t) = subprotocol_token(headers) {
        return Credentials::Token(t.to_owned());
    }
    match access_token {
        Some(t) if !t.is_empty() => Credentials::Token(t.to_owned()),
        _ => Credentials::Missing,
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The token of a `bearer.<jwt>` entry of `Sec-WebSocket-Protocol`.
pub fn subprotocol_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|p| p.strip_prefix(BEARER_PROTOCOL))
        .filter(|t| !t.is_empty())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired (exp)".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        ErrorKind::InvalidAudience => "the token's audience (aud) is not accepted here".into(),
        ErrorKind::InvalidIssuer => "the token's issuer (iss) is not accepted here".into(),
        ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("the token has no {c} claim"),
        ErrorKind::InvalidClaimFormat(c) => format!("the token's {c} claim is malformed"),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "the token's algorithm is not accepted for this key".into()
        }
        ErrorKind::UnsupportedAlgorithm => "the token's algorithm is not supported".into(),
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => {
            "not a well-formed JWT (or an unsupported algorithm such as none)".into()
        }
        other => format!("the token cannot be verified ({other:?})"),
    }
}

#[cfg(test)]
mod tests;
