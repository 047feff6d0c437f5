//! The `[named]` section: bounds of the named subscriptions (`sub=`): how many there may be, in
//! all and per subject, and how long one without a socket holds the journal. Turns into
//! `named::NamedConfig`; the checks live in `named`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{de_duration, parse_capacity, parse_duration, ser_duration, ConfigError};
use crate::named::NamedConfig;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NamedSection {
    /// Names stored at most, all subjects together (`named.max_subscriptions`,
    /// `WALCAST_MAX_NAMED_SUBSCRIPTIONS`); a new one beyond: 429 `too_many_named_subscriptions`.
    pub max_subscriptions: usize,
    /// Names one subject may own (`named.max_per_subject`, `WALCAST_MAX_NAMED_PER_SUBJECT`);
    /// under `auth.mode = "none"` every client is the one anonymous subject.
    pub max_per_subject: usize,
    /// How long a name without a socket holds the journal (`named.idle_expiry`,
    /// `WALCAST_NAMED_IDLE_EXPIRY`).
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub idle_expiry: Duration,
}

impl Default for NamedSection {
    fn default() -> Self {
        let d = NamedConfig::default();
        NamedSection {
            max_subscriptions: d.max_subscriptions,
            max_per_subject: d.max_per_subject,
            idle_expiry: d.idle_expiry,
        }
    }
}

impl NamedSection {
    pub(super) fn apply_env(
        &mut self,
        get: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(v) = get("WALCAST_MAX_NAMED_SUBSCRIPTIONS") {
            self.max_subscriptions = parse_capacity("WALCAST_MAX_NAMED_SUBSCRIPTIONS", &v)?;
        }
        if let Some(v) = get("WALCAST_MAX_NAMED_PER_SUBJECT") {
            self.max_per_subject = parse_capacity("WALCAST_MAX_NAMED_PER_SUBJECT", &v)?;
        }
        if let Some(v) = get("WALCAST_NAMED_IDLE_EXPIRY") {
            self.idle_expiry = parse_duration(&v)
                .map_err(|message| ConfigError::invalid("WALCAST_NAMED_IDLE_EXPIRY", message))?;
        }
        Ok(())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_subscriptions == 0 {
            return Err(ConfigError::invalid(
                "named.max_subscriptions",
                "must be at least 1; use e.g. 1000",
            ));
        }
        if self.max_per_subject == 0 {
            return Err(ConfigError::invalid(
                "named.max_per_subject",
                "must be at least 1; use e.g. 100",
            ));
        }
        if self.idle_expiry < Duration::from_secs(1) {
            return Err(ConfigError::invalid(
                "named.idle_expiry",
                "must be at least 1s (it is counted in whole seconds); use e.g. \"7d\"",
            ));
        }
        Ok(())
    }

    /// The store's settings; `temporary` is `replication.temporary`.
    pub fn named_config(&self, temporary: bool) -> NamedConfig {
        NamedConfig {
            max_subscriptions: self.max_subscriptions,
            max_per_subject: self.max_per_subject,
            idle_expiry: self.idle_expiry,
            temporary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    #[test]
    fn defaults_file_and_env() {
        let d = NamedSection::default();
        assert_eq!(
            (d.max_subscriptions, d.max_per_subject, d.idle_expiry),
            (1000, 100, Duration::from_secs(7 * 24 * 3600))
        );
        let mut config = Config::from_toml_str(
            "[named]\nmax_subscriptions = 10\nmax_per_subject = 3\nidle_expiry = \"2h\"\n",
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.named.max_per_subject, 3);
        assert_eq!(config.named.idle_expiry, Duration::from_secs(7200));
        let env = |k: &str| match k {
            "WALCAST_MAX_NAMED_SUBSCRIPTIONS" => Some("5".to_owned()),
            "WALCAST_MAX_NAMED_PER_SUBJECT" => Some("2".to_owned()),
            "WALCAST_NAMED_IDLE_EXPIRY" => Some("2s".to_owned()),
            _ => None,
        };
        config.apply_env(&env).unwrap();
        let cfg = config.named.named_config(true);
        assert_eq!(
            (cfg.max_subscriptions, cfg.max_per_subject, cfg.idle_expiry),
            (5, 2, Duration::from_secs(2))
        );
        assert!(cfg.temporary);
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            (
                "[named]\nmax_subscriptions = 0\n",
                "named.max_subscriptions",
            ),
            ("[named]\nmax_per_subject = 0\n", "named.max_per_subject"),
            ("[named]\nidle_expiry = \"500ms\"\n", "named.idle_expiry"),
        ] {
            let config = Config::from_toml_str(toml).unwrap();
            match config.validate() {
                Err(ConfigError::Invalid { key: got, .. }) => assert_eq!(got, key),
                other => panic!("{toml}: {other:?}"),
            }
        }
        let env = |k: &str| (k == "WALCAST_NAMED_IDLE_EXPIRY").then(|| "soon".to_owned());
        match Config::default().apply_env(&env) {
            Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "WALCAST_NAMED_IDLE_EXPIRY"),
            other => panic!("{other:?}"),
        }
    }
}
