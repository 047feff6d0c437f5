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

/// The journal record's version this walcast writes and reads.
const RECORD_VERSION: u64 = 1;

/// The record as written: the event's fields after `"v"`, in this order.
#[derive(Serialize)]
struct RecordOut<'a> {
    v: u64,
    source: Source,
    command: &'a Option<String>,
    oid: Option<u32>,
    before: &'a Option<TableShape>,
    after: &'a Option<TableShape>,
}

/// The record as read (after its `"v"` was checked): every key must be there (`null` where the
/// event has nothing).
#[derive(Deserialize)]
struct RecordIn {
    source: Source,
    #[serde(deserialize_with = "present")]
    command: Option<String>,
    #[serde(deserialize_with = "present")]
    oid: Option<u32>,
    #[serde(deserialize_with = "present")]
    before: Option<TableShape>,
    #[serde(deserialize_with = "present")]
    after: Option<TableShape>,
}

/// Serde treats a missing `Option` field as `None`; a field with `deserialize_with` is required,
/// so a record that lost a key is refused instead of read as "no shape".
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

impl SchemaEvent {
    /// The table's name after the event (before it, when dropped). An event with neither shape
    /// (which `parse_message` and `from_record` refuse) has an empty name.
    pub fn table(&self) -> TableName {
        match (&self.after, &self.before) {
            (Some(shape), _) | (None, Some(shape)) => shape.name(),
            (None, None) => TableName::new("", ""),
        }
    }

    /// The table's name before the event, when it existed.
    pub fn before_table(&self) -> Option<TableName> {
        self.before.as_ref().map(TableShape::name)
    }

    /// Whether the event is about `table` under either of its names.
    pub fn concerns(&self, schema: &str, table: &str) -> bool {
        [&self.before, &self.after]
            .into_iter()
            .flatten()
            .any(|shape| shape.schema == schema && shape.table == table)
    }

    pub fn kind(&self) -> EventKind {
        match (&self.before, &self.after) {
            (None, _) => EventKind::Created,
            (Some(_), None) => EventKind::Dropped,
            (Some(before), Some(after))
                if before.schema != after.schema || before.table != after.table =>
            {
                EventKind::Renamed
            }
            (Some(_), Some(_)) => EventKind::Altered,
        }
    }

    pub fn diff(&self) -> Diff {
        Diff::between(self.before.as_ref(), self.after.as_ref())
    }

    /// The journal record's payload (kind 4).
    pub fn to_record(&self) -> Vec<u8> {
        let record = RecordOut {
            v: RECORD_VERSION,
            source: self.source,
            command: &self.command,
            oid: self.oid,
            before: &self.before,
            after: &self.after,
        };
        // Plain structs of strings, numbers and booleans: serialising cannot fail.
        serde_json::to_vec(&record).unwrap_or_default()
    }

    pub fn from_record(payload: &[u8]) -> Result<SchemaEvent, RecordError> {
        // The version is read first, so a record of a newer walcast is named as such rather than
        // reported as whatever field it changed.
        #[derive(Deserialize)]
        struct Version {
            v: Option<serde_json::Value>,
        }
        let version: Version = serde_json::from_slice(payload)
            .map_err(|e| RecordError(format!("not a JSON object: {e}")))?;
        match version.v {
            Some(serde_json::Value::Number(n)) if n.as_u64() == Some(RECORD_VERSION) => {}
            Some(v) => {
                return Err(RecordError(format!(
                    "record version {v}; this walcast reads version {RECORD_VERSION}"
                )))
            }
            None => return Err(RecordError("no \"v\" (record version)".into())),
        }
        let record: RecordIn =
            serde_json::from_slice(payload).map_err(|e| RecordError(e.to_string()))?;
        if record.before.is_none() && record.after.is_none() {
            return Err(RecordError(
                "neither \"before\" nor \"after\": an event about no table".into(),
            ));
        }
        Ok(SchemaEvent {
            source: record.source,
            command: record.command,
            oid: record.oid,
            before: record.before,
            after: record.after,
        })
    }
}
