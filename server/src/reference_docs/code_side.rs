//! What the code itself says exists, derived at test time, never from a hand-kept list: the
//! config keys and defaults (the default `Config` serialized), the env variables (every name
//! `apply_env` asks for) and the key each one sets (probed), the CLI (clap's `CommandFactory`)
//! and the key each flag sets (probed), the metrics (a fresh registry, rendered), the `sslmode`
//! values a database URL takes.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use clap::{CommandFactory, Parser};
use serde_json::Value;

use crate::config::{Cli, Config};

/// `section.key` (or `key` at the top) -> value, as the config serializes.
pub(super) type Keys = BTreeMap<String, Value>;

pub(super) fn keys_of(config: &Config) -> Keys {
    let mut out = Keys::new();
    flatten(
        "",
        &serde_json::to_value(config).expect("the config serializes"),
        &mut out,
    );
    out
}

fn flatten(prefix: &str, value: &Value, out: &mut Keys) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

/// The sections of the config file (`[sessions]`, ...).
pub(super) fn sections(keys: &Keys) -> BTreeSet<String> {
    keys.keys()
        .filter_map(|k| k.split_once('.').map(|(s, _)| s.to_owned()))
        .collect()
}

/// Keys whose value differs between `a` and `b`.
fn changed(a: &Keys, b: &Keys) -> Vec<String> {
    a.iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Values tried, in order, until a variable or flag is accepted and changes something: a number,
/// a duration, a boolean, an auth mode, an address, a network.
const PROBES: [&str; 6] = ["7", "7s", "true", "jwt", "127.0.0.2:7701", "10.0.0.7"];

/// Every environment variable the config reads, in the order it asks for them.
pub(super) fn env_names() -> Vec<String> {
    let asked = RefCell::new(Vec::<String>::new());
    Config::default()
        .apply_env(&|name: &str| {
            asked.borrow_mut().push(name.to_owned());
            None
        })
        .expect("an empty environment is accepted");
    let mut names = asked.into_inner();
    let mut seen = BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// What setting `name` does: the keys it changes and the value that was accepted (empty keys:
/// it sets no file key).
pub(super) fn env_effect(name: &str) -> (Vec<String>, Option<&'static str>) {
    let base = keys_of(&Config::default());
    for probe in PROBES {
        let mut config = Config::default();
        if config
            .apply_env(&|n: &str| (n == name).then(|| probe.to_owned()))
            .is_ok()
        {
            let keys = changed(&keys_of(&config), &base);
            if !keys.is_empty() {
                return (keys, Some(probe));
            }
        }
    }
    (Vec::new(), None)
}

/// Of several variables that set the same key, the one that wins when all are set (`None` when
/// their probe values cannot be told apart).
pub(super) fn env_winner(key: &str, vars: &[(String, &'static str)]) -> Option<String> {
    // The same kind of value, different per variable: 7 -> 7, 8, 9 ...
    let values: Vec<String> = vars
        .iter()
        .enumerate()
        .map(|(i, (_, probe))| probe.replace('7', &(7 + i).to_string()))
        .collect();
    if values.iter().collect::<BTreeSet<_>>().len() < values.len() {
        return None;
    }
    let mut config = Config::default();
    config
        .apply_env(&|n: &str| {
            vars.iter()
                .position(|(v, _)| v == n)
                .map(|i| values[i].clone())
        })
        .ok()?;
    let got = keys_of(&config).get(key)?.clone();
    vars.iter().zip(&values).find_map(|((name, _), value)| {
        let mut alone = Config::default();
        alone
            .apply_env(&|n: &str| (n == name).then(|| value.clone()))
            .ok()?;
        (keys_of(&alone).get(key) == Some(&got)).then(|| name.clone())
    })
}

/// A command of the CLI: its path (`walcast plugin run`) and its flags and arguments
/// (`--change`, `-h`, `<FILE>`).
pub(super) struct CliCommand {
    pub path: String,
    pub items: BTreeSet<String>,
}

/// Every command that takes flags or arguments; `help` (clap's own) is left out of
/// subcommands, and so is their `-h/--help` (documented once, for `walcast`).
pub(super) fn cli_commands() -> Vec<CliCommand> {
    let mut root = Cli::command();
    root.build();
    let mut out = Vec::new();
    walk(&root, "walcast", true, &mut out);
    out
}

fn walk(cmd: &clap::Command, path: &str, is_root: bool, out: &mut Vec<CliCommand>) {
    let mut items = BTreeSet::new();
    for arg in cmd.get_arguments() {
        if !is_root && arg.get_id() == "help" {
            continue;
        }
        if arg.is_positional() {
            let name = arg
                .get_value_names()
                .and_then(|names| names.first().map(ToString::to_string))
                .unwrap_or_else(|| arg.get_id().as_str().to_ascii_uppercase());
            items.insert(format!("<{name}>"));
        } else {
            if let Some(long) = arg.get_long() {
                items.insert(format!("--{long}"));
            }
            if let Some(short) = arg.get_short() {
                items.insert(format!("-{short}"));
            }
        }
    }
    let subcommands: Vec<&clap::Command> = cmd
        .get_subcommands()
        .filter(|s| s.get_name() != "help")
        .collect();
    if !items.is_empty() || subcommands.is_empty() {
        out.push(CliCommand {
            path: path.to_owned(),
            items,
        });
    }
    for sub in subcommands {
        walk(sub, &format!("{path} {}", sub.get_name()), false, out);
    }
}

/// The keys each flag of `walcast` sets (probed through `apply_cli`); flags that set none
/// (`--config`, `--help`, `--version`) are left out.
pub(super) fn flag_keys() -> BTreeMap<String, Vec<String>> {
    let base = keys_of(&Config::default());
    let mut root = Cli::command();
    root.build();
    let mut out = BTreeMap::new();
    for arg in root.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let flag = format!("--{long}");
        let takes_value = arg.get_action().takes_values();
        let probes: Vec<Option<&str>> = if takes_value {
            PROBES.iter().copied().map(Some).collect()
        } else {
            vec![None]
        };
        for probe in probes {
            let mut argv = vec!["walcast".to_owned(), flag.clone()];
            argv.extend(probe.map(str::to_owned));
            let Ok(cli) = Cli::try_parse_from(&argv) else {
                continue;
            };
            let mut config = Config::default();
            if config.apply_cli(&cli).is_ok() {
                let keys = changed(&keys_of(&config), &base);
                if !keys.is_empty() {
                    out.insert(flag.clone(), keys);
                    break;
                }
            }
        }
    }
    out
}

/// A metric as a client scrapes it.
#[derive(Debug)]
pub(super) struct Metric {
    /// `counter`, `gauge` or `histogram`.
    pub kind: String,
    /// Label names (`le` of histograms left out).
    pub labels: BTreeSet<String>,
    /// Label values exported from start-up.
    pub values: BTreeSet<String>,
}

/// Every metric of a fresh registry by the name a client queries (`_total` on counters), with
/// one plugin known so the per-plugin families show their label.
pub(super) fn metrics() -> BTreeMap<String, Metric> {
    let m = crate::metrics::Metrics::new();
    m.sync_plugin(
        "p",
        &crate::metrics::PluginTotals {
            calls: 1,
            traps: 1,
            deadline_hits: 1,
            errors: 1,
            memory_grow_refused: 1,
            call_seconds: 1.0,
        },
    );
    let text = m.render();
    // Family name -> (type, query name).
    let mut families: BTreeMap<String, (String, String)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let query = match kind {
                "counter" if !name.ends_with("_total") => format!("{name}_total"),
                _ => name.to_owned(),
            };
            families.insert(name.to_owned(), (kind.to_owned(), query));
        }
    }
    let mut out: BTreeMap<String, Metric> = families
        .values()
        .map(|(kind, query)| {
            let metric = Metric {
                kind: kind.clone(),
                labels: BTreeSet::new(),
                values: BTreeSet::new(),
            };
            (query.clone(), metric)
        })
        .collect();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let sample = line.split(['{', ' ']).next().unwrap_or("");
        let Some((_, (_, query))) = families
            .iter()
            .filter(|(family, _)| sample.starts_with(family.as_str()))
            .max_by_key(|(family, _)| family.len())
        else {
            continue;
        };
        let Some(labels) = line.split_once('{').and_then(|(_, l)| l.split_once('}')) else {
            continue;
        };
        let metric = out.get_mut(query).expect("family known");
        for pair in labels.0.split(',').filter(|p| !p.is_empty()) {
            if let Some((name, value)) = pair.split_once('=') {
                if name != "le" {
                    metric.labels.insert(name.to_owned());
                    if name != "plugin" {
                        metric.values.insert(value.trim_matches('"').to_owned());
                    }
                }
            }
        }
    }
    out
}

/// The `sslmode` values a database URL is accepted with, of those libpq knows.
pub(super) fn sslmodes() -> (Vec<&'static str>, Vec<&'static str>) {
    [
        "disable",
        "allow",
        "prefer",
        "require",
        "verify-ca",
        "verify-full",
    ]
    .into_iter()
    .partition(|mode| {
        crate::source::parse_database_url(&format!("postgres://u@h/db?sslmode={mode}")).is_ok()
    })
}

/// Whether `listen` takes a host name (`localhost:<port>`).
pub(super) fn listen_takes_names() -> bool {
    Config::from_toml_str("listen = \"localhost:7700\"\n").is_ok()
}
