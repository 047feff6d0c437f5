//! Reads what the reference docs claim: the tables of a Markdown file (GitHub pipe tables), each
//! with the heading it sits under, and the code spans of a cell. No Markdown beyond that.

/// One pipe table.
#[derive(Debug)]
pub(super) struct Table {
    /// Text of the nearest heading above the table.
    pub heading: String,
    /// 1-based line of the header row.
    pub line: usize,
    /// Header cells, lowercased.
    pub header: Vec<String>,
    /// Body rows: (1-based line, cells).
    pub rows: Vec<(usize, Vec<String>)>,
}

impl Table {
    /// Index of the first header cell that starts with `name` (lowercase).
    pub fn column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h.starts_with(name))
    }

    /// Cell `col` of `row`, empty when the row is short.
    pub fn cell<'a>(&self, row: &'a [String], col: Option<usize>) -> &'a str {
        col.and_then(|c| row.get(c)).map_or("", String::as_str)
    }
}

/// Every table of `text`.
pub(super) fn tables(text: &str) -> Vec<Table> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut heading = String::new();
    let mut in_fence = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if line.starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence && line.starts_with('#') {
            heading = line.trim_start_matches('#').trim().to_owned();
        } else if !in_fence
            && line.starts_with('|')
            && lines.get(i + 1).is_some_and(|next| is_separator(next))
        {
            let header = cells(line).iter().map(|c| c.to_lowercase()).collect();
            let mut table = Table {
                heading: heading.clone(),
                line: i + 1,
                header,
                rows: Vec::new(),
            };
            i += 2;
            while i < lines.len() && lines[i].trim().starts_with('|') {
                table.rows.push((i + 1, cells(lines[i].trim())));
                i += 1;
            }
            out.push(table);
            continue;
        }
        i += 1;
    }
    out
}

fn is_separator(line: &str) -> bool {
    let line = line.trim();
    line.starts_with('|')
        && line.contains('-')
        && line.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '))
}

/// The cells of one row: split at `|` outside code spans and not escaped, trimmed.
fn cells(line: &str) -> Vec<String> {
    let inner = line.strip_prefix('|').unwrap_or(line);
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut in_code = false;
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '`' => {
                in_code = !in_code;
                cell.push(c);
            }
            '|' if !in_code => out.push(std::mem::take(&mut cell).trim().to_owned()),
            _ => cell.push(c),
        }
    }
    out.push(cell.trim().to_owned());
    out
}

/// The contents of the code spans (`` `x` ``) of `text`, in order.
pub(super) fn code_spans(text: &str) -> Vec<String> {
    text.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_cells_and_spans() {
        let text = "# Top\n\n## `walcast plugin run`\n\n| Flag | Meaning |\n|---|:--|\n\
                    | `--param` | `a|b` and \\| |\n| `x` |\n\n```\n| not | a |\n|---|---|\n```\n";
        let t = tables(text);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].heading, "`walcast plugin run`");
        assert_eq!(t[0].header, ["flag", "meaning"]);
        assert_eq!(
            t[0].rows[0],
            (7, vec!["`--param`".to_owned(), "`a|b` and |".to_owned()])
        );
        assert_eq!(t[0].cell(&t[0].rows[1].1, t[0].column("meaning")), "");
        assert_eq!(code_spans("a `b` c `d e`"), ["b", "d e"]);
    }
}
