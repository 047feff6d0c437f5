//! End-to-end tests of the source against throwaway Postgres clusters: transports, auth, slot,
//! feedback, reconnect and the fatal errors' messages.

mod cluster;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use self::cluster::Cluster;
use super::*;

/// A SQL connection with the TLS settings `pg`'s own sslmode implies.
async fn connect_sql(
    pg: &tokio_postgres::Config,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), SourceError> {
    super::connect_sql(&PgEndpoint::from_config(pg.clone())).await
}

const HBA: &str = "\
local all postgres trust
local all all scram-sha-256
host all postgres 127.0.0.1/32 trust
host all md5user 127.0.0.1/32 md5
hostssl all tlsuser 127.0.0.1/32 scram-sha-256
hostnossl all tlsuser 127.0.0.1/32 reject
host all all 127.0.0.1/32 scram-sha-256
";

const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug)]
enum Event {
    Data {
        wal_end: Lsn,
        action: u8,
        text: String,
    },
    Reconnect,
}

/// Tracks B/C like the real decoder does, and forwards every message.
struct Collect {
    tx: mpsc::UnboundedSender<Event>,
    open: bool,
}

impl Consumer for Collect {
    fn on_data(&mut self, _wal_start: Lsn, wal_end: Lsn, payload: &mut [u8]) -> Boundary {
        // wal2json format 2 starts every message with {"action":"X"
        let action = payload.get(11).copied().unwrap_or(b'?');
        match action {
            b'B' => self.open = true,
            b'C' => self.open = false,
            _ => {}
        }
        let text = String::from_utf8_lossy(payload).into_owned();
        let _ = self.tx.send(Event::Data {
            wal_end,
            action,
            text,
        });
        if self.open {
            Boundary::InsideTransaction
        } else {
            Boundary::Clean
        }
    }

    fn on_reconnect(&mut self) {
        self.open = false;
        let _ = self.tx.send(Event::Reconnect);
    }
}

struct Running {
    rx: mpsc::UnboundedReceiver<Event>,
    status: Arc<SourceStatus>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), SourceError>>,
}

fn source_config(pg: tokio_postgres::Config, slot: &str) -> SourceConfig {
    let mut cfg = SourceConfig::new(PgEndpoint::from_config(pg), slot);
    cfg.status_interval = Duration::from_millis(200);
    cfg.max_backoff = Duration::from_millis(500);
    cfg
}

fn start(cfg: SourceConfig) -> Running {
    let (tx, rx) = mpsc::unbounded_channel();
    let status = Arc::new(SourceStatus::default());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(run(
        cfg,
        Collect { tx, open: false },
        status.clone(),
        cancel.clone(),
    ));
    Running {
        rx,
        status,
        cancel,
        task,
    }
}

impl Running {
    /// The slot exists once streaming started: only then are new changes sure to be captured.
    async fn streaming(&self) {
        wait_for("streaming", || async { self.status.connected() }).await;
    }

    /// Next event matching `pred`, returning the events skipped on the way.
    async fn until(&mut self, mut pred: impl FnMut(&Event) -> bool) -> (Event, Vec<Event>) {
        let mut skipped = Vec::new();
        let deadline = Instant::now() + WAIT;
        loop {
            let ev = tokio::time::timeout_at(deadline.into(), self.rx.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "timed out; saw {skipped:?}; last error {:?}",
                        self.status.last_error()
                    )
                })
                .expect("source ended");
            if pred(&ev) {
                return (ev, skipped);
            }
            skipped.push(ev);
        }
    }

    async fn data_containing(&mut self, needle: &str) -> (Lsn, Vec<Event>) {
        let (ev, skipped) = self
            .until(|e| matches!(e, Event::Data { text, .. } if text.contains(needle)))
            .await;
        match ev {
            Event::Data { wal_end, .. } => (wal_end, skipped),
            Event::Reconnect => unreachable!(),
        }
    }

    async fn commit(&mut self) -> Lsn {
        match self
            .until(|e| matches!(e, Event::Data { action: b'C', .. }))
            .await
            .0
        {
            Event::Data { wal_end, .. } => wal_end,
            Event::Reconnect => unreachable!(),
        }
    }

    async fn stop(self) -> Arc<SourceStatus> {
        self.cancel.cancel();
        let result = tokio::time::timeout(WAIT, self.task)
            .await
            .expect("stops in time")
            .expect("joins");
        result.expect("clean stop");
        self.status
    }
}

