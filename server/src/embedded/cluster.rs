//! `EmbeddedPostgres`: initdb + `postgres` as a child process on a private Unix socket, stopped
//! and (unless the user chose a data dir) deleted on `stop()` or `Drop`. Writes no demo data
//! (`demo`) and streams nothing (walcast connects to it like to any server).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::host::{self, pg_command};
use super::EmbeddedError;
use crate::config::EmbeddedConfig;

/// How long the server gets to accept connections after it was spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Log lines quoted in startup errors.
const LOG_TAIL_LINES: usize = 20;

/// A running throwaway cluster. Connect through [`EmbeddedPostgres::database_url`].
#[derive(Debug)]
pub struct EmbeddedPostgres {
    /// The spawned process: `postgres` itself, or `runuser` wrapping it when we are root.
    child: Option<Child>,
    /// Private directory under /tmp: socket, server log and (unless configured) the data dir.
    run_dir: PathBuf,
    data_dir: PathBuf,
    port: u16,
}

impl EmbeddedPostgres {
    /// Checks binaries and wal2json, runs initdb (unless the data dir is already a cluster),
    /// starts `postgres` with logical decoding enabled and waits until it accepts connections.
    pub async fn start(cfg: &EmbeddedConfig) -> Result<EmbeddedPostgres, EmbeddedError> {
        host::check_binaries(&cfg.pg_bin)?;
        host::check_wal2json(&cfg.pg_bin)?;
        let as_root = host::running_as_root();

        let run_dir = create_run_dir()?;
        // From here on `cluster` owns run_dir, so any early return cleans it up via Drop.
        let mut cluster = EmbeddedPostgres {
            child: None,
            data_dir: cfg.data_dir.clone().unwrap_or_else(|| run_dir.join("data")),
            run_dir,
            port: host::free_port()?,
        };
        if as_root {
            if let Some(dir) = &cfg.data_dir {
                if !dir.exists() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| EmbeddedError::io(format!("create {}", dir.display()), e))?;
                    host::chown_to_pg_user(dir)?;
                }
            }
            host::chown_to_pg_user(&cluster.run_dir)?;
        }

        if !cluster.data_dir.join("PG_VERSION").is_file() {
            cluster.initdb(&cfg.pg_bin, as_root).await?;
        }
        cluster.spawn_server(&cfg.pg_bin, as_root)?;
        cluster.wait_ready().await?;
        tracing::info!(
            socket_dir = %cluster.run_dir.display(),
            data_dir = %cluster.data_dir.display(),
            port = cluster.port,
            psql = %cluster.psql_command(),
            "embedded postgres ready"
        );
        Ok(cluster)
    }

    /// A URL tokio-postgres parses into a Unix-socket host (percent-encoded directory).
    pub fn database_url(&self) -> String {
        format!(
            "postgresql://postgres@{}:{}/postgres",
            percent_encode(&self.run_dir.to_string_lossy()),
            self.port
        )
    }

    /// A command to paste into a shell to open `psql` on this cluster (Unix socket, trust).
    pub fn psql_command(&self) -> String {
        let dir = self.run_dir.to_string_lossy().replace('\'', r"'\''");
        format!("psql -h '{dir}' -p {} -U postgres postgres", self.port)
    }

    /// Connection settings for the same server, without going through a URL.
    pub fn pg_config(&self) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.run_dir)
            .port(self.port)
            .user("postgres")
            .dbname("postgres");
        config
    }

    /// Directory holding the server's Unix socket (`.s.PGSQL.<port>`) and log.
    pub fn socket_dir(&self) -> &Path {
        &self.run_dir
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Fast shutdown (escalating to immediate, then kill), then removes the temporary files.
    pub async fn stop(mut self) {
        self.shutdown(Duration::from_secs(10)).await;
        self.remove_run_dir();
    }

    async fn initdb(&self, pg_bin: &Path, as_root: bool) -> Result<(), EmbeddedError> {
        let mut cmd = pg_command(&pg_bin.join("initdb"), as_root);
        cmd.arg("-D").arg(&self.data_dir).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--no-locale",
        ]);
        let out = tokio::process::Command::from(cmd)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| EmbeddedError::io("run initdb", e))?;
        if !out.status.success() {
            let mut output = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            if output.is_empty() {
                output = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            }
            return Err(EmbeddedError::Command {
                command: "initdb",
                status: out.status,
                output,
            });
        }
        Ok(())
    }

    fn spawn_server(&mut self, pg_bin: &Path, as_root: bool) -> Result<(), EmbeddedError> {
        let log_path = self.log_path();
        let log = std::fs::File::create(&log_path)
            .map_err(|e| EmbeddedError::io(format!("create {}", log_path.display()), e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| EmbeddedError::io("duplicate the log file handle", e))?;

        let mut cmd = pg_command(&pg_bin.join("postgres"), as_root);
        cmd.arg("-D").arg(&self.data_dir);
        cmd.arg("-p").arg(self.port.to_string());
        // No TCP at all: the socket directory is private to this process tree.
        cmd.args(["-c", "listen_addresses="]);
        cmd.arg("-c").arg(format!(
            "unix_socket_directories={}",
            self.run_dir.display()
        ));
        for setting in [
            "wal_level=logical",
            "max_replication_slots=20",
            "max_wal_senders=20",
            "fsync=off",
        ] {
            cmd.args(["-c", setting]);
        }
        if host::supports_output_plugin_libraries(pg_bin, as_root) {
            cmd.args([
                "-c",
                "output_plugin_libraries=pgoutput,test_decoding,wal2json",
            ]);
        }
        cmd.stdin(Stdio::null()).stdout(log).stderr(log_err);
        // Own process group: a terminal Ctrl-C reaches walcast only, which then shuts the app
        // down before it stops the cluster (instead of Postgres dying under live sessions).
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .map_err(|e| EmbeddedError::io("spawn postgres", e))?;
        self.child = Some(child);
        Ok(())
    }

    /// Polls with real connections: the only readiness signal that also proves the socket
    /// path and authentication work.
    async fn wait_ready(&mut self) -> Result<(), EmbeddedError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut config = self.pg_config();
        config.connect_timeout(Duration::from_secs(2));
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(EmbeddedError::Exited {
                        status,
                        log_tail: host::tail(&self.log_path(), LOG_TAIL_LINES),
                    });
                }
            }
            let last_error = match config.connect(tokio_postgres::NoTls).await {
                Ok((client, connection)) => {
                    drop(client);
                    // The connection future finishes promptly once the client is gone.
                    let _ = connection.await;
                    return Ok(());
                }
                Err(err) => err.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(EmbeddedError::NotReady {
                    timeout: READY_TIMEOUT,
                    last_error,
                    log_tail: host::tail(&self.log_path(), LOG_TAIL_LINES),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_path(&self) -> PathBuf {
        self.run_dir.join("postgres.log")
    }

    /// The postmaster's pid. When we are root the child is `runuser`, which would only forward
    /// SIGTERM (smart shutdown); signalling the postmaster directly gives us fast shutdown.
    fn postmaster_pid(&self, child: &Child) -> u32 {
        std::fs::read_to_string(self.data_dir.join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next().and_then(|l| l.trim().parse().ok()))
            .unwrap_or_else(|| child.id())
    }

    /// INT (fast), then QUIT (immediate), then KILL; each step waits up to `grace`.
    /// `Drop` has a blocking twin of this loop.
    async fn shutdown(&mut self, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = self.postmaster_pid(&child);
        for signal in ["INT", "QUIT", "KILL"] {
            host::send_signal(pid, signal);
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => return,
                    Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
            tracing::warn!(
                pid,
                signal,
                "embedded postgres did not stop in time; escalating"
            );
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn remove_run_dir(&self) {
        if let Err(error) = std::fs::remove_dir_all(&self.run_dir) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.run_dir.display(), %error, "cannot remove embedded postgres directory");
            }
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Blocking fallback for a cluster that was never `stop()`ped (panic, early return).
            let pid = self.postmaster_pid(&child);
            for signal in ["INT", "QUIT", "KILL"] {
                host::send_signal(pid, signal);
                let deadline = Instant::now() + Duration::from_secs(3);
                while Instant::now() < deadline {
                    match child.try_wait() {
                        Ok(Some(_)) | Err(_) => break,
                        Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
                if !matches!(child.try_wait(), Ok(None)) {
                    break;
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.remove_run_dir();
    }
}

/// A fresh private directory under /tmp. Short on purpose: Unix socket paths are limited to
/// about 100 bytes.
fn create_run_dir() -> Result<PathBuf, EmbeddedError> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let base = Path::new("/tmp");
    let pid = std::process::id();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    loop {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("walcast-pg-{pid}-{seq}-{nanos:x}"));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(EmbeddedError::io(format!("create {}", dir.display()), e)),
        }
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (so `/` becomes `%2F`).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
