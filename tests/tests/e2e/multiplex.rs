//! Many subscriptions on one socket: `GET /ws` without `query=` upgrades to an empty socket that
//! takes `subscribe` / `unsubscribe` messages. Three subscriptions over two tables (one through a
//! plugin), each frame carrying its subscription's id, none after an unsubscribe; refusals and
//! bad messages answered with error frames while the socket goes on; the per-socket limit.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use walcast_tests::{Frame, PgCluster, TestDb, Walcast, WsClient, STEP};

async fn next_json(c: &mut WsClient) -> Result<Value> {
    match c.next_frame(STEP).await? {
        Frame::Json(v, _) => Ok(v),
        other => anyhow::bail!("expected a JSON frame, got {other:?}"),
    }
}

/// Sends `msg` and returns the answer, which must be of `kind` for subscription `id`.
async fn ask(c: &mut WsClient, msg: &str, kind: &str, id: &str) -> Result<Value> {
    c.send_text(msg).await?;
    let v = next_json(c).await?;
    ensure!(v["type"] == kind && v["id"] == id, "{msg} -> {v}");
    Ok(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_subscriptions_on_one_socket() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "multiplex").await?;
    db.exec(
        "CREATE TABLE people (id int primary key, age int, height float8); \
         CREATE TABLE \"Odd Table\" (id int primary key, note text)",
    )
    .await?;
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
    ensure!(
        dist.join("threshold.wasm").exists(),
        "{} missing: run plugins/build.sh first",
        dist.display()
    );
    let server = Walcast::builder(&db)
        .env("WALCAST_PLUGIN_DIR", &dist.display().to_string())
        .env("WALCAST_MAX_SUBSCRIPTIONS_PER_SOCKET", "3")
        .start()
        .await?;
    let mut c = WsClient::connect(&server, &[]).await?;

    ask(
        &mut c,
        r#"{"type":"subscribe","id":"old","query":"insert:people:age.gt.30"}"#,
        "subscribed",
        "old",
    )
    .await?;
    ask(
        &mut c,
        r#"{"type":"subscribe","id":"tall","query":"insert:people","plugin":"threshold","params":{"column":"height","value":2.0},"select":"id,height"}"#,
        "subscribed",
        "tall",
    )
    .await?;
    ask(
        &mut c,
        r#"{"type":"subscribe","id":"odd","query":"*:\"Odd Table\""}"#,
        "subscribed",
        "odd",
    )
    .await?;
    // Refusals name the subscription and keep the socket.
    let v = ask(
        &mut c,
        r#"{"type":"subscribe","id":"four","query":"*:people"}"#,
        "error",
        "four",
    )
    .await?;
    ensure!(v["error"] == "too_many_subscriptions", "{v}");
    c.send_text("not json").await?;
    let v = next_json(&mut c).await?;
    ensure!(v["error"] == "bad_message", "{v}");
    c.send_text(r#"{"type":"subscribe","query":"*:people"}"#)
        .await?;
    let v = next_json(&mut c).await?;
    ensure!(v["error"] == "bad_message", "{v}");

    db.exec(
        "INSERT INTO people VALUES (1, 20, 2.5), (2, 40, 1.5), (3, 50, 2.1); \
         INSERT INTO \"Odd Table\" VALUES (1, 'semi;colon''quote')",
    )
    .await?;
    let mut got: Vec<(String, i64)> = Vec::new();
    while got.len() < 5 {
        let v = next_json(&mut c).await?;
        ensure!(v["type"] == "change", "{v}");
        let id = v["id"].as_str().with_context(|| format!("no id: {v}"))?;
        if id == "tall" {
            ensure!(
                v["new"].as_object().is_some_and(|o| o.len() == 2),
                "select= applies: {v}"
            );
        }
        got.push((id.to_owned(), v["new"]["id"].as_i64().context("row id")?));
    }
    let of = |id: &str| -> Vec<i64> {
        got.iter()
            .filter(|(s, _)| s == id)
            .map(|(_, n)| *n)
            .collect()
    };
    ensure!(of("old") == [2, 3], "{got:?}");
    ensure!(of("tall") == [1, 3], "{got:?}");
    ensure!(of("odd") == [1], "{got:?}");

    ask(
        &mut c,
        r#"{"type":"unsubscribe","id":"old"}"#,
        "unsubscribed",
        "old",
    )
    .await?;
    db.exec("INSERT INTO people VALUES (4, 60, 3.0)").await?;
    let v = next_json(&mut c).await?;
    ensure!(
        v["id"] == "tall" && v["new"]["id"] == 4,
        "only tall gets row 4: {v}"
    );
    // A marker on the other table: anything for `old` would have come before it.
    db.exec("INSERT INTO \"Odd Table\" VALUES (2, 'marker')")
        .await?;
    let v = next_json(&mut c).await?;
    ensure!(
        v["id"] == "odd" && v["new"]["id"] == 2,
        "nothing after the unsubscribe: {v}"
    );
    // Room again: a fourth one fits now.
    ask(
        &mut c,
        r#"{"type":"subscribe","id":"four","query":"delete:people"}"#,
        "subscribed",
        "four",
    )
    .await?;
    Ok(())
}
