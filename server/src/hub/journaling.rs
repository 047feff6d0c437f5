//! The intake's side of the journal: appends on the replication task, the blocking work (fsync,
//! sealing segments, retention) on tokio's blocking pool, what the slot may be confirmed to,
//! and the pause while a named subscription holds a full journal. Once a change cannot be
//! journaled, for whatever reason (a disk error, a refused append, a message whose transaction
//! cannot be told), the journal takes nothing more and the slot is confirmed no further than
//! what it held before: Postgres keeps the WAL and resends the rest after a restart, instead of
//! the journal keeping a silent hole. Does not decode or dispatch.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::journal::{Bound, Identity, Journal, JournalError};
use crate::metrics::Metrics;
use crate::vocab::{Lsn, Pos};

/// How often retention runs (at the end of a burst), and how often a paused stream looks again.
const TRIM_EVERY: Duration = Duration::from_secs(1);
/// How often a held journal is logged again while the pause lasts.
const HELD_LOG_EVERY: Duration = Duration::from_secs(30);

pub(super) struct Journaling {
    /// `None` only while a blocking call has it, or for good if that call panicked.
    journal: Option<Box<Journal>>,
    metrics: Arc<Metrics>,
    /// Something could not be journaled (said once, in the log): nothing more is appended.
    failed: bool,
    /// `durable()` when the journal last left for a blocking call: the most the slot may be
    /// confirmed to should it not come back.
    durable: Lsn,
    /// When retention last ran.
    trimmed_at: Instant,
    /// The journal is at `journal.max_bytes` and a named subscription needs its oldest segment:
    /// the stream is paused. Holds when the pause was last logged.
    held: Option<Instant>,
    /// How long the last `flush` took to write, until `settle` adds its fsync and observes the
    /// burst's time.
    written_in: Option<Duration>,
}

/// What the blocking pool did with the journal.
struct Settled {
    journal: Box<Journal>,
    settled: Option<Result<(), JournalError>>,
    trimmed: Option<Result<crate::journal::TrimOutcome, JournalError>>,
    took: Duration,
}

impl Journaling {
    pub fn new(mut journal: Journal, metrics: Arc<Metrics>) -> Journaling {
        // Appends run on the replication task: every fsync waits for `settle`.
        journal.defer_syncs();
        Journaling {
            durable: journal.durable(),
            journal: Some(Box::new(journal)),
            metrics,
            failed: false,
            trimmed_at: Instant::now(),
            held: None,
            written_in: None,
        }
    }

    /// Appends a change; a refusal stops the journal (see the module doc).
    pub fn change(&mut self, pos: Pos, wal_start: Lsn, payload: &[u8]) {
        if self.failed {
            return;
        }
        if let Some(journal) = &mut self.journal {
            if let Err(error) = journal.append_change(pos, wal_start, payload) {
                self.fail(&error, wal_start, Some(pos));
            }
        }
    }

    /// Appends a schema event (its record) at its position; a refusal stops the journal.
    pub fn schema(&mut self, pos: Pos, lsn: Lsn, payload: &[u8]) {
        if self.failed {
            return;
        }
        if let Some(journal) = &mut self.journal {
            if let Err(error) = journal.append_schema(pos, lsn, payload) {
                self.fail(&error, lsn, Some(pos));
            }
        }
    }

    pub fn commit(&mut self, commit: Lsn, end: Lsn) {
        if self.failed {
            return;
        }
        if let Some(journal) = &mut self.journal {
            if let Err(error) = journal.append_commit(commit, end) {
                self.fail(&error, end, None);
            }
        }
    }

    /// Journals a `gap` frame; its position, or `None` when the journal is not taking records.
    pub fn gap(&mut self, frame: &[u8]) -> Option<Pos> {
        if self.failed {
            return None;
        }
        let journal = self.journal.as_mut()?;
        match journal.append_gap(frame) {
            Ok(pos) => Some(pos),
            Err(error) => {
                let lsn = journal.end_lsn();
                self.fail(&error, lsn, None);
                None
            }
        }
    }

    /// The intake could not journal the message at `lsn` (`what` says why): stops the journal.
    pub fn halt(&mut self, lsn: Lsn, what: &'static str) {
        if self.failed {
            return;
        }
        if let Some(journal) = &mut self.journal {
            journal.halt();
            self.fail(&Halt(what), lsn, None);
        }
    }

    fn fail(&mut self, error: &dyn std::fmt::Display, lsn: Lsn, pos: Option<Pos>) {
        self.metrics.journal_errors.inc();
        if self.failed {
            return;
        }
        self.failed = true;
        let confirmed_to = self.journal.as_ref().map_or(self.durable, |j| j.durable());
        let pos = pos.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
        tracing::error!(
            %lsn,
            %pos,
            %confirmed_to,
            %error,
            "journal stopped: the change at this position could not be journaled; live delivery goes on, but the slot is no longer confirmed past what the journal holds (Postgres keeps the WAL and resends the rest after a restart): restart walcast"
        );
    }

    /// End of a burst: writes what is buffered, so readers see it. No fsync.
    pub fn flush(&mut self) {
        let Some(journal) = &mut self.journal else {
            return;
        };
        if journal.is_broken() {
            return;
        }
        let started = Instant::now();
        let written = journal.write_out();
        self.written_in = Some(started.elapsed());
        if let Err(error) = written {
            let lsn = journal.end_lsn();
            self.fail(&error, lsn, None);
        }
    }

    /// Before the next message: an `Fsync::Always` commit to sync, or a full segment to seal.
    pub fn settle_due_now(&self) -> bool {
        self.journal.as_ref().is_some_and(|j| j.settle_due_now())
    }

