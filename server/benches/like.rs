//! `like` / `ilike` against a 1 MB text column with a 60 KB pattern: the matcher is linear in the
//! text (docs/security/limits.md; `server/src/filter/like.rs` has the analysis). Each
//! case is a worst case of the backtracking matcher walcast had before: a long segment after the
//! last `%` that matches almost everywhere (`%aaaa...ab%` against `aaaa...`), the same with `_`
//! between the letters, and the `%a%a%...%b` shape. The filter is bound through the public API
//! (`parse_request_with` with the pattern limit lifted, `bind`) and evaluated on a decoded change,
//! as the hub does.
//!
//! First a table (median of 5 runs per size, text 1 MB and 2 MB: the ratio shows the time
//! doubling with the text), then criterion's measurements of the same cases. One more case has
//! the `_` shape at the default 1024-byte pattern limit: a segment mixing literals and `_` costs
//! one 64-bit word operation per 64 pattern characters per text character. The old matcher is
//! timed on smaller sizes (its cost is text x pattern: doubling either doubles it), with its
//! 1 MB x 60 KB time extrapolated from them.
//!
//! Run: `cargo bench -p walcast --bench like`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use walcast::config::Limits;
use walcast::decode::Decoder;
use walcast::filter::{bind, parse_request_with, ColumnInfo, Filter};

const MB: usize = 1 << 20;
const PATTERN_BYTES: usize = 60 * 1024;

/// A name, the operator, and the pattern (about `PATTERN_BYTES` long, but one).
fn cases() -> Vec<(&'static str, &'static str, String)> {
    let long_literal = format!("%{}b%", "a".repeat(PATTERN_BYTES - 3));
    let with_underscores = format!("%{}b%", "a_".repeat((PATTERN_BYTES - 3) / 2));
    let many_wildcards = format!("{}b", "%a".repeat((PATTERN_BYTES - 1) / 2));
    // The same shape at the default `limits.max_like_pattern` (1024 bytes): what a client can
    // actually send.
    let at_default_limit = format!("%{}b%", "a_".repeat((1024 - 3) / 2));
    vec![
        ("literal_segment", "like", long_literal.clone()),
        (
            "literal_segment_ilike",
            "ilike",
            long_literal.to_uppercase(),
        ),
        ("underscore_segment", "like", with_underscores),
        ("underscore_segment_1KB", "like", at_default_limit),
        ("many_percent", "like", many_wildcards),
    ]
}

fn filter(op: &str, pattern: &str) -> Filter {
    let limits = Limits {
        max_query_bytes: 4 * MB,
        max_like_pattern: 4 * MB,
        ..Limits::DEFAULT
    };
    let params = vec![
        ("query".to_owned(), "*:t".to_owned()),
        ("filter".to_owned(), format!("body.{op}.{pattern}")),
    ];
    let req = parse_request_with(&params, &limits).expect("valid request");
    bind(&req, &[ColumnInfo::new("body", "text")]).expect("binds")
}

/// An insert whose `body` is `len` bytes of `a` (`A` for the ilike case: the text is folded).
fn payload(len: usize, upper: bool) -> Vec<u8> {
    let body = if upper { "A" } else { "a" }.repeat(len);
    format!(
        r#"{{"action":"I","xid":1,"lsn":"0/1","schema":"public","table":"t","columns":[{{"name":"body","type":"text","value":"{body}"}}]}}"#
    )
    .into_bytes()
}

/// Median time of `runs` evaluations of `filter` on a `len`-byte text (none matches).
fn time_new(filter: &Filter, len: usize, upper: bool, runs: usize) -> Duration {
    let mut p = payload(len, upper);
    let mut decoder = Decoder::new();
    let change = decoder.decode(&mut p).expect("valid");
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let matched = filter.matches(&change);
            let elapsed = start.elapsed();
            assert!(!matched, "no case matches a text without b");
            elapsed
        })
        .collect();
    times.sort();
    times[runs / 2]
}

