//! Replay after a reconnect, message by message, as Postgres resends it: every change of every
//! transaction reaches the subscriber exactly once, whatever the cut position.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::filter::{bind, parse_request, ColumnInfo};
use crate::hub::{Entry, SubscribeRequest, Subscription};
use crate::vocab::SessionSignal;

/// One replication message: its WAL start and wal2json payload.
#[derive(Clone)]
struct Msg {
    lsn: Lsn,
    json: String,
}

fn lsn(n: u64) -> Lsn {
    Lsn(n)
}

fn begin(xid: u64, commit: u64) -> Msg {
    Msg {
        lsn: lsn(commit - 1),
        json: format!(r#"{{"action":"B","xid":{xid},"lsn":"{}"}}"#, lsn(commit)),
    }
}

fn commit(xid: u64, commit: u64) -> Msg {
    Msg {
        lsn: lsn(commit),
        json: format!(r#"{{"action":"C","xid":{xid},"lsn":"{}"}}"#, lsn(commit)),
    }
}

fn insert(xid: u64, at: u64, id: i64) -> Msg {
    Msg {
        lsn: lsn(at),
        json: format!(
            r#"{{"action":"I","xid":{xid},"lsn":"{}","schema":"public","table":"t","columns":[{{"name":"id","type":"integer","value":{id}}}]}}"#,
            lsn(at)
        ),
    }
}

/// A transaction as Postgres sends it: B, the changes, C. Rows 2..=5 share one LSN, as the rows
/// of a COPY multi-insert record do.
fn copy_txn(xid: u64, commit_at: u64, first_id: i64) -> Vec<Msg> {
    let base = commit_at - 100;
    let mut m = vec![begin(xid, commit_at)];
    m.push(insert(xid, base, first_id));
    for k in 1..=4 {
        m.push(insert(xid, base + 10, first_id + k));
    }
    m.push(insert(xid, base + 20, first_id + 5));
    m.push(commit(xid, commit_at));
    m
}

struct Rig {
    intake: Intake,
    sub: Subscription,
    _cancel: CancellationToken,
}

impl Rig {
    fn new() -> Rig {
        Rig::with_binding(false)
    }

    /// `bound`: the subscription knows the shape it was bound against (`t (id integer)`), so
    /// schema events carry it on.
    fn with_binding(bound: bool) -> Rig {
        use crate::filter::{ColumnShape, TableShape};
        let metrics = Arc::new(Metrics::new());
        let hub = Hub::new(metrics.clone(), 100_000);
        let cancel = CancellationToken::new();
        let params = vec![("query".to_owned(), "*:t".to_owned())];
        let req = parse_request(&params).expect("valid request");
        let filter = bind(&req, &[ColumnInfo::new("id", "integer")]).expect("binds");
        let binding = bound.then(|| {
            let mut id = ColumnShape::named("id", "integer");
            id.attnum = Some(1);
            crate::hub::Binding {
                request: Arc::new(req.clone()),
                shape: Arc::new(TableShape {
                    schema: "public".into(),
                    table: "t".into(),
                    oid: Some(16400),
                    columns: vec![id],
                    primary_key: vec!["id".into()],
                }),
                policy: false,
            }
        });
        let sub = hub.subscribe(
            SubscribeRequest {
                schema: "public",
                table: "t",
                key: "*:t",
                ops: req.ops,
                filter,
                plugin: None,
                binding,
            },
            SessionSignal::new(&cancel),
        );
        Rig {
            intake: Intake::new(hub, metrics),
            sub,
            _cancel: cancel,
        }
    }

    fn feed(&mut self, msgs: &[Msg]) {
        for m in msgs {
            let mut payload = m.json.clone().into_bytes();
            self.intake.on_data(m.lsn, m.lsn, &mut payload);
        }
        self.intake.flush();
    }

    /// Ids of the change frames received so far (`-1` for an error frame).
    fn received(&self) -> Vec<i64> {
        let mut frames: Vec<Entry> = Vec::new();
        while self.sub.reader().take(&mut frames, 1024).is_some() {}
        frames
            .iter()
            .map(|f| {
                let v: serde_json::Value =
                    serde_json::from_str(f.frame.as_str()).expect("JSON frame");
                v["new"]["id"].as_i64().unwrap_or(-1)
            })
            .collect()
    }
}

fn ids(range: std::ops::RangeInclusive<i64>) -> Vec<i64> {
    range.collect()
}

#[test]
fn without_a_cut_every_change_arrives_once() {
    let mut rig = Rig::new();
    rig.feed(&copy_txn(10, 1000, 1));
    assert_eq!(rig.received(), ids(1..=6));
}

#[test]
fn a_cut_at_every_position_of_a_copy_transaction_loses_and_repeats_nothing() {
    let txn = copy_txn(10, 1000, 1);
    for cut in 0..=txn.len() {
        let mut rig = Rig::new();
        rig.feed(&txn[..cut]);
        rig.intake.on_reconnect();
        rig.feed(&txn);
        assert_eq!(rig.received(), ids(1..=6), "cut after {cut} messages");
    }
}

#[test]
fn a_second_cut_during_the_replay_loses_and_repeats_nothing() {
    let txn = copy_txn(10, 1000, 1);
    for first in 0..=txn.len() {
        for second in 0..=txn.len() {
            let mut rig = Rig::new();
            rig.feed(&txn[..first]);
            rig.intake.on_reconnect();
            rig.feed(&txn[..second]);
            rig.intake.on_reconnect();
            rig.feed(&txn);
            assert_eq!(
                rig.received(),
                ids(1..=6),
                "cuts after {first} then {second} messages"
            );
        }
    }
}

#[test]
fn transactions_resent_whole_and_one_committed_during_the_outage() {
    let before = copy_txn(9, 500, 101);
    let cut_off = copy_txn(10, 1000, 1);
    let during_outage = copy_txn(11, 1500, 201);
    for cut in 0..=cut_off.len() {
        let mut rig = Rig::new();
        rig.feed(&before);
        rig.feed(&cut_off[..cut]);
        rig.intake.on_reconnect();
        // Postgres resends from its last confirmed flush: the earlier transaction too.
        let mut replay = before.clone();
        replay.extend(cut_off.iter().cloned());
        replay.extend(during_outage.iter().cloned());
        rig.feed(&replay);
        let mut want = ids(101..=106);
        want.extend(ids(1..=6));
        want.extend(ids(201..=206));
        assert_eq!(rig.received(), want, "cut after {cut} messages");
    }
}

#[test]
fn an_undecodable_change_is_an_error_frame_counted_in_the_replay() {
    let mut txn = copy_txn(10, 1000, 1);
    let broken = Msg {
        lsn: lsn(950),
        json: r#"{"action":"I","xid":10,"lsn":"0/3B6","schema":"public","table":"t","columns":[{"name":"id","value":1"#
            .to_owned(),
    };
    txn.insert(3, broken);
    for cut in 0..=txn.len() {
        let mut rig = Rig::new();
        rig.feed(&txn[..cut]);
        rig.intake.on_reconnect();
        rig.feed(&txn);
        assert_eq!(
            rig.received(),
            vec![1, 2, -1, 3, 4, 5, 6],
            "cut after {cut} messages"
        );
    }
}

#[test]
fn the_decode_failed_frame_names_the_position_and_table() {
    let mut rig = Rig::new();
    let mut payload = format!(
        r#"{{"action":"I","xid":1,"lsn":"0/16","schema":"public","table":"t","columns":[{{"name":"id","value":{}"#,
        1
    )
    .into_bytes();
    rig.intake.on_data(lsn(0x16), lsn(0x16), &mut payload);
    rig.intake.flush();
    let mut frames: Vec<Entry> = Vec::new();
    assert!(rig.sub.reader().take(&mut frames, 8).is_some());
    let v: serde_json::Value = serde_json::from_str(frames[0].frame.as_str()).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"], "decode_failed");
    assert_eq!(v["lsn"], "0/16");
    assert_eq!(v["table"], "t");
    assert_eq!(v["schema"], "public");
    assert_eq!(rig.intake.metrics.decode_errors.get(), 1);
}

#[test]
fn an_undecodable_begin_or_commit_is_logged_not_sent() {
    let mut rig = Rig::new();
    let mut payload = br#"{"action":"B","xid":1,"lsn":"0/16""#.to_vec();
    rig.intake.on_data(lsn(0x16), lsn(0x16), &mut payload);
    rig.intake.flush();
    assert!(rig.received().is_empty());
    assert_eq!(rig.intake.metrics.decode_errors.get(), 1);
}

#[test]
fn a_temporary_slot_reconnect_is_a_gap_frame_and_the_journal_goes_on() {
    use crate::journal::{Journal, JournalConfig};
    use crate::vocab::Pos;
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(JournalConfig::new(dir.path())).unwrap();
    let handle = journal.handle();
    let mut rig = Rig::new();
    rig.intake = std::mem::replace(
        &mut rig.intake,
        Intake::new(
            Hub::new(Arc::new(Metrics::new()), 1),
            Arc::new(Metrics::new()),
        ),
    )
    .with_journal(journal)
    .with_temporary_slot(true);
    let cut_off = copy_txn(10, 1000, 1);
    // Cut after two changes; the new temporary slot starts later: the rest never comes.
    rig.feed(&cut_off[..3]);
    rig.intake.on_reconnect();
    rig.feed(&copy_txn(11, 2000, 101));
    assert_eq!(rig.received(), vec![1, 2, -1, 101, 102, 103, 104, 105, 106]);
    // The journal closed the cut transaction where it stopped, holds the gap frame right after
    // it (as readers of the journal must get it), and took the next one.
    let mut reader = handle.reader(Pos::ZERO).unwrap();
    let mut records = Vec::new();
    while let Some(record) = reader.next().unwrap() {
        let text = String::from_utf8(record.payload.to_vec()).unwrap();
        records.push((record.kind, record.pos, text));
    }
    assert_eq!(records.len(), 2 + 1 + 6, "{records:?}");
    assert_eq!(records[1].1, Pos::new(lsn(1000), 2));
    let (kind, pos, text) = &records[2];
    assert_eq!(
        (*kind, *pos),
        (crate::journal::RecordKind::Gap, Pos::new(lsn(1000), 3))
    );
    let gap: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(gap["type"], "gap");
    assert_eq!(gap["after"], Pos::new(lsn(1000), 2).to_string());
    assert_eq!(records[3].1, Pos::new(lsn(2000), 1));
}

/// An intake with a journal in `dir` (lowered payload limit when `max_payload`), subscribed to
/// `public.t`.
fn journaled(
    dir: &std::path::Path,
    max_payload: Option<usize>,
) -> (Rig, crate::journal::JournalHandle) {
    use crate::journal::{Journal, JournalConfig};
    let mut cfg = JournalConfig::new(dir);
    if let Some(max) = max_payload {
        cfg.max_payload = max;
    }
    let journal = Journal::open(cfg).unwrap();
    let handle = journal.handle();
    let mut rig = Rig::new();
    rig.intake = std::mem::replace(
        &mut rig.intake,
        Intake::new(
            Hub::new(Arc::new(Metrics::new()), 1),
            Arc::new(Metrics::new()),
        ),
    )
    .with_journal(journal);
    (rig, handle)
}

impl Rig {
    /// A burst as the source hands it over: the messages, `flush`, then `sync`.
    async fn burst(&mut self, msgs: &[Msg]) {
        for m in msgs {
            assert!(self.intake.ready().await);
            let mut payload = m.json.clone().into_bytes();
            self.intake.on_data(m.lsn, m.lsn, &mut payload);
        }
        self.intake.flush();
        self.intake.sync().await;
    }
}

fn big_insert(xid: u64, at: u64, id: i64, bytes: usize) -> Msg {
    Msg {
        lsn: lsn(at),
        json: format!(
            r#"{{"action":"I","xid":{xid},"lsn":"{}","schema":"public","table":"t","columns":[{{"name":"id","type":"integer","value":{id}}},{{"name":"v","type":"text","value":"{}"}}]}}"#,
            lsn(at),
            "x".repeat(bytes)
        ),
    }
}

#[tokio::test]
async fn a_change_the_journal_refuses_stops_confirmation_but_not_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rig, handle) = journaled(dir.path(), Some(1000));
    rig.burst(&copy_txn(10, 1000, 1)).await;
    assert_eq!(rig.intake.confirmable(lsn(1 << 40)), lsn(1 << 40));
    // Transaction 2's second change is over the limit; transaction 3 comes after it.
    let mut txn = vec![begin(11, 2000), insert(11, 1900, 7)];
    txn.push(big_insert(11, 1910, 8, 5000));
    txn.push(commit(11, 2000));
    rig.burst(&txn).await;
    rig.burst(&copy_txn(12, 3000, 101)).await;
    assert_eq!(
        rig.received(),
        vec![1, 2, 3, 4, 5, 6, 7, 8, 101, 102, 103, 104, 105, 106],
        "live delivery goes on"
    );
    // Confirmed no further than transaction 1, whatever the candidate: Postgres resends the rest.
    assert_eq!(rig.intake.confirmable(lsn(1 << 40)), lsn(1000));
    assert_eq!(rig.intake.metrics.journal_errors.get(), 1);
    let mut reader = handle.reader(Pos::ZERO).unwrap();
    let mut n = 0;
    while let Some(record) = reader.next().unwrap() {
        assert!(record.pos.commit <= lsn(2000), "{record:?}");
        n += 1;
    }
    assert_eq!(
        n,
        6 + 1,
        "transaction 1 and the change before the refused one"
    );
}

