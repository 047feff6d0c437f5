//! `like` / `ilike` patterns: compiled once at bind time, matched in time linear in the text (no
//! backtracking, no regex). `*` and `%` match any run of characters, `_` one character, `\`
//! escapes the next one. Does not decide which columns a pattern applies to.
//!
//! How a pattern matches. The pattern is cut at its wildcards `%` into segments of literals and
//! `_`: `first%s1%s2%...%last`. `first` must match at the start of the text and `last` at its end;
//! each middle segment is searched leftmost, after the end of the previous one. Leftmost is
//! enough: every occurrence of a segment spans the same number of characters, so the leftmost one
//! ends first and leaves the most text to the segments after it (any match can be moved onto the
//! greedy one segment by segment). A pattern without `%` is one segment that must span the whole
//! text. The text is read once, left to right: each segment's search starts where the previous
//! one ended, and the ends are checked directly.
//!
//! Cost, for a text of n bytes and a pattern of m (at most `limits.max_like_pattern`, 1024 by
//! default):
//! - a segment of literals only is found with `memchr::memmem` (Two-Way with SIMD prefilters,
//!   O(n + m) worst case; one byte: `memchr`): the usual `%word%`, `prefix%`, `%a%b%c` patterns
//!   are O(n + m). The first 4 such segments of a pattern keep their searcher (some 300 bytes
//!   each), later ones build it per match (O(their length));
//! - a segment of `_` only (`%___%`) skips that many characters: O(its length);
//! - a segment mixing literals and `_` (`%a_c%`) is found with the bit-parallel Shift-And
//!   automaton over the text's characters: O(n_i * ceil(k / 64)) for the n_i bytes it scans and
//!   its k characters, so at most 16 word operations per text character under the default
//!   1024-byte limit, whatever the text. Finding a segment with single-character wildcards in
//!   O(n) is not possible with a simple algorithm (the known linear-ish ones go through FFTs);
//!   the limit on the pattern is what bounds the factor;
//! - the first and last segments are compared in place: O(their length).
//!
//! So a match is O(n * ceil(k / 64) + m) with k the longest segment that mixes literals and `_`,
//! and O(n + m) without such a segment. The backtracking matcher this replaced was O(n * m)
//! (`%a%a%...%b` against `aaaa...`). `server/benches/like.rs` measures both shapes on a 1 MB text
//! and a 60 KB pattern.
//!
//! `ilike` folds the pattern's literals at compile time and the text once per match (into a
//! per-thread buffer, reused; skipped when the text has no uppercase ASCII and no non-ASCII
//! character), then matches like `like`: folding is one-to-one per character and idempotent, so
//! this is the old per-character comparison `fold(text char) == folded pattern char`.

use std::cell::RefCell;

use memchr::memmem;

/// A pattern element inside a segment (between two `%`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Lit(char),
    One,
}

/// A compiled pattern. With `fold`, literals are case-folded at compile time and the text while
/// matching.
#[derive(Clone, Debug)]
pub(crate) struct Pattern {
    /// Anchored at the start of the text (the whole text when `last` is `None`).
    first: Box<[Tok]>,
    /// Searched leftmost, in order.
    middle: Box<[Segment]>,
    /// Anchored at the end of the text; `None` when the pattern has no `%`.
    last: Option<Box<[Tok]>>,
    fold: bool,
}

/// A segment between two `%`, with how it is searched.
#[derive(Clone, Debug)]
enum Segment {
    /// One byte (an ASCII character): `memchr`.
    Byte(u8),
    /// Literals only, with a prebuilt searcher (the first `PREBUILT` such segments).
    Literal(Box<memmem::Finder<'static>>),
    /// Literals only: their UTF-8 bytes, searched with a searcher built per match (a prebuilt
    /// one is some 300 bytes: a pattern of many short segments would cost far more memory
    /// than its text).
    Needle(Box<[u8]>),
    /// `_` only: that many characters.
    Skip(usize),
    /// Literals and `_`.
    Shift(ShiftAnd),
}

impl Pattern {
    pub(crate) fn compile(pattern: &str, fold: bool) -> Pattern {
        let mut segments: Vec<Vec<Tok>> = Vec::new();
        let mut current = Vec::new();
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            let tok = match c {
                '*' | '%' => {
                    segments.push(std::mem::take(&mut current));
                    continue;
                }
                '_' => Tok::One,
                // A trailing backslash has nothing to escape and stands for itself (as in SQL).
                '\\' => Tok::Lit(chars.next().unwrap_or('\\')),
                c => Tok::Lit(c),
            };
            current.push(match tok {
                Tok::Lit(c) if fold => Tok::Lit(fold_char(c)),
                t => t,
            });
        }
        segments.push(current);
        let mut segments = segments.into_iter();
        let first = segments.next().unwrap_or_default().into_boxed_slice();
        let mut rest: Vec<Vec<Tok>> = segments.collect();
        let last = rest.pop().map(Vec::into_boxed_slice);
        // An empty segment between two wildcards (`%%`): consecutive wildcards are one.
        let mut prebuilt = 0;
        let middle = rest
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(|s| Segment::new(&s, &mut prebuilt))
            .collect();
        Pattern {
            first,
            middle,
            last,
            fold,
        }
    }

