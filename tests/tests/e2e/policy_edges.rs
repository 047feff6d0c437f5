//! Policies at the edges, against a real Postgres: a request is parsed once under the configured
//! limits and the policy binds that one request (a padded or many-condition request under raised
//! limits cannot skip the rule); claims spliced into `in` and `like` filters match themselves and
//! never widen them; `/v1/tables` shows only the rule's columns; a refreshed token must carry the
//! same values for every claim the policy bound; and `from=` beyond the last position a server
//! dispatched is refused with 409 `position_ahead`.

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use walcast_tests::{query_string, Frame, PgCluster, TestDb, Walcast, WsClient, STEP};

use super::auth::{good, hs, now, start_with, SECRET};

/// Opens `/ws` with `params` and a bearer token; expects `subscribed`.
async fn open(server: &Walcast, params: &[(&str, &str)], token: &str) -> Result<WsClient> {
    let auth = format!("Bearer {token}");
    let (mut client, _) = WsClient::try_open_with(
        server,
        &format!("/ws?{}", query_string(params)),
        &[("authorization", &auth)],
    )
    .await?
    .map_err(|e| anyhow::anyhow!("refused: {e:?}"))?;
    client.expect_subscribed().await?;
    Ok(client)
}

/// The ids of the next `n` change frames, each checked to show only `columns`.
async fn next_ids(
    client: &mut WsClient,
    n: usize,
    columns: &[&str],
    what: &str,
) -> Result<Vec<i64>> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let v = client
            .next_change(STEP)
            .await
            .with_context(|| format!("{what}: after ids {ids:?}"))?;
        let image = &v["new"];
        let keys: Vec<&str> = image
            .as_object()
            .context("no new image")?
            .keys()
            .map(String::as_str)
            .collect();
        ensure!(
            keys.iter().all(|k| columns.contains(k)),
            "{what}: columns {keys:?} beyond the rule's {columns:?}: {v}"
        );
        ids.push(image["id"].as_i64().context("no id")?);
    }
    Ok(ids)
}

