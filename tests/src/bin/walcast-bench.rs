//! walcast-bench: benchmark programs that print figures measured side by side in one run.
//! It starts its own throwaway Postgres and the release `walcast` binary (see the harness).
//!
//! ```text
//! cargo build --release -p walcast -p walcast-tests
//! target/release/walcast-bench ingest  [--rows 1000000] [--small 100000] [--runs 3]
//! target/release/walcast-bench latency [--subscribers 100] [--rate 5000] [--seconds 10] [--runs 3]
//! target/release/walcast-bench plugin  [--rows 1000000] [--runs 3]   (needs plugins/build.sh)
//! target/release/walcast-bench idle    [--subscribers 10000] [--runs 3]
//! target/release/walcast-bench fanout  [--subscribers 1000] [--rate 500] [--seconds 10] [--runs 3]
//! ```
//!
//! `ingest`: the same workload is committed once into a backlog held by two slots; then
//! `pg_recvlogical` (same wal2json options, output to /dev/null) drains one slot and walcast with one
//! `*:table` WebSocket subscriber drains the other. pg_recvlogical is timed from its process start,
//! walcast from its replication connection being up (`/readyz`), each to the last row received
//! (walcast's subscriber connects right then; rows dispatched before it joined are reported).
//! Figures are rows/s of each and their ratio.
//! `latency`: N subscribers on one table while single-row transactions are committed at a fixed
//! rate; latency is the subscriber's clock minus the frame's commit timestamp (same machine).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use walcast_tests::{PgCluster, PgOptions, TestDb, Walcast};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const WAL2JSON_OPTIONS: [&str; 6] = [
    "format-version=2",
    "include-xids=1",
    "include-timestamp=1",
    "include-lsn=1",
    "include-types=1",
    "include-transaction=1",
];

struct Args {
    scenario: String,
    rows: u64,
    small: u64,
    runs: usize,
    subscribers: usize,
    rate: u64,
    seconds: u64,
}

fn parse_args() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let scenario = it.next().unwrap_or_else(|| "help".into());
    let mut a = Args {
        scenario,
        rows: 1_000_000,
        small: 100_000,
        runs: 3,
        subscribers: 100,
        rate: 5_000,
        seconds: 10,
    };
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let n: u64 = value
            .parse()
            .with_context(|| format!("{flag} {value}: not a number"))?;
        match flag.as_str() {
            "--rows" => a.rows = n,
            "--small" => a.small = n,
            "--runs" => a.runs = n as usize,
            "--subscribers" => a.subscribers = n as usize,
            "--rate" => a.rate = n,
            "--seconds" => a.seconds = n,
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn cluster() -> Result<PgCluster> {
    PgCluster::start_new(PgOptions {
        scram_host_auth: false,
        settings: vec![
            ("max_wal_size".into(), "4GB".into()),
            ("synchronous_commit".into(), "off".into()),
            ("logical_decoding_work_mem".into(), "256MB".into()),
        ],
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    match args.scenario.as_str() {
        "ingest" => ingest(&args).await,
        "latency" => latency(&args).await,
        "plugin" => plugin_overhead(&args).await,
        "idle" => idle(&args).await,
        "fanout" => fanout(&args).await,
        _ => {
            eprintln!("usage: walcast-bench ingest|latency|plugin|idle|fanout [flags] (see the source header)");
            std::process::exit(2);
        }
    }
}

// ---------------------------------------------------------------- ingest

#[derive(Clone, Copy)]
enum Workload {
    /// One transaction of N rows.
    BigTx(u64),
    /// N single-row transactions.
    Small(u64),
}

impl Workload {
    fn name(self) -> String {
        match self {
            Workload::BigTx(n) => format!("{n} rows, 1 transaction"),
            Workload::Small(n) => format!("{n} single-row transactions"),
        }
    }

    fn rows(self) -> u64 {
        match self {
            Workload::BigTx(n) | Workload::Small(n) => n,
        }
    }

    /// wal2json messages per workload (B and C included).
    fn messages(self) -> u64 {
        match self {
            Workload::BigTx(n) => n + 2,
            Workload::Small(n) => 3 * n,
        }
    }

    fn sql(self) -> String {
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
        }
    }
}

struct IngestRun {
    pg_rows_per_s: f64,
    walcast_rows_per_s: f64,
    missed_at_start: u64,
}

async fn ingest(args: &Args) -> Result<()> {
    let cluster = cluster()?;
    println!("# ingest: walcast (1 subscriber on *:bench) vs pg_recvlogical, same slot options, same backlog");
    println!("| workload | wal2json messages | pg_recvlogical rows/s | walcast rows/s | ratio walcast/pg | runs |");
    println!("|---|---|---|---|---|---|");
    let workloads = [Workload::BigTx(args.rows), Workload::Small(args.small)];
    // `--rows 0` or `--small 0` skips that workload.
    for workload in workloads.into_iter().filter(|w| w.rows() > 0) {
        let mut pg = Vec::new();
        let mut wc = Vec::new();
        let mut ratios = Vec::new();
        for run in 0..args.runs {
            let r = ingest_once(&cluster, workload, run).await?;
            eprintln!(
                "  {} run {run}: pg_recvlogical {:.0} rows/s, walcast {:.0} rows/s (subscriber joined after {} rows)",
                workload.name(),
                r.pg_rows_per_s,
                r.walcast_rows_per_s,
                r.missed_at_start
            );
            ratios.push(r.walcast_rows_per_s / r.pg_rows_per_s);
            pg.push(r.pg_rows_per_s);
            wc.push(r.walcast_rows_per_s);
        }
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2} | {} |",
            workload.name(),
            workload.messages(),
            median(&mut pg),
            median(&mut wc),
            median(&mut ratios),
            args.runs
        );
    }
    Ok(())
}

