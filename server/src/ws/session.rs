//! One WebSocket session, from its first frame to its close, with its subscriptions: the one a
//! `/ws?query=` URL opened (frames without `id`) and any opened by `subscribe` messages (every
//! frame of those carries its `id`). Each subscription is either live (reading its cohort's
//! in-memory log) or catching up (reading the journal with its own filter, see `hub::CatchUp`):
//! one that resumes (`from=`, or `sub=` after its last ack) starts catching up, and a live one
//! that falls behind its cohort's log is moved to the journal and rejoins the live stream when it
//! has caught up. Either way it sends every matching change once, in order: each subscription
//! remembers the position of the last change it sent and skips nothing after it. A reader task
//! turns client messages into `Control`s; acks of a named subscription go to its
//! `named::Claim`, and persisted acks are confirmed with `acked`. Every write runs under the
//! write deadline, and the socket is pinged and ended when idle (`deadline`, `keepalive`); a
//! session that ends lets go of its subscriptions before its close frame. Does not validate
//! requests (an `Opener` does), filter live changes (the hub does), or own the journal or the
//! store.

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures_util::future::BoxFuture;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::decode::{Decoder, FrameEncoder, Projection};
use crate::filter::wasm::{PluginGroup, Verdict};
use crate::filter::{ColumnInfo, Filter, RawCondition, TableName};
use crate::hub::{
    Budget, CatchUp, CatchUpError, CatchUpRequest, Entry, Fill, Hub, Next, SubscribeRequest,
    Subscription, SubscriptionId, RECORDS_PER_STEP,
};
use crate::journal::{JournalError, JournalHandle, JournalReader};
use crate::metrics::Metrics;
use crate::named::Claim;
use crate::source::SourceStatus;
use crate::vocab::{close_code, Frame, Lsn, Pos, SessionSignal};

use super::client::{self, Control};
use super::deadline::WriteDeadline;
use super::keepalive::{self, Beat, Heard, Keepalive, SocketTimeouts, TimedOut};

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
/// Client messages waiting for the writer; a client that sends faster is read more slowly.
const CONTROL_QUEUE: usize = 64;
/// How often a socket with named subscriptions looks for newly persisted acks.
const ACKED_EVERY: Duration = Duration::from_millis(20);

/// What a subscription receives, as validated.
pub(crate) struct Plan {
    pub table: TableName,
    /// The cohort key (see `router::cohort_key`).
    pub key: String,
    pub ops: u8,
    pub filter: Filter,
    pub plugin: Option<Arc<PluginGroup>>,
    /// The table's columns and the request's conditions, for a snapshot's query.
    pub columns: Arc<[ColumnInfo]>,
    pub conditions: Vec<RawCondition>,
}

/// Where a subscription starts.
pub(crate) enum Start {
    /// With the live stream, after the last change dispatched.
    Live,
    /// After this position, read from the journal first.
    After(Pos, JournalReader),
    /// With the table's current rows, then every change the snapshot does not show.
    Snapshot,
}

/// A validated subscription, ready to start.
pub(crate) struct Opened {
    pub plan: Plan,
    pub start: Start,
    pub claim: Option<Claim>,
}

/// Why a `subscribe` message was refused: the code and message of the HTTP error table.
pub(crate) struct Refusal {
    pub code: &'static str,
    pub message: String,
}

/// Validates a subscription request given as `/ws` query parameters (the router's checks).
pub(crate) trait Opener: Send + Sync + 'static {
    fn open(
        &self,
        params: Vec<(String, String)>,
        signal: Arc<SessionSignal>,
    ) -> BoxFuture<'_, Result<Opened, Refusal>>;
}

/// What a session needs from the server.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub hub: Arc<Hub>,
    pub journal: JournalHandle,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    /// Where the stream stands, for `subscribed` (see `router::stream_position`).
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

enum Mode {
    Live(Subscription),
    CatchUp(Box<CatchUp>),
}

/// One subscription of the socket.
struct Sub {
    /// The client's id; `None` for the subscription the `/ws` URL opened.
    id: Option<Box<str>>,
    hub_id: SubscriptionId,
    plan: Plan,
    /// Closed by the hub (failing plugin), an operator (deleted) or the server's shutdown.
    signal: Arc<SessionSignal>,
    claim: Option<Claim>,
    /// Position of the last change sent (or, before the first, the one the subscription starts
    /// after): every matching change after it is still to be sent, none before it.
    sent: Pos,
    mode: Mode,
    /// After a snapshot taken at this WAL position: the subscription stays on the journal (which
    /// skips what the snapshot showed) until the stream is past it.
    shown_until: Option<crate::vocab::Lsn>,
}

