//! The `walcast.ddl` logical message of `walcast setup`'s event triggers.

use super::event::SchemaEvent;

/// A control message of `walcast setup` itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Installed,
    Uninstalled,
}

/// A parsed message: the table events of one DDL command, or a control message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Events(Vec<SchemaEvent>),
    Control(Control),
}

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error(
        "walcast.ddl message version {0} is newer than this walcast reads (1): upgrade walcast"
    )]
    Version(u64),
    #[error("walcast.ddl message is not valid: {0}")]
    Invalid(String),
}

pub fn parse_message(content: &str) -> Result<Message, MessageError> {
    todo!()
}
