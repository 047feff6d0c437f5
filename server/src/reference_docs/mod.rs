//! Holds the reference docs (`docs/reference/`) against the code, both ways: every config key,
//! env variable, CLI flag and command, HTTP route, error code, close code and metric the code
//! has is documented, nothing documented is missing from the code, and the documented defaults
//! (`configuration.md`, `walcast.example.toml`) are the code's. The code side is derived from the
//! code (`code_side`, `source_scan`), never from a list kept here. Test code only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::Config;

mod code_side;
mod markdown;
mod source_scan;

use code_side::Keys;
use markdown::{code_spans, Table};

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

/// The rows of `configuration.md`'s key tables: key -> (line, row) in the table it sits in.
fn config_rows(tables: &[Table]) -> Vec<(&Table, usize, String, &Vec<String>)> {
    let mut out = Vec::new();
    for table in tables
        .iter()
        .filter(|t| t.header.first().is_some_and(|h| h == "key"))
    {
        for (line, row) in &table.rows {
            if let Some(key) = row
                .first()
                .map(|c| code_spans(c))
                .and_then(|s| s.first().cloned())
            {
                out.push((table, *line, key, row));
            }
        }
    }
    out
}

/// The value a documented default stands for: `unset` is null, anything else is a TOML value
/// read through the config's own parser at `key`.
fn documented_default(key: &str, cell: &str) -> Result<Value, String> {
    let text = code_spans(cell)
        .into_iter()
        .next()
        .unwrap_or_else(|| cell.split_whitespace().next().unwrap_or("").to_owned());
    if text == "unset" || cell.trim_start().starts_with("unset") {
        return Ok(Value::Null);
    }
    let toml = match key.rsplit_once('.') {
        Some((section, leaf)) => format!("[{section}]\n{leaf} = {text}\n"),
        None => format!("{key} = {text}\n"),
    };
    let config = Config::from_toml_str(&toml)
        .map_err(|e| format!("`{text}` is not a value the code reads for {key}: {e}"))?;
    Ok(code_side::keys_of(&config)
        .remove(key)
        .unwrap_or(Value::Null))
}

fn show(value: &Value) -> String {
    match value {
        Value::Null => "unset".to_owned(),
        other => other.to_string(),
    }
}

/// Every env variable -> the keys it sets and the probe value it took.
fn env_map() -> BTreeMap<String, (Vec<String>, Option<&'static str>)> {
    code_side::env_names()
        .into_iter()
        .map(|name| {
            let effect = code_side::env_effect(&name);
            (name, effect)
        })
        .collect()
}