impl Sub {
    fn catching_up(&self) -> bool {
        matches!(self.mode, Mode::CatchUp(_))
    }

    /// The frame as this subscription's client reads it: with its `id` when it has one.
    fn frame(&self, frame: Frame) -> Frame {
        match &self.id {
            None => frame,
            Some(id) => client::tagged(&frame, id),
        }
    }
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
    /// Fires at the token's `exp` (reset when a fresh token moves it).
    expiry: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// The `exp` `expiry` is set for.
    expiry_at: Option<u64>,
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
        ctx,
        subs: Vec::new(),
        control,
        client_gone,
        batch: Vec::new(),
        frames: Vec::new(),
        next_live: 0,
        expiry: Box::pin(tokio::time::sleep(Duration::ZERO)),
        expiry_at: None,
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
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(
            CLOSE_TIMEOUT,
            session.sink.inner_mut().send(Message::Close(Some(frame))),
        )
        .await;
    }
    metrics.sessions.dec();
}

/// The client's message budget: `max` per second, bursts of `2 * max`. Messages beyond it are
/// dropped; the client learns so from one `rate_limited` error frame per second at most.
struct MessageRate {
    limiter: governor::DefaultDirectRateLimiter,
    max: u32,
    told: Option<std::time::Instant>,
    metrics: Arc<Metrics>,
}

