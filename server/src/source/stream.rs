//! The source task: slot setup, the CopyBoth loop, LSN feedback and reconnect with backoff. It
//! does not decode payloads (the `Consumer` does) nor speak SQL (prereq.rs).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Buf;
use postgres_protocol::message::frontend;
use tokio::io::AsyncReadExt;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::backoff::Backoff;
use super::conn::Conn;
use super::error::SourceError;
use super::proto::{self, CopyMsg, XLOG_HEADER_LEN};
use super::{Boundary, Consumer, SourceConfig, SourceStatus, Upstream};
use crate::vocab::Lsn;

/// How long shutdown waits for the server to acknowledge the end of streaming.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the feedback rule knows across messages of one connection.
struct Feedback {
    /// Highest position the consumer has fully taken (a transaction boundary).
    flushable: Lsn,
    /// No transaction is open after the last message.
    clean: bool,
}

/// Runs until `cancel` fires (then sends a final standby status update and returns `Ok`) or a
/// fatal error. Retryable errors reconnect with capped exponential backoff.
pub async fn run<C: Consumer>(
    cfg: SourceConfig,
    mut consumer: C,
    status: Arc<SourceStatus>,
    cancel: CancellationToken,
) -> Result<(), SourceError> {
    let mut backoff = Backoff::new(Duration::from_millis(100), cfg.max_backoff).jittered();
    // Kept across reconnects of a persistent slot (the server resumes from what we confirmed, so
    // reporting it again is harmless); a new temporary slot starts afresh.
    let mut flushable = Lsn(0);
    loop {
        if cfg.temporary {
            flushable = Lsn(0);
        }
        let mut fb = Feedback {
            flushable,
            clean: true,
        };
        let mut streamed = false;
        let result = session(
            &cfg,
            &mut consumer,
            &status,
            &cancel,
            &mut fb,
            &mut streamed,
        )
        .await;
        flushable = fb.flushable;
        status
            .connected
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let err = match result {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        status.set_last_error(err.to_string());
        if !err.is_retryable() {
            error!(error = %err, slot = %cfg.slot, "replication source stopped");
            return Err(err);
        }
        if streamed {
            backoff.reset();
        }
        let delay = backoff.delay();
        warn!(error = %err, slot = %cfg.slot, retry_in_ms = delay.as_millis() as u64, "replication connection lost");
        status
            .reconnects
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // What was handed over before the error goes out now, not after the reconnect.
        consumer.flush();
        consumer.sync().await;
        consumer.on_reconnect();
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// One connection's life: connect, make sure the slot exists, stream until error or cancel.
async fn session<C: Consumer>(
    cfg: &SourceConfig,
    consumer: &mut C,
    status: &SourceStatus,
    cancel: &CancellationToken,
    fb: &mut Feedback,
    streamed: &mut bool,
) -> Result<(), SourceError> {
    let setup = async {
        let mut conn = Conn::connect(&cfg.pg).await?;
        let mut upstream = identify_system(&mut conn, &cfg.slot).await?;
        status
            .server_end
            .fetch_max(upstream.server_lsn.0, std::sync::atomic::Ordering::Relaxed);
        match conn
            .simple_query(&proto::create_slot_command(&cfg.slot, cfg.temporary))
            .await
        {
            Ok(_) => {
                info!(slot = %cfg.slot, temporary = cfg.temporary, "created replication slot");
                upstream.slot_created = !cfg.temporary;
            }
            Err(SourceError::Server(e)) if e.code == "42710" => {
                debug!(slot = %cfg.slot, "replication slot exists")
            }
            Err(e) => return Err(e),
        }
        if let Err(reason) = consumer.on_connect(&upstream) {
            if upstream.slot_created {
                // Made on this connection for nothing: it would hold WAL back for no reader.
                match conn
                    .simple_query(&proto::drop_slot_command(&cfg.slot))
                    .await
                {
                    Ok(_) => {
                        info!(slot = %cfg.slot, "dropped the replication slot created on this connection")
                    }
                    Err(error) => {
                        warn!(slot = %cfg.slot, %error, "cannot drop the replication slot created on this connection")
                    }
                }
            }
            return Err(SourceError::Refused(reason));
        }
        conn.start_copy_both(&proto::start_replication_command(
            &cfg.slot,
            cfg.add_tables.as_deref(),
        ))
        .await?;
        Ok::<_, SourceError>(conn)
    };
    let mut conn = tokio::select! {
        _ = cancel.cancelled() => return Ok(()),
        conn = setup => conn?,
    };
    *streamed = true;
    status
        .connected
        .store(true, std::sync::atomic::Ordering::Relaxed);
    info!(slot = %cfg.slot, "streaming changes");

    let mut ticker = tokio::time::interval(cfg.status_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_status = tokio::time::Instant::now();
    loop {
        let mut reply = false;
        while let Some(total) = proto::frame_len(&conn.rbuf)? {
            if conn.rbuf[0] == b'd' {
                // Back-pressure can hold this loop for long: keep the walsender's timeout fed.
                loop {
                    let go = consumer.ready().await;
                    if last_status.elapsed() >= cfg.status_interval {
                        send_status(&mut conn, consumer.confirmable(fb.flushable), status, false)
                            .await?;
                        last_status = tokio::time::Instant::now();
                    }
                    if go {
                        break;
                    }
                    if cancel.is_cancelled() {
                        consumer.flush();
                        consumer.sync().await;
                        return close(&mut conn, consumer.confirmable(fb.flushable), status).await;
                    }
                }
            }
            let frame = &mut conn.rbuf[..total];
            match frame[0] {
                b'd' => reply |= on_copy_data(&mut frame[5..], consumer, status, fb)?,
                b'E' => {
                    return Err(SourceError::from_server(
                        proto::parse_error_fields(&frame[5..]),
                        &conn.user,
                    ))
                }
                b'N' => debug!(notice = %proto::parse_error_fields(&frame[5..]), "server notice"),
                b'c' => return Err(SourceError::Closed),
                b'S' => {}
                other => {
                    return Err(SourceError::Protocol(format!(
                        "unexpected message {:?} while streaming",
                        other as char
                    )))
                }
            }
            conn.rbuf.advance(total);
        }
        // The consumer makes the burst durable first (journal group commit), so the reply below
        // can confirm it.
        consumer.flush();
        consumer.sync().await;
        if reply {
            send_status(&mut conn, consumer.confirmable(fb.flushable), status, false).await?;
            last_status = tokio::time::Instant::now();
        }
        conn.reserve_for_read();
        // Cancel and the timer come before reading so that a busy stream cannot starve them.
        tokio::select! {
            biased;
            _ = cancel.cancelled() => {
                consumer.flush();
                consumer.sync().await;
                return close(&mut conn, consumer.confirmable(fb.flushable), status).await;
            }
            _ = ticker.tick() => {
                send_status(&mut conn, consumer.confirmable(fb.flushable), status, false).await?;
                last_status = tokio::time::Instant::now();
            }
            n = conn.io.read_buf(&mut conn.rbuf) => {
                if n.map_err(SourceError::io("reading from Postgres"))? == 0 {
                    return Err(SourceError::Closed);
                }
            }
        }
    }
}

/// `IDENTIFY_SYSTEM` on a replication connection (`slot_created` is left false).
async fn identify_system(conn: &mut Conn, slot: &str) -> Result<Upstream, SourceError> {
    let rows = conn.simple_query("IDENTIFY_SYSTEM").await?;
    let column = |i: usize| rows.first().and_then(|row| row.get(i)).cloned().flatten();
    let bad = |what: &str| SourceError::Protocol(format!("IDENTIFY_SYSTEM answered no {what}"));
    Ok(Upstream {
        system_identifier: column(0).ok_or_else(|| bad("systemid"))?,
        server_lsn: column(2)
            .and_then(|s| s.parse::<Lsn>().ok())
            .ok_or_else(|| bad("xlogpos"))?,
        database: column(3).ok_or_else(|| bad("dbname"))?,
        slot: slot.to_owned(),
        slot_created: false,
    })
}

/// Connects, asks `IDENTIFY_SYSTEM` and disconnects: what the start-up checks compare the
/// journal with, before anything streams.
pub async fn identify(cfg: &SourceConfig) -> Result<Upstream, SourceError> {
    let mut conn = Conn::connect(&cfg.pg).await?;
    let upstream = identify_system(&mut conn, &cfg.slot).await;
    frontend::terminate(&mut conn.wbuf);
    let _ = conn.send().await;
    upstream
}

/// Handles one CopyData message in place; returns whether the server asked for a reply now.
fn on_copy_data<C: Consumer>(
    data: &mut [u8],
    consumer: &mut C,
    status: &SourceStatus,
    fb: &mut Feedback,
) -> Result<bool, SourceError> {
    use std::sync::atomic::Ordering::Relaxed;
    match proto::parse_copy_data(data)? {
        CopyMsg::XLogData {
            wal_start, wal_end, ..
        } => {
            let boundary = consumer.on_data(wal_start, wal_end, &mut data[XLOG_HEADER_LEN..]);
            status.received.fetch_max(wal_end.0, Relaxed);
            status.server_end.fetch_max(wal_end.0, Relaxed);
            // For wal2json the walsender puts the same LSN in both fields; for a commit it is the
            // end of the commit record. Confirming exactly that makes Postgres skip this
            // transaction after a restart (it skips commits that start before the confirmed
            // position) while any later commit record starts at or after it.
            match boundary {
                Boundary::Clean => {
                    fb.flushable = fb.flushable.max(wal_start.max(wal_end));
                    fb.clean = true;
                }
                Boundary::InsideTransaction => fb.clean = false,
            }
            Ok(false)
        }
        CopyMsg::Keepalive {
            wal_end,
            reply_requested,
            ..
        } => {
            status.server_end.fetch_max(wal_end.0, Relaxed);
            // Everything before a keepalive was sent already: with no transaction open, the
            // server has nothing before wal_end left for us, so an idle slot can advance.
            if fb.clean {
                fb.flushable = fb.flushable.max(wal_end);
            }
            Ok(reply_requested)
        }
    }
}

async fn send_status(
    conn: &mut Conn,
    flush: Lsn,
    status: &SourceStatus,
    reply: bool,
) -> Result<(), SourceError> {
    proto::encode_status_update(
        &mut conn.wbuf,
        flush,
        proto::pg_time_micros(SystemTime::now()),
        reply,
    );
    conn.send().await?;
    status
        .flushed
        .store(flush.0, std::sync::atomic::Ordering::Relaxed);
    debug!(%flush, "sent standby status update");
    Ok(())
}

/// Final feedback, then a polite end of the stream so the walsender exits at once.
async fn close(conn: &mut Conn, flush: Lsn, status: &SourceStatus) -> Result<(), SourceError> {
    send_status(conn, flush, status, false).await?;
    frontend::copy_done(&mut conn.wbuf);
    conn.send().await?;
    let drain = async {
        // Data after the final feedback is replayed on the next start, so it is dropped here.
        loop {
            let (tag, total) = conn.read_frame().await?;
            conn.rbuf.advance(total);
            if tag == b'Z' {
                return Ok::<_, SourceError>(());
            }
        }
    };
    if let Ok(Err(e)) = tokio::time::timeout(CLOSE_TIMEOUT, drain).await {
        debug!(error = %e, "replication connection ended while closing");
    }
    frontend::terminate(&mut conn.wbuf);
    let _ = conn.send().await;
    info!(%flush, "replication stream closed");
    Ok(())
}
