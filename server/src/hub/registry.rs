//! Subscription registry and fan-out: subscriptions grouped into cohorts (same table, operations,
//! conditions, `select=` and plugin group), cohorts indexed by table and, for `eq` conditions, by
//! value. A change costs a hash lookup per indexed column and one evaluation per matching cohort,
//! whatever the number of sessions in it. Does not decode (see `decode`) and does not own sockets
//! (see `ws`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::decode::{Change, Format, FrameEncoder, Projection};
use crate::filter::wasm::PluginGroup;
use crate::filter::{self, Filter, TypeClass};
use crate::metrics::Metrics;
use crate::vocab::{close_code, Frame, Lsn, Op, Pos, SessionSignal};

use super::catchup::CatchUpSlots;
use super::cohort::{Cohort, Member, Reader};
use super::schema_events::{Binding, Follower, History, LastEvent, Rebinding};
use super::verdict::{rewritten_in, PluginOutcome};
use crate::filter::{TableName, TableShape};
use crate::schema::SchemaEvent;

pub type SubscriptionId = u64;
/// A `select=` list.
type Columns = Box<[Box<str>]>;
/// A schema's tables by name.
type Tables = HashMap<Box<str>, TableSubs>;
type CohortId = u64;

/// What a cohort's members asked for, evaluated once per change for all of them.
pub(super) struct CohortEntry {
    pub(super) ops: u8,
    pub(super) filter: Filter,
    /// The request and the table shape the filter was bound against, so that a schema event
    /// can carry it to the next shape (`None` in tests: any change of the table ends it).
    pub(super) binding: Option<Binding>,
    /// Wasm filter group shared with every cohort of the same (plugin, params).
    pub(super) plugin: Option<Arc<PluginGroup>>,
    /// Index into the table's distinct projections; cohorts with the same `select=` and
    /// `format=` share one encoded frame per change.
    projection: usize,
    pub(super) cohort: Arc<Cohort>,
    key: Box<str>,
}

/// Cohorts indexed by the value of one column (the first `eq` condition's column).
struct EqIndex {
    class: TypeClass,
    by_key: HashMap<Box<[u8]>, Vec<CohortId>>,
}

#[derive(Default)]
pub(super) struct TableSubs {
    pub(super) cohorts: HashMap<CohortId, CohortEntry>,
    /// Cohorts by the canonical form of their request.
    by_request: HashMap<Box<str>, CohortId>,
    /// Cohorts evaluated on every change of the table (no usable `eq` condition).
    scan: Vec<CohortId>,
    eq: HashMap<Box<str>, EqIndex>,
    /// Distinct frame shapes: a `select=` list (`None` is the full row) and a format, with the
    /// number of cohorts using each.
    projections: Vec<(Shape, usize)>,
    /// The table's columns as the stream last showed them (the first subscription's binding,
    /// then each schema event's after-shape): what inferred schema events compare changes with.
    pub(super) shape: Option<Arc<TableShape>>,
}

/// What one encoded frame looks like: which columns, in which format.
#[derive(PartialEq, Eq)]
struct Shape {
    select: Option<Columns>,
    format: Format,
}

impl TableSubs {
    /// Rebuilds the indexes (eq index, scan list, projections) from the cohorts, after a schema
    /// event changed their filters.
    pub(super) fn reindex(&mut self) {
        self.scan.clear();
        self.eq.clear();
        self.projections.clear();
        let mut ids: Vec<CohortId> = self.cohorts.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(entry) = self.cohorts.get(&id) else {
                continue;
            };
            let (select, format) = (
                entry.filter.select().map(<[_]>::to_vec),
                entry.filter.format(),
            );
            let index = entry
                .filter
                .eq_index()
                .map(|(column, key)| (column.to_owned(), key.to_vec(), entry.filter.eq_class()));
            let projection = self.projection_slot(select.as_deref(), format);
            if let Some(entry) = self.cohorts.get_mut(&id) {
                entry.projection = projection;
            }
            match index {
                Some((column, key, class)) => self
                    .eq
                    .entry(column.into())
                    .or_insert_with(|| EqIndex {
                        class: class.unwrap_or(TypeClass::Text),
                        by_key: HashMap::new(),
                    })
                    .by_key
                    .entry(key.into())
                    .or_default()
                    .push(id),
                None => self.scan.push(id),
            }
        }
    }

    fn projection_slot(&mut self, select: Option<&[Box<str>]>, format: Format) -> usize {
        if let Some(i) = self
            .projections
            .iter()
            .position(|(p, _)| p.select.as_deref() == select && p.format == format)
        {
            self.projections[i].1 += 1;
            return i;
        }
        let shape = Shape {
            select: select.map(Into::into),
            format,
        };
        if let Some(i) = self.projections.iter().position(|(_, refs)| *refs == 0) {
            self.projections[i] = (shape, 1);
            return i;
        }
        self.projections.push((shape, 1));
        self.projections.len() - 1
    }
}

