//! `errors.md`: every error code and close code the source produces, in one table.

use std::collections::BTreeMap;

use super::markdown::{self, code_spans, Table};
use super::{doc_path, read_doc, scan, Problems};

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
