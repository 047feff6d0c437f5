//! The viewer page at `/`: three embedded files (HTML, script, style) served with their content
//! types and a strict Content-Security-Policy, and `GET /v1/tables`, the tables the page offers
//! (the catalog's, as `tables.allow` lets through). The page talks to `/ws` and `/listen` like any
//! client; this module holds no session logic.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::routes::AppState;

const INDEX_HTML: &str = include_str!("../../assets/viewer/index.html");
const VIEWER_JS: &str = include_str!("../../assets/viewer/viewer.js");
const VIEWER_CSS: &str = include_str!("../../assets/viewer/viewer.css");

/// Only the page's own files run or style it; its sockets and requests go to this server only.
pub(super) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", VIEWER_JS)
}

pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", VIEWER_CSS)
}

/// `{"tables":[{"schema","table","columns":[{"name","type"}]}]}`: the tables `tables.allow`
/// lets through and, under a policy, those a rule of the caller's role names, each with the
/// columns that rule shows.
pub(super) async fn tables(
    State(st): State<AppState>,
    Query(mut params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let principal = match super::admission::identify(&st, &headers, &mut params) {
        Ok(principal) => principal,
        Err(refused) => return refused.into_response(),
    };
    if st.catalog.is_closed() {
        super::request::reconnect_catalog(&st).await;
    }
    let listed = match st.catalog.tables().await {
        Ok(listed) => listed,
        Err(error) => {
            tracing::warn!(%error, "listing tables failed");
            return super::error::catalog_unavailable().into_response();
        }
    };
    let tables: Vec<serde_json::Value> = listed
        .iter()
        .filter(|t| st.allow.allows(&t.table.schema, &t.table.name))
        .filter_map(|t| {
            // Under a policy: only tables a rule of the caller's role names, with only the
            // columns that rule shows (no principal: nothing).
            let visible = match st.auth.policy() {
                None => None,
                Some(policy) => match &principal {
                    None => return None,
                    Some(who) => policy.visible_columns(who, &t.table.to_string()).ok()?,
                },
            };
            let columns: Vec<serde_json::Value> = t
                .columns
                .iter()
                .filter(|c| visible.is_none_or(|v| v.iter().any(|name| *name == *c.name)))
                .map(|c| json!({"name": c.name, "type": c.type_name}))
                .collect();
            Some(json!({"schema": t.table.schema, "table": t.table.name, "columns": columns}))
        })
        .collect();
    Json(json!({ "tables": tables })).into_response()
}
