//! walcast-bench: benchmark scenarios whose figures are measured side by side in one run and
//! printed as markdown tables on stdout (per-run lines go to stderr). It starts its own throwaway
//! Postgres and the release `walcast` binary (`WALCAST_BIN`, else `target/release/walcast`; see
//! the harness). Table rows are medians of `--runs` runs (default 3; `bigtx` defaults to 1).
//!
//! ```text
//! cargo build --release -p walcast -p walcast-tests
//! walcast-bench ingest    [--rows 1000000] [--small 100000] [--runs 3]
//! walcast-bench latency   [--subscribers 100] [--rate 5000] [--seconds 10] [--runs 3]
//! walcast-bench plugin    [--rows 1000000] [--runs 3]
//! walcast-bench idle      [--subscribers 10000] [--runs 3]
//! walcast-bench fanout    [--subscribers 1000] [--rate 500] [--seconds 10] [--batch 10] [--runs 3]
//! walcast-bench selective [--subscribers 100,10000,50000] [--rate 1000] [--seconds 10] [--batch 10] [--runs 3]
//! walcast-bench plugins   [--subscribers 1000] [--groups 1,10,100] [--rate 500] [--seconds 10] [--batch 10] [--runs 3]
//! walcast-bench bigtx     [--rows 10000000] [--runs 1]
//! walcast-bench catchup   [--rows 200000] [--clients 1,100] [--runs 3]
//! walcast-bench resume    [--backlog 10000] [--runs 3]
//! walcast-bench trickle   [--rows 200000] [--slow-rate 100] [--seconds 30] [--runs 3]
//! walcast-bench snapshot  [--rows 1000000] [--runs 3]
//! walcast-bench notify    [--sockets 1,100,1000] [--channels 100] [--rate 2000] [--seconds 5] [--runs 3]
//! walcast-bench policy    [--subscribers 10000] [--owners 100] [--concurrency 50] [--rate 200] [--seconds 5] [--runs 3]
//! walcast-bench replay    [--subscribers 100] [--replays 0,20] [--journal-mib 1024] [--rate 1000] [--seconds 20] [--runs 3] [--before PATH] [--after PATH]
//! walcast-bench ddl       [--tables 100] [--columns 10] [--statements 200] [--runs 5]
//! walcast-bench smoke
//! ```
//!
//! `--subscribers`, `--clients`, `--sockets` and `--groups` take comma lists: one table row per value. Clients
//! are opened 64 handshakes at a time from 127.0.0.2, 127.0.0.3, ... (20,000 per address, so
//! ephemeral ports last) and count once their `subscribed` frame arrived. walcast and the bench each hold one
//! socket per client under the same open-file hard limit: when N + 512 does not fit, the bench
//! says so in a `#` line and measures the largest round thousand that does (limit - 1000).
//!
//! - `ingest`: one workload (`--rows` in one transaction, then `--small` single-row transactions;
//!   0 skips one) is committed into a backlog held by two slots with the same wal2json options.
//!   `pg_recvlogical` drains one into a file on tmpfs, timed from its start; walcast drains the
//!   other to one `*:bench` subscriber, timed from `/readyz` (replication up) to the last row.
//!   Figures: rows/s of each and the median of the per-run ratios.
//! - `latency`: N subscribers on `insert:lat` while 4 connections commit single-row transactions
//!   at `--rate`/s for `--seconds`. Latency = subscriber's clock minus the frame's commit `ts`
//!   (same machine), p50/p99/max per run and their medians.
//! - `plugin` (overhead): the `ingest` big transaction drained twice, plain and through a
//!   `threshold` plugin that passes every row; figure: with/plain rows/s ratio.
//! - `idle`: N idle subscribed connections; figure: walcast RSS growth per connection.
//! - `fanout`: N clients on `insert:fan`, every row to every client. The writer commits `--rate`
//!   rows/s as transactions of `--batch` rows for `--seconds`. Figures over the window from the
//!   first commit to the last delivery: delivered msgs/s (deliveries / window), walcast and bench
//!   CPU in cores, p50/p99/max commit-to-client latency, and the fraction delivered (deliveries /
//!   (N x rows)).
//! - `selective`: table `sel` pre-filled with ids 1..N, client k subscribed to
//!   `update:sel:id.eq.<k>`; the writer updates `--rate` rows/s (ids round-robin over 1..N) in
//!   transactions of `--batch`. Figures: walcast CPU µs per committed change and its ratio to the
//!   first row (flat = matching cost independent of N), delivered vs expected frames (each client
//!   must get exactly its key's updates: clients off = clients with another count, wrong key =
//!   frames for another id), p50/p99 latency.
//! - `plugins`: N clients over G distinct `threshold` groups (`plugin.value=-(i % G)`, so every
//!   group passes every row), walcast with `plugins.max_instances = G + 64`; writer as `fanout`.
//!   Figures per (N, G): delivered msgs/s, walcast CPU in cores and µs per change, p50/p99.
//! - `bigtx`: `--rows` rows in one transaction committed before walcast starts (default session
//!   queue), drained to one `*:bench` subscriber. Figures: seconds and rows/s to deliver, walcast
//!   peak RSS (VmHWM after the last row), and `pg_recvlogical` on the same backlog from a second
//!   slot. One run by default: the backlog alone takes minutes to build.
//! - `catchup` (catch-up rate from the journal): a subscriber on `*:bench` takes its `subscribed`
//!   `pos`, then `--rows` rows are committed in transactions of 1,000 (to keep set-up short; each
//!   row is still its own change) and received by it live, so walcast has journaled them. Then,
//!   per N in `--clients`, N clients open `*:bench&from=<pos>` at once, timed from the first
//!   connect until every client has every row (one backlog per run, replayed by each N in turn).
//!   Each client must get exactly `--rows` change frames in increasing `pos` order; the clients
//!   that did not are a figure. Figures: aggregate changes/s (all clients' frames / seconds),
//!   per-client changes/s, seconds, walcast and bench CPU in cores (left out for windows under
//!   0.5 s: /proc counts 10 ms ticks), failed clients.
//! - `resume` (resume latency): the same set-up with `--backlog` rows, then 20 times per run,
//!   alternately: a connection with `from=<pos>` timed from the start of its TCP connect to its
//!   first replayed change (which must be after `pos`) and to its `subscribed`, and a plain
//!   connection timed to `subscribed`; each dropped after. Figures: medians over runs of each
//!   run's p50 and max.
//! - `trickle` (a slow reader beside a fast one): `--rows` rows in transactions of 1,000
//!   committed back to back with `synchronous_commit` on (the stream runs far ahead of a cohort
//!   log, which holds `sessions.queue_capacity` = 1,024 frames by default, while each transaction
//!   reaches walcast as soon as it commits), first to one fast client on `*:bench` alone, then,
//!   on a fresh walcast, to the same fast client beside a slow one on the same query (one
//!   cohort) that reads a frame, then sleeps until its next read is due, `--slow-rate` reads per
//!   second. The slow client's socket asks for a 4 KiB `SO_RCVBUF` (Linux doubles it and turns
//!   receive autotuning off) and tungstenite reads 4 KiB at a time, so it holds a few dozen
//!   frames, not megabytes; walcast's send buffer (kernel, autotuned up to `net.ipv4.tcp_wmem`'s
//!   max) is on the server side. The window runs from the first commit until the fast client has
//!   every row, at most `--seconds` (30 by default). After it the slow client reads without
//!   pausing until it has every row, its connection ends or 3 s pass without a frame, so a close
//!   frame queued behind unread frames is seen. Figures: fast rows/s alone, beside the slow
//!   client and their ratio, the slow client's frames in the window, and per run how it ended
//!   (`open`, `closed <code>`) and how many rows it had by the end.
//! - `snapshot` (snapshot rate and memory): table `snap` (the `ingest` row: id int primary key,
//!   name, age, height, city) filled with `--rows` rows and vacuumed, then per run, side by side:
//!   `psql -X -c "COPY (SELECT * FROM snap) TO STDOUT" > /dev/null`, timed from its process start
//!   to its exit, and a fresh walcast with one client on `*:snap&snapshot=true`, timed from the
//!   start of its TCP connect to `snapshot_end` (which must count `--rows`, as many `row` frames
//!   as came), both over the Unix socket. walcast's VmRSS is read before the connect (idle) and
//!   sampled every 20 ms until `snapshot_end` (peak); VmHWM after is shown too (it includes
//!   start-up). Figures: psql and walcast rows/s and their ratio, connect to first `row` frame,
//!   RSS idle, peak and peak - idle (target: at most 64 MiB), VmHWM.
//! - `notify` (the LISTEN/NOTIFY relay): per N in `--sockets`, N `/listen/bench` sockets on one
//!   channel, then `--channels` sockets on as many channels (`bench_0`, `bench_1`, ..., one
//!   socket each). 4 connections send `SELECT pg_notify(channel, payload)` (autocommit, one
//!   notification per transaction), `--rate` per second in total for `--seconds`, notification
//!   `i` on channel `i % channels`; each payload is `<send time in µs since the epoch> <i>`, the
//!   send time read right before the statement. Latency = socket's clock minus that time (same
//!   machine). The window runs from the first send until every socket has every payload of its
//!   channel, was closed (4008 when its 1,024-notification queue overflows) or delivery stalled.
//!   Figures: payloads/s received (deliveries / window), the fraction delivered (deliveries /
//!   (sockets x payloads sent to their channel)), p50/p99/max latency, walcast RSS growth per
//!   socket (after the sockets opened and 1 s to settle, before any notification), walcast and
//!   bench CPU in cores over the window, and sockets closed by walcast.
//! - `policy` (JWT auth and a row policy, on vs off): N subscribers on table `pol` (id, owner,
//!   v), subscriber k seeing owner `user<k % owners>` (`--owners` cohorts). `off`: no auth,
//!   `query=*:pol&filter=owner.eq.user<k>`; `on`: `WALCAST_AUTH_MODE=jwt` with an HS256 secret and
//!   a policy file whose rule for role `member` on `public.pol` has `filters =
//!   ["owner.eq.{sub}"]`, each subscriber with its own token (`sub`, role `member`) in
//!   `access_token=` and `query=*:pol`. Both modes form the same cohorts and deliver the same
//!   frames; per run `off` then `on`, each on a fresh database and walcast. Subscribers connect
//!   `--concurrency` at a time; subscribe latency = start of the TCP connect to `subscribed`.
//!   Then `--rate` rows/s (transactions of 10) for `--seconds`, each row with a random owner.
//!   Figures per mode: subscribe p50/p99/max and subscribes/s, walcast CPU µs per row written
//!   (first commit to last delivery), delivered vs expected frames (each subscriber exactly its
//!   owner's rows), and the median of the per-run on/off ratios.
//! - `replay` (live latency beside replays of a large journal): one database and one journal
//!   directory for the whole run. A walcast (the first build) fills the journal with rows of
//!   `busy` (`INSERT ... SELECT generate_series`, 100,000 rows a statement, each waited for until
//!   walcast confirmed the slot past it) until its segments hold `--journal-mib`; a subscription
//!   taken before the first row gives the journal's oldest position. Then per run, per build
//!   (`--before PATH`, `--after PATH`; the order alternates from run to run; without them, the
//!   binary the harness finds) and per N in `--replays`: that build started on the same journal
//!   and database, N subscribers on `insert:busy` (one `--subscribers` value), 4 connections
//!   committing single-row transactions at `--rate`/s for `--seconds` (`synchronous_commit`
//!   on), and at the same time N clients opening `*:quiet&from=<oldest>` (no change of `quiet`
//!   is ever committed, so each reads the whole journal and sends nothing). Latency =
//!   subscriber's clock minus the frame's commit `ts`. Figures per build and N: p50/p99/max and
//!   the fraction delivered, how long until the last replay client had its `subscribed`, how long
//!   until no session was catching up (`walcast_catchup_sessions` polled every 100 ms, from the
//!   replays' connect, capped at 300 s), walcast CPU in cores over the window, frames, errors or
//!   closes at the replay clients (must be 0), and with two builds the ratio before / after of
//!   p99, per run and its median.
//! - `ddl` (the cost of `walcast setup`'s event triggers on DDL): per run two databases with
//!   `--tables` tables of `--columns` columns, the triggers installed in one by `walcast setup`;
//!   on each, over one Unix-socket connection, `--statements` statements alternating `ALTER
//!   TABLE t<k> ADD COLUMN x int` and `DROP COLUMN x` (tables round-robin), each timed from send
//!   to reply, after an untimed pass of the same statements; which database goes first
//!   alternates. Figures: median and p90 µs per statement without and with, the whole pass, and
//!   the median of the per-run ratios of the medians.
//! - `smoke`: every scenario once with tiny parameters (3 clients, 2 groups, 200 rows, rate 100
//!   for 1 s, bigtx 2,000 rows, catchup 1 and 3 clients, resume 200 rows, snapshot 200 rows,
//!   notify 3 sockets and 3 channels, replay 2 clients on a 4 MiB journal, ddl 5 tables of 3
//!   columns and 20 statements) on one Postgres cluster; what the e2e suite runs.
//!
//! `plugin` and `plugins` need `plugins/dist/threshold.wasm` (`sh plugins/build.sh`).

