//! A throwaway Postgres 15 cluster in a temp dir for the source tests: initdb, start on a free
//! TCP port and a private Unix socket dir, stop and delete on drop.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

const BIN: &str = "/usr/lib/postgresql/15/bin";

static NEXT: AtomicU32 = AtomicU32::new(0);

pub(crate) struct Cluster {
    pub(crate) dir: PathBuf,
    pub(crate) port: u16,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// Runs a Postgres binary, as the `postgres` user when we are root (initdb refuses root).
fn pg(bin: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"])
            .arg(Path::new(BIN).join(bin));
        c
    } else {
        Command::new(Path::new(BIN).join(bin))
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

impl Cluster {
    /// Starts a cluster with `settings` appended to postgresql.conf (after the test defaults) and
    /// `hba` as pg_hba.conf. `tls` generates a self-signed certificate and turns ssl on.
    pub(crate) fn start(settings: &[&str], hba: &str, tls: bool) -> Cluster {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("walcast-source-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("mkdir");
        if is_root() {
            run(
                Command::new("chown").args(["postgres:postgres"]).arg(&dir),
                "chown",
            );
        }
        let data = dir.join("data");
        let mut initdb = pg("initdb");
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]);
        run(&mut initdb, "initdb");

        let port = free_port();
        let mut conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             wal_level = logical\nfsync = off\nfull_page_writes = off\nsynchronous_commit = off\n\
             max_wal_senders = 10\nmax_replication_slots = 10\nwal_sender_timeout = '1s'\n",
            dir.display()
        );
        if supports_output_plugin_libraries() {
            conf.push_str("output_plugin_libraries = 'pgoutput,test_decoding,wal2json'\n");
        }
        if tls {
            let mut openssl = Command::new("openssl");
            openssl
                .args([
                    "req",
                    "-new",
                    "-x509",
                    "-days",
                    "1",
                    "-nodes",
                    "-subj",
                    "/CN=localhost",
                ])
                .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
                .arg("-keyout")
                .arg(data.join("server.key"))
                .arg("-out")
                .arg(data.join("server.crt"));
            run(&mut openssl, "openssl");
            if is_root() {
                run(
                    Command::new("chown")
                        .arg("postgres:postgres")
                        .arg(data.join("server.key"))
                        .arg(data.join("server.crt")),
                    "chown",
                );
            }
            run(
                Command::new("chmod")
                    .arg("600")
                    .arg(data.join("server.key")),
                "chmod",
            );
            conf.push_str("ssl = on\n");
        }
        for s in settings {
            conf.push_str(s);
            conf.push('\n');
        }
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .expect("conf");
        f.write_all(conf.as_bytes()).expect("write conf");
        fs::write(data.join("pg_hba.conf"), hba).expect("write hba");

        let mut start = pg("pg_ctl");
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-w", "-t", "30", "start"]);
        let cluster = Cluster { dir, port };
        let out = start.output().expect("pg_ctl start");
        if !out.status.success() {
            let log = fs::read_to_string(cluster.dir.join("log")).unwrap_or_default();
            panic!(
                "pg_ctl start failed: {}\n{log}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        cluster
    }

    /// A config for `user` over the Unix socket (`tcp == false`) or 127.0.0.1.
    pub(crate) fn config(
        &self,
        user: &str,
        password: Option<&str>,
        tcp: bool,
    ) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        if tcp {
            c.host("127.0.0.1");
        } else {
            c.host_path(&self.dir);
        }
        c.port(self.port).user(user).dbname("postgres");
        if let Some(pw) = password {
            c.password(pw);
        }
        c
    }

    /// A superuser SQL connection over the Unix socket.
    pub(crate) async fn admin(&self) -> tokio_postgres::Client {
        let pg = crate::source::PgEndpoint::from_config(self.config("postgres", None, false));
        let (client, _task) = crate::source::connect_sql(&pg)
            .await
            .expect("admin connect");
        client
    }
}

fn supports_output_plugin_libraries() -> bool {
    Command::new(Path::new(BIN).join("postgres"))
        .arg("--describe-config")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("output_plugin_libraries"))
        .unwrap_or(false)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut stop = pg("pg_ctl");
        stop.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = stop.output();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
