//! The refusals at the limits on hostile input (docs/security/limits.md, `[limits]` in the
//! configuration): the error each limit answers with, and the `limit` label a refusal is
//! counted under. The values are `config::Limits`, passed to every stage that checks them; the
//! checks themselves live where the input is parsed (`request`) and where groups are created
//! (`wasm::registry`).

use super::error::{code, QueryError};
use crate::config::Limits;

/// The refusals at each limit: the 400 or 503 answer a request over it gets.
impl Limits {
    pub(crate) fn query_too_long(&self, bytes: usize) -> QueryError {
        QueryError::new(
            code::QUERY_TOO_LONG,
            format!(
                "the query parameters of this subscription are {bytes} bytes; at most \
                 limits.max_query_bytes = {} are accepted",
                self.max_query_bytes
            ),
        )
    }

    pub(crate) fn too_many_conditions(&self, count: usize) -> QueryError {
        QueryError::new(
            code::TOO_MANY_CONDITIONS,
            format!(
                "this subscription has {count} conditions; at most limits.max_conditions = {} \
                 are accepted",
                self.max_conditions
            ),
        )
    }

    pub(crate) fn in_list_too_long(&self, column: &str) -> QueryError {
        QueryError::new(
            code::IN_LIST_TOO_LONG,
            format!(
                "the in list on column {column:?} has more than limits.max_in_list = {} items",
                self.max_in_list
            ),
        )
    }

    pub(crate) fn like_pattern_too_long(&self, column: &str, bytes: usize) -> QueryError {
        QueryError::new(
            code::LIKE_PATTERN_TOO_LONG,
            format!(
                "the like pattern on column {column:?} is {bytes} bytes; at most \
                 limits.max_like_pattern = {} are accepted",
                self.max_like_pattern
            ),
        )
    }
}

/// The `limit` label of `walcast_limit_refusals_total` for an error answering a limit, `None`
/// for any other error.
pub fn refusal_label(code: &str) -> Option<&'static str> {
    Some(match code {
        code::QUERY_TOO_LONG => "query_bytes",
        code::TOO_MANY_CONDITIONS => "conditions",
        code::IN_LIST_TOO_LONG => "in_list",
        code::LIKE_PATTERN_TOO_LONG => "like_pattern",
        code::TOO_MANY_PLUGIN_GROUPS => "plugin_groups",
        _ => return None,
    })
}
