//! One WebSocket session, from its `subscribed` frame to its close. It is either live (reading
//! its cohort's in-memory log) or catching up (reading the journal with its own filter, see
//! `hub::CatchUp`): a resuming session (`from=`, or `sub=` after its last ack) starts catching
//! up, and a live one that falls behind its cohort's log is moved to the journal and rejoins the
//! live stream when it has caught up. Either way it sends every matching change once, in order:
//! the session remembers the position of the last change it sent and skips nothing after it.
//! A reader task turns client messages into `Control`s (acks, error replies); acks of a named
//! subscription go to its `named::Claim`, and each persisted batch is confirmed with `acked`.
//! Does not filter live changes (the hub does) and does not own the journal or the store.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::filter::wasm::PluginGroup;
use crate::filter::{Filter, TableName};
use crate::hub::{
    close_code, CatchUp, CatchUpRequest, Entry, Fill, Frame, Hub, Next, SessionSignal,
    SubscribeRequest, Subscription, SubscriptionId,
};
use crate::journal::{JournalError, JournalHandle, JournalReader, Pos};
use crate::metrics::Metrics;
use crate::named::{self, Claim};

use super::client::{self, Control};

/// Frames written per flush at most.
const BATCH: usize = 64;
/// Frames read from the journal per flush while catching up.
const CATCH_UP_BATCH: usize = 256;
/// How long a close frame may take to reach a client that stopped reading.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the seam may wait for the journal to show what the live stream already dispatched
/// (it is published at the end of every burst read from Postgres, so normally milliseconds).
const SEAM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a new named subscription may wait for its creation to be persisted.
const CREATE_TIMEOUT: Duration = Duration::from_secs(10);
/// Close code when the server fails under the session (journal or store unusable).
const INTERNAL_ERROR: u16 = 1011;
/// Client messages waiting for the writer; a client that sends faster is read more slowly.
const CONTROL_QUEUE: usize = 64;

/// What the session receives, as validated before the upgrade.
pub(super) struct Plan {
    pub table: TableName,
    /// The cohort key (see `router::cohort_key`).
    pub key: String,
    pub ops: u8,
    pub filter: Filter,
    pub plugin: Option<Arc<PluginGroup>>,
}

/// Where the session starts.
pub(super) enum Start {
    /// With the live stream, after the last change dispatched.
    Live,
    /// After this position, read from the journal first.
    After(Pos, JournalReader),
}

/// What a session needs from the server.
#[derive(Clone)]
pub(super) struct Ctx {
    pub hub: Arc<Hub>,
    pub journal: JournalHandle,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    /// The stream's WAL position for `subscribed` (see `router::stream_position`).
    pub lsn: crate::source::Lsn,
}

enum Mode {
    Live(Subscription),
    CatchUp(Box<CatchUp>),
}

/// What woke a live session.
enum Event {
    Control(Control),
    /// More acks are persisted.
    Persisted,
    Next(Next),
}

/// How the write loop ended.
enum End {
    /// Close the socket with this code and reason.
    Close(u16, String),
    /// The client left or the socket failed: nothing more to send.
    Gone,
}

struct Session<S> {
    sink: S,
    ctx: Ctx,
    plan: Plan,
    id: SubscriptionId,
    signal: Arc<SessionSignal>,
    claim: Option<Claim>,
    /// Position of the last change sent (or, before the first, the one the session starts
    /// after): every matching change after it is still to be sent, none before it.
    sent: Pos,
    control: mpsc::Receiver<Control>,
    client_gone: CancellationToken,
    /// Reused frame buffer.
    batch: Vec<Entry>,
    frames: Vec<Frame>,
}

