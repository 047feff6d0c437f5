//! Pings and the idle timeout of a socket (`sessions.ping_interval`, `sessions.idle_timeout`):
//! the writer sends a WebSocket Ping every interval, and a socket from which nothing (a pong or
//! any message) arrived for the idle timeout is ended. A peer that vanished without a FIN (a
//! laptop closed, a NAT entry dropped) otherwise holds its socket, its subscriptions and its
//! journal reader until TCP gives up, hours later. Also holds the socket timeouts as configured
//! and the process-unique session numbers logs name. Does not write to the socket (its owner does,
//! on `Beat::Ping`) or read it (the reader task reports arrivals through `Heard`).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, Interval, MissedTickBehavior, Sleep};

use crate::metrics::Metrics;

/// The socket timeouts (`[sessions]`), for every socket kind.
#[derive(Clone, Copy, Debug)]
pub struct SocketTimeouts {
    /// A write that makes no progress for this long ends the socket (4008).
    pub write: Duration,
    /// How often the server pings.
    pub ping_interval: Duration,
    /// Nothing heard for this long ends the socket (4009).
    pub idle: Duration,
}

/// A number for one socket, unique in the process, for logs.
pub(super) fn session_number() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// When the client was last heard from: written by the socket's reader, read by its writer.
#[derive(Clone)]
pub(super) struct Heard {
    origin: Instant,
    /// Milliseconds after `origin`.
    at: Arc<AtomicU64>,
}

