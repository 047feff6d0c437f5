//! A guest attached under a policy rule with `columns` sees only those columns: a hidden column
//! reads as absent through every host function (field lookup in both images, handles guessed by
//! index, raw JSON, `field_changed`, counts, `out_copy`, `out_set_*`, `out_remove`), rewrites are
//! rendered from the projected images in both formats, and groups with other visible sets are
//! never shared.

use std::sync::Arc;

use super::tests::{cfg, eval, group_seeing, guest, threshold};
use super::{PluginHost, Rewrite, Verdict};
use crate::config::PluginsConfig;
use crate::decode::Format;
use crate::filter::PluginRef;

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| (*n).to_owned()).collect()
}

/// An update of `pay` (replica identity full) whose hidden `salary` sits between two visible
/// columns, so a handle guessed from the table's column order would land on it.
fn update(salary_new: &str, salary_old: &str) -> String {
    format!(
        r#"{{"action":"U","xid":7,"lsn":"0/16","schema":"public","table":"pay","columns":[{{"name":"id","type":"integer","value":1}},{{"name":"salary","type":"integer","value":{salary_new}}},{{"name":"name","type":"text","value":"new"}}],"identity":[{{"name":"id","type":"integer","value":1}},{{"name":"salary","type":"integer","value":{salary_old}}},{{"name":"name","type":"text","value":"old"}}]}}"#
    )
}

/// Every way a guest can reach `salary`, each result written as a number into a report column
/// of the new image (the report columns are visible, so the guest may write them).
fn prober() -> Vec<u8> {
    guest(
        &[
            "field",
            "field_changed",
            "field_count",
            "field_at",
            "field_name",
            "field_raw",
            "field_type",
            "field_str",
            "field_eq_str",
            "out_copy",
            "out_remove",
            "out_set_str",
            "out_set_i64",
            "out_set_json",
            "out_set_null",
        ],
        r#"
        (data (i32.const 0) "salary") (data (i32.const 8) "{}")
        (data (i32.const 32) "f_new") (data (i32.const 40) "f_old") (data (i32.const 48) "changed")
        (data (i32.const 56) "copy") (data (i32.const 64) "set") (data (i32.const 72) "json")
        (data (i32.const 80) "remove") (data (i32.const 88) "count_new")
        (data (i32.const 104) "count_old") (data (i32.const 120) "raw1") (data (i32.const 128) "at2")
        (data (i32.const 136) "second") (data (i32.const 144) "type1") (data (i32.const 152) "str2")
        (data (i32.const 160) "old_raw1") (data (i32.const 176) "eq2") (data (i32.const 184) "null")
        (data (i32.const 192) "copy_old") (data (i32.const 208) "set_old")
        (func $report (param $at i32) (param $len i32) (param $v i32)
          (drop (call $out_set_i64 (i32.const 0) (local.get $at) (local.get $len)
            (i64.extend_i32_s (local.get $v)))))
        (func (export "walcast_filter") (result i32)
          (local $copy i32) (local $set i32) (local $json i32) (local $remove i32) (local $null i32)
          (local $copy_old i32) (local $set_old i32) (local $n i32)
          ;; Writes naming the hidden column, before anything else touches the images.
          (local.set $copy (call $out_copy (i32.const 0) (i32.const 0) (i32.const 6)))
          (local.set $set (call $out_set_str (i32.const 0) (i32.const 0) (i32.const 6) (i32.const 8) (i32.const 2)))
          (local.set $json (call $out_set_json (i32.const 0) (i32.const 0) (i32.const 6) (i32.const 8) (i32.const 2)))
          (local.set $null (call $out_set_null (i32.const 0) (i32.const 0) (i32.const 6)))
          (local.set $remove (call $out_remove (i32.const 0) (i32.const 0) (i32.const 6)))
          (local.set $copy_old (call $out_copy (i32.const 1) (i32.const 0) (i32.const 6)))
          (local.set $set_old (call $out_set_i64 (i32.const 1) (i32.const 0) (i32.const 6) (i64.const 5)))
          (call $report (i32.const 56) (i32.const 4) (local.get $copy))
          (call $report (i32.const 64) (i32.const 3) (local.get $set))
          (call $report (i32.const 72) (i32.const 4) (local.get $json))
          (call $report (i32.const 184) (i32.const 4) (local.get $null))
          (call $report (i32.const 80) (i32.const 6) (local.get $remove))
          (call $report (i32.const 192) (i32.const 8) (local.get $copy_old))
          (call $report (i32.const 208) (i32.const 7) (local.get $set_old))
          ;; Reads by name, in both images, and the changed test.
          (call $report (i32.const 32) (i32.const 5) (call $field (i32.const 0) (i32.const 0) (i32.const 6)))
          (call $report (i32.const 40) (i32.const 5) (call $field (i32.const 1) (i32.const 0) (i32.const 6)))
          (call $report (i32.const 48) (i32.const 7) (call $field_changed (i32.const 0) (i32.const 6)))
          ;; Reads by position: the counts, the column after `id`, handle 1 (salary's index in
          ;; the table) in both images, and handle 2 (past the visible columns).
          (call $report (i32.const 88) (i32.const 9) (call $field_count (i32.const 0)))
          (call $report (i32.const 104) (i32.const 9) (call $field_count (i32.const 1)))
          (call $report (i32.const 128) (i32.const 3) (call $field_at (i32.const 0) (i32.const 2)))
          (local.set $n (call $field_name (call $field_at (i32.const 0) (i32.const 1)) (i32.const 1024) (i32.const 64)))
          (drop (call $out_set_str (i32.const 0) (i32.const 136) (i32.const 6) (i32.const 1024) (local.get $n)))
          (call $report (i32.const 120) (i32.const 4) (call $field_raw (i32.const 1) (i32.const 1024) (i32.const 64)))
          (call $report (i32.const 160) (i32.const 8) (call $field_raw (i32.const 65537) (i32.const 1024) (i32.const 64)))
          (call $report (i32.const 144) (i32.const 5) (call $field_type (i32.const 1)))
          (call $report (i32.const 152) (i32.const 4) (call $field_str (i32.const 2) (i32.const 1024) (i32.const 64)))
          (call $report (i32.const 176) (i32.const 3) (call $field_eq_str (i32.const 2) (i32.const 8) (i32.const 2)))
          (i32.const 2))
        "#,
    )
}

