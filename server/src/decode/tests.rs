//! Tests of the decoder and the frame encoder on captured and built wal2json messages.

use proptest::prelude::*;
use serde_json::Value as Json;

use super::*;

const SAMPLES: &str = include_str!("../../testdata/wal2json_v2_samples.jsonl");

fn sample(action: &str, nth: usize) -> Vec<u8> {
    let tag = format!("{{\"action\":\"{action}\"");
    SAMPLES
        .lines()
        .filter(|l| l.starts_with(&tag))
        .nth(nth)
        .expect("sample")
        .as_bytes()
        .to_vec()
}

fn frame(payload: &mut [u8], projection: Projection<'_>) -> Json {
    let mut decoder = Decoder::new();
    let change = decoder.decode(payload).expect("decodes");
    let bytes = FrameEncoder::new().change(&change, projection);
    serde_json::from_str(&bytes).expect("frame is valid JSON")
}

#[test]
fn every_sample_decodes() {
    let mut decoder = Decoder::new();
    for line in SAMPLES.lines() {
        let mut buf = line.as_bytes().to_vec();
        decoder
            .decode(&mut buf)
            .unwrap_or_else(|e| panic!("{e}: {line}"));
    }
}

#[test]
fn insert_frame_keeps_types_and_exact_numbers() {
    let mut p = sample("I", 0);
    let f = frame(&mut p, Projection::All);
    assert_eq!(f["type"], "change");
    assert_eq!(f["op"], "insert");
    assert_eq!(f["schema"], "public");
    assert_eq!(f["table"], "people");
    assert_eq!(f["xid"], 725);
    assert_eq!(f["lsn"], "0/1529830");
    assert_eq!(f["ts"], "2026-11-22T00:31:09.836807Z");
    assert_eq!(f["new"]["pk"], 1);
    assert_eq!(f["new"]["name"], "Paul");
    assert_eq!(f["new"]["height"], 1.9);
    assert_eq!(f["new"]["b"], true);
    assert_eq!(
        f["new"]["j"],
        serde_json::json!({"a": [1, 2]}),
        "jsonb is embedded as JSON"
    );
    assert!(f["old"].is_null());
    // Numbers are copied as Postgres printed them, beyond f64 precision.
    let mut decoder = Decoder::new();
    let mut p = sample("I", 0);
    let change = decoder.decode(&mut p).unwrap();
    assert_eq!(
        change.get(Image::New, "big").unwrap().value,
        Value::Number("123456789012345678901234567890.123")
    );
    let bytes = FrameEncoder::new().change(&change, Projection::All);
    let text = bytes.as_str();
    assert!(
        text.contains("\"big\":123456789012345678901234567890.123"),
        "{text}"
    );
}

#[test]
fn escaped_strings_round_trip_and_nan_is_null() {
    let mut p = sample("I", 1);
    let f = frame(&mut p, Projection::All);
    assert_eq!(f["new"]["name"], "Q\"uo\\te");
    assert_eq!(f["new"]["t"], "é");
    assert!(f["new"]["height"].is_null());
    assert!(f["new"]["age"].is_null());
    assert_eq!(f["new"]["b"], false);
}

#[test]
fn update_and_delete_images() {
    let mut p = sample("U", 0);
    let f = frame(&mut p, Projection::All);
    assert_eq!(f["op"], "update");
    assert_eq!(f["new"]["age"], 52);
    assert_eq!(f["old"], serde_json::json!({"pk": 1}));

    let mut p = sample("U", 1);
    let f = frame(&mut p, Projection::All);
    assert_eq!(
        f["old"]["age"], 52,
        "REPLICA IDENTITY FULL carries the full old row"
    );
    assert_eq!(f["new"]["age"], 53);

    let mut p = sample("D", 0);
    let f = frame(&mut p, Projection::All);
    assert_eq!(f["op"], "delete");
    assert!(f["new"].is_null());
    assert_eq!(f["old"]["pk"], 2);
}

#[test]
fn truncate_has_no_images() {
    let mut p = sample("T", 0);
    let f = frame(&mut p, Projection::All);
    assert_eq!(f["op"], "truncate");
    assert!(f["new"].is_null() && f["old"].is_null());
}

