//! Wasm filter plugins end to end: the example plugins through a real Postgres and WebSocket,
//! params, rewrites, init rejection, the sandbox limits, hot reload and the plugin CLI. Plugins are
//! built from source by `plugins/build.sh` (the test command runs it) into `plugins/dist/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use walcast_tests::{
    http_error, walcast_binary, Frame, PgCluster, TestDb, Walcast, WsClient, STEP,
};

use crate::LONG;

fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist")
}

/// A fresh plugin directory holding copies of the named built plugins.
fn plugin_dir(names: &[&str]) -> Result<tempdir::Dir> {
    let dir = tempdir::Dir::new()?;
    for name in names {
        let src = dist().join(format!("{name}.wasm"));
        std::fs::copy(&src, dir.path().join(format!("{name}.wasm")))
            .with_context(|| format!("{} missing: run plugins/build.sh first", src.display()))?;
    }
    Ok(dir)
}

mod tempdir {
    use std::path::{Path, PathBuf};

    /// A directory removed on drop.
    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new() -> anyhow::Result<Dir> {
            let p = std::env::temp_dir().join(format!(
                "walcast-plugins-{}",
                walcast_tests::unique_suffix()
            ));
            std::fs::create_dir_all(&p)?;
            Ok(Dir(p))
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn start(db: &TestDb<'_>, dir: &tempdir::Dir) -> Result<Walcast> {
    Walcast::builder(db)
        .env("WALCAST_PLUGIN_DIR", &dir.path().display().to_string())
        .start()
        .await
}

async fn next_change(client: &mut WsClient) -> Result<Value> {
    client.next_change(STEP).await
}

/// The `new.id` of the next `n` change frames.
async fn ids(client: &mut WsClient, n: usize) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            next_change(client).await?["new"]["id"]
                .as_i64()
                .unwrap_or(-1),
        );
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn threshold_geofence_and_keyword_filter_rows() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "plug_filters").await?;
    db.exec(
        "CREATE TABLE spots (id int primary key, height float8, lat float8, lon float8, note text)",
    )
    .await?;
    let dir = plugin_dir(&["threshold", "geofence", "keyword"])?;
    let server = start(&db, &dir).await?;
    let (mut tall, _) = WsClient::subscribe(
        &server,
        &[
            ("query", "insert:spots"),
            ("plugin", "threshold"),
            ("plugin.column", "height"),
            ("plugin.value", "2.0"),
        ],
    )
    .await?;
    let (mut paris, _) = WsClient::subscribe(
        &server,
        &[
            ("query", "insert:spots"),
            ("plugin", "geofence"),
            ("plugin.min_lat", "48.8"),
            ("plugin.max_lat", "48.9"),
            ("plugin.min_lon", "2.2"),
            ("plugin.max_lon", "2.4"),
        ],
    )
    .await?;
    let (mut coffee, _) = WsClient::subscribe(
        &server,
        &[
            ("query", "insert:spots"),
            ("plugin", "keyword"),
            ("plugin.column", "note"),
            ("plugin.word", "coffee"),
        ],
    )
    .await?;
    db.exec(
        "INSERT INTO spots VALUES \
         (1, 1.5, 48.85, 2.35, 'tea house'), \
         (2, 2.5, 40.71, -74.0, 'Best COFFEE in town'), \
         (3, 2.0, 48.86, 2.30, NULL), \
         (4, NULL, NULL, NULL, 'coffee')",
    )
    .await?;
    assert_eq!(
        ids(&mut tall, 2).await?,
        vec![2, 3],
        "threshold height >= 2.0"
    );
    assert_eq!(ids(&mut paris, 2).await?, vec![1, 3], "geofence Paris box");
    assert_eq!(
        ids(&mut coffee, 2).await?,
        vec![2, 4],
        "keyword, case-insensitive"
    );
    // Nothing else arrives for any of them: a marker row matched by all three proves it.
    db.exec("INSERT INTO spots VALUES (5, 3.0, 48.85, 2.35, 'coffee')")
        .await?;
    for c in [&mut tall, &mut paris, &mut coffee] {
        assert_eq!(next_change(c).await?["new"]["id"], 5);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redact_rewrites_rows() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "plug_redact").await?;
    db.exec("CREATE TABLE users (id int primary key, email text, password text, age int)")
        .await?;
    db.exec("ALTER TABLE users REPLICA IDENTITY FULL").await?;
    let dir = plugin_dir(&["redact"])?;
    let server = start(&db, &dir).await?;
    let (mut dropped, _) = WsClient::subscribe(
        &server,
        &[
            ("query", "*:users"),
            ("plugin", "redact"),
            ("plugin.columns", "password,email"),
            ("plugin.mode", "drop"),
        ],
    )
    .await?;
    let (mut masked, _) = WsClient::subscribe(
        &server,
        &[
            ("query", "*:users"),
            ("plugin", "redact"),
            ("plugin.columns", "password,age"),
            ("plugin.mode", "mask"),
        ],
    )
    .await?;
    db.exec("INSERT INTO users VALUES (1, 'a@b.c', 'hunter2', 40)")
        .await?;
    db.exec("UPDATE users SET age = 41 WHERE id = 1").await?;
    let f = next_change(&mut dropped).await?;
    assert_eq!(f["new"], serde_json::json!({"id": 1, "age": 40}), "{f}");
    let f = next_change(&mut dropped).await?;
    assert_eq!(f["op"], "update");
    assert_eq!(f["new"], serde_json::json!({"id": 1, "age": 41}), "{f}");
    assert_eq!(
        f["old"],
        serde_json::json!({"id": 1, "age": 40}),
        "old image redacted too: {f}"
    );
    let f = next_change(&mut masked).await?;
    assert_eq!(
        f["new"],
        serde_json::json!({"id": 1, "email": "a@b.c", "password": "***", "age": null}),
        "{f}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_errors_before_upgrade() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "plug_errors").await?;
    db.exec("CREATE TABLE t (id int primary key, height float8)")
        .await?;
    let dir = plugin_dir(&["threshold", "stray_import", "wrong_abi"])?;
    let server = start(&db, &dir).await?;

    let (status, body) = http_error(&server, &[("query", "*:t"), ("plugin", "nope")]).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unknown_plugin")),
        "{body}"
    );

    let (status, body) = http_error(
        &server,
        &[
            ("query", "*:t"),
            ("plugin", "threshold"),
            ("plugin.column", "height"),
        ],
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("plugin_rejected")),
        "{body}"
    );
    assert!(
        body["message"].as_str().unwrap_or("").contains("value"),
        "the plugin's own message: {body}"
    );

    let (status, body) =
        http_error(&server, &[("query", "*:t"), ("plugin", "stray_import")]).await?;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap_or("").contains("fd_write"),
        "names the import: {body}"
    );

    let (status, body) = http_error(&server, &[("query", "*:t"), ("plugin", "wrong_abi")]).await?;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("ABI version"),
        "names the version: {body}"
    );

    let (status, list) = server.get("/v1/plugins").await?;
    assert_eq!(status, 200);
    let list: Value = serde_json::from_str(&list)?;
    let entry = |name: &str| {
        list.as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(entry("threshold")["status"], "ok", "{list}");
    assert_eq!(entry("stray_import")["status"], "failed", "{list}");
    assert!(
        entry("stray_import")["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("fd_write"),
        "{list}"
    );
    assert_eq!(
        entry("threshold")["hash"].as_str().map(str::len),
        Some(64),
        "content hash: {list}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_loop_and_memory_bomb_do_not_hurt_others() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "plug_hostile").await?;
    db.exec("CREATE TABLE ev (id int primary key)").await?;
    let dir = plugin_dir(&["endless_loop", "memory_bomb"])?;
    let server = start(&db, &dir).await?;
    let (mut looping, _) =
        WsClient::subscribe(&server, &[("query", "*:ev"), ("plugin", "endless_loop")]).await?;
    let (mut bomb, _) =
        WsClient::subscribe(&server, &[("query", "*:ev"), ("plugin", "memory_bomb")]).await?;
    let (mut plain, _) = WsClient::subscribe(&server, &[("query", "*:ev")]).await?;

    const N: i64 = 2_000;
    let started = Instant::now();
    db.exec(&format!(
        "INSERT INTO ev SELECT g FROM generate_series(1, {N}) g"
    ))
    .await?;
    for want in 1..=N {
        let f = plain.next_change(LONG).await?;
        assert_eq!(f["new"]["id"], want);
    }
    let plain_secs = started.elapsed().as_secs_f64();
    eprintln!("hostile plugins: plain subscriber got {N} rows in {plain_secs:.2}s");

    for (name, client) in [("endless_loop", &mut looping), ("memory_bomb", &mut bomb)] {
        let mut errors = 0;
        let (closed, reason) = loop {
            match client.next_frame(LONG).await? {
                Frame::Json(v, _) if v["type"] == "error" => errors += 1,
                Frame::Json(v, _) => bail!("{name}: unexpected frame {v}"),
                Frame::Close(code, reason) => break (code, reason),
                other => bail!("{name}: unexpected {other:?}"),
            }
        };
        assert!(errors >= 1, "{name}: error frames before the close");
        assert_eq!(closed, Some(4010), "{name}: closed as a failing plugin");
        let cause = if name == "endless_loop" {
            "deadline"
        } else {
            "trapped"
        };
        assert!(
            reason.contains(&format!("plugin \"{name}\"")) && reason.contains(cause),
            "{name}: the 4010 close reason names the plugin and the cause: {reason:?}"
        );
    }
    let mem = server.memory()?;
    assert!(
        mem.hwm_kib < 256 * 1024,
        "memory bomb capped: walcast VmHWM {} KiB",
        mem.hwm_kib
    );
    let (_, list) = server.get("/v1/plugins").await?;
    let list: Value = serde_json::from_str(&list)?;
    let looped = list
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == "endless_loop"))
        .cloned();
    assert!(
        looped
            .as_ref()
            .and_then(|p| p["deadline_hits"].as_u64())
            .unwrap_or(0)
            >= 1,
        "{list}"
    );

    // The memory bomb's refused `memory.grow` calls are counted, its traps are in `last_error`
    // and in the log, one line per plugin per few seconds (not one per trap).
    let bomb = plugin_entry(&list, "memory_bomb");
    let refused = bomb["memory_grow_refused"].as_u64().unwrap_or(0);
    let traps = bomb["traps"].as_u64().unwrap_or(0);
    assert!(refused >= 1, "memory.grow refusals counted: {bomb}");
    assert!(traps >= 2, "{bomb}");
    let last = bomb["last_error"].as_str().unwrap_or("");
    assert!(
        last.starts_with("plugin \"memory_bomb\" trapped: ") && !last.contains('\n'),
        "{bomb}"
    );
    let metric = server
        .metric("walcast_plugin_memory_grow_refused_total")
        .await?;
    assert!(metric.unwrap_or(0.0) >= 1.0, "metric: {metric:?}");
    let log = server_log(&server)?;
    let failed_lines = |plugin: &str| {
        log.lines()
            .filter(|l| l.contains("plugin call failed") && l.contains(&format!("plugin={plugin}")))
            .count() as u64
    };
    let lines = failed_lines("memory_bomb");
    assert!(
        lines >= 1 && lines < traps,
        "{traps} traps must be logged, rate-limited: {lines} lines\n{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("plugin call failed")
            && l.contains("plugin=memory_bomb")
            && l.contains("trapped")),
        "the line names plugin and cause:\n{log}"
    );
    assert!(
        failed_lines("endless_loop") >= 1,
        "deadline hits logged:\n{log}"
    );
    Ok(())
}

