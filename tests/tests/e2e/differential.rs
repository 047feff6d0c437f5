//! Differential test: one workload read twice, as walcast's WebSocket `change` frames and from a
//! second wal2json slot with walcast's options (`pg_logical_slot_get_changes`), then compared change
//! by change and value by value. The workload covers every built-in type family, quoted
//! identifiers, unchanged TOAST, each replica identity, COPY (multi-insert) and TRUNCATE.
//!
//! Comparison rules (docs/guides/frames.md; `server/src/decode/frame.rs`), per table:
//! - the same changes in the same order: none missing, none extra (paired by LSN; the rows of one
//!   COPY batch share an LSN and pair by position);
//! - `op` is the action (`I` insert, `U` update, `D` delete, `T` truncate); `schema`, `table`, `lsn`
//!   equal; `xid` the same digits; `ts` the same instant as wal2json's `timestamp`;
//! - `new` is wal2json's `columns`, `old` its `identity` (`null` when absent or empty): the same
//!   column names in the same order, so a column wal2json leaves out (unchanged TOAST) must be absent;
//! - a `json`/`jsonb` column is wal2json's string parsed as JSON, any other value is wal2json's value;
//!   both compare exactly, numbers (inside JSON documents too) by their text, objects by ordered keys.

use std::io::Cursor;

use anyhow::{bail, ensure, Context, Result};
use futures_util::SinkExt;
use tokio::task::JoinHandle;
use walcast_tests::{PgCluster, TestDb, Walcast, WsClient};

use crate::LONG;
use raw_json::Json;
use workload::{
    bulk_copy_data, fence_sql, quote_ident, AFTER_COPY, BULK_ROWS, CHANGES, INSERTS, SCHEMA, TABLES,
};

mod raw_json;
mod workload;

/// walcast's START_REPLICATION options (`start_replication_command` in server/src/source/proto.rs;
/// it adds `add-tables` only when `tables.allow` is set, which this test leaves empty).
const WAL2JSON_OPTIONS: [(&str, &str); 6] = [
    ("format-version", "2"),
    ("include-xids", "1"),
    ("include-timestamp", "1"),
    ("include-lsn", "1"),
    ("include-types", "1"),
    ("include-transaction", "1"),
];

#[tokio::test]
async fn walcast_matches_wal2json_value_by_value() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "differential").await?;
    db.exec(SCHEMA).await?;
    let reference_slot = format!("{}_ref", db.slot());
    db.client()
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'wal2json')",
            &[&reference_slot],
        )
        .await
        .context("creating the reference slot")?;
    let server = Walcast::start(&db).await?;

    let mut readers = Vec::new();
    for (schema, table) in TABLES {
        let query = format!("*:{}.{}", quote_ident(schema), quote_ident(table));
        let (client, _) = WsClient::subscribe(&server, &[("query", &query)]).await?;
        readers.push(tokio::spawn(read_until_truncate(client)));
    }

    db.exec(INSERTS).await?;
    db.exec(CHANGES).await?;
    let sink = db
        .client()
        .copy_in::<_, Cursor<Vec<u8>>>("COPY bulk FROM STDIN")
        .await?;
    let mut sink = std::pin::pin!(sink);
    sink.send(Cursor::new(bulk_copy_data())).await?;
    let copied = sink.as_mut().finish().await?;
    ensure!(copied == BULK_ROWS as u64, "COPY wrote {copied} rows");
    db.exec(AFTER_COPY).await?;
    db.exec(&fence_sql()).await?;

    let expected = reference_changes(&db, &reference_slot).await?;
    check_workload(&expected)?;

    let mut reports = Vec::new();
    let mut compared = 0;
    for ((schema, table), reader) in TABLES.iter().zip(readers) {
        let label = format!("{}.{}", quote_ident(schema), quote_ident(table));
        let want: Vec<&Json> = expected
            .iter()
            .filter(|c| str_of(c, "schema") == *schema && str_of(c, "table") == *table)
            .collect();
        let (frames, ended) = join_reader(reader).await;
        compared += want.len();
        let mut report = compare_table(&label, &want, &frames);
        if let Some(why) = ended {
            report.problems.insert(
                0,
                format!("the stream ended before the table's truncate: {why}"),
            );
        }
        reports.push(report);
    }

    let failing: Vec<&TableReport> = reports.iter().filter(|r| !r.problems.is_empty()).collect();
    if !failing.is_empty() {
        let text: Vec<String> = failing.iter().map(|r| r.render()).collect();
        bail!(
            "walcast and wal2json differ in {} of {} tables:\n{}\nwalcast's warnings (log in {}):\n{}",
            failing.len(),
            reports.len(),
            text.join("\n"),
            server.log_dir().display(),
            warnings(&server.stderr_tail(2000))
        );
    }
    eprintln!(
        "differential: {compared} changes in {} tables equal, value by value",
        reports.len()
    );
    Ok(())
}

