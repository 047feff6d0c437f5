//! The probes: `GET /healthz` (the process answers) and `GET /readyz` (the replication stream is
//! up), and the answers of every route while start-up still waits for Postgres (`gated`). Carry no
//! data and need no token; the host check lets them through (`edge`).

use std::sync::{Arc, OnceLock};

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;
use tower::ServiceExt;

use super::error::HttpError;
use super::routes::AppState;

pub(super) async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

pub(super) async fn readyz(State(st): State<AppState>) -> impl IntoResponse {
    let connected = st.status.connected();
    let body = json!({
        "replication_connected": connected,
        "flushed_lsn": st.status.flushed().to_string(),
        "slot_lag_bytes": st.status.lag_bytes(),
    });
    let code = if connected {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

/// The HTTP surface from start-up on: the router once `gate` holds it; before, `/healthz` 200,
/// `/readyz` 503 and 503 `starting` for everything else (no data is served before the checks
/// and the pipeline exist).
pub fn gated(gate: Arc<OnceLock<Router>>) -> Router {
    Router::new().fallback(move |request: Request| {
        let gate = gate.clone();
        async move {
            match gate.get() {
                Some(router) => match router.clone().oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                },
                None => starting(request.uri().path()).await,
            }
        }
    })
}

/// What `path` answers while walcast waits for Postgres.
async fn starting(path: &str) -> Response {
    match path {
        "/healthz" => healthz().await.into_response(),
        "/readyz" => {
            let body = json!({
                "replication_connected": false,
                "flushed_lsn": "0/0",
                "slot_lag_bytes": 0,
                "starting": true,
            });
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                Json(body),
            )
                .into_response()
        }
        _ => HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting",
            "walcast is starting (waiting for Postgres); retry shortly",
        )
        .with_header(header::RETRY_AFTER, "1")
        .into_response(),
    }
}
