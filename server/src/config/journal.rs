//! The `[journal]` section: where the durable journal keeps its segments, when it syncs them and
//! how much it retains. Turns into `journal::JournalConfig`; does not open anything.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{de_duration, ser_duration, ConfigError};
use crate::journal::{Fsync, JournalConfig};

/// Directory used when `journal.dir` is not set and no embedded cluster provides one.
pub const DEFAULT_JOURNAL_DIR: &str = "walcast-journal";

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalSection {
    /// Segment directory (`journal.dir`, `WALCAST_JOURNAL_DIR`). Unset: the embedded demo uses its
    /// temporary directory, anything else `./walcast-journal`.
    pub dir: Option<PathBuf>,
    /// `always` (fsync at every commit), `burst` (one fsync per burst read from Postgres) or
    /// `never` (the OS decides) (`journal.fsync`, `WALCAST_JOURNAL_FSYNC`).
    pub fsync: String,
    /// Oldest segments are removed while the journal is larger than this many bytes.
    pub max_bytes: u64,
    /// Segments whose newest change is older than this are removed.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub max_age: Duration,
    /// Size at which a segment is sealed and the next one started (retention's granularity).
    pub segment_bytes: u64,
    /// For tests only (`WALCAST_TEST_JOURNAL_RECORD_LIMIT`, no file key): appends of payloads
    /// larger than this are refused as they would be past the format's limit, which no message
    /// Postgres sends reaches. It provokes the refused-append path (the journal stops, the slot
    /// is no longer confirmed) that no real input can.
    #[serde(skip)]
    pub test_record_limit: Option<usize>,
}

impl Default for JournalSection {
    fn default() -> Self {
        JournalSection {
            dir: None,
            fsync: "burst".to_owned(),
            max_bytes: 1 << 30,
            max_age: Duration::from_secs(7 * 24 * 3600),
            segment_bytes: JournalConfig::DEFAULT_SEGMENT_BYTES,
            test_record_limit: None,
        }
    }
}

impl JournalSection {
    pub(super) fn apply_env(
        &mut self,
        get: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(v) = get("WALCAST_JOURNAL_DIR") {
            self.dir = Some(PathBuf::from(v));
        }
        if let Some(v) = get("WALCAST_JOURNAL_FSYNC") {
            self.fsync = v.trim().to_ascii_lowercase();
        }
        if let Some(v) = get("WALCAST_TEST_JOURNAL_RECORD_LIMIT") {
            let limit = v.trim().parse().map_err(|_| {
                ConfigError::invalid(
                    "WALCAST_TEST_JOURNAL_RECORD_LIMIT",
                    format!("{v:?} is not a number of bytes (a test setting: unset it)"),
                )
            })?;
            self.test_record_limit = Some(limit);
        }
        Ok(())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.fsync_policy()?;
        if self.segment_bytes < JournalConfig::MIN_SEGMENT_BYTES {
            return Err(ConfigError::invalid(
                "journal.segment_bytes",
                format!(
                    "{} is too small; use at least {} (64 MiB is the default)",
                    self.segment_bytes,
                    JournalConfig::MIN_SEGMENT_BYTES
                ),
            ));
        }
        if self.max_bytes < 2 * self.segment_bytes {
            return Err(ConfigError::invalid(
                "journal.max_bytes",
                format!(
                    "{} is less than two segments ({} bytes each); raise it or lower \
                     journal.segment_bytes",
                    self.max_bytes, self.segment_bytes
                ),
            ));
        }
        if self.max_age.is_zero() {
            return Err(ConfigError::invalid(
                "journal.max_age",
                "must be longer than 0s; use e.g. 7d",
            ));
        }
        Ok(())
    }

    fn fsync_policy(&self) -> Result<Fsync, ConfigError> {
        match self.fsync.as_str() {
            "always" => Ok(Fsync::Always),
            "burst" => Ok(Fsync::Burst),
            "never" => Ok(Fsync::Never),
            other => Err(ConfigError::invalid(
                "journal.fsync",
                format!("{other:?} is not a policy; use always, burst or never"),
            )),
        }
    }

    /// The journal's settings, with `fallback_dir` when `journal.dir` is unset.
    pub fn journal_config(&self, fallback_dir: &Path) -> Result<JournalConfig, ConfigError> {
        let mut cfg = JournalConfig::new(self.dir.clone().unwrap_or_else(|| fallback_dir.into()));
        cfg.fsync = self.fsync_policy()?;
        cfg.segment_bytes = self.segment_bytes;
        cfg.max_bytes = Some(self.max_bytes);
        cfg.max_age = Some(self.max_age);
        if let Some(limit) = self.test_record_limit {
            cfg.max_payload = limit;
        }
        Ok(cfg)
    }
}
