//! The `walcast` binary as a child process: locate, configure by env, wait until listening and
//! ready, scrape metrics and memory, stop. Knows nothing about the wire protocol's frames.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};

use crate::pg::{free_port, tail_of, unique_suffix, TestDb};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Peak and current resident memory of a process, from `/proc/PID/status`.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    pub hwm_kib: u64,
    pub rss_kib: u64,
}

/// A running walcast; killed on drop. Its stdout and stderr are kept in `log_dir` for debugging.
pub struct Walcast {
    child: Child,
    addr: SocketAddr,
    log_dir: PathBuf,
    http: reqwest::Client,
    /// The journal directory the harness chose (removed on drop); `None` when the test set
    /// `WALCAST_JOURNAL_DIR` itself (a restart test keeps it across processes).
    own_journal: Option<PathBuf>,
}

/// Env and flags for one walcast process.
pub struct WalcastBuilder {
    env: Vec<(String, String)>,
    args: Vec<String>,
    config_toml: Option<String>,
    prefer_release: bool,
    label: String,
    /// Runs this binary rather than the one `walcast_binary` finds (benches comparing builds).
    binary: Option<PathBuf>,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The walcast binary the suite runs (for CLI tests).
pub fn walcast_binary() -> Result<PathBuf> {
    locate_binary(false)
}

/// `WALCAST_BIN`, else the `walcast` of the build this program belongs to
/// (`target/<profile>/walcast`); with `prefer_release` (memory and throughput tests) a release
/// build in any case. A missing binary, or one older than the server's sources, is an error
/// naming the command, never a silent run of old code: cargo builds other packages' binaries
/// for neither `cargo test` nor `cargo run`, and a build from here would select other targets
/// than the test run, so cargo would resolve other features and rebuild shared dependencies.
fn locate_binary(prefer_release: bool) -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("WALCAST_BIN") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("WALCAST_BIN={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    let own = profile_dir()?;
    let release = own.with_file_name("release").join("walcast");
    if prefer_release && own.file_name().is_none_or(|n| n != "release") {
        if current(&release) {
            return Ok(release);
        }
        bail!(
            "this test measures walcast's memory or throughput, so it runs a release build, and \
             {} is missing or older than the server's sources: run the suite with `make test` \
             (what CI runs), or `cargo build --release -p walcast` before `cargo test`, or point \
             WALCAST_BIN at a binary",
            release.display()
        );
    }
    let bin = own.join("walcast");
    if current(&bin) {
        return Ok(bin);
    }
    let build = match own.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "cargo build -p walcast".to_owned(),
        Some(profile) => format!("cargo build --profile {profile} -p walcast"),
        None => "cargo build -p walcast".to_owned(),
    };
    bail!(
        "{} is missing or older than the server's sources, and `cargo test` does not build it: \
         run the suite with `make test` (what CI runs), or `{build}` before `cargo test`, or \
         point WALCAST_BIN at a binary",
        bin.display()
    )
}

/// Whether `bin` exists and is not older than any file it is built from.
fn current(bin: &Path) -> bool {
    let built = fs::metadata(bin).and_then(|m| m.modified()).ok();
    built.is_some_and(|built| newest_source().is_none_or(|sources| built >= sources))
}

/// `target/<profile>` of this program: the directory of the executable, or its parent when
/// that is `deps` (test binaries).
fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("the path of this test program")?;
    let dir = exe.parent().context("the test program's directory")?;
    Ok(match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().unwrap_or(dir),
        _ => dir,
    }
    .to_path_buf())
}

/// The modification time of the newest file the server binary is built from (its sources, the
/// assets it embeds, the manifests and the lock file).
fn newest_source() -> Option<SystemTime> {
    fn walk(path: &Path, newest: &mut Option<SystemTime>) {
        let Ok(meta) = fs::metadata(path) else { return };
        if meta.is_dir() {
            for entry in fs::read_dir(path).into_iter().flatten().flatten() {
                walk(&entry.path(), newest);
            }
        } else if let Ok(modified) = meta.modified() {
            *newest = (*newest).max(Some(modified));
        }
    }
    let root = workspace_root();
    let mut newest = None;
    for path in [
        "server/src",
        "server/assets",
        "server/Cargo.toml",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        walk(&root.join(path), &mut newest);
    }
    newest
}

impl WalcastBuilder {
    /// Defaults for `db`: its TCP URL and slot, log level from `WALCAST_TEST_LOG` (else `info`).
    pub fn new(db: &TestDb<'_>) -> Self {
        let log = std::env::var("WALCAST_TEST_LOG").unwrap_or_else(|_| "info".into());
        WalcastBuilder {
            env: vec![
                ("DATABASE_URL".into(), db.url()),
                ("WALCAST_SLOT".into(), db.slot().into()),
                ("WALCAST_LOG".into(), log),
            ],
            args: Vec::new(),
            config_toml: None,
            prefer_release: false,
            label: db.name().into(),
            binary: None,
        }
    }