/// The WARN and ERROR lines of walcast's log (they name skipped payloads), colours removed.
fn warnings(log: &str) -> String {
    let lines: Vec<String> = log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .take(20)
        .map(|l| {
            let mut plain = String::new();
            let mut in_escape = false;
            for c in l.chars() {
                match (in_escape, c) {
                    (false, '\u{1b}') => in_escape = true,
                    (true, 'm') => in_escape = false,
                    (false, c) => plain.push(c),
                    (true, _) => {}
                }
            }
            format!("  {}", excerpt(plain.trim(), 300))
        })
        .collect();
    if lines.is_empty() {
        "  (none)".into()
    } else {
        lines.join("\n")
    }
}

/// Reads one table's frames up to its truncate (the workload's last change of every table).
/// Stopping there rather than at a count means a change walcast dropped cannot keep the reader
/// waiting, and an extra frame cannot pass for the end. Returns the raw frames and, when the stream
/// ended or stalled before the truncate, why.
async fn read_until_truncate(mut client: WsClient) -> (Vec<String>, Option<String>) {
    let mut frames = Vec::new();
    loop {
        match client.next_text(LONG).await {
            Ok(text) => {
                let fence = raw_json::parse(&text)
                    .is_ok_and(|f| f.get("op").and_then(Json::as_str) == Some("truncate"));
                frames.push(text);
                if fence {
                    client.close().await;
                    return (frames, None);
                }
            }
            Err(e) => return (frames, Some(format!("{e:#}"))),
        }
    }
}

async fn join_reader(
    mut reader: JoinHandle<(Vec<String>, Option<String>)>,
) -> (Vec<String>, Option<String>) {
    // Each read already gives up after LONG without a frame; this bounds a slow trickle.
    match tokio::time::timeout(LONG * 3, &mut reader).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => (Vec::new(), Some(format!("reader task failed: {e}"))),
        Err(_) => {
            reader.abort();
            (
                Vec::new(),
                Some("reader still running after 3 minutes".into()),
            )
        }
    }
}

/// The reference: every I/U/D/T message of the second slot, read with walcast's options.
async fn reference_changes(db: &TestDb<'_>, slot: &str) -> Result<Vec<Json>> {
    let options: Vec<String> = WAL2JSON_OPTIONS
        .iter()
        .map(|(k, v)| format!("'{k}', '{v}'"))
        .collect();
    let sql = format!(
        "SELECT data FROM pg_logical_slot_get_changes($1, NULL, NULL, {})",
        options.join(", ")
    );
    let rows = db.client().query(&sql, &[&slot]).await?;
    let mut changes = Vec::new();
    for row in rows {
        let data: String = row.get(0);
        let msg = raw_json::parse(&data).map_err(|e| anyhow::anyhow!("wal2json output: {e}"))?;
        if matches!(str_of(&msg, "action"), "I" | "U" | "D" | "T") {
            changes.push(msg);
        }
    }
    Ok(changes)
}

