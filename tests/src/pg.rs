//! Throwaway Postgres 15 clusters (initdb + pg_ctl) and per-test databases. Owns process and
//! directory lifetimes of the clusters; knows nothing about walcast.
//!
//! Clusters are driven with `pg_ctl` so that stop/start on the same data dir and port is the same
//! code path as the first start. A process-global shared cluster is never dropped (statics are not),
//! so every cluster also gets a tiny watchdog shell that stops it and removes its directory once the
//! test process is gone, even after a crash.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Settings for a new cluster beyond the logical-replication defaults.
#[derive(Clone, Debug, Default)]
pub struct PgOptions {
    /// Require `scram-sha-256` on TCP connections for every role but `postgres`.
    pub scram_host_auth: bool,
    /// Extra `postgresql.conf` settings, e.g. `("wal_sender_timeout", "2s")`.
    pub settings: Vec<(String, String)>,
}

/// One running (or stopped) throwaway cluster. Stopped and deleted on drop.
pub struct PgCluster {
    base: PathBuf,
    data: PathBuf,
    sock: PathBuf,
    log: PathBuf,
    port: u16,
}

/// A name suffix unique within this test run: `<pid>_<counter>`.
pub fn unique_suffix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) fn pg_bin() -> PathBuf {
    std::env::var_os("WALCAST_TEST_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(PG_BIN))
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A command for a Postgres tool; as root it runs as the `postgres` user (initdb refuses root).
fn pg_command(tool: &str) -> Command {
    let path = pg_bin().join(tool);
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

fn run(mut cmd: Command, what: &str) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("{what} failed ({}): {}", out.status, text.trim());
    }
    Ok(text)
}

/// A port that was free a moment ago (the OS hands out ephemeral ports round-robin).
pub(crate) fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind an ephemeral port")?;
    Ok(l.local_addr()?.port())
}

