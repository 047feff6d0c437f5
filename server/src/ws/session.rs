//! One WebSocket session: sends `subscribed`, then copies its cohort's frames into the socket in
//! batches (one flush per batch), watches the client side for close, and closes with the code the
//! hub or the server decided. Generic over Sink/Stream so it runs without sockets in tests.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::hub::{close_code, Reader, SessionSignal};

/// Frames written per flush at most.
const BATCH: usize = 64;
/// How long a close frame may take to reach a client that stopped reading.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

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
        _ => "",
    };
    standard.to_owned()
}

/// Serve one session until the client leaves, the hub closes it, or the server shuts down.
/// The reader runs as its own task: it is polled only when the client sends something, so frame
/// writes never pay for a read attempt on the socket.
pub(crate) async fn serve<S, R, E>(
    mut sink: S,
    mut stream: R,
    cohort: &Reader,
    signal: Arc<SessionSignal>,
    first: Option<Message>,
) where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, E>> + Unpin + Send + 'static,
{
    if let Some(first) = first {
        if sink.send(first).await.is_err() {
            return;
        }
    }
    let client_gone = CancellationToken::new();
    let reader = tokio::spawn({
        let client_gone = client_gone.clone();
        async move {
            while let Some(msg) = stream.next().await {
                match msg {
                    Ok(Message::Close(_)) | Err(_) => break,
                    // Protocol v1 has no client messages; pings are answered by the socket layer.
                    Ok(_) => {}
                }
            }
            client_gone.cancel();
        }
    });
    // Allocated on the first frame: an idle session holds no batch buffer.
    let mut batch = Vec::new();
    // Ends with the close code when the hub closed the session, None when the socket failed.
    let write_loop = async {
        loop {
            if !cohort.next_batch(&mut batch, BATCH).await {
                return Some(signal.code());
            }
            for frame in batch.drain(..) {
                if sink.feed(Message::Text(frame)).await.is_err() {
                    return None;
                }
            }
            if sink.flush().await.is_err() {
                return None;
            }
        }
    };
    let close = tokio::select! {
        _ = client_gone.cancelled() => None,
        code = write_loop => code,
        _ = signal.closed() => Some(signal.code()),
    };
    if let Some(code) = close {
        // A failing plugin's `error` frames explain the 4010: they go out before the close.
        if code == close_code::PLUGIN_FAILING {
            let mut rest = Vec::new();
            while cohort.take(&mut rest, BATCH) {}
            let send_rest = async {
                for frame in rest {
                    if sink.feed(Message::Text(frame)).await.is_err() {
                        return;
                    }
                }
                let _ = sink.flush().await;
            };
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, send_rest).await;
        }
        let frame = CloseFrame {
            code,
            reason: close_reason(code, &signal).into(),
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
    }
    reader.abort();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{Cohort, Frame, Push};
    use futures_channel::mpsc as fmpsc;

    fn text(m: &Message) -> &str {
        match m {
            Message::Text(t) => t.as_str(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn delivers_in_order_then_closes_with_hub_code() {
        let root = CancellationToken::new();
        let cohort = Cohort::new(8);
        let signal = SessionSignal::new(&root);
        let reader = cohort.join(signal.clone());
        let (out_tx, mut out_rx) = fmpsc::unbounded::<Message>();
        let (_in_tx, in_rx) = fmpsc::unbounded::<Result<Message, ()>>();
        for i in 0..3 {
            let (push, _) = cohort.push(&Frame::from(format!("f{i}")));
            assert_eq!(push, Push::Queued(1));
        }
        cohort.wake();
        let task = tokio::spawn({
            let signal = signal.clone();
            async move {
                let hello = Message::Text("hello".into());
                serve(
                    out_tx.sink_map_err(|_| ()),
                    in_rx,
                    &reader,
                    signal,
                    Some(hello),
                )
                .await
            }
        });
        assert_eq!(text(&out_rx.next().await.unwrap()), "hello");
        for i in 0..3 {
            assert_eq!(text(&out_rx.next().await.unwrap()), format!("f{i}"));
        }
        signal.close(close_code::SLOW_CONSUMER);
        match out_rx.next().await.unwrap() {
            Message::Close(Some(f)) => assert_eq!(f.code, 4008),
            other => panic!("expected close, got {other:?}"),
        }
        task.await.unwrap();
    }

    /// A session on a fresh cohort, past its `hello`: the cohort, the session's signal, what it
    /// writes, and its task.
    async fn started(
        root: &CancellationToken,
    ) -> (
        Arc<Cohort>,
        fmpsc::UnboundedReceiver<Message>,
        tokio::task::JoinHandle<()>,
    ) {
        let cohort = Cohort::new(8);
        let signal = SessionSignal::new(root);
        let reader = cohort.join(signal.clone());
        let (out_tx, mut out_rx) = fmpsc::unbounded::<Message>();
        let (_in_tx, in_rx) = fmpsc::unbounded::<Result<Message, ()>>();
        let task = tokio::spawn(async move {
            let _keep_client_open = _in_tx;
            let hello = Message::Text("hello".into());
            let sink = out_tx.sink_map_err(|_| ());
            serve(sink, in_rx, &reader, signal, Some(hello)).await
        });
        assert_eq!(text(&out_rx.next().await.unwrap()), "hello");
        (cohort, out_rx, task)
    }

    #[tokio::test]
    async fn a_failing_plugin_closes_with_4010_and_names_itself() {
        let root = CancellationToken::new();
        let (cohort, mut out_rx, task) = started(&root).await;
        let reason = r#"plugin "threshold" trapped: wasm `unreachable` instruction executed"#;
        cohort.close_all(close_code::PLUGIN_FAILING, Some(reason));
        match out_rx.next().await.unwrap() {
            Message::Close(Some(f)) => {
                assert_eq!(f.code, 4010);
                assert_eq!(f.reason.as_str(), reason);
            }
            other => panic!("expected close, got {other:?}"),
        }
        task.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_closes_with_1001() {
        let root = CancellationToken::new();
        let (_cohort, mut out_rx, task) = started(&root).await;
        root.cancel();
        match out_rx.next().await.unwrap() {
            Message::Close(Some(f)) => assert_eq!(f.code, 1001),
            other => panic!("expected close, got {other:?}"),
        }
        task.await.unwrap();
    }

    #[tokio::test]
    async fn client_close_ends_session() {
        let root = CancellationToken::new();
        let cohort = Cohort::new(8);
        let signal = SessionSignal::new(&root);
        let reader = cohort.join(signal.clone());
        let (out_tx, _out_rx) = fmpsc::unbounded::<Message>();
        let (in_tx, in_rx) = fmpsc::unbounded::<Result<Message, ()>>();
        in_tx.unbounded_send(Ok(Message::Close(None))).unwrap();
        let hello = Message::Text("hello".into());
        serve(
            out_tx.sink_map_err(|_| ()),
            in_rx,
            &reader,
            signal,
            Some(hello),
        )
        .await;
    }
}