/// The columns `prober` writes its findings into.
const REPORTS: [&str; 19] = [
    "copy",
    "set",
    "json",
    "null",
    "remove",
    "copy_old",
    "set_old",
    "f_new",
    "f_old",
    "changed",
    "count_new",
    "count_old",
    "at2",
    "second",
    "raw1",
    "old_raw1",
    "type1",
    "str2",
    "eq2",
];

fn rewrite(verdict: Verdict) -> Rewrite {
    match verdict {
        Verdict::Rewritten(r) => r,
        other => panic!("not rewritten: {other:?}"),
    }
}

#[test]
fn a_hidden_column_reads_as_absent_through_every_host_function() {
    let mut visible = names(&REPORTS);
    visible.extend(names(&["id", "name"]));
    let g = group_seeing(&prober(), &[], Some(&visible), &cfg()).expect("group");
    let r = rewrite(eval(&g, &update("900", "800")));
    let v: serde_json::Value = serde_json::from_str(&r.walcast).expect("JSON");
    let n = &v["new"];
    let absent = -1;
    let bad_handle = -3;
    for (report, want) in [
        ("copy", absent),
        ("set", absent),
        ("json", absent),
        ("null", absent),
        ("remove", absent),
        ("copy_old", absent),
        ("set_old", absent),
        ("f_new", absent),
        ("f_old", absent),
        ("changed", absent),
        ("count_new", 2),
        ("count_old", 2),
        ("at2", absent),
        // Handle 1 is the second visible column, name: `"new"` and `"old"` as JSON, a string.
        ("raw1", 5),
        ("old_raw1", 5),
        ("type1", 3),
        ("str2", bad_handle),
        ("eq2", bad_handle),
    ] {
        assert_eq!(n[report], want, "{report}: {}", r.walcast);
    }
    assert_eq!(
        n["second"], "name",
        "the column after id is name, not salary"
    );
    assert!(!r.walcast.contains("salary"), "{}", r.walcast);
    assert!(!r.walcast.contains("900") && !r.walcast.contains("800"));
    // The untouched old image is rendered projected.
    assert_eq!(v["old"], serde_json::json!({"id": 1, "name": "old"}));

    // The same guest with every column visible reaches salary everywhere (the probe is sound).
    let all = group_seeing(&prober(), &[], None, &cfg()).expect("group");
    let r = rewrite(eval(&all, &update("900", "800")));
    let v: serde_json::Value = serde_json::from_str(&r.walcast).expect("JSON");
    let n = &v["new"];
    for report in [
        "copy", "set", "json", "null", "remove", "copy_old", "set_old",
    ] {
        assert_eq!(n[report], 0, "{report}: {}", r.walcast);
    }
    for (report, want) in [
        ("f_new", 1),
        ("f_old", 65537),
        ("changed", 1),
        ("count_new", 3),
        ("at2", 2),
        ("raw1", 3),
        ("old_raw1", 3),
        ("type1", 2),
    ] {
        assert_eq!(n[report], want, "{report}: {}", r.walcast);
    }
    assert_eq!(n["second"], "salary");
}

