//! Backlogs drained by `pg_recvlogical` and by walcast from two slots with the same options:
//! `ingest` (a big transaction and many small ones) and `bigtx` (one huge transaction already
//! committed when walcast starts: time, rows/s and walcast's peak memory). The walcast drain is
//! shared with the plugin overhead scenario.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use walcast_tests::{PgCluster, TestDb, Walcast};

use crate::args::Args;
use crate::clients;
use crate::measure::median;

/// Where the Postgres client programs are, unless `WALCAST_TEST_PG_BIN` says otherwise.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The options walcast starts its slot with, so both drains decode the same messages.
const WAL2JSON_OPTIONS: [&str; 6] = [
    "format-version=2",
    "include-xids=1",
    "include-timestamp=1",
    "include-lsn=1",
    "include-types=1",
    "include-transaction=1",
];

#[derive(Clone, Copy)]
pub enum Workload {
    /// One transaction of N rows.
    BigTx(u64),
    /// N single-row transactions.
    Small(u64),
    /// N rows in transactions of `batch` rows (the last may be smaller), committed back to back
    /// by one statement.
    Batched(u64, u64),
}

impl Workload {
    pub fn name(self) -> String {
        match self {
            Workload::BigTx(n) => format!("{n} rows, 1 transaction"),
            Workload::Small(n) => format!("{n} single-row transactions"),
            Workload::Batched(n, batch) => format!("{n} rows in transactions of {batch}"),
        }
    }

    pub fn rows(self) -> u64 {
        match self {
            Workload::BigTx(n) | Workload::Small(n) | Workload::Batched(n, _) => n,
        }
    }

    /// wal2json messages per workload (B and C included).
    pub fn messages(self) -> u64 {
        match self {
            Workload::BigTx(n) => n + 2,
            Workload::Small(n) => 3 * n,
            Workload::Batched(n, batch) => n + 2 * n.div_ceil(batch.max(1)),
        }
    }

    pub fn sql(self) -> String {
        // ~300-byte wal2json messages: five typed columns.
        let row = "g, 'name ' || g, (g % 90)::int, 1.5 + (g % 50) / 100.0, 'city ' || (g % 100)";
        match self {
            Workload::BigTx(n) => format!(
                "INSERT INTO bench (id, name, age, height, city) SELECT {row} FROM generate_series(1, {n}) g"
            ),
            Workload::Small(n) => format!(
                "DO $$ BEGIN FOR g IN 1..{n} LOOP \
                 INSERT INTO bench (id, name, age, height, city) VALUES ({row}); COMMIT; END LOOP; END $$"
            ),
            Workload::Batched(n, batch) => format!(
                "DO $$ BEGIN FOR t IN 0..{last} LOOP \
                 INSERT INTO bench (id, name, age, height, city) SELECT {row} \
                 FROM generate_series(t * {batch} + 1, least((t + 1) * {batch}, {n})) g; COMMIT; \
                 END LOOP; END $$",
                last = n.div_ceil(batch.max(1)).saturating_sub(1)
            ),
        }
    }
}

/// The table every workload writes.
pub const BENCH_TABLE: &str =
    "CREATE TABLE bench (id bigint PRIMARY KEY, name text, age int, height float8, city text)";

/// Creates the `bench` table and a wal2json slot per name in `slots`, then commits `workload`:
/// every slot holds the same backlog.
pub async fn backlog(db: &TestDb<'_>, slots: &[&str], workload: Workload) -> Result<()> {
    db.exec(BENCH_TABLE).await?;
    for slot in slots {
        db.exec(&format!(
            "SELECT pg_create_logical_replication_slot('{slot}', 'wal2json')"
        ))
        .await?;
    }
    db.exec(&workload.sql()).await
}

