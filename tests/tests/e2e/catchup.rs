//! Catch-up from the journal beside the live stream. A resume across a large journal on a table
//! with nothing in it works in bounded steps: its socket goes on with its other subscriptions
//! and messages meanwhile, and live subscribers keep receiving. After a snapshot, the switch to
//! the live stream waits until walcast has dispatched every transaction the snapshot may show,
//! also when a reconnect to Postgres makes the server's WAL end jump ahead of what was resent.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::json;
use walcast_tests::{wait_for, Frame, PgCluster, SlotHolder, TestDb, Walcast, WsClient};

use crate::snapshot::{rebuild, Table};
use crate::LONG;

/// Reads change frames until `want` ids (`new.id`) arrived, each once and in this order.
async fn expect_in_order(c: &mut WsClient, want: &[i64], what: &str) -> Result<()> {
    for (n, id) in want.iter().enumerate() {
        let v = c
            .next_change(LONG)
            .await
            .with_context(|| format!("{what}: after {n} of {} rows", want.len()))?;
        ensure!(
            v["new"]["id"] == *id,
            "{what}: expected id {id} after {n} rows, got {v}"
        );
    }
    Ok(())
}

/// The next text frame of a socket whose subscriptions carry ids, as (type, id, new.id).
async fn next_tagged(c: &mut WsClient) -> Result<(String, String, Option<i64>)> {
    match c.next_frame(LONG).await? {
        Frame::Json(v, _) => Ok((
            v["type"].as_str().unwrap_or_default().to_owned(),
            v["id"].as_str().unwrap_or_default().to_owned(),
            v["new"]["id"].as_i64(),
        )),
        other => bail!("expected a frame, got {other:?}"),
    }
}

/// One socket opens two resumes from the journal's oldest position with `subscribe` messages
/// sent back to back: `a` on `alpha`, whose only change is the last of a 100,000-record journal
/// (the rest is `busy`), and `b` on `beta`, whose only change is the first. The socket steps its
/// catch-ups in turn, a bounded number of records each: it answers `b`'s subscribe and sends
/// `b`'s change while `a` is still crossing the journal. (Read in one go, `a`'s catch-up held the
/// socket until it had read the whole journal: `a`'s change came before `b` was even
/// subscribed.) Meanwhile four more clients resume on `alpha` and a live subscriber receives
/// every new `busy` row in order; after the catch-ups, new rows of `alpha` and `beta` reach the
/// socket live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_across_a_large_journal_leaves_its_socket_and_the_stream_free() -> Result<()> {
    const BUSY: i64 = 100_000;
    const PER_TX: i64 = 5_000;
    const LATER: i64 = 2_000;
    let db = TestDb::new(PgCluster::shared(), "catchup_quiet").await?;
    db.exec(
        "CREATE TABLE busy (id bigint primary key, note text not null); \
         CREATE TABLE alpha (id int primary key); CREATE TABLE beta (id int primary key)",
    )
    .await?;
    let server = Walcast::builder(&db).prefer_release().start().await?;
    let (mut live, subscribed) = WsClient::subscribe(&server, &[("query", "insert:busy")]).await?;
    let oldest = subscribed["pos"]
        .as_str()
        .context("subscribed without pos")?
        .to_owned();
    let (mut alpha_live, _) = WsClient::subscribe(&server, &[("query", "*:alpha")]).await?;

    db.exec("INSERT INTO beta VALUES (1)").await?;
    let busy_rows = |from: i64, to: i64| {
        format!("INSERT INTO busy SELECT g, 'busy row ' || g FROM generate_series({from}, {to}) g")
    };
    let write = async {
        for t in 0..BUSY / PER_TX {
            db.exec(&busy_rows(t * PER_TX + 1, (t + 1) * PER_TX))
                .await?;
        }
        anyhow::Ok(())
    };
    let all: Vec<i64> = (1..=BUSY).collect();
    tokio::try_join!(write, expect_in_order(&mut live, &all, "live, backlog"))?;
    db.exec("INSERT INTO alpha VALUES (1)").await?;
    // Dispatched, so journaled: the resumes below find it at the journal's end.
    expect_in_order(&mut alpha_live, &[1], "alpha, live").await?;

    let mut others = Vec::new();
    for _ in 0..4 {
        let (c, _) =
            WsClient::subscribe(&server, &[("query", "*:alpha"), ("from", &oldest)]).await?;
        others.push(c);
    }
    let mut socket = WsClient::connect(&server, &[]).await?;
    for (id, table) in [("a", "alpha"), ("b", "beta")] {
        let msg =
            json!({"type": "subscribe", "id": id, "query": format!("*:{table}"), "from": oldest});
        socket.send_text(&msg.to_string()).await?;
    }
    let writer = db.connect().await?;
    let later = tokio::spawn(async move {
        for t in 0..2 {
            let from = BUSY + 1 + t * LATER / 2;
            writer
                .batch_execute(&format!(
                    "INSERT INTO busy SELECT g, 'later row ' || g FROM generate_series({from}, {}) g",
                    from + LATER / 2 - 1
                ))
                .await?;
        }
        anyhow::Ok(())
    });

    let mut seen = Vec::new();
    while !seen.contains(&("change".to_owned(), "a".to_owned(), Some(1))) {
        let frame = next_tagged(&mut socket).await?;
        ensure!(
            matches!(frame.0.as_str(), "subscribed" | "change"),
            "unexpected frame {frame:?} after {seen:?}"
        );
        seen.push(frame);
    }
    let at = |t: &str, id: &str| seen.iter().position(|f| f.0 == t && f.1 == id);
    let (a_change, b_subscribed, b_change) =
        (at("change", "a"), at("subscribed", "b"), at("change", "b"));
    ensure!(
        at("subscribed", "a") == Some(0)
            && matches!((b_subscribed, b_change, a_change),
                (Some(bs), Some(bc), Some(ac)) if bs < ac && bc < ac),
        "the socket waited for a's whole journal scan: {seen:?}"
    );
    ensure!(seen.len() == 4, "one change each: {seen:?}");

    later.await??;
    let new: Vec<i64> = (BUSY + 1..=BUSY + LATER).collect();
    expect_in_order(&mut live, &new, "live, during the catch-ups").await?;
    for (i, c) in others.iter_mut().enumerate() {
        expect_in_order(c, &[1], &format!("resume {i} on alpha")).await?;
    }

    db.exec("INSERT INTO alpha VALUES (2); INSERT INTO beta VALUES (2)")
        .await?;
    let mut got = vec![
        next_tagged(&mut socket).await?,
        next_tagged(&mut socket).await?,
    ];
    got.sort();
    ensure!(
        got == [
            ("change".to_owned(), "a".to_owned(), Some(2)),
            ("change".to_owned(), "b".to_owned(), Some(2))
        ],
        "after the catch-ups: {got:?}"
    );
    for (i, c) in others.iter_mut().enumerate() {
        expect_in_order(c, &[2], &format!("resume {i} on alpha, live")).await?;
    }
    Ok(())
}

