//! Parsing a subscription request once, under the configured limits: the filter request
//! (`filter::parse_request_with`) and where it starts (`snapshot=`, `from=`, `sub=`), each
//! checked, and the canonical query a named subscription is stored with. Looks nothing up
//! (`validate` does).

use axum::extract::Query;
use axum::http::Uri;

use crate::decode::Format;
use crate::filter;
use crate::named;
use crate::vocab::{ParsePosError, Pos};

use super::super::error::{counted, refusal, HttpError};
use super::super::routes::AppState;

pub(crate) fn query_params(uri: &Uri) -> Result<Vec<(String, String)>, HttpError> {
    let Query(params) = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| refusal("bad_query", format!("cannot decode the query string: {e}")))?;
    Ok(params)
}

/// A subscription request parsed once, under the configured limits: what the policy rewrites
/// and every later check uses.
pub(super) struct Asked {
    pub(super) request: filter::Request,
    /// `snapshot=true`.
    pub(super) snapshot: bool,
    /// `from=`.
    pub(super) from: Option<Pos>,
    /// `sub=`.
    pub(super) sub: Option<String>,
    /// The client's parameters but `from=` and `sub=`, sorted and URL-encoded: what a named
    /// subscription is stored with and compared against.
    pub(super) query: String,
}

/// Query keys that say where a session starts, not what it receives: not part of the cohort key.
const POSITION_KEYS: [&str; 2] = ["from", "sub"];

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
pub(super) fn parse_asked(st: &AppState, params: &[(String, String)]) -> Result<Asked, HttpError> {
    let request =
        filter::parse_request_with(params, &st.limits).map_err(|e| counted(&st.metrics, e))?;
    let snapshot = match position_param(params, "snapshot")? {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(refusal(
                "bad_query",
                format!("snapshot={other:?}: give true or false"),
            ))
        }
    };
    let from = position_param(params, "from")?
        .map(|text| {
            text.parse::<Pos>().map_err(|e: ParsePosError| {
                refusal(
                    "bad_position",
                    format!("{e}; hand back the `pos` of a change frame or of `subscribed`"),
                )
            })
        })
        .transpose()?;
    let sub = position_param(params, "sub")?;
    if let Some(name) = sub {
        if !named::valid_name(name) {
            return Err(refusal(
                "bad_subscription_name",
                format!(
                    "sub={name:?}: a subscription name is 1 to 64 characters of A-Z a-z 0-9 _ . -"
                ),
            ));
        }
        if from.is_some() || snapshot {
            return Err(refusal(
                "bad_query",
                "from= or snapshot= cannot be combined with sub=: a named subscription resumes \
                 after its last acknowledged position"
                    .into(),
            ));
        }
    }
    if snapshot && from.is_some() {
        return Err(refusal(
            "bad_query",
            "from= and snapshot= cannot be combined: a snapshot starts from the current rows"
                .into(),
        ));
    }
    if snapshot && request.schema_events.is_some() {
        return Err(refusal(
            "bad_query",
            "snapshot=true cannot be combined with query=schema:...: schema events have no rows"
                .into(),
        ));
    }
    if snapshot && request.format == Format::Wal2jsonV1 {
        return Err(refusal(
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

/// The value of a key that may be given once.
fn position_param<'a>(
    params: &'a [(String, String)],
    key: &str,
) -> Result<Option<&'a str>, HttpError> {
    let mut given = params.iter().filter(|(k, _)| k == key);
    let first = given.next().map(|(_, v)| v.as_str());
    if given.next().is_some() {
        return Err(refusal("bad_query", format!("{key}= given more than once")));
    }
    Ok(first)
}
