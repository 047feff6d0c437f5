//! Tests of how plugin failures reach people: `walcast plugin run` (guest log lines, exit-worthy
//! errors), the rate-limited failed-call log, `failure_reason`, refused reloads in `/v1/plugins`
//! (`status`, `serving_version`, one-line `last_error`) and the `memory.grow` refusal count.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::cli::run_with;
use super::plugin::{LogGate, FAILURE_LOG_INTERVAL};
use super::state::LogSink;
use super::tests::{cfg, col, eval, group_of, guest, insert, pass_all, plugin_ref};
use super::{run_file, PluginError, PluginHost, Verdict};
use crate::config::PluginsConfig;

/// Logs `hello from the guest` (info) on every change, then: traps when the new row has `trap`,
/// returns ERROR with a two-line message for `error`, spins for `spin`, grows memory until refused
/// for `grow` (then passes); passes otherwise.
fn troublemaker() -> Vec<u8> {
    guest(
        &["field", "log", "set_error"],
        r#"
        (data (i32.const 0) "trap") (data (i32.const 8) "error") (data (i32.const 16) "spin")
        (data (i32.const 24) "grow") (data (i32.const 32) "hello from the guest")
        (data (i32.const 64) "bad row\nsecond line")
        (func $has (param $at i32) (param $len i32) (result i32)
          (i32.ge_s (call $field (i32.const 0) (local.get $at) (local.get $len)) (i32.const 0)))
        (func (export "walcast_filter") (result i32)
          (call $log (i32.const 2) (i32.const 32) (i32.const 20))
          (if (call $has (i32.const 0) (i32.const 4)) (then unreachable))
          (if (call $has (i32.const 8) (i32.const 5))
            (then (call $set_error (i32.const 64) (i32.const 19)) (return (i32.const 3))))
          (if (call $has (i32.const 16) (i32.const 4)) (then (loop $l (br $l))))
          (if (call $has (i32.const 24) (i32.const 4))
            (then (block $full (loop $more
              (br_if $full (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
              (br $more)))))
          (i32.const 1))
        "#,
    )
}

/// `walcast_init` hands the `param` host function a key range outside its memory: a host error
/// (not a wasm trap), which wasmtime wraps with a multi-line wasm backtrace.
fn bad_pointer_in_init() -> Vec<u8> {
    guest(
        &["param"],
        r#"
        (func (export "walcast_init") (result i32)
          (drop (call $param (i32.const -65536) (i32.const 16) (i32.const 0) (i32.const 8)))
          (i32.const 0))
        (func (export "walcast_filter") (result i32) i32.const 1)
        "#,
    )
}

fn frame(column: &str) -> String {
    format!(
        r#"{{"type":"change","op":"insert","schema":"public","table":"t","new":{{"{column}":1}}}}"#
    )
}

fn row(column: &str) -> String {
    insert(&col(column, "integer", "1"))
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, dir.join(name)).expect("rename");
}

/// A `tracing` writer into memory.
#[derive(Clone, Default)]
struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What `f` logged at info and above, in the text format.
fn logs_of(f: impl FnOnce()) -> String {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = captured.0.lock().expect("lock").clone();
    String::from_utf8(bytes).expect("utf-8 log")
}

fn assert_one_line(text: &str) {
    assert!(!text.contains('\n') && !text.contains('\r'), "{text:?}");
    assert!(!text.contains("backtrace"), "{text:?}");
}

#[test]
fn plugin_run_shows_guest_logs_and_fails_on_trap_error_and_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "chatty.wasm", &troublemaker());
    let path = dir.path().join("chatty.wasm");
    let run = |column: &str| {
        let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = LogSink::Writer(buf.clone());
        let result = run_with(&path, &frame(column), &[], &cfg(), sink);
        let logs = String::from_utf8(buf.lock().clone()).expect("utf-8");
        (result, logs)
    };

    let (result, logs) = run("id");
    assert_eq!(result.expect("pass").verdict, Verdict::Pass);
    assert_eq!(logs, "[chatty] info: hello from the guest\n");

    let (result, logs) = run("trap");
    match result {
        Err(PluginError::Failed(msg)) => {
            assert!(
                msg.starts_with("plugin \"chatty\" trapped: ") && msg.contains("unreachable"),
                "{msg}"
            );
            assert_one_line(&msg);
        }
        other => panic!("a trap must fail the run: {other:?}"),
    }
    assert_eq!(
        logs, "[chatty] info: hello from the guest\n",
        "lines logged before the trap are shown"
    );

    match run("error").0 {
        Err(PluginError::Failed(msg)) => {
            assert_eq!(msg, "plugin \"chatty\" returned ERROR: bad row second line")
        }
        other => panic!("an ERROR verdict must fail the run: {other:?}"),
    }
    match run("spin").0 {
        Err(PluginError::Failed(msg)) => {
            assert_eq!(msg, "plugin \"chatty\" exceeded its call deadline of 20 ms")
        }
        other => panic!("a deadline hit must fail the run: {other:?}"),
    }

    // The public entry point (guest lines to stderr) fails the same way.
    assert!(matches!(
        run_file(&path, &frame("trap"), &[], &cfg()),
        Err(PluginError::Failed(_))
    ));
    // An init that fails is an error too, on one line.
    write(dir.path(), "init.wasm", &bad_pointer_in_init());
    match run_file(&dir.path().join("init.wasm"), &frame("id"), &[], &cfg()) {
        Err(PluginError::Invalid(msg)) => {
            assert!(msg.contains("failed in walcast_init"), "{msg}");
            assert_one_line(&msg);
        }
        other => panic!("a failing init must fail the run: {other:?}"),
    }
}