/// A subscription request as the hub files it.
pub struct SubscribeRequest<'a> {
    pub schema: &'a str,
    pub table: &'a str,
    /// Canonical form of everything that decides what the subscription receives (its query
    /// parameters and plugin group). Requests with the same key share a cohort.
    pub key: &'a str,
    pub ops: u8,
    pub filter: Filter,
    pub plugin: Option<Arc<PluginGroup>>,
    /// The request and shape `filter` was bound against (see `CohortEntry::binding`).
    pub binding: Option<Binding>,
}

/// Per-dispatch scratch reused across changes so fan-out allocates nothing once warm.
// public for benches
#[doc(hidden)]
#[derive(Default)]
pub struct Scratch {
    key: Vec<u8>,
    frames: Vec<Option<Frame>>,
    /// Cohorts given frames since their members were last woken.
    touched: Vec<Arc<Cohort>>,
    /// Plugin verdicts for the current change, one per group, and whether the group has now
    /// failed too often (close its cohorts with 4010).
    verdicts: HashMap<u64, (PluginOutcome, bool)>,
    encoder: FrameEncoder,
}

/// The subscription registry. Registration takes a short write lock; dispatch takes a read lock.
/// Dispatch never waits and wakes nobody: session writers are woken by `wake` (once per burst of
/// changes), and a session that leaves its cohort's log full is detached from it (it goes on
/// from the journal, see `ws::session`).
pub struct Hub {
    pub(super) tables: RwLock<HashMap<Box<str>, Tables>>,
    /// Subscriptions to schema events only (`query=schema:...`); locked after `tables`.
    pub(super) followers: RwLock<HashMap<CohortId, Follower>>,
    /// Each table's last schema event (before and after shapes), so that a subscription bound
    /// against the shape before it (validated just before the event) is carried over when it
    /// registers after it. Bounded by `LAST_EVENTS`.
    pub(super) last_events: parking_lot::Mutex<HashMap<TableName, LastEvent>>,
    /// Each table's schema events with their positions, oldest first (those the journal held at
    /// start, then every one dispatched): what a resume with old column names is bound from.
    pub(super) history: parking_lot::Mutex<History>,
    next_id: AtomicU64,
    /// Highest LSN handed to the hub (start of the last dispatched message).
    position: AtomicU64,
    /// Stream position of the last change dispatched (commit LSN, ordinal); what a new
    /// subscription starts after. Written only by the intake, under the registry's read lock;
    /// `subscribe` reads it under the write lock, so the two halves are always of one position.
    last_commit: AtomicU64,
    last_ordinal: AtomicU32,
    queue_capacity: usize,
    metrics: Arc<Metrics>,
    /// Journal catch-ups of every session take turns in these (see `CatchUpSlots`).
    catch_up_slots: CatchUpSlots,
}

impl Hub {
    /// `queue_capacity`: frames a cohort log holds unread by its slowest session; a session
    /// further behind is detached and reads the journal (see `cohort`).
    pub fn new(metrics: Arc<Metrics>, queue_capacity: usize) -> Arc<Hub> {
        Arc::new(Hub {
            tables: RwLock::new(HashMap::new()),
            followers: RwLock::new(HashMap::new()),
            last_events: parking_lot::Mutex::new(HashMap::new()),
            history: parking_lot::Mutex::new(History::default()),
            next_id: AtomicU64::new(1),
            position: AtomicU64::new(0),
            last_commit: AtomicU64::new(0),
            last_ordinal: AtomicU32::new(0),
            queue_capacity,
            metrics,
            catch_up_slots: CatchUpSlots::per_core(),
        })
    }

    pub(super) fn queue_capacity(&self) -> usize {
        self.queue_capacity
    }

    pub(super) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Where catch-up steps take turns on the blocking pool.
    pub fn catch_up_slots(&self) -> &CatchUpSlots {
        &self.catch_up_slots
    }

    /// The WAL position of the last message the hub took in.
    pub fn position(&self) -> Lsn {
        Lsn(self.position.load(Ordering::Acquire))
    }

    pub(crate) fn advance(&self, lsn: Lsn) {
        self.position.fetch_max(lsn.0, Ordering::AcqRel);
    }

