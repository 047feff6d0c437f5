use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::*;

/// Writes `text` through a temporary file and a rename, as editors and deploy tools do.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn contents(read: &Read) -> Vec<(String, String)> {
    read.files
        .iter()
        .map(|f| {
            let name = f.path.file_name().expect("name").to_string_lossy();
            (
                name.into_owned(),
                String::from_utf8_lossy(&f.bytes).into_owned(),
            )
        })
        .collect()
}

fn changed(look: Look) -> Vec<(String, String)> {
    match look {
        Look::Changed(read) => contents(&read),
        Look::Same => panic!("expected a change, got none"),
        Look::Settling => panic!("expected a change, got settling"),
    }
}

fn is_same(look: &Look) -> bool {
    matches!(look, Look::Same)
}

fn pair(text: [(&str, &str); 2]) -> Vec<(String, String)> {
    text.iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

#[test]
fn a_replaced_file_is_read_again_and_the_same_bytes_are_no_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, "one").expect("write");
    let mut watch = Watch::files("test file", [path.clone()]);
    let read = watch.read().expect("read");
    assert_eq!(contents(&read), vec![("jwks.json".into(), "one".into())]);
    assert_eq!(read.files[0].sha256_hex().len(), 64);
    assert!(is_same(&watch.look()), "nothing changed");

    replace(&path, "two");
    assert_eq!(
        changed(watch.look()),
        vec![("jwks.json".into(), "two".into())]
    );
    assert!(is_same(&watch.look()), "taken once");
    // Written again, in place and by rename, with the same bytes: the stat moved, not the contents.
    std::fs::write(&path, "two").expect("write");
    assert!(is_same(&watch.look()));
    replace(&path, "two");
    assert!(is_same(&watch.look()));
    // In place, with other bytes of the same length.
    std::fs::write(&path, "six").expect("write");
    assert_eq!(
        changed(watch.look()),
        vec![("jwks.json".into(), "six".into())]
    );
}

#[test]
fn a_briefly_missing_file_is_no_change_and_a_pair_is_taken_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, "cert 1").expect("write");
    std::fs::write(&key, "key 1").expect("write");
    let mut watch = Watch::files("test pair", [cert.clone(), key.clone()]);
    watch.read().expect("read");

    std::fs::remove_file(&key).expect("remove");
    assert!(is_same(&watch.look()), "a missing file is no change");
    std::fs::write(&key, "key 1").expect("write");
    assert!(is_same(&watch.look()), "back with the same bytes");

    // One file changes while the other is missing: nothing until both can be read.
    std::fs::remove_file(&key).expect("remove");
    replace(&cert, "cert 2");
    assert!(is_same(&watch.look()));
    std::fs::write(&key, "key 2").expect("write");
    assert_eq!(
        changed(watch.look()),
        pair([("cert.pem", "cert 2"), ("key.pem", "key 2")])
    );
    // The whole pair is handed over when only one of them changed.
    replace(&key, "key 3");
    assert_eq!(
        changed(watch.look()),
        pair([("cert.pem", "cert 2"), ("key.pem", "key 3")])
    );
}

#[test]
fn a_missing_named_file_fails_the_first_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("absent.pem");
    let err = Watch::files("test file", [path.clone()])
        .read()
        .err()
        .expect("a missing file cannot be read");
    assert_eq!(err.path, path);
    assert_eq!(err.source.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn a_settling_watch_takes_a_change_once_two_looks_agree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cert.pem");
    std::fs::write(&path, "first").expect("write");
    let mut watch = Watch::files("test file", [path.clone()]).settled();
    watch.read().expect("read");

    replace(&path, "half");
    assert!(matches!(watch.look(), Look::Settling));
    // Written again before the next look: still settling, and the half is never handed over.
    replace(&path, "whole");
    assert!(matches!(watch.look(), Look::Settling));
    assert_eq!(
        changed(watch.look()),
        vec![("cert.pem".into(), "whole".into())]
    );
    assert!(is_same(&watch.look()));
}

#[test]
fn a_directory_reports_new_changed_and_removed_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str| dir.path().join(name);
    std::fs::write(file("a.wasm"), "a1").expect("write");
    std::fs::write(file("notes.txt"), "ignored").expect("write");
    std::fs::create_dir(file("sub.wasm")).expect("mkdir");
    let mut watch = Watch::dir("test directory", dir.path(), "wasm");
    let read = watch.read().expect("read");
    assert_eq!(contents(&read), vec![("a.wasm".into(), "a1".into())]);
    assert!(read.unreadable.is_empty());

    std::fs::write(file("b.wasm"), "b1").expect("write");
    assert_eq!(
        changed(watch.look()),
        pair([("a.wasm", "a1"), ("b.wasm", "b1")])
    );
    std::fs::write(file("notes.txt"), "still ignored").expect("write");
    assert!(is_same(&watch.look()));
    replace(&file("a.wasm"), "a2");
    assert_eq!(
        changed(watch.look()),
        pair([("a.wasm", "a2"), ("b.wasm", "b1")])
    );
    std::fs::remove_file(file("b.wasm")).expect("remove");
    assert_eq!(changed(watch.look()), vec![("a.wasm".into(), "a2".into())]);
    assert!(is_same(&watch.look()));
}

#[test]
fn a_directory_file_removed_and_written_again_between_looks_is_no_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.wasm");
    std::fs::write(&path, "v1").expect("write");
    let mut watch = Watch::dir("test directory", dir.path(), "wasm").settled();
    watch.read().expect("read");

    std::fs::remove_file(&path).expect("remove");
    assert!(
        matches!(watch.look(), Look::Settling),
        "gone, not yet taken"
    );
    std::fs::write(&path, "v1").expect("write");
    assert!(matches!(watch.look(), Look::Settling), "back: moved again");
    assert!(is_same(&watch.look()), "same bytes as before: no change");
}

#[test]
fn an_unreadable_directory_is_an_error_at_first_and_no_change_later() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    let err = Watch::dir("test directory", &plugins, "wasm")
        .read()
        .err()
        .expect("missing directory");
    assert_eq!(err.path, plugins);

    std::fs::create_dir(&plugins).expect("mkdir");
    std::fs::write(plugins.join("a.wasm"), "a").expect("write");
    let mut watch = Watch::dir("test directory", &plugins, "wasm");
    watch.read().expect("read");
    let moved: PathBuf = dir.path().join("elsewhere");
    std::fs::rename(&plugins, &moved).expect("rename");
    assert!(is_same(&watch.look()), "what was read stays");
    std::fs::rename(&moved, &plugins).expect("rename");
    assert!(is_same(&watch.look()));
}

#[test]
fn a_stat_stands_for_the_contents_only_once_its_times_are_old() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("f");
    std::fs::write(&path, "x").expect("write");
    let stat = Stat::of(&path).expect("stat");
    let now = SystemTime::now();
    assert!(!stat.settled_before(now), "just written");
    assert!(stat.settled_before(now + RACY + Duration::from_secs(1)));
    let old = now - Duration::from_secs(3600);
    let mut modified_long_ago = stat.clone();
    modified_long_ago.modified = Some(old);
    // The change time is the one a tool cannot set back (`cp -p`, `touch -d`).
    #[cfg(unix)]
    assert!(!modified_long_ago.settled_before(now));
    let mut unknown = stat;
    unknown.modified = None;
    assert!(!unknown.settled_before(now + RACY * 10));
}
