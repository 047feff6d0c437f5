//! The plugin host under a client that creates many distinct param sets: the cap on live groups
//! per plugin (`limits.max_groups_per_plugin`, code `too_many_plugin_groups`) and the pool slots
//! kept for reloads, so a pool full of groups still takes a new module version.

use std::path::Path;
use std::sync::Arc;

use super::quota::RESERVED_SLOTS;
use super::tests::{cfg, eval, insert, pass_all};
use super::{PluginError, PluginGroup, PluginHost, Verdict};
use crate::config::Limits;
use crate::config::PluginsConfig;
use crate::filter::{code, PluginRef};

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::rename(&tmp, dir.join(name)).expect("rename");
}

fn host(
    files: &[(&str, Vec<u8>)],
    max_instances: u32,
    groups: Option<u32>,
) -> (tempfile::TempDir, Arc<PluginHost>) {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, bytes) in files {
        write(dir.path(), name, bytes);
    }
    let cfg = PluginsConfig {
        dir: Some(dir.path().to_owned()),
        max_instances,
        ..cfg()
    };
    let limits = Limits {
        max_groups_per_plugin: groups,
        ..Limits::DEFAULT
    };
    (dir, PluginHost::with_limits(&cfg, &limits).expect("host"))
}

fn x(n: usize) -> Vec<(String, String)> {
    vec![("x".to_owned(), n.to_string())]
}

fn plugin(name: &str, n: usize) -> PluginRef {
    PluginRef {
        name: name.to_owned(),
        params: x(n),
        columns: None,
    }
}

fn drop_all() -> Vec<u8> {
    super::tests::guest(
        &[],
        r#"(func (export "walcast_filter") (result i32) i32.const 0)"#,
    )
}

fn row() -> String {
    insert(r#"{"name":"id","type":"integer","value":1}"#)
}

#[test]
fn default_cap_is_a_quarter_of_the_pool() {
    let (_dir, default) = host(&[("p.wasm", pass_all())], 40, None);
    assert_eq!(default.max_groups_per_plugin(), 10);
    let (_dir, capped) = host(&[("p.wasm", pass_all())], 40, Some(3));
    assert_eq!(capped.max_groups_per_plugin(), 3);
}

#[test]
fn distinct_param_sets_stop_at_the_cap_with_its_code() {
    let (_dir, host) = host(
        &[("p.wasm", pass_all()), ("q.wasm", pass_all())],
        64,
        Some(3),
    );
    let groups: Vec<Arc<PluginGroup>> = (0..3)
        .map(|n| host.group(&plugin("p", n)).expect("under the cap"))
        .collect();

    // The router's admission: 503 too_many_plugin_groups, naming the limit and its value.
    let refused = host.admit(&plugin("p", 3)).expect_err("at the cap");
    assert_eq!(refused.code, code::TOO_MANY_PLUGIN_GROUPS);
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.limit(), Some("plugin_groups"));
    assert!(
        refused.message.contains("limits.max_groups_per_plugin = 3"),
        "{}",
        refused.message
    );
    // Creating the group directly is refused the same way.
    match host.group(&plugin("p", 3)) {
        Err(PluginError::Capacity(msg)) => {
            assert!(msg.contains("limits.max_groups_per_plugin = 3"), "{msg}")
        }
        other => panic!("expected Capacity, got {:?}", other.map(|g| g.id())),
    }
    // A running param set is always accepted (it joins its group), and other plugins have
    // their own cap.
    let joined = host.admit(&plugin("p", 1)).expect("joins a running group");
    let same = host.group(&plugin("p", 1)).expect("shared");
    assert!(Arc::ptr_eq(&same, &groups[1]));
    let _q = host.group(&plugin("q", 3)).expect("another plugin");

    // An admission holds its place until the group is resolved: two requests racing for the
    // last place do not both get it. Here `joined` holds p/1's place once its group is gone.
    drop(groups);
    drop(same);
    let first = host.admit(&plugin("p", 10)).expect("places are free again");
    let second = host.admit(&plugin("p", 11)).expect("third place");
    assert!(
        host.admit(&plugin("p", 12)).is_err(),
        "p/1, p/10 and p/11 hold the places"
    );
    drop(joined);
    let third = host.admit(&plugin("p", 12)).expect("p/1's place is free");
    let g = host
        .group(&plugin("p", 10))
        .expect("an admitted key is created");
    drop(first);
    assert!(
        host.admit(&plugin("p", 13)).is_err(),
        "the live group keeps its place"
    );
    drop(g);
    assert!(host.admit(&plugin("p", 13)).is_ok());
    drop((second, third));
}

#[test]
fn a_reload_succeeds_while_groups_fill_the_pool() {
    // 8 slots, 2 of them reserved: 6 groups fill what groups may take.
    let (dir, host) = host(&[("p.wasm", pass_all())], 8, Some(100));
    let capacity = 8 - RESERVED_SLOTS as usize;
    let groups: Vec<Arc<PluginGroup>> = (0..capacity)
        .map(|n| host.group(&plugin("p", n)).expect("a slot"))
        .collect();
    match host.group(&plugin("p", capacity)) {
        Err(PluginError::Capacity(msg)) => {
            assert!(msg.contains("plugins.max_instances = 8"), "{msg}")
        }
        other => panic!("expected Capacity, got {:?}", other.map(|g| g.id())),
    }
    for g in &groups {
        assert_eq!(eval(g, &row()), Verdict::Pass);
    }

    // The probe of the new version finds its reserved slot.
    write(dir.path(), "p.wasm", &drop_all());
    host.reload();
    let info = &host.list()[0];
    assert_eq!(
        (info.status, info.version, info.serving_version),
        ("ok", 2, Some(2)),
        "{info:?}"
    );
    // Every group moves to it, one at a time through the other reserved slot.
    for g in &groups {
        assert_eq!(eval(g, &row()), Verdict::Drop, "group {} moved", g.id());
    }
    let info = &host.list()[0];
    assert_eq!(info.status, "ok", "{info:?}");

    // A closed group gives its slot back.
    drop(groups);
    assert!(host.group(&plugin("p", 99)).is_ok());
}
