//! Carrying a subscription's request from the shape it was bound against to the next one:
//! renamed columns renamed (matched by attnum), a column it names that is gone ends it.

use crate::filter::{Request, TableShape};

use super::diff::Renamed;

/// The request on the new shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rebound {
    pub request: Request,
    /// Renamed columns the request names (conditions, `select=`, plugin columns).
    pub renamed: Vec<Renamed>,
}

/// Why the request no longer binds: the message of the `schema_changed` error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unbound(pub String);

/// `to` `None`: the table was dropped. A table renamed or moved ends the subscription too.
/// Binding the rebound request's values against the new types is the caller's
/// (`filter::bind`), which gives the `Unbound` message for a retype that no longer binds.
pub fn rebind(
    request: &Request,
    from: &TableShape,
    to: Option<&TableShape>,
) -> Result<Rebound, Unbound> {
    todo!()
}
