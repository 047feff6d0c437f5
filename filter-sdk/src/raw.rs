//! Raw `walcast_v1` imports, exactly as ABI.md lists them; the safe API lives in the other modules.
//!
//! On wasm32 these are host imports. On other targets they are stubs that behave like calls made
//! outside `walcast_filter` (`NO_CHANGE`), so the SDK and plugins still `cargo check`/`cargo test`
//! on the host; nothing here is meant to run there.
//!
//! Pointers and lengths are `*const u8`/`usize`, which are `i32` in the wasm signature.

#![allow(missing_docs)]

/// `ABSENT`: no such field / param, or null where a value is needed.
pub const ABSENT: i32 = -1;
/// `WRONG_TYPE`: the value cannot be read as the requested type.
pub const WRONG_TYPE: i32 = -2;
/// `BAD_HANDLE`: the field handle is not valid for this change.
pub const BAD_HANDLE: i32 = -3;
/// `BAD_UTF8`: the guest passed bytes that are not UTF-8.
pub const BAD_UTF8: i32 = -4;
/// `BAD_JSON`: the guest passed text that is not JSON.
pub const BAD_JSON: i32 = -5;
/// `NO_CHANGE`: called outside `walcast_filter`.
pub const NO_CHANGE: i32 = -6;

#[cfg(target_arch = "wasm32")]
#[link(wasm_import_module = "walcast_v1")]
extern "C" {
    // The change.
    pub fn op() -> i32;
    pub fn schema(ptr: *mut u8, cap: usize) -> i32;
    pub fn table(ptr: *mut u8, cap: usize) -> i32;
    pub fn field(image: i32, name_ptr: *const u8, name_len: usize) -> i32;
    pub fn field_type(handle: i32) -> i32;
    pub fn field_i64(handle: i32, out_ptr: *mut u8) -> i32;
    pub fn field_f64(handle: i32, out_ptr: *mut u8) -> i32;
    pub fn field_bool(handle: i32) -> i32;
    pub fn field_str(handle: i32, ptr: *mut u8, cap: usize) -> i32;
    pub fn field_eq_str(handle: i32, ptr: *const u8, len: usize) -> i32;
    pub fn field_raw(handle: i32, ptr: *mut u8, cap: usize) -> i32;
    pub fn field_changed(name_ptr: *const u8, name_len: usize) -> i32;
    pub fn field_count(image: i32) -> i32;
    pub fn field_at(image: i32, index: i32) -> i32;
    pub fn field_name(handle: i32, ptr: *mut u8, cap: usize) -> i32;

    // Params.
    pub fn param(key_ptr: *const u8, key_len: usize, ptr: *mut u8, cap: usize) -> i32;

    // Output builder.
    pub fn out_clear(image: i32) -> i32;
    pub fn out_copy(image: i32, name_ptr: *const u8, name_len: usize) -> i32;
    pub fn out_remove(image: i32, name_ptr: *const u8, name_len: usize) -> i32;
    pub fn out_set_null(image: i32, name_ptr: *const u8, name_len: usize) -> i32;
    pub fn out_set_bool(image: i32, name_ptr: *const u8, name_len: usize, value: i32) -> i32;
    pub fn out_set_i64(image: i32, name_ptr: *const u8, name_len: usize, value: i64) -> i32;
    pub fn out_set_f64(image: i32, name_ptr: *const u8, name_len: usize, value: f64) -> i32;
    pub fn out_set_str(
        image: i32,
        name_ptr: *const u8,
        name_len: usize,
        ptr: *const u8,
        len: usize,
    ) -> i32;
    pub fn out_set_json(
        image: i32,
        name_ptr: *const u8,
        name_len: usize,
        ptr: *const u8,
        len: usize,
    ) -> i32;

    // Diagnostics.
    pub fn log(level: i32, ptr: *const u8, len: usize);
    pub fn set_error(ptr: *const u8, len: usize);
}

#[cfg(not(target_arch = "wasm32"))]
pub use self::stubs::*;

/// Host-target stand-ins: every call answers as if made outside `walcast_filter`.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::missing_safety_doc, unused_variables)]
mod stubs {
    use super::{ABSENT, NO_CHANGE};

    pub unsafe fn op() -> i32 { NO_CHANGE }
    pub unsafe fn schema(ptr: *mut u8, cap: usize) -> i32 { NO_CHANGE }
    pub unsafe fn table(ptr: *mut u8, cap: usize) -> i32 { NO_CHANGE }
    pub unsafe fn field(image: i32, name_ptr: *const u8, name_len: usize) -> i32 { NO_CHANGE }
    pub unsafe fn field_type(handle: i32) -> i32 { NO_CHANGE }
    pub unsafe fn field_i64(handle: i32, out_ptr: *mut u8) -> i32 { NO_CHANGE }
    pub unsafe fn field_f64(handle: i32, out_ptr: *mut u8) -> i32 { NO_CHANGE }
    pub unsafe fn field_bool(handle: i32) -> i32 { NO_CHANGE }
    pub unsafe fn field_str(handle: i32, ptr: *mut u8, cap: usize) -> i32 { NO_CHANGE }
    pub unsafe fn field_eq_str(handle: i32, ptr: *const u8, len: usize) -> i32 { NO_CHANGE }
    pub unsafe fn field_raw(handle: i32, ptr: *mut u8, cap: usize) -> i32 { NO_CHANGE }
    pub unsafe fn field_changed(name_ptr: *const u8, name_len: usize) -> i32 { NO_CHANGE }
    pub unsafe fn field_count(image: i32) -> i32 { NO_CHANGE }
    pub unsafe fn field_at(image: i32, index: i32) -> i32 { NO_CHANGE }
    pub unsafe fn field_name(handle: i32, ptr: *mut u8, cap: usize) -> i32 { NO_CHANGE }
    pub unsafe fn param(key_ptr: *const u8, key_len: usize, ptr: *mut u8, cap: usize) -> i32 {
        ABSENT
    }
    pub unsafe fn out_clear(image: i32) -> i32 { NO_CHANGE }
    pub unsafe fn out_copy(image: i32, name_ptr: *const u8, name_len: usize) -> i32 { NO_CHANGE }
    pub unsafe fn out_remove(image: i32, name_ptr: *const u8, name_len: usize) -> i32 {
        NO_CHANGE
    }
    pub unsafe fn out_set_null(image: i32, name_ptr: *const u8, name_len: usize) -> i32 {
        NO_CHANGE
    }
    pub unsafe fn out_set_bool(image: i32, name_ptr: *const u8, name_len: usize, value: i32) -> i32 {
        NO_CHANGE
    }
    pub unsafe fn out_set_i64(image: i32, name_ptr: *const u8, name_len: usize, value: i64) -> i32 {
        NO_CHANGE
    }
    pub unsafe fn out_set_f64(image: i32, name_ptr: *const u8, name_len: usize, value: f64) -> i32 {
        NO_CHANGE
    }
    pub unsafe fn out_set_str(
        image: i32,
        name_ptr: *const u8,
        name_len: usize,
        ptr: *const u8,
        len: usize,
    ) -> i32 {
        NO_CHANGE
    }
    pub unsafe fn out_set_json(
        image: i32,
        name_ptr: *const u8,
        name_len: usize,
        ptr: *const u8,
        len: usize,
    ) -> i32 {
        NO_CHANGE
    }
    pub unsafe fn log(level: i32, ptr: *const u8, len: usize) {}
    pub unsafe fn set_error(ptr: *const u8, len: usize) {}
}
