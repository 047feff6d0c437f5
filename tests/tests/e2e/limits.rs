//! The `[limits]` on hostile input, through a real walcast and Postgres: each limit hit once on
//! `/ws`, answered before the upgrade with its status and code (the message names the limit's
//! key and value), and counted in `walcast_limit_refusals_total{limit=...}`; a `subscribe`
//! message is refused with the same code; a request within the limits is served; a plugin's
//! group cap frees up when a group's last socket closes.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use walcast_tests::{http_error, wait_for, PgCluster, TestDb, Walcast, WsClient, STEP};

const LABELS: [&str; 5] = [
    "query_bytes",
    "conditions",
    "in_list",
    "like_pattern",
    "plugin_groups",
];

/// `walcast_limit_refusals_total{limit="<label>"}`, `None` when the sample is absent.
fn refusals(metrics: &str, label: &str) -> Option<f64> {
    let prefix = format!("walcast_limit_refusals_total{{limit=\"{label}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

async fn counts(server: &Walcast) -> Result<Vec<f64>> {
    let text = server.metrics().await?;
    LABELS
        .iter()
        .map(|l| refusals(&text, l).with_context(|| format!("no sample for limit={l} in:\n{text}")))
        .collect()
}

#[track_caller]
fn check(what: &str, got: (u16, Value), status: u16, code: &str, names: &[&str]) -> Result<()> {
    let (got_status, body) = got;
    if got_status != status || body["error"] != code {
        bail!("{what}: expected {status} {code}, got {got_status} {body}");
    }
    let message = body["message"].as_str().unwrap_or("");
    for name in names {
        if !message.contains(name) {
            bail!("{what}: message {message:?} does not name {name:?}");
        }
    }
    Ok(())
}

fn threshold(value: &str) -> Vec<(&'static str, String)> {
    vec![
        ("query", "insert:people".to_owned()),
        ("plugin", "threshold".to_owned()),
        ("plugin.column", "age".to_owned()),
        ("plugin.value", value.to_owned()),
    ]
}

fn borrowed<'a>(params: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    params.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn each_limit_is_refused_with_its_code_and_counted() -> Result<()> {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
    if !dist.join("threshold.wasm").is_file() {
        bail!(
            "{} is missing: run plugins/build.sh first",
            dist.join("threshold.wasm").display()
        );
    }
    let db = TestDb::new(PgCluster::shared(), "limits").await?;
    db.exec("CREATE TABLE people (id int primary key, name text, age int)")
        .await?;
    // Two limits from the environment, the others at their defaults.
    let server = Walcast::builder(&db)
        .env("WALCAST_PLUGIN_DIR", &dist.display().to_string())
        .env("WALCAST_MAX_CONDITIONS", "4")
        .env("WALCAST_MAX_GROUPS_PER_PLUGIN", "2")
        .start()
        .await?;
    assert_eq!(
        counts(&server).await?,
        vec![0.0; 5],
        "every label starts at 0"
    );

    // query_bytes: 16,384 bytes of decoded parameters by default.
    let long_value = format!("name.eq.{}", "x".repeat(16_400));
    check(
        "query bytes",
        http_error(
            &server,
            &[("query", "insert:people"), ("filter", &long_value)],
        )
        .await?,
        400,
        "query_too_long",
        &["limits.max_query_bytes = 16384"],
    )?;

    // conditions: 4 here (WALCAST_MAX_CONDITIONS); the query's condition counts.
    let five = [
        ("query", "insert:people:age.gt.1"),
        ("filter", "age.lt.100"),
        ("filter", "id.gt.0"),
        ("filter", "name.neq.x"),
        ("filter", "name.neq.y"),
    ];
    check(
        "conditions",
        http_error(&server, &five).await?,
        400,
        "too_many_conditions",
        &["5 conditions", "limits.max_conditions = 4"],
    )?;

    // in_list: 1,000 items by default.
    let items: Vec<String> = (0..1001).map(|i| i.to_string()).collect();
    let in_list = format!("insert:people:age.in.({})", items.join(","));
    check(
        "in list",
        http_error(&server, &[("query", &in_list)]).await?,
        400,
        "in_list_too_long",
        &["\"age\"", "limits.max_in_list = 1000"],
    )?;

    // like_pattern: 1,024 bytes by default.
    let like = format!("name.like.%{}%", "a".repeat(1100));
    check(
        "like pattern",
        http_error(&server, &[("query", "insert:people"), ("filter", &like)]).await?,
        400,
        "like_pattern_too_long",
        &["\"name\"", "1102 bytes", "limits.max_like_pattern = 1024"],
    )?;

    // plugin_groups: 2 here (WALCAST_MAX_GROUPS_PER_PLUGIN). Two sockets hold two groups; a
    // third parameter set is refused, a socket joining a running group is not.
    let (g1, _) = WsClient::subscribe(&server, &borrowed(&threshold("1"))).await?;
    let (_g2, _) = WsClient::subscribe(&server, &borrowed(&threshold("2"))).await?;
    check(
        "plugin groups",
        http_error(&server, &borrowed(&threshold("3"))).await?,
        503,
        "too_many_plugin_groups",
        &["\"threshold\"", "limits.max_groups_per_plugin = 2"],
    )?;
    let (_joined, _) = WsClient::subscribe(&server, &borrowed(&threshold("2"))).await?;

    assert_eq!(
        counts(&server).await?,
        vec![1.0; 5],
        "each refusal counted once under its label"
    );

    // The same refusal for a `subscribe` message on an open socket: an error frame with the
    // code, and the count moves.
    let mut socket = WsClient::connect(&server, &[]).await?;
    let subscribe = serde_json::json!({
        "type": "subscribe",
        "id": "many",
        "query": "insert:people",
        "filter": ["age.gt.1", "age.lt.100", "id.gt.0", "name.neq.x", "name.neq.y"],
    });
    socket.send_text(&subscribe.to_string()).await?;
    let frame = socket.expect_error("too_many_conditions", STEP).await?;
    assert_eq!(frame["id"], "many", "{frame}");
    assert!(
        frame["message"]
            .as_str()
            .is_some_and(|m| m.contains("limits.max_conditions = 4")),
        "{frame}"
    );
    assert_eq!(counts(&server).await?[1], 2.0);

    // Within the limits: 4 conditions, a 1,000-item in list and a 1,024-byte pattern are served.
    let in_ok = format!(
        "age.in.({})",
        (0..1000)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let like_ok = format!("name.like.%{}%", "b".repeat(1022));
    let (mut ok, _) = WsClient::subscribe(
        &server,
        &[
            ("query", "insert:people:id.gt.0"),
            ("filter", &in_ok),
            ("filter", "name.like.A%"),
            ("filter", "name.neq.x"),
        ],
    )
    .await?;
    let (mut ok_like, _) =
        WsClient::subscribe(&server, &[("query", "insert:people"), ("filter", &like_ok)]).await?;
    db.exec(&format!(
        "INSERT INTO people VALUES (1, 'Ann', 5000), (2, 'Al', 42), (3, 'x{}y', 1)",
        "b".repeat(1022)
    ))
    .await?;
    let change = ok.next_change(STEP).await?;
    assert_eq!(change["new"]["id"], 2, "{change}");
    let change = ok_like.next_change(STEP).await?;
    assert_eq!(change["new"]["id"], 3, "{change}");

    // Closing the last socket of a group frees its place: the third parameter set gets in.
    g1.close_and_wait(STEP).await?;
    wait_for(
        "the group of a closed socket to free its place",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            Ok(WsClient::try_connect(&server, &borrowed(&threshold("3")))
                .await?
                .ok())
        },
    )
    .await?;
    Ok(())
}
