//! LISTEN/NOTIFY relay: one dedicated Postgres connection LISTENs to every channel some socket
//! follows (LISTEN when the first socket of a channel arrives, UNLISTEN after the last leaves),
//! and each notification is handed to the sockets of its channel through bounded queues: a socket
//! whose queue is full is closed with 4008, and no socket ever delays another. A LISTEN Postgres
//! refuses (a name it cannot take) fails the sockets of that channel only. After a lost
//! connection it reconnects with backoff (every attempt waits, so a connection that dies at once
//! is not retried in a tight loop) and LISTENs again to every active channel; the notifications
//! sent meanwhile are lost, which is said to `format=json` sockets with a `notify_gap` frame,
//! logged and counted. Owns the LISTEN connection and the channel registry; does not touch the
//! replication stream or write to sockets (`ws::listen` does).

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use postgres_protocol::escape::escape_identifier;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Notification;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::source::{Backoff, PgEndpoint};
use crate::vocab::{close_code, Frame, SessionSignal};

/// Notifications one socket may have unread before it is closed with 4008.
pub const SOCKET_QUEUE: usize = 1024;
/// Notifications waiting between the LISTEN connection and the relay.
const INBOX: usize = 4096;
/// The longest channel name: Postgres truncates identifiers to 63 bytes.
pub const MAX_CHANNEL: usize = 63;

/// Why Postgres cannot take `channel` as a channel name, checked before any socket is opened:
/// empty, longer than 63 bytes (it would be truncated, and another name's notifications
/// delivered), or holding a NUL byte (no SQL text can carry one).
pub fn channel_problem(channel: &str) -> Option<String> {
    if channel.is_empty() || channel.len() > MAX_CHANNEL {
        return Some(format!(
            "a channel name is 1 to {MAX_CHANNEL} bytes (Postgres truncates longer ones); this \
             one has {}",
            channel.len()
        ));
    }
    if channel.contains('\0') {
        return Some("a channel name cannot contain a NUL byte".into());
    }
    None
}

/// Postgres refused a LISTEN on a channel (the statement failed, the connection is fine).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// SQLSTATE; empty when the statement could not even be sent.
    pub sqlstate: String,
    pub message: String,
}

impl Refused {
    /// Whether the channel name is at fault (a data exception such as a character the
    /// database's encoding lacks, or a name error), rather than the server's state.
    pub fn names_the_channel(&self) -> bool {
        self.sqlstate.starts_with("22")
            || self.sqlstate.starts_with("42")
            || self.sqlstate.is_empty()
    }
}

/// Why `subscribe` gave no subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubscribeError {
    /// The LISTEN connection is down (and was not back within the wait).
    Unavailable,
    /// Postgres refused the LISTEN.
    Refused(Refused),
}

/// What a socket receives: each notification framed once, for every socket of its channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    Notify {
        /// The payload as it is.
        plain: Frame,
        /// `{"type":"notify","channel":..,"payload":..,"pid":..}`, when a socket of the channel
        /// asked for it (`format=json`).
        json: Option<Frame>,
    },
    /// The LISTEN connection was lost: notifications may be missing.
    Gap,
    /// Postgres refused LISTEN on the channel when the relay listened again after a reconnect:
    /// the socket ends (`format=json` sockets get an error frame first).
    Refused(Refused),
}

struct Listener {
    id: u64,
    queue: mpsc::Sender<Notice>,
    signal: Arc<SessionSignal>,
    /// `format=json`: notifications wrapped, and told about gaps.
    wants_gaps: bool,
}

enum Command {
    /// LISTEN if the channel still has sockets; answer once it is in effect (or refused).
    Listen(String, oneshot::Sender<Result<(), Refused>>),
    /// UNLISTEN if the channel has no socket any more.
    Unlisten(String),
}

pub struct Relay {
    channels: Mutex<HashMap<String, Vec<Listener>>>,
    commands: mpsc::UnboundedSender<Command>,
    next_id: Mutex<u64>,
    metrics: Arc<Metrics>,
}

