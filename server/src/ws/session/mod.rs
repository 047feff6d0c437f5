//! One WebSocket session, from its first frame to its close, with its subscriptions: the one a
//! `/ws?query=` URL opened (frames without `id`) and any opened by `subscribe` messages (every
//! frame of those carries its `id`). Each subscription is either live (reading its cohort's
//! in-memory log) or catching up (reading the journal with its own filter, see `hub::CatchUp`):
//! one that resumes (`from=`, or `sub=` after its last ack) starts catching up, and a live one
//! that falls behind its cohort's log is moved to the journal and rejoins the live stream when it
//! has caught up (`seam`). Either way it sends every matching change once, in order: each
//! subscription remembers the position of the last change it sent and skips nothing after it.
//!
//! This module is the session loop: it waits for whatever comes first (a client message from the
//! reader task, live frames, a ping or idle deadline, the token's expiry, the shutdown) and hands
//! it to the file that owns the job: `subscriptions` (opening, `subscribed`), `live` (cohort
//! frames, closes), `seam` (the journal and the way back to live), `snapshot` (current rows),
//! `acks` (acks, named creation), `expiry` (token expiry), `reader` and `rate` (client messages
//! and their budget). Every write runs under the write deadline, and the socket is pinged and
//! ended when idle (`deadline`, `keepalive`); a session that ends lets go of its subscriptions
//! before its close frame. Does not validate requests (an `Opener` does), filter live changes
//! (the hub does), or own the journal or the store.

mod acks;
mod expiry;
mod live;
mod plan;
mod rate;
mod reader;
mod seam;
mod snapshot;
mod subscriptions;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures_util::{Sink, SinkExt, Stream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::hub::{Entry, Hub, Next, SubscriptionId};
use crate::journal::JournalHandle;
use crate::metrics::Metrics;
use crate::vocab::{close_code, Frame, SessionSignal};

use super::client::Control;
use super::deadline::WriteDeadline;
use super::keepalive::{self, Beat, Keepalive, SocketTimeouts, TimedOut};
use expiry::TokenExpiry;
use live::next_live_batch;
use rate::MessageRate;
use reader::read_client;
use subscriptions::{Mode, Sub};

pub(crate) use plan::{Opened, Opener, Plan, Refusal, Start};

/// Frames written per flush at most.
const BATCH: usize = 64;
/// How long a close frame may take to reach a client that stopped reading.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Client messages waiting for the writer; a client that sends faster is read more slowly.
const CONTROL_QUEUE: usize = 64;
/// How often a socket with named subscriptions looks for newly persisted acks.
const ACKED_EVERY: Duration = Duration::from_millis(20);

/// What a session needs from the server.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub hub: Arc<Hub>,
    pub journal: JournalHandle,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    /// Where the stream stands, for `subscribed` (see `subscriptions::stream_position`).
    pub status: Arc<crate::source::SourceStatus>,
    pub opener: Arc<dyn Opener>,
    pub max_subscriptions: usize,
    /// Where snapshots connect; `None`: `snapshot=true` is refused.
    pub snapshots: Option<Arc<crate::snapshot::Snapshots>>,
    /// The socket's principal under `auth.mode = "jwt"`: its token's expiry closes the socket
    /// with 4001 unless a fresh token arrives.
    pub auth: Option<Arc<crate::auth::SessionAuth>>,
    /// Client messages per second (`sessions.max_messages_per_second`).
    pub max_messages_per_second: u32,
    /// Write deadline, pings and idle timeout (`[sessions]`).
    pub timeouts: SocketTimeouts,
}

/// How the session ended.
enum End {
    /// Close the socket with this code and reason.
    Close(u16, String),
    /// The client left or the socket failed: nothing more to send.
    Gone,
}

/// What woke a waiting session.
enum Event {
    /// The token's `exp` passed.
    Expired,
    Control(Control),
    AckTick,
    /// Subscription `.0` has frames in `batch`, fell behind, or was closed.
    Live(usize, Next),
    /// A ping is due, or the client has been silent for the idle timeout.
    Beat(Beat),
}

struct Session<S> {
    sink: S,
    ctx: Ctx,
    subs: Vec<Sub>,
    control: mpsc::Receiver<Control>,
    client_gone: CancellationToken,
    /// Reused buffers.
    batch: Vec<Entry>,
    frames: Vec<Frame>,
    /// Where the next look for live frames starts, so no subscription starves the others.
    next_live: usize,
    /// The token's expiry (4001).
    expiry: TokenExpiry,
    keepalive: Keepalive,
    /// This socket's number in logs.
    number: u64,
}

