//! Plugins under a policy rule that hides columns, against a real Postgres, JWT and policy file:
//! the guest sees only the rule's columns, so `threshold` on a hidden column selects no row (live
//! changes and snapshot rows), and `redact`'s rewrites carry only the rule's columns in both
//! formats, live and replayed with `from=`.
//!
//! A subscription whose plugin drops every change never gets a frame that says "nothing more is
//! coming", so the table lives in a SQL_ASCII database and the last change writes a byte that is
//! not UTF-8: walcast cannot decode it and tells every subscriber of the table with a
//! `decode_failed` frame, in order, plugin or not. That frame is each subscription's end marker.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use walcast_tests::{query_string, Frame, PgCluster, TestDb, Walcast, WsClient, STEP};

const SECRET: &str = "e2e secret for policy plugins";

const POLICY: &str = r#"
role_claim = "role"

[roles.viewer]
plugins = ["*"]

[[roles.viewer.tables]]
rule = "no-pay"
table = "public.staff"
columns = ["id", "name"]
"#;

/// A directory holding copies of the built plugins, removed on drop.
struct PluginDir(PathBuf);

impl PluginDir {
    fn new(names: &[&str]) -> Result<PluginDir> {
        let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/dist");
        let dir = std::env::temp_dir().join(format!(
            "walcast-policy-plugins-{}",
            walcast_tests::unique_suffix()
        ));
        std::fs::create_dir_all(&dir)?;
        for name in names {
            let src = dist.join(format!("{name}.wasm"));
            std::fs::copy(&src, dir.join(format!("{name}.wasm"))).with_context(|| {
                format!("{} missing: run plugins/build.sh first", src.display())
            })?;
        }
        Ok(PluginDir(dir))
    }
}

impl Drop for PluginDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start(db: &TestDb<'_>, plugins: &PluginDir) -> Result<Walcast> {
    let policy = std::env::temp_dir().join(format!(
        "walcast-policy-{}.toml",
        walcast_tests::unique_suffix()
    ));
    std::fs::write(&policy, POLICY)?;
    Walcast::builder(db)
        .env("WALCAST_AUTH_MODE", "jwt")
        .env("WALCAST_JWT_SECRET", SECRET)
        .env("WALCAST_PLUGIN_DIR", &plugins.0.display().to_string())
        .config_toml(&format!(
            "[auth]\npolicy_file = {:?}\n",
            policy.display().to_string()
        ))
        .start()
        .await
}

fn viewer_token() -> Result<String> {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 600;
    let claims = json!({"sub": "u1", "role": "viewer", "exp": exp});
    Ok(encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes())?,
    )?)
}

/// A subscription opened with the viewer's token; returns it and its `subscribed` frame.
async fn subscribe(server: &Walcast, params: &[(&str, &str)]) -> Result<(WsClient, Value)> {
    let auth = format!("Bearer {}", viewer_token()?);
    let path = format!("/ws?{}", query_string(params));
    let (mut client, _) = WsClient::try_open_with(server, &path, &[("authorization", &auth)])
        .await?
        .map_err(|e| anyhow::anyhow!("{path} refused: {e:?}"))?;
    let subscribed = client.expect_subscribed().await?;
    Ok((client, subscribed))
}

/// Every frame up to the `decode_failed` end marker.
async fn until_marker(client: &mut WsClient, what: &str) -> Result<Vec<Value>> {
    let mut frames = Vec::new();
    loop {
        match client.next_frame(STEP).await {
            Ok(Frame::Json(v, _)) if v["error"] == "decode_failed" => return Ok(frames),
            Ok(Frame::Json(v, _)) => frames.push(v),
            Ok(other) => bail!("{what}: after {frames:?}, unexpected {other:?}"),
            Err(e) => bail!("{what}: after {frames:?}, no end marker: {e:#}"),
        }
    }
}

