//! Registry bookkeeping: the `eq` value index routes a row to the cohorts of its key only (keys
//! compare by the column's type), identical requests share one cohort, and unsubscribing leaves no
//! trace in any index, whatever the order of the drops.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::decode::{Decoder, Value};
use crate::filter::{bind, parse_request, ColumnInfo};

/// Large enough that no test fills a cohort log.
const CAPACITY: usize = 4096;

/// The columns of every table in these tests.
fn columns() -> Vec<ColumnInfo> {
    vec![
        ColumnInfo::new("id", "integer"),
        ColumnInfo::new("amount", "numeric"),
        ColumnInfo::new("name", "text"),
    ]
}

/// A wal2json insert; `amount` is written as given (a JSON number, as wal2json prints numeric).
fn insert(schema: &str, table: &str, id: i64, amount: &str, name: &str) -> String {
    format!(
        r#"{{"action":"I","xid":7,"lsn":"0/10","schema":"{schema}","table":"{table}","columns":[{{"name":"id","type":"integer","value":{id}}},{{"name":"amount","type":"numeric","value":{amount}}},{{"name":"name","type":"text","value":"{name}"}}]}}"#
    )
}

/// A wal2json delete with the primary key as identity.
fn delete(schema: &str, table: &str, id: i64) -> String {
    format!(
        r#"{{"action":"D","xid":8,"lsn":"0/20","schema":"{schema}","table":"{table}","identity":[{{"name":"id","type":"integer","value":{id}}}]}}"#
    )
}

/// The `id` of every frame waiting for `sub`, in order (`new` row, or `old` for a delete).
fn received(sub: &Subscription) -> Vec<i64> {
    let mut frames = Vec::new();
    while sub.reader().take(&mut frames, 64).is_some() {}
    frames
        .iter()
        .map(|f| {
            let v: Json = serde_json::from_str(f.frame.as_str()).expect("a JSON frame");
            let row = if v["new"].is_null() {
                &v["old"]
            } else {
                &v["new"]
            };
            row["id"].as_i64().expect("the frame carries the id")
        })
        .collect()
}

/// The canonical `eq` index key of `value` in a column of `class`.
fn key_of(value: Value<'_>, class: TypeClass) -> Vec<u8> {
    let mut buf = Vec::new();
    filter::index_key(value, class, &mut buf)
        .expect("an indexable value")
        .to_vec()
}

/// A hub without Postgres or sockets: subscriptions are bound against `columns()` and changes
/// are decoded from wal2json text, as `ws` and `Intake` do.
struct Rig {
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    root: CancellationToken,
    decoder: Decoder,
    scratch: Scratch,
}

impl Rig {
    fn new() -> Rig {
        let metrics = Arc::new(Metrics::new());
        Rig {
            hub: Hub::new(metrics.clone(), CAPACITY),
            metrics,
            root: CancellationToken::new(),
            decoder: Decoder::new(),
            scratch: Scratch::default(),
        }
    }

    /// Subscribe with `query=<query>` and optionally `select=<select>`. The cohort key is the
    /// parameter list, so equal parameters share a cohort (as with `ws`' canonical key).
    fn subscribe(&self, query: &str, select: Option<&str>) -> Subscription {
        let mut params = vec![("query".to_owned(), query.to_owned())];
        if let Some(select) = select {
            params.push(("select".to_owned(), select.to_owned()));
        }
        let req = parse_request(&params).expect("valid request");
        let filter = bind(&req, &columns()).expect("binds");
        let key = format!("{params:?}");
        self.hub.subscribe(
            SubscribeRequest {
                schema: &req.table.schema,
                table: &req.table.name,
                key: &key,
                ops: req.ops,
                filter,
                plugin: None,
                binding: None,
            },
            SessionSignal::new(&self.root),
        )
    }

    fn dispatch(&mut self, json: &str) {
        let mut payload = json.as_bytes().to_vec();
        let change = self.decoder.decode(&mut payload).expect("valid wal2json");
        self.hub.dispatch(&change, &mut self.scratch);
        self.hub.wake(&mut self.scratch);
    }
}

/// What the registry holds for one table, in a comparable form.
#[derive(Debug, PartialEq, Eq)]
struct TableShape {
    /// Cohort id -> members.
    cohorts: BTreeMap<CohortId, usize>,
    by_request: BTreeMap<String, CohortId>,
    scan: BTreeSet<CohortId>,
    /// Column -> key -> cohorts.
    eq: BTreeMap<String, BTreeMap<Vec<u8>, BTreeSet<CohortId>>>,
    /// `select=` lists still referenced, with their reference counts (a slot at zero is free
    /// for reuse, so it is not part of the shape).
    projections: BTreeMap<Option<Vec<String>>, usize>,
}

