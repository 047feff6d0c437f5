//! A small Rust lexer for the source scan: identifiers, string literals (raw ones included, as
//! written), integers and punctuation, with comments dropped, and the items under
//! `#[cfg(test)]` taken out. Enough to find constructs; not a parser.

/// One token of Rust source; comments and whitespace are dropped.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    /// A string literal's text (escapes of `"` and `\` resolved; raw strings as written).
    Str(String),
    Int(u64),
    /// Any other literal (floats, chars, byte strings) or a lifetime.
    Other,
    Punct(char),
}

/// Tokens of `src`.
pub(super) fn lex(src: &str) -> Vec<Tok> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if let Some((text, next)) = raw_string(&c, i) {
            out.push(Tok::Str(text));
            i = next;
        } else if ch == '"' || (matches!(ch, 'b' | 'c') && at(i + 1) == '"') {
            let start = if ch == '"' { i + 1 } else { i + 2 };
            let (text, next) = quoted(&c, start);
            out.push(if ch == '"' {
                Tok::Str(text)
            } else {
                Tok::Other
            });
            i = next;
        } else if ch == '\'' || (ch == 'b' && at(i + 1) == '\'') {
            let q = if ch == 'b' { i + 1 } else { i };
            if at(q + 1) == '\\' || at(q + 2) == '\'' {
                // A char literal: up to the closing quote.
                let mut j = q + 1;
                while j < c.len() && c[j] != '\'' {
                    j += if c[j] == '\\' { 2 } else { 1 };
                }
                i = j + 1;
            } else {
                // A lifetime or label.
                i = q + 1;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
            }
            out.push(Tok::Other);
        } else if ch.is_ascii_digit() {
            let start = i;
            while i < c.len()
                && (c[i].is_ascii_alphanumeric()
                    || c[i] == '_'
                    || (c[i] == '.' && at(i + 1).is_ascii_digit()))
            {
                i += 1;
            }
            let text: String = c[start..i].iter().filter(|&&d| d != '_').collect();
            out.push(match text.parse() {
                Ok(n) => Tok::Int(n),
                Err(_) => Tok::Other,
            });
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            let mut ident: String = c[start..i].iter().collect();
            if ident == "r" && at(i) == '#' {
                // A raw identifier `r#type`.
                let s = i + 1;
                i = s;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
                ident = c[s..i].iter().collect();
            }
            out.push(Tok::Ident(ident));
        } else {
            out.push(Tok::Punct(ch));
            i += 1;
        }
    }
    out
}

/// `r"..."`, `r#"..."#`, `br".."`, `cr".."` starting at `i`: the text and the index after it.
fn raw_string(c: &[char], i: usize) -> Option<(String, usize)> {
    let mut j = i;
    if matches!(c.get(j), Some('b' | 'c')) {
        j += 1;
    }
    if c.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = c[j..].iter().take_while(|&&h| h == '#').count();
    j += hashes;
    if c.get(j) != Some(&'"') {
        return None;
    }
    let start = j + 1;
    let mut k = start;
    while k < c.len() {
        if c[k] == '"'
            && c[k + 1..]
                .iter()
                .take(hashes)
                .filter(|&&h| h == '#')
                .count()
                == hashes
        {
            let text: String = c[start..k].iter().collect();
            return Some((text, k + 1 + hashes));
        }
        k += 1;
    }
    Some((c[start..].iter().collect(), c.len()))
}

/// A `"..."` string whose text starts at `start`: its text (`\"` and `\\` resolved, other
/// escapes kept as written) and the index after the closing quote.
fn quoted(c: &[char], start: usize) -> (String, usize) {
    let mut text = String::new();
    let mut k = start;
    while k < c.len() && c[k] != '"' {
        if c[k] == '\\' && k + 1 < c.len() {
            match c[k + 1] {
                '"' | '\\' => text.push(c[k + 1]),
                other => {
                    text.push('\\');
                    text.push(other);
                }
            }
            k += 2;
        } else {
            text.push(c[k]);
            k += 1;
        }
    }
    (text, k + 1)
}

/// A module declared `#[cfg(test)] mod name;`: its file is test code too.
#[derive(Debug, PartialEq)]
pub(super) enum TestModule {
    /// Found the usual way (`name.rs` or `name/` in the module's directory).
    Named(String),
    /// `#[path = ".."]`, relative to the declaring file's directory.
    Path(String),
}