const DOCS_POLICY: &str = r#"
[roles.member]
[[roles.member.tables]]
rule = "own-docs"
table = "public.docs"
columns = ["id", "owner", "body"]
filters = ["owner.eq.{sub}"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raised_limits_do_not_let_a_request_skip_the_policy() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "policy_limits").await?;
    db.exec("CREATE TABLE docs (id int PRIMARY KEY, owner text, body text, salary int)")
        .await?;
    let server = start_with(
        &db,
        Some(DOCS_POLICY),
        "[limits]\nmax_query_bytes = 65536\nmax_conditions = 64\n",
        &[],
    )
    .await?;
    let token = hs(&good(json!({"role": "member"})), SECRET.as_bytes())?;
    // Over the default limits (16 KiB, 32 conditions), within the configured ones.
    let pad = "x".repeat(17 * 1024);
    let padded = open(&server, &[("query", "*:docs"), ("padding", &pad)], &token).await?;
    let mut many: Vec<(&str, &str)> = vec![("query", "*:docs")];
    many.extend(std::iter::repeat_n(("filter", "id.gte.0"), 40));
    let many = open(&server, &many, &token).await?;
    let plain = open(&server, &[("query", "*:docs")], &token).await?;

    db.exec(
        "INSERT INTO docs VALUES (1, 'u2', 'theirs', 100);
         INSERT INTO docs VALUES (2, 'u1', 'mine', 200);
         INSERT INTO docs VALUES (3, 'u2', 'theirs', 300);
         INSERT INTO docs VALUES (4, 'u1', 'end', 400);",
    )
    .await?;
    for (mut client, what) in [
        (padded, "padded"),
        (many, "40 conditions"),
        (plain, "plain"),
    ] {
        let ids = next_ids(&mut client, 2, &["id", "owner", "body"], what).await?;
        ensure!(
            ids == [2, 4],
            "{what}: got rows {ids:?}, the rule gives [2, 4]"
        );
    }

    // /v1/tables lists the table with the rule's columns only.
    let body: Value = reqwest::Client::new()
        .get(format!("{}/v1/tables", server.http_base()))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    let docs = body["tables"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["table"] == "docs"))
        .with_context(|| format!("no docs in {body}"))?;
    let names: Vec<&str> = docs["columns"]
        .as_array()
        .context("columns")?
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    ensure!(
        names == ["id", "owner", "body"],
        "/v1/tables shows {names:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_match_themselves_in_in_and_like_filters() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "policy_escape").await?;
    db.exec("CREATE TABLE docs (id int PRIMARY KEY, owner text, body text)")
        .await?;
    let policy = r#"
[roles.r]
[[roles.r.tables]]
table = "public.docs"
filters = ["owner.in.(nobody,{claims.team})", "body.like.{claims.prefix}*"]
"#;
    let server = start_with(&db, Some(policy), "", &[]).await?;
    // Spliced as text, `u1,u2` would be two items and `%` a wildcard.
    let token = hs(
        &good(json!({"role": "r", "team": "u1,u2", "prefix": "%"})),
        SECRET.as_bytes(),
    )?;
    let mut client = open(&server, &[("query", "insert:docs")], &token).await?;
    db.exec(
        "INSERT INTO docs VALUES (1, 'u1', 'anything');
         INSERT INTO docs VALUES (2, 'u1,u2', '%abc');
         INSERT INTO docs VALUES (3, 'u2', '%abc');
         INSERT INTO docs VALUES (4, 'u1,u2', 'no percent');
         INSERT INTO docs VALUES (5, 'u1,u2', '%end');",
    )
    .await?;
    let ids = next_ids(&mut client, 2, &["id", "owner", "body"], "escaped claims").await?;
    ensure!(
        ids == [2, 5],
        "got rows {ids:?}; the claims as literal values give [2, 5]"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refreshed_token_must_carry_the_bound_claims() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "policy_refresh").await?;
    db.exec("CREATE TABLE docs (id int PRIMARY KEY, team text)")
        .await?;
    let policy = r#"
[roles.r]
[[roles.r.tables]]
table = "public.docs"
filters = ["team.eq.{claims.team}"]
"#;
    let server = start_with(&db, Some(policy), "", &[]).await?;
    // Tokens without `sub`: the subject check alone cannot tell them apart.
    let token = |team: &str| {
        hs(
            &json!({"aud": "walcast", "iss": "e2e", "exp": now() + 600, "role": "r", "team": team}),
            SECRET.as_bytes(),
        )
    };
    let mut client = open(&server, &[("query", "insert:docs")], &token("a")?).await?;
    client
        .send_text(&json!({"type": "access_token", "token": token("b")?}).to_string())
        .await?;
    let refused = client.expect_error("unauthorized", STEP).await?;
    ensure!(
        refused["message"]
            .as_str()
            .unwrap_or("")
            .contains("claims.team"),
        "the refusal names the claim: {refused}"
    );
    // The same claim values refresh.
    client
        .send_text(&json!({"type": "access_token", "token": token("a")?}).to_string())
        .await?;
    match client.next_frame(STEP).await? {
        Frame::Json(v, _) if v["type"] == "token_refreshed" => {}
        other => bail!("expected token_refreshed, got {other:?}"),
    }
    db.exec("INSERT INTO docs VALUES (1, 'b'); INSERT INTO docs VALUES (2, 'a');")
        .await?;
    let ids = next_ids(&mut client, 1, &["id", "team"], "after refresh").await?;
    ensure!(ids == [2], "got {ids:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_beyond_the_last_position_is_refused() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "from_ahead").await?;
    db.exec("CREATE TABLE items (id int PRIMARY KEY)").await?;
    let server = Walcast::start(&db).await?;
    let (mut live, _) = WsClient::subscribe(&server, &[("query", "insert:items")]).await?;
    db.exec("INSERT INTO items VALUES (1)").await?;
    let change = live.next_change(STEP).await?;
    let pos = change["pos"].as_str().context("pos")?.to_owned();
    // The position this server sent resumes; one beyond anything it dispatched does not.
    let (mut again, _) =
        WsClient::subscribe(&server, &[("query", "insert:items"), ("from", &pos)]).await?;
    let ahead = "7FFFFFFF00000000-00000001";
    match WsClient::try_connect(&server, &[("query", "insert:items"), ("from", ahead)]).await? {
        Ok(_) => bail!("from={ahead} was accepted"),
        Err((status, body)) => {
            let v: Value = serde_json::from_str(&body)?;
            ensure!(
                status == 409 && v["error"] == "position_ahead",
                "expected 409 position_ahead, got {status} {body}"
            );
        }
    }
    db.exec("INSERT INTO items VALUES (2)").await?;
    let next = again.next_change(STEP).await?;
    ensure!(next["new"]["id"] == 2, "{next}");
    Ok(())
}
