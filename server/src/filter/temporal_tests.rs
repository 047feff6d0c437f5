//! Tests of timestamp, date and time comparison.

use super::{parse_date, parse_time, parse_timestamp, INFINITY, NEG_INFINITY};

const SEC: i128 = 1_000_000_000;

fn tz(s: &str) -> i128 {
    parse_timestamp(s, true).unwrap_or_else(|| panic!("{s:?} parses"))
}

fn naive(s: &str) -> i128 {
    parse_timestamp(s, false).unwrap_or_else(|| panic!("{s:?} parses"))
}

#[test]
fn postgres_and_rfc3339_forms_agree() {
    let pg = tz("2026-11-21 23:54:51.28847+00");
    assert_eq!(pg, tz("2026-11-21T23:54:51.28847Z"));
    assert_eq!(pg, tz("2026-11-21T23:54:51.288470000+00:00"));
    assert_eq!(pg, tz("2026-11-22 01:54:51.28847+02"));
    assert_eq!(pg, tz("2026-11-21 18:24:51.28847-05:30"));
    assert_eq!(pg, tz("2026-11-22T00:54:51.28847+0100"));
    assert_eq!(tz("1970-01-01 00:00:00+00"), 0);
    assert_eq!(tz("1970-01-01T00:00:01Z"), SEC);
    assert_eq!(tz("1970-01-01"), 0);
    assert_eq!(tz("1970-01-01 00:00"), 0);
    assert_eq!(tz("1969-12-31 23:59:59.5+00"), -SEC / 2);
}

#[test]
fn orders_chronologically() {
    assert!(tz("2026-11-21 23:54:51.28847+00") < tz("2026-11-21 23:54:51.28848+00"));
    assert!(tz("2026-11-21 23:00:00+00") > tz("2026-11-22 00:30:00+02"));
    assert!(tz("9999-12-31 23:59:59+00") < tz("10000-01-01 00:00:00+00"));
    assert!(tz("0044-03-15 12:00:00+00 BC") < tz("0001-01-01 00:00:00+00"));
    assert!(tz("0001-12-31 00:00:00+00 BC") < tz("0001-01-01 00:00:00+00"));
    assert!(tz("-infinity") < tz("0044-03-15 12:00:00+00 BC"));
    assert!(tz("infinity") > tz("10000-01-01 00:00:00+00"));
    assert_eq!(tz("Infinity"), INFINITY);
    assert_eq!(tz("-infinity"), NEG_INFINITY);
}

#[test]
fn historic_offsets_with_seconds() {
    // Postgres prints LMT offsets with seconds for old dates in some zones.
    assert_eq!(
        tz("1900-01-01 00:00:00+00:09:21"),
        tz("1899-12-31 23:50:39+00")
    );
}

#[test]
fn naive_timestamps_ignore_offsets() {
    assert_eq!(
        naive("2026-11-21 10:00:00"),
        naive("2026-11-21T10:00:00+05:00")
    );
    assert_eq!(naive("2026-11-21 10:00:00"), naive("2026-11-21T10:00:00Z"));
    assert_ne!(tz("2026-11-21 10:00:00"), tz("2026-11-21T10:00:00+05:00"));
}

#[test]
fn rejects_garbage() {
    for s in [
        "",
        "2026",
        "2026-1-01",
        "2026-13-01",
        "2026-02-30",
        "2026-11-21 25:00:00",
        "2026-11-21T10",
        "2026-11-21 10:00:00+",
        "2026-11-21 10:00:00 XX",
        "2026-11-21 10:00:00.",
        "now",
        "2026-11-21x",
        "2026-11-21 10:00:00+16",
    ] {
        assert!(parse_timestamp(s, true).is_none(), "{s:?}");
    }
}

#[test]
fn dates() {
    let d = parse_date("2026-11-21").expect("date");
    assert_eq!(d, tz("2026-11-21 00:00:00+00"));
    assert_eq!(parse_date("2026-11-21T10:00:00+05:00"), Some(d));
    assert!(parse_date("2026-11-20").expect("date") < d);
    assert!(parse_date("0001-01-01 BC").expect("date") < parse_date("0001-01-01").expect("date"));
    assert_eq!(parse_date("infinity"), Some(INFINITY));
    assert!(parse_date("2026-11-31").is_none());
}

#[test]
fn times() {
    let t = |s: &str, z: bool| parse_time(s, z).unwrap_or_else(|| panic!("{s:?} parses"));
    assert_eq!(t("00:00:00", false), 0);
    assert_eq!(t("12:34", false), (12 * 3600 + 34 * 60) * SEC);
    assert!(t("12:34:56.789", false) < t("12:34:56.79", false));
    assert_eq!(t("24:00:00", false), 86_400 * SEC);
    assert_eq!(t("12:00:00+02", true), t("10:00:00+00", true));
    assert_eq!(t("12:00:00+02", false), t("12:00:00", false));
    assert!(parse_time("25:00:00", false).is_none());
    assert!(parse_time("12:60:00", false).is_none());
    assert!(parse_time("24:00:01", false).is_none());
    assert!(parse_time("noon", false).is_none());
}