pub async fn ingest(cluster: &PgCluster, args: &Args) -> Result<()> {
    println!("# ingest: walcast (1 subscriber on *:bench) vs pg_recvlogical, same slot options, same backlog");
    println!("| workload | journal.fsync | wal2json messages | pg_recvlogical rows/s | walcast rows/s | ratio walcast/pg | per-run ratios |");
    println!("|---|---|---|---|---|---|---|");
    let workloads = [Workload::BigTx(args.rows), Workload::Small(args.small)];
    // `--rows 0` or `--small 0` skips that workload.
    let cases = workloads
        .into_iter()
        .filter(|w| w.rows() > 0)
        .flat_map(|w| args.fsync.iter().map(move |policy| (w, policy.as_str())));
    for (workload, policy) in cases {
        let mut pg = Vec::new();
        let mut wc = Vec::new();
        let mut ratios = Vec::new();
        for run in 0..args.runs {
            let db = TestDb::new(cluster, &format!("ingest{run}")).await?;
            let pg_slot = format!("{}_pg", db.slot());
            backlog(&db, &[&pg_slot, db.slot()], workload).await?;
            let pg_secs = pg_recvlogical_drain(&db, &pg_slot, workload.messages()).await?;
            let pg_rows_per_s = workload.rows() as f64 / pg_secs;
            let drain = walcast_drain(
                &db,
                "query=*:bench",
                workload.rows(),
                Drain {
                    fsync: Some(policy),
                    ..Drain::ingest()
                },
            )
            .await?;
            eprintln!(
                "  {} fsync={policy} run {run}: pg_recvlogical {pg_rows_per_s:.0} rows/s, walcast {:.0} rows/s (subscriber joined after {} rows)",
                workload.name(),
                drain.rows_per_s,
                drain.missed_at_start
            );
            ratios.push(drain.rows_per_s / pg_rows_per_s);
            pg.push(pg_rows_per_s);
            wc.push(drain.rows_per_s);
        }
        let per_run: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        println!(
            "| {} | {policy} | {} | {:.0} | {:.0} | {:.2} | {} |",
            workload.name(),
            workload.messages(),
            median(&mut pg),
            median(&mut wc),
            median(&mut ratios),
            per_run.join(", ")
        );
    }
    Ok(())
}

/// `pg_recvlogical` drains `slot` into a file on tmpfs; timed from its process start until every
/// one of `messages` is in the file. Returns seconds.
async fn pg_recvlogical_drain(db: &TestDb<'_>, slot: &str, messages: u64) -> Result<f64> {
    // `--endpos` is not used: pg_recvlogical stops at the first keepalive past it, which can
    // arrive before a large transaction has been sent.
    let cluster = db.cluster();
    let out = PathBuf::from(format!("/dev/shm/walcast-bench-{slot}.jsonl"));
    let _ = std::fs::remove_file(&out);
    let bin = std::env::var("WALCAST_TEST_PG_BIN").unwrap_or_else(|_| PG_BIN.into());
    let started = Instant::now();
    let mut cmd = Command::new(Path::new(&bin).join("pg_recvlogical"));
    cmd.arg("-h")
        .arg(cluster.socket_dir())
        .args(["-p", &cluster.port().to_string()])
        .args(["-U", "postgres", "-d", db.name()])
        .args(["--slot", slot, "--start", "--no-loop", "-F", "0", "-f"])
        .arg(&out);
    for o in WAL2JSON_OPTIONS {
        cmd.args(["-o", o]);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .spawn()
        .context("cannot run pg_recvlogical")?;
    let mut lines = 0u64;
    let mut offset = 0u64;
    let result = loop {
        // Polling the file: pg_recvlogical offers no completion signal short of `--endpos`.
        tokio::time::sleep(Duration::from_millis(10)).await;
        if let Ok(mut f) = std::fs::File::open(&out) {
            use std::io::{Read, Seek, SeekFrom};
            f.seek(SeekFrom::Start(offset))?;
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            offset += buf.len() as u64;
            lines += buf.iter().filter(|b| **b == b'\n').count() as u64;
        }
        if lines >= messages {
            break Ok(started.elapsed().as_secs_f64());
        }
        if let Some(status) = child.try_wait()? {
            break Err(anyhow::anyhow!(
                "pg_recvlogical exited ({status}) after {lines} of {messages} messages"
            ));
        }
        if started.elapsed() > Duration::from_secs(1800) {
            break Err(anyhow::anyhow!(
                "pg_recvlogical got {lines} of {messages} messages in 1800 s"
            ));
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&out);
    result
}

/// How walcast is started for a drain.
pub struct Drain<'a> {
    /// `WALCAST_QUEUE_CAPACITY`; `None` keeps walcast's default.
    pub queue_capacity: Option<&'a str>,
    /// `WALCAST_JOURNAL_FSYNC`; `None` keeps walcast's default (`burst`).
    pub fsync: Option<&'a str>,
    pub plugin_dir: Option<&'a Path>,
    pub slot: Option<&'a str>,
}

impl Drain<'_> {
    /// A deep session queue, so the drain measures throughput rather than queue hand-offs.
    pub fn ingest() -> Drain<'static> {
        Drain {
            queue_capacity: Some("65536"),
            fsync: None,
            plugin_dir: None,
            slot: None,
        }
    }
}

