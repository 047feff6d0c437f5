//! Schema changes as events, against a real Postgres: with `walcast setup`'s event triggers each
//! DDL reaches the subscribers of its table as a `schema` frame between the right changes, with
//! exact before and after columns and a diff matched by attnum (add, drop, rename, retype, a
//! multi-action ALTER TABLE, a DDL between inserts of one transaction, a rolled-back DDL that
//! emits nothing); a filter on a renamed column keeps matching, one on a dropped column ends with
//! `schema_changed` (4011 on a URL socket, an error frame on a multiplexed one) while the others
//! go on; tables created, renamed and dropped (quoted names with `.` and `"`) reach followers of
//! `query=schema:*`; without the trigger the same changes give inferred events; `from=` replays
//! the events at their places and a restart between a DDL and its data loses nothing; a policy
//! shows a follower only the tables and columns its rule allows, live and replayed.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use walcast_tests::{
    query_string, walcast_binary, Frame, JournalDir, PgCluster, TestDb, Walcast, WsClient, STEP,
};

use super::auth::{good, hs, start_with, SECRET};

/// `walcast setup` against the test database: the event triggers.
fn install_trigger(db: &TestDb<'_>) -> Result<()> {
    run_setup(db, false)
}

async fn next_json(c: &mut WsClient, what: &str) -> Result<Value> {
    match c.next_frame(STEP).await.with_context(|| what.to_owned())? {
        Frame::Json(v, _) => Ok(v),
        other => bail!("{what}: expected a JSON frame, got {other:?}"),
    }
}

/// A frame in a few words: `change insert 3`, `schema altered public.people`, `error
/// schema_changed`.
fn word(v: &Value) -> String {
    match v["type"].as_str() {
        Some("change") => {
            let id = v["new"]["id"].as_i64().or_else(|| v["old"]["id"].as_i64());
            format!(
                "change {} {}",
                v["op"].as_str().unwrap_or("?"),
                id.unwrap_or(-1)
            )
        }
        Some("schema") => format!(
            "schema {} {}",
            v["event"].as_str().unwrap_or("?"),
            v["table"].as_str().unwrap_or("?")
        ),
        Some("error") => format!("error {}", v["error"].as_str().unwrap_or("?")),
        other => format!("{other:?}"),
    }
}

/// Reads `n` frames (of subscription `id` when given: the others are skipped) and checks they
/// read as `expected` (see `word`), positions increasing; returns them.
async fn expect_words(
    c: &mut WsClient,
    id: Option<&str>,
    expected: &[&str],
    what: &str,
) -> Result<Vec<Value>> {
    let mut got: Vec<Value> = Vec::new();
    let mut words: Vec<String> = Vec::new();
    while got.len() < expected.len() {
        let v = next_json(c, &format!("{what}: after {words:?}")).await?;
        if id.is_some_and(|id| v["id"] != id) {
            continue;
        }
        words.push(word(&v));
        got.push(v);
    }
    ensure!(
        words == expected,
        "{what}: expected {expected:?}, got {words:?}"
    );
    let positions: Vec<&str> = got.iter().filter_map(|v| v["pos"].as_str()).collect();
    ensure!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "{what}: positions not increasing: {positions:?}"
    );
    Ok(got)
}

fn names(columns: &Value) -> Vec<String> {
    columns
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c["name"].as_str().unwrap_or("?").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every diff list empty but those given.
fn check_diff(frame: &Value, expect: &[(&str, Value)], what: &str) -> Result<()> {
    let diff = &frame["diff"];
    for key in [
        "added",
        "dropped",
        "renamed",
        "retyped",
        "nullability",
        "defaults",
    ] {
        let want = expect
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone());
        let got = &diff[key];
        match want {
            Some(want) => {
                // Added and dropped compare by column names.
                let got = if key == "added" || key == "dropped" {
                    json!(names(got))
                } else {
                    got.clone()
                };
                ensure!(got == want, "{what}: diff.{key} {got} != {want}: {frame}");
            }
            None => ensure!(
                got.as_array().is_some_and(|a| a.is_empty()),
                "{what}: diff.{key} should be empty: {frame}"
            ),
        }
    }
    Ok(())
}

