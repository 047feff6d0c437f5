//! The catch-up's budget (records read per step, matching or not; frames per step), its steps on
//! the blocking pool, and its pre-filter held against the full decode: a record the pre-filter
//! skips is never one that would have matched.

use futures_util::FutureExt;

use super::*;
use crate::filter::{bind, parse_request, ColumnInfo};
use crate::journal::{Journal, JournalConfig};
use crate::vocab::Op;

/// A journal in a temporary directory, one transaction per `commit` call.
struct Rig {
    journal: Journal,
    next_commit: u64,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        Rig {
            journal: Journal::open(JournalConfig::new(dir.path())).unwrap(),
            next_commit: 0x1000,
            _dir: dir,
        }
    }

    /// Journals `payloads` as one transaction; returns their positions.
    fn commit(&mut self, payloads: &[String]) -> Vec<Pos> {
        let commit = Lsn(self.next_commit);
        self.next_commit += 0x1000;
        let mut positions = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            let pos = Pos::new(commit, i as u32 + 1);
            self.journal
                .append_change(pos, Lsn(commit.0 - 0x800 + i as u64), p.as_bytes())
                .unwrap();
            positions.push(pos);
        }
        self.journal.append_commit(commit, commit).unwrap();
        self.journal.flush().unwrap();
        positions
    }

    fn catch_up(&self, query: &str) -> CatchUp {
        let reader = self.journal.handle().reader(Pos::ZERO).unwrap();
        CatchUp::new(reader, request(query))
    }
}

/// `query=` as the router binds it, on tables whose only column is `id integer`.
fn request(query: &str) -> CatchUpRequest {
    let params = vec![("query".to_owned(), query.to_owned())];
    let req = parse_request(&params).unwrap();
    let filter = bind(&req, &[ColumnInfo::new("id", "integer")]).unwrap();
    CatchUpRequest {
        schema: req.table.schema.into(),
        table: req.table.name.into(),
        filter,
        plugin: None,
        binding: None,
        follow: None,
    }
}

fn insert(table: &str, id: i64) -> String {
    format!(
        r#"{{"action":"I","xid":7,"timestamp":"2026-12-07 10:00:00+00","lsn":"0/1","schema":"public","table":"{table}","columns":[{{"name":"id","type":"integer","value":{id}}}]}}"#
    )
}

fn ids(frames: &[Frame]) -> Vec<i64> {
    frames
        .iter()
        .map(|f| {
            let v: serde_json::Value = serde_json::from_str(f.as_str()).unwrap();
            v["new"]["id"].as_i64().unwrap()
        })
        .collect()
}

const RECORDS: Budget = Budget {
    records: 100,
    frames: 256,
};

/// A subscription to a table with no change in a 1,000-record journal: each step reads exactly
/// its 100 records and stops (no scan to the end), and moves the position over what it read;
/// the one change of its table, at the very end, is found by the eleventh step.
#[test]
fn a_step_on_a_quiet_table_reads_at_most_its_record_budget() {
    let mut rig = Rig::new();
    let mut busy = Vec::new();
    for t in 0..10 {
        let rows: Vec<String> = (0..100).map(|i| insert("busy", t * 100 + i)).collect();
        busy.extend(rig.commit(&rows));
    }
    rig.commit(&[insert("quiet", 1)]);
    let mut catch_up = rig.catch_up("*:quiet");
    let mut out = Vec::new();
    for step in 1..=10 {
        assert_eq!(catch_up.fill(&mut out, RECORDS, None).unwrap(), Fill::More);
        assert!(out.is_empty(), "step {step} sent {out:?}");
        assert_eq!(catch_up.position(), busy[step * 100 - 1], "step {step}");
    }
    assert_eq!(catch_up.fill(&mut out, RECORDS, None).unwrap(), Fill::End);
    assert_eq!(ids(&out), [1]);
}

