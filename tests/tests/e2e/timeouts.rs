//! Sockets that stop reading or vanish are let go (`sessions.write_timeout`,
//! `sessions.ping_interval`, `sessions.idle_timeout`): with what they held (a snapshot slot and
//! its REPEATABLE READ transaction, a journal reader), on `/ws` and on `/listen`. The misbehaving
//! clients are raw TCP sockets that complete the upgrade and then do only what the test says:
//! never read, or read and never answer a ping.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use walcast_tests::{wait_for, Frame, PgCluster, TestDb, Walcast, WsClient, STEP};

use crate::LONG;

const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;

/// A WebSocket client on a raw TCP socket: it sends nothing after the upgrade, and reads only
/// when asked (so it never answers a ping).
struct RawSocket {
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl RawSocket {
    /// Completes the upgrade of `path` (the 101 answer is read, nothing after it).
    async fn open(server: &Walcast, path: &str) -> Result<RawSocket> {
        let mut tcp = TcpStream::connect(server.addr()).await?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            server.addr()
        );
        tcp.write_all(request.as_bytes()).await?;
        // Byte by byte, so nothing after the answer's head is read.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            let n = tokio::time::timeout(STEP, tcp.read(&mut byte))
                .await
                .context("no upgrade answer")??;
            ensure!(n == 1, "connection closed during the upgrade of {path}");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        ensure!(
            head.starts_with("HTTP/1.1 101"),
            "upgrade of {path} refused: {head}"
        );
        Ok(RawSocket {
            tcp,
            buf: Vec::new(),
        })
    }

    /// The next frame (opcode, payload); `None` when the server closed the connection.
    async fn frame(&mut self, timeout: Duration) -> Result<Option<(u8, Vec<u8>)>> {
        loop {
            if let Some((opcode, payload, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return Ok(Some((opcode, payload)));
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = match tokio::time::timeout(timeout, self.tcp.read(&mut chunk)).await {
                Err(_) => bail!("no frame within {timeout:?}"),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
                Ok(r) => r?,
            };
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until the server closes: text frames and pings seen, then the close code and
    /// reason (`None` when the connection ended without a close frame).
    async fn until_closed(&mut self) -> Result<(usize, usize, Option<(u16, String)>)> {
        let (mut texts, mut pings) = (0, 0);
        loop {
            match self.frame(LONG).await? {
                None => return Ok((texts, pings, None)),
                Some((TEXT, _)) => texts += 1,
                Some((PING, _)) => pings += 1,
                Some((CLOSE, payload)) => {
                    ensure!(payload.len() >= 2, "close frame without a code");
                    let code = u16::from_be_bytes([payload[0], payload[1]]);
                    let reason = String::from_utf8_lossy(&payload[2..]).into_owned();
                    return Ok((texts, pings, Some((code, reason))));
                }
                Some((opcode, _)) => bail!("unexpected opcode {opcode}"),
            }
        }
    }
}

/// One unmasked server frame at the start of `buf`: (opcode, payload, bytes used).
fn parse_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    let (len, at) = match buf[1] & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?.to_vec();
    Some((opcode, payload, at + len))
}

/// Snapshot transactions of `db` open right now (walcast's cursor is `walcast_snapshot`).
async fn snapshot_transactions(db: &TestDb<'_>) -> Result<i64> {
    let row = db
        .client()
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() \
             AND xact_start IS NOT NULL AND query LIKE '%walcast_snapshot%'",
            &[&db.name()],
        )
        .await?;
    Ok(row.get(0))
}

async fn timed_out(server: &Walcast, reason: &str) -> Result<f64> {
    Ok(server
        .metric(&format!(
            "walcast_sessions_timed_out_total{{reason=\"{reason}\"}}"
        ))
        .await?
        .unwrap_or(0.0))
}

/// Four clients complete the upgrade to `snapshot=true` on a big table and never read: they
/// hold every snapshot slot (`snapshot.max_concurrent = 4`). At the write timeout they are let
/// go, and a fifth, well-behaved client gets its whole snapshot; no REPEATABLE READ transaction
/// is left behind (it would hold back VACUUM).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_readers_that_stop_reading_are_let_go_at_the_write_timeout() -> Result<()> {
    // 1 KB rows, 40 MB a snapshot: far more than the socket buffers of a client that stops
    // reading hold.
    const ROWS: u64 = 40_000;
    let db = TestDb::new(PgCluster::shared(), "wt_snapshot").await?;
    db.exec(&format!(
        "CREATE TABLE big (id int primary key, pad text not null); \
         INSERT INTO big SELECT g, repeat('x', 1000) FROM generate_series(1, {ROWS}) g"
    ))
    .await?;
    let server = Walcast::builder(&db)
        .env("WALCAST_WRITE_TIMEOUT", "2s")
        .env("WALCAST_SNAPSHOT_MAX_CONCURRENT", "4")
        .prefer_release()
        .start()
        .await?;
    let mut stalled = Vec::new();
    for _ in 0..4 {
        stalled.push(RawSocket::open(&server, "/ws?query=*:big&snapshot=true").await?);
    }
    wait_for(
        "four snapshot transactions",
        STEP,
        Duration::from_millis(20),
        || async { Ok((snapshot_transactions(&db).await? == 4).then_some(())) },
    )
    .await?;

    let (mut fifth, _) =
        WsClient::subscribe(&server, &[("query", "*:big"), ("snapshot", "true")]).await?;
    let (mut rows, mut queued) = (0u64, false);
    loop {
        match fifth.next_frame(LONG).await? {
            Frame::Json(v, _) if v["type"] == "row" => rows += 1,
            Frame::Json(v, _) if v["type"] == "snapshot_queued" => queued = true,
            Frame::Json(v, _) if v["type"] == "snapshot_end" => {
                ensure!(v["rows"] == ROWS, "snapshot_end: {v}");
                break;
            }
            other => bail!("fifth client, after {rows} rows: {other:?}"),
        }
    }
    ensure!(rows == ROWS, "{rows} rows of {ROWS}");
    eprintln!("the fifth snapshot was queued first: {queued}");

    wait_for(
        "four write timeouts",
        STEP,
        Duration::from_millis(20),
        || async { Ok((timed_out(&server, "write").await? == 4.0).then_some(())) },
    )
    .await?;
    wait_for(
        "no snapshot transaction left",
        STEP,
        Duration::from_millis(20),
        || async { Ok((snapshot_transactions(&db).await? == 0).then_some(())) },
    )
    .await?;
    // Each stalled socket was closed: reading it now finds what was buffered, then the end.
    for (k, socket) in stalled.iter_mut().enumerate() {
        let (texts, _, close) = socket.until_closed().await?;
        ensure!(
            (texts as u64) < ROWS,
            "stalled client {k} was sent the whole snapshot"
        );
        if let Some((code, reason)) = close {
            ensure!(
                code == 4008 && reason.contains("sessions.write_timeout"),
                "stalled client {k}: close {code} {reason:?}"
            );
        }
    }
    ensure!(timed_out(&server, "idle").await? == 0.0);
    Ok(())
}

/// A `/listen` socket that stops reading while notifications pour in is closed at the write
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_socket_that_stops_reading_is_closed_at_the_write_timeout() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "wt_listen").await?;
    let server = Walcast::builder(&db)
        .env("WALCAST_WRITE_TIMEOUT", "2s")
        .start()
        .await?;
    let mut stalled = RawSocket::open(&server, "/listen/busy").await?;
    // 5,000 notifications of 4 KB: 20 MB.
    for batch in 0..10 {
        let lo = batch * 500 + 1;
        db.exec(&format!(
            "SELECT pg_notify('busy', g::text || repeat('x', 4000)) FROM generate_series({lo}, {}) g",
            lo + 499
        ))
        .await?;
    }
    wait_for(
        "a write timeout",
        LONG,
        Duration::from_millis(20),
        || async { Ok((timed_out(&server, "write").await? == 1.0).then_some(())) },
    )
    .await?;
    let (texts, _, close) = stalled.until_closed().await?;
    ensure!(texts < 5_000, "the stalled socket was sent everything");
    if let Some((code, _)) = close {
        ensure!(code == 4008, "close {code}");
    }
    Ok(())
}

