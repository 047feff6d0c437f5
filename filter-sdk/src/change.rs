//! The change being filtered: operation, relation, field handles and typed field reads. Does not
//! build output rows (`output.rs`) or read params (`params.rs`).

use crate::output::Output;
use crate::text::{copy_into, Copied, Name, LARGE_BUF, SMALL_BUF};
use crate::{raw, HostError, Image, Kind, Op};

/// The change `walcast_filter` is called for. A unit value: every method asks the host, which
/// answers `NO_CHANGE` outside `walcast_filter` (e.g. in `walcast_init`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Change;

impl Change {
    /// The operation.
    pub fn op(&self) -> Op {
        // SAFETY: no pointers.
        Op::from_code(unsafe { raw::op() })
    }

    /// Copies the schema name into `buf`; `None` when it does not fit or there is no change.
    pub fn schema_into<'b>(&self, buf: &'b mut [u8]) -> Option<&'b str> {
        // SAFETY: (ptr, cap) is `buf`.
        copy_into(buf, |p, c| unsafe { raw::schema(p, c) }).ok()?.complete()
    }

    /// Copies the table name into `buf`; `None` when it does not fit or there is no change.
    pub fn table_into<'b>(&self, buf: &'b mut [u8]) -> Option<&'b str> {
        // SAFETY: (ptr, cap) is `buf`.
        copy_into(buf, |p, c| unsafe { raw::table(p, c) }).ok()?.complete()
    }

    /// The schema name (identifiers always fit in a [`Name`]); empty outside `walcast_filter`.
    pub fn schema(&self) -> Name {
        let mut buf = [0u8; 64];
        Name::from_str(self.schema_into(&mut buf).unwrap_or(""))
    }

    /// The table name (identifiers always fit in a [`Name`]); empty outside `walcast_filter`.
    pub fn table(&self) -> Name {
        let mut buf = [0u8; 64];
        Name::from_str(self.table_into(&mut buf).unwrap_or(""))
    }

    /// The column `name` in `image`, or `None` when the image does not carry it (an unchanged
    /// TOASTed column is absent from the new row; a delete has no new row).
    pub fn field(&self, image: Image, name: &str) -> Option<Field> {
        // SAFETY: (ptr, len) is `name`.
        let h = unsafe { raw::field(image.code(), name.as_ptr(), name.len()) };
        if h >= 0 {
            Some(Field { handle: h })
        } else {
            None
        }
    }

    /// The column `name` of the row the change is about: the new row, falling back to the old row
    /// (deletes, and unchanged TOASTed columns under `REPLICA IDENTITY FULL`).
    pub fn column(&self, name: &str) -> Option<Field> {
        self.field(Image::New, name).or_else(|| self.field(Image::Old, name))
    }

    /// Updates only: `Some(true)` when the column differs between old and new, `Some(false)` when
    /// equal, `None` when the old row does not carry it (or this is not an update).
    ///
    /// The old row is the table's replica identity: by default only the primary key, so for other
    /// columns this is `None` unless the table has `REPLICA IDENTITY FULL`.
    pub fn changed(&self, name: &str) -> Option<bool> {
        // SAFETY: (ptr, len) is `name`.
        match unsafe { raw::field_changed(name.as_ptr(), name.len()) } {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    /// Number of columns in `image` (0 when absent).
    pub fn field_count(&self, image: Image) -> usize {
        // SAFETY: no pointers.
        let n = unsafe { raw::field_count(image.code()) };
        if n > 0 {
            n as usize
        } else {
            0
        }
    }

    /// The column at `index` (table order) in `image`.
    pub fn field_at(&self, image: Image, index: usize) -> Option<Field> {
        if index > i32::MAX as usize {
            return None;
        }
        // SAFETY: no pointers.
        let h = unsafe { raw::field_at(image.code(), index as i32) };
        if h >= 0 {
            Some(Field { handle: h })
        } else {
            None
        }
    }

    /// Iterates over the columns of `image` in table order.
    pub fn fields(&self, image: Image) -> Fields {
        Fields { image, index: 0, count: self.field_count(image) }
    }

    /// The output builder for rewrites (see [`Output`]).
    pub fn output(&self) -> Output {
        Output
    }
}

/// Iterator over the columns of one image; see [`Change::fields`].
#[derive(Clone, Debug)]
pub struct Fields {
    image: Image,
    index: usize,
    count: usize,
}

impl Iterator for Fields {
    type Item = Field;

    fn next(&mut self) -> Option<Field> {
        while self.index < self.count {
            let i = self.index;
            self.index += 1;
            if let Some(f) = Change.field_at(self.image, i) {
                return Some(f);
            }
        }
        None
    }
}

/// A handle to one column value of the current change. Handles are only valid during the
/// `walcast_filter` call that produced them (the host answers `BAD_HANDLE` afterwards).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    handle: i32,
}

impl Field {
    /// Wraps a raw handle (as returned by [`raw::field`]).
    pub fn from_handle(handle: i32) -> Field {
        Field { handle }
    }

    /// The raw handle.
    pub fn handle(&self) -> i32 {
        self.handle
    }

    /// The JSON type of the value.
    pub fn kind(&self) -> Kind {
        // SAFETY: no pointers.
        Kind::from_code(unsafe { raw::field_type(self.handle) })
    }