/// Rewrites that leave images untouched, clear one and copy columns into it (the hidden one
/// too), or only set a visible column: neither format carries salary.
#[test]
fn a_rewrite_is_rendered_from_the_projected_images_in_both_formats() {
    let bytes = guest(
        &["out_clear", "out_copy", "out_set_str", "field"],
        r#"
        (data (i32.const 0) "salary") (data (i32.const 8) "id") (data (i32.const 16) "name")
        (data (i32.const 24) "mode") (data (i32.const 32) "x")
        (func (export "walcast_filter") (result i32)
          ;; A row with mode = 1 (a visible column) only passes rewritten, untouched.
          (if (i32.ge_s (call $field (i32.const 0) (i32.const 24) (i32.const 4)) (i32.const 0))
            (then (return (i32.const 2))))
          (drop (call $out_clear (i32.const 1)))
          (drop (call $out_copy (i32.const 1) (i32.const 0) (i32.const 6)))
          (drop (call $out_copy (i32.const 1) (i32.const 8) (i32.const 2)))
          (drop (call $out_set_str (i32.const 0) (i32.const 16) (i32.const 4) (i32.const 32) (i32.const 1)))
          (i32.const 2))
        "#,
    );
    let visible = names(&["id", "name", "mode"]);
    let g = group_seeing(&bytes, &[], Some(&visible), &cfg()).expect("group");
    g.serve(Format::Wal2jsonV1);
    let r = rewrite(eval(&g, &update("900", "800")));
    assert!(
        r.walcast
            .ends_with(r#""new":{"id":1,"name":"x"},"old":{"id":1}}"#),
        "{}",
        r.walcast
    );
    assert_eq!(
        r.v1.as_deref(),
        Some(
            r#"{"kind":"update","schema":"public","table":"pay","columnnames":["id","name"],"columntypes":["integer","text"],"columnvalues":[1,"x"],"oldkeys":{"keynames":["id"],"keytypes":["integer"],"keyvalues":[1]}}"#
        )
    );
    // Untouched images, with the hidden column first and last in the table.
    let insert = r#"{"action":"I","xid":7,"lsn":"0/16","schema":"public","table":"pay","columns":[{"name":"salary","type":"integer","value":900},{"name":"id","type":"integer","value":2},{"name":"mode","type":"integer","value":1},{"name":"bonus","type":"integer","value":70}]}"#;
    let r = rewrite(eval(&g, insert));
    assert!(
        r.walcast
            .ends_with(r#""new":{"id":2,"mode":1},"old":null}"#),
        "{}",
        r.walcast
    );
    assert_eq!(
        r.v1.as_deref(),
        Some(
            r#"{"kind":"insert","schema":"public","table":"pay","columnnames":["id","mode"],"columntypes":["integer","integer"],"columnvalues":[2,1]}"#
        )
    );
    // Without a rule the same guest shows every column (what the projection takes away).
    let all = group_seeing(&bytes, &[], None, &cfg()).expect("group");
    let r = rewrite(eval(&all, insert));
    assert!(
        r.walcast
            .ends_with(r#""new":{"salary":900,"id":2,"mode":1,"bonus":70},"old":null}"#),
        "{}",
        r.walcast
    );
}

#[test]
fn a_filter_on_a_hidden_column_selects_nothing() {
    // The test threshold passes rows whose `col` is an integer above 10; salary is absent to it.
    let hidden = group_seeing(
        &threshold(),
        &[("col", "salary")],
        Some(&names(&["id", "name"])),
        &cfg(),
    )
    .expect("group");
    let open = group_seeing(&threshold(), &[("col", "salary")], None, &cfg()).expect("group");
    assert_eq!(eval(&open, &update("900", "800")), Verdict::Pass);
    assert_eq!(eval(&hidden, &update("900", "800")), Verdict::Drop);
    // An empty rule hides everything, `id` included.
    let none = group_seeing(&threshold(), &[("col", "id")], Some(&[]), &cfg()).expect("group");
    assert_eq!(eval(&none, &update("900", "800")), Verdict::Drop);
}

fn host_with_threshold() -> (tempfile::TempDir, Arc<PluginHost>) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("threshold.wasm"), threshold()).expect("write");
    let cfg = PluginsConfig {
        dir: Some(dir.path().to_owned()),
        ..cfg()
    };
    let host = PluginHost::new(&cfg).expect("host");
    (dir, host)
}

fn reference(columns: Option<&[&str]>) -> PluginRef {
    PluginRef {
        name: "threshold".into(),
        params: vec![("col".into(), "salary".into())],
        columns: columns.map(names),
    }
}

#[test]
fn groups_are_shared_only_with_the_same_visible_columns() {
    let (_dir, host) = host_with_threshold();
    let open = host.group(&reference(None)).expect("group");
    let ruled = host
        .group(&reference(Some(&["id", "name"])))
        .expect("group");
    let reordered = host
        .group(&reference(Some(&["name", "id", "name"])))
        .expect("group");
    let wider = host
        .group(&reference(Some(&["id", "name", "salary"])))
        .expect("group");
    let empty = host.group(&reference(Some(&[]))).expect("group");
    assert!(Arc::ptr_eq(&ruled, &reordered), "same set, any order");
    let ids = [open.id(), ruled.id(), wider.id(), empty.id()];
    for (i, a) in ids.iter().enumerate() {
        for b in &ids[i + 1..] {
            assert_ne!(
                a, b,
                "groups with other visible columns are shared: {ids:?}"
            );
        }
    }
    assert_eq!(eval(&open, &update("900", "800")), Verdict::Pass);
    assert_eq!(eval(&wider, &update("900", "800")), Verdict::Pass);
    assert_eq!(eval(&ruled, &update("900", "800")), Verdict::Drop);
}

#[test]
fn each_visible_set_takes_its_own_place_in_the_group_quota() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("threshold.wasm"), threshold()).expect("write");
    let cfg = PluginsConfig {
        dir: Some(dir.path().to_owned()),
        ..cfg()
    };
    let limits = crate::config::Limits {
        max_groups_per_plugin: Some(2),
        ..crate::config::Limits::DEFAULT
    };
    let host = PluginHost::with_limits(&cfg, &limits).expect("host");
    let _a = host.group(&reference(None)).expect("first");
    let _b = host.group(&reference(Some(&["id"]))).expect("second");
    let refused = host
        .admit(&reference(Some(&["name"])))
        .expect_err("a third visible set is a third group");
    assert_eq!(refused.code, crate::filter::code::TOO_MANY_PLUGIN_GROUPS);
    host.admit(&reference(Some(&["id"])))
        .expect("a running visible set joins its group");
}
