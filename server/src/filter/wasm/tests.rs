//! Unit tests of the engine, ABI checks, host functions and groups, with guests written in WAT.
//! Registry, hot reload and CLI tests are in `tests_host`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::abi::IMPORTS;
use super::engine::Shared;
use super::group::PluginGroup;
use super::plugin::PluginEntry;
use super::{PluginError, Rewrite, Verdict};
use crate::config::PluginsConfig;
use crate::decode::{Change, Decoder};
use crate::filter::PluginRef;

/// A guest module: the named `walcast_v1` imports, a 1-page memory, `walcast_abi_version` = 1,
/// a `walcast_init` returning 0 unless `body` defines one, and `body`.
pub(super) fn guest(imports: &[&str], body: &str) -> Vec<u8> {
    let mut wat = String::from("(module\n");
    for name in imports {
        let sig = IMPORTS
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| *s)
            .expect("known import");
        let (params, results) = sig.split_once('>').expect("signature");
        let ty = |c: char| match c {
            'i' => "i32",
            'I' => "i64",
            'F' => "f64",
            _ => "f32",
        };
        let params: Vec<&str> = params.chars().map(ty).collect();
        let results: Vec<&str> = results.chars().map(ty).collect();
        wat.push_str(&format!(
            "(import \"walcast_v1\" \"{name}\" (func ${name} (param {}) (result {})))\n",
            params.join(" "),
            results.join(" ")
        ));
    }
    if !body.contains("(memory (export") {
        wat.push_str("(memory (export \"memory\") 1)\n");
    }
    if !body.contains("walcast_abi_version") {
        wat.push_str("(func (export \"walcast_abi_version\") (result i32) i32.const 1)\n");
    }
    if !body.contains("walcast_init") {
        wat.push_str("(func (export \"walcast_init\") (result i32) i32.const 0)\n");
    }
    wat.push_str(body);
    wat.push(')');
    wat::parse_str(&wat).unwrap_or_else(|e| panic!("bad test WAT: {e}\n{wat}"))
}

/// Passes when column `$col` (param `col`) is an integer > 10; drops `status = "blocked"`;
/// rejects init without `col`; ERROR verdict when the column is not an integer.
pub(super) fn threshold() -> Vec<u8> {
    guest(
        &["param", "set_error", "field", "field_eq_str", "field_i64"],
        r#"
        (global $collen (mut i32) (i32.const 0))
        (data (i32.const 0) "col")
        (data (i32.const 16) "missing param col")
        (data (i32.const 48) "status")
        (data (i32.const 64) "blocked")
        (func (export "walcast_init") (result i32)
          (global.set $collen (call $param (i32.const 0) (i32.const 3) (i32.const 1024) (i32.const 64)))
          (if (i32.lt_s (global.get $collen) (i32.const 0))
            (then (call $set_error (i32.const 16) (i32.const 17)) (return (i32.const 1))))
          (i32.const 0))
        (func (export "walcast_filter") (result i32) (local $h i32)
          (local.set $h (call $field (i32.const 0) (i32.const 48) (i32.const 6)))
          (if (i32.ge_s (local.get $h) (i32.const 0))
            (then (if (call $field_eq_str (local.get $h) (i32.const 64) (i32.const 7))
              (then (return (i32.const 0))))))
          (local.set $h (call $field (i32.const 0) (i32.const 1024) (global.get $collen)))
          (if (i32.lt_s (local.get $h) (i32.const 0)) (then (return (i32.const 0))))
          (if (call $field_i64 (local.get $h) (i32.const 2048)) (then (return (i32.const 3))))
          (if (result i32) (i64.gt_s (i64.load (i32.const 2048)) (i64.const 10))
            (then (i32.const 1)) (else (i32.const 0))))
        "#,
    )
}

/// Always passes.
pub(super) fn pass_all() -> Vec<u8> {
    guest(
        &[],
        r#"(func (export "walcast_filter") (result i32) i32.const 1)"#,
    )
}

