//! Subscription registry and fan-out: subscriptions indexed by table and, for `eq` conditions, by
//! value, so a change costs a hash lookup per indexed column rather than a scan over every
//! subscription. Does not decode (see `decode`) and does not own sockets (see `session`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::decode::{Change, FrameEncoder, Op, Projection};
use crate::filter::wasm::{PluginGroup, Verdict};
use crate::filter::{self, Filter, TypeClass};
use crate::metrics::Metrics;
use crate::source::Lsn;

use super::session::{close_code, Frame, Push, SessionTx};

pub type SubscriptionId = u64;

struct Sub {
    ops: u8,
    filter: Filter,
    /// Wasm filter group shared with every subscription of the same (plugin, params).
    plugin: Option<Arc<PluginGroup>>,
    session: SessionTx,
    /// Index into the table's distinct projections; subscriptions with the same `select=` share
    /// one encoded frame per change.
    projection: usize,
}

/// Subscriptions indexed by the value of one column (the first `eq` condition's column).
struct EqIndex {
    class: TypeClass,
    by_key: HashMap<Box<[u8]>, Vec<SubscriptionId>>,
}

#[derive(Default)]
struct TableSubs {
    subs: HashMap<SubscriptionId, Sub>,
    /// Subscriptions evaluated on every change of the table (no usable `eq` condition).
    scan: Vec<SubscriptionId>,
    eq: HashMap<Box<str>, EqIndex>,
    /// Distinct `select=` lists; `None` is the full row.
    projections: Vec<(Option<Box<[Box<str>]>>, usize)>,
}

impl TableSubs {
    fn projection_slot(&mut self, select: Option<&[Box<str>]>) -> usize {
        if let Some(i) = self
            .projections
            .iter()
            .position(|(p, _)| p.as_deref() == select)
        {
            self.projections[i].1 += 1;
            return i;
        }
        if let Some(i) = self.projections.iter().position(|(_, refs)| *refs == 0) {
            self.projections[i] = (select.map(Into::into), 1);
            return i;
        }
        self.projections.push((select.map(Into::into), 1));
        self.projections.len() - 1
    }
}

/// A plugin group's verdict for one change, with its frame built once for the whole group.
#[derive(Clone)]
enum Outcome {
    Drop,
    Pass,
    Rewritten(Frame),
    /// The `error` frame, and whether the group has now failed too often (close with 4010).
    Failed(Frame, bool),
}

