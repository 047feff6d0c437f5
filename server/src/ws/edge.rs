//! What the HTTP edge answers before a route does its own work: 403 `host_not_allowed` for a
//! request naming a host this server does not answer to (DNS rebinding, see `auth::origin`), and
//! 426 `upgrade_required` for a request to a socket route that is no WebSocket upgrade, after the
//! checks that need nothing but the request (a plain GET of `/ws` runs no catalog query, journal
//! read or plugin instance). Does not check origins or tokens (`router::identify` does).

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::filter::{self, QueryError};

use super::router::AppState;

/// The host check of every route but the probes (`/healthz`, `/readyz`: they carry no data and
/// answer whatever name a load balancer uses).
pub(super) async fn host_guard(
    State(st): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(request.uri().path(), "/healthz" | "/readyz") {
        return next.run(request).await;
    }
    match st.auth.host_allowed(request.headers(), request.uri()) {
        Ok(()) => next.run(request).await,
        Err(message) => (
            StatusCode::FORBIDDEN,
            Json(json!({"error": "host_not_allowed", "message": message})),
        )
            .into_response(),
    }
}

/// A plain GET of `/ws` opens nothing, so it gets only the answers that need no catalog query,
/// journal read or plugin instance: the query's syntax and limits (400; `missing_query` for a bare
/// `/ws`) and `tables.allow` (403); then 426. A page learns that way why its socket was refused
/// (the host, the origin and the token were checked before).
pub(super) fn plain_get(
    st: &AppState,
    params: &[(String, String)],
    rejection: WebSocketUpgradeRejection,
) -> Response {
    let request = match filter::parse_request_with(params, &st.limits) {
        Ok(request) => request,
        Err(e) => return refusal(st.metrics.note_refusal(e)),
    };
    let table = &request.table;
    if !st.allow.allows(&table.schema, &table.name) {
        return refusal(QueryError::new(
            filter::code::TABLE_NOT_ALLOWED,
            format!("table {table} is not in this server's allow-list (tables.allow)"),
        ));
    }
    not_upgraded(rejection)
}

fn refusal(e: QueryError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(json!({"error": e.code, "message": e.message}))).into_response()
}

/// A request that passed its checks but is no WebSocket upgrade: 426 `upgrade_required` (with
/// `Upgrade: websocket`) for a plain GET or HEAD; axum's own 400 for a broken upgrade attempt
/// (no key, a wrong version).
pub(super) fn not_upgraded(rejection: WebSocketUpgradeRejection) -> Response {
    match rejection {
        WebSocketUpgradeRejection::MethodNotGet(_)
        | WebSocketUpgradeRejection::InvalidConnectionHeader(_)
        | WebSocketUpgradeRejection::InvalidUpgradeHeader(_)
        | WebSocketUpgradeRejection::ConnectionNotUpgradable(_) => (
            StatusCode::UPGRADE_REQUIRED,
            [(header::UPGRADE, "websocket")],
            Json(json!({
                "error": "upgrade_required",
                "message": "this is a WebSocket endpoint: open it with a WebSocket client \
                            (Connection: Upgrade, Upgrade: websocket)",
            })),
        )
            .into_response(),
        other => other.into_response(),
    }
}
