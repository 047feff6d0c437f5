//! What the journal vouches for: repair cuts only a torn tail and refuses damage that valid
//! records follow (naming file and offset); gaps are records at their own position; a refused
//! append stops the journal and caps what it confirms; deferred syncs; the identity check.

use std::fs;
use std::path::{Path, PathBuf};

use super::tests::{commit_lsn, config, end_lsn, pos, read_all, segment_files, txn};
use super::*;
use crate::vocab::Lsn;

fn copy_dir(from: &Path, to: &Path) {
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_file() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn flip(path: &Path, at: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at as usize] ^= 0x20;
    fs::write(path, bytes).unwrap();
}

/// Offsets of the records of a segment file.
fn record_offsets(path: &Path) -> Vec<u64> {
    let bytes = fs::read(path).unwrap();
    let mut at = format::SEGMENT_HEADER_LEN;
    let mut out = Vec::new();
    while let format::Parsed::Record(h) = format::parse(&bytes[at..]) {
        out.push(at as u64);
        at += h.record_len();
    }
    out
}

/// Transactions 1 to 3 (two changes each) in one segment, synced.
fn three_transactions(dir: &Path) -> PathBuf {
    let mut j = Journal::open(config(dir, Fsync::Burst, 1 << 20)).unwrap();
    for n in 1..=3 {
        txn(&mut j, n, 2);
    }
    j.flush().unwrap();
    drop(j);
    segment_files(dir).remove(0)
}

#[test]
fn damage_followed_by_valid_records_is_refused_naming_file_and_offset() {
    let template = tempfile::tempdir().unwrap();
    let seg = three_transactions(template.path());
    let name = seg.file_name().unwrap();
    let records = record_offsets(&seg);
    assert_eq!(records.len(), 9);
    // Every record but the last: a byte in its length, its checksum, its position, its payload.
    for (i, &record) in records[..records.len() - 1].iter().enumerate() {
        for at in [record, record + 5, record + 12, record + 40] {
            let end = records[i + 1];
            if at >= end {
                continue;
            }
            let dir = tempfile::tempdir().unwrap();
            copy_dir(template.path(), dir.path());
            let path = dir.path().join(name);
            flip(&path, at);
            let before = fs::read(&path).unwrap();
            let err = Journal::open(config(dir.path(), Fsync::Burst, 1 << 20))
                .err()
                .unwrap_or_else(|| panic!("flip at {at} was repaired"));
            match &err {
                JournalError::Damaged {
                    path: p,
                    offset,
                    valid_at,
                    ..
                } => {
                    assert_eq!((p, *offset), (&path, record), "flip at {at}");
                    assert!(*valid_at > record, "flip at {at}: {err}");
                }
                other => panic!("flip at {at}: {other}"),
            }
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains(&format!("offset {record}")), "{msg}");
            assert!(
                msg.contains(&format!("truncate -s {record} {}", path.display())),
                "{msg}"
            );
            // Refusing deletes nothing.
            assert_eq!(fs::read(&path).unwrap(), before, "flip at {at}");
        }
    }
}

#[test]
fn the_truncation_the_refusal_names_opens_with_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let seg = three_transactions(dir.path());
    let records = record_offsets(&seg);
    // The first change of transaction 2.
    flip(&seg, records[3] + 40);
    let err = Journal::open(config(dir.path(), Fsync::Burst, 1 << 20))
        .err()
        .expect("refused");
    let JournalError::Damaged { offset, .. } = err else {
        panic!("{err}")
    };
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(offset)
        .unwrap();
    let j = Journal::open(config(dir.path(), Fsync::Burst, 1 << 20)).unwrap();
    assert_eq!(j.last_commit(), Some(commit_lsn(1)));
    assert_eq!(
        read_all(&mut j.reader(Pos::ZERO).unwrap()),
        vec![pos(1, 1), pos(1, 2)]
    );
}

#[test]
fn a_torn_tail_with_nothing_valid_after_it_is_still_cut() {
    let template = tempfile::tempdir().unwrap();
    let seg = three_transactions(template.path());
    let name = seg.file_name().unwrap();
    let records = record_offsets(&seg);
    let last = *records.last().unwrap();
    let len = fs::metadata(&seg).unwrap().len();
    // A damaged last record (the commit marker of transaction 3), zeros after the end (a file
    // extended but never written), half a record after the end.
    let half: Vec<u8> =
        fs::read(&seg).unwrap()[records[6] as usize..records[7] as usize - 3].to_vec();
    for case in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template.path(), dir.path());
        let path = dir.path().join(name);
        let mut bytes = fs::read(&path).unwrap();
        match case {
            0 => bytes[last as usize + 9] ^= 1,
            1 => bytes.extend_from_slice(&[0u8; 8192]),
            _ => bytes.extend_from_slice(&half),
        }
        fs::write(&path, bytes).unwrap();
        let j = Journal::open(config(dir.path(), Fsync::Burst, 1 << 20)).unwrap();
        let kept = if case == 0 { 2 } else { 3 };
        assert_eq!(j.last_commit(), Some(commit_lsn(kept)), "case {case}");
        assert_eq!(
            read_all(&mut j.reader(Pos::ZERO).unwrap()).len(),
            2 * kept as usize
        );
        let cut = if case == 0 { records[6] } else { len };
        assert_eq!(fs::metadata(&path).unwrap().len(), cut, "case {case}");
    }
}

