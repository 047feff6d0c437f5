//! Readers at their own pace: a session that falls behind its cohort's in-memory log goes on from
//! the journal and gets every frame in order, with no gap and no duplicate, while a fast client on
//! the same table keeps its throughput; a 1,000,000-row transaction read slowly does not hold up
//! the replication stream and streams through walcast in bounded memory.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tokio::sync::watch;
use walcast_tests::{PgCluster, PgOptions, TestDb, Walcast, WsClient};

use crate::LONG;

/// `sessions.queue_capacity` for the pace test: small, so a slow reader overflows its cohort
/// log within a few hundred frames.
const QUEUE_CAPACITY: i64 = 256;

/// `(id, pos)` of a change frame, found in its text without parsing all of it (`new.id` is the
/// first column of the tables here); anything else is an error naming the frame.
fn id_pos(raw: &str) -> Result<(i64, &str)> {
    let found = (|| {
        if !raw.starts_with(r#"{"type":"change""#) {
            return None;
        }
        let at = raw.find(r#""new":{"id":"#)? + 12;
        let end = at + raw[at..].find(|c: char| !c.is_ascii_digit())?;
        let id = raw[at..end].parse().ok()?;
        let p = raw.find(r#""pos":""#)? + 7;
        let pos = &raw[p..p + raw[p..].find('"')?];
        Some((id, pos))
    })();
    found.with_context(|| format!("expected a change frame with new.id and pos, got {raw:.300}"))
}

/// Checks one frame of a stream that must deliver consecutive ids with increasing positions.
fn check_next(raw: &str, next: &mut i64, last_pos: &mut String, what: &str) -> Result<()> {
    let (id, pos) = id_pos(raw)?;
    ensure!(
        id == *next,
        "{what}: expected id {next} (every frame, in order, no duplicate), got {raw:.300}"
    );
    ensure!(
        pos > last_pos.as_str(),
        "{what}: pos {pos} after {last_pos} does not increase"
    );
    last_pos.clear();
    last_pos.push_str(pos);
    *next += 1;
    Ok(())
}

/// Rows `lo..=hi` in one transaction.
async fn insert_burst(db: &TestDb<'_>, lo: i64, hi: i64) -> Result<()> {
    db.exec(&format!(
        "INSERT INTO burst SELECT g, repeat('x', 64) FROM generate_series({lo}, {hi}) g"
    ))
    .await
}

/// The fast client: reads ids `first..` as fast as it can, up to each end in `ends`; returns
/// when the first and the last row of each burst arrived. Publishes the last id read (and its
/// position) at the end of each burst.
async fn read_fast(
    mut c: WsClient,
    first: i64,
    ends: Vec<i64>,
    progress: watch::Sender<(i64, String)>,
    times: Arc<Mutex<Vec<(Instant, Instant)>>>,
) -> Result<()> {
    let mut next = first;
    let mut last_pos = String::new();
    for end in ends {
        let mut burst_first = None;
        while next <= end {
            let raw = c
                .next_text(LONG)
                .await
                .with_context(|| format!("fast client waiting for id {next}"))?;
            let now = Instant::now();
            check_next(&raw, &mut next, &mut last_pos, "fast client")?;
            let burst_first = *burst_first.get_or_insert(now);
            if next > end {
                times.lock().unwrap().push((burst_first, now));
                progress.send_replace((end, last_pos.clone()));
            }
        }
    }
    Ok(())
}

/// A slow client: one frame every 100 ms until `min_slow` has passed and `release` is true, then
/// as fast as it can. Requires exactly ids `first..=last`, in order, with increasing positions.
/// Returns how many frames it had read when it sped up.
async fn read_slow(
    mut c: WsClient,
    first: i64,
    last: i64,
    min_slow: Duration,
    release: watch::Receiver<bool>,
    what: &'static str,
) -> Result<i64> {
    let started = Instant::now();
    let mut next = first;
    let mut last_pos = String::new();
    let mut read_slowly = None;
    while next <= last {
        if read_slowly.is_none() {
            if started.elapsed() >= min_slow && *release.borrow() {
                read_slowly = Some(next - first);
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let raw = c
            .next_text(LONG)
            .await
            .with_context(|| format!("{what}: waiting for id {next} ({first}..={last})"))?;
        check_next(&raw, &mut next, &mut last_pos, what)?;
    }
    Ok(read_slowly.unwrap_or(last - first + 1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_get_every_frame_and_do_not_slow_a_fast_one() -> Result<()> {
    const WARMUP: i64 = 1_000;
    const BURST: i64 = 100_000;
    /// Rounds of (a burst with the fast client alone, a burst beside the slow readers): the
    /// best burst of each kind is compared, as interference from outside only slows a burst down.
    /// Other tests run beside this one: after `ROUNDS` rounds that do not reach the ratio, up to
    /// `MAX_ROUNDS` are run (a fast client that is really held back stays below it however
    /// many bursts it gets).
    const ROUNDS: i64 = 10;
    const MAX_ROUNDS: i64 = 30;
    const MIN_SLOW: Duration = Duration::from_secs(5);
    let db = TestDb::new(PgCluster::shared(), "pace").await?;
    db.exec("CREATE TABLE burst (id int8 primary key, pad text NOT NULL)")
        .await?;
    let server = Walcast::builder(&db)
        .prefer_release()
        .env("WALCAST_QUEUE_CAPACITY", &QUEUE_CAPACITY.to_string())
        .start()
        .await?;
    let query = [("query", "insert:burst")];
    let (fast, _) = WsClient::subscribe(&server, &query).await?;

    let ends: Vec<i64> = (1..=2 * MAX_ROUNDS).map(|k| WARMUP + k * BURST).collect();
    let times = Arc::new(Mutex::new(Vec::new()));
    let (progress_tx, mut progress) = watch::channel((0, String::new()));
    let fast_task = tokio::spawn(read_fast(
        fast,
        1,
        std::iter::once(WARMUP)
            .chain(ends.iter().copied())
            .collect(),
        progress_tx,
        times.clone(),
    ));
    let mut fast_task = Some(fast_task);
    // Waits until the fast client has read up to `end`; returns the position of that row.
    let mut reached = async |end: i64, what: &str| -> Result<String> {
        let waited = tokio::time::timeout(2 * LONG, progress.wait_for(|(id, _)| *id >= end)).await;
        match waited {
            Ok(Ok(p)) => Ok(p.1.clone()),
            _ => {
                let task = fast_task.take().context("fast client gone")?;
                task.abort();
                match task.await {
                    Ok(Err(e)) => Err(e.context(format!("fast client, {what}"))),
                    _ => bail!(
                        "fast client did not get {what}; stderr:\n{}",
                        server.stderr_tail(20)
                    ),
                }
            }
        }
    };

    // A warm-up transaction.
    insert_burst(&db, 1, WARMUP).await?;
    let mut before_alone = reached(WARMUP, "the warm-up").await?;
    let mut slow_counts = Vec::new();
    // times[0] is the warm-up; then alone, beside, alone, beside, ...
    let rate = |(first, last): &(Instant, Instant)| BURST as f64 / (*last - *first).as_secs_f64();
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let rates = || {
        let times = times.lock().unwrap();
        let alone: Vec<f64> = times[1..].iter().step_by(2).map(rate).collect();
        let beside: Vec<f64> = times[2..].iter().step_by(2).map(rate).collect();
        (alone, beside)
    };
    for round in 0..MAX_ROUNDS {
        if round >= ROUNDS && round % ROUNDS == 0 {
            let (alone, beside) = rates();
            if best(&beside) >= 0.9 * best(&alone) {
                break;
            }
        }
        let alone_end = WARMUP + (2 * round + 1) * BURST;
        let beside_end = alone_end + BURST;
        // The fast client alone.
        insert_burst(&db, alone_end - BURST + 1, alone_end).await?;
        reached(alone_end, &format!("round {round}, alone")).await?;

        // Beside two slow readers on the same query: one live (it joins the cohort now and falls
        // behind its log within QUEUE_CAPACITY frames), one resuming before the burst it missed
        // (journal first, then both bursts).
        let (slow_live, _) = WsClient::subscribe(&server, &query).await?;
        let (slow_from, hello) = WsClient::subscribe(
            &server,
            &[("query", "insert:burst"), ("from", before_alone.as_str())],
        )
        .await?;
        ensure!(hello["pos"] == before_alone.as_str(), "{hello}");
        let (release_tx, release) = watch::channel(false);
        let live_task = tokio::spawn(read_slow(
            slow_live,
            alone_end + 1,
            beside_end,
            MIN_SLOW,
            release.clone(),
            "slow live client",
        ));
        let from_task = tokio::spawn(read_slow(
            slow_from,
            alone_end - BURST + 1,
            beside_end,
            MIN_SLOW,
            release,
            "slow from= client",
        ));
        insert_burst(&db, alone_end + 1, beside_end).await?;
        before_alone = reached(beside_end, &format!("round {round}, beside")).await?;
        release_tx.send_replace(true);
        let live_slow = tokio::time::timeout(2 * LONG, live_task)
            .await
            .context("slow live client")???;
        let from_slow = tokio::time::timeout(2 * LONG, from_task)
            .await
            .context("slow from= client")???;
        // The slow live reader really fell behind its cohort's log during the burst.
        ensure!(
            live_slow < BURST - QUEUE_CAPACITY,
            "the live slow reader read {live_slow} frames before speeding up: it never fell behind"
        );
        slow_counts.push((live_slow, from_slow));
    }
    // The fast client waits for bursts that were not needed.
    if let Some(task) = fast_task.take() {
        task.abort();
    }
    let (alone, beside) = rates();
    let ratio = best(&beside) / best(&alone);
    eprintln!(
        "fast client rows/s alone {alone:.0?}, beside two slow readers {beside:.0?}: ratio of the \
         best {ratio:.3}; slow readers (live, from=) read {slow_counts:?} frames before speeding up"
    );
    ensure!(
        ratio >= 0.9,
        "the fast client was slowed by the slow readers: at best {:.0} rows/s beside them, {:.0} \
         rows/s alone (ratio {ratio:.3} < 0.9)",
        best(&beside),
        best(&alone)
    );
    let dropped = server
        .metric("walcast_sessions_dropped_total")
        .await?
        .unwrap_or(0.0);
    ensure!(
        dropped == 0.0,
        "{dropped} sessions closed as slow consumers"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn million_row_transaction_read_slowly_in_bounded_memory() -> Result<()> {
    const N: i64 = 1_000_000;
    const SLOW_FOR_AT_MOST: Duration = Duration::from_secs(120);
    let cluster = PgCluster::start_new(PgOptions::default())?;
    let db = TestDb::new(&cluster, "bigslow").await?;
    db.exec("CREATE TABLE big (id int8 primary key, v text)")
        .await?;
    let server = Walcast::builder(&db).prefer_release().start().await?;
    let (mut c, _) = WsClient::subscribe(&server, &[("query", "*:big")]).await?;
    let decoded = async || -> Result<f64> {
        Ok(server
            .metric("walcast_changes_decoded_total")
            .await?
            .unwrap_or(0.0))
    };
    let base = decoded().await?;

    let started = Instant::now();
    let insert = {
        let conn = db.connect().await?;
        tokio::spawn(async move {
            conn.batch_execute(&format!(
                "INSERT INTO big SELECT g, 'x' FROM generate_series(1, {N}) g"
            ))
            .await
        })
    };
    // A few hundred frames a second, until walcast has taken the whole transaction from Postgres:
    // the replication stream does not wait for this reader.
    let (mut next, mut last_pos) = (1, String::new());
    let mut checked = Instant::now();
    let read_slowly = loop {
        if checked.elapsed() >= Duration::from_millis(500) {
            checked = Instant::now();
            let taken = decoded().await? - base;
            if taken >= N as f64 {
                break next - 1;
            }
            ensure!(
                started.elapsed() < SLOW_FOR_AT_MOST,
                "after {SLOW_FOR_AT_MOST:?} walcast has decoded {taken} of {N} changes while the \
                 client read {} slowly: the stream waits for the reader",
                next - 1
            );
        }
        let raw = c.next_text(LONG).await.with_context(|| {
            format!("slow phase, id {next}; stderr:\n{}", server.stderr_tail(20))
        })?;
        check_next(&raw, &mut next, &mut last_pos, "slow phase")?;
        tokio::time::sleep(Duration::from_millis(3)).await;
    };
    let slow_phase = started.elapsed();
    let mem_slow = server.memory()?;
    insert.await?.context("INSERT")?;
    while next <= N {
        let raw = c.next_text(LONG).await.with_context(|| {
            format!("fast phase, id {next}; stderr:\n{}", server.stderr_tail(20))
        })?;
        check_next(&raw, &mut next, &mut last_pos, "fast phase")?;
    }
    let mem = server.memory()?;
    eprintln!(
        "1M-row tx: walcast took it all in {:.1}s while the client read {read_slowly} frames \
         (VmHWM then {} MiB); all {N} frames after {:.1}s; walcast VmHWM {} MiB, VmRSS {} MiB",
        slow_phase.as_secs_f64(),
        mem_slow.hwm_kib / 1024,
        started.elapsed().as_secs_f64(),
        mem.hwm_kib / 1024,
        mem.rss_kib / 1024
    );
    ensure!(
        read_slowly < N / 2,
        "the client had read {read_slowly} frames: not a slow reader"
    );
    ensure!(
        mem.hwm_kib < 256 * 1024,
        "walcast peak RSS {} MiB >= 256 MiB",
        mem.hwm_kib / 1024
    );
    Ok(())
}
