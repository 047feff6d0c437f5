//! TLS end to end, with a test CA made here by rcgen. The listener: walcast serves WSS with a
//! certificate for `localhost`, a client that trusts only the test CA (rustls, webpki checks as a
//! browser does) subscribes and gets changes, one trusting another CA is refused, plain HTTP, a
//! non-TLS byte stream and a silent client all end cleanly while walcast keeps serving, and a
//! certificate swap on disk reaches new clients (a half-written pair is refused and logged, the
//! old certificate serving meanwhile). Postgres: a cluster with `ssl=on` and a CA-signed
//! certificate for `localhost`; `verify-full` connects by that name and refuses `127.0.0.1` with
//! a message naming the mismatch and the fix, `verify-ca` accepts `127.0.0.1`, an unknown CA is
//! named as such, and every TCP connection walcast holds is encrypted.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use futures_util::StreamExt;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::Connector;
use walcast_tests::{
    percent_encode, unique_suffix, walcast_binary, Frame, PgCluster, PgOptions, TestDb, Walcast,
    WsClient, STEP,
};

/// The listener's handshake timeout (`walcast::tls::HANDSHAKE_TIMEOUT`).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A test certificate authority.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate signed by a `TestCa` and its key, PEM.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

impl TestCa {
    fn new(name: &str) -> Result<TestCa> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Ok(TestCa {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate()?)?,
        })
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (DNS names or IP addresses) with serial `serial`.
    fn leaf(&self, names: &[&str], serial: u64) -> Result<Leaf> {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("walcast test {serial}"));
        params.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        })
    }

    /// A rustls client config (ring) that trusts this CA only.
    fn client_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Result<TempDir> {
        let dir = std::env::temp_dir().join(format!("walcast-e2e-{label}-{}", unique_suffix()));
        fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Writes `text` to `path` through a temporary file and a rename, as deploy tools do.
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text)?;
    fs::rename(&tmp, path)?;
    Ok(())
}

/// walcast serving HTTPS/WSS. The harness's `Walcast` waits for `/readyz` over plain HTTP, which
/// a TLS port refuses, so this one is started here the same way (env, own journal, logs in
/// `target/e2e-logs`) and waits for `/readyz` over HTTPS. Killed on drop.
struct TlsWalcast {
    child: Child,
    addr: SocketAddr,
    log_dir: PathBuf,
    trust: Arc<rustls::ClientConfig>,
}

