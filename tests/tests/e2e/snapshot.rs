//! Snapshot then stream: `snapshot=true` sends the table's current rows (`row` frames), then
//! `snapshot_end`, then every change the snapshot does not show. A client rebuilding the table
//! from rows and changes must end with exactly what `SELECT` shows, while writers insert, update
//! and delete for the whole snapshot; a transaction open across the snapshot arrives once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use walcast_tests::{Frame, PgCluster, TestDb, Walcast, WsClient, STEP as LONG_STEP};

pub(crate) type Table = BTreeMap<i64, Value>;

/// Applies frames to `table` until `until` says stop; returns (rows in the snapshot, changes).
pub(crate) async fn rebuild(
    c: &mut WsClient,
    table: &mut Table,
    mut until: impl FnMut(&Value) -> bool,
) -> Result<(u64, u64)> {
    let (mut rows, mut changes) = (0, 0);
    loop {
        let v = match c.next_frame(LONG_STEP).await? {
            Frame::Json(v, _) => v,
            other => bail!("after {rows} rows and {changes} changes: {other:?}"),
        };
        match v["type"].as_str() {
            Some("row") => {
                let id = v["row"]["id"].as_i64().context("row id")?;
                ensure!(
                    table.insert(id, v["row"].clone()).is_none(),
                    "row {id} twice: {v}"
                );
                rows += 1;
            }
            Some("snapshot_end") => {
                ensure!(
                    v["rows"] == rows,
                    "snapshot_end counts {} rows, {rows} came",
                    v["rows"]
                );
            }
            Some("change") => {
                changes += 1;
                match v["op"].as_str() {
                    Some("insert") => {
                        let id = v["new"]["id"].as_i64().context("id")?;
                        ensure!(
                            table.insert(id, v["new"].clone()).is_none(),
                            "insert of present row {id}: {v}"
                        );
                    }
                    Some("update") => {
                        let id = v["new"]["id"].as_i64().context("id")?;
                        ensure!(
                            table.insert(id, v["new"].clone()).is_some(),
                            "update of absent row {id}: {v}"
                        );
                    }
                    Some("delete") => {
                        let id = v["old"]["id"].as_i64().context("id")?;
                        ensure!(
                            table.remove(&id).is_some(),
                            "delete of absent row {id}: {v}"
                        );
                    }
                    other => bail!("op {other:?}: {v}"),
                }
            }
            Some("snapshot_queued") | Some("subscribed") => {}
            _ => bail!("unexpected frame {v}"),
        }
        if until(&v) {
            return Ok((rows, changes));
        }
    }
}

/// What `SELECT` shows, as the client's rows (`cols` of each).
async fn selected(db: &TestDb<'_>, filter: &str, cols: &[&str]) -> Result<Table> {
    let rows = db
        .client()
        .query(
            &format!("SELECT id, age, name FROM people WHERE {filter}"),
            &[],
        )
        .await?;
    let mut t = Table::new();
    for r in rows {
        let (id, age, name): (i32, i32, String) = (r.get(0), r.get(1), r.get(2));
        let full = serde_json::json!({"id": id, "age": age, "name": name});
        let mut row = serde_json::Map::new();
        for c in cols {
            row.insert((*c).to_owned(), full[*c].clone());
        }
        t.insert(i64::from(id), Value::Object(row));
    }
    Ok(t)
}

