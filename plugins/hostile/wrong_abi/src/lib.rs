//! Hostile test module `wrong_abi`: a well-formed filter whose `walcast_abi_version` returns 2, so
//! walcast must refuse it with `plugin requires ABI version 2, this walcast supports 1`. Exports are
//! written by hand because `export_filter!` always declares version 1.

#![no_std]

use walcast_filter_sdk::{panic_handler, Verdict};

panic_handler!();

#[no_mangle]
pub extern "C" fn walcast_abi_version() -> i32 {
    2
}

#[no_mangle]
pub extern "C" fn walcast_init() -> i32 {
    0
}

#[no_mangle]
pub extern "C" fn walcast_filter() -> i32 {
    Verdict::Pass.code()
}