impl PgCluster {
    /// The cluster shared by tests that never stop Postgres. Started on first use, stopped by its
    /// watchdog after the test process exits.
    pub fn shared() -> &'static PgCluster {
        static SHARED: OnceLock<PgCluster> = OnceLock::new();
        SHARED.get_or_init(|| match PgCluster::start_new(PgOptions::default()) {
            Ok(c) => c,
            Err(e) => panic!("cannot start the shared Postgres cluster: {e:#}"),
        })
    }

    /// initdb + start a private cluster.
    pub fn start_new(opts: PgOptions) -> Result<PgCluster> {
        let cluster = PgCluster::create(opts)?;
        cluster.start()?;
        Ok(cluster)
    }

    /// initdb a private cluster without starting it (`start()` does): a server that is not up
    /// yet, on a port chosen now.
    pub fn create(opts: PgOptions) -> Result<PgCluster> {
        let port = free_port()?;
        let base = std::env::temp_dir().join(format!("walcast-e2e-{}", unique_suffix()));
        let cluster = PgCluster {
            data: base.join("data"),
            sock: base.join("sock"),
            log: base.join("postgres.log"),
            base,
            port,
        };
        fs::create_dir_all(&cluster.sock)
            .with_context(|| format!("cannot create {}", cluster.sock.display()))?;
        if is_root() {
            let mut c = Command::new("chown");
            c.args(["-R", "postgres:postgres"]).arg(&cluster.base);
            run(c, "chown")?;
        }
        cluster.spawn_watchdog();
        let mut init = pg_command("initdb");
        init.arg("-D").arg(&cluster.data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        run(init, "initdb")?;
        cluster.write_config(&opts)?;
        Ok(cluster)
    }

    fn write_config(&self, opts: &PgOptions) -> Result<()> {
        let mut conf = String::from("\n# walcast e2e\n");
        let mut settings: Vec<(String, String)> = vec![
            ("wal_level".into(), "logical".into()),
            ("max_replication_slots".into(), "50".into()),
            ("max_wal_senders".into(), "50".into()),
            ("max_connections".into(), "200".into()),
            ("fsync".into(), "off".into()),
            ("full_page_writes".into(), "off".into()),
            ("listen_addresses".into(), "'127.0.0.1'".into()),
            ("port".into(), self.port.to_string()),
            (
                "unix_socket_directories".into(),
                format!("'{}'", self.sock.display()),
            ),
        ];
        if supports_output_plugin_libraries() {
            settings.push((
                "output_plugin_libraries".into(),
                "'pgoutput,test_decoding,wal2json'".into(),
            ));
        }
        for (k, v) in &opts.settings {
            let quoted = if v.starts_with('\'') {
                v.clone()
            } else {
                format!("'{v}'")
            };
            settings.push((k.clone(), quoted));
        }
        for (k, v) in settings {
            conf.push_str(&format!("{k} = {v}\n"));
        }
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(self.data.join("postgresql.conf"))?;
        f.write_all(conf.as_bytes())?;
        if opts.scram_host_auth {
            // The harness itself connects over the Unix socket (trust); TCP logins other than the
            // superuser must prove a password with SCRAM.
            let hba = "local all all trust\n\
                       local replication all trust\n\
                       host all postgres 127.0.0.1/32 trust\n\
                       host replication postgres 127.0.0.1/32 trust\n\
                       host all all 127.0.0.1/32 scram-sha-256\n\
                       host replication all 127.0.0.1/32 scram-sha-256\n";
            fs::write(self.data.join("pg_hba.conf"), hba)?;
        }
        Ok(())
    }

    /// Stops the cluster and removes its directory once this process has exited.
    fn spawn_watchdog(&self) {
        let stop = format!(
            "{} -D '{}' -m immediate -w stop",
            pg_bin().join("pg_ctl").display(),
            self.data.display()
        );
        let stop = if is_root() {
            format!("runuser -u postgres -- {stop}")
        } else {
            stop
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; if [ -f '{data}/postmaster.pid' ]; then {stop}; fi; rm -rf '{base}'",
            pid = std::process::id(),
            data = self.data.display(),
            base = self.base.display(),
        );
        // Detached on purpose: it must outlive us. Its stdio is closed so it never holds a pipe
        // of whoever runs the tests.
        let _ = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }

    /// Starts (or restarts) the cluster on its data dir and port; returns once it accepts connections.
    pub fn start(&self) -> Result<()> {
        let mut c = pg_command("pg_ctl");
        c.arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "60", "start"]);
        run(c, "pg_ctl start")
            .map_err(|e| e.context(format!("postgres log:\n{}", self.log_tail(30))))?;
        Ok(())
    }

    /// Fast shutdown (SIGINT to the postmaster, as `pg_ctl stop -m fast`); waits until it is down.
    pub fn stop(&self) -> Result<()> {
        let mut c = pg_command("pg_ctl");
        c.arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "-t", "60", "stop"]);
        run(c, "pg_ctl stop")?;
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn socket_dir(&self) -> &Path {
        &self.sock
    }

    /// `postgres://user[:password]@127.0.0.1:port/db`, the form walcast users write.
    pub fn tcp_url(&self, db: &str, user: &str, password: Option<&str>) -> String {
        let auth = match password {
            Some(p) => format!(
                "{}:{}",
                crate::percent_encode(user),
                crate::percent_encode(p)
            ),
            None => crate::percent_encode(user),
        };
        format!("postgres://{auth}@127.0.0.1:{}/{db}", self.port)
    }

    /// A superuser connection over the Unix socket. The connection task runs on the caller's
    /// runtime (each `#[tokio::test]` has its own).
    pub async fn connect(&self, db: &str) -> Result<tokio_postgres::Client> {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host_path(&self.sock)
            .port(self.port)
            .user("postgres")
            .dbname(db);
        let (client, conn) = cfg
            .connect(tokio_postgres::NoTls)
            .await
            .with_context(|| format!("cannot connect to database {db} on port {}", self.port))?;
        tokio::spawn(async move {
            // Errors here surface on the client side as closed-connection errors.
            let _ = conn.await;
        });
        Ok(client)
    }

    /// Runs SQL with psql, synchronously: usable from `Drop`.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let mut c = Command::new(pg_bin().join("psql"));
        c.env("PGCONNECT_TIMEOUT", "5")
            .arg("-X")
            .args(["-v", "ON_ERROR_STOP=1", "-At", "-U", "postgres", "-h"])
            .arg(&self.sock)
            .args(["-p", &self.port.to_string(), "-d", db, "-c", sql]);
        run(c, "psql")
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail_of(&self.log, lines)
    }
}

pub(crate) fn tail_of(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn supports_output_plugin_libraries() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        Command::new(pg_bin().join("postgres"))
            .arg("--describe-config")
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("output_plugin_libraries"))
            .unwrap_or(false)
    })
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists() {
            let mut c = pg_command("pg_ctl");
            c.arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"]);
            let _ = run(c, "pg_ctl stop");
        }
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// A database of its own plus a slot name of its own, for one test. Dropped (with any slot left in
/// it) on drop, best effort.
pub struct TestDb<'c> {
    cluster: &'c PgCluster,
    name: String,
    slot: String,
    client: tokio_postgres::Client,
}