    /// Defaults for a database that need not exist yet (`DATABASE_URL` = `url`): walcast started
    /// before its Postgres.
    pub fn for_url(url: &str, slot: &str, label: &str) -> Self {
        let log = std::env::var("WALCAST_TEST_LOG").unwrap_or_else(|_| "info".into());
        WalcastBuilder {
            env: vec![
                ("DATABASE_URL".into(), url.into()),
                ("WALCAST_SLOT".into(), slot.into()),
                ("WALCAST_LOG".into(), log),
            ],
            args: Vec::new(),
            config_toml: None,
            prefer_release: false,
            label: label.into(),
            binary: None,
        }
    }

    /// Sets (or replaces) one environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Writes `text` to a file in the log dir and passes `--config` to it (for settings that have
    /// no env override, e.g. `replication.status_interval`).
    pub fn config_toml(mut self, text: &str) -> Self {
        self.config_toml = Some(text.into());
        self
    }

    /// Run a release build (memory and throughput tests): in a test program of another profile,
    /// `target/release/walcast`, which must be current (see `locate_binary`).
    pub fn prefer_release(mut self) -> Self {
        self.prefer_release = true;
        self
    }

    /// Runs `path` (another build of walcast) instead of the binary the suite finds.
    pub fn binary(mut self, path: &Path) -> Self {
        self.binary = Some(path.to_path_buf());
        self
    }

    /// Spawns walcast and waits for its listening line and `/readyz` 200.
    pub async fn start(self) -> Result<Walcast> {
        self.launch(true).await
    }

    /// Spawns walcast and waits for its listening line only (`/readyz` may still say 503).
    pub async fn spawn(self) -> Result<Walcast> {
        self.launch(false).await
    }

    /// Runs walcast until it exits by itself (within `timeout`): its exit status, stdout and
    /// stderr.
    pub async fn run_to_exit(self, timeout: Duration) -> Result<(ExitStatus, String, String)> {
        let bin = match &self.binary {
            Some(path) => path.clone(),
            None => locate_binary(self.prefer_release)?,
        };
        let log_dir = self.log_dir()?;
        let (mut w, _listening, copier) = self.spawn_child(&bin, &log_dir)?;
        let status = w.wait_exit(timeout).await?;
        // The copier ends when the process's stdout closes.
        let _ = tokio::task::spawn_blocking(move || copier.join()).await;
        let stdout = fs::read_to_string(log_dir.join("stdout.log"))?;
        Ok((
            status,
            stdout,
            fs::read_to_string(log_dir.join("stderr.log"))?,
        ))
    }

    fn log_dir(&self) -> Result<PathBuf> {
        let log_dir = workspace_root().join("target/e2e-logs").join(format!(
            "{}-{}",
            self.label,
            unique_suffix()
        ));
        fs::create_dir_all(&log_dir)
            .with_context(|| format!("cannot create {}", log_dir.display()))?;
        Ok(log_dir)
    }

    async fn launch(self, ready: bool) -> Result<Walcast> {
        let bin = match &self.binary {
            Some(path) => path.clone(),
            None => locate_binary(self.prefer_release)?,
        };
        let log_dir = self.log_dir()?;
        let mut last_err = None;
        // A port picked as free can be taken by the time walcast binds it; retry on that only.
        for _ in 0..3 {
            match self.try_start(&bin, &log_dir, ready).await {
                Ok(w) => return Ok(w),
                Err(e) if format!("{e:#}").to_lowercase().contains("in use") => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("walcast did not start")))
    }

    /// Spawns the process on a free port: the walcast, a receiver told when the listening line
    /// is out, and the thread that copies stdout to the log dir.
    #[allow(clippy::type_complexity)]
    fn spawn_child(
        &self,
        bin: &Path,
        log_dir: &Path,
    ) -> Result<(
        Walcast,
        tokio::sync::oneshot::Receiver<()>,
        std::thread::JoinHandle<()>,
    )> {
        let port = free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let stderr_path = log_dir.join("stderr.log");
        let stdout_path = log_dir.join("stdout.log");
        let mut cmd = Command::new(bin);
        // Run in the (empty) log dir so a developer's ./walcast.toml is not picked up.
        cmd.current_dir(log_dir);
        for (k, _) in std::env::vars() {
            if k.starts_with("WALCAST_") || k == "DATABASE_URL" || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.env("WALCAST_LISTEN", addr.to_string());
        // A journal of its own per process, removed with it, unless the test chose one.
        let own_journal = (!self.env.iter().any(|(k, _)| k == "WALCAST_JOURNAL_DIR"))
            .then(|| log_dir.join("journal"));
        if let Some(dir) = &own_journal {
            cmd.env("WALCAST_JOURNAL_DIR", dir);
        }
        if let Some(text) = &self.config_toml {
            let path = log_dir.join("walcast.test.toml");
            fs::write(&path, text)?;
            cmd.arg("--config").arg(path);
        }
        cmd.args(&self.args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&stderr_path)?);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot spawn {}", bin.display()))?;

        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stdout = child.stdout.take().context("walcast stdout not piped")?;
        let copier = std::thread::spawn(move || {
            // Keeps draining stdout for the process lifetime so the server never blocks on a pipe.
            let mut tx = Some(tx);
            let mut log = File::create(stdout_path).ok();
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if let Some(f) = log.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if line.contains("walcast listening on") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
        });
        let w = Walcast {
            child,
            addr,
            log_dir: log_dir.to_path_buf(),
            http: reqwest::Client::new(),
            own_journal,
        };
        Ok((w, rx, copier))
    }

