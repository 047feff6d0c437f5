//! No silent loss: a replication connection cut inside a COPY (rows that share one LSN) replays
//! each row exactly once; numbers beyond f64's range arrive as Postgres printed them; a payload
//! walcast cannot decode reaches the subscribers of its table as a `decode_failed` error frame.

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use walcast_tests::{Frame, PgCluster, TestDb, Walcast, WsClient, STEP};

use crate::LONG;

const ROWS: usize = 200_000;

/// Terminates walcast's walsender for `slot`, waiting (up to `STEP`) for walcast to be connected
/// again when a previous cut is still being recovered from; true when one was terminated.
async fn terminate_walsender(admin: &tokio_postgres::Client, slot: &str) -> Result<bool> {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let row = admin
            .query_one(
                "SELECT count(pg_terminate_backend(active_pid)) FROM pg_replication_slots
                  WHERE slot_name = $1 AND active_pid IS NOT NULL",
                &[&slot],
            )
            .await?;
        if row.get::<_, i64>(0) == 1 {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn id_of(raw: &str) -> Result<i64> {
    let v: Value = serde_json::from_str(raw).with_context(|| format!("not JSON: {raw}"))?;
    ensure!(v["type"] == "change", "expected a change frame, got {raw}");
    v["new"]["id"].as_i64().context("id")
}

#[tokio::test]
async fn copy_with_the_walsender_terminated_mid_stream_delivers_each_row_once() -> Result<()> {
    let cluster = PgCluster::shared();
    let db = TestDb::new(cluster, "copycut").await?;
    db.exec("CREATE TABLE items (id int primary key, v text NOT NULL DEFAULT 'copied')")
        .await?;
    let server = Walcast::start(&db).await?;
    let (mut c, _) = WsClient::subscribe(&server, &[("query", "insert:items")]).await?;

    // One transaction of multi-insert WAL records: up to ~1,000 rows share each record's LSN.
    let copy = {
        let conn = db.connect().await?;
        tokio::spawn(async move {
            conn.batch_execute(&format!("COPY items (id) FROM PROGRAM 'seq 1 {ROWS}'"))
                .await
        })
    };
    let admin = cluster.connect("postgres").await?;
    let cuts_at = [ROWS / 7, ROWS / 2, ROWS * 5 / 6];
    let mut cuts = 0;
    let mut count = vec![0u32; ROWS + 1];
    let mut received = 0usize;
    let mut distinct = 0usize;
    let deadline = tokio::time::Instant::now() + 3 * LONG;
    while distinct < ROWS {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let raw = c.next_text(left).await.with_context(|| {
            format!(
                "{distinct} of {ROWS} rows arrived after {cuts} cut(s); walcast stderr:\n{}",
                server.stderr_tail(30)
            )
        })?;
        let id = id_of(&raw)?;
        let slot = count
            .get_mut(usize::try_from(id)?)
            .with_context(|| format!("unexpected id {id}"))?;
        if *slot == 0 {
            distinct += 1;
        }
        *slot += 1;
        received += 1;
        if cuts < cuts_at.len() && received == cuts_at[cuts] {
            // The intake may be ahead of this client (a client that falls behind reads the
            // journal), so a cut lands inside the COPY's transaction or after it: either way
            // each row must arrive once.
            ensure!(
                terminate_walsender(&admin, db.slot()).await?,
                "no walsender to terminate at cut {cuts}"
            );
            cuts += 1;
        }
    }
    copy.await?.context("COPY")?;
    ensure!(cuts == cuts_at.len(), "only {cuts} cuts happened");

    // A row committed after the COPY: every frame before it is counted, late duplicates too.
    db.exec("INSERT INTO items (id) VALUES (0)").await?;
    loop {
        let raw = c.next_text(STEP).await?;
        let id = id_of(&raw)?;
        if id == 0 {
            break;
        }
        count[usize::try_from(id)?] += 1;
    }
    let duplicated: Vec<usize> = (1..=ROWS).filter(|&i| count[i] > 1).collect();
    let missing: Vec<usize> = (1..=ROWS).filter(|&i| count[i] == 0).collect();
    ensure!(
        duplicated.is_empty() && missing.is_empty(),
        "{} rows duplicated (first {:?}), {} missing (first {:?})",
        duplicated.len(),
        &duplicated[..duplicated.len().min(10)],
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let reconnects = server
        .metric("walcast_replication_reconnects_total")
        .await?
        .unwrap_or(0.0);
    ensure!(
        reconnects >= cuts_at.len() as f64,
        "walcast counted {reconnects} reconnects for {} cuts",
        cuts_at.len()
    );
    Ok(())
}

/// The raw text of `"<column>":<value>` in a frame, up to the next `,` or `}`.
fn raw_value<'a>(raw: &'a str, image: &str, column: &str) -> Option<&'a str> {
    let image_at = raw.find(&format!(r#""{image}":{{"#))?;
    let key = format!(r#""{column}":"#);
    let at = image_at + raw[image_at..].find(&key)? + key.len();
    let rest = &raw[at..];
    let end = match rest.strip_prefix('"') {
        // A string (arrays of numerics are strings in wal2json), with its quotes.
        Some(inner) => inner.find('"')? + 2,
        None => rest.find([',', '}'])?,
    };
    Some(&rest[..end])
}

#[tokio::test]
async fn numerics_beyond_double_range_arrive_as_postgres_printed_them() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "widenum").await?;
    db.exec(
        "CREATE TABLE t_num (id int primary key, n numeric, a numeric[]);
         ALTER TABLE t_num REPLICA IDENTITY FULL",
    )
    .await?;
    let server = Walcast::start(&db).await?;
    let (mut c, _) = WsClient::subscribe(&server, &[("query", "*:t_num")]).await?;
    // Filters compare such numbers exactly too: 1e400 and 1.5e308 pass, -1e400 and 1e-400 not.
    let (mut big_only, _) =
        WsClient::subscribe(&server, &[("query", "insert:t_num:n.gt.1e300")]).await?;
    let values = [
        "1e400",
        "-1e400",
        "1e-400",
        "-1e-400",
        "123456789012345678901234567890.000000000000000000000000000001",
        "1.5e308",
        "'NaN'",
        "'Infinity'",
        "'-Infinity'",
    ];
    for (i, v) in values.iter().enumerate() {
        db.exec(&format!(
            "INSERT INTO t_num VALUES ({i}, {v}, ARRAY[{v}, 1e400]::numeric[])"
        ))
        .await?;
    }
    db.exec("UPDATE t_num SET id = id + 100 WHERE id = 0; DELETE FROM t_num WHERE id = 1")
        .await?;
    let printed = db
        .client()
        .query("SELECT n::text, a::text FROM t_num ORDER BY id", &[])
        .await?;
    let expected_text: Vec<(String, String)> = {
        let mut rows: Vec<(String, String)> = printed
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)))
            .collect();
        // ORDER BY id put the updated row (100) last; it was inserted first.
        let updated = rows.pop().context("rows")?;
        rows.insert(0, updated);
        rows
    };

    let mut inserts = Vec::new();
    for _ in values {
        inserts.push(c.next_text(STEP).await?);
    }
    let update = c.next_text(STEP).await?;
    let delete = c.next_text(STEP).await?;
    // Row 1 was deleted: its expectations come from the insert itself.
    for (i, raw) in inserts.iter().enumerate() {
        let n = raw_value(raw, "new", "n").with_context(|| format!("no n in {raw:.200}"))?;
        let a = raw_value(raw, "new", "a").with_context(|| format!("no a in {raw:.200}"))?;
        let text_index = if i == 0 {
            0
        } else if i == 1 {
            usize::MAX
        } else {
            i - 1
        };
        if text_index == usize::MAX {
            continue;
        }
        let (want_n, want_a) = &expected_text[text_index];
        let want_n = match want_n.as_str() {
            // wal2json has no JSON spelling for these: null.
            "NaN" | "Infinity" | "-Infinity" => "null",
            other => other,
        };
        ensure!(
            n == want_n,
            "row {i}: n is {n:.60}…, Postgres printed {want_n:.60}…"
        );
        ensure!(
            a == format!("\"{want_a}\""),
            "row {i}: array is {a:.60}…, Postgres printed {want_a:.60}…"
        );
    }
    let big = format!("1{}", "0".repeat(400));
    ensure!(
        raw_value(&update, "old", "n") == Some(big.as_str()),
        "update's old image lost the wide number: {update:.300}"
    );
    ensure!(
        raw_value(&delete, "old", "n") == Some(format!("-{big}").as_str()),
        "delete's old image lost the wide number: {delete:.300}"
    );
    let mut passed = Vec::new();
    for _ in 0..2 {
        let raw = big_only.next_text(STEP).await?;
        passed.push(raw_value(&raw, "new", "id").unwrap_or_default().to_owned());
    }
    ensure!(passed == ["0", "5"], "n.gt.1e300 passed ids {passed:?}");
    db.exec("INSERT INTO t_num VALUES (50, 1e301, NULL)")
        .await?;
    let next = big_only.next_text(STEP).await?;
    ensure!(
        raw_value(&next, "new", "id") == Some("50"),
        "nothing else may pass n.gt.1e300 before id 50: {next:.200}"
    );
    let errors = server.metric("walcast_decode_errors_total").await?;
    ensure!(errors == Some(0.0), "decode errors: {errors:?}");
    Ok(())
}

