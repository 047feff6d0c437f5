//! `metrics.md`: every metric of a fresh registry, with its type, labels and the label values
//! exported from start-up.

use std::collections::BTreeSet;

use super::code_side;
use super::markdown::{self, code_spans};
use super::{doc_path, read_doc, Problems};

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
