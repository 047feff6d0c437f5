//! Helpers shared by the fuzz targets: JSON checks (with column order kept), the wal2json samples
//! the targets start from, and the line formats their inputs use.

use std::fmt::Write as _;

use walcast::decode::{Change, Image, Value as ColumnValue};

/// A parsed JSON value that keeps what the targets compare: object entries in document order with
/// duplicates, numbers as their text (any size: wal2json numerics go beyond f64, which
/// `serde_json::Value` refuses without a feature that would change walcast's own behaviour in this
/// build). Strings are decoded, an unpaired surrogate escape as U+FFFD.
#[derive(Clone, Debug, PartialEq)]
pub enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl J {
    /// The value of `key` in an object (the last one when repeated); `None` otherwise.
    pub fn get(&self, key: &str) -> Option<&J> {
        match self {
            J::Obj(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn str(&self) -> Option<&str> {
        match self {
            J::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn arr(&self) -> Option<&[J]> {
        match self {
            J::Arr(a) => Some(a),
            _ => None,
        }
    }

    pub fn obj(&self) -> Option<&[(String, J)]> {
        match self {
            J::Obj(o) => Some(o),
            _ => None,
        }
    }

    /// `get(key)` as a string.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(J::str)
    }
}

/// Parse RFC 8259 JSON text (one value, JSON whitespace around it).
pub fn parse(text: &str) -> Result<J, String> {
    let mut p = Parser {
        b: text.as_bytes(),
        at: 0,
        depth: 0,
    };
    p.ws();
    let v = p.value()?;
    p.ws();
    if p.at != p.b.len() {
        return Err(format!("text after the value at byte {}", p.at));
    }
    Ok(v)
}

/// Parse `text` as JSON or panic naming `what` and showing the text.
#[track_caller]
pub fn json(text: &str, what: &str) -> J {
    match parse(text) {
        Ok(v) => v,
        Err(e) => panic!("{what} is not valid JSON ({e}): {text}"),
    }
}

struct Parser<'a> {
    b: &'a [u8],
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{what} at byte {}", self.at))
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.b[self.at..].starts_with(lit.as_bytes()) {
            self.at += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<J, String> {
        match self.b.get(self.at) {
            Some(b'{') => self.nested(|p| {
                let mut out = Vec::new();
                p.at += 1;
                p.ws();
                if p.eat("}") {
                    return Ok(J::Obj(out));
                }
                loop {
                    p.ws();
                    if p.b.get(p.at) != Some(&b'"') {
                        return p.err("expected a key");
                    }
                    let k = p.string()?;
                    p.ws();
                    if !p.eat(":") {
                        return p.err("expected ':'");
                    }
                    p.ws();
                    let v = p.value()?;
                    out.push((k, v));
                    p.ws();
                    if p.eat("}") {
                        return Ok(J::Obj(out));
                    }
                    if !p.eat(",") {
                        return p.err("expected ',' or '}'");
                    }
                }
            }),
            Some(b'[') => self.nested(|p| {
                let mut out = Vec::new();
                p.at += 1;
                p.ws();
                if p.eat("]") {
                    return Ok(J::Arr(out));
                }
                loop {
                    p.ws();
                    out.push(p.value()?);
                    p.ws();
                    if p.eat("]") {
                        return Ok(J::Arr(out));
                    }
                    if !p.eat(",") {
                        return p.err("expected ',' or ']'");
                    }
                }
            }),
            Some(b'"') => self.string().map(J::Str),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ if self.eat("null") => Ok(J::Null),
            _ if self.eat("true") => Ok(J::Bool(true)),
            _ if self.eat("false") => Ok(J::Bool(false)),
            _ => self.err("expected a value"),
        }
    }

    fn nested(&mut self, f: impl FnOnce(&mut Self) -> Result<J, String>) -> Result<J, String> {
        self.depth += 1;
        if self.depth > 1000 {
            return self.err("nested deeper than 1000");
        }
        let v = f(self);
        self.depth -= 1;
        v
    }

    fn digits(&mut self) -> usize {
        let from = self.at;
        while matches!(self.b.get(self.at), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        self.at - from
    }

    fn number(&mut self) -> Result<J, String> {
        let from = self.at;
        self.eat("-");
        if !self.eat("0") && self.digits() == 0 {
            return self.err("expected a digit");
        }
        if self.eat(".") && self.digits() == 0 {
            return self.err("expected a digit after '.'");
        }
        if matches!(self.b.get(self.at), Some(b'e' | b'E')) {
            self.at += 1;
            if !self.eat("+") {
                self.eat("-");
            }
            if self.digits() == 0 {
                return self.err("expected an exponent");
            }
        }
        let text = std::str::from_utf8(&self.b[from..self.at]).expect("ASCII");
        Ok(J::Num(text.to_owned()))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let Some(h) = self.b.get(self.at..self.at + 4) else {
            return self.err("short \\u escape");
        };
        let Some(v) = std::str::from_utf8(h)
            .ok()
            .and_then(|h| u32::from_str_radix(h, 16).ok())
        else {
            return self.err("bad \\u escape");
        };
        if h.iter().any(|c| !c.is_ascii_hexdigit()) {
            return self.err("bad \\u escape");
        }
        self.at += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, String> {
        self.at += 1;
        let mut out = String::new();
        loop {
            let run = self.at;
            while let Some(&c) = self.b.get(self.at) {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.at += 1;
            }
            out.push_str(std::str::from_utf8(&self.b[run..self.at]).expect("text is UTF-8"));
            match self.b.get(self.at) {
                None => return self.err("unterminated string"),
                Some(b'"') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.at += 1;
                    let Some(&e) = self.b.get(self.at) else {
                        return self.err("unterminated escape");
                    };
                    self.at += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let u = self.hex4()?;
                            let c = if (0xD800..0xDC00).contains(&u)
                                && self.b[self.at..].starts_with(b"\\u")
                            {
                                let back = self.at;
                                self.at += 2;
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    char::from_u32(0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00))
                                } else {
                                    self.at = back;
                                    None
                                }
                            } else {
                                char::from_u32(u)
                            };
                            out.push(c.unwrap_or('\u{fffd}'));
                        }
                        _ => {
                            self.at -= 1;
                            return self.err("bad escape");
                        }
                    }
                }
                Some(_) => return self.err("control character in a string"),
            }
        }
    }
}

/// A change frame's top level, with `new`/`old` kept in order: `None` for `null`.
#[derive(Debug)]
pub struct Frame {
    pub top: J,
    pub new: Option<Vec<(String, J)>>,
    pub old: Option<Vec<(String, J)>>,
}

/// Parse a `change` frame (valid JSON, an object, `new`/`old` objects or null) or panic.
#[track_caller]
pub fn change_frame(text: &str, what: &str) -> Frame {
    let top = json(text, what);
    let image = |key: &str| match top.get(key) {
        Some(J::Null) => None,
        Some(J::Obj(entries)) => Some(entries.clone()),
        other => panic!("{what}: {key} is {other:?}: {text}"),
    };
    let (new, old) = (image("new"), image("old"));
    Frame { top, new, old }
}

/// Whether every `json`/`jsonb` column holds JSON text, as Postgres guarantees for those types:
/// frames embed such values as they are, so only then must a frame be valid JSON.
pub fn json_columns_valid(change: &Change<'_>) -> bool {
    [Image::New, Image::Old].into_iter().all(|image| {
        change.columns(image).all(|c| match c.value {
            ColumnValue::String(s) if matches!(c.type_name, "json" | "jsonb") && !s.is_empty() => {
                parse(s).is_ok()
            }
            _ => true,
        })
    })
}


/// wal2json format-version 2 messages as wal2json 2.5 writes them (from a real capture, plus
/// the odd shapes the decoder accepts): the output target's starting changes, the query target's
/// rows to evaluate filters on.
pub const SAMPLES: &[&str] = &[
    r#"{"action":"I","xid":725,"timestamp":"2026-11-22 00:31:09.836807+00","lsn":"0/1529830","schema":"public","table":"people","columns":[{"name":"pk","type":"integer","value":1},{"name":"name","type":"text","value":"Paul"},{"name":"age","type":"integer","value":51},{"name":"height","type":"double precision","value":1.9},{"name":"big","type":"numeric","value":123456789012345678901234567890.123},{"name":"j","type":"jsonb","value":"{\"a\": [1, 2]}"},{"name":"ts","type":"timestamp with time zone","value":"2026-11-22 00:31:09.836025+00"},{"name":"b","type":"boolean","value":true},{"name":"t","type":"text","value":"xxxxxxxx"}]}"#,
    r#"{"action":"U","xid":726,"timestamp":"2026-11-22 00:31:09.837578+05:30","lsn":"0/1529A98","schema":"sales","table":"odd.table","columns":[{"name":"pk","type":"integer","value":1},{"name":"name","type":"text","value":"Q\"uo\\te\n\u00e9"},{"name":"age","type":"integer","value":null},{"name":"d","type":"date","value":"2026-11-22"},{"name":"u","type":"uuid","value":"6F9619FF-8B86-D011-B42D-00C04FC964FF"}],"identity":[{"name":"pk","type":"integer","value":1},{"name":"name","type":"text","value":"Paul"}]}"#,
    r#"{"action":"D","xid":729,"timestamp":"2026-11-22 00:31:09.838306-08","lsn":"0/1529F58","schema":"public","table":"people","identity":[{"name":"pk","type":"integer","value":2},{"name":"age","type":"integer","value":-7.50e+3},{"name":"ok","type":"boolean","value":false}]}"#,
    r#"{"action":"T","xid":730,"timestamp":"2026-11-22 00:31:09.839566+00","lsn":"0/152AB68","schema":"public","table":"people"}"#,
    r#"{"action":"U","xid":731,"timestamp":"0099-01-01 00:00:00+00:19:32 BC","lsn":"0/152AD80","schema":"public","table":"t","columns":[{"name":"id","type":"bigint","value":9223372036854775807},{"name":"doc","type":"json","value":"[{\"k\": null}, 1e5, \"x\"]"},{"name":"at","type":"timestamp without time zone","value":"2026-11-22 00:31:09"},{"name":"tm","type":"time with time zone","value":"10:00:00+02"},{"name":"tags","type":"text[]","value":"{a,b}"}]}"#,
];

/// Split `text` into `key=value` pairs, one a line (`\n`), the value after the first `=`; a line
/// without `=` is a key with an empty value. The query target's input form: like a URL query
/// already percent-decoded, but values may hold `&`.
pub fn pairs(text: &str) -> Vec<(String, String)> {
    text.split('\n')
        .filter(|l| !l.is_empty())
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (l.to_owned(), String::new()),
        })
        .collect()
}

/// An identifier as the query syntax writes it: bare, or double-quoted with `""` for a quote.
pub fn ident(out: &mut String, s: &str, force_quotes: bool) {
    let bare = !force_quotes
        && !s.is_empty()
        && !s
            .chars()
            .any(|c| matches!(c, '.' | ':' | ',' | '"') || c.is_whitespace() || c.is_control())
        && !s.starts_with('"');
    if bare {
        out.push_str(s);
    } else {
        out.push('"');
        out.push_str(&s.replace('"', "\"\""));
        out.push('"');
    }
}

/// An `in.` list item, always quoted (`""` for a quote, `\\` for a backslash).
pub fn list_item(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\"\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Debug text of bytes for panic messages (escaped, at most 2 KiB).
pub fn show(bytes: &[u8]) -> String {
    let mut s = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars().take(2048) {
            let _ = write!(s, "{}", c.escape_debug());
        }
        for b in chunk.invalid() {
            let _ = write!(s, "\\x{b:02x}");
        }
    }
    s
}
