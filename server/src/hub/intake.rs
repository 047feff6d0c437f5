//! The hub's intake: receives each XLogData payload from `source`, decodes it in place, tracks
//! transaction boundaries (for flush feedback) and replay after a reconnect, and dispatches row
//! changes. A payload that cannot be decoded becomes a `decode_failed` error frame for the
//! subscribers of its table. Does not talk the replication protocol.
//!
//! Exactly-once across reconnects: Postgres resends every transaction that committed after the
//! last flush position it was told about, each one whole and in the same order. A transaction is
//! named by its commit LSN (wal2json puts it on `B` and `C`) and a change by its ordinal among the
//! transaction's changes. The LSN alone does not name a change: the rows of one COPY multi-insert
//! record share it.

use std::sync::Arc;
use std::time::Instant;

use crate::decode::{Action, DecodeError, Decoder, Undecoded};
use crate::journal::{Identity, Journal};
use crate::metrics::Metrics;
use crate::named;
use crate::schema::{self, Control, Message, SchemaEvent};
use crate::source::{Boundary, Consumer, Upstream};
use crate::vocab::{Frame, Lsn, Pos};

use super::journaling::Journaling;
use super::registry::{Hub, Scratch};

/// Where the intake is inside the open transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TxnProgress {
    /// Commit LSN, from the `B` message.
    commit: Lsn,
    /// Messages of this transaction seen so far that take positions (changes, delivered,
    /// skipped or undecodable, and `walcast.ddl` messages).
    seen: u64,
    /// The first `skip` of them were delivered before a disconnect: this is a replay.
    skip: u64,
    /// The whole transaction was delivered before a disconnect.
    skip_all: bool,
    /// The last ordinal given in this transaction. Ordinals count changes and schema events (a
    /// `walcast.ddl` message gives one per table, an inferred event one), so they are not `seen`.
    ordinal: u32,
    /// The last ordinal given before a disconnect, where the replay goes on.
    skip_ordinal: u32,
}

impl TxnProgress {
    /// How many leading messages have reached the hub, counting earlier connections.
    fn delivered(&self) -> u64 {
        self.seen.max(self.skip)
    }

    /// The last ordinal given, counting earlier connections.
    fn last_ordinal(&self) -> u32 {
        self.ordinal.max(self.skip_ordinal)
    }

    /// The position the next change or schema event will take (`next_pos` without taking it).
    fn peek_pos(&self) -> Pos {
        Pos::new(self.commit, self.last_ordinal().saturating_add(1))
    }

    /// The position of the next change or schema event.
    fn next_pos(&mut self) -> Pos {
        self.ordinal = self.last_ordinal().saturating_add(1);
        Pos::new(self.commit, self.ordinal)
    }
}

/// A transaction cut off by a disconnect, to be replayed: its first `delivered` messages are not
/// dispatched again, and what follows them goes on after ordinal `ordinal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cut {
    commit: Lsn,
    delivered: u64,
    ordinal: u32,
}

/// Implements `source::Consumer` on the replication task: decode, dispatch, report boundaries.
pub struct Intake {
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    /// Away (`None`) only while `on_data` uses it.
    decoder: Option<Box<Decoder>>,
    scratch: Scratch,
    /// The open transaction, if any.
    current: Option<TxnProgress>,
    /// The transaction a disconnect cut off, until Postgres resends it.
    cut: Option<Cut>,
    /// Commit LSN of the last transaction fully dispatched. After a reconnect Postgres resends
    /// every transaction committed after the last flush it was told about; those at or before this
    /// position were delivered already and are skipped whole.
    last_commit: Lsn,
    sampled: u32,
    /// Changes dispatched since sessions were last woken.
    unwoken: u32,
    /// Where every change is appended (raw, before decoding) ahead of its dispatch; `None` runs
    /// without one (unit tests).
    journal: Option<Journaling>,
    /// Named subscriptions: the journal keeps what they have not acknowledged.
    named: Option<Arc<named::Store>>,
    /// The slot is temporary: after a reconnect Postgres starts from its current position, and
    /// what was committed meanwhile (and the rest of a transaction cut off) never comes.
    temporary_slot: bool,
    /// No event trigger is known to be installed: a change whose columns differ from the shape
    /// the hub knows for its table gets an inferred schema event before it.
    infer: bool,
    /// A change's payload as Postgres sent it, kept while it is decoded in place when an
    /// inferred schema event may have to be journaled before it.
    raw: Vec<u8>,
    /// Where schema events make cached table shapes stale.
    catalog: Option<Arc<crate::filter::Catalog>>,
}