/// walcast's stderr so far, without the terminal colour codes of the text log format.
fn server_log(server: &Walcast) -> Result<String> {
    let raw = std::fs::read_to_string(server.log_dir().join("stderr.log"))?;
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters final-letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

fn plugin_entry(list: &Value, name: &str) -> Value {
    list.as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name))
        .cloned()
        .unwrap_or(Value::Null)
}

/// `/v1/plugins` entry of `name`, once `cond` holds for it.
async fn wait_plugin(
    server: &Walcast,
    name: &str,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) -> Result<Value> {
    walcast_tests::wait_for(what, LONG, Duration::from_millis(50), || async {
        let (_, list) = server.get("/v1/plugins").await?;
        let list: Value = serde_json::from_str(&list)?;
        Ok(Some(plugin_entry(&list, name)).filter(|p| cond(p)))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_reload_says_which_version_serves_on_one_line() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "plug_refused").await?;
    db.exec("CREATE TABLE r (id int primary key, height float8)")
        .await?;
    let dir = tempdir::Dir::new()?;
    let hot = dir.path().join("hot.wasm");
    std::fs::copy(dist().join("threshold.wasm"), &hot).context("run plugins/build.sh first")?;
    let server = start(&db, &dir).await?;
    // threshold ignores `where`; bad_pointer (swapped in below) fails its walcast_init with it.
    let (mut client, _) = WsClient::subscribe(
        &server,
        &[
            ("query", "insert:r"),
            ("plugin", "hot"),
            ("plugin.column", "height"),
            ("plugin.value", "2.0"),
            ("plugin.where", "init"),
        ],
    )
    .await?;
    db.exec("INSERT INTO r VALUES (1, 3.0)").await?;
    assert_eq!(next_change(&mut client).await?["new"]["id"], 1);

    // A version that loads but whose walcast_init fails with these params.
    let tmp = dir.path().join(".hot.wasm.tmp");
    std::fs::copy(dist().join("bad_pointer.wasm"), &tmp)?;
    std::fs::rename(&tmp, &hot)?;
    wait_plugin(&server, "hot", "version 2 to load", |p| {
        p["version"].as_u64() >= Some(2)
    })
    .await?;
    // The group meets version 2 at its next change, refuses it and keeps filtering with 1.
    db.exec("INSERT INTO r VALUES (2, 1.0), (3, 3.0)").await?;
    assert_eq!(
        next_change(&mut client).await?["new"]["id"],
        3,
        "threshold (version 1) still filters"
    );
    let p = wait_plugin(&server, "hot", "the refusal", |p| p["status"] == "refused").await?;
    assert_eq!(
        (p["version"].as_u64(), p["serving_version"].as_u64()),
        (Some(2), Some(1)),
        "{p}"
    );
    let last = p["last_error"].as_str().unwrap_or("");
    assert!(
        last.starts_with("version 2 refused, version 1 keeps serving: ")
            && last.contains("walcast_init")
            && last.contains("outside its"),
        "{p}"
    );
    assert!(
        !last.contains('\n') && !last.contains("backtrace"),
        "one line: {last:?}"
    );
    let log = server_log(&server)?;
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused by walcast_init"))
        .collect();
    assert_eq!(refusals.len(), 1, "{log}");
    assert!(
        refusals[0].contains("plugin=hot") && refusals[0].contains("outside its"),
        "the cause is on the log line itself: {log}"
    );
    assert!(!log.contains("wasm backtrace"), "{log}");

    // A file that does not even load: still refused, version 1 still serving.
    std::fs::write(&tmp, b"\0asm garbage")?;
    std::fs::rename(&tmp, &hot)?;
    let p = wait_plugin(&server, "hot", "the refused file", |p| {
        p["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("not a loadable"))
    })
    .await?;
    assert_eq!(
        (p["status"].as_str(), p["serving_version"].as_u64()),
        (Some("refused"), Some(1)),
        "{p}"
    );
    assert!(
        !p["last_error"].as_str().unwrap_or("\n").contains('\n'),
        "{p}"
    );
    db.exec("INSERT INTO r VALUES (4, 1.0), (5, 3.0)").await?;
    assert_eq!(next_change(&mut client).await?["new"]["id"], 5);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_swaps_without_disconnect_and_keeps_old_on_failure() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "plug_reload").await?;
    db.exec("CREATE TABLE m (id int primary key, height float8, secret text)")
        .await?;
    let dir = tempdir::Dir::new()?;
    let hot = dir.path().join("hot.wasm");
    std::fs::copy(dist().join("threshold.wasm"), &hot).context("run plugins/build.sh first")?;
    let server = start(&db, &dir).await?;
    // Params that both threshold and redact accept: each ignores the other's keys.
    let params = [
        ("query", "insert:m"),
        ("plugin", "hot"),
        ("plugin.column", "height"),
        ("plugin.value", "2.0"),
        ("plugin.columns", "secret"),
        ("plugin.mode", "drop"),
    ];
    let (mut client, _) = WsClient::subscribe(&server, &params).await?;
    db.exec("INSERT INTO m VALUES (1, 1.0, 's1'), (2, 3.0, 's2')")
        .await?;
    let f = next_change(&mut client).await?;
    assert_eq!(
        (f["new"]["id"].as_i64(), f["new"]["secret"].as_str()),
        (Some(2), Some("s2")),
        "threshold: {f}"
    );

    // Swap in redact: atomically (write + rename), as deploy tools do.
    let tmp = dir.path().join(".hot.wasm.tmp");
    std::fs::copy(dist().join("redact.wasm"), &tmp)?;
    std::fs::rename(&tmp, &hot)?;
    let hash_changed =
        walcast_tests::wait_for("the reload", LONG, Duration::from_millis(50), || async {
            let (_, list) = server.get("/v1/plugins").await?;
            let list: Value = serde_json::from_str(&list)?;
            Ok(list
                .as_array()
                .and_then(|a| a.iter().find(|p| p["name"] == "hot"))
                .filter(|p| p["version"].as_u64() >= Some(2))
                .cloned())
        })
        .await?;
    eprintln!("hot reload: {hash_changed}");
    // Rows committed after the swap are seen through redact: all pass, secret removed.
    let mut seen = Vec::new();
    for round in 0.. {
        let id = 100 + round;
        db.exec(&format!("INSERT INTO m VALUES ({id}, 1.0, 'x')"))
            .await?;
        let f = next_change(&mut client).await?;
        if f["new"]["id"] == id && f["new"].get("secret").is_none() {
            break;
        }
        seen.push(f);
        if round > 50 {
            bail!("new behaviour never seen: {seen:?}");
        }
    }

    // A broken replacement leaves redact running and says why.
    std::fs::write(&tmp, b"\0asm garbage")?;
    std::fs::rename(&tmp, &hot)?;
    walcast_tests::wait_for(
        "the failed reload to be reported",
        LONG,
        Duration::from_millis(50),
        || async {
            let (_, list) = server.get("/v1/plugins").await?;
            let list: Value = serde_json::from_str(&list)?;
            Ok(list
                .as_array()
                .and_then(|a| a.iter().find(|p| p["name"] == "hot"))
                .filter(|p| !p["last_error"].is_null())
                .cloned())
        },
    )
    .await?;
    db.exec("INSERT INTO m VALUES (500, 1.0, 'y')").await?;
    let f = next_change(&mut client).await?;
    assert_eq!(f["new"]["id"], 500);
    assert!(
        f["new"].get("secret").is_none(),
        "old (redact) version still running: {f}"
    );
    Ok(())
}

#[test]
fn plugin_cli_check_and_run() -> Result<()> {
    let bin = walcast_binary()?;
    let threshold = dist().join("threshold.wasm");
    let out = Command::new(&bin)
        .args(["plugin", "check"])
        .arg(&threshold)
        .output()?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "check threshold: {text}");
    assert!(text.contains("ok"), "{text}");

    let out = Command::new(&bin)
        .args(["plugin", "check"])
        .arg(dist().join("stray_import.wasm"))
        .output()?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "stray import must fail the check: {text}"
    );
    assert!(text.contains("fd_write"), "{text}");

    let change = r#"{"type":"change","op":"insert","schema":"public","table":"t","new":{"id":1,"height":2.5},"old":null}"#;
    let out = Command::new(&bin)
        .args(["plugin", "run"])
        .arg(&threshold)
        .args([
            "--change",
            change,
            "--param",
            "column=height",
            "--param",
            "value=2.0",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "run: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.to_lowercase().contains("pass"), "{text}");

    let low = change.replace("2.5", "1.5");
    let out = Command::new(&bin)
        .args(["plugin", "run"])
        .arg(&threshold)
        .args([
            "--change",
            &low,
            "--param",
            "column=height",
            "--param",
            "value=2.0",
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(text.contains("drop"), "{text}");
    Ok(())
}

/// Runs `walcast plugin run <plugin>.wasm --change <change> [--param k=v]...`.
fn plugin_run(plugin: &str, change: &str, params: &[&str]) -> Result<(bool, String, String)> {
    let mut cmd = Command::new(walcast_binary()?);
    cmd.args(["plugin", "run"])
        .arg(dist().join(format!("{plugin}.wasm")))
        .args(["--change", change]);
    for p in params {
        cmd.args(["--param", p]);
    }
    let out = cmd.output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn plugin_cli_run_shows_guest_logs_and_fails_on_plugin_failures() -> Result<()> {
    let insert = r#"{"type":"change","op":"insert","schema":"public","table":"t","new":{"id":1,"height":2.5}}"#;

    // A trap: the guest's log line, then one line naming plugin and cause; non-zero exit.
    let (ok, stdout, stderr) = plugin_run("bad_pointer", insert, &[])?;
    assert!(!ok, "a trap must fail the command: {stdout}{stderr}");
    assert!(
        stderr.contains(
            "[bad_pointer] warn: bad_pointer: passing an out-of-range pointer in walcast_filter"
        ),
        "guest log line on stderr: {stderr}"
    );
    let cause = stderr
        .lines()
        .find(|l| l.starts_with("walcast: "))
        .unwrap_or("");
    assert!(
        cause.contains("plugin \"bad_pointer\" trapped: ") && cause.contains("outside its"),
        "{stderr}"
    );
    assert!(!stderr.contains("backtrace"), "{stderr}");

    // The same in walcast_init.
    let (ok, _, stderr) = plugin_run("bad_pointer", insert, &["where=init"])?;
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("in walcast_init"),
        "guest log line: {stderr}"
    );
    assert!(
        stderr.lines().any(|l| l.starts_with("walcast: ")
            && l.contains("failed in walcast_init")
            && l.contains("outside its")),
        "{stderr}"
    );
    assert!(!stderr.contains("backtrace"), "{stderr}");

    // The call deadline.
    let (ok, _, stderr) = plugin_run("endless_loop", insert, &[])?;
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("plugin \"endless_loop\" exceeded its call deadline"),
        "{stderr}"
    );

    // The plugin's own ERROR verdict, with its message.
    let not_a_number = insert.replace("2.5", "true");
    let (ok, _, stderr) = plugin_run("threshold", &not_a_number, &["column=height", "value=2.0"])?;
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(
            "plugin \"threshold\" returned ERROR: threshold: column \"height\" is not a number"
        ),
        "{stderr}"
    );

    // Updates and deletes as the SDK guides show them: the old row in `identity`.
    let update = r#"{"action":"U","schema":"public","table":"orders",
        "columns":[{"name":"id","type":"integer","value":7},{"name":"amount","type":"numeric","value":150}],
        "identity":[{"name":"id","type":"integer","value":7},{"name":"amount","type":"numeric","value":80}]}"#;
    let delete = r#"{"action":"D","schema":"public","table":"orders",
        "identity":[{"name":"id","type":"integer","value":7},{"name":"amount","type":"numeric","value":150}]}"#;
    for (what, change) in [("update", update), ("delete", delete)] {
        let (ok, stdout, stderr) =
            plugin_run("threshold", change, &["column=amount", "value=100"])?;
        assert!(ok, "{what}: {stdout}{stderr}");
        assert!(stdout.starts_with("verdict: pass"), "{what}: {stdout}");
    }
    let (ok, stdout, stderr) = plugin_run(
        "threshold",
        &delete.replace("150", "50"),
        &["column=amount", "value=100"],
    )?;
    assert!(
        ok && stdout.starts_with("verdict: drop"),
        "{stdout}{stderr}"
    );
    Ok(())
}
