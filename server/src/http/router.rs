//! HTTP surface: `GET /ws` (validates the subscription request, claims a named subscription and
//! answers 400/403/409 before the upgrade), `/healthz`, `/readyz`, `/metrics`, `/v1/plugins`,
//! `/v1/subscriptions`. Session I/O lives in `session`, the viewer page in `viewer`, the NOTIFY
//! relay's sockets in `listen`, the host check and the answer to a plain GET in `edge`.

use std::sync::Arc;

use axum::extract::ws::{rejection::WebSocketUpgradeRejection, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, Extensions, HeaderMap, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Authenticator, Principal, SessionAuth, Unauthorized};
use crate::decode::Format;
use crate::filter::wasm::{PluginError, PluginGroup, PluginHost};
use crate::filter::{self, AllowList, Catalog, QueryError, TableName};
use crate::hub::Hub;
use crate::journal::{JournalError, JournalHandle, JournalReader};
use crate::metrics::Metrics;
use crate::named::{self, Bound, ClaimError};
use crate::source::SourceStatus;
use crate::vocab::{ParsePosError, Pos, SessionSignal};

use super::conns::{ConnLimits, ConnPermit, ConnRefusal};
use crate::ws::session::{Ctx, Opened, Opener, Plan, Refusal, Start};

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
        .route("/metrics", get(metrics))
        .route("/v1/plugins", get(list_plugins))
        .route("/v1/subscriptions", get(list_subscriptions))
        .route("/v1/subscriptions/{name}", delete(delete_subscription))
        .route_layer(middleware::from_fn_with_state(state.clone(), admin_guard));
    Router::new()
        .route("/ws", get(ws_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
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

/// 401 `unauthorized` for the admin endpoints without the admin token.
async fn admin_guard(State(st): State<AppState>, request: Request, next: Next) -> Response {
    match st.auth.admin_allowed(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(Unauthorized(message)) => unauthorized(message),
    }
}

/// `401 {"error":"unauthorized","message":...}` with the `WWW-Authenticate` challenge.
pub(super) fn unauthorized(message: String) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(json!({"error": "unauthorized", "message": message})),
    )
        .into_response()
}

/// Who a request is, before anything else is looked at: the origin allow-list (403
/// `origin_not_allowed`), then the token (401). `access_token=` is taken out of `params`, so it
/// never becomes part of a cohort key or a named subscription's stored query.
pub(super) fn identify(
    st: &AppState,
    headers: &HeaderMap,
    params: &mut Vec<(String, String)>,
) -> Result<Option<Principal>, Response> {
    if let Err(message) = st.auth.origin_allowed(headers) {
        return Err(api_error("origin_not_allowed", message).into_response());
    }
    let mut access_token = None;
    params.retain(|(k, v)| {
        if k == "access_token" {
            access_token = Some(v.clone());
            false
        } else {
            true
        }
    });
    let creds = crate::auth::credentials(headers, access_token.as_deref());
    st.auth
        .authenticate(&creds)
        .map_err(|Unauthorized(message)| unauthorized(message))
}

/// A place for one more socket from the request's client (the peer, or the address a trusted
/// proxy forwarded; loopback clients count toward the total only), or the refusal: 503
/// `too_many_connections`, 429 `too_many_connections_from_ip`.
pub(super) fn admit(
    st: &AppState,
    extensions: &Extensions,
    headers: &HeaderMap,
) -> Result<ConnPermit, Response> {
    let ip = extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(addr)| st.conns.client_ip(addr.ip(), headers))
        .filter(|ip| !ip.is_loopback());
    st.conns.acquire(ip).map_err(|refusal| {
        let (status, code, message) = match refusal {
            ConnRefusal::Total(n) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_connections",
                format!("this server holds {n} sockets, the most allowed (http.max_connections); retry later"),
            ),
            ConnRefusal::PerIp(n) => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_connections_from_ip",
                format!("your address holds {n} sockets, the most allowed (http.max_connections_per_ip)"),
            ),
        };
        st.metrics.limit_refused(code);
        (status, Json(json!({"error": code, "message": message}))).into_response()
    })
}

