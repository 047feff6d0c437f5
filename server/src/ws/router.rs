//! HTTP surface: `GET /ws` (validates the subscription request and answers 400/403 before the
//! upgrade), `/healthz`, `/readyz`, `/metrics`. Session I/O lives in `session`.

use std::sync::Arc;

use axum::extract::ws::{
    rejection::WebSocketUpgradeRejection, Message, WebSocket, WebSocketUpgrade,
};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::filter::wasm::{PluginError, PluginGroup, PluginHost};
use crate::filter::{self, AllowList, Catalog, Filter, QueryError, TableName};
use crate::hub::{Hub, SessionSignal, SubscribeRequest};
use crate::journal::{JournalError, JournalHandle, ParsePosError, Pos};
use crate::metrics::Metrics;
use crate::source::{Lsn, SourceStatus};

use super::resume::Resume;

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    pub catalog: Arc<Catalog>,
    /// Where the catalog reconnects after its SQL connection dropped (Postgres restart).
    pub pg: tokio_postgres::Config,
    pub allow: Arc<AllowList>,
    pub status: Arc<SourceStatus>,
    pub metrics: Arc<Metrics>,
    /// The Wasm filter host; `None` when `plugins.dir` is not set.
    pub plugins: Option<Arc<PluginHost>>,
    /// Cancelled on server shutdown: every session closes with 1001.
    pub shutdown: CancellationToken,
    /// Every session task, so shutdown waits for the last one to send its close frame.
    pub sessions: TaskTracker,
    /// Readers of the journal for sessions that resume after a position (`from=`).
    pub journal: JournalHandle,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/ws", get(ws_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/plugins", get(list_plugins))
        .with_state(state)
}

/// A client-visible error answered before the upgrade.
struct ApiError(QueryError);

impl ApiError {
    /// 503: the catalog connection is down (Postgres restarting); the client should retry.
    fn unavailable() -> ApiError {
        ApiError(QueryError::new(
            "catalog_unavailable",
            "the table catalog cannot be read right now; retry shortly",
        ))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.0.code {
            "catalog_unavailable" | "journal_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            "position_expired" => StatusCode::CONFLICT,
            _ => StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::BAD_REQUEST),
        };
        (
            status,
            Json(json!({"error": self.0.code, "message": self.0.message})),
        )
            .into_response()
    }
}

fn api_error(code: &'static str, message: String) -> ApiError {
    ApiError(QueryError { code, message })
}

async fn ws_handler(
    State(st): State<AppState>,
    uri: Uri,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let (request, filter, plugin, key, resume) = match validate(&st, &uri).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => return rejection.into_response(),
    };
    // Clients send (almost) nothing: a small read buffer keeps idle sessions cheap. Writes are
    // flushed per batch, so the write buffer only needs to hold one batch comfortably.
    let sessions = st.sessions.clone();
    upgrade
        .read_buffer_size(4 * 1024)
        .write_buffer_size(64 * 1024)
        .on_upgrade(move |socket| {
            sessions.track_future(async move {
                match resume {
                    None => session(socket, st, request, filter, plugin, key).await,
                    Some(resume) => {
                        super::resume::session(socket, st, request, filter, plugin, key, resume)
                            .await
                    }
                }
            })
        })
}

/// The request, its bound filter, its plugin group, its cohort key and, with `from=`, where it
/// resumes.
type Validated = (
    filter::Request,
    Filter,
    Option<Arc<PluginGroup>>,
    String,
    Option<Resume>,
);

/// Query keys that say where a session starts, not what it receives: not part of the cohort key.
const POSITION_KEYS: [&str; 1] = ["from"];

/// Requests with the same parameters (in any order) and plugin group share a cohort: one
/// evaluation and one frame per change for all of them.
fn cohort_key(params: &[(String, String)], plugin: Option<&PluginGroup>) -> String {
    let mut sorted: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, _)| !POSITION_KEYS.contains(&k.as_str()))
        .collect();
    sorted.sort();
    let mut key = String::new();
    for (k, v) in sorted {
        // Lengths first, so no choice of characters makes two different lists collide.
        key.push_str(&format!("{}:{}:{}{}", k.len(), v.len(), k, v));
    }
    if let Some(group) = plugin {
        key.push_str(&format!("#{}", group.id()));
    }
    key
}

async fn validate(st: &AppState, uri: &Uri) -> Result<Validated, ApiError> {
    let Query(params) = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| api_error("bad_query", format!("cannot decode the query string: {e}")))?;
    let request = filter::parse_request(&params).map_err(ApiError)?;
    let table = &request.table;
    if !st.allow.allows(&table.schema, &table.name) {
        return Err(api_error(
            "table_not_allowed",
            format!("table {table} is not in this server's allow-list (tables.allow)"),
        ));
    }
    let plugin = match &request.plugin {
        None => None,
        Some(plugin) => Some(resolve_plugin(st, plugin).await?),
    };
    let columns = match lookup_columns(st, table).await {
        Ok(Some(columns)) => columns,
        Ok(None) => {
            return Err(api_error(
                "unknown_table",
                format!("table {table} does not exist"),
            ));
        }
        Err(error) => {
            tracing::warn!(%error, "catalog lookup failed");
            return Err(ApiError::unavailable());
        }
    };
    let filter = filter::bind(&request, &columns).map_err(ApiError)?;
    let key = cohort_key(&params, plugin.as_deref());
    let resume = resume_from(st, &params)?;
    Ok((request, filter, plugin, key, resume))
}