/// Spins forever when the new row has `spin`, traps on a bad pointer when it has `bad`,
/// overflows the stack when it has `deep`; passes otherwise.
fn misbehave() -> Vec<u8> {
    guest(
        &["field", "schema"],
        r#"
        (data (i32.const 0) "spin")
        (data (i32.const 8) "bad")
        (data (i32.const 16) "deep")
        (func $recurse (param i64) (result i64)
          (i64.add (call $recurse (i64.add (local.get 0) (i64.const 1))) (i64.const 1)))
        (func (export "walcast_filter") (result i32)
          (if (i32.ge_s (call $field (i32.const 0) (i32.const 0) (i32.const 4)) (i32.const 0))
            (then (loop $l (br $l))))
          (if (i32.ge_s (call $field (i32.const 0) (i32.const 8) (i32.const 3)) (i32.const 0))
            (then (drop (call $schema (i32.const 65530) (i32.const 100)))))
          (if (i32.ge_s (call $field (i32.const 0) (i32.const 16) (i32.const 4)) (i32.const 0))
            (then (drop (call $recurse (i64.const 0)))))
          (i32.const 1))
        "#,
    )
}

pub(super) fn cfg() -> PluginsConfig {
    PluginsConfig {
        call_deadline: Duration::from_millis(20),
        memory_limit: 1 << 20,
        ..PluginsConfig::default()
    }
}

/// A group of a module compiled outside any directory.
pub(super) fn group_of(
    bytes: &[u8],
    params: &[(&str, &str)],
    cfg: &PluginsConfig,
) -> Result<Arc<PluginGroup>, PluginError> {
    group_seeing(bytes, params, None, cfg)
}

/// `group_of` whose guest sees only the columns `visible` (`None`: all).
pub(super) fn group_seeing(
    bytes: &[u8],
    params: &[(&str, &str)],
    visible: Option<&[String]>,
    cfg: &PluginsConfig,
) -> Result<Arc<PluginGroup>, PluginError> {
    let shared = Shared::new(cfg)?;
    let pre = shared
        .compile("test", bytes)
        .map_err(PluginError::Invalid)?;
    let entry = Arc::new(PluginEntry::new("test"));
    entry.install("hash".into(), pre);
    let module = entry.current.load_full().expect("installed");
    let params = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    PluginGroup::new(shared, entry, module, params, visible, None)
}

/// A subscription's plugin as the request parser gives it (every column visible).
pub(super) fn plugin_ref(name: &str, params: &[(String, String)]) -> PluginRef {
    PluginRef {
        name: name.to_owned(),
        params: params.to_vec(),
        columns: None,
    }
}

pub(super) fn eval(group: &PluginGroup, json: &str) -> Verdict {
    with_change(json, |c| group.evaluate(c))
}