/// A step also stops at its frame budget, and `until` stops it before a later record.
#[test]
fn a_step_stops_at_its_frame_budget_and_at_until() {
    let mut rig = Rig::new();
    let rows: Vec<String> = (1..=10).map(|i| insert("t", i)).collect();
    let positions = rig.commit(&rows);
    let mut catch_up = rig.catch_up("*:t");
    let three = Budget {
        records: 4096,
        frames: 3,
    };
    let mut out = Vec::new();
    assert_eq!(catch_up.fill(&mut out, three, None).unwrap(), Fill::More);
    assert_eq!(ids(&out), [1, 2, 3]);
    assert_eq!(catch_up.position(), positions[2]);
    out.clear();
    let until = Some(positions[4]);
    assert_eq!(
        catch_up.fill(&mut out, RECORDS, until).unwrap(),
        Fill::Until
    );
    assert_eq!(ids(&out), [4, 5]);
    assert_eq!(catch_up.position(), positions[4]);
}

/// `step` runs on the blocking pool and brings the reader back: step after step continues where
/// the last one stopped. With nothing new in the journal it answers at once, without waiting for
/// a slot; with something to read it waits for one.
#[tokio::test]
async fn steps_take_turns_on_the_blocking_pool() {
    let mut rig = Rig::new();
    let rows: Vec<String> = (1..=5).map(|i| insert("t", i)).collect();
    rig.commit(&rows);
    let slots = CatchUpSlots::new(1);
    let mut catch_up = rig.catch_up("*:t");
    let two = Budget {
        records: 4096,
        frames: 2,
    };
    let mut out = Vec::new();
    let mut got = Vec::new();
    loop {
        let fill = catch_up.step(&slots, &mut out, two, None).await.unwrap();
        got.extend(ids(&out));
        out.clear();
        if fill == Fill::End {
            break;
        }
    }
    assert_eq!(got, [1, 2, 3, 4, 5]);

    let held = slots.0.clone().try_acquire_owned().unwrap();
    let at_end = catch_up.step(&slots, &mut out, two, None).now_or_never();
    assert!(matches!(at_end, Some(Ok(Fill::End))), "{at_end:?}");
    rig.commit(&[insert("t", 6)]);
    assert!(
        catch_up
            .step(&slots, &mut out, two, None)
            .now_or_never()
            .is_none(),
        "a step with records to read waits for a slot"
    );
    drop(held);
    let fill = catch_up.step(&slots, &mut out, two, None).await.unwrap();
    assert_eq!((fill, ids(&out)), (Fill::End, vec![6]));
}

