//! The snapshot's query: every column as its text output (what wal2json prints), from the table
//! with identifiers quoted, and the conditions whose meaning SQL shares in its `WHERE` with their
//! values as bind parameters. Every condition is still evaluated by walcast on each row, so a
//! condition left out only costs rows read, never a wrong row.

use postgres_protocol::escape::escape_identifier;
use tokio_postgres::types::ToSql;

use crate::filter::{ColumnInfo, IsValue, Operator, RawCondition, RawValue, TableName};

pub struct Select {
    pub sql: String,
    pub params: Vec<Box<dyn ToSql + Sync + Send>>,
}

/// How walcast compares a column's values, when SQL compares them the same way.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pushable {
    /// Integers and `numeric`: exact decimal comparison both sides.
    Decimal,
    /// `text` and `varchar`: byte order, which is `COLLATE "C"` in SQL.
    Text,
    Bool,
}

fn pushable(column: &ColumnInfo) -> Option<Pushable> {
    let t = column.type_name.trim();
    let base = t.split('(').next().unwrap_or(t).trim();
    Some(match base {
        "smallint" | "integer" | "bigint" | "numeric" => Pushable::Decimal,
        "text" | "character varying" => Pushable::Text,
        "boolean" => Pushable::Bool,
        _ => return None,
    })
}

pub fn select(table: &TableName, columns: &[ColumnInfo], conditions: &[RawCondition]) -> Select {
    let list: Vec<String> = columns
        .iter()
        .map(|c| format!("{}::text", escape_identifier(&c.name)))
        .collect();
    let mut sql = format!(
        "SELECT {} FROM {}.{}",
        list.join(", "),
        escape_identifier(&table.schema),
        escape_identifier(&table.name)
    );
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut wheres = Vec::new();
    for cond in conditions {
        let Some(column) = columns.iter().find(|c| c.name == cond.column) else {
            continue;
        };
        let Some(kind) = pushable(column) else {
            continue;
        };
        if let Some(clause) = clause(cond, kind, &escape_identifier(&column.name), &mut params) {
            wheres.push(clause);
        }
    }
    if !wheres.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&wheres.join(" AND "));
    }
    Select { sql, params }
}

fn clause(
    cond: &RawCondition,
    kind: Pushable,
    col: &str,
    params: &mut Vec<Box<dyn ToSql + Sync + Send>>,
) -> Option<String> {
    let sql_op = match cond.op {
        Operator::Eq => "=",
        Operator::Neq => "<>",
        Operator::Lt => "<",
        Operator::Lte => "<=",
        Operator::Gt => ">",
        Operator::Gte => ">=",
        Operator::In => "= ANY",
        Operator::Is => {
            let test = match (&cond.value, cond.negated) {
                (RawValue::Is(IsValue::Null), false) => "IS NULL",
                (RawValue::Is(IsValue::Null), true) => "IS NOT NULL",
                (RawValue::Is(IsValue::True), false) if kind == Pushable::Bool => "IS TRUE",
                (RawValue::Is(IsValue::False), false) if kind == Pushable::Bool => "IS FALSE",
                _ => return None,
            };
            return Some(format!("{col} {test}"));
        }
        Operator::Like | Operator::Ilike => return None,
    };
    let n = params.len() + 1;
    let text = match (&cond.value, cond.op) {
        (RawValue::One(v), op) if op != Operator::In => {
            params.push(Box::new(v.clone()));
            match kind {
                Pushable::Decimal => format!("{col} {sql_op} (${n}::text)::numeric"),
                Pushable::Text => format!("{col}::text COLLATE \"C\" {sql_op} ${n}::text"),
                Pushable::Bool if cond.op == Operator::Eq || cond.op == Operator::Neq => {
                    format!("{col} {sql_op} (${n}::text)::boolean")
                }
                Pushable::Bool => {
                    params.pop();
                    return None;
                }
            }
        }
        (RawValue::List(vs), Operator::In) => {
            params.push(Box::new(vs.clone()));
            match kind {
                Pushable::Decimal => format!("{col} = ANY((${n}::text[])::numeric[])"),
                Pushable::Text => format!("{col}::text COLLATE \"C\" = ANY(${n}::text[])"),
                Pushable::Bool => {
                    params.pop();
                    return None;
                }
            }
        }
        _ => return None,
    };
    // walcast: a null column satisfies no condition but `is.null`, `not.` included; in SQL
    // `NOT (null = 1)` is null, which the WHERE drops the same way.
    Some(if cond.negated {
        format!("NOT ({text})")
    } else {
        text
    })
}