impl Hub {
    /// Everything the registry holds, by (schema, table); empty when nothing is subscribed.
    fn shape(&self) -> BTreeMap<(String, String), TableShape> {
        let tables = self.tables.read();
        let mut out = BTreeMap::new();
        for (schema, by_table) in tables.iter() {
            for (table, t) in by_table {
                let shape = TableShape {
                    cohorts: t
                        .cohorts
                        .iter()
                        .map(|(id, e)| (*id, e.cohort.member_count()))
                        .collect(),
                    by_request: t
                        .by_request
                        .iter()
                        .map(|(k, id)| (k.to_string(), *id))
                        .collect(),
                    scan: t.scan.iter().copied().collect(),
                    eq: t
                        .eq
                        .iter()
                        .map(|(column, index)| {
                            let keys = index
                                .by_key
                                .iter()
                                .map(|(k, ids)| (k.to_vec(), ids.iter().copied().collect()))
                                .collect();
                            (column.to_string(), keys)
                        })
                        .collect(),
                    projections: t
                        .projections
                        .iter()
                        .filter(|(_, refs)| *refs > 0)
                        .map(|(p, refs)| {
                            let p = p
                                .select
                                .as_ref()
                                .map(|p| p.iter().map(|c| c.to_string()).collect());
                            (p, *refs)
                        })
                        .collect(),
                };
                out.insert((schema.to_string(), table.to_string()), shape);
            }
        }
        out
    }

    /// Check that the indexes agree with the cohorts: no empty table, index entry or bucket; each
    /// cohort filed exactly once, in the bucket of its `eq` key or on the scan list; every open
    /// cohort found by its request key; projection reference counts equal to their users.
    fn assert_consistent(&self) {
        let tables = self.tables.read();
        for (schema, by_table) in tables.iter() {
            assert!(!by_table.is_empty(), "empty schema entry {schema}");
            for (table, t) in by_table {
                let at = format!("{schema}.{table}");
                assert!(!t.cohorts.is_empty(), "{at}: table entry without cohorts");
                let mut filed: HashMap<CohortId, usize> = HashMap::new();
                for id in &t.scan {
                    *filed.entry(*id).or_default() += 1;
                }
                for (column, index) in &t.eq {
                    assert!(!index.by_key.is_empty(), "{at}: empty eq index on {column}");
                    for (key, ids) in &index.by_key {
                        assert!(!ids.is_empty(), "{at}: empty bucket {column}={key:?}");
                        for id in ids {
                            *filed.entry(*id).or_default() += 1;
                        }
                    }
                }
                assert_eq!(
                    filed.len(),
                    t.cohorts.len(),
                    "{at}: indexed ids {filed:?} are not the cohorts"
                );
                let mut users = vec![0usize; t.projections.len()];
                for (id, entry) in &t.cohorts {
                    assert_eq!(filed.get(id), Some(&1), "{at}: cohort {id} filed once");
                    match entry.filter.eq_index() {
                        Some((column, key)) => assert!(
                            t.eq[column].by_key[key].contains(id),
                            "{at}: cohort {id} in its eq bucket"
                        ),
                        None => assert!(t.scan.contains(id), "{at}: cohort {id} scanned"),
                    }
                    if !entry.cohort.is_closed() {
                        assert_eq!(t.by_request.get(&entry.key), Some(id), "{at}: open {id}");
                    }
                    assert!(entry.cohort.member_count() > 0, "{at}: cohort {id} empty");
                    users[entry.projection] += 1;
                    let shape = &t.projections[entry.projection].0;
                    assert_eq!(
                        shape.select.as_deref(),
                        entry.filter.select(),
                        "{at}: cohort {id} projection"
                    );
                    assert_eq!(
                        shape.format,
                        entry.filter.format(),
                        "{at}: cohort {id} format"
                    );
                }
                for (key, id) in &t.by_request {
                    let entry = t.cohorts.get(id).expect("by_request names a live cohort");
                    assert_eq!(&entry.key, key, "{at}: by_request key of {id}");
                }
                let refs: Vec<usize> = t.projections.iter().map(|(_, r)| *r).collect();
                assert_eq!(refs, users, "{at}: projection reference counts");
            }
        }
    }

    fn cohort_of(&self, sub: &Subscription) -> Arc<Cohort> {
        self.tables.read()[&sub.schema][&sub.table].cohorts[&sub.cohort]
            .cohort
            .clone()
    }
}

