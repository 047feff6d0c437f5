//! The `walcast.ddl` logical message of `walcast setup`'s event triggers.

use serde_json::{Map, Value};

use crate::filter::{ColumnShape, TableShape};

use super::event::{SchemaEvent, Source};
use super::MESSAGE_VERSION;

/// A control message of `walcast setup` itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Installed,
    Uninstalled,
}

/// A parsed message: the table events of one DDL command, or a control message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Events(Vec<SchemaEvent>),
    Control(Control),
}

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error(
        "walcast.ddl message version {0} is newer than this walcast reads (1): upgrade walcast"
    )]
    Version(u64),
    #[error("walcast.ddl message is not valid: {0}")]
    Invalid(String),
}

/// Reads one message. Strict: every key the trigger writes must be there with its type (keys it
/// does not know are ignored), because a shape read wrong would rebind subscriptions wrong.
pub fn parse_message(content: &str) -> Result<Message, MessageError> {
    let value: Value = serde_json::from_str(content)
        .map_err(|e| MessageError::Invalid(format!("not JSON: {e}")))?;
    let Value::Object(message) = value else {
        return Err(invalid("", "expected a JSON object", &value));
    };
    let version = field(&message, "", "version")?;
    match version.as_u64() {
        Some(v) if v == u64::from(MESSAGE_VERSION) => {}
        Some(v) if v > u64::from(MESSAGE_VERSION) => return Err(MessageError::Version(v)),
        _ => return Err(invalid("version", "expected 1", version)),
    }
    if let Some(error) = message.get("error") {
        // The trigger caught an exception (the DDL itself went through): its text, as is.
        let text = match error {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        return Err(MessageError::Invalid(
            match message.get("command").and_then(Value::as_str) {
                Some(command) => format!("the event trigger failed on {command}: {text}"),
                None => format!("the event trigger failed: {text}"),
            },
        ));
    }
    if let Some(control) = message.get("control") {
        return match control.as_str() {
            Some("installed") => Ok(Message::Control(Control::Installed)),
            Some("uninstalled") => Ok(Message::Control(Control::Uninstalled)),
            _ => Err(invalid(
                "control",
                "expected \"installed\" or \"uninstalled\"",
                control,
            )),
        };
    }
    let command = string(&message, "", "command")?;
    let tables = field(&message, "", "tables")?;
    let Value::Array(tables) = tables else {
        return Err(invalid("tables", "expected an array", tables));
    };
    if let Some(dropped) = message.get("dropped") {
        if !dropped.is_array() {
            return Err(invalid("dropped", "expected an array", dropped));
        }
    }
    let mut events = Vec::with_capacity(tables.len());
    for (i, entry) in tables.iter().enumerate() {
        let at = format!("tables[{i}]");
        let Value::Object(entry) = entry else {
            return Err(invalid(&at, "expected an object", entry));
        };
        let oid = oid(entry, &at, "oid")?;
        let before = shape(entry, &at, "before", oid)?;
        let after = shape(entry, &at, "after", oid)?;
        if before.is_none() && after.is_none() {
            return Err(MessageError::Invalid(format!(
                "{at}: \"before\" and \"after\" are both null"
            )));
        }
        events.push(SchemaEvent {
            source: Source::Trigger,
            command: Some(command.clone()),
            oid: Some(oid),
            before,
            after,
        });
    }
    Ok(Message::Events(events))
}

/// `<at>.<key>`, or `<key>` at the top.
fn path(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

fn invalid(path: &str, expected: &str, found: &Value) -> MessageError {
    let found = match found {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    if path.is_empty() {
        MessageError::Invalid(format!("{expected}, found {found}"))
    } else {
        MessageError::Invalid(format!("{path}: {expected}, found {found}"))
    }
}

fn field<'a>(
    object: &'a Map<String, Value>,
    at: &str,
    key: &str,
) -> Result<&'a Value, MessageError> {
    object
        .get(key)
        .ok_or_else(|| MessageError::Invalid(format!("{} is missing", path(at, key))))
}

fn string(object: &Map<String, Value>, at: &str, key: &str) -> Result<String, MessageError> {
    match field(object, at, key)? {
        Value::String(s) => Ok(s.clone()),
        other => Err(invalid(&path(at, key), "expected a string", other)),
    }
}

/// A key that must be there, as a string or `null`.
fn nullable_string(
    object: &Map<String, Value>,
    at: &str,
    key: &str,
) -> Result<Option<String>, MessageError> {
    match field(object, at, key)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        other => Err(invalid(&path(at, key), "expected a string or null", other)),
    }
}

