//! Many subscribers on one table: `latency` (single-row transactions at a fixed rate,
//! commit-to-client latency), `fanout` (every change to every one of N clients: delivered msgs/s,
//! CPU, latency, completeness) and `idle` (walcast memory per idle subscribed connection).

use std::time::Duration;

use anyhow::{bail, Result};
use walcast_tests::{PgCluster, TestDb, Walcast};

use crate::args::Args;
use crate::clients::{self, Fleet};
use crate::measure::median;
use crate::workload::{self, Pace, Statement};

/// Writer connections of `latency`: one connection cannot commit 5,000 single-row transactions/s
/// with `synchronous_commit = on`.
const WRITERS: u64 = 4;

/// `latency`: one table row per run and their medians (the format
/// docs/development/benchmarks.md publishes).
pub async fn latency(cluster: &PgCluster, args: &Args) -> Result<()> {
    let (counts, notes) = clients::fit_all(&args.subscribers[..1]);
    let n = counts[0];
    println!(
        "# latency: {n} subscribers on *:lat, {} single-row transactions/s for {} s; commit timestamp -> client receive",
        args.rate, args.seconds
    );
    notes.iter().for_each(|n| println!("{n}"));
    println!("| run | deliveries | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    let mut maxes = Vec::new();
    for run in 0..args.runs {
        let db = TestDb::new(cluster, &format!("latency{run}")).await?;
        db.exec("CREATE TABLE lat (id bigserial PRIMARY KEY, v int, note text)")
            .await?;
        let server = Walcast::builder(&db).prefer_release().start().await?;
        let per_writer = args.rate * args.seconds / WRITERS;
        let total = per_writer * WRITERS;
        let ws = clients::open(&server, n, |_| "query=insert:lat".into()).await?;
        let fleet = Fleet::spawn(ws, |_| total, None);

        let rate = (args.rate / WRITERS).max(1);
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let client = db.connect().await?;
            // With synchronous_commit off a commit reaches the walsender only at the WAL
            // writer's next flush (up to wal_writer_delay = 200 ms later).
            client.batch_execute("SET synchronous_commit = on").await?;
            tasks.push(tokio::spawn(async move {
                let start = tokio::time::Instant::now();
                for i in 0..per_writer {
                    let due = start + Duration::from_micros(i * 1_000_000 / rate);
                    tokio::time::sleep_until(due).await;
                    client
                        .execute(
                            "INSERT INTO lat (v, note) VALUES ($1, 'latency probe')",
                            &[&(w as i32)],
                        )
                        .await?;
                }
                anyhow::Ok(())
            }));
        }
        for t in tasks {
            t.await??;
        }
        fleet.wait_all(Duration::from_secs(30)).await;
        let report = fleet.finish().await?;
        report.warn_if_incomplete(&format!("latency run {run}"));
        drop(server);
        let q = report.latency;
        if q.count == 0 {
            bail!("no deliveries");
        }
        println!(
            "| {run} | {} | {:.2} | {:.2} | {:.2} |",
            q.count, q.p50_ms, q.p99_ms, q.max_ms
        );
        p50s.push(q.p50_ms);
        p99s.push(q.p99_ms);
        maxes.push(q.max_ms);
    }
    println!(
        "| median | | {:.2} | {:.2} | {:.2} |",
        median(&mut p50s),
        median(&mut p99s),
        median(&mut maxes)
    );
    Ok(())
}

/// Medians over runs of one `fanout` table row.
#[derive(Default)]
struct FanoutRuns {
    msgs: Vec<f64>,
    cores: Vec<f64>,
    bench: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    max: Vec<f64>,
    fraction: Vec<f64>,
}

