//! Installs the process-wide `tracing` subscriber (text or JSON lines on stderr), once.
//! Owns log formatting only; what gets logged, and metrics, live with each stage and `metrics`.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Initialises logging from `log.level` (an env-filter directive; `RUST_LOG` wins when set) and
/// `log.format` (`text` or `json`). Later calls are no-ops, so tests and `main` may both call it.
pub fn init(log: &LogConfig) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directive) if !directive.trim().is_empty() => {
            EnvFilter::builder().parse_lossy(directive)
        }
        _ => EnvFilter::builder().parse_lossy(&log.level),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // try_init fails only when a subscriber is already installed, which is the "once" we want.
    let _ = if log.format == "json" {
        builder.event_format(JsonLines).try_init()
    } else {
        builder.try_init()
    };
}

/// One JSON object per event: `timestamp`, `level`, `target`, `message`, the event's fields, and
/// `spans` (name plus formatted fields, outermost first). Written here because the workspace
/// builds tracing-subscriber without its `json` feature; the shape matches what log shippers
/// expect (flat fields, RFC 3339 UTC timestamp).
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut object = Map::new();
        object.insert(
            "timestamp".to_owned(),
            Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        object.insert("level".to_owned(), Value::String(meta.level().to_string()));
        object.insert("target".to_owned(), Value::String(meta.target().to_owned()));
        event.record(&mut JsonVisitor(&mut object));

        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<Value> = scope
                .from_root()
                .map(|span| {
                    let mut entry = Map::new();
                    entry.insert("name".to_owned(), Value::String(span.name().to_owned()));
                    let extensions = span.extensions();
                    if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                        if !fields.is_empty() {
                            entry.insert("fields".to_owned(), Value::String(fields.to_string()));
                        }
                    }
                    Value::Object(entry)
                })
                .collect();
            if !spans.is_empty() {
                object.insert("spans".to_owned(), Value::Array(spans));
            }
        }
        writeln!(writer, "{}", Value::Object(object))
    }
}

/// Collects event fields into the JSON object, keeping numbers and booleans typed.
struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::Bool(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_are_valid_json_with_typed_fields() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("session", session = 7);
            let _guard = span.enter();
            tracing::info!(slot = "walcast", lag = 3u64, ok = true, "started");
        });
        let bytes = buffer.0.lock().unwrap().clone();
        let line = String::from_utf8(bytes).unwrap();
        let value: Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(value["message"], "started");
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["slot"], "walcast");
        assert_eq!(value["lag"], 3);
        assert_eq!(value["ok"], true);
        assert_eq!(value["spans"][0]["name"], "session");
    }
}
