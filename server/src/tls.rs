//! HTTPS/WSS on the `listen` port (`[tls]`): loads the certificate chain and key (PEM) into a
//! rustls `ServerConfig` (ring provider, ALPN `http/1.1`), accepts TCP connections and runs each
//! TLS handshake in a task of its own under a timeout (a client that never finishes holds no slot
//! and delays nobody), hands finished streams to axum through the `axum::serve::Listener` trait,
//! answers plain HTTP on that port with a 400 naming https://, and looks at both files every
//! `tls.reload_interval` (`reload::Watch`) so that a changed, valid pair replaces the served one
//! (a bad pair is logged, the old one keeps serving).
//! It does not route or serve HTTP (axum, `ws`), and knows nothing of Postgres TLS
//! (`source::tls`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::reload::{self, Watch};

/// Longest a client may take from connecting to a finished TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; beyond, new connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 1024;
/// Finished handshakes waiting for axum to take them.
const READY_QUEUE: usize = 64;
/// The first byte of a TLS record carrying a handshake message (the ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// The answer to a plain HTTP request on the TLS port.
const PLAIN_HTTP_BODY: &str = "This port serves HTTPS and WSS only: use https:// or wss:// URLs.\n";

/// A certificate or key that cannot be served; the message names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{0}: {1}")]
    Cert(PathBuf, String),
    #[error("{0}: {1}")]
    Key(PathBuf, String),
    #[error("{0}")]
    Pair(String),
}

/// A usable pair: the config to serve and the SHA-256 of the leaf certificate (for logs).
struct Loaded {
    config: Arc<ServerConfig>,
    fingerprint: String,
}

/// Reads and checks `cert` and `key` as the listener would (used by config validation).
pub fn load_server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let (cert_pem, key_pem) = read_pair(cert, key)?;
    Ok(build(cert, key, &cert_pem, &key_pem)?.config)
}

fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let cert_pem = std::fs::read(cert)
        .map_err(|e| TlsError::Cert(cert.to_owned(), format!("cannot read it ({e})")))?;
    let key_pem = std::fs::read(key)
        .map_err(|e| TlsError::Key(key.to_owned(), format!("cannot read it ({e})")))?;
    Ok((cert_pem, key_pem))
}

fn build(cert: &Path, key: &Path, cert_pem: &[u8], key_pem: &[u8]) -> Result<Loaded, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            TlsError::Cert(cert.to_owned(), format!("not a PEM certificate file ({e})"))
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::Cert(
            cert.to_owned(),
            "contains no PEM certificate (-----BEGIN CERTIFICATE-----); put the server's \
             certificate first, then its intermediates"
                .into(),
        ));
    };
    let fingerprint = hex_sha256(leaf);
    let private_key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        TlsError::Key(
            key.to_owned(),
            format!("contains no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Pair(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, private_key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::Pair(format!(
                "the private key in {} does not belong to the certificate in {} ({e}); give the \
                 key the certificate was issued for",
                key.display(),
                cert.display()
            )),
            other => TlsError::Key(key.to_owned(), format!("unusable private key ({other})")),
        })?;
    // axum serves HTTP/1.1 (WebSocket upgrades included); no h2 is offered.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        fingerprint,
    })
}

