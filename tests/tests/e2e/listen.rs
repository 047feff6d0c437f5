//! The LISTEN/NOTIFY relay (`/listen/{channel}`): payloads byte for byte (unicode, 7,999 bytes,
//! empty) on channels whose names need quoting; many channels on one LISTEN connection; every
//! channel back after a Postgres restart, with `notify_gap` for json sockets; the allow-list's
//! 403 before the upgrade; a socket that stops reading does not slow another.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use walcast_tests::{percent_encode, Frame, PgCluster, PgOptions, TestDb, Walcast, WsClient, STEP};

async fn listen(server: &Walcast, channel: &str, json: bool) -> Result<WsClient> {
    let mut path = format!("/listen/{}", percent_encode(channel));
    if json {
        path.push_str("?format=json");
    }
    match WsClient::try_open(server, &path).await? {
        Ok(c) => Ok(c),
        Err((status, body)) => bail!("{path}: {status} {body}"),
    }
}

async fn notify(db: &TestDb<'_>, channel: &str, payload: &str) -> Result<()> {
    db.client()
        .execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
        .await?;
    Ok(())
}

async fn next_text(c: &mut WsClient) -> Result<String> {
    c.next_text(STEP).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_arrive_byte_for_byte_on_quoted_channels() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "notify_bytes").await?;
    let server = Walcast::start(&db).await?;
    let channel = r#"Odd "chan".v1 Ünï"#;
    let mut plain = listen(&server, channel, false).await?;
    let mut json = listen(&server, channel, true).await?;
    let big: String = "é".repeat(3_999) + "x"; // 7,999 bytes
    ensure!(big.len() == 7_999);
    let payloads = ["héllo 🌍 \"quoted\" \\ back", "", big.as_str(), "{\"a\":1}"];
    for p in payloads {
        notify(&db, channel, p).await?;
    }
    for p in payloads {
        let got = next_text(&mut plain).await?;
        ensure!(
            got == p,
            "plain: expected {} bytes, got {} bytes",
            p.len(),
            got.len()
        );
        let v: serde_json::Value = serde_json::from_str(&next_text(&mut json).await?)?;
        ensure!(
            v["type"] == "notify" && v["channel"] == channel && v["payload"] == p,
            "json: {v}"
        );
        ensure!(v["pid"].as_i64().is_some_and(|pid| pid > 0), "{v}");
    }
    // Another channel's payload does not arrive here (a marker follows on this one).
    notify(&db, "elsewhere", "no").await?;
    notify(&db, channel, "marker").await?;
    ensure!(next_text(&mut plain).await? == "marker");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_channels_share_one_listen_connection() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "notify_twenty").await?;
    let server = Walcast::start(&db).await?;
    let mut sockets = Vec::new();
    for k in 0..20 {
        sockets.push(listen(&server, &format!("ch{k}"), false).await?);
    }
    let row = db
        .client()
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()",
            &[],
        )
        .await?;
    let listeners: i64 = row.get(0);
    ensure!(
        listeners == 1,
        "{listeners} connections LISTEN for 20 channels"
    );
    for k in 0..20 {
        notify(&db, &format!("ch{k}"), &format!("p{k}")).await?;
    }
    for (k, s) in sockets.iter_mut().enumerate() {
        ensure!(next_text(s).await? == format!("p{k}"));
    }
    // The last socket of a channel gone: UNLISTEN (seen in the relay's last statement).
    let last = sockets.pop().context("a socket")?;
    last.close_and_wait(STEP).await?;
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let q: String = db
            .client()
            .query_one(
                "SELECT coalesce(string_agg(query, ';'), '') FROM pg_stat_activity \
                 WHERE datname = current_database() AND (query ILIKE 'LISTEN%' OR query ILIKE 'UNLISTEN%')",
                &[],
            )
            .await?
            .get(0);
        if q.contains("UNLISTEN \"ch19\"") {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "no UNLISTEN after the last socket left: {q}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test]
async fn channels_outside_the_allow_list_get_403() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "notify_allow").await?;
    let server = Walcast::builder(&db)
        .env("WALCAST_NOTIFY_CHANNELS", "orders_*,people")
        .start()
        .await?;
    match WsClient::try_open(&server, "/listen/secret").await? {
        Ok(_) => bail!("a channel outside the allow-list was upgraded"),
        Err((status, body)) => {
            let v: serde_json::Value = serde_json::from_str(&body)?;
            ensure!(
                status == 403 && v["error"] == "channel_not_allowed",
                "{status} {body}"
            );
        }
    }
    listen(&server, "orders_eu", false).await?;
    listen(&server, "people", false).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_resumes_after_a_postgres_restart() -> Result<()> {
    let cluster = PgCluster::start_new(PgOptions::default())?;
    let db = TestDb::new(&cluster, "notify_restart").await?;
    let server = Walcast::start(&db).await?;
    let mut a = listen(&server, "alpha", true).await?;
    let mut b = listen(&server, "beta", false).await?;
    cluster.stop()?;
    cluster.start()?;
    // Until the relay is back, a NOTIFY is lost: send until one arrives.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut saw_gap = false;
    'alpha: loop {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "alpha never came back"
        );
        let conn = cluster.connect(db.name()).await?;
        conn.execute(
            "SELECT pg_notify('alpha', 'back'), pg_notify('beta', 'back')",
            &[],
        )
        .await?;
        loop {
            match a.next_frame(Duration::from_millis(300)).await {
                Ok(Frame::Json(v, _)) if v["type"] == "notify_gap" => saw_gap = true,
                Ok(Frame::Json(v, _)) if v["payload"] == "back" => break 'alpha,
                Ok(other) => bail!("alpha: {other:?}"),
                Err(_) => break,
            }
        }
    }
    ensure!(saw_gap, "a json socket hears of the gap");
    loop {
        let got = b.next_text(STEP).await?;
        if got == "back" {
            break;
        }
    }
    Ok(())
}

