//! `encode_frame`: the `schema` frame, its key order and per-subscriber column visibility.

use serde_json::{json, Value};

use super::*;
use crate::schema::{diff_is_invisible, encode_frame, Diff, Renamed, SchemaEvent, Side, Source};
use crate::vocab::{Lsn, Pos};

fn event(before: Option<TableShape>, after: Option<TableShape>) -> SchemaEvent {
    SchemaEvent {
        source: Source::Trigger,
        command: Some("ALTER TABLE".into()),
        oid: Some(16385),
        before,
        after,
    }
}

fn encode(
    e: &SchemaEvent,
    pos: Option<Pos>,
    visible: &dyn Fn(Side, &str) -> bool,
    rebound: &[Renamed],
) -> (String, Value) {
    let mut out = String::new();
    encode_frame(&mut out, e, &e.diff(), pos, visible, rebound);
    let value = serde_json::from_str(&out).unwrap_or_else(|err| panic!("{err}: {out}"));
    (out, value)
}

fn all(_: Side, _: &str) -> bool {
    true
}

#[test]
fn exact_frame_of_a_created_table() {
    let mut t = shape("public", "t", vec![key(col(1, "id", "bigint"))]);
    t.columns[0].identity = Some("always".into());
    t.oid = Some(16400);
    let e = SchemaEvent {
        command: Some("CREATE TABLE".into()),
        oid: Some(16400),
        ..event(None, Some(t))
    };
    let pos = Pos::new(Lsn(0x1A2B3C8), 3);
    let (text, _) = encode(&e, Some(pos), &all, &[]);
    let column = r#"{"attnum":1,"name":"id","type":"bigint","nullable":false,"default":null,"generated":null,"generation_expression":null,"identity":"always","primary_key":true}"#;
    let expected = format!(
        concat!(
            r#"{{"type":"schema","pos":"0000000001A2B3C8-00000003","source":"trigger","#,
            r#""command":"CREATE TABLE","event":"created","table":"public.t","oid":16400,"#,
            r#""columns":[{c}],"primary_key":["id"],"before":null,"#,
            r#""diff":{{"table":null,"added":[{c}],"dropped":[],"renamed":[],"retyped":[],"#,
            r#""nullability":[],"defaults":[],"primary_key":null}}}}"#
        ),
        c = column
    );
    assert_eq!(text, expected);
}

