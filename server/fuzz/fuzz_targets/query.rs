//! The query-string filter language: `filter::parse_request` on `key=value` lines (a `/ws` URL's
//! decoded query), then `filter::bind` against a fixed column list and evaluation on rows.
//!
//! Checks: no panic; an error's JSON body is JSON with its code and message; a parsed request
//! written back in the query syntax parses to the same request; a table name prints and parses
//! back to itself; a bound filter with one `eq` condition agrees with the hub's index key
//! (`index_key` equals `eq_index`'s key exactly when the condition holds) on the sample rows and
//! on a row the input builds with `row.<column>=<JSON value>` lines.

#![no_main]

use libfuzzer_sys::fuzz_target;
use walcast::decode::{Decoder, Format};
use walcast::vocab::Op;
use walcast::filter::{
    bind, index_key, parse_request, row_column, ColumnInfo, Filter, IsValue, QueryError, RawValue,
    Request, TableName,
};
use walcast_fuzz::{ident, json, list_item, pairs, show, SAMPLES};

/// The table every request is bound against: one column of each comparison class, with the
/// sample rows' names.
const COLUMNS: &[(&str, &str)] = &[
    ("pk", "integer"),
    ("id", "bigint"),
    ("name", "text"),
    ("age", "integer"),
    ("height", "double precision"),
    ("big", "numeric"),
    ("price", "numeric(10,2)"),
    ("j", "jsonb"),
    ("doc", "json"),
    ("ts", "timestamp with time zone"),
    ("at", "timestamp without time zone"),
    ("d", "date"),
    ("tm", "time with time zone"),
    ("t", "text"),
    ("b", "boolean"),
    ("ok", "boolean"),
    ("u", "uuid"),
    ("tags", "text[]"),
    ("v", "character varying(20)"),
];

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let params = pairs(&text);
    let req = match parse_request(&params) {
        Ok(req) => req,
        Err(e) => return check_error(&e, data),
    };
    assert!(
        req.ops != 0 && req.ops & !0b1111 == 0,
        "op mask {:#b} for {}",
        req.ops,
        show(data)
    );
    let shown = req.table.to_string();
    assert_eq!(
        TableName::parse(&shown).as_ref(),
        Ok(&req.table),
        "table {shown} does not parse back; input {}",
        show(data)
    );
    let written = write_back(&req);
    assert_eq!(
        parse_request(&written).as_ref(),
        Ok(&req),
        "written back as {written:?}; input {}",
        show(data)
    );

    let columns: Vec<ColumnInfo> = COLUMNS
        .iter()
        .map(|(n, t)| ColumnInfo::new(*n, *t))
        .collect();
    let filter = match bind(&req, &columns) {
        Ok(f) => f,
        Err(e) => return check_error(&e, data),
    };
    assert_eq!(filter.ops(), req.ops);
    assert_eq!(filter.format(), req.format);
    let mut decoder = Decoder::new();
    for sample in SAMPLES {
        let mut buf = sample.as_bytes().to_vec();
        let change = decoder.decode(&mut buf).expect("samples decode");
        evaluate(&filter, &req, &change, data);
    }
    if let Some(mut row) = row_payload(&params) {
        if let Ok(change) = decoder.decode(&mut row) {
            evaluate(&filter, &req, &change, data);
        }
    }
});

fn check_error(e: &QueryError, data: &[u8]) {
    assert!(!e.code.is_empty() && !e.message.is_empty(), "{e:?}");
    assert!(matches!(e.status(), 400 | 403));
    let body = json(&e.json_body(), "error body");
    assert_eq!(body.text("error"), Some(e.code), "input {}", show(data));
    assert_eq!(
        body.text("message"),
        Some(e.message.as_str()),
        "input {}",
        show(data)
    );
}

