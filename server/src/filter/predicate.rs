//! Bind stage and evaluation: resolves a `Request`'s columns against the catalog, parses every
//! value by the column's type once, and evaluates the conditions on decoded changes without
//! allocating. Also the canonical keys of the hub's `eq` index. Does not parse query syntax (see
//! `request`) and does not choose which subscriptions to evaluate (see `hub`).

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::HashSet;

use crate::decode::{Change, Column, Format, Image, Value};
use crate::vocab::Op;

use super::error::{code, QueryError};
use super::like::Pattern;
use super::number::{Num, NumConst};
use super::request::{IsValue, Operator, RawCondition, RawValue, Request};
use super::temporal;
use super::types::{ColumnInfo, TypeClass};

/// A bound subscription filter: change types, typed conditions (AND-ed), projection.
#[derive(Clone, Debug)]
pub struct Filter {
    ops: u8,
    conditions: Box<[Condition]>,
    select: Option<Box<[Box<str>]>>,
    /// `format=`: how the change frames of the subscription are shaped.
    format: Format,
    /// Index of the condition used for the hub's hash index, with its canonical key.
    eq_key: Option<(usize, Box<[u8]>)>,
}

#[derive(Clone, Debug)]
struct Condition {
    column: Box<str>,
    class: TypeClass,
    /// timestamptz / timetz: offsets count.
    zoned: bool,
    negated: bool,
    test: Test,
}

#[derive(Clone, Debug)]
enum Test {
    Cmp(Operator, Operand),
    In(InSet),
    IsNull,
    IsBool(bool),
    Like(Pattern),
}

/// A query value parsed by the column's class at bind time.
#[derive(Clone, Debug)]
enum Operand {
    Num(NumConst),
    Bool(bool),
    /// Timestamp, date or time as ordered nanoseconds (see `temporal`).
    Instant(i128),
    Text(Box<str>),
}

/// The operands of an `in` list by canonical key (`Operand::write_key`): one hash lookup per
/// evaluation instead of a comparison per item. Equal keys exactly when `compare` says equal.
#[derive(Clone, Debug, Default)]
struct InSet(HashSet<Box<[u8]>>);