    /// Makes what `flush` wrote durable (fsync per policy, sealing a full segment) and runs
    /// retention when it is due (or `trim`), on the blocking pool: an fsync takes milliseconds,
    /// during which an async worker would serve no one. One hop per burst that needs one.
    /// Returns the subscription holding a full journal, if retention found one.
    pub async fn settle(
        &mut self,
        keep_after: Option<(Pos, String)>,
        trim: bool,
    ) -> Option<(Pos, String)> {
        let trim = trim || self.trimmed_at.elapsed() >= TRIM_EVERY;
        let journal = self.journal.as_ref()?;
        let settle = journal.settle_due();
        let written_in = self.written_in.take();
        if !settle {
            if let Some(took) = written_in {
                self.metrics
                    .journal_flush_seconds
                    .observe(took.as_secs_f64());
            }
            if !trim {
                return None;
            }
        }
        self.durable = journal.durable();
        let mut journal = self.journal.take()?;
        let keep = keep_after.as_ref().map(|k| k.0);
        let work = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let settled = settle.then(|| journal.settle());
            let took = started.elapsed();
            let trimmed = trim.then(|| journal.trim(SystemTime::now(), keep));
            Settled {
                journal,
                settled,
                trimmed,
                took,
            }
        });
        let done = match work.await {
            Ok(done) => done,
            Err(error) => {
                // The journal is gone with the panicked call: nothing more is journaled or
                // confirmed past `self.durable`.
                self.fail(&error, self.durable, None);
                return None;
            }
        };
        self.journal = Some(done.journal);
        if let Some(settled) = done.settled {
            let took = done.took + written_in.unwrap_or_default();
            self.metrics
                .journal_flush_seconds
                .observe(took.as_secs_f64());
            if let Err(error) = settled {
                let lsn = self.durable;
                self.fail(&error, lsn, None);
            }
        }
        let trimmed = done.trimmed?;
        self.trimmed_at = Instant::now();
        self.retention(trimmed, keep_after)
    }

    /// Counts and logs what retention did; the subscription that holds the journal, if one does.
    fn retention(
        &mut self,
        trimmed: Result<crate::journal::TrimOutcome, JournalError>,
        keep_after: Option<(Pos, String)>,
    ) -> Option<(Pos, String)> {
        let mut holder = None;
        match trimmed {
            Ok(outcome) => {
                if outcome.deleted_segments > 0 {
                    self.metrics
                        .journal_segments_removed
                        .inc_by(outcome.deleted_segments as u64);
                    tracing::info!(
                        segments = outcome.deleted_segments,
                        bytes = outcome.deleted_bytes,
                        horizon = %outcome.horizon,
                        "journal retention removed the oldest segments"
                    );
                }
                if outcome.held_by_keep_after {
                    holder = keep_after;
                }
            }
            Err(error) => tracing::warn!(%error, "journal retention failed; retrying later"),
        }
        if let Some(journal) = &self.journal {
            let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            self.metrics.journal_bytes.set(gauge(journal.bytes()));
            self.metrics
                .journal_segments
                .set(gauge(journal.segments() as u64));
            let oldest = journal.oldest().map_or(0, |p| p.commit.0);
            self.metrics.journal_oldest_lsn.set(gauge(oldest));
        }
        self.update_hold(holder.as_ref());
        holder
    }

    /// Paused while a named subscription holds a journal at `max_bytes`, said in the log when
    /// it starts and every `HELD_LOG_EVERY` while it lasts.
    fn update_hold(&mut self, holder: Option<&(Pos, String)>) {
        let Some((acked, name)) = holder else {
            if self.held.take().is_some() {
                self.metrics.retention_held.set(0);
                tracing::info!("journal below journal.max_bytes again: the stream goes on");
            }
            return;
        };
        if self.held.is_none_or(|at| at.elapsed() >= HELD_LOG_EVERY) {
            self.held = Some(Instant::now());
            self.metrics.retention_held.set(1);
            tracing::warn!(
                subscription = %name,
                %acked,
                "journal at journal.max_bytes and named subscription {name:?} still needs its oldest segment: the replication stream is paused (Postgres keeps the WAL) until it acknowledges more or is deleted (DELETE /v1/subscriptions/{name})"
            );
        }
    }

    /// The stream is paused (see `held`).
    pub fn held(&self) -> bool {
        self.held.is_some()
    }

    /// While paused: waits a moment, then runs retention again. True when the pause is over.
    pub async fn wait_held(&mut self, keep_after: Option<(Pos, String)>) -> bool {
        tokio::time::sleep(TRIM_EVERY).await;
        self.settle(keep_after, true).await;
        self.held.is_none()
    }

    /// See `Journal::confirmable`; once the journal stopped, no further than what it held.
    pub fn confirmable(&self, candidate: Lsn) -> Lsn {
        match &self.journal {
            Some(journal) if !self.failed => journal.confirmable(candidate),
            Some(journal) => candidate.min(journal.durable()),
            None => candidate.min(self.durable),
        }
    }

    #[cfg(test)]
    pub fn fsyncs(&self) -> u64 {
        self.journal.as_ref().map_or(0, |j| j.fsyncs())
    }

    /// See `Journal::bind` (no I/O once the journal has its identity, as after start-up).
    pub fn bind(
        &mut self,
        upstream: &Identity,
        server_lsn: Lsn,
        slot_created: bool,
        stream_start: Option<Lsn>,
    ) -> Result<Bound, JournalError> {
        match &mut self.journal {
            Some(journal) => journal.bind(upstream, server_lsn, slot_created, stream_start),
            None => Err(JournalError::Halted),
        }
    }
}

/// Why the intake halted the journal, as the log line's error.
struct Halt(&'static str);

impl std::fmt::Display for Halt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