#[test]
fn a_damaged_header_on_a_segment_holding_records_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let seg = three_transactions(dir.path());
    flip(&seg, 13);
    let err = Journal::open(config(dir.path(), Fsync::Burst, 1 << 20))
        .err()
        .expect("refused");
    assert!(
        matches!(&err, JournalError::Damaged { offset: 0, valid_at, .. } if *valid_at == 32),
        "{err}"
    );
    assert!(seg.exists());
    // Giving the segment up as the message says: truncated to 0 bytes, it is removed.
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(0)
        .unwrap();
    let j = Journal::open(config(dir.path(), Fsync::Burst, 1 << 20)).unwrap();
    assert_eq!(j.last_pos(), None);
}

#[test]
fn gaps_are_records_at_their_own_position() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Fsync::Burst, 4 << 10);
    let mut j = Journal::open(cfg.clone()).unwrap();
    // A gap before anything, between transactions, after one without changes.
    let g0 = j.append_gap(b"{\"type\":\"gap\",\"n\":0}").unwrap();
    assert_eq!(g0, Pos::new(Lsn(0), 1));
    txn(&mut j, 1, 2);
    let g1 = j.append_gap(b"{\"type\":\"gap\",\"n\":1}").unwrap();
    assert_eq!(g1, pos(1, 3));
    txn(&mut j, 2, 0);
    let g2 = j.append_gap(b"{\"type\":\"gap\",\"n\":2}").unwrap();
    assert_eq!(g2, pos(2, 1));
    txn(&mut j, 3, 1);
    // Not inside a transaction.
    super::tests::change(&mut j, pos(4, 1));
    assert!(j.append_gap(b"{}").is_err());
    drop(j);

    // Reopened: the open transaction is cut, the gaps stay, readers get them in order.
    let mut j = Journal::open(cfg).unwrap();
    assert_eq!(j.last_commit(), Some(commit_lsn(3)));
    let mut r = j.reader(Pos::ZERO).unwrap();
    let mut got = Vec::new();
    while let Some(rec) = r.next().unwrap() {
        let text = String::from_utf8(rec.payload.to_vec()).unwrap();
        got.push((rec.kind, rec.pos, text.contains("\"gap\"")));
    }
    use RecordKind::{Change, Gap};
    assert_eq!(
        got,
        vec![
            (Gap, g0, true),
            (Change, pos(1, 1), false),
            (Change, pos(1, 2), false),
            (Gap, g1, true),
            (Gap, g2, true),
            (Change, pos(3, 1), false),
        ]
    );
    // A reader after the last change before a gap gets the gap; after the gap, not.
    let mut r = j.reader(pos(1, 2)).unwrap();
    assert_eq!(r.next().unwrap().map(|r| (r.kind, r.pos)), Some((Gap, g1)));
    let mut r = j.reader(g1).unwrap();
    assert_eq!(r.next().unwrap().map(|r| (r.kind, r.pos)), Some((Gap, g2)));
    // A journal that ends with a gap reopens after it.
    let g3 = j.append_gap(b"{\"type\":\"gap\",\"n\":3}").unwrap();
    assert_eq!(g3, pos(3, 2));
    drop(j);
    let mut j = Journal::open(config(dir.path(), Fsync::Burst, 4 << 10)).unwrap();
    assert_eq!(j.last_pos(), Some(g3));
    assert_eq!(j.durable(), end_lsn(3));
    txn(&mut j, 5, 1);
    assert_eq!(j.last_pos(), Some(pos(5, 1)));
}