mod args;
mod clients;
mod ddl;
mod ingest;
mod journal;
mod latency;
mod measure;
mod notify;
mod plugins;
mod policy;
mod replay;
mod selective;
mod snapshot;
mod workload;

use anyhow::{Context, Result};
use walcast_tests::{PgCluster, PgOptions};

use args::Args;

/// A cluster tuned for throughput: big transactions decode in memory and commits do not wait
/// for the disk (writers that need prompt commits set `synchronous_commit` per connection).
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

/// Every scenario `smoke` runs, in order.
const SMOKE: [&str; 15] = [
    "ingest",
    "latency",
    "plugin",
    "idle",
    "fanout",
    "selective",
    "plugins",
    "bigtx",
    "catchup",
    "resume",
    "trickle",
    "snapshot",
    "notify",
    "replay",
    "ddl",
];

#[tokio::main]
async fn main() -> Result<()> {
    let names: Vec<&str> = args::SCENARIOS.iter().map(|(n, _)| *n).collect();
    let usage = format!(
        "usage: walcast-bench {} [flags] (see the header of tests/src/bin/walcast-bench/main.rs)",
        names.join("|")
    );
    let first = std::env::args().nth(1);
    if matches!(first.as_deref(), Some("help" | "-h" | "--help")) {
        println!("{usage}");
        return Ok(());
    }
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("walcast-bench: {e:#}\n{usage}");
            std::process::exit(2);
        }
    };
    let cluster = cluster()?;
    if args.scenario == "smoke" {
        for name in SMOKE {
            run(&cluster, &args::smoke(name))
                .await
                .with_context(|| format!("smoke: {name}"))?;
            println!();
        }
        return Ok(());
    }
    run(&cluster, &args).await
}

async fn run(cluster: &PgCluster, args: &Args) -> Result<()> {
    match args.scenario.as_str() {
        "ingest" => ingest::ingest(cluster, args).await,
        "latency" => latency::latency(cluster, args).await,
        "plugin" => plugins::plugin_overhead(cluster, args).await,
        "idle" => latency::idle(cluster, args).await,
        "fanout" => latency::fanout(cluster, args).await,
        "selective" => selective::selective(cluster, args).await,
        "plugins" => plugins::plugin_groups(cluster, args).await,
        "bigtx" => ingest::bigtx(cluster, args).await,
        "catchup" => journal::catchup(cluster, args).await,
        "resume" => journal::resume(cluster, args).await,
        "trickle" => journal::trickle(cluster, args).await,
        "snapshot" => snapshot::snapshot(cluster, args).await,
        "notify" => notify::notify(cluster, args).await,
        "policy" => policy::policy(cluster, args).await,
        "replay" => replay::replay(cluster, args).await,
        "ddl" => ddl::ddl(cluster, args).await,
        other => anyhow::bail!("no scenario {other}"),
    }
}