    pub(crate) fn matches(&self, text: &str) -> bool {
        if !self.fold || !needs_fold(text) {
            return self.matches_folded(text);
        }
        FOLDED.with(|buf| {
            // Matching never calls back into matching, so the buffer is free; a fresh string
            // all the same if it were not.
            let Ok(mut buf) = buf.try_borrow_mut() else {
                return self.matches_folded(&fold_str(text));
            };
            buf.clear();
            buf.extend(text.chars().map(fold_char));
            let result = self.matches_folded(&buf);
            if buf.capacity() > KEEP_FOLD_BUFFER {
                *buf = String::new();
            }
            result
        })
    }

    /// Match against a text already folded when `fold` is set.
    fn matches_folded(&self, text: &str) -> bool {
        let Some(mut pos) = match_prefix(&self.first, text) else {
            return false;
        };
        let Some(last) = &self.last else {
            return pos == text.len();
        };
        for segment in self.middle.iter() {
            match segment.find(text, pos) {
                Some(end) => pos = end,
                None => return false,
            }
        }
        matches_suffix(last, &text[pos..])
    }
}

/// Largest fold buffer kept between matches (a larger one is released after its match).
const KEEP_FOLD_BUFFER: usize = 64 * 1024;

thread_local! {
    static FOLDED: RefCell<String> = const { RefCell::new(String::new()) };
}

fn needs_fold(text: &str) -> bool {
    text.bytes()
        .any(|b| !b.is_ascii() || b.is_ascii_uppercase())
}

fn fold_str(text: &str) -> String {
    text.chars().map(fold_char).collect()
}

/// End of `toks` matched at the start of `text`.
fn match_prefix(toks: &[Tok], text: &str) -> Option<usize> {
    let mut chars = text.char_indices();
    for tok in toks {
        let (_, c) = chars.next()?;
        if let Tok::Lit(l) = *tok {
            if l != c {
                return None;
            }
        }
    }
    Some(chars.next().map_or(text.len(), |(i, _)| i))
}

/// Whether `toks` match at the end of `text`.
fn matches_suffix(toks: &[Tok], text: &str) -> bool {
    let mut chars = text.chars().rev();
    toks.iter().rev().all(|tok| match (chars.next(), *tok) {
        (None, _) => false,
        (Some(_), Tok::One) => true,
        (Some(c), Tok::Lit(l)) => c == l,
    })
}

/// Literal segments of a pattern that get a prebuilt `memmem::Finder`.
const PREBUILT: usize = 4;

impl Segment {
    /// `toks` is not empty; `prebuilt` counts the finders built so far for the pattern.
    fn new(toks: &[Tok], prebuilt: &mut usize) -> Segment {
        let literal: String = toks
            .iter()
            .filter_map(|t| match t {
                Tok::Lit(c) => Some(*c),
                Tok::One => None,
            })
            .collect();
        let literals = literal.chars().count();
        if literals == toks.len() {
            match literal.as_bytes() {
                [byte] => Segment::Byte(*byte),
                bytes if *prebuilt < PREBUILT => {
                    *prebuilt += 1;
                    Segment::Literal(Box::new(memmem::Finder::new(bytes).into_owned()))
                }
                bytes => Segment::Needle(bytes.into()),
            }
        } else if literals == 0 {
            Segment::Skip(toks.len())
        } else {
            Segment::Shift(ShiftAnd::new(toks))
        }
    }

