//! The replication connection: socket (TCP, Unix, TLS), startup, authentication, simple-query
//! walsender commands and frame buffering. It does not interpret the CopyBoth stream (stream.rs).

use std::path::Path;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::Host;
use tracing::debug;

use super::endpoint::PgEndpoint;
use super::error::SourceError;
use super::proto::{announced_len, frame_len, parse_data_row, parse_error_fields};
use super::tls;

pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

const DEFAULT_PORT: u16 = 5432;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Read size; a message larger than this grows the buffer to fit it.
const READ_CHUNK: usize = 256 * 1024;

pub(crate) struct Conn {
    pub(crate) io: Box<dyn Io>,
    /// Received bytes; complete frames are handled in place, then advanced past.
    pub(crate) rbuf: BytesMut,
    pub(crate) wbuf: BytesMut,
    pub(crate) user: String,
}

/// A simple-query result: rows of text columns.
pub(crate) type Rows = Vec<Vec<Option<String>>>;

impl Conn {
    /// Opens a logical-replication connection (`replication=database`) to the first host that
    /// answers, authenticated and ready for walsender commands.
    pub(crate) async fn connect(endpoint: &PgEndpoint) -> Result<Conn, SourceError> {
        let pg = &endpoint.config;
        let user = pg
            .get_user()
            .ok_or_else(|| {
                SourceError::Config("DATABASE_URL names no user: add user@ to it".into())
            })?
            .to_owned();
        if pg.get_hosts().is_empty() {
            return Err(SourceError::Config(
                "DATABASE_URL names no host: add a host or a socket directory".into(),
            ));
        }
        let timeout = pg
            .get_connect_timeout()
            .copied()
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let tls_settings = &endpoint.tls;
        let mut last_err = None;
        for (i, host) in pg.get_hosts().iter().enumerate() {
            let port = pg
                .get_ports()
                .get(i)
                .or_else(|| pg.get_ports().first())
                .copied()
                .unwrap_or(DEFAULT_PORT);
            let attempt = async {
                let io = open(host, port, tls_settings).await?;
                let mut conn = Conn {
                    io,
                    rbuf: BytesMut::with_capacity(READ_CHUNK),
                    wbuf: BytesMut::with_capacity(1024),
                    user: user.clone(),
                };
                conn.startup(pg).await?;
                Ok::<_, SourceError>(conn)
            };
            match tokio::time::timeout(timeout, attempt).await {
                Ok(Ok(conn)) => return Ok(conn),
                // Fatal errors (bad password, ...) would be the same on every host.
                Ok(Err(e)) if !e.is_retryable() => return Err(e),
                Ok(Err(e)) => last_err = Some(e),
                Err(_) => {
                    last_err = Some(SourceError::Io {
                        context: "connecting to Postgres",
                        cause: std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timeout"),
                    })
                }
            }
        }
        Err(last_err.unwrap_or(SourceError::Closed))
    }

    async fn startup(&mut self, pg: &tokio_postgres::Config) -> Result<(), SourceError> {
        let database = pg.get_dbname().unwrap_or(&self.user).to_owned();
        let user = self.user.clone();
        let params = [
            ("user", user.as_str()),
            ("database", database.as_str()),
            ("replication", "database"),
            ("application_name", "walcast"),
        ];
        frontend::startup_message(params.iter().copied(), &mut self.wbuf)
            .map_err(SourceError::io("encoding startup"))?;
        self.send().await?;
        self.authenticate(pg.get_password()).await?;
        // ParameterStatus, BackendKeyData and notices until the server is ready.
        loop {
            let (tag, total) = self.read_frame().await?;
            let body = &self.rbuf[5..total];
            let result = match tag {
                b'Z' => Some(Ok(())),
                b'E' => Some(Err(SourceError::from_server(
                    parse_error_fields(body),
                    &self.user,
                ))),
                b'S' | b'K' | b'N' => None,
                other => Some(Err(unexpected(other, "startup"))),
            };
            self.rbuf.advance(total);
            if let Some(result) = result {
                return result;
            }
        }
    }