impl TlsWalcast {
    async fn start(
        db: &TestDb<'_>,
        cert: &Path,
        key: &Path,
        trust: Arc<rustls::ClientConfig>,
    ) -> Result<TlsWalcast> {
        let bin = walcast_binary()?;
        let log_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/e2e-logs")
            .join(format!("{}-{}", db.name(), unique_suffix()));
        fs::create_dir_all(&log_dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let config = log_dir.join("walcast.test.toml");
        // The interval has no env override: the file sets it, the env the files (both paths).
        fs::write(&config, "[tls]\nreload_interval = \"300ms\"\n")?;
        let mut cmd = Command::new(&bin);
        cmd.current_dir(&log_dir);
        for (k, _) in std::env::vars() {
            if k.starts_with("WALCAST_") || k == "DATABASE_URL" || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        let log = std::env::var("WALCAST_TEST_LOG").unwrap_or_else(|_| "info".into());
        cmd.env("DATABASE_URL", db.url())
            .env("WALCAST_SLOT", db.slot())
            .env("WALCAST_LOG", log)
            .env("WALCAST_LISTEN", addr.to_string())
            .env("WALCAST_JOURNAL_DIR", log_dir.join("journal"))
            .env("WALCAST_TLS_CERT", cert)
            .env("WALCAST_TLS_KEY", key)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(fs::File::create(log_dir.join("stdout.log"))?)
            .stderr(fs::File::create(log_dir.join("stderr.log"))?);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot spawn {}", bin.display()))?;
        let mut w = TlsWalcast {
            child,
            addr,
            log_dir,
            trust,
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = w.child.try_wait()? {
                bail!("walcast exited early ({status}); stderr:\n{}", w.stderr());
            }
            if let Ok((200, _, _)) = w.https_get("/readyz").await {
                return Ok(w);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "walcast not ready over HTTPS after 30s; stderr:\n{}",
                    w.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.log_dir.join("stderr.log")).unwrap_or_default()
    }

    /// `GET path` over HTTPS to `localhost` with a client trusting the test CA only: status,
    /// body and the certificate the server presented.
    async fn https_get(&self, path: &str) -> Result<(u16, String, CertificateDer<'static>)> {
        let attempt = async {
            let tcp = TcpStream::connect(self.addr).await?;
            let connector = tokio_rustls::TlsConnector::from(self.trust.clone());
            let mut tls = connector
                .connect(ServerName::try_from("localhost")?, tcp)
                .await
                .context("TLS handshake")?;
            let leaf = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .context("no server certificate")?
                .clone()
                .into_owned();
            tls.write_all(
                format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
            let mut response = Vec::new();
            // The server may close without close_notify after `connection: close`: what was
            // read counts.
            let _ = tls.read_to_end(&mut response).await;
            let text = String::from_utf8_lossy(&response).into_owned();
            let status = text
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("no HTTP status in {text:?}"))?;
            let body = text
                .split_once("\r\n\r\n")
                .map(|(_, b)| b.to_owned())
                .unwrap_or_default();
            Ok::<_, anyhow::Error>((status, body, leaf))
        };
        tokio::time::timeout(STEP, attempt)
            .await
            .map_err(|_| anyhow!("GET {path} over HTTPS: no answer within {STEP:?}"))?
    }

    /// Opens `wss://localhost:<port>/ws?<query>` trusting `trust`.
    async fn wss(
        &self,
        query: &str,
        trust: Arc<rustls::ClientConfig>,
    ) -> Result<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>>
    {
        let url = format!("wss://localhost:{}/ws?{query}", self.port());
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            url.as_str(),
            None,
            false,
            Some(Connector::Rustls(trust)),
        );
        let (ws, _) = tokio::time::timeout(STEP, connect)
            .await
            .map_err(|_| anyhow!("{url}: no answer within {STEP:?}"))?
            .with_context(|| format!("cannot connect to {url}"))?;
        Ok(ws)
    }
}

impl Drop for TlsWalcast {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(self.log_dir.join("journal"));
    }
}

type Wss = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// The next JSON text frame of `ws`.
async fn next_json(ws: &mut Wss) -> Result<serde_json::Value> {
    loop {
        match tokio::time::timeout(STEP, ws.next()).await {
            Err(_) => bail!("no frame within {STEP:?}"),
            Ok(Some(Ok(Message::Text(t)))) => return Ok(serde_json::from_str(t.as_str())?),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(other) => bail!("expected a text frame, got {other:?}"),
        }
    }
}

async fn expect_subscribed(ws: &mut Wss) -> Result<()> {
    let v = next_json(ws).await?;
    ensure!(v["type"] == "subscribed", "expected subscribed, got {v}");
    Ok(())
}

async fn expect_insert(ws: &mut Wss, id: i64) -> Result<()> {
    let v = next_json(ws).await?;
    ensure!(
        v["type"] == "change" && v["op"] == "insert" && v["new"]["id"] == id,
        "expected the insert of id {id}, got {v}"
    );
    Ok(())
}

/// Polls until `cond` holds, or fails naming `what`.
async fn eventually<F, Fut>(what: &str, timeout: Duration, mut cond: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond().await {
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_with_a_test_ca_plain_http_refused_and_certificate_reloaded() -> Result<()> {
    let ca = TestCa::new("walcast test CA")?;
    let first = ca.leaf(&["localhost"], 1001)?;
    let second = ca.leaf(&["localhost"], 1002)?;
    let dir = TempDir::new("tls-listener")?;
    let (cert, key) = (dir.path("cert.pem"), dir.path("key.pem"));
    fs::write(&cert, &first.cert_pem)?;
    fs::write(&key, &first.key_pem)?;

    let db = TestDb::new(PgCluster::shared(), "tls_wss").await?;
    db.exec("CREATE TABLE items (id int PRIMARY KEY, name text)")
        .await?;
    let server = TlsWalcast::start(&db, &cert, &key, ca.client_config()?).await?;
    let addr = server.addr;

    // A client that connects and never says anything is dropped after the handshake timeout.
    let silent = tokio::spawn(async move {
        let mut tcp = TcpStream::connect(addr).await?;
        let started = tokio::time::Instant::now();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(HANDSHAKE_TIMEOUT + STEP, tcp.read(&mut buf)).await;
        ensure!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "a silent client was not closed: {read:?}"
        );
        Ok::<_, anyhow::Error>(started.elapsed())
    });

    // WSS with a client trusting the test CA only: subscribed, then the change.
    let mut ws = server.wss("query=*:items", ca.client_config()?).await?;
    expect_subscribed(&mut ws).await?;
    db.exec("INSERT INTO items VALUES (1, 'over wss')").await?;
    expect_insert(&mut ws, 1).await?;

    // A client trusting another CA refuses walcast's certificate.
    let stranger = TestCa::new("some other CA")?;
    let refused = server.wss("query=*:items", stranger.client_config()?).await;
    let err = format!(
        "{:#}",
        refused.err().context("a client of another CA connected")?
    );
    ensure!(
        err.contains("UnknownIssuer") || err.contains("invalid peer certificate"),
        "{err}"
    );

    // Plain HTTP to the TLS port: a 400 naming https://, promptly (no hang).
    let plain = reqwest::Client::builder().timeout(STEP).build()?;
    let resp = plain
        .get(format!("http://127.0.0.1:{}/readyz", server.port()))
        .send()
        .await
        .context("plain HTTP to the TLS port hung or failed uncleanly")?;
    ensure!(resp.status().as_u16() == 400, "{resp:?}");
    let body = resp.text().await?;
    ensure!(body.contains("https://"), "{body}");
    // ws:// is refused the same way; bytes that are neither HTTP nor TLS are closed.
    let ws_plain = tokio::time::timeout(
        STEP,
        tokio_tungstenite::connect_async(format!(
            "ws://127.0.0.1:{}/ws?query=*:items",
            server.port()
        )),
    )
    .await
    .context("ws:// to the TLS port hung")?;
    match ws_plain {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            ensure!(r.status().as_u16() == 400, "{r:?}")
        }
        other => bail!("ws:// to the TLS port: expected HTTP 400, got {other:?}"),
    }
    let mut junk = TcpStream::connect(addr).await?;
    junk.write_all(b"\x00\x01 not tls\r\n").await?;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(STEP, junk.read(&mut buf)).await;
    ensure!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "junk bytes: expected the connection closed, got {read:?}"
    );

