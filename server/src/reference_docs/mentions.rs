//! Every doc (README, `docs/`, the example config) names only env variables and config keys
//! that exist.

use std::collections::BTreeSet;

use super::markdown::code_spans;
use super::{code_side, collect_files, doc_path, is_env_name, lexer, repo, Problems};
use crate::config::Config;

/// Words that end a file name, not a config key (`auth.rs` is no key of `[auth]`).
const FILE_ENDINGS: [&str; 22] = [
    "rs", "md", "toml", "json", "wasm", "html", "js", "css", "ts", "sh", "pem", "seg", "txt",
    "log", "yml", "yaml", "conf", "service", "png", "svg", "lock", "mjs",
];

#[test]
fn docs_name_only_env_variables_and_config_keys_that_exist() {
    let root = repo();
    let defaults = code_side::keys_of(&Config::default());
    let sections = code_side::sections(&defaults);
    let mut known_env: BTreeSet<String> = code_side::env_names().into_iter().collect();
    // Variables of the test harness and tools, read by the tests crate.
    let mut harness = Vec::new();
    collect_files(&root.join("tests"), "rs", &mut harness);
    for path in &harness {
        let src = std::fs::read_to_string(path).unwrap_or_default();
        for tok in lexer::lex(&src) {
            if let lexer::Tok::Str(s) = tok {
                if s.starts_with("WALCAST_") && is_env_name(&s) {
                    known_env.insert(s);
                }
            }
        }
    }
    // And variables the shell tools read (`server/fuzz/run.sh`, `.ci/`, the Makefile).
    let mut scripts = Vec::new();
    collect_files(&root.join("server/fuzz"), "sh", &mut scripts);
    scripts.push(root.join(".ci/run"));
    scripts.push(root.join("Makefile"));
    for path in &scripts {
        let src = std::fs::read_to_string(path).unwrap_or_default();
        for word in src.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("WALCAST_") && is_env_name(word) {
                known_env.insert(word.to_owned());
            }
        }
    }
    let mut docs = vec![root.join("README.md")];
    collect_files(&root.join("docs"), "md", &mut docs);
    docs.push(root.join(doc_path("walcast.example.toml")));
    let mut problems = Problems::default();
    for path in docs.iter().filter(|p| p.exists()) {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let shown = path
            .strip_prefix(&root)
            .unwrap_or(path)
            .display()
            .to_string();
        for (n, line) in text.lines().enumerate() {
            for word in line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("WALCAST_") && is_env_name(word) && !known_env.contains(word) {
                    problems.add(format!(
                        "{shown}:{}: env variable {word} is not read by the code",
                        n + 1
                    ));
                }
            }
            let spans = if shown.ends_with(".toml") {
                line.split_whitespace().map(str::to_owned).collect()
            } else {
                code_spans(line)
            };
            for span in spans {
                let span = span.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_');
                let Some((section, leaf)) = span.split_once('.') else {
                    continue;
                };
                let leaf = leaf.split(['[', ' ', '=']).next().unwrap_or("");
                let is_key_shape = leaf
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    && !leaf.is_empty();
                if sections.contains(section)
                    && is_key_shape
                    && !FILE_ENDINGS.contains(&leaf)
                    && !defaults.contains_key(&format!("{section}.{leaf}"))
                {
                    problems.add(format!(
                        "{shown}:{}: `{section}.{leaf}` is no config key",
                        n + 1
                    ));
                }
            }
        }
    }
    problems.finish("env variables and config keys named in the docs");
}
