//! TLS for every Postgres connection walcast opens (replication, catalog/SQL, the NOTIFY relay's,
//! snapshots) with libpq's sslmode semantics: `prefer`/`require` encrypt without authenticating
//! the server, `verify-ca` checks the certificate chain against `sslrootcert` (the webpki/Mozilla
//! roots when unset), `verify-full` the chain and the host name. It builds the rustls client
//! config, names the cause and the fix of a failed verification and warns once when `prefer`
//! fell back to plaintext over TCP. It does not parse the DATABASE_URL (url.rs) nor open sockets
//! (conn.rs and tokio-postgres do).
//!
//! The settings travel with the connection's target: every connect function takes a
//! `PgEndpoint` (the DATABASE_URL's `tokio_postgres::Config`, which has no room for `verify-*` or
//! `sslrootcert`, and its `PgTls`), so no connection can be opened with weaker settings than the
//! URL's.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::task::JoinHandle;
use tracing::warn;

use super::endpoint::PgEndpoint;
use super::error::SourceError;

/// libpq's `sslmode` values walcast supports (`allow` is not).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, plaintext otherwise; the server is not authenticated.
    #[default]
    Prefer,
    /// TLS or no connection; the server is not authenticated (unless `sslrootcert` is a file).
    Require,
    /// TLS, certificate chain verified; the host name is not checked.
    VerifyCa,
    /// TLS, certificate chain and host name verified.
    VerifyFull,
}

impl SslMode {
    pub fn parse(value: &str) -> Option<SslMode> {
        Some(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// tokio-postgres's mode for the same negotiation: the `verify-*` modes require TLS.
    pub fn negotiation(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Pg;
        match self {
            SslMode::Disable => Pg::Disable,
            SslMode::Prefer => Pg::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Pg::Require,
        }
    }

    pub(crate) fn from_negotiation(mode: tokio_postgres::config::SslMode) -> SslMode {
        use tokio_postgres::config::SslMode as Pg;
        match mode {
            Pg::Disable => SslMode::Disable,
            Pg::Require => SslMode::Require,
            _ => SslMode::Prefer,
        }
    }

    /// Whether a server that refuses TLS is refused.
    pub(crate) fn requires_tls(self) -> bool {
        !matches!(self, SslMode::Disable | SslMode::Prefer)
    }
}

/// Where the trusted CA certificates come from (`sslrootcert`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum RootCert {
    /// Not set: the `verify-*` modes trust the webpki (Mozilla) roots compiled into walcast.
    #[default]
    Unset,
    /// `sslrootcert=system` (libpq 16): the webpki roots as well; only with `verify-full`.
    System,
    /// A PEM file of one or more CA certificates.
    File(PathBuf),
}

/// The TLS settings of the DATABASE_URL that tokio-postgres's Config does not carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PgTls {
    pub mode: SslMode,
    pub root_cert: RootCert,
}

/// How much of the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verify {
    Nothing,
    Chain,
    ChainAndName,
}

impl PgTls {
    /// What is verified. As in libpq, a root certificate file makes `prefer`/`require` verify
    /// the chain too (whenever TLS is used).
    fn verify(&self) -> Verify {
        match (self.mode, &self.root_cert) {
            (SslMode::VerifyFull, _) => Verify::ChainAndName,
            (SslMode::VerifyCa, _) => Verify::Chain,
            (SslMode::Prefer | SslMode::Require, RootCert::File(_)) => Verify::Chain,
            _ => Verify::Nothing,
        }
    }

    /// The trusted roots named in messages.
    fn roots_label(&self) -> String {
        match &self.root_cert {
            RootCert::File(path) => format!("sslrootcert={}", path.display()),
            RootCert::System => "the webpki (Mozilla) roots (sslrootcert=system)".into(),
            RootCert::Unset => "the webpki (Mozilla) roots, as sslrootcert is unset".into(),
        }
    }

    /// Checks the combination (libpq refuses `sslrootcert=system` with a weaker mode).
    pub fn check(&self) -> Result<(), String> {
        if self.root_cert == RootCert::System && self.mode != SslMode::VerifyFull {
            return Err(format!(
                "sslmode={} may not be used with sslrootcert=system; use sslmode=verify-full",
                self.mode.as_str()
            ));
        }
        Ok(())
    }

