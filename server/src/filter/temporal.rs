//! Dates, times and timestamps as ordered integers, parsed without allocation from Postgres ISO
//! output (`2026-11-21 23:54:51.28847+00`, `0044-03-15 BC`, `infinity`) and from RFC 3339 query
//! values (`2026-11-21T23:54:51Z`). Does not format; does not know about `DateStyle` other than ISO
//! (the replication connection keeps the server's settings, which default to ISO).

use chrono::NaiveDate;

const NANOS_PER_SEC: i128 = 1_000_000_000;
const NANOS_PER_DAY: i128 = 86_400 * NANOS_PER_SEC;

/// `+infinity` / `-infinity` sort after / before every instant, as in Postgres.
pub(crate) const INFINITY: i128 = i128::MAX;
pub(crate) const NEG_INFINITY: i128 = i128::MIN;

/// Parse a timestamp (or a bare date, meaning midnight) into nanoseconds since 1970-01-01 UTC.
/// With `zoned` (timestamptz) an offset is applied (none means UTC); without it the offset is
/// ignored, as Postgres ignores it when casting text to `timestamp without time zone`.
pub(crate) fn parse_timestamp(text: &str, zoned: bool) -> Option<i128> {
    if let Some(inf) = infinity(text) {
        return Some(inf);
    }
    let mut cur = Cursor {
        s: text.as_bytes(),
        i: 0,
    };
    let year = cur.digits(1, 9)?;
    cur.expect(b'-')?;
    let month = cur.digits(2, 2)?;
    cur.expect(b'-')?;
    let day = cur.digits(2, 2)?;
    let mut time = 0i128;
    let mut offset = 0i128;
    if matches!(cur.peek(), Some(b'T' | b't' | b' '))
        && cur.peek_at(1).is_some_and(|c| c.is_ascii_digit())
    {
        cur.i += 1;
        time = cur.time_of_day()?;
        offset = cur.offset()?;
    }
    let bc = cur.era()?;
    if !cur.done() {
        return None;
    }
    let days = days_from_epoch(year, month, day, bc)?;
    let offset = if zoned { offset } else { 0 };
    Some(days * NANOS_PER_DAY + time - offset)
}

/// A date (or a timestamp, truncated to its date as a cast to `date` does) as nanoseconds of its
/// midnight, so dates share the instant ordering.
pub(crate) fn parse_date(text: &str) -> Option<i128> {
    let t = parse_timestamp(text, false)?;
    if t == INFINITY || t == NEG_INFINITY {
        return Some(t);
    }
    Some(t.div_euclid(NANOS_PER_DAY) * NANOS_PER_DAY)
}

/// A time of day (`12:34:56.789`, `24:00:00`, `12:00:00+02`) in nanoseconds. With `zoned` (timetz)
/// the offset is subtracted, so values compare by their UTC instant as Postgres orders timetz.
pub(crate) fn parse_time(text: &str, zoned: bool) -> Option<i128> {
    let mut cur = Cursor {
        s: text.as_bytes(),
        i: 0,
    };
    let time = cur.time_of_day()?;
    let offset = cur.offset()?;
    if !cur.done() {
        return None;
    }
    Some(if zoned { time - offset } else { time })
}

fn infinity(text: &str) -> Option<i128> {
    if text.eq_ignore_ascii_case("infinity") || text.eq_ignore_ascii_case("+infinity") {
        Some(INFINITY)
    } else if text.eq_ignore_ascii_case("-infinity") {
        Some(NEG_INFINITY)
    } else {
        None
    }
}

fn days_from_epoch(year: i64, month: i64, day: i64, bc: bool) -> Option<i128> {
    // Postgres has no year 0: 1 BC is astronomical year 0.
    let year = if bc { 1 - year } else { year };
    let year = i32::try_from(year).ok()?;
    let date = NaiveDate::from_ymd_opt(year, u32::try_from(month).ok()?, u32::try_from(day).ok()?)?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    Some(i128::from(date.signed_duration_since(epoch).num_days()))
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn peek_at(&self, k: usize) -> Option<u8> {
        self.s.get(self.i + k).copied()
    }

    fn done(&self) -> bool {
        self.i == self.s.len()
    }

    fn expect(&mut self, c: u8) -> Option<()> {
        (self.peek() == Some(c)).then(|| self.i += 1)
    }

    /// At least `min` and at most `max` ASCII digits as a number.
    fn digits(&mut self, min: usize, max: usize) -> Option<i64> {
        let start = self.i;
        let mut v: i64 = 0;
        while let Some(c) = self.peek().filter(u8::is_ascii_digit) {
            // Stop at `max`: compact offsets (`+0100`) run fields together.
            if self.i - start == max {
                break;
            }
            v = v * 10 + i64::from(c - b'0');
            self.i += 1;
        }
        (self.i - start >= min).then_some(v)
    }

    /// `HH:MM[:SS[.fraction]]`; `24:00:00` is allowed as Postgres does.
    fn time_of_day(&mut self) -> Option<i128> {
        let h = self.digits(2, 2)?;
        self.expect(b':')?;
        let m = self.digits(2, 2)?;
        let mut s = 0;
        let mut nanos: i128 = 0;
        if self.peek() == Some(b':') {
            self.i += 1;
            s = self.digits(2, 2)?;
            if matches!(self.peek(), Some(b'.' | b',')) {
                self.i += 1;
                let start = self.i;
                let mut scale = NANOS_PER_SEC;
                while let Some(c) = self.peek().filter(u8::is_ascii_digit) {
                    // Digits beyond nanoseconds are dropped (Postgres keeps microseconds).
                    if scale > 1 {
                        scale /= 10;
                        nanos += i128::from(c - b'0') * scale;
                    }
                    self.i += 1;
                }
                if self.i == start {
                    return None;
                }
            }
        }
        let in_range = (h < 24 && m < 60 && s <= 60) || (h == 24 && m == 0 && s == 0 && nanos == 0);
        if !in_range {
            return None;
        }
        Some(i128::from(h * 3600 + m * 60 + s) * NANOS_PER_SEC + nanos)
    }

    /// Optional `Z` or `±HH[[:]MM[[:]SS]]` in nanoseconds east of UTC; 0 when absent.
    fn offset(&mut self) -> Option<i128> {
        let sign: i128 = match self.peek() {
            Some(b'Z' | b'z') => {
                self.i += 1;
                return Some(0);
            }
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Some(0),
        };
        self.i += 1;
        let h = self.digits(2, 2)?;
        let mut secs = h * 3600;
        for unit in [60, 1] {
            let colon = self.peek() == Some(b':');
            let next = if colon { self.peek_at(1) } else { self.peek() };
            if !next.is_some_and(|c| c.is_ascii_digit()) {
                break;
            }
            if colon {
                self.i += 1;
            }
            secs += self.digits(2, 2)? * unit;
        }
        if h > 15 {
            // Postgres accepts offsets up to ±15:59:59.
            return None;
        }
        Some(sign * i128::from(secs) * NANOS_PER_SEC)
    }

    /// Optional ` BC` / ` AD` suffix; true for BC.
    fn era(&mut self) -> Option<bool> {
        if self.peek() != Some(b' ') {
            return Some(false);
        }
        let rest = &self.s[self.i + 1..];
        let bc = if rest.eq_ignore_ascii_case(b"BC") {
            true
        } else if rest.eq_ignore_ascii_case(b"AD") {
            false
        } else {
            return None;
        };
        self.i = self.s.len();
        Some(bc)
    }
}

#[cfg(test)]
#[path = "temporal_tests.rs"]
mod tests;