impl<'c> TestDb<'c> {
    /// Creates `t_<label>_<unique>`; `label` helps when reading Postgres logs.
    pub async fn new(cluster: &'c PgCluster, label: &str) -> Result<TestDb<'c>> {
        Self::with_owner(cluster, label, None).await
    }

    /// As `new`, with the database owned by `owner`.
    pub async fn with_owner(
        cluster: &'c PgCluster,
        label: &str,
        owner: Option<&str>,
    ) -> Result<TestDb<'c>> {
        let owner_clause = owner.map(|o| format!(" OWNER \"{o}\"")).unwrap_or_default();
        Self::with_options(cluster, label, &owner_clause).await
    }

    /// As `new`, with `options` appended to `CREATE DATABASE` (e.g. ` ENCODING 'SQL_ASCII'
    /// TEMPLATE template0`).
    pub async fn with_options(
        cluster: &'c PgCluster,
        label: &str,
        options: &str,
    ) -> Result<TestDb<'c>> {
        let suffix = unique_suffix();
        let name = format!("t_{label}_{suffix}");
        let slot = format!("s_{label}_{suffix}");
        let admin = cluster.connect("postgres").await?;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\"{options}"))
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        let client = cluster.connect(&name).await?;
        Ok(TestDb {
            cluster,
            name,
            slot,
            client,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The slot name walcast should use for this test.
    pub fn slot(&self) -> &str {
        &self.slot
    }

    pub fn cluster(&self) -> &'c PgCluster {
        self.cluster
    }

    /// The connection opened at creation. After a Postgres restart, use `connect()`.
    pub fn client(&self) -> &tokio_postgres::Client {
        &self.client
    }

    /// A fresh superuser connection to this database.
    pub async fn connect(&self) -> Result<tokio_postgres::Client> {
        self.cluster.connect(&self.name).await
    }

    /// Runs one or more statements on the creation connection.
    pub async fn exec(&self, sql: &str) -> Result<()> {
        self.client
            .batch_execute(sql)
            .await
            .with_context(|| format!("SQL failed: {sql}"))
    }

    /// Waits (up to `timeout`) until this database's slot is confirmed past the WAL's end as it
    /// is now: walcast confirms only what its journal holds, so everything committed before
    /// this call is journaled once it returns.
    pub async fn slot_confirmed_to_now(&self, timeout: std::time::Duration) -> Result<()> {
        let wal: String = self
            .client
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await?
            .get(0);
        crate::wait_for(
            "the slot confirmed to the WAL's end",
            timeout,
            std::time::Duration::from_millis(20),
            || async {
                let row = self
                    .client
                    .query_one(
                        "SELECT confirmed_flush_lsn >= $1::text::pg_lsn \
                         FROM pg_replication_slots WHERE slot_name = $2",
                        &[&wal, &self.slot()],
                    )
                    .await?;
                Ok(row.get::<_, bool>(0).then_some(()))
            },
        )
        .await
    }

    /// A key/value connection string for this database over the cluster's Unix socket.
    pub fn unix_url(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname={}",
            self.cluster.socket_dir().display(),
            self.cluster.port(),
            self.name()
        )
    }

    pub fn url(&self) -> String {
        self.cluster.tcp_url(&self.name, "postgres", None)
    }
}

impl Drop for TestDb<'_> {
    fn drop(&mut self) {
        // Slots pin WAL and block DROP DATABASE; the walsender may take a moment to notice its
        // client is gone, hence terminate + retry.
        let db = self.name.replace('\'', "''");
        for _ in 0..20 {
            let _ = self.cluster.psql(
                "postgres",
                &format!("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = '{db}' AND active_pid IS NOT NULL"),
            );
            let dropped = self.cluster.psql(
                "postgres",
                &format!("SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots WHERE database = '{db}' AND NOT active"),
            );
            let left = self.cluster.psql(
                "postgres",
                &format!("SELECT count(*) FROM pg_replication_slots WHERE database = '{db}'"),
            );
            let _ = dropped; // a slot that turned active again is retried below
            match left {
                Ok(n) if n.trim() == "0" => break,
                Err(_) => break, // cluster down: nothing to clean
                Ok(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
        let _ = self.cluster.psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
        );
    }
}