/// Every combination of action, schema, table, key layout and body against every kind of
/// request: where the pre-filter skips a record, the full path (decode, table, operations,
/// conditions) sends no change frame; where it skips for the table, no frame at all (a
/// `decode_failed` frame goes to the subscribers of the table it names, which a skipped record
/// names beyond doubt as another). An undecodable change whose head names an operation the
/// subscription did not ask for gets no `decode_failed` frame from the catch-up.
#[test]
fn the_pre_filter_never_skips_a_record_that_would_have_matched() {
    let rig = Rig::new();
    let actions = ["I", "U", "D", "T", "X"];
    let schemas = ["public", "other", r#"pub\"lic"#, r"pub\\lic", "Public"];
    let tables = ["people", "peopl", "people2", r#"pe\"ople"#, "pëople"];
    let bodies = [
        r#","columns":[{"name":"id","type":"integer","value":7}]}"#,
        r#","identity":[{"name":"id","type":"integer","value":3}]}"#,
        "}",
        // Cut short: not JSON.
        r#","columns":[{"name":"id","typ"#,
    ];
    let requests = [
        "*:people",
        "insert:people",
        "update,delete:people",
        "truncate:people",
        "*:other.people",
        "insert:peopl",
        "*:people:id.gt.5",
        r#"*:"Public".people"#,
    ];
    let (mut skipped, mut matched) = (0, 0);
    for query in requests {
        let mut catch_up = rig.catch_up(query);
        let engine = &mut catch_up.engine.as_mut().unwrap().matcher;
        for action in actions {
            for schema in schemas {
                for table in tables {
                    for body in bodies {
                        for layout in 0..4 {
                            let head = match layout {
                                0 => format!(
                                    r#"{{"action":"{action}","xid":9,"timestamp":"2026-12-07 10:00:00+00","lsn":"0/1","schema":"{schema}","table":"{table}""#
                                ),
                                1 => format!(
                                    r#"{{"action":"{action}","schema":"{schema}","table":"{table}""#
                                ),
                                2 => format!(
                                    r#"{{"action":"{action}","table":"{table}","schema":"{schema}""#
                                ),
                                _ => format!(
                                    r#"{{"action":"{action}","xid":null,"schema":"{schema}","table":"{table}""#
                                ),
                            };
                            let payload = format!("{head}{body}");
                            let may = engine.prefilter.may_match(payload.as_bytes());
                            let mut bytes = payload.clone().into_bytes();
                            let frame = engine.frame_of(Pos::new(Lsn(9), 1), Lsn(8), &mut bytes);
                            matched += usize::from(
                                frame
                                    .as_ref()
                                    .is_some_and(|f| f.starts_with(r#"{"type":"change""#)),
                            );
                            if may {
                                continue;
                            }
                            skipped += 1;
                            let Some(frame) = frame else { continue };
                            let h = crate::hub::prefilter::Head::read(payload.as_bytes()).unwrap();
                            let same_table = h.schema == engine.request.schema.as_bytes()
                                && h.table == engine.request.table.as_bytes();
                            assert!(
                                same_table
                                    && frame
                                        .starts_with(r#"{"type":"error","error":"decode_failed""#),
                                "{query}: skipped {payload}, which earns {frame}"
                            );
                        }
                    }
                }
            }
        }
    }
    // The cases cover both sides.
    assert!(
        skipped > 4_000 && matched > 100,
        "{skipped} skipped, {matched} matched"
    );
}

mod damaged {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// A change of the subscription's table with bytes replaced anywhere: whatever the
        /// damage does to its head, a skipped record earns no change frame.
        #[test]
        fn a_damaged_head_is_skipped_only_when_it_cannot_match(
            edits in proptest::collection::vec((0usize..160, any::<u8>()), 1..4),
            action in prop::sample::select(vec!["I", "U", "D"]),
        ) {
            let rig = Rig::new();
            let mut catch_up = rig.catch_up("insert,update:people");
            let engine = &mut catch_up.engine.as_mut().unwrap().matcher;
            let mut payload = insert("people", 7).replacen(r#""I""#, &format!("\"{action}\""), 1).into_bytes();
            for (at, byte) in edits {
                let at = at % payload.len();
                payload[at] = byte;
            }
            let may = engine.prefilter.may_match(&payload);
            let frame = engine.frame_of(Pos::new(Lsn(9), 1), Lsn(8), &mut payload.clone());
            if !may {
                prop_assert!(
                    frame.as_ref().is_none_or(|f| !f.starts_with(r#"{"type":"change""#)),
                    "skipped {}, which earns {frame:?}",
                    String::from_utf8_lossy(&payload)
                );
            }
        }
    }
}

#[test]
fn the_op_letters_are_the_decoders() {
    for (letter, op) in [
        (b'I', Op::Insert),
        (b'U', Op::Update),
        (b'D', Op::Delete),
        (b'T', Op::Truncate),
    ] {
        let payload = format!(
            r#"{{"action":"{}","schema":"s","table":"t"}}"#,
            letter as char
        );
        let head = crate::hub::prefilter::Head::read(payload.as_bytes()).unwrap();
        assert_eq!(head.op(), Some(op));
        let mut bytes = payload.into_bytes();
        let mut decoder = Decoder::new();
        assert_eq!(decoder.decode(&mut bytes).unwrap().op(), Some(op));
    }
}
