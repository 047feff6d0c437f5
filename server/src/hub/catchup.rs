//! Catch-up: one session's private reader of the journal, for a client that resumes after a
//! position (`from=`). Reads the records after it, decodes and filters each exactly as dispatch
//! does for a cohort (operations, conditions, plugin, `select=`) and builds the session's frames.
//! Owns a decoder and an encoder per catching-up session; does not touch sockets or cohort logs.
//!
//! Work is bounded per step: a step reads at most `Budget::records` records, matching or not, so
//! a subscription to a quiet table crosses a large journal in many short steps, between which
//! its socket does its other work. Steps run on tokio's blocking pool, at most `CatchUpSlots` at
//! once: checksums, decoding, filters and plugins are CPU work that must not hold the async
//! workers on which live sessions and the replication stream run. The reader, decoder and
//! encoder move into the step's task and come back with its frames. Before the full decode, a
//! pre-filter (`prefilter.rs`) skips the records whose head names another table or an operation
//! the subscription did not ask for.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::decode::{Decoder, FrameEncoder, Projection, Undecoded};
use crate::filter::wasm::PluginGroup;
use crate::filter::Filter;
use crate::journal::{JournalError, JournalReader, RecordKind};
use crate::vocab::{Frame, Lsn, Pos};

use super::intake::decode_failed_frame;
use super::prefilter::Prefilter;
use super::schema_events::{
    carry, follow_frame, frame_for, schema_changed_frame, worth_a_frame, Binding, Rebinding, Sees,
};
use super::verdict::{rewritten_in, PluginOutcome};
use crate::filter::Request;
use crate::schema::SchemaEvent;

/// Records one step reads at most, matching or not. A skipped record costs its checksum and the
/// pre-filter (well under a microsecond), a decoded one a few microseconds: a step takes a few
/// milliseconds at most.
pub const RECORDS_PER_STEP: usize = 4096;

/// What one subscription asked for, as the catch-up applies it.
pub struct CatchUpRequest {
    pub schema: Box<str>,
    pub table: Box<str>,
    pub filter: Filter,
    pub plugin: Option<Arc<PluginGroup>>,
    /// What `filter` was bound from and against: a schema event of the table carries it on.
    pub binding: Option<Binding>,
    /// A follower of schema events (`query=schema:...`): what it follows and may see; it gets
    /// no row change.
    pub follow: Option<(Arc<Request>, Sees)>,
}

/// The most one step may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Records read (sent, filtered out or skipped by the pre-filter).
    pub records: usize,
    /// Frames produced.
    pub frames: usize,
}

/// How many catch-up steps run at once on the blocking pool, whatever the number of sessions
/// catching up: one per core but one, at least one, so that a crowd of replays leaves a core to
/// the live stream. Owned by the hub, shared by every session; waiting steps are served in
/// order.
#[derive(Clone)]
pub struct CatchUpSlots(Arc<Semaphore>);

impl CatchUpSlots {
    pub fn new(slots: usize) -> CatchUpSlots {
        CatchUpSlots(Arc::new(Semaphore::new(slots.max(1))))
    }

    /// One slot per core but one, at least one.
    pub fn per_core() -> CatchUpSlots {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        CatchUpSlots::new(cores.saturating_sub(1))
    }
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum CatchUpError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The step's task panicked, or a step was abandoned before it returned: its reader is gone
    /// and the subscription cannot go on from where it stands.
    #[error("catch-up step lost: {0}")]
    Lost(String),
}

pub struct CatchUp {
    /// Away (`None`) while a step runs.
    engine: Option<Box<Engine>>,
    /// The last position read from the journal (sent or filtered out).
    last: Pos,
}

/// What a step works with, on the blocking pool.
struct Engine {
    reader: JournalReader,
    matcher: Matcher,
    last: Pos,
}

/// Turns the records read into frames.
struct Matcher {
    /// After a snapshot: changes of transactions it shows, committed before `.1`, are skipped.
    shown: Option<(crate::vocab::Visibility, Lsn)>,
    request: CatchUpRequest,
    prefilter: Prefilter,
    decoder: Decoder,
    encoder: FrameEncoder,
    /// What the last schema event of the table carried the subscription to, until the session
    /// takes it (`CatchUp::take_rebound`).
    rebound: Option<Rebinding>,
    /// A schema event left the request unbound: its frames and the `schema_changed` error were
    /// the last ones; why.
    ended: Option<String>,
}

/// Outcome of one `CatchUp::step`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// The budget was used up; call again.
    More,
    /// The journal has nothing more after `position()` for now.
    End,
    /// A record after `until` was reached: the live stream has everything from there on.
    Until,
    /// A schema event left the subscription's request unbound: the frames end with its
    /// `schema_changed` error and the subscription ends (`CatchUp::ended`).
    Ended,
}