#[tokio::test]
async fn an_undecodable_begin_or_commit_stops_confirmation() {
    for broken in [0, 1] {
        let dir = tempfile::tempdir().unwrap();
        let (mut rig, _handle) = journaled(dir.path(), None);
        rig.burst(&copy_txn(10, 1000, 1)).await;
        let mut txn = copy_txn(11, 2000, 11);
        let at = if broken == 0 { 0 } else { txn.len() - 1 };
        let len = txn[at].json.len();
        txn[at].json.truncate(len - 2);
        rig.burst(&txn).await;
        rig.burst(&copy_txn(12, 3000, 101)).await;
        assert_eq!(
            rig.intake.confirmable(lsn(1 << 40)),
            lsn(1000),
            "broken {}",
            if broken == 0 { "begin" } else { "commit" }
        );
    }
}

#[tokio::test]
async fn a_burst_of_transactions_is_one_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rig, handle) = journaled(dir.path(), None);
    let mut msgs = Vec::new();
    for t in 0..100u64 {
        msgs.extend(copy_txn(10 + t, 1000 * (t + 1), t as i64 * 10));
    }
    let before = rig.intake.journal_fsyncs();
    rig.burst(&msgs).await;
    assert_eq!(rig.intake.journal_fsyncs() - before, 1);
    assert_eq!(rig.intake.confirmable(lsn(1 << 40)), lsn(1 << 40));
    let mut reader = handle.reader(Pos::ZERO).unwrap();
    let mut n = 0;
    while reader.next().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 600);
}

