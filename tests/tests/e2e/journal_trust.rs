//! The journal vouches only for what it holds: it belongs to one cluster, database and slot and
//! refuses another (exit 2, naming both and the fix), and a slot walcast had to create; repair
//! refuses damage that valid records follow (naming file and offset) instead of deleting them;
//! a change it cannot take stops slot confirmation (Postgres resends it after a restart); a
//! change bigger than a segment is journaled and replayed; a temporary slot's `gap` is replayed
//! from the journal at its position; a journal started fresh against a slot that had moved on
//! refuses positions from before it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use walcast_tests::{Frame, JournalDir, PgCluster, TestDb, Walcast, WsClient, STEP};

/// The next change frame: (id, pos, the frame).
async fn next_change(c: &mut WsClient) -> Result<(i64, String, Value)> {
    match c.next_frame(STEP).await? {
        Frame::Json(v, _) if v["type"] == "change" => {
            let id = v["new"]["id"].as_i64().context("id")?;
            let pos = v["pos"].as_str().context("pos")?.to_owned();
            Ok((id, pos, v))
        }
        other => bail!("expected a change frame, got {other:?}"),
    }
}

async fn expect_ids(c: &mut WsClient, ids: &[i64], what: &str) -> Result<Vec<String>> {
    let mut positions = Vec::new();
    for &want in ids {
        let (id, pos, _) = next_change(c)
            .await
            .with_context(|| format!("{what}: waiting for id {want}"))?;
        ensure!(id == want, "{what}: expected id {want}, got {id}");
        positions.push(pos);
    }
    Ok(positions)
}

/// SIGTERM and wait for a clean exit (the final status update confirms what the journal holds).
async fn stop(mut server: Walcast) -> Result<()> {
    server.terminate()?;
    let status = server.wait_exit(Duration::from_secs(30)).await?;
    ensure!(
        status.success(),
        "walcast exit status after SIGTERM: {status}"
    );
    Ok(())
}

/// A start that must fail: the exit status and stderr as the harness reports them.
async fn refused(builder: walcast_tests::WalcastBuilder) -> Result<String> {
    match builder.start().await {
        Ok(_) => bail!("walcast started"),
        Err(e) => Ok(format!("{e:#}")),
    }
}

async fn slot_exists(db: &TestDb<'_>) -> Result<bool> {
    let row = db
        .client()
        .query_one(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
            &[&db.slot()],
        )
        .await?;
    Ok(row.get::<_, i64>(0) == 1)
}

/// A table, a walcast on `journal`, one row journaled: the journal holds changes of `db`.
async fn journaled_once(db: &TestDb<'_>, journal: &JournalDir) -> Result<()> {
    db.exec("CREATE TABLE items (id int primary key, v text NOT NULL DEFAULT 'x')")
        .await?;
    let server = Walcast::builder(db)
        .env("WALCAST_JOURNAL_DIR", journal.path())
        .start()
        .await?;
    let (mut c, _) = WsClient::subscribe(&server, &[("query", "insert:items")]).await?;
    db.exec("INSERT INTO items (id) VALUES (1)").await?;
    expect_ids(&mut c, &[1], "first run").await?;
    // Sessions are woken before the journal is written: wait until the slot is confirmed past
    // the insert, which walcast does only once the journal holds it.
    db.slot_confirmed_to_now(Duration::from_secs(30)).await?;
    stop(server).await
}

