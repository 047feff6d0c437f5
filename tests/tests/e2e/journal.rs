//! The journal: every change frame carries `pos`, a client resumes after any position it saw
//! (`from=`), also across `kill -9` of walcast, with no gap and no duplicate at the seam between
//! the replay and the live stream; a position retention removed is refused with 409.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use walcast_tests::{Frame, JournalDir, PgCluster, TestDb, Walcast, WsClient, STEP};

/// (id, pos) of the next change frame.
async fn next_row(c: &mut WsClient) -> Result<(i64, String)> {
    let raw = c.next_text(STEP).await?;
    let v: Value = serde_json::from_str(&raw).with_context(|| format!("not JSON: {raw}"))?;
    ensure!(v["type"] == "change", "expected a change frame, got {raw}");
    let id = v["new"]["id"].as_i64().context("id")?;
    let pos = v["pos"]
        .as_str()
        .with_context(|| format!("no pos in {raw}"))?;
    Ok((id, pos.to_owned()))
}

/// Reads rows and requires exactly `want` ids, in order, with increasing positions.
async fn expect_rows(
    c: &mut WsClient,
    want: impl IntoIterator<Item = i64>,
    what: &str,
) -> Result<Vec<(i64, String)>> {
    let mut got: Vec<(i64, String)> = Vec::new();
    for id in want {
        let (got_id, pos) = next_row(c)
            .await
            .with_context(|| format!("{what}: waiting for id {id} after {} rows", got.len()))?;
        ensure!(
            got_id == id,
            "{what}: expected id {id}, got {got_id} (after {:?})",
            got.last()
        );
        if let Some((_, last)) = got.last() {
            ensure!(
                pos > *last,
                "{what}: pos {pos} after {last} does not increase"
            );
        }
        got.push((id, pos));
    }
    Ok(got)
}

async fn resume(server: &Walcast, query: &str, from: &str) -> Result<(WsClient, Value)> {
    WsClient::subscribe(server, &[("query", query), ("from", from)]).await
}

fn pos_of(rows: &[(i64, String)], id: i64) -> Result<String> {
    rows.iter()
        .find(|(i, _)| *i == id)
        .map(|(_, p)| p.clone())
        .with_context(|| format!("no row {id}"))
}

#[tokio::test]
async fn resume_from_any_position_also_after_kill_9() -> Result<()> {
    let cluster = PgCluster::shared();
    let db = TestDb::new(cluster, "resume").await?;
    db.exec("CREATE TABLE items (id int primary key, v text NOT NULL DEFAULT 'x')")
        .await?;
    let journal = JournalDir::new("resume")?;
    let start = || {
        Walcast::builder(&db)
            .env("WALCAST_JOURNAL_DIR", journal.path())
            .start()
    };
    let mut server = start().await?;
    let (mut live, hello) = WsClient::subscribe(&server, &[("query", "insert:items")]).await?;
    ensure!(hello["pos"].is_string(), "subscribed carries pos: {hello}");

    // Single-row transactions, then a COPY whose rows share WAL record LSNs.
    let mut sql = String::new();
    for id in 1..=200 {
        sql.push_str(&format!("INSERT INTO items (id) VALUES ({id});"));
    }
    db.exec(&sql).await?;
    db.exec("COPY items (id) FROM PROGRAM 'seq 201 1200'")
        .await?;
    let seen = expect_rows(&mut live, 1..=1200, "live").await?;

    // Resume in the middle of the single-row transactions, and inside the COPY.
    for (after, what) in [(100, "from row 100"), (700, "from inside the COPY")] {
        let from = pos_of(&seen, after)?;
        let (mut c, hello) = resume(&server, "insert:items", &from).await?;
        ensure!(
            hello["pos"] == from.as_str(),
            "{what}: subscribed pos: {hello}"
        );
        expect_rows(&mut c, after + 1..=1200, what).await?;
    }

    // A resume that is still replaying while new rows are committed.
    let from = pos_of(&seen, 10)?;
    let (mut c, _) = resume(&server, "insert:items", &from).await?;
    db.exec("COPY items (id) FROM PROGRAM 'seq 1201 1300'")
        .await?;
    let resumed = expect_rows(&mut c, 11..=1300, "resume across new rows").await?;
    expect_rows(&mut live, 1201..=1300, "live").await?;

    // kill -9, rows committed while walcast is down, restart on the same journal and slot.
    server.kill()?;
    db.exec("COPY items (id) FROM PROGRAM 'seq 1301 1400'")
        .await?;
    server = start().await?;
    let from = pos_of(&resumed, 1250)?;
    let (mut c, _) = resume(&server, "insert:items", &from).await?;
    expect_rows(&mut c, 1251..=1400, "after kill -9").await?;
    db.exec("INSERT INTO items (id) VALUES (1401)").await?;
    expect_rows(&mut c, [1401], "live after the replay").await?;

    // A filtered resume applies its own conditions to the replay.
    let (mut even, _) = WsClient::subscribe(
        &server,
        &[
            ("query", "insert:items:id.gte.1390"),
            ("from", &pos_of(&seen, 1)?),
        ],
    )
    .await?;
    expect_rows(&mut even, 1390..=1401, "filtered resume").await?;
    Ok(())
}

