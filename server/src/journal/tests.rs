//! Journal behaviour through its public API: appends, readers from every kind of position,
//! concurrent reading, roll-over, reopen, the directory lock and `durable` per fsync policy.
//! Crash repair is in `tests_recovery.rs`, retention in `tests_trim.rs`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::vocab::Lsn;

pub(super) fn config(dir: &Path, fsync: Fsync, segment_bytes: u64) -> JournalConfig {
    JournalConfig {
        fsync,
        segment_bytes,
        ..JournalConfig::new(dir)
    }
}

pub(super) fn pos(commit: u64, ordinal: u32) -> Pos {
    Pos::new(commit_lsn(commit), ordinal)
}

/// Transaction `n`'s commit LSN; its end is 8 bytes further.
pub(super) fn commit_lsn(n: u64) -> Lsn {
    Lsn(n << 8)
}

pub(super) fn end_lsn(n: u64) -> Lsn {
    Lsn((n << 8) + 8)
}

/// A payload that names its position, of a length that varies with it (40 to ~240 bytes).
pub(super) fn payload(p: Pos) -> Vec<u8> {
    let pad = (p.commit.0 >> 8) as usize * 7 + p.ordinal as usize * 13;
    format!(r#"{{"pos":"{p}","pad":"{}"}}"#, "x".repeat(pad % 200)).into_bytes()
}

/// Appends one change at `p`, with the payload and `wal_start` that `read_all` checks.
pub(super) fn change(j: &mut Journal, p: Pos) {
    j.append_change(p, Lsn(p.commit.0 - 64 + u64::from(p.ordinal)), &payload(p))
        .unwrap();
}

/// Appends transaction `n` with `changes` changes and its commit marker.
pub(super) fn txn(j: &mut Journal, n: u64, changes: u32) -> Vec<Pos> {
    let ps: Vec<Pos> = (1..=changes).map(|o| pos(n, o)).collect();
    for &p in &ps {
        change(j, p);
    }
    j.append_commit(commit_lsn(n), end_lsn(n)).unwrap();
    ps
}

/// Reads to the current end, checking payloads and `wal_start`.
pub(super) fn read_all(r: &mut JournalReader) -> Vec<Pos> {
    let mut out = Vec::new();
    while let Some(rec) = r.next().unwrap() {
        assert_eq!(rec.payload, &payload(rec.pos)[..], "payload of {}", rec.pos);
        assert_eq!(
            rec.wal_start,
            Lsn(rec.pos.commit.0 - 64 + u64::from(rec.pos.ordinal))
        );
        out.push(rec.pos);
    }
    out
}

pub(super) fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

#[test]
fn round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(config(dir.path(), Fsync::Burst, 1 << 20)).unwrap();
    assert_eq!(
        (j.last_commit(), j.last_pos(), j.oldest()),
        (None, None, None)
    );
    let mut all = txn(&mut j, 1, 2);
    all.extend(txn(&mut j, 2, 1));
    all.extend(txn(&mut j, 3, 3));
    let mut r = j.reader(Pos::ZERO).unwrap();
    assert!(
        read_all(&mut r).is_empty(),
        "nothing is visible before a write"
    );
    j.flush().unwrap();
    assert_eq!(read_all(&mut r), all);
    assert_eq!(r.position(), pos(3, 3));
    assert_eq!(j.last_commit(), Some(commit_lsn(3)));
    assert_eq!(j.last_pos(), Some(pos(3, 3)));
    assert_eq!(j.oldest(), Some(pos(1, 1)));
    assert_eq!(j.segments(), 1);
    assert_eq!(
        j.bytes(),
        std::fs::metadata(&segment_files(dir.path())[0])
            .unwrap()
            .len()
    );
}

