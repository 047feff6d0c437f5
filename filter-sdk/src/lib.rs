//! Guest SDK for walcast WebAssembly filter plugins, ABI v1 (see `ABI.md` next to this crate).
//! Owns the safe typed API over the `walcast_v1` imports and the export/panic macros; it does not
//! own the host side (walcast's `server/src/filter/wasm`) or any plugin logic.
//!
//! `no_std`, no dependencies, no allocator, Rust >= 1.63, target `wasm32-unknown-unknown`.
//!
//! ```ignore
//! #![no_std]
//! use walcast_filter_sdk::{export_filter, panic_handler, Change, Image, Params, ParamError, Verdict};
//!
//! panic_handler!();
//! export_filter!(init, filter);
//!
//! fn init(params: &Params) -> Result<(), ParamError> {
//!     params.require_f64("min")?;
//!     Ok(())
//! }
//!
//! fn filter(change: &Change) -> Verdict {
//!     match change.field(Image::New, "amount").and_then(|f| f.as_f64()) {
//!         Some(v) if v >= 100.0 => Verdict::Pass,
//!         _ => Verdict::Drop,
//!     }
//! }
//! ```

#![no_std]
#![warn(missing_docs)]

pub mod raw;

mod change;
mod diag;
mod export;
mod output;
mod params;
mod slot;
mod text;

pub use change::{Change, Field, Fields};
pub use diag::{log, set_error, ErrorMessage, Level};
pub use export::{FilterResult, InitResult};
#[doc(hidden)]
pub use export::__private;
pub use output::Output;
pub use params::{ParamError, ParamErrorKind, Params};
pub use slot::Slot;
pub use text::{Copied, Name, StackStr, LARGE_BUF, SMALL_BUF};

/// The ABI version this SDK implements; `walcast_abi_version` returns it.
pub const ABI_VERSION: i32 = 1;

/// What `walcast_filter` decides for one change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Verdict {
    /// The change is not delivered to this group.
    Drop = 0,
    /// Delivered unchanged.
    Pass = 1,
    /// Delivered with the row images built through [`Output`].
    PassRewritten = 2,
    /// The plugin failed on this change; set a message with [`set_error`] (or use [`Verdict::fail`]).
    Error = 3,
}

impl Verdict {
    /// The ABI value of the verdict.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// Sets `message` as the error and returns [`Verdict::Error`].
    pub fn fail<M: ErrorMessage + ?Sized>(message: &M) -> Verdict {
        message.set_as_error();
        Verdict::Error
    }
}

/// The operation of the change (`op()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `1`
    Insert,
    /// `2`
    Update,
    /// `3`
    Delete,
    /// `4`
    Truncate,
    /// Any other value (a newer host, or `NO_CHANGE` when called outside `walcast_filter`).
    Other(i32),
}

impl Op {
    /// Maps the ABI value.
    pub fn from_code(code: i32) -> Op {
        match code {
            1 => Op::Insert,
            2 => Op::Update,
            3 => Op::Delete,
            4 => Op::Truncate,
            other => Op::Other(other),
        }
    }
}

/// Which row image of the change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Image {
    /// The new row (insert, update).
    New = 0,
    /// The old row / replica identity (update, delete).
    Old = 1,
}

impl Image {
    /// Both images, new first.
    pub const BOTH: [Image; 2] = [Image::New, Image::Old];

    /// The ABI value.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// The JSON type of a field's value (`field_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `null`
    Null,
    /// `true` / `false`
    Bool,
    /// A number.
    Number,
    /// A string.
    String,
    /// A `json`/`jsonb` column.
    Json,
    /// Anything else (a negative error code, or a newer host's type).
    Other(i32),
}

impl Kind {
    /// Maps the ABI value.
    pub fn from_code(code: i32) -> Kind {
        match code {
            0 => Kind::Null,
            1 => Kind::Bool,
            2 => Kind::Number,
            3 => Kind::String,
            4 => Kind::Json,
            other => Kind::Other(other),
        }
    }
}

/// A negative return code of a host function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostError {
    /// `-1`: no such field / param, or null where a value is needed.
    Absent,
    /// `-2`: the value cannot be read as the requested type.
    WrongType,
    /// `-3`: the field handle is not valid for this change.
    BadHandle,
    /// `-4`: the guest passed bytes that are not UTF-8.
    BadUtf8,
    /// `-5`: the guest passed text that is not JSON.
    BadJson,
    /// `-6`: called outside `walcast_filter`.
    NoChange,
    /// Any other negative code.
    Other(i32),
}

impl HostError {
    /// Maps a negative ABI code.
    pub fn from_code(code: i32) -> HostError {
        match code {
            raw::ABSENT => HostError::Absent,
            raw::WRONG_TYPE => HostError::WrongType,
            raw::BAD_HANDLE => HostError::BadHandle,
            raw::BAD_UTF8 => HostError::BadUtf8,
            raw::BAD_JSON => HostError::BadJson,
            raw::NO_CHANGE => HostError::NoChange,
            other => HostError::Other(other),
        }
    }

    /// `Ok(code)` for codes `>= 0`, the error otherwise.
    pub fn check(code: i32) -> Result<i32, HostError> {
        if code < 0 {
            Err(HostError::from_code(code))
        } else {
            Ok(code)
        }
    }

    /// A short description.
    pub fn as_str(&self) -> &'static str {
        match self {
            HostError::Absent => "absent",
            HostError::WrongType => "wrong type",
            HostError::BadHandle => "bad field handle",
            HostError::BadUtf8 => "not UTF-8",
            HostError::BadJson => "not JSON",
            HostError::NoChange => "no change (called outside walcast_filter)",
            HostError::Other(_) => "unknown host error",
        }
    }
}

impl core::fmt::Display for HostError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}
