//! Subscription params (`plugin.<key>=value` in the query string) and the errors that explain a bad
//! one to the client. Does not decide which params a plugin needs: that is the plugin's `init`.

use crate::text::{copy_into, Copied, StackStr};
use crate::raw;

/// The subscription's `plugin.<key>` params. Available in `walcast_init` and `walcast_filter`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Params;

impl Params {
    /// Copies the value of `plugin.<key>` into `buf`; `None` when not given.
    pub fn get_copied<'b>(&self, key: &str, buf: &'b mut [u8]) -> Option<Copied<'b>> {
        // SAFETY: (key_ptr, key_len) is `key`, (ptr, cap) is `buf`.
        copy_into(buf, |p, c| unsafe { raw::param(key.as_ptr(), key.len(), p, c) }).ok()
    }

    /// The value of `plugin.<key>`; `None` when not given or when it does not fit in `buf`
    /// (use [`Params::get_copied`] or [`Params::get_text`] to tell those apart).
    pub fn get<'b>(&self, key: &str, buf: &'b mut [u8]) -> Option<&'b str> {
        self.get_copied(key, buf)?.complete()
    }

    /// `true` when `plugin.<key>` was given (possibly empty).
    pub fn has(&self, key: &str) -> bool {
        self.get_copied(key, &mut []).is_some()
    }

    /// The value as an owned [`StackStr`]; `Err` when longer than `N` bytes.
    pub fn get_text<const N: usize>(&self, key: &str) -> Result<Option<StackStr<N>>, ParamError> {
        let mut buf = [0u8; N];
        match self.get_copied(key, &mut buf) {
            None => Ok(None),
            Some(c) if c.truncated() => Err(ParamError::too_long(key, c.full_len, N)),
            Some(c) => Ok(Some(StackStr::from_str(c.text))),
        }
    }

    /// The value parsed as a finite float (surrounding spaces ignored).
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>, ParamError> {
        self.parse(key, "a number", |s| s.parse::<f64>().ok().filter(|v| v.is_finite()))
    }

    /// The value parsed as an integer (surrounding spaces ignored).
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>, ParamError> {
        self.parse(key, "an integer", |s| s.parse::<i64>().ok())
    }

    /// The value parsed as a boolean: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, ParamError> {
        self.parse(key, "true or false", |s| match s {
            "true" | "1" | "yes" | "on" => Some(true),
            "false" | "0" | "no" | "off" => Some(false),
            _ => None,
        })
    }

    /// Like [`Params::get_text`], with `param "key" is required` when not given.
    pub fn require_text<const N: usize>(&self, key: &str) -> Result<StackStr<N>, ParamError> {
        self.get_text::<N>(key)?.ok_or_else(|| ParamError::missing(key))
    }

    /// Like [`Params::get_f64`], with `param "key" is required` when not given.
    pub fn require_f64(&self, key: &str) -> Result<f64, ParamError> {
        self.get_f64(key)?.ok_or_else(|| ParamError::missing(key))
    }

    /// Like [`Params::get_i64`], with `param "key" is required` when not given.
    pub fn require_i64(&self, key: &str) -> Result<i64, ParamError> {
        self.get_i64(key)?.ok_or_else(|| ParamError::missing(key))
    }

    fn parse<T>(
        &self,
        key: &str,
        expected: &'static str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, ParamError> {
        let mut buf = [0u8; 64];
        let c = match self.get_copied(key, &mut buf) {
            None => return Ok(None),
            Some(c) => c,
        };
        let parsed = if c.truncated() { None } else { parse(c.text.trim()) };
        match parsed {
            Some(v) => Ok(Some(v)),
            None => Err(ParamError::invalid(key, c.text, expected)),
        }
    }
}

/// Why a param is unusable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamErrorKind {
    /// Not given.
    Missing,
    /// Given but not of the expected form.
    Invalid,
    /// Longer than the plugin's buffer.
    TooLong,
}

/// Longest part of a bad value quoted back in a message.
const QUOTE_MAX: usize = 32;

/// A bad param, with a message for the client (`init` rejections become HTTP 400
/// `plugin_rejected`): `param "value" is required`,
/// `param "op" must be one of gt, gte, lt, lte, eq, got "xx"`.
///
/// The message is built up front into a small inline buffer (96 bytes; long keys or values
/// are cut) so the error stays cheap to return without an allocator.
#[derive(Clone, Copy, Debug)]
pub struct ParamError {
    kind: ParamErrorKind,
    message: StackStr<96>,
}

impl ParamError {
    fn start(key: &str, kind: ParamErrorKind) -> ParamError {
        let mut message = StackStr::new();
        message.push("param \"").push(key).push("\" ");
        ParamError { kind, message }
    }

    /// `param "key" is required`.
    pub fn missing(key: &str) -> ParamError {
        let mut e = ParamError::start(key, ParamErrorKind::Missing);
        e.message.push("is required");
        e
    }

    /// `param "key" must be <expected>, got "<value>"` (a long value is cut, ending in `...`).
    pub fn invalid(key: &str, value: &str, expected: &str) -> ParamError {
        let mut e = ParamError::start(key, ParamErrorKind::Invalid);
        let quoted = StackStr::<QUOTE_MAX>::from_str(value);
        e.message.push("must be ").push(expected).push(", got \"").push(&quoted);
        if quoted.is_truncated() {
            e.message.push("...");
        }
        e.message.push("\"");
        e
    }

    /// `param "key" is too long (<len> bytes, at most <max>)`.
    pub fn too_long(key: &str, len: usize, max: usize) -> ParamError {
        let mut e = ParamError::start(key, ParamErrorKind::TooLong);
        e.message
            .push("is too long (")
            .push_i64(len as i64)
            .push(" bytes, at most ")
            .push_i64(max as i64)
            .push(")");
        e
    }

    /// What is wrong.
    pub fn kind(&self) -> ParamErrorKind {
        self.kind
    }

    /// The message for the client.
    pub fn message(&self) -> &str {
        self.message.as_str()
    }
}

impl core::fmt::Display for ParamError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::ParamError;

    #[test]
    fn messages() {
        assert_eq!(ParamError::missing("value").message(), "param \"value\" is required");
        assert_eq!(
            ParamError::invalid("op", "xx", "one of gt, gte, lt, lte, eq").message(),
            "param \"op\" must be one of gt, gte, lt, lte, eq, got \"xx\""
        );
        let long = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
        assert_eq!(
            ParamError::invalid("v", long, "a number").message(),
            "param \"v\" must be a number, got \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...\""
        );
        assert_eq!(
            ParamError::too_long("columns", 2000, 1024).message(),
            "param \"columns\" is too long (2000 bytes, at most 1024)"
        );
    }

    #[test]
    fn stays_small() {
        assert!(core::mem::size_of::<ParamError>() <= 128);
    }
}
