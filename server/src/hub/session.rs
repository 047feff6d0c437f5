//! The hub's handle on one WebSocket session: its bounded frame queue and the signal that closes it.
//! Does not write to sockets (see `ws::session`).

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// WebSocket close codes the hub decides on. Documented in README ("Close codes").
pub mod close_code {
    /// The session's bounded queue overflowed: the client did not read fast enough.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// The subscription's filter plugin failed repeatedly.
    pub const PLUGIN_FAILING: u16 = 4010;
}

/// One encoded frame, validated as UTF-8 once and shared by every session that receives it.
pub type Frame = Utf8Bytes;

/// Shared between the hub (producer side) and the session writer.
#[derive(Debug)]
pub struct SessionSignal {
    close: CancellationToken,
    /// Mirrors "the hub closed this session" as a plain atomic: the hub asks for every offered
    /// frame, and `CancellationToken::is_cancelled` takes a lock.
    closing: AtomicBool,
    code: AtomicU16,
}

impl SessionSignal {
    pub fn new(parent: &CancellationToken) -> Arc<Self> {
        Arc::new(SessionSignal {
            close: parent.child_token(),
            closing: AtomicBool::new(false),
            code: AtomicU16::new(0),
        })
    }

    /// Ask the writer to close the socket with `code`. The first reason wins.
    pub fn close(&self, code: u16) {
        let _ = self
            .code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
        self.closing.store(true, Ordering::Release);
        self.close.cancel();
    }

    /// Resolves when the session must close (hub decision or server shutdown).
    pub async fn closed(&self) {
        self.close.cancelled().await
    }

    /// Whether the hub has told the session to close (it takes no more frames).
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The close code to send: the hub's reason, or 1001 when the parent (server) shut down.
    pub fn code(&self) -> u16 {
        match self.code.load(Ordering::Acquire) {
            0 => close_code::GOING_AWAY,
            c => c,
        }
    }
}

/// The producer end the hub pushes frames into.
#[derive(Clone, Debug)]
pub struct SessionTx {
    tx: mpsc::Sender<Frame>,
    signal: Arc<SessionSignal>,
}

/// Outcome of offering a frame to a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// Queue full: the caller decides whether to wait (`send_by`) or give up.
    Full,
    /// The session is gone.
    Closed,
}

impl SessionTx {
    /// Never blocks.
    pub fn push(&self, frame: &Frame) -> Push {
        match self.tx.try_send(frame.clone()) {
            Ok(()) => Push::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => Push::Full,
            Err(mpsc::error::TrySendError::Closed(_)) => Push::Closed,
        }
    }

    /// Wait for room until `deadline`; a queue that does not move by then closes the session
    /// with 4008 (slow consumer) and the frame is dropped for it.
    pub async fn send_by(&self, frame: Frame, deadline: tokio::time::Instant) -> Push {
        match tokio::time::timeout_at(deadline, self.tx.send(frame)).await {
            Ok(Ok(())) => Push::Queued,
            Ok(Err(_)) => Push::Closed,
            Err(_) => {
                self.signal.close(close_code::SLOW_CONSUMER);
                Push::Full
            }
        }
    }

    pub fn signal(&self) -> &Arc<SessionSignal> {
        &self.signal
    }
}

/// Create a session queue of `capacity` frames.
pub fn session_queue(
    capacity: usize,
    parent: &CancellationToken,
) -> (SessionTx, mpsc::Receiver<Frame>, Arc<SessionSignal>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let signal = SessionSignal::new(parent);
    (
        SessionTx {
            tx,
            signal: signal.clone(),
        },
        rx,
        signal,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn full_queue_waits_then_closes_with_4008() {
        let root = CancellationToken::new();
        let (tx, mut rx, signal) = session_queue(2, &root);
        let f = Frame::from_static("x");
        assert_eq!(tx.push(&f), Push::Queued);
        assert_eq!(tx.push(&f), Push::Queued);
        assert_eq!(tx.push(&f), Push::Full);
        assert!(!signal.is_closing(), "a full queue alone does not close");
        // A reader that makes room in time gets the frame.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        let reader = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            rx.recv().await;
            rx
        });
        assert_eq!(tx.send_by(f.clone(), deadline).await, Push::Queued);
        let _rx = reader.await.unwrap();
        // One that does not move is closed with 4008 at the deadline.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        assert_eq!(tx.send_by(f, deadline).await, Push::Full);
        assert_eq!(signal.code(), close_code::SLOW_CONSUMER);
        assert!(signal.is_closing());
    }

    #[test]
    fn shutdown_means_going_away() {
        let root = CancellationToken::new();
        let (_tx, _rx, signal) = session_queue(2, &root);
        root.cancel();
        assert!(signal.close.is_cancelled());
        assert_eq!(signal.code(), close_code::GOING_AWAY);
    }

    #[test]
    fn dropped_receiver_reports_closed() {
        let root = CancellationToken::new();
        let (tx, rx, _signal) = session_queue(2, &root);
        drop(rx);
        assert_eq!(tx.push(&Frame::from_static("x")), Push::Closed);
    }
}
