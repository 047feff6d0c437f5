//! Journal record parsing and crash repair: `Journal::open` of a written journal after random
//! damage at random offsets (byte flips, zeroed runs, a cut of the newest segment, garbage
//! appended to it), checked against what repair promises.
//!
//! The journal (transactions of 0 to 4 changes of 10 to 600 bytes, gaps, a change bigger than a
//! segment) is written and synced once per process, in 4 KiB or 64 KiB segments; every record
//! in it is synced. The input picks the journal and the damage. Checks, with `first` the first
//! record (in position order) with a changed byte, cut short or behind a damaged header:
//! - damage in an older (sealed) segment fails the open with `Corrupt` at that record's offset
//!   (0 for the header);
//! - damage in the newest segment that an intact record follows fails it with `Damaged` at
//!   that offset: repair never deletes synced records, and refusing changes no file;
//! - otherwise (a torn tail: nothing intact after the damage) the open succeeds and reads back
//!   exactly the records before `first`, up to the last transaction boundary (a commit marker
//!   or a gap), payloads and positions unchanged; the repaired journal then takes a new
//!   transaction and reopens with it.
//! No damage at all reads back everything.

#![no_main]

use std::fs;
use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use walcast::journal::{Fsync, Journal, JournalConfig, JournalError, RecordKind};
use walcast::vocab::{Lsn, Pos};

const SEGMENT_HEADER: usize = 32;
const RECORD_HEADER: usize = 37;
const KIND_COMMIT: u8 = 2;
const KIND_GAP: u8 = 3;

/// A record of the written journal, as the format describes it.
#[derive(Clone, Debug)]
struct Rec {
    seg: usize,
    offset: usize,
    len: usize,
    kind: u8,
    pos: Pos,
}

struct Base {
    segment_bytes: u64,
    /// File name and bytes of each segment, oldest first.
    files: Vec<(String, Vec<u8>)>,
    records: Vec<Rec>,
}

fn scratch_root() -> &'static Path {
    // tmpfs when there is one: every open syncs, and an fsync there costs nothing.
    static ROOT: OnceLock<std::path::PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        }
    })
}

fn payload(n: u64, ordinal: u32, len: usize) -> Vec<u8> {
    let mut p = format!(r#"{{"action":"I","n":{n},"o":{ordinal},"pad":""#).into_bytes();
    while p.len() + 2 < len {
        p.push(b'a' + ((n as usize + p.len()) % 26) as u8);
    }
    p.extend_from_slice(b"\"}");
    p
}

/// Writes the journal for `segment_bytes` and reads its files and records back.
fn build(segment_bytes: u64) -> Base {
    let dir = tempfile::tempdir_in(scratch_root()).expect("scratch dir");
    let cfg = JournalConfig {
        fsync: Fsync::Burst,
        segment_bytes,
        ..JournalConfig::new(dir.path())
    };
    let mut j = Journal::open(cfg).expect("open");
    let mut seed = segment_bytes;
    let mut rand = move |m: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % m
    };
    for n in 1..=120u64 {
        let commit = Lsn(n << 12);
        if n % 17 == 0 {
            j.append_gap(br#"{"type":"gap","message":"fuzz"}"#)
                .expect("gap");
        }
        let changes = rand(5) as u32;
        for o in 1..=changes {
            let len = if n == 60 && o == 1 {
                9000
            } else {
                10 + rand(590) as usize
            };
            j.append_change(Pos::new(commit, o), Lsn(commit.0 - 64), &payload(n, o, len))
                .expect("change");
        }
        j.append_commit(commit, Lsn(commit.0 + 8)).expect("commit");
        if n % 7 == 0 {
            j.flush().expect("flush");
        }
    }
    j.flush().expect("flush");
    drop(j);
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().into_string().expect("name"))
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    let files: Vec<(String, Vec<u8>)> = names
        .into_iter()
        .map(|n| {
            let bytes = fs::read(dir.path().join(&n)).expect("read");
            (n, bytes)
        })
        .collect();
    let mut records = Vec::new();
    for (seg, (_, bytes)) in files.iter().enumerate() {
        let mut at = SEGMENT_HEADER;
        while at + RECORD_HEADER <= bytes.len() {
            let len = u32_at(bytes, at) as usize;
            let commit = u64_at(bytes, at + 9);
            let ordinal = u32_at(bytes, at + 17);
            records.push(Rec {
                seg,
                offset: at,
                len: RECORD_HEADER + len,
                kind: bytes[at + 8],
                pos: Pos::new(Lsn(commit), ordinal),
            });
            at += RECORD_HEADER + len;
        }
        assert_eq!(at, bytes.len(), "the written segment parses whole");
    }
    assert!(files.len() > 1 || segment_bytes > 4096);
    Base {
        segment_bytes,
        files,
        records,
    }
}