/// Guards against a vacuous pass: the cases the workload is meant to exercise are in the
/// reference, and the reading strategy's assumptions (LSN order, truncate last) hold.
fn check_workload(expected: &[Json]) -> Result<()> {
    for (schema, table) in TABLES {
        let of_table: Vec<&Json> = expected
            .iter()
            .filter(|c| str_of(c, "schema") == schema && str_of(c, "table") == table)
            .collect();
        let truncates = of_table
            .iter()
            .filter(|c| str_of(c, "action") == "T")
            .count();
        ensure!(
            truncates == 1 && of_table.last().is_some_and(|c| str_of(c, "action") == "T"),
            "{schema}.{table}: the reference must end with the one truncate of the workload"
        );
        let lsns: Vec<u64> = of_table.iter().filter_map(|c| lsn_of(c)).collect();
        ensure!(
            lsns.len() == of_table.len() && lsns.windows(2).all(|w| w[0] <= w[1]),
            "{schema}.{table}: reference changes must carry non-decreasing LSNs"
        );
    }
    let toast_update = expected
        .iter()
        .find(|c| str_of(c, "table") == "toasty" && str_of(c, "action") == "U")
        .context("no update of toasty in the reference")?;
    ensure!(
        !column_names(toast_update.get("columns")).contains(&"big"),
        "the first update of toasty must leave the TOASTed column out: {}",
        excerpt(&toast_update.to_string(), 300)
    );
    let bulk_lsns: Vec<u64> = expected
        .iter()
        .filter(|c| str_of(c, "table") == "bulk" && str_of(c, "action") == "I")
        .filter_map(lsn_of)
        .collect();
    ensure!(
        bulk_lsns.len() == BULK_ROWS && bulk_lsns.windows(2).any(|w| w[0] == w[1]),
        "COPY must yield {BULK_ROWS} inserts with multi-insert records sharing an LSN"
    );
    Ok(())
}

/// Outcome of one table's comparison.
struct TableReport {
    label: String,
    expected: usize,
    delivered: usize,
    missing: usize,
    extra: usize,
    differing: usize,
    problems: Vec<String>,
}

impl TableReport {
    const SHOWN: usize = 12;

    fn render(&self) -> String {
        let mut out = format!(
            "{}: {} changes from the reference slot, {} frames from walcast; {} missing, {} extra, {} differing",
            self.label, self.expected, self.delivered, self.missing, self.extra, self.differing
        );
        for p in self.problems.iter().take(Self::SHOWN) {
            out.push_str("\n  - ");
            out.push_str(p);
        }
        if self.problems.len() > Self::SHOWN {
            out.push_str(&format!(
                "\n  ... and {} more",
                self.problems.len() - Self::SHOWN
            ));
        }
        out
    }
}

/// Pairs the reference with walcast's frames by LSN (both streams are in commit order; rows of one
/// multi-insert share an LSN and pair by position) and compares each pair.
fn compare_table(label: &str, want: &[&Json], frames: &[String]) -> TableReport {
    let mut r = TableReport {
        label: label.to_owned(),
        expected: want.len(),
        delivered: frames.len(),
        missing: 0,
        extra: 0,
        differing: 0,
        problems: Vec::new(),
    };
    let mut got = Vec::new();
    for f in frames {
        match raw_json::parse(f) {
            Ok(v) => got.push(v),
            Err(e) => {
                r.extra += 1;
                r.problems.push(format!("frame is not JSON: {e}"));
            }
        }
    }
    let mut last_lsn = 0;
    let (mut i, mut j) = (0, 0);
    while i < want.len() || j < got.len() {
        let w = want.get(i).map(|w| lsn_of(w).unwrap_or(0));
        let g = got.get(j).map(lsn_of);
        if let Some(Some(l)) = g {
            if l < last_lsn {
                r.problems.push(format!(
                    "out of order: {} after LSN {last_lsn:X}",
                    describe(&got[j])
                ));
            }
        }
        match (w, g) {
            (Some(a), Some(Some(b))) if a == b => {
                let diffs = diff_change(want[i], &got[j]);
                if !diffs.is_empty() {
                    r.differing += 1;
                    r.problems
                        .push(format!("{}: {}", describe(want[i]), diffs.join("; ")));
                }
                last_lsn = b;
                i += 1;
                j += 1;
            }
            (Some(a), Some(Some(b))) if a < b => {
                r.missing += 1;
                r.problems.push(format!("missing: {}", describe(want[i])));
                i += 1;
            }
            (Some(_), None) => {
                r.missing += 1;
                r.problems.push(format!("missing: {}", describe(want[i])));
                i += 1;
            }
            (_, Some(g)) => {
                r.extra += 1;
                r.problems.push(format!("extra: {}", describe(&got[j])));
                last_lsn = last_lsn.max(g.unwrap_or(0));
                j += 1;
            }
            (None, None) => break,
        }
    }
    r
}