const PEOPLE: &str = "CREATE TABLE people (id int PRIMARY KEY, name text, age int)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddl_events_arrive_between_the_right_changes_with_exact_diffs() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "schema_trigger").await?;
    db.exec(PEOPLE).await?;
    install_trigger(&db)?;
    let server = Walcast::start(&db).await?;
    ensure!(
        server.stderr().contains("trigger installed"),
        "walcast does not report the trigger at start: {}",
        server.stderr_tail(20)
    );
    let (mut all, _) = WsClient::subscribe(&server, &[("query", "*:people")]).await?;
    let (mut bob, _) =
        WsClient::subscribe(&server, &[("query", "*:people"), ("filter", "name.eq.bob")]).await?;
    let mut mux = WsClient::connect(&server, &[]).await?;
    mux.send_text(r#"{"type":"subscribe","id":"keep","query":"insert:people"}"#)
        .await?;
    ensure!(next_json(&mut mux, "keep").await?["type"] == "subscribed");

    db.exec("INSERT INTO people VALUES (1, 'ann', 30)").await?;
    db.exec("ALTER TABLE people ADD COLUMN email text").await?;
    db.exec("INSERT INTO people VALUES (2, 'bob', 40, 'b@x')")
        .await?;
    // Subscriptions on the new column: one on a URL, one multiplexed.
    expect_words(
        &mut all,
        None,
        &[
            "change insert 1",
            "schema altered public.people",
            "change insert 2",
        ],
        "all, first part",
    )
    .await?;
    let (mut url_mail, _) = WsClient::subscribe(
        &server,
        &[("query", "*:people"), ("filter", "email.like.*@x*")],
    )
    .await?;
    mux.send_text(
        r#"{"type":"subscribe","id":"mail","query":"*:people","filter":["email.like.*@x*"]}"#,
    )
    .await?;
    // `keep`'s frames so far may come first.
    let mut keep = Vec::new();
    loop {
        let v = next_json(&mut mux, "mail").await?;
        if v["id"] == "mail" {
            ensure!(v["type"] == "subscribed", "{v}");
            break;
        }
        if v["type"] == "change" {
            keep.push(v["new"]["id"].as_i64().unwrap_or(-1));
        }
    }

    db.exec("ALTER TABLE people RENAME COLUMN name TO full_name")
        .await?;
    db.exec("INSERT INTO people VALUES (3, 'bob', 50, 'c@x')")
        .await?;
    db.exec("ALTER TABLE people ALTER COLUMN age TYPE bigint")
        .await?;
    db.exec("INSERT INTO people VALUES (4, 'cy', 60, NULL)")
        .await?;
    db.exec(
        "ALTER TABLE people ADD COLUMN x int, DROP COLUMN email, ALTER COLUMN age SET NOT NULL",
    )
    .await?;
    db.exec(
        "BEGIN; INSERT INTO people VALUES (5, 'bob', 70); \
         ALTER TABLE people ADD COLUMN y int; \
         INSERT INTO people VALUES (6, 'dan', 80, NULL, 1); COMMIT",
    )
    .await?;
    db.exec("BEGIN; ALTER TABLE people ADD COLUMN z int; ROLLBACK")
        .await?;
    db.exec("INSERT INTO people (id, full_name, age) VALUES (7, 'bob', 90)")
        .await?;

    let frames = expect_words(
        &mut all,
        None,
        &[
            "schema altered public.people",
            "change insert 3",
            "schema altered public.people",
            "change insert 4",
            "schema altered public.people",
            "change insert 5",
            "schema altered public.people",
            "change insert 6",
            "change insert 7",
        ],
        "all, second part",
    )
    .await?;
    let renamed = &frames[0];
    ensure!(
        renamed["source"] == "trigger" && renamed["command"] == "ALTER TABLE",
        "{renamed}"
    );
    check_diff(
        renamed,
        &[("renamed", json!([{"from": "name", "to": "full_name"}]))],
        "rename",
    )?;
    ensure!(
        names(&renamed["before"]["columns"]) == ["id", "name", "age", "email"]
            && names(&renamed["columns"]) == ["id", "full_name", "age", "email"],
        "rename before/after: {renamed}"
    );
    ensure!(renamed["primary_key"] == json!(["id"]), "{renamed}");
    check_diff(
        &frames[2],
        &[(
            "retyped",
            json!([{"column": "age", "from": "integer", "to": "bigint"}]),
        )],
        "retype",
    )?;
    check_diff(
        &frames[4],
        &[
            ("added", json!(["x"])),
            ("dropped", json!(["email"])),
            (
                "nullability",
                json!([{"column": "age", "from": true, "to": false}]),
            ),
        ],
        "multi-action",
    )?;
    check_diff(&frames[6], &[("added", json!(["y"]))], "in a transaction")?;
    ensure!(frames[7]["new"]["y"] == 1, "{}", frames[7]);

    // The filter on the renamed column keeps matching, and its frame says so.
    let frames = expect_words(
        &mut bob,
        None,
        &[
            "schema altered public.people",
            "change insert 2",
            "schema altered public.people",
            "change insert 3",
            "schema altered public.people",
            "schema altered public.people",
            "change insert 5",
            "schema altered public.people",
            "change insert 7",
        ],
        "name.eq.bob",
    )
    .await?;
    ensure!(
        frames[2]["rebound"] == json!([{"from": "name", "to": "full_name"}]),
        "the rename's frame names the rebound column: {}",
        frames[2]
    );
    ensure!(frames[0].get("rebound").is_none(), "{}", frames[0]);

    // The filter on the dropped column: the schema frame, then schema_changed, then 4011.
    expect_words(
        &mut url_mail,
        None,
        &[
            "schema altered public.people",
            "change insert 3",
            "schema altered public.people",
            "schema altered public.people",
            "error schema_changed",
        ],
        "URL email filter",
    )
    .await?;
    match url_mail.next_frame(STEP).await? {
        Frame::Close(Some(4011), reason) if reason.starts_with("schema changed") => {}
        other => bail!("the URL socket should close with 4011: {other:?}"),
    }
    // Multiplexed: the error frame names the subscription, the socket and `keep` go on.
    db.exec("INSERT INTO people (id, full_name, age) VALUES (8, 'eve', 1)")
        .await?;
    let mut mail = Vec::new();
    while keep.len() < 8 {
        let v = next_json(&mut mux, &format!("mux: mail {mail:?}, keep {keep:?}")).await?;
        match v["id"].as_str() {
            Some("mail") => mail.push(v),
            Some("keep") if v["type"] == "change" => {
                keep.push(v["new"]["id"].as_i64().unwrap_or(-1))
            }
            Some("keep") => {}
            _ => bail!("a frame of no subscription: {v}"),
        }
    }
    let words: Vec<String> = mail.iter().map(word).collect();
    ensure!(
        words
            == [
                "schema altered public.people",
                "change insert 3",
                "schema altered public.people",
                "schema altered public.people",
                "error schema_changed",
            ],
        "multiplexed email filter: {words:?}"
    );
    ensure!(
        mail[4]["message"]
            .as_str()
            .is_some_and(|m| m.contains("email")),
        "the message names the column: {}",
        mail[4]
    );
    ensure!(keep == [1, 2, 3, 4, 5, 6, 7, 8], "keep: {keep:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_created_renamed_and_dropped_reach_followers() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "schema_follow").await?;
    db.exec(PEOPLE).await?;
    install_trigger(&db)?;
    let server = Walcast::start(&db).await?;
    let (mut every, hello) = WsClient::subscribe(&server, &[("query", "schema:*")]).await?;
    ensure!(hello["table"] == "*", "{hello}");
    let (mut public, _) = WsClient::subscribe(&server, &[("query", "schema:public.*")]).await?;
    let (mut v1, _) =
        WsClient::subscribe(&server, &[("query", "*:people"), ("format", "wal2json-v1")]).await?;

    db.exec(r#"CREATE TABLE "odd.ta""ble" (id int PRIMARY KEY, "we.ird" text)"#)
        .await?;
    let odd = r#"public."odd.ta""ble""#;
    let (mut table, _) = WsClient::subscribe(&server, &[("query", r#"*:"odd.ta""ble""#)]).await?;
    db.exec(r#"INSERT INTO "odd.ta""ble" VALUES (1, 'a')"#)
        .await?;
    db.exec(r#"ALTER TABLE "odd.ta""ble" RENAME COLUMN "we.ird" TO "we""ird2""#)
        .await?;
    db.exec(r#"ALTER TABLE "odd.ta""ble" RENAME TO plain"#)
        .await?;
    db.exec("CREATE SCHEMA other; CREATE TABLE other.t (id int)")
        .await?;
    // Emits nothing: the table exists.
    db.exec("CREATE TABLE IF NOT EXISTS people (id int)")
        .await?;
    db.exec("ALTER TABLE people ADD COLUMN note text").await?;
    db.exec("DROP TABLE plain").await?;
    db.exec("DROP SCHEMA other CASCADE").await?;
    db.exec("TRUNCATE people").await?;

    let frames = expect_words(
        &mut every,
        None,
        &[
            &format!("schema created {odd}"),
            &format!("schema altered {odd}"),
            "schema renamed public.plain",
            "schema created other.t",
            "schema altered public.people",
            "schema dropped public.plain",
            "schema dropped other.t",
        ],
        "schema:*",
    )
    .await?;
    ensure!(
        names(&frames[0]["columns"]) == ["id", "we.ird"] && frames[0]["before"].is_null(),
        "{}",
        frames[0]
    );
    check_diff(
        &frames[1],
        &[("renamed", json!([{"from": "we.ird", "to": "we\"ird2"}]))],
        "quoted rename",
    )?;
    ensure!(
        frames[2]["diff"]["table"] == json!({"from": odd, "to": "public.plain"}),
        "{}",
        frames[2]
    );
    ensure!(
        frames[5]["columns"].is_null()
            && names(&frames[5]["before"]["columns"]) == ["id", "we\"ird2"],
        "{}",
        frames[5]
    );
    expect_words(
        &mut public,
        None,
        &[
            &format!("schema created {odd}"),
            &format!("schema altered {odd}"),
            "schema renamed public.plain",
            "schema altered public.people",
            "schema dropped public.plain",
        ],
        "schema:public.*",
    )
    .await?;
    // The table's own subscription: its change, the column rename, the table rename ends it.
    expect_words(
        &mut table,
        None,
        &[
            "change insert 1",
            &format!("schema altered {odd}"),
            "schema renamed public.plain",
            "error schema_changed",
        ],
        "odd table",
    )
    .await?;
    match table.next_frame(STEP).await? {
        Frame::Close(Some(4011), _) => {}
        other => bail!("expected 4011 after the table rename: {other:?}"),
    }
    // wal2json-v1 sockets get the same frame, which no v1 reader takes for a change.
    let v = next_json(&mut v1, "v1").await?;
    ensure!(
        v["type"] == "schema" && v.get("kind").is_none() && v.get("change").is_none(),
        "{v}"
    );
    let v = next_json(&mut v1, "v1 truncate").await?;
    ensure!(v["kind"] == "truncate", "TRUNCATE stays a change: {v}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_trigger_changes_give_inferred_events() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "schema_inferred").await?;
    db.exec(PEOPLE).await?;
    let server = Walcast::start(&db).await?;
    ensure!(
        server.stderr().contains("no trigger"),
        "walcast does not report the missing trigger: {}",
        server.stderr_tail(20)
    );
    let (mut all, _) = WsClient::subscribe(&server, &[("query", "*:people")]).await?;
    let (mut bob, _) =
        WsClient::subscribe(&server, &[("query", "*:people"), ("filter", "name.eq.bob")]).await?;
    db.exec("INSERT INTO people VALUES (1, 'bob', 30)").await?;
    db.exec("ALTER TABLE people ADD COLUMN email text").await?;
    db.exec("INSERT INTO people VALUES (2, 'bob', 40, 'b@x')")
        .await?;
    db.exec("ALTER TABLE people RENAME COLUMN name TO full_name")
        .await?;
    db.exec("INSERT INTO people VALUES (3, 'bob', 50, 'c@x')")
        .await?;
    db.exec("ALTER TABLE people DROP COLUMN email").await?;
    db.exec("INSERT INTO people VALUES (4, 'bob', 60)").await?;
    let frames = expect_words(
        &mut all,
        None,
        &[
            "change insert 1",
            "schema altered public.people",
            "change insert 2",
            "schema altered public.people",
            "change insert 3",
            "schema altered public.people",
            "change insert 4",
        ],
        "inferred",
    )
    .await?;
    for i in [1, 3, 5] {
        ensure!(
            frames[i]["source"] == "inferred" && frames[i]["command"].is_null(),
            "{}",
            frames[i]
        );
    }
    check_diff(&frames[1], &[("added", json!(["email"]))], "inferred add")?;
    check_diff(
        &frames[3],
        &[("renamed", json!([{"from": "name", "to": "full_name"}]))],
        "inferred rename",
    )?;
    check_diff(
        &frames[5],
        &[("dropped", json!(["email"]))],
        "inferred drop",
    )?;
    expect_words(
        &mut bob,
        None,
        &[
            "change insert 1",
            "schema altered public.people",
            "change insert 2",
            "schema altered public.people",
            "change insert 3",
            "schema altered public.people",
            "change insert 4",
        ],
        "inferred, name.eq.bob",
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_replays_events_in_place_and_a_restart_loses_nothing() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "schema_replay").await?;
    db.exec(PEOPLE).await?;
    install_trigger(&db)?;
    let journal = JournalDir::new("schema_replay")?;
    let start = || {
        Walcast::builder(&db)
            .env("WALCAST_JOURNAL_DIR", journal.path())
            .start()
    };
    let mut server = start().await?;
    let (mut live, _) =
        WsClient::subscribe(&server, &[("query", "*:people"), ("filter", "name.eq.bob")]).await?;
    db.exec("INSERT INTO people VALUES (1, 'bob', 30)").await?;
    db.exec(
        "BEGIN; INSERT INTO people VALUES (2, 'bob', 31); \
         ALTER TABLE people RENAME COLUMN name TO full_name; \
         INSERT INTO people VALUES (3, 'bob', 32); COMMIT",
    )
    .await?;
    let frames = expect_words(
        &mut live,
        None,
        &[
            "change insert 1",
            "change insert 2",
            "schema altered public.people",
            "change insert 3",
        ],
        "live",
    )
    .await?;
    let first = frames[0]["pos"].as_str().context("pos")?.to_owned();
    let (mut replay, _) = WsClient::subscribe(
        &server,
        &[
            ("query", "*:people"),
            ("filter", "name.eq.bob"),
            ("from", &first),
        ],
    )
    .await?;
    let replayed = expect_words(
        &mut replay,
        None,
        &[
            "change insert 2",
            "schema altered public.people",
            "change insert 3",
        ],
        "from=",
    )
    .await?;
    for (a, b) in frames[1..].iter().zip(&replayed) {
        ensure!(
            a == b,
            "the replayed frame differs from the live one:\n{a}\n{b}"
        );
    }
    // A restart between the DDL and its data.
    let last = frames[3]["pos"].as_str().context("pos")?.to_owned();
    server.kill()?;
    db.exec("ALTER TABLE people ADD COLUMN email text").await?;
    db.exec("INSERT INTO people VALUES (4, 'bob', 33, 'd@x')")
        .await?;
    let server = start().await?;
    let (mut after, _) = WsClient::subscribe(
        &server,
        &[
            ("query", "*:people"),
            ("filter", "full_name.eq.bob"),
            ("from", &last),
        ],
    )
    .await?;
    let frames = expect_words(
        &mut after,
        None,
        &["schema altered public.people", "change insert 4"],
        "after the restart",
    )
    .await?;
    check_diff(&frames[0], &[("added", json!(["email"]))], "after restart")?;
    ensure!(frames[1]["new"]["email"] == "d@x", "{}", frames[1]);
    Ok(())
}

const POLICY: &str = r#"
[roles.member]
[[roles.member.tables]]
rule = "docs"
table = "public.docs"
columns = ["id", "owner", "body"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_shows_a_follower_only_its_tables_and_columns() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "schema_policy").await?;
    db.exec(
        "CREATE TABLE docs (id int PRIMARY KEY, owner text, body text, salary int); \
         CREATE TABLE payroll (id int PRIMARY KEY, amount int)",
    )
    .await?;
    install_trigger(&db)?;
    let server = start_with(&db, Some(POLICY), "", &[]).await?;
    let token = hs(&good(json!({"role": "member"})), SECRET.as_bytes())?;
    let open = |params: Vec<(&'static str, String)>| {
        let token = token.clone();
        let server = &server;
        async move {
            let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let auth = format!("Bearer {token}");
            let (mut c, _) = WsClient::try_open_with(
                server,
                &format!("/ws?{}", query_string(&pairs)),
                &[("authorization", &auth)],
            )
            .await?
            .map_err(|e| anyhow::anyhow!("refused: {e:?}"))?;
            let hello = c.expect_subscribed().await?;
            Ok::<_, anyhow::Error>((c, hello))
        }
    };
    let (mut follower, hello) = open(vec![("query", "schema:*".into())]).await?;
    let (mut docs, _) = open(vec![("query", "*:docs".into())]).await?;
    db.exec("ALTER TABLE payroll ADD COLUMN bonus int").await?;
    // Only hidden columns change: no frame, no hint.
    db.exec("ALTER TABLE docs ADD COLUMN secret text, ADD COLUMN title text")
        .await?;
    db.exec("ALTER TABLE docs RENAME COLUMN salary TO pay")
        .await?;
    // A visible retype, with a hidden column added by the same command.
    db.exec("ALTER TABLE docs ALTER COLUMN body TYPE varchar(100), ADD COLUMN extra int")
        .await?;
    db.exec("INSERT INTO docs (id, owner, body) VALUES (1, 'u1', 'b')")
        .await?;
    let check = |v: &Value| -> Result<()> {
        for list in [&v["columns"], &v["before"]["columns"], &v["diff"]["added"]] {
            let seen = names(list);
            ensure!(
                seen.iter()
                    .all(|c| ["id", "owner", "body"].contains(&c.as_str())),
                "columns beyond the rule: {seen:?} in {v}"
            );
        }
        check_diff(
            v,
            &[(
                "retyped",
                json!([{"column": "body", "from": "text", "to": "character varying(100)"}]),
            )],
            "policy",
        )
    };
    let frames = expect_words(
        &mut follower,
        None,
        &["schema altered public.docs"],
        "follower",
    )
    .await?;
    check(&frames[0])?;
    let frames = expect_words(
        &mut docs,
        None,
        &["schema altered public.docs", "change insert 1"],
        "docs",
    )
    .await?;
    check(&frames[0])?;
    // Replayed: the same rule applies.
    let from = hello["pos"].as_str().context("pos")?.to_owned();
    let (mut replay, _) = open(vec![("query", "schema:*".into()), ("from", from)]).await?;
    let frames = expect_words(
        &mut replay,
        None,
        &["schema altered public.docs"],
        "replayed follower",
    )
    .await?;
    check(&frames[0])?;
    // The rule names columns by name: a rename of one the subscription uses ends it, and the
    // follower learns nothing about where the column went.
    db.exec("ALTER TABLE docs RENAME COLUMN owner TO author")
        .await?;
    db.exec("INSERT INTO docs (id, author, body) VALUES (2, 'u1', 'c')")
        .await?;
    expect_words(
        &mut docs,
        None,
        &["schema altered public.docs", "error schema_changed"],
        "docs after a rename of a rule column",
    )
    .await?;
    match docs.next_frame(STEP).await? {
        Frame::Close(Some(4011), _) => {}
        other => bail!("expected 4011: {other:?}"),
    }
    for c in [&mut follower, &mut replay] {
        match c.next_frame(Duration::from_millis(500)).await {
            Err(_) => {}
            Ok(other) => bail!("a follower learned of hidden changes: {other:?}"),
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_requests_are_checked_before_the_upgrade() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "schema_requests").await?;
    db.exec(PEOPLE).await?;
    let server = Walcast::start(&db).await?;
    for (query, extra, code) in [
        ("schema:*", Some(("filter", "id.eq.1")), "bad_query"),
        ("schema:*", Some(("select", "id")), "bad_query"),
        ("schema:*", Some(("snapshot", "true")), "bad_query"),
        ("schema,insert:people", None, "unknown_change_type"),
        ("schema:people:id.eq.1", None, "bad_query"),
    ] {
        let mut params = vec![("query", query)];
        params.extend(extra);
        let (status, body) = server
            .get(&format!("/ws?{}", query_string(&params)))
            .await?;
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        ensure!(
            status == 400 && v["error"] == code,
            "{params:?}: expected 400 {code}, got {status} {body}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_subscription_keeps_its_query_across_a_rename_and_a_restart() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "schema_named").await?;
    db.exec(PEOPLE).await?;
    install_trigger(&db)?;
    let journal = JournalDir::new("schema_named")?;
    let start = || {
        Walcast::builder(&db)
            .env("WALCAST_JOURNAL_DIR", journal.path())
            .start()
    };
    let params = [
        ("query", "*:people"),
        ("filter", "name.eq.bob"),
        ("sub", "bobs"),
    ];
    let mut server = start().await?;
    let (mut c, _) = WsClient::subscribe(&server, &params).await?;
    db.exec("INSERT INTO people VALUES (1, 'bob', 30)").await?;
    db.exec("ALTER TABLE people RENAME COLUMN name TO full_name")
        .await?;
    db.exec("INSERT INTO people VALUES (2, 'bob', 31)").await?;
    let frames = expect_words(
        &mut c,
        None,
        &[
            "change insert 1",
            "schema altered public.people",
            "change insert 2",
        ],
        "named, live",
    )
    .await?;
    // Acknowledged past the rename: the name's stored query still says `name`.
    let acked = frames[2]["pos"].as_str().context("pos")?.to_owned();
    c.ack(&acked).await?;
    loop {
        let v = next_json(&mut c, "acked").await?;
        if v["type"] == "acked" && v["pos"] == acked.as_str() {
            break;
        }
    }
    c.close_and_wait(STEP).await?;
    server.kill()?;
    db.exec("INSERT INTO people VALUES (3, 'bob', 32)").await?;
    db.exec("ALTER TABLE people DROP COLUMN age").await?;
    db.exec("INSERT INTO people VALUES (4, 'bob')").await?;
    let server = start().await?;
    let (mut c, hello) = WsClient::subscribe(&server, &params).await?;
    ensure!(
        hello["pos"] == acked.as_str(),
        "resumes after its ack: {hello}"
    );
    let frames = expect_words(
        &mut c,
        None,
        &[
            "change insert 3",
            "schema altered public.people",
            "change insert 4",
        ],
        "named, after the restart",
    )
    .await?;
    check_diff(
        &frames[1],
        &[("dropped", json!(["age"]))],
        "drop after restart",
    )?;
    ensure!(frames[2]["new"]["full_name"] == "bob", "{}", frames[2]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_across_a_ddl_fails_clearly() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "schema_snapshot").await?;
    db.exec(&format!(
        "{PEOPLE}; INSERT INTO people VALUES (1, 'bob', 30); \
         CREATE TABLE big (id int PRIMARY KEY, pad text); \
         INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 200000) g"
    ))
    .await?;
    install_trigger(&db)?;
    let server = Walcast::builder(&db)
        .env("WALCAST_SNAPSHOT_MAX_CONCURRENT", "1")
        .start()
        .await?;
    // `big`'s snapshot holds the only slot while its client reads nothing.
    let (mut big, _) =
        WsClient::subscribe(&server, &[("query", "*:big"), ("snapshot", "true")]).await?;
    // Validated now, against people (id, name, age); its snapshot waits for the slot.
    let (mut late, _) = WsClient::subscribe(
        &server,
        &[
            ("query", "*:people"),
            ("filter", "name.eq.bob"),
            ("snapshot", "true"),
        ],
    )
    .await?;
    ensure!(
        next_json(&mut late, "queued").await?["type"] == "snapshot_queued",
        "the second snapshot waits"
    );
    db.exec("ALTER TABLE people RENAME COLUMN name TO full_name")
        .await?;
    // The slot frees; the snapshot would read rows of another shape: it fails, clearly.
    let mut rows = 0;
    loop {
        let v = next_json(&mut big, "big").await?;
        if v["type"] == "snapshot_end" {
            break;
        }
        rows += 1;
    }
    ensure!(rows == 200_000, "{rows} rows of big");
    let v = next_json(&mut late, "late").await?;
    ensure!(
        v["type"] == "error" && v["error"] == "schema_changed",
        "expected schema_changed, got {v}"
    );
    match late.next_frame(STEP).await? {
        Frame::Close(Some(4011), reason) if reason.starts_with("schema changed") => {}
        other => bail!("expected 4011: {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_allow_governs_what_a_follower_sees() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "schema_allow").await?;
    db.exec(&format!(
        "{PEOPLE}; CREATE TABLE hidden (id int PRIMARY KEY)"
    ))
    .await?;
    install_trigger(&db)?;
    let server = Walcast::builder(&db)
        .env("WALCAST_TABLES", "public.people")
        .start()
        .await?;
    let (status, body) = server
        .get(&format!(
            "/ws?{}",
            query_string(&[("query", "schema:hidden")])
        ))
        .await?;
    ensure!(
        status == 403 && body.contains("table_not_allowed"),
        "{status} {body}"
    );
    let (mut every, _) = WsClient::subscribe(&server, &[("query", "schema:*")]).await?;
    db.exec("ALTER TABLE hidden ADD COLUMN secret text").await?;
    // Renamed out of (and into) the allow-list: hidden under one of its names, so not shown.
    db.exec("ALTER TABLE hidden RENAME TO people2").await?;
    db.exec("ALTER TABLE people ADD COLUMN note text").await?;
    expect_words(
        &mut every,
        None,
        &["schema altered public.people"],
        "schema:* under tables.allow",
    )
    .await?;
    ensure!(
        every.next_frame(Duration::from_millis(500)).await.is_err(),
        "nothing about tables outside tables.allow"
    );
    Ok(())
}

/// `walcast setup` (or `--uninstall`) on the running server's database.
fn run_setup(db: &TestDb<'_>, uninstall: bool) -> Result<()> {
    let mut args = vec!["setup", "--database-url"];
    let url = db.url();
    args.push(&url);
    if uninstall {
        args.push("--uninstall");
    }
    let out = Command::new(walcast_binary()?)
        .args(&args)
        .output()
        .context("running walcast setup")?;
    ensure!(
        out.status.success(),
        "walcast {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installing_and_removing_the_trigger_while_running_switches_the_source() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "schema_switch").await?;
    db.exec(PEOPLE).await?;
    let server = Walcast::start(&db).await?;
    let (mut all, _) = WsClient::subscribe(&server, &[("query", "*:people")]).await?;
    run_setup(&db, false)?;
    // From the trigger now: the event comes with the DDL, before any change shows it.
    db.exec("ALTER TABLE people ADD COLUMN email text").await?;
    let frames = expect_words(
        &mut all,
        None,
        &["schema altered public.people"],
        "installed",
    )
    .await?;
    ensure!(frames[0]["source"] == "trigger", "{}", frames[0]);
    run_setup(&db, true)?;
    db.exec("ALTER TABLE people DROP COLUMN email").await?;
    db.exec("INSERT INTO people VALUES (1, 'ann', 30)").await?;
    let frames = expect_words(
        &mut all,
        None,
        &["schema altered public.people", "change insert 1"],
        "uninstalled",
    )
    .await?;
    ensure!(frames[0]["source"] == "inferred", "{}", frames[0]);
    check_diff(
        &frames[0],
        &[("dropped", json!(["email"]))],
        "inferred after uninstall",
    )?;
    Ok(())
}
