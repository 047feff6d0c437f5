//! The house drawn from its imports: reads every `crate::` path of `server/src` (test code left
//! out), draws which top-level module uses which, prints the graph layer by layer, and fails on
//! an import cycle between top-level modules or on a module that takes a vocabulary word (an
//! item of `vocab`) from anywhere but `vocab`. Run it on its own, graph printed:
//!
//! ```text
//! cargo test --release -p walcast --test house -- --nocapture
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The module every other one takes its shared words from; it imports none.
const VOCAB: &str = "vocab";

#[test]
fn the_house_has_no_cycle_and_one_vocabulary() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let house = House::read(&src);
    println!("{}", house.render());
    let problems = house.problems();
    assert!(
        problems.is_empty(),
        "the import graph of server/src breaks the house rules:\n  {}\n\n{}",
        problems.join("\n  "),
        house.render()
    );
}

#[test]
fn the_checks_catch_what_they_should() {
    let mut house = House::default();
    let mut uses = |from: &str, to: &str, path: &str| {
        house.modules.insert(from.to_owned());
        house.modules.insert(to.to_owned());
        house
            .edges
            .entry(from.to_owned())
            .or_default()
            .entry(to.to_owned())
            .or_default()
            .insert(path.to_owned());
    };
    uses("hub", "named", "crate::named::Store");
    uses("named", "hub", "crate::hub::SessionSignal");
    uses("vocab", "journal", "crate::journal::Journal");
    house.words = ["SessionSignal".to_owned()].into();
    assert!(!house.problems().iter().any(|p| p.contains("no vocabulary")));
    house.word_uses.push((
        "named".into(),
        "hub".into(),
        "SessionSignal".into(),
        "named/mod.rs".into(),
    ));
    house.reexports.push(("hub".into(), "hub/mod.rs".into()));
    let problems = house.problems().join("\n");
    assert!(
        problems.contains("cycle: hub -> named -> hub"),
        "{problems}"
    );
    assert!(problems.contains("vocab imports journal"), "{problems}");
    assert!(
        problems.contains("named takes the word SessionSignal from hub"),
        "{problems}"
    );
    assert!(problems.contains("hub re-exports vocabulary"), "{problems}");
}

#[test]
fn paths_in_comments_strings_and_test_modules_are_not_imports() {
    let code = r##"
        use crate::vocab::{Frame, Pos};
        // crate::hub::Hub in a comment
        /* crate::journal::Journal in a block comment */
        const S: &str = "crate::named::Store";
        const R: &str = r#"crate::auth::Principal"#;
        fn f(c: char) -> bool { c == '{' || crate::decode::ready() }
        #[cfg(test)]
        mod tests {
            use crate::source::Lsn;
        }
        fn after() { crate::metrics::Metrics::new(); }
    "##;
    let paths = crate_paths(&strip_tests(&strip_comments_and_strings(code)));
    let firsts: BTreeSet<&str> = paths.iter().map(|p| p.module.as_str()).collect();
    assert_eq!(firsts, ["decode", "metrics", "vocab"].into(), "{paths:?}");
    let words: BTreeSet<&str> = paths
        .iter()
        .filter(|p| p.module == "vocab")
        .flat_map(|p| p.names.iter().map(String::as_str))
        .collect();
    assert_eq!(words, ["Frame", "Pos"].into());
}

/// The top-level modules of `server/src` and which uses which.
#[derive(Default)]
struct House {
    modules: BTreeSet<String>,
    /// `from -> to -> the paths that make the edge`.
    edges: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    /// Items `vocab` exports.
    words: BTreeSet<String>,
    /// `(module, taken from, word, file)`: a vocabulary word named through another module.
    word_uses: Vec<(String, String, String, String)>,
    /// `(module, file)`: a module outside `vocab` that re-exports vocabulary.
    reexports: Vec<(String, String)>,
    /// `(module, word, file)`: a module outside `vocab` that defines an item named as a word.
    redefinitions: Vec<(String, String, String)>,
}

