//! Syntax stage of the query-string filter language (docs/guides/subscriptions.md): turns the
//! decoded URL query pairs into a `Request` without looking at the catalog. Does not resolve
//! columns or parse values by type (see `predicate::bind`).

use std::fmt;

use crate::decode::Format;
use crate::vocab::Op;

use super::error::{code, QueryError};
use crate::config::Limits;

/// A parsed `/ws` request: which changes of which table, under which conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `Op::bit` mask of the requested change types.
    pub ops: u8,
    /// The types were given as `*` (a policy narrows them instead of refusing).
    pub any_op: bool,
    pub table: TableName,
    /// The `query=` condition first, then every `filter=` in order; all AND-ed.
    pub conditions: Vec<RawCondition>,
    /// `select=` columns, in the order given; `None` for the whole row (`select=*` or absent).
    pub select: Option<Vec<Box<str>>>,
    pub plugin: Option<PluginRef>,
    /// `format=`: how change frames are shaped.
    pub format: Format,
    /// `query=schema:<target>`: schema events only, of one table (`table`), of every table of a
    /// schema (`table.schema`; `table.name` empty) or of the whole database (both empty).
    pub schema_events: Option<SchemaScope>,
}

/// What a `query=schema:<target>` subscription follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemaScope {
    /// `schema:people`: one table.
    Table,
    /// `schema:sales.*`: every table of one schema.
    Schema,
    /// `schema:*`: every table of the database.
    Database,
}

impl Request {
    /// Whether a `schema:` subscription with this request follows events about `table`.
    pub fn follows(&self, table: &TableName) -> bool {
        match self.schema_events {
            None | Some(SchemaScope::Table) => &self.table == table,
            Some(SchemaScope::Schema) => self.table.schema == table.schema,
            Some(SchemaScope::Database) => true,
        }
    }

    /// What the request names, for messages: `public.people`, `sales.*` or `*`.
    pub fn target(&self) -> String {
        match self.schema_events {
            None | Some(SchemaScope::Table) => self.table.to_string(),
            Some(SchemaScope::Schema) => {
                let mut schema = TableName::new(self.table.schema.clone(), "x").to_string();
                schema.truncate(schema.len() - 2);
                format!("{schema}.*")
            }
            Some(SchemaScope::Database) => "*".to_owned(),
        }
    }
}

/// A schema-qualified table name, case kept as written.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

impl TableName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> TableName {
        TableName {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// Parse `name` or `schema.name` with the quoting rules of `query=`.
    pub fn parse(text: &str) -> Result<TableName, QueryError> {
        match parse_table(text)? {
            (table, None) => Ok(table),
            (_, Some(_)) => Err(QueryError::bad_query(format!(
                "table name {text:?} contains ':'; double-quote it"
            ))),
        }
    }
}

/// `schema.name`, each part double-quoted when it would not parse back unquoted.
impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_ident(f, &self.schema)?;
        f.write_str(".")?;
        write_ident(f, &self.name)
    }
}

fn write_ident(f: &mut fmt::Formatter<'_>, ident: &str) -> fmt::Result {
    if !ident.is_empty() && !ident.chars().any(needs_quotes) {
        return f.write_str(ident);
    }
    f.write_str("\"")?;
    for (i, part) in ident.split('"').enumerate() {
        if i > 0 {
            f.write_str("\"\"")?;
        }
        f.write_str(part)?;
    }
    f.write_str("\"")
}

fn needs_quotes(c: char) -> bool {
    matches!(c, '.' | ':' | ',' | '"') || c.is_whitespace() || c.is_control()
}

/// `plugin=<name>` with its `plugin.<key>=<value>` params in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginRef {
    pub name: String,
    pub params: Vec<(String, String)>,
    /// The columns the guest may see: `None`, every column; `Some`, only these (a policy rule's
    /// `columns`: any other column reads as absent to the guest and never appears in a rewrite).
    /// The parser always leaves it `None`; only a policy sets it.
    pub columns: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
    Is,
    Like,
    Ilike,
}

impl Operator {
    fn from_word(word: &str) -> Option<Operator> {
        Some(match word {
            "eq" => Operator::Eq,
            "neq" => Operator::Neq,
            "lt" => Operator::Lt,
            "lte" => Operator::Lte,
            "gt" => Operator::Gt,
            "gte" => Operator::Gte,
            "in" => Operator::In,
            "is" => Operator::Is,
            "like" => Operator::Like,
            "ilike" => Operator::Ilike,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Eq => "eq",
            Operator::Neq => "neq",
            Operator::Lt => "lt",
            Operator::Lte => "lte",
            Operator::Gt => "gt",
            Operator::Gte => "gte",
            Operator::In => "in",
            Operator::Is => "is",
            Operator::Like => "like",
            Operator::Ilike => "ilike",
        }
    }
}

/// Operand of `is.`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsValue {
    Null,
    True,
    False,
}

