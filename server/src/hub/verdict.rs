//! A plugin group's verdict on one change, as frames: the rewritten change in each format the
//! group serves, or the `error` frame of a plugin that failed on it. Built once per change and
//! group, by every path that evaluates plugins: live dispatch (`registry`), journal catch-up
//! (`catchup`) and snapshot rows (`ws::session`). Each path decides what to send: a row of a
//! snapshot passes unrewritten, for one. Does not run plugins (`filter::wasm` does).

use crate::decode::{Change, Format};
use crate::filter::wasm::{PluginGroup, Verdict};
use crate::vocab::Frame;

/// What a plugin group's verdict makes of one change.
#[derive(Clone)]
pub enum PluginOutcome {
    /// Not delivered to the group.
    Drop,
    /// Delivered unchanged.
    Pass,
    /// Delivered rewritten: the `change` frame, and the `format=wal2json-v1` frame when the group
    /// serves that format.
    Rewritten { walcast: Frame, v1: Option<Frame> },
    /// The plugin failed on this change: the `error` frame its sessions get.
    Failed(Frame),
}

impl PluginOutcome {
    /// `group`'s verdict on `change`.
    pub fn of(group: &PluginGroup, change: &Change<'_>) -> PluginOutcome {
        match group.evaluate(change) {
            Verdict::Drop => PluginOutcome::Drop,
            Verdict::Pass => PluginOutcome::Pass,
            Verdict::Rewritten(r) => PluginOutcome::Rewritten {
                walcast: Frame::from(r.walcast),
                v1: r.v1.map(Frame::from),
            },
            Verdict::Error(message) => {
                PluginOutcome::Failed(plugin_error_frame(group.plugin_name(), &message))
            }
        }
    }
}

/// The rewritten change as a subscription in `format` reads it. A rewrite rendered without the
/// format-version-1 frame such a subscription needs cannot happen when subscribing called
/// `PluginGroup::serve`; it is reported as a plugin error, never a silent drop.
pub fn rewritten_in(
    format: Format,
    walcast: &Frame,
    v1: Option<&Frame>,
    group: &PluginGroup,
) -> Frame {
    match (format, v1) {
        (Format::Walcast, _) => walcast.clone(),
        (Format::Wal2jsonV1, Some(v1)) => v1.clone(),
        (Format::Wal2jsonV1, None) => {
            tracing::error!(
                plugin = group.plugin_name(),
                "rewrite has no wal2json-v1 rendering"
            );
            plugin_error_frame(
                group.plugin_name(),
                "the rewritten change was not rendered in format wal2json-v1",
            )
        }
    }
}

/// The `error` frame of a plugin that failed on one change.
fn plugin_error_frame(plugin: &str, message: &str) -> Frame {
    let mut text = String::with_capacity(64 + message.len());
    text.push_str(r#"{"type":"error","error":"plugin_error","plugin":"#);
    crate::decode::put_str(&mut text, plugin);
    text.push_str(r#","message":"#);
    crate::decode::put_str(&mut text, message);
    text.push('}');
    Frame::from(text)
}
