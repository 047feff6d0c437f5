//! What a browser may reach: which page origins may open sockets (`http.allowed_origins`) and
//! which host names a request may address (`http.public_hosts`). The first keeps other sites'
//! pages from reading the database through a walcast they can reach (a developer's local one);
//! the second defeats DNS rebinding, where such a page's own name is made to resolve to walcast's
//! address so that the browser treats walcast as the page's origin. Does not read tokens.
//!
//! IP literals are always accepted as hosts: rebinding needs a name the attacker controls, and a
//! page addressed by IP has that IP as its origin. Loopback names (`localhost`, `*.localhost`)
//! are accepted too: browsers resolve them to loopback without asking DNS.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `http.allowed_origins`: `["*"]` any; a list, those (plus same-origin pages); empty,
/// same-origin pages and loopback origins only.
pub(crate) struct Origins {
    any: bool,
    listed: Vec<String>,
}

impl Origins {
    pub(crate) fn new(list: &[String]) -> Origins {
        Origins {
            any: list.iter().any(|o| o.trim() == "*"),
            listed: list
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether a page of `origin` may open a socket on a request addressed to `host`. No
    /// `Origin` (not a browser) passes.
    pub(crate) fn allows(&self, origin: Option<&str>, host: Option<&str>) -> Result<(), String> {
        let Some(raw) = origin else {
            return Ok(());
        };
        if self.any {
            return Ok(());
        }
        let origin = raw.trim().trim_end_matches('/').to_ascii_lowercase();
        let parsed = parse_origin(&origin);
        let same = match (&parsed, host.and_then(split_host)) {
            (Some((scheme, name, port)), Some((host_name, host_port))) => {
                let default = default_port(scheme);
                *name == host_name && *port == host_port.unwrap_or(default)
            }
            _ => false,
        };
        if same {
            return Ok(());
        }
        if self.listed.is_empty() {
            if parsed.is_some_and(|(_, name, _)| is_loopback_origin_host(&name)) {
                return Ok(());
            }
            return Err(format!(
                "origin {raw:?} may not open sockets here: only same-origin pages and loopback \
                 origins (http://localhost:<port>) may, until http.allowed_origins \
                 (WALCAST_ALLOWED_ORIGINS) lists it"
            ));
        }
        if self.listed.contains(&origin) {
            return Ok(());
        }
        Err(format!(
            "origin {raw:?} is not in this server's allow-list (http.allowed_origins)"
        ))
    }
}

/// `http.public_hosts`: host names requests may address besides IP literals and loopback names.
pub(crate) struct Hosts {
    any: bool,
    /// Lower-case names, each with the one port it allows (`None`: any port).
    names: Vec<(String, Option<u16>)>,
}

impl Hosts {
    pub(crate) fn new(list: &[String]) -> Hosts {
        Hosts {
            any: list.iter().any(|h| h.trim() == "*"),
            names: list
                .iter()
                .filter(|h| h.trim() != "*")
                .filter_map(|h| split_host(h.trim()))
                .collect(),
        }
    }

    /// Whether a request may name `host` (its `Host` header or URI authority); `None` (no host
    /// at all: not a browser, which always sends one) passes.
    pub(crate) fn allows(&self, host: Option<&str>) -> Result<(), String> {
        let Some(raw) = host else {
            return Ok(());
        };
        if self.any {
            return Ok(());
        }
        let Some((name, port)) = split_host(raw) else {
            return Err(format!("the Host header {raw:?} is not a host name"));
        };
        if is_ip_literal(&name) || is_loopback_name(&name) {
            return Ok(());
        }
        let listed = self
            .names
            .iter()
            .any(|(n, p)| *n == name && (p.is_none() || *p == port));
        if listed {
            return Ok(());
        }
        Err(format!(
            "this server does not answer to the host name {raw:?} (a page whose name resolves \
             to this server's address is refused: DNS rebinding); add it to http.public_hosts \
             (WALCAST_PUBLIC_HOSTS), or address the server by IP or localhost"
        ))
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` as (lower-case name without a trailing dot, port);
/// a v6 literal keeps its brackets.
fn split_host(text: &str) -> Option<(String, Option<u16>)> {
    let text = text.trim();
    let (name, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?.parse().ok()?),
        };
        (format!("[{inside}]"), port)
    } else {
        match text.rsplit_once(':') {
            Some((name, port)) => (name.to_owned(), Some(port.parse().ok()?)),
            None => (text.to_owned(), None),
        }
    };
    let name = name.strip_suffix('.').unwrap_or(&name).to_ascii_lowercase();
    if name.is_empty() || (name.contains([':', '/', '@', ' ']) && !name.starts_with('[')) {
        return None;
    }
    Some((name, port))
}

/// `scheme://host[:port]` as (scheme, host, port with the scheme's default filled in).
fn parse_origin(origin: &str) -> Option<(&str, String, u16)> {
    let (scheme, rest) = origin.split_once("://")?;
    let (name, port) = split_host(rest)?;
    Some((scheme, name, port.unwrap_or(default_port(scheme))))
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

fn ip_of(name: &str) -> Option<IpAddr> {
    if let Some(v6) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    name.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_ip_literal(name: &str) -> bool {
    ip_of(name).is_some()
}

/// Names browsers resolve to loopback without DNS (RFC 6761).
fn is_loopback_name(name: &str) -> bool {
    name == "localhost" || name.ends_with(".localhost")
}

/// The hosts of loopback origins: `localhost`, 127.0.0.0/8, `[::1]`.
fn is_loopback_origin_host(name: &str) -> bool {
    name == "localhost" || ip_of(name).is_some_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn without_a_list_only_same_origin_and_loopback_pages_pass() {
        let o = Origins::new(&[]);
        assert!(o.allows(None, Some("db.example:7700")).is_ok(), "no Origin");
        for origin in [
            "http://localhost:3000",
            "http://127.0.0.1:8080",
            "https://127.9.9.9",
            "http://[::1]:5173",
            "http://LOCALHOST:1/",
        ] {
            assert!(
                o.allows(Some(origin), Some("127.0.0.1:7700")).is_ok(),
                "{origin}"
            );
        }
        // Same origin, whatever the name.
        assert!(o
            .allows(
                Some("https://walcast.example.com"),
                Some("walcast.example.com")
            )
            .is_ok());
        assert!(o
            .allows(
                Some("http://walcast.example.com:7700"),
                Some("Walcast.Example.com:7700")
            )
            .is_ok());
        for origin in [
            "https://evil.example",
            "http://localhost.evil.example",
            "http://128.0.0.1",
            "null",
            "http://walcast.example.com:7701",
        ] {
            let refused = o.allows(Some(origin), Some("walcast.example.com:7700"));
            assert!(refused.is_err(), "{origin}");
        }
        assert!(o
            .allows(
                Some("https://walcast.example.com"),
                Some("walcast.example.com:80")
            )
            .is_err());
    }

    #[test]
    fn a_list_replaces_the_loopback_default_and_star_opens_all() {
        let o = Origins::new(&list(&["https://app.example.com/"]));
        assert!(o
            .allows(Some("https://app.example.com"), Some("x:1"))
            .is_ok());
        assert!(o
            .allows(Some("http://localhost:3000"), Some("x:1"))
            .is_err());
        let any = Origins::new(&list(&["*"]));
        assert!(any
            .allows(Some("https://evil.example"), Some("x:1"))
            .is_ok());
    }

    #[test]
    fn hosts_are_ip_literals_loopback_names_or_listed() {
        let h = Hosts::new(&list(&["walcast.example.com", "other.example:8443"]));
        for ok in [
            "127.0.0.1:7700",
            "10.1.2.3",
            "[::1]:7700",
            "[2001:db8::1]",
            "localhost:7700",
            "LocalHost.",
            "app.localhost:3000",
            "walcast.example.com",
            "walcast.example.com:443",
            "WALCAST.example.com.:7700",
            "other.example:8443",
        ] {
            assert!(h.allows(Some(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:7700",
            "other.example:8444",
            "other.example",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "a b",
            "host:notaport",
        ] {
            assert!(h.allows(Some(bad)).is_err(), "{bad}");
        }
        assert!(h.allows(None).is_ok(), "no Host: not a browser");
        assert!(Hosts::new(&list(&["*"]))
            .allows(Some("evil.example"))
            .is_ok());
        assert!(Hosts::new(&[]).allows(Some("walcast.example.com")).is_err());
    }
}