#[test]
fn instance_errors_are_one_line_without_the_wasm_backtrace() {
    match group_of(&bad_pointer_in_init(), &[], &cfg()) {
        Err(PluginError::Invalid(msg)) => {
            assert!(
                msg.starts_with("plugin \"test\" failed in walcast_init: guest passed the range"),
                "{msg}"
            );
            assert_one_line(&msg);
        }
        Err(e) => panic!("wrong error {e:?}"),
        Ok(_) => panic!("init succeeded"),
    }
}

#[test]
fn failure_log_gate_allows_one_line_per_interval_and_counts_the_rest() {
    let mut gate = LogGate::default();
    let t0 = Instant::now();
    assert_eq!(gate.permit(t0), Some(0));
    assert_eq!(gate.permit(t0 + Duration::from_secs(1)), None);
    assert_eq!(gate.permit(t0 + Duration::from_secs(4)), None);
    assert_eq!(gate.permit(t0 + FAILURE_LOG_INTERVAL), Some(2));
    assert_eq!(
        gate.permit(t0 + FAILURE_LOG_INTERVAL + Duration::from_secs(1)),
        None
    );
}

#[test]
fn traps_are_logged_rate_limited_and_kept_as_last_error() {
    let g = group_of(&troublemaker(), &[], &cfg()).expect("group");
    let logs = logs_of(|| {
        for _ in 0..3 {
            assert!(matches!(eval(&g, &row("trap")), Verdict::Error(_)));
        }
    });
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("plugin call failed"))
        .collect();
    assert_eq!(lines.len(), 1, "one line for three traps:\n{logs}");
    let line = lines[0];
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("plugin=test"), "{line}");
    assert!(
        line.contains("trapped") && line.contains("unreachable"),
        "{line}"
    );
    assert!(line.contains("suppressed=0"), "{line}");
    assert!(
        logs.contains("hello from the guest"),
        "guest lines still reach the log: {logs}"
    );

    let info = g.plugin.info();
    assert_eq!(info.traps, 3);
    let last = info.last_error.expect("last_error");
    assert!(last.starts_with("plugin \"test\" trapped: "), "{last}");
    assert_one_line(&last);
    assert_eq!(info.status, "ok", "a trap does not change the load status");

    // A deadline hit is reported the same way (and is the newest last_error).
    assert!(matches!(eval(&g, &row("spin")), Verdict::Error(_)));
    let last = g.plugin.info().last_error.expect("last_error");
    assert!(last.contains("exceeded its call deadline"), "{last}");
}

#[test]
fn failure_reason_names_the_plugin_and_cause_in_at_most_100_bytes() {
    // An ERROR verdict whose message is long, multi-line and multi-byte.
    let message = format!("{}\n{}", "é".repeat(60), "z".repeat(60));
    let escaped: String = message.bytes().map(|b| format!("\\{b:02x}")).collect();
    let bytes = guest(
        &["set_error"],
        &format!(
            r#"(data (i32.const 0) "{escaped}")
            (func (export "walcast_filter") (result i32)
              (call $set_error (i32.const 0) (i32.const {len})) (i32.const 3))"#,
            len = message.len()
        ),
    );
    let g = group_of(&bytes, &[], &cfg()).expect("group");
    assert_eq!(g.failure_reason(), None, "nothing failed yet");
    assert!(matches!(eval(&g, &row("id")), Verdict::Error(_)));
    let reason = g.failure_reason().expect("reason");
    assert!(reason.len() <= 100, "{} bytes: {reason}", reason.len());
    assert!(
        reason.starts_with("plugin \"test\" returned ERROR: éé"),
        "{reason}"
    );
    assert!(reason.ends_with("..."), "{reason}");
    assert_one_line(&reason);

    let g = group_of(&troublemaker(), &[], &cfg()).expect("group");
    assert!(matches!(eval(&g, &row("trap")), Verdict::Error(_)));
    let reason = g.failure_reason().expect("reason");
    assert!(
        reason.starts_with("plugin \"test\" trapped: ") && reason.contains("unreachable"),
        "{reason}"
    );
    assert!(reason.len() <= 100);
    // The latest failure wins.
    assert!(matches!(eval(&g, &row("spin")), Verdict::Error(_)));
    assert_eq!(
        g.failure_reason().as_deref(),
        Some("plugin \"test\" exceeded its call deadline of 20 ms")
    );
}

