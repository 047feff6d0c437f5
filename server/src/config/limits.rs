//! The `[limits]` section: bounds on hostile input in the filter and plugin layers
//! (docs/security/limits.md). Turns into `filter::Limits`; the checks live in `filter`.

use serde::{Deserialize, Serialize};

use super::{parse_capacity, ConfigError, PluginsConfig};
use crate::filter::Limits;

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
