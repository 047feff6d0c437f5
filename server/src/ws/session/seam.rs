//! The journal side of a subscription and the seam back to the live stream: a subscription that
//! resumes or fell behind its cohort's log reads the journal with its own filter
//! (`hub::CatchUp`), batch by batch between the socket's other work; at the journal's end it
//! registers with the hub and reads from the journal everything up to where its live
//! subscription starts, so that each matching change is sent once, in order. A subscription the
//! journal's retention overtook ends with 4008. Owns no journal or cohort.

use std::time::Duration;

use axum::extract::ws::Message;
use futures_util::{Sink, SinkExt};

use crate::hub::{Budget, CatchUpError, Fill, RECORDS_PER_STEP};
use crate::journal::JournalError;
use crate::vocab::{close_code, Pos};

use super::subscriptions::{catch_up_from, subscribe, Mode};
use super::{End, Session};

/// Frames read from the journal per flush while catching up.
const CATCH_UP_BATCH: usize = 256;
/// How long the seam may wait for the journal to show what the live stream already dispatched
/// (it is published at the end of every burst read from Postgres, so normally milliseconds).
const SEAM_TIMEOUT: Duration = Duration::from_secs(10);

impl<S: Sink<Message> + Unpin> Session<S> {
    /// One batch of journal frames for every subscription catching up; whether any did
    /// something. Backwards, as a subscription may end (and leave the list) on the way.
    pub(super) async fn step(&mut self) -> Result<bool, End> {
        let mut progress = false;
        for i in (0..self.subs.len()).rev() {
            if self.subs[i].catching_up() {
                progress |= self.catch_up_step(i).await?;
            }
        }
        Ok(progress)
    }

