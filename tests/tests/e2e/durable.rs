//! Named durable subscriptions (`sub=`): a client acks positions; after a `kill -9` of walcast, a
//! Postgres restart or a terminated walsender it resumes right after its last acknowledged
//! position: every change at least once, in commit order, duplicates only after the last position
//! an `acked` frame confirmed. Also the refusals before the upgrade, the `bad_ack`/`bad_message`
//! error frames and `/v1/subscriptions` (list with lag, delete with 4011).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use walcast_tests::{
    http_delete, http_error, wait_for, Frame, JournalDir, PgCluster, PgOptions, TestDb, Walcast,
    WsClient, STEP,
};

use crate::LONG;

/// Rows of the streaming tests, one transaction each.
const ROWS: i64 = 200_000;
/// Commits per second the writer aims at (about 20 s for `ROWS`).
const RATE: f64 = 10_000.0;
/// The streaming client acks the position of every `ACK_EVERY`th change it receives.
const ACK_EVERY: usize = 1_000;
const QUERY: &str = "insert:items";

// ---------------------------------------------------------------------------------------------
// The writer: single-row transactions in id order, surviving Postgres restarts.

/// Where the writer connects: the cluster's Unix socket, as the harness does.
fn writer_config(db: &TestDb<'_>) -> tokio_postgres::Config {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host_path(db.cluster().socket_dir())
        .port(db.cluster().port())
        .user("postgres")
        .dbname(db.name());
    cfg
}

