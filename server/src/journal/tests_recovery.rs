//! Crash repair on open: torn tails cut at every byte, unfinished transactions cut (also across
//! segments), damage in sealed segments refused with file and offset, and a property test of
//! random appends, reopens and torn tails against a model.

use std::fs::{self, OpenOptions};
use std::path::Path;

use proptest::prelude::*;

use super::tests::{change, commit_lsn, config, end_lsn, pos, read_all, segment_files, txn};
use super::*;
use crate::vocab::Lsn;

fn copy_dir(from: &Path, to: &Path) {
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn set_len(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn flip(path: &Path, at: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at as usize] ^= 0x20;
    fs::write(path, bytes).unwrap();
}

fn reads(dir: &Path) -> Vec<Pos> {
    let j = Journal::open(config(dir, Fsync::Burst, 4 << 10)).unwrap();
    let mut r = j.reader(Pos::ZERO).unwrap();
    read_all(&mut r)
}

/// A journal with transaction 1 (two changes) and transaction 2 (one change): returns the
/// segment file, its length after transaction 1 and its final length.
fn two_transactions(dir: &Path) -> (std::path::PathBuf, u64, u64) {
    let mut j = Journal::open(config(dir, Fsync::Burst, 1 << 20)).unwrap();
    txn(&mut j, 1, 2);
    j.flush().unwrap();
    let first = j.bytes();
    txn(&mut j, 2, 1);
    j.flush().unwrap();
    let last = j.bytes();
    drop(j);
    (segment_files(dir).remove(0), first, last)
}

#[test]
fn a_torn_tail_is_cut_at_every_byte_offset() {
    let template = tempfile::tempdir().unwrap();
    let (seg, first, last) = two_transactions(template.path());
    let name = seg.file_name().unwrap();
    for cut in first..last {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template.path(), dir.path());
        set_len(&dir.path().join(name), cut);
        let mut j = Journal::open(config(dir.path(), Fsync::Burst, 1 << 20)).unwrap();
        assert_eq!(j.last_commit(), Some(commit_lsn(1)), "cut at {cut}");
        assert_eq!(j.last_pos(), Some(pos(1, 2)), "cut at {cut}");
        assert_eq!(j.durable(), end_lsn(1), "cut at {cut}");
        assert_eq!(
            read_all(&mut j.reader(Pos::ZERO).unwrap()),
            vec![pos(1, 1), pos(1, 2)]
        );
        assert_eq!(fs::metadata(dir.path().join(name)).unwrap().len(), first);
        // Postgres resends transaction 2 whole; the journal takes it at the same positions.
        txn(&mut j, 2, 1);
        drop(j);
        assert_eq!(reads(dir.path()), vec![pos(1, 1), pos(1, 2), pos(2, 1)]);
    }
}

#[test]
fn a_damaged_last_record_is_cut_like_a_tear() {
    let template = tempfile::tempdir().unwrap();
    let (seg, first, last) = two_transactions(template.path());
    let name = seg.file_name().unwrap();
    // The commit marker of transaction 2: nothing valid follows it. (Damage that valid records
    // follow is refused: tests_integrity.rs.)
    let marker = last - format::RECORD_HEADER_LEN as u64;
    assert!(marker > first);
    for at in marker..last {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template.path(), dir.path());
        flip(&dir.path().join(name), at);
        let j = Journal::open(config(dir.path(), Fsync::Burst, 1 << 20)).unwrap();
        assert_eq!(j.last_commit(), Some(commit_lsn(1)), "flip at {at}");
        assert_eq!(
            read_all(&mut j.reader(Pos::ZERO).unwrap()),
            vec![pos(1, 1), pos(1, 2)]
        );
    }
}

#[test]
fn an_unfinished_transaction_is_cut_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Fsync::Burst, 1 << 20);
    let mut j = Journal::open(cfg.clone()).unwrap();
    txn(&mut j, 1, 2);
    for o in 1..=3 {
        change(&mut j, pos(2, o));
    }
    j.flush().unwrap();
    assert_eq!(read_all(&mut j.reader(Pos::ZERO).unwrap()).len(), 5);
    drop(j);
    let mut j = Journal::open(cfg).unwrap();
    assert_eq!(j.last_commit(), Some(commit_lsn(1)));
    assert_eq!(j.last_pos(), Some(pos(1, 2)));
    assert_eq!(
        read_all(&mut j.reader(Pos::ZERO).unwrap()),
        vec![pos(1, 1), pos(1, 2)]
    );
    txn(&mut j, 2, 3);
    assert_eq!(j.last_pos(), Some(pos(2, 3)));
}

