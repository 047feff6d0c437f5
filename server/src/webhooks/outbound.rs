//! The HTTP client of deliveries and its guard against private addresses: which URLs an endpoint
//! may have (`check_url`), which addresses a name may resolve to at connect time (the resolver,
//! so that DNS rebinding after the check gains nothing), one POST and what its answer means
//! (`Outcome`, `Retry-After`). Does not sign, schedule or keep endpoint state.
//!
//! One `reqwest` client for every endpoint: connections are pooled per host, TLS is rustls with
//! the webpki roots plus an optional CA file, proxies come from `HTTP_PROXY`/`HTTPS_PROXY`/
//! `NO_PROXY` (reqwest's default), and no redirect is followed (a 3xx would otherwise be a hop
//! past the checks into wherever it points).
//!
//! Through a proxy the proxy resolves the endpoint's name, so the resolver guard covers only the
//! proxy's own name; URL literals are still checked here, and the proxy is the operator's to
//! restrict.

use std::error::Error as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};

/// The setting that lets endpoints reach private addresses, named in every refusal.
const ALLOW_PRIVATE: &str = "webhooks.allow_private (env WALCAST_WEBHOOKS_ALLOW_PRIVATE)";
/// How much of a response body is read (and dropped) so that the connection can be reused; a
/// longer body closes the connection instead of being read to its end.
const DRAIN_LIMIT: usize = 64 * 1024;

/// A URL an endpoint may not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("webhook url {url:?} does not parse: {source}")]
    Parse {
        url: String,
        #[source]
        source: url::ParseError,
    },
    #[error("webhook url scheme {0:?} is not allowed: use http or https")]
    Scheme(String),
    #[error("webhook url carries a user name or password; send credentials as endpoint headers")]
    Userinfo,
    #[error("webhook url has no host")]
    NoHost,
    #[error(
        "webhook url host {host} is a {range} address; private addresses need {ALLOW_PRIVATE}"
    )]
    Private { host: String, range: &'static str },
}

/// The client could not be built (bad CA file).
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("cannot read webhooks CA file {path}: {source}")]
    ReadCa {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("webhooks CA file {path} holds no PEM certificate: {source}")]
    ParseCa {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("webhooks CA file {path} holds no PEM certificate")]
    EmptyCa { path: PathBuf },
    #[error("cannot build the webhooks HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

/// What an address range is, when deliveries may not go there; `None` for a public address.
/// IPv4 inside IPv6 (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`)
/// is judged as the IPv4 address it reaches.
pub fn refused_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

/// `(network, prefix length, range)`, the spec's ranges first, then multicast and reserved blocks
/// that no webhook receiver lives in.
const V4_REFUSED: &[(u32, u8, &str)] = &[
    (0x0000_0000, 8, "unspecified"),     // 0.0.0.0/8, "this network"
    (0x7F00_0000, 8, "loopback"),        // 127.0.0.0/8
    (0x0A00_0000, 8, "private"),         // 10.0.0.0/8
    (0xAC10_0000, 12, "private"),        // 172.16.0.0/12
    (0xC0A8_0000, 16, "private"),        // 192.168.0.0/16
    (0xA9FE_0000, 16, "link-local"),     // 169.254.0.0/16
    (0x6440_0000, 10, "shared (CGNAT)"), // 100.64.0.0/10
    (0xC000_0200, 24, "documentation"),  // 192.0.2.0/24
    (0xC633_6400, 24, "documentation"),  // 198.51.100.0/24
    (0xCB00_7100, 24, "documentation"),  // 203.0.113.0/24
    (0xFFFF_FFFF, 32, "broadcast"),      // 255.255.255.255
    (0xC000_0000, 24, "protocol assignments"), // 192.0.0.0/24
    (0xC612_0000, 15, "benchmarking"),   // 198.18.0.0/15
    (0xE000_0000, 4, "multicast"),       // 224.0.0.0/4
    (0xF000_0000, 4, "reserved"),        // 240.0.0.0/4
];

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let ip = u32::from(ip);
    V4_REFUSED
        .iter()
        .find(|(net, len, _)| ip >> (32 - u32::from(*len)) == net >> (32 - u32::from(*len)))
        .map(|(_, _, range)| *range)
}

const V6_REFUSED: &[(u128, u8, &str)] = &[
    (0xfc00 << 112, 7, "unique-local"),       // fc00::/7
    (0xfe80 << 112, 10, "link-local"),        // fe80::/10
    (0xfec0 << 112, 10, "site-local"),        // fec0::/10, deprecated, private in practice
    (0x2001_0db8 << 96, 32, "documentation"), // 2001:db8::/32
    (0x3fff << 112, 20, "documentation"),     // 3fff::/20 (RFC 9637)
    (0xff00 << 112, 8, "multicast"),          // ff00::/8
];

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    let bits = u128::from(ip);
    let embedded_v4 = Ipv4Addr::from(bits as u32);
    // ::ffff:0:0/96 (mapped), ::/96 (compatible, deprecated; :: and ::1 are handled above), and
    // 64:ff9b::/96 (NAT64), each reaching the IPv4 address in its last 32 bits.
    let high = bits >> 32;
    if high == 0xffff || high == 0 || high == 0x0064_ff9b_0000_0000_0000_0000 {
        return refused_v4(embedded_v4);
    }
    V6_REFUSED
        .iter()
        .find(|(net, len, _)| bits >> (128 - u32::from(*len)) == net >> (128 - u32::from(*len)))
        .map(|(_, _, range)| *range)
}