#[tokio::test]
async fn a_journal_of_another_database_is_refused_naming_both() -> Result<()> {
    let cluster = PgCluster::shared();
    let a = TestDb::new(cluster, "ident_a").await?;
    let b = TestDb::new(cluster, "ident_b").await?;
    let journal = JournalDir::new("ident")?;
    journaled_once(&a, &journal).await?;
    let identity = std::fs::read_to_string(Path::new(journal.path()).join("identity.json"))?;
    ensure!(
        identity.contains(a.name()) && identity.contains(a.slot()),
        "identity.json names the first database and slot: {identity}"
    );

    // The same folder for another database: refused before anything streams.
    b.exec("CREATE TABLE items (id int primary key)").await?;
    let err = refused(Walcast::builder(&b).env("WALCAST_JOURNAL_DIR", journal.path())).await?;
    ensure!(err.contains("exit status: 2"), "exit code 2: {err}");
    for named in [a.name(), b.name(), a.slot(), b.slot(), journal.path()] {
        ensure!(err.contains(named), "the refusal names {named}: {err}");
    }
    ensure!(err.contains("WALCAST_JOURNAL_DIR"), "the fix: {err}");
    ensure!(
        !slot_exists(&b).await?,
        "the slot created for the refused start is dropped again"
    );

    // A journal written before identity.json existed is adopted, with a warning.
    std::fs::remove_file(Path::new(journal.path()).join("identity.json"))?;
    let server = Walcast::builder(&a)
        .env("WALCAST_JOURNAL_DIR", journal.path())
        .start()
        .await?;
    ensure!(
        server.stderr_tail(200).contains("adopted"),
        "the adoption is logged: {}",
        server.stderr_tail(40)
    );
    let (mut c, _) = WsClient::subscribe(&server, &[("query", "insert:items")]).await?;
    a.exec("INSERT INTO items (id) VALUES (2)").await?;
    expect_ids(&mut c, &[2], "after the adoption").await?;
    stop(server).await?;
    ensure!(Path::new(journal.path()).join("identity.json").exists());
    Ok(())
}

#[tokio::test]
async fn a_position_from_before_a_fresh_journal_is_expired_not_a_silent_gap() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "fresh_journal").await?;
    db.exec("CREATE TABLE items (id int primary key, v text NOT NULL DEFAULT 'x')")
        .await?;
    let old = JournalDir::new("fresh_old")?;
    let server = Walcast::builder(&db)
        .env("WALCAST_JOURNAL_DIR", old.path())
        .start()
        .await?;
    let (mut c, _) = WsClient::subscribe(&server, &[("query", "insert:items")]).await?;
    db.exec("INSERT INTO items (id) VALUES (1)").await?;
    db.exec("INSERT INTO items (id) VALUES (2)").await?;
    let seen = expect_ids(&mut c, &[1, 2], "first journal").await?;
    stop(server).await?;

    // The journal directory is replaced (emptied, or another folder) while the slot goes on;
    // row 3 is committed meanwhile and row 4 after the start, so the server has dispatched
    // beyond row 1's position.
    db.exec("INSERT INTO items (id) VALUES (3)").await?;
    let fresh = JournalDir::new("fresh_new")?;
    let server = Walcast::builder(&db)
        .env("WALCAST_JOURNAL_DIR", fresh.path())
        .start()
        .await?;
    let (mut live, _) = WsClient::subscribe(&server, &[("query", "insert:items")]).await?;
    db.exec("INSERT INTO items (id) VALUES (4)").await?;
    let after = expect_ids(&mut live, &[4], "fresh journal").await?;
    // The slot was confirmed past row 2 at the first stop, so this journal begins with row 3:
    // resuming after row 1 from its first record would skip row 2 without a word.
    let path = format!("/ws?query=insert:items&from={}", seen[0]);
    let (status, body) = server.get(&path).await?;
    ensure!(
        status == 409 && body.contains("position_expired"),
        "a plain GET: {status} {body}"
    );
    let (status, body) = walcast_tests::http_error(
        &server,
        &[("query", "insert:items"), ("from", seen[0].as_str())],
    )
    .await?;
    ensure!(
        status == 409 && body["error"] == "position_expired",
        "the upgrade: {status} {body}"
    );
    // A position this journal holds still resumes.
    let (mut resumed, _) = WsClient::subscribe(
        &server,
        &[("query", "insert:items"), ("from", after[0].as_str())],
    )
    .await?;
    db.exec("INSERT INTO items (id) VALUES (5)").await?;
    expect_ids(&mut resumed, &[5], "resumed in the fresh journal").await?;
    stop(server).await
}