/// What a walcast drain measured.
pub struct Drained {
    pub rows_per_s: f64,
    pub secs: f64,
    /// Rows dispatched before the subscriber joined (walcast starts streaming at `/readyz`).
    pub missed_at_start: u64,
    /// walcast's peak RSS (VmHWM) right after the last row arrived.
    pub hwm_kib: u64,
}

/// walcast drains its slot (the db's own unless `opts.slot`), timed like pg_recvlogical: from the
/// replication connection being up (`/readyz` 200, which `start` waits for) to the end of the
/// backlog of `rows` rows in `bench` (a marker row committed after it) arriving at one WebSocket
/// subscriber with `query`. Process start-up (config, catalog connection) is not counted.
pub async fn walcast_drain(
    db: &TestDb<'_>,
    query: &str,
    rows: u64,
    opts: Drain<'_>,
) -> Result<Drained> {
    // Over the Unix socket, like pg_recvlogical above: loopback TCP costs the walsender (and
    // the kernel) noticeably more per message, which would be counted against walcast.
    let unix_url = db.unix_url();
    let mut builder = Walcast::builder(db)
        .prefer_release()
        .env("DATABASE_URL", &unix_url)
        .env("WALCAST_SLOT", opts.slot.unwrap_or(db.slot()));
    if let Some(capacity) = opts.queue_capacity {
        builder = builder.env("WALCAST_QUEUE_CAPACITY", capacity);
    }
    if let Some(policy) = opts.fsync {
        builder = builder.env("WALCAST_JOURNAL_FSYNC", policy);
    }
    if let Some(dir) = opts.plugin_dir {
        // A roomier deadline than the default: on this shared 2-core box a descheduled
        // replication thread would otherwise count against the plugin (wall-clock epochs).
        builder = builder
            .env("WALCAST_PLUGIN_DIR", &dir.display().to_string())
            .config_toml("[plugins]\ncall_deadline = \"100ms\"\n");
    }
    let server = builder.start().await?;
    let spawned = Instant::now();
    let url = format!("{}/ws?{query}", server.ws_base());
    let mut ws = clients::open_one(server.addr(), &url, std::net::Ipv4Addr::new(127, 0, 0, 2))
        .await
        .context("drain subscriber")?;
    // walcast streams from `/readyz` on, before this subscriber exists: a small backlog can be
    // gone by the time it subscribes. A marker row committed now arrives after the whole backlog
    // and ends the drain either way (an update of it when an earlier drain of the same table
    // inserted it).
    let marker = rows + 1;
    let writer = db.connect().await?;
    writer
        .batch_execute(&format!(
            "SET synchronous_commit = on; INSERT INTO bench (id, name, age, height, city) \
             VALUES ({marker}, 'marker', 0, 1.5, 'marker') \
             ON CONFLICT (id) DO UPDATE SET name = 'marker again'"
        ))
        .await
        .context("marker row")?;
    let last_marker = format!("\"id\":{marker},");
    let mut first: Option<u64> = None;
    let mut count = 0u64;
    let last = loop {
        // Postgres decodes a whole transaction before sending its first row: a large one can
        // take minutes to start.
        let wait = Duration::from_secs(if first.is_none() { 900 } else { 60 });
        let msg = tokio::time::timeout(wait, ws.next())
            .await
            .with_context(|| format!("walcast delivered nothing for {wait:?}"))?
            .context("socket closed")??;
        let Message::Text(text) = msg else { continue };
        if text.starts_with("{\"type\":\"error\"") {
            bail!("walcast sent an error frame: {}", text.as_str());
        }
        if !text.starts_with("{\"type\":\"change\"") {
            continue;
        }
        count += 1;
        if first.is_none() {
            let id = text
                .split("\"id\":")
                .nth(1)
                .and_then(|s| s.split(',').next())
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(1);
            first = Some(id);
        }
        if text.contains(&last_marker) {
            break Instant::now();
        }
    };
    let hwm_kib = server.memory().map(|m| m.hwm_kib).unwrap_or(0);
    let first_id = first.context("no frame")?;
    let secs = last.duration_since(spawned).as_secs_f64().max(1e-9);
    let delivered = marker + 1 - first_id;
    if count < delivered {
        bail!("walcast delivered {count} frames, expected at least {delivered}");
    }
    Ok(Drained {
        rows_per_s: rows as f64 / secs,
        secs,
        missed_at_start: first_id.min(marker) - 1,
        hwm_kib,
    })
}

