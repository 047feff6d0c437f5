//! `ddl`: what `walcast setup`'s event triggers cost a DDL statement. Per run, two databases
//! with the same `--tables` tables of `--columns` columns, one with the triggers installed (by
//! the `walcast setup` of the binary under test), one without; on each, over one Unix-socket
//! connection, `--statements` statements alternating `ALTER TABLE t<k> ADD COLUMN x int` and
//! `ALTER TABLE t<k> DROP COLUMN x` (tables round-robin), each timed from send to reply, after
//! one untimed pass of the same statements. Which database goes first alternates from run to run.

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use walcast_tests::{walcast_binary, PgCluster, TestDb};

use crate::args::Args;
use crate::measure::median;

/// Column types the tables cycle through after their `id` key.
const TYPES: [&str; 6] = [
    "int",
    "text",
    "numeric(10,2)",
    "timestamptz DEFAULT now()",
    "boolean NOT NULL DEFAULT false",
    "varchar(40)",
];

/// One database's timed pass: each statement's latency in microseconds, and the whole pass.
struct Pass {
    micros: Vec<f64>,
    total_ms: f64,
}

impl Pass {
    fn median(&self) -> f64 {
        median(&mut self.micros.clone())
    }

    /// The value below which 90 % of the statements stayed.
    fn p90(&self) -> f64 {
        let mut v = self.micros.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v.get(v.len() * 9 / 10).copied().unwrap_or(0.0)
    }
}

pub async fn ddl(cluster: &PgCluster, args: &Args) -> Result<()> {
    let (tables, columns, statements) = (args.tables, args.columns, args.statements);
    println!(
        "# ddl: ALTER TABLE ... ADD COLUMN / DROP COLUMN latency without and with walcast setup's event triggers ({tables} tables of {columns} columns, {statements} statements per run, medians of {} runs)",
        args.runs
    );
    let mut without = Vec::new();
    let mut with = Vec::new();
    let mut ratios = Vec::new();
    for run in 0..args.runs {
        let plain = database(cluster, &format!("ddl{run}_plain"), tables, columns, false).await?;
        let installed = database(cluster, &format!("ddl{run}_with"), tables, columns, true).await?;
        let (p, i) = if run % 2 == 0 {
            let p = pass(&plain, tables, statements).await?;
            (p, pass(&installed, tables, statements).await?)
        } else {
            let i = pass(&installed, tables, statements).await?;
            (pass(&plain, tables, statements).await?, i)
        };
        let ratio = i.median() / p.median().max(1e-9);
        eprintln!(
            "  ddl run {run}: without {:.0} µs (p90 {:.0}, {:.0} ms in all), with {:.0} µs (p90 {:.0}, {:.0} ms in all), ratio {ratio:.2}",
            p.median(),
            p.p90(),
            p.total_ms,
            i.median(),
            i.p90(),
            i.total_ms
        );
        without.push(p);
        with.push(i);
        ratios.push(ratio);
    }
    println!("| triggers | median µs per statement | per-run medians | median p90 µs | median ms per {statements} statements | ratio with / without (per run) |");
    println!("|---|---|---|---|---|---|");
    for (label, passes) in [("none", &without), ("installed", &with)] {
        let mut medians: Vec<f64> = passes.iter().map(Pass::median).collect();
        let mut p90s: Vec<f64> = passes.iter().map(Pass::p90).collect();
        let mut totals: Vec<f64> = passes.iter().map(|p| p.total_ms).collect();
        let listed = medians
            .iter()
            .map(|m| format!("{m:.0}"))
            .collect::<Vec<_>>()
            .join(", ");
        let ratio = if label == "installed" {
            let listed = ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", ");
            format!("{:.2} ({listed})", median(&mut ratios.clone()))
        } else {
            String::new()
        };
        println!(
            "| {label} | {:.0} | {listed} | {:.0} | {:.0} | {ratio} |",
            median(&mut medians),
            median(&mut p90s),
            median(&mut totals)
        );
    }
    Ok(())
}

/// A database with `tables` tables `t0, t1, ...` of `columns` columns (an `int` key and typed
/// columns after it), with the triggers installed by `walcast setup` when `install`.
async fn database<'c>(
    cluster: &'c PgCluster,
    label: &str,
    tables: usize,
    columns: usize,
    install: bool,
) -> Result<TestDb<'c>> {
    let db = TestDb::new(cluster, label).await?;
    let mut sql = String::new();
    for t in 0..tables {
        let mut cols = vec!["id int PRIMARY KEY".to_owned()];
        cols.extend((1..columns).map(|c| format!("c{c} {}", TYPES[(t + c) % TYPES.len()])));
        sql.push_str(&format!("CREATE TABLE t{t} ({});\n", cols.join(", ")));
    }
    db.exec(&sql).await?;
    if install {
        let out = tokio::process::Command::new(walcast_binary()?)
            .args(["setup", "--database-url", &db.unix_url()])
            .env_remove("DATABASE_URL")
            .current_dir(std::env::temp_dir())
            .output()
            .await
            .context("cannot run walcast setup")?;
        ensure!(
            out.status.success(),
            "walcast setup failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let triggers: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'walcast%' AND evtenabled = 'A'",
            &[],
        )
        .await?
        .get(0);
    ensure!(
        triggers == if install { 3 } else { 0 },
        "{label}: {triggers} walcast event triggers enabled"
    );
    Ok(db)
}

/// The statements once untimed (catalog caches warm for both databases alike), then timed.
async fn pass(db: &TestDb<'_>, tables: usize, statements: u64) -> Result<Pass> {
    let statement = |round: &str, i: u64| {
        let table = (i / 2) as usize % tables;
        if i % 2 == 0 {
            format!("ALTER TABLE t{table} ADD COLUMN x{round} int")
        } else {
            format!("ALTER TABLE t{table} DROP COLUMN x{round}")
        }
    };
    for i in 0..statements {
        db.exec(&statement("warm", i)).await?;
    }
    let mut micros = Vec::with_capacity(statements as usize);
    let start = Instant::now();
    for i in 0..statements {
        let sql = statement("timed", i);
        let sent = Instant::now();
        db.client()
            .batch_execute(&sql)
            .await
            .with_context(|| format!("{}: {sql}", db.name()))?;
        micros.push(sent.elapsed().as_secs_f64() * 1e6);
    }
    Ok(Pass {
        micros,
        total_ms: start.elapsed().as_secs_f64() * 1e3,
    })
}
