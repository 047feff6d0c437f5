//! A `/listen/{channel}` socket: every NOTIFY payload of its channel as one text frame, byte for
//! byte (`format=json`: `{"type":"notify","channel","payload","pid"}` and `{"type":"notify_gap"}`
//! after the relay lost its connection); a channel Postgres refuses ends its sockets. Its writes
//! run under the write deadline and it is pinged and ended when idle, as every socket. Does not
//! check requests (`http::listen` does) or talk to Postgres (`relay::Relay` does).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::json;

use crate::metrics::Metrics;
use crate::relay::{Notice, Refused};
use crate::vocab::{close_code, Frame, SessionSignal};

use super::deadline::WriteDeadline;
use super::keepalive::{session_number, Beat, Keepalive, SocketTimeouts, TimedOut};

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

/// What one `/listen` socket relays.
pub(crate) struct Relayed {
    pub subscription: crate::relay::Subscription,
    pub signal: Arc<SessionSignal>,
    pub json: bool,
}

/// Writes the notices to the socket until the client leaves, the relay or the shutdown closes
/// it (4008: too many unread notifications; 1001), or a timeout ends it: writes that make no
/// progress for `sessions.write_timeout` (4008) or nothing heard for `sessions.idle_timeout`
/// (4009).
pub(crate) async fn run<S, R, E>(
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
            reason: close_code::fit(&reason).into(),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            sink.inner_mut().send(Message::Close(Some(frame))),
        )
        .await;
    }
    metrics.sessions.dec();
}
