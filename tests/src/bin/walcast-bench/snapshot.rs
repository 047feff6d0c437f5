//! `snapshot`: a table's current rows read by `psql` (`COPY ... TO STDOUT`, the floor: Postgres'
//! own text output to a client that discards it) beside a walcast `snapshot=true` subscription
//! (the same rows as `row` frames over a WebSocket), with walcast's memory while it sends them.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use walcast_tests::{PgCluster, TestDb, Walcast};

use crate::args::Args;
use crate::ingest::PG_BIN;
use crate::measure::{median, CpuMark};

/// The table both readers read. The row is the `ingest` one (five typed columns).
const TABLE: &str =
    "CREATE TABLE snap (id int PRIMARY KEY, name text, age int, height float8, city text)";
/// What `psql` runs: the whole table as text, written to /dev/null.
const COPY: &str = "COPY (SELECT * FROM snap) TO STDOUT";
/// How often walcast's RSS is sampled during a snapshot.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// The target: walcast's RSS during a snapshot at most this far above idle.
const TARGET_MIB: f64 = 64.0;
/// The snapshot client's read chunk: one client, so a large one costs nothing and saves reads.
const READ_BUFFER: usize = 64 * 1024;
/// Longest wait for any one frame.
const FRAME_WAIT: Duration = Duration::from_secs(60);

const ROW: &str = "{\"type\":\"row\"";
const SUBSCRIBED: &str = "{\"type\":\"subscribed\"";
const END: &str = "{\"type\":\"snapshot_end\"";
const QUEUED: &str = "{\"type\":\"snapshot_queued\"";

/// Medians over runs of the table row.
#[derive(Default)]
struct Runs {
    psql_secs: Vec<f64>,
    psql_rows_per_s: Vec<f64>,
    secs: Vec<f64>,
    rows_per_s: Vec<f64>,
    ratio: Vec<f64>,
    first_row_ms: Vec<f64>,
    idle_mib: Vec<f64>,
    peak_mib: Vec<f64>,
    growth_mib: Vec<f64>,
    hwm_mib: Vec<f64>,
    /// Runs whose sampled peak was more than `TARGET_MIB` above idle.
    over_target: usize,
}

