//! Catalog lookups against a throwaway Postgres 15 cluster (initdb + pg_ctl in a temp dir).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use crate::filter::TypeClass;

const BIN: &str = "/usr/lib/postgresql/15/bin";

struct Cluster {
    dir: PathBuf,
    port: u16,
}

fn as_postgres(bin: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"])
        .arg(Path::new(BIN).join(bin));
    c
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    fn start() -> Cluster {
        let dir = std::env::temp_dir().join(format!("walcast-catalog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        run(Command::new("chown").arg("postgres:postgres").arg(&dir));
        let data = dir.join("data");
        run(as_postgres("initdb").arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
        ]));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let opts = format!(
            "-p {port} -c listen_addresses='' -c unix_socket_directories={} -c fsync=off",
            dir.display()
        );
        run(as_postgres("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-o", &opts, "-w", "start"]));
        Cluster { dir, port }
    }

    async fn client(&self) -> Client {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.dir)
            .port(self.port)
            .user("postgres")
            .dbname("postgres");
        let (client, conn) = config
            .connect(tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

#[tokio::test]
async fn finds_columns_new_tables_and_reports_closed_connections() {
    if !is_root() || !Path::new(BIN).join("initdb").exists() {
        eprintln!("skipped: needs root and Postgres 15 binaries");
        return;
    }
    let cluster = Cluster::start();
    let admin = cluster.client().await;
    let catalog = Catalog::new(cluster.client().await);

    let odd = TableName::new("Sales", "odd.table");
    assert!(
        catalog.columns(&odd).await.expect("query").is_none(),
        "missing table is None"
    );

    admin
        .batch_execute(
            r#"CREATE SCHEMA "Sales";
               CREATE TABLE "Sales"."odd.table" (id bigint, "Name" varchar(20), dropped int,
                 at timestamptz, price numeric(10,2), tags text[], ok boolean, doc jsonb);
               ALTER TABLE "Sales"."odd.table" DROP COLUMN dropped;
               CREATE TABLE public.empty ();"#,
        )
        .await
        .expect("ddl");

    // Created after the first (negative) lookup: found at once, no negative caching.
    let cols = catalog
        .columns(&odd)
        .await
        .expect("query")
        .expect("table exists");
    let got: Vec<(&str, &str, TypeClass)> = cols
        .iter()
        .map(|c| (c.name.as_str(), c.type_name.as_str(), c.class))
        .collect();
    assert_eq!(
        got,
        [
            ("id", "bigint", TypeClass::Number),
            ("Name", "character varying(20)", TypeClass::Text),
            ("at", "timestamp with time zone", TypeClass::Timestamp),
            ("price", "numeric(10,2)", TypeClass::Number),
            ("tags", "text[]", TypeClass::Text),
            ("ok", "boolean", TypeClass::Bool),
            ("doc", "jsonb", TypeClass::Json),
        ]
    );
    let empty = catalog
        .columns(&TableName::new("public", "empty"))
        .await
        .expect("query");
    assert_eq!(
        empty.map(|c| c.len()),
        Some(0),
        "a table without columns exists"
    );
    assert!(
        catalog
            .columns(&TableName::new("sales", "odd.table"))
            .await
            .expect("query")
            .is_none(),
        "case kept"
    );

    // Served from cache within the TTL even after the table is gone.
    admin
        .batch_execute(r#"DROP TABLE "Sales"."odd.table""#)
        .await
        .expect("drop");
    assert!(catalog.columns(&odd).await.expect("cached").is_some());

    // A dead connection is reported as closed; a replacement client works again.
    admin
        .batch_execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'")
        .await
        .expect("terminate");
    let err = catalog
        .columns(&TableName::new("public", "other"))
        .await
        .expect_err("connection closed");
    assert!(err.is_closed() || catalog.is_closed(), "{err}");
    catalog.replace_client(cluster.client().await);
    assert!(catalog
        .columns(&TableName::new("public", "other"))
        .await
        .expect("query")
        .is_none());
}