/// Column `name` of table `t` in a `walcast.ddl` message.
fn ddl_column(attnum: i16, name: &str, type_name: &str, key: bool) -> serde_json::Value {
    serde_json::json!({"attnum": attnum, "name": name, "type": type_name, "nullable": !key,
        "default": null, "generated": null, "generation_expression": null, "identity": null,
        "primary_key": key})
}

fn ddl_shape(table: &str, oid: u32, columns: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({"schema": "public", "table": table, "oid": oid,
        "columns": columns, "primary_key": ["id"]})
}

/// A `walcast.ddl` message of the event triggers: `t` gets column `v`, and another table `u`
/// (no subscriber) is created in the same command.
fn ddl_message(xid: u64, at: u64) -> Msg {
    let id = ddl_column(1, "id", "integer", true);
    let content = serde_json::json!({"version": 1, "command": "ALTER TABLE", "tables": [
        {"oid": 16400, "before": ddl_shape("t", 16400, vec![id.clone()]),
         "after": ddl_shape("t", 16400, vec![id.clone(), ddl_column(2, "v", "text", false)])},
        {"oid": 16401, "before": null, "after": ddl_shape("u", 16401, vec![id])}
    ], "dropped": []});
    let payload = serde_json::json!({"action": "M", "xid": xid, "lsn": lsn(at).to_string(),
        "transactional": true, "prefix": "walcast.ddl", "content": content.to_string()});
    Msg {
        lsn: lsn(at),
        json: payload.to_string(),
    }
}