/// Serve one session until the client leaves, the hub or an operator closes it, or the server
/// shuts down. Generic over Sink/Stream so it runs without sockets in tests.
pub(super) async fn run<S, R, E>(
    sink: S,
    stream: R,
    ctx: Ctx,
    plan: Plan,
    start: Start,
    claim: Option<Claim>,
    signal: Arc<SessionSignal>,
) where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin + Send + 'static,
    E: Send + 'static,
{
    let (control_tx, control) = mpsc::channel(CONTROL_QUEUE);
    let client_gone = CancellationToken::new();
    // The reader runs as its own task: it is polled only when the client sends something, so
    // frame writes never pay for a read attempt on the socket.
    let reader = tokio::spawn(read_client(stream, control_tx, client_gone.clone()));
    let metrics = ctx.metrics.clone();
    metrics.sessions.inc();
    let mut session = Session {
        sink,
        id: ctx.hub.reserve_id(),
        ctx,
        plan,
        signal,
        claim,
        sent: Pos::ZERO,
        control,
        client_gone,
        batch: Vec::new(),
        frames: Vec::new(),
    };
    let end = session.serve(start).await;
    if let End::Close(code, reason) = end {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(
            CLOSE_TIMEOUT,
            session.sink.send(Message::Close(Some(frame))),
        )
        .await;
    }
    reader.abort();
    metrics.sessions.dec();
}

async fn read_client<R, E>(mut stream: R, control: mpsc::Sender<Control>, gone: CancellationToken)
where
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    while let Some(msg) = stream.next().await {
        let msg = match msg {
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(msg) => msg,
        };
        if let Some(c) = client::parse(&msg) {
            if control.send(c).await.is_err() {
                break;
            }
        }
    }
    gone.cancel();
}

impl<S: Sink<Message> + Unpin> Session<S> {
    async fn serve(&mut self, start: Start) -> End {
        let mut mode = match start {
            Start::Live => {
                let subscription = self.subscribe();
                self.sent = subscription.start();
                if let Some(end) = self.create_named().await {
                    return end;
                }
                Mode::Live(subscription)
            }
            Start::After(from, reader) => {
                self.sent = from;
                self.ctx.metrics.catchup_sessions.inc();
                Mode::CatchUp(Box::new(self.catch_up_from(reader)))
            }
        };
        let hello = super::router::subscribed_frame(
            self.id,
            &self.plan.table,
            self.ctx.lsn,
            self.sent,
            self.claim.as_ref().map(Claim::name),
        );
        if self.sink.send(hello).await.is_err() {
            return self.leave(mode, End::Gone);
        }
        loop {
            let next = match mode {
                Mode::Live(subscription) => self.live(subscription).await,
                Mode::CatchUp(catch_up) => self.catch_up(catch_up).await,
            };
            mode = match next {
                Ok(mode) => mode,
                Err(end) => return end,
            };
        }
    }

    fn leave(&self, mode: Mode, end: End) -> End {
        if let Mode::CatchUp(_) = mode {
            self.ctx.metrics.catchup_sessions.dec();
        }
        end
    }

    fn subscribe(&self) -> Subscription {
        let plan = &self.plan;
        self.ctx.hub.subscribe_with_id(
            SubscribeRequest {
                schema: &plan.table.schema,
                table: &plan.table.name,
                key: &plan.key,
                ops: plan.ops,
                filter: plan.filter.clone(),
                plugin: plan.plugin.clone(),
            },
            self.signal.clone(),
            self.id,
        )
    }

    fn catch_up_from(&self, reader: JournalReader) -> CatchUp {
        let plan = &self.plan;
        CatchUp::new(
            reader,
            CatchUpRequest {
                schema: plan.table.schema.clone().into(),
                table: plan.table.name.clone().into(),
                filter: plan.filter.clone(),
                plugin: plan.plugin.clone(),
            },
        )
    }

    /// A named subscription seen for the first time starts where this live session does; the
    /// client hears `subscribed` only once that is persisted.
    async fn create_named(&mut self) -> Option<End> {
        let claim = self.claim.as_mut()?;
        if claim.resume_after().is_some() {
            return None;
        }
        if tokio::time::timeout(CREATE_TIMEOUT, claim.create(self.sent))
            .await
            .is_err()
        {
            tracing::error!(subscription = claim.name(), "named subscription could not be persisted in time; closing the session");
            return Some(End::Close(
                INTERNAL_ERROR,
                "named subscription could not be persisted".into(),
            ));
        }
        None
    }

