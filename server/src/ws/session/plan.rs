//! What the session takes from whoever validates a subscription request (`http::request` in
//! walcast, a stand-in in tests): what a subscription receives (`Plan`), where it starts
//! (`Start`), the refusal a `subscribe` message gets instead (`Refusal`), and the `Opener` that
//! turns a request's parameters into one of them. Validates nothing itself.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::filter::wasm::PluginGroup;
use crate::filter::{ColumnInfo, Filter, RawCondition, Request, TableName};
use crate::hub::{Binding, Rebinding, Sees};
use crate::journal::JournalReader;
use crate::named::Claim;
use crate::vocab::{Pos, SessionSignal};

/// What a subscription receives, as validated.
pub(crate) struct Plan {
    pub table: TableName,
    /// The cohort key (see `http::request`'s `cohort_key`).
    pub key: String,
    pub ops: u8,
    pub filter: Filter,
    pub plugin: Option<Arc<PluginGroup>>,
    /// The table's columns and the request's conditions, for a snapshot's query.
    pub columns: Arc<[ColumnInfo]>,
    pub conditions: Vec<RawCondition>,
    /// The request and the table shape `filter` was bound against: schema events carry it on.
    pub binding: Option<Binding>,
    /// A subscription to schema events only (`query=schema:...`): what it follows and may see.
    pub follow: Option<(Arc<Request>, Sees)>,
}

impl Plan {
    /// What the subscription names, for `subscribed`: its table, or a follower's target
    /// (`public.people`, `sales.*`, `*`).
    pub fn target(&self) -> String {
        match &self.follow {
            Some((request, _)) => request.target(),
            None => self.table.to_string(),
        }
    }

    /// Takes what a schema event carried the subscription to.
    pub fn rebind(&mut self, rebinding: Rebinding) {
        self.columns = rebinding.binding.shape.column_infos().into();
        self.conditions = rebinding.binding.request.conditions.clone();
        self.filter = rebinding.filter;
        self.binding = Some(rebinding.binding);
    }
}

/// Where a subscription starts.
pub(crate) enum Start {
    /// With the live stream, after the last change dispatched.
    Live,
    /// After this position, read from the journal first.
    After(Pos, JournalReader),
    /// With the table's current rows, then every change the snapshot does not show.
    Snapshot,
}

/// A validated subscription, ready to start.
pub(crate) struct Opened {
    pub plan: Plan,
    pub start: Start,
    pub claim: Option<Claim>,
}

/// Why a `subscribe` message was refused: the code and message of the HTTP error table.
pub(crate) struct Refusal {
    pub code: &'static str,
    pub message: String,
}

/// Validates a subscription request given as `/ws` query parameters (`http::request`'s checks).
pub(crate) trait Opener: Send + Sync + 'static {
    fn open(
        &self,
        params: Vec<(String, String)>,
        signal: Arc<SessionSignal>,
    ) -> BoxFuture<'_, Result<Opened, Refusal>>;
}
