//! Schema events in the hub: at the event's position, every cohort of the table is carried to the
//! new shape (its request rebound by attnum, its filter bound again, the indexes rebuilt) and
//! given the `schema` frame, or, when its request no longer binds, the frame and then a
//! `schema_changed` error before it ends (4011); followers of schema events (`query=schema:...`)
//! get the frame with the columns they may see. Also where inferred events are found (a change
//! whose columns differ from the table's last known shape). Does not parse messages or diff
//! shapes (`schema` does) and does not journal (`intake` does).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::decode::Change;
use crate::filter::wasm::PluginGroup;
use crate::filter::{self, Filter, Request, TableName, TableShape};
use crate::journal::{JournalError, JournalHandle, RecordKind};
use crate::metrics::Metrics;
use crate::schema::{self, Diff, Renamed, SchemaEvent, Side, Source, Unbound};
use crate::vocab::{close_code, Frame, Pos, SessionSignal};

use super::cohort::Cohort;
use super::registry::{Hub, Scratch, Subscription, SubscriptionId, TableSubs};

/// Tables whose last schema event the hub remembers (for subscriptions validated just before
/// it); when full, the oldest half is forgotten.
const LAST_EVENTS: usize = 4096;

/// The request a cohort's filter was bound from and the table shape it was bound against.
#[derive(Clone, Debug)]
pub struct Binding {
    pub request: Arc<Request>,
    pub shape: Arc<TableShape>,
    /// A policy rewrote the request: its rule names columns by name, so a rename of a column
    /// the request uses ends the subscription instead of carrying it (fail closed: a forged or
    /// real rename never points a rule's column or row filter at another column).
    pub policy: bool,
}

/// A subscription's filter and binding as a schema event carried them to a new shape.
#[derive(Clone, Debug)]
pub struct Rebinding {
    pub filter: Filter,
    pub binding: Binding,
}

/// What a follower of schema events may see of one table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sight {
    /// Nothing: no event of this table reaches it.
    Hidden,
    /// Every column.
    All,
    /// Only these columns.
    Columns(Vec<String>),
}

impl Sight {
    fn shows(&self, column: &str) -> bool {
        match self {
            Sight::Hidden => false,
            Sight::All => true,
            Sight::Columns(columns) => columns.iter().any(|c| c == column),
        }
    }
}

/// Decides, per table, what a follower may see (the allow-list and its policy rule).
pub type Sees = Arc<dyn Fn(&TableName) -> Sight + Send + Sync>;

/// A subscription to schema events only, as the hub files it.
pub struct FollowRequest {
    /// The parsed `query=schema:<target>` request.
    pub request: Arc<Request>,
    pub sees: Sees,
}

pub(super) struct Follower {
    request: Arc<Request>,
    sees: Sees,
    pub(super) cohort: Arc<Cohort>,
}

/// A table's last schema event.
pub(super) type LastEvent = Arc<SchemaEvent>;

/// Schema events a table's history keeps (its newest); a resume with names older than these is
/// refused as any unknown column is.
const HISTORY_PER_TABLE: usize = 256;
/// Tables with a history; when full, the tables are forgotten and history starts over.
const HISTORY_TABLES: usize = 4096;

/// Each table's schema events (under its name before each event), oldest first.
#[derive(Default)]
pub(super) struct History {
    tables: HashMap<TableName, VecDeque<(Pos, Arc<SchemaEvent>)>>,
}

impl History {
    fn record(&mut self, pos: Pos, event: Arc<SchemaEvent>) {
        let Some(table) = event.before_table() else {
            return;
        };
        if self.tables.len() >= HISTORY_TABLES && !self.tables.contains_key(&table) {
            self.tables.clear();
        }
        let events = self.tables.entry(table).or_default();
        if events.back().is_some_and(|(last, _)| *last >= pos) {
            return;
        }
        if events.len() >= HISTORY_PER_TABLE {
            events.pop_front();
        }
        events.push_back((pos, event));
    }
}

