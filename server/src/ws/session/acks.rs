//! Acks and the creation of named subscriptions: an `ack` goes to its named subscription's
//! `Claim` (refused beyond what the subscription was sent, or for a subscription without a name),
//! persisted acks are confirmed with `acked` frames, and a named subscription seen for the first
//! time is persisted before the client hears `subscribed`. Owns no store: `named::Store` writes
//! the file.

use std::time::Duration;

use axum::extract::ws::Message;
use futures_util::Sink;

use crate::named::Claim;
use crate::vocab::{close_code, Frame, Pos};

use super::super::client;
use super::{End, Session};

/// How long a new named subscription may wait for its creation to be persisted.
const CREATE_TIMEOUT: Duration = Duration::from_secs(10);

impl<S: Sink<Message> + Unpin> Session<S> {
    /// `{"type":"ack","pos":..}`: every change up to `pos` of subscription `id` (or of the
    /// socket's only named subscription) is acknowledged; its claim persists it. Refused with
    /// `bad_ack` when no named subscription is meant or `pos` is beyond what it was sent.
    pub(super) async fn on_ack(&mut self, pos: Pos, id: Option<String>) -> Result<(), End> {
        let target = match &id {
            Some(id) => self.find(id),
            None => {
                let mut named = self
                    .subs
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.claim.is_some());
                match (named.next(), named.next()) {
                    (Some((i, _)), None) => Some(i),
                    _ => None,
                }
            }
        };
        let refusal = match target.map(|i| &self.subs[i]) {
            None if id.is_some() => "no subscription with this id on this socket".to_owned(),
            None => "acks are kept for named subscriptions only: subscribe with sub=<name> \
                     (with several on one socket, say which with \"id\")"
                .to_owned(),
            Some(sub) => match &sub.claim {
                None => "acks are kept for named subscriptions only: subscribe with sub=<name>"
                    .to_owned(),
                Some(_) if pos > sub.sent => format!(
                    "ack of {pos}, beyond the last position this subscription was sent ({})",
                    sub.sent
                ),
                Some(claim) => {
                    claim.ack(pos);
                    return Ok(());
                }
            },
        };
        self.send(client::error_frame(id.as_deref(), "bad_ack", &refusal))
            .await
    }

    /// `acked` for every named subscription whose acks were persisted since the last look.
    pub(super) async fn send_acked(&mut self) -> Result<(), End> {
        for i in 0..self.subs.len() {
            let sub = &mut self.subs[i];
            let Some(claim) = &mut sub.claim else {
                continue;
            };
            if !claim.persisted().has_changed().unwrap_or(false) {
                continue;
            }
            let pos = *claim.persisted().borrow_and_update();
            let mut text = String::with_capacity(96);
            text.push_str(r#"{"type":"acked","sub":"#);
            crate::decode::put_str(&mut text, claim.name());
            text.push_str(r#","pos":""#);
            pos.push_text(&mut text);
            text.push_str("\"}");
            let frame = sub.frame(Frame::from(text));
            self.send(frame).await?;
        }
        Ok(())
    }
}

/// A named subscription seen for the first time starts where its live subscription does; the
/// client hears `subscribed` only once that is persisted.
pub(super) async fn create_named(claim: Option<&mut Claim>, start: Pos) -> Result<(), End> {
    let Some(claim) = claim else {
        return Ok(());
    };
    if claim.resume_after().is_some() {
        return Ok(());
    }
    if tokio::time::timeout(CREATE_TIMEOUT, claim.create(start))
        .await
        .is_err()
    {
        tracing::error!(
            subscription = claim.name(),
            "named subscription could not be persisted in time"
        );
        return Err(End::Close(
            close_code::INTERNAL_ERROR,
            "named subscription could not be persisted".into(),
        ));
    }
    Ok(())
}