#[test]
fn reader_starts_right_after_any_position() {
    // Small segments (many segments, no index entry past the first) and big ones (one segment,
    // a sparse index with several entries).
    for segment_bytes in [4 << 10, 1 << 20] {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(config(dir.path(), Fsync::Never, segment_bytes)).unwrap();
        let mut all = Vec::new();
        for n in 1..=3000u64 {
            all.extend(txn(&mut j, n, (n % 4) as u32));
        }
        j.flush().unwrap();
        if segment_bytes == 1 << 20 {
            let view = j.shared.view.read();
            assert!(view.segments[0].index.len() > 3, "the index has entries");
        } else {
            assert!(j.segments() > 10);
        }
        let check = |after: Pos| {
            let mut r = j.reader(after).unwrap();
            let got = read_all(&mut r);
            let want: Vec<Pos> = all.iter().copied().filter(|&p| p > after).collect();
            assert_eq!(got.len(), want.len(), "after {after}");
            assert_eq!(got.first(), want.first(), "after {after}");
            assert_eq!(got.last(), want.last(), "after {after}");
        };
        check(Pos::ZERO);
        for &p in all.iter().step_by(23).chain(all.last()) {
            check(p);
            // Between two records: past the last ordinal of a transaction, and between commits.
            check(Pos::new(p.commit, p.ordinal + 10));
            check(Pos::new(Lsn(p.commit.0 + 1), 0));
            check(Pos::new(Lsn(p.commit.0 - 1), u32::MAX));
        }
        // After the end: nothing now, then only what follows the position.
        let beyond = pos(3100, 2);
        let mut r = j.reader(beyond).unwrap();
        assert!(r.next().unwrap().is_none());
        txn(&mut j, 3100, 3);
        txn(&mut j, 3101, 1);
        j.flush().unwrap();
        assert_eq!(read_all(&mut r), vec![pos(3100, 3), pos(3101, 1)]);
        let mut r = j.reader(*all.last().unwrap()).unwrap();
        assert_eq!(read_all(&mut r).len(), 4);
    }
}

#[test]
fn reader_follows_a_concurrent_writer_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(config(dir.path(), Fsync::Never, 8 << 10)).unwrap();
    let mut r = j.reader(Pos::ZERO).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let reader = std::thread::spawn({
        let done = Arc::clone(&done);
        move || {
            let mut got = Vec::new();
            let mut idle_since = Instant::now();
            loop {
                let before = got.len();
                // Checked before reading, so the last read after `done` sees everything.
                let finished = done.load(Ordering::Acquire);
                got.extend(read_all(&mut r));
                if finished {
                    return got;
                }
                if got.len() == before {
                    assert!(
                        idle_since.elapsed() < Duration::from_secs(30),
                        "reader stuck"
                    );
                    std::thread::yield_now();
                } else {
                    idle_since = Instant::now();
                }
            }
        }
    });
    let mut all = Vec::new();
    for n in 1..=3000u64 {
        all.extend(txn(&mut j, n, 1 + (n % 3) as u32));
        if n % 5 == 0 {
            j.flush().unwrap();
        }
    }
    j.flush().unwrap();
    done.store(true, Ordering::Release);
    let got = reader.join().unwrap();
    assert!(j.segments() > 20);
    assert_eq!(got, all);
}

#[test]
fn segments_roll_over_at_segment_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let segment_bytes = 4 << 10;
    let mut j = Journal::open(config(dir.path(), Fsync::Burst, segment_bytes)).unwrap();
    let mut all = Vec::new();
    for n in 1..=200 {
        all.extend(txn(&mut j, n, 2));
    }
    j.flush().unwrap();
    let files = segment_files(dir.path());
    assert_eq!(files.len(), j.segments());
    assert!(files.len() > 5);
    for (i, f) in files.iter().enumerate() {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, format!("{i:016X}.seg"));
        let len = std::fs::metadata(f).unwrap().len();
        if i + 1 < files.len() {
            // Sealed at the first record that finds it full: at most one record past the size.
            assert!(
                len >= segment_bytes && len < segment_bytes + 300,
                "{name}: {len}"
            );
        }
    }
    assert_eq!(
        j.bytes(),
        files
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum::<u64>()
    );
    assert_eq!(read_all(&mut j.reader(Pos::ZERO).unwrap()), all);
}

