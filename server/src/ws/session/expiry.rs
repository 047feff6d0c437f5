//! Token expiry of a socket under `auth.mode = "jwt"`: a timer at the token's `exp`, moved when
//! a fresh token arrives (`{"type":"access_token","token":..}`); the session closes the socket with
//! 4001 once it fires and no fresh token moved it. Checks no token itself (`auth::SessionAuth`
//! does).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Sleep;

use crate::auth::{unix_now, SessionAuth, Unauthorized};
use crate::vocab::Frame;

use super::super::client;

pub(super) struct TokenExpiry {
    /// The socket's principal; `None` without tokens (`auth.mode = "none"`).
    auth: Option<Arc<SessionAuth>>,
    /// Fires at `at` (reset when a fresh token moves it).
    timer: Pin<Box<Sleep>>,
    /// The `exp` the timer is set for.
    at: Option<u64>,
}

impl TokenExpiry {
    pub(super) fn new(auth: Option<Arc<SessionAuth>>) -> TokenExpiry {
        TokenExpiry {
            auth,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            at: None,
        }
    }

    fn exp(&self) -> Option<u64> {
        self.auth.as_ref().and_then(|a| a.expires())
    }

    /// Points the timer at the token's `exp` when that changed (a fresh token moved it).
    pub(super) fn arm(&mut self) {
        let exp = self.exp();
        if exp == self.at {
            return;
        }
        self.at = exp;
        if let Some(exp) = exp {
            let wait = Duration::from_secs(exp.saturating_sub(unix_now()));
            self.timer
                .as_mut()
                .reset(tokio::time::Instant::now() + wait);
        }
    }

    /// Whether the timer is set: the token has an `exp`.
    pub(super) fn armed(&self) -> bool {
        self.at.is_some()
    }

    /// Resolves when the timer fires; wait for it only while `armed`.
    pub(super) async fn fired(&mut self) {
        self.timer.as_mut().await
    }

    /// Whether the timer has fired already.
    pub(super) fn elapsed(&self) -> bool {
        self.armed() && self.timer.is_elapsed()
    }

    /// The timer fired: whether the token has expired, or a fresh token moved its `exp`
    /// meanwhile (the timer is then set again).
    pub(super) fn expired(&mut self) -> bool {
        let exp = self.exp();
        if exp != self.at || exp.is_some_and(|e| e > unix_now()) {
            self.arm();
            return false;
        }
        true
    }

    /// The answer to `{"type":"access_token","token":..}`: `token_refreshed` with the new `exp`,
    /// or an error frame (`unauthorized`; `bad_message` without tokens). A refused token leaves
    /// the socket its current one until it expires.
    pub(super) fn refresh(&mut self, token: &str) -> Frame {
        let Some(auth) = self.auth.clone() else {
            return client::error_frame(
                None,
                "bad_message",
                "this server does not use tokens (auth.mode = none)",
            );
        };
        match auth.refresh(token) {
            Ok(exp) => {
                self.arm();
                let exp = exp.map_or("null".to_owned(), |e| e.to_string());
                Frame::from(format!(r#"{{"type":"token_refreshed","exp":{exp}}}"#))
            }
            Err(Unauthorized(message)) => client::error_frame(None, "unauthorized", &message),
        }
    }
}