/// `from=<pos>`: a reader of the journal after that position, or 409 `position_expired` when
/// retention removed part of what follows it.
fn resume_from(st: &AppState, params: &[(String, String)]) -> Result<Option<Resume>, ApiError> {
    let mut given = params.iter().filter(|(k, _)| k == "from");
    let Some((_, text)) = given.next() else {
        return Ok(None);
    };
    if given.next().is_some() {
        return Err(api_error("bad_query", "from= given more than once".into()));
    }
    let from: Pos = text.parse().map_err(|e: ParsePosError| {
        api_error(
            "bad_position",
            format!("{e}; hand back the `pos` of a change frame or of `subscribed`"),
        )
    })?;
    match st.journal.reader(from) {
        Ok(reader) => Ok(Some(Resume { from, reader })),
        Err(JournalError::Expired { horizon, .. }) => Err(api_error(
            "position_expired",
            format!(
                "the journal no longer holds the changes after {from} (it keeps those after \
                 {horizon}); read the current rows again and subscribe without from="
            ),
        )),
        Err(error) => {
            tracing::error!(%error, %from, "journal reader failed");
            Err(api_error(
                "journal_unavailable",
                "the journal cannot be read right now; retry shortly".into(),
            ))
        }
    }
}

/// Find or create the (plugin, params) group; instantiation and `walcast_init` run off the async
/// workers.
async fn resolve_plugin(
    st: &AppState,
    plugin: &filter::PluginRef,
) -> Result<Arc<PluginGroup>, ApiError> {
    let Some(host) = st.plugins.clone() else {
        return Err(api_error(
            "unknown_plugin",
            format!(
                "no plugin named {:?}: this server has no plugin directory (plugins.dir)",
                plugin.name
            ),
        ));
    };
    let (name, params) = (plugin.name.clone(), plugin.params.clone());
    let resolved = tokio::task::spawn_blocking(move || host.group(&name, &params)).await;
    match resolved {
        Ok(Ok(group)) => Ok(group),
        Ok(Err(PluginError::Unknown(name))) => Err(api_error(
            "unknown_plugin",
            format!("no plugin named {name:?} is loaded"),
        )),
        Ok(Err(e)) => Err(api_error("plugin_rejected", e.to_string())),
        Err(_) => Err(api_error(
            "plugin_rejected",
            "the plugin crashed while starting".into(),
        )),
    }
}

/// Catalog lookup that reconnects once when the SQL connection has gone away.
async fn lookup_columns(
    st: &AppState,
    table: &TableName,
) -> Result<Option<Arc<[filter::ColumnInfo]>>, filter::CatalogError> {
    if !st.catalog.is_closed() {
        match st.catalog.columns(table).await {
            Err(e) if e.is_closed() => {}
            other => return other,
        }
    }
    match crate::source::connect_sql(&st.pg).await {
        Ok((client, _connection)) => st.catalog.replace_client(client),
        Err(error) => tracing::warn!(%error, "catalog reconnect failed"),
    }
    st.catalog.columns(table).await
}

/// What the hub files for a validated request.
pub(super) fn subscribe_request<'a>(
    table: &'a TableName,
    key: &'a str,
    ops: u8,
    filter: Filter,
    plugin: Option<Arc<PluginGroup>>,
) -> SubscribeRequest<'a> {
    SubscribeRequest {
        schema: &table.schema,
        table: &table.name,
        key,
        ops,
        filter,
        plugin,
    }
}

/// `lsn` is the position the stream had reached when the subscription was registered, left out
/// while none is known yet; `pos` the stream position it receives every change after.
pub(super) fn subscribed_frame(id: u64, table: &TableName, lsn: Lsn, pos: Pos) -> Message {
    // Built by hand so `type` comes first, as in every other frame.
    let table = serde_json::Value::from(table.to_string());
    let mut body = format!(r#"{{"type":"subscribed","subscription":"{id}","table":{table}"#);
    if lsn > Lsn(0) {
        body.push_str(&format!(r#","lsn":"{lsn}""#));
    }
    body.push_str(&format!(r#","pos":"{pos}"}}"#));
    Message::Text(body.into())
}

/// Where the stream stands: the last message the hub took in or, before the first one, how far
/// the server had sent (keepalives) or written (at connect) its WAL.
pub(super) fn stream_position(st: &AppState) -> Lsn {
    let taken = st.hub.position();
    if taken > Lsn(0) {
        return taken;
    }
    st.status.server_end()
}

async fn session(
    socket: WebSocket,
    st: AppState,
    request: filter::Request,
    filter: Filter,
    plugin: Option<Arc<PluginGroup>>,
    key: String,
) {
    let signal = SessionSignal::new(&st.shutdown);
    let table = request.table;
    // Registered before `subscribed` is sent: every change committed after the client sees it
    // is dispatched to this subscription.
    let subscription = st.hub.subscribe(
        subscribe_request(&table, &key, request.ops, filter, plugin),
        signal.clone(),
    );
    st.metrics.sessions.inc();
    let first = subscribed_frame(
        subscription.id(),
        &table,
        stream_position(&st),
        subscription.start(),
    );
    let (sink, stream) = socket.split();
    super::session::serve(sink, stream, subscription.reader(), signal, Some(first)).await;
    drop(subscription);
    st.metrics.sessions.dec();
}

async fn list_plugins(State(st): State<AppState>) -> impl IntoResponse {
    let list = st
        .plugins
        .as_ref()
        .map(|host| host.list())
        .unwrap_or_default();
    Json(list)
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(st): State<AppState>) -> impl IntoResponse {
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

async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    st.metrics
        .slot_lag_bytes
        .set(i64::try_from(st.status.lag_bytes()).unwrap_or(i64::MAX));
    if let Some(host) = &st.plugins {
        st.metrics.sync_plugins(&host.list());
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
