//! Tests of the snapshot's SQL and of rows as insert messages.

use super::*;
use crate::filter::{parse_request, RawValue};

fn conds(query: &str) -> Vec<RawCondition> {
    let params = vec![("query".to_owned(), query.to_owned())];
    parse_request(&params).unwrap().conditions
}

fn cols() -> Vec<ColumnInfo> {
    vec![
        ColumnInfo::new("id", "integer"),
        ColumnInfo::new("we\"ird", "text"),
        ColumnInfo::new("h", "double precision"),
    ]
}

#[test]
fn values_are_parameters_and_identifiers_quoted() {
    let table = TableName::new("sales", "odd \"t\"");
    let s = select(
        &table,
        &cols(),
        &conds(r#"*:t:"we""ird".eq.x';DROP TABLE t;--"#),
    );
    assert_eq!(
        s.sql,
        r#"SELECT "id"::text, "we""ird"::text, "h"::text FROM "sales"."odd ""t""" WHERE "we""ird"::text COLLATE "C" = $1::text"#
    );
    assert_eq!(s.params.len(), 1);
}

#[test]
fn only_conditions_sql_reads_alike_are_pushed() {
    let table = TableName::new("public", "t");
    let s = select(&table, &cols(), &conds("*:t:id.gt.5"));
    assert!(
        s.sql.ends_with(r#"WHERE "id" > ($1::text)::numeric"#),
        "{}",
        s.sql
    );
    let s = select(&table, &cols(), &conds("*:t:h.gt.5"));
    assert!(
        !s.sql.contains("WHERE"),
        "floats print differently: {}",
        s.sql
    );
    let s = select(&table, &cols(), &conds("*:t:id.not.in.(1,2)"));
    assert!(
        s.sql
            .ends_with(r#"WHERE NOT ("id" = ANY(($1::text[])::numeric[]))"#),
        "{}",
        s.sql
    );
    let s = select(&table, &cols(), &conds("*:t:id.is.null"));
    assert!(s.sql.ends_with(r#"WHERE "id" IS NULL"#), "{}", s.sql);
    let c = conds("*:t:id.eq.7");
    assert!(matches!(&c[0].value, RawValue::One(v) if v == "7"));
}

#[test]
fn a_row_is_the_insert_wal2json_would_send() {
    let table = TableName::new("public", "t");
    let columns = vec![
        ColumnInfo::new("id", "integer"),
        ColumnInfo::new("f", "double precision"),
        ColumnInfo::new("ok", "boolean"),
        ColumnInfo::new("doc", "jsonb"),
        ColumnInfo::new("note", "text"),
    ];
    let msg = row_message(
        &table,
        &columns,
        &[Some("7"), Some("NaN"), Some("t"), Some(r#"{"a": 1}"#), None],
    );
    let mut payload = msg.clone();
    let mut decoder = crate::decode::Decoder::new();
    let change = decoder.decode(&mut payload).unwrap();
    let frame = crate::decode::FrameEncoder::new().row(&change, crate::decode::Projection::All);
    assert_eq!(
        frame,
        r#"{"type":"row","row":{"id":7,"f":null,"ok":true,"doc":{"a": 1},"note":null}}"#
    );
}