/// `replica`: the table's replica identity (a filter on `age` needs `FULL` to see a deleted row's
/// age: docs/guides/subscriptions.md).
async fn snapshot_under_writes(
    label: &str,
    extra: &[(&str, &str)],
    filter: &str,
    cols: &[&str],
    replica: &str,
) -> Result<()> {
    const ROWS: i64 = 200_000;
    let db = TestDb::new(PgCluster::shared(), label).await?;
    db.exec(&format!(
        "CREATE TABLE people (id int primary key, age int not null, name text not null); \
         ALTER TABLE people REPLICA IDENTITY {replica}; \
         INSERT INTO people SELECT g, g % 100, 'p' || g FROM generate_series(1, {ROWS}) g"
    ))
    .await?;
    let server = Walcast::builder(&db).prefer_release().start().await?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4i64 {
        let conn = db.connect().await?;
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut n = 0i64;
            // Inserts above the initial ids, updates of names (ages stay: a row never moves in
            // or out of a filter), deletes of initial rows; each its own transaction.
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let id = ROWS + 1 + w * 1_000_000 + n;
                let victim = 1 + (w * 50_021 + n * 7) % ROWS;
                conn.batch_execute(&format!(
                    "INSERT INTO people VALUES ({id}, {}, 'new{id}'); \
                     UPDATE people SET name = name || '+' WHERE id = {}; \
                     DELETE FROM people WHERE id = {victim}",
                    id % 100,
                    1 + (n * 13 + w) % ROWS
                ))
                .await?;
            }
            anyhow::Ok(n)
        }));
    }
    let mut params = vec![("query", "*:people"), ("snapshot", "true")];
    params.extend_from_slice(extra);
    let (mut c, _) = WsClient::subscribe(&server, &params).await?;
    let mut table = Table::new();
    let (rows, during) = rebuild(&mut c, &mut table, |v| v["type"] == "snapshot_end").await?;
    // Writers go on a little after the snapshot, then stop; a marker ends the stream.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut ops = 0;
    for w in writers {
        ops += w.await??;
    }
    db.exec("INSERT INTO people VALUES (-1, 99, 'marker')")
        .await?;
    let (_, after) = rebuild(&mut c, &mut table, |v| v["new"]["id"] == -1).await?;
    table.remove(&-1);
    let want = selected(&db, &format!("id <> -1 AND {filter}"), cols).await?;
    eprintln!("{label}: {rows} rows, {during}+{after} changes, {ops} writer transactions");
    ensure!(ops > 0, "the writers ran");
    if table != want {
        let missing: Vec<_> = want
            .keys()
            .filter(|k| !table.contains_key(k))
            .take(5)
            .collect();
        let extra: Vec<_> = table
            .keys()
            .filter(|k| !want.contains_key(k))
            .take(5)
            .collect();
        let differ: Vec<_> = want
            .iter()
            .filter(|(k, v)| table.get(k).is_some_and(|t| t != *v))
            .take(3)
            .collect();
        bail!(
            "rebuilt table ({} rows) differs from SELECT ({} rows): missing {missing:?}, extra {extra:?}, differing {differ:?}",
            table.len(),
            want.len()
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_changes_rebuild_the_table_under_writes() -> Result<()> {
    snapshot_under_writes("snap_all", &[], "true", &["id", "age", "name"], "DEFAULT").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_with_a_filter_and_select() -> Result<()> {
    snapshot_under_writes(
        "snap_filtered",
        &[("filter", "age.gt.50"), ("select", "id,name")],
        "age > 50",
        &["id", "name"],
        "FULL",
    )
    .await
}

/// A transaction begun before the snapshot and committed after it: not in the rows, delivered
/// once as a change. A quoted table name and a filter value with `'` and `;` travel safely.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_open_across_the_snapshot_arrives_once() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "snap_open").await?;
    db.exec(
        "CREATE TABLE \"Odd.Table\" (id int primary key, note text); \
         INSERT INTO \"Odd.Table\" VALUES (1, 'a''b;c'), (2, 'other')",
    )
    .await?;
    let server = Walcast::start(&db).await?;
    let open = db.connect().await?;
    open.batch_execute("BEGIN; INSERT INTO \"Odd.Table\" VALUES (3, 'a''b;c')")
        .await?;
    let (mut c, _) = WsClient::subscribe(
        &server,
        &[
            ("query", "*:\"Odd.Table\""),
            ("filter", "note.eq.a'b;c"),
            ("snapshot", "true"),
        ],
    )
    .await?;
    let mut table = Table::new();
    let (rows, _) = rebuild(&mut c, &mut table, |v| v["type"] == "snapshot_end").await?;
    ensure!(
        rows == 1 && table.contains_key(&1),
        "only row 1 matches: {table:?}"
    );
    open.batch_execute("COMMIT").await?;
    db.exec("INSERT INTO \"Odd.Table\" VALUES (4, 'a''b;c')")
        .await?;
    rebuild(&mut c, &mut table, |v| v["new"]["id"] == 4).await?;
    ensure!(
        table.keys().copied().collect::<Vec<_>>() == [1, 3, 4],
        "{table:?}"
    );
    let still = db
        .client()
        .query_one("SELECT count(*) FROM \"Odd.Table\"", &[])
        .await?;
    ensure!(still.get::<_, i64>(0) == 4);
    Ok(())
}

/// A snapshot the role may not read ends that subscription with `snapshot_failed` (Postgres's
/// message) and the socket goes on; with `snapshot.max_concurrent = 1` a second snapshot while
/// one is reading is told `snapshot_queued`, then served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_snapshot_keeps_the_socket_and_a_busy_one_queues() -> Result<()> {
    let cluster = PgCluster::shared();
    let admin = cluster.connect("postgres").await?;
    let role = format!("snap_{}", walcast_tests::unique_suffix().replace('-', "_"));
    admin
        .batch_execute(&format!("CREATE ROLE \"{role}\" LOGIN REPLICATION"))
        .await?;
    let db = TestDb::with_owner(cluster, "snap_perm", Some(&role)).await?;
    db.exec(&format!(
        "CREATE TABLE secret (id int primary key); INSERT INTO secret VALUES (1); \
         CREATE TABLE open_t (id int primary key, pad text); \
         INSERT INTO open_t SELECT g, repeat('x', 100) FROM generate_series(1, 200000) g; \
         GRANT SELECT ON open_t TO \"{role}\""
    ))
    .await?;
    let server = Walcast::builder(&db)
        .env("DATABASE_URL", &cluster.tcp_url(db.name(), &role, None))
        .env("WALCAST_SNAPSHOT_MAX_CONCURRENT", "1")
        .start()
        .await?;

    let mut a = WsClient::connect(&server, &[]).await?;
    a.send_text(r#"{"type":"subscribe","id":"s","query":"*:secret","snapshot":true}"#)
        .await?;
    let mut got = Vec::new();
    loop {
        let Frame::Json(v, _) = a.next_frame(LONG_STEP).await? else {
            bail!("socket ended after {got:?}");
        };
        if v["type"] == "error" {
            ensure!(v["id"] == "s" && v["error"] == "snapshot_failed", "{v}");
            ensure!(
                v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("permission denied")),
                "Postgres's reason: {v}"
            );
            break;
        }
        got.push(v);
    }
    a.send_text(r#"{"type":"subscribe","id":"t","query":"*:open_t"}"#)
        .await?;
    let Frame::Json(v, _) = a.next_frame(LONG_STEP).await? else {
        bail!("the socket must stay open");
    };
    ensure!(v["type"] == "subscribed" && v["id"] == "t", "{v}");

    // B holds the only permit: it reads 200,000 rows and its client reads nothing yet.
    let (mut b, hello) =
        WsClient::subscribe(&server, &[("query", "*:open_t"), ("snapshot", "true")]).await?;
    ensure!(hello["type"] == "subscribed", "{hello}");
    let (mut c, _) =
        WsClient::subscribe(&server, &[("query", "*:open_t"), ("snapshot", "true")]).await?;
    let Frame::Json(v, _) = c.next_frame(LONG_STEP).await? else {
        bail!("C ended");
    };
    ensure!(
        v["type"] == "snapshot_queued",
        "the second snapshot waits: {v}"
    );
    let mut tb = Table::new();
    let (rows_b, _) = rebuild(&mut b, &mut tb, |v| v["type"] == "snapshot_end").await?;
    let mut tc = Table::new();
    let (rows_c, _) = rebuild(&mut c, &mut tc, |v| v["type"] == "snapshot_end").await?;
    ensure!(
        rows_b == 200_000 && rows_c == 200_000,
        "{rows_b} and {rows_c} rows"
    );
    Ok(())
}
