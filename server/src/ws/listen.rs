//! `GET /listen/{channel}`: a socket that receives every NOTIFY payload of one channel as one
//! text frame, byte for byte (`format=json`: `{"type":"notify","channel","payload","pid"}` and
//! `{"type":"notify_gap"}` after the relay lost its connection). Checks the channel's name (what
//! Postgres can take) and `notify.channels` before the upgrade; a channel Postgres refuses ends
//! its sockets. Its writes run under the write deadline and it is pinged and ended when idle, as
//! every socket. Does not talk to Postgres (`notify::Relay` does).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::json;

use crate::metrics::Metrics;
use crate::notify::{Notice, Refused, SubscribeError};
use crate::vocab::{close_code, Frame, SessionSignal};

use super::deadline::WriteDeadline;
use super::keepalive::{session_number, Beat, Keepalive, SocketTimeouts, TimedOut};
use super::router::AppState;

/// Notifications written per flush at most.
const BATCH: usize = 64;

/// The frame for one notice; `None` for a gap or an error on a plain socket (payloads only:
/// anything else would read as a payload).
fn frame_text(notice: Notice, json: bool) -> Option<Frame> {
    Some(match (notice, json) {
        (Notice::Notify { plain, .. }, false) => plain,
        (Notice::Notify { json, .. }, true) => json?,
        (Notice::Gap | Notice::Refused(_), false) => return None,
        (Notice::Gap, true) => Frame::from_static(
            r#"{"type":"notify_gap","message":"the LISTEN connection to Postgres was lost: notifications sent meanwhile were not relayed"}"#,
        ),
        (Notice::Refused(refused), true) => Frame::from(
            json!({
                "type": "error",
                "error": "listen_refused",
                "message": format!("Postgres refused LISTEN on this channel: {}", refused.message),
            })
            .to_string(),
        ),
    })
}

/// The close reason for a refused channel: Postgres's message, cut to the 123 bytes a close
/// frame holds.
fn refused_reason(refused: &Refused) -> String {
    let mut reason = format!("LISTEN refused: {}", refused.message);
    if reason.len() > 123 {
        let mut end = 123;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}

/// How long the upgrade waits for the LISTEN to be in effect.
const LISTEN_WAIT: Duration = Duration::from_secs(5);

#[derive(serde::Deserialize)]
pub(super) struct ListenQuery {
    format: Option<String>,
    /// A token for browsers, which cannot set headers on a WebSocket.
    access_token: Option<String>,
}

fn refuse(status: StatusCode, code: &str, message: String) -> Response {
    (status, Json(json!({"error": code, "message": message}))).into_response()
}

pub(super) async fn handler(
    State(st): State<AppState>,
    Path(channel): Path<String>,
    Query(q): Query<ListenQuery>,
    headers: HeaderMap,
    extensions: Extensions,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let permit = match &upgrade {
        Ok(_) => match super::router::admit(&st, &extensions, &headers) {
            Ok(permit) => Some(permit),
            Err(refused) => return refused,
        },
        Err(_) => None,
    };
    if let Some(problem) = crate::notify::channel_problem(&channel) {
        return refuse(StatusCode::BAD_REQUEST, "bad_channel", problem);
    }
    let json = match q.format.as_deref() {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "bad_query",
                format!("format={other:?}: give json, or leave it out for payloads as they are"),
            )
        }
    };
    let mut token = q
        .access_token
        .map(|t| vec![("access_token".to_owned(), t)])
        .unwrap_or_default();
    let principal = match super::router::identify(&st, &headers, &mut token) {
        Ok(principal) => principal,
        Err(refused) => return refused,
    };
    if !st.notify_allow.allows_name(&channel) {
        return refuse(
            StatusCode::FORBIDDEN,
            "channel_not_allowed",
            format!("channel {channel:?} is not in this server's allow-list (notify.channels)"),
        );
    }
    if let (Some(who), Some(policy)) = (&principal, st.auth.policy()) {
        if let Err(refusal) = policy.allows_channel(who, &channel) {
            return refuse(StatusCode::FORBIDDEN, refusal.code, refusal.message);
        }
    }
    // The checks above answer a plain GET too (the viewer page reads why a socket was refused
    // that way); one that passes them and is no upgrade gets 426.
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return super::edge::not_upgraded(rejection),
    };
    let signal = SessionSignal::new(&st.shutdown);
    let subscribed = st
        .relay
        .subscribe(&channel, signal.clone(), json, LISTEN_WAIT)
        .await;
    let subscription = match subscribed {
        Ok(subscription) => subscription,
        Err(SubscribeError::Unavailable) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "notify_unavailable",
                "the LISTEN connection to Postgres is down; retry shortly".into(),
            )
        }
        Err(SubscribeError::Refused(refused)) if refused.names_the_channel() => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "bad_channel",
                format!(
                    "Postgres cannot take this channel name: {}",
                    refused.message
                ),
            )
        }
        Err(SubscribeError::Refused(refused)) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "notify_unavailable",
                format!(
                    "Postgres refused LISTEN on this channel: {}",
                    refused.message
                ),
            )
        }
    };
    let sessions = st.sessions.clone();
    let metrics = st.metrics.clone();
    let timeouts = st.timeouts;
    upgrade
        .protocols(super::router::answer_protocols(&headers))
        .read_buffer_size(4 * 1024)
        .max_message_size(4 * 1024)
        .on_upgrade(move |socket| {
            sessions.track_future(async move {
                let _permit = permit;
                let (sink, stream) = socket.split();
                let relayed = Relayed {
                    subscription,
                    signal,
                    json,
                };
                relay_socket(sink, stream, relayed, timeouts, metrics).await
            })
        })
}

