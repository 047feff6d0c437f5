//! Pure codecs of the streaming-replication sub-protocol (CopyData payloads, standby status
//! updates, walsender command text, backend frame and error parsing). No I/O here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};
use postgres_protocol::escape::escape_identifier;

use super::error::{ServerError, SourceError};
use crate::vocab::Lsn;

/// Bytes before the payload of an XLogData message: tag, walStart, walEnd, sendTime.
pub(crate) const XLOG_HEADER_LEN: usize = 1 + 8 + 8 + 8;

/// Seconds between 1970-01-01 and 2000-01-01, the Postgres epoch.
const PG_EPOCH_OFFSET_SECS: u64 = 946_684_800;

/// A CopyData payload received while streaming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CopyMsg {
    /// 'w': the payload is `data[XLOG_HEADER_LEN..]`.
    XLogData {
        wal_start: Lsn,
        wal_end: Lsn,
        send_time: i64,
    },
    /// 'k': primary keepalive.
    Keepalive {
        wal_end: Lsn,
        send_time: i64,
        reply_requested: bool,
    },
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Parses the header of a CopyData payload sent by a walsender.
pub(crate) fn parse_copy_data(data: &[u8]) -> Result<CopyMsg, SourceError> {
    match data.first() {
        Some(b'w') if data.len() >= XLOG_HEADER_LEN => Ok(CopyMsg::XLogData {
            wal_start: Lsn(be_u64(&data[1..])),
            wal_end: Lsn(be_u64(&data[9..])),
            send_time: be_u64(&data[17..]) as i64,
        }),
        Some(b'k') if data.len() >= 18 => Ok(CopyMsg::Keepalive {
            wal_end: Lsn(be_u64(&data[1..])),
            send_time: be_u64(&data[9..]) as i64,
            reply_requested: data[17] != 0,
        }),
        Some(&tag) => Err(SourceError::Protocol(format!(
            "unexpected CopyData message {:?} of {} bytes",
            tag as char,
            data.len()
        ))),
        None => Err(SourceError::Protocol("empty CopyData message".into())),
    }
}

/// Microseconds since 2000-01-01 UTC, the clock field of standby status updates.
pub(crate) fn pg_time_micros(t: SystemTime) -> i64 {
    let since_unix = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let micros = since_unix.as_micros() as i64;
    micros - (PG_EPOCH_OFFSET_SECS as i64) * 1_000_000
}

/// Appends a complete CopyData frame holding a standby status update ('r').
pub(crate) fn encode_status_update(buf: &mut BytesMut, pos: Lsn, now_micros: i64, reply: bool) {
    const BODY: usize = 1 + 8 * 4 + 1;
    buf.reserve(1 + 4 + BODY);
    buf.put_u8(b'd');
    buf.put_i32((4 + BODY) as i32);
    buf.put_u8(b'r');
    // write = flush = apply: walcast has no separate durable stage yet.
    buf.put_u64(pos.0);
    buf.put_u64(pos.0);
    buf.put_u64(pos.0);
    buf.put_i64(now_micros);
    buf.put_u8(u8::from(reply));
}

/// A replication-command string literal: `'...'` with quotes doubled (backslash is not special
/// in the walsender grammar).
pub(crate) fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub(crate) fn create_slot_command(slot: &str, temporary: bool) -> String {
    // NOEXPORT_SNAPSHOT is accepted from Postgres 10 on (the parenthesised form only from 15).
    format!(
        "CREATE_REPLICATION_SLOT {}{} LOGICAL wal2json NOEXPORT_SNAPSHOT",
        escape_identifier(slot),
        if temporary { " TEMPORARY" } else { "" }
    )
}

pub(crate) fn drop_slot_command(slot: &str) -> String {
    format!("DROP_REPLICATION_SLOT {}", escape_identifier(slot))
}

pub(crate) fn start_replication_command(slot: &str, add_tables: Option<&str>) -> String {
    let mut options: Vec<(&str, &str)> = vec![
        ("format-version", "2"),
        ("include-xids", "1"),
        ("include-timestamp", "1"),
        ("include-lsn", "1"),
        ("include-types", "1"),
        ("include-transaction", "1"),
    ];
    if let Some(tables) = add_tables {
        options.push(("add-tables", tables));
    }
    let options: Vec<String> = options
        .iter()
        .map(|(k, v)| format!("{} {}", escape_identifier(k), quote_literal(v)))
        .collect();
    format!(
        "START_REPLICATION SLOT {} LOGICAL 0/0 ({})",
        escape_identifier(slot),
        options.join(", ")
    )
}

/// Length of the first complete backend frame in `buf` (tag + length + body), if it is all there.
pub(crate) fn frame_len(buf: &[u8]) -> Result<Option<usize>, SourceError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len < 4 {
        return Err(SourceError::Protocol(format!("invalid frame length {len}")));
    }
    let total = len + 1;
    Ok((buf.len() >= total).then_some(total))
}

/// Total frame length announced by a (possibly incomplete) frame header, for buffer sizing.
pub(crate) fn announced_len(buf: &[u8]) -> Option<usize> {
    (buf.len() >= 5).then(|| u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize + 1)
}

/// Parses the body of an ErrorResponse/NoticeResponse.
pub(crate) fn parse_error_fields(body: &[u8]) -> ServerError {
    let mut err = ServerError::default();
    let mut rest = body;
    while let Some((&kind, tail)) = rest.split_first() {
        if kind == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        let value = String::from_utf8_lossy(&tail[..end]).into_owned();
        match kind {
            b'C' => err.code = value,
            b'M' => err.message = value,
            b'D' => err.detail = Some(value),
            b'H' => err.hint = Some(value),
            _ => {}
        }
        rest = tail.get(end + 1..).unwrap_or(&[]);
    }
    err
}

