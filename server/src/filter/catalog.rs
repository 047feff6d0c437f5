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
use super::shape::{ColumnShape, TableShape};
use super::types::ColumnInfo;

/// How long a found table's columns are reused. Short, so `ALTER TABLE` shows up quickly; missing
/// tables are never cached, so a table created a moment ago is found on the next request.
const CACHE_TTL: Duration = Duration::from_secs(3);

/// Bound on cached tables; expired entries are swept when it is reached.
const CACHE_MAX: usize = 4096;

/// Ordinary tables and partitioned tables (changes of partitions arrive under the leaf's name,
/// which is itself an ordinary table), each column with what a schema event reports about it
/// (the same attributes `walcast setup`'s event triggers read): one row per column, or one row
/// with null column fields for a table without columns.
const SHAPE_SQL: &str = "\
SELECT c.oid, a.attnum, a.attname::text, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull,
  CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END,
  CASE WHEN a.attgenerated = 's' THEN 'stored' END,
  CASE WHEN a.attgenerated = 's' THEN pg_get_expr(d.adbin, d.adrelid) END,
  CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' END,
  (SELECT k.ord FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
    WHERE k.attnum = a.attnum)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a
  ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
LEFT JOIN pg_catalog.pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
ORDER BY a.attnum";

type Columns = Arc<[ColumnInfo]>;

/// A table's shape with its columns as binding uses them.
#[derive(Clone, Debug)]
pub struct Found {
    pub shape: Arc<TableShape>,
    pub columns: Columns,
}

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
    cache: Mutex<HashMap<TableName, (Instant, Found)>>,
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
        Ok(self.find(table).await?.map(|found| found.columns))
    }

    /// The table's shape and columns, `None` when no such table exists.
    pub async fn find(&self, table: &TableName) -> Result<Option<Found>, CatalogError> {
        if let Some((at, found)) = self.cache.lock().get(table) {
            if at.elapsed() < CACHE_TTL {
                return Ok(Some(found.clone()));
            }
        }
        let client = self.client.read().clone();
        let rows = client
            .query(SHAPE_SQL, &[&table.schema, &table.name])
            .await
            .map_err(|source| CatalogError::Query {
                table: table.to_string(),
                source,
            })?;
        if rows.is_empty() {
            self.cache.lock().remove(table);
            return Ok(None);
        }
        let row_err = |source| CatalogError::Row {
            table: table.to_string(),
            source,
        };
        let mut oid = None;
        let mut columns = Vec::with_capacity(rows.len());
        let mut key: Vec<(i64, String)> = Vec::new();
        for row in &rows {
            oid = Some(row.try_get::<_, u32>(0).map_err(row_err)?);
            // The LEFT JOIN yields one all-null row for a table without columns.
            let Some(attnum) = row.try_get::<_, Option<i16>>(1).map_err(row_err)? else {
                continue;
            };
            let name: String = row.try_get(2).map_err(row_err)?;
            let key_at: Option<i64> = row.try_get(9).map_err(row_err)?;
            if let Some(at) = key_at {
                key.push((at, name.clone()));
            }
            columns.push(ColumnShape {
                attnum: Some(attnum),
                name,
                type_name: row.try_get(3).map_err(row_err)?,
                nullable: Some(row.try_get(4).map_err(row_err)?),
                default: row.try_get(5).map_err(row_err)?,
                generated: row.try_get(6).map_err(row_err)?,
                generation_expression: row.try_get(7).map_err(row_err)?,
                identity: row.try_get(8).map_err(row_err)?,
                primary_key: key_at.is_some(),
            });
        }
        key.sort();
        let shape = TableShape {
            schema: table.schema.clone(),
            table: table.name.clone(),
            oid,
            columns,
            primary_key: key.into_iter().map(|(_, name)| name).collect(),
        };
        let found = Found {
            columns: shape.column_infos().into(),
            shape: Arc::new(shape),
        };
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
        }
        if cache.len() < CACHE_MAX {
            cache.insert(table.clone(), (Instant::now(), found.clone()));
        }
        Ok(Some(found))
    }

    /// Forget what is cached about `table` (a schema event changed it).
    pub fn forget(&self, table: &TableName) {
        self.cache.lock().remove(table);
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