/// Half-open clients (they read, and never answer a ping) on `/ws` and `/listen` are pinged,
/// then closed with 4009 once nothing came from them for the idle timeout; a client that
/// answers pings (tungstenite does on every read), open longer than that, stays and still gets
/// changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_sockets_are_closed_idle_and_answering_ones_stay() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "idle").await?;
    db.exec("CREATE TABLE t (id int primary key)").await?;
    let server = Walcast::builder(&db)
        .env("WALCAST_PING_INTERVAL", "300ms")
        .env("WALCAST_IDLE_TIMEOUT", "1500ms")
        .start()
        .await?;
    let (mut answering, _) = WsClient::subscribe(&server, &[("query", "*:t")]).await?;
    // Reads all along (pings are answered as they are read, and skipped) until the first
    // frame, which must be the change below.
    let reader = tokio::spawn(async move {
        match answering.next_frame(LONG).await? {
            Frame::Json(v, _) if v["type"] == "change" => anyhow::Ok(v),
            other => bail!("the answering client got {other:?}"),
        }
    });
    let mut half_ws = RawSocket::open(&server, "/ws?query=*:t").await?;
    let mut half_listen = RawSocket::open(&server, "/listen/quiet").await?;
    for (what, socket) in [("/ws", &mut half_ws), ("/listen", &mut half_listen)] {
        let (_, pings, close) = socket.until_closed().await?;
        let Some((code, reason)) = close else {
            bail!("{what}: the connection ended without a close frame");
        };
        ensure!(pings >= 1, "{what}: closed before any ping");
        ensure!(
            code == 4009 && reason.contains("sessions.idle_timeout"),
            "{what}: close {code} {reason:?}"
        );
    }
    // The answering client has been open longer than the idle timeout by now.
    db.exec("INSERT INTO t VALUES (1)").await?;
    let change = tokio::time::timeout(LONG, reader)
        .await
        .context("the answering client")???;
    ensure!(change["new"]["id"] == 1, "{change}");
    ensure!(timed_out(&server, "idle").await? == 2.0);
    ensure!(timed_out(&server, "write").await? == 0.0);
    Ok(())
}