impl MessageRate {
    fn new(max: u32, metrics: Arc<Metrics>) -> MessageRate {
        let per_second = std::num::NonZeroU32::new(max.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        let burst = per_second.saturating_mul(std::num::NonZeroU32::new(2).unwrap_or(per_second));
        MessageRate {
            limiter: governor::RateLimiter::direct(
                governor::Quota::per_second(per_second).allow_burst(burst),
            ),
            max,
            told: None,
            metrics,
        }
    }

    /// `Ok` when the message may be handled; otherwise the error frame to send, if one is due.
    fn admit(&mut self) -> Result<(), Option<Control>> {
        if self.limiter.check().is_ok() {
            return Ok(());
        }
        self.metrics.limit_refused("rate_limited");
        if self
            .told
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
        {
            return Err(None);
        }
        self.told = Some(std::time::Instant::now());
        Err(Some(client::error(
            None,
            "rate_limited",
            &format!(
                "more than {} messages per second (sessions.max_messages_per_second): messages \
                 are dropped until the rate falls",
                self.max
            ),
        )))
    }
}

async fn read_client<R, E>(
    mut stream: R,
    control: mpsc::Sender<Control>,
    gone: CancellationToken,
    mut rate: MessageRate,
    heard: Heard,
) where
    R: Stream<Item = Result<Message, E>> + Unpin,
{
    while let Some(msg) = stream.next().await {
        let msg = match msg {
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(msg) => msg,
        };
        // Any message, a pong included, shows the client is there.
        heard.now();
        if matches!(msg, Message::Text(_) | Message::Binary(_)) {
            if let Err(told) = rate.admit() {
                if let Some(c) = told {
                    if control.send(c).await.is_err() {
                        break;
                    }
                }
                continue;
            }
        }
        if let Some(c) = client::parse(&msg) {
            if control.send(c).await.is_err() {
                break;
            }
        }
    }
    gone.cancel();
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
            self.arm_expiry();
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
            let expires = self.expiry_at.is_some();
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
                    _ = &mut self.expiry, if expires => Event::Expired,
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

    /// One batch of journal frames for every subscription catching up; whether any did
    /// something. Backwards, as a subscription may end (and leave the list) on the way.
    async fn step(&mut self) -> Result<bool, End> {
        let mut progress = false;
        for i in (0..self.subs.len()).rev() {
            if self.subs[i].catching_up() {
                progress |= self.catch_up_step(i).await?;
            }
        }
        Ok(progress)
    }

    /// While catching up: client messages, closes and live frames that are waiting, without
    /// waiting for any.
    async fn poll_events_now(&mut self) -> Result<(), End> {
        if self.client_gone.is_cancelled() {
            return Err(End::Gone);
        }
        if self.expiry_at.is_some() && self.expiry.is_elapsed() {
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

    /// Starts a validated subscription: registers it (or opens its catch-up) and sends
    /// `subscribed`.
    async fn start(
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
        };
        let hello = subscribed_frame(
            sub.hub_id,
            &sub.plan.table,
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

    /// Sends subscription `i`'s current rows (`row` frames, then `snapshot_end`) and sets its
    /// journal catch-up to skip what the snapshot shows. A snapshot that fails ends the
    /// subscription with an `error` frame; the socket stays open.
    async fn snapshot(&mut self, i: usize) -> Result<(), End> {
        let Some(snapshots) = self.ctx.snapshots.clone() else {
            return self
                .snapshot_failed(i, "snapshots are not available on this server")
                .await;
        };
        let permit = match snapshots.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let queued =
                    self.subs[i].frame(Frame::from_static(r#"{"type":"snapshot_queued"}"#));
                self.send(queued).await?;
                // The wait lasts as long as the snapshots ahead: the socket is kept alive
                // meanwhile, and a client that leaves or goes silent stops waiting.
                match self
                    .attend(snapshots.permits.clone().acquire_owned())
                    .await?
                {
                    Ok(permit) => permit,
                    Err(_) => return self.snapshot_failed(i, "snapshots are shutting down").await,
                }
            }
        };
        let started = std::time::Instant::now();
        let plan = &self.subs[i].plan;
        let (table, columns, conditions) = (
            plan.table.clone(),
            plan.columns.clone(),
            plan.conditions.clone(),
        );
        let pg = &snapshots.pg;
        // Boxed: the connection's future is large, and every idle session would carry its room.
        let opened = self
            .attend(Box::pin(crate::snapshot::Reader::open(
                pg,
                &table,
                columns,
                &conditions,
            )))
            .await?;
        let mut reader = match opened {
            Ok(reader) => reader,
            Err(error) => return self.snapshot_failed(i, &error.message()).await,
        };
        let (visibility, wal_lsn) = (reader.visibility.clone(), reader.wal_lsn);
        // The next page is fetched while this one is framed and written: at most two pages are
        // held, whatever the table size. The fetch task owns the transaction and the slot: the
        // slot is free only once the transaction ended, whichever way the session ends (when
        // it drops `pages`, the task's next send fails and it commits).
        let (pages_tx, mut pages) = mpsc::channel(1);
        let fetch = tokio::spawn(async move {
            let _permit = permit;
            loop {
                let mut page = Vec::new();
                match reader.page(&mut page).await {
                    Ok(()) if page.is_empty() => break,
                    Ok(()) => {
                        if pages_tx.send(Ok(page)).await.is_err() {
                            break;
                        }
                    }
                    Err(error) => {
                        let _ = pages_tx.send(Err(error)).await;
                        break;
                    }
                }
            }
            reader.close().await;
        });
        let mut decoder = Decoder::new();
        let mut encoder = FrameEncoder::new();
        let mut rows: u64 = 0;
        while let Some(page) = self.attend(pages.recv()).await? {
            let mut page = match page {
                Ok(page) => page,
                Err(error) => return self.snapshot_failed(i, &error.message()).await,
            };
            for message in page.iter_mut() {
                let sub = &self.subs[i];
                let frame = match decoder.decode(message) {
                    Err(error) => {
                        self.ctx.metrics.decode_errors.inc();
                        tracing::error!(subscription = sub.hub_id, table = %sub.plan.table, %error, "a snapshot row could not be decoded; its subscriber gets a decode_failed frame");
                        client::error_frame(
                            sub.id.as_deref(),
                            "decode_failed",
                            &format!(
                                "a snapshot row could not be decoded ({error}); re-read the table"
                            ),
                        )
                    }
                    Ok(change) => {
                        if !sub.plan.filter.matches_row(&change) {
                            continue;
                        }
                        let verdict = sub.plan.plugin.as_ref().map(|g| (g.evaluate(&change), g));
                        match verdict {
                            Some((Verdict::Drop, _)) => continue,
                            Some((Verdict::Error(message), group)) => {
                                crate::hub::plugin_error_frame(group.plugin_name(), &message)
                            }
                            // A rewrite applies to change frames; a row passes as it is.
                            _ => {
                                rows += 1;
                                let projection = match sub.plan.filter.select() {
                                    Some(cols) => Projection::Only(cols),
                                    None => Projection::All,
                                };
                                Frame::from(encoder.row(&change, projection))
                            }
                        }
                    }
                };
                let frame = sub.frame(frame);
                if self.sink.feed(Message::Text(frame)).await.is_err() {
                    // Dropping `pages` ends the fetch task, which closes the transaction.
                    return Err(End::Gone);
                }
            }
            self.sink.flush().await.map_err(|_| End::Gone)?;
        }
        let _ = fetch.await;
        let sub = &mut self.subs[i];
        tracing::debug!(subscription = sub.hub_id, rows, seconds = started.elapsed().as_secs_f64(), %wal_lsn, "snapshot sent");
        if let Mode::CatchUp(catch_up) = &mut sub.mode {
            catch_up.skip_shown(visibility, wal_lsn);
        }
        sub.shown_until = Some(wal_lsn);
        let mut text = String::from(r#"{"type":"snapshot_end","pos":""#);
        sub.sent.push_text(&mut text);
        text.push_str(r#"","rows":"#);
        text.push_str(itoa::Buffer::new().format(rows));
        text.push('}');
        let frame = sub.frame(Frame::from(text));
        self.send(frame).await
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

    async fn snapshot_failed(&mut self, i: usize, message: &str) -> Result<(), End> {
        tracing::warn!(
            subscription = self.subs[i].hub_id,
            message,
            "snapshot failed"
        );
        let sub = self.remove(i);
        let frame = client::error_frame(sub.id.as_deref(), "snapshot_failed", message);
        self.send(frame).await
    }

    async fn on_live(&mut self, i: usize, next: Next) -> Result<(), End> {
        match next {
            Next::Frames => self.send_batch(i).await,
            Next::Closed => self.closing(i).await,
            Next::Behind => self.fall_behind(i),
        }
    }

    /// Sends the cohort frames in `batch` for subscription `i`, skipping changes at or before
    /// what it sent (the journal sent those at the seam).
    async fn send_batch(&mut self, i: usize) -> Result<(), End> {
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
    async fn closing(&mut self, i: usize) -> Result<(), End> {
        let code = self.subs[i].signal.code();
        if code == close_code::PLUGIN_FAILING {
            if let Mode::Live(subscription) = &self.subs[i].mode {
                while let Some(Next::Frames) = subscription.reader().take(&mut self.batch, BATCH) {}
            }
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.send_batch(i)).await;
        }
        let sub = self.remove(i);
        let reason = close_code::reason(code, sub.signal.reason());
        match sub.id {
            None => Err(End::Close(code, reason)),
            Some(id) => {
                let error = match code {
                    close_code::PLUGIN_FAILING => "plugin_failing",
                    close_code::SUBSCRIPTION_DELETED => "subscription_deleted",
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

    /// The cohort's log went on without subscription `i`: the rest comes from the journal.
    fn fall_behind(&mut self, i: usize) -> Result<(), End> {
        let sub = &mut self.subs[i];
        match self.ctx.journal.reader(sub.sent) {
            Ok(reader) => {
                tracing::debug!(subscription = sub.hub_id, after = %sub.sent, "subscription fell behind its cohort's log: reading the journal");
                self.ctx.metrics.catchup_sessions.inc();
                // Dropping the live subscription leaves the cohort.
                sub.mode = Mode::CatchUp(Box::new(catch_up_from(&sub.plan, reader)));
                Ok(())
            }
            Err(error) => self.journal_failed(i, error),
        }
    }

    /// One batch of journal frames for subscription `i`; at the journal's end, the seam back to
    /// the live stream.
    /// Returns whether it did anything (false: at the journal's end, waiting for the stream to
    /// pass its snapshot).
    async fn catch_up_step(&mut self, i: usize) -> Result<bool, End> {
        if self.subs[i].signal.is_closing() {
            return self.closing(i).await.map(|()| true);
        }
        let fill = match self.replay(i, None).await {
            Ok(fill) => fill,
            Err(Failed::Socket) => return Err(End::Gone),
            Err(Failed::Journal(error)) => return self.journal_failed(i, error).map(|()| true),
        };
        if fill == Fill::More {
            return Ok(true);
        }
        // After a snapshot, the live stream may only be joined once every transaction that
        // committed before the snapshot was taken has been read (and skipped when shown): the
        // cohort's frames do not say which transaction they belong to. The hub's position is
        // that of the last message it took in, and Postgres sends transactions in commit order:
        // once it is at `wal_lsn` every transaction that committed before was dispatched, so the
        // seam below reads it from the journal. (The server's WAL end is no such proof: a
        // reconnect's IDENTIFY_SYSTEM moves it past transactions not resent yet.)
        if let Some(wal_lsn) = self.subs[i].shown_until {
            if self.ctx.hub.position() < wal_lsn {
                return Ok(false);
            }
        }
        // Caught up: register, then the seam. Everything up to the subscription's start comes
        // from the journal (waiting for the burst that holds it to be published), everything
        // after it from the cohort.
        let sub = &self.subs[i];
        let subscription = subscribe(&self.ctx.hub, &sub.plan, &sub.signal, sub.hub_id);
        let start = subscription.start();
        let deadline = tokio::time::Instant::now() + SEAM_TIMEOUT;
        // `replay` moves `sent` to the position read (a catch-up starts at `sent`).
        while self.subs[i].sent < start {
            match self.replay(i, Some(start)).await {
                Ok(Fill::Until) => break,
                Ok(_) => {}
                Err(Failed::Socket) => return Err(End::Gone),
                Err(Failed::Journal(error)) => return self.journal_failed(i, error).map(|()| true),
            }
            if self.subs[i].sent >= start {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                let at = self.subs[i].sent;
                tracing::error!(subscription = self.subs[i].hub_id, %at, %start, "journal does not show what the live stream dispatched; closing the session");
                return Err(End::Close(
                    close_code::INTERNAL_ERROR,
                    "journal behind the live stream".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let sub = &mut self.subs[i];
        sub.sent = sub.sent.max(start);
        sub.mode = Mode::Live(subscription);
        sub.shown_until = None;
        self.ctx.metrics.catchup_sessions.dec();
        Ok(true)
    }

    /// Writes the journal frames of subscription `i` up to `until` or one step's budget,
    /// whichever comes first. The step runs on the blocking pool (see `hub::CatchUp::step`).
    async fn replay(&mut self, i: usize, until: Option<Pos>) -> Result<Fill, Failed> {
        let sub = &mut self.subs[i];
        let Mode::CatchUp(catch_up) = &mut sub.mode else {
            return Ok(Fill::End);
        };
        let budget = Budget {
            records: RECORDS_PER_STEP,
            frames: CATCH_UP_BATCH,
        };
        let fill = catch_up
            .step(
                self.ctx.hub.catch_up_slots(),
                &mut self.frames,
                budget,
                until,
            )
            .await
            .map_err(Failed::Journal)?;
        // Everything up to the position read was sent below or did not match.
        let read = catch_up.position();
        for frame in self.frames.drain(..) {
            let frame = sub.frame(frame);
            if self.sink.feed(Message::Text(frame)).await.is_err() {
                return Err(Failed::Socket);
            }
        }
        self.sink.flush().await.map_err(|_| Failed::Socket)?;
        sub.sent = sub.sent.max(read);
        Ok(fill)
    }

    fn journal_failed(&mut self, i: usize, error: impl Into<CatchUpError>) -> Result<(), End> {
        let sub = &self.subs[i];
        let (code, reason) = match error.into() {
            // Retention removed what this subscription still had to read: it fell too far behind.
            CatchUpError::Journal(JournalError::Expired { .. }) => {
                tracing::info!(subscription = sub.hub_id, at = %sub.sent, "a subscription fell behind the journal's retention (4008)");
                self.ctx.metrics.sessions_dropped.inc();
                (
                    close_code::SLOW_CONSUMER,
                    "fell behind the journal's retention",
                )
            }
            error => {
                tracing::error!(%error, subscription = sub.hub_id, at = %sub.sent, "journal read failed under a session");
                (close_code::INTERNAL_ERROR, "journal read failed")
            }
        };
        // A subscription with an id ends alone; the URL's ends the socket.
        sub.signal.close_with(code, Some(reason));
        if sub.id.is_none() {
            self.remove(i);
            return Err(End::Close(code, reason.into()));
        }
        Ok(())
    }

    fn remove(&mut self, i: usize) -> Sub {
        let sub = self.subs.remove(i);
        if sub.catching_up() {
            self.ctx.metrics.catchup_sessions.dec();
        }
        sub
    }

    async fn on_control(&mut self, control: Control) -> Result<(), End> {
        match control {
            Control::Reply(frame) => self.send(frame).await,
            Control::Ack { pos, id } => self.on_ack(pos, id).await,
            Control::Unsubscribe { id } => {
                let Some(i) = self.find(&id) else {
                    let frame = client::error_frame(
                        Some(&id),
                        "unknown_subscription",
                        "no subscription with this id on this socket",
                    );
                    return self.send(frame).await;
                };
                drop(self.remove(i));
                let mut text = String::from(r#"{"type":"unsubscribed","id":"#);
                crate::decode::put_str(&mut text, &id);
                text.push('}');
                self.send(Frame::from(text)).await
            }
            Control::Subscribe { id, params } => self.on_subscribe(id, params).await,
            Control::AccessToken { token } => self.on_access_token(&token).await,
        }
    }

    /// Points `expiry` at the token's `exp` when that changed (a fresh token moved it).
    fn arm_expiry(&mut self) {
        let exp = self.ctx.auth.as_ref().and_then(|a| a.expires());
        if exp == self.expiry_at {
            return;
        }
        self.expiry_at = exp;
        if let Some(exp) = exp {
            let wait = Duration::from_secs(exp.saturating_sub(crate::auth::unix_now()));
            self.expiry
                .as_mut()
                .reset(tokio::time::Instant::now() + wait);
        }
    }

    /// The token's `exp` passed: 4001, unless a fresh token moved it meanwhile.
    fn on_expired(&mut self) -> Result<(), End> {
        let exp = self.ctx.auth.as_ref().and_then(|a| a.expires());
        if exp != self.expiry_at || exp.is_some_and(|e| e > crate::auth::unix_now()) {
            self.arm_expiry();
            return Ok(());
        }
        Err(End::Close(
            close_code::TOKEN_EXPIRED,
            close_code::reason(close_code::TOKEN_EXPIRED, None),
        ))
    }

    /// `{"type":"access_token","token":..}`: `token_refreshed` with the new `exp`, or an
    /// `unauthorized` error frame (the socket keeps its current token until it expires).
    async fn on_access_token(&mut self, token: &str) -> Result<(), End> {
        let Some(auth) = self.ctx.auth.clone() else {
            let frame = client::error_frame(
                None,
                "bad_message",
                "this server does not use tokens (auth.mode = none)",
            );
            return self.send(frame).await;
        };
        match auth.refresh(token) {
            Ok(exp) => {
                self.arm_expiry();
                let exp = exp.map_or("null".to_owned(), |e| e.to_string());
                let frame = Frame::from(format!(r#"{{"type":"token_refreshed","exp":{exp}}}"#));
                self.send(frame).await
            }
            Err(crate::auth::Unauthorized(message)) => {
                let frame = client::error_frame(None, "unauthorized", &message);
                self.send(frame).await
            }
        }
    }

    fn find(&self, id: &str) -> Option<usize> {
        self.subs.iter().position(|s| s.id.as_deref() == Some(id))
    }

    async fn on_subscribe(&mut self, id: String, params: Vec<(String, String)>) -> Result<(), End> {
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

    async fn on_ack(&mut self, pos: Pos, id: Option<String>) -> Result<(), End> {
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
    async fn send_acked(&mut self) -> Result<(), End> {
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

    async fn send(&mut self, frame: Frame) -> Result<(), End> {
        self.sink
            .send(Message::Text(frame))
            .await
            .map_err(|_| End::Gone)
    }
}

/// Why writing journal frames stopped.
enum Failed {
    Socket,
    Journal(CatchUpError),
}

/// Waits until a live subscription has frames (moved into `batch`), fell behind or was closed.
async fn next_live_batch(subs: &[Sub], batch: &mut Vec<Entry>, next: &mut usize) -> (usize, Next) {
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

fn subscribe(
    hub: &Arc<Hub>,
    plan: &Plan,
    signal: &Arc<SessionSignal>,
    hub_id: SubscriptionId,
) -> Subscription {
    hub.subscribe_with_id(
        SubscribeRequest {
            schema: &plan.table.schema,
            table: &plan.table.name,
            key: &plan.key,
            ops: plan.ops,
            filter: plan.filter.clone(),
            plugin: plan.plugin.clone(),
        },
        signal.clone(),
        hub_id,
    )
}

fn catch_up_from(plan: &Plan, reader: JournalReader) -> CatchUp {
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

/// A named subscription seen for the first time starts where its live subscription does; the
/// client hears `subscribed` only once that is persisted.
async fn create_named(claim: Option<&mut Claim>, start: Pos) -> Result<(), End> {
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

/// `lsn` is the position the stream had reached when the subscription was registered, left out
/// while none is known yet; `pos` the stream position it receives every change after.
/// `sub` names a named subscription.
fn subscribed_frame(
    id: u64,
    table: &TableName,
    lsn: Lsn,
    pos: Pos,
    sub: Option<&str>,
) -> Frame {
    // Built by hand so `type` comes first, as in every other frame.
    let table = serde_json::Value::from(table.to_string());
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

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