/// The subprotocol to answer with: `walcast` when offered, else the client's `bearer.<jwt>`
/// entry (a browser fails the handshake when it offered protocols and none comes back).
pub(super) fn answer_protocols(headers: &HeaderMap) -> Vec<String> {
    let mut out = vec![crate::auth::WALCAST_PROTOCOL.to_owned()];
    if let Some(token) = crate::auth::subprotocol_token(headers) {
        out.push(format!("{}{token}", crate::auth::BEARER_PROTOCOL));
    }
    out
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
            "position_expired"
            | "position_ahead"
            | "subscription_busy"
            | "subscription_mismatch"
            | "named_unavailable" => StatusCode::CONFLICT,
            "too_many_named_subscriptions" => StatusCode::TOO_MANY_REQUESTS,
            "unknown_subscription" => StatusCode::NOT_FOUND,
            "forbidden" | "origin_not_allowed" => StatusCode::FORBIDDEN,
            _ => StatusCode::from_u16(self.0.status()).unwrap_or(StatusCode::BAD_REQUEST),
        };
        (
            status,
            Json(json!({"error": self.0.code, "message": self.0.message})),
        )
            .into_response()
    }
}

/// `error` as the refusal it answers with, counted in `walcast_limit_refusals_total` when it
/// answers one of the `[limits]`.
fn counted(metrics: &Metrics, error: QueryError) -> ApiError {
    if let Some(limit) = error.limit() {
        metrics.limit_refusal(limit);
    }
    ApiError(error)
}

fn api_error(code: &'static str, message: String) -> ApiError {
    ApiError(QueryError { code, message })
}

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
            Err(refused) => return refused,
        },
        Err(_) => None,
    };
    let mut params = match query_params(&uri) {
        Ok(params) => params,
        Err(e) => return e.into_response(),
    };
    let principal = match identify(&st, &headers, &mut params) {
        Ok(principal) => principal,
        Err(refused) => return refused,
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            // A plain GET opens nothing: it gets the refusals that need no catalog query,
            // journal read or plugin instance, then 426.
            let opener = SessionOpener {
                st: st.clone(),
                auth: principal.map(|p| SessionAuth::new(st.auth.clone(), p)),
            };
            return match opener.precheck(&params) {
                Ok(()) => super::edge::not_upgraded(rejection),
                Err(e) => e.into_response(),
            };
        }
    };
    let session_auth = principal.map(|p| SessionAuth::new(st.auth.clone(), p));
    let opener = Arc::new(SessionOpener {
        st: st.clone(),
        auth: session_auth.clone(),
    });
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
        opener,
        auth: session_auth,
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

impl AppState {
    /// Validates a parsed subscription request and places it (`owner`: who asks, for a named
    /// subscription): where it starts, and its hold on a named subscription.
    async fn open_asked(
        &self,
        asked: Asked,
        owner: Option<&named::Owner>,
        signal: Arc<SessionSignal>,
    ) -> Result<Opened, ApiError> {
        let Validated {
            plan,
            query,
            from,
            sub,
            snapshot,
        } = validate(self, asked).await?;
        if snapshot {
            return Ok(Opened {
                plan,
                start: Start::Snapshot,
                claim: None,
            });
        }
        let (claim, start) = place(self, &plan, &query, from, sub.as_deref(), owner, &signal)?;
        Ok(Opened { plan, start, claim })
    }
}

/// Opens a socket's subscriptions (the URL's and every `subscribe` message's) as its principal:
/// each request is parsed once, under the configured limits, the policy rewrites that parsed
/// request, and validation checks the same one.
struct SessionOpener {
    st: AppState,
    auth: Option<Arc<SessionAuth>>,
}

impl SessionOpener {
    async fn open_authorized(
        &self,
        params: Vec<(String, String)>,
        signal: Arc<SessionSignal>,
    ) -> Result<Opened, ApiError> {
        let asked = self.asked(&params)?;
        self.st
            .open_asked(asked, self.owner().as_ref(), signal)
            .await
    }

    /// What a plain (non-upgrade) GET of `/ws` is told: the checks of `open_authorized` that
    /// need no catalog query, journal read or plugin instance (the query's syntax and limits,
    /// the policy, `tables.allow`, a `from=` this server never reached or no longer holds).
    fn precheck(&self, params: &[(String, String)]) -> Result<(), ApiError> {
        let asked = self.asked(params)?;
        check_allowed(&self.st, &asked.request.table)?;
        if let Some(from) = asked.from {
            journal_reader(&self.st, from)?;
        }
        Ok(())
    }

