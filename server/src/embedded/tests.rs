//! Starts a real embedded cluster (needs the Postgres 15 binaries and wal2json of this machine).

use std::str::FromStr;

use super::demo::{connect, demo_step};
use super::*;
use crate::config::EmbeddedConfig;

#[tokio::test]
async fn embedded_cluster_starts_seeds_and_stops_cleanly() {
    let cluster = EmbeddedPostgres::start(&EmbeddedConfig::default())
        .await
        .expect("embedded postgres starts");
    let socket_dir = cluster.socket_dir().to_owned();
    let data_dir = cluster.data_dir().to_owned();
    assert!(data_dir.join("PG_VERSION").is_file());

    let url = cluster.database_url();
    let parsed = tokio_postgres::Config::from_str(&url).expect("url parses");
    assert!(
        matches!(parsed.get_hosts(), [tokio_postgres::config::Host::Unix(dir)] if *dir == socket_dir),
        "{url} -> {:?}",
        parsed.get_hosts()
    );
    assert_eq!(parsed.get_ports(), [cluster.port()]);

    seed_demo(&url).await.expect("seed");
    seed_demo(&url).await.expect("seeding twice is harmless");
    let client = connect(&url).await.expect("connect");
    let count: i64 = client
        .query_one("SELECT count(*) FROM public.people", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 10);
    let wal_level: String = client
        .query_one("SHOW wal_level", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(wal_level, "logical");

    for step in 0..8 {
        demo_step(&client, step).await.expect("demo step");
    }
    let count: i64 = client
        .query_one("SELECT count(*) FROM public.people", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 10, "two inserts and two deletes");

    // wal2json must be usable as an output plugin on this cluster.
    client
        .query_one(
            "SELECT pg_drop_replication_slot(slot_name) FROM \
             pg_create_logical_replication_slot('embedded_test', 'wal2json')",
            &[],
        )
        .await
        .expect("wal2json slot");
    drop(client);

    // The command the start-up log prints works as pasted.
    let psql = cluster.psql_command();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{psql} -Atc 'SELECT 40 + 2'"))
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "{psql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");

    cluster.stop().await;
    assert!(!socket_dir.exists(), "run dir removed");
    assert!(!data_dir.exists(), "data dir removed");
}

#[tokio::test]
async fn demo_writer_stops_on_cancel() {
    let cluster = EmbeddedPostgres::start(&EmbeddedConfig::default())
        .await
        .unwrap();
    let url = cluster.database_url();
    seed_demo(&url).await.unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let writer = spawn_demo_writer(&url, cancel.clone());
    cancel.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(5), writer)
        .await
        .expect("writer ends after cancel")
        .expect("writer did not panic");
    let run_dir = cluster.socket_dir().to_owned();
    drop(cluster); // the Drop path also stops the server and removes files
    assert!(!run_dir.exists());
}

#[tokio::test]
async fn missing_binaries_name_the_package() {
    let cfg = EmbeddedConfig {
        pg_bin: "/nonexistent/pg/bin".into(),
        ..EmbeddedConfig::default()
    };
    let err = EmbeddedPostgres::start(&cfg).await.unwrap_err().to_string();
    assert!(err.contains("postgresql-15"), "{err}");
}