impl House {
    fn read(src: &Path) -> House {
        let mut house = House {
            words: vocabulary(&src.join(VOCAB).join("mod.rs")),
            ..House::default()
        };
        for file in rust_files(src) {
            let relative = file.strip_prefix(src).unwrap_or(&file);
            let shown = relative.display().to_string();
            let Some(module) = top_module(relative) else {
                continue;
            };
            house.modules.insert(module.clone());
            if is_test_file(relative) {
                continue;
            }
            let text = fs::read_to_string(&file).unwrap_or_else(|e| panic!("{shown}: {e}"));
            let code = strip_tests(&strip_comments_and_strings(&text));
            for path in crate_paths(&code) {
                if path.module != module {
                    house
                        .edges
                        .entry(module.clone())
                        .or_default()
                        .entry(path.module.clone())
                        .or_default()
                        .insert(path.text.clone());
                }
                if path.module != VOCAB {
                    for name in path.names.iter().filter(|n| house.words.contains(*n)) {
                        house.word_uses.push((
                            module.clone(),
                            path.module.clone(),
                            name.clone(),
                            shown.clone(),
                        ));
                    }
                }
            }
            if module != VOCAB {
                if code.contains("pub use crate::vocab")
                    || code.contains("pub(crate) use crate::vocab")
                    || code.contains("pub(super) use crate::vocab")
                {
                    house.reexports.push((module.clone(), shown.clone()));
                }
                for word in &house.words {
                    if defines(&code, word) {
                        house
                            .redefinitions
                            .push((module.clone(), word.clone(), shown.clone()));
                    }
                }
            }
        }
        house
    }

    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.words.is_empty() {
            problems.push(format!(
                "no vocabulary: {VOCAB}/mod.rs is missing or exports nothing"
            ));
        }
        for (cycle, component) in self.cycles() {
            problems.push(format!(
                "cycle: {} (all of {} reach each other)",
                cycle.join(" -> "),
                component.join(", ")
            ));
        }
        if let Some(out) = self.edges.get(VOCAB) {
            for (to, paths) in out {
                problems.push(format!(
                    "{VOCAB} imports {to} ({}): the vocabulary imports no stage",
                    join(paths)
                ));
            }
        }
        for (module, from, word, file) in &self.word_uses {
            problems.push(format!(
                "{module} takes the word {word} from {from} ({file}): take it from {VOCAB}"
            ));
        }
        for (module, file) in &self.reexports {
            problems.push(format!(
                "{module} re-exports vocabulary ({file}): its users import {VOCAB} themselves"
            ));
        }
        for (module, word, file) in &self.redefinitions {
            problems.push(format!(
                "{module} defines its own {word} ({file}): the word is {VOCAB}'s"
            ));
        }
        problems
    }

    /// Every strongly connected set of more than one module: one cycle through it, and the set.
    fn cycles(&self) -> Vec<(Vec<String>, Vec<String>)> {
        let mut cycles = Vec::new();
        let mut seen = BTreeSet::new();
        for start in &self.modules {
            if seen.contains(start) {
                continue;
            }
            let reach = self.reachable(start);
            let component: BTreeSet<&String> = reach
                .iter()
                .filter(|m| self.reachable(m).contains(start))
                .collect();
            if component.len() > 1 || self.successors(start).any(|s| s == start) {
                seen.extend(component.iter().map(|m| (*m).clone()));
                let members = component.iter().map(|m| (*m).clone()).collect();
                cycles.push((self.cycle_through(start, &component), members));
            }
        }
        cycles
    }

    fn successors<'a>(&'a self, module: &str) -> impl Iterator<Item = &'a String> {
        self.edges
            .get(module)
            .into_iter()
            .flat_map(|out| out.keys())
    }

    /// Every module `start` reaches, itself included.
    fn reachable(&self, start: &str) -> BTreeSet<String> {
        let mut reached = BTreeSet::from([start.to_owned()]);
        let mut stack = vec![start.to_owned()];
        while let Some(m) = stack.pop() {
            for next in self.successors(&m) {
                if reached.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        reached
    }

    /// A shortest path from `start` back to itself inside `component`.
    fn cycle_through(&self, start: &str, component: &BTreeSet<&String>) -> Vec<String> {
        let mut previous: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.to_owned()]);
        while let Some(m) = queue.pop_front() {
            for next in self.successors(&m) {
                if !component.contains(next) {
                    continue;
                }
                if next == start {
                    // Back from `m` to `start`, then turned around and closed.
                    let mut path = vec![m.clone()];
                    while path.last().is_some_and(|at| at != start) {
                        let at = path.last().cloned().unwrap_or_default();
                        path.push(previous[&at].clone());
                    }
                    path.reverse();
                    path.push(start.to_owned());
                    return path;
                }
                if !previous.contains_key(next) {
                    previous.insert(next.clone(), m.clone());
                    queue.push_back(next.clone());
                }
            }
        }
        vec![start.to_owned()]
    }

    /// The graph as text: modules by layer (a module sits one above the highest it uses), each
    /// with what it uses.
    fn render(&self) -> String {
        let mut layer: BTreeMap<&String, usize> = BTreeMap::new();
        // Longest path down, cut at cycles (a cycle is reported on its own).
        fn depth<'a>(
            house: &'a House,
            m: &'a String,
            layer: &mut BTreeMap<&'a String, usize>,
            on_path: &mut BTreeSet<&'a String>,
        ) -> usize {
            if let Some(d) = layer.get(m) {
                return *d;
            }
            on_path.insert(m);
            let mut d = 0;
            for next in house.successors(m) {
                if !on_path.contains(next) {
                    d = d.max(depth(house, next, layer, on_path) + 1);
                }
            }
            on_path.remove(m);
            layer.insert(m, d);
            d
        }
        for m in &self.modules {
            depth(self, m, &mut layer, &mut BTreeSet::new());
        }
        let width = self.modules.iter().map(String::len).max().unwrap_or(0);
        let mut out =
            String::from("server/src, top-level modules by layer (each uses only lower ones):\n");
        let top = layer.values().copied().max().unwrap_or(0);
        for level in 0..=top {
            for (m, _) in layer.iter().filter(|(_, d)| **d == level) {
                let uses: Vec<&str> = self.successors(m).map(String::as_str).collect();
                let uses = if uses.is_empty() {
                    "(nothing)".to_owned()
                } else {
                    uses.join(", ")
                };
                out.push_str(&format!("  {level:>2}  {m:<width$}  uses {uses}\n"));
            }
        }
        out
    }
}