    /// Reads `sslrootcert` (or takes the webpki roots) into a root store.
    pub fn root_store(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        let RootCert::File(path) = &self.root_cert else {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            return Ok(roots);
        };
        let shown = path.display();
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("sslrootcert={shown}: cannot read it ({e})"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("sslrootcert={shown}: not a PEM certificate file ({e})"))?;
        if certs.is_empty() {
            return Err(format!(
                "sslrootcert={shown}: contains no PEM certificate (-----BEGIN CERTIFICATE-----)"
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("sslrootcert={shown}: unusable CA certificate ({e})"))?;
        }
        Ok(roots)
    }
}

/// libpq's `sslmode=require`/`prefer` encrypt but do not authenticate the server. We keep that
/// meaning (a DATABASE_URL that works with psql works here), but still check that the handshake is
/// signed by the key of the presented certificate.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the webpki verifier, minus the host-name check (webpki checks the chain first,
/// then the name, so a name mismatch means the chain was good).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A rustls client config (ring provider) verifying what `tls` asks. `sslrootcert` is read on
/// every call, so a renewed CA file is picked up by the next connection.
pub(crate) fn client_config(tls: &PgTls) -> Result<Arc<ClientConfig>, SourceError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match tls.verify() {
        Verify::Nothing => Arc::new(AcceptAnyCert(provider.clone())),
        level => {
            let roots = tls.root_store().map_err(SourceError::Config)?;
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| SourceError::Config(format!("{}: {e}", tls.roots_label())))?;
            if level == Verify::ChainAndName {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        }
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SourceError::Config(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The server name rustls verifies and sends as SNI. With `verify-full` it must be the host as
/// written; otherwise an unparsable name falls back to `localhost`, since the name is not checked.
pub(crate) fn server_name(host: &str, tls: &PgTls) -> Result<ServerName<'static>, SourceError> {
    match ServerName::try_from(host.to_owned()) {
        Ok(name) => Ok(name),
        Err(_) if tls.verify() == Verify::ChainAndName => Err(SourceError::Config(format!(
            "host {host:?} is not a DNS name or IP address, so sslmode=verify-full cannot check \
             the certificate against it; use the name the certificate lists, or sslmode=verify-ca"
        ))),
        Err(_) => Ok(
            ServerName::try_from("localhost").unwrap_or(ServerName::IpAddress(
                rustls::pki_types::IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
            )),
        ),
    }
}

/// The rustls error inside an error chain (tokio-rustls and tokio-postgres-rustls wrap it in an
/// `io::Error`, tokio-postgres in its own error).
fn rustls_cause<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(found) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| rustls_cause(inner))
        {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// The cause and the fix of a rejected server certificate, in one sentence each.
pub(crate) fn describe_rejection(cause: &CertificateError, host: &str, tls: &PgTls) -> String {
    let roots = tls.roots_label();
    let mode = tls.mode.as_str();
    let not_verifying = "or sslmode=require to encrypt without authenticating the server";
    match cause {
        CertificateError::UnknownIssuer => format!(
            "the server's certificate is not signed by a trusted CA (unknown issuer; trusted: \
             {roots}); fix: set sslrootcert to the CA certificate (PEM) that signed the server's \
             certificate, {not_verifying}"
        ),
        CertificateError::NotValidForName => format!(
            "the server's certificate is not valid for host {host:?} (name mismatch); fix: \
             connect with a host name the certificate lists, add {host:?} to its subjectAltName, \
             or use sslmode=verify-ca to check the CA only"
        ),
        CertificateError::NotValidForNameContext { presented, .. } => format!(
            "the server's certificate is not valid for host {host:?}: it names {} (name \
             mismatch); fix: connect with a host name the certificate lists, add {host:?} to its \
             subjectAltName, or use sslmode=verify-ca to check the CA only",
            if presented.is_empty() {
                "no DNS or IP subjectAltName".to_owned()
            } else {
                presented
                    .iter()
                    .map(|name| plain_name(name))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => format!(
            "the server's certificate has expired ({cause}); fix: renew the server's \
             certificate, {not_verifying}"
        ),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => format!(
            "the server's certificate is not valid yet ({cause}); fix: check the clocks of both \
             machines"
        ),
        other => format!(
            "the server's certificate was rejected under sslmode={mode} ({other}; trusted: \
             {roots}); fix: give the server a certificate signed by a CA in sslrootcert, \
             {not_verifying}"
        ),
    }
}

/// webpki reports the certificate's names in Debug form (`DnsName("db.internal")`): the name.
fn plain_name(presented: &str) -> &str {
    match (presented.find("(\""), presented.strip_suffix("\")")) {
        (Some(open), Some(inner)) if open + 2 <= inner.len() => &inner[open + 2..],
        _ => presented,
    }
}

/// A failed TLS handshake as an error: a rejected certificate names its cause and fix.
pub(crate) fn handshake_error(err: std::io::Error, host: &str, tls: &PgTls) -> SourceError {
    match rustls_cause(&err) {
        Some(rustls::Error::InvalidCertificate(cause)) => {
            SourceError::TlsVerify(describe_rejection(cause, host, tls))
        }
        _ => SourceError::Tls(err),
    }
}

/// A tokio-postgres connect error; a rejected certificate names its cause and fix.
fn connect_error(
    err: tokio_postgres::Error,
    pg: &tokio_postgres::Config,
    tls: &PgTls,
) -> SourceError {
    if let Some(rustls::Error::InvalidCertificate(cause)) = rustls_cause(&err) {
        let host = match pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(name)) => name.clone(),
            _ => String::new(),
        };
        return SourceError::TlsVerify(describe_rejection(cause, &host, tls));
    }
    SourceError::from_sql(
        "connecting to Postgres",
        err,
        pg.get_user().unwrap_or_default(),
    )
}

/// Whether to warn that `prefer` fell back to plaintext over TCP: once per process.
pub(crate) struct PlaintextWarning(AtomicBool);

impl PlaintextWarning {
    pub(crate) const fn new() -> Self {
        PlaintextWarning(AtomicBool::new(false))
    }

    /// True the first time a `prefer` connection over TCP went without TLS.
    pub(crate) fn should_warn(&self, mode: SslMode, tcp: bool, tls_used: bool) -> bool {
        mode == SslMode::Prefer && tcp && !tls_used && !self.0.swap(true, Ordering::Relaxed)
    }
}

static PLAINTEXT_WARNING: PlaintextWarning = PlaintextWarning::new();

/// Logs, once per process, that `prefer` connected without TLS over TCP, naming the fix.
pub(crate) fn note_plaintext(mode: SslMode, host: &str, port: u16) {
    if PLAINTEXT_WARNING.should_warn(mode, true, false) {
        warn!(
            host,
            port,
            "Postgres did not accept TLS and sslmode=prefer (the default) fell back to an \
             unencrypted TCP connection: queries, row data and the login exchange cross the \
             network in clear text and the server is not authenticated. Fix: enable ssl on the \
             server and set sslmode=verify-full (with sslrootcert=<CA file>) or sslmode=require \
             in DATABASE_URL; set sslmode=disable to say plaintext is intended"
        );
    }
}

/// tokio-postgres-rustls rejects the empty host name tokio-postgres passes for Unix sockets
/// (where TLS is never negotiated) and any name rustls cannot parse: substitute one, unless the
/// name is verified.
#[derive(Clone)]
struct MakeTls {
    inner: tokio_postgres_rustls::MakeRustlsConnect,
    check_name: bool,
}

impl<S> tokio_postgres::tls::MakeTlsConnect<S> for MakeTls
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Stream = <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<S>>::Stream;
    type TlsConnect = <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<S>>::TlsConnect;
    type Error =
        <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, hostname: &str) -> Result<Self::TlsConnect, Self::Error> {
        let name = if hostname.is_empty()
            || (!self.check_name && ServerName::try_from(hostname).is_err())
        {
            "localhost"
        } else {
            hostname
        };
        tokio_postgres::tls::MakeTlsConnect::<S>::make_tls_connect(&mut self.inner, name)
    }
}

