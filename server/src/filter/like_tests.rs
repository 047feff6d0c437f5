//! Tests of `like`/`ilike` patterns.

use proptest::prelude::*;

use super::{fold_char, Pattern};

fn like(p: &str, t: &str) -> bool {
    Pattern::compile(p, false).matches(t)
}

fn ilike(p: &str, t: &str) -> bool {
    Pattern::compile(p, true).matches(t)
}

#[test]
fn wildcards() {
    assert!(like("abc", "abc"));
    assert!(!like("abc", "abcd"));
    assert!(!like("abcd", "abc"));
    assert!(like("a*", "a"));
    assert!(like("a%", "abc"));
    assert!(like("*c", "abc"));
    assert!(like("%b%", "abc"));
    assert!(!like("%x%", "abc"));
    assert!(like("*", ""));
    assert!(!like("_", ""));
    assert!(like("a_c", "abc"));
    assert!(!like("a_c", "ac"));
    assert!(like("a**c", "abbbc"));
    assert!(like("*a*b*c*", "xxaxxbxxcxx"));
    assert!(!like("*a*b*c*", "xxaxxcxxbxx"));
    assert!(like("%ab%ab", "abab"));
    assert!(like("%aab", "aaab"));
    assert!(!like("", "a"));
    assert!(like("", ""));
}

#[test]
fn segments_with_one_character_wildcards() {
    assert!(like("%a_c%", "xxabcxx"));
    assert!(!like("%a_c%", "xxacxx"));
    assert!(like("%___%", "abc"));
    assert!(!like("%___%", "ab"));
    assert!(like("%___", "abc"));
    assert!(like("%_%_", "ab"));
    assert!(!like("%_%_", "a"));
    assert!(like("a%_b_%c", "axbyc"));
    assert!(!like("a%_b_%c", "abc"));
    assert!(like("%é_é%", "aéxéb"));
    // Two occurrences overlap: the leftmost one ends first.
    assert!(like("%a_a%b", "aaaab"));
    assert!(like("%a_a_a%", "xaxaxax"));
    // A segment longer than one 64-bit word of the automaton.
    let long = format!("%{}x_y%", "a_".repeat(40));
    let text = format!("zz{}xqyzz", "ab".repeat(40));
    assert!(like(&long, &text));
    assert!(!like(&long, &text.replace('q', "")));
}

#[test]
fn escapes_and_unicode() {
    assert!(like(r"100\%", "100%"));
    assert!(!like(r"100\%", "1000"));
    assert!(like(r"a\_b", "a_b"));
    assert!(!like(r"a\_b", "axb"));
    assert!(like(r"a\\b", r"a\b"));
    assert!(like("a\\", "a\\"));
    assert!(like("_é_", "aéb"));
    assert!(like("日本*", "日本語"));
    assert!(!like("ABC", "abc"));
}

#[test]
fn case_insensitive() {
    assert!(ilike("ABC", "abc"));
    assert!(ilike("abc", "ABC"));
    assert!(ilike("*ÉTÉ*", "un été chaud"));
    assert!(ilike("straße", "STRAßE"));
    assert!(ilike("σ*", "Σίσυφος"));
    assert!(!ilike("abd", "ABC"));
    assert!(ilike("%A_C%", "xxABCxx"));
    // The Kelvin sign folds to a one-byte `k`: byte offsets of the text and its fold differ.
    assert!(ilike("%k_k%", "\u{212A}x\u{212A}"));
    assert!(ilike("\u{212A}%", "k"));
}

#[test]
fn pathological_pattern_is_fast() {
    let text = "a".repeat(10_000);
    let pattern = format!("{}b", "*a".repeat(50));
    assert!(!like(&pattern, &text));
    // The old matcher's worst case, at a size it would take minutes on (10^5 x 10^4 steps).
    let text = "a".repeat(100_000);
    let pattern = format!("{}b", "%a".repeat(5_000));
    assert!(!like(&pattern, &text));
    assert!(like(&pattern, &format!("{text}b")));
    let pattern = format!("%{}b%", "a_".repeat(2_000));
    assert!(!like(&pattern, &text));
}

#[test]
fn folding_is_idempotent_for_every_char() {
    for c in (0..=0x10FFFF).filter_map(char::from_u32) {
        let f = fold_char(c);
        assert_eq!(fold_char(f), f, "{c:?}");
    }
}

