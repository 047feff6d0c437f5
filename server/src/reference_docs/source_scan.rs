//! What the server's own source says it answers: HTTP routes, error codes and close codes, read
//! from every `.rs` file under `server/src` (recursively, whatever the module layout) with a
//! small Rust lexer, test code left out. Owns the scan rules; comparing with the docs is
//! `reference_docs`' job.
//!
//! The rules name constructs, not files, so code can move between modules freely:
//! - routes: `.route("<path>", get(..).post(..))`; `.nest(` is refused, since a prefix would
//!   change the paths the scan sees;
//! - error codes: the first string argument of a call whose function names an error, a refusal
//!   or a rejection (`api_error("bad_query", ..)`, `error_frame(id, "bad_ack", ..)`,
//!   `refuse(status, "bad_channel", ..)`, `QueryError::new("..", ..)`; not `io_error`, whose
//!   argument names an operation, nor `ConfigError`, whose names are keys), `"error": "<code>"`
//!   (in `json!` or inside a string), `code: "<code>"`, `(StatusCode::X, "<code>", ..)`,
//!   `const X: &str = "<code>"` inside a module whose name says `code`, and the arms of
//!   `let error = match .. { .. => "<code>" }`;
//! - close codes: `const X: u16 = <1000..=4999>`, the discriminants of an `enum` whose name says
//!   `Close`, and such a number given to a call whose function says `close` or after `code:`.
//!
//! A documented code the rules do not find is reported with the files where it appears as a
//! string, so a new construct is taught here rather than left undetected.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::lexer::{lex, skip_group, strip_tests, TestModule, Tok};

/// Where a finding was made: a file relative to `server/src`.
pub(super) type Places = BTreeSet<String>;

/// Everything the scan found, each item with the files that produce it.
#[derive(Default, Debug)]
pub(super) struct Found {
    /// `(METHOD, path)` of every route.
    pub routes: BTreeMap<(String, String), Places>,
    pub error_codes: BTreeMap<String, Places>,
    pub close_codes: BTreeMap<u16, Places>,
    /// Every string literal of non-test code (to explain a documented code the rules miss).
    pub literals: BTreeMap<String, Places>,
    /// Constructs the scan cannot follow, with their file.
    pub unsupported: Vec<String>,
}

