//! The hub's intake: receives each XLogData payload from `source`, decodes it in place, tracks
//! transaction boundaries (for flush feedback) and replay after a reconnect, and dispatches row
//! changes. Does not talk the replication protocol.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::decode::{Action, Decoder};
use crate::metrics::Metrics;
use crate::source::{Boundary, Consumer, Lsn};

use super::registry::{Hub, Scratch};

/// Progress inside the currently open transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TxnProgress {
    xid: u64,
    /// WAL start of the last change handed to the hub.
    last: Lsn,
}

/// Implements `source::Consumer` on the replication task: decode, dispatch, report boundaries.
pub struct Intake {
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    decoder: Decoder,
    scratch: Scratch,
    /// The open transaction, if any.
    current: Option<TxnProgress>,
    /// A transaction cut off by a disconnect: when Postgres replays it, changes up to `last` were
    /// already delivered and are skipped, so a reconnect neither loses nor duplicates a change.
    replay: Option<TxnProgress>,
    skipping: Option<TxnProgress>,
    /// Commit LSN of the last transaction fully dispatched. After a reconnect Postgres resends
    /// every transaction committed after the last flush it was told about; those at or before this
    /// position were delivered already and are skipped whole.
    last_commit: Lsn,
    /// The open transaction is such a replay.
    skip_txn: bool,
    slow_consumer_timeout: Duration,
    sampled: u32,
    /// Changes dispatched since sessions were last woken.
    unwoken: u32,
}

/// A long burst (a large transaction arriving faster than it is dispatched) still wakes sessions
/// this often, so they write while the hub works instead of all at the end.
const WAKE_EVERY: u32 = 256;

impl Intake {
    pub fn new(hub: Arc<Hub>, metrics: Arc<Metrics>, slow_consumer_timeout: Duration) -> Self {
        Intake {
            hub,
            metrics,
            decoder: Decoder::new(),
            scratch: Scratch::default(),
            current: None,
            replay: None,
            skipping: None,
            last_commit: Lsn(0),
            skip_txn: false,
            slow_consumer_timeout,
            sampled: 0,
            unwoken: 0,
        }
    }

    fn boundary(&self) -> Boundary {
        if self.current.is_some() {
            Boundary::InsideTransaction
        } else {
            Boundary::Clean
        }
    }
}

impl Consumer for Intake {
    fn on_data(&mut self, wal_start: Lsn, _wal_end: Lsn, payload: &mut [u8]) -> Boundary {
        self.metrics.changes_received.inc();
        // Timing every message would cost two clock reads each; one in 16 is plenty for the
        // histogram.
        self.sampled = self.sampled.wrapping_add(1);
        let started = self.sampled.is_multiple_of(16).then(Instant::now);
        let change = match self.decoder.decode(payload) {
            Ok(change) => change,
            Err(error) => {
                self.metrics.decode_errors.inc();
                tracing::warn!(lsn = %wal_start, %error, "payload is not valid wal2json; skipped");
                return self.boundary();
            }
        };
        match change.action() {
            Action::Begin => {
                let xid = change.xid().unwrap_or(0);
                let commit = change.lsn().parse().unwrap_or(Lsn(0));
                self.skip_txn = commit > Lsn(0) && commit <= self.last_commit;
                self.skipping = self.replay.take().filter(|r| r.xid == xid);
                // While replaying, progress starts at what was already delivered, so a second
                // disconnect during the replay still skips everything sent before the first.
                let last = self.skipping.map_or(Lsn(0), |s| s.last);
                self.current = Some(TxnProgress { xid, last });
            }
            Action::Commit => {
                if let Ok(commit) = change.lsn().parse::<Lsn>() {
                    self.last_commit = self.last_commit.max(commit);
                }
                self.skip_txn = false;
                self.current = None;
                self.skipping = None;
            }
            Action::Change(_) => {
                let replayed = self.skip_txn || self.skipping.is_some_and(|s| wal_start <= s.last);
                if !replayed {
                    self.hub.dispatch(&change, &mut self.scratch);
                    self.metrics.changes_decoded.inc();
                    self.unwoken += 1;
                    if self.unwoken >= WAKE_EVERY {
                        self.flush();
                    }
                }
                if let Some(cur) = &mut self.current {
                    cur.last = cur.last.max(wal_start);
                }
            }
            // Logical messages are not part of client protocol v1.
            Action::Message { .. } => {}
        }
        self.hub.advance(wal_start);
        if let Some(started) = started {
            self.metrics
                .decode_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        self.boundary()
    }

    async fn ready(&mut self) {
        self.hub
            .drain_blocked(&mut self.scratch, self.slow_consumer_timeout)
            .await;
    }

    fn flush(&mut self) {
        self.unwoken = 0;
        self.hub.wake(&mut self.scratch);
    }

    fn on_reconnect(&mut self) {
        if let Some(cur) = self.current.take() {
            if cur.last > Lsn(0) {
                self.replay = Some(cur);
            }
        }
        self.skipping = None;
    }
}