/// Parses a DataRow body into text columns (`None` for SQL NULL).
pub(crate) fn parse_data_row(body: &[u8]) -> Result<Vec<Option<String>>, SourceError> {
    let bad = || SourceError::Protocol("malformed DataRow".into());
    let n = u16::from_be_bytes([
        *body.first().ok_or_else(bad)?,
        *body.get(1).ok_or_else(bad)?,
    ]);
    let mut rest = &body[2..];
    let mut row = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let len_bytes = rest.get(..4).ok_or_else(bad)?;
        let len = i32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        rest = &rest[4..];
        if len < 0 {
            row.push(None);
            continue;
        }
        let value = rest.get(..len as usize).ok_or_else(bad)?;
        row.push(Some(String::from_utf8_lossy(value).into_owned()));
        rest = &rest[len as usize..];
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::escape::escape_identifier as quote_ident;

    #[test]
    fn parses_xlogdata_and_keepalive() {
        let mut w = vec![b'w'];
        w.extend_from_slice(&0x1_0000_0010u64.to_be_bytes());
        w.extend_from_slice(&0x1_0000_0020u64.to_be_bytes());
        w.extend_from_slice(&7i64.to_be_bytes());
        w.extend_from_slice(b"{\"action\":\"B\"}");
        assert_eq!(
            parse_copy_data(&w).unwrap(),
            CopyMsg::XLogData {
                wal_start: Lsn(0x1_0000_0010),
                wal_end: Lsn(0x1_0000_0020),
                send_time: 7
            }
        );
        assert_eq!(&w[XLOG_HEADER_LEN..], b"{\"action\":\"B\"}");

        let mut k = vec![b'k'];
        k.extend_from_slice(&99u64.to_be_bytes());
        k.extend_from_slice(&(-1i64).to_be_bytes());
        k.push(1);
        assert_eq!(
            parse_copy_data(&k).unwrap(),
            CopyMsg::Keepalive {
                wal_end: Lsn(99),
                send_time: -1,
                reply_requested: true
            }
        );
        assert!(parse_copy_data(&k[..10]).is_err());
        assert!(parse_copy_data(b"x").is_err());
        assert!(parse_copy_data(b"").is_err());
    }

    #[test]
    fn encodes_status_update() {
        let mut buf = BytesMut::new();
        encode_status_update(&mut buf, Lsn(0x0102_0304_0506_0708), 42, true);
        assert_eq!(buf.len(), 1 + 4 + 34);
        assert_eq!(&buf[..6], &[b'd', 0, 0, 0, 38, b'r']);
        for i in 0..3 {
            assert_eq!(
                &buf[6 + 8 * i..14 + 8 * i],
                &0x0102_0304_0506_0708u64.to_be_bytes()
            );
        }
        assert_eq!(&buf[30..38], &42i64.to_be_bytes());
        assert_eq!(buf[38], 1);
        assert_eq!(frame_len(&buf).unwrap(), Some(buf.len()));
    }

    #[test]
    fn converts_time_to_postgres_epoch() {
        let y2k = UNIX_EPOCH + Duration::from_secs(PG_EPOCH_OFFSET_SECS);
        assert_eq!(pg_time_micros(y2k), 0);
        assert_eq!(
            pg_time_micros(y2k + Duration::from_micros(1_500_001)),
            1_500_001
        );
        assert!(pg_time_micros(UNIX_EPOCH) < 0);
    }

    #[test]
    fn quotes_commands() {
        assert_eq!(quote_literal("a'b\\c"), "'a''b\\c'");
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(
            create_slot_command("walcast", true),
            "CREATE_REPLICATION_SLOT \"walcast\" TEMPORARY LOGICAL wal2json NOEXPORT_SNAPSHOT"
        );
        let cmd = start_replication_command("s", Some("public.o'k,*.t"));
        assert!(
            cmd.starts_with("START_REPLICATION SLOT \"s\" LOGICAL 0/0 (\"format-version\" '2', ")
        );
        assert!(
            cmd.ends_with("\"include-transaction\" '1', \"add-tables\" 'public.o''k,*.t')"),
            "{cmd}"
        );
        assert!(!start_replication_command("s", None).contains("add-tables"));
    }

    #[test]
    fn parses_frames_errors_and_rows() {
        assert_eq!(frame_len(b"Z\0\0\0").unwrap(), None);
        assert_eq!(frame_len(b"Z\0\0\0\x05I").unwrap(), Some(6));
        assert_eq!(frame_len(b"Z\0\0\0\x05").unwrap(), None);
        assert_eq!(announced_len(b"Z\0\0\0\x05"), Some(6));
        assert!(frame_len(b"Z\0\0\0\x01").is_err());

        let err = parse_error_fields(b"SERROR\0C28P01\0Mbad password\0Hfix it\0\0");
        assert_eq!(err.code, "28P01");
        assert_eq!(err.message, "bad password");
        assert_eq!(err.hint.as_deref(), Some("fix it"));
        assert_eq!(err.detail, None);

        let row = parse_data_row(b"\0\x02\0\0\0\x02ab\xff\xff\xff\xff").unwrap();
        assert_eq!(row, vec![Some("ab".to_owned()), None]);
        assert!(parse_data_row(b"\0\x01\0\0\0\x05ab").is_err());
    }
}