#[tokio::test]
async fn an_undecodable_payload_is_a_decode_failed_frame_not_a_gap() -> Result<()> {
    // A SQL_ASCII database stores any bytes; wal2json passes them on, and bytes that are not
    // UTF-8 cannot be a JSON text.
    let db = TestDb::with_options(
        PgCluster::shared(),
        "notutf8",
        " ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
    )
    .await?;
    db.exec("CREATE TABLE raw (id int primary key, v text)")
        .await?;
    let server = Walcast::start(&db).await?;
    let (mut c, _) = WsClient::subscribe(&server, &[("query", "*:raw")]).await?;
    let (mut other, _) =
        WsClient::subscribe(&server, &[("query", "*:raw"), ("select", "id")]).await?;
    db.exec(
        "INSERT INTO raw VALUES (1, 'fine');
         INSERT INTO raw VALUES (2, convert_from('\\xff'::bytea, 'SQL_ASCII'));
         INSERT INTO raw VALUES (3, 'fine again')",
    )
    .await?;
    for client in [&mut c, &mut other] {
        let first = client.next_change(STEP).await?;
        ensure!(first["new"]["id"] == 1, "{first}");
        let error = match client.next_frame(STEP).await? {
            Frame::Json(v, _) => v,
            other => bail!("expected the decode_failed frame, got {other:?}"),
        };
        ensure!(
            error["type"] == "error" && error["error"] == "decode_failed",
            "{error}"
        );
        ensure!(
            error["table"] == "raw" && error["schema"] == "public",
            "{error}"
        );
        let lsn = error["lsn"].as_str().context("lsn")?;
        ensure!(lsn.contains('/') && lsn != "0/0", "{error}");
        let third = client.next_change(STEP).await?;
        ensure!(third["new"]["id"] == 3, "{third}");
    }
    let errors = server.metric("walcast_decode_errors_total").await?;
    ensure!(errors == Some(1.0), "decode errors: {errors:?}");
    let log = server.stderr_tail(50);
    ensure!(
        log.contains("decode_failed") && log.contains("first_bytes"),
        "the log names the position and first bytes:\n{log}"
    );
    Ok(())
}
