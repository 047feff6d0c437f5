use super::*;

#[test]
fn the_allow_list_matches_globs() {
    let all = Channels::new(&["*".into()]).unwrap();
    assert!(all.allows_name("a.b c\"D"));
    let some = Channels::new(&["orders_*".into(), "people".into()]).unwrap();
    assert!(some.allows_name("orders_eu") && some.allows_name("people"));
    assert!(!some.allows_name("peoples") && !some.allows_name("secret"));
}

#[test]
fn channel_names_are_quoted_whole() {
    assert_eq!(quote("people"), r#""people""#);
    assert_eq!(quote(r#"a"b.c d"#), r#""a""b.c d""#);
    assert_eq!(quote("Upper"), r#""Upper""#);
}
