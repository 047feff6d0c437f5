//! The plugin output builder (`out_*` host functions, `filter::wasm::output`): a sequence of
//! edits read from the input, applied to a change, then rendered as the rewritten `change` frame
//! and `format=wal2json-v1` frame, checked against a model of the edits.
//!
//! Input, one item a line: the first line is the change, a wal2json v2 payload (`{...}`) or the
//! index of a sample; then `<edit> <image> <name> [<value>]` with edit one of `clear copy remove
//! null bool i64 f64 str json`, image `new` or `old`, the name up to the next space and the value
//! the rest of the line; `render` renders and checks mid-way, `start` begins the change again,
//! `see <a,b,...>` begins it again as a guest attached under a policy rule that shows only those
//! columns.
//!
//! Checks: no panic; each edit returns the code the model expects (`ABSENT`, `BAD_JSON`, 0); both
//! frames are valid JSON (when the change's json/jsonb columns hold JSON, as Postgres
//! guarantees); their `new`/`old` images hold exactly the model's columns, in order, with the
//! values the model expects (an untouched column rendered as the unedited frame renders it).
//! After `see`, every edit naming another column is `ABSENT` and no frame carries such a column.

#![no_main]

use libfuzzer_sys::fuzz_target;
use walcast::decode::{Change, Decoder, FrameEncoder, Image, Projection};
use walcast::vocab::Op;
use walcast::fuzzing::OutputBuilder;
use walcast_fuzz::{change_frame, json, json_columns_valid, parse, show, Frame, J, SAMPLES};

const ABSENT: i32 = -1;
const BAD_JSON: i32 = -5;

#[derive(Clone, Debug)]
enum M {
    Orig(usize),
    Null,
    Bool(bool),
    I64(i64),
    F64(f64),
    Str(String),
    Json(String),
}

/// What the builder should hold: `None` is an untouched image.
#[derive(Default)]
struct Model {
    images: [Option<Vec<(String, M)>>; 2],
    /// The columns the guest sees (`see`); `None`: every column.
    visible: Option<Vec<String>>,
}

fn slot(image: Image) -> usize {
    match image {
        Image::New => 0,
        Image::Old => 1,
    }
}

impl Model {
    fn sees(&self, name: &str) -> bool {
        self.visible
            .as_ref()
            .is_none_or(|v| v.iter().any(|n| n == name))
    }

    fn image(&mut self, change: &Change<'_>, image: Image) -> &mut Vec<(String, M)> {
        let visible = &self.visible;
        self.images[slot(image)].get_or_insert_with(|| {
            change
                .columns(image)
                .enumerate()
                .filter(|(_, c)| {
                    visible
                        .as_ref()
                        .is_none_or(|v| v.iter().any(|n| n == c.name))
                })
                .map(|(k, c)| (c.name.to_owned(), M::Orig(k)))
                .collect()
        })
    }

