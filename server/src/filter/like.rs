//! `like` / `ilike` patterns: compiled once at bind time, matched iteratively (two pointers with one
//! backtrack point, no regex, no allocation). `*` and `%` match any run of characters, `_` one
//! character, `\` escapes the next one. Does not decide which columns a pattern applies to.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok {
    Lit(char),
    One,
    Many,
}

/// A compiled pattern. With `fold`, literals are case-folded at compile time and the text while
/// matching, so `ilike` costs one fold per text character.
#[derive(Clone, Debug)]
pub(crate) struct Pattern {
    toks: Box<[Tok]>,
    fold: bool,
}

impl Pattern {
    pub(crate) fn compile(pattern: &str, fold: bool) -> Pattern {
        let mut toks = Vec::with_capacity(pattern.len());
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            let tok = match c {
                '*' | '%' => {
                    // Consecutive wildcards are one wildcard; keeps backtracking linear in them.
                    if toks.last() == Some(&Tok::Many) {
                        continue;
                    }
                    Tok::Many
                }
                '_' => Tok::One,
                // A trailing backslash has nothing to escape and stands for itself (as in SQL).
                '\\' => Tok::Lit(chars.next().unwrap_or('\\')),
                c => Tok::Lit(c),
            };
            toks.push(match tok {
                Tok::Lit(c) if fold => Tok::Lit(fold_char(c)),
                t => t,
            });
        }
        Pattern {
            toks: toks.into_boxed_slice(),
            fold,
        }
    }

    pub(crate) fn matches(&self, text: &str) -> bool {
        let toks = &self.toks;
        let (mut p, mut t) = (0usize, 0usize);
        // Position after the last `Many` seen and the text position it is currently tried at.
        let mut star: Option<(usize, usize)> = None;
        loop {
            if let Some(tok) = toks.get(p) {
                let next = text[t..].chars().next();
                let step = match (*tok, next) {
                    (Tok::Many, _) => {
                        star = Some((p + 1, t));
                        p += 1;
                        continue;
                    }
                    (Tok::One, Some(c)) => Some(c.len_utf8()),
                    (Tok::Lit(l), Some(c)) if self.same(l, c) => Some(c.len_utf8()),
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
            // Mismatch: let the last `Many` swallow one more character and retry after it.
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

    fn same(&self, pattern: char, text: char) -> bool {
        pattern == text || (self.fold && pattern == fold_char(text))
    }
}

/// Simple (one-to-one) case folding by lowercasing, as Postgres `ILIKE` compares `lower()` of both
/// sides. Characters whose lowercase is several characters (`İ`) stay as they are.
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
mod tests {
    use super::Pattern;

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
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let text = "a".repeat(10_000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!like(&pattern, &text));
    }
}