    /// Live: frames from the cohort's log until the session ends or falls behind it.
    async fn live(&mut self, subscription: Subscription) -> Result<Mode, End> {
        loop {
            let event = {
                let claim = &mut self.claim;
                let persisted = async move {
                    match claim {
                        Some(claim) => claim.persisted().changed().await.is_ok(),
                        None => std::future::pending().await,
                    }
                };
                let batch = &mut self.batch;
                tokio::select! {
                    biased;
                    _ = self.client_gone.cancelled() => return Err(End::Gone),
                    _ = self.signal.closed() => Event::Next(Next::Closed),
                    Some(control) = self.control.recv() => Event::Control(control),
                    true = persisted => Event::Persisted,
                    next = subscription.reader().next_batch(batch, BATCH) => Event::Next(next),
                }
            };
            match event {
                Event::Control(control) => self.on_control(control).await?,
                Event::Persisted => self.send_acked().await?,
                Event::Next(Next::Frames) => self.send_batch().await?,
                Event::Next(Next::Closed) => return Err(self.closing(&subscription).await),
                Event::Next(Next::Behind) => {
                    drop(subscription);
                    return self.fall_behind();
                }
            }
        }
    }

    /// Sends the cohort frames in `batch`, skipping changes at or before `sent` (the journal
    /// sent those at the seam).
    async fn send_batch(&mut self) -> Result<(), End> {
        for entry in self.batch.drain(..) {
            if let Some(pos) = entry.pos {
                if pos <= self.sent {
                    continue;
                }
                self.sent = pos;
            }
            if self.sink.feed(Message::Text(entry.frame)).await.is_err() {
                return Err(End::Gone);
            }
        }
        self.sink.flush().await.map_err(|_| End::Gone)
    }