fn bases() -> &'static [Base] {
    static BASES: OnceLock<Vec<Base>> = OnceLock::new();
    BASES.get_or_init(|| vec![build(4096), build(64 << 10)])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// What the input does to the files.
struct Damaged {
    files: Vec<Vec<u8>>,
}

fn damage(base: &Base, ops: &[u8]) -> Damaged {
    let mut files: Vec<Vec<u8>> = base.files.iter().map(|(_, b)| b.clone()).collect();
    let total: usize = files.iter().map(Vec::len).sum();
    let newest = files.len() - 1;
    let mut cut = false;
    for op in ops.chunks_exact(6).take(8) {
        let target = u32::from_le_bytes([op[1], op[2], op[3], op[4]]) as usize;
        let value = op[5];
        // Where `target` falls in the files laid end to end.
        let (mut seg, mut at) = (0, target % total);
        while at >= files[seg].len() && seg < newest {
            at -= files[seg].len();
            seg += 1;
        }
        match op[0] % 8 {
            0..=3 => {
                if at < files[seg].len() {
                    files[seg][at] ^= value;
                }
            }
            4 => {
                let end = (at + usize::from(value % 64) + 1).min(files[seg].len());
                for b in &mut files[seg][at.min(end)..end] {
                    *b = 0;
                }
            }
            5 if !cut => {
                // A tear: the newest segment cut short.
                cut = true;
                let len = files[newest].len();
                files[newest].truncate(target % (len + 1));
            }
            5 => {}
            _ => {
                // Garbage written past the end of the newest segment.
                let garbage: Vec<u8> = (0..usize::from(value))
                    .map(|i| (target >> (8 * (i % 4))) as u8 ^ i as u8)
                    .collect();
                files[newest].extend_from_slice(&garbage);
            }
        }
    }
    Damaged { files }
}

/// Whether record `r` is still whole and unchanged in `files`.
fn intact(base: &Base, files: &[Vec<u8>], r: &Rec) -> bool {
    let old = &base.files[r.seg].1[r.offset..r.offset + r.len];
    files[r.seg].get(r.offset..r.offset + r.len) == Some(old)
}

