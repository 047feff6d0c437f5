//! Named subscriptions at the edges of trust: a name belongs to the subject that created it
//! (another subject gets 403 `forbidden` and learns nothing of its query or claims; a token without
//! `sub` owns none); names are bounded in all and per subject (429
//! `too_many_named_subscriptions`); a name without a socket for `named.idle_expiry` stops holding
//! the journal, so one abandoned name no longer pauses the stream for the whole server; retention
//! trims only behind acks written to `subscriptions.json`, never behind acks only in memory (a
//! crash between the two loses nothing); names of a file written before owners existed belong to
//! the anonymous subject; a temporary slot serves no name (409 `named_unavailable`).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use walcast_tests::{
    http_error, metric_value, query_string, wait_for, Frame, JournalDir, PgCluster, TestDb,
    Walcast, WsClient, STEP,
};

const SECRET: &str = "e2e secret for named subscription owners";
const ADMIN: &str = "e2e-named-admin";
const QUERY: &str = "insert:items";
/// Padding per row, so a few rows fill a 4 KiB journal segment.
const PAD: usize = 500;
/// A journal of 4 KiB segments, at most 16 KiB: retention runs (and pauses) after a few dozen rows.
const SMALL_JOURNAL: &str = "[journal]\nsegment_bytes = 4096\nmax_bytes = 16384\n";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An HS256 token with `claims` plus `exp` (and `role: member`).
fn token(claims: Value) -> Result<String> {
    let mut c = json!({"exp": now() + 600, "role": "member"});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), claims.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    Ok(encode(
        &Header::new(Algorithm::HS256),
        &c,
        &EncodingKey::from_secret(SECRET.as_bytes())?,
    )?)
}

fn jwt_builder(db: &TestDb<'_>) -> walcast_tests::WalcastBuilder {
    Walcast::builder(db)
        .env("WALCAST_AUTH_MODE", "jwt")
        .env("WALCAST_JWT_SECRET", SECRET)
        .env("WALCAST_ADMIN_TOKEN", ADMIN)
}

async fn items_db(label: &str, tenant: bool) -> Result<TestDb<'static>> {
    let db = TestDb::new(PgCluster::shared(), label).await?;
    let extra = if tenant { ", tenant text" } else { "" };
    db.exec(&format!(
        "CREATE TABLE items (id int8 primary key, pad text{extra})"
    ))
    .await?;
    Ok(db)
}

/// Commits rows `ids`, one transaction each, padded with `PAD` bytes.
async fn commit_rows(db: &TestDb<'_>, ids: impl IntoIterator<Item = i64>) -> Result<()> {
    let pad = "x".repeat(PAD);
    let mut sql = String::new();
    for id in ids {
        let _ = write!(
            sql,
            "BEGIN;INSERT INTO items (id, pad) VALUES ({id}, '{pad}');COMMIT;"
        );
    }
    db.exec(&sql).await
}

/// `/ws?<params>` with `Authorization: Bearer <token>`: the client, or the refusal's status and
/// JSON body (and its raw text, to check what it does not say).
async fn open(
    server: &Walcast,
    params: &[(&str, &str)],
    bearer: Option<&str>,
) -> Result<std::result::Result<WsClient, (u16, Value, String)>> {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| ("Authorization", a))
        .into_iter()
        .collect();
    let path = format!("/ws?{}", query_string(params));
    match WsClient::try_open_with(server, &path, &headers).await? {
        Ok((client, _)) => Ok(Ok(client)),
        Err((status, text)) => {
            let body = serde_json::from_str(&text)
                .with_context(|| format!("{status} body of {path} is not JSON: {text}"))?;
            Ok(Err((status, body, text)))
        }
    }
}

/// Must subscribe; returns the client and its `subscribed` frame.
async fn subscribe(
    server: &Walcast,
    params: &[(&str, &str)],
    bearer: Option<&str>,
) -> Result<(WsClient, Value)> {
    match open(server, params, bearer).await? {
        Ok(mut c) => {
            let hello = c.expect_subscribed().await?;
            Ok((c, hello))
        }
        Err((status, _, text)) => bail!("{params:?}: refused with {status} {text}"),
    }
}

