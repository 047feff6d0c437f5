//! Exact comparison and canonical form of decimal number text, as Postgres prints numbers (any
//! length, exponents, `NaN`/`Infinity`). Never goes through f64/i64, never allocates when reading a
//! column value. Does not know about column types (see `predicate`).

use std::cmp::Ordering;

/// Exponents beyond this are clamped; no Postgres value comes near it, and clamping keeps the
/// arithmetic free of overflow for hostile query values like `1e999999999999999999999`.
const EXP_LIMIT: i64 = 1 << 40;

/// Canonical keys spell the number out in plain decimal while the exponent stays within this
/// bound, and fall back to `0.<digits>e<exp>` beyond it (keys must stay short and unique).
const PLAIN_LIMIT: i64 = 64;

/// A finite decimal: `0.<head><tail> × 10^exp`. The significant digits are split in two slices
/// because the text's decimal point sits between them; leading and trailing zeros are stripped,
/// so zero has no digits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Decimal<'a> {
    neg: bool,
    head: &'a [u8],
    tail: &'a [u8],
    exp: i64,
}

impl<'a> Decimal<'a> {
    fn is_zero(&self) -> bool {
        self.head.is_empty() && self.tail.is_empty()
    }

    fn signum(&self) -> i8 {
        match (self.is_zero(), self.neg) {
            (true, _) => 0,
            (false, true) => -1,
            (false, false) => 1,
        }
    }

    fn digits(&self) -> impl Iterator<Item = u8> + 'a {
        self.head.iter().chain(self.tail.iter()).copied()
    }

    fn digit_count(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    fn cmp_magnitude(&self, other: &Decimal<'_>) -> Ordering {
        // Both non-zero with a non-zero first digit: the exponent decides, then the digits.
        // Without trailing zeros, a digit string that is a prefix of the other is the smaller.
        self.exp
            .cmp(&other.exp)
            .then_with(|| self.digits().cmp(other.digits()))
    }

    fn cmp(&self, other: &Decimal<'_>) -> Ordering {
        let (a, b) = (self.signum(), other.signum());
        if a != b {
            return a.cmp(&b);
        }
        match a {
            0 => Ordering::Equal,
            1 => self.cmp_magnitude(other),
            _ => other.cmp_magnitude(self),
        }
    }
}

/// A number value in Postgres order: `-Infinity` < finite < `Infinity` < `NaN` (numeric sorts NaN
/// above everything and equal to itself).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Num<'a> {
    NegInf,
    Finite(Decimal<'a>),
    PosInf,
    NaN,
}

