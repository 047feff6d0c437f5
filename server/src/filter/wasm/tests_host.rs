//! Tests of the plugin registry (directory loading, group sharing, hot reload, watcher) and the
//! CLI entry points, with WAT guests written to temporary directories.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::tests::{cfg, eval, guest, insert, pass_all, plugin_ref, threshold};
use super::{check_file, run_file, PluginError, PluginHost, Verdict};
use crate::config::PluginsConfig;

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    // Write then rename, as a deploy would: the watcher never sees a half-written module.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, dir.join(name)).expect("rename");
}

fn host_with(files: &[(&str, Vec<u8>)]) -> (tempfile::TempDir, Arc<PluginHost>) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, bytes) in files {
        write(dir.path(), name, bytes);
    }
    let cfg = PluginsConfig {
        dir: Some(dir.path().to_owned()),
        ..cfg()
    };
    let host = PluginHost::new(&cfg).expect("host");
    (dir, host)
}

fn params(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn drop_all() -> Vec<u8> {
    guest(
        &[],
        r#"(func (export "walcast_filter") (result i32) i32.const 0)"#,
    )
}

fn amount(n: i64) -> String {
    insert(&format!(
        r#"{{"name":"amount","type":"integer","value":{n}}}"#
    ))
}

#[test]
fn groups_are_shared_per_name_and_params() {
    let (_dir, host) = host_with(&[("threshold.wasm", threshold())]);
    let a = host
        .group(&plugin_ref(
            "threshold",
            &params(&[("col", "amount"), ("x", "1")]),
        ))
        .expect("group");
    let b = host
        .group(&plugin_ref(
            "threshold",
            &params(&[("x", "1"), ("col", "amount")]),
        ))
        .expect("group");
    let c = host
        .group(&plugin_ref("threshold", &params(&[("col", "qty")])))
        .expect("group");
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(a.id(), b.id());
    assert_ne!(a.id(), c.id());
    assert!(
        matches!(host.group(&plugin_ref("nope", &[])), Err(PluginError::Unknown(n)) if n == "nope")
    );
    assert!(matches!(
        host.group(&plugin_ref("threshold", &[])),
        Err(PluginError::Rejected(_))
    ));
    // A dropped group is recreated, not resurrected.
    let id = c.id();
    drop(c);
    assert_ne!(
        host.group(&plugin_ref("threshold", &params(&[("col", "qty")])))
            .expect("group")
            .id(),
        id
    );
}

#[test]
fn broken_files_are_listed_and_refused() {
    let stray = wat::parse_str(
        r#"(module (import "env" "abort" (func)) (memory (export "memory") 1)
          (func (export "walcast_abi_version") (result i32) i32.const 1)
          (func (export "walcast_init") (result i32) i32.const 0)
          (func (export "walcast_filter") (result i32) i32.const 1))"#,
    )
    .expect("wat");
    let (_dir, host) = host_with(&[("ok.wasm", pass_all()), ("stray.wasm", stray)]);
    let list = host.list();
    assert_eq!(list.len(), 2);
    assert_eq!(
        (list[0].name.as_str(), list[0].status, list[0].version),
        ("ok", "ok", 1)
    );
    assert_eq!(list[0].hash.len(), 64);
    assert!(list[0].loaded_at.is_some());
    assert_eq!(
        (list[1].name.as_str(), list[1].status, list[1].version),
        ("stray", "failed", 0)
    );
    assert!(list[1]
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("env::abort"));
    match host.group(&plugin_ref("stray", &[])) {
        Err(PluginError::Invalid(msg)) => assert!(msg.contains("env::abort"), "{msg}"),
        _ => panic!("stray plugin resolved"),
    }
}