/// Must be refused with `status` and `code`; returns the raw body.
async fn refused(
    server: &Walcast,
    params: &[(&str, &str)],
    bearer: Option<&str>,
    status: u16,
    code: &str,
) -> Result<String> {
    match open(server, params, bearer).await? {
        Ok(_) => bail!("{params:?}: upgraded, expected {status} {code}"),
        Err((got, body, text)) => {
            ensure!(
                got == status
                    && body["error"] == code
                    && body["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{params:?}: expected {status} {code} with a message, got {got} {text}"
            );
            Ok(text)
        }
    }
}

/// Reads change frames (skipping `acked`) and requires exactly `want` ids in order; returns
/// their positions.
async fn rows(
    c: &mut WsClient,
    want: impl IntoIterator<Item = i64>,
    what: &str,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for id in want {
        let v = loop {
            match c.next_frame(STEP).await {
                Ok(Frame::Json(v, _)) if v["type"] == "acked" => continue,
                Ok(Frame::Json(v, _)) if v["type"] == "change" => break v,
                Ok(other) => bail!(
                    "{what}: expected id {id} after {} rows, got {other:?}",
                    out.len()
                ),
                Err(e) => bail!("{what}: expected id {id} after {} rows: {e:#}", out.len()),
            }
        };
        ensure!(v["new"]["id"] == id, "{what}: expected id {id}, got {v}");
        out.push(v["pos"].as_str().context("pos")?.to_owned());
    }
    Ok(out)
}

/// Reads `acked` frames until one confirms `pos`.
async fn acked(c: &mut WsClient, pos: &str) -> Result<()> {
    loop {
        match c.next_frame(STEP).await? {
            Frame::Json(v, _) if v["type"] == "acked" => {
                if v["pos"] == pos {
                    return Ok(());
                }
            }
            other => bail!("expected an acked frame for {pos}, got {other:?}"),
        }
    }
}

/// An admin `GET` (with the admin token when `admin`): status and body.
async fn admin_get(server: &Walcast, path: &str, admin: bool) -> Result<(u16, String)> {
    let mut request = reqwest::Client::new().get(format!("{}{path}", server.http_base()));
    if admin {
        request = request.bearer_auth(ADMIN);
    }
    let resp = request.send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await?))
}

/// `GET /v1/subscriptions` entry of `name`.
async fn listed(server: &Walcast, name: &str, admin: bool) -> Result<Value> {
    let (status, body) = admin_get(server, "/v1/subscriptions", admin).await?;
    ensure!(status == 200, "/v1/subscriptions: {status} {body}");
    let all: Value = serde_json::from_str(&body)?;
    all.as_array()
        .and_then(|a| a.iter().find(|e| e["name"] == name))
        .cloned()
        .with_context(|| format!("{name} not listed: {body}"))
}

/// Waits until no socket holds `name` (the server has seen its socket close).
async fn released(server: &Walcast, name: &str, admin: bool) -> Result<()> {
    wait_for(
        &format!("{name} to be released"),
        STEP,
        Duration::from_millis(50),
        || async { Ok((listed(server, name, admin).await?["connected"] == false).then_some(())) },
    )
    .await
}

