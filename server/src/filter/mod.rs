//! Query-string filters (docs/guides/subscriptions.md): request syntax, binding against the column
//! catalog, typed predicate evaluation on decoded changes, the hub's `eq` index keys, the table
//! allow-list and the catalog lookup. Does not run Wasm plugins (`plugin=` is parsed and kept for
//! the plugin engine) and does not register subscriptions (see `hub`).
//!
//! Semantics worth knowing as a client: values compare by the column's type (numbers exactly as
//! decimals, booleans, timestamps/dates/times chronologically, everything else byte-wise); a null
//! column satisfies no comparison, negated or not, except `is.null` / `not.is.null`; a condition
//! on a column absent from the row image (an unchanged TOAST value not in the old image either) is
//! false; truncates carry no row, so conditions do not apply to them.

mod allow;
mod catalog;
mod error;
mod like;
mod limits;
mod number;
mod predicate;
mod request;
mod shape;
mod temporal;
mod types;
pub mod wasm;

pub use allow::AllowList;
pub use catalog::{Catalog, Found, TableColumns};
pub use error::{code, CatalogError, QueryError};
pub use limits::refusal_label;
pub use predicate::{bind, index_key, row_column, Filter};
pub(crate) use request::{condition_value, parse_list, split_condition};
pub use request::{
    parse_request, parse_request_with, IsValue, Operator, PluginRef, RawCondition, RawValue,
    Request, SchemaScope, TableName,
};
pub use shape::{ColumnShape, TableShape};
pub use types::{ColumnInfo, TypeClass};
