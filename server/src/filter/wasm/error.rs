//! The plugin engine's error enum. Display texts are client-facing (they become HTTP 400 messages
//! and CLI output), so each one names the plugin and the problem.

use std::path::PathBuf;

/// Why a plugin could not be loaded, resolved for a subscription, or run from the CLI.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No module of that name in the plugin directory (or plugins are disabled).
    #[error("no plugin named \"{0}\" is loaded")]
    Unknown(String),
    /// The module breaks the ABI or does not compile/link; the text names the problem.
    #[error("{0}")]
    Invalid(String),
    /// `walcast_init` returned non-zero; carries the guest's `set_error` message.
    #[error("{0}")]
    Rejected(String),
    /// The plugin directory or a module file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The engine could not be configured (pooling allocator, ticker thread).
    #[error("cannot start the plugin engine: {0}")]
    Engine(String),
    /// `run_file` got a change that is neither a wal2json v2 message nor a walcast change frame.
    #[error("invalid change JSON: {0}")]
    BadChange(String),
}

impl PluginError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        PluginError::Io {
            path: path.into(),
            source,
        }
    }
}