fn evaluate(filter: &Filter, req: &Request, change: &walcast::decode::Change<'_>, data: &[u8]) {
    let matched = filter.matches(change);
    if change.op().is_some_and(|op| req.ops & op.bit() == 0) {
        assert!(!matched, "a change outside the op mask matched");
    }
    let row_matched = filter.matches_row(change);
    // The hub's index: with a single (eq) condition, a row is in the index bucket of the
    // filter's key exactly when the condition holds.
    if let (Some((column, key)), Some(class), 1) =
        (filter.eq_index(), filter.eq_class(), req.conditions.len())
    {
        let mut scratch = Vec::new();
        let value = row_column(change, Op::Insert, column).map(|c| c.value);
        let row_key = value.and_then(|v| index_key(v, class, &mut scratch).map(<[u8]>::to_vec));
        assert_eq!(
            row_key.as_deref() == Some(key),
            row_matched,
            "index key {:?} of {value:?} vs filter key {:?} on {column} ({class:?}); input {}",
            row_key.as_deref().map(String::from_utf8_lossy),
            String::from_utf8_lossy(key),
            show(data)
        );
    }
}

/// The request in the query syntax again: the first condition in `query=`, the rest as `filter=`.
fn write_back(req: &Request) -> Vec<(String, String)> {
    let mut query = String::new();
    if req.ops == Op::ALL.iter().fold(0, |m, op| m | op.bit()) {
        query.push('*');
    } else {
        let names: Vec<&str> = Op::ALL
            .iter()
            .filter(|op| req.ops & op.bit() != 0)
            .map(|op| op.as_str())
            .collect();
        query.push_str(&names.join(","));
    }
    query.push(':');
    query.push_str(&req.table.to_string());
    let mut conditions = req.conditions.iter().map(|c| {
        let mut s = String::new();
        ident(&mut s, &c.column, false);
        s.push('.');
        if c.negated {
            s.push_str("not.");
        }
        s.push_str(c.op.as_str());
        s.push('.');
        match &c.value {
            RawValue::One(v) => s.push_str(v),
            RawValue::List(items) => {
                s.push('(');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    list_item(&mut s, item);
                }
                s.push(')');
            }
            RawValue::Is(v) => s.push_str(match v {
                IsValue::Null => "null",
                IsValue::True => "true",
                IsValue::False => "false",
            }),
        }
        s
    });
    if let Some(first) = conditions.next() {
        query.push(':');
        query.push_str(&first);
    }
    let mut out = vec![("query".to_owned(), query)];
    out.extend(conditions.map(|c| ("filter".to_owned(), c)));
    if let Some(select) = &req.select {
        let mut s = String::new();
        let only_star = select.len() == 1 && &*select[0] == "*";
        for (i, name) in select.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            ident(&mut s, name, only_star);
        }
        out.push(("select".to_owned(), s));
    }
    if req.format == Format::Wal2jsonV1 {
        out.push(("format".to_owned(), "wal2json-v1".to_owned()));
    }
    if let Some(plugin) = &req.plugin {
        out.push(("plugin".to_owned(), plugin.name.clone()));
        for (k, v) in &plugin.params {
            out.push((format!("plugin.{k}"), v.clone()));
        }
    }
    out
}

/// An insert whose columns are the input's `row.<column>=<JSON value>` lines (typed from the
/// column list, `text` when not in it); `None` without such lines.
fn row_payload(params: &[(String, String)]) -> Option<Vec<u8>> {
    let mut columns = Vec::new();
    for (key, value) in params {
        let Some(name) = key.strip_prefix("row.") else {
            continue;
        };
        let type_name = COLUMNS
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("text", |(_, t)| *t);
        columns.push(format!(
            r#"{{"name":{},"type":"{type_name}","value":{value}}}"#,
            serde_json::to_string(name).unwrap()
        ));
    }
    if columns.is_empty() {
        return None;
    }
    Some(
        format!(
            r#"{{"action":"I","xid":1,"lsn":"0/1","schema":"public","table":"t","columns":[{}]}}"#,
            columns.join(",")
        )
        .into_bytes(),
    )
}
