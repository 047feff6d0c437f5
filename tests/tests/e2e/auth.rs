//! Authentication and policies against a real Postgres: every bad token answered 401 before the
//! upgrade (expired, not yet valid, wrong audience, forged, `alg: none`, HS/RS confusion); tokens
//! from the header, the subprotocol and `access_token=`; expiry closes a socket with 4001 unless a
//! fresh token arrives; the admin token; the origin allow-list; and a property test: random
//! policies x random claims x random changes, where the frames each subscriber gets equal a SQL
//! evaluation of the same rules with the claims bound (0 unauthorized rows, none missing), some
//! subscribers through a plugin that sees only the rule's columns.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use walcast_tests::{
    percent_encode, query_string, Frame, PgCluster, TestDb, Walcast, WsClient, STEP,
};

pub(crate) const SECRET: &str = "e2e secret for walcast tokens";
const ADMIN: &str = "e2e-admin-token";

fn keys_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../server/testdata/jwt")
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub(crate) fn hs(claims: &Value, secret: &[u8]) -> Result<String> {
    Ok(encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret)?,
    )?)
}

fn rs(claims: &Value) -> Result<String> {
    let pem = std::fs::read(keys_dir().join("rsa_private.pem"))?;
    Ok(encode(
        &Header::new(Algorithm::RS256),
        claims,
        &EncodingKey::from_rsa_pem(&pem)?,
    )?)
}