#[tokio::test]
async fn a_slot_walcast_had_to_create_cannot_continue_a_journal() -> Result<()> {
    let cluster = PgCluster::shared();
    let db = TestDb::new(cluster, "recreated").await?;
    let journal = JournalDir::new("recreated")?;
    journaled_once(&db, &journal).await?;
    db.exec(&format!("SELECT pg_drop_replication_slot('{}')", db.slot()))
        .await?;
    // Committed while there is no slot: in neither the journal nor a new slot.
    db.exec("INSERT INTO items (id) VALUES (2)").await?;
    let err = refused(Walcast::builder(&db).env("WALCAST_JOURNAL_DIR", journal.path())).await?;
    ensure!(err.contains("exit status: 2"), "exit code 2: {err}");
    ensure!(
        err.contains("had to create") && err.contains(db.slot()) && err.contains(journal.path()),
        "{err}"
    );
    ensure!(
        !slot_exists(&db).await?,
        "the slot created for the refused start is dropped again"
    );
    Ok(())
}

/// Offsets of the records of a segment file (format in docs/internals/journal-format.md).
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut at = 32;
    let mut out = Vec::new();
    while at + 37 <= bytes.len() {
        out.push(at);
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 37 + len;
    }
    out
}

fn segments(dir: &str) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "seg"));
    files.sort();
    Ok(files)
}

#[tokio::test]
async fn damage_in_the_middle_of_a_segment_is_refused_naming_file_and_offset() -> Result<()> {
    let cluster = PgCluster::shared();
    let db = TestDb::new(cluster, "damage").await?;
    db.exec("CREATE TABLE items (id int primary key, v text NOT NULL DEFAULT 'x')")
        .await?;
    let journal = JournalDir::new("damage")?;
    let start = || Walcast::builder(&db).env("WALCAST_JOURNAL_DIR", journal.path());
    let server = start().start().await?;
    let (mut c, _) = WsClient::subscribe(&server, &[("query", "insert:items")]).await?;
    for id in 1..=5 {
        db.exec(&format!("INSERT INTO items (id) VALUES ({id})"))
            .await?;
    }
    let seen = expect_ids(&mut c, &[1, 2, 3, 4, 5], "live").await?;
    stop(server).await?;

    // One byte of the second change's payload (records: change, marker, change, marker, ...).
    let segment = segments(journal.path())?.pop().context("a segment")?;
    let mut bytes = std::fs::read(&segment)?;
    let records = record_offsets(&bytes);
    ensure!(records.len() >= 10, "{} records", records.len());
    let damaged = records[2];
    bytes[damaged + 37 + 5] ^= 0x20;
    std::fs::write(&segment, &bytes)?;
    let err = refused(start()).await?;
    ensure!(err.contains("exit status: 1"), "{err}");
    ensure!(
        err.contains(&segment.display().to_string()) && err.contains(&format!("offset {damaged}")),
        "the refusal names file and offset: {err}"
    );
    ensure!(err.contains("truncate -s"), "the way out: {err}");
    ensure!(
        std::fs::read(&segment)? == bytes,
        "refusing repairs nothing: the synced records after the damage are still there"
    );

    // Repaired by hand as the message says (giving up rows 2 to 5 for resuming clients):
    // walcast starts with the records before the damage and goes on.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)?
        .set_len(damaged as u64)?;
    let server = start().start().await?;
    let (mut r, _) = WsClient::subscribe(
        &server,
        &[("query", "insert:items"), ("from", seen[0].as_str())],
    )
    .await?;
    db.exec("INSERT INTO items (id) VALUES (6)").await?;
    expect_ids(&mut r, &[6], "after the repair").await?;
    Ok(())
}