pub(super) fn with_change<R>(json: &str, f: impl FnOnce(&Change<'_>) -> R) -> R {
    let mut payload = json.as_bytes().to_vec();
    let mut decoder = Decoder::new();
    let change = decoder.decode(&mut payload).expect("test change decodes");
    f(&change)
}

pub(super) fn insert(columns: &str) -> String {
    format!(
        r#"{{"action":"I","xid":7,"lsn":"0/16","schema":"public","table":"orders","columns":[{columns}]}}"#
    )
}

pub(super) fn col(name: &str, ty: &str, value: &str) -> String {
    format!(r#"{{"name":"{name}","type":"{ty}","value":{value}}}"#)
}

fn compile_err(bytes: &[u8]) -> String {
    let shared = Shared::new(&cfg()).expect("engine");
    match shared.compile("x", bytes) {
        Ok(_) => panic!("module was accepted"),
        Err(e) => e,
    }
}

#[test]
fn linker_defines_every_abi_import() {
    let all: Vec<&str> = IMPORTS.iter().map(|(n, _)| *n).collect();
    // A guest importing every function links: names and signatures match the table.
    let bytes = guest(
        &all,
        r#"(func (export "walcast_filter") (result i32) i32.const 1)"#,
    );
    Shared::new(&cfg())
        .expect("engine")
        .compile("all", &bytes)
        .expect("links");
}

#[test]
fn pass_and_drop_on_a_field_value_with_params() {
    let g = group_of(&threshold(), &[("col", "amount")], &cfg()).expect("group");
    let big = insert(&col("amount", "integer", "50"));
    let small = insert(&col("amount", "integer", "5"));
    assert_eq!(eval(&g, &big), Verdict::Pass);
    assert_eq!(eval(&g, &small), Verdict::Drop);
    // numeric with scale still reads as an integer
    assert_eq!(
        eval(&g, &insert(&col("amount", "numeric", "12.00"))),
        Verdict::Pass
    );
    let blocked = insert(&format!(
        "{},{}",
        col("amount", "integer", "50"),
        col("status", "text", "\"blocked\"")
    ));
    assert_eq!(eval(&g, &blocked), Verdict::Drop);
    // same plugin, other column param
    let g2 = group_of(&threshold(), &[("col", "qty")], &cfg()).expect("group");
    assert_eq!(eval(&g2, &big), Verdict::Drop);
    assert!(!g.failing());
}

#[test]
fn error_verdict_counts_towards_failing() {
    let cfg = PluginsConfig {
        max_failures: 2,
        ..cfg()
    };
    let g = group_of(&threshold(), &[("col", "amount")], &cfg).expect("group");
    let text = insert(&col("amount", "text", "\"lots\""));
    assert!(
        matches!(eval(&g, &text), Verdict::Error(m) if m == "plugin \"test\" returned ERROR (no message set)")
    );
    assert!(!g.failing());
    assert!(matches!(eval(&g, &text), Verdict::Error(_)));
    assert!(g.failing());
    assert_eq!(
        eval(&g, &insert(&col("amount", "integer", "50"))),
        Verdict::Pass
    );
    assert!(!g.failing(), "a success resets the consecutive count");
}

#[test]
fn init_rejection_carries_the_guest_message() {
    match group_of(&threshold(), &[], &cfg()) {
        Err(PluginError::Rejected(msg)) => {
            assert_eq!(
                msg,
                "plugin \"test\" rejected the subscription: missing param col"
            )
        }
        Err(e) => panic!("wrong error {e:?}"),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn rewrite_through_the_output_builder() {
    let bytes = guest(
        &[
            "out_remove",
            "out_set_str",
            "out_set_i64",
            "out_set_json",
            "out_clear",
            "out_copy",
            "out_set_f64",
        ],
        r#"
        (data (i32.const 0) "secret")
        (data (i32.const 16) "note")
        (data (i32.const 32) "hi \"x\"")
        (data (i32.const 48) "n")
        (data (i32.const 64) "j")
        (data (i32.const 80) "{\"a\":[1,2]}")
        (data (i32.const 112) "{bad")
        (data (i32.const 128) "id")
        (data (i32.const 136) "nan")
        (func (export "walcast_filter") (result i32)
          (drop (call $out_remove (i32.const 0) (i32.const 0) (i32.const 6)))
          (drop (call $out_set_str (i32.const 0) (i32.const 16) (i32.const 4) (i32.const 32) (i32.const 6)))
          (drop (call $out_set_i64 (i32.const 0) (i32.const 48) (i32.const 1) (i64.const 42)))
          (drop (call $out_set_json (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 80) (i32.const 11)))
          (drop (call $out_set_f64 (i32.const 0) (i32.const 136) (i32.const 3) (f64.div (f64.const 0) (f64.const 0))))
          (if (i32.ne (call $out_set_json (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 112) (i32.const 4))
                      (i32.const -5))
            (then (return (i32.const 3))))
          (if (i32.ne (call $out_remove (i32.const 0) (i32.const 0) (i32.const 6)) (i32.const -1))
            (then (return (i32.const 3))))
          (drop (call $out_clear (i32.const 1)))
          (drop (call $out_copy (i32.const 1) (i32.const 128) (i32.const 2)))
          (i32.const 2))
        "#,
    );
    let g = group_of(&bytes, &[], &cfg()).expect("group");
    let cols = format!(
        "{},{},{}",
        col("id", "integer", "1"),
        col("secret", "text", "\"s\""),
        col("n", "integer", "5")
    );
    let update = format!(
        r#"{{"action":"U","xid":7,"lsn":"0/16","schema":"public","table":"orders","columns":[{cols}],"identity":[{cols}]}}"#
    );
    let Verdict::Rewritten(Rewrite { walcast: frame, .. }) = eval(&g, &update) else {
        panic!("not rewritten")
    };
    assert!(
        frame.contains(
            r#""new":{"id":1,"n":42,"note":"hi \"x\"","j":{"a":[1,2]},"nan":null},"old":{"id":1}}"#
        ),
        "{frame}"
    );
    let v: serde_json::Value = serde_json::from_str(&frame).expect("frame is JSON");
    assert_eq!(v["type"], "change");
    assert_eq!(v["op"], "update");
    assert_eq!(v["table"], "orders");
    // edits do not leak into the next change
    let Verdict::Rewritten(Rewrite { walcast: frame, v1 }) =
        eval(&g, &insert(&col("id", "integer", "2")))
    else {
        panic!()
    };
    assert!(
        frame.contains(r#""new":{"id":2,"note":"hi \"x\"","n":42,"j":{"a":[1,2]},"nan":null}"#),
        "{frame}"
    );
    assert_eq!(v1, None, "no subscription asked for wal2json-v1");
    // A group serving format=wal2json-v1 renders the rewrite in that shape too: an original
    // column keeps its type, a set one gets its value's, JSON text stays a string.
    g.serve(crate::decode::Format::Wal2jsonV1);
    let Verdict::Rewritten(Rewrite { v1: Some(v1), .. }) = eval(&g, &update) else {
        panic!("no v1 rendering")
    };
    assert_eq!(
        v1,
        r#"{"kind":"update","schema":"public","table":"orders","columnnames":["id","n","note","j","nan"],"columntypes":["integer","bigint","text","json","unknown"],"columnvalues":[1,42,"hi \"x\"","{\"a\":[1,2]}",null],"oldkeys":{"keynames":["id"],"keytypes":["integer"],"keyvalues":[1]}}"#
    );
}

#[test]
fn getters_report_the_change() {
    // Echo what the getters return into the output image, then compare the frame.
    let bytes = guest(
        &[
            "op",
            "schema",
            "table",
            "field",
            "field_raw",
            "field_type",
            "field_f64",
            "field_changed",
            "field_count",
            "field_at",
            "field_name",
            "field_str",
            "field_bool",
            "out_set_str",
            "out_set_i64",
            "out_set_f64",
            "out_clear",
        ],
        r#"
        (data (i32.const 0) "s") (data (i32.const 2) "t") (data (i32.const 4) "op")
        (data (i32.const 8) "body") (data (i32.const 16) "raw") (data (i32.const 20) "type")
        (data (i32.const 24) "price") (data (i32.const 32) "f") (data (i32.const 36) "changed")
        (data (i32.const 44) "count") (data (i32.const 52) "first") (data (i32.const 60) "full")
        (data (i32.const 64) "flag") (data (i32.const 72) "flagv") (data (i32.const 80) "bad")
        (func (export "walcast_init") (result i32)
          (i32.ne (call $op) (i32.const -6)))
        (func (export "walcast_filter") (result i32) (local $n i32) (local $h i32)
          (drop (call $out_clear (i32.const 0)))
          (local.set $n (call $schema (i32.const 1024) (i32.const 64)))
          (drop (call $out_set_str (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 1024) (local.get $n)))
          (local.set $n (call $table (i32.const 1024) (i32.const 64)))
          (drop (call $out_set_str (i32.const 0) (i32.const 2) (i32.const 1) (i32.const 1024) (local.get $n)))
          (drop (call $out_set_i64 (i32.const 0) (i32.const 4) (i32.const 2) (i64.extend_i32_s (call $op))))
          (local.set $h (call $field (i32.const 0) (i32.const 8) (i32.const 4)))
          (local.set $n (call $field_raw (local.get $h) (i32.const 1024) (i32.const 256)))
          (drop (call $out_set_str (i32.const 0) (i32.const 16) (i32.const 3) (i32.const 1024) (local.get $n)))
          (drop (call $out_set_i64 (i32.const 0) (i32.const 20) (i32.const 4) (i64.extend_i32_s (call $field_type (local.get $h)))))
          (drop (call $out_set_i64 (i32.const 0) (i32.const 60) (i32.const 4)
            (i64.extend_i32_s (call $field_str (local.get $h) (i32.const 1024) (i32.const 2)))))
          (drop (call $field_f64 (call $field (i32.const 0) (i32.const 24) (i32.const 5)) (i32.const 2048)))
          (drop (call $out_set_f64 (i32.const 0) (i32.const 32) (i32.const 1) (f64.load (i32.const 2048))))
          (drop (call $out_set_i64 (i32.const 0) (i32.const 36) (i32.const 7)
            (i64.extend_i32_s (call $field_changed (i32.const 24) (i32.const 5)))))
          (drop (call $out_set_i64 (i32.const 0) (i32.const 44) (i32.const 5) (i64.extend_i32_s (call $field_count (i32.const 1)))))
          (local.set $n (call $field_name (call $field_at (i32.const 0) (i32.const 0)) (i32.const 1024) (i32.const 64)))
          (drop (call $out_set_str (i32.const 0) (i32.const 52) (i32.const 5) (i32.const 1024) (local.get $n)))
          (drop (call $out_set_i64 (i32.const 0) (i32.const 72) (i32.const 5)
            (i64.extend_i32_s (call $field_bool (call $field (i32.const 0) (i32.const 64) (i32.const 4))))))
          (drop (call $out_set_i64 (i32.const 0) (i32.const 80) (i32.const 3)
            (i64.extend_i32_s (call $field_type (i32.const 999)))))
          (i32.const 2))
        "#,
    );
    let g = group_of(&bytes, &[], &cfg()).expect("init sees NO_CHANGE from op()");
    let new = format!(
        "{},{},{}",
        col("body", "jsonb", r#""{\"k\": [1, \"x\"]}""#),
        col("price", "numeric", "12.5"),
        col("flag", "boolean", "true")
    );
    let old = format!(
        "{},{}",
        col("price", "numeric", "10"),
        col("body", "jsonb", r#""{}""#)
    );
    let update = format!(
        r#"{{"action":"U","schema":"shop","table":"items","columns":[{new}],"identity":[{old}]}}"#
    );
    let Verdict::Rewritten(Rewrite { walcast: frame, .. }) = eval(&g, &update) else {
        panic!("not rewritten")
    };
    let v: serde_json::Value = serde_json::from_str(&frame).expect("JSON");
    let n = &v["new"];
    assert_eq!(n["s"], "shop");
    assert_eq!(n["t"], "items");
    assert_eq!(n["op"], 2);
    assert_eq!(n["raw"], r#"{"k": [1, "x"]}"#);
    assert_eq!(n["type"], 4);
    assert_eq!(n["full"], 15, "copy functions return the full length");
    assert_eq!(n["f"], 12.5);
    assert_eq!(n["changed"], 1);
    assert_eq!(n["count"], 2);
    assert_eq!(n["first"], "body");
    assert_eq!(n["flagv"], 1);
    assert_eq!(n["bad"], -3);
}

#[test]
fn endless_loop_is_interrupted_and_the_next_change_works() {
    let g = group_of(&misbehave(), &[], &cfg()).expect("group");
    let started = Instant::now();
    let v = eval(&g, &insert(&col("spin", "integer", "1")));
    let took = started.elapsed();
    assert!(
        matches!(&v, Verdict::Error(m) if m.contains("deadline")),
        "{v:?}"
    );
    assert!(
        took < Duration::from_millis(500),
        "interrupted after {took:?}"
    );
    assert_eq!(eval(&g, &insert(&col("id", "integer", "1"))), Verdict::Pass);
    let m = &g.plugin.metrics;
    assert_eq!(
        m.deadline_hits.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(m.calls.load(std::sync::atomic::Ordering::Relaxed), 2);
}

#[test]
fn bad_pointer_and_stack_overflow_trap_only_that_call() {
    let g = group_of(&misbehave(), &[], &cfg()).expect("group");
    let v = eval(&g, &insert(&col("bad", "integer", "1")));
    assert!(
        matches!(&v, Verdict::Error(m) if m.contains("trapped") && m.contains("outside")),
        "{v:?}"
    );
    assert_eq!(eval(&g, &insert(&col("id", "integer", "1"))), Verdict::Pass);
    let v = eval(&g, &insert(&col("deep", "integer", "1")));
    assert!(
        matches!(&v, Verdict::Error(m) if m.contains("stack")),
        "{v:?}"
    );
    assert_eq!(eval(&g, &insert(&col("id", "integer", "1"))), Verdict::Pass);
    assert_eq!(
        g.plugin
            .metrics
            .traps
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

#[test]
fn memory_bomb_is_capped() {
    // Grows one page at a time until refused, then reports whether it stayed under 1 MiB.
    let bytes = guest(
        &[],
        r#"
        (func (export "walcast_filter") (result i32)
          (block $full (loop $grow
            (br_if $full (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
            (br $grow)))
          (i32.le_u (memory.size) (i32.const 16)))
        "#,
    );
    let g = group_of(&bytes, &[], &cfg()).expect("group");
    assert_eq!(eval(&g, &insert(&col("id", "integer", "1"))), Verdict::Pass);
    // A module whose initial memory is above the cap cannot be instantiated at all.
    let big = guest(
        &[],
        r#"(memory (export "memory") 64) (func (export "walcast_filter") (result i32) i32.const 1)"#,
    );
    let e = compile_err(&big);
    assert!(e.contains("exceeds the limit"), "{e}");
}

#[test]
fn stray_import_is_refused_naming_it() {
    let bytes = wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "walcast_abi_version") (result i32) i32.const 1)
          (func (export "walcast_init") (result i32) i32.const 0)
          (func (export "walcast_filter") (result i32) i32.const 1))"#,
    )
    .expect("wat");
    let e = compile_err(&bytes);
    assert!(
        e.starts_with("plugin \"x\" imports wasi_snapshot_preview1::fd_write, which is not part of the walcast_v1 ABI"),
        "{e}"
    );
    let unknown = wat::parse_str(
        r#"(module (import "walcast_v1" "field_bogus" (func)) (memory (export "memory") 1)
          (func (export "walcast_abi_version") (result i32) i32.const 1)
          (func (export "walcast_init") (result i32) i32.const 0)
          (func (export "walcast_filter") (result i32) i32.const 1))"#,
    )
    .expect("wat");
    assert!(compile_err(&unknown).contains("walcast_v1::field_bogus"));
    let wrong_sig = wat::parse_str(
        r#"(module (import "walcast_v1" "field" (func (param i32) (result i32))) (memory (export "memory") 1)
          (func (export "walcast_abi_version") (result i32) i32.const 1)
          (func (export "walcast_init") (result i32) i32.const 0)
          (func (export "walcast_filter") (result i32) i32.const 1))"#,
    )
    .expect("wat");
    assert_eq!(
        compile_err(&wrong_sig),
        "plugin \"x\" imports walcast_v1::field with type (i32) -> i32, but walcast_v1 defines it as (i32, i32, i32) -> i32"
    );
}

#[test]
fn wrong_abi_version_and_missing_exports_are_refused() {
    let v2 = guest(
        &[],
        r#"(func (export "walcast_abi_version") (result i32) i32.const 2)
        (func (export "walcast_filter") (result i32) i32.const 1)"#,
    );
    assert_eq!(
        compile_err(&v2),
        "plugin \"x\" requires ABI version 2, this walcast supports 1"
    );
    let no_filter = guest(&[], "");
    assert_eq!(
        compile_err(&no_filter),
        "plugin \"x\" does not export walcast_filter"
    );
    assert!(compile_err(b"not wasm").contains("not a loadable WebAssembly module"));
}

#[test]
fn output_functions_outside_filter_say_no_change() {
    // init calls out_clear, which must answer NO_CHANGE (-6) rather than edit anything.
    let bytes = guest(
        &["out_clear", "field_count"],
        r#"(func (export "walcast_init") (result i32)
             (i32.or (i32.ne (call $out_clear (i32.const 0)) (i32.const -6))
                     (i32.ne (call $field_count (i32.const 0)) (i32.const -6))))
           (func (export "walcast_filter") (result i32) i32.const 1)"#,
    );
    group_of(&bytes, &[], &cfg()).expect("init saw NO_CHANGE");
}

#[test]
fn truncate_and_messages() {
    let g = group_of(&threshold(), &[("col", "amount")], &cfg()).expect("group");
    let truncate = r#"{"action":"T","xid":1,"schema":"public","table":"orders"}"#;
    assert_eq!(eval(&g, truncate), Verdict::Drop);
    let begin = r#"{"action":"B","xid":1}"#;
    assert_eq!(
        eval(&g, begin),
        Verdict::Pass,
        "non-row messages are not given to plugins"
    );
}
