//! Limits on hostile input in the filter and plugin layers (docs/security/limits.md,
//! `[limits]` in the configuration): how large one subscription's query may be, how many
//! conditions, `in` items and `like` pattern bytes it may hold, and how many distinct parameter
//! sets (groups) one plugin may run. Holds the values;
//! the checks themselves live where the input is parsed (`request`) and where groups are created
//! (`wasm::registry`). Does not read the configuration file (see `config::LimitsConfig`), and
//! holds no process-wide copy: the configured values are passed to every stage that checks them.

use super::error::{code, QueryError};

/// The limits in force. `Default` gives the documented defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `limits.max_query_bytes`: total bytes of the decoded query parameters (keys and values)
    /// of one subscription.
    pub max_query_bytes: usize,
    /// `limits.max_conditions`: conditions (`query=`'s and every `filter=`) of one subscription.
    pub max_conditions: usize,
    /// `limits.max_in_list`: items of one `in` list.
    pub max_in_list: usize,
    /// `limits.max_like_pattern`: bytes of one `like`/`ilike` pattern (as given, escapes
    /// included).
    pub max_like_pattern: usize,
    /// `limits.max_groups_per_plugin`: live (plugin, params) groups of one plugin; `None` for the
    /// default, a quarter of `plugins.max_instances` (the plugin host resolves it).
    pub max_groups_per_plugin: Option<u32>,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        max_query_bytes: 16 * 1024,
        max_conditions: 32,
        max_in_list: 1000,
        max_like_pattern: 1024,
        max_groups_per_plugin: None,
    };

    /// The group cap for a pool of `max_instances` slots: the configured value, else a quarter of
    /// the pool (at least 1).
    pub fn groups_per_plugin(&self, max_instances: u32) -> u32 {
        self.max_groups_per_plugin
            .unwrap_or((max_instances / 4).max(1))
    }

    pub(crate) fn query_too_long(&self, bytes: usize) -> QueryError {
        QueryError::new(
            code::QUERY_TOO_LONG,
            format!(
                "the query parameters of this subscription are {bytes} bytes; at most \
                 limits.max_query_bytes = {} are accepted",
                self.max_query_bytes
            ),
        )
    }

    pub(crate) fn too_many_conditions(&self, count: usize) -> QueryError {
        QueryError::new(
            code::TOO_MANY_CONDITIONS,
            format!(
                "this subscription has {count} conditions; at most limits.max_conditions = {} \
                 are accepted",
                self.max_conditions
            ),
        )
    }

    pub(crate) fn in_list_too_long(&self, column: &str) -> QueryError {
        QueryError::new(
            code::IN_LIST_TOO_LONG,
            format!(
                "the in list on column {column:?} has more than limits.max_in_list = {} items",
                self.max_in_list
            ),
        )
    }

    pub(crate) fn like_pattern_too_long(&self, column: &str, bytes: usize) -> QueryError {
        QueryError::new(
            code::LIKE_PATTERN_TOO_LONG,
            format!(
                "the like pattern on column {column:?} is {bytes} bytes; at most \
                 limits.max_like_pattern = {} are accepted",
                self.max_like_pattern
            ),
        )
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// The `limit` label of `walcast_limit_refusals_total` for an error answering a limit, `None`
/// for any other error.
pub fn refusal_label(code: &str) -> Option<&'static str> {
    Some(match code {
        code::QUERY_TOO_LONG => "query_bytes",
        code::TOO_MANY_CONDITIONS => "conditions",
        code::IN_LIST_TOO_LONG => "in_list",
        code::LIKE_PATTERN_TOO_LONG => "like_pattern",
        code::TOO_MANY_PLUGIN_GROUPS => "plugin_groups",
        _ => return None,
    })
}

/// Every `limit` label, so the metric family shows each at 0 before its first refusal.
pub const REFUSAL_LABELS: [&str; 5] = [
    "query_bytes",
    "conditions",
    "in_list",
    "like_pattern",
    "plugin_groups",
];
