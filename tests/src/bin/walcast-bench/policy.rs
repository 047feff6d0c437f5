//! `policy`: what JWT auth plus a row policy costs at subscribe time and per change. The same N
//! subscribers over the same owner cohorts, once with the owner filter asked for explicitly
//! (`off`: no auth) and once compiled from each subscriber's token by a policy rule (`on`), so
//! both modes form the same cohorts and deliver the same frames.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use futures_util::{stream, StreamExt, TryStreamExt};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use walcast_tests::{PgCluster, TestDb, Walcast};

use crate::args::Args;
use crate::clients::{self, Fleet, Ws};
use crate::measure::{median, Histogram, Quantiles};
use crate::workload::{self, Pace, Statement};

const SECRET: &[u8] = b"walcast-bench-policy-secret-0123456789abcdef";
const TABLE: &str = "pol";
/// Clients per loopback source address (as `clients`): one address has ~28,000 ephemeral ports.
const PER_SOURCE: usize = 20_000;

/// The policy file of the `on` mode: members see the rows they own.
fn policy_toml() -> String {
    format!(
        "role_claim = \"role\"\n\n[roles.member]\n[[roles.member.tables]]\nrule = \"own-rows\"\n\
         table = \"public.{TABLE}\"\nfilters = [\"owner.eq.{{sub}}\"]\n"
    )
}

/// Owner (0..owners) of each row of each transaction, and rows per owner: uniform random, the
/// same sequence for both modes of one run.
fn schedule(owners: usize, pace: Pace, seed: u64) -> (Vec<Vec<i32>>, Vec<u64>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut expected = vec![0u64; owners];
    let batches = (0..pace.transactions())
        .map(|t| {
            (0..pace.rows_in(t))
                .map(|_| {
                    let o = rng.random_range(0..owners);
                    expected[o] += 1;
                    o as i32
                })
                .collect()
        })
        .collect();
    (batches, expected)
}

/// One HS256 token per subscriber: `sub` = its owner, role `member`, an hour to live.
fn tokens(n: usize, owners: usize) -> Result<Vec<String>> {
    let key = EncodingKey::from_secret(SECRET).context("HMAC key")?;
    let exp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 3600;
    (0..n)
        .map(|k| {
            let claims = serde_json::json!({
                "sub": format!("user{}", k % owners),
                "role": "member",
                "exp": exp,
            });
            encode(&Header::new(Algorithm::HS256), &claims, &key).context("sign token")
        })
        .collect()
}