async fn slot_row(admin: &tokio_postgres::Client, slot: &str) -> Option<(Lsn, bool)> {
    let row = admin
        .query_opt("SELECT confirmed_flush_lsn::text, active FROM pg_replication_slots WHERE slot_name = $1", &[&slot])
        .await
        .expect("slot query")?;
    let lsn: Option<String> = row.get(0);
    Some((
        lsn.map(|s| s.parse().expect("lsn")).unwrap_or_default(),
        row.get(1),
    ))
}

/// Polls the server-side state (there is no event for "the walsender processed our feedback").
async fn wait_for<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn setup_roles(admin: &tokio_postgres::Client) {
    admin
        .batch_execute(
            "CREATE ROLE scramuser LOGIN REPLICATION PASSWORD 'scram pw';
             CREATE ROLE tlsuser LOGIN REPLICATION PASSWORD 'tls pw';
             SET password_encryption = 'md5';
             CREATE ROLE md5user LOGIN REPLICATION PASSWORD 'md5 pw';
             RESET password_encryption;
             CREATE ROLE plainuser LOGIN PASSWORD 'plain pw';
             CREATE TABLE t (id int PRIMARY KEY, v text);",
        )
        .await
        .expect("setup");
    admin
        .batch_execute("CREATE DATABASE other")
        .await
        .expect("create database");
}

#[tokio::test]
async fn unix_scram_streams_flushes_and_resumes_without_replay() {
    let cluster = Cluster::start(&[], HBA, false);
    let admin = cluster.admin().await;
    setup_roles(&admin).await;
    let cfg = source_config(
        cluster.config("scramuser", Some("scram pw"), false),
        "walcast_a",
    );

    // Prerequisites over SQL with SCRAM on the Unix socket; creates the persistent slot.
    let (client, _conn) = connect_sql(&cfg.pg.config).await.expect("sql connect");
    check_prerequisites(&client, &cfg)
        .await
        .expect("prerequisites");
    assert!(slot_row(&admin, "walcast_a").await.is_some());

    let mut src = start(cfg.clone());
    admin
        .execute("INSERT INTO t VALUES (1, 'hello')", &[])
        .await
        .expect("insert");
    src.data_containing("\"hello\"").await;
    let commit = src.commit().await;
    assert!(src.status.connected());
    assert!(src.status.received() >= commit);
    wait_for("confirmed_flush_lsn to reach the commit", || async {
        slot_row(&admin, "walcast_a")
            .await
            .is_some_and(|(lsn, _)| lsn >= commit)
    })
    .await;

    // A non-transactional message outside any transaction is a clean boundary too.
    admin
        .execute(
            "SELECT pg_logical_emit_message(false, 'walcast', 'hi there')",
            &[],
        )
        .await
        .expect("emit");
    let (message, _) = src.data_containing("hi there").await;

    // Idle for our database: WAL written elsewhere only reaches us as keepalives.
    let other = {
        let mut pg = cluster.config("postgres", None, false);
        pg.dbname("other");
        connect_sql(&pg).await.expect("other db").0
    };
    other
        .batch_execute("CREATE TABLE x (i int); INSERT INTO x VALUES (1);")
        .await
        .expect("other");
    let beyond = message.max(commit);
    wait_for("the idle slot to advance past the last message", || async {
        slot_row(&admin, "walcast_a")
            .await
            .is_some_and(|(lsn, _)| lsn > beyond)
    })
    .await;
    assert!(src.status.flushed() > beyond);

    let status = src.stop().await;
    let (confirmed, active) = slot_row(&admin, "walcast_a").await.expect("slot kept");
    assert_eq!(
        confirmed,
        status.flushed(),
        "final feedback is what the server holds"
    );
    if active {
        wait_for("walsender exit", || async {
            !slot_row(&admin, "walcast_a").await.is_some_and(|r| r.1)
        })
        .await;
    }

    // Restart: nothing already confirmed is sent again, the next change is.
    let mut src = start(cfg);
    admin
        .execute("INSERT INTO t VALUES (2, 'again')", &[])
        .await
        .expect("insert");
    let (_, before) = src.data_containing("\"again\"").await;
    for ev in &before {
        if let Event::Data { text, .. } = ev {
            assert!(
                !text.contains("hello") && !text.contains("hi there"),
                "replayed {text}"
            );
        }
    }
    src.stop().await;
}

