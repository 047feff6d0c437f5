//! Test harness for walcast's end-to-end suite: throwaway Postgres clusters, per-test databases,
//! the `walcast` binary as a child process and WebSocket/HTTP clients. It holds no tests itself
//! (they live in `tests/e2e/`) and never links the server crate: walcast is tested as users run it.

mod client;
mod pg;
mod server;
mod slot;

pub use client::{http_delete, http_error, percent_encode, query_string, Frame, WsClient};
pub use pg::{unique_suffix, PgCluster, PgOptions, TestDb};
pub use server::{metric_value, walcast_binary, JournalDir, Memory, Walcast, WalcastBuilder};
pub use slot::SlotHolder;

use std::time::Duration;

/// Default wait for one expected frame or condition.
pub const STEP: Duration = Duration::from_secs(15);

/// Polls `cond` every `every` until it returns `Some`, or fails after `timeout` naming `what`.
/// Polling is for observing other processes (slot positions, metrics); frames are awaited.
pub async fn wait_for<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut cond: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match cond().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if tokio::time::Instant::now() >= deadline {
            let detail = last_err
                .map(|e| format!(" (last error: {e:#})"))
                .unwrap_or_default();
            anyhow::bail!("timed out after {timeout:?} waiting for {what}{detail}");
        }
        tokio::time::sleep(every).await;
    }
}
