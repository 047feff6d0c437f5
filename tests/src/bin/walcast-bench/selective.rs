//! `selective`: N clients, each subscribed to one key of one table, while updates spread over all
//! keys. What it shows is walcast's CPU per change as N grows: matching a change against N
//! single-key subscriptions should not cost N predicate evaluations.

use anyhow::Result;
use walcast_tests::{PgCluster, TestDb, Walcast};

use crate::args::Args;
use crate::clients::{self, Fleet};
use crate::measure::median;
use crate::workload::{self, Pace, Statement};

/// The ids of each transaction and how many updates each key gets. Ids go round-robin over
/// 1..=n so keys are hit uniformly; an id repeated within one transaction (n < batch) is one
/// update, so it is listed once.
fn schedule(n: usize, pace: Pace) -> (Vec<Vec<i32>>, Vec<u64>) {
    let mut expected = vec![0u64; n];
    let mut next = 0usize;
    let batches = (0..pace.transactions())
        .map(|t| {
            let mut ids: Vec<i32> = (0..pace.rows_in(t))
                .map(|_| {
                    let id = next % n + 1;
                    next += 1;
                    id as i32
                })
                .collect();
            ids.sort_unstable();
            ids.dedup();
            for id in &ids {
                expected[*id as usize - 1] += 1;
            }
            ids
        })
        .collect();
    (batches, expected)
}

/// Medians over runs of one table row.
#[derive(Default)]
struct Runs {
    us_per_change: Vec<f64>,
    cores: Vec<f64>,
    delivered: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    /// Worst run: a miss in any run is worth seeing.
    clients_off: usize,
    wrong_key: u64,
}

pub async fn selective(cluster: &PgCluster, args: &Args) -> Result<()> {
    let pace = Pace::of(args);
    println!(
        "# selective: client k subscribes update:sel:id.eq.<k> (table sel pre-filled with ids 1..N); \
         writer: {} of UPDATE sel SET v = v + 1 WHERE id = ANY($1), ids round-robin over 1..N; medians of {} runs",
        pace.shape(),
        args.runs
    );
    let (counts, notes) = clients::fit_all(&args.subscribers);
    notes.iter().for_each(|n| println!("{n}"));
    println!("| clients | changes | walcast CPU µs per change | vs first row | walcast CPU (cores) | delivered | expected | clients off | wrong key | p50 ms | p99 ms | runs |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut first_row: Option<f64> = None;
    for n in counts {
        let (batches, expected) = schedule(n, pace);
        let changes: u64 = expected.iter().sum();
        let mut m = Runs::default();
        for run in 0..args.runs {
            let db = TestDb::new(cluster, &format!("selective{run}")).await?;
            db.exec(&format!(
                "CREATE TABLE sel (id int PRIMARY KEY, v int, note text); \
                 INSERT INTO sel SELECT g, 0, 'key ' || g FROM generate_series(1, {n}) g"
            ))
            .await?;
            let server = Walcast::builder(&db).prefer_release().start().await?;
            let ws =
                clients::open(&server, n, |i| format!("query=update:sel:id.eq.{}", i + 1)).await?;
            let key = |i: usize| i as i64 + 1;
            let fleet = Fleet::spawn(ws, |i| expected[i], Some(&key));
            let update = Statement::Update("UPDATE sel SET v = v + 1 WHERE id = ANY($1)", &batches);
            let s = workload::stream(&server, &db, fleet, pace, &update).await?;
            let r = &s.report;
            r.warn_if_incomplete(&format!("selective {n} run {run}"));
            let us = s.cpu_us_per_change(changes);
            eprintln!(
                "  selective {n} run {run}: {us:.1} µs walcast CPU per change ({:.2} cores), {} of {} frames, p50 {:.2} ms, p99 {:.2} ms",
                s.walcast_cores(),
                r.frames,
                r.expected,
                r.latency.p50_ms,
                r.latency.p99_ms
            );
            m.us_per_change.push(us);
            m.cores.push(s.walcast_cores());
            m.delivered.push(r.frames as f64);
            m.p50.push(r.latency.p50_ms);
            m.p99.push(r.latency.p99_ms);
            m.clients_off = m.clients_off.max(r.short + r.over);
            m.wrong_key = m.wrong_key.max(r.wrong_key);
        }
        let us = median(&mut m.us_per_change);
        let base = *first_row.get_or_insert(us);
        // CPU is sampled in 10 ms ticks: a tiny run can show none at all.
        let ratio = if base > 0.0 {
            format!("{:.2}", us / base)
        } else {
            "-".into()
        };
        println!(
            "| {n} | {changes} | {us:.1} | {ratio} | {:.2} | {:.0} | {changes} | {} | {} | {:.2} | {:.2} | {} |",
            median(&mut m.cores),
            median(&mut m.delivered),
            m.clients_off,
            m.wrong_key,
            median(&mut m.p50),
            median(&mut m.p99),
            args.runs
        );
    }
    Ok(())
}
