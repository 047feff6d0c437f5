//! Errors answered over HTTP, one shape for all: a status and `{"error": code, "message": ...}`,
//! with the headers some carry (a `WWW-Authenticate` challenge, `Upgrade`, `Retry-After`). A
//! refusal of a subscription request takes its status from its code (`refusal`), and a
//! `subscribe` message gets the same code and message as an error frame instead. Decides no
//! refusal: the checks that refuse do.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::filter::QueryError;
use crate::metrics::Metrics;

/// A client-visible error: a machine code and a message for humans, answered with `status`.
#[derive(Debug)]
pub(crate) struct HttpError {
    status: StatusCode,
    code: &'static str,
    message: String,
    headers: Vec<(HeaderName, &'static str)>,
}

impl HttpError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        HttpError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// With `name: value` among the response's headers.
    pub(crate) fn with_header(mut self, name: HeaderName, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// 401 `unauthorized` with the `WWW-Authenticate: Bearer` challenge.
    pub(crate) fn unauthorized(message: String) -> Self {
        HttpError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
            .with_header(header::WWW_AUTHENTICATE, "Bearer")
    }

    pub(crate) fn code(&self) -> &'static str {
        self.code
    }

    /// The code and message, for an error frame.
    pub(crate) fn into_parts(self) -> (&'static str, String) {
        (self.code, self.message)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": self.code, "message": self.message}));
        let mut response = (self.status, body).into_response();
        for (name, value) in self.headers {
            response
                .headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        response
    }
}

/// The refusal of a subscription request with `code`, answered with the status its code calls
/// for.
pub(crate) fn refusal(code: &'static str, message: String) -> HttpError {
    HttpError::from(QueryError::new(code, message))
}

/// A filter's refusal of a request, counted in `walcast_limit_refusals_total` when it answers one
/// of the `[limits]`.
pub(crate) fn counted(metrics: &Metrics, error: QueryError) -> HttpError {
    if let Some(limit) = error.limit() {
        metrics.limit_refusal(limit);
    }
    HttpError::from(error)
}

/// A filter's refusal, not counted (not one of the `[limits]`).
impl From<QueryError> for HttpError {
    fn from(error: QueryError) -> HttpError {
        HttpError::new(refusal_status(&error), error.code, error.message)
    }
}

/// 503 `catalog_unavailable`: the catalog connection is down (Postgres restarting); the client
/// should retry.
pub(crate) fn catalog_unavailable() -> HttpError {
    refusal(
        "catalog_unavailable",
        "the table catalog cannot be read right now; retry shortly".into(),
    )
}

/// The status of a refusal: by its code, else the filter's own (`QueryError::status`).
fn refusal_status(error: &QueryError) -> StatusCode {
    match error.code {
        "catalog_unavailable" | "journal_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        "position_expired"
        | "position_ahead"
        | "subscription_busy"
        | "subscription_mismatch"
        | "named_unavailable" => StatusCode::CONFLICT,
        "too_many_named_subscriptions" => StatusCode::TOO_MANY_REQUESTS,
        "unknown_subscription" => StatusCode::NOT_FOUND,
        "forbidden" | "origin_not_allowed" => StatusCode::FORBIDDEN,
        _ => StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_REQUEST),
    }
}
