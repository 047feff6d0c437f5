//! walcast end-to-end suite: one test binary. Each test creates its own database and slot in a
//! throwaway Postgres (shared unless the test stops Postgres or needs special settings) and runs
//! the real `walcast` binary (see `walcast_tests` for how it is located).

mod auth;
mod bench;
mod catchup;
mod differential;
mod durable;
mod edges;
mod errors;
mod filters;
mod journal;
mod journal_trust;
mod limits;
mod listen;
mod multiplex;
mod named_trust;
mod pace;
mod plugins;
mod policy_edges;
mod policy_plugins;
mod protocol;
mod replay;
mod resilience;
mod scale;
mod schema;
mod setup;
mod smoke;
mod snapshot;
mod speculare;
mod templates;
mod timeouts;
mod tls;
mod viewer;

use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::Value;
use walcast_tests::{Frame, WsClient, STEP};

/// The `id` column of a change frame's `new` (or `old` for deletes).
pub fn row_id(change: &Value) -> Option<i64> {
    change["new"]["id"]
        .as_i64()
        .or_else(|| change["old"]["id"].as_i64())
}

/// Reads change frames and requires exactly `expected` ids, in order.
pub async fn expect_ids(client: &mut WsClient, expected: &[i64], what: &str) -> Result<()> {
    let mut got = Vec::new();
    for want in expected {
        let frame = client.next_frame(STEP).await;
        match frame {
            Ok(Frame::Json(v, _)) if v["type"] == "change" => {
                let id = row_id(&v);
                got.push(id.unwrap_or(-1));
                if id != Some(*want) {
                    bail!("{what}: expected ids {expected:?}, got {got:?} so far (frame {v})");
                }
            }
            Ok(other) => bail!("{what}: expected ids {expected:?}, got {got:?} then {other:?}"),
            Err(e) => bail!("{what}: expected ids {expected:?}, got {got:?} then: {e:#}"),
        }
    }
    Ok(())
}

/// Checks `ts` is RFC 3339: a `T` between date and time, and `Z` or a numeric offset at the end.
pub fn assert_rfc3339(ts: &str) {
    let b = ts.as_bytes();
    assert!(
        b.len() >= 20 && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':',
        "ts not RFC 3339: {ts}"
    );
    let tail = &ts[19..];
    let offset_ok = tail.ends_with('Z') || {
        let n = tail.len();
        n >= 6 && matches!(tail.as_bytes()[n - 6], b'+' | b'-') && tail.as_bytes()[n - 3] == b':'
    };
    assert!(offset_ok, "ts has no Z or +hh:mm offset: {ts}");
}

/// The raw JSON token after `"key":` in a frame's text (scalars only), to check numbers digit by digit.
pub fn raw_scalar<'a>(raw: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":");
    let start = raw.find(&pat)? + pat.len();
    let rest = raw[start..].trim_start();
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim_end())
}

pub const LONG: Duration = Duration::from_secs(60);
