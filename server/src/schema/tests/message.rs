//! `parse_message`: the `walcast.ddl` message of the event triggers.

use serde_json::{json, Value};

use super::*;
use crate::schema::{parse_message, Control, Message, MessageError, Source};

fn column_json(attnum: i16, name: &str, type_name: &str, pk: bool) -> Value {
    json!({"attnum": attnum, "name": name, "type": type_name, "nullable": !pk,
           "default": null, "generated": null, "generation_expression": null,
           "identity": null, "primary_key": pk})
}

fn people_json() -> Value {
    json!({"schema": "public", "table": "people", "oid": 16385,
           "columns": [column_json(1, "id", "integer", true),
                       column_json(2, "name", "text", false),
                       column_json(3, "age", "integer", false)],
           "primary_key": ["id"]})
}

fn message(before: Value, after: Value) -> Value {
    json!({"version": 1, "command": "ALTER TABLE",
           "tables": [{"oid": 16385, "before": before, "after": after}],
           "dropped": []})
}

fn events(content: &str) -> Vec<crate::schema::SchemaEvent> {
    match parse_message(content) {
        Ok(Message::Events(events)) => events,
        other => panic!("{content}: {other:?}"),
    }
}

fn invalid(content: &str) -> String {
    match parse_message(content) {
        Err(MessageError::Invalid(text)) => text,
        other => panic!("{content}: {other:?}"),
    }
}

/// `message` with `edit` applied to the `after` shape.
fn edited(edit: impl FnOnce(&mut Value)) -> String {
    let mut m = message(people_json(), people_json());
    edit(&mut m["tables"][0]["after"]);
    m.to_string()
}

#[test]
fn alter_table_message() {
    let mut after = people_json();
    after["columns"][1]["name"] = json!("full_name");
    after["columns"][2]["default"] = json!("0");
    after["columns"][2]["identity"] = json!("by default");
    let parsed = events(&message(people_json(), after).to_string());
    assert_eq!(parsed.len(), 1);
    let e = &parsed[0];
    assert_eq!(e.source, Source::Trigger);
    assert_eq!(e.command.as_deref(), Some("ALTER TABLE"));
    assert_eq!(e.oid, Some(16385));
    let mut expected = people();
    for c in &mut expected.columns {
        c.nullable = Some(!c.primary_key);
    }
    assert_eq!(e.before.as_ref(), Some(&expected));
    let after = e.after.as_ref().unwrap();
    assert_eq!(after.columns[1].name, "full_name");
    assert_eq!(after.columns[2].default.as_deref(), Some("0"));
    assert_eq!(after.columns[2].identity.as_deref(), Some("by default"));
    assert_eq!(after.primary_key, vec!["id".to_string()]);
    assert_eq!(e.diff().renamed.len(), 1);
}

#[test]
fn one_event_per_table_entry_created_and_dropped() {
    let created = json!({"schema": "public", "table": "t", "oid": 16400,
                         "columns": [column_json(1, "a", "text", false)], "primary_key": []});
    let m = json!({"version": 1, "command": "DROP TABLE", "tables": [
        {"oid": 16385, "before": people_json(), "after": null},
        {"oid": 16400, "before": null, "after": created}],
        "dropped": [{"object_type": "table", "schema": "public", "name": "people",
                     "identity": "public.people"}]});
    let parsed = events(&m.to_string());
    assert_eq!(parsed.len(), 2);
    assert!(parsed[0].after.is_none() && parsed[0].before.is_some());
    assert!(parsed[1].before.is_none());
    assert_eq!(parsed[1].oid, Some(16400));
    assert_eq!(parsed[1].command.as_deref(), Some("DROP TABLE"));
}

