//! Tests of exact decimal comparison.

use std::cmp::Ordering::{self, *};

use proptest::prelude::*;

use super::{Num, NumConst};

fn cmp(a: &str, b: &str) -> Ordering {
    let x = Num::parse(a).unwrap_or_else(|| panic!("{a} parses"));
    let y = Num::parse(b).unwrap_or_else(|| panic!("{b} parses"));
    x.cmp(&y)
}

fn key(s: &str) -> String {
    let mut out = Vec::new();
    Num::parse(s)
        .unwrap_or_else(|| panic!("{s} parses"))
        .write_key(&mut out);
    String::from_utf8(out).expect("ascii key")
}

#[test]
fn orders_integers_numerically() {
    assert_eq!(cmp("10", "9"), Greater);
    assert_eq!(cmp("9", "10"), Less);
    assert_eq!(cmp("-10", "-9"), Less);
    assert_eq!(cmp("-1", "1"), Less);
    assert_eq!(cmp("007", "7"), Equal);
    assert_eq!(cmp("+7", "7"), Equal);
    assert_eq!(cmp("100", "99.999"), Greater);
}

#[test]
fn zeros_are_equal_whatever_the_spelling() {
    for z in [
        "0", "-0", "+0", "0.0", "-0.000", "0e10", ".0", "0.", "000", "-0e-5",
    ] {
        assert_eq!(cmp(z, "0"), Equal, "{z}");
        assert_eq!(key(z), "0", "{z}");
    }
    assert_eq!(cmp("-0.0001", "0"), Less);
    assert_eq!(cmp("0.0001", "-0"), Greater);
}

#[test]
fn fractions_and_exponents() {
    assert_eq!(cmp("1.5", "1.50"), Equal);
    assert_eq!(cmp("1.5", "1.05"), Greater);
    assert_eq!(cmp("1e3", "1000"), Equal);
    assert_eq!(cmp("1E3", "999.9999"), Greater);
    assert_eq!(cmp("1.5e-2", "0.015"), Equal);
    assert_eq!(cmp("-0.5", "-0.25"), Less);
    assert_eq!(cmp("-5e-1", "-0.5"), Equal);
    assert_eq!(cmp("12.3e+1", "123"), Equal);
    assert_eq!(cmp("0.1", "0.09"), Greater);
    assert_eq!(cmp("0.12", "0.123"), Less);
    assert_eq!(cmp("1e-324", "0"), Greater);
    assert_eq!(cmp("1e999999999999999999999", "1e400"), Greater);
    assert_eq!(cmp("-1e999999999999999999999", "-1e400"), Less);
}

#[test]
fn long_numerics_beyond_f64() {
    let a = "123456789012345678901234567890.123";
    let b = "123456789012345678901234567890.1231";
    assert_eq!(cmp(a, b), Less);
    assert_eq!(cmp(b, a), Greater);
    assert_eq!(cmp(a, "123456789012345678901234567890.12300"), Equal);
    // Equal as f64, different as decimals.
    assert_eq!(cmp("9007199254740993", "9007199254740992"), Greater);
    assert_eq!(cmp("-9223372036854775809", "-9223372036854775808"), Less);
    assert_eq!(
        cmp("18446744073709551616", "1.8446744073709551616e19"),
        Equal
    );
}

#[test]
fn specials_sort_like_postgres() {
    assert_eq!(cmp("-Infinity", "-1e400"), Less);
    assert_eq!(cmp("Infinity", "1e400"), Greater);
    assert_eq!(cmp("NaN", "Infinity"), Greater);
    assert_eq!(cmp("NaN", "nan"), Equal);
    assert_eq!(cmp("inf", "Infinity"), Equal);
    assert_eq!(key("-Infinity"), "-Infinity");
    assert_eq!(key("NaN"), "NaN");
}

#[test]
fn rejects_non_numbers() {
    for s in [
        "", "-", "+", ".", "e3", "1e", "1e+", "1.2.3", "1 ", " 1", "0x10", "1,5", "abc", "-nan",
        "1_000",
    ] {
        assert!(Num::parse(s).is_none(), "{s:?}");
    }
}