#[test]
fn a_refused_append_stops_the_journal_and_caps_what_it_confirms() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = JournalConfig {
        max_payload: 300,
        ..config(dir.path(), Fsync::Burst, 1 << 20)
    };
    let mut j = Journal::open(cfg).unwrap();
    txn(&mut j, 1, 1);
    j.flush().unwrap();
    assert_eq!(j.confirmable(Lsn(1 << 40)), Lsn(1 << 40));
    txn(&mut j, 2, 1);
    super::tests::change(&mut j, pos(3, 1));
    let err = j
        .append_change(pos(3, 2), Lsn(1), &[b'x'; 301])
        .unwrap_err();
    assert!(
        matches!(err, JournalError::TooLarge { len: 301, max: 300 }),
        "{err}"
    );
    assert!(j.is_halted());
    // Nothing more is taken ...
    assert!(matches!(
        j.append_commit(commit_lsn(3), end_lsn(3)),
        Err(JournalError::Halted)
    ));
    assert!(j.append_gap(b"{}").is_err());
    // ... what came before is still made durable, and nothing past it is confirmed, whatever
    // the candidate.
    j.flush().unwrap();
    assert_eq!(j.durable(), end_lsn(2));
    assert_eq!(j.confirmable(Lsn(1 << 40)), end_lsn(2));

    // Positions out of order stop it the same way.
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(config(dir.path(), Fsync::Burst, 1 << 20)).unwrap();
    txn(&mut j, 5, 1);
    j.flush().unwrap();
    assert!(matches!(
        j.append_change(pos(4, 1), Lsn(1), b"{}"),
        Err(JournalError::OutOfOrder { .. })
    ));
    assert_eq!(j.confirmable(Lsn(1 << 40)), end_lsn(5));
}

#[test]
fn a_record_bigger_than_a_segment_is_kept_alone_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Fsync::Burst, 4 << 10);
    let mut j = Journal::open(cfg.clone()).unwrap();
    txn(&mut j, 1, 1);
    // Bigger than a segment, and than the write buffer.
    let big: Vec<u8> = (0..(3 << 20)).map(|i| b'a' + (i % 26) as u8).collect();
    j.append_change(pos(2, 1), Lsn(9), &big).unwrap();
    j.append_commit(commit_lsn(2), end_lsn(2)).unwrap();
    txn(&mut j, 3, 1);
    j.flush().unwrap();
    drop(j);
    let j = Journal::open(cfg).unwrap();
    let mut r = j.reader(pos(1, 1)).unwrap();
    let rec = r.next().unwrap().unwrap();
    assert_eq!((rec.pos, rec.payload.len()), (pos(2, 1), big.len()));
    assert!(rec.payload == &big[..]);
    assert_eq!(r.next().unwrap().map(|r| r.pos), Some(pos(3, 1)));
}

#[test]
fn deferred_syncs_wait_for_settle() {
    for fsync in [Fsync::Always, Fsync::Burst, Fsync::Never] {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(config(dir.path(), fsync, 4 << 10)).unwrap();
        j.defer_syncs();
        txn(&mut j, 1, 1);
        // Always: one settle per transaction, before the next append; Burst: at the burst's end.
        assert_eq!(j.settle_due_now(), fsync == Fsync::Always, "{fsync:?}");
        assert_eq!(j.settle_due(), fsync != Fsync::Never, "{fsync:?}");
        j.write_out().unwrap();
        if fsync != Fsync::Never {
            assert_eq!(j.durable(), Lsn(0), "{fsync:?}: no fsync before settle");
        }
        j.settle().unwrap();
        assert_eq!(j.durable(), end_lsn(1), "{fsync:?}");
        assert!(!j.settle_due() && !j.settle_due_now());
        if fsync == Fsync::Always {
            for n in 2..60 {
                txn(&mut j, n, 3);
                assert!(j.settle_due_now());
                j.settle().unwrap();
                assert_eq!(j.durable(), end_lsn(n));
            }
            assert!(j.segments() > 1);
            continue;
        }
        // A full segment is sealed by settle, not by the append that filled it.
        let mut n = 2;
        while !j.settle_due_now() {
            txn(&mut j, n, 3);
            n += 1;
        }
        assert_eq!(j.segments(), 1, "{fsync:?}");
        j.settle().unwrap();
        assert_eq!(j.segments(), 2, "{fsync:?}");
        assert!(!j.settle_due_now());
    }
}

fn identity(system: &str, database: &str, slot: &str) -> Identity {
    Identity {
        system_identifier: system.into(),
        database: database.into(),
        slot: slot.into(),
    }
}