/// A tokio-postgres connection over a socket that may be TLS.
type PgConnection = tokio_postgres::Connection<
    tokio_postgres::Socket,
    <MakeTls as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream,
>;

/// Connects to `endpoint` with its TLS settings' negotiation and verification.
async fn connect_with(
    endpoint: &PgEndpoint,
) -> Result<(tokio_postgres::Client, PgConnection), SourceError> {
    let tls = &endpoint.tls;
    let mut pg = endpoint.config.clone();
    // As libpq and the replication connection: no TLS over Unix sockets, whatever the sslmode.
    let unix_only = pg
        .get_hosts()
        .iter()
        .all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)));
    pg.ssl_mode(if unix_only {
        tokio_postgres::config::SslMode::Disable
    } else {
        tls.mode.negotiation()
    });
    let make = MakeTls {
        inner: tokio_postgres_rustls::MakeRustlsConnect::new((*client_config(tls)?).clone()),
        check_name: tls.verify() == Verify::ChainAndName,
    };
    pg.connect(make)
        .await
        .map_err(|e| connect_error(e, &pg, tls))
}

/// As `connect_sql`, handing every notification (LISTEN/NOTIFY) to `notices`; the task ends
/// (and `notices` closes) when the connection does.
pub async fn connect_listening(
    pg: &PgEndpoint,
    notices: tokio::sync::mpsc::Sender<tokio_postgres::Notification>,
) -> Result<(tokio_postgres::Client, JoinHandle<()>), SourceError> {
    let (client, mut connection) = connect_with(pg).await?;
    let task = tokio::spawn(async move {
        use futures_util::StreamExt;
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if notices.send(n).await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    warn!(error = %error, "LISTEN connection to Postgres ended");
                    break;
                }
            }
        }
    });
    Ok((client, task))
}

