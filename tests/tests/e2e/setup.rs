//! `walcast setup`: the SQL it prints, what it installs, the `walcast.ddl` message each DDL
//! emits (read back from a wal2json slot of the test's own, compared whole), uninstalling, the
//! refusal without the privilege, and what walcast reports at start.

use std::process::Stdio;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use walcast_tests::{unique_suffix, walcast_binary, PgCluster, TestDb, Walcast};

/// Runs `walcast setup <args>` outside any configuration (no `walcast.toml`, no
/// `DATABASE_URL`): (exit code, stdout, stderr).
async fn walcast_setup(args: &[&str]) -> Result<(i32, String, String)> {
    let out = tokio::process::Command::new(walcast_binary()?)
        .arg("setup")
        .args(args)
        .env_remove("DATABASE_URL")
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run walcast setup")?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// `walcast setup <args> --database-url <url>`, required to succeed; its stdout.
async fn setup_ok(url: &str, args: &[&str]) -> Result<String> {
    let mut all = args.to_vec();
    all.extend(["--database-url", url]);
    let (code, stdout, stderr) = walcast_setup(&all).await?;
    if code != 0 {
        bail!("walcast setup {all:?} exited {code}:\n{stdout}{stderr}");
    }
    Ok(stdout)
}

/// The three triggers as `pg_event_trigger` has them: (name, evtenabled).
async fn triggers(db: &TestDb<'_>) -> Result<Vec<(String, String)>> {
    let rows = db
        .client()
        .query(
            "SELECT evtname::text, evtenabled::text FROM pg_event_trigger \
             WHERE evtname LIKE 'walcast%' ORDER BY evtname",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Whether schema `walcast` exists.
async fn has_walcast_schema(db: &TestDb<'_>) -> Result<bool> {
    Ok(db
        .client()
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'walcast')",
            &[],
        )
        .await?
        .get(0))
}

/// Creates the test's wal2json slot.
async fn create_slot(db: &TestDb<'_>) -> Result<()> {
    db.client()
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'wal2json')",
            &[&db.slot()],
        )
        .await?;
    Ok(())
}

/// Everything the slot holds (consumed), one JSON value per wal2json message.
async fn take_changes(db: &TestDb<'_>) -> Result<Vec<Value>> {
    let rows = db
        .client()
        .query(
            "SELECT data FROM pg_logical_slot_get_changes($1, NULL, NULL, \
             'format-version', '2', 'include-transaction', 'true')",
            &[&db.slot()],
        )
        .await?;
    rows.iter()
        .map(|row| Ok(serde_json::from_str(row.get::<_, &str>(0))?))
        .collect()
}

/// The content of a `walcast.ddl` message, parsed; `None` for any other wal2json message. Each
/// must be transactional.
fn ddl_message(data: &Value) -> Result<Option<Value>> {
    if data["action"] != "M" || data["prefix"] != "walcast.ddl" {
        return Ok(None);
    }
    assert_eq!(data["transactional"], true, "{data}");
    let content = data["content"]
        .as_str()
        .context("message without content")?;
    let parsed = serde_json::from_str(content)
        .with_context(|| format!("message content is not JSON: {content}"))?;
    Ok(Some(parsed))
}

/// The `walcast.ddl` messages the slot holds (consumed), their JSON content parsed.
async fn take_messages(db: &TestDb<'_>) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for data in take_changes(db).await? {
        out.extend(ddl_message(&data)?);
    }
    Ok(out)
}

/// Runs `sql` on `db` and returns the messages it emitted.
async fn step(db: &TestDb<'_>, sql: &str) -> Result<Vec<Value>> {
    db.exec(sql).await?;
    take_messages(db).await
}

/// `pg_class.oid` of `schema.table`.
async fn oid(db: &TestDb<'_>, schema: &str, table: &str) -> Result<i64> {
    Ok(db
        .client()
        .query_one(
            "SELECT c.oid::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&schema, &table],
        )
        .await
        .with_context(|| format!("no table {schema}.{table}"))?
        .get(0))
}