    async fn authenticate(&mut self, password: Option<&[u8]>) -> Result<(), SourceError> {
        let mut scram: Option<ScramSha256> = None;
        loop {
            let (tag, total) = self.read_frame().await?;
            let frame = self.rbuf.split_to(total).freeze();
            let body = &frame[5..];
            match tag {
                b'R' => {}
                b'E' => {
                    return Err(SourceError::from_server(
                        parse_error_fields(body),
                        &self.user,
                    ))
                }
                other => return Err(unexpected(other, "authentication")),
            }
            let code = body
                .get(..4)
                .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
            let data = body.get(4..).unwrap_or_default();
            let need_pw = || password.ok_or(SourceError::PasswordMissing);
            let enc = SourceError::io("encoding authentication");
            match code {
                Some(0) => return Ok(()),
                Some(3) => frontend::password_message(need_pw()?, &mut self.wbuf).map_err(enc)?,
                Some(5) => {
                    let salt: [u8; 4] = data
                        .get(..4)
                        .and_then(|s| s.try_into().ok())
                        .ok_or_else(|| SourceError::Protocol("md5 request without salt".into()))?;
                    let hash = md5_hash(self.user.as_bytes(), need_pw()?, salt);
                    frontend::password_message(hash.as_bytes(), &mut self.wbuf).map_err(enc)?;
                }
                Some(10) => {
                    let offered = data
                        .split(|&b| b == 0)
                        .any(|m| m == SCRAM_SHA_256.as_bytes());
                    if !offered {
                        let list = String::from_utf8_lossy(data).replace('\0', " ");
                        return Err(SourceError::UnsupportedAuth(format!(
                            "SASL {}",
                            list.trim()
                        )));
                    }
                    // No channel binding: tls-server-end-point needs the certificate's hash
                    // algorithm, and Postgres does not require binding unless the client asks.
                    let s = ScramSha256::new(need_pw()?, ChannelBinding::unsupported());
                    frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut self.wbuf)
                        .map_err(enc)?;
                    scram = Some(s);
                }
                Some(11) => {
                    let s = scram.as_mut().ok_or_else(|| {
                        SourceError::Protocol("SASL continue before start".into())
                    })?;
                    s.update(data)
                        .map_err(|e| SourceError::Protocol(format!("SCRAM: {e}")))?;
                    frontend::sasl_response(s.message(), &mut self.wbuf).map_err(enc)?;
                }
                Some(12) => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| SourceError::Protocol("SASL final before start".into()))?;
                    s.finish(data)
                        .map_err(|e| SourceError::Protocol(format!("SCRAM server proof: {e}")))?;
                    continue;
                }
                Some(other) => {
                    return Err(SourceError::UnsupportedAuth(format!("method code {other}")))
                }
                None => return Err(SourceError::Protocol("short authentication message".into())),
            }
            self.send().await?;
        }
    }

    /// Writes out and clears the write buffer.
    pub(crate) async fn send(&mut self) -> Result<(), SourceError> {
        self.io
            .write_all(&self.wbuf)
            .await
            .map_err(SourceError::io("writing to Postgres"))?;
        self.io
            .flush()
            .await
            .map_err(SourceError::io("writing to Postgres"))?;
        self.wbuf.clear();
        Ok(())
    }

    /// Makes sure the buffer has room to read into, and room for a frame whose header says it is
    /// larger than what is buffered (a wal2json message can exceed 1 MiB).
    pub(crate) fn reserve_for_read(&mut self) {
        let want = announced_len(&self.rbuf).map_or(0, |n| n.saturating_sub(self.rbuf.len()));
        let spare = self.rbuf.capacity() - self.rbuf.len();
        if spare < want.max(READ_CHUNK / 4) {
            self.rbuf.reserve(want.max(READ_CHUNK));
        }
    }

    /// Reads until at least one more byte arrived; EOF is `Closed`.
    pub(crate) async fn fill(&mut self) -> Result<(), SourceError> {
        self.reserve_for_read();
        let n = self
            .io
            .read_buf(&mut self.rbuf)
            .await
            .map_err(SourceError::io("reading from Postgres"))?;
        if n == 0 {
            return Err(SourceError::Closed);
        }
        Ok(())
    }

    /// Waits for a complete frame at the front of `rbuf`; returns its tag and total length.
    pub(crate) async fn read_frame(&mut self) -> Result<(u8, usize), SourceError> {
        loop {
            if let Some(total) = frame_len(&self.rbuf)? {
                return Ok((self.rbuf[0], total));
            }
            self.fill().await?;
        }
    }

    /// Runs one walsender command with the simple-query protocol and returns its rows; a server
    /// error is returned after the server is ready again, so the connection stays usable.
    pub(crate) async fn simple_query(&mut self, sql: &str) -> Result<Rows, SourceError> {
        frontend::query(sql, &mut self.wbuf).map_err(SourceError::io("encoding query"))?;
        self.send().await?;
        let mut rows = Vec::new();
        let mut error = None;
        loop {
            let (tag, total) = self.read_frame().await?;
            let body = &self.rbuf[5..total];
            match tag {
                b'D' => rows.push(parse_data_row(body)?),
                b'E' => {
                    error = Some(SourceError::from_server(
                        parse_error_fields(body),
                        &self.user,
                    ))
                }
                b'Z' => {
                    self.rbuf.advance(total);
                    return match error {
                        Some(e) => Err(e),
                        None => Ok(rows),
                    };
                }
                b'T' | b'C' | b'I' | b'N' | b'S' => {}
                other => return Err(unexpected(other, "query")),
            }
            self.rbuf.advance(total);
        }
    }

    /// Sends a command that switches to CopyBoth (START_REPLICATION) and waits for the switch.
    pub(crate) async fn start_copy_both(&mut self, sql: &str) -> Result<(), SourceError> {
        frontend::query(sql, &mut self.wbuf).map_err(SourceError::io("encoding query"))?;
        self.send().await?;
        loop {
            let (tag, total) = self.read_frame().await?;
            let outcome = match tag {
                b'W' => Some(Ok(())),
                b'E' => Some(Err(SourceError::from_server(
                    parse_error_fields(&self.rbuf[5..total]),
                    &self.user,
                ))),
                b'N' | b'S' | b'Z' => None,
                other => Some(Err(unexpected(other, "START_REPLICATION"))),
            };
            self.rbuf.advance(total);
            if let Some(outcome) = outcome {
                return outcome;
            }
        }
    }
}

