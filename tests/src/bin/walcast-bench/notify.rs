//! `notify`: the LISTEN/NOTIFY relay (`/listen/{channel}`). N sockets on one channel per
//! `--sockets` value, then one socket on each of `--channels` channels, while 4 connections send
//! `pg_notify` at `--rate`/s; payloads carry their send time. Figures: payloads/s received,
//! fraction delivered, send-to-socket latency, walcast RSS per socket and CPU.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use tokio::sync::{watch, Notify};
use tokio_tungstenite::tungstenite::Message;
use walcast_tests::{percent_encode, PgCluster, TestDb, Walcast};

use crate::args::Args;
use crate::clients::{self, Ws};
use crate::measure::{median, now_micros, CpuMark, Histogram, Quantiles};
use crate::workload::STALL;

/// Writer connections: notification `i` is sent by connection `i % WRITERS`.
const WRITERS: u64 = 4;
/// Frames a socket counts locally before adding them to the shared totals.
const FLUSH: u64 = 64;

/// One table row: `sockets` sockets spread round-robin over `channels` channels.
#[derive(Clone, Copy)]
struct Case {
    sockets: usize,
    channels: usize,
}

impl Case {
    fn channel(&self, k: usize) -> String {
        if self.channels == 1 {
            "bench".into()
        } else {
            format!("bench_{k}")
        }
    }
}

/// Medians over runs of one table row.
#[derive(Default)]
struct Runs {
    rate: Vec<f64>,
    fraction: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    max: Vec<f64>,
    rss: Vec<f64>,
    cores: Vec<f64>,
    bench: Vec<f64>,
    closed: Vec<f64>,
}

pub async fn notify(cluster: &PgCluster, args: &Args) -> Result<()> {
    let total = args.rate * args.seconds;
    println!(
        "# notify: sockets on /listen/<channel>; {} pg_notify/s from {WRITERS} connections for {} s ({total} payloads, round-robin over the case's channels); send time -> socket receive; medians of {} runs",
        args.rate, args.seconds, args.runs
    );
    let mut wanted = args.subscribers.clone();
    wanted.push(args.channels as usize);
    let (counts, notes) = clients::fit_all(&wanted);
    notes.iter().for_each(|n| println!("{n}"));
    let (&per_channel, on_one) = counts.split_last().context("no cases")?;
    let mut cases: Vec<Case> = on_one
        .iter()
        .map(|&sockets| Case {
            sockets,
            channels: 1,
        })
        .collect();
    cases.push(Case {
        sockets: per_channel,
        channels: per_channel,
    });
    println!("| sockets | channels | payloads/s | delivered | p50 ms | p99 ms | max ms | RSS KiB per socket | walcast CPU (cores) | bench CPU (cores) | closed | runs |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for case in cases {
        let mut m = Runs::default();
        for run in 0..args.runs {
            let r = measure(cluster, args, case, run).await?;
            let q = r.latency;
            eprintln!(
                "  notify {} sockets / {} channels run {run}: {:.0} payloads/s, delivered {:.4}, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, RSS {} -> {} KiB ({:.1} KiB per socket), walcast {:.2} cores, bench {:.2} cores, {} closed{}",
                case.sockets,
                case.channels,
                r.rate,
                r.fraction,
                q.p50_ms,
                q.p99_ms,
                q.max_ms,
                r.rss_before,
                r.rss_after,
                r.rss_per_socket,
                r.walcast_cores,
                r.bench_cores,
                r.closed,
                r.ended_reason
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            );
            m.rate.push(r.rate);
            m.fraction.push(r.fraction);
            m.p50.push(q.p50_ms);
            m.p99.push(q.p99_ms);
            m.max.push(q.max_ms);
            m.rss.push(r.rss_per_socket);
            m.cores.push(r.walcast_cores);
            m.bench.push(r.bench_cores);
            m.closed.push(r.closed as f64);
        }
        println!(
            "| {} | {} | {:.0} | {:.4} | {:.2} | {:.2} | {:.2} | {:.1} | {:.2} | {:.2} | {:.0} | {} |",
            case.sockets,
            case.channels,
            median(&mut m.rate),
            median(&mut m.fraction),
            median(&mut m.p50),
            median(&mut m.p99),
            median(&mut m.max),
            median(&mut m.rss),
            median(&mut m.cores),
            median(&mut m.bench),
            median(&mut m.closed),
            args.runs
        );
    }
    Ok(())
}

