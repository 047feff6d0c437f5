//! Tests of request parsing, under the default and raised limits.

use proptest::prelude::*;

use super::*;

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn query(q: &str) -> Result<Request, QueryError> {
    parse_request(&params(&[("query", q)]))
}

fn ok(q: &str) -> Request {
    query(q).unwrap_or_else(|e| panic!("{q:?}: {e}"))
}

fn err(pairs: &[(&str, &str)]) -> QueryError {
    match parse_request(&params(pairs)) {
        Ok(r) => panic!("{pairs:?} parsed: {r:?}"),
        Err(e) => e,
    }
}

fn cond(q: &str) -> RawCondition {
    let mut r = ok(&format!("*:t:{q}"));
    assert_eq!(r.conditions.len(), 1);
    r.conditions.remove(0)
}

fn one(column: &str, negated: bool, op: Operator, value: &str) -> RawCondition {
    RawCondition {
        column: column.into(),
        negated,
        op,
        value: RawValue::One(value.into()),
    }
}

const ALL: u8 = 0b1111;

#[test]
fn types_and_tables() {
    let r = ok("*:people");
    assert_eq!(r.ops, ALL);
    assert_eq!(r.table, TableName::new("public", "people"));
    assert!(r.conditions.is_empty() && r.select.is_none() && r.plugin.is_none());

    let r = ok("insert,update:sales.Orders");
    assert_eq!(r.ops, Op::Insert.bit() | Op::Update.bit());
    assert_eq!(r.table, TableName::new("sales", "Orders"));
    assert_eq!(
        ok("DELETE,truncate:t").ops,
        Op::Delete.bit() | Op::Truncate.bit()
    );
    assert_eq!(ok("insert,update,delete,truncate:t").ops, ALL);
}

