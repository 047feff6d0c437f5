//! `format=wal2json-v1` (the frames speculare-pgcdc clients read) compared with what wal2json
//! format-version 1 itself prints for the same changes, read from a second slot: byte for byte,
//! and field by field when they differ. The workload carries Postgres' edge cases: escapes and
//! unicode, `json`/`jsonb`, NaN, numerics beyond double range, an unchanged TOASTed column, a
//! key update, `REPLICA IDENTITY FULL`, and COPY multi-insert records that share one LSN.

use std::collections::HashMap;
use std::io::Cursor;

use anyhow::{bail, ensure, Context, Result};
use futures_util::SinkExt;
use serde_json::value::RawValue;
use serde_json::Value;
use walcast_tests::{http_error, Frame, PgCluster, TestDb, Walcast, WsClient, STEP};

const SETUP: &str = "
CREATE TABLE spec_items (
    id int PRIMARY KEY, name varchar(20), doc jsonb, plain json, n numeric, f float8,
    ok boolean, big text, at timestamptz, tags text[]
);
CREATE TABLE spec_full (id int PRIMARY KEY, v text);
ALTER TABLE spec_full REPLICA IDENTITY FULL;
";

const CHANGES: &str = r#"
INSERT INTO spec_items VALUES
  (1, 'a"b\c', '{"k": [1, 2], "s": "é"}', '{ "raw" : true }', 1e40, 'NaN', true, 'x',
   '2026-11-30 12:00:00+00', '{a,"b c"}');
INSERT INTO spec_items (id, name, n) VALUES (2, E'tab\there\nnl ünï 🌍', 123456789012345678901234567890.000001);
INSERT INTO spec_items (id, n, f) VALUES (3, 'Infinity', '-Infinity');
UPDATE spec_items SET name = 'renamed' WHERE id = 2;
UPDATE spec_items SET id = 20 WHERE id = 2;
-- an unchanged TOASTed column (incompressible, stored out of line) is left out of the new row
UPDATE spec_items SET big = (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 400) i) WHERE id = 3;
UPDATE spec_items SET ok = false WHERE id = 3;
DELETE FROM spec_items WHERE id = 1;
INSERT INTO spec_full VALUES (1, 'one'), (2, 'two');
UPDATE spec_full SET v = 'uno' WHERE id = 1;
DELETE FROM spec_full WHERE id = 2;
"#;

const AFTER_COPY: &str = "
DELETE FROM spec_items WHERE id >= 100;
TRUNCATE spec_full;
INSERT INTO spec_full VALUES (99, 'end');
";

/// Rows the COPY writes: one multi-insert record per page, every row with the same LSN.
const COPY_ROWS: i64 = 300;

