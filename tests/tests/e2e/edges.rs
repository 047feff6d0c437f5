//! The edges a browser, a proxy or an operator meets: which pages and host names may reach the
//! sockets (origins, DNS rebinding), per-address limits behind a trusted proxy and per IPv6 /64,
//! a plain GET of `/ws` that does no subscription work, channel names Postgres cannot take, the
//! LISTEN connection's backoff, and a start-up that waits for a Postgres that is not up yet.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use walcast_tests::{
    metric_value, percent_encode, unique_suffix, wait_for, Frame, PgCluster, PgOptions, TestDb,
    Walcast, WalcastBuilder, WsClient, STEP,
};

use crate::LONG;

/// Status and error code of a refused upgrade (fails when it was upgraded).
async fn refused(server: &Walcast, path: &str, headers: &[(&str, &str)]) -> Result<(u16, String)> {
    match WsClient::try_open_with(server, path, headers).await? {
        Ok(_) => bail!("{path} {headers:?}: upgraded, expected a refusal"),
        Err((status, body)) => {
            let v: Value = serde_json::from_str(&body).with_context(|| format!("body {body:?}"))?;
            Ok((status, v["error"].as_str().unwrap_or("").to_owned()))
        }
    }
}

/// An upgrade that must succeed.
async fn upgraded(server: &Walcast, path: &str, headers: &[(&str, &str)]) -> Result<WsClient> {
    match WsClient::try_open_with(server, path, headers).await? {
        Ok((client, _)) => Ok(client),
        Err((status, body)) => bail!("{path} {headers:?}: refused with {status} {body}"),
    }
}

