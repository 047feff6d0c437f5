//! The operators' endpoints, behind `admin.token`: `GET /metrics`, `GET /v1/plugins`,
//! `GET /v1/subscriptions` (named subscriptions with their lag) and `DELETE
//! /v1/subscriptions/{name}`. Reads the hub, the journal and the named store; changes nothing but
//! the named store.

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::auth::Unauthorized;
use crate::journal::JournalHandle;
use crate::vocab::Pos;

use super::error::{refusal, HttpError};
use super::routes::AppState;

/// 401 `unauthorized` for the admin endpoints without the admin token.
pub(super) async fn guard(State(st): State<AppState>, request: Request, next: Next) -> Response {
    match st.auth.admin_allowed(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(Unauthorized(message)) => HttpError::unauthorized(message).into_response(),
    }
}

/// `GET /v1/plugins`: every plugin with its version, status and counters.
pub(super) async fn list_plugins(State(st): State<AppState>) -> impl IntoResponse {
    let list = st
        .plugins
        .as_ref()
        .map(|host| host.list())
        .unwrap_or_default();
    Json(list)
}

/// `GET /v1/subscriptions`: every named subscription, with how far behind the stream it is.
pub(super) async fn list_subscriptions(State(st): State<AppState>) -> impl IntoResponse {
    let listed = st.named.list();
    let last = st.hub.last_pos();
    let journal = st.journal.clone();
    // Counting unacknowledged changes reads the journal after each ack: off the async workers.
    let rows = tokio::task::spawn_blocking(move || {
        listed
            .into_iter()
            .map(|l| {
                let lag_changes = count_after(&journal, l.acked);
                json!({
                    "name": l.name,
                    "query": l.query,
                    "table": l.table,
                    "acked": l.acked.to_string(),
                    "lag_bytes": last.commit.0.saturating_sub(l.acked.commit.0),
                    "lag_changes": lag_changes,
                    "connected": l.connected,
                    "created_at": l.created_at,
                    "owner": l.owner,
                    "expired": l.expired,
                })
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    Json(rows)
}

/// Changes the journal holds after `after` (`null` when it cannot tell: expired or unreadable).
fn count_after(journal: &JournalHandle, after: Pos) -> Option<u64> {
    let mut reader = journal.reader(after).ok()?;
    let mut n = 0;
    while let Some(record) = reader.next().ok()? {
        n += u64::from(record.kind == crate::journal::RecordKind::Change);
    }
    Some(n)
}

/// `DELETE /v1/subscriptions/{name}`: forget it (its connected session closes with 4011) and
/// release what it held of the journal.
pub(super) async fn delete_subscription(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    if st.named.delete(&name) {
        tracing::info!(subscription = %name, "named subscription deleted");
        StatusCode::NO_CONTENT.into_response()
    } else {
        refusal(
            "unknown_subscription",
            format!("no named subscription {name:?}"),
        )
        .into_response()
    }
}

/// `GET /metrics`: the OpenMetrics text, with the gauges and counters kept elsewhere (slot lag,
/// plugin totals, reconnects) brought up to date first.
pub(super) async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    st.metrics
        .slot_lag_bytes
        .set(i64::try_from(st.status.lag_bytes()).unwrap_or(i64::MAX));
    if let Some(host) = &st.plugins {
        host.sync_metrics(&st.metrics);
    }
    let reconnects = st.status.reconnects();
    let counted = st.metrics.reconnects.get();
    if reconnects > counted {
        st.metrics.reconnects.inc_by(reconnects - counted);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.render(),
    )
}