/// The backtracking matcher walcast used before (`like` only): two pointers, one backtrack
/// point. Copied here to time it; O(text x pattern) in the worst case.
fn old_like(pattern: &str, text: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Tok {
        Lit(char),
        One,
        Many,
    }
    let mut toks = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        let tok = match c {
            '*' | '%' => {
                if toks.last() == Some(&Tok::Many) {
                    continue;
                }
                Tok::Many
            }
            '_' => Tok::One,
            '\\' => Tok::Lit(chars.next().unwrap_or('\\')),
            c => Tok::Lit(c),
        };
        toks.push(tok);
    }
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if let Some(tok) = toks.get(p) {
            let next = text[t..].chars().next();
            let step = match (*tok, next) {
                (Tok::Many, _) => {
                    star = Some((p + 1, t));
                    p += 1;
                    continue;
                }
                (Tok::One, Some(c)) => Some(c.len_utf8()),
                (Tok::Lit(l), Some(c)) if l == c => Some(c.len_utf8()),
                _ => None,
            };
            if let Some(n) = step {
                p += 1;
                t += n;
                continue;
            }
        } else if t == text.len() {
            return true;
        }
        let Some((sp, st)) = star else { return false };
        let Some(c) = text[st..].chars().next() else {
            return false;
        };
        let nt = st + c.len_utf8();
        star = Some((sp, nt));
        p = sp;
        t = nt;
    }
}

fn time_old(pattern: &str, text_len: usize) -> Duration {
    let text = "a".repeat(text_len);
    let start = Instant::now();
    assert!(!old_like(pattern, &text));
    start.elapsed()
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// The table: each case at 1 MB and 2 MB, and the old matcher on smaller sizes.
fn summary() {
    println!("\nlike: text of `a`, median of 5 runs");
    println!("| case | pattern bytes | 1 MB | 2 MB | 2 MB / 1 MB |");
    println!("|---|---|---|---|---|");
    for (name, op, pattern) in cases() {
        let f = filter(op, &pattern);
        let upper = op == "ilike";
        let one = time_new(&f, MB, upper, 5);
        let two = time_new(&f, 2 * MB, upper, 5);
        println!(
            "| {name} | {} | {} | {} | {:.2} |",
            pattern.len(),
            ms(one),
            ms(two),
            two.as_secs_f64() / one.as_secs_f64()
        );
    }
    // The old matcher: a literal segment of m bytes after `%`, text n bytes; cost ~ n x m.
    let old_pattern = |m: usize| format!("%{}b%", "a".repeat(m - 3));
    let (n, m) = (128 * 1024, 4 * 1024);
    let base = time_old(&old_pattern(m), n);
    let double_text = time_old(&old_pattern(m), 2 * n);
    let double_pattern = time_old(&old_pattern(2 * m), n);
    let estimate = base.as_secs_f64() * (MB as f64 / n as f64) * (PATTERN_BYTES as f64 / m as f64);
    println!("\nold backtracking matcher, literal_segment shape:");
    println!(
        "| 128 KiB x 4 KiB | {} |\n| 256 KiB x 4 KiB | {} |\n| 128 KiB x 8 KiB | {} |\n| 1 MiB x 60 KiB (extrapolated) | {estimate:.1} s |\n",
        ms(base),
        ms(double_text),
        ms(double_pattern)
    );
}

fn bench(c: &mut Criterion) {
    summary();
    let mut g = c.benchmark_group("like");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    for (name, op, pattern) in cases() {
        let f = filter(op, &pattern);
        let upper = op == "ilike";
        for len in [MB, 2 * MB] {
            let mut p = payload(len, upper);
            let mut decoder = Decoder::new();
            let change = decoder.decode(&mut p).expect("valid");
            g.throughput(Throughput::Bytes(len as u64));
            g.bench_function(format!("{name}/{}MB", len / MB), |b| {
                b.iter(|| f.matches(&change))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