/// A socket's place on one channel; dropping it leaves the channel.
pub struct Subscription {
    relay: Arc<Relay>,
    channel: String,
    id: u64,
    pub notices: mpsc::Receiver<Notice>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut channels = self.relay.channels.lock();
        let Some(listeners) = channels.get_mut(&self.channel) else {
            return;
        };
        listeners.retain(|l| l.id != self.id);
        if listeners.is_empty() {
            channels.remove(&self.channel);
            let _ = self
                .relay
                .commands
                .send(Command::Unlisten(self.channel.clone()));
        }
    }
}

/// The channels sockets may follow (`notify.channels` globs).
pub struct Channels {
    set: globset::GlobSet,
}

impl Channels {
    pub fn new(patterns: &[String]) -> Result<Channels, globset::Error> {
        let mut builder = globset::GlobSetBuilder::new();
        for p in patterns {
            builder.add(globset::Glob::new(p)?);
        }
        Ok(Channels {
            set: builder.build()?,
        })
    }

    pub fn allows_name(&self, channel: &str) -> bool {
        self.set.is_match(channel)
    }
}

impl Relay {
    /// The relay and its connection task (runs until `stop`).
    pub fn start(
        pg: PgEndpoint,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> (Arc<Relay>, tokio::task::JoinHandle<()>) {
        let (commands, rx) = mpsc::unbounded_channel();
        let relay = Arc::new(Relay {
            channels: Mutex::new(HashMap::new()),
            commands,
            next_id: Mutex::new(1),
            metrics,
        });
        let task = tokio::spawn(relay.clone().run(pg, rx, stop));
        (relay, task)
    }

    /// Follow `channel`; resolves once the LISTEN is in effect, with `Unavailable` when it could
    /// not be within `wait` (the connection is down) or `Refused` when Postgres refused it.
    pub async fn subscribe(
        self: &Arc<Self>,
        channel: &str,
        signal: Arc<SessionSignal>,
        wants_gaps: bool,
        wait: Duration,
    ) -> Result<Subscription, SubscribeError> {
        let (queue, notices) = mpsc::channel(SOCKET_QUEUE);
        let id = {
            let mut next = self.next_id.lock();
            *next += 1;
            *next
        };
        self.channels
            .lock()
            .entry(channel.to_owned())
            .or_default()
            .push(Listener {
                id,
                queue,
                signal,
                wants_gaps,
            });
        let subscription = Subscription {
            relay: self.clone(),
            channel: channel.to_owned(),
            id,
            notices,
        };
        let (done, listening) = oneshot::channel();
        let _ = self
            .commands
            .send(Command::Listen(channel.to_owned(), done));
        match tokio::time::timeout(wait, listening).await {
            Ok(Ok(Ok(()))) => Ok(subscription),
            Ok(Ok(Err(refused))) => Err(SubscribeError::Refused(refused)),
            _ => Err(SubscribeError::Unavailable),
        }
    }

    /// Channels with at least one socket.
    pub fn channels(&self) -> Vec<String> {
        self.channels.lock().keys().cloned().collect()
    }

    fn deliver(&self, n: &Notification) {
        self.metrics.notify_received.inc();
        let mut channels = self.channels.lock();
        let Some(listeners) = channels.get_mut(n.channel()) else {
            return;
        };
        // Framed once for every socket of the channel; the json form only when one asked.
        let plain = Frame::from(n.payload().to_owned());
        let json = listeners.iter().any(|l| l.wants_gaps).then(|| {
            Frame::from(
                serde_json::json!({
                    "type": "notify",
                    "channel": n.channel(),
                    "payload": n.payload(),
                    "pid": n.process_id(),
                })
                .to_string(),
            )
        });
        let notice = Notice::Notify { plain, json };
        listeners.retain(|l| match l.queue.try_send(notice.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics.sessions_dropped.inc();
                l.signal.close_with(
                    close_code::SLOW_CONSUMER,
                    Some("slow consumer: too many unread notifications"),
                );
                false
            }
        });
    }