/// The checks made before an endpoint is accepted (admin API, config) and again before each
/// request: `http` or `https`, no user info, a host, and, unless `allow_private`, a host that
/// is neither a refused IP literal nor `localhost` (a literal never reaches the resolver, so the
/// check here is the only one it gets). Names are checked when connecting, by the resolver.
pub fn check_url(url: &str, allow_private: bool) -> Result<Url, UrlError> {
    let parsed = Url::parse(url).map_err(|source| UrlError::Parse {
        url: url.to_owned(),
        source,
    })?;
    check_parsed(&parsed, allow_private)?;
    Ok(parsed)
}

fn check_parsed(url: &Url, allow_private: bool) -> Result<(), UrlError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::Scheme(url.scheme().to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Userinfo);
    }
    let host = url.host().ok_or(UrlError::NoHost)?;
    if allow_private {
        return Ok(());
    }
    let range = match host {
        url::Host::Ipv4(ip) => refused_v4(ip),
        url::Host::Ipv6(ip) => refused_v6(ip),
        // RFC 6761: `localhost` and names under it are loopback whatever DNS says.
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            (name == "localhost" || name.ends_with(".localhost")).then_some("loopback")
        }
    };
    match range {
        Some(range) => Err(UrlError::Private {
            host: host.to_string(),
            range,
        }),
        None => Ok(()),
    }
}

/// Every address of a name was refused.
#[derive(Debug, thiserror::Error)]
#[error(
    "{name} resolves only to refused addresses ({addrs}); private addresses need {ALLOW_PRIVATE}"
)]
struct AllRefused {
    name: String,
    addrs: String,
}

/// The system resolver (`getaddrinfo` on tokio's blocking pool) with refused addresses dropped.
/// A name with some public and some refused addresses keeps the public ones.
#[derive(Debug, Clone, Copy)]
struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let (kept, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = all
                .into_iter()
                .partition(|addr| refused_range(addr.ip()).is_none());
            if kept.is_empty() {
                let addrs = refused
                    .iter()
                    .map(|a| format!("{} {}", a.ip(), refused_range(a.ip()).unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Box::new(AllRefused { name: host, addrs }) as _);
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// How the client is built.
#[derive(Debug, Clone, Default)]
pub struct OutboundConfig {
    /// `webhooks.allow_private`: endpoints may reach loopback, private and other local ranges.
    pub allow_private: bool,
    /// PEM certificates trusted besides the webpki roots (a private CA of receivers).
    pub ca_file: Option<PathBuf>,
}

/// What a POST's answer means for the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: the batch is acknowledged.
    Delivered(StatusCode),
    /// 429, 5xx, a timeout, a connection error (`status` is `None` when there was no answer;
    /// `error` says what happened then). `retry_after` is the answer's `Retry-After`.
    Retry {
        status: Option<StatusCode>,
        retry_after: Option<Duration>,
        error: Option<String>,
    },
    /// 410: the receiver asks to be disabled.
    Gone,
    /// Any other 4xx, and 3xx (not followed): retried on the slower schedule, counted as failures.
    Rejected(StatusCode),
}

/// The deliveries' HTTP client; cheap to clone (one pool behind an `Arc`).
#[derive(Debug, Clone)]
pub struct Outbound {
    client: reqwest::Client,
    allow_private: bool,
}

impl Outbound {
    pub fn new(config: &OutboundConfig) -> Result<Outbound, OutboundError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("walcast/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60));
        if !config.allow_private {
            builder = builder.dns_resolver(Arc::new(GuardedResolver));
        }
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|source| OutboundError::ReadCa {
                path: path.clone(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
                OutboundError::ParseCa {
                    path: path.clone(),
                    source,
                }
            })?;
            if certs.is_empty() {
                return Err(OutboundError::EmptyCa { path: path.clone() });
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().map_err(OutboundError::Build)?;
        Ok(Outbound {
            client,
            allow_private: config.allow_private,
        })
    }

    /// POSTs `body` with `headers` (the signature headers and the endpoint's own), waiting at
    /// most `timeout` for the whole exchange. The URL is checked again (a literal never meets
    /// the resolver): a refused one is not sent and comes back as a `Retry` whose error names
    /// the setting, like a name that resolves only to refused addresses.
    pub async fn post(
        &self,
        url: &Url,
        headers: HeaderMap,
        body: Bytes,
        timeout: Duration,
    ) -> Outcome {
        if let Err(err) = check_parsed(url, self.allow_private) {
            return Outcome::Retry {
                status: None,
                retry_after: None,
                error: Some(err.to_string()),
            };
        }
        let sent = self
            .client
            .post(url.clone())
            .headers(headers)
            .body(body)
            .timeout(timeout)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(err) => {
                return Outcome::Retry {
                    status: None,
                    retry_after: None,
                    error: Some(describe(err)),
                };
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        // Read a short body to its end so the connection goes back to the pool; the answer is
        // decided by the status alone, so a failed read changes nothing.
        let mut read = 0;
        while read <= DRAIN_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                _ => break,
            }
        }
        classify(status, retry_after)
    }
}

/// The error and its causes on one line, without the URL (it may carry a token in its query;
/// log lines name the endpoint instead).
fn describe(err: reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut text = String::from(kind);
    let err = err.without_url();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The meaning of a status (see `Outcome`).
pub fn classify(status: StatusCode, retry_after: Option<Duration>) -> Outcome {
    if status.is_success() {
        Outcome::Delivered(status)
    } else if status == StatusCode::GONE {
        Outcome::Gone
    } else if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        Outcome::Retry {
            status: Some(status),
            retry_after,
            error: None,
        }
    } else {
        Outcome::Rejected(status)
    }
}

/// `Retry-After` as delay-seconds or an HTTP-date (RFC 9110 10.2.3), measured from `now`; a date
/// in the past is no wait. Anything else is ignored (the schedule's own delay applies).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // A number too long for u64 is a very long wait; the schedule caps it anyway.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
#[path = "outbound_tests.rs"]
mod tests;
