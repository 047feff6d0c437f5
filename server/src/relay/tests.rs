//! Tests of the relay's pieces that need no Postgres: channel names, quoting, reconnect waits.

use super::*;
use postgres_protocol::escape::escape_identifier as quote;

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

#[test]
fn names_postgres_cannot_take_are_found_before_any_statement() {
    assert!(channel_problem("people").is_none());
    assert!(channel_problem(&"x".repeat(MAX_CHANNEL)).is_none());
    assert!(channel_problem(&"é".repeat(31)).is_none(), "62 bytes");
    assert!(channel_problem("").is_some());
    assert!(channel_problem(&"x".repeat(MAX_CHANNEL + 1)).is_some());
    assert!(channel_problem(&"é".repeat(32)).is_some(), "64 bytes");
    assert!(channel_problem("a\0b").is_some());
}

#[test]
fn every_reconnect_waits_and_quick_losses_wait_longer() {
    let mut r = Reconnects::new();
    let waits: Vec<u64> = (0..8)
        .map(|_| {
            // A connection that died at once.
            r.connected_for(Duration::from_millis(5));
            r.delay().as_millis() as u64
        })
        .collect();
    assert_eq!(waits, [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]);
    // One that served for a while starts the waits over.
    r.connected_for(Reconnects::HEALTHY);
    assert_eq!(r.delay(), Reconnects::MIN);
}

#[test]
fn a_refusal_of_the_name_is_told_apart_from_the_server_s_state() {
    let refused = |sqlstate: &str| Refused {
        sqlstate: sqlstate.into(),
        message: String::new(),
    };
    // untranslatable_character, name_too_long, not sent at all.
    assert!(refused("22P05").names_the_channel());
    assert!(refused("42622").names_the_channel());
    assert!(refused("").names_the_channel());
    // read_only_sql_transaction (a standby), admin shutdown.
    assert!(!refused("25006").names_the_channel());
    assert!(!refused("57P01").names_the_channel());
}
