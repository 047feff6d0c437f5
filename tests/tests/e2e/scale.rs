//! Volume behaviour: a consumer that stops reading never slows a fast one; it goes on from the
//! journal and, when retention overtook it, is closed with 4008 after a gap-free prefix; and a
//! 1,000,000-row transaction streams through walcast in bounded memory.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use walcast_tests::{Frame, PgCluster, PgOptions, TestDb, Walcast, WsClient};

use crate::{row_id, LONG};

/// A stalled consumer beside a fast one, with a journal kept to a few MiB: the fast client gets
/// every row in order while the stalled one is moved off its cohort's log; once retention removed
/// what the stalled one still needed, it gets a gap-free prefix of the rows, then close 4008, and
/// `walcast_sessions_dropped_total` counts it. Never a silent gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_consumer_behind_retention_gets_a_prefix_then_4008() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "slow").await?;
    db.exec("CREATE TABLE wide (id int primary key, pad text)")
        .await?;
    // The stalled client must outlast the run on retention alone, not on the write timeout
    // (`timeouts.rs` tests that one).
    let server = Walcast::builder(&db)
        .env("WALCAST_QUEUE_CAPACITY", "16")
        .env("WALCAST_WRITE_TIMEOUT", "10m")
        .config_toml("[journal]\nsegment_bytes = 4194304\nmax_bytes = 16777216\n")
        .start()
        .await?;
    // Never polled until the end: its socket buffers fill, then it falls behind.
    let (mut slow, _) = WsClient::subscribe(&server, &[("query", "insert:wide")]).await?;
    let (mut fast, _) = WsClient::subscribe(&server, &[("query", "insert:wide")]).await?;

    // Rounds small enough for the fast client to stay within retention, many enough (110 MB in
    // all) for retention to overtake the stalled one.
    const ROUNDS: i64 = 20;
    const ROWS: i64 = 5_000;
    let total = ROUNDS * ROWS;
    let mut next = 1;
    for round in 0..ROUNDS {
        let lo = round * ROWS + 1;
        db.exec(&format!(
            "INSERT INTO wide SELECT g, repeat('x', 1024) FROM generate_series({lo}, {}) g",
            lo + ROWS - 1
        ))
        .await?;
        while next < lo + ROWS {
            let raw = fast
                .next_text(LONG)
                .await
                .with_context(|| format!("fast client after {} rows", next - 1))?;
            let id = fast_id(&raw).with_context(|| format!("frame without id: {raw}"))? as i64;
            ensure!(id == next, "fast client: expected id {next}, got {id}");
            next += 1;
        }
    }
    ensure!(
        server
            .metric("walcast_sessions_behind_total")
            .await?
            .unwrap_or(0.0)
            >= 1.0,
        "the stalled session was never moved off its cohort's log"
    );
    // Now the stalled client reads: rows 1, 2, ... without a hole, then 4008.
    let mut prefix = 0i64;
    loop {
        match slow.next_frame(LONG).await? {
            Frame::Json(v, _) if v["type"] == "change" => {
                let id = row_id(&v).context("row id")?;
                ensure!(
                    id == prefix + 1,
                    "stalled client: expected id {}, got {id}",
                    prefix + 1
                );
                prefix = id;
            }
            Frame::Close(Some(4008), _) => break,
            other => bail!("stalled client after {prefix} rows: unexpected {other:?}"),
        }
    }
    ensure!(
        prefix < total,
        "retention (16 MiB) cannot hold {total} rows of 1 KiB"
    );
    let dropped = server
        .metric("walcast_sessions_dropped_total")
        .await?
        .unwrap_or(0.0);
    assert_eq!(dropped, 1.0, "only the stalled session is dropped");
    eprintln!("stalled consumer: {prefix} rows in order, then 4008; fast got {total}");
    Ok(())
}

/// Pulls the id out of `"new":{"id":N` without parsing the whole frame.
fn fast_id(raw: &str) -> Option<usize> {
    let start = raw.find("\"new\":{\"id\":")? + 12;
    let digits: &str = &raw[start..raw[start..].find(|c: char| !c.is_ascii_digit())? + start];
    digits.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn million_row_transaction_in_bounded_memory() -> Result<()> {
    const N: usize = 1_000_000;
    let cluster = PgCluster::start_new(PgOptions::default())?;
    let db = TestDb::new(&cluster, "big").await?;
    db.exec("CREATE TABLE big (id int primary key, v text)")
        .await?;
    let server = Walcast::builder(&db).prefer_release().start().await?;
    let (mut c, _) = WsClient::subscribe(&server, &[("query", "*:big")]).await?;

    let started = Instant::now();
    db.exec(&format!(
        "INSERT INTO big SELECT g, 'x' FROM generate_series(1, {N}) g"
    ))
    .await?;
    let committed = started.elapsed();

    let mut seen = vec![false; N + 1];
    let mut count = 0usize;
    let mut dups = 0usize;
    let deadline = Instant::now() + Duration::from_secs(600);
    while count < N {
        let raw = c.next_text(LONG).await.with_context(|| {
            format!("after {count} frames; stderr:\n{}", server.stderr_tail(20))
        })?;
        let id = match fast_id(&raw) {
            Some(id) => id,
            None => {
                let v: serde_json::Value = serde_json::from_str(&raw)?;
                row_id(&v).with_context(|| format!("frame without id: {raw}"))? as usize
            }
        };
        if id == 0 || id > N {
            bail!("unexpected id {id}: {raw}");
        }
        if seen[id] {
            dups += 1;
        }
        seen[id] = true;
        count += 1;
        if Instant::now() > deadline {
            bail!("only {count} of {N} frames after 600 s");
        }
    }
    let elapsed = started.elapsed();
    let mem = server.memory()?;
    eprintln!(
        "big tx: commit {:.1}s, {N} frames in {:.1}s ({:.0}/s), {dups} duplicates, walcast VmHWM {} MiB, VmRSS {} MiB",
        committed.as_secs_f64(),
        elapsed.as_secs_f64(),
        N as f64 / elapsed.as_secs_f64(),
        mem.hwm_kib / 1024,
        mem.rss_kib / 1024
    );
    assert_eq!(dups, 0, "duplicate frames");
    assert!(seen[1..].iter().all(|s| *s), "some rows missing");
    assert!(
        mem.hwm_kib < 256 * 1024,
        "walcast peak RSS {} MiB >= 256 MiB",
        mem.hwm_kib / 1024
    );
    Ok(())
}