impl Outcome {
    fn of(group: &PluginGroup, change: &Change<'_>) -> Outcome {
        match group.evaluate(change) {
            Verdict::Drop => Outcome::Drop,
            Verdict::Pass => Outcome::Pass,
            Verdict::Rewritten(frame) => Outcome::Rewritten(Frame::from(frame)),
            Verdict::Error(message) => {
                let mut text = String::with_capacity(64 + message.len());
                text.push_str(r#"{"type":"error","error":"plugin_error","plugin":"#);
                crate::decode::put_str(&mut text, group.plugin_name());
                text.push_str(r#","message":"#);
                crate::decode::put_str(&mut text, &message);
                text.push('}');
                Outcome::Failed(Frame::from(text), group.failing())
            }
        }
    }
}

/// Per-dispatch scratch reused across changes so fan-out allocates nothing once warm.
// public for benches
#[doc(hidden)]
#[derive(Default)]
pub struct Scratch {
    key: Vec<u8>,
    frames: Vec<Option<Frame>>,
    dead: Vec<SubscriptionId>,
    /// Sessions whose queue was full for this change, with the frame they still need.
    blocked: Vec<(SessionTx, Frame)>,
    /// Plugin verdicts for the current change, one per group.
    verdicts: HashMap<u64, Outcome>,
    encoder: FrameEncoder,
}

/// The subscription registry. Registration takes a short write lock; dispatch takes a read lock.
/// Dispatch never waits: a full session queue is remembered in `Scratch::blocked` and waited on
/// (bounded) by `drain_blocked` before the next message, outside the lock.
pub struct Hub {
    tables: RwLock<HashMap<Box<str>, HashMap<Box<str>, TableSubs>>>,
    next_id: AtomicU64,
    /// Highest LSN handed to the hub (start of the last dispatched message).
    position: AtomicU64,
    metrics: Arc<Metrics>,
}

impl Hub {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Hub> {
        Arc::new(Hub {
            tables: RwLock::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            position: AtomicU64::new(0),
            metrics,
        })
    }

    /// The WAL position of the last message the hub took in.
    pub fn position(&self) -> Lsn {
        Lsn(self.position.load(Ordering::Acquire))
    }

    pub(crate) fn advance(&self, lsn: Lsn) {
        self.position.fetch_max(lsn.0, Ordering::AcqRel);
    }

    /// Register a subscription. Every change dispatched after this returns is considered for it.
    pub fn subscribe(
        self: &Arc<Self>,
        schema: &str,
        table: &str,
        ops: u8,
        filter: Filter,
        plugin: Option<Arc<PluginGroup>>,
        session: SessionTx,
    ) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut tables = self.tables.write();
        let t = tables
            .entry(schema.into())
            .or_default()
            .entry(table.into())
            .or_default();
        let projection = t.projection_slot(filter.select());
        match filter.eq_index() {
            Some((column, key)) => {
                let class = filter.eq_class().unwrap_or(TypeClass::Text);
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
        t.subs.insert(
            id,
            Sub {
                ops,
                filter,
                plugin,
                session,
                projection,
            },
        );
        drop(tables);
        self.metrics.subscriptions.inc();
        Subscription {
            hub: self.clone(),
            id,
            schema: schema.into(),
            table: table.into(),
        }
    }

    fn unsubscribe(&self, schema: &str, table: &str, id: SubscriptionId) {
        let mut tables = self.tables.write();
        let Some(by_table) = tables.get_mut(schema) else {
            return;
        };
        let Some(t) = by_table.get_mut(table) else {
            return;
        };
        let Some(sub) = t.subs.remove(&id) else {
            return;
        };
        self.metrics.subscriptions.dec();
        if let Some(p) = t.projections.get_mut(sub.projection) {
            p.1 = p.1.saturating_sub(1);
        }
        match sub.filter.eq_index() {
            Some((column, key)) => {
                if let Some(index) = t.eq.get_mut(column) {
                    if let Some(ids) = index.by_key.get_mut(key) {
                        ids.retain(|x| *x != id);
                        if ids.is_empty() {
                            index.by_key.remove(key);
                        }
                    }
                    if index.by_key.is_empty() {
                        t.eq.remove(column);
                    }
                }
            }
            None => t.scan.retain(|x| *x != id),
        }
        if t.subs.is_empty() {
            by_table.remove(table);
            if by_table.is_empty() {
                tables.remove(schema);
            }
        }
    }

    /// Offer one row change to every matching subscription. Never blocks: a session whose queue
    /// is full is closed with 4008 and removed.
    // public for benches
    #[doc(hidden)]
    pub fn dispatch(&self, change: &Change<'_>, scratch: &mut Scratch) {
        let Some(op) = change.op() else { return };
        scratch.dead.clear();
        {
            let tables = self.tables.read();
            let Some(t) = tables
                .get(change.schema())
                .and_then(|s| s.get(change.table()))
            else {
                return;
            };
            scratch.frames.clear();
            scratch.frames.resize(t.projections.len(), None);
            scratch.verdicts.clear();

            if op == Op::Truncate {
                // Filters cannot apply to a truncate: every subscription that asked for it gets it.
                for (id, sub) in &t.subs {
                    self.offer(*id, sub, t, change, op, scratch);
                }
            } else {
                for id in &t.scan {
                    if let Some(sub) = t.subs.get(id) {
                        self.offer(*id, sub, t, change, op, scratch);
                    }
                }
                let mut key_buf = std::mem::take(&mut scratch.key);
                for (column, index) in &t.eq {
                    let value = row_value(change, op, column);
                    let Some(key) =
                        value.and_then(|v| filter::index_key(v, index.class, &mut key_buf))
                    else {
                        continue;
                    };
                    if let Some(ids) = index.by_key.get(key) {
                        for id in ids {
                            if let Some(sub) = t.subs.get(id) {
                                self.offer(*id, sub, t, change, op, scratch);
                            }
                        }
                    }
                }
                scratch.key = key_buf;
            }
        }
        for &id in &scratch.dead {
            self.unsubscribe(change.schema(), change.table(), id);
        }
    }

    /// Back-pressure: deliver the frames that found a full queue, waiting for each session until
    /// `timeout` from now. Sessions that do not make room in time are closed with 4008.
    pub(crate) async fn drain_blocked(&self, scratch: &mut Scratch, timeout: std::time::Duration) {
        if scratch.blocked.is_empty() {
            return;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        for (session, frame) in scratch.blocked.drain(..) {
            if session.signal().is_closing() {
                continue;
            }
            match session.send_by(frame, deadline).await {
                Push::Queued => {
                    self.metrics.frames_delivered.inc();
                }
                Push::Full => {
                    self.metrics.sessions_dropped.inc();
                    tracing::info!("closing a slow consumer (4008)");
                }
                Push::Closed => {}
            }
        }
    }

    fn offer(
        &self,
        id: SubscriptionId,
        sub: &Sub,
        t: &TableSubs,
        change: &Change<'_>,
        op: Op,
        scratch: &mut Scratch,
    ) {
        if sub.ops & op.bit() == 0
            || sub.session.signal().is_closing()
            || !sub.filter.matches(change)
        {
            return;
        }
        let plugin_frame = match &sub.plugin {
            None => None,
            Some(group) => {
                let outcome = scratch
                    .verdicts
                    .entry(group.id())
                    .or_insert_with(|| Outcome::of(group, change))
                    .clone();
                match outcome {
                    Outcome::Drop => return,
                    Outcome::Pass => None,
                    Outcome::Rewritten(frame) => Some(frame),
                    Outcome::Failed(frame, failing) => {
                        let _ = sub.session.push(&frame);
                        if failing {
                            sub.session.signal().close(close_code::PLUGIN_FAILING);
                        }
                        return;
                    }
                }
            }
        };
        let frame = match &plugin_frame {
            Some(frame) => frame,
            None => match &mut scratch.frames[sub.projection] {
                Some(f) => f,
                slot @ None => {
                    let projection = match &t.projections[sub.projection].0 {
                        Some(cols) => Projection::Only(cols),
                        None => Projection::All,
                    };
                    slot.insert(Frame::from(scratch.encoder.change(change, projection)))
                }
            },
        };
        match sub.session.push(frame) {
            Push::Queued => {
                self.metrics.frames_delivered.inc();
            }
            Push::Full => scratch.blocked.push((sub.session.clone(), frame.clone())),
            Push::Closed => scratch.dead.push(id),
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
    schema: Box<str>,
    table: Box<str>,
}

impl Subscription {
    pub fn id(&self) -> SubscriptionId {
        self.id
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.schema, &self.table, self.id);
    }
}