impl CatchUp {
    pub fn new(reader: JournalReader, request: CatchUpRequest) -> CatchUp {
        let last = reader.position();
        // A follower reads no row change.
        let ops = if request.follow.is_some() {
            0
        } else {
            request.filter.ops()
        };
        let prefilter = Prefilter::new(&request.schema, &request.table, ops);
        CatchUp {
            engine: Some(Box::new(Engine {
                reader,
                matcher: Matcher {
                    shown: None,
                    request,
                    prefilter,
                    decoder: Decoder::new(),
                    encoder: FrameEncoder::new(),
                    rebound: None,
                    ended: None,
                },
                last,
            })),
            last,
        }
    }

    /// Skip the changes `visibility` shows that committed before `wal_lsn` (the snapshot the
    /// client was sent already holds them).
    pub fn skip_shown(&mut self, visibility: crate::vocab::Visibility, wal_lsn: Lsn) {
        if let Some(engine) = &mut self.engine {
            engine.matcher.shown = Some((visibility, wal_lsn));
        }
    }

    /// The last journal position taken: everything up to it was sent or did not match.
    pub fn position(&self) -> Pos {
        self.last
    }

    /// What a schema event read since the last call carried the subscription to.
    pub fn take_rebound(&mut self) -> Option<Rebinding> {
        self.engine.as_mut()?.matcher.rebound.take()
    }

    /// Why the subscription ended (after `Fill::Ended`).
    pub fn ended(&self) -> Option<&str> {
        self.engine.as_ref()?.matcher.ended.as_deref()
    }

    /// Append the frames of matching changes after `position()` to `out`, within `budget`, and
    /// none for a change after `until`; on the blocking pool, once one of `slots` is free.
    /// When the journal shows nothing new the step ends at once, without a task.
    ///
    /// Dropping the returned future before it completes loses the step's frames, and with them
    /// the catch-up: the next step fails with `CatchUpError::Lost`.
    pub async fn step(
        &mut self,
        slots: &CatchUpSlots,
        out: &mut Vec<Frame>,
        budget: Budget,
        until: Option<Pos>,
    ) -> Result<Fill, CatchUpError> {
        match &self.engine {
            None => {
                return Err(CatchUpError::Lost(
                    "an earlier step was abandoned".to_owned(),
                ))
            }
            Some(engine) if !engine.reader.has_unread() => return Ok(Fill::End),
            Some(_) => {}
        }
        // The slot first: an engine is never taken out to wait.
        let permit = slots
            .0
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| CatchUpError::Lost("catch-up slots closed".to_owned()))?;
        let Some(mut engine) = self.engine.take() else {
            return Err(CatchUpError::Lost(
                "an earlier step was abandoned".to_owned(),
            ));
        };
        let mut frames = std::mem::take(out);
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let fill = engine.fill(&mut frames, budget, until);
            (engine, frames, fill)
        });
        let (engine, frames, fill) = task.await.map_err(|e| {
            let cause = match e.try_into_panic() {
                Ok(panic) => panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned()),
                Err(e) => e.to_string(),
            };
            CatchUpError::Lost(format!("the step's task failed: {cause}"))
        })?;
        self.last = engine.last;
        self.engine = Some(engine);
        *out = frames;
        Ok(fill?)
    }

    /// `step` on the caller's thread.
    #[cfg(test)]
    pub(crate) fn fill(
        &mut self,
        out: &mut Vec<Frame>,
        budget: Budget,
        until: Option<Pos>,
    ) -> Result<Fill, CatchUpError> {
        let engine = self
            .engine
            .as_mut()
            .ok_or_else(|| CatchUpError::Lost("an earlier step was abandoned".to_owned()))?;
        let fill = engine.fill(out, budget, until);
        self.last = engine.last;
        Ok(fill?)
    }
}

impl Engine {
    fn fill(
        &mut self,
        out: &mut Vec<Frame>,
        budget: Budget,
        until: Option<Pos>,
    ) -> Result<Fill, JournalError> {
        let (mut produced, mut read) = (0, 0);
        while produced < budget.frames && read < budget.records {
            let Some(record) = self.reader.next()? else {
                return Ok(Fill::End);
            };
            if until.is_some_and(|until| record.pos > until) {
                return Ok(Fill::Until);
            }
            read += 1;
            self.last = record.pos;
            if record.kind == RecordKind::Gap {
                // Every subscriber got it live, whatever its table: so does every reader.
                out.push(Frame::from(
                    String::from_utf8_lossy(record.payload).into_owned(),
                ));
                produced += 1;
                continue;
            }
            if record.kind == RecordKind::Schema {
                let before = out.len();
                let ended = self.matcher.schema_record(record.pos, record.payload, out);
                produced += out.len() - before;
                if ended {
                    return Ok(Fill::Ended);
                }
                continue;
            }
            if self.matcher.ended.is_some() {
                return Ok(Fill::Ended);
            }
            if !self.matcher.prefilter.may_match(record.payload) {
                continue;
            }
            let frame = self
                .matcher
                .frame_of(record.pos, record.wal_start, record.payload);
            if let Some(frame) = frame {
                out.push(frame);
                produced += 1;
            }
        }
        Ok(Fill::More)
    }
}