    /// One batch of journal frames for subscription `i`; at the journal's end, the seam back to
    /// the live stream.
    /// Returns whether it did anything (false: at the journal's end, waiting for the stream to
    /// pass its snapshot).
    pub(super) async fn catch_up_step(&mut self, i: usize) -> Result<bool, End> {
        if self.subs[i].signal.is_closing() {
            return self.closing(i).await.map(|()| true);
        }
        let fill = match self.replay(i, None).await {
            Ok(fill) => fill,
            Err(Failed::Socket) => return Err(End::Gone),
            Err(Failed::Journal(error)) => return self.journal_failed(i, error).map(|()| true),
        };
        if fill == Fill::Ended {
            return self.schema_ended(i).map(|()| true);
        }
        if fill == Fill::More {
            return Ok(true);
        }
        // After a snapshot, the live stream may only be joined once every transaction that
        // committed before the snapshot was taken has been read (and skipped when shown): the
        // cohort's frames do not say which transaction they belong to. The hub's position is
        // that of the last message it took in, and Postgres sends transactions in commit order:
        // once it is at `wal_lsn` every transaction that committed before was dispatched, so the
        // seam below reads it from the journal. (The server's WAL end is no such proof: a
        // reconnect's IDENTIFY_SYSTEM moves it past transactions not resent yet.)
        if let Some(wal_lsn) = self.subs[i].shown_until {
            if self.ctx.hub.position() < wal_lsn {
                return Ok(false);
            }
        }
        // Caught up: register, then the seam. Everything up to the subscription's start comes
        // from the journal (waiting for the burst that holds it to be published), everything
        // after it from the cohort.
        let sub = &mut self.subs[i];
        sub.rebound = false;
        let subscription = subscribe(&self.ctx.hub, &sub.plan, &sub.signal, sub.hub_id);
        let start = subscription.start();
        let deadline = tokio::time::Instant::now() + SEAM_TIMEOUT;
        // `replay` moves `sent` to the position read (a catch-up starts at `sent`).
        while self.subs[i].sent < start {
            match self.replay(i, Some(start)).await {
                Ok(Fill::Until) => break,
                Ok(Fill::Ended) => return self.schema_ended(i).map(|()| true),
                Ok(_) => {}
                Err(Failed::Socket) => return Err(End::Gone),
                Err(Failed::Journal(error)) => return self.journal_failed(i, error).map(|()| true),
            }
            if self.subs[i].sent >= start {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                let at = self.subs[i].sent;
                tracing::error!(subscription = self.subs[i].hub_id, %at, %start, "journal does not show what the live stream dispatched; closing the session");
                return Err(End::Close(
                    close_code::INTERNAL_ERROR,
                    "journal behind the live stream".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if self.subs[i].rebound {
            // A schema event before `start`, read only now, carried the plan on after it was
            // registered with the hub: register again with the carried plan (the journal keeps
            // what comes meanwhile).
            drop(subscription);
            return Ok(true);
        }
        let sub = &mut self.subs[i];
        sub.sent = sub.sent.max(start);
        sub.mode = Mode::Live(subscription);
        sub.shown_until = None;
        self.ctx.metrics.catchup_sessions.dec();
        Ok(true)
    }

    /// Writes the journal frames of subscription `i` up to `until` or one step's budget,
    /// whichever comes first. The step runs on the blocking pool (see `hub::CatchUp::step`).
    async fn replay(&mut self, i: usize, until: Option<Pos>) -> Result<Fill, Failed> {
        let sub = &mut self.subs[i];
        let Mode::CatchUp(catch_up) = &mut sub.mode else {
            return Ok(Fill::End);
        };
        let budget = Budget {
            records: RECORDS_PER_STEP,
            frames: CATCH_UP_BATCH,
        };
        let fill = catch_up
            .step(
                self.ctx.hub.catch_up_slots(),
                &mut self.frames,
                budget,
                until,
            )
            .await
            .map_err(Failed::Journal)?;
        // Everything up to the position read was sent below or did not match.
        let read = catch_up.position();
        if let Some(rebinding) = catch_up.take_rebound() {
            sub.plan.rebind(rebinding);
            sub.rebound = true;
        }
        for frame in self.frames.drain(..) {
            let frame = sub.frame(frame);
            if self.sink.feed(Message::Text(frame)).await.is_err() {
                return Err(Failed::Socket);
            }
        }
        self.sink.flush().await.map_err(|_| Failed::Socket)?;
        sub.sent = sub.sent.max(read);
        Ok(fill)
    }

    /// A schema event read from the journal left subscription `i`'s request unbound: its
    /// `schema_changed` error went out with the journal's frames; the subscription ends (the
    /// URL's with 4011).
    fn schema_ended(&mut self, i: usize) -> Result<(), End> {
        let reason = match &self.subs[i].mode {
            Mode::CatchUp(catch_up) => catch_up.ended().unwrap_or("schema changed").to_owned(),
            Mode::Live(_) => "schema changed".to_owned(),
        };
        self.ctx.metrics.schema_changed.inc();
        let sub = self.remove(i);
        tracing::info!(subscription = sub.hub_id, %reason, "a subscription ended reading a schema event from the journal (schema_changed)");
        match sub.id {
            None => Err(End::Close(close_code::SUBSCRIPTION_ENDED, reason)),
            Some(_) => Ok(()),
        }
    }

    /// The cohort's log went on without subscription `i`: the rest comes from the journal.
    pub(super) fn fall_behind(&mut self, i: usize) -> Result<(), End> {
        let sub = &mut self.subs[i];
        // A schema event may have carried the cohort on: read the journal with what it carried.
        if let Mode::Live(subscription) = &sub.mode {
            if let Some(rebinding) = subscription.rebound() {
                sub.plan.rebind(rebinding);
            }
        }
        match self.ctx.journal.reader(sub.sent) {
            Ok(reader) => {
                tracing::debug!(subscription = sub.hub_id, after = %sub.sent, "subscription fell behind its cohort's log: reading the journal");
                self.ctx.metrics.catchup_sessions.inc();
                // Dropping the live subscription leaves the cohort.
                sub.mode = Mode::CatchUp(Box::new(catch_up_from(&sub.plan, reader)));
                Ok(())
            }
            Err(error) => self.journal_failed(i, error),
        }
    }

    pub(super) fn journal_failed(
        &mut self,
        i: usize,
        error: impl Into<CatchUpError>,
    ) -> Result<(), End> {
        let sub = &self.subs[i];
        let (code, reason) = match error.into() {
            // Retention removed what this subscription still had to read: it fell too far behind.
            CatchUpError::Journal(JournalError::Expired { .. }) => {
                tracing::info!(subscription = sub.hub_id, at = %sub.sent, "a subscription fell behind the journal's retention (4008)");
                self.ctx.metrics.sessions_dropped.inc();
                (
                    close_code::SLOW_CONSUMER,
                    "fell behind the journal's retention",
                )
            }
            error => {
                tracing::error!(%error, subscription = sub.hub_id, at = %sub.sent, "journal read failed under a session");
                (close_code::INTERNAL_ERROR, "journal read failed")
            }
        };
        // A subscription with an id ends alone; the URL's ends the socket.
        sub.signal.close_with(code, Some(reason));
        if sub.id.is_none() {
            self.remove(i);
            return Err(End::Close(code, reason.into()));
        }
        Ok(())
    }
}

/// Why writing journal frames stopped.
enum Failed {
    Socket,
    Journal(CatchUpError),
}