/// An ordinary SQL connection (tokio-postgres) honouring the same host/TLS settings as the
/// replication connection. The returned task ends when the connection closes.
pub async fn connect_sql(
    pg: &PgEndpoint,
) -> Result<(tokio_postgres::Client, JoinHandle<()>), SourceError> {
    let (client, connection) = connect_with(pg).await?;
    let task = tokio::spawn(async move {
        if let Err(error) = connection.await {
            warn!(error = %error, "SQL connection to Postgres ended");
        }
    });
    Ok((client, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefer_without_tls_over_tcp_warns_once() {
        let w = PlaintextWarning::new();
        // Not the case: TLS used, a Unix socket, or a mode that is not prefer.
        assert!(!w.should_warn(SslMode::Prefer, true, true));
        assert!(!w.should_warn(SslMode::Prefer, false, false));
        assert!(!w.should_warn(SslMode::Disable, true, false));
        assert!(!w.should_warn(SslMode::Require, true, false));
        assert!(w.should_warn(SslMode::Prefer, true, false));
        assert!(!w.should_warn(SslMode::Prefer, true, false), "only once");
    }

    #[test]
    fn verification_levels_follow_libpq() {
        let file = RootCert::File("/ca.pem".into());
        let level = |mode, root_cert: &RootCert| {
            PgTls {
                mode,
                root_cert: root_cert.clone(),
            }
            .verify()
        };
        assert_eq!(level(SslMode::Prefer, &RootCert::Unset), Verify::Nothing);
        assert_eq!(level(SslMode::Require, &RootCert::Unset), Verify::Nothing);
        assert_eq!(level(SslMode::Require, &file), Verify::Chain);
        assert_eq!(level(SslMode::VerifyCa, &RootCert::Unset), Verify::Chain);
        assert_eq!(level(SslMode::VerifyFull, &file), Verify::ChainAndName);
        assert_eq!(level(SslMode::Disable, &file), Verify::Nothing);
        let system = PgTls {
            mode: SslMode::Require,
            root_cert: RootCert::System,
        };
        assert!(system.check().unwrap_err().contains("verify-full"));
    }

    #[test]
    fn rejections_name_cause_and_fix() {
        let tls = PgTls {
            mode: SslMode::VerifyFull,
            root_cert: RootCert::File("/etc/walcast/ca.pem".into()),
        };
        let unknown = describe_rejection(&CertificateError::UnknownIssuer, "db", &tls);
        assert!(unknown.contains("unknown issuer"), "{unknown}");
        assert!(
            unknown.contains("sslrootcert=/etc/walcast/ca.pem"),
            "{unknown}"
        );
        let name = describe_rejection(
            &CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("127.0.0.1").unwrap(),
                presented: vec!["DnsName(\"localhost\")".into()],
            },
            "127.0.0.1",
            &tls,
        );
        assert!(
            name.contains("it names localhost (name mismatch)"),
            "{name}"
        );
        assert!(name.contains("sslmode=verify-ca"), "{name}");
        // The chain of tokio-rustls errors is searched for the rustls cause.
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let err = handshake_error(io, "db", &tls);
        assert!(matches!(err, SourceError::TlsVerify(_)), "{err}");
        assert!(err.to_string().contains("unknown issuer"), "{err}");
    }

    #[test]
    fn root_store_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = PgTls {
            mode: SslMode::VerifyFull,
            root_cert: RootCert::File(dir.path().join("nope.pem")),
        };
        let err = missing.root_store().unwrap_err();
        assert!(
            err.contains("sslrootcert=") && err.contains("nope.pem"),
            "{err}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = PgTls {
            mode: SslMode::VerifyFull,
            root_cert: RootCert::File(empty),
        }
        .root_store()
        .unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
        let webpki = PgTls {
            mode: SslMode::VerifyFull,
            root_cert: RootCert::Unset,
        };
        assert!(!webpki.root_store().unwrap().is_empty());
    }
}