#[test]
fn reopen_after_a_clean_close_continues() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Fsync::Burst, 4 << 10);
    let mut all = Vec::new();
    {
        let mut j = Journal::open(cfg.clone()).unwrap();
        for n in 1..=50 {
            all.extend(txn(&mut j, n, 3));
        }
        txn(&mut j, 51, 0);
        j.flush().unwrap();
    }
    let mut j = Journal::open(cfg.clone()).unwrap();
    assert_eq!(j.last_commit(), Some(commit_lsn(51)));
    assert_eq!(j.last_pos(), Some(pos(50, 3)));
    assert_eq!(j.durable(), end_lsn(51));
    for n in 52..=60 {
        all.extend(txn(&mut j, n, 2));
    }
    drop(j);
    let j = Journal::open(cfg).unwrap();
    assert_eq!(j.durable(), end_lsn(60));
    assert_eq!(read_all(&mut j.reader(Pos::ZERO).unwrap()), all);
}

#[test]
fn a_second_open_of_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Fsync::Burst, 4 << 10);
    let j = Journal::open(cfg.clone()).unwrap();
    let err = Journal::open(cfg.clone()).err().expect("locked");
    assert!(matches!(err, JournalError::Locked { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    assert!(msg.contains("choose another journal.dir"), "{msg}");
    drop(j);
    Journal::open(cfg).unwrap();
}

#[test]
fn durable_follows_the_fsync_policy() {
    let big = vec![b'x'; 200 << 10];
    for fsync in [Fsync::Always, Fsync::Burst, Fsync::Never] {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(config(dir.path(), fsync, 64 << 20)).unwrap();
        assert_eq!(j.durable(), Lsn(0));
        j.append_change(pos(1, 1), Lsn(1), b"{}").unwrap();
        assert_eq!(j.durable(), Lsn(0), "{fsync:?}: no commit yet");
        j.append_commit(commit_lsn(1), end_lsn(1)).unwrap();
        let after_commit = if fsync == Fsync::Always {
            end_lsn(1)
        } else {
            Lsn(0)
        };
        assert_eq!(
            j.durable(),
            after_commit,
            "{fsync:?}: after the commit marker"
        );
        // A transaction bigger than the write buffer spills it (and transaction 1's marker) to
        // the file before any flush: written, but not synced.
        for o in 1..=6 {
            j.append_change(pos(2, o), Lsn(2), &big).unwrap();
        }
        let after_spill = if fsync == Fsync::Burst {
            Lsn(0)
        } else {
            end_lsn(1)
        };
        assert_eq!(j.durable(), after_spill, "{fsync:?}: after a spill");
        j.append_commit(commit_lsn(2), end_lsn(2)).unwrap();
        j.flush().unwrap();
        assert_eq!(j.durable(), end_lsn(2), "{fsync:?}: after flush");
        assert_eq!(read_all_len(&mut j.reader(Pos::ZERO).unwrap()), 7);
    }
}

#[test]
fn a_commit_marker_that_spills_the_buffer_is_not_durable_before_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(config(dir.path(), Fsync::Never, 64 << 20)).unwrap();
    // The change leaves less room in the buffer than a marker needs.
    let payload = vec![b'x'; writer::WRITE_BUF - format::RECORD_HEADER_LEN - 10];
    j.append_change(pos(1, 1), Lsn(1), &payload).unwrap();
    j.append_commit(commit_lsn(1), end_lsn(1)).unwrap();
    assert_eq!(j.durable(), Lsn(0), "the marker is still buffered");
    j.flush().unwrap();
    assert_eq!(j.durable(), end_lsn(1));
}

fn read_all_len(r: &mut JournalReader) -> usize {
    let mut n = 0;
    while r.next().unwrap().is_some() {
        n += 1;
    }
    n
}

#[test]
fn appends_out_of_order_are_refused_and_stop_the_journal() {
    // Each refusal on a journal of its own: a refusal means a change is missing, so the journal
    // takes nothing more (tests_integrity.rs).
    type Step = fn(&mut Journal) -> Result<(), JournalError>;
    let cases: [(bool, Step); 6] = [
        (false, |j| j.append_change(pos(5, 3), Lsn(1), b"{}")),
        (false, |j| j.append_change(pos(4, 1), Lsn(1), b"{}")),
        (false, |j| j.append_commit(commit_lsn(5), end_lsn(5))),
        (true, |j| j.append_change(pos(6, 1), Lsn(1), b"{}")),
        (true, |j| j.append_change(pos(7, 1), Lsn(1), b"{}")),
        (true, |j| j.append_commit(commit_lsn(7), end_lsn(7))),
    ];
    for (i, (open_6, step)) in cases.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(config(dir.path(), Fsync::Never, 4 << 10)).unwrap();
        txn(&mut j, 5, 2);
        if open_6 {
            j.append_change(pos(6, 1), Lsn(1), b"{}").unwrap();
        }
        let r = step(&mut j);
        assert!(
            matches!(r, Err(JournalError::OutOfOrder { .. })),
            "case {i}: {r:?}"
        );
        assert!(j.is_halted(), "case {i}");
        let next = j.append_change(pos(8, 1), Lsn(1), b"{}");
        assert!(
            matches!(next, Err(JournalError::Halted)),
            "case {i}: {next:?}"
        );
    }
    // In order, with gaps in the ordinals: taken.
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(config(dir.path(), Fsync::Never, 4 << 10)).unwrap();
    txn(&mut j, 5, 2);
    j.append_change(pos(6, 1), Lsn(1), b"{}").unwrap();
    j.append_change(pos(6, 3), Lsn(1), b"{}").unwrap();
    j.append_commit(commit_lsn(6), end_lsn(6)).unwrap();
    assert_eq!(j.last_pos(), Some(pos(6, 3)));
}

