//! WebAssembly filter plugins: per-change cost of a plugin against the same condition as a query
//! filter, hub fan-out with one shared plugin group against many, creating a group, and a hot
//! reload. Needs the built plugins (`plugins/build.sh`). Run:
//! `cargo bench -p walcast --bench plugins -- --warm-up-time 1 --measurement-time 3`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tokio_util::sync::CancellationToken;
use walcast::config::PluginsConfig;
use walcast::decode::{Change, Decoder};
use walcast::filter::wasm::{PluginGroup, PluginHost, Verdict};
use walcast::filter::{bind, parse_request, ColumnInfo, Filter, PluginRef};
use walcast::hub::{Entry, Hub, Scratch, SubscribeRequest, Subscription};
use walcast::metrics::Metrics;
use walcast::vocab::SessionSignal;

/// A typical ~300-byte insert as wal2json format-version 2 prints it. `height` is 2.1 so the
/// query filter matches and every threshold variant below passes: fan-out then delivers a frame
/// to every session, the full path.
const INSERT: &str = r#"{"action":"I","xid":725,"timestamp":"2026-11-21 22:47:36.714581+00","lsn":"0/1526A58","schema":"public","table":"people","columns":[{"name":"id","type":"integer","value":1},{"name":"name","type":"text","value":"Paul"},{"name":"age","type":"integer","value":51},{"name":"height","type":"double precision","value":2.1},{"name":"city","type":"text","value":"Lyon"}]}"#;

const SUBSCRIBERS: usize = 10_000;

fn dist() -> PathBuf {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/dist"));
    for plugin in ["threshold.wasm", "redact.wasm"] {
        if !dir.join(plugin).is_file() {
            panic!(
                "{} is missing: run plugins/build.sh first",
                dir.join(plugin).display()
            );
        }
    }
    dir
}