#[test]
fn projection_keeps_listed_columns_only() {
    let cols: Vec<Box<str>> = vec!["name".into(), "age".into()];
    let mut p = sample("U", 1);
    let f = frame(&mut p, Projection::Only(&cols));
    assert_eq!(f["new"], serde_json::json!({"name": "Paul", "age": 53}));
    assert_eq!(f["old"], serde_json::json!({"name": "Paul", "age": 52}));
}

#[test]
fn begin_commit_and_logical_messages() {
    let mut decoder = Decoder::new();
    let mut p = sample("B", 0);
    let c = decoder.decode(&mut p).unwrap();
    assert_eq!(c.action(), Action::Begin);
    assert_eq!(c.xid(), Some(724));
    let mut p = sample("M", 0);
    let c = decoder.decode(&mut p).unwrap();
    assert_eq!(
        c.action(),
        Action::Message {
            transactional: false
        }
    );
    assert_eq!(c.xid(), None);
    assert_eq!((c.prefix(), c.content()), ("pfx", "hello"));
    let mut p = sample("M", 1);
    let c = decoder.decode(&mut p).unwrap();
    assert_eq!(
        c.action(),
        Action::Message {
            transactional: true
        }
    );
}

#[test]
fn identity_before_columns_still_resolves_numbers() {
    let mut p = br#"{"action":"U","xid":1,"schema":"s","table":"t","identity":[{"name":"a","type":"integer","value":7}],"columns":[{"name":"a","type":"numeric","value":-1.5e+300},{"name":"b","type":"integer","value":0}]}"#.to_vec();
    let mut decoder = Decoder::new();
    let c = decoder.decode(&mut p).unwrap();
    assert_eq!(c.get(Image::Old, "a").unwrap().value, Value::Number("7"));
    assert_eq!(
        c.get(Image::New, "a").unwrap().value,
        Value::Number("-1.5e+300")
    );
    assert_eq!(c.get(Image::New, "b").unwrap().value, Value::Number("0"));
}

#[test]
fn unchanged_toast_column_stays_absent() {
    let mut p = br#"{"action":"U","xid":1,"schema":"s","table":"t","columns":[{"name":"id","type":"integer","value":1}],"identity":[{"name":"id","type":"integer","value":1}]}"#.to_vec();
    let mut decoder = Decoder::new();
    let c = decoder.decode(&mut p).unwrap();
    assert!(c.get(Image::New, "body").is_none());
    let bytes = FrameEncoder::new().change(&c, Projection::All);
    let f: Json = serde_json::from_str(&bytes).unwrap();
    assert!(f["new"].get("body").is_none(), "absent is not null");
}

#[test]
fn large_messages_decode() {
    let big = "y".repeat(3 << 20);
    let mut p = format!(
        r#"{{"action":"I","xid":9,"schema":"public","table":"t","columns":[{{"name":"id","type":"bigint","value":9223372036854775807}},{{"name":"body","type":"text","value":"{big}"}}]}}"#
    )
    .into_bytes();
    let mut decoder = Decoder::new();
    let c = decoder.decode(&mut p).unwrap();
    assert_eq!(
        c.get(Image::New, "id").unwrap().value,
        Value::Number("9223372036854775807")
    );
    assert_eq!(
        c.get(Image::New, "body").unwrap().value,
        Value::String(&big)
    );
}

#[test]
fn invalid_payloads_are_errors() {
    let mut decoder = Decoder::new();
    for (input, err) in [
        (&b"not json"[..], DecodeError::InvalidJson),
        (b"[1,2]", DecodeError::NotAnObject),
        (b"{\"xid\":1}", DecodeError::MissingAction),
        (b"{\"action\":\"Z\"}", DecodeError::UnknownAction),
        (
            b"{\"action\":\"I\",\"columns\":[1]}",
            DecodeError::BadColumn,
        ),
        (
            b"{\"action\":\"I\",\"columns\":{}}",
            DecodeError::BadType("columns"),
        ),
    ] {
        let mut p = input.to_vec();
        assert_eq!(
            decoder.decode(&mut p).unwrap_err(),
            err,
            "{}",
            String::from_utf8_lossy(input)
        );
    }
    // The decoder is still usable afterwards.
    let mut p = sample("I", 0);
    assert!(decoder.decode(&mut p).is_ok());
}