#[test]
fn quoted_names_survive() {
    let m = edited(|after| {
        after["table"] = json!("odd.\"table\"");
        after["columns"][1]["name"] = json!("a.\"b\"");
    });
    let e = &events(&m)[0];
    let after = e.after.as_ref().unwrap();
    assert_eq!(after.table, "odd.\"table\"");
    assert_eq!(after.columns[1].name, "a.\"b\"");
    assert_eq!(e.table().to_string(), r#"public."odd.""table""""#);
}

#[test]
fn control_messages() {
    assert_eq!(
        parse_message(r#"{"version":1,"control":"installed"}"#).unwrap(),
        Message::Control(Control::Installed)
    );
    assert_eq!(
        parse_message(r#"{"version":1,"control":"uninstalled"}"#).unwrap(),
        Message::Control(Control::Uninstalled)
    );
    assert!(invalid(r#"{"version":1,"control":"paused"}"#).contains("control"));
}

#[test]
fn newer_versions_are_refused_not_guessed() {
    for content in [
        r#"{"version":2,"command":"ALTER TABLE","tables":[]}"#,
        r#"{"version":2,"something":"else entirely"}"#,
    ] {
        match parse_message(content) {
            Err(MessageError::Version(2)) => {}
            other => panic!("{content}: {other:?}"),
        }
    }
    let text = MessageError::Version(7).to_string();
    assert!(text.contains('7') && text.contains("upgrade"), "{text}");
    assert!(invalid(r#"{"command":"ALTER TABLE","tables":[]}"#).contains("version"));
    assert!(invalid(r#"{"version":0,"command":"ALTER TABLE","tables":[]}"#).contains("version"));
    assert!(invalid(r#"{"version":"1","command":"ALTER TABLE","tables":[]}"#).contains("version"));
}

#[test]
fn a_trigger_error_is_carried() {
    let text = invalid(
        r#"{"version":1,"command":"ALTER TABLE","error":"42501: permission denied for table people"}"#,
    );
    assert!(
        text.contains("ALTER TABLE") && text.contains("42501: permission denied for table people"),
        "{text}"
    );
}

#[test]
fn malformed_messages_name_the_field() {
    let cases: Vec<(String, &str)> = vec![
        ("not json".into(), "JSON"),
        ("[1,2]".into(), "object"),
        (r#"{"version":1,"tables":[]}"#.into(), "command"),
        (r#"{"version":1,"command":"ALTER TABLE"}"#.into(), "tables"),
        (
            r#"{"version":1,"command":"ALTER TABLE","tables":{}}"#.into(),
            "tables",
        ),
        (r#"{"version":1,"command":7,"tables":[]}"#.into(), "command"),
        (
            r#"{"version":1,"command":"ALTER TABLE","tables":[],"dropped":3}"#.into(),
            "dropped",
        ),
        (
            r#"{"version":1,"command":"ALTER TABLE","tables":[{"before":null,"after":null}]}"#
                .into(),
            "tables[0].oid",
        ),
        (message(Value::Null, Value::Null).to_string(), "both null"),
        (
            {
                let mut m = message(people_json(), people_json());
                m["tables"][0].as_object_mut().unwrap().remove("before");
                m.to_string()
            },
            "tables[0].before",
        ),
        (
            edited(|a| a["columns"][1]["nullable"] = json!("yes")),
            "tables[0].after.columns[1].nullable",
        ),
        (
            edited(|a| {
                a["columns"][2].as_object_mut().unwrap().remove("default");
            }),
            "tables[0].after.columns[2].default",
        ),
        (
            edited(|a| {
                a["columns"][0].as_object_mut().unwrap().remove("attnum");
            }),
            "tables[0].after.columns[0].attnum",
        ),
        (edited(|a| a["columns"][0]["attnum"] = json!(0)), "attnum"),
        (
            edited(|a| a["columns"][0]["attnum"] = json!(40000)),
            "attnum",
        ),
        (
            edited(|a| a["columns"][0]["type"] = json!(null)),
            "tables[0].after.columns[0].type",
        ),
        (
            edited(|a| a["columns"][0]["primary_key"] = json!(1)),
            "primary_key",
        ),
        (edited(|a| a["oid"] = json!(99)), "oid"),
        (edited(|a| a["oid"] = json!(-1)), "oid"),
        (
            edited(|a| a["primary_key"] = json!(["nope"])),
            "primary_key[0]",
        ),
        (edited(|a| a["primary_key"] = json!("id")), "primary_key"),
        (edited(|a| a["columns"] = json!(null)), "columns"),
        (
            edited(|a| a["columns"][2]["attnum"] = json!(1)),
            "attnum order",
        ),
        (edited(|a| a["columns"][2]["name"] = json!("id")), "twice"),
        (edited(|a| a["schema"] = json!(1)), "tables[0].after.schema"),
        (edited(|a| *a = json!("people")), "tables[0].after"),
    ];
    for (content, names) in cases {
        let text = invalid(&content);
        assert!(
            text.contains(names),
            "{names:?} not in {text:?} ({content})"
        );
    }
}

#[test]
fn unknown_keys_are_ignored() {
    let m = edited(|a| {
        a["comment"] = json!("later versions may add keys");
        a["columns"][0]["collation"] = json!("C");
    });
    assert_eq!(events(&m).len(), 1);
}
