//! A snapshot row as the wal2json (format-version 2) insert message Postgres would have sent for
//! it, so the session decodes, filters and frames it exactly as a change: numbers unquoted
//! (`NaN` and infinities as `null`), booleans as `true`/`false`, everything else as a JSON string
//! of the type's text output (json and jsonb too: the frame encoder embeds those). Reads no rows
//! (`Reader` does) and builds no frame (`decode` does).

use crate::filter::{ColumnInfo, TableName, TypeClass};

pub fn row_message(table: &TableName, columns: &[ColumnInfo], values: &[Option<&str>]) -> Vec<u8> {
    let mut b =
        String::with_capacity(64 + values.iter().flatten().map(|v| v.len() + 24).sum::<usize>());
    b.push_str(r#"{"action":"I","lsn":"0/0","schema":"#);
    crate::decode::put_str(&mut b, &table.schema);
    b.push_str(r#","table":"#);
    crate::decode::put_str(&mut b, &table.name);
    b.push_str(r#","columns":["#);
    for (i, (column, value)) in columns.iter().zip(values).enumerate() {
        if i > 0 {
            b.push(',');
        }
        b.push_str(r#"{"name":"#);
        crate::decode::put_str(&mut b, &column.name);
        b.push_str(r#","type":"#);
        crate::decode::put_str(&mut b, &column.type_name);
        b.push_str(r#","value":"#);
        match (value, column.class) {
            (None, _) => b.push_str("null"),
            (Some(v), TypeClass::Number) => {
                if matches!(*v, "NaN" | "Infinity" | "-Infinity") {
                    b.push_str("null");
                } else {
                    b.push_str(v);
                }
            }
            (Some(v), TypeClass::Bool) => b.push_str(if *v == "t" { "true" } else { "false" }),
            (Some(v), _) => crate::decode::put_str(&mut b, v),
        }
        b.push('}');
    }
    b.push_str("]}");
    b.into_bytes()
}
