//! Retention: removing whole segments, oldest first, by size and by age, but never what a named
//! subscription still needs (`keep_after`) nor what crash repair relies on.

use std::fs;
use std::time::SystemTime;

use super::recover::sync_dir;
use super::shared::segment_path;
use super::writer::unix_ms;
use super::{Fsync, Journal, JournalError, TrimOutcome};
use crate::vocab::Pos;

impl Journal {
    /// Removes the oldest segments while the journal is over `max_bytes` or their newest record
    /// is older than `max_age`, stopping at the first segment holding a position after
    /// `keep_after` (what a named subscription has not acknowledged in its file yet). Never
    /// removes the active segment, nor the segment of the last durable commit marker or anything
    /// newer: repair on open relies on finding that marker.
    pub fn trim(
        &mut self,
        now: SystemTime,
        keep_after: Option<Pos>,
    ) -> Result<TrimOutcome, JournalError> {
        let now_ms = unix_ms(now);
        let durable = match self.cfg.fsync {
            Fsync::Never => self.written_mark,
            Fsync::Always | Fsync::Burst => self.synced,
        };
        // Without any durable commit nothing was confirmed, and nothing may go.
        let protect = durable.map_or(0, |m| m.seq.min(self.seq));
        let mut out = TrimOutcome::default();
        let mut total = self.bytes();
        loop {
            let (seq, len, last, newest_ms) = {
                let view = self.shared.view.read();
                let s = view.segments.front().expect("an active segment");
                (s.seq, s.len, s.last, s.newest_ms)
            };
            let over = self.cfg.max_bytes.is_some_and(|max| total > max);
            out.over_max_bytes = over;
            let old = self
                .cfg
                .max_age
                .is_some_and(|age| u128::from(now_ms.saturating_sub(newest_ms)) > age.as_millis());
            if seq >= protect || !(over || old) {
                break;
            }
            if keep_after.is_some_and(|keep| last.is_some_and(|last| last > keep)) {
                out.held_by_keep_after = over;
                break;
            }
            // Out of the view first: a reader that finds a segment in the view under the read
            // lock opens it before this can remove it.
            self.shared.view.write().segments.pop_front();
            let path = segment_path(&self.shared.dir, seq);
            fs::remove_file(&path).map_err(JournalError::io("remove", &path))?;
            tracing::debug!(segment = %path.display(), bytes = len, "journal: removed segment");
            out.deleted_segments += 1;
            out.deleted_bytes += len;
            total -= len;
        }
        if out.deleted_segments > 0 {
            sync_dir(&self.shared.dir)?;
        }
        out.horizon = self.shared.view.read().horizon();
        Ok(out)
    }
}
