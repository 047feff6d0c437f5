//! The `[limits]` section: bounds on hostile input in the filter and plugin layers (docs/security/limits.md), as configured (`LimitsConfig`) and as in force (`Limits`, with the
//! plugin group cap resolved). Holds values only: the checks and their refusals live in `filter`
//! (and `filter::wasm` for plugin groups), which receive `Limits` as a value.

use serde::{Deserialize, Serialize};

use super::{parse_capacity, ConfigError, PluginsConfig};

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
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Total bytes of the decoded query parameters (keys and values) of one subscription
    /// (`limits.max_query_bytes`, `WALCAST_MAX_QUERY_BYTES`); beyond: 400 `query_too_long`.
    pub max_query_bytes: usize,
    /// Conditions of one subscription, `query=`'s and every `filter=`
    /// (`limits.max_conditions`, `WALCAST_MAX_CONDITIONS`); beyond: 400 `too_many_conditions`.
    pub max_conditions: usize,
    /// Items of one `in` list (`limits.max_in_list`, `WALCAST_MAX_IN_LIST`); beyond: 400
    /// `in_list_too_long`.
    pub max_in_list: usize,
    /// Bytes of one `like`/`ilike` pattern (`limits.max_like_pattern`,
    /// `WALCAST_MAX_LIKE_PATTERN`); beyond: 400 `like_pattern_too_long`.
    pub max_like_pattern: usize,
    /// Live (plugin, params) groups of one plugin (`limits.max_groups_per_plugin`,
    /// `WALCAST_MAX_GROUPS_PER_PLUGIN`); unset: a quarter of `plugins.max_instances`. Beyond: 503
    /// `too_many_plugin_groups`.
    pub max_groups_per_plugin: Option<u32>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let d = Limits::DEFAULT;
        LimitsConfig {
            max_query_bytes: d.max_query_bytes,
            max_conditions: d.max_conditions,
            max_in_list: d.max_in_list,
            max_like_pattern: d.max_like_pattern,
            max_groups_per_plugin: d.max_groups_per_plugin,
        }
    }
}

/// `(key, env)` of every limit, in the order they are checked.
const KEYS: [(&str, &str); 5] = [
    ("limits.max_query_bytes", "WALCAST_MAX_QUERY_BYTES"),
    ("limits.max_conditions", "WALCAST_MAX_CONDITIONS"),
    ("limits.max_in_list", "WALCAST_MAX_IN_LIST"),
    ("limits.max_like_pattern", "WALCAST_MAX_LIKE_PATTERN"),
    (
        "limits.max_groups_per_plugin",
        "WALCAST_MAX_GROUPS_PER_PLUGIN",
    ),
];

impl LimitsConfig {
    pub(super) fn apply_env(
        &mut self,
        get: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let [query, conditions, in_list, like, groups] = KEYS.map(|(_, env)| env);
        if let Some(v) = get(query) {
            self.max_query_bytes = parse_capacity(query, &v)?;
        }
        if let Some(v) = get(conditions) {
            self.max_conditions = parse_capacity(conditions, &v)?;
        }
        if let Some(v) = get(in_list) {
            self.max_in_list = parse_capacity(in_list, &v)?;
        }
        if let Some(v) = get(like) {
            self.max_like_pattern = parse_capacity(like, &v)?;
        }
        if let Some(v) = get(groups) {
            let n = parse_capacity(groups, &v)?;
            self.max_groups_per_plugin = Some(u32::try_from(n).map_err(|_| {
                ConfigError::invalid(groups, format!("{v:?} is too large; use e.g. 64"))
            })?);
        }
        Ok(())
    }

    /// Every limit must be at least 1.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let values = [
            self.max_query_bytes,
            self.max_conditions,
            self.max_in_list,
            self.max_like_pattern,
            self.max_groups_per_plugin.map_or(1, |n| n as usize),
        ];
        let defaults = ["16384", "32", "1000", "1024", "64"];
        for (((key, _), value), example) in KEYS.iter().zip(values).zip(defaults) {
            if value == 0 {
                return Err(ConfigError::invalid(
                    *key,
                    format!("must be at least 1; use e.g. {example}"),
                ));
            }
        }
        Ok(())
    }

    /// The limits the filter layer and the plugin host apply.
    pub fn limits(&self, plugins: &PluginsConfig) -> Limits {
        Limits {
            max_query_bytes: self.max_query_bytes,
            max_conditions: self.max_conditions,
            max_in_list: self.max_in_list,
            max_like_pattern: self.max_like_pattern,
            max_groups_per_plugin: Some(
                self.max_groups_per_plugin
                    .unwrap_or_else(|| Limits::DEFAULT.groups_per_plugin(plugins.max_instances)),
            ),
        }
    }
}