/// The schema events a journal holds, oldest first: read once at start (on the blocking pool)
/// so that a resume with old column names finds them without reading the journal again.
pub fn journaled_events(journal: &JournalHandle) -> Vec<(Pos, SchemaEvent)> {
    let reader = match journal.reader(Pos::ZERO) {
        Err(JournalError::Expired { horizon, .. }) => journal.reader(horizon),
        other => other,
    };
    let Ok(mut reader) = reader else {
        return Vec::new();
    };
    let mut events = Vec::new();
    loop {
        match reader.next() {
            Ok(Some(record)) if record.kind == RecordKind::Schema => {
                if let Ok(event) = SchemaEvent::from_record(record.payload) {
                    events.push((record.pos, event));
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(error) => {
                tracing::warn!(%error, "reading the journal's schema events stopped early");
                break;
            }
        }
    }
    events
}

impl Hub {
    /// Register a follower of schema events (`query=schema:...`): every schema event dispatched
    /// after this returns that it follows and may see reaches it.
    pub fn follow(
        self: &Arc<Self>,
        req: FollowRequest,
        signal: Arc<SessionSignal>,
        id: SubscriptionId,
    ) -> Subscription {
        // The registry's read lock orders this against `dispatch_schema` (write lock): the
        // follower gets exactly the events after the position it reads.
        let tables = self.tables.read();
        let cohort = Cohort::new(self.queue_capacity());
        let reader = cohort.join(signal);
        self.followers.write().insert(
            id,
            Follower {
                request: req.request,
                sees: req.sees,
                cohort,
            },
        );
        let start = self.last_pos();
        drop(tables);
        self.metrics().subscriptions.inc();
        Subscription::follower(self.clone(), id, reader, start)
    }

    /// Takes a member out of follower cohort `id`; false when `id` is not a follower's.
    pub(super) fn drop_follower(
        &self,
        id: SubscriptionId,
        member: &Arc<super::cohort::Member>,
    ) -> bool {
        let mut followers = self.followers.write();
        let Some(follower) = followers.get(&id) else {
            return false;
        };
        if follower.cohort.leave(member) == 0 {
            followers.remove(&id);
        }
        true
    }

    /// A schema event at `pos`: every open cohort of the table gets the `schema` frame and is
    /// carried to the new shape, or ends with `schema_changed`; every follower that follows the
    /// table and may see it gets the frame. Never blocks; wakes no one (see `wake`).
    pub(crate) fn dispatch_schema(&self, event: &SchemaEvent, pos: Pos, scratch: &mut Scratch) {
        let diff = event.diff();
        let mut tables = self.tables.write();
        self.note_pos(pos);
        self.remember(event);
        self.history.lock().record(pos, Arc::new(event.clone()));
        let name = event.before_table().unwrap_or_else(|| event.table());
        let t = tables
            .get_mut(name.schema.as_str())
            .and_then(|s| s.get_mut(name.name.as_str()));
        if let Some(t) = t {
            if let Some(after) = &event.after {
                t.shape = Some(Arc::new(after.clone()));
            }
            for entry in t.cohorts.values_mut() {
                if entry.cohort.is_closed() {
                    continue;
                }
                let before_select = entry.filter.select().map(<[_]>::to_vec);
                match carry(entry.binding.as_ref(), entry.plugin.as_deref(), event) {
                    Ok((rebinding, renamed)) => {
                        let after_select = rebinding.filter.select();
                        if worth_a_frame(event, &diff, before_select.as_deref(), after_select) {
                            let frame = frame_for(
                                event,
                                &diff,
                                Some(pos),
                                before_select.as_deref(),
                                after_select,
                                &renamed,
                            );
                            self.append_to(&entry.cohort, Some(pos), &frame, scratch);
                        }
                        entry.filter = rebinding.filter.clone();
                        entry.binding = Some(rebinding.binding.clone());
                        entry.cohort.set_rebound(rebinding);
                    }
                    Err(unbound) => {
                        let frame = frame_for(
                            event,
                            &diff,
                            Some(pos),
                            before_select.as_deref(),
                            before_select.as_deref(),
                            &[],
                        );
                        self.append_to(&entry.cohort, Some(pos), &frame, scratch);
                        end_cohort(
                            self.metrics(),
                            &entry.cohort,
                            &name,
                            Some(scratch),
                            &unbound,
                        );
                    }
                }
            }
            t.reindex();
        }
        for follower in self.followers.read().values() {
            if follower.cohort.is_closed() {
                continue;
            }
            if let Some(frame) = follower_frame(follower, event, &diff, pos) {
                self.append_to(&follower.cohort, Some(pos), &frame, scratch);
            }
        }
    }

    /// A subscription validated against the shape before the table's last schema event, and
    /// registering after it was dispatched, is carried over as the cohorts were; `Some` when it
    /// no longer binds.
    pub(super) fn carry_stale(
        &self,
        filter: &mut Filter,
        binding: &mut Option<Binding>,
        plugin: Option<&PluginGroup>,
        table: &TableName,
    ) -> Option<Unbound> {
        let bound = binding.as_ref()?;
        let last = self.last_events.lock().get(table).cloned()?;
        let before = last.before.as_ref()?;
        if !same_columns(before, &bound.shape) {
            // Bound against another shape: the one after the event (the catalog already showed
            // it), or one this hub never saw.
            return None;
        }
        match carry(Some(bound), plugin, &last) {
            Ok((rebinding, _)) => {
                *filter = rebinding.filter;
                *binding = Some(rebinding.binding);
                None
            }
            Err(unbound) => Some(unbound),
        }
    }

    /// Takes the schema events an earlier run journaled (`journaled_events`).
    pub fn load_history(&self, events: Vec<(Pos, SchemaEvent)>) {
        let mut history = self.history.lock();
        for (pos, event) in events {
            history.record(pos, Arc::new(event));
        }
    }

    /// `table`'s schema events under the name it had before each, oldest first.
    pub fn schema_history(&self, table: &TableName) -> Vec<(Pos, Arc<SchemaEvent>)> {
        self.history
            .lock()
            .tables
            .get(table)
            .map(|events| events.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn remember(&self, event: &SchemaEvent) {
        let mut last = self.last_events.lock();
        if last.len() >= LAST_EVENTS {
            last.clear();
        }
        let shared = Arc::new(event.clone());
        if let Some(before) = event.before_table() {
            last.insert(before, shared.clone());
        }
        last.insert(event.table(), shared);
    }
}

/// Without the event triggers: the inferred schema event a change of table `t` implies, when
/// its columns differ from the table's known shape (tables with subscriptions only).
pub(super) fn inferred(t: &TableSubs, change: &Change<'_>) -> Option<SchemaEvent> {
    let shape = t.shape.as_ref()?;
    if !schema::differs(shape, change) {
        return None;
    }
    Some(SchemaEvent {
        source: Source::Inferred,
        command: None,
        oid: shape.oid,
        before: Some((**shape).clone()),
        after: Some(schema::infer(shape, change)),
    })
}

/// Whether two shapes have the same columns (attnum and name), whatever their other attributes
/// (the event triggers print user-defined types schema-qualified, the catalog as the search
/// path shows them).
fn same_columns(a: &TableShape, b: &TableShape) -> bool {
    a.schema == b.schema
        && a.table == b.table
        && a.columns.len() == b.columns.len()
        && a.columns
            .iter()
            .zip(&b.columns)
            .all(|(x, y)| x.attnum == y.attnum && x.name == y.name)
}

/// Carries a subscription (its binding, and the plugin it runs) across `event`: its request
/// rebound to the new shape and its filter bound again. `Err` says why it no longer binds.
pub fn carry(
    binding: Option<&Binding>,
    plugin: Option<&PluginGroup>,
    event: &SchemaEvent,
) -> Result<(Rebinding, Vec<Renamed>), Unbound> {
    let table = event.before_table().unwrap_or_else(|| event.table());
    let command = event.command.as_deref().unwrap_or("a schema change");
    let Some(binding) = binding else {
        return Err(Unbound(format!(
            "table {table} changed ({command}) and this subscription cannot be carried to its new columns; subscribe again"
        )));
    };
    let rebound = schema::rebind(&binding.request, &binding.shape, event.after.as_ref())?;
    let Some(after) = &event.after else {
        return Err(Unbound(format!("table {table} was dropped")));
    };
    let filter = filter::bind(&rebound.request, &after.column_infos()).map_err(|e| {
        Unbound(format!(
            "after {command} on {table}, the subscription's request no longer binds: {}",
            e.message
        ))
    })?;
    if binding.policy && !rebound.renamed.is_empty() {
        let names: Vec<String> = rebound
            .renamed
            .iter()
            .map(|r| format!("{:?} to {:?}", r.from, r.to))
            .collect();
        return Err(Unbound(format!(
            "after {command} on {table}, columns this subscription uses were renamed ({}), and \
             the policy's rule names columns by name; subscribe again",
            names.join(", ")
        )));
    }
    if plugin.is_some() {
        let columns = |r: &Request| r.plugin.as_ref().and_then(|p| p.columns.clone());
        if columns(&rebound.request) != columns(&binding.request) {
            return Err(Unbound(format!(
                "after {command} on {table}, columns its plugin may see were renamed; subscribe again"
            )));
        }
    }
    Ok((
        Rebinding {
            filter,
            binding: Binding {
                request: Arc::new(rebound.request),
                shape: Arc::new(after.clone()),
                policy: binding.policy,
            },
        },
        rebound.renamed,
    ))
}

/// Whether a subscriber whose `select=` was `before` and is now `after` has anything to learn
/// from the event: a table altered only in columns it does not see is not worth a frame (nor a
/// hint that hidden columns changed).
pub fn worth_a_frame(
    event: &SchemaEvent,
    diff: &Diff,
    before: Option<&[Box<str>]>,
    after: Option<&[Box<str>]>,
) -> bool {
    if event.kind() != schema::EventKind::Altered {
        return true;
    }
    let shows = |select: Option<&[Box<str>]>, column: &str| {
        select.is_none_or(|s| s.iter().any(|c| &**c == column))
    };
    let visible = |side: Side, column: &str| match side {
        Side::Before => shows(before, column),
        Side::After => shows(after, column),
    };
    !schema::diff_is_invisible(diff, &visible)
}

/// The `schema` frame for a subscriber whose `select=` was `before` and is now `after` (`None`:
/// every column).
pub fn frame_for(
    event: &SchemaEvent,
    diff: &Diff,
    pos: Option<Pos>,
    before: Option<&[Box<str>]>,
    after: Option<&[Box<str>]>,
    rebound: &[Renamed],
) -> Frame {
    let shows = |select: Option<&[Box<str>]>, column: &str| {
        select.is_none_or(|s| s.iter().any(|c| &**c == column))
    };
    let visible = |side: Side, column: &str| match side {
        Side::Before => shows(before, column),
        Side::After => shows(after, column),
    };
    let mut text = String::with_capacity(512);
    schema::encode_frame(&mut text, event, diff, pos, &visible, rebound);
    Frame::from(text)
}

fn follower_frame(
    follower: &Follower,
    event: &SchemaEvent,
    diff: &Diff,
    pos: Pos,
) -> Option<Frame> {
    follow_frame(&follower.request, &follower.sees, event, diff, pos)
}

/// The frame a follower of `request` gets, `None` when it does not follow the table or may not
/// see it (under either of its names).
pub(super) fn follow_frame(
    request: &Request,
    sees: &Sees,
    event: &SchemaEvent,
    diff: &Diff,
    pos: Pos,
) -> Option<Frame> {
    let before = event.before.as_ref().map(TableShape::name);
    let after = event.after.as_ref().map(TableShape::name);
    let follows = [&before, &after]
        .into_iter()
        .flatten()
        .any(|name| request.follows(name));
    if !follows {
        return None;
    }
    let sight = |name: &Option<TableName>| name.as_ref().map(|n| sees(n));
    let (seen_before, seen_after) = (sight(&before), sight(&after));
    if [&seen_before, &seen_after]
        .into_iter()
        .flatten()
        .any(|s| *s == Sight::Hidden)
    {
        return None;
    }
    let visible = |side: Side, column: &str| {
        let seen = match side {
            Side::Before => &seen_before,
            Side::After => &seen_after,
        };
        seen.as_ref().is_some_and(|s| s.shows(column))
    };
    if event.kind() == schema::EventKind::Altered && schema::diff_is_invisible(diff, &visible) {
        return None;
    }
    let mut text = String::with_capacity(512);
    schema::encode_frame(&mut text, event, diff, Some(pos), &visible, &[]);
    Some(Frame::from(text))
}

/// `{"type":"error","error":"schema_changed","table":..,"message":..}`.
pub fn schema_changed_frame(table: &TableName, message: &str) -> Frame {
    let mut text = String::with_capacity(160);
    text.push_str(r#"{"type":"error","error":"schema_changed","table":"#);
    crate::decode::put_str(&mut text, &table.to_string());
    text.push_str(r#","message":"#);
    crate::decode::put_str(&mut text, message);
    text.push('}');
    Frame::from(text)
}

/// Ends a cohort whose request no longer binds: its members get the `schema_changed` error after
/// the frames before it, then their subscription ends (4011 for a URL's).
pub(super) fn end_cohort(
    metrics: &Metrics,
    cohort: &Arc<Cohort>,
    table: &TableName,
    scratch: Option<&mut Scratch>,
    unbound: &Unbound,
) {
    let frame = schema_changed_frame(table, &unbound.0);
    let pushed = cohort.push(None, &frame);
    metrics.schema_changed.inc_by(pushed.readers as u64);
    let _ = scratch;
    tracing::info!(%table, subscribers = pushed.readers, reason = %unbound.0, "schema event: a cohort's request no longer binds; its subscriptions end (schema_changed)");
    cohort.end_explained(
        close_code::SUBSCRIPTION_ENDED,
        &format!("schema changed: {}", unbound.0),
    );
}