    /// `true` when the value is `null`.
    pub fn is_null(&self) -> bool {
        self.kind() == Kind::Null
    }

    /// The value as an integer; `None` for null, non-numbers and non-integers or out of range.
    pub fn as_i64(&self) -> Option<i64> {
        let mut out: i64 = 0;
        // SAFETY: `out` is 8 writable bytes; wasm32 is little-endian like the ABI.
        let rc = unsafe { raw::field_i64(self.handle, &mut out as *mut i64 as *mut u8) };
        if rc == 0 {
            Some(out)
        } else {
            None
        }
    }

    /// The value as a float (nearest value); `None` for null and non-numbers.
    pub fn as_f64(&self) -> Option<f64> {
        let mut out: f64 = 0.0;
        // SAFETY: `out` is 8 writable bytes; wasm32 is little-endian like the ABI.
        let rc = unsafe { raw::field_f64(self.handle, &mut out as *mut f64 as *mut u8) };
        if rc == 0 {
            Some(out)
        } else {
            None
        }
    }

    /// The value as a boolean; `None` for null and non-booleans.
    pub fn as_bool(&self) -> Option<bool> {
        // SAFETY: no pointers.
        match unsafe { raw::field_bool(self.handle) } {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }

    /// Copies the text of the value (strings, json, and numbers as their text) into `buf`.
    /// `Err(Absent)` for null; `Ok` with `truncated()` when `buf` was too small.
    pub fn copy_str<'b>(&self, buf: &'b mut [u8]) -> Result<Copied<'b>, HostError> {
        let h = self.handle;
        // SAFETY: (ptr, cap) is `buf`.
        copy_into(buf, |p, c| unsafe { raw::field_str(h, p, c) })
    }

    /// The text of the value when it fits in `buf`; `None` for null or when it does not fit
    /// (use [`Field::copy_str`], [`Field::str_len`] or [`Field::with_str`] to tell those apart).
    pub fn str_into<'b>(&self, buf: &'b mut [u8]) -> Option<&'b str> {
        self.copy_str(buf).ok()?.complete()
    }

    /// Length in bytes of the value's text; `None` for null.
    pub fn str_len(&self) -> Option<usize> {
        self.copy_str(&mut []).ok().map(|c| c.full_len)
    }

    /// Calls `f` with the value's text, copied into a stack buffer of [`SMALL_BUF`] bytes and, when
    /// that is too small, [`LARGE_BUF`] bytes. Longer values arrive cut
    /// (`Copied::truncated()` is then `true`). `None` for null.
    pub fn with_str<R, F: FnOnce(Copied<'_>) -> R>(&self, f: F) -> Option<R> {
        let mut buf = [0u8; SMALL_BUF];
        match self.copy_str(&mut buf) {
            Ok(c) if !c.truncated() => Some(f(c)),
            Ok(_) => with_large(|b| self.copy_str(b), f),
            Err(_) => None,
        }
    }

    /// `true` when the value's text equals `s` (compared on the host, no copy).
    pub fn eq_str(&self, s: &str) -> bool {
        // SAFETY: (ptr, len) is `s`.
        unsafe { raw::field_eq_str(self.handle, s.as_ptr(), s.len()) == 1 }
    }

    /// Copies the value as JSON text (`"a\"b"`, `12.50`, `null`, `{"k":1}`) into `buf`.
    pub fn copy_raw<'b>(&self, buf: &'b mut [u8]) -> Result<Copied<'b>, HostError> {
        let h = self.handle;
        // SAFETY: (ptr, cap) is `buf`.
        copy_into(buf, |p, c| unsafe { raw::field_raw(h, p, c) })
    }

    /// The value as JSON text when it fits in `buf`.
    pub fn raw_into<'b>(&self, buf: &'b mut [u8]) -> Option<&'b str> {
        self.copy_raw(buf).ok()?.complete()
    }

    /// Like [`Field::with_str`], for the JSON text of the value.
    pub fn with_raw<R, F: FnOnce(Copied<'_>) -> R>(&self, f: F) -> Option<R> {
        let mut buf = [0u8; SMALL_BUF];
        match self.copy_raw(&mut buf) {
            Ok(c) if !c.truncated() => Some(f(c)),
            Ok(_) => with_large(|b| self.copy_raw(b), f),
            Err(_) => None,
        }
    }

    /// Copies the column name into `buf`.
    pub fn name_into<'b>(&self, buf: &'b mut [u8]) -> Option<&'b str> {
        let h = self.handle;
        // SAFETY: (ptr, cap) is `buf`.
        copy_into(buf, |p, c| unsafe { raw::field_name(h, p, c) }).ok()?.complete()
    }

    /// The column name (identifiers always fit in a [`Name`]).
    pub fn name(&self) -> Name {
        let mut buf = [0u8; 64];
        Name::from_str(self.name_into(&mut buf).unwrap_or(""))
    }
}

/// The retry path of the `with_*` helpers, out of line so the common case keeps a small frame.
#[inline(never)]
fn with_large<R, C, F>(copy: C, f: F) -> Option<R>
where
    C: for<'b> FnOnce(&'b mut [u8]) -> Result<Copied<'b>, HostError>,
    F: FnOnce(Copied<'_>) -> R,
{
    let mut buf = [0u8; LARGE_BUF];
    copy(&mut buf).ok().map(f)
}
