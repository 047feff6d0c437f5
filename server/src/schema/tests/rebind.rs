//! `rebind`: a subscription's request carried to the table's next shape.

use super::*;
use crate::filter::{parse_request, PluginRef, Request};
use crate::schema::{rebind, Renamed, Unbound};

fn request(pairs: &[(&str, &str)]) -> Request {
    let params: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parse_request(&params).unwrap_or_else(|e| panic!("{pairs:?}: {e}"))
}

fn altered(f: impl FnOnce(&mut TableShape)) -> TableShape {
    let mut after = people();
    f(&mut after);
    after
}

#[test]
fn unchanged_columns_rebind_as_they_are() {
    let r = request(&[
        ("query", "insert:people:name.eq.bob"),
        ("filter", "age.gt.3"),
        ("select", "id,name"),
    ]);
    let after = altered(|t| {
        t.columns.push(col(4, "email", "text"));
        t.columns[2].type_name = "bigint".into();
    });
    let rebound = rebind(&r, &people(), Some(&after)).unwrap();
    assert_eq!(rebound.request, r);
    assert!(rebound.renamed.is_empty());
}

#[test]
fn renamed_columns_are_renamed_in_the_request() {
    let mut r = request(&[
        ("query", "*:people:name.eq.bob"),
        ("filter", "name.neq.al"),
        ("filter", "id.gt.3"),
        ("select", "id,name,age"),
    ]);
    r.plugin = Some(PluginRef {
        name: "mask".into(),
        params: vec![],
        columns: Some(vec!["name".into(), "age".into()]),
    });
    let after = altered(|t| {
        t.columns[1].name = "full_name".into();
        t.columns[0].name = "person_id".into();
        t.primary_key = vec!["person_id".into()];
    });
    let rebound = rebind(&r, &people(), Some(&after)).unwrap();
    let columns: Vec<&str> = rebound
        .request
        .conditions
        .iter()
        .map(|c| c.column.as_str())
        .collect();
    assert_eq!(columns, ["full_name", "full_name", "person_id"]);
    assert_eq!(
        rebound.request.select.as_deref().unwrap(),
        ["person_id".into(), "full_name".into(), "age".into()] as [Box<str>; 3]
    );
    assert_eq!(
        rebound
            .request
            .plugin
            .as_ref()
            .unwrap()
            .columns
            .as_deref()
            .unwrap(),
        ["full_name", "age"]
    );
    // The values, operators and the rest of the request are untouched.
    assert_eq!(rebound.request.conditions[0].value, r.conditions[0].value);
    assert_eq!(rebound.request.table, r.table);
    // Each renamed column once, in the order the request names them.
    assert_eq!(
        rebound.renamed,
        vec![
            Renamed {
                from: "name".into(),
                to: "full_name".into()
            },
            Renamed {
                from: "id".into(),
                to: "person_id".into()
            },
        ]
    );
}

#[test]
fn swapped_names_follow_the_attnums() {
    let r = request(&[("query", "*:people:name.eq.bob"), ("select", "id,age")]);
    let after = altered(|t| {
        t.columns[1].name = "age".into();
        t.columns[2].name = "name".into();
    });
    let rebound = rebind(&r, &people(), Some(&after)).unwrap();
    assert_eq!(rebound.request.conditions[0].column, "age");
    assert_eq!(
        rebound.request.select.as_deref().unwrap(),
        ["id".into(), "name".into()] as [Box<str>; 2]
    );
    assert_eq!(rebound.renamed.len(), 2);
}

#[test]
fn a_dropped_column_the_request_names_ends_it() {
    let without_name = altered(|t| {
        t.columns.remove(1);
    });
    let cases = [
        request(&[("query", "*:people:name.eq.bob")]),
        request(&[("query", "*:people"), ("select", "id,name")]),
        {
            let mut r = request(&[("query", "*:people")]);
            r.plugin = Some(PluginRef {
                name: "mask".into(),
                params: vec![],
                columns: Some(vec!["id".into(), "name".into()]),
            });
            r
        },
    ];
    for r in cases {
        assert_eq!(
            rebind(&r, &people(), Some(&without_name)),
            Err(Unbound(
                "column \"name\" of public.people was dropped".into()
            )),
            "{r:?}"
        );
    }
    // Dropped and added again under the same name: another column, the old values are gone.
    let re_added = altered(|t| {
        t.columns.remove(1);
        t.columns.push(col(4, "name", "text"));
    });
    let r = request(&[("query", "*:people:name.eq.bob")]);
    assert!(rebind(&r, &people(), Some(&re_added)).is_err());
    // A column it does not name may go.
    let without_age = altered(|t| {
        t.columns.pop();
    });
    assert!(rebind(&r, &people(), Some(&without_age)).is_ok());
    // Without conditions or select, nothing is named.
    let all = request(&[("query", "*:people")]);
    assert!(rebind(&all, &people(), Some(&without_name)).is_ok());
}

#[test]
fn a_dropped_or_renamed_table_ends_it() {
    let r = request(&[("query", "*:people")]);
    assert_eq!(
        rebind(&r, &people(), None).unwrap_err().to_string(),
        "table public.people was dropped"
    );
    let persons = TableShape {
        table: "persons".into(),
        ..people()
    };
    assert_eq!(
        rebind(&r, &people(), Some(&persons)).unwrap_err().0,
        "table public.people was renamed to public.persons; subscribe to the new name"
    );
    let odd = TableShape {
        schema: "sales".into(),
        table: "odd.table".into(),
        ..people()
    };
    assert_eq!(
        rebind(&r, &people(), Some(&odd)).unwrap_err().0,
        "table public.people was renamed to sales.\"odd.table\"; subscribe to the new name"
    );
}

#[test]
fn inferred_shapes_rebind_by_name() {
    // An inferred after-shape of an update: known columns keep their attnums, a new one has none.
    let r = request(&[("query", "*:people:name.eq.bob"), ("select", "id,name")]);
    let after = altered(|t| {
        t.oid = None;
        t.columns.push(ColumnShape::named("email", "text"));
    });
    let rebound = rebind(&r, &people(), Some(&after)).unwrap();
    assert_eq!(rebound.request, r);
    // A before-shape without attnums.
    let mut before = people();
    for c in &mut before.columns {
        c.attnum = None;
    }
    let rebound = rebind(&r, &before, Some(&people())).unwrap();
    assert_eq!(rebound.request, r);
}