fn host(dir: &Path) -> Arc<PluginHost> {
    // A generous deadline: on a loaded machine a descheduled `walcast_init` can overrun the
    // default 5 ms and fail the bench. The deadline's value does not change the cost of a call
    // (the epoch check is the same).
    let cfg = PluginsConfig {
        dir: Some(dir.to_owned()),
        call_deadline: Duration::from_secs(1),
        ..PluginsConfig::default()
    };
    PluginHost::new(&cfg).expect("plugin host starts")
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A subscription's plugin; `columns`: what a policy rule lets its guest see (`None`: all).
fn plugin_ref(name: &str, params: &[(String, String)], columns: Option<&[&str]>) -> PluginRef {
    PluginRef {
        name: name.to_owned(),
        params: params.to_vec(),
        columns: columns.map(|c| c.iter().map(|n| (*n).to_owned()).collect()),
    }
}

fn columns() -> Vec<ColumnInfo> {
    vec![
        ColumnInfo::new("id", "integer"),
        ColumnInfo::new("name", "text"),
        ColumnInfo::new("age", "integer"),
        ColumnInfo::new("height", "double precision"),
        ColumnInfo::new("city", "text"),
    ]
}

fn filter(query: &str) -> Filter {
    let req = parse_request(&pairs(&[("query", query)])).expect("valid request");
    bind(&req, &columns()).expect("binds")
}

fn threshold(host: &PluginHost, value: &str) -> Arc<PluginGroup> {
    threshold_seeing(host, value, None)
}

/// The threshold group whose guest sees only `columns` (a policy rule's).
fn threshold_seeing(host: &PluginHost, value: &str, columns: Option<&[&str]>) -> Arc<PluginGroup> {
    host.group(&plugin_ref(
        "threshold",
        &pairs(&[("column", "height"), ("value", value)]),
        columns,
    ))
    .expect("threshold group")
}

/// (1) The same condition (`height >= 2.0`) as a query filter and as the threshold plugin. Both
/// include one decode of the payload, as on the server; `decode_only` is that share, and the
/// `_no_decode` variants time the filter alone.
fn filter_per_change(c: &mut Criterion, host: &PluginHost) {
    let payload = INSERT.as_bytes().to_vec();
    let query = filter("insert:people:height.gte.2.0");
    let group = threshold(host, "2.0");
    // The same plugin attached under a policy rule that hides two of the five columns.
    let ruled = threshold_seeing(host, "2.0", Some(&["id", "name", "height"]));
    let mut decoder = Decoder::new();
    {
        let mut p = payload.clone();
        let change = decoder.decode(&mut p).expect("valid");
        assert!(
            query.matches(&change),
            "the query filter must match the sample"
        );
        assert_eq!(
            group.evaluate(&change),
            Verdict::Pass,
            "threshold must pass the sample"
        );
        assert_eq!(
            ruled.evaluate(&change),
            Verdict::Pass,
            "threshold sees height under the rule"
        );
    }

    let mut g = c.benchmark_group("filter_per_change");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_only", |b| {
        b.iter_batched_ref(
            || payload.clone(),
            |p| decoder.decode(p).expect("valid").op(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("query_filter", |b| {
        b.iter_batched_ref(
            || payload.clone(),
            |p| query.matches(&decoder.decode(p).expect("valid")),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("wasm_threshold", |b| {
        b.iter_batched_ref(
            || payload.clone(),
            |p| group.evaluate(&decoder.decode(p).expect("valid")),
            BatchSize::SmallInput,
        )
    });
    // The filter cost alone, on one change decoded up front (the decode share above is noisy).
    let mut p = payload.clone();
    let change = decoder.decode(&mut p).expect("valid");
    g.bench_function("query_filter_no_decode", |b| {
        b.iter(|| query.matches(&change))
    });
    g.bench_function("wasm_threshold_no_decode", |b| {
        b.iter(|| group.evaluate(&change))
    });
    g.bench_function("wasm_threshold_under_rule_no_decode", |b| {
        b.iter(|| ruled.evaluate(&change))
    });
    // A rewrite (redact masks `name`), rendered from every column and from a rule's three.
    let redact = |columns| {
        host.group(&plugin_ref(
            "redact",
            &pairs(&[("columns", "name")]),
            columns,
        ))
        .expect("redact group")
    };
    let (redact_all, redact_ruled) = (redact(None), redact(Some(&["id", "name", "height"])));
    assert!(
        matches!(redact_ruled.evaluate(&change), Verdict::Rewritten(r) if !r.walcast.contains("city"))
    );
    g.bench_function("wasm_redact_no_decode", |b| {
        b.iter(|| redact_all.evaluate(&change))
    });
    g.bench_function("wasm_redact_under_rule_no_decode", |b| {
        b.iter(|| redact_ruled.evaluate(&change))
    });
    g.finish();
}

/// A hub with `SUBSCRIBERS` subscriptions on public.people (all ops, no condition), sub `i`
/// using `groups[i % groups.len()]`: one cohort per group. The subscriptions are kept so the
/// bench can read their frames.
struct Fanout {
    hub: Arc<Hub>,
    subs: Vec<Subscription>,
    _cancel: CancellationToken,
    batch: Vec<Entry>,
}

impl Fanout {
    fn new(groups: &[Arc<PluginGroup>]) -> Fanout {
        // A few frames of room: every iteration drains, so a log never fills (a full log would
        // detach its sessions and change what is measured).
        let hub = Hub::new(Arc::new(Metrics::new()), 8);
        let cancel = CancellationToken::new();
        let all = filter("*:people");
        let ops = parse_request(&pairs(&[("query", "*:people")]))
            .expect("valid")
            .ops;
        let mut subs = Vec::with_capacity(SUBSCRIBERS);
        for i in 0..SUBSCRIBERS {
            let group = groups[i % groups.len()].clone();
            // Sessions with the same request and group share a cohort, as the router files them.
            let key = format!("*:people#{}", group.id());
            let req = SubscribeRequest {
                schema: "public",
                table: "people",
                key: &key,
                ops,
                filter: all.clone(),
                plugin: Some(group),
                binding: None,
            };
            subs.push(hub.subscribe(req, SessionSignal::new(&cancel)));
        }
        Fanout {
            hub,
            subs,
            _cancel: cancel,
            batch: Vec::new(),
        }
    }

    /// Read every session's waiting frames; returns how many there were.
    fn drain(&mut self) -> usize {
        let mut n = 0;
        for sub in &self.subs {
            while sub.reader().take(&mut self.batch, 64).is_some() {
                n += self.batch.len();
                self.batch.clear();
            }
        }
        n
    }
}

/// (2) `dispatch` of one change to 10,000 subscriptions that share one plugin group, against
/// 100 groups of 100 (one Wasm evaluation per group and change, cached for the group's other
/// subscriptions). The decode and the draining of the queues are outside the timing.
fn fanout_groups(c: &mut Criterion, host: &PluginHost) {
    let payload = INSERT.as_bytes().to_vec();
    let mut decoder = Decoder::new();
    let mut g = c.benchmark_group("fanout_groups");
    g.throughput(Throughput::Elements(1));
    g.sample_size(30);
    for (name, n_groups) in [
        ("10000_subs_1_group", 1usize),
        ("10000_subs_100_groups", 100),
    ] {
        let groups: Vec<Arc<PluginGroup>> = (0..n_groups)
            .map(|i| threshold(host, &format!("{}", 2.0 + i as f64 * 0.001)))
            .collect();
        let ids: std::collections::HashSet<u64> = groups.iter().map(|g| g.id()).collect();
        assert_eq!(
            ids.len(),
            n_groups,
            "distinct params must give distinct groups"
        );
        let mut fan = Fanout::new(&groups);
        let mut scratch = Scratch::default();
        {
            let mut p = payload.clone();
            let change = decoder.decode(&mut p).expect("valid");
            fan.hub.dispatch(&change, &mut scratch);
            assert_eq!(fan.drain(), SUBSCRIBERS, "every session gets the change");
        }
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    fan.drain();
                    let mut p = payload.clone();
                    let change = decoder.decode(&mut p).expect("valid");
                    let start = Instant::now();
                    fan.hub.dispatch(&change, &mut scratch);
                    total += start.elapsed();
                }
                fan.drain();
                total
            })
        });
        assert_eq!(fan.drain(), 0);
    }
    g.finish();
}

/// (3) Creating a group for params never seen before: the host's group-map lookup (a miss),
/// instantiation from the pre-linked module in a pooled slot, and `walcast_init` parsing the
/// params. Groups are cached by (name, params) only while alive (weak references), so with a
/// fresh `value` per iteration every call creates one; the group is dropped outside the timing,
/// which frees its pool slot (256 slots) for the next iteration.
fn plugin_instantiate(c: &mut Criterion, host: &PluginHost) {
    let mut g = c.benchmark_group("plugin_instantiate");
    let mut counter: u64 = 0;
    g.bench_function("new_group", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                counter += 1;
                let value = format!("{counter}.5");
                let start = Instant::now();
                let group = threshold(host, &value);
                total += start.elapsed();
                drop(group);
            }
            total
        })
    });
    g.finish();
}