#[test]
fn quoted_identifiers() {
    assert_eq!(
        ok(r#"*:sales."odd.table""#).table,
        TableName::new("sales", "odd.table")
    );
    assert_eq!(
        ok(r#"*:"my schema"."a:b,c""#).table,
        TableName::new("my schema", "a:b,c")
    );
    assert_eq!(
        ok(r#"*:"say ""hi""""#).table,
        TableName::new("public", r#"say "hi""#)
    );
    let r = ok(r#"*:"x.y":"col.1".eq.a:b"#);
    assert_eq!(r.table, TableName::new("public", "x.y"));
    assert_eq!(r.conditions, vec![one("col.1", false, Operator::Eq, "a:b")]);
}

#[test]
fn table_display_quotes_when_needed() {
    assert_eq!(
        TableName::new("public", "people").to_string(),
        "public.people"
    );
    assert_eq!(
        TableName::new("Sales", "Orders").to_string(),
        "Sales.Orders"
    );
    assert_eq!(
        TableName::new("sales", "odd.table").to_string(),
        r#"sales."odd.table""#
    );
    assert_eq!(
        TableName::new("a b", r#"q"x"#).to_string(),
        r#""a b"."q""x""#
    );
    for t in [
        TableName::new("sales", "odd.table"),
        TableName::new("a b", r#"q"x:,"#),
    ] {
        assert_eq!(TableName::parse(&t.to_string()), Ok(t));
    }
}

#[test]
fn every_operator() {
    for (word, op) in [
        ("eq", Operator::Eq),
        ("neq", Operator::Neq),
        ("lt", Operator::Lt),
        ("lte", Operator::Lte),
        ("gt", Operator::Gt),
        ("gte", Operator::Gte),
        ("like", Operator::Like),
        ("ilike", Operator::Ilike),
    ] {
        assert_eq!(cond(&format!("age.{word}.5")), one("age", false, op, "5"));
        assert_eq!(
            cond(&format!("age.not.{word}.5")),
            one("age", true, op, "5")
        );
    }
}

#[test]
fn values_keep_dots_and_colons() {
    assert_eq!(
        cond("ts.gte.2026-11-21T10:00:00+02:00"),
        one("ts", false, Operator::Gte, "2026-11-21T10:00:00+02:00")
    );
    assert_eq!(cond("v.eq.1.5"), one("v", false, Operator::Eq, "1.5"));
    assert_eq!(cond("v.eq."), one("v", false, Operator::Eq, ""));
    assert_eq!(
        cond("name.like.*a.b*"),
        one("name", false, Operator::Like, "*a.b*")
    );
}

#[test]
fn in_lists() {
    let list = |q: &str| match cond(q).value {
        RawValue::List(items) => items,
        v => panic!("{q}: {v:?}"),
    };
    assert_eq!(list("id.in.1,2,3"), ["1", "2", "3"]);
    assert_eq!(list("id.in.(1,2,3)"), ["1", "2", "3"]);
    assert_eq!(list(r#"name.in.(a,b,"c,d")"#), ["a", "b", "c,d"]);
    assert_eq!(list(r#"name.in."x,y",z"#), ["x,y", "z"]);
    assert_eq!(
        list(r#"name.in.("say ""hi""","back\\slash \"q\"")"#),
        [r#"say "hi""#, r#"back\slash "q""#]
    );
    assert_eq!(list("name.in.(a,,b)"), ["a", "", "b"]);
    assert_eq!(list("name.in.(a:b)"), ["a:b"]);
    assert!(list("name.in.()").is_empty());
    assert!(list("name.in.").is_empty());
    let c = cond("id.not.in.(1,2)");
    assert!(c.negated && c.op == Operator::In);
}

#[test]
fn is_values() {
    let is = |q: &str| cond(q).value;
    assert_eq!(is("a.is.null"), RawValue::Is(IsValue::Null));
    assert_eq!(is("a.is.NULL"), RawValue::Is(IsValue::Null));
    assert_eq!(is("a.is.true"), RawValue::Is(IsValue::True));
    assert_eq!(is("a.is.false"), RawValue::Is(IsValue::False));
    assert!(cond("a.not.is.null").negated);
}

#[test]
fn filters_select_and_plugin() {
    let r = parse_request(&params(&[
        ("query", "insert:people:age.gt.18"),
        ("filter", "name.like.P*"),
        ("from_lsn", "0/0"),
        ("filter", "b.is.true"),
        ("select", r#"pk,name,"odd,col""#),
        ("plugin", "geo"),
        ("plugin.radius", "5"),
        ("plugin.center", "1,2"),
    ]))
    .expect("parses");
    assert_eq!(r.conditions.len(), 3);
    assert_eq!(r.conditions[0], one("age", false, Operator::Gt, "18"));
    assert_eq!(r.conditions[1], one("name", false, Operator::Like, "P*"));
    assert_eq!(
        r.select,
        Some(vec!["pk".into(), "name".into(), "odd,col".into()])
    );
    let plugin = r.plugin.expect("plugin");
    assert_eq!(plugin.name, "geo");
    assert_eq!(
        plugin.params,
        vec![
            ("radius".into(), "5".into()),
            ("center".into(), "1,2".into())
        ]
    );
    let r = parse_request(&params(&[("query", "*:t"), ("select", "*")])).expect("parses");
    assert_eq!(r.select, None);
}

#[track_caller]
fn assert_err(pairs: &[(&str, &str)], code: &str, message: &str) {
    let e = err(pairs);
    assert_eq!(e.code, code, "{pairs:?}: {e}");
    assert!(
        e.message.contains(message),
        "{pairs:?}: message {:?} lacks {message:?}",
        e.message
    );
    assert_eq!(e.status(), 400);
}

#[test]
fn error_codes_and_messages() {
    use super::super::error::code::*;
    assert_err(&[], MISSING_QUERY, "missing query parameter");
    assert_err(&[("query", "")], MISSING_QUERY, "expected query=");
    assert_err(
        &[("filter", "a.eq.1")],
        MISSING_QUERY,
        "query=<types>:<table>",
    );
    assert_err(
        &[("query", "*:a"), ("query", "*:b")],
        BAD_QUERY,
        "query= given more than once",
    );
    assert_err(&[("query", "people")], BAD_QUERY, "has no table");
    assert_err(&[("query", "*:")], BAD_QUERY, "empty name");
    assert_err(
        &[("query", "*:a.b.c")],
        BAD_QUERY,
        "double-quote names that contain '.'",
    );
    assert_err(
        &[("query", "*:a b")],
        BAD_QUERY,
        "only allowed inside a double-quoted name",
    );
    assert_err(
        &[("query", "*:a,b")],
        BAD_QUERY,
        "only allowed inside a double-quoted name",
    );
    assert_err(
        &[("query", r#"*:"abc"#)],
        BAD_QUERY,
        "unterminated double quote",
    );
    assert_err(
        &[("query", r#"*:"a"b"#)],
        BAD_QUERY,
        "after the closing double quote",
    );
    assert_err(
        &[("query", "*:\"\"\"")],
        BAD_QUERY,
        "unterminated double quote",
    );
    assert_err(&[("query", "*:\"\"")], BAD_QUERY, "empty quoted name");
    assert_err(&[("query", "*:t:")], BAD_QUERY, "empty condition");
    assert_err(
        &[("query", "*:t:age")],
        BAD_QUERY,
        "expected <column>.<operator>.<value>",
    );
    assert_err(
        &[("query", "*:t:age.eq")],
        BAD_QUERY,
        "expected <column>.<operator>.<value>",
    );
    assert_err(
        &[("query", "*:t:age.not.eq")],
        BAD_QUERY,
        "expected <column>.<operator>.<value>",
    );
    assert_err(&[("query", "*:t:.eq.1")], BAD_QUERY, "column empty name");
    assert_err(
        &[("query", "*:t"), ("filter", "x")],
        BAD_QUERY,
        "condition \"x\"",
    );
    assert_err(&[("query", "*:t"), ("select", "")], BAD_QUERY, "select=");
    assert_err(
        &[("query", "*:t"), ("select", "a,")],
        BAD_QUERY,
        "empty name",
    );
    assert_err(
        &[("query", "*:t"), ("select", "a"), ("select", "b")],
        BAD_QUERY,
        "select= given more than once",
    );
    assert_err(
        &[("query", "*:t"), ("plugin", "")],
        BAD_QUERY,
        "needs a plugin name",
    );
    assert_err(
        &[("query", "*:t"), ("plugin", "a"), ("plugin", "b")],
        BAD_QUERY,
        "plugin= given more than once",
    );
    assert_err(
        &[("query", "*:t"), ("plugin.x", "1")],
        BAD_QUERY,
        "without plugin=<name>",
    );
    assert_err(
        &[("query", "*:t"), ("plugin", "a"), ("plugin.", "1")],
        BAD_QUERY,
        "after 'plugin.' is empty",
    );
    assert_err(
        &[("query", "upsert:t")],
        UNKNOWN_CHANGE_TYPE,
        "unknown change type \"upsert\"",
    );
    assert_err(
        &[("query", "insert,:t")],
        UNKNOWN_CHANGE_TYPE,
        "unknown change type \"\"",
    );
    assert_err(
        &[("query", ":t")],
        UNKNOWN_CHANGE_TYPE,
        "expected *, or a comma list",
    );
    assert_err(
        &[("query", "*:t:age.equals.1")],
        BAD_OPERATOR,
        "unknown operator \"equals\"",
    );
    assert_err(
        &[("query", "*:t:age.not.not.1")],
        BAD_OPERATOR,
        "unknown operator \"not\"",
    );
    assert_err(
        &[("query", "*:t:age.EQ.1")],
        BAD_OPERATOR,
        "expected eq, neq",
    );
    assert_err(
        &[("query", "*:t:a.is.maybe")],
        BAD_VALUE,
        "is. takes null, true or false",
    );
    assert_err(
        &[("query", "*:t:a.in.(1,2")],
        BAD_VALUE,
        "missing closing parenthesis",
    );
    assert_err(
        &[("query", r#"*:t:a.in.("x)"#)],
        BAD_VALUE,
        "unterminated double quote",
    );
    assert_err(
        &[("query", r#"*:t:a.in.("x"y)"#)],
        BAD_VALUE,
        "after a closing double quote",
    );
}

#[test]
fn other_error_constructors() {
    let t = TableName::new("sales", "odd.table");
    let e = QueryError::table_not_allowed(&t);
    assert_eq!((e.code, e.status()), ("table_not_allowed", 403));
    assert!(e.message.contains(r#"sales."odd.table""#));
    let e = QueryError::unknown_table(&t);
    assert_eq!((e.code, e.status()), ("unknown_table", 400));
    assert_eq!(QueryError::unknown_plugin("geo").code, "unknown_plugin");
    let body: serde_json::Value = serde_json::from_str(&e.json_body()).expect("json");
    assert_eq!(body["error"], "unknown_table");
    assert_eq!(body["message"], e.message.as_str());
}

proptest! {
    #[test]
    fn never_panics_on_arbitrary_query(q in "\\PC{0,60}", f in "\\PC{0,30}", s in "\\PC{0,20}") {
        let _ = parse_request(&params(&[("query", &q), ("filter", &f), ("select", &s)]));
    }

    #[test]
    fn never_panics_on_query_shaped_input(q in "[a-z*,]{0,8}:[a-z\".: ]{0,12}(:[a-z\".(),:\\\\ ]{0,20})?") {
        let _ = query(&q);
    }

    #[test]
    fn table_names_round_trip(schema in "\\PC{1,12}", name in "\\PC{1,12}") {
        let t = TableName::new(schema, name);
        prop_assert_eq!(TableName::parse(&t.to_string()), Ok(t));
    }
}

fn limited(pairs: &[(String, String)], limits: &Limits) -> Result<Request, QueryError> {
    parse_request_with(pairs, limits)
}

#[track_caller]
fn assert_limit(result: Result<Request, QueryError>, code: &str, label: &str, names: &[&str]) {
    let e = result.expect_err("refused at a limit");
    assert_eq!(e.code, code, "{e}");
    assert_eq!(e.status(), 400);
    assert_eq!(e.limit(), Some(label));
    for name in names {
        assert!(e.message.contains(name), "{name:?} not in {:?}", e.message);
    }
    let body: serde_json::Value = serde_json::from_str(&e.json_body()).expect("json");
    assert_eq!(body["error"], code);
}

#[test]
fn query_bytes_limit_counts_every_key_and_value() {
    let limits = Limits {
        max_query_bytes: 40,
        ..Limits::DEFAULT
    };
    // "query" + "*:t:a.eq.1" = 15 bytes, "filter" + "b.like.xxxxxxxxxxxxxxxxxxx" = 32.
    let long = params(&[
        ("query", "*:t:a.eq.1"),
        ("filter", "b.like.xxxxxxxxxxxxxxxxxxx"),
    ]);
    assert_limit(
        limited(&long, &limits),
        code::QUERY_TOO_LONG,
        "query_bytes",
        &["47 bytes", "limits.max_query_bytes = 40"],
    );
    // Keys other stages read count too (`from=`, `sub=`, unknown ones): the whole request.
    let mut at_limit = params(&[("query", "*:t:a.eq.1")]);
    at_limit.push(("x".into(), "y".repeat(40 - 15 - 1)));
    assert!(limited(&at_limit, &limits).is_ok());
    at_limit[1].1.push('y');
    assert_limit(
        limited(&at_limit, &limits),
        code::QUERY_TOO_LONG,
        "query_bytes",
        &["41 bytes"],
    );
    // The default is 16 KiB: checked before anything is parsed.
    let big = params(&[("query", &format!("*:t:a.in.({})", "1,".repeat(8200)))]);
    assert_limit(
        parse_request(&big),
        code::QUERY_TOO_LONG,
        "query_bytes",
        &["limits.max_query_bytes = 16384"],
    );
}

#[test]
fn conditions_limit_counts_query_and_filters() {
    let limits = Limits {
        max_conditions: 3,
        ..Limits::DEFAULT
    };
    let mut p = params(&[
        ("query", "*:t:a.eq.1"),
        ("filter", "b.eq.2"),
        ("filter", "c.eq.3"),
    ]);
    assert_eq!(
        limited(&p, &limits).expect("3 conditions").conditions.len(),
        3
    );
    p.push(("filter".into(), "d.eq.4".into()));
    assert_limit(
        limited(&p, &limits),
        code::TOO_MANY_CONDITIONS,
        "conditions",
        &["4 conditions", "limits.max_conditions = 3"],
    );
    // 33 filters against the default 32.
    let mut p = params(&[("query", "*:t")]);
    p.extend((0..33).map(|i| ("filter".to_owned(), format!("c{i}.eq.{i}"))));
    assert_limit(
        parse_request(&p),
        code::TOO_MANY_CONDITIONS,
        "conditions",
        &["33 conditions", "limits.max_conditions = 32"],
    );
}

#[test]
fn in_list_limit_per_list() {
    let limits = Limits {
        max_in_list: 3,
        ..Limits::DEFAULT
    };
    let three = params(&[("query", "*:t:a.in.(1,2,\"3,4\")")]);
    assert!(limited(&three, &limits).is_ok());
    let four = params(&[("query", "*:t"), ("filter", "age.not.in.1,2,3,4")]);
    assert_limit(
        limited(&four, &limits),
        code::IN_LIST_TOO_LONG,
        "in_list",
        &["\"age\"", "limits.max_in_list = 3"],
    );
    let items = vec!["7"; 1001].join(",");
    assert_limit(
        parse_request(&params(&[("query", &format!("*:t:id.in.({items})"))])),
        code::IN_LIST_TOO_LONG,
        "in_list",
        &["limits.max_in_list = 1000"],
    );
    assert!(parse_request(&params(&[(
        "query",
        &format!("*:t:id.in.({})", vec!["7"; 1000].join(","))
    )]))
    .is_ok());
}

#[test]
fn like_pattern_limit_in_bytes() {
    let limits = Limits {
        max_like_pattern: 4,
        ..Limits::DEFAULT
    };
    assert!(limited(&params(&[("query", "*:t:name.like.%ab%")]), &limits).is_ok());
    // Bytes, not characters: `é` is two.
    assert_limit(
        limited(&params(&[("query", "*:t:name.ilike.%é%a")]), &limits),
        code::LIKE_PATTERN_TOO_LONG,
        "like_pattern",
        &["\"name\"", "5 bytes", "limits.max_like_pattern = 4"],
    );
    // Other operators take long values.
    assert!(limited(&params(&[("query", "*:t:name.eq.abcdefgh")]), &limits).is_ok());
    let pattern = "%a".repeat(513);
    assert_limit(
        parse_request(&params(&[
            ("query", "*:t"),
            ("filter", &format!("name.not.like.{pattern}")),
        ])),
        code::LIKE_PATTERN_TOO_LONG,
        "like_pattern",
        &["1026 bytes", "limits.max_like_pattern = 1024"],
    );
}
