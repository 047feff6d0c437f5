//! Session signals: how the hub, the relay, an operator (or a shutdown) tells one WebSocket
//! session to close, and with which code; the first reason given wins. Holds no session state and
//! no frames: frames reach a session through its cohort (`hub::cohort`) or its relay queue, and
//! sockets are `ws`'s.

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

use super::close_code;

/// Shared between whoever may close a session (hub, relay, named store) and its writer.
#[derive(Debug)]
pub struct SessionSignal {
    close: CancellationToken,
    /// Mirrors "the hub closed this session" as a plain atomic: the hub asks for every offered
    /// frame, and `CancellationToken::is_cancelled` takes a lock.
    closing: AtomicBool,
    code: AtomicU16,
    /// Close reason text for the close frame when the code's standard one says too little (the
    /// failing plugin and its cause for 4010). Set with the code, at most once.
    reason: OnceLock<Box<str>>,
    /// The frames the session still has to send explain the close (an error frame is among
    /// them): it sends them first and adds no error frame of its own.
    explained: AtomicBool,
}

impl SessionSignal {
    pub fn new(parent: &CancellationToken) -> Arc<Self> {
        Arc::new(SessionSignal {
            close: parent.child_token(),
            closing: AtomicBool::new(false),
            code: AtomicU16::new(0),
            reason: OnceLock::new(),
            explained: AtomicBool::new(false),
        })
    }

    /// Ask the writer to close the socket with `code`. The first reason wins.
    pub fn close(&self, code: u16) {
        self.close_with(code, None);
    }

    /// As `close`, with the text the close frame carries when this is the first reason.
    pub fn close_with(&self, code: u16, reason: Option<&str>) {
        let first = self
            .code
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if let (true, Some(reason)) = (first, reason) {
            let _ = self.reason.set(reason.into());
        }
        self.closing.store(true, Ordering::Release);
        self.close.cancel();
    }

    /// As `close_with`, when the frames still queued for the session end with the error frame
    /// that explains the close (see `explained`).
    pub fn close_explained(&self, code: u16, reason: &str) {
        let first = self.code.load(Ordering::Acquire) == 0;
        if first {
            self.explained.store(true, Ordering::Release);
        }
        self.close_with(code, Some(reason));
    }

    /// Whether the close was explained by a frame still queued for the session.
    pub fn explained(&self) -> bool {
        self.explained.load(Ordering::Acquire)
    }

    /// Resolves when the session must close (hub decision or server shutdown).
    pub async fn closed(&self) {
        self.close.cancelled().await
    }

    /// Whether the hub has told the session to close (it takes no more frames).
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The close reason given with the code, if any.
    pub fn reason(&self) -> Option<&str> {
        self.reason.get().map(|r| &**r)
    }

    /// The close code to send: the hub's reason, or 1001 when the parent (server) shut down.
    pub fn code(&self) -> u16 {
        match self.code.load(Ordering::Acquire) {
            0 => close_code::GOING_AWAY,
            c => c,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_means_going_away() {
        let root = CancellationToken::new();
        let signal = SessionSignal::new(&root);
        root.cancel();
        assert!(signal.close.is_cancelled());
        assert_eq!(signal.code(), close_code::GOING_AWAY);
    }

    #[test]
    fn the_first_reason_wins() {
        let root = CancellationToken::new();
        let signal = SessionSignal::new(&root);
        signal.close(close_code::SLOW_CONSUMER);
        signal.close_with(close_code::PLUGIN_FAILING, Some("plugin \"p\" trapped"));
        assert!(signal.is_closing());
        assert_eq!(signal.code(), close_code::SLOW_CONSUMER);
        assert_eq!(
            signal.reason(),
            None,
            "the reason goes with the code that won"
        );
        let other = SessionSignal::new(&root);
        other.close_with(close_code::PLUGIN_FAILING, Some("plugin \"p\" trapped"));
        other.close(close_code::SLOW_CONSUMER);
        assert_eq!(other.code(), close_code::PLUGIN_FAILING);
        assert_eq!(other.reason(), Some("plugin \"p\" trapped"));
    }
}