    /// The stream position of the last change dispatched (`Pos::ZERO` before the first).
    pub fn last_pos(&self) -> Pos {
        Pos::new(
            Lsn(self.last_commit.load(Ordering::Acquire)),
            self.last_ordinal.load(Ordering::Acquire),
        )
    }

    /// After a restart: changes up to `pos` were dispatched by an earlier run (the journal holds
    /// them), so new subscriptions start after it.
    pub fn resume_after(&self, pos: Pos) {
        self.note_pos(pos);
    }

    /// Record `pos` as dispatched. Called under the registry's read lock, so a subscription
    /// (registered under the write lock) sees exactly the changes after the position it reads.
    pub(super) fn note_pos(&self, pos: Pos) {
        if pos > self.last_pos() {
            self.last_ordinal.store(pos.ordinal, Ordering::Release);
            self.last_commit.store(pos.commit.0, Ordering::Release);
        }
    }

    /// Register a subscription. Every change dispatched after this returns is considered for it.
    pub fn subscribe(
        self: &Arc<Self>,
        req: SubscribeRequest<'_>,
        signal: Arc<SessionSignal>,
    ) -> Subscription {
        let id = self.reserve_id();
        self.subscribe_with_id(req, signal, id)
    }

    /// A subscription id for a session that announces itself before it registers (a resume
    /// replays the journal first).
    pub fn reserve_id(&self) -> SubscriptionId {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// `subscribe` with an id from `reserve_id`.
    pub fn subscribe_with_id(
        self: &Arc<Self>,
        req: SubscribeRequest<'_>,
        signal: Arc<SessionSignal>,
        id: SubscriptionId,
    ) -> Subscription {
        let mut req = req;
        let mut tables = self.tables.write();
        let name = TableName::new(req.schema, req.table);
        let ended = self.carry_stale(
            &mut req.filter,
            &mut req.binding,
            req.plugin.as_deref(),
            &name,
        );
        if let Some(unbound) = ended {
            // Validated against the shape before a schema event that no longer binds it: a
            // cohort of its own, outside the registry, that ends at once.
            let cohort = Cohort::new(self.queue_capacity);
            let reader = cohort.join(signal);
            let start = self.last_pos();
            drop(tables);
            super::schema_events::end_cohort(&self.metrics, &cohort, &name, None, &unbound);
            self.metrics.subscriptions.inc();
            return Subscription {
                hub: self.clone(),
                id,
                cohort: id,
                schema: req.schema.into(),
                table: req.table.into(),
                reader,
                start,
            };
        }
        let t = tables
            .entry(req.schema.into())
            .or_default()
            .entry(req.table.into())
            .or_default();
        if t.shape.is_none() {
            t.shape = req.binding.as_ref().map(|b| b.shape.clone());
        }
        let open = t
            .by_request
            .get(req.key)
            .filter(|id| t.cohorts.get(id).is_some_and(|e| !e.cohort.is_closed()));
        let cohort_id = match open {
            Some(existing) => *existing,
            None => {
                let projection = t.projection_slot(req.filter.select(), req.filter.format());
                match req.filter.eq_index() {
                    Some((column, key)) => {
                        let class = req.filter.eq_class().unwrap_or(TypeClass::Text);
                        t.eq.entry(column.into())
                            .or_insert_with(|| EqIndex {
                                class,
                                by_key: HashMap::new(),
                            })
                            .by_key
                            .entry(key.into())
                            .or_default()
                            .push(id);
                    }
                    None => t.scan.push(id),
                }
                t.by_request.insert(req.key.into(), id);
                t.cohorts.insert(
                    id,
                    CohortEntry {
                        ops: req.ops,
                        filter: req.filter,
                        plugin: req.plugin,
                        binding: req.binding,
                        projection,
                        cohort: Cohort::new(self.queue_capacity),
                        key: req.key.into(),
                    },
                );
                id
            }
        };
        let reader = t.cohorts[&cohort_id].cohort.join(signal);
        let start = self.last_pos();
        drop(tables);
        self.metrics.subscriptions.inc();
        Subscription {
            hub: self.clone(),
            id,
            cohort: cohort_id,
            schema: req.schema.into(),
            table: req.table.into(),
            reader,
            start,
        }
    }

    fn unsubscribe(&self, schema: &str, table: &str, cohort_id: CohortId, member: &Arc<Member>) {
        let mut tables = self.tables.write();
        self.metrics.subscriptions.dec();
        if self.drop_follower(cohort_id, member) {
            return;
        }
        let Some(by_table) = tables.get_mut(schema) else {
            return;
        };
        let Some(t) = by_table.get_mut(table) else {
            return;
        };
        let Some(entry) = t.cohorts.get(&cohort_id) else {
            return;
        };
        if entry.cohort.leave(member) > 0 {
            return;
        }
        let Some(entry) = t.cohorts.remove(&cohort_id) else {
            return;
        };
        // A closed cohort may have been replaced under the same key already.
        if t.by_request.get(&entry.key) == Some(&cohort_id) {
            t.by_request.remove(&entry.key);
        }
        if let Some(p) = t.projections.get_mut(entry.projection) {
            p.1 = p.1.saturating_sub(1);
        }
        match entry.filter.eq_index() {
            Some((column, key)) => {
                if let Some(index) = t.eq.get_mut(column) {
                    if let Some(ids) = index.by_key.get_mut(key) {
                        ids.retain(|x| *x != cohort_id);
                        if ids.is_empty() {
                            index.by_key.remove(key);
                        }
                    }
                    if index.by_key.is_empty() {
                        t.eq.remove(column);
                    }
                }
            }
            None => t.scan.retain(|x| *x != cohort_id),
        }
        if t.cohorts.is_empty() {
            by_table.remove(table);
            if by_table.is_empty() {
                tables.remove(schema);
            }
        }
    }

    /// Offer one row change to every matching cohort. Never blocks and wakes no session (see
    /// `wake`).
    // public for benches
    #[doc(hidden)]
    pub fn dispatch(&self, change: &Change<'_>, scratch: &mut Scratch) {
        let _ = self.dispatch_checking(change, false, scratch);
    }

    /// `dispatch`, and with `infer` (no event trigger installed) first, under the same lookup:
    /// when the change's columns differ from the table's known shape, nothing is offered and
    /// the inferred schema event is returned instead, to be journaled and dispatched before
    /// the change is dispatched again.
    pub(crate) fn dispatch_checking(
        &self,
        change: &Change<'_>,
        infer: bool,
        scratch: &mut Scratch,
    ) -> Option<SchemaEvent> {
        let op = change.op()?;
        let tables = self.tables.read();
        let t = tables
            .get(change.schema())
            .and_then(|s| s.get(change.table()));
        if infer {
            if let Some(event) = t.and_then(|t| super::schema_events::inferred(t, change)) {
                return Some(event);
            }
        }
        if let Some(pos) = change.pos() {
            self.note_pos(pos);
        }
        let t = t?;
        scratch.frames.clear();
        scratch.frames.resize(t.projections.len(), None);
        scratch.verdicts.clear();

        if op == Op::Truncate {
            // Filters cannot apply to a truncate: every cohort that asked for it gets it.
            for entry in t.cohorts.values() {
                self.offer(entry, t, change, op, scratch);
            }
            return None;
        }
        for id in &t.scan {
            if let Some(entry) = t.cohorts.get(id) {
                self.offer(entry, t, change, op, scratch);
            }
        }
        let mut key_buf = std::mem::take(&mut scratch.key);
        for (column, index) in &t.eq {
            let value = row_value(change, op, column);
            let Some(key) = value.and_then(|v| filter::index_key(v, index.class, &mut key_buf))
            else {
                continue;
            };
            if let Some(ids) = index.by_key.get(key) {
                for id in ids {
                    if let Some(entry) = t.cohorts.get(id) {
                        self.offer(entry, t, change, op, scratch);
                    }
                }
            }
        }
        scratch.key = key_buf;
        None
    }

    /// Offer an `error` frame about a change that could not be decoded to every open cohort of its
    /// table, or of every table when the table is unknown: the filters cannot be evaluated on it,
    /// and a subscriber that may have missed a change must hear of it.
    /// `pos` is the position of the change (`None` for a frame about no one change, a `gap`).
    pub(crate) fn dispatch_error(
        &self,
        table: Option<(&str, &str)>,
        pos: Option<Pos>,
        frame: &Frame,
        scratch: &mut Scratch,
    ) {
        let tables = self.tables.read();
        // Counted like a change: a subscription registered after this starts after it.
        if let Some(pos) = pos {
            self.note_pos(pos);
        }
        let mut offer = |t: &TableSubs| {
            for entry in t.cohorts.values() {
                if !entry.cohort.is_closed() {
                    self.append(entry, pos, frame, scratch);
                }
            }
        };

        match table {
            Some((schema, name)) => {
                if let Some(t) = tables.get(schema).and_then(|s| s.get(name)) {
                    offer(t);
                }
            }
            None => {
                tables.values().flat_map(|s| s.values()).for_each(offer);
                // Followers of schema events hear of what concerns every table.
                for follower in self.followers.read().values() {
                    self.append_to(&follower.cohort, pos, frame, scratch);
                }
            }
        }
    }

    /// Wake the sessions of every cohort that got frames since the last wake. Called at the end
    /// of each burst of messages from Postgres, so a session writer runs once per burst.
    // public for benches
    #[doc(hidden)]
    pub fn wake(&self, scratch: &mut Scratch) {
        for cohort in scratch.touched.drain(..) {
            cohort.wake();
        }
    }

    fn offer(
        &self,
        entry: &CohortEntry,
        t: &TableSubs,
        change: &Change<'_>,
        op: Op,
        scratch: &mut Scratch,
    ) {
        if entry.ops & op.bit() == 0 || entry.cohort.is_closed() || !entry.filter.matches(change) {
            return;
        }
        let pos = change.pos();
        let plugin_frame = match &entry.plugin {
            None => None,
            Some(group) => {
                let (outcome, failing) = scratch
                    .verdicts
                    .entry(group.id())
                    .or_insert_with(|| {
                        let outcome = PluginOutcome::of(group, change);
                        let failing =
                            matches!(outcome, PluginOutcome::Failed(_)) && group.failing();
                        (outcome, failing)
                    })
                    .clone();
                match outcome {
                    PluginOutcome::Drop => return,
                    PluginOutcome::Pass => None,
                    PluginOutcome::Rewritten { walcast, v1 } => Some(rewritten_in(
                        entry.filter.format(),
                        &walcast,
                        v1.as_ref(),
                        group,
                    )),
                    PluginOutcome::Failed(frame) => {
                        self.append(entry, pos, &frame, scratch);
                        if failing {
                            let reason = group.failure_reason();
                            entry
                                .cohort
                                .close_all(close_code::PLUGIN_FAILING, reason.as_deref());
                        }
                        return;
                    }
                }
            }
        };
        let frame = match plugin_frame {
            Some(frame) => frame,
            None => match &mut scratch.frames[entry.projection] {
                Some(f) => f.clone(),
                slot @ None => {
                    let shape = &t.projections[entry.projection].0;
                    let projection = Projection::of(shape.select.as_deref());
                    let text = scratch.encoder.encode(change, projection, shape.format);
                    slot.insert(Frame::from(text)).clone()
                }
            },
        };
        self.append(entry, pos, &frame, scratch);
    }

    pub(super) fn append(
        &self,
        entry: &CohortEntry,
        pos: Option<Pos>,
        frame: &Frame,
        scratch: &mut Scratch,
    ) {
        self.append_to(&entry.cohort, pos, frame, scratch);
    }

    pub(super) fn append_to(
        &self,
        cohort: &Arc<Cohort>,
        pos: Option<Pos>,
        frame: &Frame,
        scratch: &mut Scratch,
    ) {
        let pushed = cohort.push(pos, frame);
        self.metrics.frames_delivered.inc_by(pushed.readers as u64);
        if pushed.detached > 0 {
            self.metrics.sessions_behind.inc_by(pushed.detached as u64);
        }
        if pushed.first_mark {
            scratch.touched.push(cohort.clone());
        }
    }
}

/// The value the eq index is keyed on: the same row image the filter reads.
fn row_value<'a>(change: &Change<'a>, op: Op, column: &str) -> Option<crate::decode::Value<'a>> {
    filter::row_column(change, op, column).map(|c| c.value)
}

