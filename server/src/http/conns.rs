//! Connection limits: how many sockets (`/ws` and `/listen`) are open in all and per client
//! address (`http.max_connections`, `http.max_connections_per_ip`), and who the client is: the
//! TCP peer or, behind a proxy listed in `http.trusted_proxies`, the address its
//! `X-Forwarded-For` (else `Forwarded`) names. An IPv6 client is counted by its /64, the block one
//! host usually holds whole. A permit is taken before the upgrade and held by the session task
//! until the socket ends. Does not count plain HTTP requests (they end at once).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::HeaderMap;
use ipnet::IpNet;
use parking_lot::Mutex;

pub struct ConnLimits {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    /// Open sockets per client address (an IPv6 client's /64 network address).
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// `http.trusted_proxies`.
    trusted: Vec<IpNet>,
}

/// Held while a socket is open; gives its place back on drop.
pub struct ConnPermit {
    limits: Arc<ConnLimits>,
    ip: Option<IpAddr>,
}

/// Which limit refused a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnRefusal {
    /// `http.max_connections`: 503 `too_many_connections`.
    Total(usize),
    /// `http.max_connections_per_ip`: 429 `too_many_connections_from_ip`.
    PerIp(usize),
}

impl ConnLimits {
    pub fn new(max_total: usize, max_per_ip: usize, trusted: Vec<IpNet>) -> Arc<ConnLimits> {
        Arc::new(ConnLimits {
            max_total,
            max_per_ip,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            trusted,
        })
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request from TCP peer `peer`: the peer itself unless it is a trusted
    /// proxy; then the rightmost address of `X-Forwarded-For` (or, without that header,
    /// `Forwarded`'s `for=`) that is not a trusted proxy (each proxy appends the peer it saw, so
    /// what lies left of the first untrusted hop is the client's to invent). A hop that is no
    /// address (`unknown`, an obfuscated name, garbage) stops the walk at the last trusted
    /// proxy, which is then counted as the client: fail closed, never an address a client chose.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return canonical(peer);
        }
        let hops = forwarded_hops(headers);
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) if self.trusts(*ip) => client = *ip,
                Some(ip) => return canonical(*ip),
                None => break,
            }
        }
        canonical(client)
    }

    /// A place for one more socket from `ip` (`None`: the address is unknown, only the total
    /// counts).
    pub fn acquire(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<ConnPermit, ConnRefusal> {
        let ip = ip.map(bucket);
        if self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_total).then_some(n + 1)
            })
            .is_err()
        {
            return Err(ConnRefusal::Total(self.max_total));
        }
        if let Some(ip) = ip {
            let mut per_ip = self.per_ip.lock();
            let n = per_ip.entry(ip).or_insert(0);
            if *n >= self.max_per_ip {
                drop(per_ip);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(ConnRefusal::PerIp(self.max_per_ip));
            }
            *n += 1;
        }
        Ok(ConnPermit {
            limits: self.clone(),
            ip,
        })
    }

    /// Sockets open now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what a dual-stack socket reports) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// What the per-address limit counts: an IPv4 address, or an IPv6 address's /64 (one host is
/// commonly given a whole /64, so counting single addresses would let it open 2^64 sockets).
fn bucket(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        v4 => v4,
    }
}