/// B, insert 1, the DDL message (two tables), insert 2, C.
fn ddl_txn(xid: u64, commit_at: u64) -> Vec<Msg> {
    vec![
        begin(xid, commit_at),
        insert(xid, commit_at - 30, 1),
        ddl_message(xid, commit_at - 20),
        insert(xid, commit_at - 10, 2),
        commit(xid, commit_at),
    ]
}

impl Rig {
    fn bound() -> Rig {
        Rig::with_binding(true)
    }

    /// Every frame received so far: its type, and the row id or the table.
    fn frames(&self) -> Vec<(String, String, Option<Pos>)> {
        let mut frames: Vec<Entry> = Vec::new();
        while self.sub.reader().take(&mut frames, 1024).is_some() {}
        frames
            .iter()
            .map(|f| {
                let v: serde_json::Value =
                    serde_json::from_str(f.frame.as_str()).expect("JSON frame");
                let what = match v["type"].as_str() {
                    Some("change") => v["new"]["id"].to_string(),
                    _ => v["table"].as_str().unwrap_or_default().to_owned(),
                };
                (
                    v["type"].as_str().unwrap_or_default().to_owned(),
                    what,
                    f.pos,
                )
            })
            .collect()
    }
}

#[test]
fn a_ddl_message_takes_one_position_per_table_between_the_changes() {
    let mut rig = Rig::bound();
    rig.feed(&ddl_txn(10, 1000));
    let at = |n| Some(Pos::new(lsn(1000), n));
    assert_eq!(
        rig.frames(),
        vec![
            ("change".into(), "1".into(), at(1)),
            ("schema".into(), "public.t".into(), at(2)),
            // Ordinal 3 is table u's event, which this subscriber does not follow.
            ("change".into(), "2".into(), at(4)),
        ]
    );
}

