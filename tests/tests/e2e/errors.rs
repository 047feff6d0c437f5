//! Requests refused before the upgrade: every documented 400 code and the 403 allow-list answer,
//! each with a JSON body `{"error": code, "message": text}`.

use anyhow::Result;
use walcast_tests::{http_error, PgCluster, TestDb, Walcast, WsClient};

#[tokio::test]
async fn bad_requests_get_400_with_a_code() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "errors").await?;
    db.exec("CREATE TABLE people (id int primary key, name text, age int, active bool)")
        .await?;
    let server = Walcast::start(&db).await?;

    // A plain HTTP request without `query=`: 400 (a WebSocket upgrade without it opens an empty
    // socket for `subscribe` messages: see multiplex.rs).
    let (status, body) = server.get("/ws").await?;
    let body: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("missing_query")),
        "{body}"
    );

    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("bad_query", vec![("query", "insert")]),
        ("unknown_change_type", vec![("query", "upsert:people")]),
        ("unknown_change_type", vec![("query", "insert,nope:people")]),
        ("unknown_table", vec![("query", "insert:no_such_table")]),
        (
            "unknown_table",
            vec![("query", "insert:other_schema.people")],
        ),
        ("unknown_column", vec![("query", "insert:people:nope.eq.1")]),
        (
            "unknown_column",
            vec![("query", "insert:people"), ("filter", "nope.eq.1")],
        ),
        (
            "unknown_column",
            vec![("query", "insert:people"), ("select", "id,nope")],
        ),
        ("bad_operator", vec![("query", "insert:people:age.foo.1")]),
        (
            "bad_operator",
            vec![("query", "insert:people"), ("filter", "age.not.nope.1")],
        ),
        ("bad_value", vec![("query", "insert:people:age.eq.abc")]),
        (
            "bad_value",
            vec![("query", "insert:people:active.is.maybe")],
        ),
        (
            "unknown_plugin",
            vec![("query", "insert:people"), ("plugin", "nope")],
        ),
    ];
    let mut failures = Vec::new();
    for (code, params) in &cases {
        match http_error(&server, params).await {
            Ok((400, body))
                if body["error"] == *code
                    && body["message"].as_str().is_some_and(|m| !m.is_empty()) => {}
            Ok((status, body)) => failures.push(format!(
                "{params:?}: expected 400 {code}, got {status} {body}"
            )),
            Err(e) => failures.push(format!("{params:?}: {e:#}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The same refusal reaches a real WebSocket client as a failed handshake, and the server
    // keeps serving good requests.
    let refused = WsClient::connect(&server, &[("query", "upsert:people")]).await;
    assert!(refused.is_err(), "upgrade must be refused");
    WsClient::subscribe(&server, &[("query", "insert:people")]).await?;
    Ok(())
}

#[tokio::test]
async fn table_outside_allow_list_is_403() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "allow").await?;
    db.exec(
        "CREATE TABLE allowed_a (id int primary key); CREATE TABLE secret (id int primary key)",
    )
    .await?;
    let server = Walcast::builder(&db)
        .env("WALCAST_TABLES", "public.allowed_*")
        .start()
        .await?;

    let (status, body) = http_error(&server, &[("query", "insert:secret")]).await?;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "table_not_allowed", "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );

    let (mut c, _) = WsClient::subscribe(&server, &[("query", "insert:allowed_a")]).await?;
    db.exec("INSERT INTO secret VALUES (1); INSERT INTO allowed_a VALUES (2)")
        .await?;
    let ch = c.next_change(walcast_tests::STEP).await?;
    assert_eq!(ch["new"]["id"], 2, "{ch}");
    Ok(())
}