    /// The request parsed once, under the configured limits, and rewritten by the policy.
    fn asked(&self, params: &[(String, String)]) -> Result<Asked, ApiError> {
        let mut asked = parse_asked(&self.st, params)?;
        if let Some(policy) = self.st.auth.policy() {
            // A policy applies to every request; one without a principal is refused (fail closed).
            let Some(auth) = &self.auth else {
                return Err(api_error(
                    "forbidden",
                    "this server has a policy and the request carries no token".into(),
                ));
            };
            policy
                .apply(
                    &auth.principal(),
                    &mut asked.request,
                    asked.snapshot,
                    &self.st.limits,
                )
                .map_err(|r| api_error(r.code, r.message))?;
        }
        Ok(asked)
    }

    /// Who the socket's named subscriptions belong to: the anonymous subject without
    /// authentication, else the token's `sub`. `None`: a token without `sub` owns no name.
    fn owner(&self) -> Option<named::Owner> {
        match &self.auth {
            None => Some(named::Owner::Anonymous),
            Some(auth) => auth
                .principal()
                .subject()
                .filter(|sub| !sub.is_empty())
                .map(|sub| named::Owner::Subject(sub.to_owned())),
        }
    }
}

impl Opener for SessionOpener {
    fn open(
        &self,
        params: Vec<(String, String)>,
        signal: Arc<SessionSignal>,
    ) -> BoxFuture<'_, Result<Opened, Refusal>> {
        Box::pin(async move {
            self.open_authorized(params, signal)
                .await
                .map_err(|ApiError(e)| Refusal {
                    code: e.code,
                    message: e.message,
                })
        })
    }
}

fn query_params(uri: &Uri) -> Result<Vec<(String, String)>, ApiError> {
    let Query(params) = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| api_error("bad_query", format!("cannot decode the query string: {e}")))?;
    Ok(params)
}

/// The largest client message (an ack is under 60 bytes).
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// A subscription request parsed once, under the configured limits: what the policy rewrites
/// and every later check uses.
struct Asked {
    request: filter::Request,
    /// `snapshot=true`.
    snapshot: bool,
    /// `from=`.
    from: Option<Pos>,
    /// `sub=`.
    sub: Option<String>,
    /// The client's parameters but `from=` and `sub=`, sorted and URL-encoded: what a named
    /// subscription is stored with and compared against.
    query: String,
}

/// A validated `/ws` request.
struct Validated {
    plan: Plan,
    /// The canonical query a named subscription is stored with.
    query: String,
    /// `from=`: where it resumes, with its journal reader.
    from: Option<(Pos, JournalReader)>,
    /// `sub=`.
    sub: Option<String>,
    /// `snapshot=true`.
    snapshot: bool,
}

/// Where the session starts, and its hold on its named subscription (`owner`: who asks, `None`
/// for a token without `sub`): 403 when the name belongs to another subject (or the token has no
/// subject), 409 when it is taken, was created with another query, cannot be served (temporary
/// slot) or retention removed what follows its ack, 429 past a `[named]` bound.
fn place(
    st: &AppState,
    plan: &Plan,
    query: &str,
    from: Option<(Pos, JournalReader)>,
    sub: Option<&str>,
    owner: Option<&named::Owner>,
    signal: &Arc<SessionSignal>,
) -> Result<(Option<named::Claim>, Start), ApiError> {
    let Some(name) = sub else {
        let start = match from {
            None => Start::Live,
            Some((from, reader)) => Start::After(from, reader),
        };
        return Ok((None, start));
    };
    let Some(owner) = owner else {
        return Err(api_error(
            "forbidden",
            "a named subscription belongs to the subject of the token that creates it (its sub \
             claim), and this token has none: subscribe without sub=, or with a token that has sub"
                .into(),
        ));
    };
    let table = plan.table.to_string();
    let claim = st
        .named
        .claim(name, query, &table, owner, signal.clone())
        .map_err(|e| match e {
            ClaimError::Unavailable => api_error(
                "named_unavailable",
                "named subscriptions are off: this server uses a temporary replication slot \
                 (replication.temporary), so no acknowledged position survives a restart; \
                 subscribe without sub="
                    .into(),
            ),
            // Nothing about the name beyond that it is taken: not its query, not its owner.
            ClaimError::Forbidden => api_error(
                "forbidden",
                format!("named subscription {name:?} belongs to another subject; use another name"),
            ),
            ClaimError::TooMany(bound) => {
                st.metrics.limit_refused("too_many_named_subscriptions");
                let message = match bound {
                    Bound::Total(n) => format!(
                        "this server stores {n} named subscriptions, the most allowed \
                         (named.max_subscriptions); an operator can delete unused ones \
                         (DELETE /v1/subscriptions/{{name}})"
                    ),
                    Bound::PerSubject(n) => format!(
                        "you own {n} named subscriptions, the most one subject may \
                         (named.max_per_subject); reuse one of your names, or have an operator \
                         delete unused ones"
                    ),
                };
                api_error("too_many_named_subscriptions", message)
            }
            ClaimError::Busy => api_error(
                "subscription_busy",
                format!("named subscription {name:?} is in use by another socket"),
            ),
            ClaimError::Mismatch { stored } => api_error(
                "subscription_mismatch",
                format!(
                    "named subscription {name:?} was created with another query ({stored}); \
                     use another name, or delete it first (DELETE /v1/subscriptions/{name})"
                ),
            ),
        })?;
    let start = match claim.resume_after() {
        None => Start::Live,
        Some(acked) => match journal_reader(st, acked) {
            Ok(reader) => {
                claim.resumable();
                Start::After(acked, reader)
            }
            Err(refused) => {
                if refused.0.code == "position_expired" {
                    claim.position_gone();
                }
                return Err(refused);
            }
        },
    };
    Ok((Some(claim), start))
}