#[test]
fn hot_reload_swaps_at_the_next_change_and_keeps_the_old_on_failure() {
    let (dir, host) = host_with(&[("p.wasm", pass_all())]);
    let g = host.group(&plugin_ref("p", &[])).expect("group");
    assert_eq!(eval(&g, &amount(1)), Verdict::Pass);

    write(dir.path(), "p.wasm", &drop_all());
    host.reload();
    assert_eq!(host.list()[0].version, 2);
    assert_eq!(
        eval(&g, &amount(1)),
        Verdict::Drop,
        "group moved to version 2"
    );

    write(dir.path(), "p.wasm", b"\0asm broken");
    host.reload();
    let info = &host.list()[0];
    assert_eq!(
        (info.status, info.version, info.serving_version),
        ("refused", 2, Some(2))
    );
    assert!(info
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("not a loadable WebAssembly module"));
    assert_eq!(
        eval(&g, &amount(1)),
        Verdict::Drop,
        "version 2 keeps running"
    );
    // Unchanged broken file: not recompiled, still refused.
    host.reload();
    assert_eq!(host.list()[0].status, "refused");

    // A version whose init refuses this group's params: the group keeps its instance.
    write(dir.path(), "p.wasm", &threshold());
    host.reload();
    assert_eq!(host.list()[0].version, 3);
    assert_eq!(eval(&g, &amount(50)), Verdict::Drop, "still version 2");
    let info = &host.list()[0];
    assert!(
        info.last_error
            .as_deref()
            .unwrap_or("")
            .contains("missing param col"),
        "{info:?}"
    );
    // New groups get version 3.
    let g3 = host
        .group(&plugin_ref("p", &params(&[("col", "amount")])))
        .expect("group");
    assert_eq!(eval(&g3, &amount(50)), Verdict::Pass);

    std::fs::remove_file(dir.path().join("p.wasm")).expect("rm");
    host.reload();
    assert!(host.list().is_empty());
    assert!(matches!(
        host.group(&plugin_ref("p", &[])),
        Err(PluginError::Unknown(_))
    ));
    assert_eq!(
        eval(&g3, &amount(50)),
        Verdict::Pass,
        "running groups keep their instance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_reloads_a_changed_file() {
    let (dir, host) = host_with(&[("w.wasm", pass_all())]);
    let cancel = tokio_util::sync::CancellationToken::new();
    let task = host.watch(cancel.clone());
    let g = host.group(&plugin_ref("w", &[])).expect("group");
    // The watcher may start after the write; rewrite until it is seen (bounded).
    let deadline = Instant::now() + Duration::from_secs(20);
    while host.list()[0].version < 2 {
        assert!(Instant::now() < deadline, "watcher did not reload");
        write(dir.path(), "w.wasm", &drop_all());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(eval(&g, &amount(1)), Verdict::Drop);
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("watch ends")
        .expect("join");
}

#[test]
fn check_file_reports_and_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "threshold.wasm", &threshold());
    let report = check_file(&dir.path().join("threshold.wasm")).expect("ok");
    let text = report.to_string();
    assert!(text.contains("walcast_v1::param iiii>i"), "{text}");
    assert!(text.contains("walcast_filter"), "{text}");
    assert!(text.ends_with("verdict  ok"), "{text}");
    let v2 = guest(
        &[],
        r#"(func (export "walcast_abi_version") (result i32) i32.const 2)
        (func (export "walcast_filter") (result i32) i32.const 1)"#,
    );
    write(dir.path(), "v2.wasm", &v2);
    let err = check_file(&dir.path().join("v2.wasm")).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "plugin \"v2\" requires ABI version 2, this walcast supports 1"
    );
    assert!(matches!(
        check_file(&dir.path().join("missing.wasm")),
        Err(PluginError::Io { .. })
    ));
}

#[test]
fn run_file_accepts_frames_and_wal2json() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "threshold.wasm", &threshold());
    let path = dir.path().join("threshold.wasm");
    let p = params(&[("col", "amount")]);
    let frame = r#"{"type":"change","op":"insert","schema":"public","table":"t","new":{"amount":50,"tags":["a"],"ok":true,"note":null}}"#;
    let out = run_file(&path, frame, &p, &cfg()).expect("run");
    assert_eq!(out.verdict, Verdict::Pass);
    assert!(out.to_string().starts_with("verdict: pass"));
    let small = r#"{"type":"change","op":"update","schema":"public","table":"t","new":{"amount":5},"old":{"amount":50}}"#;
    assert_eq!(
        run_file(&path, small, &p, &cfg()).expect("run").verdict,
        Verdict::Drop
    );
    let wal2json = amount(99);
    assert_eq!(
        run_file(&path, &wal2json, &p, &cfg()).expect("run").verdict,
        Verdict::Pass
    );
    assert!(matches!(
        run_file(&path, frame, &[], &cfg()),
        Err(PluginError::Rejected(_))
    ));
    assert!(matches!(
        run_file(&path, "[1]", &p, &cfg()),
        Err(PluginError::BadChange(_))
    ));

    // A rewrite prints the frame, with the columns in the order given.
    let rewrite = guest(
        &["out_set_str"],
        r#"(data (i32.const 0) "tag") (data (i32.const 8) "x")
           (func (export "walcast_filter") (result i32)
             (drop (call $out_set_str (i32.const 0) (i32.const 0) (i32.const 3) (i32.const 8) (i32.const 1)))
             (i32.const 2))"#,
    );
    write(dir.path(), "rewrite.wasm", &rewrite);
    let frame =
        r#"{"type":"change","op":"insert","schema":"s","table":"t","new":{"z":1,"a":{"k":[1]}}}"#;
    let out = run_file(&dir.path().join("rewrite.wasm"), frame, &[], &cfg()).expect("run");
    let text = out.to_string();
    assert!(
        text.contains(r#""new":{"z":1,"a":{"k":[1]},"tag":"x"}"#),
        "{text}"
    );
}
