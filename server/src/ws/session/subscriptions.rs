//! A socket's subscriptions: each `Sub` with its plan, its signal, its named claim, the position
//! of the last change it sent and whether it is live or catching up; starting a validated one
//! (registered with the hub, or reading the journal first, or a snapshot first) and answering
//! `subscribed`; opening one from a `subscribe` message and ending one on `unsubscribe`.
//! Validates no request (the `Opener` does).

use std::sync::Arc;

use axum::extract::ws::Message;
use futures_util::Sink;

use crate::hub::{
    CatchUp, CatchUpRequest, FollowRequest, Hub, SubscribeRequest, Subscription, SubscriptionId,
};
use crate::journal::JournalReader;
use crate::named::Claim;
use crate::source::SourceStatus;
use crate::vocab::{Frame, Lsn, Pos, SessionSignal};

use super::super::client;
use super::acks::create_named;
use super::plan::{Opened, Plan, Start};
use super::{End, Session};

/// Where a subscription reads from now.
pub(super) enum Mode {
    /// Its cohort's in-memory log.
    Live(Subscription),
    /// The journal, with its own filter.
    CatchUp(Box<CatchUp>),
}

/// One subscription of the socket.
pub(super) struct Sub {
    /// The client's id; `None` for the subscription the `/ws` URL opened.
    pub(super) id: Option<Box<str>>,
    pub(super) hub_id: SubscriptionId,
    pub(super) plan: Plan,
    /// Closed by the hub (failing plugin), an operator (deleted) or the server's shutdown.
    pub(super) signal: Arc<SessionSignal>,
    pub(super) claim: Option<Claim>,
    /// Position of the last change sent (or, before the first, the one the subscription starts
    /// after): every matching change after it is still to be sent, none before it.
    pub(super) sent: Pos,
    pub(super) mode: Mode,
    /// After a snapshot taken at this WAL position: the subscription stays on the journal (which
    /// skips what the snapshot showed) until the stream is past it.
    pub(super) shown_until: Option<Lsn>,
    /// A schema event read from the journal carried the plan on since this was last cleared.
    pub(super) rebound: bool,
}

impl Sub {
    pub(super) fn catching_up(&self) -> bool {
        matches!(self.mode, Mode::CatchUp(_))
    }

    /// The frame as this subscription's client reads it: with its `id` when it has one.
    pub(super) fn frame(&self, frame: Frame) -> Frame {
        match &self.id {
            None => frame,
            Some(id) => client::tagged(&frame, id),
        }
    }
}

impl<S: Sink<Message> + Unpin> Session<S> {
    /// Starts a validated subscription: registers it (or opens its catch-up) and sends
    /// `subscribed`.
    pub(super) async fn start(
        &mut self,
        id: Option<Box<str>>,
        opened: Opened,
        signal: Arc<SessionSignal>,
    ) -> Result<(), End> {
        let Opened {
            plan,
            start,
            mut claim,
        } = opened;
        let hub_id = self.ctx.hub.reserve_id();
        let snapshot = matches!(start, Start::Snapshot);
        let (sent, mode) = match start {
            Start::Live => {
                let subscription = subscribe(&self.ctx.hub, &plan, &signal, hub_id);
                let sent = subscription.start();
                if let Err(refused) = create_named(claim.as_mut(), sent).await {
                    return match id {
                        // The URL's subscription: the socket has nothing else to do.
                        None => Err(refused),
                        Some(id) => {
                            let reason = match refused {
                                End::Close(_, reason) => reason,
                                End::Gone => String::new(),
                            };
                            let frame = client::error_frame(Some(&id), "internal_error", &reason);
                            self.send(frame).await
                        }
                    };
                }
                (sent, Mode::Live(subscription))
            }
            Start::After(from, reader) => {
                self.ctx.metrics.catchup_sessions.inc();
                (from, Mode::CatchUp(Box::new(catch_up_from(&plan, reader))))
            }
            Start::Snapshot => {
                // Everything after this position waits in the journal while the rows are read.
                let from = self.ctx.hub.last_pos();
                let reader = match self.ctx.journal.reader(from) {
                    Ok(reader) => reader,
                    Err(error) => {
                        tracing::error!(%error, "journal reader for a snapshot failed");
                        let frame = client::error_frame(
                            id.as_deref(),
                            "journal_unavailable",
                            "the journal cannot be read right now; retry shortly",
                        );
                        return self.send(frame).await;
                    }
                };
                self.ctx.metrics.catchup_sessions.inc();
                (from, Mode::CatchUp(Box::new(catch_up_from(&plan, reader))))
            }
        };
        let sub = Sub {
            id,
            hub_id,
            plan,
            signal,
            claim,
            sent,
            mode,
            shown_until: None,
            rebound: false,
        };
        let hello = subscribed_frame(
            sub.hub_id,
            &sub.plan.target(),
            stream_position(&self.ctx.hub, &self.ctx.status),
            sub.sent,
            sub.claim.as_ref().map(Claim::name),
        );
        let hello = sub.frame(hello);
        self.subs.push(sub);
        self.send(hello).await?;
        if snapshot {
            self.snapshot(self.subs.len() - 1).await?;
        }
        Ok(())
    }

