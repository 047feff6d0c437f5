//! Retention: by size and by age, held by `keep_after`, never past the last durable commit, and
//! `Expired` for readers whose positions were removed (with the exact boundary still readable).

use std::time::{Duration, SystemTime};

use super::tests::{change, config, pos, read_all, segment_files, txn};
use super::*;

/// A journal of 200 transactions of two changes in 4 KiB segments, flushed.
fn journal(dir: &std::path::Path, max_bytes: Option<u64>) -> (Journal, Vec<Pos>) {
    let cfg = JournalConfig {
        max_bytes,
        max_age: Some(Duration::from_secs(3600)),
        ..config(dir, Fsync::Burst, 4 << 10)
    };
    let mut j = Journal::open(cfg).unwrap();
    let mut all = Vec::new();
    for n in 1..=200 {
        all.extend(txn(&mut j, n, 2));
    }
    j.flush().unwrap();
    assert!(j.segments() > 15);
    (j, all)
}

fn expired(r: Result<JournalReader, JournalError>) -> (Pos, Pos) {
    match r {
        Err(JournalError::Expired { after, horizon }) => (after, horizon),
        Err(e) => panic!("expected Expired, got {e}"),
        Ok(_) => panic!("expected Expired, got a reader"),
    }
}

#[test]
fn retention_by_bytes_removes_the_oldest_segments_and_expires_their_positions() {
    let dir = tempfile::tempdir().unwrap();
    let max = 5 * (4 << 10);
    let (mut j, all) = journal(dir.path(), Some(max));
    let before = j.segments();
    let out = j.trim(SystemTime::now(), None).unwrap();
    assert!(out.deleted_segments > 0);
    assert_eq!(j.segments(), before - out.deleted_segments);
    assert_eq!(segment_files(dir.path()).len(), j.segments());
    assert!(j.bytes() <= max, "{} > {max}", j.bytes());
    assert!(!out.over_max_bytes && !out.held_by_keep_after);

    // The horizon is the last removed position: reading after it loses nothing.
    let oldest = j.oldest().unwrap();
    let i = all.iter().position(|&p| p == oldest).unwrap();
    assert_eq!(out.horizon, all[i - 1]);
    let mut r = j.reader(out.horizon).unwrap();
    assert_eq!(read_all(&mut r), all[i..]);
    assert_eq!(expired(j.reader(Pos::ZERO)), (Pos::ZERO, out.horizon));
    assert_eq!(expired(j.reader(all[i - 2])), (all[i - 2], out.horizon));

    // What was removed stays removed across a reopen.
    let cfg = j.cfg.clone();
    drop(j);
    let j = Journal::open(cfg).unwrap();
    assert_eq!(j.oldest(), Some(oldest));
    assert_eq!(expired(j.reader(Pos::ZERO)).1, out.horizon);
    assert_eq!(read_all(&mut j.reader(out.horizon).unwrap()), all[i..]);
}

#[test]
fn retention_by_age_removes_segments_whose_newest_record_is_old() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, all) = journal(dir.path(), None);
    let before = j.segments();
    let now = SystemTime::now();
    assert_eq!(j.trim(now, None).unwrap().deleted_segments, 0);
    assert_eq!(j.segments(), before);
    let out = j.trim(now + Duration::from_secs(2 * 3600), None).unwrap();
    // Everything but the active segment.
    assert_eq!(out.deleted_segments, before - 1);
    assert_eq!(j.segments(), 1);
    let mut r = j.reader(out.horizon).unwrap();
    let rest = read_all(&mut r);
    assert_eq!(rest[..], all[all.len() - rest.len()..]);
}