    /// The close the hub or the server asked for. A failing plugin's `error` frames explain the
    /// 4010: they go out before the close.
    async fn closing(&mut self, subscription: &Subscription) -> End {
        let code = self.signal.code();
        if code == close_code::PLUGIN_FAILING {
            while let Some(Next::Frames) = subscription.reader().take(&mut self.batch, BATCH) {}
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.send_batch()).await;
        }
        End::Close(code, close_reason(code, &self.signal))
    }

    /// The cohort's log went on without this session: the rest comes from the journal.
    fn fall_behind(&mut self) -> Result<Mode, End> {
        match self.ctx.journal.reader(self.sent) {
            Ok(reader) => {
                tracing::debug!(subscription = self.id, after = %self.sent, "session fell behind its cohort's log: reading the journal");
                self.ctx.metrics.catchup_sessions.inc();
                Ok(Mode::CatchUp(Box::new(self.catch_up_from(reader))))
            }
            Err(error) => Err(self.journal_failed(error)),
        }
    }

    /// Catching up: journal frames until the journal's end, then the seam back to live.
    async fn catch_up(&mut self, mut catch_up: Box<CatchUp>) -> Result<Mode, End> {
        let result = self.catch_up_inner(&mut catch_up).await;
        self.ctx.metrics.catchup_sessions.dec();
        result
    }

    async fn catch_up_inner(&mut self, catch_up: &mut CatchUp) -> Result<Mode, End> {
        // Up to the journal's end before joining: a long replay must not hold a cohort log.
        self.replay(catch_up, None).await?;
        let subscription = self.subscribe();
        // The seam: everything up to the subscription's start comes from the journal (waiting
        // for the burst that holds it to be published), everything after from the cohort.
        let start = subscription.start();
        let deadline = tokio::time::Instant::now() + SEAM_TIMEOUT;
        while catch_up.position() < start {
            if self.replay(catch_up, Some(start)).await? == Fill::Until {
                break;
            }
            if catch_up.position() >= start {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::error!(subscription = self.id, at = %catch_up.position(), %start, "journal does not show what the live stream dispatched; closing the session");
                return Err(End::Close(
                    INTERNAL_ERROR,
                    "journal behind the live stream".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.sent = self.sent.max(start);
        Ok(Mode::Live(subscription))
    }

    /// Writes catch-up frames until the journal's current end (or `until`).
    async fn replay(&mut self, catch_up: &mut CatchUp, until: Option<Pos>) -> Result<Fill, End> {
        loop {
            if self.client_gone.is_cancelled() {
                return Err(End::Gone);
            }
            if self.signal.is_closing() || self.ctx.shutdown.is_cancelled() {
                let code = self.signal.code();
                return Err(End::Close(code, close_reason(code, &self.signal)));
            }
            while let Ok(control) = self.control.try_recv() {
                self.on_control(control).await?;
            }
            if self.claim.as_mut().is_some_and(|c| {
                c.persisted().has_changed().unwrap_or(false)
            }) {
                self.send_acked().await?;
            }
            let fill = match catch_up.fill(&mut self.frames, CATCH_UP_BATCH, until) {
                Ok(fill) => fill,
                Err(error) => return Err(self.journal_failed(error)),
            };
            for frame in self.frames.drain(..) {
                if self.sink.feed(Message::Text(frame)).await.is_err() {
                    return Err(End::Gone);
                }
            }
            self.sink.flush().await.map_err(|_| End::Gone)?;
            // Everything up to the position read was sent or did not match.
            self.sent = self.sent.max(catch_up.position());
            if fill != Fill::More {
                return Ok(fill);
            }
            // A long replay yields between batches so other sessions' writers run.
            tokio::task::yield_now().await;
        }
    }

    fn journal_failed(&self, error: JournalError) -> End {
        match error {
            // Retention removed what this session still had to read: it fell too far behind.
            JournalError::Expired { .. } => {
                tracing::info!(subscription = self.id, at = %self.sent, "a session fell behind the journal's retention (4008)");
                self.ctx.metrics.sessions_dropped.inc();
                End::Close(
                    close_code::SLOW_CONSUMER,
                    "fell behind the journal's retention".into(),
                )
            }
            error => {
                tracing::error!(%error, subscription = self.id, at = %self.sent, "journal read failed under a session");
                End::Close(INTERNAL_ERROR, "journal read failed".into())
            }
        }
    }

    async fn on_control(&mut self, control: Control) -> Result<(), End> {
        let reply = match control {
            Control::Reply(frame) => frame,
            Control::Ack(pos) => match &self.claim {
                None => match client::error(
                    "bad_ack",
                    "acks are kept for named subscriptions only: connect with sub=<name>",
                ) {
                    Control::Reply(frame) => frame,
                    Control::Ack(_) => unreachable!(),
                },
                Some(_) if pos > self.sent => {
                    let message = format!(
                        "ack of {pos}, beyond the last position this socket was sent ({})",
                        self.sent
                    );
                    match client::error("bad_ack", &message) {
                        Control::Reply(frame) => frame,
                        Control::Ack(_) => unreachable!(),
                    }
                }
                Some(claim) => {
                    claim.ack(pos);
                    return Ok(());
                }
            },
        };
        self.send(reply).await
    }

    async fn send_acked(&mut self) -> Result<(), End> {
        let Some(claim) = &mut self.claim else {
            return Ok(());
        };
        let pos = *claim.persisted().borrow_and_update();
        let mut text = String::with_capacity(96);
        text.push_str(r#"{"type":"acked","sub":"#);
        crate::decode::put_str(&mut text, claim.name());
        text.push_str(r#","pos":""#);
        pos.push_text(&mut text);
        text.push_str("\"}");
        self.send(Frame::from(text)).await
    }

    async fn send(&mut self, frame: Frame) -> Result<(), End> {
        self.sink
            .send(Message::Text(frame))
            .await
            .map_err(|_| End::Gone)
    }
}

/// The hub's own reason when it gave one (the failing plugin and its cause for 4010), else the
/// code's standard text.
fn close_reason(code: u16, signal: &SessionSignal) -> String {
    if let Some(reason) = signal.reason() {
        return reason.to_owned();
    }
    let standard = match code {
        close_code::SLOW_CONSUMER => "slow consumer: too many unread frames",
        close_code::GOING_AWAY => "server shutting down",
        close_code::PLUGIN_FAILING => "filter plugin failing",
        named::DELETED_CLOSE_CODE => "subscription deleted",
        _ => "",
    };
    standard.to_owned()
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