/// `fanout`: one row per N; the window runs from the first commit to the last delivery.
pub async fn fanout(cluster: &PgCluster, args: &Args) -> Result<()> {
    let pace = Pace::of(args);
    println!(
        "# fanout: N clients on insert:fan, each gets every row; writer: {} (INSERT ... SELECT FROM generate_series); medians of {} runs",
        pace.shape(),
        args.runs
    );
    let (counts, notes) = clients::fit_all(&args.subscribers);
    notes.iter().for_each(|n| println!("{n}"));
    println!("| clients | delivered msgs/s | walcast CPU (cores) | bench CPU (cores) | p50 ms | p99 ms | max ms | delivered | runs |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for n in counts {
        let mut m = FanoutRuns::default();
        for run in 0..args.runs {
            let db = TestDb::new(cluster, &format!("fanout{run}")).await?;
            db.exec("CREATE TABLE fan (id bigserial PRIMARY KEY, v int, note text)")
                .await?;
            let server = Walcast::builder(&db).prefer_release().start().await?;
            let ws = clients::open(&server, n, |_| "query=insert:fan".into()).await?;
            let fleet = Fleet::spawn(ws, |_| pace.rows(), None);
            let insert = "INSERT INTO fan (v, note) SELECT 1, 'fan-out probe' FROM generate_series(1, $1::int)";
            let s = workload::stream(&server, &db, fleet, pace, &Statement::Insert(insert)).await?;
            let r = &s.report;
            r.warn_if_incomplete(&format!("fanout {n} run {run}"));
            eprintln!(
                "  fanout {n} run {run}: {:.0} msgs/s, walcast {:.2} cores, bench {:.2} cores, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, delivered {:.4}",
                s.msgs_per_s(),
                s.walcast_cores(),
                s.bench_cores(),
                r.latency.p50_ms,
                r.latency.p99_ms,
                r.latency.max_ms,
                r.fraction()
            );
            m.msgs.push(s.msgs_per_s());
            m.cores.push(s.walcast_cores());
            m.bench.push(s.bench_cores());
            m.p50.push(r.latency.p50_ms);
            m.p99.push(r.latency.p99_ms);
            m.max.push(r.latency.max_ms);
            m.fraction.push(r.fraction());
        }
        println!(
            "| {n} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.4} | {} |",
            median(&mut m.msgs),
            median(&mut m.cores),
            median(&mut m.bench),
            median(&mut m.p50),
            median(&mut m.p99),
            median(&mut m.max),
            median(&mut m.fraction),
            args.runs
        );
    }
    Ok(())
}

/// `idle`: RSS growth of walcast per subscribed connection that receives nothing.
pub async fn idle(cluster: &PgCluster, args: &Args) -> Result<()> {
    println!(
        "# idle: N idle subscribed connections on *:quiet; walcast RSS growth per connection; medians of {} runs",
        args.runs
    );
    let (counts, notes) = clients::fit_all(&args.subscribers);
    notes.iter().for_each(|n| println!("{n}"));
    println!("| connections | RSS before KiB | RSS after KiB | KiB per connection | runs |");
    println!("|---|---|---|---|---|");
    for n in counts {
        let (mut before, mut after, mut per) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..args.runs {
            let db = TestDb::new(cluster, &format!("idle{run}")).await?;
            db.exec("CREATE TABLE quiet (id int primary key)").await?;
            let server = Walcast::builder(&db).prefer_release().start().await?;
            let rss_before = server.memory()?.rss_kib;
            let ws = clients::open(&server, n, |_| "query=*:quiet".into()).await?;
            // Let the allocator settle (freed handshake buffers) before reading RSS.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let rss_after = server.memory()?.rss_kib;
            let kib = rss_after.saturating_sub(rss_before) as f64 / n as f64;
            eprintln!("  idle {n} run {run}: RSS {rss_before} -> {rss_after} KiB, {kib:.1} KiB per connection");
            before.push(rss_before as f64);
            after.push(rss_after as f64);
            per.push(kib);
            drop(ws);
        }
        println!(
            "| {n} | {:.0} | {:.0} | {:.1} | {} |",
            median(&mut before),
            median(&mut after),
            median(&mut per),
            args.runs
        );
    }
    Ok(())
}
