//! Turns a wal2json format-version 2 payload into a borrowed change view (simd-json, in place) and
//! builds the outgoing `change` frame once per change. Knows nothing about subscriptions.

mod change;
mod frame;
mod parser;
mod v1;
mod wide;

pub(crate) use change::Action;
pub use change::{Change, Column, Image, Value};
pub use frame::{put_column_value, put_str, Format, FrameEncoder, Projection};
pub use parser::{DecodeError, Decoder, Undecoded};
pub use v1::{put_column_value_v1, Part};

#[cfg(test)]
mod tests;