fn unexpected(tag: u8, during: &str) -> SourceError {
    SourceError::Protocol(format!(
        "unexpected message {:?} during {during}",
        tag as char
    ))
}

/// Opens the socket and negotiates TLS as the sslmode asks (TCP only: Unix sockets are local).
async fn open(host: &Host, port: u16, settings: &tls::PgTls) -> Result<Box<dyn Io>, SourceError> {
    let ssl_mode = settings.mode;
    let hostname = match host {
        Host::Unix(dir) => {
            let path = Path::new(dir).join(format!(".s.PGSQL.{port}"));
            debug!(path = %path.display(), "connecting over Unix socket");
            let stream = UnixStream::connect(&path)
                .await
                .map_err(SourceError::io("connecting to the Unix socket"))?;
            return Ok(Box::new(stream));
        }
        Host::Tcp(name) => name,
    };
    let mut stream = TcpStream::connect((hostname.as_str(), port))
        .await
        .map_err(SourceError::io("connecting over TCP"))?;
    stream
        .set_nodelay(true)
        .map_err(SourceError::io("setting TCP_NODELAY"))?;
    if ssl_mode == tls::SslMode::Disable {
        return Ok(Box::new(stream));
    }
    let mut req = BytesMut::new();
    frontend::ssl_request(&mut req);
    stream
        .write_all(&req)
        .await
        .map_err(SourceError::io("sending SSLRequest"))?;
    let answer = stream
        .read_u8()
        .await
        .map_err(SourceError::io("reading the SSLRequest answer"))?;
    match answer {
        b'S' => {
            let connector = tokio_rustls::TlsConnector::from(tls::client_config(settings)?);
            let tls = connector
                .connect(tls::server_name(hostname, settings)?, stream)
                .await
                .map_err(|e| tls::handshake_error(e, hostname, settings))?;
            Ok(Box::new(tls))
        }
        b'N' if ssl_mode.requires_tls() => Err(SourceError::TlsRefused(ssl_mode.as_str())),
        b'N' => {
            tls::note_plaintext(ssl_mode, hostname, port);
            Ok(Box::new(stream))
        }
        other => Err(SourceError::Protocol(format!(
            "unexpected SSLRequest answer {:?}",
            other as char
        ))),
    }
}