#[tokio::test]
async fn changes_bigger_than_a_segment_are_journaled_and_replayed() -> Result<()> {
    let cluster = PgCluster::shared();
    let db = TestDb::new(cluster, "bigrow").await?;
    db.exec("CREATE TABLE items (id int primary key, v text NOT NULL DEFAULT 'x')")
        .await?;
    // Smallest segments, one fsync per transaction.
    let server = Walcast::builder(&db)
        .config_toml("[journal]\nsegment_bytes = 4096\nfsync = \"always\"\n")
        .start()
        .await?;
    let (mut c, _) = WsClient::subscribe(&server, &[("query", "insert:items")]).await?;
    db.exec("INSERT INTO items (id) VALUES (1)").await?;
    // 200 KB and 3 MB (more than the journal's 1 MiB write buffer), not compressible by TOAST.
    db.exec(
        "INSERT INTO items (id, v) SELECT 2, string_agg(md5(i::text), '') FROM generate_series(1, 6400) i;
         INSERT INTO items (id, v) SELECT 3, string_agg(md5(i::text), '') FROM generate_series(1, 98304) i;
         INSERT INTO items (id) VALUES (4)",
    )
    .await?;
    let mut live = Vec::new();
    for want in 1..=4 {
        let (id, pos, v) = next_change(&mut c).await?;
        ensure!(id == want, "live: expected {want}, got {id}");
        live.push((pos, v["new"]["v"].as_str().context("v")?.len()));
    }
    ensure!(
        live[1].1 == 6400 * 32 && live[2].1 == 98304 * 32,
        "{live:?}"
    );
    let (mut r, _) = WsClient::subscribe(
        &server,
        &[("query", "insert:items"), ("from", live[0].0.as_str())],
    )
    .await?;
    for want in 2..=4 {
        let (id, pos, v) = next_change(&mut r).await?;
        ensure!(id == want, "replay: expected {want}, got {id}");
        let i = (want - 1) as usize;
        ensure!(pos == live[i].0, "replay: position of {want}");
        ensure!(
            v["new"]["v"].as_str().map(str::len) == Some(live[i].1),
            "replay: the value of {want} whole"
        );
    }
    Ok(())
}

