//! Tests of binding requests to columns and evaluating them on changes.

use super::*;
use crate::decode::Decoder;
use crate::filter::request::parse_request;
use crate::filter::QueryError;

fn columns() -> Vec<ColumnInfo> {
    [
        ("pk", "integer"),
        ("name", "text"),
        ("age", "integer"),
        ("height", "double precision"),
        ("big", "numeric"),
        ("j", "jsonb"),
        ("ts", "timestamp with time zone"),
        ("naive", "timestamp without time zone"),
        ("d", "date"),
        ("tm", "time without time zone"),
        ("b", "boolean"),
        ("t", "text"),
        ("odd.col", "text"),
        ("id", "uuid"),
    ]
    .into_iter()
    .map(|(n, t)| ColumnInfo::new(n, t))
    .collect()
}

const ROW: &str = r#"{"action":"I","xid":1,"schema":"public","table":"people","columns":[
 {"name":"pk","type":"integer","value":1},
 {"name":"name","type":"text","value":"Paul"},
 {"name":"age","type":"integer","value":51},
 {"name":"height","type":"double precision","value":1.9},
 {"name":"big","type":"numeric","value":123456789012345678901234567890.123},
 {"name":"j","type":"jsonb","value":"{\"a\": [1, 2]}"},
 {"name":"ts","type":"timestamp with time zone","value":"2026-11-21 23:54:51.28847+00"},
 {"name":"naive","type":"timestamp without time zone","value":"2026-11-21 23:54:51"},
 {"name":"d","type":"date","value":"2026-11-21"},
 {"name":"tm","type":"time without time zone","value":"12:30:00"},
 {"name":"b","type":"boolean","value":true},
 {"name":"t","type":"text","value":null},
 {"name":"odd.col","type":"text","value":"a:b"},
 {"name":"id","type":"uuid","value":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}]}"#;

fn bind_q(pairs: &[(&str, &str)]) -> Result<Filter, QueryError> {
    let params: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    bind(&parse_request(&params)?, &columns())
}

fn filter(cond: &str) -> Filter {
    bind_q(&[("query", "*:people"), ("filter", cond)]).unwrap_or_else(|e| panic!("{cond}: {e}"))
}

