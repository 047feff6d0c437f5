//! Wasm filter plugins under load: `plugin` (the same backlog drained with and without a plugin
//! that passes every row) and `plugins` (N clients spread over G distinct plugin groups while rows
//! stream in: what each extra group costs walcast).

use std::path::PathBuf;

use anyhow::{bail, Result};
use walcast_tests::{PgCluster, TestDb, Walcast};

use crate::args::Args;
use crate::clients::{self, Fleet};
use crate::ingest::{backlog, walcast_drain, Drain, Workload};
use crate::measure::median;
use crate::workload::{self, Pace, Statement};

/// `plugins/dist`, which must hold `threshold.wasm` (built by `plugins/build.sh`).
fn dist() -> Result<PathBuf> {
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
    let threshold = dist.join("threshold.wasm");
    if !threshold.is_file() {
        bail!(
            "{} missing: run plugins/build.sh first",
            threshold.display()
        );
    }
    Ok(dist)
}

/// The same backlog drained by walcast twice: a plain `*:bench` subscriber, and one whose
/// `threshold` plugin passes every row (age >= 0), so both deliver the same frames.
pub async fn plugin_overhead(cluster: &PgCluster, args: &Args) -> Result<()> {
    let dist = dist()?;
    println!(
        "# plugin overhead: {} rows in one transaction, walcast with and without a threshold plugin",
        args.rows
    );
    println!("| run | plain rows/s | with plugin rows/s | ratio |");
    println!("|---|---|---|---|");
    let mut ratios = Vec::new();
    for run in 0..args.runs {
        let db = TestDb::new(cluster, &format!("plugin{run}")).await?;
        let plugin_slot = format!("{}_wasm", db.slot());
        backlog(&db, &[&plugin_slot, db.slot()], Workload::BigTx(args.rows)).await?;
        let plain = walcast_drain(&db, "query=*:bench", args.rows, Drain::ingest()).await?;
        let with_plugin = walcast_drain(
            &db,
            "query=*:bench&plugin=threshold&plugin.column=age&plugin.value=0",
            args.rows,
            Drain {
                plugin_dir: Some(&dist),
                slot: Some(&plugin_slot),
                ..Drain::ingest()
            },
        )
        .await?;
        let (plain, with_plugin) = (plain.rows_per_s, with_plugin.rows_per_s);
        let ratio = with_plugin / plain;
        println!("| {run} | {plain:.0} | {with_plugin:.0} | {ratio:.2} |");
        ratios.push(ratio);
    }
    println!("| median | | | {:.2} |", median(&mut ratios));
    Ok(())
}

/// walcast with the plugin dir and an instance pool sized for `groups`. A walcast that predates
/// `plugins.max_instances` refuses the key at startup; it is then started without it (and the
/// table says so) rather than not measured at all.
async fn start(db: &TestDb<'_>, dist: &str, groups: usize, noted: &mut bool) -> Result<Walcast> {
    let config = |pool: bool| {
        let mut toml = String::from("[plugins]\ncall_deadline = \"100ms\"\n");
        if pool {
            toml.push_str(&format!("max_instances = {}\n", groups + 64));
        }
        // Every group here is one plugin's: lift the per-plugin cap (a quarter of the pool).
        Walcast::builder(db)
            .prefer_release()
            .env("WALCAST_PLUGIN_DIR", dist)
            .env("WALCAST_MAX_GROUPS_PER_PLUGIN", &groups.max(1).to_string())
            .config_toml(&toml)
    };
    match config(true).start().await {
        Err(e) if format!("{e:#}").contains("max_instances") => {
            if !*noted {
                *noted = true;
                println!("# note: this walcast rejects plugins.max_instances; measured with its default instance pool");
            }
            config(false).start().await
        }
        started => started,
    }
}

#[derive(Default)]
struct Runs {
    msgs: Vec<f64>,
    cores: Vec<f64>,
    us_per_change: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    fraction: Vec<f64>,
}

/// `plugins`: client i subscribes with `plugin.value=-(i % G)`: every group passes every row
/// (v >= 0), but the G param sets are distinct groups, each with its own Wasm instance.
pub async fn plugin_groups(cluster: &PgCluster, args: &Args) -> Result<()> {
    let dist = dist()?.display().to_string();
    let pace = Pace::of(args);
    println!(
        "# plugins: N clients on insert:plug&plugin=threshold&plugin.column=v&plugin.value=-(i % G), G distinct groups each passing every row; \
         writer: {} (INSERT ... SELECT FROM generate_series); medians of {} runs",
        pace.shape(),
        args.runs
    );
    let (counts, notes) = clients::fit_all(&args.subscribers);
    notes.iter().for_each(|n| println!("{n}"));
    println!("| clients | groups | delivered msgs/s | walcast CPU (cores) | walcast CPU µs per change | p50 ms | p99 ms | delivered | runs |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut noted = false;
    for n in counts {
        for &g in &args.groups {
            // More groups than clients cannot exist.
            let g = g.min(n);
            let mut m = Runs::default();
            for run in 0..args.runs {
                let db = TestDb::new(cluster, &format!("plugins{run}")).await?;
                db.exec("CREATE TABLE plug (id bigserial PRIMARY KEY, v int, note text)")
                    .await?;
                let server = start(&db, &dist, g, &mut noted).await?;
                let ws = clients::open(&server, n, |i| {
                    format!(
                        "query=insert:plug&plugin=threshold&plugin.column=v&plugin.value=-{}",
                        i % g
                    )
                })
                .await?;
                let fleet = Fleet::spawn(ws, |_| pace.rows(), None);
                let insert = "INSERT INTO plug (v, note) SELECT g % 100, 'plugin probe' FROM generate_series(1, $1::int) g";
                let s =
                    workload::stream(&server, &db, fleet, pace, &Statement::Insert(insert)).await?;
                let r = &s.report;
                r.warn_if_incomplete(&format!("plugins {n}x{g} run {run}"));
                let us = s.cpu_us_per_change(pace.rows());
                eprintln!(
                    "  plugins {n} clients, {g} groups, run {run}: {:.0} msgs/s, walcast {:.2} cores, {us:.1} µs per change, p50 {:.2} ms, p99 {:.2} ms, delivered {:.4}",
                    s.msgs_per_s(),
                    s.walcast_cores(),
                    r.latency.p50_ms,
                    r.latency.p99_ms,
                    r.fraction()
                );
                m.msgs.push(s.msgs_per_s());
                m.cores.push(s.walcast_cores());
                m.us_per_change.push(us);
                m.p50.push(r.latency.p50_ms);
                m.p99.push(r.latency.p99_ms);
                m.fraction.push(r.fraction());
            }
            println!(
                "| {n} | {g} | {:.0} | {:.2} | {:.1} | {:.2} | {:.2} | {:.4} | {} |",
                median(&mut m.msgs),
                median(&mut m.cores),
                median(&mut m.us_per_change),
                median(&mut m.p50),
                median(&mut m.p99),
                median(&mut m.fraction),
                args.runs
            );
        }
    }
    Ok(())
}