/// A column value read through the column's class.
enum Typed<'a> {
    Num(Num<'a>),
    Bool(bool),
    Instant(i128),
    Text(&'a str),
}

/// Resolve columns and parse values by type. Errors: `unknown_column`, `bad_value`, `bad_operator`.
pub fn bind(req: &Request, columns: &[ColumnInfo]) -> Result<Filter, QueryError> {
    let find = |name: &str| {
        columns.iter().find(|c| c.name == name).ok_or_else(|| {
            QueryError::new(
                code::UNKNOWN_COLUMN,
                format!("column {name:?} does not exist in table {}", req.table),
            )
        })
    };
    let mut conditions = Vec::with_capacity(req.conditions.len());
    for raw in &req.conditions {
        conditions.push(bind_condition(raw, find(&raw.column)?)?);
    }
    let select = match &req.select {
        Some(names) => {
            for name in names {
                find(name)?;
            }
            Some(names.clone().into_boxed_slice())
        }
        None => None,
    };
    let eq_key = conditions.iter().enumerate().find_map(|(i, c)| {
        let Test::Cmp(Operator::Eq, operand) = &c.test else {
            return None;
        };
        if c.negated {
            return None;
        }
        let mut key = Vec::new();
        operand_key(operand, c.class, &mut key)?;
        Some((i, key.into_boxed_slice()))
    });
    Ok(Filter {
        ops: req.ops,
        conditions: conditions.into_boxed_slice(),
        select,
        format: req.format,
        eq_key,
    })
}

fn bind_condition(raw: &RawCondition, info: &ColumnInfo) -> Result<Condition, QueryError> {
    let class = info.class;
    let zoned = TypeClass::is_zoned(&info.type_name);
    let bad_op = |why: &str| {
        QueryError::bad_operator(format!(
            "{}{} cannot be used on column {:?} of type {}: {why}",
            if raw.negated { "not." } else { "" },
            raw.op.as_str(),
            raw.column,
            info.type_name
        ))
    };
    // uuid input is case-insensitive and its output lowercase: compare in the output's form.
    let uuid = info.type_name == "uuid";
    let operand = |text: &str| {
        let parsed = if uuid {
            parse_operand(&text.to_ascii_lowercase(), class, zoned)
        } else {
            parse_operand(text, class, zoned)
        };
        parsed.ok_or_else(|| {
            QueryError::bad_value(format!(
                "value {text:?} for column {:?} is not a valid {}",
                raw.column, info.type_name
            ))
        })
    };
    let test = match (&raw.value, raw.op) {
        (RawValue::Is(IsValue::Null), _) => Test::IsNull,
        (RawValue::Is(v), _) if class == TypeClass::Bool => Test::IsBool(*v == IsValue::True),
        (RawValue::Is(_), _) => return Err(bad_op("is.true and is.false need a boolean column")),
        (RawValue::List(items), _) => {
            let mut set = InSet::default();
            for item in items {
                set.insert(&operand(item)?);
            }
            Test::In(set)
        }
        (RawValue::One(_), Operator::Like | Operator::Ilike) if class == TypeClass::Bool => {
            return Err(bad_op("like and ilike need a text-like column"))
        }
        (RawValue::One(p), Operator::Like) => Test::Like(Pattern::compile(p, false)),
        (RawValue::One(p), Operator::Ilike) => Test::Like(Pattern::compile(p, true)),
        (RawValue::One(v), op) => Test::Cmp(op, operand(v)?),
    };
    Ok(Condition {
        column: raw.column.as_str().into(),
        class,
        zoned,
        negated: raw.negated,
        test,
    })
}

fn parse_operand(text: &str, class: TypeClass, zoned: bool) -> Option<Operand> {
    Some(match class {
        TypeClass::Number => Operand::Num(NumConst::parse(text)?),
        TypeClass::Bool => Operand::Bool(parse_bool(text)?),
        TypeClass::Timestamp => Operand::Instant(temporal::parse_timestamp(text, zoned)?),
        TypeClass::Date => Operand::Instant(temporal::parse_date(text)?),
        TypeClass::Time => Operand::Instant(temporal::parse_time(text, zoned)?),
        TypeClass::Json | TypeClass::Text => Operand::Text(text.into()),
    })
}

/// Postgres boolean input spellings (without its unique-prefix rule).
fn parse_bool(text: &str) -> Option<bool> {
    const TRUE: [&str; 6] = ["t", "true", "y", "yes", "on", "1"];
    const FALSE: [&str; 6] = ["f", "false", "n", "no", "off", "0"];
    if TRUE.iter().any(|w| w.eq_ignore_ascii_case(text)) {
        Some(true)
    } else if FALSE.iter().any(|w| w.eq_ignore_ascii_case(text)) {
        Some(false)
    } else {
        None
    }
}

impl Filter {
    /// Evaluate against a change. Insert and update read the new image (falling back to the old
    /// one for a column absent from it, i.e. an unchanged TOAST value); delete reads the old image.
    /// A truncate matches whenever its type was requested: it carries no row to test. Changes of
    /// a type outside the `ops` mask and non-row messages never match.
    pub fn matches(&self, change: &Change<'_>) -> bool {
        let Some(op) = change.op() else { return false };
        if self.ops & op.bit() == 0 {
            return false;
        }
        op == Op::Truncate
            || self
                .conditions
                .iter()
                .all(|c| c.eval(row_column(change, op, &c.column)))
    }

    /// Whether a snapshot row (decoded as an insert) meets the conditions; the operation mask
    /// does not apply to rows.
    pub fn matches_row(&self, change: &Change<'_>) -> bool {
        self.conditions
            .iter()
            .all(|c| c.eval(row_column(change, Op::Insert, &c.column)))
    }

    /// The first non-negated `eq` condition on a number, boolean or text column: its column name
    /// and canonical key (see `index_key`).
    pub fn eq_index(&self) -> Option<(&str, &[u8])> {
        let (i, key) = self.eq_key.as_ref()?;
        Some((&self.conditions[*i].column, key))
    }

    /// The type class of the `eq_index` column, to compute row keys with `index_key`.
    pub fn eq_class(&self) -> Option<TypeClass> {
        let (i, _) = self.eq_key.as_ref()?;
        Some(self.conditions[*i].class)
    }

    pub fn select(&self) -> Option<&[Box<str>]> {
        self.select.as_deref()
    }

    /// How the subscription's change frames are shaped.
    pub fn format(&self) -> Format {
        self.format
    }

    pub fn ops(&self) -> u8 {
        self.ops
    }
}

/// The column a filter reads for a change: the image choice of `Filter::matches`, exposed so the
/// hub's index lookup reads the same value.
pub fn row_column<'a>(change: &Change<'a>, op: Op, name: &str) -> Option<Column<'a>> {
    match op {
        Op::Insert | Op::Update => change
            .get(Image::New, name)
            .or_else(|| change.get(Image::Old, name)),
        Op::Delete => change.get(Image::Old, name),
        Op::Truncate => None,
    }
}