#[tokio::test]
async fn tcp_md5_and_tls_scram() {
    let cluster = Cluster::start(&[], HBA, true);
    let admin = cluster.admin().await;
    setup_roles(&admin).await;

    let mut md5 = cluster.config("md5user", Some("md5 pw"), true);
    md5.ssl_mode(tokio_postgres::config::SslMode::Disable);
    // A temporary slot: the probe path of the checks, and the slot is gone after the stop.
    let mut cfg = source_config(md5, "walcast_md5");
    cfg.temporary = true;
    let (client, _conn) = connect_sql(&cfg.pg.config).await.expect("sql with md5");
    check_prerequisites(&client, &cfg)
        .await
        .expect("prerequisites");
    let mut src = start(cfg);
    src.streaming().await;
    admin
        .execute("INSERT INTO t VALUES (10, 'over tcp')", &[])
        .await
        .expect("insert");
    src.data_containing("over tcp").await;
    // One message larger than any read chunk (several MiB of JSON).
    admin
        .execute(
            "INSERT INTO t VALUES (12, repeat('x', 3000000) || 'end-of-big')",
            &[],
        )
        .await
        .expect("insert");
    let (ev, _) = src
        .until(|e| matches!(e, Event::Data { text, .. } if text.contains("end-of-big")))
        .await;
    let Event::Data { text, .. } = ev else {
        unreachable!()
    };
    assert!(
        text.len() > 3_000_000 && text.ends_with('}'),
        "{}",
        text.len()
    );
    src.stop().await;
    wait_for("the temporary slot to go", || async {
        slot_row(&admin, "walcast_md5").await.is_none()
    })
    .await;

    // tlsuser is rejected without TLS (hba), so streaming proves the TLS path.
    let mut tls = cluster.config("tlsuser", Some("tls pw"), true);
    tls.ssl_mode(tokio_postgres::config::SslMode::Require);
    let (client, _conn) = connect_sql(&tls).await.expect("sql over tls");
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert!(ssl);
    let mut src = start(source_config(tls.clone(), "walcast_tls"));
    src.streaming().await;
    admin
        .execute("INSERT INTO t VALUES (11, 'over tls')", &[])
        .await
        .expect("insert");
    src.data_containing("over tls").await;
    src.stop().await;

    tls.ssl_mode(tokio_postgres::config::SslMode::Disable);
    let err = run(
        source_config(tls, "walcast_tls"),
        Collect {
            tx: mpsc::unbounded_channel().0,
            open: false,
        },
        Default::default(),
        CancellationToken::new(),
    )
    .await
    .expect_err("hba rejects tlsuser without TLS");
    assert!(matches!(err, SourceError::NotAllowed(_)), "{err}");
}