/// A registered subscription; dropping it unregisters.
pub struct Subscription {
    hub: Arc<Hub>,
    id: SubscriptionId,
    cohort: CohortId,
    schema: Box<str>,
    table: Box<str>,
    reader: Reader,
    /// The position of the last change dispatched before it was registered: it receives every
    /// change after this one.
    start: Pos,
}

impl Subscription {
    /// Every change after this position reaches the subscription (`Pos::ZERO`: no change was
    /// dispatched yet since walcast started).
    pub fn start(&self) -> Pos {
        self.start
    }

    pub fn id(&self) -> SubscriptionId {
        self.id
    }

    /// The session's read end of its cohort's frames.
    pub fn reader(&self) -> &Reader {
        &self.reader
    }

    /// The filter and binding its cohort was last carried to by a schema event, if any.
    pub fn rebound(&self) -> Option<Rebinding> {
        self.reader.cohort().rebound()
    }
}

impl Subscription {
    pub(super) fn follower(
        hub: Arc<Hub>,
        id: SubscriptionId,
        reader: Reader,
        start: Pos,
    ) -> Subscription {
        Subscription {
            hub,
            id,
            cohort: id,
            schema: "".into(),
            table: "".into(),
            reader,
            start,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub
            .unsubscribe(&self.schema, &self.table, self.cohort, self.reader.member());
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
