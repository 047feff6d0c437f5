//! The write deadline of a socket (`sessions.write_timeout`): a `Sink` wrapper that fails a write
//! which has made no progress for that long. A peer that stops reading fills its TCP window, and
//! from then on `feed`, `flush` and `send` stay pending forever: a check between writes would
//! never run, so the deadline sits inside the write futures themselves. Does not decide what to
//! tell the client or which resources to let go (the session and `/listen` loops do, on
//! `timed_out()`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Sink;
use tokio::time::{Instant, Sleep};

/// Why a write failed.
#[derive(Debug)]
pub(super) enum WriteError<E> {
    /// The socket failed or the peer left.
    Socket(E),
    /// No write completed for the write timeout.
    TimedOut,
}

/// A sink whose pending writes fail once none has completed for `timeout`.
///
/// "Progress" is a write operation (`poll_ready`, `poll_flush`, `poll_close`) completing: the
/// clock starts when one first stays pending and stops when one completes. A socket's buffered
/// bytes are at most its write buffer plus one frame, so a client that reads at all completes
/// writes long before any sane timeout.
pub(super) struct WriteDeadline<S> {
    inner: S,
    timeout: Duration,
    /// Fires `timeout` after the first pending write; only looked at while `armed`.
    stall: Pin<Box<Sleep>>,
    armed: bool,
    timed_out: bool,
}

impl<S> WriteDeadline<S> {
    pub(super) fn new(inner: S, timeout: Duration) -> WriteDeadline<S> {
        WriteDeadline {
            inner,
            timeout,
            stall: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: false,
            timed_out: false,
        }
    }

    /// Whether a write failed on the deadline (every later write fails at once).
    pub(super) fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// The socket itself, for a last close frame under its own bound.
    pub(super) fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Runs one write operation under the deadline.
    fn guard<E>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<Result<(), E>>,
    ) -> Poll<Result<(), WriteError<E>>>
    where
        S: Unpin,
    {
        if self.timed_out {
            return Poll::Ready(Err(WriteError::TimedOut));
        }
        match op(Pin::new(&mut self.inner), cx) {
            Poll::Ready(result) => {
                self.armed = false;
                Poll::Ready(result.map_err(WriteError::Socket))
            }
            Poll::Pending => {
                if !self.armed {
                    self.armed = true;
                    let at = Instant::now() + self.timeout;
                    self.stall.as_mut().reset(at);
                }
                if self.stall.as_mut().poll(cx).is_ready() {
                    self.timed_out = true;
                    return Poll::Ready(Err(WriteError::TimedOut));
                }
                Poll::Pending
            }
        }
    }
}

impl<S, T> Sink<T> for WriteDeadline<S>
where
    S: Sink<T> + Unpin,
{
    type Error = WriteError<S::Error>;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().guard(cx, |s, cx| s.poll_ready(cx))
    }

    fn start_send(self: Pin<&mut Self>, item: T) -> Result<(), Self::Error> {
        let this = self.get_mut();
        if this.timed_out {
            return Err(WriteError::TimedOut);
        }
        Pin::new(&mut this.inner)
            .start_send(item)
            .map_err(WriteError::Socket)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().guard(cx, |s, cx| s.poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().guard(cx, |s, cx| s.poll_close(cx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::SinkExt;

    /// Takes `capacity` items, then is never ready again (a peer that stopped reading).
    struct Stuck {
        capacity: usize,
        taken: usize,
    }

    impl Sink<u32> for Stuck {
        type Error = ();
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            if self.taken < self.capacity {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        }
        fn start_send(mut self: Pin<&mut Self>, _: u32) -> Result<(), ()> {
            self.taken += 1;
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_never_completes_fails_at_the_deadline() {
        let mut sink = WriteDeadline::new(
            Stuck {
                capacity: 2,
                taken: 0,
            },
            Duration::from_secs(30),
        );
        sink.send(1).await.unwrap();
        sink.send(2).await.unwrap();
        assert!(!sink.timed_out());
        let started = Instant::now();
        let err = sink.send(3).await.unwrap_err();
        assert!(matches!(err, WriteError::TimedOut), "{err:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert!(sink.timed_out());
        // Later writes fail at once.
        assert!(matches!(
            sink.feed(4).await.unwrap_err(),
            WriteError::TimedOut
        ));
    }

    /// The clock measures time without progress: writes that complete, however slowly, reset it.
    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_is_not_timed_out() {
        let (tx, mut rx) = futures_channel::mpsc::channel::<u32>(0);
        let mut sink = WriteDeadline::new(tx, Duration::from_secs(30));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(n) = futures_util::StreamExt::next(&mut rx).await {
                got.push(n);
                // 20 s per item: slower than nothing, faster than the deadline.
                tokio::time::sleep(Duration::from_secs(20)).await;
            }
            got
        });
        for n in 0..5 {
            sink.send(n).await.unwrap();
        }
        drop(sink);
        assert_eq!(reader.await.unwrap(), [0, 1, 2, 3, 4]);
    }
}