pub(crate) fn good(extra: Value) -> Value {
    let mut c = json!({"sub": "u1", "aud": "walcast", "iss": "e2e", "exp": now() + 600});
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

async fn start(db: &TestDb<'_>, policy: Option<&str>) -> Result<Walcast> {
    start_with(db, policy, "", &[]).await
}

/// `start` with more configuration (TOML sections after `[auth]`) and environment variables.
pub(crate) async fn start_with(
    db: &TestDb<'_>,
    policy: Option<&str>,
    extra_toml: &str,
    env: &[(&str, &str)],
) -> Result<Walcast> {
    let mut b = Walcast::builder(db)
        .env("WALCAST_AUTH_MODE", "jwt")
        .env("WALCAST_JWT_SECRET", SECRET)
        .env("WALCAST_JWT_AUDIENCE", "walcast")
        .env("WALCAST_JWT_ISSUER", "e2e")
        .env("WALCAST_ADMIN_TOKEN", ADMIN)
        .env("WALCAST_ALLOWED_ORIGINS", "https://app.example.com");
    for (k, v) in env {
        b = b.env(k, v);
    }
    let rsa = keys_dir().join("rsa_public.pem");
    let mut toml = format!(
        "[auth]\npublic_keys = [{:?}]\nleeway = \"0s\"\n",
        rsa.display().to_string()
    );
    if let Some(policy) = policy {
        let path = std::env::temp_dir().join(format!(
            "walcast-policy-{}.toml",
            walcast_tests::unique_suffix()
        ));
        std::fs::write(&path, policy)?;
        toml.push_str(&format!("policy_file = {:?}\n", path.display().to_string()));
    }
    toml.push_str(extra_toml);
    b = b.config_toml(&toml);
    b.start().await
}

/// Status and error code of a refused `/ws` upgrade.
async fn refused(server: &Walcast, path: &str, headers: &[(&str, &str)]) -> Result<(u16, String)> {
    match WsClient::try_open_with(server, path, headers).await? {
        Ok(_) => bail!("{path} {headers:?}: upgraded, expected a refusal"),
        Err((status, body)) => {
            let v: Value = serde_json::from_str(&body).with_context(|| format!("body {body:?}"))?;
            Ok((status, v["error"].as_str().unwrap_or("").to_owned()))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_and_good_ones_subscribe() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "auth_tokens").await?;
    db.exec("CREATE TABLE auth_t (id int PRIMARY KEY, v text)")
        .await?;
    let server = start(&db, None).await?;
    let path = "/ws?query=*:auth_t";
    let public_pem = std::fs::read(keys_dir().join("rsa_public.pem"))?;
    let b64 = |v: Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            hs(&good(json!({"exp": now() - 30})), SECRET.as_bytes())?,
        ),
        (
            "not yet valid",
            hs(&good(json!({"nbf": now() + 600})), SECRET.as_bytes())?,
        ),
        (
            "wrong audience",
            hs(&good(json!({"aud": "other"})), SECRET.as_bytes())?,
        ),
        (
            "wrong issuer",
            hs(&good(json!({"iss": "other"})), SECRET.as_bytes())?,
        ),
        ("forged", hs(&good(json!({})), b"not the server's secret")?),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(json!({"alg": "none", "typ": "JWT"})),
                b64(good(json!({})))
            ),
        ),
        (
            "HS256 signed with the RSA public key",
            hs(&good(json!({})), &public_pem)?,
        ),
        ("garbage", "abc".into()),
    ];
    for (what, token) in &cases {
        let auth = format!("Bearer {token}");
        let (status, code) = refused(&server, path, &[("authorization", &auth)]).await?;
        ensure!(
            status == 401 && code == "unauthorized",
            "{what}: {status} {code}"
        );
        let q = format!("{path}&access_token={}", percent_encode(token));
        let (status, code) = refused(&server, &q, &[]).await?;
        ensure!(
            status == 401 && code == "unauthorized",
            "{what} (query): {status} {code}"
        );
    }
    let (status, code) = refused(&server, path, &[]).await?;
    ensure!(
        status == 401 && code == "unauthorized",
        "no token: {status} {code}"
    );

    // Good tokens, from each place; an RS256 token from the PEM key too.
    let token = hs(&good(json!({})), SECRET.as_bytes())?;
    let auth = format!("Bearer {token}");
    let (mut by_header, _) = WsClient::try_open_with(&server, path, &[("authorization", &auth)])
        .await?
        .map_err(|e| anyhow::anyhow!("header token refused: {e:?}"))?;
    by_header.expect_subscribed().await?;
    let q = format!(
        "{path}&access_token={}",
        percent_encode(&rs(&good(json!({})))?)
    );
    let (mut by_query, _) = WsClient::try_open_with(&server, &q, &[])
        .await?
        .map_err(|e| anyhow::anyhow!("query token refused: {e:?}"))?;
    by_query.expect_subscribed().await?;
    let protocols = format!("walcast, bearer.{token}");
    let (mut by_protocol, answered) =
        WsClient::try_open_with(&server, path, &[("sec-websocket-protocol", &protocols)])
            .await?
            .map_err(|e| anyhow::anyhow!("subprotocol token refused: {e:?}"))?;
    ensure!(
        answered.as_deref() == Some("walcast"),
        "answered protocol {answered:?}"
    );
    by_protocol.expect_subscribed().await?;
    db.exec("INSERT INTO auth_t VALUES (1, 'x')").await?;
    for c in [&mut by_header, &mut by_query, &mut by_protocol] {
        let change = c.next_change(STEP).await?;
        ensure!(change["new"]["id"] == 1, "{change}");
    }

    // The origin allow-list, before anything else.
    let (status, code) = refused(
        &server,
        path,
        &[
            ("authorization", &auth),
            ("origin", "https://evil.example.com"),
        ],
    )
    .await?;
    ensure!(
        status == 403 && code == "origin_not_allowed",
        "{status} {code}"
    );
    WsClient::try_open_with(
        &server,
        path,
        &[
            ("authorization", &auth),
            ("origin", "https://app.example.com"),
        ],
    )
    .await?
    .map_err(|e| anyhow::anyhow!("allowed origin refused: {e:?}"))?;

    // Admin endpoints: the admin token, not a user's.
    let http = reqwest::Client::new();
    for (bearer, want) in [(None, 401), (Some(token.as_str()), 401), (Some(ADMIN), 200)] {
        for p in ["/metrics", "/v1/subscriptions", "/v1/plugins"] {
            let mut r = http.get(format!("{}{p}", server.http_base()));
            if let Some(b) = bearer {
                r = r.bearer_auth(b);
            }
            let status = r.send().await?.status().as_u16();
            ensure!(status == want, "{p} with {bearer:?}: {status}, want {want}");
        }
    }
    // /listen and /v1/tables need a user token too.
    let (status, code) = refused(&server, "/listen/ch", &[]).await?;
    ensure!(
        status == 401 && code == "unauthorized",
        "listen: {status} {code}"
    );
    let r = http
        .get(format!("{}/v1/tables", server.http_base()))
        .send()
        .await?;
    ensure!(
        r.status().as_u16() == 401,
        "tables without a token: {}",
        r.status()
    );
    let r = http
        .get(format!("{}/v1/tables", server.http_base()))
        .bearer_auth(&token)
        .send()
        .await?;
    ensure!(
        r.status().as_u16() == 200,
        "tables with a token: {}",
        r.status()
    );
    // Health stays open for probes.
    let r = http
        .get(format!("{}/healthz", server.http_base()))
        .send()
        .await?;
    ensure!(r.status().as_u16() == 200, "healthz: {}", r.status());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_closes_4001_unless_a_fresh_one_came() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "auth_expiry").await?;
    db.exec("CREATE TABLE auth_e (id int PRIMARY KEY)").await?;
    let server = start(&db, None).await?;
    let short = hs(&good(json!({"exp": now() + 3})), SECRET.as_bytes())?;
    let path = format!("/ws?query=*:auth_e&access_token={}", percent_encode(&short));
    let open = |p: String| {
        let server = &server;
        async move {
            WsClient::try_open_with(server, &p, &[])
                .await?
                .map(|(c, _)| c)
                .map_err(|e| anyhow::anyhow!("refused: {e:?}"))
        }
    };
    let mut stays = open(path.clone()).await?;
    let mut expires = open(path.clone()).await?;
    stays.expect_subscribed().await?;
    expires.expect_subscribed().await?;
    // A token of another subject is refused and changes nothing.
    let other = hs(
        &good(json!({"sub": "u2", "exp": now() + 600})),
        SECRET.as_bytes(),
    )?;
    stays
        .send_text(&json!({"type": "access_token", "token": other}).to_string())
        .await?;
    stays.expect_error("unauthorized", STEP).await?;
    let fresh = hs(&good(json!({"exp": now() + 600})), SECRET.as_bytes())?;
    stays
        .send_text(&json!({"type": "access_token", "token": fresh}).to_string())
        .await?;
    match stays.next_frame(STEP).await? {
        Frame::Json(v, _)
            if v["type"] == "token_refreshed" && v["exp"].as_i64() > Some(now() + 500) => {}
        other => bail!("expected token_refreshed, got {other:?}"),
    }
    expires.expect_close(4001, Duration::from_secs(10)).await?;
    // Past the first token's expiry the refreshed socket still gets changes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    db.exec("INSERT INTO auth_e VALUES (1)").await?;
    let change = stays.next_change(STEP).await?;
    ensure!(change["new"]["id"] == 1, "{change}");
    Ok(())
}