/// One socket stops reading; another on the same channel gets all 20,000 payloads (80 MB, more
/// than socket buffers hold); the stalled one, once it reads, finds a gap-free prefix and then
/// close 4008.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_stops_reading_does_not_slow_another() -> Result<()> {
    const N: usize = 20_000;
    let db = TestDb::new(PgCluster::shared(), "notify_slow").await?;
    // The stalled socket must be closed by its full queue, not by the write timeout
    // (`timeouts.rs` tests that one).
    let server = Walcast::builder(&db)
        .env("WALCAST_WRITE_TIMEOUT", "10m")
        .start()
        .await?;
    let mut stalled = listen(&server, "busy", false).await?;
    let mut fast = listen(&server, "busy", false).await?;
    let pad = "x".repeat(4_000);
    // In transactions of 500, as fast as the reading socket takes them: it keeps up (its queue
    // never fills) while the stalled one falls behind for good.
    let mut next = 1;
    for batch in 0..N / 500 {
        let lo = batch * 500 + 1;
        db.exec(&format!(
            "SELECT pg_notify('busy', g::text || '{pad}') FROM generate_series({lo}, {}) g",
            lo + 499
        ))
        .await?;
        while next < lo + 500 {
            let got = fast.next_text(STEP).await?;
            ensure!(got == format!("{next}{pad}"), "fast socket: payload {next}");
            next += 1;
        }
    }
    let mut k = 0;
    loop {
        match stalled.next_text(STEP).await {
            Ok(got) => {
                k += 1;
                ensure!(
                    got == format!("{k}{pad}"),
                    "stalled socket: payload {k} out of order"
                );
            }
            Err(e) if format!("{e:#}").contains("4008") => break,
            Err(e) => bail!("stalled socket after {k} payloads: {e:#}"),
        }
    }
    ensure!(k < N, "the stalled socket was closed, not given everything");
    Ok(())
}
