//! `differs` and `infer`: schema changes seen in the changes themselves (no trigger).

use super::*;
use crate::schema::{differs, infer, Diff, Renamed};

const INSERT: &str = r#"{"action":"I","schema":"public","table":"people","columns":[{"name":"id","type":"integer","value":1},{"name":"name","type":"text","value":"bob"},{"name":"age","type":"integer","value":7}]}"#;

fn inferred(json: &str) -> (bool, TableShape) {
    with_change(json, |c| (differs(&people(), c), infer(&people(), c)))
}

#[test]
fn an_insert_of_the_known_shape_does_not_differ() {
    let (differs, shape) = inferred(INSERT);
    assert!(!differs);
    assert_eq!(shape.columns, people().columns);
    assert_eq!(shape.primary_key, people().primary_key);
    assert_eq!(shape.oid, None, "a change does not show the oid");
}

#[test]
fn insert_with_an_added_column() {
    let json = INSERT.replace("]}", r#",{"name":"email","type":"text","value":null}]}"#);
    let (differs, shape) = inferred(&json);
    assert!(differs);
    assert_eq!(shape.columns.len(), 4);
    assert_eq!(shape.columns[3], ColumnShape::named("email", "text"));
    let diff = Diff::between(Some(&people()), Some(&shape));
    assert_eq!(diff.added, vec![ColumnShape::named("email", "text")]);
    assert!(diff.dropped.is_empty() && diff.renamed.is_empty() && diff.nullability.is_empty());
}

#[test]
fn insert_without_a_column_drops_it() {
    let json = INSERT.replace(r#",{"name":"age","type":"integer","value":7}"#, "");
    let (differs, shape) = inferred(&json);
    assert!(differs);
    let diff = Diff::between(Some(&people()), Some(&shape));
    assert_eq!(diff.dropped, vec![col(3, "age", "integer")]);
    assert!(diff.added.is_empty());
    assert_eq!(shape.primary_key, vec!["id".to_string()]);
}

#[test]
fn insert_without_a_key_column_has_no_key() {
    let json = INSERT.replace(r#"{"name":"id","type":"integer","value":1},"#, "");
    let (differs, shape) = inferred(&json);
    assert!(differs);
    assert!(shape.primary_key.is_empty());
    assert!(shape.columns.iter().all(|c| !c.primary_key));
    let diff = Diff::between(Some(&people()), Some(&shape));
    assert_eq!(diff.primary_key, Some((vec!["id".into()], vec![])));
}

#[test]
fn insert_with_one_new_name_in_place_of_a_missing_one_is_a_rename() {
    let json = INSERT.replace(r#""name":"name""#, r#""name":"full_name""#);
    let (differs, shape) = inferred(&json);
    assert!(differs);
    assert_eq!(
        shape.columns[1].attnum,
        Some(2),
        "the rename keeps the attnum"
    );
    assert_eq!(shape.columns[1].nullable, Some(true), "and the attributes");
    let diff = Diff::between(Some(&people()), Some(&shape));
    assert_eq!(
        diff.renamed,
        vec![Renamed {
            from: "name".into(),
            to: "full_name".into()
        }]
    );
    assert!(diff.added.is_empty() && diff.dropped.is_empty());
    // A renamed key column stays the key.
    let json = INSERT.replace(r#""name":"id""#, r#""name":"person_id""#);
    let (_, shape) = inferred(&json);
    assert_eq!(shape.primary_key, vec!["person_id".to_string()]);
    assert!(shape.columns[0].primary_key);
}

#[test]
fn a_new_name_of_another_type_or_place_is_a_drop_and_an_add() {
    // Same place, other type.
    let json = INSERT.replace(
        r#"{"name":"name","type":"text","value":"bob"}"#,
        r#"{"name":"full_name","type":"jsonb","value":"{}"}"#,
    );
    let (_, shape) = inferred(&json);
    let diff = Diff::between(Some(&people()), Some(&shape));
    assert!(diff.renamed.is_empty());
    assert_eq!(diff.dropped.len(), 1);
    assert_eq!(diff.added.len(), 1);
    // Another place: `name` gone, `nick` appended at the end.
    let json = INSERT
        .replace(r#"{"name":"name","type":"text","value":"bob"},"#, "")
        .replace("]}", r#",{"name":"nick","type":"text","value":"b"}]}"#);
    let (differs, shape) = inferred(&json);
    assert!(differs);
    let diff = Diff::between(Some(&people()), Some(&shape));
    assert!(diff.renamed.is_empty(), "{diff:?}");
    assert_eq!(diff.dropped[0].name, "name");
    assert_eq!(diff.added[0].name, "nick");
}

#[test]
fn insert_with_a_retyped_column() {
    let json = INSERT.replace(
        r#""name":"age","type":"integer""#,
        r#""name":"age","type":"bigint""#,
    );
    let (differs, shape) = inferred(&json);
    assert!(differs);
    let age = &shape.columns[2];
    assert_eq!(age.attnum, Some(3));
    assert_eq!(age.type_name, "bigint");
    assert_eq!(age.nullable, None, "attributes are unknown after a retype");
    let diff = Diff::between(Some(&people()), Some(&shape));
    assert_eq!(diff.retyped.len(), 1);
    assert_eq!(diff.retyped[0].from, "integer");
    assert!(diff.nullability.is_empty() && diff.defaults.is_empty());
    // A retyped key column stays in the key.
    let json = INSERT.replace(
        r#""name":"id","type":"integer""#,
        r#""name":"id","type":"bigint""#,
    );
    let (_, shape) = inferred(&json);
    assert!(shape.columns[0].primary_key);
    assert_eq!(shape.primary_key, vec!["id".to_string()]);
}

#[test]
fn insert_in_another_column_order_differs() {
    let json = r#"{"action":"I","schema":"public","table":"people","columns":[{"name":"name","type":"text","value":"bob"},{"name":"id","type":"integer","value":1},{"name":"age","type":"integer","value":7}]}"#;
    assert!(inferred(json).0);
}

#[test]
fn update_without_an_unchanged_toast_column_does_not_differ() {
    // `name` is an unchanged TOAST value: absent from `columns`, which is not a drop.
    let json = r#"{"action":"U","schema":"public","table":"people","columns":[{"name":"id","type":"integer","value":1},{"name":"age","type":"integer","value":8}],"identity":[{"name":"id","type":"integer","value":1}]}"#;
    let (differs, shape) = inferred(json);
    assert!(!differs);
    assert_eq!(shape.columns, people().columns);
    // Nor without identity (the key did not change).
    let json = r#"{"action":"U","schema":"public","table":"people","columns":[{"name":"id","type":"integer","value":1}]}"#;
    assert!(!inferred(json).0);
}

#[test]
fn update_with_an_unknown_or_retyped_column() {
    let json = r#"{"action":"U","schema":"public","table":"people","columns":[{"name":"id","type":"integer","value":1},{"name":"email","type":"text","value":"x"}],"identity":[{"name":"id","type":"integer","value":1}]}"#;
    let (differs, shape) = inferred(json);
    assert!(differs);
    assert_eq!(
        shape.columns.len(),
        4,
        "known columns are kept, new ones appended"
    );
    assert_eq!(shape.columns[3], ColumnShape::named("email", "text"));

    // The identity shows a retyped key column.
    let json = r#"{"action":"U","schema":"public","table":"people","columns":[{"name":"age","type":"integer","value":1}],"identity":[{"name":"id","type":"bigint","value":1}]}"#;
    let (differs, shape) = inferred(json);
    assert!(differs);
    assert_eq!(shape.columns[0].type_name, "bigint");
    assert_eq!(shape.columns[0].attnum, Some(1));
    assert!(shape.columns[0].primary_key);
    assert_eq!(shape.columns.len(), 3);
}

#[test]
fn deletes() {
    let json = r#"{"action":"D","schema":"public","table":"people","identity":[{"name":"id","type":"integer","value":1}]}"#;
    let (differs, shape) = inferred(json);
    assert!(!differs);
    assert_eq!(shape.columns, people().columns);

    let json = r#"{"action":"D","schema":"public","table":"people","identity":[{"name":"id","type":"integer","value":1},{"name":"name","type":"character varying(20)","value":"bob"},{"name":"age","type":"integer","value":null}]}"#;
    let (differs, shape) = inferred(json);
    assert!(differs);
    assert_eq!(shape.columns[1].type_name, "character varying(20)");

    let json = r#"{"action":"D","schema":"public","table":"people","identity":[{"name":"uuid","type":"uuid","value":"x"}]}"#;
    let (differs, shape) = inferred(json);
    assert!(differs);
    assert_eq!(
        shape.columns.last(),
        Some(&ColumnShape::named("uuid", "uuid"))
    );
}

#[test]
fn truncate_and_messages_never_differ() {
    let json = r#"{"action":"T","schema":"public","table":"people"}"#;
    let (differs, shape) = inferred(json);
    assert!(!differs);
    assert_eq!(shape.columns, people().columns);
    let json = r#"{"action":"M","transactional":true,"prefix":"walcast.ddl","content":"{}"}"#;
    assert!(!inferred(json).0);
}

#[test]
fn a_quoted_type_name_matches_what_wal2json_prints() {
    // format_type gives "Mood" (a quoted identifier); wal2json writes that text unescaped, so
    // the change's type reads Mood.
    let mut t = people();
    t.columns[1].type_name = "\"Mood\"".into();
    let json = INSERT.replace(r#""type":"text""#, r#""type":"Mood""#);
    with_change(&json, |c| {
        assert!(!differs(&t, c));
        assert_eq!(infer(&t, c).columns[1].type_name, "\"Mood\"");
    });
    // An array of it is escaped as usual: "\"Mood\"[]" both ways.
    t.columns[1].type_name = "\"Mood\"[]".into();
    let json = INSERT.replace(r#""type":"text""#, r#""type":"\"Mood\"[]""#);
    with_change(&json, |c| assert!(!differs(&t, c)));
    let json = INSERT.replace(r#""type":"text""#, r#""type":"Mood[]""#);
    with_change(&json, |c| assert!(differs(&t, c)));
    // Another name is still a difference.
    t.columns[1].type_name = "\"Mood\"".into();
    let json = INSERT.replace(r#""type":"text""#, r#""type":"Moo""#);
    with_change(&json, |c| assert!(differs(&t, c)));
}