fn boolean(object: &Map<String, Value>, at: &str, key: &str) -> Result<bool, MessageError> {
    match field(object, at, key)? {
        Value::Bool(b) => Ok(*b),
        other => Err(invalid(&path(at, key), "expected true or false", other)),
    }
}

fn oid(object: &Map<String, Value>, at: &str, key: &str) -> Result<u32, MessageError> {
    let value = field(object, at, key)?;
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .filter(|&n| n != 0)
        .ok_or_else(|| invalid(&path(at, key), "expected an oid (1 to 4294967295)", value))
}

/// `before` or `after` of a table entry: `null`, or a shape of the entry's table.
fn shape(
    entry: &Map<String, Value>,
    at: &str,
    key: &str,
    entry_oid: u32,
) -> Result<Option<TableShape>, MessageError> {
    let at = path(at, key);
    let Some(shape) = entry.get(key) else {
        return Err(MessageError::Invalid(format!(
            "{at} is missing (null when there is no table)"
        )));
    };
    let shape = match shape {
        Value::Null => return Ok(None),
        Value::Object(shape) => shape,
        other => return Err(invalid(&at, "expected an object or null", other)),
    };
    let schema = string(shape, &at, "schema")?;
    let table = string(shape, &at, "table")?;
    let oid = oid(shape, &at, "oid")?;
    if oid != entry_oid {
        return Err(MessageError::Invalid(format!(
            "{at}.oid is {oid}, the entry's oid is {entry_oid}"
        )));
    }
    let columns = match field(shape, &at, "columns")? {
        Value::Array(columns) => columns,
        other => return Err(invalid(&path(&at, "columns"), "expected an array", other)),
    };
    let columns = columns
        .iter()
        .enumerate()
        .map(|(i, c)| column(c, &format!("{at}.columns[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    for pair in columns.windows(2) {
        if pair[0].attnum >= pair[1].attnum {
            return Err(MessageError::Invalid(format!(
                "{at}.columns: not in attnum order ({:?} after {:?})",
                pair[1].name, pair[0].name
            )));
        }
    }
    for (i, c) in columns.iter().enumerate() {
        if columns[..i].iter().any(|other| other.name == c.name) {
            return Err(MessageError::Invalid(format!(
                "{at}.columns: {:?} appears twice",
                c.name
            )));
        }
    }
    let primary_key = match field(shape, &at, "primary_key")? {
        Value::Array(names) => names,
        other => {
            return Err(invalid(
                &path(&at, "primary_key"),
                "expected an array",
                other,
            ))
        }
    };
    let primary_key = primary_key
        .iter()
        .enumerate()
        .map(|(i, name)| match name {
            Value::String(name) if columns.iter().any(|c| c.name == *name) => Ok(name.clone()),
            Value::String(name) => Err(MessageError::Invalid(format!(
                "{at}.primary_key[{i}]: {name:?} is not one of the columns"
            ))),
            other => Err(invalid(
                &format!("{at}.primary_key[{i}]"),
                "expected a column name",
                other,
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(TableShape {
        schema,
        table,
        oid: Some(oid),
        columns,
        primary_key,
    }))
}

fn column(value: &Value, at: &str) -> Result<ColumnShape, MessageError> {
    let Value::Object(column) = value else {
        return Err(invalid(at, "expected an object", value));
    };
    let attnum = field(column, at, "attnum")?;
    let attnum = attnum
        .as_i64()
        .and_then(|n| i16::try_from(n).ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            invalid(
                &path(at, "attnum"),
                "expected an attnum (1 to 32767)",
                attnum,
            )
        })?;
    Ok(ColumnShape {
        attnum: Some(attnum),
        name: string(column, at, "name")?,
        type_name: string(column, at, "type")?,
        nullable: Some(boolean(column, at, "nullable")?),
        default: nullable_string(column, at, "default")?,
        generated: nullable_string(column, at, "generated")?,
        generation_expression: nullable_string(column, at, "generation_expression")?,
        identity: nullable_string(column, at, "identity")?,
        primary_key: boolean(column, at, "primary_key")?,
    })
}