#[tokio::test]
async fn bad_and_expired_positions_are_refused_before_the_upgrade() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "expired").await?;
    db.exec("CREATE TABLE items (id int primary key, v text NOT NULL DEFAULT 'x')")
        .await?;
    let server = Walcast::builder(&db)
        .config_toml("[journal]\nsegment_bytes = 4096\nmax_bytes = 8192\n")
        .start()
        .await?;
    let (status, body) = server
        .get("/ws?query=insert:items&from=0%2F16B3748")
        .await?;
    ensure!(
        status == 400 && body.contains("bad_position"),
        "{status} {body}"
    );

    let (mut live, _) = WsClient::subscribe(&server, &[("query", "insert:items")]).await?;
    db.exec("COPY items (id) FROM PROGRAM 'seq 1 50'").await?;
    let seen = expect_rows(&mut live, 1..=50, "live").await?;
    let first = pos_of(&seen, 1)?;
    // Retention runs at the end of a burst, at most once a second: keep committing until it
    // removed the segment holding the first rows.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut next = 51;
    loop {
        db.exec(&format!(
            "COPY items (id) FROM PROGRAM 'seq {next} {}'",
            next + 49
        ))
        .await?;
        next += 50;
        let (status, body) = server
            .get(&format!("/ws?query=insert:items&from={first}"))
            .await?;
        if status == 409 {
            let v: Value = serde_json::from_str(&body)?;
            ensure!(v["error"] == "position_expired", "{body}");
            // (Counted once the removal, made off the async workers, is back: a moment after
            // readers see it.)
            let counted = tokio::time::Instant::now() + Duration::from_secs(10);
            let removed = loop {
                let removed = server
                    .metric("walcast_journal_segments_removed_total")
                    .await?;
                if removed > Some(0.0) || tokio::time::Instant::now() >= counted {
                    break removed;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            ensure!(removed > Some(0.0), "retention is counted: {removed:?}");
            let bytes = server.metric("walcast_journal_bytes").await?;
            ensure!(
                bytes.is_some_and(|b| b > 0.0 && b <= 3.0 * 8192.0),
                "journal size near max_bytes: {bytes:?}"
            );
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("retention never removed the first segment (last answer {status} {body})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A recent position still resumes.
    let (mut c, _) = WsClient::subscribe(&server, &[("query", "insert:items")]).await?;
    db.exec("INSERT INTO items (id) VALUES (100000)").await?;
    // Rows of the last COPY may still be on their way to this new subscriber.
    let pos = loop {
        let (id, pos) = next_row(&mut c).await?;
        if id == 100000 {
            break pos;
        }
    };
    db.exec("INSERT INTO items (id) VALUES (100001)").await?;
    let (mut resumed, _) = resume(&server, "insert:items", &pos).await?;
    match resumed.next_frame(STEP).await? {
        Frame::Json(v, _) if v["new"]["id"] == 100001 => {}
        other => bail!("expected row 100001, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_temporary_slot_reconnect_sends_a_gap_frame() -> Result<()> {
    let cluster = PgCluster::shared();
    let db = TestDb::new(cluster, "gap").await?;
    db.exec("CREATE TABLE items (id int primary key, v text NOT NULL DEFAULT 'x')")
        .await?;
    let server = Walcast::builder(&db)
        .env("WALCAST_TEMPORARY_SLOT", "true")
        .start()
        .await?;
    let (mut c, _) = WsClient::subscribe(&server, &[("query", "insert:items")]).await?;
    db.exec("INSERT INTO items (id) VALUES (1)").await?;
    expect_rows(&mut c, [1], "before the cut").await?;
    let admin = cluster.connect("postgres").await?;
    let cut = admin
        .query_one(
            "SELECT count(pg_terminate_backend(active_pid)) FROM pg_replication_slots
              WHERE slot_name = $1 AND active_pid IS NOT NULL",
            &[&db.slot()],
        )
        .await?;
    ensure!(cut.get::<_, i64>(0) == 1, "no walsender to terminate");
    match c.next_frame(STEP).await? {
        Frame::Json(v, _) if v["type"] == "gap" => {
            ensure!(v["after"].is_string() && v["message"].is_string(), "{v}");
        }
        other => bail!("expected a gap frame, got {other:?}"),
    }
    // The stream goes on from the new slot.
    let deadline = tokio::time::Instant::now() + STEP;
    let mut next = 2;
    loop {
        db.exec(&format!("INSERT INTO items (id) VALUES ({next})"))
            .await?;
        match c.next_frame(Duration::from_millis(500)).await {
            Ok(Frame::Json(v, _)) if v["type"] == "change" => break,
            Ok(other) => bail!("unexpected {other:?}"),
            Err(_) if tokio::time::Instant::now() < deadline => next += 1,
            Err(e) => return Err(e.context("no change after the reconnect")),
        }
    }
    Ok(())
}