#[test]
fn schema_records_sit_inside_their_transaction_for_readers_and_repair() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Fsync::Burst, 1 << 20);
    let mut j = Journal::open(cfg.clone()).unwrap();
    change(&mut j, pos(1, 1));
    j.append_schema(pos(1, 2), Lsn(0x100), b"{\"v\":1}")
        .unwrap();
    change(&mut j, pos(1, 3));
    j.append_commit(commit_lsn(1), end_lsn(1)).unwrap();
    // Transaction 2 is cut by a crash right after its schema record.
    change(&mut j, pos(2, 1));
    j.append_schema(pos(2, 2), Lsn(0x200), b"{\"v\":1}")
        .unwrap();
    j.flush().unwrap();
    let kinds = |j: &Journal| {
        let mut r = j.reader(Pos::ZERO).unwrap();
        let mut out = Vec::new();
        while let Some(record) = r.next().unwrap() {
            out.push((record.kind, record.pos));
        }
        out
    };
    assert_eq!(kinds(&j).len(), 5);
    // A schema record takes a position in order like a change.
    assert!(j.append_schema(pos(2, 2), Lsn(0x200), b"{}").is_err());
    drop(j);
    let j = Journal::open(cfg).unwrap();
    assert_eq!(j.last_pos(), Some(pos(1, 3)));
    assert_eq!(
        kinds(&j),
        vec![
            (RecordKind::Change, pos(1, 1)),
            (RecordKind::Schema, pos(1, 2)),
            (RecordKind::Change, pos(1, 3)),
        ]
    );
}

#[test]
fn an_unfinished_transaction_spanning_segments_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Fsync::Burst, 4 << 10);
    let mut j = Journal::open(cfg.clone()).unwrap();
    txn(&mut j, 1, 3);
    for o in 1..=100 {
        change(&mut j, pos(2, o));
    }
    drop(j);
    assert!(segment_files(dir.path()).len() > 3);
    let mut j = Journal::open(cfg.clone()).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(j.segments(), 1);
    assert_eq!(j.last_pos(), Some(pos(1, 3)));
    assert_eq!(read_all(&mut j.reader(Pos::ZERO).unwrap()).len(), 3);
    txn(&mut j, 2, 100);
    drop(j);
    assert_eq!(reads(dir.path()).len(), 103);
}

#[test]
fn no_commit_at_all_leaves_an_empty_journal() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Fsync::Burst, 4 << 10);
    let mut j = Journal::open(cfg.clone()).unwrap();
    for o in 1..=60 {
        change(&mut j, pos(1, o));
    }
    drop(j);
    let j = Journal::open(cfg).unwrap();
    assert_eq!(
        (j.last_commit(), j.last_pos(), j.oldest()),
        (None, None, None)
    );
    assert_eq!(j.segments(), 1);
    assert_eq!(j.bytes(), format::SEGMENT_HEADER_LEN as u64);
}

