//! Snapshots: a subscription's current rows before its changes. Reads the table in a
//! `REPEATABLE READ READ ONLY` transaction through a server-side cursor, page by page, with the
//! conditions whose meaning SQL shares pushed into its `WHERE` as bind parameters; turns each
//! row into the wal2json message an insert of it would be, so that the session decodes, filters
//! and frames it exactly as a change. Owns the SQL, the visibility rule that tells which changes
//! the snapshot already shows, and the limit on concurrent snapshots. Does not write to sockets
//! or read the journal (`ws::session` does both).

mod rows;
mod sql;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::filter::{ColumnInfo, RawCondition, TableName};
use crate::source::{PgEndpoint, SourceError};
use crate::vocab::{Lsn, Visibility};

pub use rows::row_message;
pub use sql::{select, Select};

/// Rows fetched per round trip.
pub const PAGE: i32 = 1000;

/// Where snapshots connect, and how many may run at once (`snapshot.max_concurrent`).
pub struct Snapshots {
    pub pg: PgEndpoint,
    pub permits: Arc<Semaphore>,
}

impl Snapshots {
    pub fn new(pg: PgEndpoint, max_concurrent: usize) -> Snapshots {
        Snapshots {
            pg,
            permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot connect: {0}")]
    Connect(#[from] SourceError),
    #[error("{0}")]
    Sql(#[from] tokio_postgres::Error),
    #[error("pg_current_snapshot() gave {0:?}")]
    BadSnapshot(String),
    /// The table's columns in the snapshot are not those the subscription was bound against
    /// (a DDL committed in between): its rows would have another shape.
    #[error("{0}")]
    ShapeChanged(String),
}

/// The table's columns (name, type) as the snapshot's transaction sees them.
const SHAPE_SQL: &str = "\
SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum";

impl SnapshotError {
    /// The server's own message when it gave one (permission denied, statement timeout).
    pub fn message(&self) -> String {
        match self {
            SnapshotError::Sql(e) => match e.as_db_error() {
                Some(db) => format!("{} ({})", db.message(), db.code().code()),
                None => e.to_string(),
            },
            other => other.to_string(),
        }
    }
}

/// An open snapshot: its transaction, cursor and what it shows.
pub struct Reader {
    client: tokio_postgres::Client,
    connection: tokio::task::JoinHandle<()>,
    /// Which transactions the snapshot shows.
    pub visibility: Visibility,
    /// `pg_current_wal_lsn()` when the snapshot was taken: every transaction that commits at or
    /// after it is not in the snapshot.
    pub wal_lsn: Lsn,
    columns: Arc<[ColumnInfo]>,
    table: TableName,
    done: bool,
}

impl Reader {
    /// Opens a connection, begins the transaction, takes the snapshot and declares the cursor
    /// (its values bound as parameters, never spliced into the SQL).
    pub async fn open(
        pg: &PgEndpoint,
        table: &TableName,
        columns: Arc<[ColumnInfo]>,
        conditions: &[RawCondition],
    ) -> Result<Reader, SnapshotError> {
        let (client, connection) = crate::source::connect_sql(pg).await?;
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let row = client
            .query_one(
                "SELECT pg_current_snapshot()::text, pg_current_wal_lsn()::text",
                &[],
            )
            .await?;
        let (snap, lsn): (String, String) = (row.get(0), row.get(1));
        let visibility =
            Visibility::parse(&snap).ok_or_else(|| SnapshotError::BadSnapshot(snap.clone()))?;
        let wal_lsn = lsn
            .parse::<Lsn>()
            .map_err(|_| SnapshotError::BadSnapshot(lsn.clone()))?;
        // The rows must have the shape the subscription was bound against: a DDL committed
        // between the request's check and this snapshot fails it clearly, never mixes shapes.
        let seen = client
            .query(SHAPE_SQL, &[&table.schema, &table.name])
            .await?;
        let same = seen.len() == columns.len()
            && seen.iter().zip(columns.iter()).all(|(row, c)| {
                row.get::<_, String>(0) == c.name && row.get::<_, String>(1) == c.type_name
            });
        if !same {
            return Err(SnapshotError::ShapeChanged(format!(
                "the columns of {table} changed between the subscription's check and its snapshot; subscribe again"
            )));
        }
        let Select { sql, params } = select(table, &columns, conditions);
        let declare = format!("DECLARE walcast_snapshot NO SCROLL CURSOR FOR {sql}");
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        client.execute(declare.as_str(), &refs).await?;
        Ok(Reader {
            client,
            connection,
            visibility,
            wal_lsn,
            columns,
            table: table.clone(),
            done: false,
        })
    }

    /// The next page of rows as wal2json insert messages (empty at the end).
    pub async fn page(&mut self, out: &mut Vec<Vec<u8>>) -> Result<(), SnapshotError> {
        if self.done {
            return Ok(());
        }
        let rows = self
            .client
            .query(&format!("FETCH {PAGE} FROM walcast_snapshot"), &[])
            .await?;
        if rows.len() < PAGE as usize {
            self.done = true;
        }
        for row in &rows {
            let values: Vec<Option<&str>> = (0..self.columns.len()).map(|i| row.get(i)).collect();
            out.push(row_message(&self.table, &self.columns, &values));
        }
        Ok(())
    }

    /// Ends the transaction and the connection.
    pub async fn close(self) {
        let _ = self.client.batch_execute("COMMIT").await;
        drop(self.client);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.connection).await;
    }
}
