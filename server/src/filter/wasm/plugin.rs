//! One named plugin: its running module version (swapped atomically on reload), its load status,
//! its call metrics and the rate-limited log of its failed calls. Does not scan the directory (see
//! `registry`) or run calls (see `group`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use chrono::{DateTime, SecondsFormat, Utc};
use parking_lot::Mutex;
use wasmtime::InstancePre;

use super::error::one_line;
use super::state::StoreData;
use super::PluginInfo;

/// At most one "plugin call failed" log line per plugin per this interval; the next line counts
/// the ones left out. A plugin that traps on every change must not flood the log.
pub(crate) const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// A compiled, validated, pre-linked module. Immutable; a reload makes a new one.
pub(crate) struct ModuleVersion {
    /// Per-plugin counter, 1 for the first successful load.
    pub(crate) version: u64,
    /// SHA-256 of the file, hex.
    pub(crate) hash: String,
    pub(crate) loaded_at: DateTime<Utc>,
    pub(crate) pre: InstancePre<StoreData>,
}

#[derive(Default)]
struct Status {
    /// The newest file on disk failed to load (an older version may still run).
    failed: bool,
    /// Hash of the file that failed, so an unchanged broken file is not recompiled on every event.
    failed_hash: Option<String>,
    /// A group's `walcast_init` refused the newest version: (refused version, the version the
    /// group keeps serving).
    init_refused: Option<(u64, u64)>,
    last_error: Option<String>,
}

/// Rate limit of the failed-call log: one line, then silence for `FAILURE_LOG_INTERVAL`.
#[derive(Default)]
pub(crate) struct LogGate {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogGate {
    /// `Some(lines suppressed since the last one)` when a line may be written at `now`.
    pub(crate) fn permit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < FAILURE_LOG_INTERVAL => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[derive(Default)]
pub(crate) struct Metrics {
    pub(crate) calls: AtomicU64,
    pub(crate) traps: AtomicU64,
    pub(crate) deadline_hits: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) call_nanos: AtomicU64,
    /// `memory.grow` calls refused at `plugins.memory_limit`, counted by every instance's limiter.
    pub(crate) memory_grow_refused: Arc<AtomicU64>,
}

impl Metrics {
    pub(crate) fn record_call(&self, elapsed: Duration) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.call_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

pub(crate) struct PluginEntry {
    pub(crate) name: Arc<str>,
    pub(crate) current: ArcSwapOption<ModuleVersion>,
    pub(crate) metrics: Metrics,
    status: Mutex<Status>,
    failure_log: Mutex<LogGate>,
    versions: AtomicU64,
}

impl PluginEntry {
    pub(crate) fn new(name: &str) -> PluginEntry {
        PluginEntry {
            name: name.into(),
            current: ArcSwapOption::empty(),
            metrics: Metrics::default(),
            status: Mutex::new(Status::default()),
            failure_log: Mutex::new(LogGate::default()),
            versions: AtomicU64::new(0),
        }
    }

    /// Whether `hash` is what is already running or what already failed: nothing to do.
    pub(crate) fn is_current(&self, hash: &str) -> bool {
        let status = self.status.lock();
        if status.failed_hash.as_deref() == Some(hash) {
            return true;
        }
        !status.failed && self.current.load().as_ref().is_some_and(|m| m.hash == hash)
    }

    /// Install a newly validated module: the atomic swap groups pick up at their next change.
    pub(crate) fn install(&self, hash: String, pre: InstancePre<StoreData>) -> u64 {
        let version = self.versions.fetch_add(1, Ordering::Relaxed) + 1;
        let module = ModuleVersion {
            version,
            hash,
            loaded_at: Utc::now(),
            pre,
        };
        self.current.store(Some(Arc::new(module)));
        *self.status.lock() = Status::default();
        version
    }

    /// The newest file failed validation: the running version (if any) stays.
    pub(crate) fn load_failed(&self, hash: String, error: &str) {
        let mut status = self.status.lock();
        status.failed = true;
        status.failed_hash = Some(hash);
        status.last_error = Some(one_line(error));
    }

    /// A running group could not move to version `refused` (its `walcast_init` refused it or
    /// failed) and keeps serving version `serving`.
    pub(crate) fn init_refused(&self, refused: u64, serving: u64, error: &str) {
        let mut status = self.status.lock();
        status.init_refused = Some((refused, serving));
        status.last_error = Some(one_line(error));
    }

    /// A call failed in a way that cost the instance (trap, deadline, re-instantiation): kept as
    /// `last_error` and logged, at most once per `FAILURE_LOG_INTERVAL` with the count of the
    /// failures left out since the previous line.
    pub(crate) fn call_failed(&self, error: &str) {
        let error = one_line(error);
        let permit = self.failure_log.lock().permit(Instant::now());
        if let Some(suppressed) = permit {
            tracing::warn!(plugin = %self.name, suppressed, error = %error, "plugin call failed; the instance is replaced");
        }
        self.status.lock().last_error = Some(error);
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.status.lock().last_error.clone()
    }

    pub(crate) fn info(&self) -> PluginInfo {
        let current = self.current.load_full();
        let status = self.status.lock();
        let m = &self.metrics;
        PluginInfo {
            name: self.name.to_string(),
            hash: current
                .as_ref()
                .map(|c| c.hash.clone())
                .or_else(|| status.failed_hash.clone())
                .unwrap_or_default(),
            version: current.as_ref().map_or(0, |c| c.version),
            loaded_at: current
                .as_ref()
                .map(|c| c.loaded_at.to_rfc3339_opts(SecondsFormat::Millis, true)),
            status: status_of(&status, current.as_deref()),
            serving_version: serving_version(&status, current.as_deref()),
            last_error: status.last_error.clone(),
            calls: m.calls.load(Ordering::Relaxed),
            traps: m.traps.load(Ordering::Relaxed),
            deadline_hits: m.deadline_hits.load(Ordering::Relaxed),
            errors: m.errors.load(Ordering::Relaxed),
            memory_grow_refused: m.memory_grow_refused.load(Ordering::Relaxed),
            total_call_seconds: m.call_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// `"failed"`: nothing runs; `"refused"`: the newest version was refused (at load, or by a
/// group's `walcast_init`) and an older one keeps serving; `"ok"`.
fn status_of(status: &Status, current: Option<&ModuleVersion>) -> &'static str {
    match current {
        None => "failed",
        Some(_) if status.failed => "refused",
        Some(c) if status.init_refused.is_some_and(|(v, _)| v == c.version) => "refused",
        Some(_) => "ok",
    }
}

/// The version that serves changes: the running one, or the one a group kept when it refused the
/// newest; `None` when nothing runs.
fn serving_version(status: &Status, current: Option<&ModuleVersion>) -> Option<u64> {
    let current = current?;
    match status.init_refused {
        Some((refused, serving)) if refused == current.version => Some(serving),
        _ => Some(current.version),
    }
}
