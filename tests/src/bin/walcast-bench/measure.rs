//! What the scenarios measure with: process CPU from /proc, wall-clock microseconds
//! comparable with the commit timestamps in change frames, a lock-free latency histogram shared by
//! thousands of client tasks, and medians over runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Median of `v` (the upper one for an even count); 0 for an empty slice.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Wall clock in microseconds since the epoch: commit timestamps are wall clock too (same host).
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// The commit timestamp text of a change frame. A byte search rather than a JSON parse: with
/// thousands of clients in this process the parse would be what limits the receive rate, not
/// walcast.
pub fn frame_ts(frame: &str) -> Option<&str> {
    string_field(frame, "\"ts\":\"")
}

/// The `pos` of a change frame (or of `subscribed`), by byte search like `frame_ts`. The
/// top-level `pos` comes before the row (`new`), so a column named `pos` is not picked up.
pub fn frame_pos(frame: &str) -> Option<&str> {
    string_field(frame, "\"pos\":\"")
}

/// The string value that follows the first `key` (`"name":"`) in `frame`.
fn string_field<'a>(frame: &'a str, key: &str) -> Option<&'a str> {
    let start = frame.find(key)? + key.len();
    let len = frame[start..].find('"')?;
    Some(&frame[start..start + len])
}

/// An RFC 3339 timestamp as microseconds since the epoch.
pub fn ts_micros(ts: &str) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(ts).ok()?;
    Some(t.timestamp_micros())
}

/// User + system CPU seconds of `/proc/<who>/stat` (`who` is a pid or `self`); USER_HZ is 100
/// on every Linux this runs on.
fn cpu_seconds(who: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{who}/stat"))
        .ok()
        .and_then(|s| {
            // The command name may contain spaces; fields are counted after its closing paren.
            let after = s.rsplit_once(')')?.1;
            let f: Vec<&str> = after.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(0.0)
}

/// CPU seconds used so far by process `pid`, all threads.
pub fn proc_cpu_seconds(pid: u32) -> f64 {
    cpu_seconds(&pid.to_string())
}

/// CPU seconds used so far by this bench (clients, writer, Postgres connections).
pub fn self_cpu_seconds() -> f64 {
    cpu_seconds("self")
}

/// CPU of walcast and of the bench over a window, sampled at its start and end.
#[derive(Clone, Copy)]
pub struct CpuMark {
    walcast: f64,
    bench: f64,
    at_us: i64,
}

impl CpuMark {
    pub fn now(walcast_pid: u32) -> CpuMark {
        CpuMark {
            walcast: proc_cpu_seconds(walcast_pid),
            bench: self_cpu_seconds(),
            at_us: now_micros(),
        }
    }

    /// (walcast CPU seconds, bench CPU seconds, wall seconds) from `self` to `later`.
    pub fn until(&self, later: &CpuMark) -> (f64, f64, f64) {
        (
            later.walcast - self.walcast,
            later.bench - self.bench,
            ((later.at_us - self.at_us) as f64 / 1e6).max(1e-6),
        )
    }
}

/// Sub-buckets per power of two: values are kept within 1/128 (< 0.8 %).
const SUB_BITS: u32 = 7;
const SUB: usize = 1 << SUB_BITS;
const BUCKETS: usize = 64 * SUB;

/// Latencies in microseconds, log-linear buckets of atomic counters: every client task records
/// into one shared histogram, so memory does not grow with clients x rows.
pub struct Histogram {
    buckets: Vec<AtomicU64>,
    max: AtomicU64,
}

/// p50 / p99 / max of a histogram, in milliseconds, and how many values it holds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quantiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB as u64 {
            return v as usize;
        }
        let shift = 63 - v.leading_zeros() - SUB_BITS;
        let mantissa = (v >> shift) as usize & (SUB - 1);
        (((shift as usize + 1) << SUB_BITS) + mantissa).min(BUCKETS - 1)
    }

    /// The middle of bucket `i`.
    fn value(i: usize) -> f64 {
        if i < SUB {
            return i as f64;
        }
        let shift = (i >> SUB_BITS) - 1;
        let low = ((SUB + (i & (SUB - 1))) as u64) << shift;
        low as f64 + ((1u64 << shift) as f64 - 1.0) / 2.0
    }

    pub fn record(&self, micros: u64) {
        self.buckets[Self::index(micros)].fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(micros, Ordering::Relaxed);
    }

    pub fn quantiles(&self) -> Quantiles {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let count: u64 = counts.iter().sum();
        let pick = |q: f64| {
            let rank = ((q * count as f64).ceil() as u64).clamp(1, count.max(1));
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Self::value(i) / 1000.0;
                }
            }
            0.0
        };
        Quantiles {
            count,
            p50_ms: pick(0.5),
            p99_ms: pick(0.99),
            max_ms: self.max.load(Ordering::Relaxed) as f64 / 1000.0,
        }
    }
}