/// A condition's value as text; typed by `bind` once the column type is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RawValue {
    One(String),
    List(Vec<String>),
    Is(IsValue),
}

/// `<col>.[not.]<op>.<value>` before binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawCondition {
    pub column: String,
    pub negated: bool,
    pub op: Operator,
    pub value: RawValue,
}

/// Parse the decoded URL query pairs of a `/ws` request under the default `Limits` (tests and
/// tools; the server parses under its configured limits with `parse_request_with`). Keys other
/// than `query`, `filter`, `select`, `format`, `plugin` and `plugin.*` belong to other stages and
/// are ignored here.
pub fn parse_request(params: &[(String, String)]) -> Result<Request, QueryError> {
    parse_request_with(params, &Limits::DEFAULT)
}

/// `parse_request` under `limits`: `query_too_long` when the parameters (every key and value,
/// decoded) exceed `max_query_bytes`, checked before anything else is parsed;
/// `too_many_conditions`, `in_list_too_long` and `like_pattern_too_long` as each is met.
pub fn parse_request_with(
    params: &[(String, String)],
    limits: &Limits,
) -> Result<Request, QueryError> {
    let bytes: usize = params.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > limits.max_query_bytes {
        return Err(limits.query_too_long(bytes));
    }
    let mut query = None;
    let mut filters = Vec::new();
    let mut select = None;
    let mut format = None;
    let mut plugin = None;
    let mut plugin_params = Vec::new();
    for (key, value) in params {
        match key.as_str() {
            "query" => once(&mut query, "query", value)?,
            "filter" => filters.push(value.as_str()),
            "select" => once(&mut select, "select", value)?,
            "format" => once(&mut format, "format", value)?,
            "plugin" => once(&mut plugin, "plugin", value)?,
            k => {
                if let Some(name) = k.strip_prefix("plugin.") {
                    if name.is_empty() {
                        return Err(QueryError::bad_query(
                            "plugin parameter name after 'plugin.' is empty",
                        ));
                    }
                    plugin_params.push((name.to_owned(), value.clone()));
                }
            }
        }
    }
    let query = match query {
        Some(q) if !q.is_empty() => q,
        _ => {
            return Err(QueryError::new(
                code::MISSING_QUERY,
                "missing query parameter: expected query=<types>:<table>[:<col>.<op>.<value>]",
            ))
        }
    };
    let Some((types, rest)) = query.split_once(':') else {
        return Err(QueryError::bad_query(format!(
            "query {query:?} has no table: expected query=<types>:<table>[:<col>.<op>.<value>]"
        )));
    };
    if types.eq_ignore_ascii_case(SCHEMA_TYPE) {
        return schema_request(rest, &filters, select, plugin, plugin_params.len(), format);
    }
    let ops = parse_types(types)?;
    let (table, condition) = parse_table(rest)?;
    let count = filters.len() + usize::from(condition.is_some());
    if count > limits.max_conditions {
        return Err(limits.too_many_conditions(count));
    }
    let mut conditions = Vec::with_capacity(count);
    if let Some(c) = condition {
        if c.is_empty() {
            return Err(QueryError::bad_query(
                "empty condition after the table's ':'",
            ));
        }
        conditions.push(parse_condition(c, limits)?);
    }
    for f in filters {
        conditions.push(parse_condition(f, limits)?);
    }
    let select = select.map(parse_select).transpose()?.flatten();
    let format = parse_format(format)?;
    let plugin = match (plugin, plugin_params.is_empty()) {
        (Some(""), _) => return Err(QueryError::bad_query("plugin= needs a plugin name")),
        (Some(name), _) => Some(PluginRef {
            name: name.to_owned(),
            params: plugin_params,
            columns: None,
        }),
        (None, true) => None,
        (None, false) => {
            return Err(QueryError::bad_query(
                "plugin.<key>= parameters given without plugin=<name>",
            ))
        }
    };
    Ok(Request {
        ops,
        any_op: types == "*",
        table,
        conditions,
        select,
        plugin,
        format,
        schema_events: None,
    })
}

/// The change type of a subscription to schema events only.
const SCHEMA_TYPE: &str = "schema";

fn parse_format(format: Option<&str>) -> Result<Format, QueryError> {
    match format {
        None => Ok(Format::Walcast),
        Some(text) => Format::parse(text).ok_or_else(|| {
            QueryError::bad_query(format!(
                "format={text}: give walcast (the default) or wal2json-v1"
            ))
        }),
    }
}

