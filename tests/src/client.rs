//! WebSocket and HTTP clients speaking walcast's client protocol v1 (docs/reference/protocol.md):
//! query strings, the `subscribed` handshake, change frames, close codes and pre-upgrade HTTP
//! errors. Asserts nothing about specific tables; tests do that.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::server::Walcast;

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `a=1&b=2` with keys and values percent-encoded; keys may repeat.
pub fn query_string(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// One thing read from the socket.
#[derive(Debug)]
pub enum Frame {
    /// A JSON text frame: parsed value and the raw text (numbers of any length are checked there).
    Json(Value, String),
    /// A close frame; `None` code when the frame carried none.
    Close(Option<u16>, String),
    /// The connection ended without a close frame (EOF or error text).
    Ended(String),
}

/// A WebSocket client of `/ws`.
pub struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Opens `/ws?<params>` and completes the upgrade.
    pub async fn connect(server: &Walcast, params: &[(&str, &str)]) -> Result<WsClient> {
        match Self::try_connect(server, params).await? {
            Ok(c) => Ok(c),
            Err((status, body)) => bail!(
                "upgrade of /ws?{} refused with {status}: {body}",
                query_string(params)
            ),
        }
    }

    /// Opens `/ws?<params>`: the client, or the HTTP status and body text of a refused upgrade
    /// (for callers that retry on some refusals, e.g. `409 subscription_busy`).
    pub async fn try_connect(
        server: &Walcast,
        params: &[(&str, &str)],
    ) -> Result<std::result::Result<WsClient, (u16, String)>> {
        Self::try_open(server, &format!("/ws?{}", query_string(params))).await
    }

    /// Opens a WebSocket path with extra request headers (`Authorization`, `Origin`,
    /// `Sec-WebSocket-Protocol`); on success also the subprotocol the server answered with.
    pub async fn try_open_with(
        server: &Walcast,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Result<std::result::Result<(WsClient, Option<String>), (u16, String)>> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}{path_and_query}", server.ws_base());
        let mut request = url.as_str().into_client_request()?;
        for (k, v) in headers {
            request.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())?,
                v.parse()?,
            );
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, resp)) => {
                let protocol = resp
                    .headers()
                    .get("sec-websocket-protocol")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                Ok(Ok((WsClient { ws }, protocol)))
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let body = resp
                    .body()
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default()
                    .into_owned();
                Ok(Err((resp.status().as_u16(), body)))
            }
            Err(e) => Err(anyhow!(e).context(format!("cannot connect to {url}"))),
        }
    }

    /// Opens any WebSocket path (`/listen/<channel>?format=json`), already percent-encoded.
    pub async fn try_open(
        server: &Walcast,
        path_and_query: &str,
    ) -> Result<std::result::Result<WsClient, (u16, String)>> {
        Ok(Self::try_open_with(server, path_and_query, &[])
            .await?
            .map(|(client, _protocol)| client))
    }

    /// Sends one text frame (a client message).
    pub async fn send_text(&mut self, text: &str) -> Result<()> {
        self.ws
            .send(Message::text(text.to_owned()))
            .await
            .with_context(|| format!("cannot send {text}"))
    }

    /// Sends one binary frame.
    pub async fn send_binary(&mut self, bytes: &[u8]) -> Result<()> {
        self.ws
            .send(Message::binary(bytes.to_vec()))
            .await
            .context("cannot send a binary frame")
    }

    /// Sends `{"type":"ack","pos":<pos>}`.
    pub async fn ack(&mut self, pos: &str) -> Result<()> {
        let msg = serde_json::json!({"type": "ack", "pos": pos}).to_string();
        self.send_text(&msg).await
    }

    /// The next frame must be `{"type":"error","error":<code>,"message":<text>}`; returns it.
    pub async fn expect_error(&mut self, code: &str, timeout: Duration) -> Result<Value> {
        match self.next_frame(timeout).await? {
            Frame::Json(v, _)
                if v["type"] == "error"
                    && v["error"] == code
                    && v["message"].as_str().is_some_and(|m| !m.is_empty()) =>
            {
                Ok(v)
            }
            other => bail!("expected an error frame {code} with a message, got {other:?}"),
        }
    }

    /// A clean close: sends a close frame and reads until the server's close frame or the end of
    /// the stream, so the server has seen the close when this returns.
    pub async fn close_and_wait(mut self, timeout: Duration) -> Result<()> {
        let _ = self.ws.close(None).await;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => bail!("the server did not answer the close within {timeout:?}"),
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return Ok(()),
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// `connect` + `expect_subscribed`.
    pub async fn subscribe(server: &Walcast, params: &[(&str, &str)]) -> Result<(WsClient, Value)> {
        let mut c = Self::connect(server, params).await?;
        let sub = c
            .expect_subscribed()
            .await
            .with_context(|| format!("subscribing with {params:?}"))?;
        Ok((c, sub))
    }

    /// The first frame must be `{"type":"subscribed",...}`.
    pub async fn expect_subscribed(&mut self) -> Result<Value> {
        match self.next_frame(crate::STEP).await? {
            Frame::Json(v, _) if v["type"] == "subscribed" => Ok(v),
            other => bail!("expected a subscribed frame, got {other:?}"),
        }
    }

    /// Next frame, skipping pings/pongs.
    pub async fn next_frame(&mut self, timeout: Duration) -> Result<Frame> {
        loop {
            let msg = match tokio::time::timeout(timeout, self.ws.next()).await {
                Err(_) => bail!("no frame within {timeout:?}"),
                Ok(None) => return Ok(Frame::Ended("end of stream".into())),
                Ok(Some(Err(e))) => return Ok(Frame::Ended(e.to_string())),
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                Message::Text(t) => {
                    let raw = t.as_str().to_owned();
                    let v = serde_json::from_str(&raw)
                        .with_context(|| format!("frame is not JSON: {raw}"))?;
                    return Ok(Frame::Json(v, raw));
                }
                Message::Binary(b) => bail!("unexpected binary frame of {} bytes", b.len()),
                Message::Close(cf) => {
                    return Ok(match cf {
                        Some(cf) => {
                            Frame::Close(Some(u16::from(cf.code)), cf.reason.as_str().to_owned())
                        }
                        None => Frame::Close(None, String::new()),
                    })
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            }
        }
    }

    /// Next text frame, unparsed (for volume tests where parsing every frame would dominate).
    pub async fn next_text(&mut self, timeout: Duration) -> Result<String> {
        loop {
            match tokio::time::timeout(timeout, self.ws.next()).await {
                Err(_) => bail!("no frame within {timeout:?}"),
                Ok(Some(Ok(Message::Text(t)))) => return Ok(t.as_str().to_owned()),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(Some(Ok(Message::Close(cf)))) => bail!("closed: {cf:?}"),
                Ok(Some(Ok(other))) => bail!("unexpected frame {other:?}"),
                Ok(Some(Err(e))) => bail!("connection error: {e}"),
                Ok(None) => bail!("end of stream"),
            }
        }
    }

    /// Next `change` frame as (raw text, value); anything else is an error.
    pub async fn next_change_raw(&mut self, timeout: Duration) -> Result<(String, Value)> {
        match self.next_frame(timeout).await? {
            Frame::Json(v, raw) if v["type"] == "change" => Ok((raw, v)),
            other => bail!("expected a change frame, got {other:?}"),
        }
    }

    /// Next `change` frame.
    pub async fn next_change(&mut self, timeout: Duration) -> Result<Value> {
        Ok(self.next_change_raw(timeout).await?.1)
    }

    /// Reads until a close frame, skipping change frames (returns how many were skipped); the
    /// close code must be `code`.
    pub async fn expect_close(&mut self, code: u16, timeout: Duration) -> Result<usize> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut skipped = 0;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self
                .next_frame(left)
                .await
                .with_context(|| format!("waiting for close {code} after {skipped} frames"))?
            {
                Frame::Json(v, _) if v["type"] == "change" => skipped += 1,
                Frame::Close(Some(c), _) if c == code => return Ok(skipped),
                other => {
                    bail!("expected close {code} (after {skipped} change frames), got {other:?}")
                }
            }
        }
    }

    /// Sends a normal close; errors are ignored (the server may be gone already).
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// `DELETE path` on the server's HTTP port: status and body text.
pub async fn http_delete(server: &Walcast, path: &str) -> Result<(u16, String)> {
    let url = format!("{}{path}", server.http_base());
    let resp = reqwest::Client::new()
        .delete(&url)
        .send()
        .await
        .with_context(|| format!("DELETE {url}"))?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await?))
}

/// A request that must be refused before the upgrade: sends WebSocket upgrade headers (as a
/// browser would) and returns the HTTP status and the JSON body.
pub async fn http_error(server: &Walcast, params: &[(&str, &str)]) -> Result<(u16, Value)> {
    let url = format!("{}/ws?{}", server.http_base(), query_string(params));
    let resp = reqwest::Client::new()
        .get(&url)
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status().as_u16();
    if status == 101 {
        bail!("GET {url} was upgraded (101), expected an HTTP error");
    }
    let text = resp.text().await?;
    let body = serde_json::from_str(&text)
        .with_context(|| format!("{status} body of {url} is not JSON: {text}"))?;
    Ok((status, body))
}
