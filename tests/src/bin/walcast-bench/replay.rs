//! `replay` (live latency beside replays of a large journal): live subscribers on a busy table
//! while clients replay `from=` the oldest position of a large journal on a table that had no
//! change in it, measured per walcast binary (`--before`, `--after`) side by side in one run,
//! on one journal.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use walcast_tests::{JournalDir, PgCluster, TestDb, Walcast, WsClient};

use crate::args::Args;
use crate::clients::{self, Fleet};
use crate::measure::{median, CpuMark};
use crate::workload::STALL;

/// Writer connections: one connection cannot commit thousands of single-row transactions a
/// second with `synchronous_commit = on`.
const WRITERS: u64 = 4;
/// Rows per statement while the journal is filled (about 330 journal bytes each).
const FILL_BATCH: u64 = 100_000;
/// The replays' table: no change of it is ever committed.
const QUIET: &str = "quiet";
/// How long a phase waits, after its window, for the replays to reach the journal's end.
const REPLAY_CAP: Duration = Duration::from_secs(300);

/// Every walcast here: the journal holds what the fill writes (retention would otherwise trim
/// it at 1 GiB), and the slot is confirmed often so the fill can wait for it.
fn config(journal_mib: u64) -> String {
    format!(
        "[journal]\nmax_bytes = {}\n\n[replication]\nstatus_interval = \"100ms\"\n",
        (journal_mib.max(64) << 20) * 4
    )
}

/// One binary under test.
struct Build {
    label: String,
    path: PathBuf,
}

/// `--before` and `--after` in that order; without them, the binary the harness finds.
fn builds(args: &Args) -> Result<Vec<Build>> {
    let mut v = Vec::new();
    for (label, path) in &args.binaries {
        if !Path::new(path).is_file() {
            bail!("--{label} {path}: no such file");
        }
        // Absolute: walcast runs in its log directory.
        let path = std::fs::canonicalize(path).with_context(|| format!("--{label} {path}"))?;
        v.push(Build {
            label: label.clone(),
            path,
        });
    }
    if v.is_empty() {
        v.push(Build {
            label: "walcast".into(),
            path: walcast_tests::walcast_binary()?,
        });
    }
    Ok(v)
}

/// Starts `build` on the journal and waits until it confirmed the slot up to where the WAL is
/// now: what an earlier walcast left for it is streamed before anything is measured.
async fn start(
    db: &TestDb<'_>,
    journal: &JournalDir,
    build: &Build,
    args: &Args,
) -> Result<Walcast> {
    let server = Walcast::builder(db)
        .binary(&build.path)
        .env("WALCAST_JOURNAL_DIR", journal.path())
        .config_toml(&config(args.journal_mib))
        .start()
        .await
        .with_context(|| format!("starting {} ({})", build.label, build.path.display()))?;
    confirmed_to_now(db).await?;
    Ok(server)
}

/// Waits until walcast confirmed the slot past the WAL's current end (everything committed so
/// far is journaled).
async fn confirmed_to_now(db: &TestDb<'_>) -> Result<()> {
    // A transaction of its own, so the WAL's end is a commit walcast streams and confirms.
    db.exec("INSERT INTO mark DEFAULT VALUES").await?;
    db.slot_confirmed_to_now(Duration::from_secs(600)).await
}

/// Stops walcast as an operator would (SIGTERM: final feedback, journal synced).
async fn stop(mut server: Walcast) -> Result<()> {
    server.terminate()?;
    server.wait_exit(Duration::from_secs(30)).await?;
    Ok(())
}

fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.path().extension().is_some_and(|e| e == "seg") {
            total += entry.metadata()?.len();
        }
    }
    Ok(total)
}

/// Fills the journal with rows of `busy` until its segments hold `--journal-mib`; returns the
/// position a subscription took before the first of them (the journal's oldest), the bytes
/// and the rows.
async fn fill(
    db: &TestDb<'_>,
    journal: &JournalDir,
    build: &Build,
    args: &Args,
) -> Result<(String, u64, u64)> {
    let server = start(db, journal, build, args).await?;
    let (quiet, subscribed) =
        WsClient::subscribe(&server, &[("query", &format!("*:{QUIET}"))]).await?;
    let oldest = subscribed["pos"]
        .as_str()
        .with_context(|| format!("subscribed without pos: {subscribed}"))?
        .to_owned();
    quiet.close().await;
    let target = args.journal_mib << 20;
    let started = Instant::now();
    let mut rows = 0;
    let batch = FILL_BATCH.min((args.journal_mib * 300).max(1_000));
    let dir = Path::new(journal.path());
    while dir_bytes(dir)? < target {
        db.exec(&format!(
            "INSERT INTO busy (v, note) SELECT g, repeat('journal filler ', 12) FROM generate_series(1, {batch}) g"
        ))
        .await?;
        rows += batch;
        // Journaled once walcast confirmed the slot past it.
        confirmed_to_now(db).await?;
    }
    stop(server).await?;
    let bytes = dir_bytes(dir)?;
    eprintln!(
        "  journal: {rows} rows of busy, {:.0} MiB, filled in {:.0} s",
        bytes as f64 / (1 << 20) as f64,
        started.elapsed().as_secs_f64()
    );
    Ok((oldest, bytes, rows))
}