fn join(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// The names `vocab/mod.rs` exports: `pub use x::{A, B}` and `pub mod m`.
fn vocabulary(file: &Path) -> BTreeSet<String> {
    let Ok(text) = fs::read_to_string(file) else {
        return BTreeSet::new();
    };
    let code = strip_comments_and_strings(&text);
    let mut words = BTreeSet::new();
    for statement in code.split(';') {
        let statement = statement.trim();
        if let Some(module) = statement.strip_prefix("pub mod ") {
            words.insert(module.trim().to_owned());
        } else if let Some(path) = statement.strip_prefix("pub use ") {
            words.extend(leaf_names(path));
        }
    }
    words
}

/// The names a use tree brings in: `a::b::{C, D as E, f::G}` gives C, D, G.
fn leaf_names(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        return split_top_level(inner)
            .iter()
            .flat_map(|part| leaf_names(part))
            .collect();
    }
    let name = tree.split(" as ").next().unwrap_or(tree).trim();
    let last = name.rsplit("::").next().unwrap_or(name).trim();
    if last.is_empty() || last == "self" || last == "*" {
        return Vec::new();
    }
    vec![last.to_owned()]
}

fn split_top_level(s: &str) -> Vec<String> {
    let (mut parts, mut current, mut depth) = (Vec::new(), String::new(), 0);
    for c in s.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts.retain(|p| !p.trim().is_empty());
    parts
}