    // walcast still serves, over HTTPS, with the first certificate.
    let (status, _, leaf) = server.https_get("/readyz").await?;
    ensure!(status == 200 && leaf == first.der, "status {status}");
    db.exec("INSERT INTO items VALUES (2, 'still here')")
        .await?;
    expect_insert(&mut ws, 2).await?;

    // Swap: a new certificate with the old key first (a deploy caught half way) is refused and
    // logged, the old pair keeps serving; once the key follows, new clients get the new one.
    write_atomic(&cert, &second.cert_pem)?;
    eventually("the refused half-written pair in the log", STEP, || async {
        server.stderr().contains("cannot be used")
    })
    .await
    .with_context(|| server.stderr())?;
    let (status, _, leaf) = server.https_get("/readyz").await?;
    ensure!(
        status == 200 && leaf == first.der,
        "the old certificate must keep serving"
    );
    write_atomic(&key, &second.key_pem)?;
    let second_der = &second.der;
    let server_ref = &server;
    eventually("the new certificate to be served", STEP, || async move {
        let served = server_ref.https_get("/readyz").await;
        matches!(served, Ok((200, _, leaf)) if leaf == *second_der)
    })
    .await?;
    let stderr = server.stderr();
    ensure!(stderr.contains("TLS certificate reloaded"), "{stderr}");
    // New clients handshake with the new certificate; the socket opened before goes on.
    let mut after = server
        .wss("query=insert:items", ca.client_config()?)
        .await?;
    expect_subscribed(&mut after).await?;
    db.exec("INSERT INTO items VALUES (3, 'after the swap')")
        .await?;
    expect_insert(&mut after, 3).await?;
    expect_insert(&mut ws, 3).await?;

    let silent_for = silent.await??;
    ensure!(
        silent_for >= HANDSHAKE_TIMEOUT - Duration::from_secs(1),
        "the silent client was closed after {silent_for:?}, before the handshake timeout"
    );

    // The shared cluster has no TLS: the default sslmode=prefer connected in plaintext over TCP,
    // which is said once, with the fix.
    let stderr = server.stderr();
    let warnings = stderr
        .matches("sslmode=prefer (the default) fell back")
        .count();
    ensure!(
        warnings == 1,
        "expected one plaintext warning, got {warnings}:\n{stderr}"
    );
    ensure!(stderr.contains("sslmode=verify-full"), "{stderr}");
    Ok(())
}