fn on<R>(json: &str, f: impl FnOnce(&Change<'_>) -> R) -> R {
    let mut payload = json.as_bytes().to_vec();
    let mut decoder = Decoder::new();
    let change = decoder.decode(&mut payload).expect("valid wal2json");
    f(&change)
}

fn row(cond: &str) -> bool {
    let f = filter(cond);
    on(ROW, |c| f.matches(c))
}

#[track_caller]
fn check(yes: &[&str], no: &[&str]) {
    for c in yes {
        assert!(row(c), "{c} should match");
    }
    for c in no {
        assert!(!row(c), "{c} should not match");
    }
}

#[test]
fn numbers_compare_numerically() {
    check(
        &[
            "age.eq.51",
            "age.eq.51.0",
            "age.eq.5.1e1",
            "age.gt.9",
            "age.lt.100",
            "age.gte.51",
            "age.lte.51",
            "age.neq.50",
            "age.not.eq.50",
            "age.not.lt.51",
            "height.gt.1.89",
            "height.lt.1.9000001",
            "height.eq.1.90",
            "big.gt.123456789012345678901234567890.1229",
            "big.lt.123456789012345678901234567890.1231",
            "big.eq.123456789012345678901234567890.12300",
            "age.in.1,51,3",
            "age.in.(50,51.00)",
            "age.not.in.(1,2)",
            "age.lt.Infinity",
            "age.gt.-Infinity",
        ],
        &[
            "age.eq.5",
            "age.gt.100",
            "age.lt.9",
            "age.neq.51",
            "age.not.eq.51",
            "age.in.()",
            "age.in.1,2",
            "age.not.in.(51)",
            "big.gt.1e30",
            "age.eq.NaN",
        ],
    );
}

#[test]
fn text_bool_json_and_like() {
    check(
        &[
            "name.eq.Paul",
            "name.neq.paul",
            "name.gt.Alice",
            "name.lt.paul",
            "name.like.P*",
            "name.like.%au%",
            "name.like.P_u_",
            "name.ilike.*AUL",
            "name.not.like.x*",
            "name.in.(Ann,Paul)",
            "b.eq.true",
            "b.eq.t",
            "b.is.true",
            "b.not.is.false",
            "b.neq.false",
            "b.gt.false",
            r#"j.eq.{"a": [1, 2]}"#,
            "j.like.*[1, 2]*",
            "\"odd.col\".eq.a:b",
            "age.like.5*",
            "ts.like.2026-11-21*",
            "id.eq.A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "id.in.(x,A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11)",
        ],
        &[
            "name.eq.paul",
            "name.like.p*",
            "name.ilike.x*",
            "name.not.ilike.PAUL",
            "b.eq.false",
            "b.is.false",
            "b.not.is.true",
            "b.lt.true",
        ],
    );
}

#[test]
fn nulls_follow_sql() {
    check(
        &["t.is.null", "name.not.is.null", "age.not.is.null"],
        &[
            "t.eq.x",
            "t.neq.x",
            "t.not.eq.x",
            "t.like.*",
            "t.not.like.*",
            "t.in.(x)",
            "t.not.in.(x)",
            "t.not.is.null",
            "name.is.null",
            "t.lt.zzz",
            "t.gt.",
        ],
    );
}

#[test]
fn temporal_values_compare_chronologically() {
    check(
        &[
            "ts.eq.2026-11-21T23:54:51.28847Z",
            "ts.eq.2026-11-22T01:54:51.28847+02:00",
            "ts.gt.2026-11-21 23:54:51+00",
            "ts.lt.2026-11-22",
            "ts.gte.2026-11-21T23:54:51.28847+00:00",
            "naive.eq.2026-11-21T23:54:51",
            "naive.eq.2026-11-21T23:54:51+05:00",
            "naive.lt.2026-11-22",
            "d.eq.2026-11-21",
            "d.eq.2026-11-21T15:00:00",
            "d.gt.2026-11-20",
            "d.lt.infinity",
            "tm.gt.12:00",
            "tm.eq.12:30:00.000",
            "tm.lt.24:00:00",
            "ts.gt.-infinity",
        ],
        &[
            "ts.gt.2026-11-21T23:54:51.28847Z",
            "ts.lt.2026-11-21T22:00:00Z",
            "ts.eq.2026-11-21 23:54:51.28847+01",
            "d.gt.2026-11-21",
            "tm.lt.12:30",
            "ts.gt.infinity",
        ],
    );
}

#[test]
fn bind_errors() {
    let e = |pairs: &[(&str, &str)]| bind_q(pairs).expect_err("binding fails");
    let q = ("query", "*:people");
    let err = e(&[q, ("filter", "nope.eq.1")]);
    assert_eq!(err.code, "unknown_column");
    assert!(
        err.message
            .contains("column \"nope\" does not exist in table public.people"),
        "{err}"
    );
    let err = e(&[q, ("select", "pk,nope")]);
    assert_eq!(err.code, "unknown_column");
    let err = e(&[q, ("filter", "age.gt.abc")]);
    assert_eq!(err.code, "bad_value");
    assert!(
        err.message
            .contains("value \"abc\" for column \"age\" is not a valid integer"),
        "{err}"
    );
    assert_eq!(e(&[q, ("filter", "age.in.(1,x)")]).code, "bad_value");
    assert_eq!(e(&[q, ("filter", "b.eq.maybe")]).code, "bad_value");
    assert_eq!(e(&[q, ("filter", "ts.gt.yesterday")]).code, "bad_value");
    assert_eq!(e(&[q, ("filter", "d.eq.2026-02-30")]).code, "bad_value");
    assert_eq!(e(&[q, ("filter", "tm.eq.noon")]).code, "bad_value");
    let err = e(&[q, ("filter", "age.is.true")]);
    assert_eq!(err.code, "bad_operator");
    assert!(
        err.message
            .contains("is.true and is.false need a boolean column"),
        "{err}"
    );
    let err = e(&[q, ("filter", "b.not.like.t*")]);
    assert_eq!(err.code, "bad_operator");
    assert!(
        err.message
            .contains("not.like cannot be used on column \"b\" of type boolean"),
        "{err}"
    );
    // Values of text columns are never rejected.
    assert!(bind_q(&[q, ("filter", "name.eq.anything:at all")]).is_ok());
}

#[test]
fn op_mask_and_truncate() {
    let f = bind_q(&[("query", "insert:people:t.eq.never")]).expect("binds");
    let truncate = r#"{"action":"T","schema":"public","table":"people"}"#;
    assert!(!on(truncate, |c| f.matches(c)), "truncate not requested");
    let f = bind_q(&[("query", "insert,truncate:people:t.eq.never")]).expect("binds");
    assert!(
        on(truncate, |c| f.matches(c)),
        "truncate carries no row: conditions do not apply"
    );
    let f = bind_q(&[("query", "delete:people")]).expect("binds");
    assert!(!on(ROW, |c| f.matches(c)));
    let begin = r#"{"action":"B","xid":1}"#;
    assert!(!on(begin, |c| f.matches(c)));
}

#[test]
fn images_and_toast() {
    // Update whose `t` column was an unchanged TOAST value: absent from `columns`; the old image
    // (REPLICA IDENTITY FULL) has it.
    let update = r#"{"action":"U","schema":"public","table":"people",
      "columns":[{"name":"pk","type":"integer","value":1},{"name":"age","type":"integer","value":52}],
      "identity":[{"name":"pk","type":"integer","value":1},{"name":"age","type":"integer","value":51},
                  {"name":"t","type":"text","value":"long"}]}"#;
    let m = |cond: &str| {
        let f = filter(cond);
        on(update, |c| f.matches(c))
    };
    assert!(m("age.eq.52"), "new image wins");
    assert!(!m("age.eq.51"));
    assert!(m("t.eq.long"), "absent from new: falls back to old");
    assert!(
        !m("name.eq.x") && !m("name.not.eq.x") && !m("name.is.null") && !m("name.not.is.null"),
        "absent everywhere: false whatever the operator"
    );
    let delete = r#"{"action":"D","schema":"public","table":"people",
      "identity":[{"name":"pk","type":"integer","value":7}]}"#;
    let f = filter("pk.eq.7");
    assert!(on(delete, |c| f.matches(c)), "delete reads the old image");
    let f = filter("age.eq.1");
    assert!(!on(delete, |c| f.matches(c)));
}