/// `query=schema:<target>`: a table, `<schema>.*` or `*`; no conditions, `select=` or plugin
/// (a schema event has no row to test or project).
fn schema_request(
    rest: &str,
    filters: &[&str],
    select: Option<&str>,
    plugin: Option<&str>,
    plugin_params: usize,
    format: Option<&str>,
) -> Result<Request, QueryError> {
    let alone = |what: &str| {
        QueryError::bad_query(format!(
            "{what} cannot be used with query=schema:...: a schema event has no row to filter or \
             project"
        ))
    };
    if !filters.is_empty() {
        return Err(alone("filter="));
    }
    if select.is_some() {
        return Err(alone("select="));
    }
    if plugin.is_some() || plugin_params > 0 {
        return Err(alone("plugin="));
    }
    let format = parse_format(format)?;
    let (table, scope) = if rest == "*" {
        (TableName::new("", ""), SchemaScope::Database)
    } else if let Some(schema) = rest.strip_suffix(".*") {
        let (schema, after) = ident(schema, &['.', ':'])
            .map_err(|msg| QueryError::bad_query(format!("schema {schema:?}: {msg}")))?;
        if !after.is_empty() {
            return Err(QueryError::bad_query(format!(
                "query=schema:{rest}: expected <table>, <schema>.* or *"
            )));
        }
        (TableName::new(schema, ""), SchemaScope::Schema)
    } else {
        match parse_table(rest)? {
            (table, None) => (table, SchemaScope::Table),
            (_, Some(_)) => return Err(alone("a condition")),
        }
    };
    Ok(Request {
        ops: 0,
        any_op: false,
        table,
        conditions: Vec::new(),
        select: None,
        plugin: None,
        format,
        schema_events: Some(scope),
    })
}

fn once<'a>(slot: &mut Option<&'a str>, key: &str, value: &'a str) -> Result<(), QueryError> {
    if slot.replace(value).is_some() {
        return Err(QueryError::bad_query(format!(
            "{key}= given more than once"
        )));
    }
    Ok(())
}

fn parse_types(types: &str) -> Result<u8, QueryError> {
    if types == "*" {
        return Ok(Op::ALL.iter().fold(0, |m, op| m | op.bit()));
    }
    let mut mask = 0;
    for word in types.split(',') {
        let op = Op::ALL.iter().find(|op| op.as_str().eq_ignore_ascii_case(word)).ok_or_else(|| {
            QueryError::new(
                code::UNKNOWN_CHANGE_TYPE,
                format!("unknown change type {word:?}: expected *, or a comma list of insert, update, delete, truncate (or schema, alone)"),
            )
        })?;
        mask |= op.bit();
    }
    Ok(mask)
}

/// `name` or `schema.name`, then optionally `:` and the rest (the condition, returned raw).
fn parse_table(text: &str) -> Result<(TableName, Option<&str>), QueryError> {
    let table_err = |msg: String| QueryError::bad_query(format!("table {text:?}: {msg}"));
    let (first, rest) = ident(text, &['.', ':']).map_err(table_err)?;
    let (table, rest) = match rest.strip_prefix('.') {
        Some(after) => {
            let (second, rest) = ident(after, &['.', ':']).map_err(table_err)?;
            if rest.starts_with('.') {
                return Err(table_err(
                    "expected name or schema.name; double-quote names that contain '.'".into(),
                ));
            }
            (
                TableName {
                    schema: first,
                    name: second,
                },
                rest,
            )
        }
        None => (
            TableName {
                schema: "public".to_owned(),
                name: first,
            },
            rest,
        ),
    };
    Ok((table, rest.strip_prefix(':')))
}

/// One identifier, double-quoted (`""` is a quote) or bare up to one of `stops`. Returns the
/// identifier and the text from the stop character on.
fn ident<'a>(text: &'a str, stops: &[char]) -> Result<(String, &'a str), String> {
    if let Some(quoted) = text.strip_prefix('"') {
        let mut out = String::new();
        let mut rest = quoted;
        loop {
            let Some(at) = rest.find('"') else {
                return Err("unterminated double quote".into());
            };
            out.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            match rest.strip_prefix('"') {
                Some(after) => {
                    out.push('"');
                    rest = after;
                }
                None => break,
            }
        }
        if out.is_empty() {
            return Err("empty quoted name".into());
        }
        if !rest.is_empty() && !rest.starts_with(stops) {
            return Err("unexpected text after the closing double quote".into());
        }
        return Ok((out, rest));
    }
    let end = text.find(stops).unwrap_or(text.len());
    let bare = &text[..end];
    if bare.is_empty() {
        return Err("empty name".into());
    }
    if let Some(c) = bare.chars().find(|&c| needs_quotes(c)) {
        return Err(format!("{c:?} is only allowed inside a double-quoted name"));
    }
    Ok((bare.to_owned(), &text[end..]))
}