#[test]
fn keep_after_holds_segments_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, all) = journal(dir.path(), Some(1));
    // Exactly the last position of segment 2: segments 0 to 2 may go, segment 3 may not.
    let keep = j.shared.view.read().segments[2].last.unwrap();
    let out = j.trim(SystemTime::now(), Some(keep)).unwrap();
    assert_eq!(out.deleted_segments, 3);
    assert!(out.over_max_bytes && out.held_by_keep_after);
    assert_eq!(out.horizon, keep);
    let i = all.iter().position(|&p| p == keep).unwrap();
    assert_eq!(read_all(&mut j.reader(keep).unwrap()), all[i + 1..]);

    // Held mid-segment: that segment stays.
    let keep = all[i + 3];
    let out = j.trim(SystemTime::now(), Some(keep)).unwrap();
    assert_eq!(out.deleted_segments, 0);
    assert!(out.held_by_keep_after);
    assert_eq!(read_all(&mut j.reader(keep).unwrap()), all[i + 4..]);

    // Released: trimmed down to the protected segments.
    let out = j.trim(SystemTime::now(), None).unwrap();
    assert!(out.deleted_segments > 0 && !out.held_by_keep_after);
    assert_eq!(j.segments(), 1);
}

#[test]
fn a_reader_whose_segment_was_removed_gets_expired() {
    let dir = tempfile::tempdir().unwrap();
    let (mut j, all) = journal(dir.path(), None);
    let mut started = j.reader(Pos::ZERO).unwrap();
    assert_eq!(started.next().unwrap().unwrap().pos, all[0]);
    let mut unstarted = j.reader(Pos::ZERO).unwrap();
    let out = j
        .trim(SystemTime::now() + Duration::from_secs(2 * 3600), None)
        .unwrap();
    assert!(out.deleted_segments > 2);

    // The started reader holds segment 0 open and finishes it, then finds segment 1 gone.
    let first_segment = j_first_segment_len(&all, out.horizon);
    let mut n = 1;
    let err = loop {
        match started.next() {
            Ok(Some(rec)) => {
                assert_eq!(rec.pos, all[n]);
                n += 1;
            }
            Ok(None) => panic!("end before the removed segments"),
            Err(e) => break e,
        }
    };
    assert!(n >= 2 && n < first_segment, "read {n} changes");
    let JournalError::Expired { after, horizon } = err else {
        panic!("{err}")
    };
    assert_eq!((after, horizon), (all[n - 1], out.horizon));
    assert!(matches!(
        unstarted.next(),
        Err(JournalError::Expired {
            after: Pos::ZERO,
            ..
        })
    ));
}

/// How many changes precede the horizon (an upper bound for what segment 0 held).
fn j_first_segment_len(all: &[Pos], horizon: Pos) -> usize {
    all.iter().position(|&p| p == horizon).unwrap() + 1
}

#[test]
fn the_segment_of_the_last_durable_commit_is_never_removed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = JournalConfig {
        max_bytes: Some(1),
        ..config(dir.path(), Fsync::Burst, 4 << 10)
    };
    let mut j = Journal::open(cfg.clone()).unwrap();
    // Nothing committed: nothing may go.
    for o in 1..=100 {
        change(&mut j, pos(1, o));
    }
    j.flush().unwrap();
    assert!(j.segments() > 2);
    assert_eq!(j.trim(SystemTime::now(), None).unwrap().deleted_segments, 0);
    j.append_commit(tests::commit_lsn(1), tests::end_lsn(1))
        .unwrap();
    // A commit marker not yet synced does not count.
    let out = j.trim(SystemTime::now(), None).unwrap();
    assert_eq!(out.deleted_segments, 0);
    assert!(out.over_max_bytes && !out.held_by_keep_after);
    // Transaction 2 rolls segments, and a roll syncs: transaction 1 is durable now. Its
    // marker's segment stays, and everything newer.
    for o in 1..=100 {
        change(&mut j, pos(2, o));
    }
    let before = j.segments();
    let out = j.trim(SystemTime::now(), None).unwrap();
    assert!(out.deleted_segments > 0);
    assert!(j.segments() > 2 && j.segments() < before);
    let kept = j.segments();
    drop(j);
    let j = Journal::open(cfg).unwrap();
    assert_eq!(j.last_commit(), Some(tests::commit_lsn(1)));
    assert!(
        j.segments() < kept,
        "transaction 2's segments are cut on reopen"
    );
    assert_eq!(j.last_pos(), Some(pos(1, 100)));
}
