//! Replays from the journal and readers at their own pace: `catchup` (N clients replaying the same
//! backlog with `from=` at once: changes/s), `resume` (connect with `from=` until the first
//! replayed change, beside connect until `subscribed` of a plain subscription) and `trickle` (a
//! fast client alone and beside a slow client of the same cohort: is the fast one held back, and
//! what happens to the slow one).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::{self, Message};
use walcast_tests::{PgCluster, TestDb, Walcast, WsClient};

use crate::args::Args;
use crate::clients::{self, Fleet, FleetReport, Ws, CHANGE};
use crate::ingest::{Workload, BENCH_TABLE};
use crate::measure::{frame_pos, median, now_micros, CpuMark};
use crate::workload::STALL;

/// Rows per transaction of every backlog and burst here, committed back to back by one
/// statement: set-up stays short (a 200,000-row backlog is 200 commits, not 200,000), and every
/// row is still its own change frame.
const BATCH: u64 = 1_000;
/// Every client here subscribes to every change of `bench`.
const QUERY: &str = "query=*:bench";
/// Source address of the clients opened one by one (`clients::open` picks its own).
const SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// A `bench` table and walcast on `db`; the position a subscription starts after; then `rows`
/// rows committed in transactions of `BATCH` and received live by that subscriber (so walcast
/// has journaled every one of them). Returns walcast and the position.
async fn journaled_backlog(db: &TestDb<'_>, rows: u64) -> Result<(Walcast, String)> {
    db.exec(BENCH_TABLE).await?;
    let server = Walcast::builder(db).prefer_release().start().await?;
    let (mut live, subscribed) = WsClient::subscribe(&server, &[("query", "*:bench")]).await?;
    let pos = subscribed["pos"]
        .as_str()
        .with_context(|| format!("subscribed frame without pos: {subscribed}"))?
        .to_owned();
    // The subscriber reads while the rows are committed: one that waited would fill its
    // cohort log and be closed as a slow consumer.
    let read = async {
        let mut got = 0u64;
        while got < rows {
            let text = live
                .next_text(Duration::from_secs(60))
                .await
                .with_context(|| format!("live subscriber, after {got} of {rows} rows"))?;
            got += u64::from(text.starts_with(CHANGE));
        }
        anyhow::Ok(())
    };
    let write = Workload::Batched(rows, BATCH).sql();
    tokio::try_join!(db.exec(&write), read)?;
    live.close().await;
    Ok((server, pos))
}