fn header_intact(base: &Base, files: &[Vec<u8>], seg: usize) -> bool {
    files[seg].get(..SEGMENT_HEADER) == Some(&base.files[seg].1[..SEGMENT_HEADER])
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, ops)) = data.split_first() else {
        return;
    };
    let bases = bases();
    let base = &bases[usize::from(pick) % bases.len()];
    let Damaged { files } = damage(base, ops);
    let newest = files.len() - 1;

    // The first damage in scan order: a damaged header (its segment's offset 0) or the first
    // record that is not intact.
    let mut first: Option<(usize, usize, usize)> = None; // (seg, offset, record index)
    for seg in 0..files.len() {
        if !header_intact(base, &files, seg) {
            let index = base
                .records
                .iter()
                .position(|r| r.seg >= seg)
                .unwrap_or(base.records.len());
            first = Some((seg, 0, index));
            break;
        }
        if let Some(i) = base
            .records
            .iter()
            .position(|r| r.seg == seg && !intact(base, &files, r))
        {
            first = Some((seg, base.records[i].offset, i));
            break;
        }
    }

    let dir = tempfile::tempdir_in(scratch_root()).expect("scratch dir");
    for ((name, _), bytes) in base.files.iter().zip(&files) {
        fs::write(dir.path().join(name), bytes).expect("write");
    }
    let cfg = JournalConfig {
        fsync: Fsync::Burst,
        segment_bytes: base.segment_bytes,
        ..JournalConfig::new(dir.path())
    };
    let opened = Journal::open(cfg.clone());

    let keep_upto = match first {
        Some((seg, offset, _)) if seg < newest => {
            match opened {
                Err(JournalError::Corrupt { offset: o, .. }) if o == offset as u64 => {}
                Err(other) => panic!("damage in sealed segment {seg} at {offset}: {other}"),
                Ok(_) => panic!("damage in sealed segment {seg} at {offset} was repaired"),
            }
            return;
        }
        Some((seg, offset, index)) => {
            let intact_after = base.records[index..]
                .iter()
                .any(|r| r.seg == seg && intact(base, &files, r))
                && (offset != 0 || files[seg].len() > SEGMENT_HEADER);
            if intact_after {
                match opened {
                    Err(JournalError::Damaged { offset: o, .. }) if o == offset as u64 => {}
                    Err(other) => panic!("damage at {offset} of the newest segment: {other}"),
                    Ok(_) => panic!(
                        "damage at {offset} of the newest segment was cut though intact records follow"
                    ),
                }
                // Refusing changed nothing on disk.
                for ((name, _), bytes) in base.files.iter().zip(&files) {
                    assert!(
                        fs::read(dir.path().join(name)).expect("read") == *bytes,
                        "{name} changed"
                    );
                }
                return;
            }
            index
        }
        None => base.records.len(),
    };

    // A torn tail: repaired, keeping every record before the damage up to the last boundary.
    let mut j = match opened {
        Ok(j) => j,
        Err(e) => panic!("a torn tail (first damage {first:?}) was refused: {e}"),
    };
    let boundary = base.records[..keep_upto]
        .iter()
        .rposition(|r| r.kind == KIND_COMMIT || r.kind == KIND_GAP)
        .map_or(0, |i| i + 1);
    let want: Vec<&Rec> = base.records[..boundary]
        .iter()
        .filter(|r| r.kind != KIND_COMMIT)
        .collect();
    let mut reader = j.reader(Pos::ZERO).expect("reader");
    let mut got = 0;
    while let Some(rec) = reader.next().expect("read") {
        let w = want
            .get(got)
            .unwrap_or_else(|| panic!("extra record {:?}", rec.pos));
        assert_eq!(rec.pos, w.pos);
        let kind = if w.kind == KIND_GAP {
            RecordKind::Gap
        } else {
            RecordKind::Change
        };
        assert_eq!(rec.kind, kind, "at {:?}", w.pos);
        let old = &base.files[w.seg].1[w.offset + RECORD_HEADER..w.offset + w.len];
        assert!(rec.payload == old, "payload of {:?}", w.pos);
        got += 1;
    }
    assert_eq!(
        got,
        want.len(),
        "records read back (first damage {first:?})"
    );
    let last_commit = base.records[..boundary]
        .iter()
        .rev()
        .find(|r| r.kind == KIND_COMMIT || r.kind == KIND_GAP)
        .map(|r| r.pos.commit);
    assert_eq!(j.last_commit(), last_commit);

    // The repaired journal goes on.
    let commit = Lsn(1 << 40);
    j.append_change(Pos::new(commit, 1), Lsn(1), b"{}")
        .expect("append after repair");
    j.append_commit(commit, Lsn(commit.0 + 8))
        .expect("commit after repair");
    j.flush().expect("flush after repair");
    drop(j);
    let j = Journal::open(cfg).expect("reopen after repair");
    assert_eq!(j.last_commit(), Some(commit));
    let mut reader = j.reader(Pos::ZERO).expect("reader");
    let mut n = 0;
    while reader.next().expect("read").is_some() {
        n += 1;
    }
    assert_eq!(n, want.len() + 1);
});