impl Condition {
    fn eval(&self, column: Option<Column<'_>>) -> bool {
        // A column absent from the row cannot be tested: false, negated or not.
        let Some(column) = column else { return false };
        let value = column.value;
        let result = match &self.test {
            // `IS` is null-safe: negation simply flips it.
            Test::IsNull => Some(value == Value::Null),
            Test::IsBool(want) => Some(bool_of(value) == Some(*want)),
            // SQL semantics: null (and an unreadable value) satisfies neither a test nor its `not`.
            _ if value == Value::Null => return false,
            Test::Cmp(op, rhs) => self
                .typed(value)
                .and_then(|t| compare(&t, rhs))
                .map(|o| holds(*op, o)),
            Test::In(set) => self.typed(value).map(|t| set.contains(&t)),
            Test::Like(pattern) => match value {
                Value::String(s) | Value::Number(s) => Some(pattern.matches(s)),
                Value::Bool(_) | Value::Null => None,
            },
        };
        match result {
            Some(r) => r != self.negated,
            None => false,
        }
    }

    fn typed<'a>(&self, value: Value<'a>) -> Option<Typed<'a>> {
        let text = match value {
            Value::Null => return None,
            Value::Bool(b) => {
                return match self.class {
                    TypeClass::Bool => Some(Typed::Bool(b)),
                    TypeClass::Text | TypeClass::Json => {
                        Some(Typed::Text(if b { "true" } else { "false" }))
                    }
                    _ => None,
                }
            }
            Value::Number(s) | Value::String(s) => s,
        };
        Some(match self.class {
            TypeClass::Number => Typed::Num(Num::parse(text)?),
            TypeClass::Bool => Typed::Bool(bool_of(value)?),
            TypeClass::Timestamp => Typed::Instant(temporal::parse_timestamp(text, self.zoned)?),
            TypeClass::Date => Typed::Instant(temporal::parse_date(text)?),
            TypeClass::Time => Typed::Instant(temporal::parse_time(text, self.zoned)?),
            TypeClass::Json | TypeClass::Text => Typed::Text(text),
        })
    }
}

fn bool_of(value: Value<'_>) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(b),
        Value::String(s) => parse_bool(s),
        Value::Null | Value::Number(_) => None,
    }
}

