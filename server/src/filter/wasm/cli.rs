//! `walcast plugin check` / `walcast plugin run`: validate one module file, or run it on one
//! change given as JSON, without a database. `run` shows the guest's `log` lines on stderr and
//! fails (non-zero exit in `main`) when the plugin fails on the change. Does not parse command
//! lines (see `main`).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value as Json};

use super::abi::{signature, ABI_VERSION};
use super::engine::Shared;
use super::error::one_line;
use super::group::PluginGroup;
use super::plugin::PluginEntry;
use super::registry::hex_sha256;
use super::state::LogSink;
use super::{PluginError, Verdict};
use crate::config::PluginsConfig;
use crate::decode::Decoder;

/// What `check_file` found. `Display` prints a human report ending in `verdict  ok`.
#[derive(Debug, Clone)]
pub struct CheckReport {
    pub name: String,
    pub path: String,
    pub sha256: String,
    pub abi_version: i32,
    /// `walcast_v1::field (i32, i32, i32) -> i32`, ...
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "plugin   {} ({})", self.name, self.path)?;
        writeln!(f, "sha256   {}", self.sha256)?;
        writeln!(f, "abi      walcast_v{}", self.abi_version)?;
        writeln!(f, "exports  {}", self.exports.join(", "))?;
        if self.imports.is_empty() {
            writeln!(f, "imports  (none)")?;
        }
        for (i, import) in self.imports.iter().enumerate() {
            writeln!(
                f,
                "{}{import}",
                if i == 0 { "imports  " } else { "         " }
            )?;
        }
        write!(f, "verdict  ok")
    }
}

/// What `run_file` produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// `Drop`, `Pass` or `Rewritten`: a failure is `PluginError::Failed` instead.
    pub verdict: Verdict,
    /// Wall time of the `walcast_filter` call (including copying the change in).
    pub elapsed: Duration,
}

impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.elapsed.as_secs_f64() * 1e6;
        match &self.verdict {
            Verdict::Drop => write!(f, "verdict: drop ({us:.0} µs)"),
            Verdict::Pass => write!(f, "verdict: pass ({us:.0} µs)"),
            Verdict::Rewritten(r) => write!(f, "verdict: rewritten ({us:.0} µs)\n{}", r.walcast),
            Verdict::Error(msg) => write!(f, "verdict: error ({us:.0} µs)\n{msg}"),
        }
    }
}

fn read(path: &Path) -> Result<(String, Vec<u8>), PluginError> {
    let bytes = std::fs::read(path).map_err(|e| PluginError::io(path, e))?;
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("plugin")
        .to_owned();
    Ok((name, bytes))
}

/// Validate a module as the server would load it.
pub fn check_file(path: &Path) -> Result<CheckReport, PluginError> {
    let (name, bytes) = read(path)?;
    let shared = Shared::new(&PluginsConfig::default())?;
    let pre = shared
        .compile(&name, &bytes)
        .map_err(PluginError::Invalid)?;
    let module = pre.module();
    let imports = module
        .imports()
        .map(|i| {
            let sig = match i.ty() {
                wasmtime::ExternType::Func(ty) => signature(&ty),
                _ => String::new(),
            };
            format!("{}::{} {}", i.module(), i.name(), sig)
        })
        .collect();
    let exports = module.exports().map(|e| e.name().to_owned()).collect();
    Ok(CheckReport {
        name,
        path: path.display().to_string(),
        sha256: hex_sha256(&bytes),
        abi_version: ABI_VERSION,
        imports,
        exports,
    })
}

/// Run a module on one change. `change_json` is a wal2json v2 message or a walcast change frame.
/// The guest's `log` lines go to stderr as they are written (`[plugin] level: text`). A trap, the
/// call deadline or an `ERROR` verdict is `Err(PluginError::Failed)` naming the cause, so the
/// command exits non-zero.
pub fn run_file(
    path: &Path,
    change_json: &str,
    params: &[(String, String)],
    cfg: &PluginsConfig,
) -> Result<RunOutcome, PluginError> {
    run_with(path, change_json, params, cfg, LogSink::stderr())
}