    async fn try_start(&self, bin: &Path, log_dir: &Path, ready: bool) -> Result<Walcast> {
        let (mut w, mut rx, _copier) = self.spawn_child(bin, log_dir)?;
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        let mut listening = false;
        loop {
            if let Some(status) = w.child.try_wait()? {
                bail!(
                    "walcast ({}) exited early ({status}); logs in {}; stderr:\n{}",
                    bin.display(),
                    log_dir.display(),
                    w.stderr_tail(40)
                );
            }
            if !listening {
                listening = rx.try_recv().is_ok();
            }
            if listening && !ready {
                return Ok(w);
            }
            if listening {
                let answer = w.http.get(format!("{}/readyz", w.http_base())).send().await;
                if matches!(&answer, Ok(r) if r.status().as_u16() == 200) {
                    return Ok(w);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let stage = if listening {
                    "/readyz to answer 200"
                } else {
                    "the `walcast listening on` line on stdout"
                };
                bail!(
                    "walcast ({}) not ready after {READY_TIMEOUT:?}: waited for {stage}; logs in {}; stderr tail:\n{}",
                    bin.display(),
                    log_dir.display(),
                    w.stderr_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Walcast {
    pub fn builder(db: &TestDb<'_>) -> WalcastBuilder {
        WalcastBuilder::new(db)
    }

    /// Starts walcast for `db` with defaults.
    pub async fn start(db: &TestDb<'_>) -> Result<Walcast> {
        WalcastBuilder::new(db).start().await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn http_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn ws_base(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Everything walcast wrote to stderr (its log) so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.log_dir.join("stderr.log")).unwrap_or_default()
    }

    /// Everything walcast wrote to stdout so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(self.log_dir.join("stdout.log")).unwrap_or_default()
    }

    pub fn stderr_tail(&self, lines: usize) -> String {
        tail_of(&self.log_dir.join("stderr.log"), lines)
    }

    /// `GET path` returning status and body text.
    pub async fn get(&self, path: &str) -> Result<(u16, String)> {
        let r = self
            .http
            .get(format!("{}{path}", self.http_base()))
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.text().await?))
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> Result<String> {
        let (status, body) = self.get("/metrics").await?;
        if status != 200 {
            bail!("/metrics answered {status}: {body}");
        }
        Ok(body)
    }

    /// Sum of all samples of `name` (any labels) in `/metrics`, `None` if absent.
    pub async fn metric(&self, name: &str) -> Result<Option<f64>> {
        Ok(metric_value(&self.metrics().await?, name))
    }

    /// VmHWM and VmRSS of the process.
    pub fn memory(&self) -> Result<Memory> {
        let status = fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let field = |name: &str| -> Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("{name} missing"))?;
            let kib = line.split_whitespace().nth(1).context("no value")?;
            Ok(kib.parse()?)
        };
        Ok(Memory {
            hwm_kib: field("VmHWM:")?,
            rss_kib: field("VmRSS:")?,
        })
    }

    /// SIGKILL, as `kill -9`: no shutdown of any kind. Waits for the process to be gone.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn terminate(&self) -> Result<()> {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        if !st.success() {
            bail!("kill -TERM failed: {st}");
        }
        Ok(())
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait()? {
                return Ok(st);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("walcast still running after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Walcast {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.own_journal {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// Sum of the samples of metric `name` in Prometheus text (`name 3` or `name{a="b"} 3`).
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let rest = match line.strip_prefix(name) {
            Some(r) if r.starts_with(' ') || r.starts_with('{') => r,
            _ => continue,
        };
        let value = if rest.starts_with('{') {
            rest.rsplit_once('}').map(|(_, v)| v)?
        } else {
            rest
        };
        if let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// A journal directory that outlives one walcast process (removed on drop): give it to each
/// walcast of a test as `WALCAST_JOURNAL_DIR`.
pub struct JournalDir(PathBuf);

impl JournalDir {
    pub fn new(label: &str) -> Result<JournalDir> {
        let dir = std::env::temp_dir().join(format!("walcast-journal-{label}-{}", unique_suffix()));
        std::fs::create_dir_all(&dir)?;
        Ok(JournalDir(dir))
    }

    pub fn path(&self) -> &str {
        self.0.to_str().unwrap_or_default()
    }
}

impl Drop for JournalDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