#[test]
fn timestamps_become_rfc3339() {
    for (pg, rfc) in [
        ("2026-11-21 23:54:51.28847+00", "2026-11-21T23:54:51.28847Z"),
        ("2026-11-21 23:54:51+05:30", "2026-11-21T23:54:51+05:30"),
        ("2026-11-21 23:54:51.1-08", "2026-11-21T23:54:51.1-08:00"),
        ("1850-01-01 00:00:00+00:19:32", "1849-12-31T23:40:28Z"),
    ] {
        let mut p =
            format!(r#"{{"action":"T","xid":1,"timestamp":"{pg}","schema":"s","table":"t"}}"#)
                .into_bytes();
        let f = frame(&mut p, Projection::All);
        let ts = f["ts"].as_str().unwrap();
        assert_eq!(ts, rfc);
    }
}

/// Byte ranges of the string values of json/jsonb columns in a wal2json line.
fn json_value_spans(line: &str) -> Vec<std::ops::Range<usize>> {
    let mut spans = Vec::new();
    for tag in [r#""type":"json","value":""#, r#""type":"jsonb","value":""#] {
        for (at, _) in line.match_indices(tag) {
            let start = at + tag.len();
            let b = line.as_bytes();
            let mut end = start;
            while end < b.len() && b[end] != b'"' {
                end += if b[end] == b'\\' { 2 } else { 1 };
            }
            spans.push(start - 1..end + 1);
        }
    }
    spans
}

proptest! {
    #[test]
    fn decoder_never_panics_on_bytes(input in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut decoder = Decoder::new();
        let mut p = input;
        let _ = decoder.decode(&mut p);
    }

    #[test]
    fn decoder_never_panics_on_mutated_samples(idx in 0usize..20, pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let lines: Vec<&str> = SAMPLES.lines().collect();
        let line = lines[idx % lines.len()];
        let mut p = line.as_bytes().to_vec();
        let at = pos.index(p.len());
        p[at] = byte;
        let mut decoder = Decoder::new();
        if let Ok(c) = decoder.decode(&mut p) {
            // json/jsonb text is embedded as it is (Postgres validated it): a mutation inside
            // one may make the frame invalid, anything else must not.
            if c.op().is_some() && !json_value_spans(line).iter().any(|r| r.contains(&at)) {
                let bytes = FrameEncoder::new().change(&c, Projection::All);
                prop_assert!(serde_json::from_str::<Json>(&bytes).is_ok(), "{}", bytes);
            }
        }
    }

    #[test]
    fn string_values_round_trip(s in ".{0,64}") {
        let escaped = serde_json::to_string(&s).unwrap();
        let mut p = format!(r#"{{"action":"I","xid":1,"schema":"s","table":"t","columns":[{{"name":"c","type":"text","value":{escaped}}}]}}"#).into_bytes();
        let f = frame(&mut p, Projection::All);
        prop_assert_eq!(f["new"]["c"].as_str().unwrap(), s.as_str());
    }
}

/// Postgres prints `numeric` in plain notation: `1e400` is 401 digits, `1e-400` has 400 decimals.
fn numerics_beyond_f64() -> Vec<String> {
    let big = format!("1{}", "0".repeat(400));
    let tiny = format!("0.{}1", "0".repeat(399));
    let max_digits = format!("9{}.{}", "9".repeat(131_071), "1".repeat(50));
    vec![
        big.clone(),
        format!("-{big}"),
        tiny.clone(),
        format!("-{tiny}"),
        format!("{big}.{}", "3".repeat(350)),
        max_digits,
    ]
}

#[test]
fn numbers_beyond_f64_keep_their_text_in_rows_and_old_keys() {
    let mut decoder = Decoder::new();
    for n in numerics_beyond_f64() {
        // Escaped strings before and after the number: the parser unescapes them in place.
        let payload = format!(
            r#"{{"action":"U","xid":9,"lsn":"0/16B3748","schema":"public","table":"t_num","columns":[{{"name":"label","type":"text","value":"a\"b\\c"}},{{"name":"n","type":"numeric","value":{n}}},{{"name":"arr","type":"numeric[]","value":"{{{n},1}}"}},{{"name":"after","type":"text","value":"\u00e9\n"}}],"identity":[{{"name":"n","type":"numeric","value":{n}}}]}}"#
        );
        let mut p = payload.clone().into_bytes();
        let c = decoder
            .decode(&mut p)
            .unwrap_or_else(|e| panic!("{e}: {:.80}", payload));
        assert_eq!(c.get(Image::New, "n").unwrap().value, Value::Number(&n));
        assert_eq!(c.get(Image::Old, "n").unwrap().value, Value::Number(&n));
        assert_eq!(
            c.get(Image::New, "label").unwrap().value,
            Value::String("a\"b\\c")
        );
        assert_eq!(
            c.get(Image::New, "after").unwrap().value,
            Value::String("é\n")
        );
        let frame = FrameEncoder::new().change(&c, Projection::All);
        let exact = format!(r#""n":{n}"#);
        assert_eq!(
            frame.matches(&exact).count(),
            2,
            "new and old keep the text"
        );
    }
}

#[test]
fn a_wide_number_is_also_found_as_the_first_value() {
    let n = format!("1{}", "0".repeat(400));
    let mut p = format!(r#"{{"action":"I","columns":[{{"name":"n","type":"numeric","value":{n}}}],"xid":1,"schema":"s","table":"t"}}"#).into_bytes();
    let mut decoder = Decoder::new();
    let c = decoder.decode(&mut p).unwrap();
    assert_eq!(c.get(Image::New, "n").unwrap().value, Value::Number(&n));
    assert_eq!(c.xid(), Some(1));
}

#[test]
fn pos_is_written_as_its_text_form_when_set() {
    use crate::vocab::{Lsn, Pos};
    let mut p = sample("I", 0);
    let mut decoder = Decoder::new();
    let mut c = decoder.decode(&mut p).unwrap();
    let none = FrameEncoder::new().change(&c, Projection::All);
    assert!(!none.contains("\"pos\""), "no position, no field: {none}");
    for pos in [
        Pos::new(Lsn(0x152_A058), 3),
        Pos::new(Lsn(u64::MAX), u32::MAX),
        Pos::ZERO,
    ] {
        c.set_pos(pos);
        let f: Json =
            serde_json::from_str(&FrameEncoder::new().change(&c, Projection::All)).unwrap();
        assert_eq!(f["pos"], pos.to_string());
    }
}

fn v1_frame(payload: &mut [u8], projection: Projection<'_>) -> (String, Json) {
    let mut decoder = Decoder::new();
    let change = decoder.decode(payload).expect("decodes");
    let text = FrameEncoder::new().v1(&change, projection);
    let json = serde_json::from_str(&text).expect("v1 frame is valid JSON");
    (text, json)
}

#[test]
fn v1_frames_have_format_version_1_shapes() {
    let mut insert = br#"{"action":"I","xid":9,"lsn":"0/16","schema":"public","table":"t","columns":[{"name":"id","type":"integer","value":1},{"name":"j","type":"jsonb","value":"{\"a\": [1, 2]}"},{"name":"n","type":"numeric","value":123456789012345678901234567890123456789012345678901234567890.5},{"name":"s","type":"character varying(20)","value":"a\"b"},{"name":"x","type":"double precision","value":null},{"name":"b","type":"boolean","value":true}]}"#.to_vec();
    let (text, _) = v1_frame(&mut insert, Projection::All);
    // Keys in format-version 1's order, json stays a string, numbers keep their text.
    assert_eq!(
        text,
        r#"{"kind":"insert","schema":"public","table":"t","columnnames":["id","j","n","s","x","b"],"columntypes":["integer","jsonb","numeric","character varying(20)","double precision","boolean"],"columnvalues":[1,"{\"a\": [1, 2]}",123456789012345678901234567890123456789012345678901234567890.5,"a\"b",null,true]}"#
    );

    let mut update = br#"{"action":"U","schema":"s","table":"t","columns":[{"name":"id","type":"integer","value":2},{"name":"v","type":"text","value":"b"}],"identity":[{"name":"id","type":"integer","value":1}]}"#.to_vec();
    let (text, _) = v1_frame(&mut update, Projection::All);
    assert_eq!(
        text,
        r#"{"kind":"update","schema":"s","table":"t","columnnames":["id","v"],"columntypes":["integer","text"],"columnvalues":[2,"b"],"oldkeys":{"keynames":["id"],"keytypes":["integer"],"keyvalues":[1]}}"#
    );

    let mut delete = br#"{"action":"D","schema":"s","table":"t","identity":[{"name":"id","type":"integer","value":1},{"name":"v","type":"text","value":"a"}]}"#.to_vec();
    let (text, _) = v1_frame(&mut delete, Projection::All);
    assert_eq!(
        text,
        r#"{"kind":"delete","schema":"s","table":"t","oldkeys":{"keynames":["id","v"],"keytypes":["integer","text"],"keyvalues":[1,"a"]}}"#
    );

    let mut truncate = br#"{"action":"T","schema":"s","table":"t"}"#.to_vec();
    let (text, _) = v1_frame(&mut truncate, Projection::All);
    assert_eq!(text, r#"{"kind":"truncate","schema":"s","table":"t"}"#);

    // select= applies to both images, as in the change frame.
    let cols: Vec<Box<str>> = vec!["v".into()];
    let mut update = br#"{"action":"U","schema":"s","table":"t","columns":[{"name":"id","type":"integer","value":2},{"name":"v","type":"text","value":"b"}],"identity":[{"name":"id","type":"integer","value":1},{"name":"v","type":"text","value":"a"}]}"#.to_vec();
    let (_, f) = v1_frame(&mut update, Projection::Only(&cols));
    assert_eq!(f["columnnames"], serde_json::json!(["v"]));
    assert_eq!(f["columnvalues"], serde_json::json!(["b"]));
    assert_eq!(f["oldkeys"]["keynames"], serde_json::json!(["v"]));
    assert_eq!(f["oldkeys"]["keyvalues"], serde_json::json!(["a"]));
}

#[test]
fn every_sample_encodes_as_valid_v1_json() {
    let mut decoder = Decoder::new();
    let mut encoder = FrameEncoder::new();
    for line in SAMPLES.lines() {
        let mut buf = line.as_bytes().to_vec();
        let change = decoder.decode(&mut buf).expect("decodes");
        if change.op().is_none() {
            continue;
        }
        let text = encoder.v1(&change, Projection::All);
        let f: Json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let names = f["columnnames"].as_array().map_or(0, Vec::len);
        assert_eq!(
            names,
            f["columnvalues"].as_array().map_or(0, Vec::len),
            "{text}"
        );
        assert_eq!(
            names,
            f["columntypes"].as_array().map_or(0, Vec::len),
            "{text}"
        );
    }
}

/// Inputs the fuzzer found: none is something wal2json writes, each must be an error or a frame
/// that is valid JSON, never a panic.
#[test]
fn malformed_numbers_and_timestamps_found_by_fuzzing() {
    let mut decoder = Decoder::new();
    let long_bad = format!(
        r#"{{"action":"I","schema":"s","table":"t","columns":[{{"name":"a","type":"numeric","value":{}.5.5}}]}}"#,
        "1".repeat(400)
    );
    for bad in [
        r#"{"action":"I","schema":"s","table":"t","columns":[{"name":"a","type":"integer","value":1111111111111111111-1}]}"#.to_owned(),
        long_bad,
    ] {
        let mut buf = bad.clone().into_bytes();
        assert!(decoder.decode(&mut buf).is_err(), "accepted {bad}");
    }
    for ts in [
        r#"2026-11-22 00:31:09.5\"+00"#,
        "2026-11-22 00:31:09+80000020000005:30",
        "2026-11-22 00:31:09+99999999999999999:30",
    ] {
        let line = format!(
            r#"{{"action":"I","timestamp":"{ts}","schema":"s","table":"t","columns":[{{"name":"a","type":"integer","value":1}}]}}"#
        );
        let mut buf = line.into_bytes();
        let change = decoder.decode(&mut buf).expect("decodes");
        let text = FrameEncoder::new().change(&change, Projection::All);
        serde_json::from_str::<Json>(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    }
}
