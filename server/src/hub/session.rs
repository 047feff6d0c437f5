//! The hub's handle on one WebSocket session: its bounded frame queue and the signal that closes it.
//! Does not write to sockets (see `ws::session`).

use std::sync::atomic::{AtomicU16, Ordering};
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
}

/// One encoded frame, validated as UTF-8 once and shared by every session that receives it.
pub type Frame = Utf8Bytes;

/// Shared between the hub (producer side) and the session writer.
#[derive(Debug)]
pub struct SessionSignal {
    close: CancellationToken,
    code: AtomicU16,
}

impl SessionSignal {
    pub fn new(parent: &CancellationToken) -> Arc<Self> {
        Arc::new(SessionSignal { close: parent.child_token(), code: AtomicU16::new(0) })
    }

    /// Ask the writer to close the socket with `code`. The first reason wins.
    pub fn close(&self, code: u16) {
        let _ = self.code.compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire);
        self.close.cancel();
    }

    /// Resolves when the session must close (hub decision or server shutdown).
    pub async fn closed(&self) {
        self.close.cancelled().await
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
    /// Queue full: the session has been told to close with 4008.
    Overflowed,
    /// The session is gone.
    Closed,
}

impl SessionTx {
    /// Never blocks: a full queue closes that session instead of slowing the pipeline.
    pub fn push(&self, frame: &Frame) -> Push {
        match self.tx.try_send(frame.clone()) {
            Ok(()) => Push::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.signal.close(close_code::SLOW_CONSUMER);
                Push::Overflowed
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Push::Closed,
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
    (SessionTx { tx, signal: signal.clone() }, rx, signal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_closes_with_4008() {
        let root = CancellationToken::new();
        let (tx, _rx, signal) = session_queue(2, &root);
        let f = Frame::from_static("x");
        assert_eq!(tx.push(&f), Push::Queued);
        assert_eq!(tx.push(&f), Push::Queued);
        assert_eq!(tx.push(&f), Push::Overflowed);
        assert_eq!(signal.code(), close_code::SLOW_CONSUMER);
        assert!(signal.close.is_cancelled());
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