#[test]
fn eq_subscriptions_receive_only_the_rows_of_their_key() {
    let mut rig = Rig::new();
    let one_a = rig.subscribe("*:t:id.eq.1", None);
    let one_b = rig.subscribe("*:t:id.eq.1", None);
    let one_projected = rig.subscribe("*:t:id.eq.1", Some("id"));
    let two = rig.subscribe("*:t:id.eq.2", None);
    let two_deletes = rig.subscribe("delete:t:id.eq.2", None);
    let one_elsewhere = rig.subscribe("*:other.t:id.eq.1", None);
    let everything = rig.subscribe("*:t", None);

    assert_eq!(one_a.cohort, one_b.cohort, "same request, same cohort");
    assert_ne!(one_a.cohort, one_projected.cohort);
    let shape = rig.hub.shape();
    let t = &shape[&("public".to_owned(), "t".to_owned())];
    let bucket = |k: &str| &t.eq["id"][&key_of(Value::Number(k), TypeClass::Number)];
    assert_eq!(
        bucket("1"),
        &BTreeSet::from([one_a.cohort, one_projected.cohort])
    );
    assert_eq!(
        bucket("2"),
        &BTreeSet::from([two.cohort, two_deletes.cohort])
    );
    assert_eq!(t.eq["id"].len(), 2);
    assert_eq!(t.scan, BTreeSet::from([everything.cohort]));
    assert_eq!(t.cohorts[&one_a.cohort], 2, "both members counted");
    assert_eq!(rig.metrics.subscriptions.get(), 7);
    rig.hub.assert_consistent();

    for id in 1..=3 {
        rig.dispatch(&insert("public", "t", id, "0", "x"));
    }
    rig.dispatch(&delete("public", "t", 2));
    rig.dispatch(&insert("other", "t", 1, "0", "x"));
    rig.dispatch(&insert("public", "u", 1, "0", "x"));

    assert_eq!(received(&one_a), [1]);
    assert_eq!(received(&one_b), [1]);
    assert_eq!(received(&one_projected), [1]);
    assert_eq!(received(&two), [2, 2]);
    assert_eq!(received(&two_deletes), [2]);
    assert_eq!(received(&one_elsewhere), [1]);
    assert_eq!(received(&everything), [1, 2, 3, 2]);
}

#[test]
fn index_keys_compare_by_the_column_type() {
    let mut rig = Rig::new();
    // numeric: 1, 1.0 and 1.00 are one value; text: "1" and "1.0" are different strings.
    let num_1 = rig.subscribe("*:t:amount.eq.1", None);
    let num_1_0 = rig.subscribe("*:t:amount.eq.1.0", None);
    let text_1 = rig.subscribe("*:t:name.eq.1", None);
    let text_1_0 = rig.subscribe("*:t:name.eq.1.0", None);

    let shape = rig.hub.shape();
    let t = &shape[&("public".to_owned(), "t".to_owned())];
    assert_ne!(num_1.cohort, num_1_0.cohort, "different requests");
    assert_eq!(
        t.eq["amount"],
        BTreeMap::from([(
            key_of(Value::Number("1.00"), TypeClass::Number),
            BTreeSet::from([num_1.cohort, num_1_0.cohort])
        )]),
        "one numeric bucket for both spellings"
    );
    assert_eq!(t.eq["name"].len(), 2, "two text buckets");
    rig.hub.assert_consistent();

    rig.dispatch(&insert("public", "t", 10, "1.00", "1"));
    rig.dispatch(&insert("public", "t", 11, "1", "1.0"));
    rig.dispatch(&insert("public", "t", 12, "10", "1.00"));
    rig.dispatch(&insert("public", "t", 13, "0.1", "01"));

    assert_eq!(received(&num_1), [10, 11]);
    assert_eq!(received(&num_1_0), [10, 11]);
    assert_eq!(received(&text_1), [10]);
    assert_eq!(received(&text_1_0), [11]);
}

