//! One schema event: a table's shape before and after one DDL command (or, inferred, before and
//! as one change showed it), what kind of event that is, and its journal record.

use serde::{Deserialize, Serialize};

use crate::filter::{TableName, TableShape};

use super::diff::Diff;

/// Where an event comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A `walcast.ddl` message of the event triggers: exact, with attnums.
    Trigger,
    /// A change whose columns differ from the shape walcast knew (no trigger installed).
    Inferred,
}

/// What happened to the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Altered,
    /// Renamed or moved to another schema (columns may have changed too).
    Renamed,
    Dropped,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Altered => "altered",
            EventKind::Renamed => "renamed",
            EventKind::Dropped => "dropped",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaEvent {
    pub source: Source,
    /// The command tag (`ALTER TABLE`); `None` when inferred.
    pub command: Option<String>,
    pub oid: Option<u32>,
    /// `None`: the command created the table.
    pub before: Option<TableShape>,
    /// `None`: the command dropped the table.
    pub after: Option<TableShape>,
}

/// A journal record that is not a schema event this walcast can read.
#[derive(Debug, thiserror::Error)]
#[error("unreadable schema record: {0}")]
pub struct RecordError(pub String);

impl SchemaEvent {
    /// The table's name after the event (before it, when dropped).
    pub fn table(&self) -> TableName {
        todo!()
    }

    /// The table's name before the event, when it existed.
    pub fn before_table(&self) -> Option<TableName> {
        todo!()
    }

    /// Whether the event is about `table` under either of its names.
    pub fn concerns(&self, schema: &str, table: &str) -> bool {
        todo!()
    }

    pub fn kind(&self) -> EventKind {
        todo!()
    }

    pub fn diff(&self) -> Diff {
        todo!()
    }

    /// The journal record's payload (kind 4).
    pub fn to_record(&self) -> Vec<u8> {
        todo!()
    }

    pub fn from_record(payload: &[u8]) -> Result<SchemaEvent, RecordError> {
        todo!()
    }
}
