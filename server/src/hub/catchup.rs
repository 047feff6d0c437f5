//! Catch-up: one session's private reader of the journal, for a client that resumes after a
//! position (`from=`). Reads the records after it, decodes and filters each exactly as dispatch
//! does for a cohort (operations, conditions, plugin, `select=`) and builds the session's frames.
//! Owns a decoder and an encoder per catching-up session; does not touch sockets or cohort logs.

use std::sync::Arc;

use crate::decode::{Decoder, Format, FrameEncoder, Projection, Undecoded};
use crate::filter::wasm::{PluginGroup, Verdict};
use crate::filter::Filter;
use crate::journal::{JournalError, JournalReader, Pos, RecordKind};

use super::intake::decode_failed_frame;
use super::Frame;

/// What one subscription asked for, as the catch-up applies it.
pub struct CatchUpRequest {
    pub schema: Box<str>,
    pub table: Box<str>,
    pub filter: Filter,
    pub plugin: Option<Arc<PluginGroup>>,
}

pub struct CatchUp {
    reader: JournalReader,
    /// After a snapshot: changes of transactions it shows, committed before `.1`, are skipped.
    shown: Option<(crate::snapshot::Visibility, crate::source::Lsn)>,
    request: CatchUpRequest,
    decoder: Decoder,
    encoder: FrameEncoder,
    /// The last position read from the journal (sent or filtered out).
    last: Pos,
}

/// Outcome of one `CatchUp::fill`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// `max` frames were produced; call again.
    More,
    /// The journal has nothing more after `position()` for now.
    End,
    /// A record after `until` was reached: the live stream has everything from there on.
    Until,
}

impl CatchUp {
    pub fn new(reader: JournalReader, request: CatchUpRequest) -> CatchUp {
        let last = reader.position();
        CatchUp {
            reader,
            shown: None,
            request,
            decoder: Decoder::new(),
            encoder: FrameEncoder::new(),
            last,
        }
    }

    /// Skip the changes `visibility` shows that committed before `wal_lsn` (the snapshot the
    /// client was sent already holds them).
    pub fn skip_shown(
        &mut self,
        visibility: crate::snapshot::Visibility,
        wal_lsn: crate::source::Lsn,
    ) {
        self.shown = Some((visibility, wal_lsn));
    }

    /// The last journal position taken: everything up to it was sent or did not match.
    pub fn position(&self) -> Pos {
        self.last
    }

    /// Append the frames of matching changes after `position()` to `out`, at most `max`, and
    /// none for a change after `until`.
    pub fn fill(
        &mut self,
        out: &mut Vec<Frame>,
        max: usize,
        until: Option<Pos>,
    ) -> Result<Fill, JournalError> {
        let mut produced = 0;
        while produced < max {
            let Some(record) = self.reader.next()? else {
                return Ok(Fill::End);
            };
            if until.is_some_and(|until| record.pos > until) {
                return Ok(Fill::Until);
            }
            self.last = record.pos;
            if record.kind == RecordKind::Gap {
                // Every subscriber got it live, whatever its table: so does every reader.
                out.push(Frame::from(
                    String::from_utf8_lossy(record.payload).into_owned(),
                ));
                produced += 1;
                continue;
            }
            let (pos, lsn) = (record.pos, record.wal_start);
            let mut change = match self.decoder.decode(record.payload) {
                Ok(change) => change,
                Err(error) => {
                    // As on the live path: the subscribers of its table (all of them when the
                    // table cannot be read) hear that a change could not be read.
                    let seen = Undecoded::peek(record.payload);
                    let other = seen.schema.is_some_and(|s| *s != *self.request.schema)
                        || seen.table.is_some_and(|t| *t != *self.request.table);
                    if !other {
                        out.push(decode_failed_frame(lsn, error, &seen));
                        produced += 1;
                    }
                    continue;
                }
            };
            change.set_pos(pos);
            if let Some((shown, wal_lsn)) = &self.shown {
                if pos.commit < *wal_lsn && change.xid().is_some_and(|x| shown.shows(x)) {
                    continue;
                }
            }
            if change.op().is_none()
                || change.schema() != &*self.request.schema
                || change.table() != &*self.request.table
            {
                continue;
            }
            let req = &self.request;
            // `matches` applies the operation mask; a truncate passes whenever it was asked for.
            if !req.filter.matches(&change) {
                continue;
            }
            let frame = match &req.plugin {
                None => None,
                Some(group) => match group.evaluate(&change) {
                    Verdict::Drop => continue,
                    Verdict::Pass => None,
                    Verdict::Rewritten(r) => Some(match (req.filter.format(), r.v1) {
                        (Format::Walcast, _) => Frame::from(r.walcast),
                        (Format::Wal2jsonV1, Some(v1)) => Frame::from(v1),
                        (Format::Wal2jsonV1, None) => super::registry::missing_v1(group),
                    }),
                    Verdict::Error(message) => Some(super::registry::plugin_error_frame(
                        group.plugin_name(),
                        &message,
                    )),
                },
            };
            let frame = frame.unwrap_or_else(|| {
                let projection = match req.filter.select() {
                    Some(cols) => Projection::Only(cols),
                    None => Projection::All,
                };
                Frame::from(
                    self.encoder
                        .encode(&change, projection, req.filter.format()),
                )
            });
            out.push(frame);
            produced += 1;
        }
        Ok(Fill::More)
    }
}
