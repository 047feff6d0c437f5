//! Placing a validated subscription: where it starts (live, or after a `from=` position) and,
//! for `sub=`, its claim on the named subscription: who may hold the name, whether it is free and
//! created with the same query, and where it resumes (after its last ack, if the journal still
//! holds what follows). Owns the answers to a claim the named store refuses; does not keep names
//! (`named::Store` does).

use std::sync::Arc;

use crate::journal::JournalReader;
use crate::named::{self, Bound, ClaimError};
use crate::vocab::{Pos, SessionSignal};
use crate::ws::session::{Plan, Start};

use super::super::error::{refusal, HttpError};
use super::super::routes::AppState;
use super::validate::journal_reader;

/// Where the session starts, and its hold on its named subscription (`owner`: who asks, `None`
/// for a token without `sub`): 403 when the name belongs to another subject (or the token has no
/// subject), 409 when it is taken, was created with another query, cannot be served (temporary
/// slot) or retention removed what follows its ack, 429 past a `[named]` bound.
pub(super) fn place(
    st: &AppState,
    plan: &Plan,
    query: &str,
    from: Option<(Pos, JournalReader)>,
    sub: Option<&str>,
    owner: Option<&named::Owner>,
    signal: &Arc<SessionSignal>,
) -> Result<(Option<named::Claim>, Start), HttpError> {
    let Some(name) = sub else {
        let start = match from {
            None => Start::Live,
            Some((from, reader)) => Start::After(from, reader),
        };
        return Ok((None, start));
    };
    let Some(owner) = owner else {
        return Err(refusal(
            "forbidden",
            "a named subscription belongs to the subject of the token that creates it (its sub \
             claim), and this token has none: subscribe without sub=, or with a token that has sub"
                .into(),
        ));
    };
    let table = plan.target();
    let claim = st
        .named
        .claim(name, query, &table, owner, signal.clone())
        .map_err(|e| match e {
            ClaimError::Unavailable => refusal(
                "named_unavailable",
                "named subscriptions are off: this server uses a temporary replication slot \
                 (replication.temporary), so no acknowledged position survives a restart; \
                 subscribe without sub="
                    .into(),
            ),
            // Nothing about the name beyond that it is taken: not its query, not its owner.
            ClaimError::Forbidden => refusal(
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
                refusal("too_many_named_subscriptions", message)
            }
            ClaimError::Busy => refusal(
                "subscription_busy",
                format!("named subscription {name:?} is in use by another socket"),
            ),
            ClaimError::Mismatch { stored } => refusal(
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
                if refused.code() == "position_expired" {
                    claim.position_gone();
                }
                return Err(refused);
            }
        },
    };
    Ok((Some(claim), start))
}