/// Query keys that say where a session starts, not what it receives: not part of the cohort key.
const POSITION_KEYS: [&str; 2] = ["from", "sub"];

/// Requests that ask for the same changes (the same parsed request once the policy applied,
/// conditions in any order) and share a plugin group share a cohort: one evaluation and one
/// frame per change for all of them.
fn cohort_key(request: &filter::Request, plugin: Option<&PluginGroup>) -> String {
    let mut request = request.clone();
    request.conditions.sort_by_cached_key(|c| format!("{c:?}"));
    request.any_op = false;
    // `Debug` quotes every string it shows, so two different requests never give one key.
    let mut key = format!("{request:?}");
    if let Some(group) = plugin {
        key.push_str(&format!("#{}", group.id()));
    }
    key
}

/// The parameters that decide what a session receives, sorted and URL-encoded: what a named
/// subscription is stored with and compared against.
fn canonical_query(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, _)| !POSITION_KEYS.contains(&k.as_str()))
        .collect();
    sorted.sort();
    serde_urlencoded::to_string(sorted).unwrap_or_default()
}

/// Parses a subscription request once, under the configured limits: the filter request and
/// where it starts (`snapshot=`, `from=`, `sub=`), each checked.
fn parse_asked(st: &AppState, params: &[(String, String)]) -> Result<Asked, ApiError> {
    let request = filter::parse_request_with(params, &st.limits)
        .map_err(|e| counted(&st.metrics, e))?;
    let snapshot = match position_param(params, "snapshot")? {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(api_error(
                "bad_query",
                format!("snapshot={other:?}: give true or false"),
            ))
        }
    };
    let from = position_param(params, "from")?
        .map(|text| {
            text.parse::<Pos>().map_err(|e: ParsePosError| {
                api_error(
                    "bad_position",
                    format!("{e}; hand back the `pos` of a change frame or of `subscribed`"),
                )
            })
        })
        .transpose()?;
    let sub = position_param(params, "sub")?;
    if let Some(name) = sub {
        if !named::valid_name(name) {
            return Err(api_error(
                "bad_subscription_name",
                format!(
                    "sub={name:?}: a subscription name is 1 to 64 characters of A-Z a-z 0-9 _ . -"
                ),
            ));
        }
        if from.is_some() || snapshot {
            return Err(api_error(
                "bad_query",
                "from= or snapshot= cannot be combined with sub=: a named subscription resumes \
                 after its last acknowledged position"
                    .into(),
            ));
        }
    }
    if snapshot && from.is_some() {
        return Err(api_error(
            "bad_query",
            "from= and snapshot= cannot be combined: a snapshot starts from the current rows"
                .into(),
        ));
    }
    if snapshot && request.format == Format::Wal2jsonV1 {
        return Err(api_error(
            "bad_query",
            "snapshot=true cannot be combined with format=wal2json-v1: that format has no frame \
             for a row that already exists"
                .into(),
        ));
    }
    Ok(Asked {
        request,
        snapshot,
        from,
        sub: sub.map(str::to_owned),
        query: canonical_query(params),
    })
}

