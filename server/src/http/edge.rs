//! What the HTTP edge answers before a route does its own work: 403 `host_not_allowed` for a
//! request naming a host this server does not answer to (DNS rebinding, see `auth::origin`), and
//! 426 `upgrade_required` for a request to a socket route that is no WebSocket upgrade, once the
//! route made the checks that need no catalog query, journal read or plugin instance
//! (`request`'s precheck for `/ws`). Does not check origins or tokens (`admission::identify`
//! does).

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::HttpError;
use super::routes::AppState;

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
        Err(message) => {
            HttpError::new(StatusCode::FORBIDDEN, "host_not_allowed", message).into_response()
        }
    }
}

/// A request that passed its checks but is no WebSocket upgrade: 426 `upgrade_required` (with
/// `Upgrade: websocket`) for a plain GET or HEAD; axum's own 400 for a broken upgrade attempt
/// (no key, a wrong version).
pub(super) fn not_upgraded(rejection: WebSocketUpgradeRejection) -> Response {
    match rejection {
        WebSocketUpgradeRejection::MethodNotGet(_)
        | WebSocketUpgradeRejection::InvalidConnectionHeader(_)
        | WebSocketUpgradeRejection::InvalidUpgradeHeader(_)
        | WebSocketUpgradeRejection::ConnectionNotUpgradable(_) => HttpError::new(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "this is a WebSocket endpoint: open it with a WebSocket client (Connection: Upgrade, \
             Upgrade: websocket)",
        )
        .with_header(header::UPGRADE, "websocket")
        .into_response(),
        other => other.into_response(),
    }
}
