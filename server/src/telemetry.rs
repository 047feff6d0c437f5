//! Installs the process-wide `tracing` subscriber (text or JSON lines on stderr), once.
//! Owns log formatting only; what gets logged, and metrics, live with each stage and `metrics`.

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::LogConfig;

/// Initialises logging from `log.level` (an env-filter directive; the config layer has already
/// applied `WALCAST_LOG`, `RUST_LOG` and `--log`) and `log.format` (`text` or `json`). Later calls
/// are no-ops, so tests and `main` may both call it.
pub fn init(log: &LogConfig) {
    let filter = EnvFilter::builder().parse_lossy(&log.level);
    // try_init fails only when a subscriber is already installed, which is the "once" we want.
    // It also routes the `log` crate (tokio-postgres logs through it) into tracing.
    let _ = subscriber(filter, &log.format, std::io::stderr).try_init();
}

/// Builds the subscriber `init` installs, with the writer as a parameter so tests can capture
/// the exact production format. Boxed because the text and JSON builders have different types;
/// one virtual call per event is noise next to formatting.
///
/// JSON is tracing-subscriber's own format, flattened so each line is one object with
/// `timestamp` (RFC 3339 UTC), `level`, `target`, `message`, the event's fields (numbers and
/// booleans stay typed) and `spans` (outermost first, each with `name` and its fields). The
/// separate `span` key is left out because it repeats the last entry of `spans`.
fn subscriber<W>(filter: EnvFilter, format: &str, writer: W) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if format == "json" {
        Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(true)
                .finish(),
        )
    } else {
        Box::new(builder.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// Shared in-memory sink; cloned into the subscriber as its `MakeWriter`.
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

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    fn capture(format: &str, emit: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let filter = EnvFilter::builder().parse_lossy("info");
        tracing::subscriber::with_default(subscriber(filter, format, buffer.clone()), emit);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn json_lines_are_valid_json_with_typed_fields() {
        let out = capture("json", || {
            let span = tracing::info_span!("session", session = 7);
            let _guard = span.enter();
            tracing::info!(slot = "walcast", lag = 3u64, ok = true, "started");
            tracing::debug!("filtered out by the info filter");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let value: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(value["message"], "started");
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["target"], module_path!());
        assert_eq!(value["slot"], "walcast");
        assert_eq!(value["lag"], 3);
        assert_eq!(value["ok"], true);
        assert_eq!(value["spans"][0]["name"], "session");
        assert_eq!(value["spans"][0]["session"], 7);
        assert!(value["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));
        assert!(value.get("span").is_none(), "{value}");
    }

    #[test]
    fn text_format_is_not_json() {
        let out = capture("text", || tracing::info!(slot = "walcast", "started"));
        assert!(out.contains("started") && out.contains("slot"), "{out}");
        assert!(serde_json::from_str::<Value>(out.trim()).is_err(), "{out}");
    }
}
