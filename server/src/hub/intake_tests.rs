//! Replay after a reconnect, message by message, as Postgres resends it: every change of every
//! transaction reaches the subscriber exactly once, whatever the cut position.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::filter::{bind, parse_request, ColumnInfo};
use crate::hub::{Entry, SessionSignal, SubscribeRequest, Subscription};

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
        let metrics = Arc::new(Metrics::new());
        let hub = Hub::new(metrics.clone(), 100_000);
        let cancel = CancellationToken::new();
        let params = vec![("query".to_owned(), "*:t".to_owned())];
        let req = parse_request(&params).expect("valid request");
        let filter = bind(&req, &[ColumnInfo::new("id", "integer")]).expect("binds");
        let sub = hub.subscribe(
            SubscribeRequest {
                schema: "public",
                table: "t",
                key: "*:t",
                ops: req.ops,
                filter,
                plugin: None,
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
    use crate::journal::{Journal, JournalConfig, Pos};
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
    // The journal closed the cut transaction where it stopped and took the next one.
    let mut reader = handle.reader(Pos::ZERO).unwrap();
    let mut positions = Vec::new();
    while let Some(record) = reader.next().unwrap() {
        positions.push(record.pos);
    }
    assert_eq!(positions.len(), 2 + 6, "{positions:?}");
    assert_eq!(positions[1], Pos::new(lsn(1000), 2));
    assert_eq!(positions[2], Pos::new(lsn(2000), 1));
}