/// Writes the server's certificate and key where Postgres (the `postgres` user when we are root)
/// reads them: key mode 0600, owned by the server's user.
fn install_server_files(dir: &TempDir, leaf: &Leaf) -> Result<(PathBuf, PathBuf)> {
    use std::os::unix::fs::PermissionsExt;
    let (cert, key) = (dir.path("server.crt"), dir.path("server.key"));
    fs::write(&cert, &leaf.cert_pem)?;
    fs::write(&key, &leaf.key_pem)?;
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600))?;
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o755))?;
    let root = fs::read_to_string("/proc/self/status")?
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if root {
        let status = Command::new("chown")
            .arg("postgres:postgres")
            .arg(&cert)
            .arg(&key)
            .status()?;
        ensure!(status.success(), "chown postgres {}", key.display());
    }
    Ok((cert, key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_verify_full_refuses_a_wrong_host_name() -> Result<()> {
    let ca = TestCa::new("walcast test Postgres CA")?;
    let dir = TempDir::new("tls-pg")?;
    let (cert, key) = install_server_files(&dir, &ca.leaf(&["localhost"], 7)?)?;
    let ca_file = dir.path("ca.pem");
    fs::write(&ca_file, ca.pem())?;
    let other_ca_file = dir.path("other-ca.pem");
    fs::write(&other_ca_file, TestCa::new("not the server's CA")?.pem())?;
    let cluster = PgCluster::start_new(PgOptions {
        settings: vec![
            ("ssl".into(), "on".into()),
            ("ssl_cert_file".into(), cert.display().to_string()),
            ("ssl_key_file".into(), key.display().to_string()),
        ],
        ..Default::default()
    })?;
    let db = TestDb::new(&cluster, "tls_pg").await?;
    db.exec("CREATE TABLE items (id int PRIMARY KEY, name text); INSERT INTO items VALUES (1, 'before')")
        .await?;
    let url = |host: &str, mode: &str, root: &Path| {
        format!(
            "postgres://postgres@{host}:{}/{}?sslmode={mode}&sslrootcert={}",
            cluster.port(),
            db.name(),
            percent_encode(&root.display().to_string())
        )
    };

    // verify-full by the certificate's name: every connection is up, and encrypted.
    let server = Walcast::builder(&db)
        .env("DATABASE_URL", &url("localhost", "verify-full", &ca_file))
        .start()
        .await?;
    let (mut snap, _) =
        WsClient::subscribe(&server, &[("query", "*:items"), ("snapshot", "true")]).await?;
    match snap.next_frame(STEP).await? {
        Frame::Json(v, _) if v["type"] == "row" && v["row"]["id"] == 1 => {}
        other => bail!("expected the snapshot row, got {other:?}"),
    }
    match snap.next_frame(STEP).await? {
        Frame::Json(v, _) if v["type"] == "snapshot_end" => {}
        other => bail!("expected snapshot_end, got {other:?}"),
    }
    db.exec("INSERT INTO items VALUES (2, 'over verify-full')")
        .await?;
    let change = snap.next_change(STEP).await?;
    ensure!(change["new"]["id"] == 2, "{change}");
    let row = db
        .client()
        .query_one(
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) WHERE a.client_addr IS NOT NULL",
            &[],
        )
        .await?;
    let (encrypted, tcp): (i64, i64) = (row.get(0), row.get(1));
    ensure!(
        tcp >= 2 && encrypted == tcp,
        "walcast's TCP connections: {encrypted} of {tcp} encrypted"
    );
    ensure!(
        !server.stderr_tail(200).contains("fell back"),
        "no plaintext warning with TLS"
    );
    drop(snap);
    drop(server);

    // verify-full by IP: the certificate names localhost only. walcast exits at start with the
    // cause and the fix.
    let err = Walcast::builder(&db)
        .env("DATABASE_URL", &url("127.0.0.1", "verify-full", &ca_file))
        .start()
        .await
        .err()
        .context("verify-full accepted a certificate without 127.0.0.1")?;
    let err = format!("{err:#}");
    ensure!(err.contains("exited early"), "{err}");
    ensure!(
        err.contains("name mismatch")
            && err.contains("\"127.0.0.1\"")
            && err.contains("it names localhost"),
        "{err}"
    );
    ensure!(err.contains("sslmode=verify-ca"), "the fix is named: {err}");

    // A CA that did not sign the server's certificate: unknown issuer, the file named.
    let err = Walcast::builder(&db)
        .env(
            "DATABASE_URL",
            &url("localhost", "verify-full", &other_ca_file),
        )
        .start()
        .await
        .err()
        .context("verify-full accepted a certificate of another CA")?;
    let err = format!("{err:#}");
    ensure!(
        err.contains("unknown issuer") && err.contains("other-ca.pem"),
        "{err}"
    );

    // verify-ca checks the chain only: 127.0.0.1 is fine.
    let server = Walcast::builder(&db)
        .env("DATABASE_URL", &url("127.0.0.1", "verify-ca", &ca_file))
        .start()
        .await?;
    let (mut client, _) = WsClient::subscribe(&server, &[("query", "insert:items")]).await?;
    db.exec("INSERT INTO items VALUES (3, 'over verify-ca')")
        .await?;
    let change = client.next_change(STEP).await?;
    ensure!(change["new"]["id"] == 3, "{change}");
    Ok(())
}