/// A plain GET (no upgrade headers): status, headers and the body as JSON (`Null` when it is
/// not JSON).
async fn plain_get(
    server: &Walcast,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, reqwest::header::HeaderMap, Value)> {
    let mut request = reqwest::Client::new().get(format!("{}{path}", server.http_base()));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await?;
    Ok((
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_other_sites_need_an_allowed_origin() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "edge_origin").await?;
    db.exec("CREATE TABLE edge_o (id int PRIMARY KEY)").await?;
    let server = Walcast::start(&db).await?;
    let port = server.addr().port();
    let ws = "/ws?query=*:edge_o";

    // Without http.allowed_origins, another site's page is refused on both socket routes.
    for path in [ws, "/listen/edge_ch"] {
        let (status, code) = refused(&server, path, &[("origin", "https://evil.example")]).await?;
        ensure!(
            status == 403 && code == "origin_not_allowed",
            "{path}: {status} {code}"
        );
    }
    // Loopback pages (a developer's app on another port), this server's own page, and clients
    // that are no browser pass.
    let own = format!("http://127.0.0.1:{port}");
    for origin in [
        Some("http://localhost:3000"),
        Some("http://127.0.0.1:5173"),
        Some("http://[::1]:8080"),
        Some(own.as_str()),
        None,
    ] {
        let headers: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
        let mut c = upgraded(&server, ws, &headers).await?;
        c.expect_subscribed().await?;
        upgraded(&server, "/listen/edge_ch", &headers).await?;
    }

    // A list replaces the loopback default; `["*"]` lets every page in. Each walcast of the
    // test streams from a slot of its own.
    let listed = Walcast::builder(&db)
        .env("WALCAST_SLOT", &format!("{}_listed", db.slot()))
        .env("WALCAST_ALLOWED_ORIGINS", "https://app.example")
        .start()
        .await?;
    upgraded(&listed, ws, &[("origin", "https://app.example")]).await?;
    let (status, code) = refused(&listed, ws, &[("origin", "http://localhost:3000")]).await?;
    ensure!(
        status == 403 && code == "origin_not_allowed",
        "{status} {code}"
    );
    drop(listed);
    let open = Walcast::builder(&db)
        .env("WALCAST_SLOT", &format!("{}_open", db.slot()))
        .env("WALCAST_ALLOWED_ORIGINS", "*")
        .start()
        .await?;
    upgraded(&open, ws, &[("origin", "https://evil.example")]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_must_name_a_host_this_server_answers_to() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "edge_host").await?;
    db.exec("CREATE TABLE edge_h (id int PRIMARY KEY)").await?;
    let server = Walcast::start(&db).await?;
    let port = server.addr().port();
    let ws = "/ws?query=*:edge_h";

    // DNS rebinding: a page of rebound.example whose name now resolves to walcast is, to the
    // browser, same-origin; its Host header gives it away. Every route that reads data refuses.
    let rebound = format!("rebound.example:{port}");
    let rebound_origin = format!("http://{rebound}");
    let (status, code) = refused(
        &server,
        ws,
        &[("host", &rebound), ("origin", &rebound_origin)],
    )
    .await?;
    ensure!(
        status == 403 && code == "host_not_allowed",
        "{status} {code}"
    );
    for path in [
        ws,
        "/listen/edge_ch",
        "/v1/tables",
        "/",
        "/assets/viewer.js",
        "/metrics",
        "/v1/subscriptions",
    ] {
        let (status, _, body) = plain_get(&server, path, &[("host", &rebound)]).await?;
        ensure!(
            status == 403 && body["error"] == "host_not_allowed",
            "{path}: {status} {body}"
        );
    }
    // The probes answer whatever name a load balancer uses; IP literals and loopback names are
    // always this server.
    for path in ["/healthz", "/readyz"] {
        let (status, _, body) = plain_get(&server, path, &[("host", &rebound)]).await?;
        ensure!(status == 200, "{path}: {status} {body}");
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let (status, _, body) = plain_get(&server, "/v1/tables", &[("host", &host)]).await?;
        ensure!(status == 200, "{host}: {status} {body}");
    }

    // A listed name passes, others do not; `["*"]` turns the check off.
    let listed = Walcast::builder(&db)
        .env("WALCAST_SLOT", &format!("{}_listed", db.slot()))
        .env("WALCAST_PUBLIC_HOSTS", "walcast.test")
        .start()
        .await?;
    let port = listed.addr().port();
    let name = format!("walcast.test:{port}");
    let (status, _, body) = plain_get(&listed, "/v1/tables", &[("host", &name)]).await?;
    ensure!(status == 200, "listed host: {status} {body}");
    let name_origin = format!("http://{name}");
    upgraded(&listed, ws, &[("host", &name), ("origin", &name_origin)]).await?;
    let other = format!("other.test:{port}");
    let (status, _, body) = plain_get(&listed, "/v1/tables", &[("host", &other)]).await?;
    ensure!(
        status == 403 && body["error"] == "host_not_allowed",
        "{status} {body}"
    );
    drop(listed);
    let open = Walcast::builder(&db)
        .env("WALCAST_SLOT", &format!("{}_open", db.slot()))
        .env("WALCAST_PUBLIC_HOSTS", "*")
        .start()
        .await?;
    let anywhere = format!("anything.example:{}", open.addr().port());
    let (status, _, body) = plain_get(&open, "/v1/tables", &[("host", &anywhere)]).await?;
    ensure!(status == 200, "{status} {body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_address_limits_see_through_trusted_proxies_and_count_ipv6_by_64() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "edge_proxy").await?;
    db.exec("CREATE TABLE edge_p (id int PRIMARY KEY)").await?;
    // The test connects from 127.0.0.1: here, the proxy.
    let server = Walcast::builder(&db)
        .env("WALCAST_MAX_CONNECTIONS_PER_IP", "2")
        .env("WALCAST_TRUSTED_PROXIES", "127.0.0.0/8, 10.0.0.0/8")
        .start()
        .await?;
    let ws = "/ws?query=*:edge_p";
    let mut held = Vec::new();
    // One IPv6 host holds a whole /64: its addresses count as one.
    for xff in ["2001:db8:1:2::1", "2001:db8:1:2::2"] {
        held.push(upgraded(&server, ws, &[("x-forwarded-for", xff)]).await?);
    }
    let (status, code) = refused(&server, ws, &[("x-forwarded-for", "2001:db8:1:2::3")]).await?;
    ensure!(
        status == 429 && code == "too_many_connections_from_ip",
        "a third address of the /64: {status} {code}"
    );
    held.push(upgraded(&server, ws, &[("x-forwarded-for", "2001:db8:1:3::1")]).await?);

    // The client is the rightmost hop the trusted proxies did not write: what a client puts at
    // the left is its own invention and changes nothing. Trusted inner hops are skipped.
    for xff in [
        "203.0.113.1, 198.51.100.7",
        "203.0.113.2, 198.51.100.7, 10.1.1.1",
    ] {
        held.push(upgraded(&server, ws, &[("x-forwarded-for", xff)]).await?);
    }
    let (status, code) = refused(
        &server,
        ws,
        &[("x-forwarded-for", "203.0.113.3, 198.51.100.7")],
    )
    .await?;
    ensure!(
        status == 429 && code == "too_many_connections_from_ip",
        "the same client with another invented hop: {status} {code}"
    );

    // RFC 7239 `Forwarded`, and /listen counts toward the same address.
    held.push(upgraded(&server, ws, &[("forwarded", "for=198.51.100.8;proto=http")]).await?);
    held.push(
        upgraded(
            &server,
            "/listen/edge_ch",
            &[("forwarded", "for=198.51.100.8")],
        )
        .await?,
    );
    let (status, code) = refused(
        &server,
        ws,
        &[("forwarded", r#"for="[2001:db8::5]", for=198.51.100.8"#)],
    )
    .await?;
    ensure!(
        status == 429 && code == "too_many_connections_from_ip",
        "Forwarded: {status} {code}"
    );

    // Without trusted proxies the headers are nobody's word: the peer (loopback, not counted)
    // is the client.
    let plain = Walcast::builder(&db)
        .env("WALCAST_SLOT", &format!("{}_plain", db.slot()))
        .env("WALCAST_MAX_CONNECTIONS_PER_IP", "1")
        .start()
        .await?;
    for _ in 0..3 {
        held.push(upgraded(&plain, ws, &[("x-forwarded-for", "198.51.100.9")]).await?);
    }
    Ok(())
}

/// A fresh plugin directory with `threshold` from `plugins/dist` (built by `plugins/build.sh`).
fn plugin_dir() -> Result<std::path::PathBuf> {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
    let dir = std::env::temp_dir().join(format!("walcast-edge-plugins-{}", unique_suffix()));
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(dist.join("threshold.wasm"), dir.join("threshold.wasm"))
        .with_context(|| format!("{}: run plugins/build.sh first", dist.display()))?;
    Ok(dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_get_of_ws_answers_what_needs_no_lookup_then_426() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "edge_plain").await?;
    db.exec("CREATE TABLE edge_g (id int PRIMARY KEY, v int)")
        .await?;
    let plugins = plugin_dir()?;
    let server = Walcast::builder(&db)
        .env("WALCAST_PLUGIN_DIR", &plugins.display().to_string())
        .env("WALCAST_MAX_GROUPS_PER_PLUGIN", "1")
        .env("WALCAST_TABLES", "public.edge_*")
        .start()
        .await?;
    let result = async {
        // No catalog query: a table that does not exist is no syntax error.
        let (status, headers, body) = plain_get(&server, "/ws?query=*:edge_missing", &[]).await?;
        ensure!(
            status == 426 && body["error"] == "upgrade_required",
            "{status} {body}"
        );
        ensure!(
            headers.get("upgrade").and_then(|v| v.to_str().ok()) == Some("websocket"),
            "{headers:?}"
        );
        // The upgrade does look it up.
        let (status, body) =
            walcast_tests::http_error(&server, &[("query", "*:edge_missing")]).await?;
        ensure!(
            status == 400 && body["error"] == "unknown_table",
            "{status} {body}"
        );

        // No plugin instance: the plugin's one group slot is taken, and a plain GET with other
        // params (or params its walcast_init refuses) neither meets the cap nor runs the guest.
        let (_holder, _) = WsClient::subscribe(
            &server,
            &[
                ("query", "*:edge_g"),
                ("plugin", "threshold"),
                ("plugin.column", "v"),
                ("plugin.value", "1"),
            ],
        )
        .await?;
        for query in [
            "/ws?query=*:edge_g&plugin=threshold&plugin.column=v&plugin.value=2",
            "/ws?query=*:edge_g&plugin=threshold",
        ] {
            let (status, _, body) = plain_get(&server, query, &[]).await?;
            ensure!(
                status == 426 && body["error"] == "upgrade_required",
                "{query}: {status} {body}"
            );
        }
        let (status, body) = walcast_tests::http_error(
            &server,
            &[
                ("query", "*:edge_g"),
                ("plugin", "threshold"),
                ("plugin.column", "v"),
                ("plugin.value", "2"),
            ],
        )
        .await?;
        ensure!(
            status == 503 && body["error"] == "too_many_plugin_groups",
            "the upgrade meets the cap the plain GET did not: {status} {body}"
        );

        // What needs nothing but the request is still answered.
        for (path, want_status, want_code) in [
            ("/ws", 400, "missing_query"),
            ("/ws?query=*:edge_g&query=*:edge_g", 400, "bad_query"),
            ("/ws?query=nope:edge_g", 400, "unknown_change_type"),
            ("/ws?query=*:other_t", 403, "table_not_allowed"),
            ("/ws?query=*:edge_g&from=0%2F16B3748", 400, "bad_position"),
            ("/ws?query=*:edge_g&sub=a%20b", 400, "bad_subscription_name"),
            ("/ws?query=*:edge_g&snapshot=maybe", 400, "bad_query"),
            // The hub's position is in memory: no journal read tells a position never reached.
            (
                "/ws?query=*:edge_g&from=7FFFFFFFFFFFFFFF-00000000",
                409,
                "position_ahead",
            ),
            ("/listen/edge_ch", 426, "upgrade_required"),
        ] {
            let (status, _, body) = plain_get(&server, path, &[]).await?;
            ensure!(
                status == want_status && body["error"] == want_code,
                "{path}: {status} {body}, want {want_status} {want_code}"
            );
        }
        Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&plugins);
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_names_no_statement_can_carry_are_400() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "edge_chname").await?;
    let server = Walcast::start(&db).await?;
    let mut json = upgraded(&server, "/listen/edge_ok?format=json", &[]).await?;
    // A NUL byte, or a name Postgres would truncate (and deliver another name's notifications
    // to): before the upgrade, and on a plain GET.
    let long = "x".repeat(64);
    for channel in ["a\0b", long.as_str()] {
        let path = format!("/listen/{}", percent_encode(channel));
        let (status, code) = refused(&server, &path, &[]).await?;
        ensure!(
            status == 400 && code == "bad_channel",
            "{channel:?}: {status} {code}"
        );
        let (status, _, body) = plain_get(&server, &path, &[]).await?;
        ensure!(
            status == 400 && body["error"] == "bad_channel",
            "plain GET {channel:?}: {status} {body}"
        );
    }
    upgraded(&server, &format!("/listen/{}", "y".repeat(63)), &[]).await?;
    // The relay's connection was never disturbed.
    db.client()
        .execute("SELECT pg_notify('edge_ok', 'still here')", &[])
        .await?;
    match json.next_frame(STEP).await? {
        Frame::Json(v, _) if v["type"] == "notify" && v["payload"] == "still here" => {}
        other => bail!("json socket: {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_postgres_refuses_fails_its_own_request_only() -> Result<()> {
    // LATIN1 has no emoji: LISTEN on such a name is a statement error on the LISTEN connection.
    let db = TestDb::with_options(
        PgCluster::shared(),
        "edge_latin1",
        " ENCODING 'LATIN1' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'",
    )
    .await?;
    let server = Walcast::start(&db).await?;
    let mut json = upgraded(&server, "/listen/edge_ok?format=json", &[]).await?;
    let mut plain = upgraded(&server, "/listen/edge_ok", &[]).await?;
    // Postgres refuses the LISTEN: this request gets it, with Postgres's reason.
    let path = format!("/listen/{}", percent_encode("edge_🌍"));
    match WsClient::try_open(&server, &path).await? {
        Ok(_) => bail!("a channel Postgres cannot take was upgraded"),
        Err((status, body)) => {
            let v: Value = serde_json::from_str(&body)?;
            ensure!(
                status == 400 && v["error"] == "bad_channel",
                "{status} {body}"
            );
            ensure!(
                v["message"].as_str().unwrap_or("").contains("LATIN1"),
                "the message says why: {body}"
            );
        }
    }
    // ... and no one else: the other channel's sockets keep their connection, without a gap.
    db.client()
        .execute("SELECT pg_notify('edge_ok', 'still here')", &[])
        .await?;
    match json.next_frame(STEP).await? {
        Frame::Json(v, _) if v["type"] == "notify" && v["payload"] == "still here" => {}
        other => bail!("json socket: {other:?}"),
    }
    ensure!(plain.next_text(STEP).await? == "still here");
    let gaps = metric_value(&server.metrics().await?, "walcast_notify_gaps_total");
    ensure!(gaps == Some(0.0), "notify gaps: {gaps:?}");
    Ok(())
}

/// The pid of the relay's LISTEN connection, once it has listened.
async fn listen_backend(db: &TestDb<'_>, not: Option<i32>) -> Result<i32> {
    wait_for(
        "the relay's LISTEN connection",
        LONG,
        Duration::from_millis(20),
        || async {
            let rows = db
                .client()
                .query(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
                     AND query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| r.get::<_, i32>(0))
                .find(|pid| Some(*pid) != not))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reconnect_of_the_listen_connection_waits_longer() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "edge_backoff").await?;
    let server = Walcast::builder(&db)
        .env("WALCAST_LOG_FORMAT", "json")
        .start()
        .await?;
    let mut socket = upgraded(&server, "/listen/edge_bo?format=json", &[]).await?;
    // The connection dies as soon as it is back, four times over.
    let mut pid = listen_backend(&db, None).await?;
    for _ in 0..4 {
        db.client()
            .execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await?;
        pid = listen_backend(&db, Some(pid)).await?;
    }
    // Each loss is logged with the wait before the next attempt.
    let delays: Vec<u64> = server
        .stderr()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("NOTIFY relay: connection lost"))
        })
        .map(|v| {
            v["retry_in_ms"]
                .as_u64()
                .with_context(|| format!("a reconnect without a wait: {v}"))
        })
        .collect::<Result<_>>()?;
    ensure!(delays.len() == 4, "{delays:?}");
    ensure!(
        delays[0] >= 200 && delays.windows(2).all(|w| w[1] > w[0]),
        "each quick loss waits longer than the last: {delays:?}"
    );
    // Still relaying, and the socket heard of the gaps.
    db.client()
        .execute("SELECT pg_notify('edge_bo', 'back')", &[])
        .await?;
    let mut gaps = 0;
    loop {
        match socket.next_frame(STEP).await? {
            Frame::Json(v, _) if v["type"] == "notify_gap" => gaps += 1,
            Frame::Json(v, _) if v["payload"] == "back" => break,
            other => bail!("{other:?}"),
        }
    }
    ensure!(gaps == 4, "{gaps} notify_gap frames");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_waits_for_a_postgres_that_is_not_up_yet() -> Result<()> {
    // initdb'd, not started: a compose file that starts walcast first.
    let cluster = PgCluster::create(PgOptions::default())?;
    let url = cluster.tcp_url("postgres", "postgres", None);
    let slot = format!("s_edge_wait_{}", unique_suffix());
    let server = WalcastBuilder::for_url(&url, &slot, "edge_wait")
        .spawn()
        .await?;
    // Each attempt is logged with the server's address and the cause, and retried.
    let target = format!("127.0.0.1:{}", cluster.port());
    wait_for(
        "two logged attempts",
        LONG,
        Duration::from_millis(50),
        || async {
            let attempts = server
                .stderr()
                .lines()
                .filter(|l| {
                    l.contains("cannot reach Postgres yet")
                        && l.contains(&target)
                        && l.to_lowercase().contains("connection refused")
                })
                .count();
            Ok((attempts >= 2).then_some(()))
        },
    )
    .await
    .with_context(|| server.stderr_tail(20))?;
    let (status, body) = server.get("/readyz").await?;
    ensure!(status == 503, "readyz while waiting: {status} {body}");
    let (status, _) = server.get("/healthz").await?;
    ensure!(status == 200, "healthz while waiting: {status}");
    let (status, body) = server.get("/v1/tables").await?;
    ensure!(
        status == 503 && body.contains("\"starting\""),
        "{status} {body}"
    );
    ensure!(
        !server.stdout().contains("people"),
        "the demo's hint against a user's database: {}",
        server.stdout()
    );

    cluster.start()?;
    wait_for("/readyz 200", LONG, Duration::from_millis(50), || async {
        Ok((server.get("/readyz").await?.0 == 200).then_some(()))
    })
    .await
    .with_context(|| server.stderr_tail(20))?;
    let pg = cluster.connect("postgres").await?;
    pg.batch_execute("CREATE TABLE edge_w (id int PRIMARY KEY)")
        .await?;
    let (mut client, _) = WsClient::subscribe(&server, &[("query", "*:edge_w")]).await?;
    pg.execute("INSERT INTO edge_w VALUES (1)", &[]).await?;
    let change = client.next_change(STEP).await?;
    ensure!(change["new"]["id"] == 1, "{change}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_stops_at_once_on_what_waiting_cannot_fix() -> Result<()> {
    let cluster = PgCluster::shared();
    let target = format!("127.0.0.1:{}", cluster.port());
    let url = cluster.tcp_url("edge_no_such_db", "postgres", None);
    let (status, stdout, stderr) = WalcastBuilder::for_url(&url, "s_edge_nodb", "edge_nodb")
        .run_to_exit(LONG)
        .await?;
    ensure!(status.code() == Some(1), "{status}: {stderr}");
    ensure!(
        stderr.contains("database does not exist") && stderr.contains(&target),
        "the message names the server and the cause: {stderr}"
    );
    ensure!(
        stdout.contains("walcast listening on") && !stdout.contains("people"),
        "no demo hint against a user's database: {stdout}"
    );
    // A DATABASE_URL that cannot work is a configuration to fix: exit code 2.
    let no_user = format!("postgres://{target}/postgres");
    let (status, _, stderr) = WalcastBuilder::for_url(&no_user, "s_edge_nouser", "edge_nouser")
        .run_to_exit(LONG)
        .await?;
    ensure!(
        status.code() == Some(2) && stderr.contains("names no user"),
        "{status}: {stderr}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidated_slot_stops_walcast_with_the_fix() -> Result<()> {
    // A stopped walcast's slot holds WAL; past max_slot_wal_keep_size Postgres invalidates it.
    let cluster = PgCluster::create(PgOptions {
        settings: vec![("max_slot_wal_keep_size".into(), "1MB".into())],
        ..PgOptions::default()
    })?;
    cluster.start()?;
    let url = cluster.tcp_url("postgres", "postgres", None);
    let slot = format!("s_edge_lost_{}", unique_suffix());
    let mut first = WalcastBuilder::for_url(&url, &slot, "edge_lost")
        .start()
        .await?;
    first.terminate()?;
    first.wait_exit(LONG).await?;

    let pg = cluster.connect("postgres").await?;
    pg.batch_execute("CREATE TABLE edge_filler (id int, t text)")
        .await?;
    wait_for(
        "the slot to be lost",
        LONG,
        Duration::from_millis(10),
        || async {
            pg.batch_execute(
            "INSERT INTO edge_filler SELECT g, repeat('x', 200) FROM generate_series(1, 50000) g; \
             SELECT pg_switch_wal(); CHECKPOINT;",
        )
        .await?;
            let row = pg
                .query_one(
                    "SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )
                .await?;
            Ok((row.get::<_, Option<String>>(0).as_deref() == Some("lost")).then_some(()))
        },
    )
    .await?;

    // Retrying cannot bring the WAL back: walcast stops, saying what happened and the fix.
    let (status, _, stderr) = WalcastBuilder::for_url(&url, &slot, "edge_lost_again")
        .run_to_exit(LONG)
        .await?;
    ensure!(status.code() == Some(1), "{status}: {stderr}");
    ensure!(
        stderr.contains("invalidated")
            && stderr.contains(&slot)
            && stderr.contains("pg_drop_replication_slot")
            && stderr.contains("max_slot_wal_keep_size"),
        "{stderr}"
    );
    Ok(())
}
