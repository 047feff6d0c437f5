//! A session that resumes after a position (`from=`): replays the matching changes after it from
//! the journal, joins the live stream, and then serves like any other session, with no gap and
//! no duplicate at the seam. Does not filter (the hub's `CatchUp` does) or own the journal.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};

use crate::filter::wasm::PluginGroup;
use crate::filter::{self, Filter};
use crate::hub::{close_code, CatchUp, CatchUpRequest, Fill, Frame, SessionSignal};
use crate::journal::{JournalError, JournalReader, Pos};

use super::router::{subscribe_request, subscribed_frame, AppState};

/// Frames written per flush while catching up.
const BATCH: usize = 256;
/// How long the seam may wait for the journal to show what the live stream already dispatched
/// (it is written at the end of every burst read from Postgres, so normally milliseconds).
const SEAM_TIMEOUT: Duration = Duration::from_secs(10);
/// Close code when the journal fails under a resuming session (server error).
const INTERNAL_ERROR: u16 = 1011;

pub(super) struct Resume {
    pub from: Pos,
    pub reader: JournalReader,
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn session(
    socket: WebSocket,
    st: AppState,
    request: filter::Request,
    filter: Filter,
    plugin: Option<Arc<PluginGroup>>,
    key: String,
    resume: Resume,
) {
    let signal = SessionSignal::new(&st.shutdown);
    let table = request.table;
    let id = st.hub.reserve_id();
    let (mut sink, stream) = socket.split();
    st.metrics.sessions.inc();
    let hello = subscribed_frame(id, &table, super::router::stream_position(&st), resume.from);
    let mut catch_up = CatchUp::new(
        resume.reader,
        CatchUpRequest {
            schema: table.schema.clone().into(),
            table: table.name.clone().into(),
            filter: filter.clone(),
            plugin: plugin.clone(),
        },
    );
    st.metrics.catchup_sessions.inc();
    let ended = async {
        sink.send(hello).await.ok()?;
        // Up to the journal's end, before joining: a long replay must not hold a cohort log.
        replay(&mut sink, &mut catch_up, None, &signal, &st.shutdown).await?;
        let subscription = st.hub.subscribe_with_id(
            subscribe_request(&table, &key, request.ops, filter, plugin),
            signal.clone(),
            id,
        );
        // The seam: everything up to the subscription's start comes from the journal (waiting
        // for the burst that holds it to be written), everything after from the cohort.
        let start = subscription.start();
        let deadline = tokio::time::Instant::now() + SEAM_TIMEOUT;
        while catch_up.position() < start {
            let fill = replay(&mut sink, &mut catch_up, Some(start), &signal, &st.shutdown).await?;
            if fill == Fill::Until {
                break;
            }
            if catch_up.position() >= start {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::error!(subscription = id, at = %catch_up.position(), %start, "journal does not show what the live stream dispatched; closing the resuming session");
                close(&mut sink, INTERNAL_ERROR, "journal behind the live stream").await;
                return None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Some(subscription)
    }
    .await;
    st.metrics.catchup_sessions.dec();
    if let Some(subscription) = ended {
        super::session::serve(sink, stream, subscription.reader(), signal, None).await;
        drop(subscription);
    }
    st.metrics.sessions.dec();
}

/// Writes catch-up frames until the journal's current end (or `until`); `None` when the socket
/// failed or the session must close.
async fn replay<S>(
    sink: &mut S,
    catch_up: &mut CatchUp,
    until: Option<Pos>,
    signal: &SessionSignal,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Option<Fill>
where
    S: futures_util::Sink<Message> + Unpin,
{
    let mut batch: Vec<Frame> = Vec::new();
    loop {
        if signal.is_closing() || shutdown.is_cancelled() {
            close(sink, signal.code(), "").await;
            return None;
        }
        let fill = match catch_up.fill(&mut batch, BATCH, until) {
            Ok(fill) => fill,
            // Retention removed what this session still had to read: it fell behind, like a
            // slow consumer.
            Err(JournalError::Expired { .. }) => {
                tracing::info!(at = %catch_up.position(), "a resuming session fell behind the journal's retention (4008)");
                close(
                    sink,
                    close_code::SLOW_CONSUMER,
                    "fell behind the journal's retention",
                )
                .await;
                return None;
            }
            Err(error) => {
                tracing::error!(%error, at = %catch_up.position(), "journal read failed for a resuming session");
                close(sink, INTERNAL_ERROR, "journal read failed").await;
                return None;
            }
        };
        for frame in batch.drain(..) {
            sink.feed(Message::Text(frame)).await.ok()?;
        }
        sink.flush().await.ok()?;
        if fill != Fill::More {
            return Some(fill);
        }
        // A long replay yields between batches so other sessions' writers run.
        tokio::task::yield_now().await;
    }
}

async fn close<S>(sink: &mut S, code: u16, reason: &str)
where
    S: futures_util::Sink<Message> + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        sink.send(Message::Close(Some(frame))),
    )
    .await;
}
