//! `GET /listen/{channel}`: the checks before a socket that relays one channel's NOTIFY payloads
//! is opened: the channel's name (what Postgres can take), the client, `notify.channels`, the
//! policy, then the LISTEN itself (answered before the upgrade, so a refused channel is a 400 or
//! 503, not a closed socket). Does not talk to Postgres (`relay::Relay` does) or write frames
//! (`ws::listen` does).

use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::relay::SubscribeError;
use crate::vocab::SessionSignal;
use crate::ws::listen::Relayed;

use super::error::HttpError;
use super::routes::AppState;

/// How long the upgrade waits for the LISTEN to be in effect.
const LISTEN_WAIT: Duration = Duration::from_secs(5);

/// The query of `/listen/{channel}`.
#[derive(serde::Deserialize)]
pub(super) struct ListenQuery {
    format: Option<String>,
    /// A token for browsers, which cannot set headers on a WebSocket.
    access_token: Option<String>,
}

/// `GET /listen/{channel}`: the refusals before the upgrade, then the relay's socket.
pub(super) async fn handler(
    State(st): State<AppState>,
    Path(channel): Path<String>,
    Query(q): Query<ListenQuery>,
    headers: HeaderMap,
    extensions: Extensions,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let permit = match &upgrade {
        Ok(_) => match super::admission::admit(&st, &extensions, &headers) {
            Ok(permit) => Some(permit),
            Err(refused) => return refused.into_response(),
        },
        Err(_) => None,
    };
    if let Some(problem) = crate::relay::channel_problem(&channel) {
        return HttpError::new(StatusCode::BAD_REQUEST, "bad_channel", problem).into_response();
    }
    let json = match q.format.as_deref() {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            return HttpError::new(
                StatusCode::BAD_REQUEST,
                "bad_query",
                format!("format={other:?}: give json, or leave it out for payloads as they are"),
            )
            .into_response()
        }
    };
    let mut token = q
        .access_token
        .map(|t| vec![("access_token".to_owned(), t)])
        .unwrap_or_default();
    let principal = match super::admission::identify(&st, &headers, &mut token) {
        Ok(principal) => principal,
        Err(refused) => return refused.into_response(),
    };
    if !st.notify_allow.allows_name(&channel) {
        return HttpError::new(
            StatusCode::FORBIDDEN,
            "channel_not_allowed",
            format!("channel {channel:?} is not in this server's allow-list (notify.channels)"),
        )
        .into_response();
    }
    if let (Some(who), Some(policy)) = (&principal, st.auth.policy()) {
        if let Err(refusal) = policy.allows_channel(who, &channel) {
            return HttpError::new(StatusCode::FORBIDDEN, refusal.code, refusal.message)
                .into_response();
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
            return HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "notify_unavailable",
                "the LISTEN connection to Postgres is down; retry shortly",
            )
            .into_response()
        }
        Err(SubscribeError::Refused(refused)) if refused.names_the_channel() => {
            return HttpError::new(
                StatusCode::BAD_REQUEST,
                "bad_channel",
                format!(
                    "Postgres cannot take this channel name: {}",
                    refused.message
                ),
            )
            .into_response()
        }
        Err(SubscribeError::Refused(refused)) => {
            return HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "notify_unavailable",
                format!(
                    "Postgres refused LISTEN on this channel: {}",
                    refused.message
                ),
            )
            .into_response()
        }
    };
    let sessions = st.sessions.clone();
    let metrics = st.metrics.clone();
    let timeouts = st.timeouts;
    upgrade
        .protocols(super::admission::answer_protocols(&headers))
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
                crate::ws::listen::run(sink, stream, relayed, timeouts, metrics).await
            })
        })
}