fn millis(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

// ---------------------------------------------------------------- catchup

/// Medians over runs of one `catchup` table row.
#[derive(Default)]
struct CatchupRuns {
    aggregate: Vec<f64>,
    per_client: Vec<f64>,
    secs: Vec<f64>,
    /// walcast and bench CPU in cores, only from windows of at least `CPU_WINDOW`.
    cores: Vec<f64>,
    bench: Vec<f64>,
    /// Summed over runs: a failure in any run is worth seeing.
    failed: usize,
}

/// /proc counts CPU in 10 ms ticks: over a shorter window than this, cores would be noise.
const CPU_WINDOW: f64 = 0.5;

/// `catchup`: one backlog per run, replayed by each client count in turn.
pub async fn catchup(cluster: &PgCluster, args: &Args) -> Result<()> {
    let rows = args.rows;
    println!(
        "# catchup: {} committed after a position, then N clients open {QUERY}&from=<that position> at once; \
         timed from the first connect until every client has every row; medians of {} runs",
        Workload::Batched(rows, BATCH).name(),
        args.runs
    );
    let (counts, notes) = clients::fit_all(&args.subscribers);
    notes.iter().for_each(|n| println!("{n}"));
    println!("| clients | rows per client | aggregate changes/s | per-client changes/s | seconds | walcast CPU (cores) | bench CPU (cores) | failed clients (all runs) | runs |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut m: Vec<CatchupRuns> = counts.iter().map(|_| CatchupRuns::default()).collect();
    for run in 0..args.runs {
        let db = TestDb::new(cluster, &format!("catchup{run}")).await?;
        let (server, pos) = journaled_backlog(&db, rows).await?;
        let query = format!("{QUERY}&from={pos}");
        for (&n, m) in counts.iter().zip(&mut m) {
            let before = CpuMark::now(server.pid());
            let start_us = now_micros();
            let ws = clients::open(&server, n, |_| query.clone()).await?;
            let fleet = Fleet::spawn(ws, |_| rows, None);
            if !fleet.wait_all(STALL).await {
                eprintln!(
                    "  catchup {n} run {run}: no frame for {STALL:?} at {} of {} frames",
                    fleet.frames(),
                    n as u64 * rows
                );
            }
            let after = CpuMark::now(server.pid());
            let r = fleet.finish().await?;
            r.warn_if_incomplete(&format!("catchup {n} run {run}"));
            let (walcast_cpu, bench_cpu, wall) = before.until(&after);
            let secs = ((r.last_us - start_us) as f64 / 1e6).max(1e-6);
            let aggregate = r.frames as f64 / secs;
            let per_client = aggregate / n as f64;
            let (cores, bench) = (walcast_cpu / wall, bench_cpu / wall);
            eprintln!(
                "  catchup {n} run {run}: {secs:.2} s, {aggregate:.0} changes/s ({per_client:.0} per client), \
                 walcast {cores:.2} cores, bench {bench:.2} cores over {wall:.2} s, {} failed clients",
                r.failed
            );
            m.aggregate.push(aggregate);
            m.per_client.push(per_client);
            m.secs.push(secs);
            if wall >= CPU_WINDOW {
                m.cores.push(cores);
                m.bench.push(bench);
            }
            m.failed += r.failed;
        }
    }
    for (n, m) in counts.iter().zip(&mut m) {
        let cores = |v: &mut Vec<f64>| {
            if v.is_empty() {
                format!("n/a (< {CPU_WINDOW} s)")
            } else {
                format!("{:.2}", median(v))
            }
        };
        let (walcast, bench) = (cores(&mut m.cores), cores(&mut m.bench));
        println!(
            "| {n} | {rows} | {:.0} | {:.0} | {:.2} | {walcast} | {bench} | {} | {} |",
            median(&mut m.aggregate),
            median(&mut m.per_client),
            median(&mut m.secs),
            m.failed,
            args.runs
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- resume

/// Reconnects per run, each kind.
const RECONNECTS: usize = 20;

/// The next change frame; anything but a change, a ping or another JSON frame is an error.
async fn next_change(ws: &mut Ws) -> Result<String> {
    loop {
        let msg = tokio::time::timeout(walcast_tests::STEP, ws.next())
            .await
            .context("no change frame")?;
        match msg {
            Some(Ok(Message::Text(t))) if t.starts_with(CHANGE) => return Ok(t.as_str().into()),
            Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => {}
            other => bail!("expected a change frame, got {other:?}"),
        }
    }
}

/// `resume`: per run, one backlog after a position, then `RECONNECTS` pairs of connections:
/// `from=` (timed to `subscribed` and to the first replayed change) and plain (to `subscribed`).
pub async fn resume(cluster: &PgCluster, args: &Args) -> Result<()> {
    println!(
        "# resume: {} committed after a position; {RECONNECTS} times per run, alternately: connect with \
         {QUERY}&from=<that position> until the first replayed change (and until its subscribed frame), \
         and a plain {QUERY} connect until subscribed; each connection dropped after; medians of {} runs' p50 and max",
        Workload::Batched(args.backlog, BATCH).name(),
        args.runs
    );
    println!("| backlog rows | from=: first change p50 ms | from=: first change max ms | from=: subscribed p50 ms | plain: subscribed p50 ms | plain: subscribed max ms | runs |");
    println!("|---|---|---|---|---|---|---|");
    let (mut first_p50, mut first_max, mut from_sub_p50, mut plain_p50, mut plain_max) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for run in 0..args.runs {
        let db = TestDb::new(cluster, &format!("resume{run}")).await?;
        let (server, pos) = journaled_backlog(&db, args.backlog).await?;
        let from_url = format!("{}/ws?{QUERY}&from={pos}", server.ws_base());
        let plain_url = format!("{}/ws?{QUERY}", server.ws_base());
        let (mut first, mut from_sub, mut plain) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..RECONNECTS {
            let started = Instant::now();
            let mut ws = clients::open_one(server.addr(), &from_url, SOURCE)
                .await
                .with_context(|| format!("from= connection {i}"))?;
            from_sub.push(millis(started));
            let change = next_change(&mut ws)
                .await
                .with_context(|| format!("from= connection {i}"))?;
            first.push(millis(started));
            match frame_pos(&change) {
                Some(p) if p > pos.as_str() => {}
                _ => bail!("from={pos}: the first replayed change is not after it: {change}"),
            }
            drop(ws);
            let started = Instant::now();
            let ws = clients::open_one(server.addr(), &plain_url, SOURCE)
                .await
                .with_context(|| format!("plain connection {i}"))?;
            plain.push(millis(started));
            drop(ws);
        }
        let (fmax, pmax) = (max(&first), max(&plain));
        let (f50, s50, p50) = (
            median(&mut first),
            median(&mut from_sub),
            median(&mut plain),
        );
        eprintln!(
            "  resume run {run}: from= first change p50 {f50:.2} ms max {fmax:.2} ms (subscribed p50 {s50:.2} ms); \
             plain subscribed p50 {p50:.2} ms max {pmax:.2} ms"
        );
        first_p50.push(f50);
        first_max.push(fmax);
        from_sub_p50.push(s50);
        plain_p50.push(p50);
        plain_max.push(pmax);
    }
    println!(
        "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
        args.backlog,
        median(&mut first_p50),
        median(&mut first_max),
        median(&mut from_sub_p50),
        median(&mut plain_p50),
        median(&mut plain_max),
        args.runs
    );
    Ok(())
}

// ---------------------------------------------------------------- trickle

/// The slow client's `SO_RCVBUF` request (Linux doubles it; the smallest it grants is about
/// 4.5 KiB): a dozen or so ~300-byte frames, plus as much in tungstenite's read chunk.
const SLOW_RCVBUF: u32 = 4096;
/// After the window the slow client reads without pausing until it has every row, its
/// connection ends, or nothing came for this long.
const DRAIN_QUIET: Duration = Duration::from_secs(3);

/// What the slow client saw.
#[derive(Default)]
struct Slow {
    /// Change frames received before the window ended.
    in_window: u64,
    /// Change frames received by the end of the drain.
    frames: u64,
    unordered: u64,
    last_pos: String,
    /// How the connection ended (`closed 4008`, `ended (no close frame)`); `None`: still open.
    end: Option<String>,
    /// The close reason or the error, for the per-run line.
    detail: String,
}

impl Slow {
    /// Counts one read; sets `end` when the connection ended with it.
    fn take(&mut self, msg: Option<Result<Message, tungstenite::Error>>) {
        let (end, detail) = match msg {
            Some(Ok(Message::Text(t))) if t.starts_with(CHANGE) => {
                self.frames += 1;
                if let Some(pos) = frame_pos(&t) {
                    self.unordered += u64::from(pos <= self.last_pos.as_str());
                    self.last_pos.clear();
                    self.last_pos.push_str(pos);
                }
                return;
            }
            Some(Ok(Message::Close(Some(cf)))) => (
                format!("closed {}", u16::from(cf.code)),
                cf.reason.as_str().to_owned(),
            ),
            Some(Ok(Message::Close(None))) => ("closed (no code)".into(), String::new()),
            Some(Ok(_)) => return,
            Some(Err(e)) => ("ended (no close frame)".into(), e.to_string()),
            None => ("ended (no close frame)".into(), "end of stream".into()),
        };
        self.end = Some(end);
        self.detail = detail;
    }

    /// `closed 4008`, `open`, ...: the table cell.
    fn outcome(&self) -> &str {
        self.end.as_deref().unwrap_or("open")
    }
}

/// Reads one frame, then sleeps until the next read is due (`rate` reads per second), until
/// `stop`; then reads without pausing until it has `rows` change frames, the connection ends,
/// or nothing came for `DRAIN_QUIET` (so that a close frame queued behind the unread frames is
/// seen).
async fn read_slowly(mut ws: Ws, rate: u64, rows: u64, mut stop: watch::Receiver<bool>) -> Slow {
    let mut s = Slow::default();
    let start = tokio::time::Instant::now();
    let mut reads = 0u64;
    loop {
        let msg = tokio::select! {
            _ = stop.changed() => break,
            msg = ws.next() => msg,
        };
        s.take(msg);
        if s.end.is_some() {
            break;
        }
        reads += 1;
        let due = start + Duration::from_micros(reads * 1_000_000 / rate);
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep_until(due) => {}
        }
    }
    s.in_window = s.frames;
    while s.end.is_none() && s.frames < rows {
        match tokio::time::timeout(DRAIN_QUIET, ws.next()).await {
            Err(_) => break,
            Ok(msg) => s.take(msg),
        }
    }
    s
}

/// One phase of a `trickle` run.
struct Trickled {
    fast: FleetReport,
    /// Fast client's change frames per second over the window.
    rows_per_s: f64,
    /// How long the burst took to commit: a window about as long was set by the writer.
    burst_secs: f64,
    slow: Option<Slow>,
}

/// A fresh table and walcast; the fast client (and, with `slow_rate`, the slow one first) on
/// `QUERY`; then the burst. The window runs from the start of the burst until the fast client
/// has every row, or `--seconds`.
async fn trickle_phase(
    cluster: &PgCluster,
    label: &str,
    args: &Args,
    slow_rate: Option<u64>,
) -> Result<Trickled> {
    let db = TestDb::new(cluster, label).await?;
    db.exec(BENCH_TABLE).await?;
    let server = Walcast::builder(&db).prefer_release().start().await?;
    let (stop, stopped) = watch::channel(false);
    let slow = match slow_rate {
        Some(rate) => {
            let url = format!("{}/ws?{QUERY}", server.ws_base());
            let ws = clients::open_one_with(server.addr(), &url, SOURCE, Some(SLOW_RCVBUF))
                .await
                .context("slow client")?;
            Some(tokio::spawn(read_slowly(ws, rate, args.rows, stopped)))
        }
        None => None,
    };
    let fleet = Fleet::spawn(
        clients::open(&server, 1, |_| QUERY.into()).await?,
        |_| args.rows,
        None,
    );
    let writer = db.connect().await?;
    // With synchronous_commit off a commit reaches the walsender only at the WAL writer's next
    // flush (up to 200 ms later): the window would end with that wait.
    writer.batch_execute("SET synchronous_commit = on").await?;
    let sql = Workload::Batched(args.rows, BATCH).sql();
    let start_us = now_micros();
    let burst = tokio::spawn(async move {
        let started = Instant::now();
        writer.batch_execute(&sql).await?;
        Ok::<_, tokio_postgres::Error>(started.elapsed().as_secs_f64())
    });
    let cap = Duration::from_secs(args.seconds);
    let complete = matches!(
        tokio::time::timeout(cap, fleet.wait_all(STALL)).await,
        Ok(true)
    );
    let end_us = now_micros();
    let _ = stop.send(true);
    let fast = fleet.finish().await?;
    let slow = match slow {
        Some(task) => Some(task.await.context("slow client task")?),
        None => None,
    };
    let burst_secs = burst.await?.context("burst")?;
    let end_us = if complete { fast.last_us } else { end_us };
    let rows_per_s = fast.frames as f64 / ((end_us - start_us) as f64 / 1e6).max(1e-6);
    Ok(Trickled {
        fast,
        rows_per_s,
        burst_secs,
        slow,
    })
}

/// `trickle`: per run, the fast client alone, then beside the slow client, each on a fresh
/// walcast.
pub async fn trickle(cluster: &PgCluster, args: &Args) -> Result<()> {
    let burst = Workload::Batched(args.rows, BATCH);
    println!(
        "# trickle: {} committed back to back (synchronous_commit on); a fast client on {QUERY} alone, \
         then beside a slow client (same query, one cohort) that reads {} frames/s with a {SLOW_RCVBUF}-byte SO_RCVBUF; \
         window from the first commit until the fast client has every row, at most {} s; medians of {} runs",
        burst.name(),
        args.slow_rate,
        args.seconds,
        args.runs
    );
    println!("| rows | slow reads/s | fast alone rows/s | fast beside slow rows/s | ratio beside/alone | fast rows beside slow | slow frames in window | slow client (per run) | slow rows by the end (per run) | runs |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let (mut alone, mut beside, mut ratio, mut fast_rows, mut in_window) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut outcomes, mut totals) = (Vec::new(), Vec::new());
    for run in 0..args.runs {
        let a = trickle_phase(cluster, &format!("trickle{run}a"), args, None).await?;
        a.fast
            .warn_if_incomplete(&format!("trickle run {run}, fast client alone"));
        let b = trickle_phase(
            cluster,
            &format!("trickle{run}b"),
            args,
            Some(args.slow_rate),
        )
        .await?;
        let slow = b.slow.as_ref().context("no slow client")?;
        // Beside the slow client the fast one may be cut off by the window: only order and
        // error frames are faults there.
        if b.fast.unordered + b.fast.error_frames + slow.unordered > 0 {
            eprintln!(
                "  trickle run {run}: out of pos order: {} frames at the fast client, {} at the slow one; \
                 {} error frames at the fast client",
                b.fast.unordered, slow.unordered, b.fast.error_frames
            );
        }
        eprintln!(
            "  trickle run {run}: fast alone {:.0} rows/s ({} of {} rows; burst committed in {:.2} s), \
             beside slow {:.0} rows/s ({} rows; burst {:.2} s); slow: {} frames in the window, {} by the end, {}{}",
            a.rows_per_s,
            a.fast.frames,
            args.rows,
            a.burst_secs,
            b.rows_per_s,
            b.fast.frames,
            b.burst_secs,
            slow.in_window,
            slow.frames,
            slow.outcome(),
            if slow.detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", slow.detail)
            }
        );
        alone.push(a.rows_per_s);
        beside.push(b.rows_per_s);
        ratio.push(b.rows_per_s / a.rows_per_s.max(1e-6));
        fast_rows.push(b.fast.frames as f64);
        in_window.push(slow.in_window as f64);
        outcomes.push(slow.outcome().to_owned());
        totals.push(slow.frames.to_string());
    }
    println!(
        "| {} | {} | {:.0} | {:.0} | {:.3} | {:.0} | {:.0} | {} | {} | {} |",
        args.rows,
        args.slow_rate,
        median(&mut alone),
        median(&mut beside),
        median(&mut ratio),
        median(&mut fast_rows),
        median(&mut in_window),
        outcomes.join(", "),
        totals.join(", "),
        args.runs
    );
    Ok(())
}
