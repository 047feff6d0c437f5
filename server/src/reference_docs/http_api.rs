//! `http-api.md`: every route the router registers.

use std::collections::BTreeMap;

use super::markdown::{self, code_spans};
use super::{doc_path, read_doc, scan, Problems};

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
