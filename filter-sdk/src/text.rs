//! Fixed-capacity text without an allocator: `StackStr<N>` (a small owned string) and `Copied`
//! (text the host copied into a guest buffer, with the full length to detect truncation). Does not
//! call the host itself except through the `copy_into` helper the other modules share.

use core::fmt;
use core::ops::Deref;

use crate::HostError;

/// Size of the stack buffer the `with_*` helpers try first.
pub const SMALL_BUF: usize = 256;
/// Size of the second, larger stack buffer the `with_*` helpers retry with.
pub const LARGE_BUF: usize = 4096;

/// A PostgreSQL identifier always fits: NAMEDATALEN is 64 (63 bytes + NUL).
pub type Name = StackStr<64>;

/// Text the host copied into a guest buffer.
///
/// `text` is the part that fit (cut at a UTF-8 boundary); `full_len` is the length of the whole
/// value in bytes, so `truncated()` tells whether a bigger buffer is needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Copied<'a> {
    /// The copied text (possibly a prefix of the value).
    pub text: &'a str,
    /// The full length of the value in bytes, as returned by the host.
    pub full_len: usize,
}

impl<'a> Copied<'a> {
    /// `true` when the buffer was too small for the whole value.
    pub fn truncated(&self) -> bool {
        self.full_len > self.text.len()
    }

    /// The text, or `None` when it was truncated.
    pub fn complete(&self) -> Option<&'a str> {
        if self.truncated() {
            None
        } else {
            Some(self.text)
        }
    }
}

/// Runs a host copy function `call(ptr, cap)` into `buf` and interprets the result.
pub(crate) fn copy_into<F>(buf: &mut [u8], call: F) -> Result<Copied<'_>, HostError>
where
    F: FnOnce(*mut u8, usize) -> i32,
{
    let code = call(buf.as_mut_ptr(), buf.len());
    if code < 0 {
        return Err(HostError::from_code(code));
    }
    let full_len = code as usize;
    let got = if full_len < buf.len() { full_len } else { buf.len() };
    let bytes = &buf[..got];
    // The host writes UTF-8, but a cut at `cap` can split a character: keep the valid prefix.
    let text = match core::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => core::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or(""),
    };
    Ok(Copied { text, full_len })
}

/// A string of at most `N` bytes stored inline (no allocator). Appends that do not fit are cut at
/// a character boundary and mark the string as truncated; they never fail or panic.
#[derive(Clone, Copy)]
pub struct StackStr<const N: usize> {
    buf: [u8; N],
    len: usize,
    truncated: bool,
}

impl<const N: usize> StackStr<N> {
    /// An empty string.
    pub const fn new() -> Self {
        StackStr { buf: [0; N], len: 0, truncated: false }
    }

    /// A string holding (a prefix of) `s`.
    #[allow(clippy::should_implement_trait)]
    pub fn from_str(s: &str) -> Self {
        let mut out = Self::new();
        out.push(s);
        out
    }

    /// Appends `s`, cutting it at a character boundary when it does not fit.
    pub fn push(&mut self, s: &str) -> &mut Self {
        let room = N - self.len;
        let mut take = s.len();
        if take > room {
            self.truncated = true;
            take = room;
            while take > 0 && !s.is_char_boundary(take) {
                take -= 1;
            }
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        self
    }

    /// Appends a decimal integer (no `core::fmt`, to keep plugins small).
    pub fn push_i64(&mut self, v: i64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut n = v.unsigned_abs();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        if v < 0 {
            self.push("-");
        }
        // Only ASCII digits were written.
        self.push(core::str::from_utf8(&digits[i..]).unwrap_or(""))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // SAFETY: `buf[..len]` only ever receives whole UTF-8 sequences from `&str`s (see `push`).
        unsafe { core::str::from_utf8_unchecked(&self.buf[..self.len]) }
    }

    /// `true` when some appended text did not fit.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// Empties the string.
    pub fn clear(&mut self) {
        self.len = 0;
        self.truncated = false;
    }
}

impl<const N: usize> Default for StackStr<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Deref for StackStr<N> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> AsRef<str> for StackStr<N> {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> PartialEq<str> for StackStr<N> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl<const N: usize> PartialEq<&str> for StackStr<N> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl<const N: usize> fmt::Debug for StackStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for StackStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `write!` into a `StackStr` never fails: text that does not fit is cut.
impl<const N: usize> fmt::Write for StackStr<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_cuts_at_char_boundary() {
        let mut s = StackStr::<4>::new();
        s.push("ab").push("é€");
        assert_eq!(s.as_str(), "abé");
        assert!(s.is_truncated());
    }

    #[test]
    fn push_i64_formats_extremes() {
        let mut s = StackStr::<64>::new();
        s.push_i64(0).push(" ").push_i64(-42).push(" ").push_i64(i64::MIN);
        assert_eq!(s.as_str(), "0 -42 -9223372036854775808");
    }

    #[test]
    fn copy_into_reports_truncation_and_keeps_valid_prefix() {
        let mut buf = [0u8; 3];
        let c = copy_into(&mut buf, |ptr, cap| {
            let src = "aé€".as_bytes();
            let n = if src.len() < cap { src.len() } else { cap };
            unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), ptr, n) };
            src.len() as i32
        })
        .unwrap();
        assert_eq!(c.text, "aé");
        assert!(c.truncated());
        assert_eq!(c.complete(), None);
        assert_eq!(c.full_len, 6);
    }

    #[test]
    fn copy_into_maps_errors() {
        let mut buf = [0u8; 3];
        assert_eq!(copy_into(&mut buf, |_, _| -1), Err(HostError::Absent));
    }
}