/// `<col>.[not.]<op>.<value>`; the value is everything after the operator's dot.
fn parse_condition(text: &str, limits: &Limits) -> Result<RawCondition, QueryError> {
    let (column, negated, op, rest) = split_condition(text)?;
    let value = condition_value(&column, op, rest, limits)?;
    Ok(RawCondition {
        column,
        negated,
        op,
        value,
    })
}

/// The parts of `<col>.[not.]<op>.<value>`: column, negation, operator and the value's text
/// (not parsed).
pub(crate) fn split_condition(text: &str) -> Result<(String, bool, Operator, &str), QueryError> {
    let shape = || {
        QueryError::bad_query(format!(
            "condition {text:?}: expected <column>.<operator>.<value>"
        ))
    };
    let (column, rest) = ident(text, &['.'])
        .map_err(|msg| QueryError::bad_query(format!("condition {text:?}: column {msg}")))?;
    let rest = rest.strip_prefix('.').ok_or_else(shape)?;
    let (mut word, mut rest) = rest.split_once('.').ok_or_else(shape)?;
    let negated = word == "not";
    if negated {
        (word, rest) = rest.split_once('.').ok_or_else(shape)?;
    }
    let op = Operator::from_word(word).ok_or_else(|| {
        QueryError::bad_operator(format!(
            "unknown operator {word:?} in {text:?}: expected eq, neq, lt, lte, gt, gte, in, is, like or ilike, optionally prefixed by not."
        ))
    })?;
    Ok((column, negated, op, rest))
}

/// A condition's value text parsed for its operator, under `limits`.
pub(crate) fn condition_value(
    column: &str,
    op: Operator,
    rest: &str,
    limits: &Limits,
) -> Result<RawValue, QueryError> {
    Ok(match op {
        Operator::In => RawValue::List(
            parse_list(rest, limits.max_in_list)?.ok_or_else(|| limits.in_list_too_long(column))?,
        ),
        Operator::Like | Operator::Ilike if rest.len() > limits.max_like_pattern => {
            return Err(limits.like_pattern_too_long(column, rest.len()))
        }
        Operator::Is => RawValue::Is(match rest.to_ascii_lowercase().as_str() {
            "null" | "unknown" => IsValue::Null,
            "true" => IsValue::True,
            "false" => IsValue::False,
            _ => {
                return Err(QueryError::bad_value(format!(
                    "is.{rest}: is. takes null, true or false"
                )))
            }
        }),
        _ => RawValue::One(rest.to_owned()),
    })
}

/// `a,b,c` or PostgREST's `(a,b,"c,d")`; quoted items take `""` or `\"` for a quote and `\\`
/// for a backslash. `()` and the empty string are the empty list. `Ok(None)` as soon as the list
/// has more than `max` items (the rest is not parsed).
pub(crate) fn parse_list(text: &str, max: usize) -> Result<Option<Vec<String>>, QueryError> {
    let inner = match text.strip_prefix('(') {
        Some(open) => open.strip_suffix(')').ok_or_else(|| {
            QueryError::bad_value(format!("in.{text}: missing closing parenthesis"))
        })?,
        None => text,
    };
    let mut items = Vec::new();
    if inner.is_empty() {
        return Ok(Some(items));
    }
    let mut rest = inner;
    loop {
        let item;
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, e)) => out.push(e),
                        None => break,
                    },
                    '"' if quoted[i + 1..].starts_with('"') => {
                        out.push('"');
                        chars.next();
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => out.push(c),
                }
            }
            let end = end.ok_or_else(|| {
                QueryError::bad_value(format!("in.{text}: unterminated double quote"))
            })?;
            rest = &quoted[end..];
            if !rest.is_empty() && !rest.starts_with(',') {
                return Err(QueryError::bad_value(format!(
                    "in.{text}: unexpected text after a closing double quote"
                )));
            }
            item = out;
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            item = rest[..end].to_owned();
            rest = &rest[end..];
        }
        if items.len() == max {
            return Ok(None);
        }
        items.push(item);
        match rest.strip_prefix(',') {
            Some(after) => rest = after,
            None => return Ok(Some(items)),
        }
    }
}

/// `select=a,b` (names may be double-quoted); `*` is the whole row.
fn parse_select(text: &str) -> Result<Option<Vec<Box<str>>>, QueryError> {
    if text == "*" {
        return Ok(None);
    }
    let mut columns = Vec::new();
    let mut rest = text;
    loop {
        let (name, after) = ident(rest, &[','])
            .map_err(|msg| QueryError::bad_query(format!("select={text}: {msg}")))?;
        columns.push(name.into_boxed_str());
        match after.strip_prefix(',') {
            Some(next) => rest = next,
            None => return Ok(Some(columns)),
        }
    }
}

#[cfg(test)]
#[path = "request_tests.rs"]
mod tests;