/// Scans every `.rs` file under `root` (test code left out).
pub(super) fn scan_tree(root: &Path) -> Found {
    let mut files = Vec::new();
    collect_rs(root, &mut files);
    files.sort();
    // Parse every file first: a `#[cfg(test)] mod x;` anywhere makes `x.rs` / `x/` beside it
    // test code.
    let mut parsed = Vec::new();
    let mut test_paths: Vec<PathBuf> = Vec::new();
    for file in &files {
        let src = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let (toks, test_mods) = strip_tests(&lex(&src));
        let dir = module_dir(file);
        for module in test_mods {
            match module {
                TestModule::Named(name) => {
                    test_paths.push(dir.join(format!("{name}.rs")));
                    test_paths.push(dir.join(&name));
                }
                TestModule::Path(p) => {
                    test_paths.push(file.parent().unwrap_or(Path::new("")).join(p));
                }
            }
        }
        parsed.push((file.clone(), toks));
    }
    let mut found = Found::default();
    for (file, toks) in parsed {
        if test_paths.iter().any(|p| file.starts_with(p)) {
            continue;
        }
        let place = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        scan_tokens(&toks, &place, &mut found);
    }
    found
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The directory holding the submodules declared in `file` (`a/b.rs` -> `a/b/`, `a/mod.rs`,
/// `lib.rs` and `main.rs` -> `a/`).
fn module_dir(file: &Path) -> PathBuf {
    let dir = file.parent().unwrap_or(Path::new("")).to_path_buf();
    match file.file_stem().and_then(|s| s.to_str()) {
        Some("mod" | "lib" | "main") => dir,
        Some(stem) => dir.join(stem),
        None => dir,
    }
}

const METHODS: [&str; 7] = ["get", "post", "put", "delete", "patch", "head", "options"];

/// `^[a-z][a-z0-9]*(_[a-z0-9]+)*$`: the shape of every machine code.
pub(super) fn is_code(text: &str) -> bool {
    let mut parts = text.split('_');
    parts.next().is_some_and(|first| {
        first.starts_with(|c: char| c.is_ascii_lowercase())
            && first
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    }) && parts.all(|p| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    })
}

fn is_close_code(n: u64) -> bool {
    (1000..=4999).contains(&n)
}

pub(super) fn scan_tokens(t: &[Tok], place: &str, found: &mut Found) {
    let ident = |i: usize| match t.get(i) {
        Some(Tok::Ident(s)) => Some(s.as_str()),
        _ => None,
    };
    let punct = |i: usize, p: char| t.get(i) == Some(&Tok::Punct(p));
    let add_code = |code: &str, found: &mut Found| {
        if is_code(code) {
            found
                .error_codes
                .entry(code.to_owned())
                .or_default()
                .insert(place.to_owned());
        }
    };
    for i in 0..t.len() {
        if let Tok::Str(text) = &t[i] {
            found
                .literals
                .entry(text.clone())
                .or_default()
                .insert(place.to_owned());
            for code in error_keys_in_text(text) {
                add_code(&code, found);
            }
        }
        // `.route("/path", get(..).post(..))`
        if punct(i, '.') && ident(i + 1) == Some("route") && punct(i + 2, '(') {
            if let Some(Tok::Str(path)) = t.get(i + 3) {
                let end = skip_group(t, i + 2);
                for j in i + 4..end {
                    if let Some(m) = ident(j) {
                        let after_sep = punct(j - 1, ',') || punct(j - 1, '.') || punct(j - 1, ':');
                        if METHODS.contains(&m) && after_sep && punct(j + 1, '(') {
                            found
                                .routes
                                .entry((m.to_ascii_uppercase(), path.clone()))
                                .or_default()
                                .insert(place.to_owned());
                        }
                    }
                }
            }
        }
        if punct(i, '.') && ident(i + 1) == Some("nest") && punct(i + 2, '(') {
            found.unsupported.push(format!(
                "{place}: `.nest(` prefixes paths the route scan cannot follow; register full \
                 paths with `.route(` or teach reference_docs/source_scan.rs the prefix"
            ));
        }
        // A call whose function names an error or a refusal (`api_error(`, `error_frame(`,
        // `refuse(`), or `<..Error>::new(`: its string arguments. Variants and helpers of other
        // error types (`JournalError::io("open", ..)`) name operations, not codes.
        if punct(i, '(') && ident(i.wrapping_sub(1)).is_some() {
            let path = call_path(t, i);
            let last = path
                .last()
                .map(|p| p.to_ascii_lowercase())
                .unwrap_or_default();
            let refusing = |name: &str| {
                let name = name.to_ascii_lowercase();
                ["error", "refus", "reject"]
                    .iter()
                    .any(|w| name.contains(w))
            };
            let error_new = path.len() >= 2 && last == "new" && refusing(&path[path.len() - 2]);
            // `io_error("read", e)` names the operation that failed.
            let io = last.split('_').any(|w| w == "io");
            let names_error = refusing(&last) && !io || error_new;
            let config = path.iter().any(|p| p == "ConfigError");
            let closes = last.contains("close");
            if names_error && !config || closes {
                // The code is the first string argument; a message may follow.
                let mut first_string = true;
                for arg in top_level_args(t, i) {
                    match (&t[arg], names_error && !config, closes) {
                        (Tok::Str(s), true, _) if first_string => {
                            first_string = false;
                            add_code(s, found);
                        }
                        (Tok::Int(n), _, true) if is_close_code(*n) => {
                            found
                                .close_codes
                                .entry(*n as u16)
                                .or_default()
                                .insert(place.to_owned());
                        }
                        _ => {}
                    }
                }
            }
        }
        // `"error": "<code>"` as tokens (json!).
        if t[i] == Tok::Str("error".into()) && punct(i + 1, ':') {
            if let Some(Tok::Str(code)) = t.get(i + 2) {
                add_code(code, found);
            }
        }
        // `code: "<code>"` and `code: <close code>`.
        if ident(i) == Some("code") && punct(i + 1, ':') && !punct(i + 2, ':') {
            match t.get(i + 2) {
                Some(Tok::Str(code)) => add_code(code, found),
                Some(Tok::Int(n)) if is_close_code(*n) => {
                    found
                        .close_codes
                        .entry(*n as u16)
                        .or_default()
                        .insert(place.to_owned());
                }
                _ => {}
            }
        }
        // `(StatusCode::X, "<code>"`
        if ident(i) == Some("StatusCode")
            && punct(i + 1, ':')
            && punct(i + 2, ':')
            && ident(i + 3).is_some()
            && punct(i + 4, ',')
        {
            if let Some(Tok::Str(code)) = t.get(i + 5) {
                add_code(code, found);
            }
        }
        // `enum CloseCode { SlowConsumer = 4008, .. }`
        if ident(i) == Some("enum")
            && ident(i + 1).is_some_and(|n| n.contains("Close"))
            && punct(i + 2, '{')
        {
            let end = skip_group(t, i + 2);
            for j in i + 3..end {
                if let (Some(_), true, Some(Tok::Int(n))) =
                    (ident(j), punct(j + 1, '='), t.get(j + 2))
                {
                    if is_close_code(*n) {
                        found
                            .close_codes
                            .entry(*n as u16)
                            .or_default()
                            .insert(place.to_owned());
                    }
                }
            }
        }
        // `const X: u16 = 4008;`
        if ident(i) == Some("const")
            && punct(i + 2, ':')
            && ident(i + 3) == Some("u16")
            && punct(i + 4, '=')
        {
            if let Some(Tok::Int(n)) = t.get(i + 5) {
                if is_close_code(*n) {
                    found
                        .close_codes
                        .entry(*n as u16)
                        .or_default()
                        .insert(place.to_owned());
                }
            }
        }
        // `mod code { pub const X: &str = "<code>"; }`
        if ident(i) == Some("mod")
            && ident(i + 1).is_some_and(|m| m.contains("code"))
            && punct(i + 2, '{')
        {
            let end = skip_group(t, i + 2);
            for j in i + 3..end {
                if ident(j) == Some("const") && punct(j + 2, ':') && punct(j + 3, '&') {
                    let mut k = j + 4;
                    while k < end && !punct(k, '=') {
                        k += 1;
                    }
                    if let Some(Tok::Str(code)) = t.get(k + 1) {
                        add_code(code, found);
                    }
                }
            }
        }
        // `let error = match x { .. => "<code>", .. }`
        if ident(i) == Some("let")
            && ident(i + 1).is_some_and(|n| n.contains("error") || n.contains("code"))
            && punct(i + 2, '=')
            && ident(i + 3) == Some("match")
        {
            let mut open = i + 4;
            while open < t.len() && !punct(open, '{') {
                open = if punct(open, '(') {
                    skip_group(t, open)
                } else {
                    open + 1
                };
            }
            let end = skip_group(t, open);
            let mut depth = 0usize;
            for j in open..end {
                match t[j] {
                    Tok::Punct('(' | '[' | '{') => depth += 1,
                    Tok::Punct(')' | ']' | '}') => depth = depth.saturating_sub(1),
                    _ => {}
                }
                if depth == 1 && punct(j, '=') && punct(j + 1, '>') {
                    if let Some(Tok::Str(code)) = t.get(j + 2) {
                        add_code(code, found);
                    }
                }
            }
        }
    }
}

/// The identifiers of the path called by the `(` at `open`: `a::b::c(` -> `[a, b, c]`.
fn call_path(t: &[Tok], open: usize) -> Vec<String> {
    let mut path = Vec::new();
    let mut j = open;
    while j > 0 {
        match &t[j - 1] {
            Tok::Ident(name) => {
                path.push(name.clone());
                j -= 1;
                if j >= 2 && t[j - 1] == Tok::Punct(':') && t[j - 2] == Tok::Punct(':') {
                    j -= 2;
                } else {
                    break;
                }
            }
            _ => break,
        }
    }
    path.reverse();
    path
}

/// Indices of the tokens that make up a whole argument on their own (a lone literal) in the
/// call whose `(` is at `open`.
fn top_level_args(t: &[Tok], open: usize) -> Vec<usize> {
    let end = skip_group(t, open);
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = open + 1;
    for (j, tok) in t.iter().enumerate().take(end).skip(open) {
        match tok {
            Tok::Punct('(' | '[' | '{') => depth += 1,
            Tok::Punct(')' | ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        let closes_arg = (depth == 1 && *tok == Tok::Punct(',')) || (depth == 0 && j + 1 == end);
        if closes_arg {
            if j == start + 1 {
                out.push(start);
            }
            start = j + 1;
        }
    }
    out
}

/// `"error":"<code>"` inside a string's text (frames written by hand).
fn error_keys_in_text(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(r#""error""#) {
        rest = &rest[at + 7..];
        let after = rest.trim_start();
        if let Some(value) = after.strip_prefix(':') {
            let value = value.trim_start();
            if let Some(value) = value.strip_prefix('"') {
                if let Some(end) = value.find('"') {
                    out.push(value[..end].to_owned());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(src: &str) -> Found {
        let (toks, _) = strip_tests(&lex(src));
        let mut found = Found::default();
        scan_tokens(&toks, "x.rs", &mut found);
        found
    }

    fn codes(found: &Found) -> Vec<&str> {
        found.error_codes.keys().map(String::as_str).collect()
    }

    #[test]
    fn every_error_construct_is_found() {
        let found = scan(
            r###"
            fn f() {
                api_error("a_one", format!("x {y}"));
                client::error_frame(Some(&id), "b_two", &reason);
                refuse(StatusCode::BAD_REQUEST, "c_three", problem);
                json!({"type": "error", "error": "d_four", "message": m});
                text.push_str(r#"{"type":"error","error":"e_five","lsn":""#);
                Refusal { code: "f_six", message };
                let (status, code) = (StatusCode::CONFLICT, "g_seven", m);
                let error = match code { X => "h_eight", Y => return Err(z), _ => "i_nine" };
                ConfigError::invalid("not_a_code", "msg");
                QueryError::new("k_eleven", "msg");
                Rejection::new("l_twelve", "msg");
                reject(StatusCode::GONE, "m_thirteen", m);
                JournalError::io("open", &path);
                self.io_error("read", e);
                DecodeError::BadType("xid");
                tracing::error!("not_either");
                other("nor_this");
            }
            pub mod code { pub const J: &str = "j_ten"; }
            "###,
        );
        assert_eq!(
            codes(&found),
            [
                "a_one",
                "b_two",
                "c_three",
                "d_four",
                "e_five",
                "f_six",
                "g_seven",
                "h_eight",
                "i_nine",
                "j_ten",
                "k_eleven",
                "l_twelve",
                "m_thirteen"
            ]
        );
    }

    #[test]
    fn routes_and_close_codes_are_found() {
        let found = scan(
            r#"
            pub const SLOW: u16 = 4008;
            #[repr(u16)] pub enum CloseCode { Away = 1001, Gone = 4012 }
            const PORT: u16 = 5432;
            fn r() -> Router {
                Router::new()
                    .route("/a", get(h))
                    .route("/b/{x}", routing::delete(d).post(p))
                    .route("/c", get(super::view::index))
            }
            fn c() { signal.close_with(4011, None); CloseFrame { code: 1011, reason }; }
            "#,
        );
        let routes: Vec<(&str, &str)> = found
            .routes
            .keys()
            .map(|(m, p)| (m.as_str(), p.as_str()))
            .collect();
        assert_eq!(
            routes,
            [
                ("DELETE", "/b/{x}"),
                ("GET", "/a"),
                ("GET", "/c"),
                ("POST", "/b/{x}")
            ]
        );
        let closes: Vec<u16> = found.close_codes.keys().copied().collect();
        assert_eq!(closes, [1001, 1011, 4008, 4011, 4012]);
        assert!(scan("fn n() { r.nest(\"/v1\", x) }").unsupported.len() == 1);
    }
}
