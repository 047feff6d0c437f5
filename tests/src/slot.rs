//! Holding a test database's replication slot from the test: a replication connection that
//! starts streaming the slot and then reads nothing and confirms nothing. While it is held, the
//! slot is active in another process, so walcast's reconnects get as far as `IDENTIFY_SYSTEM` and
//! fail at `START_REPLICATION` (and retry); no change reaches walcast, and the slot's confirmed
//! position does not move. Dropping it closes the connection and releases the slot.

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::pg::TestDb;

/// A replication connection streaming `db`'s slot; released on drop.
pub struct SlotHolder {
    _stream: UnixStream,
}

impl SlotHolder {
    /// Ends walcast's walsender on `db`'s slot and takes the slot, retrying while it is still
    /// (or again) active in another process: a walsender that was told to end takes a moment to
    /// let go, and walcast may reconnect in between.
    pub async fn take(db: &TestDb<'_>) -> Result<SlotHolder> {
        let admin = db.connect().await?;
        let mut busy = 0;
        loop {
            admin
                .execute(
                    "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                     WHERE slot_name = $1 AND active_pid IS NOT NULL",
                    &[&db.slot()],
                )
                .await?;
            if let Some(holder) = Self::try_take(db).await? {
                return Ok(holder);
            }
            busy += 1;
            if busy == 500 {
                bail!(
                    "slot {} stayed active in another process over 500 attempts",
                    db.slot()
                );
            }
            tokio::task::yield_now().await;
        }
    }

    /// One attempt: the holder, or `None` when the slot is active in another process.
    pub async fn try_take(db: &TestDb<'_>) -> Result<Option<SlotHolder>> {
        let cluster = db.cluster();
        let path = cluster
            .socket_dir()
            .join(format!(".s.PGSQL.{}", cluster.port()));
        let mut stream = UnixStream::connect(&path)
            .await
            .with_context(|| format!("cannot connect to {}", path.display()))?;
        let mut startup = Vec::new();
        startup.extend_from_slice(&196_608i32.to_be_bytes());
        for (k, v) in [
            ("user", "postgres"),
            ("database", db.name()),
            ("replication", "database"),
        ] {
            startup.extend_from_slice(k.as_bytes());
            startup.push(0);
            startup.extend_from_slice(v.as_bytes());
            startup.push(0);
        }
        startup.push(0);
        let mut msg = ((startup.len() + 4) as i32).to_be_bytes().to_vec();
        msg.extend_from_slice(&startup);
        stream.write_all(&msg).await?;
        loop {
            match read_message(&mut stream).await? {
                (b'R', body) if body.get(..4) == Some(&[0, 0, 0, 0]) => {}
                (b'R', _) => {
                    bail!("the replication connection asks for a password (trust expected)")
                }
                (b'Z', _) => break,
                (b'E', body) => bail!("replication connection refused: {}", error_text(&body)),
                _ => {}
            }
        }
        let sql = format!("START_REPLICATION SLOT \"{}\" LOGICAL 0/0", db.slot());
        let mut query = vec![b'Q'];
        query.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
        query.extend_from_slice(sql.as_bytes());
        query.push(0);
        stream.write_all(&query).await?;
        loop {
            match read_message(&mut stream).await? {
                (b'W', _) => return Ok(Some(SlotHolder { _stream: stream })),
                // object_in_use: "replication slot ... is active for PID ..."
                (b'E', body) if error_field(&body, b'C') == Some("55006") => return Ok(None),
                (b'E', body) => bail!("START_REPLICATION failed: {}", error_text(&body)),
                _ => {}
            }
        }
    }
}

/// One backend message: its type and body.
async fn read_message(stream: &mut UnixStream) -> Result<(u8, Vec<u8>)> {
    let kind = stream
        .read_u8()
        .await
        .context("replication connection closed")?;
    let len = stream.read_i32().await?;
    let mut body = vec![0; usize::try_from(len - 4).context("bad message length")?];
    stream.read_exact(&mut body).await?;
    Ok((kind, body))
}

/// A field of an ErrorResponse body (`C`: SQLSTATE, `M`: message).
fn error_field(body: &[u8], code: u8) -> Option<&str> {
    body.split(|b| *b == 0)
        .find(|f| f.first() == Some(&code))
        .and_then(|f| std::str::from_utf8(&f[1..]).ok())
}

fn error_text(body: &[u8]) -> String {
    format!(
        "{} ({})",
        error_field(body, b'M').unwrap_or("?"),
        error_field(body, b'C').unwrap_or("?")
    )
}
