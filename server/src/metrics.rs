//! Prometheus metrics shared by every stage, rendered at `GET /metrics`. Stages hold an
//! `Arc<Metrics>` and bump atomics; nothing here allocates on the hot path. Imports no stage:
//! what a stage counts reaches it as numbers and labels (a plugin's totals, a limit's label), and
//! the stages decide when to count.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Every `limit` label of `walcast_limit_refusals_total` for the `[limits]` (the filter's
/// `refusal_label` names them), so the family shows each at 0 before its first refusal.
pub const REFUSAL_LABELS: [&str; 5] = [
    "query_bytes",
    "conditions",
    "in_list",
    "like_pattern",
    "plugin_groups",
];

/// One plugin's totals as the plugin host counts them, for `sync_plugin`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PluginTotals {
    pub calls: u64,
    pub traps: u64,
    pub deadline_hits: u64,
    pub errors: u64,
    pub memory_grow_refused: u64,
    pub call_seconds: f64,
}

/// All metric handles. Names are documented in docs/reference/metrics.md.
pub struct Metrics {
    registry: Registry,
    /// XLogData messages received from the walsender.
    pub changes_received: Counter,
    /// Row changes (I/U/D/T) decoded successfully.
    pub changes_decoded: Counter,
    /// Payloads that were not valid wal2json.
    pub decode_errors: Counter,
    /// Schema events from the event trigger's messages, and inferred from changes.
    pub schema_events_trigger: Counter,
    pub schema_events_inferred: Counter,
    /// `walcast.ddl` messages that could not be read (each a `schema_unreadable` frame).
    pub schema_errors: Counter,
    /// Subscriptions ended by a schema event (`schema_changed`).
    pub schema_changed: Counter,
    /// Frames queued to sessions.
    pub frames_delivered: Counter,
    /// Sessions closed as slow consumers (4008: fell behind the journal's retention).
    pub sessions_dropped: Counter,
    /// Open WebSocket sessions.
    pub sessions: Gauge,
    /// Active subscriptions.
    pub subscriptions: Gauge,
    /// Bytes of WAL between the server's end and the flushed position.
    pub slot_lag_bytes: Gauge,
    /// Replication reconnects.
    pub reconnects: Counter,
    /// Decode + dispatch time per change, seconds.
    pub decode_seconds: Histogram,
    /// Journal size on disk (plus what is buffered), bytes.
    pub journal_bytes: Gauge,
    /// Journal segment files.
    pub journal_segments: Gauge,
    /// Time spent in journal flushes (write + fsync per burst), seconds.
    pub journal_flush_seconds: Histogram,
    /// Time to append one change to the journal's buffer (one change in 16 is timed), seconds.
    pub journal_append_seconds: Histogram,
    /// Journal segments removed by retention.
    pub journal_segments_removed: Counter,
    /// Changes the journal could not take (write or fsync failures, refused appends).
    pub journal_errors: Counter,
    /// Sessions reading the journal (resuming, or fallen behind their cohort's log) right now.
    pub catchup_sessions: Gauge,
    /// Sessions moved from their cohort's in-memory log to the journal because they fell behind.
    pub sessions_behind: Counter,
    /// NOTIFY payloads received by the relay.
    pub notify_received: Counter,
    /// Times the relay's LISTEN connection was lost (notifications may be missing).
    pub notify_gaps: Counter,
    /// Channels the relay LISTENs to.
    pub notify_channels: Gauge,
    /// Commit LSN of the oldest position the journal still holds (0 while empty).
    pub journal_oldest_lsn: Gauge,
    /// Named subscriptions (`sub=`) stored.
    pub named_subscriptions: Gauge,
    /// Writes of the named subscriptions' file (each persists every ack received before it).
    pub ack_persists: Counter,
    /// 1 while the replication stream is paused because the journal is at `journal.max_bytes`
    /// and a named subscription still needs its oldest segment.
    pub retention_held: Gauge,
    /// Named subscriptions that stopped holding the journal after `named.idle_expiry` without a
    /// socket.
    pub named_expired: Counter,
    /// `walcast.ddl_version()` of the schema-event triggers found at start; 0 when not installed.
    pub schema_trigger_version: Gauge,
    /// Per plugin (label `plugin`): calls, traps, deadline hits, error verdicts, call time.
    plugin_calls: Family<Vec<(String, String)>, Counter>,
    plugin_traps: Family<Vec<(String, String)>, Counter>,
    plugin_deadline_hits: Family<Vec<(String, String)>, Counter>,
    plugin_errors: Family<Vec<(String, String)>, Counter>,
    /// Per plugin: `memory.grow` calls refused at `plugins.memory_limit`.
    plugin_memory_grow_refused: Family<Vec<(String, String)>, Counter>,
    plugin_call_seconds: Family<Vec<(String, String)>, Counter<f64>>,
    /// Requests refused at one of the `[limits]` (label `limit`: `query_bytes`, `conditions`,
    /// `in_list`, `like_pattern`, `plugin_groups`).
    limit_refusals: Family<Vec<(String, String)>, Counter>,
    /// Sockets closed by a timeout (label `reason`: `write`, `idle`).
    sessions_timed_out: Family<Vec<(String, String)>, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("walcast");
        let mut m = Metrics {
            changes_received: Counter::default(),
            changes_decoded: Counter::default(),
            schema_events_trigger: Counter::default(),
            schema_events_inferred: Counter::default(),
            schema_errors: Counter::default(),
            schema_changed: Counter::default(),
            decode_errors: Counter::default(),
            frames_delivered: Counter::default(),
            sessions_dropped: Counter::default(),
            sessions: Gauge::default(),
            subscriptions: Gauge::default(),
            slot_lag_bytes: Gauge::default(),
            reconnects: Counter::default(),
            decode_seconds: Histogram::new(exponential_buckets(1e-7, 4.0, 10)),
            journal_bytes: Gauge::default(),
            journal_segments: Gauge::default(),
            journal_flush_seconds: Histogram::new(exponential_buckets(1e-5, 4.0, 10)),
            journal_append_seconds: Histogram::new(exponential_buckets(1e-8, 4.0, 10)),
            journal_segments_removed: Counter::default(),
            journal_errors: Counter::default(),
            catchup_sessions: Gauge::default(),
            sessions_behind: Counter::default(),
            notify_received: Counter::default(),
            notify_gaps: Counter::default(),
            notify_channels: Gauge::default(),
            journal_oldest_lsn: Gauge::default(),
            named_subscriptions: Gauge::default(),
            ack_persists: Counter::default(),
            retention_held: Gauge::default(),
            named_expired: Counter::default(),
            schema_trigger_version: Gauge::default(),
            plugin_calls: Family::default(),
            plugin_traps: Family::default(),
            plugin_deadline_hits: Family::default(),
            plugin_errors: Family::default(),
            plugin_memory_grow_refused: Family::default(),
            plugin_call_seconds: Family::default(),
            limit_refusals: Family::default(),
            sessions_timed_out: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "journal_bytes",
            "Journal size on disk and buffered",
            m.journal_bytes.clone(),
        );
        registry.register(
            "journal_segments",
            "Journal segment files",
            m.journal_segments.clone(),
        );
        registry.register(
            "journal_flush_seconds",
            "Journal flush time per burst (write and fsync)",
            m.journal_flush_seconds.clone(),
        );
        registry.register(
            "journal_append_seconds",
            "Time to append one change to the journal's buffer (one change in 16 is timed)",
            m.journal_append_seconds.clone(),
        );
        registry.register(
            "journal_segments_removed",
            "Journal segments removed by retention",
            m.journal_segments_removed.clone(),
        );
        registry.register(
            "journal_errors",
            "Changes the journal could not take (write or fsync failures, refused appends)",
            m.journal_errors.clone(),
        );
        registry.register(
            "catchup_sessions",
            "Sessions replaying the journal",
            m.catchup_sessions.clone(),
        );
        registry.register(
            "notify_received",
            "NOTIFY payloads received by the relay",
            m.notify_received.clone(),
        );
        registry.register(
            "notify_gaps",
            "Times the NOTIFY relay's LISTEN connection was lost",
            m.notify_gaps.clone(),
        );
        registry.register(
            "notify_channels",
            "Channels the NOTIFY relay listens to",
            m.notify_channels.clone(),
        );
        registry.register(
            "sessions_behind",
            "Sessions moved from their cohort's in-memory log to the journal (fell behind)",
            m.sessions_behind.clone(),
        );
        registry.register(
            "journal_oldest_lsn",
            "Commit LSN (as an integer) of the oldest position the journal holds",
            m.journal_oldest_lsn.clone(),
        );
        registry.register(
            "named_subscriptions",
            "Named subscriptions (sub=) stored",
            m.named_subscriptions.clone(),
        );
        registry.register(
            "ack_persists",
            "Writes of the named subscriptions' file",
            m.ack_persists.clone(),
        );
        registry.register(
            "retention_held",
            "1 while the stream is paused: journal at max_bytes and a named subscription needs its oldest segment",
            m.retention_held.clone(),
        );
        registry.register(
            "named_subscriptions_expired",
            "Named subscriptions that stopped holding the journal after named.idle_expiry without a socket",
            m.named_expired.clone(),
        );
        registry.register(
            "schema_trigger_version",
            "Version of the schema-event triggers (walcast setup) found at start; 0 when not installed",
            m.schema_trigger_version.clone(),
        );
        registry.register(
            "messages_received",
            "XLogData messages received",
            m.changes_received.clone(),
        );
        registry.register(
            "changes_decoded",
            "Row changes decoded",
            m.changes_decoded.clone(),
        );
        let schema_events = Family::<Vec<(String, String)>, Counter>::default();
        let by_source = |source: &str| {
            let label = vec![("source".to_owned(), source.to_owned())];
            schema_events.get_or_create(&label).clone()
        };
        m.schema_events_trigger = by_source("trigger");
        m.schema_events_inferred = by_source("inferred");
        registry.register(
            "schema_events",
            "Schema events by source (trigger: walcast setup's event triggers; inferred: a change whose columns differed)",
            schema_events,
        );
        registry.register(
            "schema_errors",
            "walcast.ddl messages that could not be read (each sent as a schema_unreadable error frame)",
            m.schema_errors.clone(),
        );
        registry.register(
            "schema_changed",
            "Subscriptions ended by a schema event (schema_changed)",
            m.schema_changed.clone(),
        );
        registry.register(
            "decode_errors",
            "Payloads that were not valid wal2json",
            m.decode_errors.clone(),
        );
        registry.register(
            "frames_delivered",
            "Frames queued to sessions",
            m.frames_delivered.clone(),
        );
        registry.register(
            "sessions_dropped",
            "Sessions closed as slow consumers (4008: fell behind the journal's retention)",
            m.sessions_dropped.clone(),
        );
        registry.register("sessions", "Open WebSocket sessions", m.sessions.clone());
        registry.register(
            "subscriptions",
            "Active subscriptions",
            m.subscriptions.clone(),
        );
        registry.register(
            "slot_lag_bytes",
            "WAL bytes between server end and flushed position",
            m.slot_lag_bytes.clone(),
        );
        registry.register(
            "replication_reconnects",
            "Replication connection reconnects",
            m.reconnects.clone(),
        );
        registry.register(
            "decode_seconds",
            "Decode and dispatch time per message",
            m.decode_seconds.clone(),
        );
        registry.register("plugin_calls", "Wasm filter calls", m.plugin_calls.clone());
        registry.register("plugin_traps", "Wasm filter traps", m.plugin_traps.clone());
        registry.register(
            "plugin_deadline_hits",
            "Wasm filter calls stopped at the deadline",
            m.plugin_deadline_hits.clone(),
        );
        registry.register(
            "plugin_errors",
            "Wasm filter ERROR verdicts",
            m.plugin_errors.clone(),
        );
        registry.register(
            "plugin_memory_grow_refused",
            "Wasm memory.grow calls refused at plugins.memory_limit",
            m.plugin_memory_grow_refused.clone(),
        );
        registry.register(
            "plugin_call_seconds",
            "Time spent in Wasm filter calls",
            m.plugin_call_seconds.clone(),
        );
        registry.register(
            "limit_refusals",
            "Requests refused at one of the [limits] (query size, conditions, in list, like pattern, plugin groups)",
            m.limit_refusals.clone(),
        );
        // Every label from the start, at 0: a dashboard sees the family before the first refusal.
        for limit in REFUSAL_LABELS {
            let _ = m
                .limit_refusals
                .get_or_create(&vec![("limit".to_owned(), limit.to_owned())]);
        }
        registry.register(
            "sessions_timed_out",
            "Sockets closed by sessions.write_timeout (reason=write, 4008) or sessions.idle_timeout (reason=idle, 4009)",
            m.sessions_timed_out.clone(),
        );
        for reason in ["write", "idle"] {
            let _ = m
                .sessions_timed_out
                .get_or_create(&vec![("reason".to_owned(), reason.to_owned())]);
        }
        Metrics { registry, ..m }
    }

    /// Counts one socket closed by a timeout (`reason`: `write` or `idle`).
    pub fn session_timed_out(&self, reason: &str) {
        self.sessions_timed_out
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .inc();
    }

    /// Sockets closed by a timeout so far for `reason`.
    pub fn sessions_timed_out(&self, reason: &str) -> u64 {
        self.sessions_timed_out
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .get()
    }

    /// Counts one refusal at the limit labelled `limit` in `walcast_limit_refusals_total`.
    pub fn limit_refusal(&self, limit: &str) {
        self.limit_refusals
            .get_or_create(&vec![("limit".to_owned(), limit.to_owned())])
            .inc();
    }

    /// Counts one refusal at a connection, message or named subscription limit (`limit` label:
    /// `connections`, `connections_per_ip`, `message_rate`, `named_subscriptions`), named by its
    /// error code.
    pub fn limit_refused(&self, code: &str) {
        let label = match code {
            "too_many_connections" => "connections",
            "too_many_connections_from_ip" => "connections_per_ip",
            "rate_limited" => "message_rate",
            "too_many_named_subscriptions" => "named_subscriptions",
            other => other,
        };
        self.limit_refusal(label);
    }

    /// Bring one plugin's counters up to the plugin host's totals (called at scrape time).
    pub fn sync_plugin(&self, plugin: &str, totals: &PluginTotals) {
        fn bump(
            family: &Family<Vec<(String, String)>, Counter>,
            labels: &Vec<(String, String)>,
            total: u64,
        ) {
            let counter = family.get_or_create(labels);
            let seen = counter.get();
            if total > seen {
                counter.inc_by(total - seen);
            }
        }
        let labels = vec![("plugin".to_owned(), plugin.to_owned())];
        bump(&self.plugin_calls, &labels, totals.calls);
        bump(&self.plugin_traps, &labels, totals.traps);
        bump(&self.plugin_deadline_hits, &labels, totals.deadline_hits);
        bump(&self.plugin_errors, &labels, totals.errors);
        bump(
            &self.plugin_memory_grow_refused,
            &labels,
            totals.memory_grow_refused,
        );
        let seconds = self.plugin_call_seconds.get_or_create(&labels);
        let seen = seconds.get();
        if totals.call_seconds > seen {
            seconds.inc_by(totals.call_seconds - seen);
        }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