/// Opens `n` clients, `concurrency` at a time, client `i` on `/ws?{query(i)}`; each one's
/// subscribe latency (start of its TCP connect to its `subscribed` frame) goes into the
/// histogram. Returns the clients in index order and the wall seconds of the whole phase.
async fn subscribe_all(
    server: &Walcast,
    n: usize,
    concurrency: usize,
    query: impl Fn(usize) -> String,
) -> Result<(Vec<Ws>, Quantiles, f64)> {
    let addr: SocketAddr = server.addr();
    let base = server.ws_base();
    let hist = Arc::new(Histogram::new());
    let phase = Instant::now();
    let mut opened: Vec<(usize, Ws)> = stream::iter(0..n)
        .map(|i| {
            let url = format!("{base}/ws?{}", query(i));
            let hist = hist.clone();
            async move {
                let source = Ipv4Addr::new(127, 0, 0, 2 + (i / PER_SOURCE) as u8);
                let start = Instant::now();
                let ws = clients::open_one(addr, &url, source)
                    .await
                    .with_context(|| format!("subscriber {i} of {n}"))?;
                hist.record(start.elapsed().as_micros() as u64);
                anyhow::Ok((i, ws))
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let wall = phase.elapsed().as_secs_f64();
    opened.sort_unstable_by_key(|(i, _)| *i);
    Ok((
        opened.into_iter().map(|(_, ws)| ws).collect(),
        hist.quantiles(),
        wall,
    ))
}

/// Per-run figures of one mode.
#[derive(Default)]
struct Runs {
    sub_p50: Vec<f64>,
    sub_p99: Vec<f64>,
    sub_max: Vec<f64>,
    subscribes_per_s: Vec<f64>,
    us_per_change: Vec<f64>,
    delivered: Vec<f64>,
    /// Worst run: a miss in any run is worth seeing.
    clients_off: usize,
}

/// `median (run 1, run 2, ...)` with `decimals`.
fn cell(v: &[f64], decimals: usize) -> String {
    let runs: Vec<String> = v.iter().map(|x| format!("{x:.decimals$}")).collect();
    let m = median(&mut v.to_vec());
    if v.len() > 1 {
        format!("{m:.decimals$} ({})", runs.join(", "))
    } else {
        format!("{m:.decimals$}")
    }
}

pub async fn policy(cluster: &PgCluster, args: &Args) -> Result<()> {
    let pace = Pace::of(args);
    let owners = args.owners.max(1);
    let concurrency = args.concurrency.max(1);
    println!(
        "# policy: N subscribers on table {TABLE} over {owners} owners (subscriber k sees owner user<k % {owners}>); \
         off: no auth, query=*:{TABLE}&filter=owner.eq.user<k % {owners}>; \
         on: WALCAST_AUTH_MODE=jwt, an HS256 token per subscriber (sub = user<k % {owners}>, role member) \
         in access_token=, query=*:{TABLE}, policy rule filters = [\"owner.eq.{{sub}}\"]; \
         subscribed {concurrency} at a time; writer: {} of INSERT with a random owner each; \
         medians of {} runs (per-run values in brackets), modes interleaved per run",
        pace.shape(),
        args.runs
    );
    let (counts, notes) = clients::fit_all(&args.subscribers);
    notes.iter().for_each(|n| println!("{n}"));
    let policy_file =
        std::env::temp_dir().join(format!("walcast-bench-policy-{}.toml", std::process::id()));
    std::fs::write(&policy_file, policy_toml()).context("write the policy file")?;
    let policy_path = policy_file.to_string_lossy().into_owned();
    println!("| subscribers | mode | subscribe p50 ms | subscribe p99 ms | subscribe max ms | subscribes/s | walcast CPU µs per change | delivered | expected | clients off | runs |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for n in counts {
        let tokens = tokens(n, owners)?;
        let mut modes = [Runs::default(), Runs::default()];
        let mut expected_total = 0u64;
        for run in 0..args.runs {
            let (batches, per_owner) = schedule(owners, pace, run as u64);
            let changes = pace.rows();
            expected_total = (0..n).map(|k| per_owner[k % owners]).sum();
            for (m, mode) in ["off", "on"].into_iter().enumerate() {
                let db = TestDb::new(cluster, &format!("policy{mode}{run}")).await?;
                db.exec(&format!(
                    "CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, owner text NOT NULL, v int)"
                ))
                .await?;
                let mut builder = Walcast::builder(&db).prefer_release();
                if mode == "on" {
                    builder = builder
                        .env("WALCAST_AUTH_MODE", "jwt")
                        .env("WALCAST_JWT_SECRET", std::str::from_utf8(SECRET)?)
                        .env("WALCAST_POLICY_FILE", &policy_path);
                }
                let server = builder.start().await?;
                let (ws, sub, wall) = subscribe_all(&server, n, concurrency, |k| {
                    if mode == "on" {
                        format!("query=*:{TABLE}&access_token={}", tokens[k])
                    } else {
                        format!("query=*:{TABLE}&filter=owner.eq.user{}", k % owners)
                    }
                })
                .await
                .with_context(|| format!("policy {mode}: subscribing"))?;
                let fleet = Fleet::spawn(ws, |k| per_owner[k % owners], None);
                let insert = Statement::Update(
                    "INSERT INTO pol (owner, v) SELECT 'user' || o, 0 FROM unnest($1::int[]) o",
                    &batches,
                );
                let s = workload::stream(&server, &db, fleet, pace, &insert).await?;
                let r = &s.report;
                r.warn_if_incomplete(&format!("policy {n} {mode} run {run}"));
                let us = s.cpu_us_per_change(changes);
                eprintln!(
                    "  policy {n} {mode} run {run}: subscribe p50 {:.2} ms p99 {:.2} ms max {:.2} ms ({:.0}/s); \
                     {us:.1} µs walcast CPU per change ({:.2} cores), {} of {} frames",
                    sub.p50_ms,
                    sub.p99_ms,
                    sub.max_ms,
                    n as f64 / wall,
                    s.walcast_cores(),
                    r.frames,
                    r.expected
                );
                let m = &mut modes[m];
                m.sub_p50.push(sub.p50_ms);
                m.sub_p99.push(sub.p99_ms);
                m.sub_max.push(sub.max_ms);
                m.subscribes_per_s.push(n as f64 / wall);
                m.us_per_change.push(us);
                m.delivered.push(r.frames as f64);
                m.clients_off = m.clients_off.max(r.short + r.over);
                drop(server);
            }
        }
        for (mode, m) in ["off", "on"].iter().zip(&modes) {
            println!(
                "| {n} | {mode} | {} | {} | {} | {} | {} | {} | {expected_total} | {} | {} |",
                cell(&m.sub_p50, 2),
                cell(&m.sub_p99, 2),
                cell(&m.sub_max, 1),
                cell(&m.subscribes_per_s, 0),
                cell(&m.us_per_change, 1),
                cell(&m.delivered, 0),
                m.clients_off,
                args.runs
            );
        }
        // Ratios of each run's pair (the modes ran back to back), then their median.
        let ratio = |on: &[f64], off: &[f64]| -> String {
            let r: Vec<f64> = on
                .iter()
                .zip(off)
                .map(|(a, b)| if *b > 0.0 { a / b } else { f64::NAN })
                .collect();
            cell(&r, 2)
        };
        let [off, on] = &modes;
        println!(
            "| {n} | on / off | {} | {} | {} | {} | {} | | | | {} |",
            ratio(&on.sub_p50, &off.sub_p50),
            ratio(&on.sub_p99, &off.sub_p99),
            ratio(&on.sub_max, &off.sub_max),
            ratio(&on.subscribes_per_s, &off.subscribes_per_s),
            ratio(&on.us_per_change, &off.us_per_change),
            args.runs
        );
    }
    let _ = std::fs::remove_file(&policy_file);
    Ok(())
}
