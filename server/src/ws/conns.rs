//! Connection limits: how many sockets (`/ws` and `/listen`) are open in all and per client IP
//! address (`http.max_connections`, `http.max_connections_per_ip`). A permit is taken before the
//! upgrade and held by the session task until the socket ends. Does not count plain HTTP requests
//! (they end at once).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

pub struct ConnLimits {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
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
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnLimits> {
        Arc::new(ConnLimits {
            max_total,
            max_per_ip,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more socket from `ip` (`None`: the address is unknown, only the total
    /// counts).
    pub fn acquire(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<ConnPermit, ConnRefusal> {
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
        let limits = ConnLimits::new(3, 2);
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
}