/// The next change, as a walcast `change` frame or a `format=wal2json-v1` one turned into the
/// same shape (`op`, `new` from `columnnames`/`columnvalues`, `old` from `oldkeys`).
async fn next_change_any(client: &mut WsClient) -> Result<Value> {
    let v = match client.next_frame(STEP).await? {
        Frame::Json(v, _) if v["type"] == "change" => return Ok(v),
        Frame::Json(v, _) if v["kind"].is_string() => v,
        other => bail!("expected a change frame, got {other:?}"),
    };
    let image = |names: &Value, values: &Value| -> Value {
        match (names.as_array(), values.as_array()) {
            (Some(n), Some(vals)) => Value::Object(
                n.iter()
                    .zip(vals)
                    .map(|(k, v)| (k.as_str().unwrap_or("").to_owned(), v.clone()))
                    .collect(),
            ),
            _ => Value::Null,
        }
    };
    Ok(json!({
        "type": "change",
        "op": v["kind"],
        "new": image(&v["columnnames"], &v["columnvalues"]),
        "old": image(&v["oldkeys"]["keynames"], &v["oldkeys"]["keyvalues"]),
    }))
}

/// One generated role: which operations, which columns, which claim-bound filters.
#[derive(Debug, Clone)]
struct GenRole {
    name: String,
    ops: Vec<&'static str>,
    columns: Vec<&'static str>,
    /// SQL for the rule's row filters, with `$sub`/`$tenant` placeholders.
    owner: bool,
    tenant: bool,
    kinds: Option<Vec<&'static str>>,
}

