//! Decode + frame build per change: the simd-json in-place path against a serde_json path on
//! captured wal2json samples. Run: `cargo bench -p walcast --bench decode`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use serde_json::{json, Value};
use walcast::decode::{Decoder, FrameEncoder, Projection};

/// A typical ~300-byte insert as wal2json format-version 2 prints it.
const TYPICAL: &str = r#"{"action":"I","xid":725,"timestamp":"2026-11-21 22:47:36.714581+00","lsn":"0/1526A58","schema":"public","table":"people","columns":[{"name":"pk","type":"integer","value":1},{"name":"name","type":"text","value":"Paul"},{"name":"age","type":"integer","value":51},{"name":"height","type":"double precision","value":1.9},{"name":"city","type":"text","value":"Lyon"}]}"#;

const SAMPLES: &str = include_str!("../testdata/wal2json_v2_samples.jsonl");

/// The baseline: a generic DOM parse and a frame built by serde_json.
fn serde_path(payload: &[u8]) -> Vec<u8> {
    let v: Value = serde_json::from_slice(payload).expect("valid");
    let row = |key: &str| -> Value {
        match v.get(key).and_then(Value::as_array) {
            Some(cols) => Value::Object(
                cols.iter()
                    .map(|c| {
                        (
                            c["name"].as_str().unwrap_or_default().to_owned(),
                            c["value"].clone(),
                        )
                    })
                    .collect(),
            ),
            None => Value::Null,
        }
    };
    let frame = json!({
        "type": "change", "op": "insert", "schema": v["schema"], "table": v["table"],
        "lsn": v["lsn"], "xid": v["xid"], "ts": v["timestamp"], "new": row("columns"), "old": row("identity"),
    });
    serde_json::to_vec(&frame).expect("serialises")
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_and_frame");
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("typical_300b", TYPICAL.as_bytes().to_vec()),
        (
            "update_full_identity",
            SAMPLES
                .lines()
                .find(|l| l.contains("\"action\":\"U\""))
                .unwrap()
                .as_bytes()
                .to_vec(),
        ),
        // The slow path: a numeric beyond f64's range is masked for the parse and put back.
        (
            "wide_numeric_1e400",
            TYPICAL
                .replace(r#""value":51"#, &format!(r#""value":1{}"#, "0".repeat(400)))
                .into_bytes(),
        ),
    ];
    for (name, payload) in &inputs {
        group.throughput(Throughput::Elements(1));
        let mut decoder = Decoder::new();
        if decoder.decode(&mut payload.clone()).is_err() {
            eprintln!("{name}: this build cannot decode it; skipped");
            continue;
        }
        let mut encoder = FrameEncoder::new();
        group.bench_function(format!("simd_json_in_place/{name}"), |b| {
            b.iter_batched_ref(
                || payload.clone(),
                |p| {
                    let change = decoder.decode(p).expect("valid");
                    encoder.change(&change, Projection::All)
                },
                BatchSize::SmallInput,
            )
        });
        // serde_json (without arbitrary precision) refuses numbers beyond f64's range.
        if serde_json::from_slice::<Value>(payload).is_ok() {
            group.bench_function(format!("serde_json_value/{name}"), |b| {
                b.iter(|| serde_path(payload))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
