//! Checking a parsed subscription request against this server: `tables.allow`, the plugin host
//! (a group for the plugin and its parameters), the catalog (the table and its columns, binding
//! the filter), the journal (a `from=` it holds), and the cohort key that groups requests asking
//! for the same changes. Parses nothing (`parse` did) and claims no name (`place` does).

use std::sync::Arc;

use crate::filter::wasm::{PluginError, PluginGroup};
use crate::filter::{self, TableName};
use crate::hub::{Binding, Sees};
use crate::journal::{JournalError, JournalReader};
use crate::vocab::Pos;
use crate::ws::session::Plan;

use super::super::error::{catalog_unavailable, counted, refusal, HttpError};
use super::super::routes::AppState;
use super::parse::Asked;

/// A validated `/ws` request.
pub(super) struct Validated {
    pub(super) plan: Plan,
    /// The canonical query a named subscription is stored with.
    pub(super) query: String,
    /// `from=`: where it resumes, with its journal reader.
    pub(super) from: Option<(Pos, JournalReader)>,
    /// `sub=`.
    pub(super) sub: Option<String>,
    /// `snapshot=true`.
    pub(super) snapshot: bool,
}

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

pub(super) async fn validate(
    st: &AppState,
    asked: Asked,
    sees: Sees,
) -> Result<Validated, HttpError> {
    let Asked {
        request,
        snapshot,
        from,
        sub,
        query,
    } = asked;
    if request.schema_events.is_some() {
        return follower(st, request, sees, from, sub, query);
    }
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
    let found = match lookup_columns(st, table).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return Err(refusal(
                "unknown_table",
                format!("table {table} does not exist"),
            ));
        }
        Err(error) => {
            tracing::warn!(%error, "catalog lookup failed");
            return Err(catalog_unavailable());
        }
    };
    let (filter, columns, binding) = match filter::bind(&request, &found.columns) {
        Ok(filter) => {
            let binding = Binding {
                request: Arc::new(request.clone()),
                shape: found.shape,
                policy: st.auth.policy().is_some(),
            };
            (filter, found.columns, binding)
        }
        Err(error) => {
            // A resume asks with the names its subscription was made with: bound against the
            // shape of that time (the journal's schema events tell it), carried through the
            // events up to where it resumes; the catch-up carries it through the rest.
            let resume = from.or_else(|| sub.as_deref().and_then(|n| st.named.acked(n)));
            let then = match resume {
                Some(at) => bind_then(st, &request, plugin.as_deref(), at).await?,
                None => None,
            };
            then.ok_or_else(|| HttpError::from(error))?
        }
    };
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
            binding: Some(binding),
            follow: None,
        },
        from,
        sub,
        snapshot,
    })
}

/// A subscription to schema events only (`query=schema:<target>`): one table's must be in
/// `tables.allow` (it may not exist yet: its creation is an event); which events and columns
/// each follower sees is decided per event (`sees`).
fn follower(
    st: &AppState,
    request: filter::Request,
    sees: Sees,
    from: Option<Pos>,
    sub: Option<String>,
    query: String,
) -> Result<Validated, HttpError> {
    if request.schema_events == Some(filter::SchemaScope::Table) {
        check_allowed(st, &request.table)?;
    }
    let filter = filter::bind(&request, &[]).map_err(HttpError::from)?;
    let from = from
        .map(|from| journal_reader(st, from).map(|reader| (from, reader)))
        .transpose()?;
    let key = format!("schema:{}", request.target());
    Ok(Validated {
        query,
        plan: Plan {
            table: request.table.clone(),
            key,
            ops: 0,
            filter,
            plugin: None,
            columns: Arc::from(Vec::new()),
            conditions: Vec::new(),
            binding: None,
            follow: Some((Arc::new(request), sees)),
        },
        from,
        sub,
        snapshot: false,
    })
}

/// 403 `table_not_allowed` for a table outside `tables.allow`.
pub(super) fn check_allowed(st: &AppState, table: &filter::TableName) -> Result<(), HttpError> {
    if st.allow.allows(&table.schema, &table.name) {
        return Ok(());
    }
    Err(refusal(
        "table_not_allowed",
        format!("table {table} is not in this server's allow-list (tables.allow)"),
    ))
}

