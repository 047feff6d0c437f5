//! walcast against a misbehaving or unusual Postgres: restarts mid-stream, an idle watched
//! database (slot must still advance), SCRAM password auth, and its own graceful shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use walcast_tests::{wait_for, Frame, PgCluster, PgOptions, TestDb, Walcast, WsClient, STEP};

use crate::{row_id, LONG};

#[tokio::test]
async fn postgres_restart_mid_stream_delivers_each_row_exactly_once() -> Result<()> {
    let cluster = PgCluster::start_new(PgOptions::default())?;
    let db = TestDb::new(&cluster, "restart").await?;
    db.exec("CREATE TABLE items (id int primary key, v text)")
        .await?;
    let server = Walcast::start(&db).await?;
    let (mut c, _) = WsClient::subscribe(&server, &[("query", "insert:items")]).await?;

    for batch in 0..20 {
        let lo = batch * 10 + 1;
        db.exec(&format!(
            "INSERT INTO items SELECT g, 'before' FROM generate_series({lo}, {}) g",
            lo + 9
        ))
        .await?;
    }
    // Mid-stream: at least one row is out, the rest may still be in flight.
    let first = c.next_change(STEP).await?;
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    *seen.entry(row_id(&first).context("id")?).or_default() += 1;

    cluster.stop()?;
    cluster.start()?;
    let conn = db.connect().await?;
    for batch in 20..40 {
        let lo = batch * 10 + 1;
        conn.batch_execute(&format!(
            "INSERT INTO items SELECT g, 'after' FROM generate_series({lo}, {}) g",
            lo + 9
        ))
        .await?;
    }
    let committed: BTreeSet<i64> = conn
        .query("SELECT id FROM items", &[])
        .await?
        .iter()
        .map(|r| i64::from(r.get::<_, i32>(0)))
        .collect();
    assert_eq!(committed.len(), 400);

    let deadline = tokio::time::Instant::now() + LONG;
    while committed.iter().any(|id| !seen.contains_key(id)) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let frame = c.next_frame(left).await.with_context(|| {
            let missing: Vec<_> = committed
                .iter()
                .filter(|id| !seen.contains_key(id))
                .take(10)
                .collect();
            format!(
                "{} of 400 rows arrived; first missing {missing:?}; walcast stderr:\n{}",
                seen.len(),
                server.stderr_tail(30)
            )
        })?;
        match frame {
            Frame::Json(v, _) if v["type"] == "change" => {
                *seen.entry(row_id(&v).context("id")?).or_default() += 1
            }
            other => bail!(
                "session did not survive the restart: {other:?}; stderr:\n{}",
                server.stderr_tail(30)
            ),
        }
    }
    // A row committed last: every frame before it is counted, late duplicates too.
    conn.batch_execute("INSERT INTO items VALUES (0, 'sentinel')")
        .await?;
    loop {
        let v = c.next_change(STEP).await?;
        let id = row_id(&v).context("id")?;
        if id == 0 {
            break;
        }
        *seen.entry(id).or_default() += 1;
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "README promises exactly-once across a Postgres restart; duplicated (id, times): {:?}",
        &duplicated[..duplicated.len().min(20)]
    );
    assert_eq!(seen.len(), 400, "ids outside the committed rows: {seen:?}");
    Ok(())
}

#[tokio::test]
async fn idle_slot_advances_past_other_databases_wal() -> Result<()> {
    let cluster = PgCluster::start_new(PgOptions {
        settings: vec![("wal_sender_timeout".into(), "2s".into())],
        ..Default::default()
    })?;
    let db = TestDb::new(&cluster, "idle").await?;
    db.exec("CREATE TABLE quiet (id int primary key)").await?;
    let other = TestDb::new(&cluster, "busy").await?;
    let server = Walcast::builder(&db)
        .config_toml("[replication]\nstatus_interval = \"1s\"\n")
        .start()
        .await?;

    other
        .exec("CREATE TABLE noise (id int); INSERT INTO noise SELECT generate_series(1, 1000)")
        .await?;
    let target: String = other
        .client()
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    // Nothing happens in the watched database; walcast must still confirm the walsender's
    // position so the slot does not pin WAL forever.
    let admin = cluster.connect("postgres").await?;
    let slot = db.slot().to_owned();
    let confirmed = wait_for(
        "confirmed_flush_lsn to pass the other database's WAL",
        LONG,
        Duration::from_millis(250),
        || {
            let (admin, slot, target) = (&admin, &slot, &target);
            async move {
                let row = admin
                    .query_opt(
                        "SELECT confirmed_flush_lsn::text, confirmed_flush_lsn >= $2::text::pg_lsn
                       FROM pg_replication_slots WHERE slot_name = $1",
                        &[slot, target],
                    )
                    .await?;
                Ok(row.and_then(|r| {
                    r.get::<_, Option<bool>>(1)
                        .unwrap_or(false)
                        .then(|| r.get::<_, String>(0))
                }))
            }
        },
    )
    .await
    .with_context(|| format!("walcast stderr:\n{}", server.stderr_tail(20)))?;
    eprintln!("idle slot confirmed {confirmed} >= {target}");
    Ok(())
}

#[tokio::test]
async fn scram_password_auth() -> Result<()> {
    let cluster = PgCluster::start_new(PgOptions {
        scram_host_auth: true,
        ..Default::default()
    })?;
    let admin = cluster.connect("postgres").await?;
    let password = "s3cret pw:@/?";
    admin
        .batch_execute(&format!(
            "CREATE ROLE walcast_user LOGIN REPLICATION PASSWORD '{password}'"
        ))
        .await?;
    let db = TestDb::with_owner(&cluster, "scram", Some("walcast_user")).await?;
    db.exec(
        "CREATE TABLE secure (id int primary key, v text); GRANT SELECT ON secure TO walcast_user",
    )
    .await?;
    let url = cluster.tcp_url(db.name(), "walcast_user", Some(password));
    let server = Walcast::builder(&db)
        .env("DATABASE_URL", &url)
        .start()
        .await?;
    let (mut c, _) = WsClient::subscribe(&server, &[("query", "insert:secure")]).await?;
    db.exec("INSERT INTO secure VALUES (1, 'over scram')")
        .await?;
    let ch = c.next_change(STEP).await?;
    assert_eq!(ch["new"]["v"], "over scram", "{ch}");
    Ok(())
}

#[tokio::test]
async fn shutdown_closes_sessions_with_1001() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "shutdown").await?;
    db.exec("CREATE TABLE t (id int primary key)").await?;
    let mut server = Walcast::start(&db).await?;
    let (mut c, _) = WsClient::subscribe(&server, &[("query", "*:t")]).await?;
    server.terminate()?;
    c.expect_close(1001, STEP).await?;
    let status = server.wait_exit(STEP).await?;
    assert!(
        status.success(),
        "walcast exit status after SIGTERM: {status}"
    );
    Ok(())
}
