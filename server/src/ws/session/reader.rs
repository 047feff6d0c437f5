//! The session's reader task: reads the client's messages, notes that the client is there (any
//! message, pongs included), holds them to the message budget (`rate`), and hands each as a
//! `Control` to the session loop through a bounded queue (a client that sends faster is read more
//! slowly). Runs as its own task, so frame writes never pay for a read attempt; writes nothing.

use axum::extract::ws::Message;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::super::client::{self, Control};
use super::super::keepalive::Heard;
use super::rate::MessageRate;

pub(super) async fn read_client<R, E>(
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