/// The backtracking matcher the module had before (two pointers, one backtrack point):
/// the semantics to keep.
fn like_backtracking(pattern: &str, text: &str, fold: bool) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum T {
        Lit(char),
        One,
        Many,
    }
    let mut toks = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        let tok = match c {
            '*' | '%' => {
                if toks.last() == Some(&T::Many) {
                    continue;
                }
                T::Many
            }
            '_' => T::One,
            '\\' => T::Lit(chars.next().unwrap_or('\\')),
            c => T::Lit(c),
        };
        toks.push(match tok {
            T::Lit(c) if fold => T::Lit(fold_char(c)),
            t => t,
        });
    }
    let same = |l: char, c: char| l == c || (fold && l == fold_char(c));
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if let Some(tok) = toks.get(p) {
            let next = text[t..].chars().next();
            let step = match (*tok, next) {
                (T::Many, _) => {
                    star = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                (T::One, Some(c)) => Some(c.len_utf8()),
                (T::Lit(l), Some(c)) if same(l, c) => Some(c.len_utf8()),
                _ => None,
            };
            if let Some(n) = step {
                p += 1;
                t += n;
                continue;
            }
        } else if t == text.len() {
            return true;
        }
        let Some((sp, st)) = star else { return false };
        let Some(c) = text[st..].chars().next() else {
            return false;
        };
        let nt = st + c.len_utf8();
        star = Some((sp, nt));
        p = sp;
        t = nt;
    }
}

/// Textbook dynamic programming over (pattern position, text position): the definition.
fn like_dp(pattern: &str, text: &str, fold: bool) -> bool {
    enum T {
        Lit(char),
        One,
        Many,
    }
    let mut toks = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        toks.push(match c {
            '*' | '%' => T::Many,
            '_' => T::One,
            '\\' => T::Lit(chars.next().unwrap_or('\\')),
            c => T::Lit(c),
        });
    }
    let key = |c: char| if fold { fold_char(c) } else { c };
    let text: Vec<char> = text.chars().map(key).collect();
    // ok[j]: the tokens so far match text[..j].
    let mut ok = vec![false; text.len() + 1];
    ok[0] = true;
    for tok in &toks {
        let mut next = vec![false; text.len() + 1];
        match tok {
            T::Many => {
                let mut any = false;
                for j in 0..=text.len() {
                    any |= ok[j];
                    next[j] = any;
                }
            }
            T::One => next[1..].copy_from_slice(&ok[..text.len()]),
            T::Lit(l) => {
                for j in 1..=text.len() {
                    next[j] = ok[j - 1] && text[j - 1] == key(*l);
                }
            }
        }
        ok = next;
    }
    ok[text.len()]
}

/// Patterns and texts over a small alphabet so that matches are frequent: letters in both cases,
/// a multi-byte letter and its capital, the Kelvin sign (folds to one byte), and the wildcards.
fn pattern_strategy() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            4 => Just("a"),
            2 => Just("b"),
            1 => Just("A"),
            1 => Just("é"),
            1 => Just("É"),
            1 => Just("\u{212A}"),
            1 => Just("k"),
            3 => Just("%"),
            1 => Just("*"),
            3 => Just("_"),
            1 => Just("\\%"),
            1 => Just("\\_"),
            1 => Just("\\"),
        ],
        0..14,
    )
    .prop_map(|parts| parts.concat())
}

fn text_strategy() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            6 => Just('a'),
            3 => Just('b'),
            1 => Just('A'),
            1 => Just('é'),
            1 => Just('É'),
            1 => Just('\u{212A}'),
            1 => Just('k'),
            1 => Just('%'),
            1 => Just('_'),
            1 => Just('\\'),
        ],
        0..24,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn agrees_with_the_references(pattern in pattern_strategy(), text in text_strategy()) {
        for fold in [false, true] {
            let got = Pattern::compile(&pattern, fold).matches(&text);
            prop_assert_eq!(got, like_dp(&pattern, &text, fold),
                "dp: pattern {:?} text {:?} fold {}", pattern, text, fold);
            prop_assert_eq!(got, like_backtracking(&pattern, &text, fold),
                "old matcher: pattern {:?} text {:?} fold {}", pattern, text, fold);
        }
    }

    #[test]
    fn agrees_on_long_segments(
        parts in proptest::collection::vec((0usize..70, 0usize..3), 1..4),
        text in proptest::collection::vec(prop_oneof![Just('a'), Just('b'), Just('é')], 0..400),
    ) {
        // Segments longer than 64 characters exercise the multi-word automaton.
        let mut pattern = String::from("%");
        for (n, kind) in parts {
            for i in 0..n {
                pattern.push(match (kind, i % 3) {
                    (0, _) => '_',
                    (1, 0) => 'a',
                    (1, _) => '_',
                    _ => if i % 2 == 0 { 'a' } else { 'é' },
                });
            }
            pattern.push('%');
        }
        let text: String = text.into_iter().collect();
        let got = Pattern::compile(&pattern, false).matches(&text);
        prop_assert_eq!(got, like_dp(&pattern, &text, false), "pattern {:?} text {:?}", pattern, text);
    }
}