/// Serve one socket until the client leaves, the hub or an operator closes its URL's
/// subscription, or the server shuts down. `first` is the subscription the URL opened (none for a
/// bare `/ws`). Generic over Sink/Stream so it runs without sockets in tests.
pub(crate) async fn run<S, R, E>(
    sink: S,
    stream: R,
    ctx: Ctx,
    first: Option<(Opened, Arc<SessionSignal>)>,
) where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin + Send + 'static,
    E: Send + 'static,
{
    let (control_tx, control) = mpsc::channel(CONTROL_QUEUE);
    let client_gone = CancellationToken::new();
    let keepalive = Keepalive::new(&ctx.timeouts);
    // The reader runs as its own task: it is polled only when the client sends something, so
    // frame writes never pay for a read attempt on the socket.
    let rate = MessageRate::new(ctx.max_messages_per_second, ctx.metrics.clone());
    let reader = tokio::spawn(read_client(
        stream,
        control_tx,
        client_gone.clone(),
        rate,
        keepalive.heard(),
    ));
    let metrics = ctx.metrics.clone();
    metrics.sessions.inc();
    let mut session = Session {
        // Every write of the session, wherever it waits, fails once it made no progress for
        // the write timeout.
        sink: WriteDeadline::new(sink, ctx.timeouts.write),
        expiry: TokenExpiry::new(ctx.auth.clone()),
        ctx,
        subs: Vec::new(),
        control,
        client_gone,
        batch: Vec::new(),
        frames: Vec::new(),
        next_live: 0,
        keepalive,
        number: keepalive::session_number(),
    };
    let mut end = session.serve(first).await;
    if session.sink.timed_out() {
        end = session.timed_out(TimedOut::Write);
    }
    // Subscriptions (hub places, journal readers, named claims) are let go before the close
    // frame, which may wait for a client that does not read.
    for sub in session.subs.drain(..) {
        if sub.catching_up() {
            metrics.catchup_sessions.dec();
        }
    }
    reader.abort();
    if let End::Close(code, reason) = end {
        let frame = CloseFrame {
            code,
            reason: close_code::fit(&reason).into(),
        };
        let _ = tokio::time::timeout(
            CLOSE_TIMEOUT,
            session.sink.inner_mut().send(Message::Close(Some(frame))),
        )
        .await;
    }
    metrics.sessions.dec();
}