#[test]
fn dropping_the_last_subscription_of_a_cohort_leaves_no_trace() {
    let rig = Rig::new();
    // An unrelated cohort keeps the table's entry, so its inner indexes can be compared.
    let keep = rig.subscribe("*:t:id.eq.1", None);
    let before = rig.hub.shape();
    let requests = [
        ("*:t:id.eq.2", Some("id,name")),
        ("*:t:id.eq.1", Some("id")),
        ("*:t:name.eq.x", None),
        ("*:t:amount.eq.5", Some("amount")),
        ("*:t", Some("name")),
        ("insert:t:id.gt.3", None),
    ];
    for (query, select) in requests {
        let a = rig.subscribe(query, select);
        let b = rig.subscribe(query, select);
        assert_eq!(a.cohort, b.cohort, "{query}: one cohort");
        let during = rig.hub.shape();
        assert_eq!(during[&("public".into(), "t".into())].cohorts[&a.cohort], 2);
        rig.hub.assert_consistent();
        drop(a);
        assert_ne!(rig.hub.shape(), before, "{query}: one member is left");
        rig.hub.assert_consistent();
        drop(b);
        assert_eq!(rig.hub.shape(), before, "{query}: the cohort is gone");
        rig.hub.assert_consistent();
    }
    drop(keep);
    assert!(rig.hub.shape().is_empty(), "{:?}", rig.hub.shape());
    assert_eq!(rig.metrics.subscriptions.get(), 0);
}

#[test]
fn a_closed_cohort_and_its_replacement_leave_no_trace_in_either_order() {
    for closed_first in [true, false] {
        let mut rig = Rig::new();
        let closed = rig.subscribe("*:t:id.eq.1", None);
        rig.hub
            .cohort_of(&closed)
            .close_all(close_code::PLUGIN_FAILING, None);
        let fresh = rig.subscribe("*:t:id.eq.1", None);
        assert_ne!(
            closed.cohort, fresh.cohort,
            "a closed cohort takes no new member"
        );

        let shape = rig.hub.shape();
        let t = &shape[&("public".to_owned(), "t".to_owned())];
        assert_eq!(
            t.by_request.values().copied().collect::<Vec<_>>(),
            [fresh.cohort]
        );
        assert_eq!(
            t.eq["id"][&key_of(Value::Number("1"), TypeClass::Number)],
            BTreeSet::from([closed.cohort, fresh.cohort])
        );
        rig.hub.assert_consistent();
        rig.dispatch(&insert("public", "t", 1, "0", "x"));
        assert_eq!(received(&closed), Vec::<i64>::new());
        assert_eq!(received(&fresh), [1]);

        let (first, second) = if closed_first {
            (closed, fresh)
        } else {
            (fresh, closed)
        };
        drop(first);
        rig.hub.assert_consistent();
        // A subscriber arriving now joins the open cohort if one is left, else opens a new one.
        let late = rig.subscribe("*:t:id.eq.1", None);
        rig.hub.assert_consistent();
        if closed_first {
            assert_eq!(late.cohort, second.cohort);
        } else {
            assert_ne!(late.cohort, second.cohort);
        }
        drop(second);
        rig.hub.assert_consistent();
        drop(late);
        assert!(rig.hub.shape().is_empty(), "{:?}", rig.hub.shape());
        assert_eq!(rig.metrics.subscriptions.get(), 0);
    }
}

/// xorshift64*: a fixed sequence, so a failure replays exactly.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

const TABLES: [(&str, &str); 3] = [("public", "t"), ("public", "u"), ("other", "t")];

#[derive(Clone, Copy)]
enum Cond {
    Any,
    IdEq(i64),
    /// The value, and whether it is written `<v>.0` (the same numeric key either way).
    AmountEq(i64, bool),
    NameEq(i64),
    IdGt(i64),
}

/// A request of the cycle test and what it should receive.
#[derive(Clone, Copy)]
struct Spec {
    table: usize,
    ops: &'static str,
    cond: Cond,
    select: Option<&'static str>,
}

impl Spec {
    fn random(rng: &mut Rng) -> Spec {
        let v = |rng: &mut Rng| rng.below(3) as i64;
        let cond = match rng.below(5) {
            0 => Cond::Any,
            1 => Cond::IdEq(v(rng)),
            2 => Cond::AmountEq(v(rng), rng.below(2) == 0),
            3 => Cond::NameEq(v(rng)),
            _ => Cond::IdGt(v(rng)),
        };
        Spec {
            table: rng.below(TABLES.len()),
            ops: ["*", "*", "*", "*", "insert", "delete"][rng.below(6)],
            cond,
            select: [None, None, None, Some("id"), Some("id,name")][rng.below(5)],
        }
    }

    fn query(&self) -> String {
        let (schema, table) = TABLES[self.table];
        let cond = match self.cond {
            Cond::Any => String::new(),
            Cond::IdEq(v) => format!(":id.eq.{v}"),
            Cond::AmountEq(v, false) => format!(":amount.eq.{v}"),
            Cond::AmountEq(v, true) => format!(":amount.eq.{v}.0"),
            Cond::NameEq(v) => format!(":name.eq.n{v}"),
            Cond::IdGt(v) => format!(":id.gt.{v}"),
        };
        format!("{}:{schema}.{table}{cond}", self.ops)
    }