#[test]
fn altered_frame_in_key_order() {
    let mut after = people();
    after.columns[1].name = "full_name".into();
    after.columns[2].type_name = "bigint".into();
    after.columns[2].nullable = Some(false);
    after.columns[2].default = Some("0".into());
    after.columns.push(key(col(4, "org", "integer")));
    after.primary_key.push("org".into());
    let e = event(Some(people()), Some(after));
    let rebound = [Renamed {
        from: "name".into(),
        to: "full_name".into(),
    }];
    let (text, f) = encode(&e, None, &all, &rebound);
    // Top-level keys appear in the documented order (`pos` left out when unknown).
    let order = [
        "\"type\":",
        "\"source\":",
        "\"command\":",
        "\"event\":",
        "\"table\":",
        "\"oid\":",
        "\"columns\":",
        "\"primary_key\":",
        "\"before\":",
        "\"diff\":",
        "\"rebound\":",
    ];
    let at: Vec<usize> = order.iter().map(|k| text.find(k).unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert!(!text.contains("\"pos\""));
    assert_eq!(f["event"], "altered");
    assert_eq!(f["table"], "public.people");
    assert_eq!(f["columns"].as_array().unwrap().len(), 4);
    assert_eq!(f["primary_key"], json!(["id", "org"]));
    assert_eq!(f["before"]["table"], "public.people");
    assert_eq!(f["before"]["primary_key"], json!(["id"]));
    assert_eq!(f["before"]["columns"][1]["name"], "name");
    let d = &f["diff"];
    assert_eq!(d["table"], Value::Null);
    assert_eq!(d["added"][0]["name"], "org");
    assert_eq!(d["renamed"], json!([{"from": "name", "to": "full_name"}]));
    assert_eq!(
        d["retyped"],
        json!([{"column": "age", "from": "integer", "to": "bigint"}])
    );
    assert_eq!(
        d["nullability"],
        json!([{"column": "age", "from": true, "to": false}])
    );
    assert_eq!(
        d["defaults"],
        json!([{"column": "age", "from": null, "to": "0"}])
    );
    assert_eq!(
        d["primary_key"],
        json!({"from": ["id"], "to": ["id", "org"]})
    );
    assert_eq!(f["rebound"], json!([{"from": "name", "to": "full_name"}]));
}

#[test]
fn rebound_only_when_non_empty() {
    let e = event(Some(people()), Some(people()));
    let (text, _) = encode(&e, None, &all, &[]);
    assert!(!text.contains("rebound"), "{text}");
}

#[test]
fn dropped_renamed_and_inferred_frames() {
    let (_, f) = encode(&event(Some(people()), None), None, &all, &[]);
    assert_eq!(f["event"], "dropped");
    assert_eq!(f["table"], "public.people");
    assert_eq!(f["columns"], Value::Null);
    assert_eq!(f["primary_key"], Value::Null);
    assert_eq!(f["diff"]["dropped"].as_array().unwrap().len(), 3);

    let odd = TableShape {
        schema: "sales".into(),
        table: "odd.table".into(),
        ..people()
    };
    let (_, f) = encode(&event(Some(people()), Some(odd)), None, &all, &[]);
    assert_eq!(f["event"], "renamed");
    assert_eq!(f["table"], r#"sales."odd.table""#);
    assert_eq!(f["before"]["table"], "public.people");
    assert_eq!(
        f["diff"]["table"],
        json!({"from": "public.people", "to": r#"sales."odd.table""#})
    );

    let mut seen = people();
    seen.oid = None;
    seen.columns.push(ColumnShape::named("note\"s\n", "text"));
    let inferred = SchemaEvent {
        source: Source::Inferred,
        command: None,
        oid: None,
        before: Some(people()),
        after: Some(seen),
    };
    let (_, f) = encode(&inferred, None, &all, &[]);
    assert_eq!(f["source"], "inferred");
    assert_eq!(f["command"], Value::Null);
    assert_eq!(f["oid"], Value::Null);
    let added = &f["diff"]["added"][0];
    assert_eq!(added["name"], "note\"s\n");
    assert_eq!(added["attnum"], Value::Null);
    assert_eq!(added["nullable"], Value::Null);
    assert_eq!(added["primary_key"], false);
}

/// A subscriber that may not see `secret` (before) / `hidden` (after).
fn policy(side: Side, name: &str) -> bool {
    match side {
        Side::Before => name != "secret",
        Side::After => name != "hidden",
    }
}

#[test]
fn hidden_columns_are_filtered_everywhere() {
    let before = shape(
        "public",
        "people",
        vec![
            key(col(1, "id", "integer")),
            col(2, "secret", "text"),
            col(3, "gone", "text"),
            col(4, "x", "integer"),
        ],
    );
    // secret -> hidden (a rename to a hidden name), x retyped and made not null with a default,
    // a hidden column and a visible one added, the key moved to (id, hidden).
    let mut after = before.clone();
    after.columns.remove(2);
    after.columns[1].name = "hidden".into();
    after.columns[1].primary_key = true;
    after.columns[2].type_name = "bigint".into();
    after.columns[2].nullable = Some(false);
    after.columns[2].default = Some("1".into());
    after.columns.push(col(5, "email", "text"));
    after.primary_key = vec!["id".into(), "hidden".into()];
    let e = event(Some(before.clone()), Some(after));
    let (text, f) = encode(&e, None, &policy, &[]);
    assert!(
        !text.contains("secret") && !text.contains("hidden"),
        "{text}"
    );
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&f["columns"]), ["id", "x", "email"]);
    assert_eq!(f["primary_key"], json!(["id"]));
    assert_eq!(names(&f["before"]["columns"]), ["id", "gone", "x"]);
    assert_eq!(f["before"]["primary_key"], json!(["id"]));
    assert_eq!(names(&f["diff"]["added"]), ["email"]);
    assert_eq!(names(&f["diff"]["dropped"]), ["gone"]);
    assert_eq!(f["diff"]["renamed"], json!([]));
    assert_eq!(f["diff"]["retyped"][0]["column"], "x");
    assert_eq!(f["diff"]["nullability"][0]["column"], "x");
    assert_eq!(f["diff"]["defaults"][0]["column"], "x");
    // The key changed only in hidden columns: nothing to show, though the diff has it.
    assert!(e.diff().primary_key.is_some());
    assert_eq!(f["diff"]["primary_key"], Value::Null);

    // The same event for a subscriber that may not see x either: the retype is gone too.
    let narrow = |side: Side, name: &str| policy(side, name) && name != "x";
    let (text, _) = encode(&e, None, &narrow, &[]);
    assert!(!text.contains("\"x\""), "{text}");

    // A rename is shown by its after name, even when the before name is hidden.
    let mut renamed = before.clone();
    renamed.columns[1].name = "shown".into();
    let (_, f) = encode(&event(Some(before), Some(renamed)), None, &policy, &[]);
    assert_eq!(
        f["diff"]["renamed"],
        json!([{"from": "secret", "to": "shown"}])
    );
}

#[test]
fn diff_visibility() {
    let mut after = people();
    after.columns.push(col(4, "hidden", "text"));
    let diff = Diff::between(Some(&people()), Some(&after));
    assert!(diff_is_invisible(&diff, &policy));
    assert!(!diff_is_invisible(&diff, &all));
    after.columns[2].type_name = "bigint".into();
    let diff = Diff::between(Some(&people()), Some(&after));
    assert!(!diff_is_invisible(&diff, &policy));
    let renamed = TableShape {
        table: "persons".into(),
        ..people()
    };
    let diff = Diff::between(Some(&people()), Some(&renamed));
    assert!(!diff_is_invisible(&diff, &|_, _| false));
}

#[test]
fn a_key_re_created_under_the_same_names_is_shown() {
    let mut after = people();
    after.columns.remove(0);
    after.columns.push(key(col(4, "id", "bigint")));
    let (_, f) = encode(&event(Some(people()), Some(after)), None, &all, &[]);
    assert_eq!(
        f["diff"]["primary_key"],
        json!({"from": ["id"], "to": ["id"]})
    );
}

#[test]
fn each_list_is_filtered_by_its_own_side() {
    // `hidden` may be seen as a before name, `secret` as an after name: a column named `hidden`
    // dropped and one named `secret` added are both shown, and in no other list.
    let before = shape(
        "public",
        "people",
        vec![key(col(1, "id", "integer")), key(col(2, "hidden", "text"))],
    );
    let after = shape(
        "public",
        "people",
        vec![key(col(1, "id", "integer")), key(col(3, "secret", "text"))],
    );
    let (_, f) = encode(&event(Some(before), Some(after)), None, &policy, &[]);
    assert_eq!(f["before"]["columns"][1]["name"], "hidden");
    assert_eq!(f["before"]["primary_key"], json!(["id", "hidden"]));
    assert_eq!(f["diff"]["dropped"][0]["name"], "hidden");
    assert_eq!(f["columns"][1]["name"], "secret");
    assert_eq!(f["primary_key"], json!(["id", "secret"]));
    assert_eq!(f["diff"]["added"][0]["name"], "secret");
    assert_eq!(
        f["diff"]["primary_key"],
        json!({"from": ["id", "hidden"], "to": ["id", "secret"]})
    );
}