/// Differences between one wal2json change and walcast's frame for it.
fn diff_change(want: &Json, got: &Json) -> Vec<String> {
    let mut d = Vec::new();
    let action = str_of(want, "action");
    let op = op_name(action);
    let same = |d: &mut Vec<String>, key: &str, w: Option<&Json>, g: Option<&Json>| {
        if w != g {
            d.push(format!("{key}: {}", show_diff(&shown(w), &shown(g))));
        }
    };
    same(
        &mut d,
        "type",
        Some(&Json::String("change".into())),
        got.get("type"),
    );
    same(&mut d, "op", Some(&Json::String(op.into())), got.get("op"));
    for key in ["schema", "table", "lsn", "xid"] {
        same(&mut d, key, want.get(key), got.get(key));
    }
    let (pg_ts, ts) = (str_of(want, "timestamp"), str_of(got, "ts"));
    if !same_instant(pg_ts, ts) {
        d.push(format!("ts: expected the instant {pg_ts:?}, got {ts:?}"));
    }
    let (new, old) = match action {
        "I" => (want.get("columns"), None),
        "U" => (want.get("columns"), want.get("identity")),
        "D" => (None, want.get("identity")),
        _ => (None, None),
    };
    // walcast writes `old` only when wal2json sent a non-empty `identity`.
    let old = old.filter(|o| !matches!(o, Json::Array(a) if a.is_empty()));
    diff_row(&mut d, "new", new, got.get("new"));
    diff_row(&mut d, "old", old, got.get("old"));
    d
}

/// walcast's `op` for a wal2json action.
fn op_name(action: &str) -> &str {
    match action {
        "I" => "insert",
        "U" => "update",
        "D" => "delete",
        "T" => "truncate",
        other => other,
    }
}

/// `image` of walcast (`new`/`old`) against wal2json's column list (`None`: must be null).
fn diff_row(d: &mut Vec<String>, image: &str, want: Option<&Json>, got: Option<&Json>) {
    let Some(Json::Array(columns)) = want else {
        if got != Some(&Json::Null) {
            d.push(format!(
                "{image}: expected null, got {}",
                excerpt(&shown(got), 120)
            ));
        }
        return;
    };
    let Some(Json::Object(row)) = got else {
        d.push(format!(
            "{image}: expected an object, got {}",
            excerpt(&shown(got), 120)
        ));
        return;
    };
    let want_names = column_names(want);
    let got_names: Vec<&str> = row.iter().map(|(k, _)| k.as_str()).collect();
    if want_names != got_names {
        d.push(format!(
            "{image}: columns differ: expected {want_names:?}, got {got_names:?}"
        ));
    }
    for c in columns {
        let (name, ty) = (str_of(c, "name"), str_of(c, "type"));
        let Some((_, value)) = row.iter().find(|(k, _)| k == name) else {
            continue;
        };
        let reference = c.get("value").cloned().unwrap_or(Json::Null);
        // walcast embeds json/jsonb text as a JSON value where wal2json carries it as a string.
        let reference = match (ty, reference) {
            ("json" | "jsonb", Json::String(text)) => match raw_json::parse(&text) {
                Ok(v) => v,
                Err(e) => {
                    d.push(format!("{image}.{name}: wal2json's {ty} text: {e}"));
                    continue;
                }
            },
            (_, other) => other,
        };
        if &reference != value {
            d.push(format!(
                "{image}.{name} ({ty}): {}",
                show_diff(&reference.to_string(), &value.to_string())
            ));
        }
    }
}

fn column_names(columns: Option<&Json>) -> Vec<&str> {
    match columns {
        Some(Json::Array(cols)) => cols.iter().map(|c| str_of(c, "name")).collect(),
        _ => Vec::new(),
    }
}

/// `0/1526A58` as a number; `None` when absent or malformed.
fn lsn_of(change: &Json) -> Option<u64> {
    let (hi, lo) = change.get("lsn")?.as_str()?.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// Postgres' `2026-11-22 00:31:09.836807+00` and RFC 3339 `2026-11-22T00:31:09.836807Z` name the
/// same instant.
fn same_instant(pg: &str, rfc3339: &str) -> bool {
    let a = chrono::DateTime::parse_from_str(pg, "%Y-%m-%d %H:%M:%S%.f%#z");
    let b = chrono::DateTime::parse_from_rfc3339(rfc3339);
    matches!((a, b), (Ok(a), Ok(b)) if a == b)
}

fn str_of<'j>(v: &'j Json, key: &str) -> &'j str {
    v.get(key).and_then(Json::as_str).unwrap_or("")
}