async fn reconnects(server: &Walcast) -> Result<f64> {
    server
        .metric("walcast_replication_reconnects_total")
        .await?
        .context("no walcast_replication_reconnects_total in /metrics")
}

/// A snapshot taken while walcast cannot receive from its slot (the test holds it), then
/// reconnects that keep failing until the snapshot was sent: each asks `IDENTIFY_SYSTEM`, whose
/// WAL end is past the snapshot, while the transactions before it were not resent. The
/// subscription stays on the journal until walcast has dispatched them (and the journal skips
/// those the snapshot shows); switching on the server's WAL end sent them again as live changes
/// after their rows were in the snapshot. The client rebuilds the table from rows and changes:
/// no row twice, no insert of a present row, no update or delete of an absent one, and in the end
/// exactly what `SELECT` shows, including a transaction committed after the snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_during_a_snapshot_does_not_send_what_it_showed_again() -> Result<()> {
    const ROWS: i64 = 20_000;
    let db = TestDb::new(PgCluster::shared(), "snap_gate").await?;
    db.exec(&format!(
        "CREATE TABLE people (id int primary key, age int not null, name text not null); \
         INSERT INTO people SELECT g, g % 100, 'p' || g FROM generate_series(1, {ROWS}) g"
    ))
    .await?;
    let server = Walcast::builder(&db)
        .config_toml("[replication]\nmax_backoff = \"300ms\"\n")
        .start()
        .await?;

    let hold = SlotHolder::take(&db).await?;
    // Committed while walcast cannot receive it: the snapshot below shows it.
    db.exec(&format!(
        "INSERT INTO people SELECT g, 1, 'shown' FROM generate_series({}, {}) g; \
         UPDATE people SET name = 'shown' WHERE id <= 5; DELETE FROM people WHERE id = 6",
        ROWS + 1,
        ROWS + 10
    ))
    .await?;
    let (mut c, _) =
        WsClient::subscribe(&server, &[("query", "*:people"), ("snapshot", "true")]).await?;
    let mut table = Table::new();
    rebuild(&mut c, &mut table, |v| v["type"] == "snapshot_end").await?;
    // After the snapshot: not in it, sent once as changes.
    db.exec(&format!(
        "INSERT INTO people VALUES ({}, 2, 'after'); UPDATE people SET name = 'after' WHERE id = 7",
        ROWS + 100
    ))
    .await?;
    // That commit flushed the WAL past the snapshot: every reconnect that starts from now on
    // gets a WAL end beyond it from IDENTIFY_SYSTEM. Two such have failed once three more did
    // (the first may have asked before), and the subscription, at the journal's end, has looked
    // at its switch meanwhile.
    let before = reconnects(&server).await?;
    wait_for(
        "three more failed reconnects",
        LONG,
        Duration::from_millis(20),
        || async { Ok((reconnects(&server).await? >= before + 3.0).then_some(())) },
    )
    .await?;
    drop(hold);

    db.exec("INSERT INTO people VALUES (-1, 99, 'marker')")
        .await?;
    let (_, changes) = rebuild(&mut c, &mut table, |v| v["new"]["id"] == -1).await?;
    table.remove(&-1);
    let rows = db
        .client()
        .query("SELECT id, age, name FROM people WHERE id <> -1", &[])
        .await?;
    let mut want = Table::new();
    for r in rows {
        let (id, age, name): (i32, i32, String) = (r.get(0), r.get(1), r.get(2));
        want.insert(i64::from(id), json!({"id": id, "age": age, "name": name}));
    }
    ensure!(
        changes == 3,
        "the insert and update after the snapshot and the marker, once each: {changes} changes"
    );
    if table != want {
        let differ: Vec<_> = want
            .iter()
            .filter(|(k, v)| table.get(k) != Some(*v))
            .take(5)
            .collect();
        bail!(
            "rebuilt table ({} rows) differs from SELECT ({} rows): {differ:?}",
            table.len(),
            want.len()
        );
    }
    Ok(())
}