/// A plugin a generated subscriber attaches: `threshold` passing `column >= min` (the column may
/// be one the rule hides: then the guest never sees it and passes nothing), or `redact` masking
/// a column other than `id` and `seq`.
#[derive(Debug, Clone)]
enum GenPlugin {
    Threshold { column: &'static str, min: i64 },
    Redact { column: &'static str },
}

impl GenPlugin {
    fn random(rng: &mut impl Rng) -> Option<GenPlugin> {
        match rng.random_range(0..5) {
            0 if rng.random_bool(0.5) => Some(GenPlugin::Threshold {
                column: "tenant",
                min: rng.random_range(1..4),
            }),
            0 => Some(GenPlugin::Threshold {
                column: "seq",
                min: rng.random_range(1..300),
            }),
            1 => Some(GenPlugin::Redact {
                column: ["owner", "tenant", "kind", "secret"][rng.random_range(0..4)],
            }),
            _ => None,
        }
    }

    fn params(&self) -> Vec<(String, String)> {
        let pairs = match self {
            GenPlugin::Threshold { column, min } => vec![
                ("plugin", "threshold".to_owned()),
                ("plugin.column", (*column).to_owned()),
                ("plugin.value", min.to_string()),
            ],
            GenPlugin::Redact { column } => vec![
                ("plugin", "redact".to_owned()),
                ("plugin.columns", (*column).to_owned()),
            ],
        };
        pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// The rows of `pol_log` it passes under `role`: a threshold on a column the rule hides
    /// passes none (the guest reads it as absent, which drops the change).
    fn sql(&self, role: &GenRole) -> Option<String> {
        match self {
            GenPlugin::Threshold { column, .. } if !role.columns.contains(column) => {
                Some("FALSE".into())
            }
            GenPlugin::Threshold { column: "seq", min } => Some(format!("shown >= {min}")),
            GenPlugin::Threshold { column, min } => Some(format!("{column} >= {min}")),
            GenPlugin::Redact { .. } => None,
        }
    }

    /// Whether it passes the second round's row (tenant 1, seq 5000) under `role`.
    fn passes_second_round(&self, role: &GenRole) -> bool {
        match self {
            GenPlugin::Threshold { column, .. } if !role.columns.contains(column) => false,
            GenPlugin::Threshold {
                column: "tenant",
                min,
            } => *min <= 1,
            GenPlugin::Threshold { .. } | GenPlugin::Redact { .. } => true,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_deliver_exactly_what_sql_says_for_random_rules_claims_and_changes() -> Result<()>
{
    let seed: u64 = std::env::var("WALCAST_POLICY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("policy property test seed {seed} (WALCAST_POLICY_SEED={seed} reruns it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let db = TestDb::new(PgCluster::shared(), "auth_policy").await?;
    db.exec(
        "CREATE TABLE pol (id int PRIMARY KEY, owner text, tenant int, kind text, secret text, seq int);
         ALTER TABLE pol REPLICA IDENTITY FULL;
         CREATE TABLE pol_log (seq int PRIMARY KEY, op text, id int, owner text, tenant int, kind text, secret text, shown int);",
    )
    .await?;
    const OPS: [&str; 3] = ["insert", "update", "delete"];
    const COLS: [&str; 5] = ["owner", "tenant", "kind", "secret", "seq"];
    const KINDS: [&str; 3] = ["a", "b", "c"];
    let mut roles = Vec::new();
    let mut policy = String::from("role_claim = \"role\"\n");
    for r in 0..5 {
        let ops: Vec<&str> = OPS
            .iter()
            .copied()
            .filter(|_| rng.random_bool(0.7))
            .collect();
        let ops = if ops.is_empty() { vec!["insert"] } else { ops };
        let mut columns = vec!["id", "seq"];
        columns.extend(
            COLS.iter()
                .copied()
                .filter(|c| *c != "seq" && rng.random_bool(0.5)),
        );
        let role = GenRole {
            name: format!("r{r}"),
            ops,
            columns,
            owner: rng.random_bool(0.5),
            tenant: rng.random_bool(0.5),
            kinds: rng
                .random_bool(0.4)
                .then(|| {
                    KINDS
                        .iter()
                        .copied()
                        .filter(|_| rng.random_bool(0.6))
                        .collect::<Vec<_>>()
                })
                .filter(|k| !k.is_empty()),
        };
        let mut filters = Vec::new();
        if role.owner {
            filters.push("\"owner.eq.{sub}\"".to_owned());
        }
        if role.tenant {
            filters.push("\"tenant.eq.{claims.tenant}\"".to_owned());
        }
        if let Some(k) = &role.kinds {
            filters.push(format!("\"kind.in.({})\"", k.join(",")));
        }
        policy.push_str(&format!(
            "[roles.{}]\nplugins = [\"*\"]\n[[roles.{}.tables]]\nrule = \"rule-{}\"\ntable = \"public.pol\"\nops = [{}]\ncolumns = [{}]\nfilters = [{}]\n",
            role.name,
            role.name,
            role.name,
            role.ops.iter().map(|o| format!("{o:?}")).collect::<Vec<_>>().join(","),
            role.columns.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join(","),
            filters.join(",")
        ));
        roles.push(role);
    }
    // Raised limits: a request over the defaults must still be bound by its rule.
    let plugin_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
    let plugin_dir = plugin_dir.display().to_string();
    let server = start_with(
        &db,
        Some(&policy),
        "[limits]\nmax_query_bytes = 65536\nmax_conditions = 64\n",
        &[("WALCAST_PLUGIN_DIR", plugin_dir.as_str())],
    )
    .await?;

    // Subscribers: random role and claims, sometimes a filter of their own, sometimes a plugin,
    // sometimes padded past the default query size, with more conditions than the default
    // allows, or in format=wal2json-v1.
    struct Sub {
        role: GenRole,
        sub: String,
        tenant: i64,
        own_min_id: Option<i64>,
        plugin: Option<GenPlugin>,
        client: WsClient,
    }
    let mut subs = Vec::new();
    for _ in 0..12 {
        let role = roles[rng.random_range(0..roles.len())].clone();
        let sub = format!("u{}", rng.random_range(0..3));
        let tenant = rng.random_range(1..4);
        let token = hs(
            &good(json!({"sub": sub, "tenant": tenant, "role": role.name})),
            SECRET.as_bytes(),
        )?;
        let own_min_id = rng.random_bool(0.3).then(|| rng.random_range(0..20));
        let mut params = vec![("query".to_owned(), "*:pol".to_owned())];
        if let Some(m) = own_min_id {
            params.push(("filter".into(), format!("id.gte.{m}")));
        }
        if rng.random_bool(0.3) {
            params.push(("padding".into(), "x".repeat(17 * 1024)));
        }
        if rng.random_bool(0.2) {
            params.extend((0..40).map(|_| ("filter".to_owned(), "id.gte.0".to_owned())));
        }
        if rng.random_bool(0.3) {
            params.push(("format".into(), "wal2json-v1".into()));
        }
        let plugin = GenPlugin::random(&mut rng);
        params.extend(plugin.iter().flat_map(GenPlugin::params));
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let auth = format!("Bearer {token}");
        let (mut client, _) = WsClient::try_open_with(
            &server,
            &format!("/ws?{}", query_string(&pairs)),
            &[("authorization", &auth)],
        )
        .await?
        .map_err(|e| anyhow::anyhow!("subscriber refused: {e:?}"))?;
        client.expect_subscribed().await?;
        subs.push(Sub {
            role,
            sub,
            tenant,
            own_min_id,
            plugin,
            client,
        });
    }

    // Random changes, each logged with the row image the filter sees (new for insert and
    // update, old for delete) and the `seq` the frame shows.
    let mut rows: BTreeMap<i64, (String, i64, String, i64)> = BTreeMap::new();
    let changes = 300;
    for seq in 1..=changes {
        let id = rng.random_range(0..30);
        let owner = format!("u{}", rng.random_range(0..3));
        let tenant = rng.random_range(1..4);
        let kind = KINDS[rng.random_range(0..3)].to_owned();
        let (op, sql, image, shown) = match rows.get(&id).cloned() {
            None => (
                "insert",
                format!("INSERT INTO pol VALUES ({id}, '{owner}', {tenant}, '{kind}', 's{seq}', {seq})"),
                (owner.clone(), tenant, kind.clone()),
                seq,
            ),
            Some(old) if rng.random_bool(0.3) => (
                "delete",
                format!("DELETE FROM pol WHERE id = {id}"),
                (old.0.clone(), old.1, old.2.clone()),
                old.3,
            ),
            Some(_) => (
                "update",
                format!("UPDATE pol SET owner = '{owner}', tenant = {tenant}, kind = '{kind}', secret = 's{seq}', seq = {seq} WHERE id = {id}"),
                (owner.clone(), tenant, kind.clone()),
                seq,
            ),
        };
        match op {
            "delete" => {
                rows.remove(&id);
            }
            _ => {
                rows.insert(id, (owner.clone(), tenant, kind.clone(), seq));
            }
        }
        db.exec(&format!(
            "BEGIN; {sql}; INSERT INTO pol_log VALUES ({seq}, '{op}', {id}, '{}', {}, '{}', 's{seq}', {shown}); COMMIT;",
            image.0, image.1, image.2
        ))
        .await?;
    }
    db.exec("INSERT INTO pol VALUES (1000, 'end', 0, 'z', 'end', 0)")
        .await?;

    let mut checked = 0usize;
    for s in &mut subs {
        // The reference: the same rule and claims as SQL.
        let mut conds = vec![format!(
            "op IN ({})",
            s.role
                .ops
                .iter()
                .map(|o| format!("'{o}'"))
                .collect::<Vec<_>>()
                .join(",")
        )];
        if s.role.owner {
            conds.push(format!("owner = '{}'", s.sub));
        }
        if s.role.tenant {
            conds.push(format!("tenant = {}", s.tenant));
        }
        if let Some(k) = &s.role.kinds {
            conds.push(format!(
                "kind IN ({})",
                k.iter()
                    .map(|k| format!("'{k}'"))
                    .collect::<Vec<_>>()
                    .join(",")
            ));
        }
        if let Some(m) = s.own_min_id {
            conds.push(format!("id >= {m}"));
        }
        conds.extend(s.plugin.as_ref().and_then(|p| p.sql(&s.role)));
        let sql = format!(
            "SELECT op, id, shown FROM pol_log WHERE {} ORDER BY seq",
            conds.join(" AND ")
        );
        let want: Vec<(String, i64, i64)> = db
            .client()
            .query(sql.as_str(), &[])
            .await?
            .iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    i64::from(r.get::<_, i32>(1)),
                    i64::from(r.get::<_, i32>(2)),
                )
            })
            .collect();
        // What walcast sent, up to the end marker (if the role sees inserts; else up to count).
        let mut got = Vec::new();
        let sees_end = s.role.ops.contains(&"insert")
            && !s.role.owner
            && !s.role.tenant
            && s.role.kinds.is_none()
            && !matches!(s.plugin, Some(GenPlugin::Threshold { .. }));
        loop {
            if !sees_end && got.len() == want.len() {
                // Nothing more may come: a later marker would show any extra frame.
                break;
            }
            let v = next_change_any(&mut s.client).await.with_context(|| {
                format!(
                    "role {:?}: after {} of {} frames",
                    s.role,
                    got.len(),
                    want.len()
                )
            })?;
            let image = if v["op"] == "delete" {
                &v["old"]
            } else {
                &v["new"]
            };
            let id = image["id"].as_i64().context("no id")?;
            if id == 1000 {
                break;
            }
            // Only the rule's columns, in both images.
            for img in [&v["new"], &v["old"]] {
                if let Some(obj) = img.as_object() {
                    for k in obj.keys() {
                        ensure!(
                            s.role.columns.contains(&k.as_str()),
                            "role {} ({:?}) got column {k} (allowed {:?})",
                            s.role.name,
                            s.plugin,
                            s.role.columns
                        );
                    }
                    // A rewrite shows the masked column masked (text) or null (tenant).
                    if let Some(GenPlugin::Redact { column }) = &s.plugin {
                        let masked = obj.get(*column).is_none_or(|v| v.is_null() || v == "***");
                        ensure!(masked, "{column} not masked by redact: {v}");
                    }
                }
            }
            let shown = image["seq"].as_i64().context("no seq")?;
            got.push((v["op"].as_str().unwrap_or("").to_owned(), id, shown));
        }
        let unauthorized: Vec<_> = got.iter().filter(|g| !want.contains(g)).collect();
        let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).collect();
        ensure!(
            unauthorized.is_empty() && missing.is_empty() && got.len() == want.len(),
            "seed {seed}, role {:?} sub {} tenant {}: {} unauthorized {:?}, {} missing {:?}",
            s.role,
            s.sub,
            s.tenant,
            unauthorized.len(),
            unauthorized.iter().take(5).collect::<Vec<_>>(),
            missing.len(),
            missing.iter().take(5).collect::<Vec<_>>()
        );
        checked += got.len();
    }
    // A second round makes extra frames visible for subscribers that did not see the marker:
    // every subscriber gets exactly what the next change allows, nothing left over.
    db.exec("INSERT INTO pol VALUES (2000, 'u0', 1, 'a', 'x', 5000)")
        .await?;
    for s in &mut subs {
        let sees = s.role.ops.contains(&"insert")
            && (!s.role.owner || s.sub == "u0")
            && (!s.role.tenant || s.tenant == 1)
            && s.role.kinds.as_ref().is_none_or(|k| k.contains(&"a"))
            && s.plugin
                .as_ref()
                .is_none_or(|p| p.passes_second_round(&s.role));
        if sees {
            let v = next_change_any(&mut s.client).await?;
            ensure!(
                v["new"]["id"] == 2000,
                "role {:?}: left-over frame {v}",
                s.role
            );
        }
    }
    eprintln!(
        "policy property test: {} subscribers, {changes} changes, {checked} frames checked",
        subs.len()
    );
    ensure!(checked > 0, "no frame was checked");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_and_message_rate_limits_answer_with_their_codes() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "auth_limits").await?;
    db.exec("CREATE TABLE lim_t (id int PRIMARY KEY)").await?;
    let server = Walcast::builder(&db)
        .env("WALCAST_MAX_CONNECTIONS", "2")
        .env("WALCAST_MAX_MESSAGES_PER_SECOND", "5")
        .start()
        .await?;
    let (mut first, _) = WsClient::subscribe(&server, &[("query", "*:lim_t")]).await?;
    let (second, _) = WsClient::subscribe(&server, &[("query", "*:lim_t")]).await?;
    let (status, code) = refused(&server, "/ws?query=*:lim_t", &[]).await?;
    ensure!(
        status == 503 && code == "too_many_connections",
        "{status} {code}"
    );
    // /listen counts toward the same total.
    let (status, code) = refused(&server, "/listen/ch", &[]).await?;
    ensure!(
        status == 503 && code == "too_many_connections",
        "listen: {status} {code}"
    );
    // A socket that leaves gives its place back.
    second.close_and_wait(STEP).await?;
    let third = walcast_tests::wait_for(
        "a place after a socket left",
        STEP,
        Duration::from_millis(50),
        || async {
            Ok(WsClient::try_connect(&server, &[("query", "*:lim_t")])
                .await?
                .ok())
        },
    )
    .await?;
    drop(third);
    // 30 messages at once against 5/s (bursts of 10): one rate_limited frame, the rest dropped,
    // and the socket stays usable.
    for k in 0..30 {
        first
            .send_text(&json!({"type": "unsubscribe", "id": format!("x{k}")}).to_string())
            .await?;
    }
    let mut unknown = 0;
    let mut limited = 0;
    loop {
        match first.next_frame(Duration::from_secs(2)).await {
            Ok(Frame::Json(v, _)) if v["error"] == "unknown_subscription" => unknown += 1,
            Ok(Frame::Json(v, _)) if v["error"] == "rate_limited" => limited += 1,
            Ok(other) => bail!("unexpected frame {other:?}"),
            Err(_) => break,
        }
    }
    ensure!(
        limited == 1 && (10..30).contains(&unknown),
        "{unknown} answered, {limited} rate_limited frames"
    );
    db.exec("INSERT INTO lim_t VALUES (1)").await?;
    let change = first.next_change(STEP).await?;
    ensure!(change["new"]["id"] == 1, "{change}");
    let metrics = server.metrics().await?;
    for label in ["connections", "message_rate"] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("walcast_limit_refusals_total")
                    && l.contains(&format!("limit=\"{label}\""))
            })
            .with_context(|| format!("no walcast_limit_refusals_total{{limit={label:?}}}"))?;
        let n: f64 = line.rsplit(' ').next().unwrap_or("0").parse()?;
        ensure!(n >= 1.0, "{line}");
    }
    Ok(())
}