    /// End of the leftmost occurrence in `text` starting at or after `from`.
    fn find(&self, text: &str, from: usize) -> Option<usize> {
        let rest = &text[from..];
        match self {
            Segment::Byte(byte) => memchr::memchr(*byte, rest.as_bytes()).map(|at| from + at + 1),
            Segment::Literal(finder) => finder
                .find(rest.as_bytes())
                .map(|at| from + at + finder.needle().len()),
            Segment::Needle(needle) => {
                memmem::find(rest.as_bytes(), needle).map(|at| from + at + needle.len())
            }
            Segment::Skip(n) => match rest.char_indices().nth(*n) {
                Some((at, _)) => Some(from + at),
                None => (rest.chars().count() == *n).then_some(text.len()),
            },
            Segment::Shift(automaton) => automaton.find(rest).map(|end| from + end),
        }
    }
}

/// Shift-And (Baeza-Yates–Gonnet) automaton of a segment: bit i of the state is set when the
/// segment's first i + 1 characters end at the current text character. Each text character
/// costs one mask lookup and a shift-and over `words` 64-bit words.
#[derive(Clone, Debug)]
struct ShiftAnd {
    words: usize,
    /// The segment's literal characters, sorted, with their masks (`words` each, `_` bits
    /// included) at the same index in `masks`.
    chars: Box<[char]>,
    masks: Box<[u64]>,
    /// The mask of any other character: the `_` positions.
    any: Box<[u64]>,
    /// Word and bit of the segment's last position.
    last_word: usize,
    last_bit: u64,
}

/// States of up to this many words live on the stack.
const STACK_WORDS: usize = 16;

impl ShiftAnd {
    fn new(toks: &[Tok]) -> ShiftAnd {
        let len = toks.len();
        let words = len.div_ceil(64);
        let mut chars: Vec<char> = toks
            .iter()
            .filter_map(|t| match t {
                Tok::Lit(c) => Some(*c),
                Tok::One => None,
            })
            .collect();
        chars.sort_unstable();
        chars.dedup();
        let mut any = vec![0u64; words];
        let mut masks = vec![0u64; words * chars.len()];
        for (i, tok) in toks.iter().enumerate() {
            let (word, bit) = (i / 64, 1u64 << (i % 64));
            match tok {
                Tok::One => {
                    any[word] |= bit;
                    for k in 0..chars.len() {
                        masks[k * words + word] |= bit;
                    }
                }
                Tok::Lit(c) => {
                    let k = chars.binary_search(c).unwrap_or_default();
                    masks[k * words + word] |= bit;
                }
            }
        }
        ShiftAnd {
            words,
            chars: chars.into_boxed_slice(),
            masks: masks.into_boxed_slice(),
            any: any.into_boxed_slice(),
            last_word: (len - 1) / 64,
            last_bit: 1u64 << ((len - 1) % 64),
        }
    }

    fn mask(&self, c: char) -> &[u64] {
        match self.chars.binary_search(&c) {
            Ok(k) => &self.masks[k * self.words..(k + 1) * self.words],
            Err(_) => &self.any,
        }
    }

    /// End (byte offset) of the leftmost occurrence in `text`.
    fn find(&self, text: &str) -> Option<usize> {
        if self.words == 1 {
            let mut state = 0u64;
            for (at, c) in text.char_indices() {
                state = ((state << 1) | 1) & self.mask(c)[0];
                if state & self.last_bit != 0 {
                    return Some(at + c.len_utf8());
                }
            }
            return None;
        }
        let mut stack = [0u64; STACK_WORDS];
        let mut heap = Vec::new();
        let state: &mut [u64] = if self.words <= STACK_WORDS {
            &mut stack[..self.words]
        } else {
            heap.resize(self.words, 0);
            &mut heap
        };
        // Words above `live` are zero: a shift reaches at most one word further, so only the
        // live words and the next one need updating (a text that rarely matches the segment's
        // beginning keeps the work near one word per character).
        let mut live = 0usize;
        for (at, c) in text.char_indices() {
            let mask = self.mask(c);
            let mut carry = 1u64;
            let end = (live + 1).min(self.words);
            live = 0;
            for (i, (word, m)) in state[..end].iter_mut().zip(mask).enumerate() {
                let shifted = (*word << 1) | carry;
                carry = *word >> 63;
                *word = shifted & m;
                if *word != 0 {
                    live = i + 1;
                }
            }
            if state[self.last_word] & self.last_bit != 0 {
                return Some(at + c.len_utf8());
            }
        }
        None
    }
}

/// Simple (one-to-one) case folding by lowercasing, as Postgres `ILIKE` compares `lower()` of both
/// sides. Characters whose lowercase is several characters (`İ`) stay as they are. Idempotent
/// (`fold_char(fold_char(c)) == fold_char(c)` for every `char`; a unit test checks all of them).
pub(crate) fn fold_char(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

#[cfg(test)]
#[path = "like_tests.rs"]
mod tests;