fn compare(lhs: &Typed<'_>, rhs: &Operand) -> Option<Ordering> {
    Some(match (lhs, rhs) {
        (Typed::Num(a), Operand::Num(b)) => a.cmp(&b.as_num()),
        (Typed::Bool(a), Operand::Bool(b)) => a.cmp(b),
        (Typed::Instant(a), Operand::Instant(b)) => a.cmp(b),
        (Typed::Text(a), Operand::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
        _ => return None,
    })
}

fn holds(op: Operator, ord: Ordering) -> bool {
    match op {
        Operator::Eq => ord.is_eq(),
        Operator::Neq => ord.is_ne(),
        Operator::Lt => ord.is_lt(),
        Operator::Lte => ord.is_le(),
        Operator::Gt => ord.is_gt(),
        Operator::Gte => ord.is_ge(),
        // Bound into other tests; never reaches a comparison.
        Operator::In | Operator::Is | Operator::Like | Operator::Ilike => false,
    }
}

fn operand_key(operand: &Operand, class: TypeClass, out: &mut Vec<u8>) -> Option<()> {
    match (operand, class) {
        (Operand::Num(_), TypeClass::Number)
        | (Operand::Bool(_), TypeClass::Bool)
        | (Operand::Text(_), TypeClass::Text) => operand.write_key(out),
        _ => return None,
    }
    Some(())
}

const KEY_TRUE: &[u8] = b"t";
const KEY_FALSE: &[u8] = b"f";

impl Operand {
    /// Canonical key: two operands of one class have equal keys exactly when `compare` finds a
    /// column value equal to one equal to the other. Numbers by value (`1`, `1.0` and `10e-1`
    /// give `1`), booleans `t`/`f`, instants as their 16 big-endian bytes, text by its bytes.
    fn write_key(&self, out: &mut Vec<u8>) {
        match self {
            Operand::Num(n) => n.as_num().write_key(out),
            Operand::Bool(b) => out.extend_from_slice(if *b { KEY_TRUE } else { KEY_FALSE }),
            Operand::Instant(i) => out.extend_from_slice(&i.to_be_bytes()),
            Operand::Text(t) => out.extend_from_slice(t.as_bytes()),
        }
    }
}

thread_local! {
    /// Scratch for the key of a number column value (the only key that is not a slice of the
    /// value or a fixed-size array).
    static NUM_KEY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

impl InSet {
    fn insert(&mut self, operand: &Operand) {
        let mut key = Vec::new();
        operand.write_key(&mut key);
        self.0.insert(key.into_boxed_slice());
    }

    /// Whether the value equals one of the operands (`Operand::write_key` of the same class).
    fn contains(&self, value: &Typed<'_>) -> bool {
        match value {
            Typed::Text(t) => self.0.contains(t.as_bytes()),
            Typed::Bool(b) => self.0.contains(if *b { KEY_TRUE } else { KEY_FALSE }),
            Typed::Instant(i) => self.0.contains(&i.to_be_bytes()[..]),
            Typed::Num(n) => NUM_KEY.with(|scratch| match scratch.try_borrow_mut() {
                Ok(mut key) => {
                    key.clear();
                    n.write_key(&mut key);
                    self.0.contains(&key[..])
                }
                Err(_) => {
                    let mut key = Vec::new();
                    n.write_key(&mut key);
                    self.0.contains(&key[..])
                }
            }),
        }
    }
}

/// Canonical key of a column value for the hub's `eq` index, written into `scratch` (cleared
/// first, reused across calls). Equal to `Filter::eq_index`'s key exactly when the `eq` condition
/// would hold. `None` for null, unreadable values and classes without an index (json, temporal).
pub fn index_key<'s>(
    value: Value<'_>,
    class: TypeClass,
    scratch: &'s mut Vec<u8>,
) -> Option<&'s [u8]> {
    scratch.clear();
    match (class, value) {
        (_, Value::Null) => return None,
        (TypeClass::Number, Value::Number(s) | Value::String(s)) => {
            Num::parse(s)?.write_key(scratch)
        }
        (TypeClass::Bool, v) => scratch.push(if bool_of(v)? { b't' } else { b'f' }),
        (TypeClass::Text, Value::String(s) | Value::Number(s)) => {
            scratch.extend_from_slice(s.as_bytes())
        }
        (TypeClass::Text, Value::Bool(b)) => {
            scratch.extend_from_slice(if b { b"true" } else { b"false" })
        }
        _ => return None,
    }
    Some(scratch)
}

#[cfg(test)]
#[path = "predicate_tests.rs"]
mod tests;