async fn metric(server: &Walcast, name: &str, admin: bool) -> Result<f64> {
    let (status, body) = admin_get(server, "/metrics", admin).await?;
    ensure!(status == 200, "/metrics: {status} {body}");
    Ok(metric_value(&body, name).unwrap_or(0.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_subscription_belongs_to_the_subject_that_created_it() -> Result<()> {
    let db = items_db("named_owner", true).await?;
    // The tenant claim is bound into every subscription's stored query by the policy.
    let policy = "role_claim = \"role\"\n[roles.member]\n[[roles.member.tables]]\nrule = \"tenant-items\"\ntable = \"public.items\"\nfilters = [\"tenant.eq.{claims.tenant}\"]\n";
    let policy_path = std::env::temp_dir().join(format!(
        "walcast-named-policy-{}.toml",
        walcast_tests::unique_suffix()
    ));
    std::fs::write(&policy_path, policy)?;
    let server = jwt_builder(&db)
        .env(
            "WALCAST_POLICY_FILE",
            policy_path.to_str().unwrap_or_default(),
        )
        .start()
        .await?;
    const SECRET_TENANT: &str = "acme-tenant-7f3a";
    let alice = token(json!({"sub": "alice", "tenant": SECRET_TENANT}))?;
    let bob = token(json!({"sub": "bob", "tenant": "bobco"}))?;
    let no_sub = token(json!({"tenant": "bobco"}))?;
    let empty_sub = token(json!({"sub": "", "tenant": "bobco"}))?;
    let feed = [("query", QUERY), ("sub", "feed")];

    let (mut a, hello) = subscribe(&server, &feed, Some(&alice)).await?;
    db.exec(&format!(
        "INSERT INTO items (id, pad, tenant) VALUES (1, '', '{SECRET_TENANT}')"
    ))
    .await?;
    let p1 = rows(&mut a, [1], "alice").await?.remove(0);
    a.ack(&p1).await?;
    acked(&mut a, &p1).await?;

    // Another subject, while the owner holds the name and after: 403 whatever the query, and
    // nothing of alice's subscription in the answer (today: 409 subscription_mismatch with
    // alice's stored query, her tenant included).
    let others: [&[(&str, &str)]; 3] = [
        &feed,
        &[("query", "*:items"), ("sub", "feed")],
        &[("query", QUERY), ("sub", "feed"), ("select", "id")],
    ];
    let mut holder = Some(a);
    for round in ["held", "released"] {
        for params in others {
            let text = refused(&server, params, Some(&bob), 403, "forbidden").await?;
            for secret in [SECRET_TENANT, "alice", "tenant", "insert%3Aitems", "busy"] {
                ensure!(
                    !text.contains(secret),
                    "{round}: bob's refusal shows {secret:?}: {text}"
                );
            }
        }
        if let Some(a) = holder.take() {
            a.close_and_wait(STEP).await?;
        }
    }
    // The same through a `subscribe` message on an empty socket.
    let mut socket = match open(&server, &[], Some(&bob)).await? {
        Ok(c) => c,
        Err((status, _, text)) => bail!("bob's empty socket: {status} {text}"),
    };
    socket
        .send_text(
            &json!({"type": "subscribe", "id": "x", "query": "*:items", "sub": "feed"}).to_string(),
        )
        .await?;
    let frame = socket.expect_error("forbidden", STEP).await?;
    ensure!(
        !frame.to_string().contains(SECRET_TENANT),
        "error frame shows alice's tenant: {frame}"
    );
    // A token without sub (or with an empty one) owns no name; without sub= it subscribes.
    for t in [&no_sub, &empty_sub] {
        let text = refused(
            &server,
            &[("query", QUERY), ("sub", "mine")],
            Some(t),
            403,
            "forbidden",
        )
        .await?;
        ensure!(
            text.contains("sub claim"),
            "the refusal names the missing claim: {text}"
        );
        let (c, _) = subscribe(&server, &[("query", QUERY)], Some(t)).await?;
        c.close_and_wait(STEP).await?;
    }

    // The owner: its own query may be shown when it differs; the name resumes after its ack.
    released(&server, "feed", true).await?;
    let text = refused(
        &server,
        &[("query", "*:items"), ("sub", "feed")],
        Some(&alice),
        409,
        "subscription_mismatch",
    )
    .await?;
    // The stored query is the client's own request (the rule is applied again at each resume),
    // so it holds no claim value.
    ensure!(
        text.contains("insert%3Aitems") && !text.contains(SECRET_TENANT),
        "the owner sees its own stored query, without claims: {text}"
    );
    let (mut a, again) = subscribe(&server, &feed, Some(&alice)).await?;
    ensure!(
        again["pos"] == p1.as_str(),
        "resumes after its ack: {again} (created {hello})"
    );
    db.exec(&format!(
        "INSERT INTO items (id, pad, tenant) VALUES (2, '', '{SECRET_TENANT}')"
    ))
    .await?;
    rows(&mut a, [2], "alice resumed").await?;
    // Names are one namespace, but each subject creates its own.
    let (b, _) = subscribe(&server, &[("query", QUERY), ("sub", "bobfeed")], Some(&bob)).await?;
    b.close_and_wait(STEP).await?;
    refused(
        &server,
        &[("query", QUERY), ("sub", "bobfeed")],
        Some(&alice),
        403,
        "forbidden",
    )
    .await?;
    let e = listed(&server, "feed", true).await?;
    ensure!(
        e["owner"] == "alice" && e["connected"] == true && e["expired"] == false,
        "{e}"
    );
    ensure!(listed(&server, "bobfeed", true).await?["owner"] == "bob");
    let _ = std::fs::remove_file(policy_path);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_names_are_bounded_in_all_and_per_subject() -> Result<()> {
    let db = items_db("named_bounds", false).await?;
    let server = jwt_builder(&db)
        .env("WALCAST_MAX_NAMED_SUBSCRIPTIONS", "3")
        .env("WALCAST_MAX_NAMED_PER_SUBJECT", "2")
        .start()
        .await?;
    let alice = token(json!({"sub": "alice"}))?;
    let bob = token(json!({"sub": "bob"}))?;
    let carol = token(json!({"sub": "carol"}))?;
    let name = |n: &'static str| [("query", QUERY), ("sub", n)];
    for n in ["a1", "a2"] {
        let (c, _) = subscribe(&server, &name(n), Some(&alice)).await?;
        c.close_and_wait(STEP).await?;
    }
    let text = refused(
        &server,
        &name("a3"),
        Some(&alice),
        429,
        "too_many_named_subscriptions",
    )
    .await?;
    ensure!(text.contains("named.max_per_subject"), "{text}");
    let (b1, _) = subscribe(&server, &name("b1"), Some(&bob)).await?;
    let text = refused(
        &server,
        &name("c1"),
        Some(&carol),
        429,
        "too_many_named_subscriptions",
    )
    .await?;
    ensure!(text.contains("named.max_subscriptions"), "{text}");
    // At the bounds, owners are still served their names.
    released(&server, "a1", true).await?;
    let (a1, _) = subscribe(&server, &name("a1"), Some(&alice)).await?;
    a1.close_and_wait(STEP).await?;
    let refusals = metric(
        &server,
        "walcast_limit_refusals_total{limit=\"named_subscriptions\"}",
        true,
    )
    .await?;
    ensure!(refusals == 2.0, "two refusals counted: {refusals}");
    // A deleted name frees its place.
    let (status, body) = {
        let resp = reqwest::Client::new()
            .delete(format!("{}/v1/subscriptions/a2", server.http_base()))
            .bearer_auth(ADMIN)
            .send()
            .await?;
        (resp.status().as_u16(), resp.text().await?)
    };
    ensure!(status == 204, "DELETE: {status} {body}");
    let (c1, _) = subscribe(&server, &name("c1"), Some(&carol)).await?;
    c1.close_and_wait(STEP).await?;
    b1.close_and_wait(STEP).await?;
    Ok(())
}

/// `subscriptions.json` as the previous release wrote it: version 1, no owner.
fn as_previous_release(path: &PathBuf) -> Result<()> {
    let mut body: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    body["version"] = json!(1);
    for s in body["subscriptions"]
        .as_array_mut()
        .context("subscriptions")?
    {
        let s = s.as_object_mut().context("entry")?;
        for key in ["owner", "idle_since", "expired"] {
            s.remove(key);
        }
    }
    std::fs::write(path, serde_json::to_vec_pretty(&body)?)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_of_an_earlier_release_belong_to_the_anonymous_subject() -> Result<()> {
    let db = items_db("named_legacy", false).await?;
    let journal = JournalDir::new("named_legacy")?;
    let file = PathBuf::from(journal.path()).join("subscriptions.json");
    let open_server = || {
        Walcast::builder(&db)
            .env("WALCAST_JOURNAL_DIR", journal.path())
            .start()
    };
    let legacy = [("query", QUERY), ("sub", "legacy")];
    let mut server = open_server().await?;
    let (mut c, _) = subscribe(&server, &legacy, None).await?;
    commit_rows(&db, [1]).await?;
    let p1 = rows(&mut c, [1], "legacy").await?.remove(0);
    c.ack(&p1).await?;
    acked(&mut c, &p1).await?;
    c.close_and_wait(STEP).await?;
    server.terminate()?;
    server.wait_exit(STEP).await?;
    as_previous_release(&file)?;

    // Under jwt no token is the anonymous subject: 403 for everyone, whatever the query.
    let mut server = jwt_builder(&db)
        .env("WALCAST_JOURNAL_DIR", journal.path())
        .start()
        .await?;
    let alice = token(json!({"sub": "alice"}))?;
    refused(&server, &legacy, Some(&alice), 403, "forbidden").await?;
    let e = listed(&server, "legacy", true).await?;
    ensure!(e["owner"].is_null() && e["acked"] == p1.as_str(), "{e}");
    server.terminate()?;
    server.wait_exit(STEP).await?;

    // Without authentication it is served as before.
    let server = open_server().await?;
    let (mut c, hello) = subscribe(&server, &legacy, None).await?;
    ensure!(
        hello["pos"] == p1.as_str(),
        "resumes after its ack: {hello}"
    );
    commit_rows(&db, [2]).await?;
    let p2 = rows(&mut c, [2], "legacy resumed").await?.remove(0);
    // Once an ack is confirmed, the file has been written by this release.
    c.ack(&p2).await?;
    acked(&mut c, &p2).await?;
    let text = std::fs::read_to_string(&file)?;
    ensure!(
        text.contains("\"version\": 2"),
        "rewritten as version 2: {text}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_slot_serves_no_named_subscription() -> Result<()> {
    let db = items_db("named_temp", false).await?;
    let server = Walcast::builder(&db)
        .env("WALCAST_TEMPORARY_SLOT", "true")
        .start()
        .await?;
    let text = refused(
        &server,
        &[("query", QUERY), ("sub", "kept")],
        None,
        409,
        "named_unavailable",
    )
    .await?;
    ensure!(text.contains("replication.temporary"), "{text}");
    let (status, body) = http_error(&server, &[("query", QUERY), ("sub", "kept")]).await?;
    ensure!(
        status == 409 && body["error"] == "named_unavailable",
        "{status} {body}"
    );
    // The same through a `subscribe` message; subscriptions without sub= work.
    let mut socket = match open(&server, &[], None).await? {
        Ok(c) => c,
        Err((status, _, text)) => bail!("empty socket: {status} {text}"),
    };
    socket
        .send_text(
            &json!({"type": "subscribe", "id": "n", "query": QUERY, "sub": "kept"}).to_string(),
        )
        .await?;
    socket.expect_error("named_unavailable", STEP).await?;
    let (mut c, _) = subscribe(&server, &[("query", QUERY)], None).await?;
    commit_rows(&db, [1]).await?;
    rows(&mut c, [1], "without sub=").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_name_no_longer_pauses_the_stream() -> Result<()> {
    let db = items_db("named_idle", false).await?;
    let server = Walcast::builder(&db)
        .config_toml(SMALL_JOURNAL)
        .env("WALCAST_NAMED_IDLE_EXPIRY", "2s")
        .start()
        .await?;
    let abandoned = [("query", QUERY), ("sub", "abandoned")];
    let (c, _) = subscribe(&server, &abandoned, None).await?;
    c.close_and_wait(STEP).await?;
    let (mut live, _) = subscribe(&server, &[("query", QUERY)], None).await?;
    // Batches of about twice journal.max_bytes, each read in full by a plain subscriber, until
    // retention removed a segment: every row comes after "abandoned"'s position, so only its
    // expiry lets retention go on. Without it the stream pauses at max_bytes until "abandoned"
    // acknowledges or is deleted: never, and a batch never arrives.
    // (Batches go on past the 2 s idle expiry, however fast they are read.)
    const BATCH: i64 = 50;
    let mut next = 1;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        commit_rows(&db, next..next + BATCH).await?;
        rows(&mut live, next..next + BATCH, "a plain subscriber").await?;
        next += BATCH;
        if metric(&server, "walcast_journal_segments_removed_total", false).await? > 0.0 {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "retention never removed a segment ({} rows)",
            next - 1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expired = metric(&server, "walcast_named_subscriptions_expired_total", false).await?;
    ensure!(expired == 1.0, "one expiry counted: {expired}");
    ensure!(
        server
            .stderr_tail(400)
            .contains("no longer holds the journal"),
        "the expiry is logged: {}",
        server.stderr_tail(40)
    );
    let e = listed(&server, "abandoned", false).await?;
    ensure!(e["expired"] == true && e["connected"] == false, "{e}");
    // It comes back after retention removed what follows its position.
    refused(&server, &abandoned, None, 409, "position_expired").await?;
    ensure!(listed(&server, "abandoned", false).await?["expired"] == true);
    // Still expired: it holds nothing, the stream goes on.
    commit_rows(&db, next..next + 2 * BATCH).await?;
    rows(
        &mut live,
        next..next + 2 * BATCH,
        "after the refused resume",
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_trims_only_behind_acks_written_to_disk() -> Result<()> {
    let db = items_db("named_ondisk", false).await?;
    let journal = JournalDir::new("named_ondisk")?;
    let file = PathBuf::from(journal.path()).join("subscriptions.json");
    let start = |idle: &str| {
        Walcast::builder(&db)
            .config_toml(SMALL_JOURNAL)
            .env("WALCAST_JOURNAL_DIR", journal.path())
            .env("WALCAST_NAMED_IDLE_EXPIRY", idle)
            .start()
    };
    db.exec("CREATE TABLE filler (id serial primary key)")
        .await?;
    let mut server = start("2s").await?;
    // "durable" is the subscription under test; "witness" proves, by expiring, that retention ran
    // after both acknowledged row K.
    let durable = [("query", QUERY), ("sub", "durable")];
    let (mut n, _) = subscribe(&server, &durable, None).await?;
    let (mut x, _) = subscribe(&server, &[("query", QUERY), ("sub", "witness")], None).await?;
    commit_rows(&db, [1]).await?;
    let p1 = rows(&mut n, [1], "durable").await?.remove(0);
    rows(&mut x, [1], "witness").await?;
    for c in [&mut n, &mut x] {
        c.ack(&p1).await?;
        acked(c, &p1).await?;
    }
    // The file now holds row 1 as both acks. From here on it cannot be written: what a crash
    // right after a trim would leave behind.
    let saved = std::fs::read(&file)?;
    std::fs::remove_file(&file)?;
    std::fs::create_dir(&file)?;

    // Rows 2..=K fill more than one 4 KiB segment and are all sent before the journal reaches
    // max_bytes (16 KiB), where the stream may pause.
    const K: i64 = 13;
    commit_rows(&db, 2..=200).await?;
    let nk = rows(&mut n, 2..=K, "durable").await?;
    let xk = rows(&mut x, 2..=K, "witness").await?;
    ensure!(nk == xk);
    let pk = nk.last().context("row K")?.clone();
    for c in [&mut n, &mut x] {
        c.ack(&pk).await?;
    }
    // Both acks are taken (in memory: the file cannot be written).
    wait_for(
        "both acks to be taken",
        STEP,
        Duration::from_millis(100),
        || async {
            let (a, b) = (
                listed(&server, "durable", false).await?,
                listed(&server, "witness", false).await?,
            );
            Ok((a["acked"] == pk.as_str() && b["acked"] == pk.as_str()).then_some(()))
        },
    )
    .await?;
    x.close_and_wait(STEP).await?;
    // The witness expires in a retention pass (2 s after it closed), which is after both acks.
    // Retention runs every second while the stream is paused, else after what arrives: a row
    // of another table per look keeps it running either way.
    wait_for(
        "the witness to expire",
        STEP,
        Duration::from_millis(200),
        || async {
            db.exec("INSERT INTO filler DEFAULT VALUES").await?;
            let expired =
                metric(&server, "walcast_named_subscriptions_expired_total", false).await?;
            Ok((expired >= 1.0).then_some(()))
        },
    )
    .await?;
    ensure!(
        server
            .stderr_tail(400)
            .contains("named subscriptions not persisted"),
        "the file could not be written: {}",
        server.stderr_tail(40)
    );
    server.kill()?;
    std::fs::remove_dir(&file)?;
    std::fs::write(&file, saved)?;

    let server = start("1h").await?;
    let (mut n, hello) = subscribe(&server, &durable, None).await?;
    ensure!(
        hello["pos"] == p1.as_str(),
        "resumes after the ack on disk: {hello}"
    );
    let again = rows(&mut n, 2..=K, "durable after the crash").await?;
    ensure!(again == nk, "the same changes at the same positions");
    Ok(())
}
