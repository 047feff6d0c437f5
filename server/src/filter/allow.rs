//! The table allow-list: glob patterns over `schema.table`, and its translation into wal2json's
//! `add-tables` option when every pattern can be expressed there. Does not decide what happens to
//! a refused request (the caller answers 403 `table_not_allowed`).

use globset::{Glob, GlobSet, GlobSetBuilder};

/// Glob patterns over `schema.table` (case-sensitive, `*` crosses dots). Empty allows every table.
/// System schemas (`pg_catalog`, `information_schema`, `pg_toast*`, `pg_temp*`) are never allowed:
/// logical decoding emits no changes for them, so a subscription there could only mislead.
#[derive(Clone, Debug)]
pub struct AllowList {
    set: Option<GlobSet>,
    patterns: Vec<String>,
}

impl AllowList {
    pub fn new(patterns: &[String]) -> Result<AllowList, globset::Error> {
        if patterns.is_empty() {
            return Ok(AllowList {
                set: None,
                patterns: Vec::new(),
            });
        }
        let mut builder = GlobSetBuilder::new();
        for p in patterns {
            builder.add(Glob::new(p)?);
        }
        Ok(AllowList {
            set: Some(builder.build()?),
            patterns: patterns.to_vec(),
        })
    }

    pub fn allows(&self, schema: &str, table: &str) -> bool {
        if is_system_schema(schema) {
            return false;
        }
        match &self.set {
            None => true,
            Some(set) => set.is_match(format!("{schema}.{table}")),
        }
    }

    /// The wal2json `add-tables` value equivalent to this list, when every pattern is `schema.*`,
    /// `*.table`, `schema.table` or `*.*` with literal names; `None` otherwise (and for the empty
    /// list), in which case all tables are decoded and `allows` filters. The value is raw: quote it
    /// as an SQL literal (`'` doubled) when building `START_REPLICATION`.
    pub fn wal2json_add_tables(&self) -> Option<String> {
        if self.patterns.is_empty() {
            return None;
        }
        let mut out = String::new();
        for p in &self.patterns {
            let (schema, table) = p.split_once('.')?;
            if table.contains('.') {
                return None;
            }
            if !out.is_empty() {
                out.push(',');
            }
            push_part(&mut out, schema)?;
            out.push('.');
            push_part(&mut out, table)?;
        }
        Some(out)
    }
}

fn is_system_schema(schema: &str) -> bool {
    schema == "pg_catalog"
        || schema == "information_schema"
        || schema.starts_with("pg_toast")
        || schema.starts_with("pg_temp")
}

/// One side of a wal2json table selector: `*`, or a literal name with wal2json's backslash
/// escapes (its list parser splits on `,`, `.` and whitespace and treats a bare `*` as "all").
fn push_part(out: &mut String, part: &str) -> Option<()> {
    if part == "*" {
        out.push('*');
        return Some(());
    }
    if part.is_empty() || part.contains(['*', '?', '[', ']', '{', '}', '\\']) {
        return None;
    }
    for c in part.chars() {
        if matches!(c, ',' | '.' | '\'') || c.is_whitespace() {
            out.push('\\');
        }
        out.push(c);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::AllowList;

    fn list(p: &[&str]) -> AllowList {
        AllowList::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("valid globs")
    }

    #[test]
    fn empty_allows_user_tables_only() {
        let l = list(&[]);
        assert!(l.allows("public", "people"));
        assert!(l.allows("Sales", "Odd.Table"));
        assert!(!l.allows("pg_catalog", "pg_class"));
        assert!(!l.allows("information_schema", "tables"));
        assert!(!l.allows("pg_toast", "pg_toast_1234"));
        assert!(!l.allows("pg_temp_3", "t"));
        assert!(!l.allows("pg_toast_temp_3", "t"));
        assert_eq!(l.wal2json_add_tables(), None);
    }

    #[test]
    fn globs_match_schema_dot_table() {
        let l = list(&["public.*", "sales.orders", "*.audit_*"]);
        assert!(l.allows("public", "people"));
        assert!(l.allows("sales", "orders"));
        assert!(!l.allows("sales", "Orders"));
        assert!(!l.allows("sales", "customers"));
        assert!(l.allows("hr", "audit_log"));
        assert!(!l.allows("pg_catalog", "audit_x"));
        assert!(list(&["*"]).allows("a", "b"));
        assert!(AllowList::new(&["[".to_string()]).is_err());
    }

    #[test]
    fn add_tables_when_expressible() {
        assert_eq!(
            list(&["public.*", "sales.orders", "*.audit"])
                .wal2json_add_tables()
                .as_deref(),
            Some("public.*,sales.orders,*.audit")
        );
        assert_eq!(list(&["*.*"]).wal2json_add_tables().as_deref(), Some("*.*"));
        assert_eq!(
            list(&["my schema.it's,odd"])
                .wal2json_add_tables()
                .as_deref(),
            Some(r"my\ schema.it\'s\,odd")
        );
        assert_eq!(list(&["public.audit_*"]).wal2json_add_tables(), None);
        assert_eq!(list(&["*"]).wal2json_add_tables(), None);
        assert_eq!(list(&["a.b.c"]).wal2json_add_tables(), None);
        assert_eq!(list(&["public.*", "x?.y"]).wal2json_add_tables(), None);
    }
}