#[test]
fn damage_inside_a_sealed_segment_fails_the_open_naming_file_and_offset() {
    let template = tempfile::tempdir().unwrap();
    let mut j = Journal::open(config(template.path(), Fsync::Burst, 4 << 10)).unwrap();
    for n in 1..=60 {
        txn(&mut j, n, 2);
    }
    drop(j);
    let files = segment_files(template.path());
    assert!(files.len() >= 3);
    let name = files[1].file_name().unwrap();
    // The third record of segment 1: skip the header and two records.
    let bytes = fs::read(&files[1]).unwrap();
    let mut record = format::SEGMENT_HEADER_LEN as u64;
    for _ in 0..2 {
        let format::Parsed::Record(h) = format::parse(&bytes[record as usize..]) else {
            panic!("record expected")
        };
        record += h.record_len() as u64;
    }
    for (at, offset) in [(record + 50, record), (record + 2, record), (5, 0)] {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(template.path(), dir.path());
        let path = dir.path().join(name);
        flip(&path, at);
        let err = Journal::open(config(dir.path(), Fsync::Burst, 4 << 10))
            .err()
            .expect("corrupt");
        match &err {
            JournalError::Corrupt {
                path: p, offset: o, ..
            } => {
                assert_eq!((p, *o), (&path, offset), "flip at {at}")
            }
            other => panic!("flip at {at}: {other}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("offset {offset}")), "{msg}");
    }
}

#[test]
fn a_segment_with_a_torn_header_is_removed_and_a_missing_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Fsync::Burst, 4 << 10);
    let mut j = Journal::open(cfg.clone()).unwrap();
    for n in 1..=40 {
        txn(&mut j, n, 2);
    }
    drop(j);
    let files = segment_files(dir.path());
    let next = dir.path().join(format!("{:016X}.seg", files.len()));
    fs::write(&next, b"WALCA").unwrap();
    fs::write(dir.path().join("notes.txt"), b"not a segment").unwrap();
    let j = Journal::open(cfg.clone()).unwrap();
    assert!(!next.exists());
    assert_eq!(j.segments(), files.len());
    assert_eq!(read_all(&mut j.reader(Pos::ZERO).unwrap()).len(), 80);
    drop(j);

    fs::remove_file(&files[1]).unwrap();
    let err = Journal::open(cfg).err().expect("gap");
    assert!(matches!(err, JournalError::Gap { .. }), "{err}");
    assert!(err.to_string().contains(&files[1].display().to_string()));
}

#[derive(Clone, Debug)]
enum Op {
    Change,
    Commit,
    Flush,
    Reopen,
    /// Reopen after cutting this many bytes off the newest segment.
    Tear(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => Just(Op::Change),
        3 => Just(Op::Commit),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        1 => (1u16..600).prop_map(Op::Tear),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// After any history the journal reads as whole transactions, in order, and a reopen keeps
    /// every committed one unless a tear cut into it (then it keeps a prefix of them).
    #[test]
    fn random_histories_keep_whole_transactions(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), Fsync::Never, 4 << 10);
        let mut j = Journal::open(cfg.clone()).unwrap();
        // Committed transactions as (n, changes), and the open one.
        let mut committed: Vec<(u64, u32)> = Vec::new();
        let mut open: Option<(u64, u32)> = None;
        let mut next = 1u64;
        for op in ops {
            match op {
                Op::Change => {
                    let (n, k) = open.get_or_insert_with(|| { next += 1; (next - 1, 0) });
                    *k += 1;
                    change(&mut j, pos(*n, *k));
                }
                Op::Commit => {
                    let (n, k) = open.take().unwrap_or_else(|| { next += 1; (next - 1, 0) });
                    j.append_commit(commit_lsn(n), end_lsn(n)).unwrap();
                    committed.push((n, k));
                }
                Op::Flush => j.flush().unwrap(),
                Op::Reopen | Op::Tear(_) => {
                    drop(j);
                    open = None;
                    if let Op::Tear(cut) = op {
                        let newest = segment_files(dir.path()).pop().unwrap();
                        let len = fs::metadata(&newest).unwrap().len();
                        set_len(&newest, len.saturating_sub(u64::from(cut)).max(format::SEGMENT_HEADER_LEN as u64));
                    }
                    j = Journal::open(cfg.clone()).unwrap();
                    let kept = committed.iter().position(|&(n, _)| Some(commit_lsn(n)) == j.last_commit()).map_or(0, |i| i + 1);
                    if matches!(op, Op::Reopen) {
                        prop_assert_eq!(kept, committed.len());
                    }
                    committed.truncate(kept);
                    prop_assert_eq!(j.durable(), committed.last().map_or(Lsn(0), |&(n, _)| end_lsn(n)));
                }
            }
        }
        j.flush().unwrap();
        let want: Vec<Pos> = committed
            .iter()
            .flat_map(|&(n, k)| (1..=k).map(move |o| pos(n, o)))
            .chain(open.iter().flat_map(|&(n, k)| (1..=k).map(move |o| pos(n, o))))
            .collect();
        prop_assert_eq!(read_all(&mut j.reader(Pos::ZERO).unwrap()), want);
    }
}