/// What one `/listen` socket relays.
struct Relayed {
    subscription: crate::notify::Subscription,
    signal: Arc<SessionSignal>,
    json: bool,
}

/// Writes the notices to the socket until the client leaves, the relay or the shutdown closes
/// it (4008: too many unread notifications; 1001), or a timeout ends it: writes that make no
/// progress for `sessions.write_timeout` (4008) or nothing heard for `sessions.idle_timeout`
/// (4009).
async fn relay_socket<S, R, E>(
    sink: S,
    mut stream: R,
    relayed: Relayed,
    timeouts: SocketTimeouts,
    metrics: Arc<Metrics>,
) where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    let Relayed {
        mut subscription,
        signal,
        json,
    } = relayed;
    metrics.sessions.inc();
    let number = session_number();
    let mut sink = WriteDeadline::new(sink, timeouts.write);
    let mut keepalive = Keepalive::new(&timeouts);
    let heard = keepalive.heard();
    let gone = async {
        while let Some(Ok(msg)) = stream.next().await {
            heard.now();
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    };
    tokio::pin!(gone);
    let mut batch = Vec::new();
    let mut idle = false;
    // The reason of a channel Postgres refused: the socket ends with it.
    let mut refused_with = None;
    let code = loop {
        let notice = tokio::select! {
            _ = &mut gone => break None,
            _ = signal.closed() => break Some(signal.code()),
            beat = keepalive.next() => match beat {
                Beat::Ping => {
                    if sink.send(Message::Ping(Default::default())).await.is_err() {
                        break None;
                    }
                    keepalive.pinged();
                    continue;
                }
                Beat::Idle => {
                    idle = true;
                    break None;
                }
            },
            n = subscription.notices.recv() => match n {
                Some(n) => n,
                None => break Some(signal.code()),
            },
        };
        // What else is waiting goes out with it: one flush per batch, not per frame.
        batch.push(notice);
        while batch.len() < BATCH {
            match subscription.notices.try_recv() {
                Ok(n) => batch.push(n),
                Err(_) => break,
            }
        }
        let mut failed = false;
        for notice in batch.drain(..) {
            if let Notice::Refused(refused) = &notice {
                refused_with = Some(refused_reason(refused));
            }
            let Some(text) = frame_text(notice, json) else {
                continue;
            };
            if sink.feed(Message::Text(text)).await.is_err() {
                failed = true;
                break;
            }
            if refused_with.is_some() {
                break;
            }
        }
        if failed || sink.flush().await.is_err() {
            break None;
        }
        if refused_with.is_some() {
            break Some(close_code::LISTEN_REFUSED);
        }
    };
    drop(subscription);
    let timed_out = if sink.timed_out() {
        Some(TimedOut::Write)
    } else if idle {
        Some(TimedOut::Idle)
    } else {
        None
    };
    let close = match (timed_out, code) {
        (Some(why), _) => {
            let (code, reason) = why.close(&timeouts, &metrics);
            tracing::info!(
                session = number,
                timeout = why.label(),
                code,
                "closing a /listen socket: {reason}"
            );
            Some((code, reason))
        }
        (None, Some(code)) => {
            let given = refused_with.as_deref().or_else(|| signal.reason());
            Some((code, close_code::reason(code, given)))
        }
        (None, None) => None,
    };
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            sink.inner_mut().send(Message::Close(Some(frame))),
        )
        .await;
    }
    metrics.sessions.dec();
}
