//! The output builder for `PASS_REWRITTEN`: edits the output row images, which start as copies of
//! the change's images. Does not decide the verdict; edits are discarded unless `walcast_filter`
//! returns [`crate::Verdict::PassRewritten`].

use crate::{raw, HostError, Image};

/// Edits the output row images of the current change (see ABI.md, "Output builder").
/// All methods return `Err(HostError::Absent)` where the ABI answers `-1` (e.g. removing a column
/// the image does not carry) and `Err(HostError::NoChange)` outside `walcast_filter`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Output;

fn unit(code: i32) -> Result<(), HostError> {
    HostError::check(code).map(|_| ())
}

impl Output {
    /// Removes every column from `image` (then add the ones to keep with [`Output::copy`]).
    pub fn clear(&self, image: Image) -> Result<(), HostError> {
        // SAFETY: no pointers.
        unit(unsafe { raw::out_clear(image.code()) })
    }

    /// Copies the original column `name` into the output `image`.
    pub fn copy(&self, image: Image, name: &str) -> Result<(), HostError> {
        // SAFETY: (ptr, len) is `name`.
        unit(unsafe { raw::out_copy(image.code(), name.as_ptr(), name.len()) })
    }

    /// Removes column `name` from the output `image`.
    pub fn remove(&self, image: Image, name: &str) -> Result<(), HostError> {
        // SAFETY: (ptr, len) is `name`.
        unit(unsafe { raw::out_remove(image.code(), name.as_ptr(), name.len()) })
    }

    /// Sets (or adds) column `name` to `null`.
    pub fn set_null(&self, image: Image, name: &str) -> Result<(), HostError> {
        // SAFETY: (ptr, len) is `name`.
        unit(unsafe { raw::out_set_null(image.code(), name.as_ptr(), name.len()) })
    }

    /// Sets (or adds) a boolean.
    pub fn set_bool(&self, image: Image, name: &str, value: bool) -> Result<(), HostError> {
        // SAFETY: (ptr, len) is `name`.
        unit(unsafe { raw::out_set_bool(image.code(), name.as_ptr(), name.len(), value as i32) })
    }

    /// Sets (or adds) an integer.
    pub fn set_i64(&self, image: Image, name: &str, value: i64) -> Result<(), HostError> {
        // SAFETY: (ptr, len) is `name`.
        unit(unsafe { raw::out_set_i64(image.code(), name.as_ptr(), name.len(), value) })
    }

    /// Sets (or adds) a float; non-finite values become `null`.
    pub fn set_f64(&self, image: Image, name: &str, value: f64) -> Result<(), HostError> {
        // SAFETY: (ptr, len) is `name`.
        unit(unsafe { raw::out_set_f64(image.code(), name.as_ptr(), name.len(), value) })
    }

    /// Sets (or adds) a string.
    pub fn set_str(&self, image: Image, name: &str, value: &str) -> Result<(), HostError> {
        // SAFETY: (ptr, len) pairs are `name` and `value`.
        unit(unsafe {
            raw::out_set_str(image.code(), name.as_ptr(), name.len(), value.as_ptr(), value.len())
        })
    }

    /// Sets (or adds) a JSON value given as text; `Err(HostError::BadJson)` when it is not JSON.
    pub fn set_json(&self, image: Image, name: &str, json: &str) -> Result<(), HostError> {
        // SAFETY: (ptr, len) pairs are `name` and `json`.
        unit(unsafe {
            raw::out_set_json(image.code(), name.as_ptr(), name.len(), json.as_ptr(), json.len())
        })
    }
}
