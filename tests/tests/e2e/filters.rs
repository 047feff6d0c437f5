//! The query-string filter language against real rows: every operator, `not.`, typed comparison
//! (numbers numerically, text as text, timestamps chronologically), values containing `:`,
//! repeated `filter=`, and `select=`.
//!
//! Exactness without sleeps: rows 1-5 are committed, then a mirror 6-10, then 11-15. A client
//! must receive exactly its ids from the first two transactions, in order, and then the first of
//! its ids from the third: any extra match in the first two would show up before that.

use anyhow::Result;
use serde_json::json;
use walcast_tests::{PgCluster, TestDb, Walcast, WsClient, STEP};

use crate::expect_ids;

const ROWS: &str = "
    (1, 'Paul',  51,  1.9,  true,  NULL,    '10',  'a:b',   '2025-01-01 00:00:00+00'),
    (2, 'anna',  9,   1.6,  false, 'an',    '9',   'x,y',   '2026-01-01 00:00:00+00'),
    (3, 'Bob',   10,  1.75, NULL,  'bobby', '100', 'a:b:c', '2025-12-31 23:00:00-05'),
    (4, 'Paula', 30,  2.0,  true,  NULL,    '2',   'plain', '2024-06-01 00:00:00+00'),
    (5, 'ANNA',  100, 1.6,  false, 'A',     '09',  '',      '2025-06-01 12:00:00+00')";

/// (description, query, extra params, ids among 1..=5 that match)
fn cases() -> Vec<(
    &'static str,
    String,
    Vec<(&'static str, &'static str)>,
    Vec<i64>,
)> {
    let q = |cond: &str| format!("insert:people:{cond}");
    vec![
        ("eq", q("name.eq.Paul"), vec![], vec![1]),
        ("neq", q("name.neq.Paul"), vec![], vec![2, 3, 4, 5]),
        ("lt numeric", q("age.lt.10"), vec![], vec![2]),
        ("lte numeric", q("age.lte.10"), vec![], vec![2, 3]),
        (
            "gt numeric: 10 > 9",
            q("age.gt.9"),
            vec![],
            vec![1, 3, 4, 5],
        ),
        ("gte numeric", q("age.gte.51"), vec![], vec![1, 5]),
        ("neq numeric", q("age.neq.10"), vec![], vec![1, 2, 4, 5]),
        ("gt float", q("height.gt.1.7"), vec![], vec![1, 3, 4]),
        ("eq float", q("height.eq.1.6"), vec![], vec![2, 5]),
        ("in plain list", q("age.in.9,10"), vec![], vec![2, 3]),
        ("in PostgREST list", q("age.in.(9,10)"), vec![], vec![2, 3]),
        (
            "in quoted comma value",
            q("label.in.(\"x,y\",plain)"),
            vec![],
            vec![2, 4],
        ),
        ("is.null", q("nick.is.null"), vec![], vec![1, 4]),
        ("not.is.null", q("nick.not.is.null"), vec![], vec![2, 3, 5]),
        ("is.true", q("active.is.true"), vec![], vec![1, 4]),
        ("is.false", q("active.is.false"), vec![], vec![2, 5]),
        (
            "not.is.true (null counts)",
            q("active.not.is.true"),
            vec![],
            vec![2, 3, 5],
        ),
        ("eq bool", q("active.eq.true"), vec![], vec![1, 4]),
        ("like *", q("name.like.Paul*"), vec![], vec![1, 4]),
        ("like %", q("name.like.%aul%"), vec![], vec![1, 4]),
        ("ilike", q("name.ilike.anna"), vec![], vec![2, 5]),
        ("ilike *", q("name.ilike.*NN*"), vec![], vec![2, 5]),
        ("not.eq", q("name.not.eq.Paul"), vec![], vec![2, 3, 4, 5]),
        ("not.in", q("age.not.in.(9,10)"), vec![], vec![1, 4, 5]),
        ("not.like", q("name.not.like.Paul*"), vec![], vec![2, 3, 5]),
        (
            "text lt compares as text",
            q("code.lt.9"),
            vec![],
            vec![1, 3, 4, 5],
        ),
        ("text gt compares as text", q("code.gt.2"), vec![], vec![2]),
        ("value with a colon", q("label.eq.a:b"), vec![], vec![1]),
        (
            "value with two colons",
            q("label.eq.a:b:c"),
            vec![],
            vec![3],
        ),
        (
            "timestamp gt",
            q("at.gt.2025-06-01T00:00:00Z"),
            vec![],
            vec![2, 3, 5],
        ),
        (
            "timestamp lt across offsets",
            q("at.lt.2026-01-01T02:00:00+02:00"),
            vec![],
            vec![1, 4, 5],
        ),
        (
            "repeated filter= are AND-ed",
            "insert:people".into(),
            vec![("filter", "age.gte.10"), ("filter", "active.is.true")],
            vec![1, 4],
        ),
        (
            "query condition AND filter=",
            q("name.like.Paul*"),
            vec![("filter", "age.lt.40")],
            vec![4],
        ),
    ]
}

#[tokio::test]
async fn every_operator_matches_as_typed() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "filters").await?;
    db.exec(
        "CREATE TABLE people (id int primary key, name text, age int, height float8, active bool,
                              nick text, code text, label text, at timestamptz)",
    )
    .await?;
    let server = Walcast::start(&db).await?;

    let mut clients = Vec::new();
    for (what, query, extra, ids) in cases() {
        let mut params = vec![("query", query.as_str())];
        params.extend(extra.iter().copied());
        let (c, _) = WsClient::subscribe(&server, &params)
            .await
            .map_err(|e| e.context(what))?;
        clients.push((what, c, ids));
    }

    db.exec(&format!("INSERT INTO people VALUES {ROWS}"))
        .await?;
    for offset in [5, 10] {
        db.exec(&format!(
            "INSERT INTO people SELECT id + {offset}, name, age, height, active, nick, code, label, at
               FROM people WHERE id <= 5"
        ))
        .await?;
    }

    let mut failures = Vec::new();
    for (what, mut c, ids) in clients {
        let mut expected: Vec<i64> = ids.clone();
        expected.extend(ids.iter().map(|i| i + 5));
        expected.push(ids[0] + 10);
        if let Err(e) = expect_ids(&mut c, &expected, what).await {
            failures.push(format!("{e:#}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} filter case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

#[tokio::test]
async fn select_projects_columns() -> Result<()> {
    let db = TestDb::new(PgCluster::shared(), "select").await?;
    db.exec("CREATE TABLE people (id int primary key, name text, age int); ALTER TABLE people REPLICA IDENTITY FULL").await?;
    let server = Walcast::start(&db).await?;
    let (mut c, _) = WsClient::subscribe(
        &server,
        &[
            ("query", "insert,update:people:id.eq.3"),
            ("select", "id,name"),
        ],
    )
    .await?;
    db.exec("INSERT INTO people VALUES (2, 'Ann', 9), (3, 'Bob', 10); UPDATE people SET age = 11 WHERE id = 3").await?;
    let ins = c.next_change(STEP).await?;
    assert_eq!(ins["new"], json!({"id": 3, "name": "Bob"}), "{ins}");
    let upd = c.next_change(STEP).await?;
    assert_eq!(upd["new"], json!({"id": 3, "name": "Bob"}), "{upd}");
    assert_eq!(
        upd["old"],
        json!({"id": 3, "name": "Bob"}),
        "select projects old as well: {upd}"
    );
    Ok(())
}
