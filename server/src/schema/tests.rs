//! Tests of schema events: shared shapes and changes here, one file per part under `tests/`.

mod diff;
mod event;
mod frame;
mod infer;
mod message;
mod rebind;

use crate::decode::{Change, Decoder};
use crate::filter::{ColumnShape, TableShape};

/// A catalog column: attnum, name, type, nullable, no default.
fn col(attnum: i16, name: &str, type_name: &str) -> ColumnShape {
    ColumnShape {
        attnum: Some(attnum),
        nullable: Some(true),
        ..ColumnShape::named(name, type_name)
    }
}

/// `column` as a primary key column (not null).
fn key(column: ColumnShape) -> ColumnShape {
    ColumnShape {
        nullable: Some(false),
        primary_key: true,
        ..column
    }
}

fn shape(schema: &str, table: &str, columns: Vec<ColumnShape>) -> TableShape {
    let primary_key = columns
        .iter()
        .filter(|c| c.primary_key)
        .map(|c| c.name.clone())
        .collect();
    TableShape {
        schema: schema.to_owned(),
        table: table.to_owned(),
        oid: Some(16385),
        columns,
        primary_key,
    }
}

/// `public.people (id integer primary key, name text, age integer)`.
fn people() -> TableShape {
    shape(
        "public",
        "people",
        vec![
            key(col(1, "id", "integer")),
            col(2, "name", "text"),
            col(3, "age", "integer"),
        ],
    )
}

/// Runs `f` on the change a wal2json v2 message decodes to.
fn with_change<R>(json: &str, f: impl FnOnce(&Change<'_>) -> R) -> R {
    let mut payload = json.as_bytes().to_vec();
    let mut decoder = Decoder::new();
    let change = decoder
        .decode(&mut payload)
        .unwrap_or_else(|e| panic!("{e}: {json}"));
    f(&change)
}