/// A reader of the journal after `from` (no I/O yet): 409 `position_ahead` for a position this
/// server never dispatched, 409 `position_expired` when retention removed part of what follows
/// it.
pub(super) fn journal_reader(st: &AppState, from: Pos) -> Result<JournalReader, HttpError> {
    // A position this server never reached (another server's, or a journal that was replaced)
    // would silently skip every change up to it.
    // (Compared by commit: the position's two halves are read one after the other.)
    let last = st.hub.last_pos();
    if from.commit > last.commit {
        return Err(refusal(
            "position_ahead",
            format!(
                "from={from} is beyond the last position this server has dispatched ({last}); \
                 hand back a `pos` this server sent, or subscribe without from="
            ),
        ));
    }
    match st.journal.reader(from) {
        Ok(reader) => Ok(reader),
        Err(JournalError::Expired { horizon, .. }) => Err(refusal(
            "position_expired",
            format!(
                "the journal no longer holds the changes after {from} (it keeps those after \
                 {horizon}); read the current rows again and subscribe without from= (a named \
                 subscription: delete it and subscribe again)"
            ),
        )),
        Err(error) => {
            tracing::error!(%error, %from, "journal reader failed");
            Err(refusal(
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
) -> Result<Arc<PluginGroup>, HttpError> {
    let Some(host) = st.plugins.clone() else {
        return Err(refusal(
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
        Ok(Err(PluginError::Unknown(name))) => Err(refusal(
            "unknown_plugin",
            format!("no plugin named {name:?} is loaded"),
        )),
        Ok(Err(e)) => Err(refusal("plugin_rejected", e.to_string())),
        Err(_) => Err(refusal(
            "plugin_rejected",
            "the plugin crashed while starting".into(),
        )),
    }
}

/// A resumed request whose names the table no longer has, bound as it was when its names were
/// current: against the before-shape of one of the table's schema events in the journal (the
/// latest that binds it), then carried through the events up to `resume`. `None` when no
/// shape in the journal binds it; 409 `schema_changed` when one does but an event up to
/// `resume` ended it.
async fn bind_then(
    st: &AppState,
    request: &filter::Request,
    plugin: Option<&PluginGroup>,
    resume: Pos,
) -> Result<Option<(filter::Filter, Arc<[filter::ColumnInfo]>, Binding)>, HttpError> {
    // The hub keeps each table's schema events (read from the journal at start, then as
    // dispatched): no journal read per request.
    let events = st.hub.schema_history(&request.table);
    for k in (0..events.len()).rev() {
        let Some(before) = &events[k].1.before else {
            continue;
        };
        let columns: Arc<[filter::ColumnInfo]> = before.column_infos().into();
        let Ok(mut filter) = filter::bind(request, &columns) else {
            continue;
        };
        let mut binding = Binding {
            request: Arc::new(request.clone()),
            shape: Arc::new(before.clone()),
            policy: st.auth.policy().is_some(),
        };
        for (at, event) in events[k..].iter().filter(|(at, _)| *at <= resume) {
            match crate::hub::carry(Some(&binding), plugin, event) {
                Ok((rebinding, _)) => {
                    filter = rebinding.filter;
                    binding = rebinding.binding;
                }
                Err(unbound) => {
                    return Err(refusal(
                        "schema_changed",
                        format!(
                            "the subscription ended at {at}, before where it resumes: {}",
                            unbound.0
                        ),
                    ))
                }
            }
        }
        let columns = binding.shape.column_infos().into();
        return Ok(Some((filter, columns, binding)));
    }
    Ok(None)
}

/// Catalog lookup that reconnects once when the SQL connection has gone away.
async fn lookup_columns(
    st: &AppState,
    table: &TableName,
) -> Result<Option<filter::Found>, filter::CatalogError> {
    if !st.catalog.is_closed() {
        match st.catalog.find(table).await {
            Err(e) if e.is_closed() => {}
            other => return other,
        }
    }
    reconnect_catalog(st).await;
    st.catalog.find(table).await
}

/// A fresh catalog connection after the old one closed (Postgres restarted).
pub(crate) async fn reconnect_catalog(st: &AppState) {
    match crate::source::connect_sql(&st.pg).await {
        Ok((client, _connection)) => st.catalog.replace_client(client),
        Err(error) => tracing::warn!(%error, "catalog reconnect failed"),
    }
}