async fn confirmed_flush_not_after(db: &TestDb<'_>, lsn: &str) -> Result<(bool, String)> {
    let row = db
        .client()
        .query_one(
            "SELECT confirmed_flush_lsn <= $2::text::pg_lsn, confirmed_flush_lsn::text
               FROM pg_replication_slots WHERE slot_name = $1",
            &[&db.slot(), &lsn],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

#[tokio::test]
async fn a_change_the_journal_cannot_take_holds_the_slot_until_it_is_journaled() -> Result<()> {
    let cluster = PgCluster::shared();
    let db = TestDb::new(cluster, "refused").await?;
    db.exec("CREATE TABLE items (id int primary key, v text NOT NULL DEFAULT 'x')")
        .await?;
    let journal = JournalDir::new("refused")?;
    // Test setting: payloads over 2000 bytes are refused as the journal refuses one past its
    // format's limit (no message Postgres sends reaches that limit).
    let server = Walcast::builder(&db)
        .env("WALCAST_JOURNAL_DIR", journal.path())
        .env("WALCAST_TEST_JOURNAL_RECORD_LIMIT", "2000")
        .start()
        .await?;
    let (mut c, _) = WsClient::subscribe(&server, &[("query", "insert:items")]).await?;
    db.exec("INSERT INTO items (id) VALUES (1)").await?;
    let first = expect_ids(&mut c, &[1], "journaled").await?;
    let before: String = db
        .client()
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    db.exec("INSERT INTO items (id, v) VALUES (2, repeat('y', 5000))")
        .await?;
    for id in 3..=5 {
        db.exec(&format!("INSERT INTO items (id) VALUES ({id})"))
            .await?;
    }
    expect_ids(&mut c, &[2, 3, 4, 5], "live delivery goes on").await?;
    let errors = server.metric("walcast_journal_errors_total").await?;
    ensure!(errors == Some(1.0), "counted: {errors:?}");
    let log = server.stderr_tail(400);
    ensure!(
        log.contains("journal stopped") && log.contains("over the 2000 byte limit"),
        "logged: {log}"
    );
    ensure!(
        log.contains("-00000001"),
        "the log names the position: {log}"
    );
    // A clean stop sends the final status update: it may not confirm past the refused change.
    stop(server).await?;
    let (held, confirmed) = confirmed_flush_not_after(&db, &before).await?;
    ensure!(
        held,
        "the slot was confirmed to {confirmed}, past the refused change (WAL at {before} before it)"
    );

    // Restarted (without the test limit), Postgres resends it and the journal takes it.
    let server = Walcast::builder(&db)
        .env("WALCAST_JOURNAL_DIR", journal.path())
        .start()
        .await?;
    let (mut r, _) = WsClient::subscribe(
        &server,
        &[("query", "insert:items"), ("from", first[0].as_str())],
    )
    .await?;
    expect_ids(&mut r, &[2, 3, 4, 5], "replayed after the restart").await?;
    Ok(())
}

#[tokio::test]
async fn a_gap_is_replayed_from_the_journal_at_its_position() -> Result<()> {
    let cluster = PgCluster::shared();
    let db = TestDb::new(cluster, "gapjournal").await?;
    db.exec("CREATE TABLE items (id int primary key, v text NOT NULL DEFAULT 'x')")
        .await?;
    let server = Walcast::builder(&db)
        .env("WALCAST_TEMPORARY_SLOT", "true")
        .start()
        .await?;
    let (mut c, _) = WsClient::subscribe(&server, &[("query", "insert:items")]).await?;
    db.exec("INSERT INTO items (id) VALUES (1)").await?;
    let first = expect_ids(&mut c, &[1], "before the cut").await?;
    let admin = cluster.connect("postgres").await?;
    let cut = admin
        .query_one(
            "SELECT count(pg_terminate_backend(active_pid)) FROM pg_replication_slots
              WHERE slot_name = $1 AND active_pid IS NOT NULL",
            &[&db.slot()],
        )
        .await?;
    ensure!(cut.get::<_, i64>(0) == 1, "no walsender to terminate");
    let live_gap = match c.next_frame(STEP).await? {
        Frame::Json(v, _) if v["type"] == "gap" => v,
        other => bail!("expected a gap frame, got {other:?}"),
    };
    // Rows until one arrives from the new slot (those committed before it never do).
    let deadline = tokio::time::Instant::now() + STEP;
    let mut next = 2;
    let after = loop {
        db.exec(&format!("INSERT INTO items (id) VALUES ({next})"))
            .await?;
        match c.next_frame(Duration::from_millis(500)).await {
            Ok(Frame::Json(v, _)) if v["type"] == "change" => break v,
            Ok(other) => bail!("unexpected {other:?}"),
            Err(_) if tokio::time::Instant::now() < deadline => next += 1,
            Err(e) => return Err(e.context("no change after the reconnect")),
        }
    };

    // A reader of the journal from before the gap gets it, where it happened, then the rest.
    let (mut r, _) = WsClient::subscribe(
        &server,
        &[("query", "insert:items"), ("from", first[0].as_str())],
    )
    .await?;
    match r.next_frame(STEP).await? {
        Frame::Json(v, _) if v["type"] == "gap" => {
            ensure!(v["after"] == live_gap["after"], "{v} vs {live_gap}");
            ensure!(v["after"] == first[0].as_str(), "{v}");
        }
        other => bail!("expected the gap frame first in the replay, got {other:?}"),
    }
    let (id, _, _) = next_change(&mut r).await?;
    ensure!(
        id == after["new"]["id"].as_i64().unwrap_or(-1),
        "then {after}"
    );
    Ok(())
}
