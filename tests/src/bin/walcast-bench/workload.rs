//! The paced writer of the streaming scenarios (`fanout`, `selective`, `plugins`): `rate` rows per
//! second committed as transactions of `batch` rows for `seconds`, on one connection.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

use walcast_tests::{TestDb, Walcast};

use crate::args::Args;
use crate::clients::{Fleet, FleetReport};
use crate::measure::{now_micros, CpuMark};

/// Rows per second as transactions of `batch` rows, for `seconds`.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub rate: u64,
    pub seconds: u64,
    pub batch: u64,
}

impl Pace {
    pub fn of(args: &Args) -> Pace {
        Pace {
            rate: args.rate,
            seconds: args.seconds,
            batch: args.batch,
        }
    }

    pub fn rows(&self) -> u64 {
        self.rate * self.seconds
    }

    pub fn transactions(&self) -> u64 {
        self.rows().div_ceil(self.batch)
    }

    /// Rows in transaction `t` (the last one may be partial).
    pub fn rows_in(&self, t: u64) -> u64 {
        self.batch.min(self.rows() - t * self.batch)
    }

    /// The workload shape for table headers.
    pub fn shape(&self) -> String {
        format!(
            "{} rows/s as {:.1} transactions/s of {} rows, for {} s ({} rows)",
            self.rate,
            self.rate as f64 / self.batch as f64,
            self.batch,
            self.seconds,
            self.rows()
        )
    }
}

/// What one transaction writes.
pub enum Statement<'a> {
    /// `sql` with `$1` = rows in the transaction (an `int`, for `generate_series`).
    Insert(&'a str),
    /// `sql` with `$1` = the transaction's ids (an `int[]`); `ids[t]` for transaction `t`.
    Update(&'a str, &'a [Vec<i32>]),
}

/// What the writer did.
pub struct Written {
    /// Wall clock (µs) right before the first commit was sent: the start of every window.
    pub start_us: i64,
    /// How late the latest transaction started against its schedule: a writer that cannot keep
    /// the pace makes the rate a lie, so scenarios report it.
    pub max_behind_ms: f64,
}

/// Commits `pace.transactions()` transactions of `stmt`, transaction `t` due at `t` x batch /
/// rate seconds after the start.
pub async fn commit_paced(client: &Client, pace: Pace, stmt: &Statement<'_>) -> Result<Written> {
    // With synchronous_commit off a commit reaches the walsender only at the WAL writer's next
    // flush (up to wal_writer_delay = 200 ms later): latency would measure that.
    client.batch_execute("SET synchronous_commit = on").await?;
    let sql = match stmt {
        Statement::Insert(sql) | Statement::Update(sql, _) => *sql,
    };
    let prepared = client
        .prepare(sql)
        .await
        .with_context(|| format!("prepare {sql}"))?;
    let start = tokio::time::Instant::now();
    let start_us = now_micros();
    let mut max_behind = Duration::ZERO;
    for t in 0..pace.transactions() {
        let due = start + Duration::from_micros(t * pace.batch * 1_000_000 / pace.rate);
        tokio::time::sleep_until(due).await;
        max_behind = max_behind.max(tokio::time::Instant::now() - due);
        let rows = pace.rows_in(t) as i32;
        let params: [&(dyn ToSql + Sync); 1] = match stmt {
            Statement::Insert(_) => [&rows],
            Statement::Update(_, ids) => [&ids[t as usize]],
        };
        client
            .execute(&prepared, &params)
            .await
            .with_context(|| format!("transaction {t}: {sql}"))?;
    }
    Ok(Written {
        start_us,
        max_behind_ms: max_behind.as_secs_f64() * 1e3,
    })
}

/// No frame for this long after the writer finished means the rest is not coming.
pub const STALL: Duration = Duration::from_secs(15);

/// One measured window: the writer's commits until the last delivery.
pub struct Streamed {
    pub written: Written,
    pub report: FleetReport,
    /// CPU seconds of walcast and of the bench, and wall seconds, from the first commit until
    /// every client had its frames (or delivery stalled).
    pub walcast_cpu: f64,
    pub bench_cpu: f64,
    pub wall: f64,
}

impl Streamed {
    pub fn walcast_cores(&self) -> f64 {
        self.walcast_cpu / self.wall
    }

    pub fn bench_cores(&self) -> f64 {
        self.bench_cpu / self.wall
    }

    /// walcast CPU microseconds per committed change.
    pub fn cpu_us_per_change(&self, changes: u64) -> f64 {
        self.walcast_cpu * 1e6 / changes.max(1) as f64
    }

    pub fn msgs_per_s(&self) -> f64 {
        self.report.msgs_per_s(self.written.start_us)
    }
}

/// Runs the writer against a receiving `fleet`, waits for the deliveries and stops the fleet.
pub async fn stream(
    server: &Walcast,
    db: &TestDb<'_>,
    fleet: Fleet,
    pace: Pace,
    stmt: &Statement<'_>,
) -> Result<Streamed> {
    let client = db.connect().await?;
    let before = CpuMark::now(server.pid());
    let written = commit_paced(&client, pace, stmt).await?;
    if !fleet.wait_all(STALL).await {
        eprintln!(
            "  delivery stalled for {STALL:?} at {} frames; measuring what arrived",
            fleet.frames()
        );
    }
    let after = CpuMark::now(server.pid());
    let report = fleet.finish().await?;
    let (walcast_cpu, bench_cpu, wall) = before.until(&after);
    if written.max_behind_ms > 100.0 {
        eprintln!(
            "  the writer fell {:.0} ms behind its schedule: the rate was not met",
            written.max_behind_ms
        );
    }
    Ok(Streamed {
        written,
        report,
        walcast_cpu,
        bench_cpu,
        wall,
    })
}