/// What one run of one case measured.
struct Measured {
    rate: f64,
    fraction: f64,
    latency: Quantiles,
    rss_before: u64,
    rss_after: u64,
    rss_per_socket: f64,
    walcast_cores: f64,
    bench_cores: f64,
    /// Sockets whose connection ended before the window did, and one reason.
    closed: usize,
    ended_reason: Option<String>,
}

async fn measure(cluster: &PgCluster, args: &Args, case: Case, run: usize) -> Result<Measured> {
    let db = TestDb::new(cluster, &format!("notify{run}")).await?;
    let server = Walcast::builder(&db).prefer_release().start().await?;
    let total = args.rate * args.seconds;
    // Payloads sent to channel k: notification i goes to channel i % channels.
    let per_channel = |k: usize| {
        let c = case.channels as u64;
        total / c + u64::from((k as u64) < total % c)
    };
    let rss_before = server.memory()?.rss_kib;
    let ws = clients::open_listeners(&server, case.sockets, |i| {
        format!(
            "/listen/{}",
            percent_encode(&case.channel(i % case.channels))
        )
    })
    .await?;
    // Let the allocator settle (freed handshake buffers) before reading RSS.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_after = server.memory()?.rss_kib;
    let expected: Vec<u64> = (0..case.sockets)
        .map(|i| per_channel(i % case.channels))
        .collect();
    let sockets = Sockets::spawn(ws, &expected);

    let before = CpuMark::now(server.pid());
    let start_us = now_micros();
    let max_behind_ms = send(&db, args, case).await?;
    if !sockets.wait_all(STALL).await {
        eprintln!(
            "  delivery stalled for {STALL:?} at {} payloads; measuring what arrived",
            sockets.frames()
        );
    }
    let after = CpuMark::now(server.pid());
    let got = sockets.finish().await?;
    let (walcast_cpu, bench_cpu, wall) = before.until(&after);
    if max_behind_ms > 100.0 {
        eprintln!(
            "  the writer fell {max_behind_ms:.0} ms behind its schedule: the rate was not met"
        );
    }
    drop(server);
    let wanted: u64 = expected.iter().sum();
    Ok(Measured {
        rate: got.frames as f64 / ((got.last_us - start_us) as f64 / 1e6).max(1e-6),
        fraction: got.frames as f64 / wanted.max(1) as f64,
        latency: got.latency,
        rss_before,
        rss_after,
        rss_per_socket: rss_after.saturating_sub(rss_before) as f64 / case.sockets as f64,
        walcast_cores: walcast_cpu / wall,
        bench_cores: bench_cpu / wall,
        closed: got.closed,
        ended_reason: got.ended_reason,
    })
}

/// Sends `rate x seconds` notifications from `WRITERS` connections, notification `i` due at
/// `i / rate` s after the start, on channel `i % channels`, payload `<now µs> <i>`. Returns how
/// late the latest one was sent against its schedule, in ms.
async fn send(db: &TestDb<'_>, args: &Args, case: Case) -> Result<f64> {
    let total = args.rate * args.seconds;
    let rate = args.rate;
    let start = tokio::time::Instant::now() + Duration::from_millis(10);
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let client = db.connect().await?;
        let channels: Vec<String> = (0..case.channels).map(|k| case.channel(k)).collect();
        tasks.push(tokio::spawn(async move {
            let stmt = client.prepare("SELECT pg_notify($1, $2)").await?;
            let mut behind = Duration::ZERO;
            for i in (w..total).step_by(WRITERS as usize) {
                let due = start + Duration::from_micros(i * 1_000_000 / rate);
                tokio::time::sleep_until(due).await;
                behind = behind.max(tokio::time::Instant::now() - due);
                let channel = &channels[(i % channels.len() as u64) as usize];
                let payload = format!("{} {i}", now_micros());
                client
                    .execute(&stmt, &[channel, &payload])
                    .await
                    .with_context(|| format!("pg_notify {i}"))?;
            }
            anyhow::Ok(behind)
        }));
    }
    let mut behind = Duration::ZERO;
    for t in tasks {
        behind = behind.max(t.await??);
    }
    Ok(behind.as_secs_f64() * 1e3)
}

/// Progress shared by all sockets of a case.
struct Tally {
    frames: AtomicU64,
    /// Sockets that neither have every payload of their channel nor were closed.
    pending: AtomicUsize,
    done: Notify,
    latency: Histogram,
}