fn copy_data() -> Vec<u8> {
    let mut out = String::new();
    for i in 0..COPY_ROWS {
        out.push_str(&format!(
            "{}\tcopy {i}\t{{\"i\": {i}}}\t\\N\t{i}.5\t\\N\tt\t\\N\t\\N\t\\N\n",
            100 + i
        ));
    }
    out.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal2json_v1_frames_match_format_version_1_field_by_field() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "speculare").await?;
    db.exec(SETUP).await?;
    let server = Walcast::start(&db).await?;
    let (mut items, _) = WsClient::subscribe(
        &server,
        &[("query", "*:spec_items"), ("format", "wal2json-v1")],
    )
    .await?;
    let (mut full, full_subscribed) = WsClient::subscribe(
        &server,
        &[("query", "*:spec_full"), ("format", "wal2json-v1")],
    )
    .await?;
    // The reference: wal2json itself, format-version 1, on a second slot created before the
    // changes (walcast subscribed above, so both see exactly the same changes).
    let reference = format!("{}_v1", db.slot());
    db.client()
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'wal2json')",
            &[&reference],
        )
        .await?;

    db.exec(CHANGES).await?;
    let sink = db
        .client()
        .copy_in::<_, Cursor<Vec<u8>>>("COPY spec_items FROM STDIN")
        .await?;
    let mut sink = std::pin::pin!(sink);
    sink.send(Cursor::new(copy_data())).await?;
    let copied = sink.as_mut().finish().await?;
    ensure!(copied == COPY_ROWS as u64, "COPY wrote {copied} rows");
    db.exec(AFTER_COPY).await?;

    let expected = reference_elements(&db, &reference).await?;
    // 8 + 4 changes above, the COPY's rows, their deletes and the last insert (the truncate is
    // not printed by format-version 1).
    ensure!(
        expected.len() == 13 + 2 * COPY_ROWS as usize,
        "the reference slot printed {} changes",
        expected.len()
    );
    let mut compared = 0;
    let mut full_frames = Vec::new();
    for (table, client) in [("spec_items", &mut items), ("spec_full", &mut full)] {
        let want: Vec<&String> = expected
            .iter()
            .filter(|e| element_table(e).as_deref() == Some(table))
            .collect();
        for (k, want) in want.iter().enumerate() {
            let got = next_v1(client, table).await?;
            if table == "spec_full" {
                full_frames.push(got.clone());
            }
            if got.starts_with(r#"{"kind":"truncate""#) {
                // Format-version 1 prints nothing for a truncate; walcast sends it
                // (docs/guides/frames.md).
                ensure!(
                    got == format!(r#"{{"kind":"truncate","schema":"public","table":"{table}"}}"#),
                    "{table}: truncate frame {got}"
                );
                let again = next_v1(client, table).await?;
                full_frames.push(again.clone());
                compare(table, k, want, &again)?;
            } else {
                compare(table, k, want, &got)?;
            }
            compared += 1;
        }
    }
    // Replayed from the journal (`from=`), the same frames, byte for byte.
    let from = full_subscribed["pos"]
        .as_str()
        .context("subscribed without pos")?;
    let (mut replay, _) = WsClient::subscribe(
        &server,
        &[
            ("query", "*:spec_full"),
            ("format", "wal2json-v1"),
            ("from", from),
        ],
    )
    .await?;
    for (k, live) in full_frames.iter().enumerate() {
        let replayed = next_v1(&mut replay, "spec_full (from=)").await?;
        ensure!(
            &replayed == live,
            "replayed frame {k}: {replayed}\n  live: {live}"
        );
    }
    // Bad input is refused before the upgrade, naming the fix.
    for (params, needle) in [
        (
            vec![("query", "*:spec_full"), ("format", "wal2json-v2")],
            "wal2json-v1",
        ),
        (
            vec![
                ("query", "*:spec_full"),
                ("format", "wal2json-v1"),
                ("snapshot", "true"),
            ],
            "snapshot",
        ),
    ] {
        let (status, body) = http_error(&server, &params).await?;
        ensure!(
            status == 400
                && body["error"] == "bad_query"
                && body["message"].as_str().is_some_and(|m| m.contains(needle)),
            "{params:?}: {status} {body}"
        );
    }
    // Every kind of change was compared: the workload is what the test claims it is.
    let kinds: Vec<String> = expected
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| v["kind"].as_str().map(str::to_owned))
        .collect();
    for kind in ["insert", "update", "delete"] {
        ensure!(kinds.iter().any(|k| k == kind), "no {kind} in the workload");
    }
    ensure!(
        compared == expected.len(),
        "{compared} of {} compared",
        expected.len()
    );
    // The unchanged TOASTed column is absent from that update, in both.
    ensure!(
        expected.iter().any(|e| e.contains(r#""kind":"update""#)
            && e.contains(r#""columnvalues":[3,"#)
            && !e.contains(r#""big""#)),
        "the workload has no update with an unchanged TOASTed column"
    );
    Ok(())
}

/// One format-version-1 frame (a frame without `type`), skipping none: any other frame fails.
async fn next_v1(client: &mut WsClient, table: &str) -> Result<String> {
    match client.next_frame(STEP).await {
        Ok(Frame::Json(v, raw)) if v.get("kind").is_some() && v.get("type").is_none() => Ok(raw),
        Ok(other) => bail!("{table}: expected a wal2json-v1 frame, got {other:?}"),
        Err(e) => Err(e).with_context(|| format!("{table}: waiting for a wal2json-v1 frame")),
    }
}

/// The elements of every `{"change":[...]}` document the reference slot printed, as raw text.
async fn reference_elements(db: &TestDb<'_>, slot: &str) -> Result<Vec<String>> {
    let rows = db
        .client()
        .query(
            "SELECT data FROM pg_logical_slot_get_changes($1, NULL, NULL, 'format-version', '1')",
            &[&slot],
        )
        .await?;
    let mut out = Vec::new();
    for row in rows {
        let data: String = row.get(0);
        let mut doc: HashMap<String, Vec<Box<RawValue>>> =
            serde_json::from_str(&data).with_context(|| format!("reference: {data}"))?;
        let change = doc.remove("change").context("a document without change")?;
        out.extend(change.into_iter().map(|e| e.get().to_owned()));
    }
    Ok(out)
}

fn element_table(raw: &str) -> Option<String> {
    let v: Value = serde_json::from_str(raw).ok()?;
    v["table"].as_str().map(str::to_owned)
}

/// Byte-for-byte equal, or the first field that differs is named.
fn compare(table: &str, k: usize, want: &str, got: &str) -> Result<()> {
    if want == got {
        return Ok(());
    }
    let w: Value = serde_json::from_str(want)?;
    let g: Value = serde_json::from_str(got)?;
    for key in [
        "kind",
        "schema",
        "table",
        "columnnames",
        "columntypes",
        "columnvalues",
        "oldkeys",
    ] {
        if w.get(key) != g.get(key) {
            bail!(
                "{table} change {k}: field {key} differs\n  wal2json v1: {}\n  walcast:     {}",
                w.get(key).map_or("(absent)".into(), Value::to_string),
                g.get(key).map_or("(absent)".into(), Value::to_string)
            );
        }
    }
    bail!("{table} change {k}: same fields, different text\n  wal2json v1: {want}\n  walcast:     {got}")
}