/// A plain column: no default, not generated, no identity, not in the key.
fn col(attnum: i64, name: &str, ty: &str, nullable: bool) -> Value {
    json!({"attnum": attnum, "name": name, "type": ty, "nullable": nullable, "default": null,
           "generated": null, "generation_expression": null, "identity": null,
           "primary_key": false})
}

/// `column` with `key` set to `value`.
fn with(mut column: Value, key: &str, value: impl Into<Value>) -> Value {
    column[key] = value.into();
    column
}

fn shape(schema: &str, table: &str, oid: i64, columns: Vec<Value>, key: &[&str]) -> Value {
    json!({"schema": schema, "table": table, "oid": oid, "columns": columns, "primary_key": key})
}

/// One command's message: `(oid, before, after)` per table, the dropped objects.
fn ddl(command: &str, tables: Vec<(i64, Value, Value)>, dropped: Vec<Value>) -> Value {
    let tables: Vec<Value> = tables
        .into_iter()
        .map(|(oid, before, after)| json!({"oid": oid, "before": before, "after": after}))
        .collect();
    json!({"version": 1, "command": command, "tables": tables, "dropped": dropped})
}

fn dropped(kind: &str, schema: Option<&str>, name: &str, identity: &str) -> Value {
    json!({"object_type": kind, "schema": schema, "name": name, "identity": identity})
}

/// A superuser connection string over the cluster's Unix socket (what an operator would run
/// `walcast setup` with).
fn unix_url(db: &TestDb<'_>, user: &str) -> String {
    format!(
        "host={} port={} user={user} dbname={}",
        db.cluster().socket_dir().display(),
        db.cluster().port(),
        db.name()
    )
}

#[tokio::test]
async fn setup_dry_run_prints_the_sql_and_changes_nothing() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "setup_dry").await?;
    let url = unix_url(&db, "postgres");
    let install = setup_ok(&url, &["--dry-run"]).await?;
    for piece in [
        "BEGIN;",
        "CREATE SCHEMA IF NOT EXISTS walcast;",
        "CREATE OR REPLACE FUNCTION walcast.ddl_version()",
        "CREATE OR REPLACE FUNCTION walcast.ddl_capture()",
        "CREATE OR REPLACE FUNCTION walcast.ddl_collect_drops()",
        "CREATE OR REPLACE FUNCTION walcast.ddl_emit()",
        "CREATE EVENT TRIGGER walcast_ddl_start ON ddl_command_start",
        "CREATE EVENT TRIGGER walcast_ddl_drop ON sql_drop",
        "CREATE EVENT TRIGGER walcast_ddl_end ON ddl_command_end",
        "ALTER EVENT TRIGGER walcast_ddl_end ENABLE ALWAYS;",
        r#"{"version":1,"control":"installed"}"#,
        "COMMIT;",
    ] {
        assert!(
            install.contains(piece),
            "dry run lacks {piece:?}:\n{install}"
        );
    }
    let uninstall = setup_ok(&url, &["--dry-run", "--uninstall"]).await?;
    assert!(
        uninstall.contains(r#"{"version":1,"control":"uninstalled"}"#)
            && uninstall.contains("DROP SCHEMA IF EXISTS walcast CASCADE;"),
        "{uninstall}"
    );
    assert!(
        triggers(&db).await?.is_empty(),
        "a dry run installed triggers"
    );
    assert!(
        !has_walcast_schema(&db).await?,
        "a dry run created the schema"
    );

    // A dry run needs no database; a real run without one says where to set it.
    let (code, stdout, _) = walcast_setup(&["--dry-run"]).await?;
    assert_eq!((code, stdout.as_str()), (0, install.as_str()));
    let (code, _, stderr) = walcast_setup(&[]).await?;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("no database configured") && stderr.contains("DATABASE_URL"),
        "{stderr}"
    );
    let (code, _, stderr) = walcast_setup(&["--config", "/nonexistent/walcast.toml"]).await?;
    assert_eq!(code, 2, "{stderr}");

    // What it prints is what it runs: the script, run as it is, installs the same triggers.
    db.exec(&install).await?;
    assert_eq!(triggers(&db).await?.len(), 3);
    Ok(())
}

