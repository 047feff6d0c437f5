//! Which transactions a snapshot shows, from `pg_current_snapshot()` (`xmin:xmax:xip,...`, 64-bit
//! `xid8` values), applied to the 32-bit xids wal2json puts on changes: a snapshot takes it, a
//! catch-up after the snapshot skips what it shows. Takes no snapshot (`snapshot` does).

/// A transaction is visible when it committed before the snapshot: `xid < xmin`, or
/// `xid < xmax` and not in progress (`xip`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Visibility {
    xmin: u64,
    xmax: u64,
    /// Sorted.
    xip: Vec<u64>,
}

impl Visibility {
    pub fn parse(text: &str) -> Option<Visibility> {
        let mut parts = text.trim().splitn(3, ':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let mut xip = Vec::new();
        for x in parts.next()?.split(',').filter(|s| !s.is_empty()) {
            xip.push(x.parse().ok()?);
        }
        xip.sort_unstable();
        (xmin <= xmax).then_some(Visibility { xmin, xmax, xip })
    }

    /// Whether the snapshot shows the effects of transaction `xid` (as wal2json prints it: the
    /// 32-bit id, without epoch). It is widened against `xmax`: a transaction the stream
    /// delivers now is within 2^31 of it, also across a wraparound.
    pub fn shows(&self, xid: u64) -> bool {
        let full = self.widen(xid as u32);
        full < self.xmin || (full < self.xmax && self.xip.binary_search(&full).is_err())
    }

    fn widen(&self, xid: u32) -> u64 {
        let behind = (self.xmax as u32).wrapping_sub(xid) as i32 as i64;
        (self.xmax as i64 - behind).max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_follows_the_snapshot() {
        let v = Visibility::parse("100:110:103,105").unwrap();
        assert!(v.shows(99) && v.shows(104) && v.shows(109));
        assert!(!v.shows(103) && !v.shows(105) && !v.shows(110) && !v.shows(200));
        assert!(Visibility::parse("5:4:").is_none());
        assert!(Visibility::parse("nope").is_none());
    }

    #[test]
    fn visibility_widens_32_bit_xids_across_wraparound() {
        // Epoch 1: xmax is 2^32 + 10; xid 4294967290 (epoch 0) is older than xmin, xid 12 is newer.
        let base = 1u64 << 32;
        let v = Visibility::parse(&format!("{}:{}:{}", base + 5, base + 10, base + 7)).unwrap();
        assert!(v.shows(4_294_967_290));
        assert!(v.shows(6));
        assert!(!v.shows(7), "in progress");
        assert!(!v.shows(12), "after xmax");
    }
}