#[test]
fn refused_reloads_say_which_version_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "p.wasm", &pass_all());
    write(dir.path(), "broken.wasm", b"\0asm broken");
    let host = PluginHost::new(&PluginsConfig {
        dir: Some(dir.path().to_owned()),
        ..cfg()
    })
    .expect("host");
    let info = |name: &str| {
        host.list()
            .into_iter()
            .find(|p| p.name == name)
            .expect("listed")
    };
    let broken = info("broken");
    assert_eq!((broken.status, broken.serving_version), ("failed", None));
    assert_one_line(broken.last_error.as_deref().unwrap_or(""));
    let p = info("p");
    assert_eq!((p.status, p.serving_version), ("ok", Some(1)));

    let g = host.group(&plugin_ref("p", &[])).expect("group");
    assert_eq!(eval(&g, &row("id")), Verdict::Pass);

    // A file that does not load: version 1 keeps serving.
    write(dir.path(), "p.wasm", b"\0asm broken");
    host.reload();
    let p = info("p");
    assert_eq!(
        (p.status, p.version, p.serving_version),
        ("refused", 1, Some(1))
    );
    let error = p.last_error.clone().expect("last_error");
    assert!(
        error.contains("not a loadable WebAssembly module"),
        "{error}"
    );
    assert_one_line(&error);
    let json = serde_json::to_string(&p).expect("json");
    assert!(
        json.contains(r#""status":"refused","serving_version":1"#),
        "{json}"
    );

    // A version that loads but whose walcast_init fails for the running group: the group keeps
    // version 1, says so in the status, and logs it on one line.
    write(dir.path(), "p.wasm", &bad_pointer_in_init());
    host.reload();
    assert_eq!(info("p").version, 2);
    let logs = logs_of(|| assert_eq!(eval(&g, &row("id")), Verdict::Pass, "still version 1"));
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("refused by walcast_init"))
        .collect();
    assert_eq!(lines.len(), 1, "{logs}");
    assert!(
        lines[0].contains("guest passed the range") && lines[0].contains("serving_version=1"),
        "{logs}"
    );
    assert!(!logs.contains("backtrace"), "{logs}");
    let p = info("p");
    assert_eq!(
        (p.status, p.version, p.serving_version),
        ("refused", 2, Some(1))
    );
    let error = p.last_error.expect("last_error");
    assert!(
        error.starts_with("version 2 refused, version 1 keeps serving: plugin \"p\" failed in walcast_init: guest passed the range"),
        "{error}"
    );
    assert_one_line(&error);

    // A good version clears it.
    write(dir.path(), "p.wasm", &pass_all());
    host.reload();
    assert_eq!(eval(&g, &row("id")), Verdict::Pass);
    let p = info("p");
    assert_eq!((p.status, p.version, p.serving_version), ("ok", 3, Some(3)));
    assert_eq!(p.last_error, None);
}

#[test]
fn refused_memory_growth_is_counted_per_plugin_and_exported() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "bomb.wasm", &troublemaker());
    let host = PluginHost::new(&PluginsConfig {
        dir: Some(dir.path().to_owned()),
        ..cfg()
    })
    .expect("host");
    let g = host.group(&plugin_ref("bomb", &[])).expect("group");
    assert_eq!(eval(&g, &row("id")), Verdict::Pass);
    assert_eq!(host.list()[0].memory_grow_refused, 0, "no growth asked");
    assert_eq!(eval(&g, &row("grow")), Verdict::Pass, "-1 is not a trap");
    assert_eq!(host.list()[0].memory_grow_refused, 1);
    // The instance is already at the cap: the next grow is refused right away.
    assert_eq!(eval(&g, &row("grow")), Verdict::Pass);
    assert_eq!(host.list()[0].memory_grow_refused, 2);

    let json = serde_json::to_value(&host.list()[0]).expect("json");
    assert_eq!(json["memory_grow_refused"], 2, "{json}");
    let metrics = crate::metrics::Metrics::new();
    host.sync_metrics(&metrics);
    let text = metrics.render();
    assert!(
        text.contains("walcast_plugin_memory_grow_refused_total{plugin=\"bomb\"} 2"),
        "{text}"
    );
}
