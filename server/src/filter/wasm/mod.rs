//! The WebAssembly filter host (DESIGN.md section 3, `filter-sdk/ABI.md`): one wasmtime engine,
//! the `walcast_v1` host functions, plugin loading and hot reload from the plugin directory,
//! shared per-(plugin, params) groups that evaluate changes under deadline, memory and stack
//! limits, and the CLI's check/run. Does not decide which sessions receive what (see `hub`) and
//! does not serve HTTP (see `ws`).
//!
//! Data flow of one evaluation: the hub calls `PluginGroup::evaluate(&change)`; the group copies
//! the change's names and values into its store data (see `snapshot` for why a copy), sets the
//! epoch deadline and calls `walcast_filter`; host functions read that copy and the guest's
//! `(ptr, len)` ranges (checked, never allocating in the guest); a `PASS_REWRITTEN` verdict turns
//! the `out_*` edits into a complete change frame.

mod abi;
mod cli;
mod engine;
mod error;
mod group;
mod linker;
mod output;
mod plugin;
mod registry;
mod snapshot;
mod state;

pub use cli::{check_file, run_file, CheckReport, RunOutcome};
pub use error::PluginError;
pub use group::PluginGroup;
pub use registry::PluginHost;

/// What a plugin decided for one change.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Not delivered to the group.
    Drop,
    /// Delivered unchanged (the hub's shared frame).
    Pass,
    /// Delivered as this complete `change` frame (JSON text).
    Rewritten(String),
    /// The plugin failed on this change (ERROR verdict, trap or deadline): the group's sessions
    /// get an `error` frame with this message.
    Error(String),
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
    /// `"ok"`, or `"failed"` when the newest file was refused (an older version may still run).
    pub status: &'static str,
    pub last_error: Option<String>,
    pub calls: u64,
    pub traps: u64,
    pub deadline_hits: u64,
    /// `ERROR` (or unknown) verdicts.
    pub errors: u64,
    pub total_call_seconds: f64,
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_host;