/// The hops a request went through, in order (client first): `X-Forwarded-For` when present,
/// else the `for=` of each `Forwarded` element; `None` for a hop that is no IP address.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let xff: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().unwrap_or("?"))
        .collect();
    if !xff.is_empty() {
        return xff
            .iter()
            .flat_map(|v| v.split(','))
            .map(|hop| parse_hop(hop.trim()))
            .collect();
    }
    headers
        .get_all("forwarded")
        .iter()
        .map(|v| v.to_str().unwrap_or("?"))
        .flat_map(|v| v.split(','))
        .map(|element| {
            let node = element.split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then(|| v.trim())
            });
            node.and_then(|n| parse_hop(n.trim_matches('"')))
        })
        .collect()
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:5678`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = hop.parse::<std::net::SocketAddr>() {
        return Some(addr.ip());
    }
    hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut per_ip = self.limits.per_ip.lock();
            if let Some(n) = per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
        self.limits.total.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_and_per_ip_counts_are_given_back() {
        let limits = ConnLimits::new(3, 2, Vec::new());
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let p1 = limits.acquire(Some(a)).expect("1");
        let p2 = limits.acquire(Some(a)).expect("2");
        assert_eq!(limits.acquire(Some(a)).err(), Some(ConnRefusal::PerIp(2)));
        let p3 = limits.acquire(Some(b)).expect("3");
        assert_eq!(limits.acquire(Some(b)).err(), Some(ConnRefusal::Total(3)));
        assert_eq!(limits.open(), 3);
        drop(p1);
        let p4 = limits.acquire(Some(a)).expect("a again after one left");
        drop((p2, p3, p4));
        assert_eq!(limits.open(), 0);
        assert!(limits.per_ip.lock().is_empty());
    }

    #[test]
    fn an_ipv6_host_is_counted_by_its_64() {
        let limits = ConnLimits::new(10, 2, Vec::new());
        let ip = |s: &str| -> Option<IpAddr> { Some(s.parse().expect("ip")) };
        let _a = limits.acquire(ip("2001:db8:1:2::1")).expect("1");
        let _b = limits
            .acquire(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
            .expect("2");
        assert_eq!(
            limits.acquire(ip("2001:db8:1:2::99")).err(),
            Some(ConnRefusal::PerIp(2)),
            "a third address of the same /64"
        );
        let _c = limits.acquire(ip("2001:db8:1:3::1")).expect("another /64");
        // A v4-mapped address is its IPv4 address.
        let _d = limits.acquire(ip("::ffff:10.0.0.1")).expect("mapped");
        let _e = limits.acquire(ip("10.0.0.1")).expect("same v4");
        assert_eq!(
            limits.acquire(ip("10.0.0.1")).err(),
            Some(ConnRefusal::PerIp(2))
        );
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().expect("header"));
        }
        h
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let trusted = ["10.0.0.0/8", "192.168.1.1/32", "fd00::/8"]
            .iter()
            .map(|n| n.parse::<IpNet>().expect("net"))
            .collect();
        let limits = ConnLimits::new(10, 2, trusted);
        let ip = |s: &str| -> IpAddr { s.parse().expect("ip") };
        let xff = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.3")]);
        // Untrusted peer: its headers are ignored.
        assert_eq!(
            limits.client_ip(ip("198.51.100.1"), &xff),
            ip("198.51.100.1")
        );
        // Trusted peer: the rightmost untrusted hop, not the client-written leftmost one.
        assert_eq!(limits.client_ip(ip("10.0.0.2"), &xff), ip("203.0.113.9"));
        // A dual-stack socket's mapped address of a trusted proxy.
        assert_eq!(
            limits.client_ip(ip("::ffff:10.0.0.2"), &xff),
            ip("203.0.113.9")
        );
        // Repeated header lines are one list; ports and brackets are taken off.
        let split = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "[2001:db8::7]:4711, 192.168.1.1"),
        ]);
        assert_eq!(limits.client_ip(ip("10.9.9.9"), &split), ip("2001:db8::7"));
        // Every hop trusted: the leftmost.
        let inner = headers(&[("x-forwarded-for", "10.1.1.1, 10.2.2.2")]);
        assert_eq!(limits.client_ip(ip("10.0.0.2"), &inner), ip("10.1.1.1"));
        // A hop that is no address: the last trusted proxy counts.
        let unknown = headers(&[("x-forwarded-for", "6.6.6.6, unknown, 10.2.2.2")]);
        assert_eq!(limits.client_ip(ip("10.0.0.2"), &unknown), ip("10.2.2.2"));
        // No header: the proxy itself.
        assert_eq!(
            limits.client_ip(ip("10.0.0.2"), &HeaderMap::new()),
            ip("10.0.0.2")
        );
        // Forwarded (RFC 7239) when there is no X-Forwarded-For.
        let fwd = headers(&[(
            "forwarded",
            r#"for=6.6.6.6;proto=https, For="[2001:db8::9]:80";by=10.0.0.2, for=10.0.0.5"#,
        )]);
        assert_eq!(limits.client_ip(ip("fd00::1"), &fwd), ip("2001:db8::9"));
        let hidden = headers(&[("forwarded", "for=_hidden, for=10.0.0.5")]);
        assert_eq!(limits.client_ip(ip("10.0.0.2"), &hidden), ip("10.0.0.5"));
    }
}