impl Heard {
    fn new() -> Heard {
        Heard {
            origin: Instant::now(),
            at: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Something arrived from the client.
    pub(super) fn now(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.at.fetch_max(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.origin + Duration::from_millis(self.at.load(Ordering::Relaxed))
    }
}

/// What the keepalive asks of the socket's writer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Beat {
    /// Send a Ping.
    Ping,
    /// Nothing arrived for the idle timeout: end the socket.
    Idle,
}

/// The ping clock and the idle deadline of one socket.
///
/// A socket is idle when nothing came from it for the idle timeout and it was asked: a ping went
/// out since it was last heard, at least `idle_timeout - ping_interval` ago (the time a client
/// has to answer the first ping in the regular schedule). A writer held up by a slow reader may
/// send its ping late; the client is not blamed for the delay (the write timeout watches that).
pub(super) struct Keepalive {
    ping: Interval,
    idle: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    /// How long a client has to answer a ping.
    grace: Duration,
    heard: Heard,
    /// When the first ping since the client was last heard went out.
    pinged: Option<Instant>,
}

impl Keepalive {
    /// Starts both clocks; the client counts as heard from now (it just completed the upgrade).
    pub(super) fn new(timeouts: &SocketTimeouts) -> Keepalive {
        let now = Instant::now();
        let mut ping =
            tokio::time::interval_at(now + timeouts.ping_interval, timeouts.ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Keepalive {
            ping,
            idle: Box::pin(tokio::time::sleep_until(now + timeouts.idle)),
            idle_timeout: timeouts.idle,
            // Configuration keeps the idle timeout above the ping interval.
            grace: timeouts
                .idle
                .saturating_sub(timeouts.ping_interval)
                .max(Duration::from_millis(10)),
            heard: Heard::new(),
            pinged: None,
        }
    }

    /// A ping went out.
    pub(super) fn pinged(&mut self) {
        let now = Instant::now();
        if self.pinged.is_none_or(|p| p < self.heard.last()) {
            self.pinged = Some(now);
        }
    }

    /// The handle the socket's reader marks arrivals with.
    pub(super) fn heard(&self) -> Heard {
        self.heard.clone()
    }

    /// The next thing to do. Cancel-safe: it only waits on timers.
    pub(super) async fn next(&mut self) -> Beat {
        loop {
            tokio::select! {
                biased;
                () = &mut self.idle => {
                    let now = Instant::now();
                    let heard = self.heard.last();
                    let silent_until = heard + self.idle_timeout;
                    match self.pinged.filter(|p| *p >= heard) {
                        Some(asked) => {
                            let deadline = silent_until.max(asked + self.grace);
                            if deadline <= now {
                                return Beat::Idle;
                            }
                            self.idle.as_mut().reset(deadline);
                        }
                        // Not asked since last heard: look again once a ping could be answered.
                        None => self.idle.as_mut().reset(silent_until.max(now + self.grace)),
                    }
                }
                _ = self.ping.tick() => return Beat::Ping,
            }
        }
    }

    /// What is due right now, without waiting.
    pub(super) fn due(&mut self) -> Option<Beat> {
        futures_util::FutureExt::now_or_never(self.next())
    }
}

/// Why a socket was timed out, as logs, the metric's `reason` label and close reasons say it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TimedOut {
    Write,
    Idle,
}

impl TimedOut {
    /// The `reason` label of `walcast_sessions_timed_out_total`.
    pub(super) fn label(self) -> &'static str {
        match self {
            TimedOut::Write => "write",
            TimedOut::Idle => "idle",
        }
    }

    /// The close code and reason; counts the closure in `walcast_sessions_timed_out_total`.
    pub(super) fn close(self, timeouts: &SocketTimeouts, metrics: &Metrics) -> (u16, String) {
        let (code, reason) = match self {
            TimedOut::Write => (
                crate::vocab::close_code::SLOW_CONSUMER,
                format!(
                    "slow consumer: no write progress for {} (sessions.write_timeout)",
                    humantime::format_duration(timeouts.write)
                ),
            ),
            TimedOut::Idle => (
                crate::vocab::close_code::IDLE_TIMEOUT,
                format!(
                    "idle: no pong or message for {} (sessions.idle_timeout)",
                    humantime::format_duration(timeouts.idle)
                ),
            ),
        };
        metrics.session_timed_out(self.label());
        (code, reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts() -> SocketTimeouts {
        SocketTimeouts {
            write: Duration::from_secs(30),
            ping_interval: Duration::from_secs(20),
            idle: Duration::from_secs(60),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_pinged_then_idle() {
        let start = Instant::now();
        let mut k = Keepalive::new(&timeouts());
        assert_eq!(k.due(), None);
        let mut beats = Vec::new();
        loop {
            let beat = k.next().await;
            beats.push((beat == Beat::Ping, start.elapsed().as_secs()));
            if beat == Beat::Idle {
                break;
            }
            k.pinged();
        }
        assert_eq!(beats, [(true, 20), (true, 40), (false, 60)]);
    }

    /// A ping that went out late (the writer was held up by a slow reader) gives the client the
    /// regular time to answer, counted from when it went out.
    #[tokio::test(start_paused = true)]
    async fn a_late_ping_gives_the_client_time_to_answer() {
        let start = Instant::now();
        let mut k = Keepalive::new(&timeouts());
        // The writer is busy for 100 s: no ping goes out, so no idle either.
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert_eq!(k.next().await, Beat::Ping);
        k.pinged();
        // Unanswered: idle 40 s (60 s - 20 s) after that ping.
        while k.next().await == Beat::Ping {
            k.pinged();
        }
        assert_eq!(start.elapsed(), Duration::from_secs(140));

        let mut answered = Keepalive::new(&timeouts());
        tokio::time::sleep(Duration::from_secs(100)).await;
        assert_eq!(answered.next().await, Beat::Ping);
        answered.pinged();
        answered.heard().now();
        // Idle only 60 s after the answer.
        let answered_at = Instant::now();
        while answered.next().await == Beat::Ping {
            answered.pinged();
        }
        assert_eq!(answered_at.elapsed(), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_answers_stays() {
        let start = Instant::now();
        let mut k = Keepalive::new(&timeouts());
        let heard = k.heard();
        for _ in 0..10 {
            assert_eq!(k.next().await, Beat::Ping);
            k.pinged();
            // The pong to each ping.
            heard.now();
        }
        assert_eq!(start.elapsed(), Duration::from_secs(200));
        // Silent from here: idle 60 s after the last pong.
        while k.next().await == Beat::Ping {
            k.pinged();
        }
        assert_eq!(start.elapsed(), Duration::from_secs(260));
    }
}
