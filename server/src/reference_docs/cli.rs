//! `cli.md`: every command, flag and argument clap knows, and the config key each flag sets.

use std::collections::{BTreeMap, BTreeSet};

use super::code_side;
use super::markdown::{self, code_spans};
use super::{doc_path, read_doc, Problems};

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
