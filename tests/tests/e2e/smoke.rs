//! Harness self-checks that need no walcast: the clusters start, databases are isolated, wal2json
//! decodes, stop/start keeps data, SCRAM is enforced on TCP.

use anyhow::Result;
use walcast_tests::{PgCluster, PgOptions, TestDb};

#[tokio::test]
async fn harness_smoke() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "smoke").await?;
    let row = db.client().query_one("SELECT 1 + 1", &[]).await?;
    assert_eq!(row.get::<_, i32>(0), 2);
    let level: String = db.client().query_one("SHOW wal_level", &[]).await?.get(0);
    assert_eq!(level, "logical");

    // wal2json must decode on this cluster, or no walcast test can pass.
    db.exec("CREATE TABLE t (id int primary key, v text)")
        .await?;
    db.client()
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'wal2json')",
            &[&db.slot()],
        )
        .await?;
    db.exec("INSERT INTO t VALUES (1, 'x')").await?;
    let rows = db
        .client()
        .query(
            "SELECT data FROM pg_logical_slot_get_changes($1, NULL, NULL, 'format-version', '2')",
            &[&db.slot()],
        )
        .await?;
    let data: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert!(
        data.iter().any(|d| d.contains("\"action\":\"I\"")),
        "no insert decoded: {data:?}"
    );
    Ok(())
}

#[tokio::test]
async fn harness_private_cluster_restart_and_scram() -> Result<()> {
    let cluster = PgCluster::start_new(PgOptions {
        scram_host_auth: true,
        ..Default::default()
    })?;
    let admin = cluster.connect("postgres").await?;
    admin.batch_execute("CREATE ROLE app LOGIN PASSWORD 'pw-1'; CREATE TABLE keep (v int); INSERT INTO keep VALUES (7)").await?;

    let url = |pw: &str| {
        format!(
            "host=127.0.0.1 port={} user=app dbname=postgres password={pw}",
            cluster.port()
        )
    };
    let (c, conn) = tokio_postgres::connect(&url("pw-1"), tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    assert_eq!(c.query_one("SELECT 1", &[]).await?.get::<_, i32>(0), 1);
    let wrong = tokio_postgres::connect(&url("wrong"), tokio_postgres::NoTls).await;
    assert!(
        wrong.is_err(),
        "SCRAM not enforced: a wrong password was accepted"
    );

    cluster.stop()?;
    assert!(admin.query_one("SELECT 1", &[]).await.is_err());
    cluster.start()?;
    let admin = cluster.connect("postgres").await?;
    let v: i32 = admin.query_one("SELECT v FROM keep", &[]).await?.get(0);
    assert_eq!(v, 7);
    Ok(())
}