impl<S: Sink<Message> + Unpin> Session<S> {
    async fn serve(&mut self, first: Option<(Opened, Arc<SessionSignal>)>) -> End {
        if let Some((opened, signal)) = first {
            if let Err(end) = self.start(None, opened, signal).await {
                return end;
            }
        }
        let mut tick = tokio::time::interval(ACKED_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.expiry.arm();
            let progress = match self.step().await {
                Ok(progress) => progress,
                Err(end) => return end,
            };
            if self.subs.iter().any(Sub::catching_up) {
                // Catch-ups make progress batch by batch; between batches the socket's other
                // work (client messages, live subscriptions) gets its turn.
                if let Err(end) = self.poll_events_now().await {
                    return end;
                }
                if progress {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                continue;
            }
            let has_claims = self.subs.iter().any(|s| s.claim.is_some());
            let expires = self.expiry.armed();
            let event = {
                let subs = &self.subs;
                let batch = &mut self.batch;
                let next_live = &mut self.next_live;
                tokio::select! {
                    biased;
                    _ = self.client_gone.cancelled() => return End::Gone,
                    _ = self.ctx.shutdown.cancelled() => {
                        return End::Close(close_code::GOING_AWAY, close_code::reason(close_code::GOING_AWAY, None));
                    }
                    _ = self.expiry.fired(), if expires => Event::Expired,
                    Some(control) = self.control.recv() => Event::Control(control),
                    _ = tick.tick(), if has_claims => Event::AckTick,
                    beat = self.keepalive.next() => Event::Beat(beat),
                    (i, next) = next_live_batch(subs, batch, next_live) => Event::Live(i, next),
                }
            };
            let handled = match event {
                Event::Expired => self.on_expired(),
                Event::Control(control) => self.on_control(control).await,
                Event::AckTick => self.send_acked().await,
                Event::Beat(beat) => self.on_beat(beat).await,
                Event::Live(i, next) => self.on_live(i, next).await,
            };
            if let Err(end) = handled {
                return end;
            }
        }
    }

    /// While catching up: client messages, closes and live frames that are waiting, without
    /// waiting for any.
    async fn poll_events_now(&mut self) -> Result<(), End> {
        if self.client_gone.is_cancelled() {
            return Err(End::Gone);
        }
        if self.expiry.elapsed() {
            self.on_expired()?;
        }
        if self.ctx.shutdown.is_cancelled() {
            return Err(End::Close(
                close_code::GOING_AWAY,
                close_code::reason(close_code::GOING_AWAY, None),
            ));
        }
        if let Some(beat) = self.keepalive.due() {
            self.on_beat(beat).await?;
        }
        while let Ok(control) = self.control.try_recv() {
            self.on_control(control).await?;
        }
        self.send_acked().await?;
        for i in (0..self.subs.len()).rev() {
            let next = match &self.subs[i].mode {
                Mode::Live(subscription) => {
                    if self.subs[i].signal.is_closing() {
                        Some(Next::Closed)
                    } else {
                        subscription.reader().take(&mut self.batch, BATCH)
                    }
                }
                Mode::CatchUp(_) if self.subs[i].signal.is_closing() => Some(Next::Closed),
                Mode::CatchUp(_) => None,
            };
            if let Some(next) = next {
                self.on_live(i, next).await?;
            }
        }
        Ok(())
    }

    /// The token's `exp` passed: 4001, unless a fresh token moved it meanwhile.
    fn on_expired(&mut self) -> Result<(), End> {
        if !self.expiry.expired() {
            return Ok(());
        }
        Err(End::Close(
            close_code::TOKEN_EXPIRED,
            close_code::reason(close_code::TOKEN_EXPIRED, None),
        ))
    }

    /// Awaits `work` (a snapshot slot, a page) while the socket's other duties that cannot wait
    /// go on: pings go out, and a client that left, went silent, or a shutdown ends the wait.
    async fn attend<F: std::future::Future>(&mut self, work: F) -> Result<F::Output, End> {
        tokio::pin!(work);
        loop {
            let beat = tokio::select! {
                biased;
                _ = self.client_gone.cancelled() => return Err(End::Gone),
                _ = self.ctx.shutdown.cancelled() => {
                    return Err(End::Close(close_code::GOING_AWAY, close_code::reason(close_code::GOING_AWAY, None)));
                }
                beat = self.keepalive.next() => beat,
                out = &mut work => return Ok(out),
            };
            self.on_beat(beat).await?;
        }
    }

    /// A ping, or the end of a socket whose client has been silent for the idle timeout.
    async fn on_beat(&mut self, beat: Beat) -> Result<(), End> {
        match beat {
            Beat::Ping => {
                self.sink
                    .send(Message::Ping(Default::default()))
                    .await
                    .map_err(|_| End::Gone)?;
                self.keepalive.pinged();
                Ok(())
            }
            Beat::Idle => Err(self.timed_out(TimedOut::Idle)),
        }
    }

    /// The close for a timeout, counted and logged with the socket's subscriptions.
    fn timed_out(&self, why: TimedOut) -> End {
        let (code, reason) = why.close(&self.ctx.timeouts, &self.ctx.metrics);
        let subscriptions: Vec<SubscriptionId> = self.subs.iter().map(|s| s.hub_id).collect();
        tracing::info!(
            session = self.number,
            ?subscriptions,
            timeout = why.label(),
            code,
            "closing a socket: {reason}"
        );
        End::Close(code, reason)
    }

    /// A client message, as the reader task parsed it.
    async fn on_control(&mut self, control: Control) -> Result<(), End> {
        match control {
            Control::Reply(frame) => self.send(frame).await,
            Control::Ack { pos, id } => self.on_ack(pos, id).await,
            Control::Unsubscribe { id } => self.on_unsubscribe(&id).await,
            Control::Subscribe { id, params } => self.on_subscribe(id, params).await,
            Control::AccessToken { token } => {
                let frame = self.expiry.refresh(&token);
                self.send(frame).await
            }
        }
    }

    /// Writes one frame and flushes it.
    async fn send(&mut self, frame: Frame) -> Result<(), End> {
        self.sink
            .send(Message::Text(frame))
            .await
            .map_err(|_| End::Gone)
    }
}