async fn ingest_once(cluster: &PgCluster, workload: Workload, run: usize) -> Result<IngestRun> {
    let db = TestDb::new(cluster, &format!("ingest{run}")).await?;
    db.exec(
        "CREATE TABLE bench (id bigint PRIMARY KEY, name text, age int, height float8, city text)",
    )
    .await?;
    let pg_slot = format!("{}_pg", db.slot());
    for slot in [pg_slot.as_str(), db.slot()] {
        db.exec(&format!(
            "SELECT pg_create_logical_replication_slot('{slot}', 'wal2json')"
        ))
        .await?;
    }
    db.exec(&workload.sql()).await?;

    // pg_recvlogical drains its slot into a file on tmpfs; done when every message is there.
    // (`--endpos` is not used: pg_recvlogical stops at the first keepalive past it, which can
    // arrive before a large transaction has been sent.)
    let out = std::path::PathBuf::from(format!("/dev/shm/walcast-bench-{}.jsonl", db.slot()));
    let _ = std::fs::remove_file(&out);
    let started = Instant::now();
    let mut cmd = Command::new(format!("{PG_BIN}/pg_recvlogical"));
    cmd.args(["-h"])
        .arg(cluster.socket_dir())
        .args([
            "-p",
            &cluster.port().to_string(),
            "-U",
            "postgres",
            "-d",
            db.name(),
        ])
        .args(["--slot", &pg_slot, "--start", "--no-loop", "-F", "0", "-f"])
        .arg(&out);
    for o in WAL2JSON_OPTIONS {
        cmd.args(["-o", o]);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .spawn()
        .context("cannot run pg_recvlogical")?;
    let expected = workload.messages();
    let mut lines = 0u64;
    let mut offset = 0u64;
    let pg_secs = loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if let Ok(mut f) = std::fs::File::open(&out) {
            use std::io::{Read, Seek, SeekFrom};
            f.seek(SeekFrom::Start(offset))?;
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            offset += buf.len() as u64;
            lines += memchr_count(&buf);
        }
        if lines >= expected {
            break started.elapsed().as_secs_f64();
        }
        if let Some(status) = child.try_wait()? {
            bail!("pg_recvlogical exited ({status}) after {lines} of {expected} messages");
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("pg_recvlogical got {lines} of {expected} messages in 600 s");
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&out);

    let (walcast_rows_per_s, missed_at_start) =
        walcast_drain(&db, db.slot(), "query=*:bench", workload.rows(), None).await?;
    Ok(IngestRun {
        pg_rows_per_s: workload.rows() as f64 / pg_secs,
        walcast_rows_per_s,
        missed_at_start,
    })
}

/// walcast drains `slot`, timed like pg_recvlogical: from the replication connection being up
/// (`/readyz` 200, which `start` waits for) to the last row (`id` = `rows`) arriving at one
/// WebSocket subscriber with `query`. Process start-up (config, catalog connection) is not
/// counted. Returns rows/s and how many rows were dispatched before the subscriber joined.
async fn walcast_drain(
    db: &TestDb<'_>,
    slot: &str,
    query: &str,
    rows: u64,
    plugin_dir: Option<&std::path::Path>,
) -> Result<(f64, u64)> {
    let mut builder = Walcast::builder(db)
        .prefer_release()
        .env("WALCAST_SLOT", slot)
        .env("WALCAST_QUEUE_CAPACITY", "65536");
    if let Some(dir) = plugin_dir {
        // A roomier deadline than the 5 ms default: on this shared 2-core box a descheduled
        // replication thread would otherwise count against the plugin (wall-clock epochs).
        builder = builder
            .env("WALCAST_PLUGIN_DIR", &dir.display().to_string())
            .config_toml("[plugins]\ncall_deadline = \"100ms\"\n");
    }
    let server = builder.start().await?;
    let spawned = Instant::now();
    let url = format!("{}/ws?{query}", server.ws_base());
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    let last_marker = format!("\"id\":{rows},");
    let mut first: Option<u64> = None;
    let mut count = 0u64;
    let last = loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .context("walcast delivered nothing for 60 s")?
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
    let first_id = first.context("no frame")?;
    let secs = last.duration_since(spawned).as_secs_f64().max(1e-9);
    let delivered = rows + 1 - first_id;
    if count < delivered {
        bail!("walcast delivered {count} frames, expected at least {delivered}");
    }
    Ok((rows as f64 / secs, first_id - 1))
}

// ---------------------------------------------------------------- plugin overhead

/// The same backlog drained by walcast twice: a plain `*:bench` subscriber, and one whose
/// `threshold` plugin passes every row (age >= 0), so both deliver the same frames.
async fn plugin_overhead(args: &Args) -> Result<()> {
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
    if !dist.join("threshold.wasm").is_file() {
        bail!(
            "{} missing: run plugins/build.sh first",
            dist.join("threshold.wasm").display()
        );
    }
    let cluster = cluster()?;
    println!("# plugin overhead: {} rows in one transaction, walcast with and without a threshold plugin", args.rows);
    println!("| run | plain rows/s | with plugin rows/s | ratio |");
    println!("|---|---|---|---|");
    let mut ratios = Vec::new();
    for run in 0..args.runs {
        let db = TestDb::new(&cluster, &format!("plugin{run}")).await?;
        db.exec("CREATE TABLE bench (id bigint PRIMARY KEY, name text, age int, height float8, city text)").await?;
        let plugin_slot = format!("{}_wasm", db.slot());
        for slot in [plugin_slot.as_str(), db.slot()] {
            db.exec(&format!(
                "SELECT pg_create_logical_replication_slot('{slot}', 'wal2json')"
            ))
            .await?;
        }
        db.exec(&Workload::BigTx(args.rows).sql()).await?;
        let (plain, _) = walcast_drain(&db, db.slot(), "query=*:bench", args.rows, None).await?;
        let (with_plugin, _) = walcast_drain(
            &db,
            &plugin_slot,
            "query=*:bench&plugin=threshold&plugin.column=age&plugin.value=0",
            args.rows,
            Some(&dist),
        )
        .await?;
        let ratio = with_plugin / plain;
        println!("| {run} | {plain:.0} | {with_plugin:.0} | {ratio:.2} |");
        ratios.push(ratio);
    }
    println!("| median | | | {:.2} |", median(&mut ratios));
    Ok(())
}

fn memchr_count(buf: &[u8]) -> u64 {
    buf.iter().filter(|b| **b == b'\n').count() as u64
}

// ---------------------------------------------------------------- latency

async fn latency(args: &Args) -> Result<()> {
    let cluster = cluster()?;
    println!(
        "# latency: {} subscribers on *:lat, {} single-row transactions/s for {} s; commit timestamp -> client receive",
        args.subscribers, args.rate, args.seconds
    );
    println!("| run | deliveries | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    let mut maxes = Vec::new();
    for run in 0..args.runs {
        let mut lat = latency_once(&cluster, args, run).await?;
        lat.sort_unstable();
        let pick = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize] as f64 / 1000.0;
        let (p50, p99, max) = (pick(0.5), pick(0.99), pick(1.0));
        println!("| {run} | {} | {p50:.2} | {p99:.2} | {max:.2} |", lat.len());
        p50s.push(p50);
        p99s.push(p99);
        maxes.push(max);
    }
    println!(
        "| median | | {:.2} | {:.2} | {:.2} |",
        median(&mut p50s),
        median(&mut p99s),
        median(&mut maxes)
    );
    Ok(())
}

fn micros_since_epoch(ts: &str) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(ts).ok()?;
    Some(t.timestamp_micros())
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads up to `total` change frames; for each, the client clock minus the frame's commit `ts`, in
/// microseconds. Stops early after 30 s without a frame.
async fn receive_latencies(mut ws: Client, total: u64) -> Vec<u32> {
    let mut lat = Vec::with_capacity(total as usize);
    while (lat.len() as u64) < total {
        let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout(Duration::from_secs(30), ws.next()).await
        else {
            break;
        };
        let now = now_micros();
        let ts = text
            .split("\"ts\":\"")
            .nth(1)
            .and_then(|s| s.split('"').next());
        if let Some(commit) = ts.and_then(micros_since_epoch) {
            lat.push((now - commit).max(0) as u32);
        }
    }
    lat
}

async fn latency_once(cluster: &PgCluster, args: &Args, run: usize) -> Result<Vec<u32>> {
    let db = TestDb::new(cluster, &format!("latency{run}")).await?;
    db.exec("CREATE TABLE lat (id bigserial PRIMARY KEY, v int, note text)")
        .await?;
    let server = Walcast::builder(&db).prefer_release().start().await?;
    let total = args.rate * args.seconds;

    let mut subscribers = Vec::new();
    for _ in 0..args.subscribers {
        let url = format!("{}/ws?query=insert:lat", server.ws_base());
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
        // Wait for `subscribed` so no change is committed before registration.
        ws.next().await.context("no subscribed frame")??;
        subscribers.push(tokio::spawn(receive_latencies(ws, total)));
    }

    // Writers: single-row transactions paced to `rate` per second over 4 connections.
    let writers = 4u64;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let client = db.connect().await?;
        // With synchronous_commit off a commit reaches the walsender only at the WAL writer's
        // next flush (up to wal_writer_delay = 200 ms later): latency would measure that.
        client.batch_execute("SET synchronous_commit = on").await?;
        let per_writer = total / writers;
        let rate = args.rate / writers;
        tasks.push(tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            for i in 0..per_writer {
                let due = start + Duration::from_micros(i * 1_000_000 / rate.max(1));
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
    let mut all = Vec::new();
    for s in subscribers {
        all.extend(s.await?);
    }
    drop(server);
    Ok(all)
}

// ---------------------------------------------------------------- many connections

/// Raise this process' open-file limit to the hard limit (each client is one socket) and say so
/// when the OS refuses what `want` needs. walcast raises its own.
fn raise_fd_limit(want: u64) -> u64 {
    match rlimit::increase_nofile_limit(want.saturating_mul(2) + 1024) {
        Ok(got) => {
            if got < want + 256 {
                eprintln!("walcast-bench: the OS allows only {got} open files; {want} clients need more (raise the hard limit: ulimit -Hn)");
            }
            got
        }
        Err(e) => {
            eprintln!("walcast-bench: cannot raise the open-file limit: {e}");
            0
        }
    }
}

/// Open `n` subscribed WebSocket clients on `query`; returns them once every one got `subscribed`.
async fn open_clients(server: &Walcast, query: &str, n: usize) -> Result<Vec<Client>> {
    let url = format!("{}/ws?{query}", server.ws_base());
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .with_context(|| format!("client {i} of {n}"))?;
        ws.next().await.context("no subscribed frame")??;
        clients.push(ws);
    }
    Ok(clients)
}

fn vm_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// `idle`: RSS of walcast per idle subscribed WebSocket connection.
async fn idle(args: &Args) -> Result<()> {
    let n = args.subscribers;
    raise_fd_limit(n as u64);
    let cluster = cluster()?;
    println!("# idle: {n} idle subscribed connections; walcast RSS growth per connection");
    println!("| run | connections | RSS before KiB | RSS after KiB | KiB per connection |");
    println!("|---|---|---|---|---|");
    let mut per = Vec::new();
    for run in 0..args.runs {
        let db = TestDb::new(&cluster, &format!("idle{run}")).await?;
        db.exec("CREATE TABLE quiet (id int primary key)").await?;
        let server = Walcast::builder(&db).prefer_release().start().await?;
        let before = vm_kib(server.pid(), "VmRSS:");
        let clients = open_clients(&server, "query=*:quiet", n).await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = vm_kib(server.pid(), "VmRSS:");
        let kib = after.saturating_sub(before) as f64 / n as f64;
        println!("| {run} | {n} | {before} | {after} | {kib:.1} |");
        per.push(kib);
        drop(clients);
    }
    println!("| median | | | | {:.1} |", median(&mut per));
    Ok(())
}

/// `fanout`: N clients on one table, every change to every client: delivered messages/s, walcast
/// CPU, commit-to-client latency.
async fn fanout(args: &Args) -> Result<()> {
    let n = args.subscribers;
    raise_fd_limit(n as u64);
    let cluster = cluster()?;
    println!(
        "# fanout: {n} clients on *:fan, {} changes/s for {} s (each to every client)",
        args.rate, args.seconds
    );
    println!("| run | delivered msgs/s | walcast CPU (cores) | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    for run in 0..args.runs {
        let db = TestDb::new(&cluster, &format!("fanout{run}")).await?;
        db.exec("CREATE TABLE fan (id bigserial PRIMARY KEY, v int, note text)")
            .await?;
        let server = Walcast::builder(&db).prefer_release().start().await?;
        let total = args.rate * args.seconds;
        let clients = open_clients(&server, "query=insert:fan", n).await?;
        let mut tasks = Vec::new();
        for ws in clients {
            tasks.push(tokio::spawn(receive_latencies(ws, total)));
        }
        let cpu_before = proc_cpu_seconds(server.pid());
        let started = Instant::now();
        let client = db.connect().await?;
        client.batch_execute("SET synchronous_commit = on").await?;
        let tick = Duration::from_micros(1_000_000 / args.rate.max(1));
        let t0 = tokio::time::Instant::now();
        for i in 0..total {
            tokio::time::sleep_until(t0 + tick * i as u32).await;
            client
                .execute("INSERT INTO fan (v, note) VALUES (1, 'fan-out probe')", &[])
                .await?;
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await?);
        }
        let secs = started.elapsed().as_secs_f64();
        let cpu = (proc_cpu_seconds(server.pid()) - cpu_before) / secs;
        lat.sort_unstable();
        if lat.is_empty() {
            bail!("no deliveries");
        }
        let pick = |q: f64| lat[((lat.len() as f64 - 1.0) * q) as usize] as f64 / 1000.0;
        println!(
            "| {run} | {:.0} | {cpu:.2} | {:.2} | {:.2} | {:.2} |",
            lat.len() as f64 / secs,
            pick(0.5),
            pick(0.99),
            pick(1.0)
        );
    }
    Ok(())
}

/// User + system CPU seconds of a process, from /proc/PID/stat (clock ticks of 100 Hz).
fn proc_cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let f: Vec<&str> = after.split_whitespace().collect();
            Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
        })
        .unwrap_or(0.0)
}
