//! Schema events: what a DDL did to a table, exactly, in commit order with the data. Owns the
//! `walcast.ddl` message that `walcast setup`'s event triggers emit (`message`), the event with
//! its before and after shapes and their diff matched by attnum (`event`, `diff`), the shape a
//! change implies when no trigger is installed (`infer`), carrying a subscription's request from
//! one shape to the next (`rebind`), the `schema` frame (`frame`) and the event's journal record
//! (`event`). Does not read the catalog (`filter::Catalog` does), journal or dispatch anything
//! (`hub` does) and does not install the triggers (`setup` does).

mod diff;
mod event;
mod frame;
mod infer;
mod message;
mod rebind;

pub use diff::{Change as ColumnChange, Diff, Renamed, Retyped};
pub use event::{EventKind, RecordError, SchemaEvent, Source};
pub use frame::{diff_is_invisible, encode_frame, Side};
pub use infer::{differs, infer};
pub use message::{parse_message, Control, Message, MessageError};
pub use rebind::{rebind, Rebound, Unbound};

/// The prefix of the logical messages the event triggers emit.
pub const MESSAGE_PREFIX: &str = "walcast.ddl";

/// The version of the message format (and of the trigger functions) this walcast reads.
pub const MESSAGE_VERSION: u32 = 1;

#[cfg(test)]
mod tests;
