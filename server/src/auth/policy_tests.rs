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

fn refused(r: Result<Vec<(String, String)>, Refusal>, needle: &str) {
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

#[test]
fn a_rule_narrows_ops_forces_columns_and_binds_claims() {
    let p = Policy::parse(POLICY).expect("policy");
    let out = p
        .apply(
            &member(),
            params(&[("query", "*:todos"), ("filter", "title.like.A*")]),
        )
        .expect("allowed");
    assert_eq!(
        out,
        params(&[
            ("query", "insert,update,delete:todos"),
            ("filter", "title.like.A*"),
            ("select", "id,title,owner_id,tenant"),
            ("filter", "owner_id.eq.u-1"),
            ("filter", "tenant.eq.7"),
        ])
    );
    // The rewritten request parses: the conditions are AND-ed like the client's own.
    let request = filter::parse_request(&out).expect("parses");
    assert_eq!(request.conditions.len(), 3);
    // A narrower select stays.
    let out = p
        .apply(
            &member(),
            params(&[("query", "insert:todos"), ("select", "id,title")]),
        )
        .expect("allowed");
    assert!(
        out.contains(&("select".into(), "id,title".into())),
        "{out:?}"
    );
}

#[test]
fn refusals_name_the_rule() {
    let p = Policy::parse(POLICY).expect("policy");
    let m = member();
    refused(
        p.apply(&m, params(&[("query", "truncate:todos")])),
        "own-todos",
    );
    refused(
        p.apply(&m, params(&[("query", "*:todos"), ("select", "secret")])),
        "own-todos",
    );
    refused(
        p.apply(&m, params(&[("query", "*:todos:secret.eq.1")])),
        "own-todos",
    );
    refused(
        p.apply(&m, params(&[("query", "*:secrets")])),
        "public.secrets",
    );
    refused(
        p.apply(&m, params(&[("query", "*:news"), ("snapshot", "true")])),
        "public-news",
    );
    refused(
        p.apply(&m, params(&[("query", "*:news"), ("plugin", "other")])),
        "plugin",
    );
    assert!(p
        .apply(&m, params(&[("query", "*:news"), ("plugin", "threshold")]))
        .is_ok());
    // A missing claim refuses rather than filtering on nothing.
    let no_tenant = who(json!({"sub": "u-1", "app": {"role": "member"}}));
    refused(
        p.apply(&no_tenant, params(&[("query", "*:todos")])),
        "tenant",
    );
    // An unknown role, and the default role.
    refused(
        p.apply(
            &who(json!({"app": {"role": "root"}})),
            params(&[("query", "*:news")]),
        ),
        "root",
    );
    let anon = who(json!({"sub": "x"}));
    let out = p
        .apply(&anon, params(&[("query", "*:news")]))
        .expect("anon reads news inserts");
    assert_eq!(out[0], ("query".into(), "insert:news".into()));
    refused(
        p.apply(&anon, params(&[("query", "update:news")])),
        "anon.tables[0]",
    );
}

#[test]
fn channels_bind_claims_as_literal_text() {
    let p = Policy::parse(POLICY).expect("policy");
    let m = member();
    assert!(p.allows_channel(&m, "room_a b*").is_ok());
    // The claim's `*` is a literal character, not a wildcard.
    refused(p.apply(&m, params(&[("query", "*:secrets")])), "no rule");
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
