//! Carrying a subscription's request from the shape it was bound against to the next one:
//! renamed columns renamed (matched by attnum), a column it names that is gone ends it.

use crate::filter::{Request, TableShape};

use super::diff::{pair_columns, Renamed};

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
    let Some(to) = to else {
        return Err(Unbound(format!("table {} was dropped", from.name())));
    };
    if from.schema != to.schema || from.table != to.table {
        return Err(Unbound(format!(
            "table {} was renamed to {}; subscribe to the new name",
            from.name(),
            to.name()
        )));
    }
    let pairs = pair_columns(from, to);
    let mut renamed: Vec<Renamed> = Vec::new();
    let mut carry = |name: &str| -> Result<String, Unbound> {
        let Some(b) = from.columns.iter().position(|c| c.name == name) else {
            // Not a column of the shape the request was bound against (a shape that only knew
            // part of the table): it binds if the new shape has it.
            return match to.column(name) {
                Some(_) => Ok(name.to_owned()),
                None => Err(Unbound(format!(
                    "column \"{name}\" is not a column of {}",
                    to.name()
                ))),
            };
        };
        let Some(a) = pairs[b] else {
            return Err(Unbound(format!(
                "column \"{name}\" of {} was dropped",
                from.name()
            )));
        };
        let new = &to.columns[a].name;
        if new != name && !renamed.iter().any(|r| r.from == name) {
            renamed.push(Renamed {
                from: name.to_owned(),
                to: new.clone(),
            });
        }
        Ok(new.clone())
    };
    let mut request = request.clone();
    for condition in &mut request.conditions {
        condition.column = carry(&condition.column)?;
    }
    if let Some(select) = &mut request.select {
        for column in select.iter_mut() {
            *column = carry(column)?.into_boxed_str();
        }
    }
    if let Some(columns) = request.plugin.as_mut().and_then(|p| p.columns.as_mut()) {
        for column in columns.iter_mut() {
            *column = carry(column)?;
        }
    }
    Ok(Rebound { request, renamed })
}
