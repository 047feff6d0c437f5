//! Diagnostics: `log` to walcast's log, `set_error` for rejections and `ERROR` verdicts, the
//! `log_*!` macros and the `ErrorMessage` trait that lets `Result`s carry their message. Does not
//! rate-limit: the host does.

use core::fmt::{Arguments, Write};

use crate::params::ParamError;
use crate::text::StackStr;
use crate::{raw, HostError};

/// Log level for [`log`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Level {
    /// `0`
    Error = 0,
    /// `1`
    Warn = 1,
    /// `2`
    Info = 2,
    /// `3`
    Debug = 3,
}

/// Writes `message` to walcast's log, tagged with the plugin name (rate-limited by the host).
/// Never log row values that may be sensitive.
pub fn log(level: Level, message: &str) {
    // SAFETY: (ptr, len) is `message`.
    unsafe { raw::log(level as i32, message.as_ptr(), message.len()) }
}

/// Sets the message for a rejecting `walcast_init` or an `ERROR` verdict (the host keeps 1 KiB).
pub fn set_error(message: &str) {
    // SAFETY: (ptr, len) is `message`.
    unsafe { raw::set_error(message.as_ptr(), message.len()) }
}

/// Formats into a 512-byte stack buffer (cut when longer) and logs; used by the `log_*!` macros.
/// A literal without arguments skips `core::fmt` entirely.
#[doc(hidden)]
pub fn log_fmt(level: Level, args: Arguments<'_>) {
    match args.as_str() {
        Some(s) => log(level, s),
        None => {
            let mut m = StackStr::<512>::new();
            let _ = m.write_fmt(args);
            log(level, m.as_str());
        }
    }
}

/// `log_error!("...", args)`: formats (like `format!`, cut at 512 bytes) and logs at error level.
#[macro_export]
macro_rules! log_error {
    ($($arg:tt)*) => { $crate::__private::log_fmt($crate::Level::Error, format_args!($($arg)*)) };
}

/// `log_warn!("...", args)`: like [`log_error!`] at warn level.
#[macro_export]
macro_rules! log_warn {
    ($($arg:tt)*) => { $crate::__private::log_fmt($crate::Level::Warn, format_args!($($arg)*)) };
}

/// `log_info!("...", args)`: like [`log_error!`] at info level.
#[macro_export]
macro_rules! log_info {
    ($($arg:tt)*) => { $crate::__private::log_fmt($crate::Level::Info, format_args!($($arg)*)) };
}

/// `log_debug!("...", args)`: like [`log_error!`] at debug level.
#[macro_export]
macro_rules! log_debug {
    ($($arg:tt)*) => { $crate::__private::log_fmt($crate::Level::Debug, format_args!($($arg)*)) };
}

/// A value that can become the plugin's error message (via [`set_error`]). Implemented for `str`,
/// [`StackStr`], [`ParamError`] and [`HostError`], so `init` can return `Result<(), E>` and
/// `filter` can return `Result<Verdict, E>` and use `?`.
pub trait ErrorMessage {
    /// Calls [`set_error`] with the message.
    fn set_as_error(&self);
}

impl ErrorMessage for str {
    fn set_as_error(&self) {
        set_error(self)
    }
}

impl<T: ErrorMessage + ?Sized> ErrorMessage for &T {
    fn set_as_error(&self) {
        (**self).set_as_error()
    }
}

impl<const N: usize> ErrorMessage for StackStr<N> {
    fn set_as_error(&self) {
        set_error(self.as_str())
    }
}

impl ErrorMessage for ParamError {
    fn set_as_error(&self) {
        set_error(self.message())
    }
}

impl ErrorMessage for HostError {
    fn set_as_error(&self) {
        let mut m = StackStr::<64>::new();
        m.push("host call failed: ").push(self.as_str());
        set_error(m.as_str())
    }
}
