//! The route table and the state every handler shares (`AppState`), and `GET /ws`: counts the
//! socket, identifies the client, has the URL's subscription request checked (`request`) and
//! answers 400/401/403/409/429/503 before the upgrade, then hands the socket to
//! `ws::session`. The other routes' handlers live beside it (`admin`, `probes`, `viewer`,
//! `listen`); the host check wraps them all (`edge`). Runs no session (`ws::session` does).

use std::sync::Arc;

use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{Extensions, HeaderMap, Uri};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::Router;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::filter::wasm::PluginHost;
use crate::filter::{AllowList, Catalog};
use crate::hub::Hub;
use crate::journal::JournalHandle;
use crate::metrics::Metrics;
use crate::named;
use crate::source::SourceStatus;
use crate::vocab::SessionSignal;
use crate::ws::session::Ctx;

use super::admission::{admit, answer_protocols, identify};
use super::conns::ConnLimits;
use super::request::{query_params, SessionOpener};
use super::{admin, probes};

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    pub catalog: Arc<Catalog>,
    /// Where the catalog reconnects after its SQL connection dropped (Postgres restart).
    pub pg: crate::source::PgEndpoint,
    pub allow: Arc<AllowList>,
    pub status: Arc<SourceStatus>,
    pub metrics: Arc<Metrics>,
    /// The Wasm filter host; `None` when `plugins.dir` is not set.
    pub plugins: Option<Arc<PluginHost>>,
    /// Cancelled on server shutdown: every session closes with 1001.
    pub shutdown: CancellationToken,
    /// Every session task, so shutdown waits for the last one to send its close frame.
    pub sessions: TaskTracker,
    /// Readers of the journal for sessions that resume after a position or fell behind.
    pub journal: JournalHandle,
    /// Named subscriptions (`sub=`).
    pub named: Arc<named::Store>,
    /// `sessions.max_subscriptions_per_socket`.
    pub max_subscriptions: usize,
    /// Where snapshots connect, and how many run at once.
    pub snapshots: Arc<crate::snapshot::Snapshots>,
    /// The LISTEN/NOTIFY relay and the channels it may relay (`notify.channels`).
    pub relay: Arc<crate::relay::Relay>,
    pub notify_allow: Arc<crate::relay::Channels>,
    /// Tokens, the admin token, allowed origins and the policy.
    pub auth: Arc<Authenticator>,
    /// Sockets open, in all and per client address.
    pub conns: Arc<ConnLimits>,
    /// `sessions.max_messages_per_second`.
    pub max_messages_per_second: u32,
    /// `[limits]`: what one subscription request may hold; every request is parsed under them.
    pub limits: crate::config::Limits,
    /// `sessions.write_timeout`, `sessions.ping_interval`, `sessions.idle_timeout`.
    pub timeouts: crate::ws::SocketTimeouts,
}

pub fn router(state: AppState) -> Router {
    // Operators' endpoints: behind `admin.token`.
    let admin = Router::new()
        .route("/metrics", get(admin::metrics))
        .route("/v1/plugins", get(admin::list_plugins))
        .route("/v1/subscriptions", get(admin::list_subscriptions))
        .route(
            "/v1/subscriptions/{name}",
            delete(admin::delete_subscription),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), admin::guard));
    Router::new()
        .route("/ws", get(ws_handler))
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .route("/v1/tables", get(super::viewer::tables))
        .route("/", get(super::viewer::index))
        .route("/assets/viewer.js", get(super::viewer::script))
        .route("/assets/viewer.css", get(super::viewer::style))
        .route("/listen/{channel}", get(super::listen::handler))
        .merge(admin)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            super::edge::host_guard,
        ))
        .with_state(state)
}

/// `GET /ws`: the refusals before the upgrade (connection limits, the client, the URL's
/// subscription request), then the session.
async fn ws_handler(
    State(st): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    extensions: Extensions,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // Counted before anything is parsed or looked up; plain HTTP requests are not sockets.
    let permit = match &upgrade {
        Ok(_) => match admit(&st, &extensions, &headers) {
            Ok(permit) => Some(permit),
            Err(refused) => return refused.into_response(),
        },
        Err(_) => None,
    };
    let mut params = match query_params(&uri) {
        Ok(params) => params,
        Err(e) => return e.into_response(),
    };
    let principal = match identify(&st, &headers, &mut params) {
        Ok(principal) => principal,
        Err(refused) => return refused.into_response(),
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            // A plain GET opens nothing: it gets the refusals that need no catalog query,
            // journal read or plugin instance, then 426.
            let opener = SessionOpener::new(st.clone(), principal);
            return match opener.precheck(&params) {
                Ok(()) => super::edge::not_upgraded(rejection),
                Err(e) => e.into_response(),
            };
        }
    };
    let opener = Arc::new(SessionOpener::new(st.clone(), principal));
    // No `query=`: a socket whose subscriptions come in `subscribe` messages.
    let first = if params.iter().all(|(k, _)| k != "query") {
        None
    } else {
        let signal = SessionSignal::new(&st.shutdown);
        match opener.open_authorized(params, signal.clone()).await {
            Ok(opened) => Some((opened, signal)),
            Err(e) => return e.into_response(),
        }
    };
    let ctx = Ctx {
        hub: st.hub.clone(),
        journal: st.journal.clone(),
        metrics: st.metrics.clone(),
        shutdown: st.shutdown.clone(),
        status: st.status.clone(),
        max_subscriptions: st.max_subscriptions,
        snapshots: Some(st.snapshots.clone()),
        auth: opener.auth(),
        opener,
        max_messages_per_second: st.max_messages_per_second,
        timeouts: st.timeouts,
    };
    // Clients send little (acks, subscribe messages): a small read buffer keeps idle sessions
    // cheap. Writes are flushed per batch, so the write buffer only needs to hold one batch.
    let sessions = st.sessions.clone();
    upgrade
        .protocols(answer_protocols(&headers))
        .read_buffer_size(4 * 1024)
        .write_buffer_size(64 * 1024)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| {
            sessions.track_future(async move {
                let _permit = permit;
                let (sink, stream) = socket.split();
                crate::ws::session::run(sink, stream, ctx, first).await
            })
        })
}

/// The largest client message (an ack is under 60 bytes).
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