#[test]
fn bind_records_the_upstream_and_refuses_another() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Fsync::Burst, 1 << 20);
    let a = identity("7301", "app", "walcast");
    let mut j = Journal::open(cfg.clone()).unwrap();
    assert_eq!(j.identity(), None);
    assert_eq!(j.bind(&a, Lsn(100), true, None).unwrap(), Bound::New);
    assert!(dir.path().join("identity.json").exists());
    txn(&mut j, 1, 1);
    j.flush().unwrap();
    drop(j);

    let mut j = Journal::open(cfg.clone()).unwrap();
    assert_eq!(j.identity(), Some(&a));
    assert_eq!(
        j.bind(&a, Lsn(1 << 20), false, None).unwrap(),
        Bound::Matched
    );
    for other in [
        identity("7302", "app", "walcast"),
        identity("7301", "other", "walcast"),
        identity("7301", "app", "walcast2"),
    ] {
        let err = j.bind(&other, Lsn(1 << 20), false, None).unwrap_err();
        assert!(matches!(err, JournalError::Foreign { .. }), "{err}");
        assert!(err.is_identity());
        let msg = err.to_string();
        for named in [&a, &other] {
            assert!(msg.contains(&named.to_string()), "{msg}");
        }
        assert!(msg.contains("WALCAST_JOURNAL_DIR"), "{msg}");
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    }
    // The slot had to be created: the journal cannot continue it.
    let err = j.bind(&a, Lsn(1 << 20), true, None).unwrap_err();
    assert!(matches!(err, JournalError::SlotRecreated { .. }), "{err}");
    // The server's WAL ends before the journal does.
    let err = j.bind(&a, Lsn(10), false, None).unwrap_err();
    assert!(matches!(err, JournalError::AheadOfServer { .. }), "{err}");
    drop(j);

    // A journal written before identity.json existed is adopted when nothing contradicts it...
    fs::remove_file(dir.path().join("identity.json")).unwrap();
    let mut j = Journal::open(cfg.clone()).unwrap();
    let b = identity("9999", "db", "s");
    assert_eq!(
        j.bind(&b, Lsn(1 << 20), false, None).unwrap(),
        Bound::Adopted
    );
    assert_eq!(j.identity(), Some(&b));
    drop(j);
    // ... and refused when something does.
    fs::remove_file(dir.path().join("identity.json")).unwrap();
    let mut j = Journal::open(cfg.clone()).unwrap();
    assert!(j.bind(&b, Lsn(1 << 20), true, None).is_err());
    assert!(j.bind(&b, Lsn(10), false, None).is_err());
    assert_eq!(j.identity(), None);
    assert!(!dir.path().join("identity.json").exists());
    drop(j);

    // An unreadable identity file fails the open.
    fs::write(dir.path().join("identity.json"), b"{\"system").unwrap();
    let err = Journal::open(cfg).err().expect("refused");
    assert!(matches!(err, JournalError::IdentityFile { .. }), "{err}");
}

#[test]
fn a_journal_bound_empty_vouches_for_nothing_before_the_slots_position() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Fsync::Burst, 1 << 20);
    let a = identity("7301", "app", "walcast");
    let mut j = Journal::open(cfg.clone()).unwrap();
    // The slot had confirmed transaction 5 (its end) before this journal existed.
    assert_eq!(
        j.bind(&a, end_lsn(9), false, Some(end_lsn(5))).unwrap(),
        Bound::New
    );
    assert_eq!(j.starts_after(), Some(Pos::new(end_lsn(5), 0)));
    let written = txn(&mut j, 6, 2);
    j.flush().unwrap();
    let expired =
        |j: &Journal, after: Pos| matches!(j.reader(after), Err(JournalError::Expired { .. }));
    // A position of transaction 5 or before (another journal's) would skip what came between.
    for after in [Pos::ZERO, pos(3, 1), pos(5, 1), pos(5, 7)] {
        assert!(expired(&j, after), "{after} is refused");
    }
    assert_eq!(
        read_all(&mut j.reader(Pos::new(end_lsn(5), 0)).unwrap()),
        written
    );
    assert_eq!(read_all(&mut j.reader(pos(6, 1)).unwrap()), written[1..]);
    drop(j);
    // identity.json keeps it across restarts.
    let text = fs::read_to_string(dir.path().join("identity.json")).unwrap();
    assert!(text.contains("starts_after"), "{text}");
    let j = Journal::open(cfg.clone()).unwrap();
    assert!(expired(&j, pos(5, 1)));
    assert!(expired(&j, pos(5, u32::MAX)));
    assert_eq!(
        read_all(&mut j.reader(Pos::new(end_lsn(5), 0)).unwrap()),
        written
    );
    drop(j);
    // A journal that holds records when it is first bound (adopted) sets no such start.
    fs::remove_file(dir.path().join("identity.json")).unwrap();
    let mut j = Journal::open(cfg).unwrap();
    assert_eq!(
        j.bind(&a, end_lsn(9), false, Some(end_lsn(8))).unwrap(),
        Bound::Adopted
    );
    assert_eq!(read_all(&mut j.reader(Pos::ZERO).unwrap()), written);
}
