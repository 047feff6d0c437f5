//! A subscription request, from its parameters to a validated, placed subscription: parsed once,
//! under the configured limits (`parse`), rewritten by the policy, checked against the catalog,
//! the allow-list, the journal and the plugin host (`validate`), then placed: where it starts and
//! its hold on a named subscription (`place`). The same path serves the `/ws` URL's request and
//! every `subscribe` message (`SessionOpener`). Does not run the session (`ws::session` does).

mod parse;
mod place;
mod validate;

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::auth::{Principal, SessionAuth};
use crate::filter;
use crate::hub::{Sees, Sight};
use crate::named;
use crate::vocab::SessionSignal;
use crate::ws::session::{Opened, Opener, Refusal, Start};

use super::error::{refusal, HttpError};
use super::routes::AppState;

pub(crate) use parse::query_params;
use parse::{parse_asked, Asked};
use place::place;
pub(crate) use validate::reconnect_catalog;
use validate::{check_allowed, journal_reader, validate, Validated};

/// Opens a socket's subscriptions (the URL's and every `subscribe` message's) as its principal:
/// each request is parsed once, under the configured limits, the policy rewrites that parsed
/// request, and validation checks the same one.
pub(crate) struct SessionOpener {
    st: AppState,
    auth: Option<Arc<SessionAuth>>,
}

impl SessionOpener {
    /// Opens requests as `principal` (`None` without authentication).
    pub(crate) fn new(st: AppState, principal: Option<Principal>) -> SessionOpener {
        let auth = principal.map(|p| SessionAuth::new(st.auth.clone(), p));
        SessionOpener { st, auth }
    }

    /// The socket's principal, whose token's expiry the session watches.
    pub(crate) fn auth(&self) -> Option<Arc<SessionAuth>> {
        self.auth.clone()
    }

    /// Parses, rewrites, validates and places one request.
    pub(crate) async fn open_authorized(
        &self,
        params: Vec<(String, String)>,
        signal: Arc<SessionSignal>,
    ) -> Result<Opened, HttpError> {
        let asked = self.asked(&params)?;
        let owner = self.owner();
        let Validated {
            plan,
            query,
            from,
            sub,
            snapshot,
        } = validate(&self.st, asked, self.sees()).await?;
        if snapshot {
            return Ok(Opened {
                plan,
                start: Start::Snapshot,
                claim: None,
            });
        }
        let (claim, start) = place(
            &self.st,
            &plan,
            &query,
            from,
            sub.as_deref(),
            owner.as_ref(),
            &signal,
        )?;
        Ok(Opened { plan, start, claim })
    }

    /// What a plain (non-upgrade) GET of `/ws` is told: the checks of `open_authorized` that
    /// need no catalog query, journal read or plugin instance (the query's syntax and limits,
    /// the policy, `tables.allow`, a `from=` this server never reached or no longer holds).
    pub(crate) fn precheck(&self, params: &[(String, String)]) -> Result<(), HttpError> {
        let asked = self.asked(params)?;
        if matches!(
            asked.request.schema_events,
            None | Some(filter::SchemaScope::Table)
        ) {
            check_allowed(&self.st, &asked.request.table)?;
        }
        if let Some(from) = asked.from {
            journal_reader(&self.st, from)?;
        }
        Ok(())
    }

    /// The request parsed once, under the configured limits, and rewritten by the policy.
    fn asked(&self, params: &[(String, String)]) -> Result<Asked, HttpError> {
        let mut asked = parse_asked(&self.st, params)?;
        if let Some(policy) = self.st.auth.policy() {
            // A policy applies to every request; one without a principal is refused (fail closed).
            let Some(auth) = &self.auth else {
                return Err(refusal(
                    "forbidden",
                    "this server has a policy and the request carries no token".into(),
                ));
            };
            match asked.request.schema_events {
                None => policy
                    .apply(
                        &auth.principal(),
                        &mut asked.request,
                        asked.snapshot,
                        &self.st.limits,
                    )
                    .map_err(|r| refusal(r.code, r.message))?,
                // One table's schema events: only a role with a rule for the table.
                Some(filter::SchemaScope::Table) => {
                    policy
                        .visible_columns(&auth.principal(), &asked.request.table.to_string())
                        .map_err(|r| refusal(r.code, r.message))?;
                }
                // Every event is checked against the role's rules as it comes (`sees`).
                Some(_) => {}
            }
        }
        Ok(asked)
    }

    /// What a follower of schema events may see of each table: nothing outside `tables.allow`;
    /// under a policy, only tables a rule of its role names, with only the rule's columns.
    fn sees(&self) -> Sees {
        let allow = self.st.allow.clone();
        let policy = self.st.auth.policy().cloned();
        let principal = self.auth.as_ref().map(|a| a.principal());
        Arc::new(move |table: &filter::TableName| {
            if !allow.allows(&table.schema, &table.name) {
                return Sight::Hidden;
            }
            let Some(policy) = &policy else {
                return Sight::All;
            };
            let Some(principal) = &principal else {
                return Sight::Hidden;
            };
            match policy.visible_columns(principal, &table.to_string()) {
                Ok(None) => Sight::All,
                Ok(Some(columns)) => Sight::Columns(columns.to_vec()),
                Err(_) => Sight::Hidden,
            }
        })
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
                .map_err(|refused| {
                    let (code, message) = refused.into_parts();
                    Refusal { code, message }
                })
        })
    }
}
