//! Errors of the filter stage: the client-visible `QueryError` (machine code + human message,
//! answered before the WebSocket upgrade) and the internal `CatalogError`. Does not render HTTP
//! responses; `http` does that with `status()`.

use std::fmt;

/// Machine codes of `QueryError`, as documented in docs/reference/errors.md.
pub mod code {
    pub const MISSING_QUERY: &str = "missing_query";
    pub const BAD_QUERY: &str = "bad_query";
    pub const UNKNOWN_CHANGE_TYPE: &str = "unknown_change_type";
    pub const UNKNOWN_TABLE: &str = "unknown_table";
    pub const UNKNOWN_COLUMN: &str = "unknown_column";
    pub const BAD_OPERATOR: &str = "bad_operator";
    pub const BAD_VALUE: &str = "bad_value";
    pub const UNKNOWN_PLUGIN: &str = "unknown_plugin";
    pub const PLUGIN_REJECTED: &str = "plugin_rejected";
    pub const TABLE_NOT_ALLOWED: &str = "table_not_allowed";
    /// The limits of `[limits]` (see `config::Limits`).
    pub const QUERY_TOO_LONG: &str = "query_too_long";
    pub const TOO_MANY_CONDITIONS: &str = "too_many_conditions";
    pub const IN_LIST_TOO_LONG: &str = "in_list_too_long";
    pub const LIKE_PATTERN_TOO_LONG: &str = "like_pattern_too_long";
    pub const TOO_MANY_PLUGIN_GROUPS: &str = "too_many_plugin_groups";
}

/// A client-visible request error: a stable machine code and a message for humans.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct QueryError {
    pub code: &'static str,
    pub message: String,
}

impl QueryError {
    pub fn new(code: &'static str, message: impl Into<String>) -> QueryError {
        QueryError {
            code,
            message: message.into(),
        }
    }

    /// HTTP status of the answer: 403 for a table outside the allow-list, 503 when the plugin
    /// already runs `limits.max_groups_per_plugin` groups (a capacity the server is at right
    /// now, not a fault of the request: the same request succeeds once groups close), 400
    /// otherwise.
    pub fn status(&self) -> u16 {
        match self.code {
            code::TABLE_NOT_ALLOWED => 403,
            code::TOO_MANY_PLUGIN_GROUPS => 503,
            _ => 400,
        }
    }

    /// The `limit` label of `walcast_limit_refusals_total` when this error answers one of the
    /// `[limits]`, `None` otherwise.
    pub fn limit(&self) -> Option<&'static str> {
        super::limits::refusal_label(self.code)
    }

    /// `{"error":"<code>","message":"<text>"}`.
    pub fn json_body(&self) -> String {
        serde_json::json!({ "error": self.code, "message": self.message }).to_string()
    }

    pub(crate) fn bad_query(message: impl Into<String>) -> QueryError {
        QueryError::new(code::BAD_QUERY, message)
    }

    pub(crate) fn bad_value(message: impl Into<String>) -> QueryError {
        QueryError::new(code::BAD_VALUE, message)
    }

    pub(crate) fn bad_operator(message: impl Into<String>) -> QueryError {
        QueryError::new(code::BAD_OPERATOR, message)
    }

    /// `unknown_table` for a table the catalog does not know.
    pub fn unknown_table(table: &impl fmt::Display) -> QueryError {
        QueryError::new(code::UNKNOWN_TABLE, format!("table {table} does not exist"))
    }

    /// `table_not_allowed` for a table outside the allow-list.
    pub fn table_not_allowed(table: &impl fmt::Display) -> QueryError {
        QueryError::new(
            code::TABLE_NOT_ALLOWED,
            format!("table {table} is not in this server's table allow-list"),
        )
    }

    /// `unknown_plugin` for a `plugin=` name no loaded module answers to.
    pub fn unknown_plugin(name: &str) -> QueryError {
        QueryError::new(
            code::UNKNOWN_PLUGIN,
            format!("no filter plugin named {name:?} is loaded"),
        )
    }
}

/// Catalog lookup failure. `is_closed()` tells the caller to build a new connection.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog query for table {table} failed")]
    Query {
        table: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("catalog returned an unexpected row for table {table}")]
    Row {
        table: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl CatalogError {
    /// The connection is gone: retrying on the same client cannot succeed.
    pub fn is_closed(&self) -> bool {
        match self {
            CatalogError::Query { source, .. } | CatalogError::Row { source, .. } => {
                use tokio_postgres::error::SqlState;
                // A terminated backend first answers with 57P01/57P02/57P03 before the socket
                // closes: the connection is just as dead.
                source.is_closed()
                    || source.code().is_some_and(|c| {
                        *c == SqlState::ADMIN_SHUTDOWN
                            || *c == SqlState::CRASH_SHUTDOWN
                            || *c == SqlState::CANNOT_CONNECT_NOW
                    })
            }
        }
    }
}
