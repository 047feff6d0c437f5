//! Prometheus metrics shared by every stage, rendered at `GET /metrics`. Stages hold an
//! `Arc<Metrics>` and bump atomics; nothing here allocates on the hot path.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// All metric handles. Names are documented in README ("Metrics").
pub struct Metrics {
    registry: Registry,
    /// XLogData messages received from the walsender.
    pub changes_received: Counter,
    /// Row changes (I/U/D/T) decoded successfully.
    pub changes_decoded: Counter,
    /// Payloads that were not valid wal2json.
    pub decode_errors: Counter,
    /// Frames queued to sessions.
    pub frames_delivered: Counter,
    /// Sessions closed because their queue overflowed (4008).
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
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("walcast");
        let m = Metrics {
            changes_received: Counter::default(),
            changes_decoded: Counter::default(),
            decode_errors: Counter::default(),
            frames_delivered: Counter::default(),
            sessions_dropped: Counter::default(),
            sessions: Gauge::default(),
            subscriptions: Gauge::default(),
            slot_lag_bytes: Gauge::default(),
            reconnects: Counter::default(),
            decode_seconds: Histogram::new(exponential_buckets(1e-7, 4.0, 10)),
            registry: Registry::default(),
        };
        registry.register("messages_received", "XLogData messages received", m.changes_received.clone());
        registry.register("changes_decoded", "Row changes decoded", m.changes_decoded.clone());
        registry.register("decode_errors", "Payloads that were not valid wal2json", m.decode_errors.clone());
        registry.register("frames_delivered", "Frames queued to sessions", m.frames_delivered.clone());
        registry.register("sessions_dropped", "Sessions closed as slow consumers (4008)", m.sessions_dropped.clone());
        registry.register("sessions", "Open WebSocket sessions", m.sessions.clone());
        registry.register("subscriptions", "Active subscriptions", m.subscriptions.clone());
        registry.register("slot_lag_bytes", "WAL bytes between server end and flushed position", m.slot_lag_bytes.clone());
        registry.register("replication_reconnects", "Replication connection reconnects", m.reconnects.clone());
        registry.register("decode_seconds", "Decode and dispatch time per message", m.decode_seconds.clone());
        Metrics { registry, ..m }
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
