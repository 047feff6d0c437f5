//! Numbers wider than simd-json takes. wal2json copies `numeric` values as Postgres prints them,
//! and Postgres prints `1e400` as a 401-digit integer; simd-json refuses any number whose value is
//! beyond f64's range, so the whole message would be lost. The decoder never uses a number's
//! value (it hands on the raw text), so such numbers are masked for the parse and put back after:
//! `0` followed by spaces, the same length, so every byte offset stays where it was. Owns the
//! detection, masking and restoring; does not parse JSON.

/// A number token this long may be out of f64 range (the largest double has 309 integer digits):
/// masked. Shorter numbers always parse.
const MASK_AT: usize = 300;

/// Whether `payload` may hold a number simd-json refuses. Such a number has a run of at least
/// `MASK_AT` digits, and any run that long covers a multiple of `MASK_AT`: looking at those bytes
/// alone costs one or two loads for a typical message, so the common path pays nothing
/// measurable. Long digit runs inside strings also answer true; masking then finds nothing to do.
#[inline]
pub(super) fn may_hold_wide_numbers(payload: &[u8]) -> bool {
    let mut at = MASK_AT - 1;
    while at < payload.len() {
        if payload[at].is_ascii_digit() && digit_run(payload, at) >= MASK_AT {
            return true;
        }
        at += MASK_AT;
    }
    false
}

/// Length of the run of ASCII digits around `at`.
#[cold]
fn digit_run(payload: &[u8], at: usize) -> usize {
    let before = payload[..at]
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_digit())
        .count();
    let after = payload[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    before + after
}

/// The original text of the masked numbers, kept across decodes so the slow path allocates only
/// when it meets a longer number than before.
#[derive(Default)]
pub(super) struct Masked {
    text: Vec<u8>,
    /// (offset in the payload, length) of each masked number, in order; `text` holds their bytes.
    spans: Vec<(usize, usize)>,
}

impl Masked {
    /// Replace every number token of at least `MASK_AT` bytes outside JSON strings with `0` and
    /// spaces (JSON whitespace, so the document stays valid with the same layout). Returns how
    /// many were masked.
    #[cold]
    #[inline(never)]
    pub(super) fn mask(&mut self, payload: &mut [u8]) -> usize {
        self.text.clear();
        self.spans.clear();
        let mut i = 0;
        let mut in_string = false;
        while i < payload.len() {
            let b = payload[i];
            if in_string {
                match b {
                    b'\\' => i += 1,
                    b'"' => in_string = false,
                    _ => {}
                }
                i += 1;
                continue;
            }
            match b {
                b'"' => {
                    in_string = true;
                    i += 1;
                }
                b'-' | b'0'..=b'9' => {
                    let len = payload[i..]
                        .iter()
                        .take_while(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                        .count();
                    if len >= MASK_AT && is_json_number(&payload[i..i + len]) {
                        let token = &mut payload[i..i + len];
                        self.text.extend_from_slice(token);
                        self.spans.push((i, len));
                        token[0] = b'0';
                        token[1..].fill(b' ');
                    }
                    i += len;
                }
                _ => i += 1,
            }
        }
        self.spans.len()
    }

    /// Put the masked numbers back. Only number bytes are touched: strings the parser unescaped in
    /// place stay as it left them.
    #[cold]
    #[inline(never)]
    pub(super) fn restore(&mut self, payload: &mut [u8]) {
        let mut from = 0;
        for &(at, len) in &self.spans {
            payload[at..at + len].copy_from_slice(&self.text[from..from + len]);
            from += len;
        }
        self.spans.clear();
    }
}

/// Whether `s` is exactly one JSON number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
pub(super) fn is_json_number(s: &[u8]) -> bool {
    let mut i = 0;
    let digits = |i: &mut usize| {
        let from = *i;
        while s.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > from
    };
    if s.get(i) == Some(&b'-') {
        i += 1;
    }
    match s.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if s.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_payloads_and_short_numbers_are_not_suspects() {
        assert!(!may_hold_wide_numbers(b""));
        assert!(!may_hold_wide_numbers(br#"{"value":12345678901234567890}"#));
        let just_short = format!(r#"{{"value":{}}}"#, "9".repeat(MASK_AT - 1));
        assert!(!may_hold_wide_numbers(just_short.as_bytes()));
    }

    #[test]
    fn every_alignment_of_a_long_run_is_found() {
        for pad in 0..MASK_AT + 3 {
            let p = format!(r#"{}{{"value":{}}}"#, " ".repeat(pad), "7".repeat(MASK_AT));
            assert!(may_hold_wide_numbers(p.as_bytes()), "pad {pad}");
        }
    }

    #[test]
    fn masks_numbers_only_and_restores_them() {
        let wide = format!("-1{}", "0".repeat(400));
        let digits_in_text = "5".repeat(400);
        let original = format!(
            r#"{{"a":"{digits_in_text}","v":{wide},"b":"x\"{digits_in_text}","w":{wide}.5,"n":7}}"#
        );
        let mut p = original.clone().into_bytes();
        let mut masked = Masked::default();
        assert_eq!(masked.mask(&mut p), 2);
        let text = String::from_utf8(p.clone()).unwrap();
        assert!(text.contains(&digits_in_text), "strings are left alone");
        assert!(!text.contains(&wide));
        assert_eq!(text.len(), original.len());
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["v"], 0);
        assert_eq!(parsed["n"], 7);
        masked.restore(&mut p);
        assert_eq!(p, original.as_bytes());
    }
}