// ---------------------------------------------------------------- bigtx

/// Medians over runs of the `bigtx` row.
#[derive(Default)]
struct BigTxRuns {
    secs: Vec<f64>,
    rows_per_s: Vec<f64>,
    hwm_mib: Vec<f64>,
    pg_secs: Vec<f64>,
    pg_rows_per_s: Vec<f64>,
    ratio: Vec<f64>,
}

pub async fn bigtx(cluster: &PgCluster, args: &Args) -> Result<()> {
    let workload = Workload::BigTx(args.rows);
    println!(
        "# bigtx: {} into bench, 1 subscriber on *:bench, walcast started after the commit with its default session queue; \
         pg_recvlogical drains the same backlog from a second slot; medians of {} runs",
        workload.name(),
        args.runs
    );
    println!("| rows | walcast s | walcast rows/s | walcast peak RSS MiB | pg_recvlogical s | pg_recvlogical rows/s | ratio walcast/pg | runs |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut m = BigTxRuns::default();
    for run in 0..args.runs {
        let db = TestDb::new(cluster, &format!("bigtx{run}")).await?;
        let pg_slot = format!("{}_pg", db.slot());
        backlog(&db, &[&pg_slot, db.slot()], workload).await?;
        let pg_secs = pg_recvlogical_drain(&db, &pg_slot, workload.messages()).await?;
        let drain = Drain {
            queue_capacity: None,
            ..Drain::ingest()
        };
        let d = walcast_drain(&db, "query=*:bench", args.rows, drain).await?;
        let pg_rows_per_s = args.rows as f64 / pg_secs;
        let hwm_mib = d.hwm_kib as f64 / 1024.0;
        eprintln!(
            "  bigtx run {run}: walcast {:.2} s ({:.0} rows/s, peak RSS {hwm_mib:.1} MiB, subscriber joined after {} rows), pg_recvlogical {pg_secs:.2} s",
            d.secs, d.rows_per_s, d.missed_at_start
        );
        m.secs.push(d.secs);
        m.rows_per_s.push(d.rows_per_s);
        m.hwm_mib.push(hwm_mib);
        m.pg_secs.push(pg_secs);
        m.pg_rows_per_s.push(pg_rows_per_s);
        m.ratio.push(d.rows_per_s / pg_rows_per_s);
    }
    println!(
        "| {} | {:.2} | {:.0} | {:.1} | {:.2} | {:.0} | {:.2} | {} |",
        args.rows,
        median(&mut m.secs),
        median(&mut m.rows_per_s),
        median(&mut m.hwm_mib),
        median(&mut m.pg_secs),
        median(&mut m.pg_rows_per_s),
        median(&mut m.ratio),
        args.runs
    );
    Ok(())
}