async fn validate(st: &AppState, asked: Asked) -> Result<Validated, ApiError> {
    let Asked {
        request,
        snapshot,
        from,
        sub,
        query,
    } = asked;
    let table = &request.table;
    check_allowed(st, table)?;
    let plugin = match &request.plugin {
        None => None,
        Some(plugin) => {
            // A place among the plugin's groups (`limits.max_groups_per_plugin`), held until
            // the group is resolved.
            let _admitted = (st.plugins.as_ref().map(|host| host.admit(plugin)))
                .transpose()
                .map_err(|e| counted(&st.metrics, e))?;
            Some(resolve_plugin(st, plugin).await?)
        }
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
    if let Some(group) = &plugin {
        group.serve(filter.format());
    }
    let key = cohort_key(&request, plugin.as_deref());
    let from = from
        .map(|from| journal_reader(st, from).map(|reader| (from, reader)))
        .transpose()?;
    Ok(Validated {
        query,
        plan: Plan {
            table: request.table,
            key,
            ops: request.ops,
            filter,
            plugin,
            columns,
            conditions: request.conditions,
        },
        from,
        sub,
        snapshot,
    })
}

/// The value of a key that may be given once.
fn position_param<'a>(
    params: &'a [(String, String)],
    key: &str,
) -> Result<Option<&'a str>, ApiError> {
    let mut given = params.iter().filter(|(k, _)| k == key);
    let first = given.next().map(|(_, v)| v.as_str());
    if given.next().is_some() {
        return Err(api_error(
            "bad_query",
            format!("{key}= given more than once"),
        ));
    }
    Ok(first)
}

/// 403 `table_not_allowed` for a table outside `tables.allow`.
fn check_allowed(st: &AppState, table: &filter::TableName) -> Result<(), ApiError> {
    if st.allow.allows(&table.schema, &table.name) {
        return Ok(());
    }
    Err(api_error(
        "table_not_allowed",
        format!("table {table} is not in this server's allow-list (tables.allow)"),
    ))
}

/// A reader of the journal after `from` (no I/O yet): 409 `position_ahead` for a position this
/// server never dispatched, 409 `position_expired` when retention removed part of what follows
/// it.
fn journal_reader(st: &AppState, from: Pos) -> Result<JournalReader, ApiError> {
    // A position this server never reached (another server's, or a journal that was replaced)
    // would silently skip every change up to it.
    // (Compared by commit: the position's two halves are read one after the other.)
    let last = st.hub.last_pos();
    if from.commit > last.commit {
        return Err(api_error(
            "position_ahead",
            format!(
                "from={from} is beyond the last position this server has dispatched ({last}); \
                 hand back a `pos` this server sent, or subscribe without from="
            ),
        ));
    }
    match st.journal.reader(from) {
        Ok(reader) => Ok(reader),
        Err(JournalError::Expired { horizon, .. }) => Err(api_error(
            "position_expired",
            format!(
                "the journal no longer holds the changes after {from} (it keeps those after \
                 {horizon}); read the current rows again and subscribe without from= (a named \
                 subscription: delete it and subscribe again)"
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

/// Find or create the (plugin, params, visible columns) group; instantiation and `walcast_init`
/// run off the async workers.
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
    let plugin = plugin.clone();
    let resolved = tokio::task::spawn_blocking(move || host.group(&plugin)).await;
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
    reconnect_catalog(st).await;
    st.catalog.columns(table).await
}

/// A fresh catalog connection after the old one closed (Postgres restarted).
pub(super) async fn reconnect_catalog(st: &AppState) {
    match crate::source::connect_sql(&st.pg).await {
        Ok((client, _connection)) => st.catalog.replace_client(client),
        Err(error) => tracing::warn!(%error, "catalog reconnect failed"),
    }
}

async fn list_plugins(State(st): State<AppState>) -> impl IntoResponse {
    let list = st
        .plugins
        .as_ref()
        .map(|host| host.list())
        .unwrap_or_default();
    Json(list)
}

/// `GET /v1/subscriptions`: every named subscription, with how far behind the stream it is.
async fn list_subscriptions(State(st): State<AppState>) -> impl IntoResponse {
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
async fn delete_subscription(State(st): State<AppState>, Path(name): Path<String>) -> Response {
    if st.named.delete(&name) {
        tracing::info!(subscription = %name, "named subscription deleted");
        StatusCode::NO_CONTENT.into_response()
    } else {
        api_error(
            "unknown_subscription",
            format!("no named subscription {name:?}"),
        )
        .into_response()
    }
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