impl<'a> Num<'a> {
    /// Parse number text: `[+-]digits[.digits][e[+-]digits]` (either digit run may be empty, not
    /// both), or `NaN`, `Infinity`, `-Infinity`, `inf` (any case). No surrounding whitespace.
    pub(crate) fn parse(text: &'a str) -> Option<Num<'a>> {
        let b = text.as_bytes();
        let (neg, body) = match b.first() {
            Some(b'-') => (true, &b[1..]),
            Some(b'+') => (false, &b[1..]),
            _ => (false, b),
        };
        if body.first().is_some_and(|c| c.is_ascii_alphabetic()) {
            return special(neg, body);
        }
        let mut i = 0;
        while i < body.len() && body[i].is_ascii_digit() {
            i += 1;
        }
        let int = &body[..i];
        let mut frac: &[u8] = &[];
        if body.get(i) == Some(&b'.') {
            let start = i + 1;
            i = start;
            while i < body.len() && body[i].is_ascii_digit() {
                i += 1;
            }
            frac = &body[start..i];
        }
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let mut exp: i64 = 0;
        if matches!(body.get(i), Some(b'e' | b'E')) {
            i += 1;
            let exp_neg = match body.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            let start = i;
            while i < body.len() && body[i].is_ascii_digit() {
                exp = (exp * 10 + i64::from(body[i] - b'0')).min(EXP_LIMIT);
                i += 1;
            }
            if i == start {
                return None;
            }
            if exp_neg {
                exp = -exp;
            }
        }
        if i != body.len() {
            return None;
        }
        Some(Num::Finite(normalise(neg, int, frac, exp)))
    }

    pub(crate) fn cmp(&self, other: &Num<'_>) -> Ordering {
        match (self, other) {
            (Num::Finite(a), Num::Finite(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Num::NegInf => 0,
            Num::Finite(_) => 1,
            Num::PosInf => 2,
            Num::NaN => 3,
        }
    }

    /// Append the canonical key: equal numbers give equal bytes, different numbers different
    /// bytes (`-0`, `007`, `1.50`, `15e-1` and `1.5` all give `1.5`).
    pub(crate) fn write_key(&self, out: &mut Vec<u8>) {
        let d = match self {
            Num::NegInf => return out.extend_from_slice(b"-Infinity"),
            Num::PosInf => return out.extend_from_slice(b"Infinity"),
            Num::NaN => return out.extend_from_slice(b"NaN"),
            Num::Finite(d) => d,
        };
        if d.is_zero() {
            out.push(b'0');
            return;
        }
        if d.neg {
            out.push(b'-');
        }
        let n = d.digit_count() as i64;
        if d.exp.abs() > PLAIN_LIMIT {
            out.extend_from_slice(b"0.");
            out.extend(d.digits());
            out.push(b'e');
            out.extend_from_slice(itoa::Buffer::new().format(d.exp).as_bytes());
        } else if d.exp <= 0 {
            out.extend_from_slice(b"0.");
            out.resize(out.len() + (-d.exp) as usize, b'0');
            out.extend(d.digits());
        } else if d.exp >= n {
            out.extend(d.digits());
            out.resize(out.len() + (d.exp - n) as usize, b'0');
        } else {
            let split = d.exp as usize;
            out.extend(d.digits().take(split));
            out.push(b'.');
            out.extend(d.digits().skip(split));
        }
    }
}

fn special(neg: bool, body: &[u8]) -> Option<Num<'static>> {
    let is = |word: &str| body.eq_ignore_ascii_case(word.as_bytes());
    if is("infinity") || is("inf") {
        Some(if neg { Num::NegInf } else { Num::PosInf })
    } else if is("nan") && !neg {
        Some(Num::NaN)
    } else {
        None
    }
}

fn normalise<'a>(neg: bool, int: &'a [u8], frac: &'a [u8], exp: i64) -> Decimal<'a> {
    let int = trim_start_zeros(int);
    let (mut head, mut tail, point) = if int.is_empty() {
        let frac_digits = trim_start_zeros(frac);
        let zeros = (frac.len() - frac_digits.len()) as i64;
        (frac_digits, &[][..], -zeros)
    } else {
        (int, frac, int.len() as i64)
    };
    tail = trim_end_zeros(tail);
    if tail.is_empty() {
        head = trim_end_zeros(head);
    }
    if head.is_empty() {
        return Decimal {
            neg: false,
            head: &[],
            tail: &[],
            exp: 0,
        };
    }
    Decimal {
        neg,
        head,
        tail,
        exp: point + exp,
    }
}

fn trim_start_zeros(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&c| c == b'0').count();
    &s[n..]
}

fn trim_end_zeros(s: &[u8]) -> &[u8] {
    let n = s.iter().rev().take_while(|&&c| c == b'0').count();
    &s[..s.len() - n]
}

/// A number constant parsed at bind time, owning its digits.
#[derive(Clone, Debug)]
pub(crate) struct NumConst {
    rank: u8,
    neg: bool,
    digits: Box<[u8]>,
    exp: i64,
}

impl NumConst {
    pub(crate) fn parse(text: &str) -> Option<NumConst> {
        let num = Num::parse(text)?;
        Some(match num {
            Num::Finite(d) => NumConst {
                rank: 1,
                neg: d.neg,
                digits: d.digits().collect(),
                exp: d.exp,
            },
            other => NumConst {
                rank: other.rank(),
                neg: false,
                digits: Box::default(),
                exp: 0,
            },
        })
    }

    pub(crate) fn as_num(&self) -> Num<'_> {
        match self.rank {
            0 => Num::NegInf,
            2 => Num::PosInf,
            3 => Num::NaN,
            _ => Num::Finite(Decimal {
                neg: self.neg,
                head: &self.digits,
                tail: &[],
                exp: self.exp,
            }),
        }
    }
}

#[cfg(test)]
#[path = "number_tests.rs"]
mod tests;
