use super::*;
use crate::filter::{parse_request, RawValue};

#[test]
fn visibility_follows_the_snapshot() {
    let v = Visibility::parse("100:110:103,105").unwrap();
    assert!(v.shows(99) && v.shows(104) && v.shows(109));
    assert!(!v.shows(103) && !v.shows(105) && !v.shows(110) && !v.shows(200));
    assert!(Visibility::parse("5:4:").is_none());
    assert!(Visibility::parse("nope").is_none());
}

#[test]
fn visibility_widens_32_bit_xids_across_wraparound() {
    // Epoch 1: xmax is 2^32 + 10; xid 4294967290 (epoch 0) is older than xmin, xid 12 is newer.
    let base = 1u64 << 32;
    let v = Visibility::parse(&format!("{}:{}:{}", base + 5, base + 10, base + 7)).unwrap();
    assert!(v.shows(4_294_967_290));
    assert!(v.shows(6));
    assert!(!v.shows(7), "in progress");
    assert!(!v.shows(12), "after xmax");
}

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