#[test]
fn a_cut_anywhere_around_a_ddl_message_keeps_every_position() {
    let txn = ddl_txn(10, 1000);
    let mut whole = Rig::bound();
    whole.feed(&txn);
    let expected = whole.frames();
    for cut in 1..txn.len() {
        let mut rig = Rig::bound();
        rig.feed(&txn[..cut]);
        rig.intake.on_reconnect();
        rig.feed(&txn);
        assert_eq!(rig.frames(), expected, "cut after message {cut}");
    }
}

#[test]
fn schema_events_are_journaled_at_their_positions() {
    let dir = tempfile::tempdir().unwrap();
    let (mut rig, handle) = journaled(dir.path(), None);
    rig.feed(&ddl_txn(10, 1000));
    let mut reader = handle.reader(Pos::ZERO).unwrap();
    let mut kinds = Vec::new();
    while let Some(record) = reader.next().unwrap() {
        kinds.push((record.kind, record.pos.ordinal));
        if record.kind == crate::journal::RecordKind::Schema {
            let event = crate::schema::SchemaEvent::from_record(record.payload).unwrap();
            assert!(event.concerns("public", "t") || event.concerns("public", "u"));
        }
    }
    use crate::journal::RecordKind::{Change, Schema};
    assert_eq!(
        kinds,
        vec![(Change, 1), (Schema, 2), (Schema, 3), (Change, 4)]
    );
}

#[test]
fn an_unreadable_ddl_message_is_an_error_frame_for_every_subscriber() {
    let mut rig = Rig::bound();
    let mut txn = ddl_txn(10, 1000);
    txn[2].json = txn[2].json.replace(r#"\"version\":1"#, r#"\"version\":9"#);
    rig.feed(&txn);
    let frames = rig.frames();
    assert_eq!(frames.len(), 3, "{frames:?}");
    assert_eq!(frames[1].0, "error");
    assert_eq!(frames[1].2, Some(Pos::new(lsn(1000), 2)));
    assert_eq!(frames[2].2, Some(Pos::new(lsn(1000), 3)));
}

#[test]
fn a_column_a_change_shows_and_the_table_lacks_is_an_inferred_event_before_it() {
    let mut rig = Rig::bound();
    rig.intake = std::mem::replace(
        &mut rig.intake,
        Intake::new(
            Hub::new(Arc::new(Metrics::new()), 1),
            Arc::new(Metrics::new()),
        ),
    )
    .with_inference(true);
    let mut txn = vec![begin(10, 1000), insert(10, 970, 1)];
    txn.push(Msg {
        lsn: lsn(980),
        json: r#"{"action":"I","xid":10,"lsn":"0/3D4","schema":"public","table":"t","columns":[{"name":"id","type":"integer","value":2},{"name":"v","type":"text","value":"x"}]}"#.into(),
    });
    txn.push(insert(10, 990, 3));
    txn.push(commit(10, 1000));
    rig.feed(&txn);
    let at = |n| Some(Pos::new(lsn(1000), n));
    assert_eq!(
        rig.frames(),
        vec![
            ("change".into(), "1".into(), at(1)),
            ("schema".into(), "public.t".into(), at(2)),
            ("change".into(), "2".into(), at(3)),
            // Back to one column: the shape changed again.
            ("schema".into(), "public.t".into(), at(4)),
            ("change".into(), "3".into(), at(5)),
        ]
    );
}