#[test]
fn conditions_are_anded() {
    let f = bind_q(&[("query", "*:people:age.gt.50"), ("filter", "name.eq.Paul")]).expect("binds");
    assert!(on(ROW, |c| f.matches(c)));
    let f = bind_q(&[("query", "*:people:age.gt.50"), ("filter", "name.eq.Ann")]).expect("binds");
    assert!(!on(ROW, |c| f.matches(c)));
}

#[test]
fn select_and_eq_index() {
    let f = bind_q(&[
        ("query", "*:people:age.gt.1"),
        ("filter", "j.eq.{}"),
        ("filter", "pk.not.eq.3"),
        ("filter", "pk.eq.007.0"),
        ("filter", "name.eq.x"),
        ("select", "pk,\"odd.col\""),
    ])
    .expect("binds");
    assert_eq!(f.eq_index(), Some(("pk", &b"7"[..])));
    assert_eq!(f.eq_class(), Some(TypeClass::Number));
    assert_eq!(f.select(), Some(&["pk".into(), "odd.col".into()][..]));
    assert_eq!(
        filter("name.eq.Paul").eq_index(),
        Some(("name", &b"Paul"[..]))
    );
    assert_eq!(filter("b.eq.yes").eq_index(), Some(("b", &b"t"[..])));
    assert_eq!(filter("ts.eq.2026-11-21").eq_index(), None);
    assert_eq!(filter("age.in.(1)").eq_index(), None);
    assert_eq!(filter("age.gt.1").select(), None);
}

