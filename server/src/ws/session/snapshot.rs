//! Snapshot streaming: a subscription that asked for `snapshot=true` gets its table's current
//! rows (`row` frames, then `snapshot_end`) under one of `snapshot.max_concurrent` slots, decoded,
//! filtered and framed exactly as changes, while the socket stays alive; its journal catch-up then
//! skips what the snapshot shows. A snapshot that fails ends its subscription with an error frame.
//! Owns no SQL (`snapshot::Reader` does).

use axum::extract::ws::Message;
use futures_util::{Sink, SinkExt};
use tokio::sync::mpsc;

use crate::decode::{Decoder, FrameEncoder, Projection};
use crate::hub::PluginOutcome;
use crate::vocab::Frame;

use super::super::client;
use super::subscriptions::Mode;
use super::{End, Session};

impl<S: Sink<Message> + Unpin> Session<S> {
    /// Sends subscription `i`'s current rows (`row` frames, then `snapshot_end`) and sets its
    /// journal catch-up to skip what the snapshot shows. A snapshot that fails ends the
    /// subscription with an `error` frame; the socket stays open.
    pub(super) async fn snapshot(&mut self, i: usize) -> Result<(), End> {
        let Some(snapshots) = self.ctx.snapshots.clone() else {
            return self
                .snapshot_failed(i, "snapshots are not available on this server")
                .await;
        };
        let permit = match snapshots.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let queued =
                    self.subs[i].frame(Frame::from_static(r#"{"type":"snapshot_queued"}"#));
                self.send(queued).await?;
                // The wait lasts as long as the snapshots ahead: the socket is kept alive
                // meanwhile, and a client that leaves or goes silent stops waiting.
                match self
                    .attend(snapshots.permits.clone().acquire_owned())
                    .await?
                {
                    Ok(permit) => permit,
                    Err(_) => return self.snapshot_failed(i, "snapshots are shutting down").await,
                }
            }
        };
        let started = std::time::Instant::now();
        let plan = &self.subs[i].plan;
        let (table, columns, conditions) = (
            plan.table.clone(),
            plan.columns.clone(),
            plan.conditions.clone(),
        );
        let pg = &snapshots.pg;
        // Boxed: the connection's future is large, and every idle session would carry its room.
        let opened = self
            .attend(Box::pin(crate::snapshot::Reader::open(
                pg,
                &table,
                columns,
                &conditions,
            )))
            .await?;
        let mut reader = match opened {
            Ok(reader) => reader,
            Err(crate::snapshot::SnapshotError::ShapeChanged(message)) => {
                self.ctx.metrics.schema_changed.inc();
                let sub = self.remove(i);
                let frame = crate::hub::schema_changed_frame(&sub.plan.table, &message);
                let frame = sub.frame(frame);
                self.send(frame).await?;
                return match sub.id {
                    None => Err(End::Close(
                        crate::vocab::close_code::SUBSCRIPTION_ENDED,
                        format!("schema changed: {message}"),
                    )),
                    Some(_) => Ok(()),
                };
            }
            Err(error) => return self.snapshot_failed(i, &error.message()).await,
        };
        let (visibility, wal_lsn) = (reader.visibility.clone(), reader.wal_lsn);
        // The next page is fetched while this one is framed and written: at most two pages are
        // held, whatever the table size. The fetch task owns the transaction and the slot: the
        // slot is free only once the transaction ended, whichever way the session ends (when
        // it drops `pages`, the task's next send fails and it commits).
        let (pages_tx, mut pages) = mpsc::channel(1);
        let fetch = tokio::spawn(async move {
            let _permit = permit;
            loop {
                let mut page = Vec::new();
                match reader.page(&mut page).await {
                    Ok(()) if page.is_empty() => break,
                    Ok(()) => {
                        if pages_tx.send(Ok(page)).await.is_err() {
                            break;
                        }
                    }
                    Err(error) => {
                        let _ = pages_tx.send(Err(error)).await;
                        break;
                    }
                }
            }
            reader.close().await;
        });
        let mut decoder = Decoder::new();
        let mut encoder = FrameEncoder::new();
        let mut rows: u64 = 0;
        while let Some(page) = self.attend(pages.recv()).await? {
            let mut page = match page {
                Ok(page) => page,
                Err(error) => return self.snapshot_failed(i, &error.message()).await,
            };
            for message in page.iter_mut() {
                let sub = &self.subs[i];
                let frame = match decoder.decode(message) {
                    Err(error) => {
                        self.ctx.metrics.decode_errors.inc();
                        tracing::error!(subscription = sub.hub_id, table = %sub.plan.table, %error, "a snapshot row could not be decoded; its subscriber gets a decode_failed frame");
                        client::error_frame(
                            sub.id.as_deref(),
                            "decode_failed",
                            &format!(
                                "a snapshot row could not be decoded ({error}); re-read the table"
                            ),
                        )
                    }
                    Ok(change) => {
                        if !sub.plan.filter.matches_row(&change) {
                            continue;
                        }
                        let outcome = sub
                            .plan
                            .plugin
                            .as_ref()
                            .map(|g| PluginOutcome::of(g, &change));
                        match outcome {
                            Some(PluginOutcome::Drop) => continue,
                            Some(PluginOutcome::Failed(frame)) => frame,
                            // A rewrite applies to change frames; a row passes as it is.
                            _ => {
                                rows += 1;
                                let projection = Projection::of(sub.plan.filter.select());
                                Frame::from(encoder.row(&change, projection))
                            }
                        }
                    }
                };
                let frame = sub.frame(frame);
                if self.sink.feed(Message::Text(frame)).await.is_err() {
                    // Dropping `pages` ends the fetch task, which closes the transaction.
                    return Err(End::Gone);
                }
            }
            self.sink.flush().await.map_err(|_| End::Gone)?;
        }
        let _ = fetch.await;
        let sub = &mut self.subs[i];
        tracing::debug!(subscription = sub.hub_id, rows, seconds = started.elapsed().as_secs_f64(), %wal_lsn, "snapshot sent");
        if let Mode::CatchUp(catch_up) = &mut sub.mode {
            catch_up.skip_shown(visibility, wal_lsn);
        }
        sub.shown_until = Some(wal_lsn);
        let mut text = String::from(r#"{"type":"snapshot_end","pos":""#);
        sub.sent.push_text(&mut text);
        text.push_str(r#"","rows":"#);
        text.push_str(itoa::Buffer::new().format(rows));
        text.push('}');
        let frame = sub.frame(Frame::from(text));
        self.send(frame).await
    }

    pub(super) async fn snapshot_failed(&mut self, i: usize, message: &str) -> Result<(), End> {
        tracing::warn!(
            subscription = self.subs[i].hub_id,
            message,
            "snapshot failed"
        );
        let sub = self.remove(i);
        let frame = client::error_frame(sub.id.as_deref(), "snapshot_failed", message);
        self.send(frame).await
    }
}
