//! `Diff::between`: matched by attnum, by name where an attnum is unknown.

use super::*;
use crate::filter::TableName;
use crate::schema::{ColumnChange, Diff, Renamed, Retyped};

fn altered(f: impl FnOnce(&mut TableShape)) -> TableShape {
    let mut after = people();
    f(&mut after);
    after
}

#[test]
fn identical_shapes_have_an_empty_diff() {
    let diff = Diff::between(Some(&people()), Some(&people()));
    assert!(diff.is_empty(), "{diff:?}");
    assert_eq!(diff, Diff::default());
}

#[test]
fn add_column() {
    let after = altered(|t| t.columns.push(col(4, "email", "text")));
    let diff = Diff::between(Some(&people()), Some(&after));
    assert_eq!(diff.added, vec![col(4, "email", "text")]);
    assert!(diff.dropped.is_empty() && diff.renamed.is_empty() && diff.retyped.is_empty());
    assert_eq!(diff.primary_key, None);
    assert!(!diff.is_empty());
}

#[test]
fn drop_column() {
    let after = altered(|t| {
        t.columns.remove(1);
    });
    let diff = Diff::between(Some(&people()), Some(&after));
    assert_eq!(diff.dropped, vec![col(2, "name", "text")]);
    assert!(diff.added.is_empty() && diff.renamed.is_empty());
}

#[test]
fn rename_column_is_matched_by_attnum() {
    let after = altered(|t| t.columns[1].name = "full_name".into());
    let diff = Diff::between(Some(&people()), Some(&after));
    assert_eq!(
        diff.renamed,
        vec![Renamed {
            from: "name".into(),
            to: "full_name".into()
        }]
    );
    assert!(diff.added.is_empty() && diff.dropped.is_empty() && diff.retyped.is_empty());
}

#[test]
fn dropped_and_added_again_under_the_same_name_is_not_a_rename() {
    // ALTER TABLE people DROP COLUMN name, ADD COLUMN name text: a new attnum, the values gone.
    let after = altered(|t| {
        t.columns.remove(1);
        t.columns.push(col(4, "name", "text"));
    });
    let diff = Diff::between(Some(&people()), Some(&after));
    assert_eq!(diff.dropped, vec![col(2, "name", "text")]);
    assert_eq!(diff.added, vec![col(4, "name", "text")]);
    assert!(diff.renamed.is_empty());
}

#[test]
fn retype_names_the_column_by_its_after_name() {
    let after = altered(|t| {
        t.columns[2].type_name = "bigint".into();
        t.columns[1].name = "full_name".into();
        t.columns[1].type_name = "character varying(20)".into();
    });
    let diff = Diff::between(Some(&people()), Some(&after));
    assert_eq!(
        diff.retyped,
        vec![
            Retyped {
                column: "full_name".into(),
                from: "text".into(),
                to: "character varying(20)".into()
            },
            Retyped {
                column: "age".into(),
                from: "integer".into(),
                to: "bigint".into()
            },
        ]
    );
    assert_eq!(diff.renamed.len(), 1);
}

#[test]
fn nullability_and_defaults() {
    let after = altered(|t| {
        t.columns[2].nullable = Some(false);
        t.columns[2].default = Some("0".into());
        t.columns[1].default = Some("'x'::text".into());
    });
    let diff = Diff::between(Some(&people()), Some(&after));
    assert_eq!(
        diff.nullability,
        vec![ColumnChange {
            column: "age".into(),
            from: Some(true),
            to: Some(false)
        }]
    );
    assert_eq!(
        diff.defaults,
        vec![
            ColumnChange {
                column: "name".into(),
                from: None,
                to: Some("'x'::text".into())
            },
            ColumnChange {
                column: "age".into(),
                from: None,
                to: Some("0".into())
            },
        ]
    );
    // And back: DROP DEFAULT is a change to null.
    let back = Diff::between(Some(&after), Some(&people()));
    assert_eq!(back.defaults[1].from.as_deref(), Some("0"));
    assert_eq!(back.defaults[1].to, None);
}

#[test]
fn unknown_attributes_of_an_inferred_column_are_not_changes() {
    // An inferred after-shape: `age` retyped, its attributes unknown.
    let after = altered(|t| {
        t.columns[2] = ColumnShape {
            attnum: Some(3),
            ..ColumnShape::named("age", "bigint")
        };
    });
    let diff = Diff::between(Some(&people()), Some(&after));
    assert_eq!(diff.retyped.len(), 1);
    assert!(diff.nullability.is_empty(), "{diff:?}");
    assert!(diff.defaults.is_empty(), "{diff:?}");
}

