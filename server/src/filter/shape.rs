//! Table shapes: a table's columns with everything a schema event reports about each (attnum,
//! name, type with modifiers, nullability, default, generated, identity, primary key), as the
//! catalog reads them and as the `walcast.ddl` messages of `walcast setup`'s event triggers carry
//! them. Values only: the catalog (`catalog`) reads them, `schema` compares them.

use serde::{Deserialize, Serialize};

use super::request::TableName;
use super::types::ColumnInfo;

/// One column of a table shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnShape {
    /// `pg_attribute.attnum`; `None` for a column walcast only saw in a change (an inferred shape).
    #[serde(default)]
    pub attnum: Option<i16>,
    pub name: String,
    /// `format_type(atttypid, atttypmod)`: `character varying(20)`, `numeric(10,2)`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// `None` when not known (inferred).
    #[serde(default)]
    pub nullable: Option<bool>,
    /// The default expression as `pg_get_expr` prints it (not for generated columns).
    #[serde(default)]
    pub default: Option<String>,
    /// `"stored"` for a generated column, with its expression in `generation_expression`.
    #[serde(default)]
    pub generated: Option<String>,
    #[serde(default)]
    pub generation_expression: Option<String>,
    /// `"always"` or `"by default"` for an identity column.
    #[serde(default)]
    pub identity: Option<String>,
    #[serde(default)]
    pub primary_key: bool,
}

impl ColumnShape {
    /// A column known only by name and type (from a change).
    pub fn named(name: impl Into<String>, type_name: impl Into<String>) -> ColumnShape {
        ColumnShape {
            attnum: None,
            name: name.into(),
            type_name: type_name.into(),
            nullable: None,
            default: None,
            generated: None,
            generation_expression: None,
            identity: None,
            primary_key: false,
        }
    }
}

/// A table with its columns in `attnum` order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableShape {
    pub schema: String,
    pub table: String,
    /// `pg_class.oid`; `None` when not known (inferred).
    #[serde(default)]
    pub oid: Option<u32>,
    pub columns: Vec<ColumnShape>,
    /// Primary key column names in key order; empty without one.
    #[serde(default)]
    pub primary_key: Vec<String>,
}

impl TableShape {
    pub fn name(&self) -> TableName {
        TableName::new(self.schema.clone(), self.table.clone())
    }

    /// The columns as request binding uses them (name, type, comparison class).
    pub fn column_infos(&self) -> Vec<ColumnInfo> {
        self.columns
            .iter()
            .map(|c| ColumnInfo::new(c.name.clone(), c.type_name.clone()))
            .collect()
    }

    pub fn column(&self, name: &str) -> Option<&ColumnShape> {
        self.columns.iter().find(|c| c.name == name)
    }
}
