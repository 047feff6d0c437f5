//! Tests of policies: rules narrowing requests, claims bound into filters, refusals.

use serde_json::json;

use super::*;

const POLICY: &str = r#"
role_claim = "app.role"
default_role = "anon"

[roles.member]
plugins = ["threshold"]
channels = ["room_{claims.room}", "public_*"]

[[roles.member.tables]]
rule = "own-todos"
table = "public.todos"
ops = ["insert", "update", "delete"]
columns = ["id", "title", "owner_id", "tenant"]
filters = ["owner_id.eq.{sub}", "tenant.eq.{claims.tenant}"]

[[roles.member.tables]]
rule = "public-news"
table = "public.news*"
snapshot = false

[roles.anon]
[[roles.anon.tables]]
table = "public.news"
ops = ["insert"]
"#;

fn who(claims: serde_json::Value) -> Principal {
    Principal {
        claims: claims.as_object().cloned().unwrap_or_default(),
        expires: None,
    }
}

fn member() -> Principal {
    who(json!({"sub": "u-1", "tenant": 7, "room": "a b*", "app": {"role": "member"}}))
}

fn params(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Parses `list` once under the default limits and applies the policy to that request.
fn apply(p: &Policy, who: &Principal, list: &[(&str, &str)]) -> Result<Request, Refusal> {
    let mut request = filter::parse_request(&params(list)).expect("parses");
    let snapshot = list.contains(&("snapshot", "true"));
    p.apply(who, &mut request, snapshot, &Limits::DEFAULT)?;
    Ok(request)
}

fn cond(text: &str) -> RawCondition {
    let request = filter::parse_request(&params(&[("query", "*:t"), ("filter", text)])).unwrap();
    request.conditions[0].clone()
}

fn refused(r: Result<Request, Refusal>, needle: &str) {
    match r {
        Ok(p) => panic!("allowed, expected a refusal naming {needle:?}: {p:?}"),
        Err(e) => {
            assert_eq!(e.code, "forbidden");
            assert!(
                e.message.contains(needle),
                "{:?} does not name {needle:?}",
                e.message
            );
        }
    }
}

fn op_mask(names: &[&str]) -> u8 {
    names.iter().fold(0, |m, n| {
        m | Op::ALL.iter().find(|op| op.as_str() == *n).unwrap().bit()
    })
}

#[test]
fn a_rule_narrows_ops_forces_columns_and_binds_claims() {
    let p = Policy::parse(POLICY).expect("policy");
    let out = apply(
        &p,
        &member(),
        &[("query", "*:todos"), ("filter", "title.like.A*")],
    )
    .expect("allowed");
    assert_eq!(out.ops, op_mask(&["insert", "update", "delete"]));
    assert_eq!(
        out.select
            .as_deref()
            .map(|s| s.iter().map(|c| &**c).collect::<Vec<_>>()),
        Some(vec!["id", "title", "owner_id", "tenant"])
    );
    assert_eq!(
        out.conditions,
        vec![
            cond("title.like.A*"),
            cond("owner_id.eq.u-1"),
            cond("tenant.eq.7")
        ]
    );
    // A narrower select stays.
    let out = apply(
        &p,
        &member(),
        &[("query", "insert:todos"), ("select", "id,title")],
    )
    .expect("allowed");
    assert_eq!(out.select.as_ref().map(Vec::len), Some(2));
    // The guest of a plugin sees the rule's columns only.
    let out = apply(
        &p,
        &member(),
        &[("query", "insert:todos"), ("plugin", "threshold")],
    )
    .expect("allowed");
    assert_eq!(
        out.plugin.and_then(|p| p.columns),
        Some(vec![
            "id".to_owned(),
            "title".into(),
            "owner_id".into(),
            "tenant".into()
        ])
    );
}

#[test]
fn claims_cannot_widen_in_and_like_conditions() {
    let p = Policy::parse(
        r#"
[roles.r]
[[roles.r.tables]]
table = "public.t"
filters = ["team.in.(x,{claims.team})", "name.like.{claims.prefix}%", "code.eq.{claims.code}"]
"#,
    )
    .expect("policy");
    let sly = who(json!({"role": "r", "team": "a,b\",\"c", "prefix": "%_*\\", "code": "1,2"}));
    let out = apply(&p, &sly, &[("query", "*:t")]).expect("allowed");
    assert_eq!(
        out.conditions[0].value,
        RawValue::List(vec!["x".into(), "a,b\",\"c".into()]),
        "a claim is one in item, whatever it holds"
    );
    assert_eq!(
        out.conditions[1].value,
        RawValue::One("\\%\\_\\*\\\\%".into()),
        "a claim's wildcards match themselves"
    );
    assert_eq!(out.conditions[2].value, RawValue::One("1,2".into()));
    // A claim spliced into the column is refused when the policy loads.
    let e =
        Policy::parse("[roles.r]\n[[roles.r.tables]]\ntable = \"t\"\nfilters = [\"{sub}.eq.1\"]\n")
            .err()
            .expect("refused");
    assert!(e.contains("only in the value"), "{e}");
}

#[test]
fn conditions_over_the_limits_refuse_the_rule() {
    let p = Policy::parse(
        "[roles.r]\n[[roles.r.tables]]\ntable = \"public.t\"\nfilters = [\"name.like.{claims.p}\"]\n",
    )
    .expect("policy");
    let long = who(json!({"role": "r", "p": "x".repeat(2000)}));
    let mut request = filter::parse_request(&params(&[("query", "*:t")])).unwrap();
    let r = p.apply(&long, &mut request, false, &Limits::DEFAULT);
    refused(r.map(|()| request), "cannot be applied");
}

#[test]
fn bound_claims_name_every_claim_of_the_role() {
    let p = Policy::parse(POLICY).expect("policy");
    let bound = p.bound_claims(&member());
    assert_eq!(
        bound,
        vec![
            ("claims.room".to_owned(), Some("a b*".to_owned())),
            ("claims.tenant".to_owned(), Some("7".to_owned())),
            ("sub".to_owned(), Some("u-1".to_owned())),
        ]
    );
}

#[test]
fn visible_columns_follow_the_rule() {
    let p = Policy::parse(POLICY).expect("policy");
    let m = member();
    assert_eq!(
        p.visible_columns(&m, "public.todos")
            .unwrap()
            .map(<[String]>::len),
        Some(4)
    );
    assert_eq!(p.visible_columns(&m, "public.news").unwrap(), None);
    assert!(p.visible_columns(&m, "public.secrets").is_err());
}

#[test]
fn refusals_name_the_rule() {
    let p = Policy::parse(POLICY).expect("policy");
    let m = member();
    refused(apply(&p, &m, &[("query", "truncate:todos")]), "own-todos");
    refused(
        apply(&p, &m, &[("query", "*:todos"), ("select", "secret")]),
        "own-todos",
    );
    refused(
        apply(&p, &m, &[("query", "*:todos:secret.eq.1")]),
        "own-todos",
    );
    refused(apply(&p, &m, &[("query", "*:secrets")]), "public.secrets");
    refused(
        apply(&p, &m, &[("query", "*:news"), ("snapshot", "true")]),
        "public-news",
    );
    refused(
        apply(&p, &m, &[("query", "*:news"), ("plugin", "other")]),
        "plugin",
    );
    assert!(apply(&p, &m, &[("query", "*:news"), ("plugin", "threshold")]).is_ok());
    // A missing claim refuses rather than filtering on nothing.
    let no_tenant = who(json!({"sub": "u-1", "app": {"role": "member"}}));
    refused(apply(&p, &no_tenant, &[("query", "*:todos")]), "tenant");
    // An unknown role, and the default role.
    refused(
        apply(
            &p,
            &who(json!({"app": {"role": "root"}})),
            &[("query", "*:news")],
        ),
        "root",
    );
    let anon = who(json!({"sub": "x"}));
    let out = apply(&p, &anon, &[("query", "*:news")]).expect("anon reads news inserts");
    assert_eq!(out.ops, op_mask(&["insert"]));
    refused(
        apply(&p, &anon, &[("query", "update:news")]),
        "anon.tables[0]",
    );
}

#[test]
fn channels_bind_claims_as_literal_text() {
    let p = Policy::parse(POLICY).expect("policy");
    let m = member();
    assert!(p.allows_channel(&m, "room_a b*").is_ok());
    // The claim's `*` is a literal character, not a wildcard.
    refused(apply(&p, &m, &[("query", "*:secrets")]), "no rule");
    assert!(p.allows_channel(&m, "room_a bc").is_err());
    assert!(p.allows_channel(&m, "public_lobby").is_ok());
    assert!(p.allows_channel(&m, "private").is_err());
    assert!(p.lists_table(&m, "public.todos"));
    assert!(!p.lists_table(&m, "public.secrets"));
}

#[test]
fn bad_policies_are_refused_with_the_place() {
    for (text, needle) in [
        (
            "[roles.r]\n[[roles.r.tables]]\ntable = \"t\"\nops = [\"upsert\"]\n",
            "upsert",
        ),
        (
            "[roles.r]\n[[roles.r.tables]]\ntable = \"t\"\nfilters = [\"x.zz.{sub}\"]\n",
            "x.zz",
        ),
        (
            "[roles.r]\n[[roles.r.tables]]\ntable = \"t\"\nfilters = [\"x.eq.{sub\"]\n",
            "unclosed",
        ),
        ("default_role = \"nobody\"\n", "nobody"),
        ("[roles.r]\nunknown = 1\n", "unknown"),
    ] {
        let e = Policy::parse(text)
            .err()
            .unwrap_or_else(|| panic!("accepted {text:?}"));
        assert!(e.contains(needle), "{e:?} does not name {needle:?}");
    }
}