/// One `crate::module::...` path: the module it enters and the names it takes from there.
#[derive(Debug)]
struct CratePath {
    module: String,
    names: Vec<String>,
    text: String,
}

/// Every `crate::` path in `code` (comments, strings and test modules already removed).
fn crate_paths(code: &str) -> Vec<CratePath> {
    let mut paths = Vec::new();
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(at) = code[from..].find("crate::") {
        let start = from + at;
        from = start + "crate::".len();
        // `walcast::crate::` cannot happen; `$crate::` and `my_crate::` are not ours.
        if start > 0
            && (bytes[start - 1].is_ascii_alphanumeric()
                || bytes[start - 1] == b'_'
                || bytes[start - 1] == b'$')
        {
            continue;
        }
        let mut end = from;
        let mut depth = 0usize;
        while end < bytes.len() {
            let c = bytes[end];
            let ok = c.is_ascii_alphanumeric()
                || c == b'_'
                || c == b':'
                || (depth > 0 && (c == b',' || c.is_ascii_whitespace() || c == b'*'))
                || c == b'{'
                || (c == b'}' && depth > 0);
            if !ok {
                break;
            }
            if c == b'{' {
                depth += 1;
            } else if c == b'}' {
                depth -= 1;
                if depth == 0 {
                    end += 1;
                    break;
                }
            }
            end += 1;
        }
        let text = code[start..end].trim_end_matches(':').to_owned();
        let rest = &text["crate::".len()..];
        let module: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if module.is_empty() {
            continue;
        }
        let names = match rest[module.len()..].strip_prefix("::") {
            Some(tail) => leaf_names(tail)
                .into_iter()
                .chain(first_segment(tail))
                .collect(),
            None => Vec::new(),
        };
        paths.push(CratePath {
            module,
            names,
            text: text.split_whitespace().collect::<Vec<_>>().join(" "),
        });
    }
    paths
}

/// `close_code` in `close_code::GOING_AWAY`: a word can be a module.
fn first_segment(tail: &str) -> Option<String> {
    let first: String = tail
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!first.is_empty() && tail[first.len()..].starts_with("::")).then_some(first)
}

/// Whether `code` defines an item called `word` (a type, alias, trait, const, static or module).
fn defines(code: &str, word: &str) -> bool {
    [
        "struct", "enum", "type", "trait", "const", "static", "mod", "union",
    ]
    .iter()
    .any(|kind| {
        let needle = format!("{kind} {word}");
        code.match_indices(&needle).any(|(i, _)| {
            let before = code[..i].chars().next_back();
            let after = code[i + needle.len()..].chars().next();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
    })
}

/// The code with every comment, string and char literal blanked (their length kept).
fn strip_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !chars[..i]
                .last()
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for c in &chars[i..j.min(chars.len())] {
                out.push(blank(*c));
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{1F600}'), not a lifetime ('a).
            let close = if next == Some('\\') {
                chars[i + 2..]
                    .iter()
                    .position(|&c| c == '\'')
                    .map(|p| i + 2 + p)
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match close {
                Some(end) => {
                    for _ in i..=end {
                        out.push(' ');
                    }
                    i = end + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The code without its `#[cfg(test)]` items (test modules and test-only functions).
fn strip_tests(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "#[cfg(test)]".len()..];
        // The item ends at its matching `}` or, for one without a body, at its `;`.
        let mut depth = 0usize;
        let mut end = after.len();
        for (i, c) in after.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    end = i;
                    break;
                }
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' | ',' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let entries = fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// `hub` for `hub/registry.rs` and `metrics` for `metrics.rs`; none for the crate roots.
fn top_module(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// Test code kept in files of its own (`tests.rs`, `x_tests.rs`, `tests_x.rs`, `tests/`).
fn is_test_file(relative: &Path) -> bool {
    relative.components().any(|c| c.as_os_str() == "tests")
        || relative
            .file_stem()
            .and_then(|s| s.to_str())
            .is_some_and(|stem| {
                stem == "tests" || stem.ends_with("_tests") || stem.starts_with("tests_")
            })
}
