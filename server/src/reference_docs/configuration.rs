//! `configuration.md` and `walcast.example.toml`: every key with its env variables (the winner
//! first), flag, type and default; every variable; the example file carrying every default.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::code_side;
use super::markdown::{self, code_spans, Table};
use super::{doc_path, is_env_name, read_doc, Problems};
use crate::config::Config;

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