    fn put(&mut self, change: &Change<'_>, image: Image, name: &str, value: M) -> i32 {
        if !self.sees(name) {
            return ABSENT;
        }
        let cols = self.image(change, image);
        match cols.iter().position(|(n, _)| n == name) {
            Some(at) => cols[at].1 = value,
            None => cols.push((name.to_owned(), value)),
        }
        0
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let first = lines.next().unwrap_or("");
    let mut payload = if first.starts_with('{') {
        first.as_bytes().to_vec()
    } else {
        let n: usize = first.trim().parse().unwrap_or(0);
        SAMPLES[n % SAMPLES.len()].as_bytes().to_vec()
    };
    let mut decoder = Decoder::new();
    let Ok(change) = decoder.decode(&mut payload) else {
        return;
    };
    // The host runs plugins on row changes only, and frames embed json columns as they are.
    if change.op().is_none() || !json_columns_valid(&change) {
        return;
    }
    let mut encoder = FrameEncoder::new();
    let base = change_frame(&encoder.change(&change, Projection::All), "unedited frame");
    let base_v1 = json(&encoder.v1(&change, Projection::All), "unedited v1 frame");

    let mut out = OutputBuilder::new();
    out.start(&change);
    let mut model = Model::default();
    for line in lines {
        let mut words = line.splitn(4, ' ');
        let edit = words.next().unwrap_or("");
        match edit {
            "render" => {
                check(&mut out, &model, &change, &base, &base_v1, data);
                continue;
            }
            "start" => {
                // The builder keeps what its guest may see, as a group does from change to change.
                out.start(&change);
                model = Model {
                    visible: model.visible.take(),
                    ..Model::default()
                };
                continue;
            }
            "see" => {
                let names: Vec<String> = words
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect();
                out = OutputBuilder::seeing(&names);
                out.start(&change);
                model = Model {
                    visible: Some(names),
                    ..Model::default()
                };
                continue;
            }
            _ => {}
        }
        let image = match words.next() {
            Some("new") => Image::New,
            Some("old") => Image::Old,
            _ => continue,
        };
        let name = words.next().unwrap_or("");
        let value = words.next().unwrap_or("");
        let (got, want) = match edit {
            "clear" => {
                model.image(&change, image).clear();
                (out.clear(image), 0)
            }
            "copy" => {
                let want = match change.columns(image).position(|c| c.name == name) {
                    Some(k) if model.sees(name) => model.put(&change, image, name, M::Orig(k)),
                    _ => ABSENT,
                };
                (out.copy(image, name), want)
            }
            "remove" => {
                let cols = model.image(&change, image);
                let want = match cols.iter().position(|(n, _)| n == name) {
                    Some(at) => {
                        cols.remove(at);
                        0
                    }
                    None => ABSENT,
                };
                (out.remove(image, name), want)
            }
            "null" => (
                out.set_null(image, name),
                model.put(&change, image, name, M::Null),
            ),
            "bool" => {
                let v = value == "1" || value == "true";
                (
                    out.set_bool(image, name, v),
                    model.put(&change, image, name, M::Bool(v)),
                )
            }
            "i64" => {
                let v: i64 = value.parse().unwrap_or(value.len() as i64);
                (
                    out.set_i64(image, name, v),
                    model.put(&change, image, name, M::I64(v)),
                )
            }
            "f64" => {
                let v: f64 = value.parse().unwrap_or(f64::NAN);
                let m = if v.is_finite() { M::F64(v) } else { M::Null };
                (
                    out.set_f64(image, name, v),
                    model.put(&change, image, name, m),
                )
            }
            "str" => (
                out.set_str(image, name, value),
                model.put(&change, image, name, M::Str(value.to_owned())),
            ),
            "json" => {
                let want = if !model.sees(name) {
                    ABSENT
                } else if serde_json::from_str::<serde::de::IgnoredAny>(value).is_ok() {
                    model.put(&change, image, name, M::Json(value.trim().to_owned()))
                } else {
                    BAD_JSON
                };
                (out.set_json(image, name, value), want)
            }
            _ => continue,
        };
        assert_eq!(got, want, "{line:?} answered {got}; input {}", show(data));
    }
    check(&mut out, &model, &change, &base, &base_v1, data);
});

