//! The WebAssembly filter host (docs/plugins/guide.md, `filter-sdk/ABI.md`): one
//! wasmtime engine, the `walcast_v1` host functions, plugin loading and hot reload from the plugin
//! directory, shared per-(plugin, params, visible columns) groups that evaluate changes under
//! deadline, memory and stack limits, and the CLI's check/run. Does not decide which sessions
//! receive what (see `hub`) and does not serve HTTP (see `http`).
//!
//! Data flow of one evaluation: the hub calls `PluginGroup::evaluate(&change)`; the group copies
//! the change's names and values into its store data (see `snapshot` for why a copy; under a
//! policy rule only the rule's columns, see `visible`), sets the epoch deadline and calls
//! `walcast_filter`; host functions read that copy and the guest's `(ptr, len)` ranges (checked,
//! never allocating in the guest); a `PASS_REWRITTEN` verdict turns the `out_*` edits on that
//! copy into a complete change frame.

mod abi;
mod cli;
mod engine;
mod error;
mod group;
mod linker;
pub(crate) mod output;
mod plugin;
mod quota;
mod registry;
pub(crate) mod snapshot;
mod state;
pub(crate) mod visible;

pub use cli::{check_file, run_file, CheckReport, RunOutcome};
pub use error::PluginError;
pub use group::PluginGroup;
pub use quota::Admission;
pub use registry::PluginHost;

use crate::metrics::{Metrics, PluginTotals};

/// What a plugin decided for one change.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Not delivered to the group.
    Drop,
    /// Delivered unchanged (the hub's shared frame).
    Pass,
    /// Delivered rewritten: the complete frames (JSON text).
    Rewritten(Rewrite),
    /// The plugin failed on this change (ERROR verdict, trap or deadline): the group's sessions
    /// get an `error` frame with this message.
    Error(String),
}

/// The frames of a rewritten change: the `change` frame, and the `format=wal2json-v1` frame
/// when a subscription of the group asked for that format.
#[derive(Clone, Debug, PartialEq)]
pub struct Rewrite {
    pub walcast: String,
    pub v1: Option<String>,
}

/// One plugin as `GET /v1/plugins` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PluginInfo {
    pub name: String,
    /// SHA-256 (hex) of the running module, or of the refused file when none runs.
    pub hash: String,
    /// Per-plugin load counter of the running module (0: none loaded).
    pub version: u64,
    /// RFC 3339 time the running module was loaded.
    pub loaded_at: Option<String>,
    /// `"ok"`; `"refused"` when the newest version was refused (at load, or by a group's
    /// `walcast_init`) while an older one keeps serving (`serving_version`); `"failed"` when no
    /// version runs.
    pub status: &'static str,
    /// The version that serves changes (differs from `version` when a group refused the newest);
    /// `None` when no version runs.
    pub serving_version: Option<u64>,
    /// The latest refusal or failed call (trap, deadline), on one line.
    pub last_error: Option<String>,
    pub calls: u64,
    pub traps: u64,
    pub deadline_hits: u64,
    /// `ERROR` (or unknown) verdicts.
    pub errors: u64,
    /// `memory.grow` calls refused at `plugins.memory_limit` (the guest got -1).
    pub memory_grow_refused: u64,
    pub total_call_seconds: f64,
}

impl PluginInfo {
    /// The counters `walcast_plugin_*` follow.
    pub fn totals(&self) -> PluginTotals {
        PluginTotals {
            calls: self.calls,
            traps: self.traps,
            deadline_hits: self.deadline_hits,
            errors: self.errors,
            memory_grow_refused: self.memory_grow_refused,
            call_seconds: self.total_call_seconds,
        }
    }
}

impl PluginHost {
    /// Brings the per-plugin metrics up to every plugin's totals (called at scrape time).
    pub fn sync_metrics(&self, metrics: &Metrics) {
        for plugin in self.list() {
            metrics.sync_plugin(&plugin.name, &plugin.totals());
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_failures;
#[cfg(test)]
mod tests_host;
#[cfg(test)]
mod tests_limits;
#[cfg(test)]
mod tests_visibility;