fn shown(v: Option<&Json>) -> String {
    v.map_or_else(|| "(absent)".to_owned(), Json::to_string)
}

/// `update at 0/1529830 [id=1, label="numeric 1e400"]`, from a wal2json message or a frame.
fn describe(change: &Json) -> String {
    let op = change
        .get("op")
        .and_then(Json::as_str)
        .unwrap_or_else(|| op_name(str_of(change, "action")));
    let key: Vec<String> = match (change.get("columns"), change.get("identity")) {
        (Some(Json::Array(cols)), _) | (None, Some(Json::Array(cols))) => cols
            .iter()
            .take(2)
            .map(|c| format!("{}={}", str_of(c, "name"), shown(c.get("value"))))
            .collect(),
        _ => match (change.get("new"), change.get("old")) {
            (Some(Json::Object(row)), _) | (_, Some(Json::Object(row))) => row
                .iter()
                .take(2)
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            _ => Vec::new(),
        },
    };
    let key: Vec<String> = key.iter().map(|k| excerpt(k, 60)).collect();
    format!("{op} at LSN {} [{}]", str_of(change, "lsn"), key.join(", "))
}

/// `s` cut to about `max` characters, keeping both ends and saying how long it was.
fn excerpt(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_owned();
    }
    let head: String = s.chars().take(max * 2 / 3).collect();
    let tail: String = s.chars().skip(n - max / 3).collect();
    format!("{head}…({n} chars)…{tail}")
}

/// `expected X, got Y`; long values are shown around their first difference.
fn show_diff(want: &str, got: &str) -> String {
    const MAX: usize = 100;
    let (w, g): (Vec<char>, Vec<char>) = (want.chars().collect(), got.chars().collect());
    if w.len() <= MAX && g.len() <= MAX {
        return format!("expected {want}, got {got}");
    }
    let at = w.iter().zip(&g).take_while(|(a, b)| a == b).count();
    let from = at.saturating_sub(24);
    let window = |v: &[char]| {
        let to = (at + 36).min(v.len());
        let text: String = v[from..to].iter().collect();
        let pre = if from > 0 { "…" } else { "" };
        let post = if to < v.len() { "…" } else { "" };
        format!("{pre}{text}{post}")
    };
    format!(
        "expected {} chars, got {} chars, first difference at char {at}: expected {}, got {}",
        w.len(),
        g.len(),
        window(&w),
        window(&g)
    )
}

#[test]
fn comparison_reports_a_digit_a_jsonb_number_an_extra_column_and_a_lost_change() {
    let big = format!("1{}", "0".repeat(400));
    let want = raw_json::parse(&format!(
        r#"{{"action":"U","xid":7,"timestamp":"2026-11-22 00:31:09.836807+00","lsn":"0/10",
            "schema":"public","table":"t","columns":[{{"name":"id","type":"integer","value":1}},
            {{"name":"n","type":"numeric","value":{big}}},
            {{"name":"j","type":"jsonb","value":"{{\"k\": 1.50}}"}}],
            "identity":[{{"name":"id","type":"integer","value":1}}]}}"#
    ))
    .unwrap();
    let frame = |n: &str, j: &str, extra: &str| {
        format!(
            r#"{{"type":"change","op":"update","schema":"public","table":"t","lsn":"0/10","xid":7,
                "ts":"2026-11-22T00:31:09.836807Z","new":{{"id":1,"n":{n},"j":{j}{extra}}},"old":{{"id":1}}}}"#
        )
    };
    let equal = compare_table("t", &[&want], &[frame(&big, r#"{"k":1.50}"#, "")]);
    assert!(equal.problems.is_empty(), "{}", equal.render());

    let off_by_one = format!("{}1", &big[..400]);
    let r = compare_table(
        "t",
        &[&want],
        &[frame(&off_by_one, r#"{"k":1.5}"#, r#","big":"x""#)],
    );
    let text = r.render();
    assert_eq!(r.differing, 1, "{text}");
    for needle in [
        "new.n (numeric): expected 401 chars, got 401 chars, first difference at char 400",
        "new.j (jsonb): expected {\"k\":1.50}, got {\"k\":1.5}",
        "new: columns differ",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }

    let lost = compare_table("t", &[&want], &[]);
    assert_eq!((lost.missing, lost.extra), (1, 0), "{}", lost.render());
}
