//! Live subscriptions: waiting on every live subscription's cohort log at once, each in turn so
//! none starves the others; sending a cohort's frames (skipping what the journal already sent at
//! the seam); and a subscription the hub, an operator or the shutdown closed. A subscription that
//! falls behind its cohort's log goes to the journal (`seam`). Reads no journal.

use std::task::Poll;

use axum::extract::ws::Message;
use futures_util::{Sink, SinkExt};

use crate::hub::{Entry, Next};
use crate::vocab::close_code;

use super::super::client;
use super::subscriptions::{Mode, Sub};
use super::{End, Session, BATCH, CLOSE_TIMEOUT};

impl<S: Sink<Message> + Unpin> Session<S> {
    /// What a live subscription's cohort log had for it: frames, a close, or the news that the
    /// log went on without it.
    pub(super) async fn on_live(&mut self, i: usize, next: Next) -> Result<(), End> {
        match next {
            Next::Frames => self.send_batch(i).await,
            Next::Closed => self.closing(i).await,
            Next::Behind => self.fall_behind(i),
        }
    }

    /// Sends the cohort frames in `batch` for subscription `i`, skipping changes at or before
    /// what it sent (the journal sent those at the seam).
    pub(super) async fn send_batch(&mut self, i: usize) -> Result<(), End> {
        let sub = &mut self.subs[i];
        for entry in self.batch.drain(..) {
            if let Some(pos) = entry.pos {
                if pos <= sub.sent {
                    continue;
                }
                sub.sent = pos;
            }
            let frame = sub.frame(entry.frame);
            if self.sink.feed(Message::Text(frame)).await.is_err() {
                return Err(End::Gone);
            }
        }
        self.sink.flush().await.map_err(|_| End::Gone)
    }

    /// A subscription closed by the hub (failing plugin), an operator (deleted) or the shutdown.
    /// The URL's subscription closes the socket with that code; one opened by a message ends
    /// with an `error` frame and the socket stays open. A failing plugin's `error` frames
    /// explain why: they go out first.
    pub(super) async fn closing(&mut self, i: usize) -> Result<(), End> {
        let code = self.subs[i].signal.code();
        let explained = self.subs[i].signal.explained();
        if code == close_code::PLUGIN_FAILING || explained {
            if let Mode::Live(subscription) = &self.subs[i].mode {
                while let Some(Next::Frames) = subscription.reader().take(&mut self.batch, BATCH) {}
            }
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.send_batch(i)).await;
        }
        let sub = self.remove(i);
        let reason = close_code::reason(code, sub.signal.reason());
        match sub.id {
            None => Err(End::Close(code, reason)),
            // Its error frame went out with the frames above.
            Some(_) if explained => Ok(()),
            Some(id) => {
                let error = match code {
                    close_code::PLUGIN_FAILING => "plugin_failing",
                    close_code::SUBSCRIPTION_ENDED => "subscription_deleted",
                    close_code::SLOW_CONSUMER => "slow_consumer",
                    close_code::INTERNAL_ERROR => "internal_error",
                    close_code::GOING_AWAY => return Err(End::Close(code, reason)),
                    _ => "subscription_closed",
                };
                self.send(client::error_frame(Some(&id), error, &reason))
                    .await
            }
        }
    }
}

/// Waits until a live subscription has frames (moved into `batch`), fell behind or was closed.
pub(super) async fn next_live_batch(
    subs: &[Sub],
    batch: &mut Vec<Entry>,
    next: &mut usize,
) -> (usize, Next) {
    std::future::poll_fn(|cx| {
        let n = subs.len();
        for k in 0..n {
            let i = (*next + k) % n;
            let Mode::Live(subscription) = &subs[i].mode else {
                continue;
            };
            if subs[i].signal.is_closing() {
                return Poll::Ready((i, Next::Closed));
            }
            if let Poll::Ready(got) = subscription.reader().poll_next(cx, batch, BATCH) {
                *next = i + 1;
                return Poll::Ready((i, got));
            }
        }
        Poll::Pending
    })
    .await
}
