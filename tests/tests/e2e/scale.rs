//! Volume behaviour: a slow consumer is cut off with 4008 without hurting a fast one, and a
//! 1,000,000-row transaction streams through walcast in bounded memory.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use walcast_tests::{PgCluster, PgOptions, TestDb, Walcast, WsClient};

use crate::{row_id, LONG};

const ROUND: i64 = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_closed_with_4008_fast_one_gets_everything() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "slow").await?;
    db.exec("CREATE TABLE wide (id int primary key, pad text)")
        .await?;
    let server = Walcast::builder(&db)
        .env("WALCAST_QUEUE_CAPACITY", "16")
        .start()
        .await?;
    // Never polled until the end: its socket buffers fill, then its queue.
    let (mut slow, _) = WsClient::subscribe(&server, &[("query", "insert:wide")]).await?;
    let (mut fast, _) = WsClient::subscribe(&server, &[("query", "insert:wide")]).await?;

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<i64>>();
    let reader = tokio::spawn(async move {
        loop {
            // Unparsed text + id scan: the reader must keep up with walcast's burst rate.
            let r = fast
                .next_text(LONG)
                .await
                .and_then(|raw| match fast_id(&raw) {
                    Some(id) => Ok(id as i64),
                    None => serde_json::from_str(&raw)
                        .ok()
                        .as_ref()
                        .and_then(row_id)
                        .with_context(|| format!("frame without id: {raw}")),
                });
            let stop = r.is_err();
            if tx.send(r).is_err() || stop {
                break;
            }
        }
    });

    // The metric moves when the hub drops the session; the close frame then waits (bounded) for
    // socket space, so the slow client is drained as soon as the drop is observed.
    let mut received = Vec::new();
    let mut slow_close: Option<usize> = None;
    for round in 0..5 {
        let lo = round * ROUND + 1;
        db.exec(&format!(
            "INSERT INTO wide SELECT g, repeat('x', 1024) FROM generate_series({lo}, {}) g",
            lo + ROUND - 1
        ))
        .await?;
        let target = ((round + 1) * ROUND) as usize;
        let deadline = tokio::time::sleep(LONG);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            if received.len() >= target && slow_close.is_some() {
                break;
            }
            tokio::select! {
                r = rx.recv(), if received.len() < target => match r {
                    Some(Ok(id)) => received.push(id),
                    Some(Err(e)) => {
                        let dropped = server.metric("walcast_sessions_dropped_total").await.ok().flatten();
                        bail!("fast client failed after {} rows (walcast_sessions_dropped_total = {dropped:?}): {e:#}", received.len())
                    }
                    None => bail!("fast client reader ended after {} rows", received.len()),
                },
                _ = tick.tick(), if slow_close.is_none() => {
                    if server.metric("walcast_sessions_dropped_total").await?.unwrap_or(0.0) >= 1.0 {
                        slow_close = Some(slow.expect_close(4008, LONG).await?);
                    }
                    if received.len() >= target {
                        break;
                    }
                },
                _ = &mut deadline => bail!("round {round}: fast client has {} of {target} rows", received.len()),
            }
        }
        if slow_close.is_some() {
            break;
        }
    }
    reader.abort();
    let Some(skipped) = slow_close else {
        bail!(
            "walcast_sessions_dropped_total stayed 0 after {} rows",
            received.len()
        );
    };
    let expected: Vec<i64> = (1..=received.len() as i64).collect();
    assert_eq!(
        received, expected,
        "fast client must get every row in order"
    );
    let dropped = server
        .metric("walcast_sessions_dropped_total")
        .await?
        .unwrap_or(0.0);
    assert_eq!(dropped, 1.0, "only the slow session may be dropped");
    eprintln!(
        "slow consumer: {skipped} frames buffered before close 4008; fast got {}",
        received.len()
    );
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
    // A large queue so that this test measures walcast's buffering, not the 4008 policy.
    let server = Walcast::builder(&db)
        .prefer_release()
        .env("WALCAST_QUEUE_CAPACITY", "65536")
        .start()
        .await?;
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
