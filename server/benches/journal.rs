//! Journal throughput: appends per fsync policy (bursts of transactions of 10 changes, a
//! typical 363-byte wal2json insert each, then `flush`), and a catch-up reader reading 200,000
//! changes. The files live in a temporary directory on the machine's disk, so `Always` and
//! `Burst` measure its real fsync. Run: `cargo bench -p walcast --bench journal`.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use walcast::journal::{Fsync, Journal, JournalConfig};
use walcast::vocab::{Lsn, Pos};

const CHANGES_PER_TXN: u32 = 10;

/// A wal2json format-version 2 insert, padded to 363 bytes.
fn payload() -> Vec<u8> {
    let mut p = br#"{"action":"I","xid":725,"timestamp":"2026-11-21 22:47:36.714581+00","lsn":"0/1526A58","schema":"public","table":"people","columns":[{"name":"id","type":"integer","value":42},{"name":"name","type":"text","value":"Paul"},{"name":"age","type":"integer","value":51},{"name":"city","type":"text","value":"Lyon"},{"name":"note","type":"text","value":""#.to_vec();
    let tail = br#""}]}"#;
    p.resize(363 - tail.len(), b'x');
    p.extend_from_slice(tail);
    assert_eq!(p.len(), 363);
    p
}

fn config(dir: &std::path::Path, fsync: Fsync) -> JournalConfig {
    JournalConfig {
        fsync,
        max_bytes: Some(512 << 20),
        ..JournalConfig::new(dir)
    }
}

/// Appends `txns` transactions after `commit` and returns the new last commit.
fn append_txns(j: &mut Journal, mut commit: u64, txns: u64, payload: &[u8]) -> u64 {
    for _ in 0..txns {
        commit += 1;
        let c = Lsn(commit << 16);
        for o in 1..=CHANGES_PER_TXN {
            j.append_change(Pos::new(c, o), Lsn(c.0 - 100 + u64::from(o)), payload)
                .expect("append");
        }
        j.append_commit(c, Lsn(c.0 + 1)).expect("commit");
    }
    commit
}

fn append(c: &mut Criterion) {
    let payload = payload();
    let mut g = c.benchmark_group("journal_append");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    // Bursts: 100 transactions (1,000 changes) per flush; with Always every transaction is
    // synced, so its bursts are kept small to bound the run.
    for (name, fsync, txns) in [
        ("never", Fsync::Never, 100),
        ("burst", Fsync::Burst, 100),
        ("always", Fsync::Always, 10),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut j = Journal::open(config(dir.path(), fsync)).expect("open");
        let mut commit = 0;
        g.throughput(Throughput::Elements(txns * u64::from(CHANGES_PER_TXN)));
        g.bench_function(name, |b| {
            b.iter(|| {
                commit = append_txns(&mut j, commit, txns, &payload);
                j.flush().expect("flush");
                j.trim(SystemTime::now(), None).expect("trim");
            })
        });
    }
    g.finish();
}

fn read(c: &mut Criterion) {
    const TXNS: u64 = 20_000;
    let payload = payload();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut j = Journal::open(config(dir.path(), Fsync::Never)).expect("open");
    append_txns(&mut j, 0, TXNS, &payload);
    j.flush().expect("flush");
    let mut g = c.benchmark_group("journal_read");
    g.sample_size(10);
    g.throughput(Throughput::Elements(TXNS * u64::from(CHANGES_PER_TXN)));
    g.bench_function("from_zero", |b| {
        b.iter(|| {
            let mut r = j.reader(Pos::ZERO).expect("reader");
            let mut n = 0u64;
            while let Some(rec) = r.next().expect("next") {
                n += black_box(rec.payload.len()) as u64;
            }
            assert_eq!(n, TXNS * u64::from(CHANGES_PER_TXN) * 363);
        })
    });
    g.finish();
}

criterion_group!(benches, append, read);
criterion_main!(benches);