#[test]
fn payloads_can_be_modified_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(config(dir.path(), Fsync::Never, 4 << 10)).unwrap();
    txn(&mut j, 1, 1);
    j.flush().unwrap();
    let mut r = j.reader(Pos::ZERO).unwrap();
    let rec = r.next().unwrap().unwrap();
    rec.payload[0] = b'[';
    // Only the reader's copy: another reader sees the journal's bytes.
    assert_eq!(read_all(&mut j.reader(Pos::ZERO).unwrap()), vec![pos(1, 1)]);
}

#[test]
fn the_writer_and_readers_can_move_to_other_threads() {
    fn send<T: Send>() {}
    send::<Journal>();
    send::<JournalReader>();
}

#[test]
fn transactions_without_changes_still_roll_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), Fsync::Burst, 4 << 10);
    let mut j = Journal::open(cfg.clone()).unwrap();
    txn(&mut j, 1, 2);
    for n in 2..=1000 {
        txn(&mut j, n, 0);
    }
    j.flush().unwrap();
    assert!(j.segments() > 5, "{} segments", j.segments());
    assert_eq!(j.durable(), end_lsn(1000));
    drop(j);
    let j = Journal::open(cfg).unwrap();
    assert_eq!(j.last_commit(), Some(commit_lsn(1000)));
    assert_eq!(j.last_pos(), Some(pos(1, 2)));
    assert_eq!(
        read_all(&mut j.reader(Pos::ZERO).unwrap()),
        vec![pos(1, 1), pos(1, 2)]
    );
    assert!(read_all(&mut j.reader(pos(1, 2)).unwrap()).is_empty());
}