fn hex_sha256(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(64);
    for b in Sha256::digest(bytes).iter() {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The TLS-accepting listener handed to `axum::serve`. Dropping it (axum does at shutdown) stops
/// accepting and reloading.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    accept: JoinHandle<()>,
    /// Ends the certificate reload task.
    stop_reload: CancellationToken,
}

impl TlsListener {
    /// Loads the pair and starts accepting on `listener` and looking at the files every
    /// `reload_interval`.
    pub fn new(
        listener: TcpListener,
        cert: &Path,
        key: &Path,
        reload_interval: Duration,
    ) -> Result<TlsListener, TlsError> {
        let mut watch =
            Watch::files("TLS certificate or key", [cert.to_owned(), key.to_owned()]).settled();
        let read = watch.read().map_err(|e| {
            let problem = format!("cannot read it ({})", e.source);
            if e.path == cert {
                TlsError::Cert(e.path, problem)
            } else {
                TlsError::Key(e.path, problem)
            }
        })?;
        let loaded = build(cert, key, &read.files[0].bytes, &read.files[1].bytes)?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| TlsError::Pair(format!("listener address: {e}")))?;
        info!(
            addr = %local_addr,
            cert = %cert.display(),
            sha256 = %loaded.fingerprint,
            "serving HTTPS/WSS: clients use https:// and wss:// URLs"
        );
        let current = Arc::new(ArcSwap::new(loaded.config));
        let reloader = Reloader {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: current.clone(),
        };
        let stop_reload = CancellationToken::new();
        tokio::spawn(reload::run(
            Arc::new(Mutex::new(watch)),
            reload_interval,
            stop_reload.clone(),
            move |read| reloader.apply(&read.files[0].bytes, &read.files[1].bytes),
        ));
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let accept = tokio::spawn(accept_loop(listener, current, tx));
        Ok(TlsListener {
            ready,
            local_addr,
            accept,
            stop_reload,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept.abort();
        self.stop_reload.cancel();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

async fn accept_loop(
    listener: TcpListener,
    current: Arc<ArcSwap<ServerConfig>>,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            _ = ready.closed() => return,
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = ready.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        // Frames are small and latency matters (see the plain-HTTP listener in app.rs).
        if let Err(error) = tcp.set_nodelay(true) {
            warn!(%error, "cannot set TCP_NODELAY on a client connection");
        }
        let acceptor = TlsAcceptor::from(current.load_full());
        let ready = ready.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Some(stream) = handshake(tcp, peer, acceptor).await {
                let _ = ready.send((stream, peer)).await;
            }
        });
    }
}

/// As axum's own TCP listener: connection errors are the client's; anything else (EMFILE) is
/// logged and accepting pauses for a second.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    error!("accept error: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// The TLS handshake under `HANDSHAKE_TIMEOUT`; `None` when it failed (logged at debug: a client
/// that does not trust the certificate or speaks plain HTTP is not walcast's problem).
async fn handshake(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
) -> Option<TlsStream<TcpStream>> {
    let attempt = async {
        let mut first = [0u8; 1];
        if tcp.peek(&mut first).await? == 0 {
            return Ok(None);
        }
        if first[0] != TLS_HANDSHAKE_RECORD {
            refuse_plaintext(tcp, first[0]).await;
            debug!(%peer, "not a TLS client on the HTTPS port: refused");
            return Ok(None);
        }
        acceptor.accept(tcp).await.map(Some)
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            debug!(%peer, %error, "TLS handshake failed");
            None
        }
        Err(_) => {
            debug!(%peer, timeout = ?HANDSHAKE_TIMEOUT, "TLS handshake timed out");
            None
        }
    }
}

/// A plain HTTP request (it starts with a method's letter) gets a 400 saying to use https://;
/// anything else is closed. The request is read first so that closing does not reset the
/// connection before the client read the answer.
async fn refuse_plaintext(mut tcp: TcpStream, first: u8) {
    if !first.is_ascii_uppercase() {
        return;
    }
    let mut request = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while request.len() < 16 * 1024 && !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{PLAIN_HTTP_BODY}",
        PLAIN_HTTP_BODY.len()
    );
    if tcp.write_all(response.as_bytes()).await.is_ok() {
        let _ = tcp.shutdown().await;
        // Whatever the client still sends is read (briefly) so the close is a FIN, not a RST.
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}

/// Swaps in a changed pair when it is valid (the files are looked at by `reload::run`).
struct Reloader {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<ArcSwap<ServerConfig>>,
}

impl Reloader {
    fn apply(&self, cert_pem: &[u8], key_pem: &[u8]) {
        match build(&self.cert, &self.key, cert_pem, key_pem) {
            Ok(loaded) => {
                self.current.store(loaded.config);
                info!(
                    cert = %self.cert.display(),
                    sha256 = %loaded.fingerprint,
                    "TLS certificate reloaded: new connections get it"
                );
            }
            Err(error) => warn!(
                %error,
                "TLS certificate or key changed but cannot be used: keeping the certificate in \
                 use (a pair written one file at a time is picked up once both are in place)"
            ),
        }
    }
}