impl Tally {
    /// One socket is done (complete or closed).
    fn settle(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }
}

/// What one socket saw.
#[derive(Default)]
struct Receipt {
    frames: u64,
    last_us: i64,
    ended: Option<String>,
}

/// Totals of all sockets after `finish`.
struct Received {
    frames: u64,
    last_us: i64,
    closed: usize,
    ended_reason: Option<String>,
    latency: Quantiles,
}

/// Receiving sockets, each in its own task, until `finish`.
struct Sockets {
    tasks: Vec<tokio::task::JoinHandle<Receipt>>,
    tally: Arc<Tally>,
    stop: watch::Sender<bool>,
}

impl Sockets {
    /// Starts receiving on every socket; socket `i` expects `expected[i]` payloads.
    fn spawn(sockets: Vec<Ws>, expected: &[u64]) -> Sockets {
        let tally = Arc::new(Tally {
            frames: AtomicU64::new(0),
            pending: AtomicUsize::new(expected.iter().filter(|e| **e > 0).count()),
            done: Notify::new(),
            latency: Histogram::new(),
        });
        if tally.pending.load(Ordering::Relaxed) == 0 {
            tally.done.notify_one();
        }
        let (stop, stopped) = watch::channel(false);
        let tasks = sockets
            .into_iter()
            .zip(expected)
            .map(|(ws, &e)| tokio::spawn(receive(ws, e, tally.clone(), stopped.clone())))
            .collect();
        Sockets { tasks, tally, stop }
    }

    fn frames(&self) -> u64 {
        self.tally.frames.load(Ordering::Relaxed)
    }

    /// Waits until every socket is complete or closed (true), or until no payload arrived for
    /// `stall` (false).
    async fn wait_all(&self, stall: Duration) -> bool {
        super::clients::wait_quiet(&self.tally.done, &self.tally.frames, stall).await
    }

    /// Stops every socket (dropping its connection) and adds up what they saw.
    async fn finish(self) -> Result<Received> {
        let _ = self.stop.send(true);
        let mut r = Received {
            frames: 0,
            last_us: 0,
            closed: 0,
            ended_reason: None,
            latency: Quantiles::default(),
        };
        for task in self.tasks {
            let c = task.await.context("socket task")?;
            r.frames += c.frames;
            r.last_us = r.last_us.max(c.last_us);
            if let Some(reason) = c.ended {
                r.closed += 1;
                r.ended_reason.get_or_insert(reason);
            }
        }
        r.latency = self.tally.latency.quantiles();
        Ok(r)
    }
}

/// The per-socket loop: one clock read and one integer parse per payload.
async fn receive(
    mut ws: Ws,
    expected: u64,
    tally: Arc<Tally>,
    mut stop: watch::Receiver<bool>,
) -> Receipt {
    let mut r = Receipt::default();
    let stopped = stop.changed();
    tokio::pin!(stopped);
    let mut unflushed = 0u64;
    let mut latencies: Vec<u64> = Vec::new();
    let mut settled = expected == 0;
    loop {
        let msg = tokio::select! {
            _ = &mut stopped => break,
            msg = ws.next() => msg,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(cf))) => {
                r.ended = Some(match cf {
                    Some(f) => format!("closed {}: {}", u16::from(f.code), f.reason),
                    None => "closed".into(),
                });
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                r.ended = Some(e.to_string());
                break;
            }
            None => {
                r.ended = Some("end of stream".into());
                break;
            }
        };
        let now = now_micros();
        r.frames += 1;
        r.last_us = now;
        unflushed += 1;
        let sent = text
            .split_once(' ')
            .and_then(|(us, _)| us.parse::<i64>().ok());
        if let Some(sent) = sent {
            latencies.push((now - sent).max(0) as u64);
        }
        if unflushed >= FLUSH || r.frames == expected {
            flush(&tally, &mut unflushed, &mut latencies);
        }
        if r.frames == expected && !settled {
            settled = true;
            tally.settle();
        }
    }
    flush(&tally, &mut unflushed, &mut latencies);
    if !settled && r.ended.is_some() {
        tally.settle();
    }
    r
}

fn flush(tally: &Tally, unflushed: &mut u64, latencies: &mut Vec<u64>) {
    tally.frames.fetch_add(*unflushed, Ordering::Relaxed);
    *unflushed = 0;
    for micros in latencies.drain(..) {
        tally.latency.record(micros);
    }
}