pub async fn snapshot(cluster: &PgCluster, args: &Args) -> Result<()> {
    let rows = args.rows;
    let db = TestDb::new(cluster, "snapshot").await?;
    db.exec(TABLE).await?;
    db.exec(&format!(
        "INSERT INTO snap (id, name, age, height, city) \
         SELECT g, 'name ' || g, (g % 90)::int, 1.5 + (g % 50) / 100.0, 'city ' || (g % 100) \
         FROM generate_series(1, {rows}) g"
    ))
    .await?;
    // Sets hint bits and the visibility map, and reads the table into the caches, so that
    // neither reader pays for the first reads of freshly written rows.
    db.exec("VACUUM ANALYZE snap").await?;
    let sizes = db
        .client()
        .query_one(
            "SELECT coalesce(avg(pg_column_size(s.*)), 0)::float8, \
             coalesce(avg(octet_length(concat_ws(E'\\t', id, name, age, height, city)) + 1), 0)::float8, \
             pg_total_relation_size('snap')::float8 FROM snap s",
            &[],
        )
        .await?;
    let (tuple, text, total): (f64, f64, f64) = (sizes.get(0), sizes.get(1), sizes.get(2));
    println!(
        "# snapshot: {rows} rows of snap (id int primary key, name text, age int, height float8, city text; \
         {tuple:.0} bytes a row in the heap, {text:.0} as COPY text, table {:.0} MiB), read per run by \
         psql `{COPY}` > /dev/null and by one walcast client on *:snap&snapshot=true (connect to snapshot_end), \
         both over the Unix socket; walcast RSS sampled every {} ms; target: peak - idle <= {TARGET_MIB:.0} MiB; \
         medians of {} runs",
        total / (1024.0 * 1024.0),
        SAMPLE_EVERY.as_millis(),
        args.runs
    );
    println!("| rows | psql COPY s | psql COPY rows/s | walcast s | walcast rows/s | ratio walcast/psql | first row ms | walcast RSS idle MiB | RSS peak MiB | peak - idle MiB | VmHWM after MiB | peak - idle <= 64 MiB | runs |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut m = Runs::default();
    for run in 0..args.runs {
        let psql_secs = psql_copy(&db)?;
        let psql_rows_per_s = rows as f64 / psql_secs;
        let s = walcast_snapshot(&db, rows).await?;
        let rows_per_s = rows as f64 / s.secs;
        let mib = |kib: u64| kib as f64 / 1024.0;
        let (idle, peak) = (mib(s.idle_kib), mib(s.peak_kib));
        let growth = peak - idle;
        eprintln!(
            "  snapshot run {run}: psql COPY {psql_secs:.3} s ({psql_rows_per_s:.0} rows/s); walcast {:.3} s \
             ({rows_per_s:.0} rows/s), subscribed {:.1} ms, first row {:.1} ms, {:.0} bytes a row frame; \
             RSS idle {idle:.1} MiB, peak {peak:.1} MiB (+{growth:.1}, {} samples), VmHWM before {:.1} after {:.1} MiB; \
             walcast {:.2} cores, bench {:.2} cores",
            s.secs,
            s.subscribed_ms,
            s.first_row_ms,
            s.frame_bytes as f64 / rows.max(1) as f64,
            s.samples,
            mib(s.hwm_before_kib),
            mib(s.hwm_after_kib),
            s.walcast_cores,
            s.bench_cores
        );
        m.psql_secs.push(psql_secs);
        m.psql_rows_per_s.push(psql_rows_per_s);
        m.secs.push(s.secs);
        m.rows_per_s.push(rows_per_s);
        m.ratio.push(rows_per_s / psql_rows_per_s);
        m.first_row_ms.push(s.first_row_ms);
        m.idle_mib.push(idle);
        m.peak_mib.push(peak);
        m.growth_mib.push(growth);
        m.hwm_mib.push(mib(s.hwm_after_kib));
        m.over_target += usize::from(growth > TARGET_MIB);
    }
    let within = if m.over_target == 0 {
        "yes (every run)".to_owned()
    } else {
        format!("no ({} of {} runs over)", m.over_target, args.runs)
    };
    println!(
        "| {rows} | {:.3} | {:.0} | {:.3} | {:.0} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {within} | {} |",
        median(&mut m.psql_secs),
        median(&mut m.psql_rows_per_s),
        median(&mut m.secs),
        median(&mut m.rows_per_s),
        median(&mut m.ratio),
        median(&mut m.first_row_ms),
        median(&mut m.idle_mib),
        median(&mut m.peak_mib),
        median(&mut m.growth_mib),
        median(&mut m.hwm_mib),
        args.runs
    );
    Ok(())
}

/// `psql -X -c "COPY ..." > /dev/null` over the Unix socket, timed from its process start to its
/// exit (start-up and connection included, as walcast's time includes its own). Returns seconds.
fn psql_copy(db: &TestDb<'_>) -> Result<f64> {
    let cluster = db.cluster();
    let bin = std::env::var("WALCAST_TEST_PG_BIN").unwrap_or_else(|_| PG_BIN.into());
    let mut cmd = Command::new(Path::new(&bin).join("psql"));
    cmd.arg("-X")
        .arg("-h")
        .arg(cluster.socket_dir())
        .args(["-p", &cluster.port().to_string()])
        .args(["-U", "postgres", "-d", db.name()])
        .args(["-v", "ON_ERROR_STOP=1", "-c", COPY])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let out = cmd.output().context("cannot run psql")?;
    let secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "psql COPY exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(secs.max(1e-9))
}

/// What one walcast snapshot measured.
struct Snapshotted {
    /// Connect start to `snapshot_end`.
    secs: f64,
    subscribed_ms: f64,
    first_row_ms: f64,
    /// Bytes of every row frame's text.
    frame_bytes: u64,
    idle_kib: u64,
    /// Largest VmRSS sampled from connect start to `snapshot_end`.
    peak_kib: u64,
    samples: usize,
    hwm_before_kib: u64,
    hwm_after_kib: u64,
    walcast_cores: f64,
    bench_cores: f64,
}

/// A fresh walcast (its snapshot connection over the Unix socket, like psql); its idle RSS; then
/// one client on `*:snap&snapshot=true`, timed from the start of its TCP connect to `snapshot_end`,
/// which must count `rows` rows, exactly as many `row` frames as came before it.
async fn walcast_snapshot(db: &TestDb<'_>, rows: u64) -> Result<Snapshotted> {
    let unix_url = db.unix_url();
    let server = Walcast::builder(db)
        .prefer_release()
        .env("DATABASE_URL", &unix_url)
        .start()
        .await?;
    let before = server.memory()?;
    let cpu_before = CpuMark::now(server.pid());
    let sampler = Sampler::start(server.pid());
    let url = format!("{}/ws?query=*:snap&snapshot=true", server.ws_base());
    let started = Instant::now();
    let tcp = TcpStream::connect(server.addr()).await.context("connect")?;
    tcp.set_nodelay(true)?;
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(&url, tcp, Some(config))
        .await
        .context("WebSocket upgrade")?;
    let ms = |since: Instant| since.elapsed().as_secs_f64() * 1e3;
    let (mut subscribed_ms, mut first_row_ms) = (None, None);
    let (mut count, mut frame_bytes) = (0u64, 0u64);
    let end = loop {
        let msg = tokio::time::timeout(FRAME_WAIT, ws.next())
            .await
            .with_context(|| format!("no frame for {FRAME_WAIT:?} after {count} rows"))?;
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => bail!("after {count} rows: expected a text frame, got {other:?}"),
        };
        if text.starts_with(ROW) {
            if first_row_ms.is_none() {
                first_row_ms = Some(ms(started));
            }
            count += 1;
            frame_bytes += text.len() as u64;
        } else if text.starts_with(END) {
            break text;
        } else if text.starts_with(SUBSCRIBED) {
            subscribed_ms = Some(ms(started));
        } else if !text.starts_with(QUEUED) {
            bail!("after {count} rows: unexpected frame {}", text.as_str());
        }
    };
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let cpu_after = CpuMark::now(server.pid());
    let (peak_kib, samples) = sampler.stop().await?;
    let after = server.memory()?;
    let v: serde_json::Value = serde_json::from_str(&end)
        .with_context(|| format!("snapshot_end is not JSON: {}", end.as_str()))?;
    ensure!(
        v["rows"] == rows,
        "snapshot_end counts {} rows, the table has {rows}: {v}",
        v["rows"]
    );
    ensure!(
        count == rows,
        "{count} row frames came, the table has {rows}"
    );
    let (walcast_cpu, bench_cpu, wall) = cpu_before.until(&cpu_after);
    Ok(Snapshotted {
        secs,
        subscribed_ms: subscribed_ms.context("no subscribed frame")?,
        first_row_ms: first_row_ms.unwrap_or(secs * 1e3),
        frame_bytes,
        idle_kib: before.rss_kib,
        peak_kib: peak_kib.max(after.rss_kib),
        samples,
        hwm_before_kib: before.hwm_kib,
        hwm_after_kib: after.hwm_kib,
        walcast_cores: walcast_cpu / wall,
        bench_cores: bench_cpu / wall,
    })
}

/// VmRSS of `pid` in KiB, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples a process' VmRSS every `SAMPLE_EVERY` until stopped: the largest sample and how many.
struct Sampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<(u64, usize)>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (mut peak, mut samples) = (0u64, 0usize);
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    _ = tick.tick() => {}
                }
                if let Some(kib) = rss_kib(pid) {
                    peak = peak.max(kib);
                    samples += 1;
                }
            }
            (peak, samples)
        });
        Sampler { stop, task }
    }

    async fn stop(self) -> Result<(u64, usize)> {
        let _ = self.stop.send(true);
        self.task.await.context("RSS sampler")
    }
}
