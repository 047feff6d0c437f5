//! `walcast.ddl` messages: any role that may call `pg_logical_emit_message` can write one, so the
//! parser meets hostile input. The input is a message's content; every event it yields is
//! diffed, framed for a subscriber that sees every column and for one that sees only some,
//! written as a journal record and read back.
//!
//! Checks: no panic; a refusal is an error with a message; every frame is a JSON object of type
//! `schema` with `pos` second and only visible columns in its lists; a record reads back to the
//! same event.

#![no_main]

use libfuzzer_sys::fuzz_target;
use walcast::schema::{encode_frame, parse_message, Message, SchemaEvent, Side};
use walcast::vocab::{Lsn, Pos};
use walcast_fuzz::{json, J};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let events = match parse_message(text) {
        Ok(Message::Events(events)) => events,
        Ok(Message::Control(_)) => return,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            return;
        }
    };
    for event in events {
        let diff = event.diff();
        let pos = Pos::new(Lsn(0x1_0000), 3);
        let mut all = String::new();
        encode_frame(&mut all, &event, &diff, Some(pos), &|_, _| true, &[]);
        let v = json(&all, "schema frame");
        let J::Obj(entries) = &v else {
            panic!("not an object: {all}")
        };
        assert_eq!(entries[0].0, "type");
        assert_eq!(v.text("type"), Some("schema"), "{all}");
        assert_eq!(entries[1].0, "pos", "{all}");
        // A subscriber that sees only columns whose name starts with `a`.
        let mut some = String::new();
        let shows = |_: Side, name: &str| name.starts_with('a');
        encode_frame(&mut some, &event, &diff, Some(pos), &shows, &[]);
        let v = json(&some, "projected schema frame");
        let lists = [
            v.get("columns"),
            v.get("before").and_then(|b| b.get("columns")),
            v.get("diff").and_then(|d| d.get("added")),
            v.get("diff").and_then(|d| d.get("dropped")),
        ];
        for list in lists.into_iter().flatten() {
            for column in list.arr().unwrap_or_default() {
                let name = column.text("name").unwrap_or_default();
                assert!(name.starts_with('a'), "hidden column {name:?} in {some}");
            }
        }
        let record = event.to_record();
        let back = SchemaEvent::from_record(&record)
            .unwrap_or_else(|e| panic!("a written record does not read back: {e}"));
        assert_eq!(back, event);
    }
});