    /// `{"type":"subscribe","id":..}`: validated by the `Opener` as a `/ws` URL's request would
    /// be, then started; a refusal is an error frame and the socket stays open.
    pub(super) async fn on_subscribe(
        &mut self,
        id: String,
        params: Vec<(String, String)>,
    ) -> Result<(), End> {
        if self.find(&id).is_some() {
            let frame = client::error_frame(
                Some(&id),
                "bad_message",
                "a subscription with this id is open on this socket; unsubscribe it first",
            );
            return self.send(frame).await;
        }
        if self.subs.len() >= self.ctx.max_subscriptions {
            let message = format!(
                "this socket holds {} subscriptions, the most allowed \
                 (sessions.max_subscriptions_per_socket)",
                self.subs.len()
            );
            let frame = client::error_frame(Some(&id), "too_many_subscriptions", &message);
            return self.send(frame).await;
        }
        let signal = SessionSignal::new(&self.ctx.shutdown);
        let opener = self.ctx.opener.clone();
        match opener.open(params, signal.clone()).await {
            Ok(opened) => self.start(Some(id.into()), opened, signal).await,
            Err(refusal) => {
                let frame = client::error_frame(Some(&id), refusal.code, &refusal.message);
                self.send(frame).await
            }
        }
    }

    /// `{"type":"unsubscribe","id":..}`: the subscription ends (it leaves its cohort, or lets go
    /// of its journal reader) and the client hears `unsubscribed`.
    pub(super) async fn on_unsubscribe(&mut self, id: &str) -> Result<(), End> {
        let Some(i) = self.find(id) else {
            let frame = client::error_frame(
                Some(id),
                "unknown_subscription",
                "no subscription with this id on this socket",
            );
            return self.send(frame).await;
        };
        drop(self.remove(i));
        let mut text = String::from(r#"{"type":"unsubscribed","id":"#);
        crate::decode::put_str(&mut text, id);
        text.push('}');
        self.send(Frame::from(text)).await
    }

    /// The subscription with the client's `id`.
    pub(super) fn find(&self, id: &str) -> Option<usize> {
        self.subs.iter().position(|s| s.id.as_deref() == Some(id))
    }

    /// Takes subscription `i` off the socket.
    pub(super) fn remove(&mut self, i: usize) -> Sub {
        let sub = self.subs.remove(i);
        if sub.catching_up() {
            self.ctx.metrics.catchup_sessions.dec();
        }
        sub
    }
}

/// Registers the subscription with the hub: every change dispatched from now on is considered
/// for it.
pub(super) fn subscribe(
    hub: &Arc<Hub>,
    plan: &Plan,
    signal: &Arc<SessionSignal>,
    hub_id: SubscriptionId,
) -> Subscription {
    if let Some((request, sees)) = &plan.follow {
        return hub.follow(
            FollowRequest {
                request: request.clone(),
                sees: sees.clone(),
            },
            signal.clone(),
            hub_id,
        );
    }
    hub.subscribe_with_id(
        SubscribeRequest {
            schema: &plan.table.schema,
            table: &plan.table.name,
            key: &plan.key,
            ops: plan.ops,
            filter: plan.filter.clone(),
            plugin: plan.plugin.clone(),
            binding: plan.binding.clone(),
        },
        signal.clone(),
        hub_id,
    )
}

/// The subscription's private reader of the journal, after where `reader` stands.
pub(super) fn catch_up_from(plan: &Plan, reader: JournalReader) -> CatchUp {
    CatchUp::new(
        reader,
        CatchUpRequest {
            schema: plan.table.schema.clone().into(),
            table: plan.table.name.clone().into(),
            filter: plan.filter.clone(),
            plugin: plan.plugin.clone(),
            binding: plan.binding.clone(),
            follow: plan.follow.clone(),
        },
    )
}

/// `lsn` is the position the stream had reached when the subscription was registered, left out
/// while none is known yet; `pos` the stream position it receives every change after.
/// `sub` names a named subscription.
fn subscribed_frame(id: u64, table: &str, lsn: Lsn, pos: Pos, sub: Option<&str>) -> Frame {
    // Built by hand so `type` comes first, as in every other frame.
    let table = serde_json::Value::from(table);
    let mut body = format!(r#"{{"type":"subscribed","subscription":"{id}","table":{table}"#);
    if lsn > Lsn(0) {
        body.push_str(&format!(r#","lsn":"{lsn}""#));
    }
    body.push_str(&format!(r#","pos":"{pos}""#));
    if let Some(sub) = sub {
        body.push_str(r#","sub":"#);
        crate::decode::put_str(&mut body, sub);
    }
    body.push('}');
    Frame::from(body)
}

/// Where the stream stands: the last message the hub took in or, before the first one, how far
/// the server had sent (keepalives) or written (at connect) its WAL.
fn stream_position(hub: &Hub, status: &SourceStatus) -> Lsn {
    let taken = hub.position();
    if taken > Lsn(0) {
        return taken;
    }
    status.server_end()
}