/// What one phase (one binary, one replay count) measured.
struct Phase {
    deliveries: u64,
    p50: f64,
    p99: f64,
    max: f64,
    /// Deliveries / expected, over the live subscribers.
    fraction: f64,
    /// From the replays' connect until none was catching up, `None` past the cap.
    replayed_s: Option<f64>,
    /// Connect until the last replay client had its `subscribed`.
    subscribed_ms: f64,
    cores: f64,
    /// Frames, errors or closes at the replay clients (the quiet table has no change).
    replay_faults: u64,
}

async fn catching_up(server: &Walcast) -> Result<f64> {
    Ok(server
        .metric("walcast_catchup_sessions")
        .await?
        .unwrap_or(0.0))
}

/// Starts `build` on the journal, opens the live subscribers, then at once the writers and the
/// `replays` clients; the window is the writers' `--seconds`.
async fn phase(
    db: &TestDb<'_>,
    journal: &JournalDir,
    build: &Build,
    replays: usize,
    oldest: &str,
    args: &Args,
) -> Result<Phase> {
    let server = start(db, journal, build, args).await?;
    let subscribers = args.subscribers[0];
    let per_writer = args.rate * args.seconds / WRITERS;
    let total = per_writer * WRITERS;
    let live = clients::open(&server, subscribers, |_| "query=insert:busy".into()).await?;
    let fleet = Fleet::spawn(live, |_| total, None);
    let before = CpuMark::now(server.pid());
    let rate = (args.rate / WRITERS).max(1);
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let client = db.connect().await?;
        // With synchronous_commit off a commit reaches the walsender only at the WAL writer's
        // next flush (up to 200 ms later).
        client.batch_execute("SET synchronous_commit = on").await?;
        writers.push(tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            for i in 0..per_writer {
                tokio::time::sleep_until(start + Duration::from_micros(i * 1_000_000 / rate)).await;
                client
                    .execute(
                        "INSERT INTO busy (v, note) VALUES ($1, 'latency probe')",
                        &[&(w as i32)],
                    )
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    let replay_started = Instant::now();
    let query = format!("query=*:{QUIET}&from={oldest}");
    let replay_ws = clients::open(&server, replays, |_| query.clone()).await?;
    let subscribed_ms = replay_started.elapsed().as_secs_f64() * 1e3;
    let replay_fleet = Fleet::spawn(replay_ws, |_| 0, None);
    // When the last replay reached the journal's end (live subscribers that fell behind
    // would count too; none should).
    let mut replayed_s = None;
    let watch = async {
        if replays == 0 {
            return anyhow::Ok(Some(0.0));
        }
        while replay_started.elapsed() < REPLAY_CAP {
            if catching_up(&server).await? == 0.0 {
                return Ok(Some(replay_started.elapsed().as_secs_f64()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(None)
    };
    let write = async {
        for w in writers {
            w.await??;
        }
        if !fleet.wait_all(STALL).await {
            eprintln!(
                "  {} with {replays} replays: delivery stalled at {} frames",
                build.label,
                fleet.frames()
            );
        }
        anyhow::Ok(CpuMark::now(server.pid()))
    };
    let (done, after) = tokio::join!(watch, write);
    if let Ok(r) = done {
        replayed_s = r;
    }
    let after = after?;
    let report = fleet.finish().await?;
    report.warn_if_incomplete(&format!("{} with {replays} replays", build.label));
    let replay_report = replay_fleet.finish().await?;
    stop(server).await?;
    let (walcast_cpu, _, wall) = before.until(&after);
    let q = report.latency;
    Ok(Phase {
        deliveries: q.count,
        p50: q.p50_ms,
        p99: q.p99_ms,
        max: q.max_ms,
        fraction: report.fraction(),
        replayed_s,
        subscribed_ms,
        cores: walcast_cpu / wall,
        replay_faults: replay_report.frames
            + replay_report.error_frames
            + replay_report.ended as u64,
    })
}

/// Per-run values of one table row.
#[derive(Default)]
struct Runs {
    p50: Vec<f64>,
    p99: Vec<f64>,
    max: Vec<f64>,
    fraction: Vec<f64>,
    replayed: Vec<Option<f64>>,
    subscribed: Vec<f64>,
    cores: Vec<f64>,
    faults: u64,
}

/// `median (v1, v2, ...)` with `digits` decimals.
fn spread(v: &[f64], digits: usize) -> String {
    let each: Vec<String> = v.iter().map(|x| format!("{x:.digits$}")).collect();
    let mut sorted = v.to_vec();
    format!("{:.digits$} ({})", median(&mut sorted), each.join(", "))
}

pub async fn replay(cluster: &PgCluster, args: &Args) -> Result<()> {
    let builds = builds(args)?;
    let subscribers = args.subscribers[0];
    let (fit, notes) =
        clients::fit_all(&[subscribers + args.replays.iter().max().copied().unwrap_or(0)]);
    println!(
        "# replay: {subscribers} live subscribers on insert:busy, {} single-row transactions/s for {} s \
         (commit timestamp -> client receive), while N clients replay *:{QUIET}&from=<the oldest position> \
         of a {} MiB journal of busy rows ({QUIET} has no change in it); builds {}, side by side on one journal, \
         alternating which goes first; medians of {} runs (per-run values in brackets)",
        args.rate,
        args.seconds,
        args.journal_mib,
        builds.iter().map(|b| format!("{} = {}", b.label, b.path.display())).collect::<Vec<_>>().join(", "),
        args.runs
    );
    notes.iter().for_each(|n| println!("{n}"));
    if fit[0] < subscribers + args.replays.iter().max().copied().unwrap_or(0) {
        bail!("not enough open files for the clients");
    }
    let db = TestDb::new(cluster, "replay").await?;
    db.exec(&format!(
        "CREATE TABLE busy (id bigserial PRIMARY KEY, v int, note text); \
         CREATE TABLE {QUIET} (id int PRIMARY KEY); CREATE TABLE mark (id serial PRIMARY KEY)"
    ))
    .await?;
    let journal = JournalDir::new("replay")?;
    let (oldest, bytes, rows) = fill(&db, &journal, &builds[0], args).await?;
    println!(
        "# journal: {:.0} MiB, {rows} rows of busy before the first phase; each phase adds {} rows",
        bytes as f64 / (1 << 20) as f64,
        args.rate * args.seconds
    );
    let mut m: Vec<Vec<Runs>> = builds
        .iter()
        .map(|_| args.replays.iter().map(|_| Runs::default()).collect())
        .collect();
    for run in 0..args.runs {
        let mut order: Vec<usize> = (0..builds.len()).collect();
        if run % 2 == 1 {
            order.reverse();
        }
        for b in order {
            for (k, &n) in args.replays.iter().enumerate() {
                let p = phase(&db, &journal, &builds[b], n, &oldest, args).await?;
                eprintln!(
                    "  {} run {run}, {n} replays: {} deliveries ({:.4}), p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, \
                     replays subscribed in {:.0} ms, caught up {}, walcast {:.2} cores, {} replay faults",
                    builds[b].label,
                    p.deliveries,
                    p.fraction,
                    p.p50,
                    p.p99,
                    p.max,
                    p.subscribed_ms,
                    p.replayed_s.map_or("past the cap".into(), |s| format!("after {s:.1} s")),
                    p.cores,
                    p.replay_faults
                );
                let r = &mut m[b][k];
                r.p50.push(p.p50);
                r.p99.push(p.p99);
                r.max.push(p.max);
                r.fraction.push(p.fraction);
                r.replayed.push(p.replayed_s);
                r.subscribed.push(p.subscribed_ms);
                r.cores.push(p.cores);
                r.faults += p.replay_faults;
            }
        }
    }
    println!("| build | replays | p50 ms | p99 ms | max ms | delivered | replays subscribed ms | replays caught up s | walcast CPU (cores) | replay faults | runs |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (b, build) in builds.iter().enumerate() {
        for (k, &n) in args.replays.iter().enumerate() {
            let r = &m[b][k];
            let caught: Vec<String> = r
                .replayed
                .iter()
                .map(|s| s.map_or(format!("> {}", REPLAY_CAP.as_secs()), |s| format!("{s:.1}")))
                .collect();
            println!(
                "| {} | {n} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                build.label,
                spread(&r.p50, 2),
                spread(&r.p99, 2),
                spread(&r.max, 1),
                spread(&r.fraction, 4),
                spread(&r.subscribed, 0),
                caught.join(", "),
                spread(&r.cores, 2),
                r.faults,
                args.runs
            );
        }
    }
    if builds.len() == 2 {
        for (k, &n) in args.replays.iter().enumerate() {
            let ratios: Vec<f64> = m[0][k]
                .p99
                .iter()
                .zip(&m[1][k].p99)
                .map(|(before, after)| before / after.max(1e-3))
                .collect();
            println!(
                "| {} / {} p99 | {n} | | {} | | | | | | | {} |",
                builds[0].label,
                builds[1].label,
                spread(&ratios, 2),
                args.runs
            );
        }
    }
    Ok(())
}
