//! The plugin engine's error enum and the one-line text helpers its messages go through. Display
//! texts are client-facing (they become HTTP 400 messages, log fields, `/v1/plugins` `last_error`
//! and CLI output), so each one names the plugin and the problem on one line. Does not pick HTTP
//! statuses (`http` does).

use std::path::PathBuf;

/// Why a plugin could not be loaded, resolved for a subscription, or run from the CLI.
///
/// Each message carries its cause's text itself and no variant exposes it again as a `source()`:
/// printed with `{:#}` (anyhow, `main`) the cause would otherwise appear twice.
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
    /// No room for a new group: the plugin runs `limits.max_groups_per_plugin` groups, or the
    /// instance pool's slots for groups are taken; the text names the limit.
    #[error("{0}")]
    Capacity(String),
    /// The plugin directory or a module file could not be read.
    #[error("cannot read {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The engine could not be configured (pooling allocator, ticker thread).
    #[error("cannot start the plugin engine: {0}")]
    Engine(String),
    /// `run_file` got a change that is neither a wal2json v2 message nor a walcast change frame.
    #[error("invalid change JSON: {0}")]
    BadChange(String),
    /// `run_file`: the plugin failed on the change (a trap, the call deadline, or its own `ERROR`
    /// verdict); the text names the plugin and the cause.
    #[error("{0}")]
    Failed(String),
}

impl PluginError {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        PluginError::Io {
            path: path.into(),
            error,
        }
    }
}

/// `text` on one line: every run of whitespace that holds a line break or another control
/// character becomes one space, and the ends are trimmed. Guest messages and wasmtime errors may
/// span lines; log lines, `last_error` and close reasons must not.
pub(crate) fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut gap = false;
    for c in text.trim().chars() {
        if c.is_control() || (gap && c.is_whitespace()) {
            gap = true;
            continue;
        }
        if gap {
            // Collapse the break (and the indentation around it) into one space.
            if !out.ends_with(' ') {
                out.push(' ');
            }
            gap = false;
        }
        out.push(c);
    }
    out
}

/// `text` cut to at most `max` bytes on a char boundary, ending in `...` when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    const MORE: &str = "...";
    let mut end = max.saturating_sub(MORE.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{MORE}", text[..end].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_joins_lines_and_keeps_inner_spaces() {
        assert_eq!(one_line("a  b"), "a  b");
        assert_eq!(
            one_line("error while executing:\n    0: 0x1 - f\n\nCaused by:\n  x\r\n"),
            "error while executing: 0: 0x1 - f Caused by: x"
        );
        assert_eq!(one_line("tab\tstop"), "tab stop");
        assert_eq!(one_line("\n"), "");
    }

    #[test]
    fn truncate_cuts_on_a_char_boundary() {
        assert_eq!(truncate("short", 100), "short");
        let long = "é".repeat(80); // 160 bytes
        let cut = truncate(&long, 100);
        assert!(cut.len() <= 100, "{}", cut.len());
        assert!(cut.ends_with("..."));
        assert_eq!(cut.len(), 97 - 1 + 3, "48 two-byte chars, then the dots");
    }
}
