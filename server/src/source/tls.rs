//! TLS for both Postgres connections (replication and SQL) with libpq's `prefer`/`require`
//! semantics; it does not choose whether to use TLS (that is the sslmode in the config).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::task::JoinHandle;
use tracing::warn;

use super::error::SourceError;

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

/// A rustls client config with the ring provider and the libpq-style verifier.
pub(crate) fn client_config() -> Result<Arc<ClientConfig>, SourceError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SourceError::Config(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The server name rustls sends as SNI; an IP literal is fine, anything unparsable falls back
/// to `localhost` since the certificate is not checked anyway.
pub(crate) fn server_name(host: &str) -> ServerName<'static> {
    ServerName::try_from(host.to_owned())
        .or_else(|_| ServerName::try_from("localhost"))
        .unwrap_or(ServerName::IpAddress(rustls::pki_types::IpAddr::from(
            std::net::Ipv4Addr::LOCALHOST,
        )))
}

/// tokio-postgres-rustls rejects the empty host name tokio-postgres passes for Unix sockets
/// (where TLS is never negotiated anyway) and any name rustls cannot parse: substitute one.
#[derive(Clone)]
struct MakeTls(tokio_postgres_rustls::MakeRustlsConnect);

impl<S> tokio_postgres::tls::MakeTlsConnect<S> for MakeTls
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Stream = <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<S>>::Stream;
    type TlsConnect = <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<S>>::TlsConnect;
    type Error =
        <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, hostname: &str) -> Result<Self::TlsConnect, Self::Error> {
        let name = if ServerName::try_from(hostname).is_ok() {
            hostname
        } else {
            "localhost"
        };
        tokio_postgres::tls::MakeTlsConnect::<S>::make_tls_connect(&mut self.0, name)
    }
}

/// As `connect_sql`, handing every notification (LISTEN/NOTIFY) to `notices`; the task ends
/// (and `notices` closes) when the connection does.
pub async fn connect_listening(
    pg: &tokio_postgres::Config,
    notices: tokio::sync::mpsc::Sender<tokio_postgres::Notification>,
) -> Result<(tokio_postgres::Client, JoinHandle<()>), SourceError> {
    let tls = MakeTls(tokio_postgres_rustls::MakeRustlsConnect::new(
        (*client_config()?).clone(),
    ));
    let user = pg.get_user().unwrap_or_default();
    let (client, mut connection) = pg
        .connect(tls)
        .await
        .map_err(|e| SourceError::from_sql("connecting to Postgres", e, user))?;
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
    pg: &tokio_postgres::Config,
) -> Result<(tokio_postgres::Client, JoinHandle<()>), SourceError> {
    let tls = MakeTls(tokio_postgres_rustls::MakeRustlsConnect::new(
        (*client_config()?).clone(),
    ));
    let user = pg.get_user().unwrap_or_default();
    let (client, connection) = pg
        .connect(tls)
        .await
        .map_err(|e| SourceError::from_sql("connecting to Postgres", e, user))?;
    let task = tokio::spawn(async move {
        if let Err(error) = connection.await {
            warn!(error = %error, "SQL connection to Postgres ended");
        }
    });
    Ok((client, task))
}