impl Matcher {
    /// A schema event read from the journal: its frame for this subscription, if it concerns it,
    /// with the subscription carried to the new shape, or its `schema_changed` end (true). A
    /// record that is not an event is the `schema_unreadable` error every subscriber got live.
    fn schema_record(&mut self, pos: Pos, payload: &[u8], out: &mut Vec<Frame>) -> bool {
        let event = match SchemaEvent::from_record(payload) {
            Ok(event) => event,
            Err(error) => {
                if payload.starts_with(br#"{"type":"error""#) {
                    out.push(Frame::from(String::from_utf8_lossy(payload).into_owned()));
                } else {
                    tracing::error!(%pos, %error, "an unreadable schema record in the journal");
                    out.push(super::intake::schema_unreadable_frame(
                        pos.commit,
                        Some(pos),
                        &error.to_string(),
                    ));
                }
                return false;
            }
        };
        let diff = event.diff();
        if let Some((request, sees)) = &self.request.follow {
            if let Some(frame) = follow_frame(request, sees, &event, &diff, pos) {
                out.push(frame);
            }
            return false;
        }
        let name = event.before_table().unwrap_or_else(|| event.table());
        if name.schema != *self.request.schema || name.name != *self.request.table {
            return false;
        }
        let req = &mut self.request;
        let before_select = req.filter.select().map(<[_]>::to_vec);
        match carry(req.binding.as_ref(), req.plugin.as_deref(), &event) {
            Ok((rebinding, renamed)) => {
                let after_select = rebinding.filter.select();
                if worth_a_frame(&event, &diff, before_select.as_deref(), after_select) {
                    out.push(frame_for(
                        &event,
                        &diff,
                        Some(pos),
                        before_select.as_deref(),
                        after_select,
                        &renamed,
                    ));
                }
                req.filter = rebinding.filter.clone();
                req.binding = Some(rebinding.binding.clone());
                self.rebound = Some(rebinding);
                false
            }
            Err(unbound) => {
                out.push(frame_for(
                    &event,
                    &diff,
                    Some(pos),
                    before_select.as_deref(),
                    before_select.as_deref(),
                    &[],
                ));
                out.push(schema_changed_frame(&name, &unbound.0));
                self.ended = Some(format!("schema changed: {}", unbound.0));
                true
            }
        }
    }

    /// The frame a record earns without the pre-filter: its change's (or its plugin's), a
    /// `decode_failed` error, or none when it does not match.
    fn frame_of(&mut self, pos: Pos, lsn: Lsn, payload: &mut [u8]) -> Option<Frame> {
        let mut change = match self.decoder.decode(payload) {
            Ok(change) => change,
            Err(error) => {
                // As on the live path: the subscribers of its table (all of them when the
                // table cannot be read) hear that a change could not be read.
                let seen = Undecoded::peek(payload);
                let other = seen.schema.is_some_and(|s| *s != *self.request.schema)
                    || seen.table.is_some_and(|t| *t != *self.request.table);
                return (!other).then(|| decode_failed_frame(lsn, error, &seen));
            }
        };
        change.set_pos(pos);
        if let Some((shown, wal_lsn)) = &self.shown {
            if pos.commit < *wal_lsn && change.xid().is_some_and(|x| shown.shows(x)) {
                return None;
            }
        }
        if change.op().is_none()
            || change.schema() != &*self.request.schema
            || change.table() != &*self.request.table
        {
            return None;
        }
        let req = &self.request;
        // `matches` applies the operation mask; a truncate passes whenever it was asked for.
        if !req.filter.matches(&change) {
            return None;
        }
        let frame = match &req.plugin {
            None => None,
            Some(group) => match PluginOutcome::of(group, &change) {
                PluginOutcome::Drop => return None,
                PluginOutcome::Pass => None,
                PluginOutcome::Rewritten { walcast, v1 } => Some(rewritten_in(
                    req.filter.format(),
                    &walcast,
                    v1.as_ref(),
                    group,
                )),
                PluginOutcome::Failed(frame) => Some(frame),
            },
        };
        Some(frame.unwrap_or_else(|| {
            let projection = Projection::of(req.filter.select());
            Frame::from(
                self.encoder
                    .encode(&change, projection, req.filter.format()),
            )
        }))
    }
}

#[cfg(test)]
#[path = "catchup_tests.rs"]
mod tests;