    /// Whether an insert of (`id`, `amount`, `n<name>`) into table `table` reaches it.
    fn receives(&self, table: usize, id: i64, amount: i64, name: i64) -> bool {
        self.table == table
            && self.ops != "delete"
            && match self.cond {
                Cond::Any => true,
                Cond::IdEq(v) => id == v,
                Cond::AmountEq(v, _) => amount == v,
                Cond::NameEq(v) => name == v,
                Cond::IdGt(v) => id > v,
            }
    }
}

struct Live {
    sub: Subscription,
    spec: Spec,
    key: (usize, String, Option<&'static str>),
}

/// Every live subscription gets exactly the rows its request asks for, unless its cohort was
/// closed.
fn check_delivery(rig: &mut Rig, live: &[Live], rng: &mut Rng) {
    for (table, (schema, name)) in TABLES.iter().enumerate() {
        let (id, amount, n) = (
            rng.below(6) as i64,
            rng.below(6) as i64,
            rng.below(6) as i64,
        );
        // numeric printed with a scale, as `numeric(10,2)` columns are.
        let row = insert(schema, name, id, &format!("{amount}.00"), &format!("n{n}"));
        rig.dispatch(&row);
        for l in live {
            let open = !rig.hub.cohort_of(&l.sub).is_closed();
            let want = open && l.spec.receives(table, id, amount, n);
            let expected = if want { vec![id] } else { vec![] };
            assert_eq!(received(&l.sub), expected, "{}", l.spec.query());
        }
    }
}

#[test]
fn ten_thousand_subscribe_unsubscribe_cycles_leave_the_hub_as_it_started() {
    const CYCLES: usize = 10_000;
    let mut rig = Rig::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Requests repeat, as popular ones do, so cohorts are shared as well as opened and closed.
    let pool: Vec<Spec> = (0..40).map(|_| Spec::random(&mut rng)).collect();
    let mut live: Vec<Live> = Vec::new();
    let (mut subscribed, mut shared, mut closed, mut step) = (0, 0, 0, 0);
    while subscribed < CYCLES || !live.is_empty() {
        step += 1;
        let grow =
            subscribed < CYCLES && (live.is_empty() || (live.len() < 40 && rng.below(2) == 0));
        if grow {
            let spec = pool[rng.below(pool.len())];
            let sub = rig.subscribe(&spec.query(), spec.select);
            if sub.cohort != sub.id {
                shared += 1;
            }
            subscribed += 1;
            let key = (spec.table, spec.query(), spec.select);
            live.push(Live { sub, spec, key });
        } else {
            drop(live.swap_remove(rng.below(live.len())));
        }
        // Now and then a plugin group fails: its cohort closes and later subscribers with the
        // same request get a fresh one.
        if !live.is_empty() && rng.below(100) == 0 {
            let victim = &live[rng.below(live.len())].sub;
            rig.hub
                .cohort_of(victim)
                .close_all(close_code::PLUGIN_FAILING, None);
            closed += 1;
        }
        rig.hub.assert_consistent();

        // Membership matches the live subscriptions, and equal open requests share one cohort.
        let mut members: BTreeMap<CohortId, usize> = BTreeMap::new();
        let mut open_by_key: HashMap<_, BTreeSet<CohortId>> = HashMap::new();
        for l in &live {
            *members.entry(l.sub.cohort).or_default() += 1;
            if !rig.hub.cohort_of(&l.sub).is_closed() {
                open_by_key
                    .entry(l.key.clone())
                    .or_default()
                    .insert(l.sub.cohort);
            }
        }
        let in_hub: BTreeMap<CohortId, usize> = rig
            .hub
            .shape()
            .into_values()
            .flat_map(|t| t.cohorts)
            .collect();
        assert_eq!(in_hub, members, "step {step}");
        for (key, ids) in &open_by_key {
            assert_eq!(ids.len(), 1, "step {step}: {key:?} split over {ids:?}");
        }
        assert_eq!(rig.metrics.subscriptions.get(), live.len() as i64);
        if step % 200 == 0 {
            check_delivery(&mut rig, &live, &mut rng);
        }
    }
    assert!(rig.hub.shape().is_empty(), "{:?}", rig.hub.shape());
    assert!(rig.hub.tables.read().is_empty());
    assert_eq!(rig.metrics.subscriptions.get(), 0);
    // The run exercised what it is meant to.
    assert!(
        shared > 3_000,
        "only {shared} subscriptions joined a cohort"
    );
    assert!(closed > 50, "only {closed} cohorts closed");
}