/// `run_file` with the guest's log lines sent to `log_sink`.
pub(crate) fn run_with(
    path: &Path,
    change_json: &str,
    params: &[(String, String)],
    cfg: &PluginsConfig,
    log_sink: LogSink,
) -> Result<RunOutcome, PluginError> {
    let (name, bytes) = read(path)?;
    let mut payload = to_wal2json(change_json)?.into_bytes();
    let shared = Shared::with_log_sink(cfg, log_sink)?;
    let pre = shared
        .compile(&name, &bytes)
        .map_err(PluginError::Invalid)?;
    let entry = Arc::new(PluginEntry::new(&name));
    entry.install(hex_sha256(&bytes), pre);
    let module = entry
        .current
        .load_full()
        .ok_or_else(|| PluginError::Invalid(name.clone()))?;
    let group = PluginGroup::new(shared, entry, module, params.to_vec(), None, None)?;
    let mut decoder = Decoder::new();
    let change = decoder
        .decode(&mut payload)
        .map_err(|e| PluginError::BadChange(e.to_string()))?;
    if change.op().is_none() {
        return Err(PluginError::BadChange(
            "not an insert, update, delete or truncate".into(),
        ));
    }
    let started = Instant::now();
    let verdict = group.evaluate(&change);
    let elapsed = started.elapsed();
    if let Verdict::Error(msg) = verdict {
        return Err(PluginError::Failed(one_line(&msg)));
    }
    Ok(RunOutcome { verdict, elapsed })
}

/// A walcast change frame as `run_file` accepts it; rows keep their column order.
#[derive(serde::Deserialize)]
struct ChangeFrame {
    #[serde(rename = "type")]
    kind: Option<String>,
    op: String,
    schema: Option<String>,
    table: Option<String>,
    lsn: Option<String>,
    new: Option<Row>,
    old: Option<Row>,
}

/// A JSON object as ordered (name, value) pairs (serde_json's map would sort them).
struct Row(Vec<(String, Json)>);

impl<'de> serde::Deserialize<'de> for Row {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Row;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a row object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Row, A::Error> {
                let mut row = Vec::new();
                while let Some(entry) = map.next_entry::<String, Json>()? {
                    row.push(entry);
                }
                Ok(Row(row))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// A wal2json v2 message text from either accepted input form.
pub(crate) fn to_wal2json(text: &str) -> Result<String, PluginError> {
    let value: Json =
        serde_json::from_str(text).map_err(|e| PluginError::BadChange(e.to_string()))?;
    let Json::Object(obj) = value else {
        return Err(PluginError::BadChange("expected a JSON object".into()));
    };
    if obj.contains_key("action") {
        return Ok(text.to_owned());
    }
    if obj.get("type").and_then(Json::as_str) != Some("change") {
        return Err(PluginError::BadChange(
            "expected a wal2json v2 message (with \"action\") or a change frame (\"type\":\"change\")"
                .into(),
        ));
    }
    let frame: ChangeFrame =
        serde_json::from_str(text).map_err(|e| PluginError::BadChange(e.to_string()))?;
    debug_assert_eq!(frame.kind.as_deref(), Some("change"));
    let action = match frame.op.as_str() {
        "insert" => "I",
        "update" => "U",
        "delete" => "D",
        "truncate" => "T",
        _ => {
            return Err(PluginError::BadChange(
                "\"op\" must be insert, update, delete or truncate".into(),
            ))
        }
    };
    let mut msg = Map::new();
    msg.insert("action".into(), json!(action));
    msg.insert(
        "schema".into(),
        json!(frame.schema.as_deref().unwrap_or("public")),
    );
    msg.insert("table".into(), json!(frame.table.as_deref().unwrap_or("t")));
    if let Some(lsn) = frame.lsn {
        msg.insert("lsn".into(), json!(lsn));
    }
    for (row, target) in [(frame.new, "columns"), (frame.old, "identity")] {
        if let Some(Row(row)) = row {
            msg.insert(target.into(), Json::Array(row.iter().map(column).collect()));
        }
    }
    Ok(Json::Object(msg).to_string())
}

/// One wal2json column entry; JSON objects/arrays become `json` columns holding their text.
fn column((name, value): &(String, Json)) -> Json {
    let (ty, value) = match value {
        Json::Null => ("text", Json::Null),
        Json::Bool(_) => ("boolean", value.clone()),
        Json::Number(_) => ("numeric", value.clone()),
        Json::String(_) => ("text", value.clone()),
        Json::Array(_) | Json::Object(_) => ("json", Json::String(value.to_string())),
    };
    json!({ "name": name, "type": ty, "value": value })
}
