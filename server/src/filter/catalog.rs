//! Column catalog lookup over an ordinary tokio-postgres connection, queried on demand so tables
//! created after start are found, with a short positive cache. Does not connect or reconnect: the
//! owner builds the client and swaps in a new one with `replace_client` when `is_closed()` says so.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio_postgres::Client;

use super::error::CatalogError;
use super::request::TableName;
use super::types::ColumnInfo;

/// How long a found table's columns are reused. Short, so `ALTER TABLE` shows up quickly; missing
/// tables are never cached, so a table created a moment ago is found on the next request.
const CACHE_TTL: Duration = Duration::from_secs(3);

/// Bound on cached tables; expired entries are swept when it is reached.
const CACHE_MAX: usize = 4096;

/// Ordinary tables and partitioned tables (changes of partitions arrive under the leaf's name,
/// which is itself an ordinary table).
const COLUMNS_SQL: &str = "\
SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a
  ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
ORDER BY a.attnum";

type Columns = Arc<[ColumnInfo]>;

/// Every ordinary and partitioned table outside the system schemas with its columns, for the
/// viewer's table list (`GET /v1/tables`). One row per column; a table without columns has one
/// row with null column fields.
const TABLES_SQL: &str = "\
SELECT n.nspname::text, c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a
  ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
ORDER BY n.nspname COLLATE \"C\", c.relname COLLATE \"C\", a.attnum";

/// A table and its columns, as `tables` lists them.
pub struct TableColumns {
    pub table: TableName,
    pub columns: Vec<ColumnInfo>,
}

pub struct Catalog {
    client: RwLock<Arc<Client>>,
    cache: Mutex<HashMap<TableName, (Instant, Columns)>>,
}

impl Catalog {
    pub fn new(client: Client) -> Catalog {
        Catalog {
            client: RwLock::new(Arc::new(client)),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Swap in a fresh connection after the old one closed. Cached entries stay valid.
    pub fn replace_client(&self, client: Client) {
        *self.client.write() = Arc::new(client);
    }

    /// Whether the current connection is gone (then `columns` fails until `replace_client`).
    pub fn is_closed(&self) -> bool {
        self.client.read().is_closed()
    }

    /// Columns of a table in `attnum` order, `None` when no such table exists.
    pub async fn columns(&self, table: &TableName) -> Result<Option<Columns>, CatalogError> {
        if let Some((at, cols)) = self.cache.lock().get(table) {
            if at.elapsed() < CACHE_TTL {
                return Ok(Some(cols.clone()));
            }
        }
        let client = self.client.read().clone();
        let rows = client
            .query(COLUMNS_SQL, &[&table.schema, &table.name])
            .await
            .map_err(|source| CatalogError::Query {
                table: table.to_string(),
                source,
            })?;
        if rows.is_empty() {
            self.cache.lock().remove(table);
            return Ok(None);
        }
        let mut cols = Vec::with_capacity(rows.len());
        for row in &rows {
            let row_err = |source| CatalogError::Row {
                table: table.to_string(),
                source,
            };
            // The LEFT JOIN yields one all-null row for a table without columns.
            let name: Option<String> = row.try_get(0).map_err(row_err)?;
            let type_name: Option<String> = row.try_get(1).map_err(row_err)?;
            if let (Some(name), Some(type_name)) = (name, type_name) {
                cols.push(ColumnInfo::new(name, type_name));
            }
        }
        let cols: Columns = cols.into();
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
        }
        if cache.len() < CACHE_MAX {
            cache.insert(table.clone(), (Instant::now(), cols.clone()));
        }
        Ok(Some(cols))
    }
}

impl Catalog {
    /// Every table outside the system schemas with its columns, sorted by schema and name
    /// (byte order). Not cached: it serves people opening the viewer, not subscriptions.
    pub async fn tables(&self) -> Result<Vec<TableColumns>, CatalogError> {
        let client = self.client.read().clone();
        let rows = client
            .query(TABLES_SQL, &[])
            .await
            .map_err(|source| CatalogError::Query {
                table: "(all tables)".into(),
                source,
            })?;
        let mut out: Vec<TableColumns> = Vec::new();
        for row in &rows {
            let row_err = |source| CatalogError::Row {
                table: "(all tables)".into(),
                source,
            };
            let schema: String = row.try_get(0).map_err(row_err)?;
            let name: String = row.try_get(1).map_err(row_err)?;
            let column: Option<String> = row.try_get(2).map_err(row_err)?;
            let type_name: Option<String> = row.try_get(3).map_err(row_err)?;
            let same = out
                .last()
                .is_some_and(|t| t.table.schema == schema && t.table.name == name);
            if !same {
                out.push(TableColumns {
                    table: TableName { schema, name },
                    columns: Vec::new(),
                });
            }
            if let (Some(column), Some(type_name), Some(t)) = (column, type_name, out.last_mut()) {
                t.columns.push(ColumnInfo::new(column, type_name));
            }
        }
        Ok(out)
    }
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("cached_tables", &self.cache.lock().len())
            .finish()
    }
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