/// No row image of a frame (either format) carries `salary`, by name or by value (900 and 700 are
/// only ever salaries; positions and times are left out, they may hold those digits).
fn no_salary(frames: &[Value], what: &str) -> Result<()> {
    for f in frames {
        for part in ["new", "old", "columnnames", "columnvalues", "oldkeys"] {
            let text = f[part].to_string();
            ensure!(
                !text.contains("salary") && !text.contains("900") && !text.contains("700"),
                "{what}: a hidden column reached the client in {part}: {f}"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_under_a_rule_sees_and_shows_only_the_rules_columns() -> Result<()> {
    let db = TestDb::with_options(
        PgCluster::shared(),
        "policy_plugins",
        " ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0",
    )
    .await?;
    db.exec(
        "CREATE TABLE staff (id int PRIMARY KEY, name text, salary int);
         ALTER TABLE staff REPLICA IDENTITY FULL;
         INSERT INTO staff VALUES (1, 'ann', 900), (2, 'bob', 50);",
    )
    .await?;
    let plugins = PluginDir::new(&["threshold", "redact"])?;
    let server = start(&db, &plugins).await?;

    // Selects rows by salary: under the rule it sees no salary, so it selects nothing, neither
    // among the snapshot rows (ann earns 900) nor among the changes below.
    let (mut by_salary, _) = subscribe(
        &server,
        &[
            ("query", "*:staff"),
            ("snapshot", "true"),
            ("plugin", "threshold"),
            ("plugin.column", "salary"),
            ("plugin.value", "100"),
        ],
    )
    .await?;
    let end = loop {
        match by_salary.next_frame(STEP).await? {
            Frame::Json(v, _) if v["type"] == "snapshot_end" => break v,
            Frame::Json(v, _) => bail!("threshold on a hidden column selected a snapshot row: {v}"),
            other => bail!("expected snapshot_end, got {other:?}"),
        }
    };
    ensure!(end["rows"] == 0, "{end}");
    // The same plugin on a column the rule shows selects as usual.
    let (mut by_id, _) = subscribe(
        &server,
        &[
            ("query", "*:staff"),
            ("plugin", "threshold"),
            ("plugin.column", "id"),
            ("plugin.value", "3"),
        ],
    )
    .await?;
    // Rewrites, in both formats: masking `name` must not bring `salary` back.
    let redact = [
        ("query", "*:staff"),
        ("plugin", "redact"),
        ("plugin.columns", "name"),
    ];
    let (mut masked, subscribed) = subscribe(&server, &redact).await?;
    let from = subscribed["pos"]
        .as_str()
        .context("pos in subscribed")?
        .to_owned();
    let mut v1_params = redact.to_vec();
    v1_params.push(("format", "wal2json-v1"));
    let (mut masked_v1, _) = subscribe(&server, &v1_params).await?;

    db.exec(
        "INSERT INTO staff VALUES (3, 'cy', 900);
         UPDATE staff SET salary = 700 WHERE id = 2;
         INSERT INTO staff VALUES (4, convert_from('\\xff'::bytea, 'SQL_ASCII'), 900);",
    )
    .await?;

    let got = until_marker(&mut by_salary, "threshold on salary").await?;
    ensure!(
        got.is_empty(),
        "threshold on a hidden column selected changes: {got:?}"
    );
    let got = until_marker(&mut by_id, "threshold on id").await?;
    ensure!(
        got.len() == 1 && got[0]["new"] == json!({"id": 3, "name": "cy"}),
        "{got:?}"
    );

    let want = [
        (json!({"id": 3, "name": "***"}), Value::Null),
        (
            json!({"id": 2, "name": "***"}),
            json!({"id": 2, "name": "***"}),
        ),
    ];
    let check = |got: &[Value], what: &str| -> Result<()> {
        no_salary(got, what)?;
        ensure!(got.len() == want.len(), "{what}: {got:?}");
        for (f, (new, old)) in got.iter().zip(&want) {
            ensure!(f["new"] == *new && f["old"] == *old, "{what}: {f}");
        }
        Ok(())
    };
    check(&until_marker(&mut masked, "redact").await?, "redact")?;

    let got = until_marker(&mut masked_v1, "redact, wal2json-v1").await?;
    no_salary(&got, "redact, wal2json-v1")?;
    ensure!(got.len() == 2, "{got:?}");
    ensure!(
        got[0]["columnnames"] == json!(["id", "name"])
            && got[0]["columnvalues"] == json!([3, "***"]),
        "{}",
        got[0]
    );
    ensure!(
        got[1]["columnnames"] == json!(["id", "name"])
            && got[1]["oldkeys"]["keynames"] == json!(["id", "name"]),
        "{}",
        got[1]
    );

    // A replay from the journal renders the rewrites the same way.
    let (mut replayed, _) = subscribe(
        &server,
        &[
            ("query", "*:staff"),
            ("plugin", "redact"),
            ("plugin.columns", "name"),
            ("from", &from),
        ],
    )
    .await?;
    check(
        &until_marker(&mut replayed, "redact, from=").await?,
        "redact, from=",
    )?;
    Ok(())
}
