//! Change frames as clients see them: the envelope, typed values, replica identity, truncate,
//! tables created after start, and the "subscribed means registered" promise.

use anyhow::Result;
use serde_json::json;
use walcast_tests::{PgCluster, TestDb, Walcast, WsClient, STEP};

use crate::{assert_rfc3339, raw_scalar};

const BIG_NUMERIC: &str = "123456789012345678901234567890.123456789";
const TRICKY_TEXT: &str = "he said \"hi\" \\ o'k ünïcødé ✓ 😀\nline2";

#[tokio::test]
async fn insert_update_delete_truncate_frames() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "frames").await?;
    db.exec(
        "CREATE TABLE typed (id int primary key, i int, big bigint, f float8, n numeric, b bool,
                             t text, j jsonb, js json, nul text, at timestamptz)",
    )
    .await?;
    let server = Walcast::start(&db).await?;
    let (mut c, sub) = WsClient::subscribe(&server, &[("query", "*:typed")]).await?;
    assert_eq!(sub["table"], "public.typed", "subscribed frame: {sub}");
    assert!(
        sub["subscription"].is_string() || sub["subscription"].is_number(),
        "subscribed frame: {sub}"
    );

    db.client()
        .execute(
            "INSERT INTO typed VALUES (1, 42, 9007199254740993, 1.5, $1::text::numeric, true, $2,
                    '{\"a\":[1,2,{\"b\":null}],\"s\":\"x\"}', '{\"k\": \"v\"}', NULL, '2026-11-21 23:54:51.28847+00')",
            &[&BIG_NUMERIC, &TRICKY_TEXT],
        )
        .await?;
    let (raw, ins) = c.next_change_raw(STEP).await?;
    assert_eq!(ins["type"], "change");
    assert_eq!(ins["op"], "insert");
    assert_eq!(ins["schema"], "public");
    assert_eq!(ins["table"], "typed");
    let lsn = ins["lsn"].as_str().unwrap_or_default();
    assert!(
        lsn.split_once('/').is_some_and(|(a, b)| !a.is_empty()
            && !b.is_empty()
            && a.chars().chain(b.chars()).all(|ch| ch.is_ascii_hexdigit())),
        "lsn: {ins}"
    );
    assert!(ins["xid"].is_u64(), "xid: {ins}");
    // On a fresh slot too, `subscribed` names a real position, at or before the first change.
    let parse_lsn = |text: &str| {
        text.split_once('/').and_then(|(hi, lo)| {
            Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
        })
    };
    let sub_lsn = sub["lsn"].as_str().and_then(parse_lsn);
    assert!(
        sub_lsn.is_some_and(|p| p > 0 && Some(p) <= parse_lsn(lsn)),
        "subscribed lsn must be a real position before the change: {sub} then {ins}"
    );
    assert_rfc3339(ins["ts"].as_str().unwrap_or_default());
    assert!(ins["old"].is_null(), "insert old must be null: {ins}");
    let new = &ins["new"];
    assert_eq!(new["id"], 1);
    assert_eq!(new["i"], 42);
    assert_eq!(new["f"], 1.5);
    assert_eq!(new["b"], true);
    assert_eq!(new["t"], TRICKY_TEXT);
    assert_eq!(
        new["j"],
        json!({"a": [1, 2, {"b": null}], "s": "x"}),
        "jsonb embedded as JSON: {raw}"
    );
    assert_eq!(new["js"], json!({"k": "v"}), "json embedded as JSON: {raw}");
    assert!(
        new.get("nul").is_some_and(|v| v.is_null()),
        "null column must be present and null: {raw}"
    );
    assert!(new["at"].is_string(), "timestamptz value: {raw}");
    // Numbers of any length arrive digit for digit (never through f64/i64).
    assert_eq!(
        raw_scalar(&raw, "n"),
        Some(BIG_NUMERIC),
        "numeric digits: {raw}"
    );
    assert_eq!(
        raw_scalar(&raw, "big"),
        Some("9007199254740993"),
        "bigint digits: {raw}"
    );

    db.exec("UPDATE typed SET i = 43 WHERE id = 1").await?;
    let upd = c.next_change(STEP).await?;
    assert_eq!(upd["op"], "update");
    assert_eq!(upd["new"]["i"], 43);
    assert_eq!(
        upd["new"]["t"], TRICKY_TEXT,
        "update new is the full row: {upd}"
    );
    assert_eq!(
        upd["old"],
        json!({"id": 1}),
        "default identity: old is the pk only: {upd}"
    );
    assert_rfc3339(upd["ts"].as_str().unwrap_or_default());

    db.exec("DELETE FROM typed WHERE id = 1").await?;
    let del = c.next_change(STEP).await?;
    assert_eq!(del["op"], "delete");
    assert!(del["new"].is_null(), "delete new must be null: {del}");
    assert_eq!(del["old"], json!({"id": 1}));

    db.exec("TRUNCATE typed").await?;
    let tr = c.next_change(STEP).await?;
    assert_eq!(tr["op"], "truncate");
    assert_eq!(tr["table"], "typed");
    assert!(
        tr["new"].is_null() && tr["old"].is_null(),
        "truncate has no rows: {tr}"
    );
    Ok(())
}

