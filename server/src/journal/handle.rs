//! A cheap, cloneable handle for tasks other than the writer's (sessions resuming after a
//! position): opens readers and reports retention. Does not write.

use std::sync::Arc;

use super::reader::JournalReader;
use super::shared::Shared;
use super::JournalError;
use crate::vocab::Pos;

#[derive(Clone)]
pub struct JournalHandle {
    pub(super) shared: Arc<Shared>,
}

impl JournalHandle {
    /// A reader of the changes after `after`; `JournalError::Expired` when retention already
    /// removed some of them.
    pub fn reader(&self, after: Pos) -> Result<JournalReader, JournalError> {
        JournalReader::new(Arc::clone(&self.shared), after)
    }
}
