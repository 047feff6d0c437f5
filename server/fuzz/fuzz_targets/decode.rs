//! The wal2json v2 decoder: `Decoder::decode` of the input as one replication payload (decoded in
//! place), then the frames built from it.
//!
//! Checks: no panic; a change that decodes gives a `change` frame, a `format=wal2json-v1` frame
//! and a snapshot `row` frame that are valid JSON (when its json/jsonb columns hold JSON, which
//! Postgres guarantees), with the change's op, schema and table, and as many columns in `new`
//! and `old` as the change has; a payload that does not decode can still be peeked at; the same
//! decoder then decodes a known message exactly as a fresh one does (no state left behind).

#![no_main]

use libfuzzer_sys::fuzz_target;
use walcast::decode::{Change, Decoder, FrameEncoder, Image, Projection, Undecoded};
use walcast::vocab::{Lsn, Op, Pos};
use walcast_fuzz::{
    change_frame, json, json_columns_valid, show, J, SAMPLES,
};

fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::new();
    let mut buf = data.to_vec();
    match decoder.decode(&mut buf) {
        Ok(mut change) => {
            // Every other payload as the intake hands it on, with a stream position.
            if data.len().is_multiple_of(2) {
                change.set_pos(Pos::new(Lsn(data.len() as u64 * 0x1_0001), 7));
            }
            check_change(&change, data);
        }
        Err(_) => {
            let _ = Undecoded::peek(&buf);
            let _ = Undecoded::action_prefix(data);
        }
    }
    // The decoder is reused for every message in the server: nothing of this input may leak.
    let mut known = SAMPLES[1].as_bytes().to_vec();
    let again = decoder.decode(&mut known).expect("a sample decodes");
    let got = FrameEncoder::new().change(&again, Projection::All);
    let mut fresh_buf = SAMPLES[1].as_bytes().to_vec();
    let mut fresh = Decoder::new();
    let want = FrameEncoder::new().change(&fresh.decode(&mut fresh_buf).unwrap(), Projection::All);
    assert_eq!(got, want, "the decoder kept state from {}", show(data));
});

fn check_change(change: &Change<'_>, data: &[u8]) {
    let Some(op) = change.op() else {
        // B/C/M messages: read, never framed.
        let _ = (
            change.prefix(),
            change.content(),
            change.xid(),
            change.lsn(),
        );
        return;
    };
    if !json_columns_valid(change)
    {
        return;
    }
    let mut encoder = FrameEncoder::new();
    let frame_text = encoder.change(change, Projection::All);
    let frame = change_frame(&frame_text, "change frame");
    let what = || format!("frame {frame_text}\ninput {}", show(data));
    assert_eq!(frame.top.text("type"), Some("change"), "{}", what());
    assert_eq!(frame.top.text("op"), Some(op.as_str()), "{}", what());
    assert_eq!(
        frame.top.text("schema"),
        Some(change.schema()),
        "{}",
        what()
    );
    assert_eq!(frame.top.text("table"), Some(change.table()), "{}", what());
    assert_eq!(frame.top.text("lsn"), Some(change.lsn()), "{}", what());
    match op {
        Op::Insert | Op::Update => {
            let new = frame
                .new
                .as_ref()
                .unwrap_or_else(|| panic!("no new: {}", what()));
            assert_eq!(new.len(), change.len(Image::New), "{}", what());
        }
        Op::Delete | Op::Truncate => assert!(frame.new.is_none(), "{}", what()),
    }
    match (op, change.has(Image::Old)) {
        (Op::Update | Op::Delete, true) => {
            let old = frame
                .old
                .as_ref()
                .unwrap_or_else(|| panic!("no old: {}", what()));
            assert_eq!(old.len(), change.len(Image::Old), "{}", what());
        }
        _ => assert!(frame.old.is_none(), "{}", what()),
    }
    match frame.top.get("ts") {
        Some(J::Null) => assert!(change.timestamp().is_empty(), "{}", what()),
        Some(J::Str(ts)) => assert!(!ts.is_empty(), "{}", what()),
        other => panic!("ts is {other:?}: {}", what()),
    }

    let v1 = json(&encoder.v1(change, Projection::All), "wal2json-v1 frame");
    assert_eq!(v1.text("kind"), Some(op.as_str()));
    if matches!(op, Op::Insert | Op::Update) {
        let names = v1.get("columnnames").and_then(J::arr).expect("columnnames");
        assert_eq!(names.len(), change.len(Image::New));
        let values = v1
            .get("columnvalues")
            .and_then(J::arr)
            .expect("columnvalues");
        assert_eq!(values.len(), names.len());
    }
    let _ = json(&encoder.row(change, Projection::All), "row frame");

    // A projection onto the first column (what `select=` does).
    if let Some(first) = change
        .column_at(Image::New, 0)
        .or(change.column_at(Image::Old, 0))
    {
        let only: [Box<str>; 1] = [first.name.into()];
        let _ = change_frame(
            &encoder.change(change, Projection::Only(&only)),
            "projected frame",
        );
        let _ = json(
            &encoder.v1(change, Projection::Only(&only)),
            "projected v1 frame",
        );
    }
}