fn check(
    out: &mut OutputBuilder,
    model: &Model,
    change: &Change<'_>,
    base: &Frame,
    base_v1: &J,
    data: &[u8],
) {
    let op = change.op().expect("a row change");
    let text = out.render(change);
    let frame = change_frame(&text, "rewritten frame");
    let what = || format!("frame {text}\ninput {}", show(data));
    for key in ["type", "op", "schema", "table", "lsn", "xid", "ts"] {
        assert_eq!(frame.top.get(key), base.top.get(key), "{key}: {}", what());
    }
    let shows_new = matches!(op, Op::Insert | Op::Update);
    let shows_old = matches!(op, Op::Update | Op::Delete) && change.has(Image::Old);
    for (image, shown, got, orig) in [
        (Image::New, shows_new, &frame.new, &base.new),
        (Image::Old, shows_old, &frame.old, &base.old),
    ] {
        if !shown {
            assert!(got.is_none(), "{image:?} shown: {}", what());
            continue;
        }
        let got = got
            .as_ref()
            .unwrap_or_else(|| panic!("{image:?} missing: {}", what()));
        for (name, _) in got {
            assert!(
                model.sees(name),
                "hidden {image:?} {name} shown: {}",
                what()
            );
        }
        let orig = orig.as_ref().expect("the unedited frame shows it");
        let Some(cols) = &model.images[slot(image)] else {
            let shown: Vec<(String, J)> = orig
                .iter()
                .filter(|(n, _)| model.sees(n))
                .cloned()
                .collect();
            assert_eq!(got, &shown, "untouched {image:?}: {}", what());
            continue;
        };
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        let want: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, want, "{image:?} columns: {}", what());
        let orig: Vec<&J> = orig.iter().map(|(_, v)| v).collect();
        for ((name, value), (_, m)) in got.iter().zip(cols) {
            same(value, m, &orig, false, &|| {
                format!("{image:?} {name}: {}", what())
            });
        }
    }

    let v1_text = out.render_v1(change);
    let v1 = json(&v1_text, "rewritten v1 frame");
    let what = || format!("v1 frame {v1_text}\ninput {}", show(data));
    for key in ["kind", "schema", "table"] {
        assert_eq!(v1.get(key), base_v1.get(key), "{key}: {}", what());
    }
    for (image, shown, names, types, values, holder) in [
        (
            Image::New,
            shows_new,
            "columnnames",
            "columntypes",
            "columnvalues",
            None,
        ),
        (
            Image::Old,
            shows_old,
            "keynames",
            "keytypes",
            "keyvalues",
            Some("oldkeys"),
        ),
    ] {
        let at = |v: &J| match holder {
            None => Some(v.clone()),
            Some(h) => v.get(h).cloned(),
        };
        let (got, orig) = (at(&v1), at(base_v1));
        if !shown {
            assert!(
                got.and_then(|g| g.get(names).cloned()).is_none(),
                "{image:?} shown: {}",
                what()
            );
            continue;
        }
        let got = got.unwrap_or_else(|| panic!("{image:?} missing: {}", what()));
        let orig = orig.expect("the unedited v1 frame shows it");
        let list = |v: &J, key: &str| -> Vec<J> {
            v.get(key)
                .and_then(J::arr)
                .map(<[J]>::to_vec)
                .unwrap_or_else(|| panic!("{key}: {}", what()))
        };
        for name in list(&got, names) {
            let name = name.str().unwrap_or_else(|| panic!("{names}: {}", what()));
            assert!(
                model.sees(name),
                "hidden {image:?} {name} shown: {}",
                what()
            );
        }
        let Some(cols) = &model.images[slot(image)] else {
            let keep: Vec<bool> = list(&orig, names)
                .iter()
                .map(|n| n.str().is_some_and(|n| model.sees(n)))
                .collect();
            for key in [names, types, values] {
                let shown: Vec<J> = list(&orig, key)
                    .into_iter()
                    .zip(&keep)
                    .filter(|(_, k)| **k)
                    .map(|(v, _)| v)
                    .collect();
                assert_eq!(
                    list(&got, key),
                    shown,
                    "untouched {image:?} {key}: {}",
                    what()
                );
            }
            continue;
        };
        let (got_names, got_types, got_values) =
            (list(&got, names), list(&got, types), list(&got, values));
        let want: Vec<J> = cols.iter().map(|(n, _)| J::Str(n.clone())).collect();
        assert_eq!(got_names, want, "{image:?} names: {}", what());
        assert_eq!(got_types.len(), cols.len(), "{}", what());
        assert_eq!(got_values.len(), cols.len(), "{}", what());
        let orig_types = list(&orig, types);
        let orig_values = list(&orig, values);
        let orig_values: Vec<&J> = orig_values.iter().collect();
        for (i, (_, m)) in cols.iter().enumerate() {
            let want_type = match m {
                M::Orig(k) => orig_types.get(*k).and_then(J::str).unwrap_or(""),
                M::Null => "unknown",
                M::Bool(_) => "boolean",
                M::I64(_) => "bigint",
                M::F64(_) => "double precision",
                M::Str(_) => "text",
                M::Json(_) => "json",
            };
            assert_eq!(
                got_types[i].str(),
                Some(want_type),
                "{image:?} type {i}: {}",
                what()
            );
            same(&got_values[i], m, &orig_values, true, &|| {
                format!("{image:?} value {i}: {}", what())
            });
        }
    }
}

/// Whether a rendered value is what the model holds. `orig` is the unedited image's values by
/// position; `v1` renders JSON text set by the guest as a string.
fn same(got: &J, m: &M, orig: &[&J], v1: bool, what: &dyn Fn() -> String) {
    let num = |got: &J| match got {
        J::Num(t) => t.clone(),
        other => panic!("{other:?} is not a number: {}", what()),
    };
    match m {
        M::Orig(k) => assert_eq!(Some(got), orig.get(*k).copied(), "{}", what()),
        M::Null => assert_eq!(got, &J::Null, "{}", what()),
        M::Bool(b) => assert_eq!(got, &J::Bool(*b), "{}", what()),
        M::I64(n) => assert_eq!(num(got).parse::<i64>(), Ok(*n), "{}", what()),
        M::F64(x) => assert_eq!(num(got).parse::<f64>(), Ok(*x), "{}", what()),
        M::Str(s) => assert_eq!(got.str(), Some(s.as_str()), "{}", what()),
        M::Json(t) if v1 => assert_eq!(got.str(), Some(t.as_str()), "{}", what()),
        M::Json(t) => {
            let want = parse(t)
                .unwrap_or_else(|e| panic!("set_json took {t:?}, not JSON ({e}): {}", what()));
            assert_eq!(got, &want, "{}", what());
        }
    }
}