#[test]
fn canonical_keys() {
    assert_eq!(key("007"), "7");
    assert_eq!(key("1.50"), "1.5");
    assert_eq!(key("-1.50"), "-1.5");
    assert_eq!(key("1e3"), "1000");
    assert_eq!(key("1.5e-2"), "0.015");
    assert_eq!(key("15e-1"), "1.5");
    assert_eq!(key("0.5"), "0.5");
    assert_eq!(key("1200"), "1200");
    assert_eq!(key("1e100"), "0.1e101");
    assert_eq!(key("1e-100"), "0.1e-99");
    assert_eq!(
        key("123456789012345678901234567890.123"),
        "123456789012345678901234567890.123"
    );
}

#[test]
fn owned_constant_matches_borrowed() {
    for s in ["1.50", "-0", "1e3", "NaN", "-Infinity", "0.00012"] {
        let c = NumConst::parse(s).expect("parses");
        assert_eq!(
            c.as_num().cmp(&Num::parse(s).expect("parses")),
            Equal,
            "{s}"
        );
        let mut k = Vec::new();
        c.as_num().write_key(&mut k);
        assert_eq!(String::from_utf8(k).expect("ascii"), key(s));
    }
}

/// Decimal text of an f64 in several spellings; each is exactly the f64's value when parsed.
fn spellings(x: f64) -> Vec<String> {
    vec![
        format!("{x}"),
        format!("{x:e}"),
        format!("{x:E}"),
        format!("{x:.0e}").replace(".0e", "e"),
    ]
}

proptest! {
    #[test]
    fn agrees_with_f64_on_exact_values(a in any::<f64>(), b in any::<f64>()) {
        prop_assume!(a.is_finite() && b.is_finite());
        // Rust prints the shortest text that round-trips: parsing it back gives the same f64, and
        // comparing two such texts as decimals must agree with comparing the f64s.
        let (sa, sb) = (format!("{a}"), format!("{b:e}"));
        prop_assert_eq!(cmp(&sa, &sb), a.partial_cmp(&b).expect("finite"));
        prop_assert_eq!(key(&sa) == key(&format!("{a:e}")), true);
    }

    #[test]
    fn agrees_with_integers(a in any::<i64>(), b in any::<i64>()) {
        prop_assert_eq!(cmp(&a.to_string(), &b.to_string()), a.cmp(&b));
        let (x, y) = (a as f64, b as f64);
        if x as i64 == a && y as i64 == b && a.unsigned_abs() < (1 << 53) && b.unsigned_abs() < (1 << 53) {
            prop_assert_eq!(cmp(&format!("{x:e}"), &format!("{y}")), x.partial_cmp(&y).expect("finite"));
        }
    }

    #[test]
    fn small_decimals_agree_with_scaled_integers(a in -100_000i64..100_000, b in -100_000i64..100_000, sa in 0u32..6, sb in 0u32..6) {
        // a / 10^sa written in plain decimal; compare exactly via cross-multiplication.
        let text = |v: i64, s: u32| {
            let p = 10i64.pow(s);
            let sign = if v < 0 { "-" } else { "" };
            format!("{sign}{}.{:0width$}", v.abs() / p, v.abs() % p, width = s as usize)
        };
        let expected = (i128::from(a) * 10i128.pow(sb)).cmp(&(i128::from(b) * 10i128.pow(sa)));
        prop_assert_eq!(cmp(&text(a, sa), &text(b, sb)), expected);
        prop_assert_eq!(key(&text(a, sa)) == key(&text(b, sb)), expected == Equal);
    }

    #[test]
    fn parse_never_panics(s in "\\PC{0,40}") {
        let _ = Num::parse(&s).map(|n| { let mut k = Vec::new(); n.write_key(&mut k); k });
    }
}

#[test]
fn spellings_of_one_value_share_a_key() {
    for x in [0.1, 1.0, 1e21, 123.456, -2.5e-7, 5e-324, f64::MAX] {
        let keys: Vec<String> = spellings(x).iter().map(|s| key(s)).collect();
        // `{x:.0e}` rounds; only the exact spellings must agree.
        assert_eq!(keys[0], keys[1], "{x}");
        assert_eq!(keys[1], keys[2], "{x}");
    }
}
