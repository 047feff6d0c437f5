//! The export glue: `export_filter!` (the three `walcast_*` exports), `panic_handler!`, and the
//! traits that turn an `init`/`filter` return value into the ABI's `i32`. Does not hold plugin
//! state (see `Slot`).

use crate::{ErrorMessage, Verdict};

/// What an `init` function may return: `()` (accept), `bool` (`false` rejects with a generic
/// message) or `Result<(), E: ErrorMessage>` (`Err` rejects with E's message).
pub trait InitResult {
    /// `0` accepts, anything else rejects.
    fn into_code(self) -> i32;
}

impl InitResult for () {
    fn into_code(self) -> i32 {
        0
    }
}

impl InitResult for bool {
    fn into_code(self) -> i32 {
        if self {
            0
        } else {
            crate::set_error("rejected by the plugin");
            1
        }
    }
}

impl<E: ErrorMessage> InitResult for Result<(), E> {
    fn into_code(self) -> i32 {
        match self {
            Ok(()) => 0,
            Err(e) => {
                e.set_as_error();
                1
            }
        }
    }
}

/// What a `filter` function may return: a [`Verdict`], or `Result<Verdict, E: ErrorMessage>`
/// where `Err` sets E's message and answers [`Verdict::Error`].
pub trait FilterResult {
    /// The verdict's ABI value.
    fn into_code(self) -> i32;
}

impl FilterResult for Verdict {
    fn into_code(self) -> i32 {
        self.code()
    }
}

impl<E: ErrorMessage> FilterResult for Result<Verdict, E> {
    fn into_code(self) -> i32 {
        match self {
            Ok(v) => v.code(),
            Err(e) => {
                e.set_as_error();
                Verdict::Error.code()
            }
        }
    }
}

/// Support code for the macros; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::diag::log_fmt;

    /// Traps the instance (the host replaces it and reports an error for the change).
    #[cfg(target_arch = "wasm32")]
    pub fn abort() -> ! {
        #[allow(unused_unsafe)]
        // SAFETY: `unreachable` only traps; it was an `unsafe fn` in older Rust versions.
        unsafe {
            core::arch::wasm32::unreachable()
        }
    }

    /// Off wasm32 there is nothing to trap into; spin (plugins are never run on the host).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn abort() -> ! {
        loop {
            core::hint::spin_loop();
        }
    }
}

/// Exports `walcast_abi_version` (returns 1), `walcast_init` and `walcast_filter`.
///
/// - `export_filter!(filter)`: no init (every param set is accepted).
/// - `export_filter!(init, filter)`.
///
/// `init: fn(&Params) -> R` where `R:` [`InitResult`]; `filter: fn(&Change) -> R` where
/// `R:` [`FilterResult`]. Closures work too. Use it once per crate.
#[macro_export]
macro_rules! export_filter {
    ($filter:expr $(,)?) => {
        $crate::export_filter!(|_: &$crate::Params| {}, $filter);
    };
    ($init:expr, $filter:expr $(,)?) => {
        #[no_mangle]
        pub extern "C" fn walcast_abi_version() -> i32 {
            $crate::ABI_VERSION
        }

        #[no_mangle]
        pub extern "C" fn walcast_init() -> i32 {
            $crate::InitResult::into_code(($init)(&$crate::Params))
        }

        #[no_mangle]
        pub extern "C" fn walcast_filter() -> i32 {
            $crate::FilterResult::into_code(($filter)(&$crate::Change))
        }
    };
}

/// Defines the `#[panic_handler]` a `no_std` cdylib needs: a panic traps the instance (walcast
/// replaces it and sends the group an `error` frame). Put `panic_handler!();` once in the plugin's
/// `lib.rs`; leave it out if the crate links `std`. Not defined under `cfg(test)`, where the test
/// harness brings `std`'s handler.
#[macro_export]
macro_rules! panic_handler {
    () => {
        #[cfg(not(test))]
        #[panic_handler]
        fn __walcast_panic(_info: &::core::panic::PanicInfo<'_>) -> ! {
            $crate::__private::abort()
        }
    };
}
