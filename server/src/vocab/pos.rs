//! Stream positions: `(commit LSN, ordinal)`, as the journal stores them, frames carry them and
//! clients hand them back (`from=`, acks), and their opaque, order-preserving text form. Reads no
//! journal.

use std::fmt;
use std::str::FromStr;

use super::Lsn;

/// Where a change sits in the stream: its transaction's commit LSN (wal2json's `lsn` on the `B`
/// message) and its 1-based ordinal among that transaction's changes.
///
/// The change LSN alone is not unique (the rows of one COPY multi-insert share it), and it is not
/// monotonic across transactions (they interleave in WAL but are decoded in commit order), so
/// positions are ordered by commit first. Appended positions are strictly increasing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub commit: Lsn,
    pub ordinal: u32,
}

impl Pos {
    /// Before everything: a reader after `ZERO` reads the whole journal.
    pub const ZERO: Pos = Pos {
        commit: Lsn(0),
        ordinal: 0,
    };

    pub const fn new(commit: Lsn, ordinal: u32) -> Pos {
        Pos { commit, ordinal }
    }
}

/// Length of the text form: 16 hex digits, `-`, 8 hex digits.
const TEXT_LEN: usize = 25;

impl Pos {
    /// Appends the text form to `out` without the formatting machinery (every change frame
    /// carries one).
    pub fn push_text(&self, out: &mut String) {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let commit = self.commit.0;
        out.extend(
            (0..16)
                .rev()
                .map(|i| HEX[((commit >> (4 * i)) & 0xF) as usize] as char),
        );
        out.push('-');
        let ordinal = self.ordinal;
        out.extend(
            (0..8)
                .rev()
                .map(|i| HEX[((ordinal >> (4 * i)) & 0xF) as usize] as char),
        );
    }
}

/// Fixed-width upper-case hex, so that comparing two texts as strings compares the positions.
/// Clients treat it as opaque; the `X/X` LSN form would not sort (`9/0` > `10/0` as text).
impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = String::with_capacity(TEXT_LEN);
        self.push_text(&mut text);
        f.write_str(&text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid journal position {0:?}: expected 16 hex digits, '-', 8 hex digits, \
     like 000000000152A058-00000003 (as sent by walcast)"
)]
pub struct ParsePosError(pub String);

impl FromStr for Pos {
    type Err = ParsePosError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParsePosError(s.to_owned());
        // Checked by hand: `from_str_radix` would also take a leading `+`, and a shorter text
        // would break the string order clients may rely on.
        let b = s.as_bytes();
        if b.len() != TEXT_LEN || b[16] != b'-' {
            return Err(err());
        }
        if !b[..16].iter().chain(&b[17..]).all(u8::is_ascii_hexdigit) {
            return Err(err());
        }
        let commit = u64::from_str_radix(&s[..16], 16).map_err(|_| err())?;
        let ordinal = u32::from_str_radix(&s[17..], 16).map_err(|_| err())?;
        Ok(Pos::new(Lsn(commit), ordinal))
    }
}

/// As its text form (the subscriptions file stores positions).
impl serde::Serialize for Pos {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Pos {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Pos, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        for pos in [
            Pos::ZERO,
            Pos::new(Lsn(0x152A058), 3),
            Pos::new(Lsn(u64::MAX), u32::MAX),
        ] {
            let text = pos.to_string();
            assert_eq!(text.len(), TEXT_LEN);
            assert_eq!(text.parse::<Pos>().unwrap(), pos);
        }
        assert_eq!(
            Pos::new(Lsn(0x152A058), 3).to_string(),
            "000000000152A058-00000003"
        );
        assert_eq!(
            "000000000152a058-0000000a".parse::<Pos>().unwrap(),
            Pos::new(Lsn(0x152A058), 10)
        );
    }

    #[test]
    fn text_order_is_position_order() {
        let mut positions = [
            Pos::new(Lsn(0x10_0000_0000), 1),
            Pos::new(Lsn(0x9_0000_0000), 2),
            Pos::new(Lsn(0x9_0000_0000), 10),
            Pos::new(Lsn(0xA), 0xFFFF),
            Pos::ZERO,
        ];
        let mut texts: Vec<String> = positions.iter().map(Pos::to_string).collect();
        positions.sort();
        texts.sort();
        let sorted: Vec<String> = positions.iter().map(Pos::to_string).collect();
        assert_eq!(texts, sorted);
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "0/1526A58",
            "000000000152A058-0000003",
            "000000000152A058-000000033",
            "000000000152A058_00000003",
            "+00000000152A058-00000003",
            "000000000152A058-+0000003",
            "00000000015 A058-00000003",
            "0000000001é2A05-00000003",
        ] {
            let err = s.parse::<Pos>().unwrap_err();
            assert!(err.to_string().contains("expected 16 hex digits"), "{s}");
        }
    }
}