#[test]
fn index_key_agrees_with_eq_index() {
    let mut scratch = Vec::new();
    let cases: [(&str, Value<'_>, TypeClass, bool); 12] = [
        ("age.eq.51", Value::Number("51"), TypeClass::Number, true),
        (
            "age.eq.5.1e1",
            Value::Number("51.000"),
            TypeClass::Number,
            true,
        ),
        ("age.eq.-0", Value::Number("0"), TypeClass::Number, true),
        (
            "big.eq.1e-3",
            Value::Number("0.0010"),
            TypeClass::Number,
            true,
        ),
        (
            "big.eq.1e100",
            Value::String("1E+100"),
            TypeClass::Number,
            true,
        ),
        ("age.eq.51", Value::Number("52"), TypeClass::Number, false),
        ("b.eq.on", Value::Bool(true), TypeClass::Bool, true),
        ("b.eq.0", Value::Bool(false), TypeClass::Bool, true),
        ("b.eq.0", Value::Bool(true), TypeClass::Bool, false),
        ("name.eq.Paul", Value::String("Paul"), TypeClass::Text, true),
        (
            "name.eq.Paul",
            Value::String("paul"),
            TypeClass::Text,
            false,
        ),
        ("name.eq.007", Value::Number("007"), TypeClass::Text, true),
    ];
    for (cond, value, class, equal) in cases {
        let f = filter(cond);
        let (_, key) = f.eq_index().expect("indexable");
        let got = index_key(value, class, &mut scratch).expect("has a key");
        assert_eq!(got == key, equal, "{cond} vs {value:?}");
    }
    assert_eq!(index_key(Value::Null, TypeClass::Text, &mut scratch), None);
    assert_eq!(
        index_key(Value::String("x"), TypeClass::Json, &mut scratch),
        None
    );
    assert_eq!(
        index_key(Value::String("2026-11-21"), TypeClass::Date, &mut scratch),
        None
    );
    assert_eq!(
        index_key(Value::String("abc"), TypeClass::Number, &mut scratch),
        None
    );
}

#[test]
fn row_column_picks_the_image() {
    on(ROW, |c| {
        assert_eq!(
            row_column(c, Op::Insert, "pk").map(|c| c.value),
            Some(Value::Number("1"))
        );
        assert!(row_column(c, Op::Delete, "pk").is_none());
        assert!(row_column(c, Op::Truncate, "pk").is_none());
    });
}

/// `in` is a hash lookup on canonical keys; it must agree with the scan it replaced (`compare`
/// against each operand) for every type class.
mod in_by_hash {
    use proptest::prelude::*;

    use super::*;

    /// The `in` test as it was: one comparison per operand.
    fn scan(operands: &[Operand], value: &Typed<'_>) -> bool {
        operands
            .iter()
            .any(|o| compare(value, o) == Some(Ordering::Equal))
    }

    /// Binds `c.in.(items)` on a column of `type_name` (items that do not parse for the type
    /// are left out) and checks hash and scan agree on every value.
    fn agree(type_name: &str, items: &[String], values: &[Value<'_>]) -> Result<(), TestCaseError> {
        let info = ColumnInfo::new("c", type_name);
        let zoned = TypeClass::is_zoned(type_name);
        let items: Vec<String> = items
            .iter()
            .filter(|s| parse_operand(s, info.class, zoned).is_some())
            .cloned()
            .collect();
        let operands: Vec<Operand> = items
            .iter()
            .filter_map(|s| parse_operand(s, info.class, zoned))
            .collect();
        let raw = RawCondition {
            column: "c".into(),
            negated: false,
            op: Operator::In,
            value: RawValue::List(items.clone()),
        };
        let cond = bind_condition(&raw, &info).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let Test::In(set) = &cond.test else {
            return Err(TestCaseError::fail("not an in test"));
        };
        for value in values {
            let Some(typed) = cond.typed(*value) else {
                continue;
            };
            prop_assert_eq!(
                set.contains(&typed),
                scan(&operands, &typed),
                "{} in {:?} on {}",
                format!("{value:?}"),
                items,
                type_name
            );
        }
        Ok(())
    }

    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => (
                prop::sample::select(vec!["", "-", "+"]),
                prop::sample::select(vec!["", "0", "00", "1", "01", "10", "7", "100"]),
                prop::sample::select(vec!["", ".", ".0", ".5", ".50", ".05", ".000"]),
                prop::sample::select(vec!["", "e0", "e1", "e-1", "E+2", "e-2", "e70", "e-70"]),
            )
                .prop_map(|(s, i, f, e)| format!("{s}{i}{f}{e}")),
            1 => prop::sample::select(vec!["NaN", "nan", "Infinity", "inf", "-Infinity", "-inf"])
                .prop_map(str::to_owned),
        ]
    }

    fn boolean() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "t", "true", "TRUE", "y", "yes", "on", "1", "f", "false", "n", "no", "off", "0", "x",
        ])
        .prop_map(str::to_owned)
    }

    fn timestamp() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec!["2026-11-21", "2026-11-22", "0044-03-15"]),
            prop::sample::select(vec![
                "",
                " 00:00:00",
                "T23:00:00",
                " 23:00:00.5",
                " 00:30:00",
            ]),
            prop::sample::select(vec!["", "+00", "Z", "+01", "-01:00", "+00:30"]),
        )
            .prop_map(|(d, t, z)| {
                if t.is_empty() {
                    d.to_owned()
                } else {
                    format!("{d}{t}{z}")
                }
            })
    }

    fn time() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec![
                "00:00:00",
                "12:30:00",
                "12:30:00.000",
                "11:30",
                "24:00:00",
            ]),
            prop::sample::select(vec!["", "+00", "+01", "-01"]),
        )
            .prop_map(|(t, z)| format!("{t}{z}"))
    }

    fn text() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec!["a", "b", "A", "é", " ", "1"]),
            0..3,
        )
        .prop_map(|parts| parts.concat())
    }

    fn check_class(
        types: &[&str],
        items: &[String],
        values: &[String],
        bools: &[bool],
    ) -> Result<(), TestCaseError> {
        let mut vals: Vec<Value<'_>> = Vec::new();
        for v in values {
            vals.push(Value::String(v));
            vals.push(Value::Number(v));
        }
        vals.extend(bools.iter().map(|b| Value::Bool(*b)));
        for type_name in types {
            agree(type_name, items, &vals)?;
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn numbers(items in prop::collection::vec(number(), 0..6),
                   values in prop::collection::vec(number(), 1..6)) {
            check_class(&["numeric", "integer", "double precision"], &items, &values, &[])?;
        }

        #[test]
        fn booleans(items in prop::collection::vec(boolean(), 0..4),
                    values in prop::collection::vec(boolean(), 1..4),
                    bools in prop::collection::vec(any::<bool>(), 0..3)) {
            check_class(&["boolean"], &items, &values, &bools)?;
        }

        #[test]
        fn temporal(items in prop::collection::vec(timestamp(), 0..5),
                    values in prop::collection::vec(timestamp(), 1..5),
                    times in prop::collection::vec(time(), 0..5),
                    time_values in prop::collection::vec(time(), 1..5)) {
            check_class(
                &["timestamp with time zone", "timestamp without time zone", "date"],
                &items, &values, &[])?;
            check_class(&["time without time zone", "time with time zone"],
                &times, &time_values, &[])?;
        }

        #[test]
        fn text_and_json(items in prop::collection::vec(text(), 0..5),
                         values in prop::collection::vec(text(), 1..5),
                         bools in prop::collection::vec(any::<bool>(), 0..3)) {
            check_class(&["text", "jsonb", "character varying(20)"], &items, &values, &bools)?;
        }
    }

    #[test]
    fn numbers_match_by_value_and_lists_dedupe() {
        check(
            &[
                "age.in.(51.0,2)",
                "age.in.(51.000,51,5.1e1)",
                "big.in.(1.234567890123456789012345678901230e29)",
            ],
            &[
                "age.in.(1.0,2)",
                "age.in.(5.1,510e-2)",
                "big.in.(123456789012345678901234567890.12)",
            ],
        );
        let filter = filter("age.in.(1,1.0,01,1e0)");
        let Test::In(set) = &filter.conditions[0].test else {
            panic!("not an in test");
        };
        assert_eq!(set.0.len(), 1);
    }
}