/// (4) A hot swap: `hot.wasm` alternates between threshold and redact (written under a temporary
/// name, then renamed, as a deploy would); timed are `reload()` (read, hash, compile, validate
/// with a probe instance, install) and the first `evaluate` of an existing `hot` group, which
/// moves to the new version at that change boundary (a new instance and `walcast_init`).
fn plugin_reload(c: &mut Criterion, dist: &Path) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let hot = tmp.path().join("hot.wasm");
    let staging = tmp.path().join("hot.wasm.tmp");
    let versions = [
        std::fs::read(dist.join("threshold.wasm")).expect("threshold.wasm"),
        std::fs::read(dist.join("redact.wasm")).expect("redact.wasm"),
    ];
    let install = |bytes: &[u8]| {
        std::fs::write(&staging, bytes).expect("write staging file");
        std::fs::rename(&staging, &hot).expect("rename into place");
    };
    install(&versions[0]);
    let host = host(tmp.path());
    // Params both plugins accept (each ignores the other's).
    let params = pairs(&[("column", "height"), ("value", "2.0"), ("columns", "name")]);
    let group = host
        .group(&plugin_ref("hot", &params, None))
        .expect("hot group");
    let payload = INSERT.as_bytes().to_vec();
    let mut decoder = Decoder::new();
    let mut p = payload.clone();
    let change: Change<'_> = decoder.decode(&mut p).expect("valid");
    assert_eq!(group.evaluate(&change), Verdict::Pass);

    let mut g = c.benchmark_group("plugin_reload");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    let mut next = 1usize;
    g.bench_function("swap", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                install(&versions[next]);
                let start = Instant::now();
                host.reload();
                let verdict = group.evaluate(&change);
                total += start.elapsed();
                // Proof the swap happened: threshold passes the row, redact rewrites it.
                match (next, &verdict) {
                    (0, Verdict::Pass) | (1, Verdict::Rewritten(_)) => {}
                    _ => panic!("hot.wasm version {next} gave {verdict:?}"),
                }
                next = 1 - next;
            }
            total
        })
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    let dist = dist();
    let host = host(&dist);
    filter_per_change(c, &host);
    fanout_groups(c, &host);
    plugin_instantiate(c, &host);
    plugin_reload(c, &dist);
}

criterion_group!(benches, bench);
criterion_main!(benches);