/// A long burst (a large transaction arriving faster than it is dispatched) still wakes sessions
/// this often, so they write while the hub works instead of all at the end.
const WAKE_EVERY: u32 = 256;

/// The most the buffer of a change's bytes (`raw`) keeps between changes.
const RAW_KEPT: usize = 1 << 20;

/// How much of an undecodable payload the log line shows.
const LOGGED_BYTES: usize = 96;

impl Intake {
    pub fn new(hub: Arc<Hub>, metrics: Arc<Metrics>) -> Self {
        Intake {
            hub,
            metrics,
            decoder: Some(Box::new(Decoder::new())),
            scratch: Scratch::default(),
            current: None,
            cut: None,
            last_commit: Lsn(0),
            sampled: 0,
            unwoken: 0,
            journal: None,
            named: None,
            temporary_slot: false,
            infer: false,
            raw: Vec::new(),
            catalog: None,
        }
    }

    /// No event trigger is installed (`walcast setup`): infer schema events from changes whose
    /// columns differ from the shape the hub knows. A `walcast.ddl` message turns this off (the
    /// trigger exists), its `uninstalled` control message on.
    pub fn with_inference(mut self, infer: bool) -> Self {
        self.infer = infer;
        self
    }

    /// Schema events drop the tables they change from `catalog`'s cache.
    pub fn with_catalog(mut self, catalog: Arc<crate::filter::Catalog>) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Append every change to `journal` before dispatching it. Transactions the journal already
    /// holds (Postgres resends those after the slot's confirmed position) are skipped whole.
    pub fn with_journal(mut self, journal: Journal) -> Self {
        if let Some(commit) = journal.last_commit() {
            self.last_commit = self.last_commit.max(commit);
        }
        self.journal = Some(Journaling::new(journal, self.metrics.clone()));
        self
    }

    /// Retention keeps what the named subscriptions in `store` have not acknowledged.
    pub fn with_named(mut self, store: Arc<named::Store>) -> Self {
        self.named = Some(store);
        self
    }

    /// The slot is temporary (`replication.temporary`): a reconnect is a gap, said with a `gap`
    /// frame to every subscriber instead of silence.
    pub fn with_temporary_slot(mut self, temporary: bool) -> Self {
        self.temporary_slot = temporary;
        self
    }

