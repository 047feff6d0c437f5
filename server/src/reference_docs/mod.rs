//! Holds the reference docs (`docs/reference/`) against the code, both ways: every config key,
//! env variable, CLI flag and command, HTTP route, error code, close code and metric the code
//! has is documented, nothing documented is missing from the code, and the documented defaults
//! (`configuration.md`, `walcast.example.toml`) are the code's. The code side is derived from the
//! code (`code_side`, `source_scan`), never from a list kept here; one file of checks per
//! reference file. Test code only.

use std::path::{Path, PathBuf};

use crate::config::Config;

mod cli;
mod code_side;
mod configuration;
mod errors;
mod http_api;
mod lexer;
mod markdown;
mod mentions;
mod metrics;
mod source_scan;

/// Problems found by one check, reported together.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, problem: String) {
        self.0.push(problem);
    }

    fn finish(self, what: &str) {
        assert!(
            self.0.is_empty(),
            "{what}: the reference docs and the code disagree ({} problems):\n- {}",
            self.0.len(),
            self.0.join("\n- ")
        );
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the server crate sits in the workspace")
        .to_path_buf()
}

/// `docs/reference/<name>`, relative to the repository (for messages).
fn doc_path(name: &str) -> String {
    format!("docs/reference/{name}")
}

fn read_doc(name: &str) -> String {
    let path = repo().join(doc_path(name));
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): the reference docs live there",
            path.display()
        )
    })
}

fn is_env_name(text: &str) -> bool {
    text.len() > 3
        && text.contains('_')
        && !text.ends_with('_')
        && text
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn scan() -> source_scan::Found {
    source_scan::scan_tree(&repo().join("server/src"))
}

fn collect_files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n != "target" && n != "node_modules")
            {
                collect_files(&path, ext, out);
            }
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

#[test]
fn the_checks_see_the_code() {
    // Guards against a derivation that silently finds nothing (a renamed call, a moved file).
    let defaults = code_side::keys_of(&Config::default());
    assert!(defaults.contains_key("sessions.queue_capacity") && defaults.len() > 50);
    assert!(code_side::env_names().iter().any(|n| n == "WALCAST_LISTEN"));
    assert_eq!(
        code_side::flag_keys().get("--listen").map(Vec::as_slice),
        Some(&["listen".to_owned()][..])
    );
    let found = scan();
    assert!(found
        .routes
        .contains_key(&("GET".to_owned(), "/ws".to_owned())));
    assert!(found.error_codes.contains_key("bad_query") && found.error_codes.len() > 30);
    assert!(found.close_codes.contains_key(&4008));
    assert!(code_side::metrics().contains_key("walcast_sessions"));
    assert!(code_side::cli_commands()
        .iter()
        .any(|c| c.path == "walcast plugin run"));
}