#[tokio::test]
async fn reconnects_after_terminate_without_loss() {
    let cluster = Cluster::start(&[], HBA, false);
    let admin = cluster.admin().await;
    setup_roles(&admin).await;
    let cfg = source_config(cluster.config("postgres", None, false), "walcast_r");
    let mut src = start(cfg.clone());
    src.streaming().await;
    admin
        .execute("INSERT INTO t VALUES (1, 'first')", &[])
        .await
        .expect("insert");
    src.data_containing("\"first\"").await;

    let killed: Option<bool> = admin
        .query_one("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'walcast_r'", &[])
        .await
        .expect("terminate")
        .get(0);
    assert_eq!(killed, Some(true));
    for i in 2..=4 {
        admin
            .execute("INSERT INTO t VALUES ($1, 'after')", &[&i])
            .await
            .expect("insert");
    }
    let (reconnect, _) = src.until(|e| matches!(e, Event::Reconnect)).await;
    assert!(matches!(reconnect, Event::Reconnect));
    for i in 2..=4 {
        src.data_containing(&format!("\"value\":{i}")).await;
    }
    assert!(src.status.reconnects() >= 1);
    assert!(src.status.last_error().is_some());

    // A second source on the same slot is told it is in use and keeps retrying.
    let second = start(cfg);
    wait_for("the slot-in-use error", || async {
        second
            .status
            .last_error()
            .is_some_and(|e| e.contains("in use"))
            && second.status.reconnects() >= 1
    })
    .await;
    assert!(!second.status.connected());
    second.stop().await;
    src.stop().await;
}

#[tokio::test]
async fn fatal_errors_name_the_fix() {
    let cluster = Cluster::start(&["max_replication_slots = 2"], HBA, false);
    let admin = cluster.admin().await;
    setup_roles(&admin).await;
    let fatal = |pg: tokio_postgres::Config| {
        run(
            source_config(pg, "walcast_f"),
            Collect {
                tx: mpsc::unbounded_channel().0,
                open: false,
            },
            Default::default(),
            CancellationToken::new(),
        )
    };

    let err = fatal(cluster.config("scramuser", Some("wrong"), true))
        .await
        .expect_err("bad password");
    assert!(
        matches!(err, SourceError::AuthFailed { .. }) && !err.is_retryable(),
        "{err}"
    );
    let err = fatal(cluster.config("scramuser", None, true))
        .await
        .expect_err("no password");
    assert!(matches!(err, SourceError::PasswordMissing), "{err}");

    let plain = cluster.config("plainuser", Some("plain pw"), false);
    let (client, _conn) = connect_sql(&plain).await.expect("sql");
    let err = check_prerequisites(&client, &source_config(plain.clone(), "walcast_f"))
        .await
        .expect_err("no privilege");
    assert!(
        err.to_string().contains("ALTER ROLE plainuser REPLICATION"),
        "{err}"
    );
    let err = fatal(plain).await.expect_err("no privilege");
    assert!(matches!(err, SourceError::MissingPrivilege { .. }), "{err}");

    admin
        .batch_execute("SELECT pg_create_physical_replication_slot('p1'); SELECT pg_create_physical_replication_slot('p2');")
        .await
        .expect("fill slots");
    let pg = cluster.config("postgres", None, false);
    let err = check_prerequisites(&admin, &source_config(pg.clone(), "walcast_f"))
        .await
        .expect_err("slots full");
    assert!(err.to_string().contains("max_replication_slots"), "{err}");
    let err = fatal(pg.clone()).await.expect_err("slots full");
    assert!(matches!(err, SourceError::SlotsExhausted(_)), "{err}");
    let err = check_prerequisites(&admin, &source_config(pg, "p1"))
        .await
        .expect_err("physical slot");
    assert!(matches!(err, SourceError::SlotWrongPlugin { .. }), "{err}");

    drop(cluster);
    let replica = Cluster::start(&["wal_level = replica"], HBA, false);
    let admin = replica.admin().await;
    let pg = replica.config("postgres", None, false);
    let err = check_prerequisites(&admin, &source_config(pg.clone(), "walcast_f"))
        .await
        .expect_err("wal_level");
    assert!(err.to_string().contains("set wal_level = logical"), "{err}");
    let err = fatal(pg).await.expect_err("wal_level");
    assert!(matches!(err, SourceError::WalLevel(_)), "{err}");
}
