//! LISTEN/NOTIFY relay: one dedicated Postgres connection LISTENs to every channel some socket
//! follows (LISTEN when the first socket of a channel arrives, UNLISTEN after the last leaves),
//! and each notification is handed to the sockets of its channel through bounded queues: a socket
//! whose queue is full is closed with 4008, and no socket ever delays another. After a lost
//! connection it reconnects with backoff and LISTENs again to every active channel; the
//! notifications sent meanwhile are lost, which is said to `format=json` sockets with a
//! `notify_gap` frame, logged and counted. Owns the LISTEN connection and the channel registry;
//! does not touch the replication stream or write to sockets (`ws::listen` does).

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Notification;
use tokio_util::sync::CancellationToken;

use crate::hub::{close_code, Frame, SessionSignal};
use crate::metrics::Metrics;

/// Notifications one socket may have unread before it is closed with 4008.
pub const SOCKET_QUEUE: usize = 1024;
/// Notifications waiting between the LISTEN connection and the relay.
const INBOX: usize = 4096;
/// The longest channel name: Postgres truncates identifiers to 63 bytes.
pub const MAX_CHANNEL: usize = 63;

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
}

struct Listener {
    id: u64,
    queue: mpsc::Sender<Notice>,
    signal: Arc<SessionSignal>,
    /// `format=json`: notifications wrapped, and told about gaps.
    wants_gaps: bool,
}

enum Command {
    /// LISTEN if the channel still has sockets; answer once it is in effect.
    Listen(String, oneshot::Sender<()>),
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

/// `"name"` with `"` doubled: any channel name is safe in LISTEN/UNLISTEN.
pub fn quote(channel: &str) -> String {
    format!("\"{}\"", channel.replace('"', "\"\""))
}

impl Relay {
    /// The relay and its connection task (runs until `stop`).
    pub fn start(
        pg: tokio_postgres::Config,
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

    /// Follow `channel`; resolves once the LISTEN is in effect (`None` when it could not be
    /// within `wait`: the connection is down).
    pub async fn subscribe(
        self: &Arc<Self>,
        channel: &str,
        signal: Arc<SessionSignal>,
        wants_gaps: bool,
        wait: Duration,
    ) -> Option<Subscription> {
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
            Ok(Ok(())) => Some(subscription),
            _ => None,
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
                l.signal.close(close_code::SLOW_CONSUMER);
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

    fn active(&self, channel: &str) -> bool {
        self.channels.lock().contains_key(channel)
    }

    async fn run(
        self: Arc<Self>,
        pg: tokio_postgres::Config,
        mut commands: mpsc::UnboundedReceiver<Command>,
        stop: CancellationToken,
    ) {
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(10))
            .without_max_times()
            .build();
        let mut lost = false;
        let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
        loop {
            let (inbox_tx, mut inbox) = mpsc::channel(INBOX);
            let connected = tokio::select! {
                _ = stop.cancelled() => return,
                c = crate::source::connect_listening(&pg, inbox_tx) => c,
            };
            let (client, connection) = match connected {
                Ok(c) => c,
                Err(error) => {
                    let delay = backoff.next().unwrap_or(Duration::from_secs(10));
                    tracing::warn!(%error, retry_in = ?delay, "NOTIFY relay: cannot connect");
                    // Listen requests meanwhile wait; their sockets give up on their own.
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
            };
            let channels = self.channels();
            let relisten: String = channels
                .iter()
                .map(|c| format!("LISTEN {};", quote(c)))
                .collect();
            if !relisten.is_empty() {
                if let Err(error) = client.batch_execute(&relisten).await {
                    tracing::warn!(%error, "NOTIFY relay: LISTEN failed; reconnecting");
                    connection.abort();
                    continue;
                }
            }
            backoff = backon::ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(10))
                .without_max_times()
                .build();
            if lost {
                tracing::info!(
                    channels = channels.len(),
                    "NOTIFY relay reconnected and listens again"
                );
                lost = false;
            }
            for done in waiting.drain(..) {
                let _ = done.send(());
            }
            self.metrics
                .notify_channels
                .set(i64::try_from(channels.len()).unwrap_or(i64::MAX));
            // Serve until the connection fails.
            let failed = loop {
                tokio::select! {
                    _ = stop.cancelled() => {
                        connection.abort();
                        return;
                    }
                    command = commands.recv() => {
                        let Some(command) = command else { return };
                        let sql = match &command {
                            Command::Listen(c, _) if self.active(c) => format!("LISTEN {}", quote(c)),
                            Command::Unlisten(c) if !self.active(c) => format!("UNLISTEN {}", quote(c)),
                            _ => String::new(),
                        };
                        if !sql.is_empty() {
                            if let Err(error) = client.batch_execute(&sql).await {
                                tracing::warn!(%error, "NOTIFY relay: {sql} failed; reconnecting");
                                if let Command::Listen(_, done) = command {
                                    waiting.push(done);
                                }
                                break true;
                            }
                        }
                        if let Command::Listen(_, done) = command {
                            let _ = done.send(());
                        }
                        self.metrics
                            .notify_channels
                            .set(i64::try_from(self.channels.lock().len()).unwrap_or(i64::MAX));
                    }
                    notice = inbox.recv() => match notice {
                        Some(n) => self.deliver(&n),
                        None => break true,
                    },
                }
            };
            if failed {
                connection.abort();
                lost = true;
                tracing::warn!("NOTIFY relay: connection lost; notifications sent until it is back are not relayed (json sockets get notify_gap)");
                self.gap();
            }
        }
    }
}