/// `toks` without the items under `#[cfg(test)]`, and the test modules declared in them.
pub(super) fn strip_tests(toks: &[Tok]) -> (Vec<Tok>, Vec<TestModule>) {
    let mut out = Vec::with_capacity(toks.len());
    let mut test_mods = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if is_cfg_test(&toks[i..]) {
            i += 7;
            // Further attributes of the same item; `#[path = ".."]` says where its file is.
            let mut path = None;
            while toks.get(i) == Some(&Tok::Punct('#')) {
                if let (Some(Tok::Ident(attr)), Some(Tok::Punct('=')), Some(Tok::Str(p))) =
                    (toks.get(i + 2), toks.get(i + 3), toks.get(i + 4))
                {
                    if attr == "path" {
                        path = Some(p.clone());
                    }
                }
                i = skip_group(toks, i + 1);
            }
            let mut j = i;
            if toks.get(j) == Some(&Tok::Ident("pub".into())) {
                j += 1;
                if toks.get(j) == Some(&Tok::Punct('(')) {
                    j = skip_group(toks, j);
                }
            }
            if let (Some(Tok::Ident(word)), Some(Tok::Ident(name)), Some(Tok::Punct(';'))) =
                (toks.get(j), toks.get(j + 1), toks.get(j + 2))
            {
                if word == "mod" {
                    test_mods.push(match path.take() {
                        Some(p) => TestModule::Path(p),
                        None => TestModule::Named(name.clone()),
                    });
                }
            }
            // Skip the item: to a `;` or to the end of its first `{ .. }` block, at depth 0.
            while i < toks.len() {
                match &toks[i] {
                    Tok::Punct(';') => {
                        i += 1;
                        break;
                    }
                    Tok::Punct('{') => {
                        i = skip_group(toks, i);
                        break;
                    }
                    Tok::Punct('(' | '[') => i = skip_group(toks, i),
                    _ => i += 1,
                }
            }
        } else {
            out.push(toks[i].clone());
            i += 1;
        }
    }
    (out, test_mods)
}

fn is_cfg_test(t: &[Tok]) -> bool {
    let want = [
        Tok::Punct('#'),
        Tok::Punct('['),
        Tok::Ident("cfg".into()),
        Tok::Punct('('),
        Tok::Ident("test".into()),
        Tok::Punct(')'),
        Tok::Punct(']'),
    ];
    t.len() >= want.len() && t[..want.len()] == want
}

/// The index after the group that opens at `i` (`(`, `[` or `{`), or after one token.
pub(super) fn skip_group(toks: &[Tok], i: usize) -> usize {
    if !matches!(toks.get(i), Some(Tok::Punct('(' | '[' | '{'))) {
        return i + 1;
    }
    let mut depth = 0usize;
    let mut j = i;
    while j < toks.len() {
        match toks[j] {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    j
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference_docs::source_scan::{scan_tokens, Found};

    #[test]
    fn lexer_keeps_strings_and_drops_comments() {
        let toks = lex(
            r####"a /* b /* nested */ "no" */ "q\"x" r#"r"aw"# 'c' '\n' 'life // "not"
            b"bytes" 4_008 1.5"####,
        );
        assert_eq!(
            toks,
            [
                Tok::Ident("a".into()),
                Tok::Str("q\"x".into()),
                Tok::Str("r\"aw".into()),
                Tok::Other,
                Tok::Other,
                Tok::Other,
                Tok::Other,
                Tok::Int(4008),
                Tok::Other,
            ]
        );
    }

    #[test]
    fn test_code_is_left_out() {
        let (toks, mods) = strip_tests(&lex(
            "fn a() {} #[cfg(test)] mod tests { fn b() { api_error(\"in_test\") } } \
             #[cfg(test)] mod more; #[cfg(test)] #[allow(x)] fn c() { api_error(\"also\") } \
             fn d() { api_error(\"kept\", m) }",
        ));
        assert_eq!(mods, [TestModule::Named("more".into())]);
        let (_, mods) = strip_tests(&lex("#[cfg(test)]\n#[path = \"a_tests.rs\"]\nmod tests;"));
        assert_eq!(mods, [TestModule::Path("a_tests.rs".into())]);
        let mut found = Found::default();
        scan_tokens(&toks, "x.rs", &mut found);
        assert!(found.error_codes.keys().eq(["kept"]));
    }
}