    /// After a reconnect of a temporary slot: the transaction cut off is closed in the journal as
    /// far as it got (nothing more of it will come), and every subscriber hears of the gap, live
    /// and, through the journal, every reader that reads past this point later.
    fn gap(&mut self) {
        if let Some(txn) = self.current.take() {
            if !txn.skip_all && txn.seen > 0 && txn.commit > Lsn(0) {
                self.journal_commit(txn.commit, txn.commit);
            }
        }
        self.cut = None;
        let after = self.hub.last_pos();
        tracing::warn!(%after, "temporary slot recreated after a disconnect: changes committed meanwhile are not delivered; subscribers get a gap frame");
        let mut text = String::with_capacity(256);
        text.push_str(r#"{"type":"gap","after":""#);
        text.push_str(&after.to_string());
        text.push_str(r#"","message":"the replication connection was lost and walcast uses a temporary slot: changes committed while it was disconnected are not delivered; read the rows you show again"}"#);
        // At its journal position, so a session moving between the journal and the live log
        // gets it once.
        let pos = self.journal.as_mut().and_then(|j| j.gap(text.as_bytes()));
        self.hub
            .dispatch_error(None, pos, &Frame::from(text), &mut self.scratch);
        self.wake();
    }

    fn journal_change(&mut self, pos: Pos, wal_start: Lsn, payload: &[u8]) {
        if let Some(journal) = &mut self.journal {
            journal.change(pos, wal_start, payload);
        }
    }

    /// Inferring: the change decoded just now takes the next position and is journaled from
    /// the bytes kept before decoding (`raw`).
    fn journal_deferred(&mut self, wal_start: Lsn) -> Option<Pos> {
        let pos = self.current.as_mut().map(TxnProgress::next_pos)?;
        if let Some(journal) = &mut self.journal {
            journal.change(pos, wal_start, &self.raw);
        }
        // One huge change does not keep its size of memory for good.
        if self.raw.capacity() > RAW_KEPT {
            self.raw = Vec::new();
        }
        Some(pos)
    }

    fn journal_commit(&mut self, commit: Lsn, end: Lsn) {
        if let Some(journal) = &mut self.journal {
            journal.commit(commit, end);
        }
    }

    /// A message the journal cannot place (its transaction cannot be told): the journal stops.
    fn journal_halt(&mut self, lsn: Lsn, what: &'static str) {
        if let Some(journal) = &mut self.journal {
            journal.halt(lsn, what);
        }
    }

    #[cfg(test)]
    pub(crate) fn journal_fsyncs(&self) -> u64 {
        self.journal.as_ref().map_or(0, |j| j.fsyncs())
    }

    fn keep_after(&self) -> Option<(Pos, String)> {
        self.named.as_ref().and_then(|n| n.keep_after())
    }

    /// Wake the sessions of the cohorts that got frames (without ending the burst).
    fn wake(&mut self) {
        self.unwoken = 0;
        self.hub.wake(&mut self.scratch);
    }

    fn boundary(&self) -> Boundary {
        if self.current.is_some() {
            Boundary::InsideTransaction
        } else {
            Boundary::Clean
        }
    }

    fn begin(&mut self, commit: Lsn) {
        let mut txn = TxnProgress {
            commit,
            seen: 0,
            skip: 0,
            skip_all: commit > Lsn(0) && commit <= self.last_commit,
            ordinal: 0,
            skip_ordinal: 0,
        };
        if let Some(cut) = self.cut {
            if cut.commit == commit {
                txn.skip = cut.delivered;
                txn.skip_ordinal = cut.ordinal;
                self.cut = None;
            } else if commit > cut.commit && !txn.skip_all {
                // Cannot happen with Postgres (a cut transaction comes back before any later one);
                // said loudly rather than skipping changes of the wrong transaction.
                tracing::warn!(cut = %cut.commit, next = %commit, "a transaction cut by a disconnect was not resent; nothing skipped");
                self.cut = None;
            }
        }
        self.current = Some(txn);
    }

    fn dispatched(&mut self) {
        self.metrics.changes_decoded.inc();
        self.unwoken += 1;
        if self.unwoken >= WAKE_EVERY {
            self.wake();
        }
    }

    /// A payload that is not wal2json: log it with its position, count it, and tell the
    /// subscribers of its table (all subscribers when the table cannot be read) with an `error`
    /// frame, so no client mistakes the gap for "no change".
    fn undecodable(
        &mut self,
        wal_start: Lsn,
        pos: Option<Pos>,
        error: DecodeError,
        payload: &[u8],
        send: bool,
    ) {
        self.metrics.decode_errors.inc();
        let seen = Undecoded::peek(payload);
        let head = &payload[..payload.len().min(LOGGED_BYTES)];
        tracing::error!(
            lsn = %wal_start,
            %error,
            schema = seen.schema.unwrap_or("?"),
            table = seen.table.unwrap_or("?"),
            first_bytes = %head.escape_ascii(),
            frame_sent = send,
            "payload is not valid wal2json; subscribers of its table get a decode_failed error frame (unless it was sent before a reconnect)"
        );
        if !send {
            return;
        }
        let frame = decode_failed_frame(wal_start, error, &seen);
        let table = seen.schema.zip(seen.table);
        self.hub
            .dispatch_error(table, pos, &frame, &mut self.scratch);
        self.unwoken += 1;
    }
}

impl Intake {
    /// A `walcast.ddl` message: the table events of one DDL command, each journaled and
    /// dispatched at its own position, or a control message of `walcast setup`. Counted like a
    /// change, so a replay after a reconnect skips it as it skips the changes around it.
    fn ddl_message(&mut self, wal_start: Lsn, transactional: bool, content: &str) {
        if !transactional || self.current.is_none() {
            self.metrics.schema_errors.inc();
            tracing::warn!(lsn = %wal_start, "a walcast.ddl message outside a transaction is not a schema event (the event triggers emit them inside the DDL's transaction); ignored");
            return;
        }
        let replayed = count_change(&mut self.current);
        match schema::parse_message(content) {
            Ok(Message::Control(Control::Installed)) => {
                if self.infer {
                    tracing::info!(lsn = %wal_start, "schema events: the event trigger was installed; schema events now come from it");
                }
                self.infer = false;
            }
            Ok(Message::Control(Control::Uninstalled)) => {
                tracing::warn!(lsn = %wal_start, "schema events: the event trigger was uninstalled; changes whose columns differ from the catalog now emit inferred schema events");
                self.infer = true;
            }
            Ok(Message::Events(events)) => {
                if self.infer {
                    tracing::info!(lsn = %wal_start, "schema events: a message of the event trigger arrived; schema events now come from it");
                    self.infer = false;
                }
                if !replayed {
                    for event in events {
                        self.schema_event(event, wal_start);
                    }
                }
            }
            Err(error) if !replayed => self.unreadable_schema(wal_start, &error.to_string()),
            Err(_) => {}
        }
    }

    /// Journals a schema event at the next position of the open transaction and dispatches it
    /// (which carries every cohort of its table to the new shape).
    fn schema_event(&mut self, event: SchemaEvent, wal_start: Lsn) {
        let Some(pos) = self.current.as_mut().map(TxnProgress::next_pos) else {
            return;
        };
        if let Some(journal) = &mut self.journal {
            journal.schema(pos, wal_start, &event.to_record());
        }
        let table = event.table();
        match event.source {
            schema::Source::Trigger => self.metrics.schema_events_trigger.inc(),
            schema::Source::Inferred => self.metrics.schema_events_inferred.inc(),
        };
        tracing::info!(
            %pos,
            lsn = %wal_start,
            %table,
            source = ?event.source,
            command = event.command.as_deref().unwrap_or("-"),
            kind = event.kind().as_str(),
            "schema event"
        );
        if let Some(catalog) = &self.catalog {
            catalog.forget(&table);
            if let Some(before) = event.before_table() {
                catalog.forget(&before);
            }
        }
        self.hub.dispatch_schema(&event, pos, &mut self.scratch);
        self.unwoken += 1;
    }

    /// A `walcast.ddl` message this walcast cannot read (a newer version, damage, or the
    /// trigger's own error): logged with its position, counted, journaled and sent to every
    /// subscriber as a `schema_unreadable` error frame, so no one takes the silence for "no
    /// change".
    fn unreadable_schema(&mut self, wal_start: Lsn, error: &str) {
        self.metrics.schema_errors.inc();
        let pos = self.current.as_mut().map(TxnProgress::next_pos);
        tracing::error!(lsn = %wal_start, pos = %pos.map(|p| p.to_string()).unwrap_or_default(), %error, "a walcast.ddl message could not be read; every subscriber gets a schema_unreadable error frame");
        let frame = schema_unreadable_frame(wal_start, pos, error);
        if let (Some(pos), Some(journal)) = (pos, &mut self.journal) {
            journal.schema(pos, wal_start, frame.as_bytes());
        }
        self.hub
            .dispatch_error(None, pos, &frame, &mut self.scratch);
        self.unwoken += 1;
    }
}

/// The error frame for a schema event that cannot be read (its journal record is this frame,
/// so readers of the journal send it as it is).
pub(super) fn schema_unreadable_frame(lsn: Lsn, pos: Option<Pos>, error: &str) -> Frame {
    let mut text = String::with_capacity(200);
    text.push_str(r#"{"type":"error","error":"schema_unreadable""#);
    if let Some(pos) = pos {
        text.push_str(r#","pos":""#);
        text.push_str(&pos.to_string());
        text.push('"');
    }
    text.push_str(r#","lsn":""#);
    text.push_str(&lsn.to_string());
    text.push_str(r#"","message":"#);
    crate::decode::put_str(
        &mut text,
        &format!("a schema change at this position could not be read ({error}); the shape of the rows that follow may differ from what you know: read the table's columns again"),
    );
    text.push('}');
    Frame::from(text)
}

/// Counts one change of the open transaction; true when it was delivered before a disconnect.
fn count_change(current: &mut Option<TxnProgress>) -> bool {
    match current {
        Some(txn) => {
            txn.seen += 1;
            txn.skip_all || txn.seen <= txn.skip
        }
        None => false,
    }
}

pub(super) fn decode_failed_frame(lsn: Lsn, error: DecodeError, seen: &Undecoded<'_>) -> Frame {
    let mut text = String::with_capacity(160);
    text.push_str(r#"{"type":"error","error":"decode_failed","lsn":""#);
    text.push_str(&lsn.to_string());
    text.push('"');
    if let (Some(schema), Some(table)) = (seen.schema, seen.table) {
        text.push_str(r#","schema":"#);
        crate::decode::put_str(&mut text, schema);
        text.push_str(r#","table":"#);
        crate::decode::put_str(&mut text, table);
    }
    text.push_str(r#","message":"#);
    crate::decode::put_str(
        &mut text,
        &format!("the change at this position could not be decoded ({error}); re-read the affected rows from the database"),
    );
    text.push('}');
    Frame::from(text)
}

impl Intake {
    /// `on_data` with the decoder taken out of `self`.
    fn take(
        &mut self,
        decoder: &mut Decoder,
        wal_start: Lsn,
        wal_end: Lsn,
        payload: &mut [u8],
    ) -> Boundary {
        // Timing every message would cost two clock reads each; one in 16 is plenty for the
        // histogram.
        self.sampled = self.sampled.wrapping_add(1);
        let started = self.sampled.is_multiple_of(16).then(Instant::now);
        // A row change is counted, given its position and journaled as Postgres sent it before
        // the decoder unescapes strings in place. A payload whose action cannot be read counts as
        // one too: it may be a row change, and its subscribers must hear of it.
        let row = !matches!(Undecoded::action_prefix(payload), Some(b'B' | b'C' | b'M'));
        let mut replayed = false;
        let mut pos = None;
        // Inferring: the change is journaled after it was decoded, since an inferred schema
        // event may have to come first; its bytes as sent are kept meanwhile.
        let deferred = row && self.infer;
        if row {
            replayed = count_change(&mut self.current);
            match (replayed, self.current.is_some()) {
                (false, true) if deferred => {
                    if self.journal.is_some() {
                        self.raw.clear();
                        self.raw.extend_from_slice(payload);
                    }
                }
                (false, true) => {
                    pos = self.current.as_mut().map(TxnProgress::next_pos);
                    if let Some(pos) = pos {
                        self.journal_change(pos, wal_start, payload);
                    }
                    if let Some(started) = started {
                        self.metrics
                            .journal_append_seconds
                            .observe(started.elapsed().as_secs_f64());
                    }
                }
                (false, false) => self.journal_halt(
                    wal_start,
                    "a change outside a transaction (no readable begin message before it)",
                ),
                (true, _) => {}
            }
        }
        let mut change = match decoder.decode(payload) {
            Ok(change) => change,
            Err(error) => {
                if !row && Undecoded::action_prefix(payload) != Some(b'M') {
                    // A begin or commit that cannot be read: the transaction's bounds are lost.
                    self.journal_halt(
                        wal_start,
                        "a begin or commit message that cannot be decoded",
                    );
                }
                if deferred && !replayed {
                    pos = self.journal_deferred(wal_start);
                }
                self.undecodable(wal_start, pos, error, payload, row && !replayed);
                self.hub.advance(wal_start);
                return self.boundary();
            }
        };
        match change.action() {
            Action::Begin => {
                let commit = change.lsn().parse().unwrap_or(Lsn(0));
                if commit == Lsn(0) {
                    self.journal_halt(wal_start, "a begin message without a commit LSN");
                }
                self.begin(commit);
            }
            Action::Commit => {
                match change.lsn().parse::<Lsn>() {
                    Ok(commit) if commit > Lsn(0) => {
                        let already = self.current.is_some_and(|txn| txn.skip_all);
                        if !already {
                            self.journal_commit(commit, wal_start.max(wal_end));
                        }
                        self.last_commit = self.last_commit.max(commit);
                    }
                    _ => self.journal_halt(wal_start, "a commit message without a commit LSN"),
                }
                self.current = None;
            }
            Action::Change(_) => {
                if !replayed {
                    match self.current.map(|txn| txn.peek_pos()) {
                        Some(peek) if deferred => {
                            // Offered at the position it takes when no schema event comes
                            // first; the lookup that offers it also compares its columns.
                            change.set_pos(peek);
                            let event =
                                self.hub.dispatch_checking(&change, true, &mut self.scratch);
                            if let Some(event) = event {
                                self.schema_event(event, wal_start);
                            }
                            if let Some(pos) = self.journal_deferred(wal_start) {
                                if pos != peek {
                                    change.set_pos(pos);
                                    self.hub.dispatch(&change, &mut self.scratch);
                                }
                            }
                        }
                        _ => {
                            if let Some(pos) = pos {
                                change.set_pos(pos);
                            }
                            self.hub.dispatch(&change, &mut self.scratch);
                        }
                    }
                    self.dispatched();
                }
            }
            Action::Message { transactional } => {
                if change.prefix() == schema::MESSAGE_PREFIX {
                    let content = change.content().to_owned();
                    self.ddl_message(wal_start, transactional, &content);
                }
                // Other logical messages are not part of the client protocol.
            }
        }
        self.hub.advance(wal_start);
        if let Some(started) = started {
            self.metrics
                .decode_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        self.boundary()
    }
}

impl Consumer for Intake {
    fn on_data(&mut self, wal_start: Lsn, wal_end: Lsn, payload: &mut [u8]) -> Boundary {
        // The decoder is taken out while its borrowed view lives, so that a schema event may be
        // journaled and dispatched before the change it precedes.
        let mut decoder = self
            .decoder
            .take()
            .unwrap_or_else(|| Box::new(Decoder::new()));
        let boundary = self.take(&mut decoder, wal_start, wal_end, payload);
        self.decoder = Some(decoder);
        boundary
    }

    async fn ready(&mut self) -> bool {
        let keep = self.keep_after();
        let Some(journal) = &mut self.journal else {
            return true;
        };
        if journal.held() {
            return journal.wait_held(keep).await;
        }
        // A full segment to seal, or an `Fsync::Always` commit to sync, before the next append.
        if journal.settle_due_now() {
            journal.settle(keep, false).await;
            return !journal.held();
        }
        true
    }

    fn flush(&mut self) {
        // Sessions first: the journal's fsync (group commit) must not delay delivery.
        self.wake();
        if let Some(journal) = &mut self.journal {
            journal.flush();
        }
    }

    async fn sync(&mut self) {
        let keep = self.keep_after();
        if let Some(journal) = &mut self.journal {
            journal.settle(keep, false).await;
        }
    }

    fn confirmable(&self, candidate: Lsn) -> Lsn {
        match &self.journal {
            None => candidate,
            Some(journal) => journal.confirmable(candidate),
        }
    }

    fn on_connect(&mut self, upstream: &Upstream) -> Result<(), String> {
        let Some(journal) = &mut self.journal else {
            return Ok(());
        };
        let identity = Identity {
            system_identifier: upstream.system_identifier.clone(),
            database: upstream.database.clone(),
            slot: upstream.slot.clone(),
        };
        journal
            // Bound at start already (with the slot's confirmed position as where the journal
            // begins): on a reconnect this only checks.
            .bind(&identity, upstream.server_lsn, upstream.slot_created, None)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn on_reconnect(&mut self) {
        if self.temporary_slot {
            self.gap();
            return;
        }
        // A transaction cut before its first change, or one delivered earlier and being skipped,
        // leaves nothing to remember; an earlier cut not yet resent stays as it is.
        if let Some(txn) = self.current.take() {
            if !txn.skip_all && txn.delivered() > 0 && txn.commit > Lsn(0) {
                self.cut = Some(Cut {
                    commit: txn.commit,
                    delivered: txn.delivered(),
                    ordinal: txn.last_ordinal(),
                });
            }
        }
    }
}

#[cfg(test)]
#[path = "intake_tests.rs"]
mod tests;