async fn connect_retrying(cfg: &tokio_postgres::Config) -> Result<tokio_postgres::Client> {
    let deadline = Instant::now() + LONG;
    loop {
        match cfg.connect(tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                return Ok(client);
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(anyhow::Error::new(e).context("writer cannot reconnect to Postgres"))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Commits rows `1..=n` of `items` in id order, one transaction per row (batches of explicit
/// `BEGIN; INSERT; COMMIT;` in one simple query, so commit order is id order), at most `per_sec`
/// a second. When the connection breaks (Postgres restarting) it reconnects and goes on after
/// the highest committed id. Returns how often it reconnected.
async fn write_rows(cfg: tokio_postgres::Config, n: i64, per_sec: f64) -> Result<u32> {
    const BATCH: i64 = 100;
    let started = Instant::now();
    let mut reconnects = 0u32;
    let mut last_error = String::new();
    loop {
        if reconnects > 50 {
            bail!("writer gave up after {reconnects} reconnects; last error: {last_error}");
        }
        let conn = connect_retrying(&cfg).await?;
        let mut next = match conn
            .query_one("SELECT coalesce(max(id), 0) + 1 FROM items", &[])
            .await
        {
            Ok(row) => row.get::<_, i64>(0),
            Err(e) => {
                last_error = e.to_string();
                reconnects += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut sql = String::new();
        while next <= n {
            let hi = (next + BATCH - 1).min(n);
            sql.clear();
            for id in next..=hi {
                let _ = write!(sql, "BEGIN;INSERT INTO items (id) VALUES ({id});COMMIT;");
            }
            if let Err(e) = conn.batch_execute(&sql).await {
                last_error = e.to_string();
                break;
            }
            next = hi + 1;
            let due = started + Duration::from_secs_f64((next - 1) as f64 / per_sec);
            tokio::time::sleep_until(due.into()).await;
        }
        if next > n {
            return Ok(reconnects);
        }
        reconnects += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The streaming client's bookkeeping.

/// One `sub=` client's view across all its sessions, checked frame by frame against the promise:
/// each later session starts right after a position this client acked (or the creation
/// position), not before the last position an `acked` frame confirmed; inside a session ids are
/// consecutive (commit order, no gap, no duplicate); a re-delivered change carries the position
/// it had the first time.
struct Tracker {
    name: String,
    rows: i64,
    /// Deliveries per id (index 0 unused).
    count: Vec<u32>,
    /// The position of each id when first delivered.
    pos_of: Vec<String>,
    /// The position `subscribed` named when the subscription was created.
    created: Option<String>,
    /// Every position this client acked (or may have: inserted before sending), with its id;
    /// the creation position maps to 0.
    acks_sent: BTreeMap<String, i64>,
    /// The highest position an `acked` frame confirmed.
    confirmed: Option<String>,
    /// What re-deliveries of the current session must lie after: `confirmed` when the previous
    /// session ended (else the creation position).
    floor: Option<String>,
    distinct: i64,
    received: u64,
    duplicates: u64,
    duplicates_not_after_confirmed: u64,
    sessions: u32,
    since_ack: usize,
    /// Per session: the id expected next and the last position delivered.
    next_id: i64,
    last_pos: Option<String>,
}

enum Outcome {
    /// The stop condition held; the session is still open.
    Paused(Box<WsClient>),
    /// The session ended (close frame or end of stream), with what ended it.
    Ended(String),
}

impl Outcome {
    fn paused(self, what: &str) -> Result<WsClient> {
        match self {
            Outcome::Paused(c) => Ok(*c),
            Outcome::Ended(why) => bail!("{what}: the session ended ({why})"),
        }
    }
}

impl Tracker {
    fn new(name: &str, rows: i64) -> Tracker {
        let len = usize::try_from(rows).unwrap_or(0) + 1;
        Tracker {
            name: name.to_owned(),
            rows,
            count: vec![0; len],
            pos_of: vec![String::new(); len],
            created: None,
            acks_sent: BTreeMap::new(),
            confirmed: None,
            floor: None,
            distinct: 0,
            received: 0,
            duplicates: 0,
            duplicates_not_after_confirmed: 0,
            sessions: 0,
            since_ack: 0,
            next_id: 1,
            last_pos: None,
        }
    }

    /// A new session's `subscribed` frame.
    fn begin(&mut self, hello: &Value) -> Result<()> {
        ensure!(
            hello["type"] == "subscribed" && hello["sub"] == self.name.as_str(),
            "subscribed frame names the subscription: {hello}"
        );
        let pos = hello["pos"]
            .as_str()
            .with_context(|| format!("subscribed without pos: {hello}"))?
            .to_owned();
        self.sessions += 1;
        self.since_ack = 0;
        self.last_pos = None;
        if self.created.is_none() {
            self.created = Some(pos.clone());
            self.floor = Some(pos.clone());
            self.acks_sent.insert(pos, 0);
            self.next_id = 1;
            return Ok(());
        }
        let id = *self.acks_sent.get(&pos).with_context(|| {
            format!(
                "session {}: subscribed.pos {pos} is neither the creation position nor a position \
                 this client acked (last confirmed {:?})",
                self.sessions, self.confirmed
            )
        })?;
        if let Some(confirmed) = &self.confirmed {
            ensure!(
                pos >= *confirmed,
                "session {}: resumes after {pos}, before {confirmed} which an acked frame confirmed",
                self.sessions
            );
        }
        self.floor = self.confirmed.clone().or_else(|| self.created.clone());
        self.next_id = id + 1;
        Ok(())
    }

    /// True once the current session delivered the last row and every row arrived.
    fn complete(&self) -> bool {
        self.next_id > self.rows && self.distinct == self.rows
    }

    fn change(&mut self, v: &Value, raw: &str) -> Result<(i64, String)> {
        let id = v["new"]["id"]
            .as_i64()
            .with_context(|| format!("change without new.id: {raw}"))?;
        let pos = v["pos"]
            .as_str()
            .with_context(|| format!("change without pos: {raw}"))?
            .to_owned();
        ensure!(
            id == self.next_id,
            "session {}: expected id {} next (commit order, no gap, no duplicate within a session; \
             {} received, {} distinct), got {raw}",
            self.sessions,
            self.next_id,
            self.received,
            self.distinct
        );
        ensure!(id >= 1 && id <= self.rows, "unexpected id {id}: {raw}");
        if let Some(last) = &self.last_pos {
            ensure!(
                pos > *last,
                "session {}: pos {pos} after {last} does not increase",
                self.sessions
            );
        }
        let i = usize::try_from(id)?;
        if self.count[i] == 0 {
            self.distinct += 1;
            self.pos_of[i] = pos.clone();
        } else {
            self.duplicates += 1;
            ensure!(
                self.pos_of[i] == pos,
                "id {id} re-delivered at {pos}, first delivered at {}",
                self.pos_of[i]
            );
            if self.floor.as_ref().is_none_or(|f| pos <= *f) {
                self.duplicates_not_after_confirmed += 1;
            }
        }
        self.count[i] += 1;
        self.received += 1;
        self.next_id = id + 1;
        self.last_pos = Some(pos.clone());
        Ok((id, pos))
    }

    fn acked(&mut self, v: &Value) -> Result<()> {
        ensure!(
            v["sub"] == self.name.as_str(),
            "acked names the subscription: {v}"
        );
        let pos = v["pos"]
            .as_str()
            .with_context(|| format!("acked without pos: {v}"))?;
        // The creation position counts: a resumed session may be told where it stands.
        ensure!(
            self.acks_sent.contains_key(pos),
            "acked {pos}, a position this client never acked: {v}"
        );
        if let Some(confirmed) = &self.confirmed {
            ensure!(
                pos >= confirmed.as_str(),
                "acked went back from {confirmed} to {pos}"
            );
        }
        self.confirmed = Some(pos.to_owned());
        Ok(())
    }

    /// Reads frames until `stop` holds (checked before each frame) or the session ends; acks the
    /// position of every `ACK_EVERY`th change.
    async fn read(&mut self, mut c: WsClient, stop: impl Fn(&Tracker) -> bool) -> Result<Outcome> {
        let mut last_frame = Instant::now();
        loop {
            if stop(self) {
                return Ok(Outcome::Paused(Box::new(c)));
            }
            let frame =
                match tokio::time::timeout(Duration::from_millis(500), c.next_frame(LONG)).await {
                    Err(_) => {
                        ensure!(
                            last_frame.elapsed() < LONG,
                            "session {}: no frame for {LONG:?}; {} of {} rows arrived, next id {}",
                            self.sessions,
                            self.distinct,
                            self.rows,
                            self.next_id
                        );
                        continue;
                    }
                    Ok(frame) => frame?,
                };
            last_frame = Instant::now();
            match frame {
                Frame::Json(v, raw) => match v["type"].as_str() {
                    Some("change") => {
                        let (id, pos) = self.change(&v, &raw)?;
                        self.since_ack += 1;
                        if self.since_ack >= ACK_EVERY {
                            self.since_ack = 0;
                            self.acks_sent.insert(pos.clone(), id);
                            if let Err(e) = c.ack(&pos).await {
                                return Ok(Outcome::Ended(format!("ack not sent: {e:#}")));
                            }
                        }
                    }
                    Some("acked") => self.acked(&v)?,
                    _ => bail!("session {}: unexpected frame {raw}", self.sessions),
                },
                Frame::Close(code, reason) => {
                    return Ok(Outcome::Ended(format!("close {code:?} {reason}")))
                }
                Frame::Ended(why) => return Ok(Outcome::Ended(why)),
            }
        }
    }

    /// The final verdict over all sessions.
    fn finish(&self, what: &str) -> Result<()> {
        let missing: Vec<usize> = (1..self.count.len())
            .filter(|&i| self.count[i] == 0)
            .take(10)
            .collect();
        eprintln!(
            "{what}: {} sessions, {} frames, {} distinct of {}, {} re-delivered, last confirmed {:?}",
            self.sessions,
            self.received,
            self.distinct,
            self.rows,
            self.duplicates,
            self.confirmed
        );
        ensure!(
            self.distinct == self.rows,
            "{what}: {} of {} rows arrived; first missing {missing:?}",
            self.distinct,
            self.rows
        );
        ensure!(
            self.duplicates_not_after_confirmed == 0,
            "{what}: {} re-delivered changes at or before the last confirmed ack",
            self.duplicates_not_after_confirmed
        );
        ensure!(
            self.confirmed.is_some(),
            "{what}: no ack was ever confirmed"
        );
        Ok(())
    }
}

/// Connects `sub=<name>` again, retrying while the server still holds the previous session
/// (409 `subscription_busy`), cannot reach Postgres (503) or is not listening yet.
async fn reconnect(server: &Walcast, name: &str, query: &str) -> Result<(WsClient, Value)> {
    let deadline = Instant::now() + LONG;
    loop {
        match WsClient::try_connect(server, &[("query", query), ("sub", name)]).await {
            Ok(Ok(mut c)) => {
                let hello = c
                    .expect_subscribed()
                    .await
                    .with_context(|| format!("resuming {name}"))?;
                return Ok((c, hello));
            }
            Ok(Err((status, body)))
                if (status == 503 || (status == 409 && body.contains("subscription_busy")))
                    && Instant::now() < deadline => {}
            Ok(Err((status, body))) => bail!("resuming {name}: {status} {body}"),
            Err(_) if Instant::now() < deadline => {}
            Err(e) => return Err(e.context(format!("resuming {name}"))),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Terminates walcast's walsender (the active pid of `slot`), waiting for it to be up.
async fn terminate_walsender(admin: &tokio_postgres::Client, slot: &str) -> Result<i32> {
    wait_for(
        "walcast's walsender to terminate",
        STEP,
        Duration::from_millis(100),
        || async move {
            let row = admin
                .query_one(
                    "SELECT max(active_pid), count(pg_terminate_backend(active_pid))
                       FROM pg_replication_slots s JOIN pg_stat_activity a ON a.pid = s.active_pid
                      WHERE s.slot_name = $1 AND a.backend_type = 'walsender'",
                    &[&slot],
                )
                .await?;
            Ok((row.get::<_, i64>(1) == 1).then(|| row.get::<_, i32>(0)))
        },
    )
    .await
}

async fn stream_test_db<'c>(cluster: &'c PgCluster, label: &str) -> Result<TestDb<'c>> {
    let db = TestDb::new(cluster, label).await?;
    db.exec("CREATE TABLE items (id int8 primary key)").await?;
    Ok(db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_resumes_after_the_last_confirmed_ack() -> Result<()> {
    const KILL_AT: u64 = 60_000;
    let db = stream_test_db(PgCluster::shared(), "subkill").await?;
    let journal = JournalDir::new("subkill")?;
    let start = || {
        Walcast::builder(&db)
            .env("WALCAST_JOURNAL_DIR", journal.path())
            .start()
    };
    let mut server = start().await?;
    let name = "orders-feed.v1";
    let mut t = Tracker::new(name, ROWS);
    let (c, hello) = WsClient::subscribe(&server, &[("query", QUERY), ("sub", name)]).await?;
    t.begin(&hello)?;
    let writer = tokio::spawn(write_rows(writer_config(&db), ROWS, RATE));

    let c = t
        .read(c, |t| t.received >= KILL_AT)
        .await?
        .paused("before the kill")?;
    ensure!(
        t.confirmed.is_some(),
        "no acked frame in the first {} changes",
        t.received
    );
    server.kill()?;
    // What walcast wrote before it died is still in the socket: acked frames count.
    let why = match t.read(c, |_| false).await? {
        Outcome::Ended(why) => why,
        Outcome::Paused(_) => unreachable!("never stops"),
    };
    eprintln!(
        "killed after {} frames ({why}); last confirmed ack {:?}",
        t.received, t.confirmed
    );
    // The writer goes on while walcast is down.
    tokio::time::sleep(Duration::from_secs(2)).await;
    server = start().await?;
    let (c, hello) = reconnect(&server, name, QUERY).await?;
    t.begin(&hello)?;
    eprintln!("resumed at {hello}");
    match t
        .read(c, |t| t.complete())
        .await
        .with_context(|| format!("walcast stderr:\n{}", server.stderr_tail(30)))?
    {
        Outcome::Paused(c) => c.close().await,
        Outcome::Ended(why) => bail!("the resumed session ended: {why}"),
    }
    writer.await??;
    t.finish("kill -9")
}

/// Streams `ROWS` to a `sub=` client; `disrupt` runs once when the client has received `at`
/// changes per entry. Sessions the server ends are resumed with the same `sub=`.
async fn stream_through_disruptions(
    server: &Walcast,
    db: &TestDb<'_>,
    name: &str,
    at: &[u64],
    mut disrupt: impl AsyncFnMut(usize) -> Result<()>,
) -> Result<Tracker> {
    let mut t = Tracker::new(name, ROWS);
    let (mut c, hello) = WsClient::subscribe(server, &[("query", QUERY), ("sub", name)]).await?;
    t.begin(&hello)?;
    let writer = tokio::spawn(write_rows(writer_config(db), ROWS, RATE));
    let mut done = 0;
    let mut disconnects = 0;
    loop {
        let due = at.get(done).copied();
        let outcome = t
            .read(c, move |t| {
                t.complete() || due.is_some_and(|d| t.received >= d)
            })
            .await
            .with_context(|| format!("walcast stderr:\n{}", server.stderr_tail(30)))?;
        c = match outcome {
            Outcome::Paused(c) if t.complete() => {
                c.close().await;
                break;
            }
            Outcome::Paused(c) => {
                disrupt(done).await?;
                done += 1;
                *c
            }
            Outcome::Ended(why) => {
                disconnects += 1;
                ensure!(disconnects <= 10, "{disconnects} disconnects; last: {why}");
                eprintln!(
                    "session {} ended after {} frames: {why}",
                    t.sessions, t.received
                );
                let (c, hello) = reconnect(server, name, QUERY).await?;
                t.begin(&hello)?;
                c
            }
        };
    }
    ensure!(
        done == at.len(),
        "only {done} of {} disruptions ran",
        at.len()
    );
    let reconnects = writer.await??;
    eprintln!("writer reconnected {reconnects} times; client disconnected {disconnects} times");
    Ok(t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_mid_stream_keeps_the_sub_promise() -> Result<()> {
    let cluster = PgCluster::start_new(PgOptions::default())?;
    let db = stream_test_db(&cluster, "subpgrestart").await?;
    let server = Walcast::start(&db).await?;
    let t = stream_through_disruptions(&server, &db, "pg-restart", &[70_000], async |_| {
        tokio::task::block_in_place(|| -> Result<()> {
            cluster.stop()?;
            std::thread::sleep(Duration::from_secs(1));
            cluster.start()
        })
    })
    .await?;
    t.finish("postgres restart")?;
    let reconnects = server
        .metric("walcast_replication_reconnects_total")
        .await?
        .unwrap_or(0.0);
    ensure!(reconnects >= 1.0, "walcast counted {reconnects} reconnects");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walsender_terminated_mid_stream_keeps_the_sub_promise() -> Result<()> {
    let cluster = PgCluster::shared();
    let db = stream_test_db(cluster, "subwalsender").await?;
    let server = Walcast::start(&db).await?;
    let admin = cluster.connect("postgres").await?;
    let slot = db.slot().to_owned();
    let cuts = [40_000, 90_000, 140_000];
    let t = stream_through_disruptions(&server, &db, "walsender-cut", &cuts, async |i| {
        let pid = terminate_walsender(&admin, &slot).await?;
        eprintln!("cut {i}: terminated walsender {pid}");
        Ok(())
    })
    .await?;
    t.finish("walsender terminated")?;
    let reconnects = server
        .metric("walcast_replication_reconnects_total")
        .await?
        .unwrap_or(0.0);
    ensure!(
        reconnects >= cuts.len() as f64,
        "walcast counted {reconnects} reconnects for {} cuts",
        cuts.len()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Small, exact scenarios.

/// Commits `ids`, one transaction each.
async fn commit_rows(db: &TestDb<'_>, ids: impl IntoIterator<Item = i64>) -> Result<()> {
    let mut sql = String::new();
    for id in ids {
        let _ = write!(sql, "BEGIN;INSERT INTO items (id) VALUES ({id});COMMIT;");
    }
    db.exec(&sql).await
}

/// The next frame that is not an `acked` frame (the protocol sends one per persist of this
/// subscription's acks).
async fn next_but_acked(c: &mut WsClient) -> Result<Frame> {
    loop {
        match c.next_frame(STEP).await? {
            Frame::Json(v, _) if v["type"] == "acked" && v["pos"].is_string() => {}
            other => return Ok(other),
        }
    }
}

/// Reads change frames (skipping `acked` frames) and requires exactly `want` ids, in order, with
/// increasing positions; returns (id, pos) of each.
async fn rows(
    c: &mut WsClient,
    want: impl IntoIterator<Item = i64>,
    what: &str,
) -> Result<Vec<(i64, String)>> {
    let mut got: Vec<(i64, String)> = Vec::new();
    for id in want {
        let v = match next_but_acked(c).await {
            Ok(Frame::Json(v, _)) if v["type"] == "change" => v,
            Ok(other) => bail!(
                "{what}: expected id {id} after {} rows (last {:?}), got {other:?}",
                got.len(),
                got.last()
            ),
            Err(e) => bail!(
                "{what}: expected id {id} after {} rows (last {:?}): {e:#}",
                got.len(),
                got.last()
            ),
        };
        let pos = v["pos"]
            .as_str()
            .with_context(|| format!("{what}: no pos in {v}"))?
            .to_owned();
        ensure!(
            v["new"]["id"] == id,
            "{what}: expected id {id}, got {v} (after {} rows)",
            got.len()
        );
        if let Some((_, last)) = got.last() {
            ensure!(pos > *last, "{what}: pos {pos} after {last}");
        }
        got.push((id, pos));
    }
    Ok(got)
}

fn pos_of(rows: &[(i64, String)], id: i64) -> Result<String> {
    rows.iter()
        .find(|(i, _)| *i == id)
        .map(|(_, p)| p.clone())
        .with_context(|| format!("no row {id}"))
}

/// Reads `acked` frames (nothing else) until one confirms `pos`; each names `name` and a
/// position in `allowed`, not decreasing.
async fn expect_acked(c: &mut WsClient, name: &str, pos: &str, allowed: &[&str]) -> Result<()> {
    let mut last = String::new();
    loop {
        let v = match c.next_frame(STEP).await? {
            Frame::Json(v, _) if v["type"] == "acked" => v,
            other => bail!("{name}: expected an acked frame for {pos}, got {other:?}"),
        };
        ensure!(v["sub"] == name, "{v}");
        let got = v["pos"].as_str().with_context(|| format!("{v}"))?;
        ensure!(
            allowed.contains(&got) && got >= last.as_str(),
            "{name}: acked {got} (acks sent {allowed:?}, previous acked {last:?})"
        );
        if got == pos {
            return Ok(());
        }
        last = got.to_owned();
    }
}

async fn items_db(label: &str) -> Result<TestDb<'static>> {
    let db = TestDb::new(PgCluster::shared(), label).await?;
    db.exec("CREATE TABLE items (id int8 primary key)").await?;
    Ok(db)
}

#[tokio::test]
async fn two_subscriptions_resume_after_their_own_acks() -> Result<()> {
    let db = items_db("subtwo").await?;
    let server = Walcast::start(&db).await?;
    let (mut a, ha) = WsClient::subscribe(&server, &[("query", QUERY), ("sub", "alpha")]).await?;
    let (mut b, hb) = WsClient::subscribe(&server, &[("query", QUERY), ("sub", "beta")]).await?;
    ensure!(ha["sub"] == "alpha" && ha["pos"].is_string(), "{ha}");
    ensure!(hb["sub"] == "beta" && hb["pos"].is_string(), "{hb}");

    commit_rows(&db, 1..=100).await?;
    let ra = rows(&mut a, 1..=100, "alpha").await?;
    let rb = rows(&mut b, 1..=100, "beta").await?;
    ensure!(
        ra == rb,
        "the same changes carry the same positions in both sessions"
    );

    let p30 = pos_of(&ra, 30)?;
    a.ack(&p30).await?;
    expect_acked(&mut a, "alpha", &p30, &[&p30]).await?;
    // Acks in quick succession: acked frames may cover several; the last one covers 70.
    let (p50, p60, p70) = (pos_of(&rb, 50)?, pos_of(&rb, 60)?, pos_of(&rb, 70)?);
    for p in [&p50, &p60, &p70] {
        b.ack(p).await?;
    }
    expect_acked(&mut b, "beta", &p70, &[&p50, &p60, &p70]).await?;
    a.close_and_wait(STEP).await?;
    b.close_and_wait(STEP).await?;

    commit_rows(&db, 101..=150).await?;
    let (mut a, ha) = reconnect(&server, "alpha", QUERY).await?;
    ensure!(
        ha["pos"] == p30.as_str(),
        "alpha resumes after its ack: {ha}"
    );
    let (mut b, hb) = reconnect(&server, "beta", QUERY).await?;
    ensure!(
        hb["pos"] == p70.as_str(),
        "beta resumes after its ack: {hb}"
    );
    let ra2 = rows(&mut a, 31..=150, "alpha resumed").await?;
    let rb2 = rows(&mut b, 71..=150, "beta resumed").await?;
    ensure!(
        ra2[..70] == ra[30..] && rb2[..30] == rb[70..],
        "replayed changes keep their positions"
    );
    commit_rows(&db, [151]).await?;
    rows(&mut a, [151], "alpha live").await?;
    rows(&mut b, [151], "beta live").await?;
    Ok(())
}

/// `GET /ws` must be refused with `status` and `{"error": code, "message": ...}`.
async fn refused(server: &Walcast, params: &[(&str, &str)], status: u16, code: &str) -> Result<()> {
    let (got, body) = http_error(server, params).await?;
    ensure!(
        got == status
            && body["error"] == code
            && body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{params:?}: expected {status} {code} with a message, got {got} {body}"
    );
    Ok(())
}

#[tokio::test]
async fn refusals_and_client_message_errors() -> Result<()> {
    let db = items_db("suberrors").await?;
    let server = Walcast::start(&db).await?;

    // One socket per name.
    let (first, hello) = WsClient::subscribe(&server, &[("query", QUERY), ("sub", "busy")]).await?;
    let created = hello["pos"].as_str().context("pos")?.to_owned();
    refused(
        &server,
        &[("query", QUERY), ("sub", "busy")],
        409,
        "subscription_busy",
    )
    .await?;
    first.close_and_wait(STEP).await?;
    // Any parameter but sub= that differs is another query.
    let mismatched: [&[(&str, &str)]; 3] = [
        &[("query", "insert:items:id.gt.5"), ("sub", "busy")],
        &[("query", "*:items"), ("sub", "busy")],
        &[("query", QUERY), ("sub", "busy"), ("select", "id")],
    ];
    for params in mismatched {
        // The server may take a moment to see the close: busy until then.
        wait_for(
            "the first socket to be released",
            STEP,
            Duration::from_millis(100),
            || async {
                let (status, body) = http_error(&server, params).await?;
                Ok((!(status == 409 && body["error"] == "subscription_busy")).then_some(()))
            },
        )
        .await?;
        refused(&server, params, 409, "subscription_mismatch").await?;
    }
    // The same query with the parameters in another order is the same subscription.
    let (again, hello) = reconnect(&server, "busy", QUERY).await?;
    ensure!(hello["pos"] == created.as_str(), "nothing acked: {hello}");
    again.close_and_wait(STEP).await?;
    let (again, _) = WsClient::subscribe(&server, &[("sub", "busy"), ("query", QUERY)]).await?;
    again.close_and_wait(STEP).await?;

    // Names: 1 to 64 of A-Z a-z 0-9 _ . -
    let long = "a".repeat(65);
    for bad in [
        "",
        "a b",
        "a/b",
        "a:b",
        "naïve",
        "a%b",
        "a+b",
        long.as_str(),
    ] {
        refused(
            &server,
            &[("query", QUERY), ("sub", bad)],
            400,
            "bad_subscription_name",
        )
        .await?;
    }
    let longest = format!("Az09_.-{}", "x".repeat(57));
    assert_eq!(longest.len(), 64);
    let (c, hello) = WsClient::subscribe(&server, &[("query", QUERY), ("sub", &longest)]).await?;
    ensure!(hello["sub"] == longest.as_str(), "{hello}");
    c.close_and_wait(STEP).await?;
    // from= with sub=.
    refused(
        &server,
        &[("query", QUERY), ("sub", "withfrom"), ("from", &created)],
        400,
        "bad_query",
    )
    .await?;

    // An ack on a socket without sub=.
    let (mut anon, _) = WsClient::subscribe(&server, &[("query", QUERY)]).await?;
    let (mut sub, _) = WsClient::subscribe(
        &server,
        &[("query", "insert:items:id.lt.100"), ("sub", "acker")],
    )
    .await?;
    commit_rows(&db, [1]).await?;
    let p1 = pos_of(&rows(&mut anon, [1], "anonymous").await?, 1)?;
    rows(&mut sub, [1], "acker").await?;
    anon.ack(&p1).await?;
    anon.expect_error("bad_ack", STEP).await?;

    // An ack beyond what the socket was sent: row 500 does not match the sub's filter.
    commit_rows(&db, [500]).await?;
    let p500 = pos_of(&rows(&mut anon, [500], "anonymous").await?, 500)?;
    sub.ack(&p500).await?;
    sub.expect_error("bad_ack", STEP).await?;
    sub.ack("FFFFFFFFFFFFFFFF-FFFFFFFF").await?;
    sub.expect_error("bad_ack", STEP).await?;
    sub.ack("not-a-position").await?;
    sub.expect_error("bad_ack", STEP).await?;
    // Refused acks were not recorded: a good ack is confirmed at its own position.
    sub.ack(&p1).await?;
    expect_acked(&mut sub, "acker", &p1, &[&p1]).await?;

    // Malformed client messages, on both kinds of socket.
    for c in [&mut anon, &mut sub] {
        for garbage in ["hello", "{\"type\":\"nope\"}", "{\"type\":\"ack\"", "[1]"] {
            c.send_text(garbage).await?;
            c.expect_error("bad_message", STEP)
                .await
                .with_context(|| format!("after sending {garbage}"))?;
        }
        c.send_binary(b"\x00\x01").await?;
        c.expect_error("bad_message", STEP)
            .await
            .context("after a binary frame")?;
    }
    // Both sockets are still open and deliver.
    commit_rows(&db, [2]).await?;
    rows(&mut anon, [2], "anonymous after the errors").await?;
    rows(&mut sub, [2], "acker after the errors").await?;
    // Acks still work after the errors.
    commit_rows(&db, [3]).await?;
    let p3 = pos_of(&rows(&mut sub, [3], "acker").await?, 3)?;
    sub.ack(&p3).await?;
    expect_acked(&mut sub, "acker", &p3, &[&p3]).await?;
    Ok(())
}

/// Percent-decodes `s` (`+` stays `+`).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET /v1/subscriptions` as name -> entry.
async fn list(server: &Walcast) -> Result<BTreeMap<String, Value>> {
    let (status, body) = server.get("/v1/subscriptions").await?;
    ensure!(status == 200, "/v1/subscriptions answered {status}: {body}");
    let v: Value = serde_json::from_str(&body).with_context(|| format!("not JSON: {body}"))?;
    let entries = v
        .as_array()
        .with_context(|| format!("not an array: {body}"))?;
    let mut out = BTreeMap::new();
    for e in entries {
        let name = e["name"]
            .as_str()
            .with_context(|| format!("no name: {e}"))?;
        // lag_changes may be null "when it cannot tell" (docs/reference/http-api.md); the tests
        // below require numbers where they compare them.
        ensure!(
            e["query"].is_string()
                && e["table"].is_string()
                && e["acked"].is_string()
                && e["lag_bytes"].is_u64()
                && (e["lag_changes"].is_u64() || e["lag_changes"].is_null())
                && e["connected"].is_boolean(),
            "entry lacks a field: {e}"
        );
        out.insert(name.to_owned(), e.clone());
    }
    Ok(out)
}

/// Waits until `name` is listed with `connected == false`; returns its entry.
async fn disconnected(server: &Walcast, name: &str) -> Result<Value> {
    wait_for(
        &format!("{name} to be listed as disconnected"),
        STEP,
        Duration::from_millis(100),
        || async {
            let l = list(server).await?;
            let e = l.get(name).with_context(|| format!("{name} not listed"))?;
            Ok((e["connected"] == false).then(|| e.clone()))
        },
    )
    .await
}

#[tokio::test]
async fn list_shows_lag_and_delete_closes_with_4011() -> Result<()> {
    let db = items_db("sublist").await?;
    let server = Walcast::start(&db).await?;
    ensure!(list(&server).await?.is_empty(), "no subscriptions yet");

    let (idle, hi) = WsClient::subscribe(&server, &[("query", QUERY), ("sub", "idle")]).await?;
    idle.close_and_wait(STEP).await?;
    let (mut lagging, _) =
        WsClient::subscribe(&server, &[("query", QUERY), ("sub", "lagging")]).await?;
    let (mut caught_up, _) =
        WsClient::subscribe(&server, &[("query", QUERY), ("sub", "caught_up")]).await?;
    commit_rows(&db, 1..=10).await?;
    let seen = rows(&mut lagging, 1..=10, "lagging").await?;
    rows(&mut caught_up, 1..=10, "caught_up").await?;
    let (p4, p10) = (pos_of(&seen, 4)?, pos_of(&seen, 10)?);
    lagging.ack(&p4).await?;
    expect_acked(&mut lagging, "lagging", &p4, &[&p4]).await?;
    caught_up.ack(&p10).await?;
    expect_acked(&mut caught_up, "caught_up", &p10, &[&p10]).await?;

    let l = list(&server).await?;
    ensure!(l.len() == 3, "three subscriptions: {l:?}");
    let e = &l["lagging"];
    ensure!(
        percent_decode(e["query"].as_str().unwrap_or_default()).contains(QUERY)
            && e["table"] == "public.items"
            && e["acked"] == p4.as_str()
            && e["connected"] == true,
        "lagging while connected: {e}"
    );
    caught_up.close_and_wait(STEP).await?;
    lagging.close_and_wait(STEP).await?;

    let idle_e = disconnected(&server, "idle").await?;
    let lag_e = disconnected(&server, "lagging").await?;
    let up_e = disconnected(&server, "caught_up").await?;
    ensure!(
        idle_e["acked"] == hi["pos"]
            && idle_e["lag_changes"] == 10
            && idle_e["lag_bytes"].as_u64() > Some(0),
        "idle: acked is its creation position, 10 changes unacked: {idle_e}"
    );
    ensure!(
        lag_e["acked"] == p4.as_str()
            && lag_e["lag_changes"] == 6
            && lag_e["lag_bytes"].as_u64() > Some(0),
        "lagging: 6 changes unacked: {lag_e}"
    );
    ensure!(
        up_e["acked"] == p10.as_str() && up_e["lag_changes"] == 0,
        "caught_up: nothing unacked: {up_e}"
    );
    // Lag follows new changes for a disconnected subscription.
    commit_rows(&db, [11, 12]).await?;
    wait_for(
        "lag to count new changes",
        STEP,
        Duration::from_millis(100),
        || async {
            let l = list(&server).await?;
            Ok(
                (l["lagging"]["lag_changes"] == 8 && l["caught_up"]["lag_changes"] == 2)
                    .then_some(()),
            )
        },
    )
    .await?;

    // DELETE closes the connected session with 4011.
    let (mut lagging, hello) = reconnect(&server, "lagging", QUERY).await?;
    ensure!(hello["pos"] == p4.as_str(), "{hello}");
    let (status, body) = http_delete(&server, "/v1/subscriptions/lagging").await?;
    ensure!(status == 204, "DELETE answered {status}: {body}");
    // Its replay (rows 5..=12) may be under way: the close comes after any of it.
    loop {
        match next_but_acked(&mut lagging).await? {
            Frame::Json(v, _) if v["type"] == "change" => {}
            Frame::Close(Some(4011), _) => break,
            other => {
                bail!("the deleted subscription's session: expected close 4011, got {other:?}")
            }
        }
    }
    let (status, body) = http_delete(&server, "/v1/subscriptions/lagging").await?;
    let v: Value = serde_json::from_str(&body).with_context(|| format!("{status} {body}"))?;
    ensure!(
        status == 404 && v["error"] == "unknown_subscription",
        "second DELETE: {status} {body}"
    );
    let (status, body) = http_delete(&server, "/v1/subscriptions/never-was").await?;
    ensure!(
        status == 404 && body.contains("unknown_subscription"),
        "{status} {body}"
    );
    let l = list(&server).await?;
    ensure!(
        !l.contains_key("lagging") && l.contains_key("idle") && l.contains_key("caught_up"),
        "after DELETE: {l:?}"
    );

    // The name is free again: a new subscription (another query is no mismatch) starting now.
    let q2 = "insert:items:id.gt.0";
    let (mut fresh, hello) =
        WsClient::subscribe(&server, &[("query", q2), ("sub", "lagging")]).await?;
    let p12 = hello["pos"].as_str().context("pos")?.to_owned();
    ensure!(
        p12 > p10,
        "a new subscription starts at the current position: {hello}"
    );
    commit_rows(&db, [13]).await?;
    rows(&mut fresh, [13], "re-created").await?;
    let e = &list(&server).await?["lagging"];
    ensure!(
        percent_decode(e["query"].as_str().unwrap_or_default()).contains(q2)
            && e["acked"] == p12.as_str()
            && e["connected"] == true,
        "re-created: {e}"
    );
    Ok(())
}

#[tokio::test]
async fn retention_keeps_what_a_subscription_has_not_acked() -> Result<()> {
    let db = items_db("subretain").await?;
    let server = Walcast::builder(&db)
        .config_toml("[journal]\nsegment_bytes = 4096\nmax_bytes = 8192\n")
        .start()
        .await?;
    let (mut anon, _) = WsClient::subscribe(&server, &[("query", QUERY)]).await?;
    commit_rows(&db, 1..=100).await?;
    let first = pos_of(
        &rows(&mut anon, 1..=100, "before the subscription").await?,
        1,
    )?;
    let (holder, hello) =
        WsClient::subscribe(&server, &[("query", QUERY), ("sub", "holder")]).await?;
    ensure!(hello["pos"].is_string(), "{hello}");
    holder.close_and_wait(STEP).await?;

    // Commit until retention removed the segment of row 1 (far more than max_bytes).
    let deadline = Instant::now() + LONG;
    let mut next = 101;
    loop {
        commit_rows(&db, next..next + 50).await?;
        next += 50;
        let (status, body) = server
            .get(&format!("/ws?query={QUERY}&from={first}"))
            .await?;
        if status == 409 && body.contains("position_expired") {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "retention never removed the first segment (last answer {status} {body})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // (Counted once the removal, made off the async workers, is back: a moment after readers
    // see it.)
    let counted = Instant::now() + Duration::from_secs(10);
    let removed = loop {
        let removed = server
            .metric("walcast_journal_segments_removed_total")
            .await?;
        if removed > Some(0.0) || Instant::now() >= counted {
            break removed;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    ensure!(removed > Some(0.0), "segments removed: {removed:?}");
    eprintln!("retention removed {removed:?} segments; rows 1..{next} committed");
    // Everything after the subscription's position is still there. (At journal.max_bytes walcast
    // may pause the replication stream until the subscription acks: the reader acks as it goes.)
    let (mut holder, hello) = reconnect(&server, "holder", QUERY).await?;
    ensure!(hello["pos"].is_string(), "{hello}");
    for id in 101..next {
        let (_, pos) = rows(&mut holder, [id], "resumed holder").await?.remove(0);
        if id % 50 == 0 {
            holder.ack(&pos).await?;
        }
    }
    commit_rows(&db, [next]).await?;
    rows(&mut holder, [next], "holder live").await?;
    Ok(())
}