#[test]
fn configuration_md_lists_every_key_with_its_env_flag_type_and_default() {
    let file = doc_path("configuration.md");
    let tables = markdown::tables(&read_doc("configuration.md"));
    let rows = config_rows(&tables);
    let defaults = code_side::keys_of(&Config::default());
    let envs = env_map();
    let flags = code_side::flag_keys();
    let mut problems = Problems::default();

    let documented: BTreeSet<&str> = rows.iter().map(|(_, _, k, _)| k.as_str()).collect();
    for key in defaults.keys() {
        if !documented.contains(key.as_str()) {
            problems.add(format!(
                "config key `{key}` (default {}) is not documented: add a row to {file}",
                show(&defaults[key])
            ));
        }
    }
    for (table, line, key, row) in &rows {
        let Some(default) = defaults.get(key) else {
            problems.add(format!(
                "{file}:{line} documents config key `{key}`, which the code does not have"
            ));
            continue;
        };
        // Env variables: the same set, the winner first.
        let cell = table.cell(row, table.column("env"));
        let listed: Vec<String> = code_spans(cell)
            .into_iter()
            .filter(|s| is_env_name(s))
            .collect();
        let setting: Vec<(String, &'static str)> = envs
            .iter()
            .filter(|(_, (keys, _))| keys.contains(key))
            .map(|(name, (_, probe))| (name.clone(), probe.unwrap_or("7")))
            .collect();
        let want: BTreeSet<&str> = setting.iter().map(|(n, _)| n.as_str()).collect();
        let have: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
        if want != have {
            problems.add(format!(
                "{file}:{line}: `{key}` is set by env {want:?} in the code, the docs say {have:?}"
            ));
        } else if setting.len() > 1 {
            if let Some(winner) = code_side::env_winner(key, &setting) {
                if listed.first() != Some(&winner) {
                    problems.add(format!(
                        "{file}:{line}: when several variables of `{key}` are set, {winner} \
                         wins: list it first (the env column names them in precedence order)"
                    ));
                }
            }
        }
        // Flags.
        let cell = table.cell(row, table.column("flag"));
        let have: BTreeSet<String> = code_spans(cell)
            .into_iter()
            .filter(|s| s.starts_with("--"))
            .collect();
        let want: BTreeSet<String> = flags
            .iter()
            .filter(|(_, keys)| keys.contains(key))
            .map(|(flag, _)| flag.clone())
            .collect();
        if want != have {
            problems.add(format!(
                "{file}:{line}: `{key}` is set by flags {want:?} in the code, the docs say {have:?}"
            ));
        }
        // Default.
        match documented_default(key, table.cell(row, table.column("default"))) {
            Ok(value) if &value == default => {}
            Ok(value) => problems.add(format!(
                "{file}:{line}: the default of `{key}` is {} in the code, the docs say {}",
                show(default),
                show(&value)
            )),
            Err(e) => problems.add(format!("{file}:{line}: {e}")),
        }
        // Type, where the default's JSON shape tells it.
        let ty = table.cell(row, table.column("type")).to_lowercase();
        let expected = match default {
            Value::Bool(_) => Some("boolean"),
            Value::Number(_) => Some("integer"),
            Value::Array(_) => Some("list"),
            Value::String(s)
                if crate::config::parse_duration(s).is_ok() && s.parse::<f64>().is_err() =>
            {
                Some("duration")
            }
            _ => None,
        };
        if let Some(expected) = expected {
            if !ty.contains(expected) {
                problems.add(format!(
                    "{file}:{line}: `{key}` is a {expected} in the code, the type column says {ty:?}"
                ));
            }
        }
    }
    // Every variable is named somewhere in the file.
    let text = read_doc("configuration.md");
    for name in envs.keys() {
        if !text.contains(&format!("`{name}`")) {
            problems.add(format!(
                "env variable {name} ({}) is not documented: add it to {file}",
                match &envs[name].0 {
                    keys if keys.is_empty() => "it sets no config key".to_owned(),
                    keys => format!("it sets {}", keys.join(", ")),
                }
            ));
        }
    }
    // Variables that set no key are documented by name.
    let env_rows: BTreeSet<String> = tables
        .iter()
        .filter(|t| t.header.first().is_some_and(|h| h == "env"))
        .flat_map(|t| t.rows.iter())
        .filter_map(|(_, row)| row.first().and_then(|c| code_spans(c).into_iter().next()))
        .collect();
    for (name, (keys, _)) in &envs {
        if keys.is_empty() && !env_rows.contains(name) {
            problems.add(format!(
                "env variable {name} sets no config key and is not documented: add it to the \
                 table of variables without a key in {file}"
            ));
        }
    }
    for name in &env_rows {
        match envs.get(name) {
            None => problems.add(format!(
                "{file} documents env variable {name}, which the code does not read"
            )),
            Some((keys, _)) if !keys.is_empty() => problems.add(format!(
                "{file} lists {name} among the variables without a key, but it sets {keys:?}"
            )),
            _ => {}
        }
    }
    // Claims the examples of drift were about.
    let (accepted, refused) = code_side::sslmodes();
    if let Some((_, line, _, row)) = rows.iter().find(|(_, _, k, _)| k == "database_url") {
        let spans: BTreeSet<String> = row.iter().flat_map(|c| code_spans(c)).collect();
        for mode in &accepted {
            if !spans.contains(*mode) {
                problems.add(format!(
                    "{file}:{line}: database_url takes sslmode `{mode}`: name it in the row"
                ));
            }
        }
        for mode in &refused {
            if spans.contains(*mode) {
                problems.add(format!(
                    "{file}:{line}: database_url refuses sslmode `{mode}`, the row names it"
                ));
            }
        }
    }
    if let Some((table, line, _, row)) = rows.iter().find(|(_, _, k, _)| k == "listen") {
        let says_names = table.cell(row, table.column("type")).contains("host:port");
        if says_names != code_side::listen_takes_names() {
            problems.add(format!(
                "{file}:{line}: listen {} host names (localhost:7700); the type column says \
                 otherwise (write `host:port` when names are taken, `ip:port` when not)",
                if says_names { "does not take" } else { "takes" }
            ));
        }
    }
    problems.finish("configuration.md");
}

#[test]
fn example_toml_carries_every_key_with_its_default() {
    let file = doc_path("walcast.example.toml");
    let text = read_doc("walcast.example.toml");
    let mut problems = Problems::default();
    let example = match Config::from_toml_str(&text) {
        Ok(config) => config,
        Err(e) => panic!("{file} does not parse: {e}"),
    };
    if let Err(e) = example.validate() {
        problems.add(format!("{file} does not validate: {e}"));
    }
    let raw: toml::Table = toml::from_str(&text).expect("parsed above");
    let defaults = code_side::keys_of(&Config::default());
    let values = code_side::keys_of(&example);
    for (key, default) in &defaults {
        let (section, leaf) = key.rsplit_once('.').unwrap_or(("", key));
        if default.is_null() {
            if !commented_in_section(&text, section, leaf) {
                problems.add(format!(
                    "{file}: `{key}` is unset by default: show it as a comment (`# {leaf} = ...`) \
                     under {}",
                    if section.is_empty() {
                        "the top".to_owned()
                    } else {
                        format!("[{section}]")
                    }
                ));
            }
            continue;
        }
        let present = if section.is_empty() {
            raw.contains_key(leaf)
        } else {
            raw.get(section)
                .and_then(|s| s.as_table())
                .is_some_and(|s| s.contains_key(leaf))
        };
        if !present {
            problems.add(format!(
                "{file} lacks `{key}`: add it with its default {}",
                show(default)
            ));
        } else if values.get(key) != Some(default) {
            problems.add(format!(
                "{file}: `{key}` is {} there, but its default is {}",
                show(values.get(key).unwrap_or(&Value::Null)),
                show(default)
            ));
        }
    }
    problems.finish("walcast.example.toml");
}

/// Whether `# leaf =` appears as a comment line under `[section]` (or before any section).
fn commented_in_section(text: &str, section: &str, leaf: &str) -> bool {
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim().to_owned();
        } else if current == section {
            if let Some(rest) = line.strip_prefix('#') {
                let rest = rest.trim_start();
                if rest
                    .strip_prefix(leaf)
                    .is_some_and(|r| r.trim_start().starts_with('='))
                {
                    return true;
                }
            }
        }
    }
    false
}