#[tokio::test]
async fn replica_identity_full_sends_whole_old_row() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "identity").await?;
    db.exec(
        "CREATE TABLE full_t (id int primary key, name text, age int);
         ALTER TABLE full_t REPLICA IDENTITY FULL;
         CREATE TABLE dflt_t (id int primary key, name text, age int);
         INSERT INTO full_t VALUES (1, 'a', 10); INSERT INTO dflt_t VALUES (1, 'a', 10);",
    )
    .await?;
    let server = Walcast::start(&db).await?;
    let (mut full, _) = WsClient::subscribe(&server, &[("query", "update,delete:full_t")]).await?;
    let (mut dflt, _) = WsClient::subscribe(&server, &[("query", "update,delete:dflt_t")]).await?;
    db.exec(
        "UPDATE full_t SET age = 11 WHERE id = 1; DELETE FROM full_t WHERE id = 1;
         UPDATE dflt_t SET age = 11 WHERE id = 1; DELETE FROM dflt_t WHERE id = 1;",
    )
    .await?;

    let u = full.next_change(STEP).await?;
    assert_eq!(u["op"], "update");
    assert_eq!(
        u["old"],
        json!({"id": 1, "name": "a", "age": 10}),
        "FULL identity old: {u}"
    );
    assert_eq!(u["new"], json!({"id": 1, "name": "a", "age": 11}));
    let d = full.next_change(STEP).await?;
    assert_eq!(d["op"], "delete");
    assert_eq!(
        d["old"],
        json!({"id": 1, "name": "a", "age": 11}),
        "FULL identity old on delete: {d}"
    );

    let u = dflt.next_change(STEP).await?;
    assert_eq!(u["old"], json!({"id": 1}), "default identity old: {u}");
    let d = dflt.next_change(STEP).await?;
    assert_eq!(
        d["old"],
        json!({"id": 1}),
        "default identity old on delete: {d}"
    );
    Ok(())
}

#[tokio::test]
async fn table_created_after_start_streams() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "late").await?;
    let server = Walcast::start(&db).await?;
    db.exec("CREATE TABLE late_t (id int primary key, v text)")
        .await?;
    let (mut c, sub) = WsClient::subscribe(&server, &[("query", "insert:late_t")]).await?;
    assert_eq!(sub["table"], "public.late_t");
    db.exec("INSERT INTO late_t VALUES (1, 'first')").await?;
    let ch = c.next_change(STEP).await?;
    assert_eq!(ch["table"], "late_t");
    assert_eq!(ch["new"], json!({"id": 1, "v": "first"}));
    Ok(())
}

#[tokio::test]
async fn subscribed_means_registered() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "subord").await?;
    db.exec("CREATE TABLE ev (id int primary key)").await?;
    let server = Walcast::start(&db).await?;
    for i in 1..=20 {
        let (mut c, _) = WsClient::subscribe(&server, &[("query", "insert:ev")]).await?;
        // Committed right after `subscribed` arrived: must be delivered.
        db.client()
            .execute("INSERT INTO ev VALUES ($1)", &[&i])
            .await?;
        let ch = c
            .next_change(STEP)
            .await
            .map_err(|e| e.context(format!("round {i}")))?;
        assert_eq!(ch["new"]["id"], i, "round {i}: {ch}");
        c.close().await;
    }
    Ok(())
}

#[tokio::test]
async fn quoted_schema_and_table_names() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "quoted").await?;
    db.exec("CREATE SCHEMA sales; CREATE TABLE sales.\"odd.table\" (id int primary key); CREATE TABLE \"MixedCase\" (id int primary key)").await?;
    let server = Walcast::start(&db).await?;
    let (mut odd, _) =
        WsClient::subscribe(&server, &[("query", "insert:sales.\"odd.table\"")]).await?;
    let (mut mixed, _) = WsClient::subscribe(&server, &[("query", "insert:MixedCase")]).await?;
    db.exec("INSERT INTO sales.\"odd.table\" VALUES (1); INSERT INTO \"MixedCase\" VALUES (2)")
        .await?;
    let a = odd.next_change(STEP).await?;
    assert_eq!(
        (a["schema"].as_str(), a["table"].as_str()),
        (Some("sales"), Some("odd.table")),
        "{a}"
    );
    let b = mixed.next_change(STEP).await?;
    assert_eq!(b["table"], "MixedCase", "{b}");
    Ok(())
}