#[test]
fn primary_key_change() {
    let after = altered(|t| {
        t.columns.push(key(col(4, "org", "integer")));
        t.primary_key = vec!["id".into(), "org".into()];
    });
    let diff = Diff::between(Some(&people()), Some(&after));
    assert_eq!(
        diff.primary_key,
        Some((vec!["id".into()], vec!["id".into(), "org".into()]))
    );
    // Dropping the key.
    let keyless = altered(|t| {
        t.primary_key.clear();
        t.columns[0].primary_key = false;
    });
    let diff = Diff::between(Some(&people()), Some(&keyless));
    assert_eq!(diff.primary_key, Some((vec!["id".into()], vec![])));
    // The same columns in another order are another key.
    let two = altered(|t| t.primary_key = vec!["id".into(), "age".into()]);
    let swapped = altered(|t| t.primary_key = vec!["age".into(), "id".into()]);
    assert!(Diff::between(Some(&two), Some(&swapped))
        .primary_key
        .is_some());
}

#[test]
fn renaming_a_key_column_is_a_rename_not_a_key_change() {
    let after = altered(|t| {
        t.columns[0].name = "person_id".into();
        t.primary_key = vec!["person_id".into()];
    });
    let diff = Diff::between(Some(&people()), Some(&after));
    assert_eq!(diff.primary_key, None, "{diff:?}");
    assert_eq!(diff.renamed.len(), 1);
}

#[test]
fn key_moved_to_a_new_column_of_the_old_name_is_a_key_change() {
    // DROP COLUMN id (drops the key), ADD COLUMN id bigint PRIMARY KEY: same name, new attnum.
    let after = altered(|t| {
        t.columns.remove(0);
        t.columns.push(key(col(4, "id", "bigint")));
    });
    let diff = Diff::between(Some(&people()), Some(&after));
    assert_eq!(
        diff.primary_key,
        Some((vec!["id".into()], vec!["id".into()]))
    );
}

#[test]
fn multi_action_alter_table() {
    // ALTER TABLE people ADD COLUMN email text, DROP COLUMN age, ALTER id TYPE bigint,
    //   ALTER name SET NOT NULL
    let after = altered(|t| {
        t.columns.remove(2);
        t.columns.push(col(4, "email", "text"));
        t.columns[0].type_name = "bigint".into();
        t.columns[1].nullable = Some(false);
    });
    let diff = Diff::between(Some(&people()), Some(&after));
    assert_eq!(diff.added, vec![col(4, "email", "text")]);
    assert_eq!(diff.dropped, vec![col(3, "age", "integer")]);
    assert_eq!(diff.retyped.len(), 1);
    assert_eq!(diff.retyped[0].column, "id");
    assert_eq!(diff.nullability.len(), 1);
    assert_eq!(diff.nullability[0].column, "name");
    assert!(diff.renamed.is_empty() && diff.defaults.is_empty());
    assert_eq!(diff.primary_key, None);
    assert_eq!(diff.table, None);
}

#[test]
fn created_and_dropped_tables() {
    let created = Diff::between(None, Some(&people()));
    assert_eq!(created.added, people().columns);
    assert!(created.dropped.is_empty() && created.table.is_none());
    let dropped = Diff::between(Some(&people()), None);
    assert_eq!(dropped.dropped, people().columns);
    assert!(dropped.added.is_empty());
    assert!(Diff::between(None, None).is_empty());
}

#[test]
fn table_rename_and_move() {
    let renamed = altered(|t| t.table = "persons".into());
    let diff = Diff::between(Some(&people()), Some(&renamed));
    assert_eq!(
        diff.table,
        Some((
            TableName::new("public", "people"),
            TableName::new("public", "persons")
        ))
    );
    assert!(!diff.is_empty());
    assert!(diff.added.is_empty() && diff.dropped.is_empty());
    let moved = altered(|t| t.schema = "archive".into());
    let diff = Diff::between(Some(&people()), Some(&moved));
    assert_eq!(diff.table.unwrap().1, TableName::new("archive", "people"));
}

#[test]
fn quoted_names_are_compared_as_they_are() {
    let before = shape(
        "sales",
        "odd.table",
        vec![col(1, "a\"b", "integer"), col(2, "c.d", "text")],
    );
    let mut after = before.clone();
    after.columns[1].name = "e\"f.g".into();
    let diff = Diff::between(Some(&before), Some(&after));
    assert_eq!(
        diff.renamed,
        vec![Renamed {
            from: "c.d".into(),
            to: "e\"f.g".into()
        }]
    );
    assert!(diff.table.is_none());
}

#[test]
fn inferred_columns_are_matched_by_name() {
    // An inferred after-shape: known columns keep their attnums, a new one has none.
    let after = altered(|t| {
        t.oid = None;
        t.columns.push(ColumnShape::named("email", "text"));
    });
    let diff = Diff::between(Some(&people()), Some(&after));
    assert_eq!(diff.added, vec![ColumnShape::named("email", "text")]);
    assert!(diff.dropped.is_empty() && diff.renamed.is_empty());
    // A before-shape without attnums (inferred earlier) against a trigger's.
    let mut before = people();
    for c in &mut before.columns {
        c.attnum = None;
    }
    let diff = Diff::between(Some(&before), Some(&people()));
    assert!(diff.is_empty(), "{diff:?}");
}