#[test]
fn cli_md_lists_every_command_and_flag() {
    let file = doc_path("cli.md");
    let tables = markdown::tables(&read_doc("cli.md"));
    let mut problems = Problems::default();
    // Command path -> items documented, from tables under a heading naming `walcast ...`.
    let mut documented: BTreeMap<String, (usize, BTreeSet<String>)> = BTreeMap::new();
    for table in &tables {
        if !table
            .header
            .first()
            .is_some_and(|h| h == "flag" || h == "argument")
        {
            continue;
        }
        let Some(path) = code_spans(&table.heading)
            .into_iter()
            .find(|s| s.starts_with("walcast"))
            .map(|s| {
                s.split_whitespace()
                    .take_while(|w| !w.starts_with(['<', '[', '-']))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        else {
            problems.add(format!(
                "{file}:{}: a flag table under a heading that names no `walcast ...` command",
                table.line
            ));
            continue;
        };
        let entry = documented
            .entry(path)
            .or_insert((table.line, BTreeSet::new()));
        for (_, row) in &table.rows {
            let first = row.first().map_or("", String::as_str);
            entry.1.extend(
                code_spans(first)
                    .into_iter()
                    .map(|s| s.split_whitespace().next().unwrap_or("").to_owned())
                    .filter(|s| s.starts_with(['-', '<'])),
            );
        }
    }
    let commands = code_side::cli_commands();
    for command in &commands {
        let Some((line, items)) = documented.get(&command.path) else {
            problems.add(format!(
                "command `{}` ({:?}) is not documented: add a heading naming it and a flag table \
                 to {file}",
                command.path, command.items
            ));
            continue;
        };
        for item in command.items.difference(items) {
            problems.add(format!(
                "`{} {item}` exists but is not documented: add it to the table at {file}:{line}",
                command.path
            ));
        }
        for item in items.difference(&command.items) {
            problems.add(format!(
                "{file}:{line} documents `{} {item}`, which the code does not have",
                command.path
            ));
        }
    }
    for path in documented.keys() {
        if !commands.iter().any(|c| &c.path == path) {
            problems.add(format!(
                "{file} documents command `{path}`, which the code does not have"
            ));
        }
    }
    // The config key each serving flag sets, when the table says it.
    let flags = code_side::flag_keys();
    for table in tables.iter().filter(|t| t.column("config key").is_some()) {
        for (line, row) in &table.rows {
            let Some(flag) = row.first().and_then(|c| code_spans(c).into_iter().next()) else {
                continue;
            };
            let have: Vec<String> = code_spans(table.cell(row, table.column("config key")));
            let want = flags.get(&flag).cloned().unwrap_or_default();
            if have != want {
                problems.add(format!(
                    "{file}:{line}: `{flag}` sets config keys {want:?}, the docs say {have:?}"
                ));
            }
        }
    }
    problems.finish("cli.md");
}

#[test]
fn http_api_md_lists_every_route() {
    let file = doc_path("http-api.md");
    let tables = markdown::tables(&read_doc("http-api.md"));
    let found = scan();
    let mut problems = Problems::default();
    let mut documented = BTreeMap::new();
    for table in &tables {
        let (Some(method), Some(path)) = (table.column("method"), table.column("path")) else {
            continue;
        };
        for (line, row) in &table.rows {
            let method = table.cell(row, Some(method)).trim_matches('`').to_owned();
            if let Some(path) = code_spans(table.cell(row, Some(path))).into_iter().next() {
                documented.insert((method, path), *line);
            }
        }
    }
    for ((method, path), places) in &found.routes {
        if !documented.contains_key(&(method.clone(), path.clone())) {
            problems.add(format!(
                "route {method} {path} (server/src/{}) is not documented: add it to {file}",
                places.iter().next().map_or("", String::as_str)
            ));
        }
    }
    for ((method, path), line) in &documented {
        if !found.routes.contains_key(&(method.clone(), path.clone())) {
            problems.add(format!(
                "{file}:{line} documents route {method} {path}, which no `.route(` in server/src \
                 registers"
            ));
        }
    }
    for construct in &found.unsupported {
        problems.add(construct.clone());
    }
    problems.finish("http-api.md");
}

fn scan() -> source_scan::Found {
    source_scan::scan_tree(&repo().join("server/src"))
}

#[test]
fn errors_md_lists_every_error_code_and_close_code_in_one_table() {
    let file = doc_path("errors.md");
    let tables = markdown::tables(&read_doc("errors.md"));
    let mut problems = Problems::default();
    let code_tables: Vec<&Table> = tables
        .iter()
        .filter(|t| t.header.first().is_some_and(|h| h == "code"))
        .collect();
    if code_tables.len() != 1 {
        problems.add(format!(
            "{file} must hold one table whose first column is `code` (it has {})",
            code_tables.len()
        ));
    }
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut closes: BTreeMap<u16, usize> = BTreeMap::new();
    for table in &code_tables {
        for (line, row) in &table.rows {
            let Some(code) = row.first().and_then(|c| code_spans(c).into_iter().next()) else {
                problems.add(format!("{file}:{line}: a row without a `code`"));
                continue;
            };
            match code.parse::<u16>() {
                Ok(n) => {
                    closes.insert(n, *line);
                }
                Err(_) => {
                    errors.insert(code, *line);
                }
            }
            let status = table.cell(row, table.column("http"));
            for word in status
                .split(|c: char| !c.is_ascii_digit())
                .filter(|w| !w.is_empty())
            {
                if !(word.len() == 3 && (word.starts_with('4') || word.starts_with('5'))) {
                    problems.add(format!(
                        "{file}:{line}: {word:?} in the HTTP column is not an error status"
                    ));
                }
            }
        }
    }
    let found = scan();
    for (code, places) in &found.error_codes {
        if !errors.contains_key(code) {
            problems.add(format!(
                "error code `{code}` (produced in server/src/{}) is not documented: add a row to \
                 {file}",
                places
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", server/src/")
            ));
        }
    }
    for (code, line) in &errors {
        if !found.error_codes.contains_key(code) {
            let hint =
                match found.literals.get(code) {
                    Some(places) => {
                        format!(
                    " (it appears as a string in server/src/{}: if that produces it, teach \
                     server/src/reference_docs/source_scan.rs the construct)",
                    places.iter().cloned().collect::<Vec<_>>().join(", server/src/")
                )
                    }
                    None => String::new(),
                };
            problems.add(format!(
                "{file}:{line} documents error code `{code}`, which nothing in server/src \
                 produces{hint}"
            ));
        }
    }
    for (code, places) in &found.close_codes {
        if !closes.contains_key(code) {
            problems.add(format!(
                "close code {code} (server/src/{}) is not documented: add a row to {file}",
                places
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", server/src/")
            ));
        }
    }
    for (code, line) in &closes {
        if !found.close_codes.contains_key(code) {
            problems.add(format!(
                "{file}:{line} documents close code {code}, which nothing in server/src sends"
            ));
        }
    }
    problems.finish("errors.md");
}

