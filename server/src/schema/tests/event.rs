//! `SchemaEvent`: kind, names and the journal record.

use super::*;
use crate::filter::TableName;
use crate::schema::{EventKind, SchemaEvent, Source};

fn event(before: Option<TableShape>, after: Option<TableShape>) -> SchemaEvent {
    SchemaEvent {
        source: Source::Trigger,
        command: Some("ALTER TABLE".into()),
        oid: Some(16385),
        before,
        after,
    }
}

fn persons() -> TableShape {
    TableShape {
        table: "persons".into(),
        ..people()
    }
}

#[test]
fn kinds() {
    assert_eq!(event(None, Some(people())).kind(), EventKind::Created);
    assert_eq!(event(Some(people()), None).kind(), EventKind::Dropped);
    assert_eq!(
        event(Some(people()), Some(persons())).kind(),
        EventKind::Renamed
    );
    let moved = TableShape {
        schema: "archive".into(),
        ..people()
    };
    assert_eq!(
        event(Some(people()), Some(moved)).kind(),
        EventKind::Renamed
    );
    let mut altered = people();
    altered.columns.pop();
    assert_eq!(
        event(Some(people()), Some(altered)).kind(),
        EventKind::Altered
    );
    assert_eq!(EventKind::Renamed.as_str(), "renamed");
}

#[test]
fn names_and_concerns() {
    let renamed = event(Some(people()), Some(persons()));
    assert_eq!(renamed.table(), TableName::new("public", "persons"));
    assert_eq!(
        renamed.before_table(),
        Some(TableName::new("public", "people"))
    );
    assert!(renamed.concerns("public", "people"));
    assert!(renamed.concerns("public", "persons"));
    assert!(!renamed.concerns("public", "other"));
    assert!(!renamed.concerns("other", "people"));

    let dropped = event(Some(people()), None);
    assert_eq!(dropped.table(), TableName::new("public", "people"));
    let created = event(None, Some(people()));
    assert_eq!(created.before_table(), None);
    assert!(created.concerns("public", "people"));
}

#[test]
fn diff_is_between_before_and_after() {
    let mut after = people();
    after.columns[1].name = "full_name".into();
    let e = event(Some(people()), Some(after));
    assert_eq!(e.diff().renamed.len(), 1);
    assert_eq!(event(None, Some(people())).diff().added.len(), 3);
}

#[test]
fn record_round_trip() {
    let mut odd = shape(
        "sales",
        "odd.\"table\"",
        vec![key(col(1, "a\"b", "integer"))],
    );
    odd.columns[0].default = Some("nextval('s'::regclass)".into());
    odd.columns[0].identity = Some("by default".into());
    let events = [
        event(Some(people()), Some(persons())),
        event(None, Some(odd.clone())),
        event(Some(odd), None),
        SchemaEvent {
            source: Source::Inferred,
            command: None,
            oid: None,
            before: Some(people()),
            after: Some(TableShape {
                oid: None,
                columns: vec![ColumnShape::named("id", "bigint")],
                ..people()
            }),
        },
    ];
    for e in events {
        let record = e.to_record();
        let back = SchemaEvent::from_record(&record)
            .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&record)));
        assert_eq!(back, e);
    }
}

#[test]
fn record_layout() {
    let e = SchemaEvent {
        source: Source::Inferred,
        command: None,
        oid: None,
        before: None,
        after: Some(shape("public", "t", vec![col(1, "a", "text")])),
    };
    let text = String::from_utf8(e.to_record()).unwrap();
    assert!(
        text.starts_with(r#"{"v":1,"source":"inferred","command":null,"oid":null,"before":null,"after":{"schema":"public","table":"t""#),
        "{text}"
    );
}

#[test]
fn records_of_other_versions_and_garbage_are_refused() {
    let good = String::from_utf8(event(None, Some(people())).to_record()).unwrap();
    let refused = |payload: &str| match SchemaEvent::from_record(payload.as_bytes()) {
        Ok(e) => panic!("read {payload}: {e:?}"),
        Err(e) => e.to_string(),
    };
    let v2 = refused(&good.replacen("\"v\":1", "\"v\":2", 1));
    assert!(v2.contains("version 2"), "{v2}");
    assert!(refused(&good.replacen("\"v\":1,", "", 1)).contains("\"v\""));
    refused(&good.replacen("\"v\":1", "\"v\":\"1\"", 1));
    refused("");
    refused("not json");
    refused("[1]");
    refused(&good[..good.len() - 1]);
    refused(&good.replacen("\"trigger\"", "\"guessed\"", 1));
    // A record that lost a key is not read as "no shape".
    let no_before = refused(&good.replacen("\"before\":null,", "", 1));
    assert!(no_before.contains("before"), "{no_before}");
    let neither = refused(
        r#"{"v":1,"source":"trigger","command":"DROP TABLE","oid":1,"before":null,"after":null}"#,
    );
    assert!(neither.contains("neither"), "{neither}");
}