    fn gap(&self) {
        self.metrics.notify_gaps.inc();
        for listeners in self.channels.lock().values() {
            for l in listeners.iter().filter(|l| l.wants_gaps) {
                // A socket too full for the gap frame is about to be closed anyway.
                let _ = l.queue.try_send(Notice::Gap);
            }
        }
    }

    /// Postgres refused LISTEN on `channel`: its sockets leave it and are told (the socket of a
    /// refused `subscribe` gets the refusal as its answer instead).
    fn refuse(&self, channel: &str, refused: &Refused) {
        tracing::warn!(channel, sqlstate = %refused.sqlstate, error = %refused.message, "NOTIFY relay: Postgres refused LISTEN; the channel's sockets are closed");
        let listeners = self.channels.lock().remove(channel).unwrap_or_default();
        for l in listeners {
            if l.queue.try_send(Notice::Refused(refused.clone())).is_err() {
                l.signal
                    .close_with(close_code::LISTEN_REFUSED, Some("Postgres refused LISTEN"));
            }
        }
    }

    fn active(&self, channel: &str) -> bool {
        self.channels.lock().contains_key(channel)
    }

    async fn run(
        self: Arc<Self>,
        pg: PgEndpoint,
        mut commands: mpsc::UnboundedReceiver<Command>,
        stop: CancellationToken,
    ) {
        let target = crate::source::describe_target(&pg.config);
        let mut backoff = Reconnects::new();
        // The wait before the next attempt; none before the first.
        let mut delay: Option<Duration> = None;
        // A connection was lost before this one (every one ends that way but at shutdown).
        let mut lost = false;
        // Listen requests that were in flight when the connection failed: answered once the
        // next connection has listened again.
        let mut waiting: Vec<(String, oneshot::Sender<Result<(), Refused>>)> = Vec::new();
        loop {
            if let Some(delay) = delay.take() {
                // Listen requests meanwhile wait; their sockets give up on their own.
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            let (inbox_tx, mut inbox) = mpsc::channel(INBOX);
            let connected = tokio::select! {
                _ = stop.cancelled() => return,
                c = crate::source::connect_listening(&pg, inbox_tx) => c,
            };
            let (client, connection) = match connected {
                Ok(c) => c,
                Err(error) => {
                    let wait = backoff.delay();
                    tracing::warn!(%target, %error, retry_in_ms = wait.as_millis() as u64, "NOTIFY relay: cannot connect to Postgres");
                    delay = Some(wait);
                    continue;
                }
            };
            let up = tokio::time::Instant::now();
            // Every active channel again, one statement each: a channel Postgres refuses now
            // fails its own sockets only.
            let mut failure = None;
            let channels = self.channels();
            for c in &channels {
                match listen(&client, "LISTEN", c).await {
                    Ok(()) => {}
                    Err(Failure::Refused(refused)) => {
                        self.refuse(c, &refused);
                        for (_, done) in waiting.extract_if(.., |(w, _)| w == c) {
                            let _ = done.send(Err(refused.clone()));
                        }
                    }
                    Err(Failure::Lost(error)) => {
                        failure = Some(error);
                        break;
                    }
                }
            }
            if failure.is_none() {
                if lost {
                    tracing::info!(
                        channels = channels.len(),
                        "NOTIFY relay reconnected and listens again"
                    );
                }
                for (_, done) in waiting.drain(..) {
                    let _ = done.send(Ok(()));
                }
                self.count_channels();
                // Serve until the connection fails.
                failure = loop {
                    tokio::select! {
                        _ = stop.cancelled() => {
                            connection.abort();
                            return;
                        }
                        command = commands.recv() => {
                            let Some(command) = command else { return };
                            match command {
                                Command::Listen(c, done) => {
                                    if !self.active(&c) {
                                        // Its socket left already.
                                        let _ = done.send(Ok(()));
                                        continue;
                                    }
                                    match listen(&client, "LISTEN", &c).await {
                                        Ok(()) => {
                                            let _ = done.send(Ok(()));
                                        }
                                        Err(Failure::Refused(refused)) => {
                                            self.refuse(&c, &refused);
                                            let _ = done.send(Err(refused));
                                        }
                                        Err(Failure::Lost(error)) => {
                                            waiting.push((c, done));
                                            break Some(error);
                                        }
                                    }
                                }
                                Command::Unlisten(c) if !self.active(&c) => {
                                    match listen(&client, "UNLISTEN", &c).await {
                                        Ok(()) => {}
                                        // Nobody follows the channel any more: nothing to tell.
                                        Err(Failure::Refused(refused)) => tracing::warn!(channel = %c, error = %refused.message, "NOTIFY relay: UNLISTEN failed"),
                                        Err(Failure::Lost(error)) => break Some(error),
                                    }
                                }
                                Command::Unlisten(_) => {}
                            }
                            self.count_channels();
                        }
                        notice = inbox.recv() => match notice {
                            Some(n) => self.deliver(&n),
                            None => break Some("the connection ended".to_owned()),
                        },
                    }
                };
            }
            connection.abort();
            lost = true;
            backoff.connected_for(up.elapsed());
            let wait = backoff.delay();
            let error = failure.unwrap_or_default();
            tracing::warn!(%target, %error, retry_in_ms = wait.as_millis() as u64, "NOTIFY relay: connection lost; notifications sent until it is back are not relayed (json sockets get notify_gap)");
            self.gap();
            delay = Some(wait);
        }
    }

    fn count_channels(&self) {
        self.metrics
            .notify_channels
            .set(i64::try_from(self.channels.lock().len()).unwrap_or(i64::MAX));
    }
}

/// How a LISTEN/UNLISTEN statement failed.
enum Failure {
    /// The statement was refused; the connection is fine.
    Refused(Refused),
    /// The connection is gone (its error, for the log).
    Lost(String),
}

/// `LISTEN "channel"` or `UNLISTEN "channel"`: quoted whole (`"` doubled), any channel name is
/// safe in them.
async fn listen(client: &tokio_postgres::Client, verb: &str, channel: &str) -> Result<(), Failure> {
    let Err(error) = client
        .batch_execute(&format!("{verb} {}", escape_identifier(channel)))
        .await
    else {
        return Ok(());
    };
    if let Some(db) = error.as_db_error() {
        return Err(Failure::Refused(Refused {
            sqlstate: db.code().code().to_owned(),
            message: db.message().to_owned(),
        }));
    }
    if client.is_closed() || error.is_closed() {
        return Err(Failure::Lost(crate::source::error_chain(&error)));
    }
    // Not sent at all (a name no statement can carry): the connection is untouched.
    Err(Failure::Refused(Refused {
        sqlstate: String::new(),
        message: crate::source::error_chain(&error),
    }))
}

/// The waits between connection attempts: 200 ms doubling to 10 s, before every attempt after
/// the first (a connection Postgres drops at once is retried no faster than one that cannot be
/// opened); back to 200 ms once a connection has stayed up for 30 s.
struct Reconnects {
    backoff: Backoff,
}

impl Reconnects {
    const MIN: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(10);
    const HEALTHY: Duration = Duration::from_secs(30);

    fn new() -> Reconnects {
        Reconnects {
            backoff: Backoff::new(Self::MIN, Self::MAX),
        }
    }

    /// The wait before the next attempt.
    fn delay(&mut self) -> Duration {
        self.backoff.delay()
    }

    /// A connection ended after `lived`: a healthy one starts the waits over.
    fn connected_for(&mut self, lived: Duration) {
        if lived >= Self::HEALTHY {
            self.backoff.reset();
        }
    }
}