#[test]
fn metrics_md_lists_every_metric_with_its_type_and_labels() {
    let file = doc_path("metrics.md");
    let tables = markdown::tables(&read_doc("metrics.md"));
    let metrics = code_side::metrics();
    let mut problems = Problems::default();
    let mut documented = BTreeSet::new();
    for table in tables
        .iter()
        .filter(|t| t.header.first().is_some_and(|h| h == "metric"))
    {
        for (line, row) in &table.rows {
            let Some(name) = row.first().and_then(|c| code_spans(c).into_iter().next()) else {
                continue;
            };
            documented.insert(name.clone());
            let Some(metric) = metrics.get(&name) else {
                problems.add(format!(
                    "{file}:{line} documents metric {name}, which a fresh registry does not have"
                ));
                continue;
            };
            let kind = table.cell(row, table.column("type"));
            if kind.trim_matches('`') != metric.kind {
                problems.add(format!(
                    "{file}:{line}: {name} is a {}, the docs say {kind:?}",
                    metric.kind
                ));
            }
            let labels: BTreeSet<String> = code_spans(table.cell(row, table.column("labels")))
                .into_iter()
                .collect();
            if labels != metric.labels {
                problems.add(format!(
                    "{file}:{line}: {name} has labels {:?}, the docs say {labels:?}",
                    metric.labels
                ));
            }
            let spans: BTreeSet<String> = row.iter().flat_map(|c| code_spans(c)).collect();
            for value in metric.values.difference(&spans) {
                problems.add(format!(
                    "{file}:{line}: {name} is exported with label value `{value}` from start-up: \
                     name it in the row"
                ));
            }
        }
    }
    for (name, metric) in &metrics {
        if !documented.contains(name) {
            problems.add(format!(
                "metric {name} ({}, labels {:?}) is not documented: add a row to {file}",
                metric.kind, metric.labels
            ));
        }
    }
    problems.finish("metrics.md");
}

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
        for tok in source_scan::lex(&src) {
            if let source_scan::Tok::Str(s) = tok {
                if s.starts_with("WALCAST_") && is_env_name(&s) {
                    known_env.insert(s);
                }
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
    let defaults: Keys = code_side::keys_of(&Config::default());
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
