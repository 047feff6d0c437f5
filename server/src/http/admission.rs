//! Who a request is and whether it gets a socket, checked before anything else is looked at: the
//! origin allow-list and the token (`identify`), a place under the connection limits (`admit`),
//! and the subprotocol to answer an upgrade with. Does not look at what a request asks for
//! (`request` does).

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap, StatusCode};

use crate::auth::{Principal, Unauthorized};

use super::conns::{ConnPermit, ConnRefusal};
use super::error::{refusal, HttpError};
use super::routes::AppState;

/// Who a request is, before anything else is looked at: the origin allow-list (403
/// `origin_not_allowed`), then the token (401). `access_token=` is taken out of `params`, so it
/// never becomes part of a cohort key or a named subscription's stored query.
pub(super) fn identify(
    st: &AppState,
    headers: &HeaderMap,
    params: &mut Vec<(String, String)>,
) -> Result<Option<Principal>, HttpError> {
    if let Err(message) = st.auth.origin_allowed(headers) {
        return Err(refusal("origin_not_allowed", message));
    }
    let mut access_token = None;
    params.retain(|(k, v)| {
        if k == "access_token" {
            access_token = Some(v.clone());
            false
        } else {
            true
        }
    });
    let creds = crate::auth::credentials(headers, access_token.as_deref());
    st.auth
        .authenticate(&creds)
        .map_err(|Unauthorized(message)| HttpError::unauthorized(message))
}

/// A place for one more socket from the request's client (the peer, or the address a trusted
/// proxy forwarded; loopback clients count toward the total only), or the refusal: 503
/// `too_many_connections`, 429 `too_many_connections_from_ip`.
pub(super) fn admit(
    st: &AppState,
    extensions: &Extensions,
    headers: &HeaderMap,
) -> Result<ConnPermit, HttpError> {
    let ip = extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(addr)| st.conns.client_ip(addr.ip(), headers))
        .filter(|ip| !ip.is_loopback());
    st.conns.acquire(ip).map_err(|refused| {
        let (status, code, message) = match refused {
            ConnRefusal::Total(n) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_connections",
                format!("this server holds {n} sockets, the most allowed (http.max_connections); retry later"),
            ),
            ConnRefusal::PerIp(n) => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_connections_from_ip",
                format!("your address holds {n} sockets, the most allowed (http.max_connections_per_ip)"),
            ),
        };
        st.metrics.limit_refused(code);
        HttpError::new(status, code, message)
    })
}

/// The subprotocol to answer with: `walcast` when offered, else the client's `bearer.<jwt>`
/// entry (a browser fails the handshake when it offered protocols and none comes back).
pub(super) fn answer_protocols(headers: &HeaderMap) -> Vec<String> {
    let mut out = vec![crate::auth::WALCAST_PROTOCOL.to_owned()];
    if let Some(token) = crate::auth::subprotocol_token(headers) {
        out.push(format!("{}{token}", crate::auth::BEARER_PROTOCOL));
    }
    out
}