#[tokio::test]
async fn setup_installs_triggers_that_describe_each_ddl_exactly() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "setup_ddl").await?;
    let url = unix_url(&db, "postgres");
    create_slot(&db).await?;
    let installed = json!({"version": 1, "control": "installed"});

    let out = setup_ok(&url, &[]).await?;
    assert!(out.contains("installed (version 1)"), "{out}");
    assert_eq!(take_messages(&db).await?, vec![installed.clone()]);
    // Idempotent: a second run succeeds and emits nothing but its control message.
    setup_ok(&url, &[]).await?;
    assert_eq!(take_messages(&db).await?, vec![installed]);
    let always = |name: &str| (name.to_owned(), "A".to_owned());
    assert_eq!(
        triggers(&db).await?,
        vec![
            always("walcast_ddl_drop"),
            always("walcast_ddl_end"),
            always("walcast_ddl_start")
        ]
    );
    let version: i32 = db
        .client()
        .query_one("SELECT walcast.ddl_version()", &[])
        .await?
        .get(0);
    assert_eq!(version, 1);

    // CREATE TABLE.
    let got = step(
        &db,
        "CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL, age int DEFAULT 0)",
    )
    .await?;
    let people = oid(&db, "public", "people").await?;
    let id = with(col(1, "id", "integer", false), "primary_key", true);
    let name = col(2, "name", "text", false);
    let age = with(col(3, "age", "integer", true), "default", "0");
    let v1 = shape(
        "public",
        "people",
        people,
        vec![id.clone(), name.clone(), age.clone()],
        &["id"],
    );
    let want = ddl(
        "CREATE TABLE",
        vec![(people, Value::Null, v1.clone())],
        vec![],
    );
    assert_eq!(got, vec![want], "CREATE TABLE");

    // ADD COLUMN.
    let got = step(&db, "ALTER TABLE people ADD COLUMN email text").await?;
    let email = col(4, "email", "text", true);
    let v2 = shape(
        "public",
        "people",
        people,
        vec![id.clone(), name.clone(), age.clone(), email],
        &["id"],
    );
    let want = ddl(
        "ALTER TABLE",
        vec![(people, v1.clone(), v2.clone())],
        vec![],
    );
    assert_eq!(got, vec![want], "ADD COLUMN");

    // DROP COLUMN: the attribute is gone from the list, the others keep their attnums.
    let got = step(&db, "ALTER TABLE people DROP COLUMN email").await?;
    let want = ddl("ALTER TABLE", vec![(people, v2, v1.clone())], vec![]);
    assert_eq!(got, vec![want], "DROP COLUMN");

    // RENAME COLUMN: same attnum, another name.
    let got = step(&db, "ALTER TABLE people RENAME COLUMN name TO full_name").await?;
    let full_name = col(2, "full_name", "text", false);
    let v3 = shape(
        "public",
        "people",
        people,
        vec![id.clone(), full_name.clone(), age.clone()],
        &["id"],
    );
    let want = ddl("ALTER TABLE", vec![(people, v1, v3.clone())], vec![]);
    assert_eq!(got, vec![want], "RENAME COLUMN");

    // ALTER COLUMN TYPE: the type before and after.
    let got = step(&db, "ALTER TABLE people ALTER COLUMN age TYPE bigint").await?;
    let age_big = with(col(3, "age", "bigint", true), "default", "0");
    let v4 = shape(
        "public",
        "people",
        people,
        vec![id.clone(), full_name, age_big],
        &["id"],
    );
    let want = ddl("ALTER TABLE", vec![(people, v3, v4.clone())], vec![]);
    assert_eq!(got, vec![want], "ALTER COLUMN TYPE");

    // A multi-action ALTER TABLE: one message, every action in it.
    let got = step(
        &db,
        "ALTER TABLE people ADD COLUMN a varchar(20), ADD COLUMN b text NOT NULL DEFAULT 'x', \
         DROP COLUMN age, ALTER COLUMN full_name DROP NOT NULL",
    )
    .await?;
    let v5 = shape(
        "public",
        "people",
        people,
        vec![
            id.clone(),
            col(2, "full_name", "text", true),
            col(5, "a", "character varying(20)", true),
            with(col(6, "b", "text", false), "default", "'x'::text"),
        ],
        &["id"],
    );
    let want = ddl("ALTER TABLE", vec![(people, v4, v5.clone())], vec![]);
    assert_eq!(got, vec![want], "multi-action ALTER TABLE");

    // ALTER TABLE ... RENAME TO: the same oid under another name.
    let got = step(&db, "ALTER TABLE people RENAME TO persons").await?;
    let mut v6 = v5.clone();
    v6["table"] = "persons".into();
    let want = ddl("ALTER TABLE", vec![(people, v5, v6.clone())], vec![]);
    assert_eq!(got, vec![want], "RENAME TO");

    // A rolled-back DDL emits nothing; neither does CREATE TABLE IF NOT EXISTS on an existing
    // table, nor a command that changes no table.
    for sql in [
        "BEGIN; ALTER TABLE persons ADD COLUMN gone int; ROLLBACK;",
        "CREATE TABLE IF NOT EXISTS persons (id int)",
        "COMMENT ON TABLE persons IS 'people'",
        "CREATE INDEX ON persons (a)",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    ] {
        assert_eq!(step(&db, sql).await?, Vec::<Value>::new(), "{sql}");
    }

    // Identity, generated and serial columns, a key in its own order.
    let got = step(
        &db,
        "CREATE TABLE kinds (s serial, ia int GENERATED ALWAYS AS IDENTITY, \
         ib bigint GENERATED BY DEFAULT AS IDENTITY, n numeric(10,2), \
         g numeric GENERATED ALWAYS AS (n * 2) STORED, PRIMARY KEY (ia, s))",
    )
    .await?;
    let kinds = oid(&db, "public", "kinds").await?;
    let want = ddl(
        "CREATE TABLE",
        vec![(
            kinds,
            Value::Null,
            shape(
                "public",
                "kinds",
                kinds,
                vec![
                    with(
                        with(col(1, "s", "integer", false), "primary_key", true),
                        "default",
                        "nextval('public.kinds_s_seq'::regclass)",
                    ),
                    with(
                        with(col(2, "ia", "integer", false), "primary_key", true),
                        "identity",
                        "always",
                    ),
                    with(col(3, "ib", "bigint", false), "identity", "by default"),
                    col(4, "n", "numeric(10,2)", true),
                    with(
                        with(col(5, "g", "numeric", true), "generated", "stored"),
                        "generation_expression",
                        "(n * (2)::numeric)",
                    ),
                ],
                &["ia", "s"],
            ),
        )],
        vec![],
    );
    assert_eq!(got, vec![want], "identity and generated columns");

    // Names with `.` and `"`: created, a column renamed, dropped.
    let got = step(
        &db,
        r#"CREATE TABLE "we.ird""t" ("co.l""x" int PRIMARY KEY)"#,
    )
    .await?;
    let weird = oid(&db, "public", r#"we.ird"t"#).await?;
    let w1 = shape(
        "public",
        r#"we.ird"t"#,
        weird,
        vec![with(
            col(1, r#"co.l"x"#, "integer", false),
            "primary_key",
            true,
        )],
        &[r#"co.l"x"#],
    );
    let want = ddl(
        "CREATE TABLE",
        vec![(weird, Value::Null, w1.clone())],
        vec![],
    );
    assert_eq!(got, vec![want], "quoted CREATE TABLE");
    let got = step(
        &db,
        r#"ALTER TABLE "we.ird""t" RENAME COLUMN "co.l""x" TO "y."".z""#,
    )
    .await?;
    let w2 = shape(
        "public",
        r#"we.ird"t"#,
        weird,
        vec![with(
            col(1, r#"y.".z"#, "integer", false),
            "primary_key",
            true,
        )],
        &[r#"y.".z"#],
    );
    let want = ddl("ALTER TABLE", vec![(weird, w1, w2.clone())], vec![]);
    assert_eq!(got, vec![want], "quoted RENAME COLUMN");
    let got = step(&db, r#"DROP TABLE "we.ird""t""#).await?;
    let want = ddl(
        "DROP TABLE",
        vec![(weird, w2, Value::Null)],
        vec![dropped(
            "table",
            Some("public"),
            r#"we.ird"t"#,
            r#"public."we.ird""t""#,
        )],
    );
    assert_eq!(got, vec![want], "quoted DROP TABLE");

    // DROP SCHEMA ... CASCADE: one message naming every table it dropped.
    db.exec("CREATE SCHEMA gone; CREATE TABLE gone.a (x int); CREATE TABLE gone.b (y text)")
        .await?;
    take_messages(&db).await?;
    let (a, b) = (oid(&db, "gone", "a").await?, oid(&db, "gone", "b").await?);
    let mut got = step(&db, "DROP SCHEMA gone CASCADE").await?;
    assert_eq!(got.len(), 1, "{got:?}");
    // The order of the dropped objects is Postgres' own; compare them as a set.
    let mut objects: Vec<Value> = got[0]["dropped"]
        .as_array()
        .cloned()
        .context("no dropped list")?;
    objects.sort_by_key(|o| o["identity"].to_string());
    got[0]["dropped"] = Value::Array(objects);
    let want = ddl(
        "DROP SCHEMA",
        vec![
            (
                a,
                shape("gone", "a", a, vec![col(1, "x", "integer", true)], &[]),
                Value::Null,
            ),
            (
                b,
                shape("gone", "b", b, vec![col(1, "y", "text", true)], &[]),
                Value::Null,
            ),
        ],
        vec![
            dropped("schema", None, "gone", "gone"),
            dropped("table", Some("gone"), "a", "gone.a"),
            dropped("table", Some("gone"), "b", "gone.b"),
        ],
    );
    assert_eq!(got, vec![want], "DROP SCHEMA CASCADE");

    // A table owner who is no superuser: the DDL works and is described.
    let role = format!("owner_{}", unique_suffix());
    db.exec(&format!(
        "CREATE ROLE {role} LOGIN; CREATE SCHEMA owned AUTHORIZATION {role}"
    ))
    .await?;
    take_messages(&db).await?;
    let (owner, connection) = tokio_postgres::connect(&unix_url(&db, &role), tokio_postgres::NoTls)
        .await
        .context("connect as the table owner")?;
    tokio::spawn(connection);
    owner
        .batch_execute("CREATE TABLE owned.t (id int PRIMARY KEY)")
        .await?;
    let t = oid(&db, "owned", "t").await?;
    let t1 = shape(
        "owned",
        "t",
        t,
        vec![with(col(1, "id", "integer", false), "primary_key", true)],
        &["id"],
    );
    assert_eq!(
        take_messages(&db).await?,
        vec![ddl(
            "CREATE TABLE",
            vec![(t, Value::Null, t1.clone())],
            vec![]
        )],
        "the owner's CREATE TABLE"
    );
    owner
        .batch_execute("ALTER TABLE owned.t ADD COLUMN v text")
        .await
        .context("a non-superuser owner's ALTER TABLE must work with the triggers installed")?;
    let t2 = shape(
        "owned",
        "t",
        t,
        vec![
            with(col(1, "id", "integer", false), "primary_key", true),
            col(2, "v", "text", true),
        ],
        &["id"],
    );
    assert_eq!(
        take_messages(&db).await?,
        vec![ddl("ALTER TABLE", vec![(t, t1, t2)], vec![])],
        "the owner's ALTER TABLE"
    );
    drop(owner);
    db.exec(&format!("DROP SCHEMA owned CASCADE; DROP ROLE {role}"))
        .await?;
    Ok(())
}

#[tokio::test]
async fn setup_describes_nested_replica_and_undescribable_ddl_in_order_with_the_data() -> Result<()>
{
    let db = TestDb::new(PgCluster::shared(), "setup_edges").await?;
    create_slot(&db).await?;
    setup_ok(&unix_url(&db, "postgres"), &[]).await?;
    db.exec("CREATE TABLE t (id int PRIMARY KEY)").await?;
    take_messages(&db).await?;
    let t = oid(&db, "public", "t").await?;
    let key = with(col(1, "id", "integer", false), "primary_key", true);

    // In the transaction of the data, between the rows written before and after it.
    db.exec(
        "BEGIN; INSERT INTO t VALUES (1); ALTER TABLE t ADD COLUMN v text; \
         INSERT INTO t VALUES (2, 'x'); COMMIT;",
    )
    .await?;
    let changes = take_changes(&db).await?;
    let actions: Vec<&str> = changes
        .iter()
        .map(|c| c["action"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(actions, ["B", "I", "M", "I", "C"], "{changes:?}");
    let t2 = shape(
        "public",
        "t",
        t,
        vec![key.clone(), col(2, "v", "text", true)],
        &["id"],
    );
    let t1 = shape("public", "t", t, vec![key.clone()], &["id"]);
    assert_eq!(
        ddl_message(&changes[2])?,
        Some(ddl(
            "ALTER TABLE",
            vec![(t, t1.clone(), t2.clone())],
            vec![]
        ))
    );

    // The same inside a SAVEPOINT, with the next row written in another one: decoding must
    // not place that row before the message.
    db.exec(
        "BEGIN; INSERT INTO t VALUES (3, 'y'); SAVEPOINT a; ALTER TABLE t ADD COLUMN w int; \
         RELEASE a; SAVEPOINT b; INSERT INTO t VALUES (4, 'z', 1); RELEASE b; COMMIT;",
    )
    .await?;
    let changes = take_changes(&db).await?;
    let actions: Vec<&str> = changes
        .iter()
        .map(|c| c["action"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(actions, ["B", "I", "M", "I", "C"], "{changes:?}");
    let t3 = shape(
        "public",
        "t",
        t,
        vec![
            key.clone(),
            col(2, "v", "text", true),
            col(3, "w", "integer", true),
        ],
        &["id"],
    );
    assert_eq!(
        ddl_message(&changes[2])?,
        Some(ddl(
            "ALTER TABLE",
            vec![(t, t2.clone(), t3.clone())],
            vec![]
        ))
    );

    // A DDL run by a function that another DDL calls: each command describes its own changes.
    db.exec(
        "CREATE FUNCTION make_inner() RETURNS int LANGUAGE plpgsql AS \
         $$ BEGIN EXECUTE 'CREATE TABLE inner_t (x int)'; RETURN 1; END $$",
    )
    .await?;
    let got = step(&db, "CREATE TABLE outer_t AS SELECT make_inner() AS v").await?;
    let (inner, outer) = (
        oid(&db, "public", "inner_t").await?,
        oid(&db, "public", "outer_t").await?,
    );
    let inner_shape = shape(
        "public",
        "inner_t",
        inner,
        vec![col(1, "x", "integer", true)],
        &[],
    );
    let outer_shape = shape(
        "public",
        "outer_t",
        outer,
        vec![col(1, "v", "integer", true)],
        &[],
    );
    assert_eq!(
        got,
        vec![
            ddl(
                "CREATE TABLE",
                vec![(inner, Value::Null, inner_shape)],
                vec![]
            ),
            ddl(
                "CREATE TABLE AS",
                vec![(outer, Value::Null, outer_shape)],
                vec![]
            ),
        ],
        "nested DDL"
    );

    // ENABLE ALWAYS: sessions replaying changes (session_replication_role = replica) are
    // described too.
    let got = step(
        &db,
        "SET session_replication_role = replica; ALTER TABLE t DROP COLUMN w; \
         RESET session_replication_role",
    )
    .await?;
    assert_eq!(got, vec![ddl("ALTER TABLE", vec![(t, t3, t2)], vec![])]);

    // What the triggers cannot describe fails no DDL: the message says so instead.
    db.exec("ALTER EVENT TRIGGER walcast_ddl_start DISABLE")
        .await?;
    let got = step(&db, "CREATE TABLE undescribed (x int)").await?;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (&got[0]["version"], &got[0]["command"]),
        (&json!(1), &json!("CREATE TABLE"))
    );
    let error = got[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("P0001: no table shapes were read before the command"),
        "{}",
        got[0]
    );
    assert!(got[0].get("tables").is_none(), "{}", got[0]);
    db.exec("ALTER EVENT TRIGGER walcast_ddl_start ENABLE ALWAYS")
        .await?;
    let got = step(&db, "DROP TABLE undescribed").await?;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["command"], "DROP TABLE");
    let left: i64 = db
        .client()
        .query_one("SELECT count(*) FROM walcast.ddl_state", &[])
        .await?
        .get(0);
    assert_eq!(left, 0, "before-shapes left behind");
    Ok(())
}

#[tokio::test]
async fn setup_uninstall_removes_everything() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "setup_rm").await?;
    let url = unix_url(&db, "postgres");
    create_slot(&db).await?;
    setup_ok(&url, &[]).await?;
    take_messages(&db).await?;
    let out = setup_ok(&url, &["--uninstall"]).await?;
    assert!(out.contains("removed"), "{out}");
    assert!(triggers(&db).await?.is_empty());
    assert!(!has_walcast_schema(&db).await?);
    let functions: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM pg_proc WHERE proname IN \
             ('ddl_version', 'ddl_capture', 'ddl_collect_drops', 'ddl_emit')",
            &[],
        )
        .await?
        .get(0);
    assert_eq!(functions, 0);
    assert_eq!(
        take_messages(&db).await?,
        vec![json!({"version": 1, "control": "uninstalled"})]
    );
    // DDL goes undescribed from now on; a second uninstall succeeds.
    assert_eq!(
        step(&db, "CREATE TABLE t (x int)").await?,
        Vec::<Value>::new()
    );
    setup_ok(&url, &["--uninstall"]).await?;
    Ok(())
}

#[tokio::test]
async fn setup_without_the_privilege_exits_1_and_says_what_is_needed() -> Result<()> {
    let cluster = PgCluster::shared();
    let role = format!("plain_{}", unique_suffix());
    cluster
        .connect("postgres")
        .await?
        .batch_execute(&format!("CREATE ROLE {role} LOGIN"))
        .await?;
    // The database's owner: it may create the schema, not the event triggers.
    let db = TestDb::with_owner(cluster, "setup_refused", Some(&role)).await?;
    let (code, stdout, stderr) = walcast_setup(&["--database-url", &unix_url(&db, &role)]).await?;
    assert_eq!(code, 1, "{stdout}{stderr}");
    for piece in [
        &format!("role \"{role}\" may not install the schema-event triggers"),
        "permission denied to create event trigger",
        "superuser",
        "walcast works without them",
        "inferred schema event",
        "rds_superuser",
        "ask your provider",
    ] {
        assert!(stderr.contains(piece), "lacks {piece:?}:\n{stderr}");
    }
    // One transaction: nothing was left behind.
    assert!(!has_walcast_schema(&db).await?);
    assert!(triggers(&db).await?.is_empty());
    drop(db);
    cluster
        .connect("postgres")
        .await?
        .batch_execute(&format!("DROP ROLE {role}"))
        .await?;
    Ok(())
}

#[tokio::test]
async fn walcast_reports_the_installed_trigger_at_start() -> Result<()> {
    let without = TestDb::new(PgCluster::shared(), "setup_report_no").await?;
    let w = Walcast::start(&without).await?;
    assert_eq!(w.metric("walcast_schema_trigger_version").await?, Some(0.0));
    assert!(
        w.stderr()
            .contains("schema events: no trigger installed (run walcast setup)"),
        "{}",
        w.stderr_tail(20)
    );

    let with_trigger = TestDb::new(PgCluster::shared(), "setup_report").await?;
    setup_ok(&unix_url(&with_trigger, "postgres"), &[]).await?;
    let w = Walcast::start(&with_trigger).await?;
    assert_eq!(w.metric("walcast_schema_trigger_version").await?, Some(1.0));
    assert!(
        w.stderr()
            .contains("schema events: trigger installed (version 1)"),
        "{}",
        w.stderr_tail(20)
    );
    Ok(())
}
