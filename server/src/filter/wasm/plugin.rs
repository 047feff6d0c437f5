//! One named plugin: its running module version (swapped atomically on reload), its load status
//! and its call metrics. Does not scan the directory (see `registry`) or run calls (see `group`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use chrono::{DateTime, SecondsFormat, Utc};
use parking_lot::Mutex;
use wasmtime::InstancePre;

use super::state::StoreData;
use super::PluginInfo;

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
    last_error: Option<String>,
}

#[derive(Default)]
pub(crate) struct Metrics {
    pub(crate) calls: AtomicU64,
    pub(crate) traps: AtomicU64,
    pub(crate) deadline_hits: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) call_nanos: AtomicU64,
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
    versions: AtomicU64,
}

impl PluginEntry {
    pub(crate) fn new(name: &str) -> PluginEntry {
        PluginEntry {
            name: name.into(),
            current: ArcSwapOption::empty(),
            metrics: Metrics::default(),
            status: Mutex::new(Status::default()),
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
    pub(crate) fn load_failed(&self, hash: String, error: String) {
        let mut status = self.status.lock();
        status.failed = true;
        status.failed_hash = Some(hash);
        status.last_error = Some(error);
    }

    /// A running group could not move to a new version (its `walcast_init` refused it).
    pub(crate) fn record_error(&self, error: String) {
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
            status: if status.failed || current.is_none() {
                "failed"
            } else {
                "ok"
            },
            last_error: status.last_error.clone(),
            calls: m.calls.load(Ordering::Relaxed),
            traps: m.traps.load(Ordering::Relaxed),
            deadline_hits: m.deadline_hits.load(Ordering::Relaxed),
            errors: m.errors.load(Ordering::Relaxed),
            total_call_seconds: m.call_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}
