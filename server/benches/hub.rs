//! Hub dispatch cost as subscriptions grow, in process and without sockets (so without the
//! open-file limit that caps the end-to-end `selective` scenario at ~19,000 connections here):
//! N sessions each subscribed with a distinct `id=eq.<k>` condition, one change to one key. The
//! eq-value index keeps this flat in N. Run: `cargo bench -p walcast --bench hub`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio_util::sync::CancellationToken;
use walcast::decode::Decoder;
use walcast::filter::{bind, parse_request, ColumnInfo};
use walcast::hub::{Entry, Hub, Scratch, SubscribeRequest, Subscription};
use walcast::metrics::Metrics;
use walcast::vocab::SessionSignal;

/// An insert of the row with `id` = `KEY`; every session subscribes to a different id.
const INSERT: &str = r#"{"action":"I","xid":725,"timestamp":"2026-11-21 22:47:36.714581+00","lsn":"0/1526A58","schema":"public","table":"people","columns":[{"name":"id","type":"integer","value":42},{"name":"name","type":"text","value":"Paul"},{"name":"age","type":"integer","value":51},{"name":"height","type":"double precision","value":2.1},{"name":"city","type":"text","value":"Lyon"}]}"#;
const KEY: usize = 42;

fn columns() -> Vec<ColumnInfo> {
    vec![
        ColumnInfo::new("id", "integer"),
        ColumnInfo::new("name", "text"),
        ColumnInfo::new("age", "integer"),
        ColumnInfo::new("height", "double precision"),
        ColumnInfo::new("city", "text"),
    ]
}

fn subscribe_distinct(hub: &Arc<Hub>, n: usize, cancel: &CancellationToken) -> Vec<Subscription> {
    let columns = columns();
    (0..n)
        .map(|k| {
            let query = format!("*:people:id.eq.{k}");
            let params = vec![("query".to_owned(), query.clone())];
            let req = parse_request(&params).expect("valid request");
            let filter = bind(&req, &columns).expect("binds");
            let sub = SubscribeRequest {
                schema: "public",
                table: "people",
                key: &query,
                ops: req.ops,
                filter,
                plugin: None,
                binding: None,
            };
            hub.subscribe(sub, SessionSignal::new(cancel))
        })
        .collect()
}

fn selective(c: &mut Criterion) {
    let payload = INSERT.as_bytes().to_vec();
    let mut decoder = Decoder::new();
    let mut g = c.benchmark_group("selective_dispatch");
    g.throughput(Throughput::Elements(1));
    for n in [100usize, 10_000, 50_000] {
        let hub = Hub::new(Arc::new(Metrics::new()), 1024);
        let cancel = CancellationToken::new();
        let subs = subscribe_distinct(&hub, n, &cancel);
        let mut scratch = Scratch::default();
        let mut batch: Vec<Entry> = Vec::new();
        // Exactly one session receives the change: the one subscribed to its key.
        {
            let mut p = payload.clone();
            let change = decoder.decode(&mut p).expect("valid");
            hub.dispatch(&change, &mut scratch);
            hub.wake(&mut scratch);
            assert!(
                subs[KEY].reader().take(&mut batch, 8).is_some(),
                "the key's session gets it"
            );
            assert_eq!(batch.len(), 1);
            let others = subs
                .iter()
                .filter(|s| s.reader().take(&mut batch, 8).is_some())
                .count();
            assert_eq!(others, 0, "no other session matches");
        }
        g.bench_function(format!("{n}_subscriptions"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut p = payload.clone();
                    let change = decoder.decode(&mut p).expect("valid");
                    let start = Instant::now();
                    hub.dispatch(&change, &mut scratch);
                    hub.wake(&mut scratch);
                    total += start.elapsed();
                    batch.clear();
                    subs[KEY].reader().take(&mut batch, 8);
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, selective);
criterion_main!(benches);
