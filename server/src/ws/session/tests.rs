//! Sessions without sockets: the hub fed through the intake (with a journal) as the replication
//! task feeds it, the session writing into a channel the test reads at its own pace.

use futures_channel::mpsc as fmpsc;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use serde_json::Value;

use super::*;
use crate::filter::{bind, parse_request, ColumnInfo, TableName};
use crate::hub::Intake;
use crate::journal::{Journal, JournalConfig, JournalHandle};
use crate::named::{self, Claim};
use crate::source::Consumer;
use crate::vocab::{Lsn, Pos};

/// Opens `*:t`-style requests on the test table (`id integer`), like the router does.
struct TestOpener {
    journal: JournalHandle,
}

impl Opener for TestOpener {
    fn open(
        &self,
        params: Vec<(String, String)>,
        _signal: Arc<SessionSignal>,
    ) -> BoxFuture<'_, Result<Opened, Refusal>> {
        let opened = (|| {
            let req = parse_request(&params).map_err(|e| Refusal {
                code: e.code,
                message: e.message,
            })?;
            if req.table.name != "t" {
                return Err(Refusal {
                    code: "unknown_table",
                    message: format!("table {} does not exist", req.table),
                });
            }
            let filter = bind(&req, &[ColumnInfo::new("id", "integer")]).map_err(|e| Refusal {
                code: e.code,
                message: e.message,
            })?;
            let mut key: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            key.sort();
            let start = match params.iter().find(|(k, _)| k == "from") {
                None => Start::Live,
                Some((_, from)) => {
                    let from: Pos = from.parse().unwrap();
                    Start::After(from, self.journal.reader(from).unwrap())
                }
            };
            Ok(Opened {
                plan: Plan {
                    table: req.table.clone(),
                    key: key.join("&"),
                    ops: req.ops,
                    filter,
                    plugin: None,
                    columns: Arc::from(vec![ColumnInfo::new("id", "integer")]),
                    conditions: req.conditions.clone(),
                    binding: None,
                    follow: None,
                },
                start,
                claim: None,
            })
        })();
        Box::pin(async move { opened })
    }
}

struct Rig {
    intake: Intake,
    ctx: Ctx,
    next_commit: u64,
    next_id: i64,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// A hub whose cohort logs hold `capacity` frames, with a journal.
    fn new(capacity: usize) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(JournalConfig::new(dir.path())).unwrap();
        let metrics = Arc::new(Metrics::new());
        let hub = Hub::new(metrics.clone(), capacity);
        let ctx = Ctx {
            hub: hub.clone(),
            journal: journal.handle(),
            metrics: metrics.clone(),
            shutdown: CancellationToken::new(),
            status: Arc::new(crate::source::SourceStatus::default()),
            opener: Arc::new(TestOpener {
                journal: journal.handle(),
            }),
            max_subscriptions: 3,
            snapshots: None,
            auth: None,
            max_messages_per_second: 1000,
            timeouts: SocketTimeouts {
                write: Duration::from_secs(30),
                ping_interval: Duration::from_secs(20),
                idle: Duration::from_secs(60),
            },
        };
        Rig {
            intake: Intake::new(hub, metrics).with_journal(journal),
            ctx,
            next_commit: 0x1000,
            next_id: 1,
            _dir: dir,
        }
    }

    fn plan(&self) -> Plan {
        let params = vec![("query".to_owned(), "*:t".to_owned())];
        let req = parse_request(&params).unwrap();
        let filter = bind(&req, &[ColumnInfo::new("id", "integer")]).unwrap();
        Plan {
            table: TableName::new("public", "t"),
            key: "*:t".into(),
            ops: req.ops,
            filter,
            plugin: None,
            columns: Arc::from(vec![ColumnInfo::new("id", "integer")]),
            conditions: req.conditions,
            binding: None,
            follow: None,
        }
    }

    /// `n` single-row transactions, as one burst read from Postgres.
    fn commit_rows(&mut self, n: usize) {
        for _ in 0..n {
            let (c, id) = (self.next_commit, self.next_id);
            let msgs = [
                format!(r#"{{"action":"B","xid":1,"lsn":"{}"}}"#, Lsn(c)),
                format!(
                    r#"{{"action":"I","xid":1,"lsn":"{}","schema":"public","table":"t","columns":[{{"name":"id","type":"integer","value":{id}}}]}}"#,
                    Lsn(c - 8)
                ),
                format!(r#"{{"action":"C","xid":1,"lsn":"{}"}}"#, Lsn(c)),
            ];
            for (i, m) in msgs.into_iter().enumerate() {
                let at = Lsn(c - 16 + 8 * i as u64);
                self.intake.on_data(at, at, &mut m.into_bytes());
            }
            self.next_commit += 0x100;
            self.next_id += 1;
        }
        self.intake.flush();
    }
}

/// The client side of a session: what it was sent, and a way to send it messages.
struct Client {
    out: fmpsc::Receiver<Message>,
    to_server: fmpsc::UnboundedSender<Result<Message, ()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    fn start(rig: &Rig, start: Start, claim: Option<Claim>) -> Client {
        let signal = SessionSignal::new(&rig.ctx.shutdown);
        let opened = Opened {
            plan: rig.plan(),
            start,
            claim,
        };
        Client::open(rig, Some((opened, signal)))
    }

    /// A socket without a URL subscription (`GET /ws`).
    fn bare(rig: &Rig) -> Client {
        Client::open(rig, None)
    }

    fn open(rig: &Rig, first: Option<(Opened, Arc<SessionSignal>)>) -> Client {
        // No buffer: the session can only write as fast as the test reads.
        let (out_tx, out) = fmpsc::channel::<Message>(0);
        let (to_server, in_rx) = fmpsc::unbounded::<Result<Message, ()>>();
        let task = tokio::spawn(run(
            out_tx.sink_map_err(|_| ()),
            in_rx,
            rig.ctx.clone(),
            first,
        ));
        Client {
            out,
            to_server,
            task,
        }
    }

    async fn next(&mut self) -> Value {
        let msg = tokio::time::timeout(Duration::from_secs(10), self.out.next())
            .await
            .expect("a frame within 10 s")
            .expect("the session is open");
        match msg {
            Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next `n` change frames' ids, checking that positions increase.
    async fn ids(&mut self, n: usize) -> Vec<i64> {
        let mut ids = Vec::new();
        let mut last = String::new();
        while ids.len() < n {
            let v = self.next().await;
            assert_eq!(v["type"], "change", "{v}");
            let pos = v["pos"].as_str().unwrap().to_owned();
            assert!(pos > last, "{pos} after {last}");
            last = pos;
            ids.push(v["new"]["id"].as_i64().unwrap());
        }
        ids
    }

    fn send(&self, text: &str) {
        self.to_server
            .unbounded_send(Ok(Message::Text(text.into())))
            .unwrap();
    }
}

/// A session that cannot keep up with a burst is detached from its cohort's log (which never
/// waits for it) and reads the rest from the journal, then comes back to the live stream: every
/// row once, in order, across both moves.
#[tokio::test]
async fn a_session_that_falls_behind_reads_the_journal_and_comes_back_live() {
    let mut rig = Rig::new(4);
    let mut client = Client::start(&rig, Start::Live, None);
    assert_eq!(client.next().await["type"], "subscribed");

    rig.commit_rows(2);
    assert_eq!(client.ids(2).await, [1, 2]);
    rig.commit_rows(200);
    assert!(
        rig.ctx.metrics.sessions_behind.get() >= 1,
        "a 200-row burst does not fit a 4-frame log"
    );
    assert_eq!(client.ids(200).await, (3..=202).collect::<Vec<_>>());

    // Caught up: back on the live stream.
    let mut waited = 0;
    while rig.ctx.metrics.catchup_sessions.get() != 0 {
        waited += 1;
        assert!(waited < 1000, "the session never rejoined the live stream");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    rig.commit_rows(3);
    assert_eq!(client.ids(3).await, [203, 204, 205]);
    drop(client.to_server);
    client.task.await.unwrap();
}

/// `from=`: the journal first, then live, without a gap or a duplicate at the seam.
#[tokio::test]
async fn a_resume_replays_after_its_position_then_goes_live() {
    let mut rig = Rig::new(1024);
    let mut first = Client::start(&rig, Start::Live, None);
    assert_eq!(first.next().await["type"], "subscribed");
    rig.commit_rows(10);
    let mut pos = String::new();
    for _ in 0..4 {
        pos = first.next().await["pos"].as_str().unwrap().to_owned();
    }
    let from: Pos = pos.parse().unwrap();
    let reader = rig.ctx.journal.reader(from).unwrap();
    let mut resumed = Client::start(&rig, Start::After(from, reader), None);
    let hello = resumed.next().await;
    assert_eq!(hello["pos"], pos.as_str());
    assert_eq!(resumed.ids(6).await, (5..=10).collect::<Vec<_>>());
    rig.commit_rows(2);
    assert_eq!(resumed.ids(2).await, [11, 12]);
}

#[tokio::test]
async fn acks_are_confirmed_once_persisted_and_bad_ones_answered() {
    let mut rig = Rig::new(1024);
    let dir = tempfile::tempdir().unwrap();
    let store = named::Store::open(
        dir.path(),
        named::NamedConfig::default(),
        rig.ctx.metrics.clone(),
    )
    .unwrap();
    let writer = tokio::spawn(
        store
            .clone()
            .run_writer(rig.ctx.metrics.clone(), CancellationToken::new()),
    );
    let signal = SessionSignal::new(&rig.ctx.shutdown);
    let claim = store
        .claim(
            "view",
            "query=*:t",
            "public.t",
            &named::Owner::Anonymous,
            signal,
        )
        .unwrap();
    let mut client = Client::start(&rig, Start::Live, Some(claim));
    let hello = client.next().await;
    assert_eq!(hello["sub"], "view");
    assert_eq!(
        store.list()[0].acked.to_string(),
        hello["pos"].as_str().unwrap()
    );

    rig.commit_rows(3);
    let mut positions = Vec::new();
    for _ in 0..3 {
        // No `acked` for the creation position: it was not an ack.
        let v = client.next().await;
        assert_eq!(v["type"], "change", "{v}");
        positions.push(v["pos"].as_str().unwrap().to_owned());
    }
    client.send("hello");
    assert_eq!(client.next().await["error"], "bad_message");
    client.send(r#"{"type":"ack","pos":"7FFFFFFFFFFFFFFF-00000001"}"#);
    assert_eq!(client.next().await["error"], "bad_ack");
    client.send(&format!(r#"{{"type":"ack","pos":"{}"}}"#, positions[1]));
    let acked = client.next().await;
    assert_eq!(acked["type"], "acked");
    assert_eq!(acked["pos"], positions[1].as_str());
    assert_eq!(store.list()[0].acked.to_string(), positions[1]);
    writer.abort();
}

#[tokio::test]
async fn an_ack_without_a_named_subscription_is_refused() {
    let rig = Rig::new(16);
    let mut client = Client::start(&rig, Start::Live, None);
    client.next().await;
    client.send(r#"{"type":"ack","pos":"0000000000000000-00000000"}"#);
    let v = client.next().await;
    assert_eq!(v["error"], "bad_ack");
    assert!(v["message"].as_str().unwrap().contains("sub="));
}

#[tokio::test]
async fn shutdown_closes_with_1001() {
    let rig = Rig::new(16);
    let mut client = Client::start(&rig, Start::Live, None);
    client.next().await;
    rig.ctx.shutdown.cancel();
    match client.out.next().await.unwrap() {
        Message::Close(Some(f)) => assert_eq!(f.code, 1001),
        other => panic!("expected close, got {other:?}"),
    }
}

/// One socket, several subscriptions from `subscribe` messages: every frame names its
/// subscription, an unsubscribed one gets nothing more, refusals and bad messages are answered
/// and the socket goes on.
#[tokio::test]
async fn subscriptions_from_messages_share_one_socket() {
    let mut rig = Rig::new(1024);
    let mut client = Client::bare(&rig);
    client.send(r#"{"type":"subscribe","id":"all","query":"*:t"}"#);
    let hello = client.next().await;
    assert_eq!(
        (hello["type"].as_str(), hello["id"].as_str()),
        (Some("subscribed"), Some("all"))
    );
    client.send(r#"{"type":"subscribe","id":"big","query":"insert:t:id.gt.2"}"#);
    assert_eq!(client.next().await["id"], "big");
    client.send(r#"{"type":"subscribe","id":"x","query":"*:nope"}"#);
    let refused = client.next().await;
    assert_eq!(
        (
            refused["type"].as_str(),
            refused["id"].as_str(),
            refused["error"].as_str()
        ),
        (Some("error"), Some("x"), Some("unknown_table"))
    );
    client.send("garbage");
    assert_eq!(client.next().await["error"], "bad_message");
    client.send(r#"{"type":"subscribe","id":"all","query":"*:t"}"#);
    let dup = client.next().await;
    assert_eq!(
        (dup["id"].as_str(), dup["error"].as_str()),
        (Some("all"), Some("bad_message"))
    );

    rig.commit_rows(4);
    let mut got: Vec<(String, i64)> = Vec::new();
    for _ in 0..6 {
        let v = client.next().await;
        assert_eq!(v["type"], "change", "{v}");
        got.push((
            v["id"].as_str().unwrap().to_owned(),
            v["new"]["id"].as_i64().unwrap(),
        ));
    }
    let of = |id: &str| -> Vec<i64> {
        got.iter()
            .filter(|(s, _)| s == id)
            .map(|(_, n)| *n)
            .collect()
    };
    assert_eq!(of("all"), [1, 2, 3, 4]);
    assert_eq!(of("big"), [3, 4]);

    client.send(r#"{"type":"unsubscribe","id":"all"}"#);
    assert_eq!(client.next().await["type"], "unsubscribed");
    rig.commit_rows(1);
    let v = client.next().await;
    assert_eq!(
        (v["id"].as_str(), v["new"]["id"].as_i64()),
        (Some("big"), Some(5))
    );
    client.send(r#"{"type":"unsubscribe","id":"all"}"#);
    assert_eq!(client.next().await["error"], "unknown_subscription");
}

#[tokio::test]
async fn a_socket_holds_at_most_max_subscriptions() {
    let rig = Rig::new(16);
    let mut client = Client::bare(&rig);
    for id in ["a", "b", "c"] {
        client.send(&format!(
            r#"{{"type":"subscribe","id":"{id}","query":"*:t"}}"#
        ));
        assert_eq!(client.next().await["type"], "subscribed");
    }
    client.send(r#"{"type":"subscribe","id":"d","query":"*:t"}"#);
    let v = client.next().await;
    assert_eq!(
        (v["id"].as_str(), v["error"].as_str()),
        (Some("d"), Some("too_many_subscriptions"))
    );
}

/// Subscriptions of one socket fall behind and catch up independently, each with its own ids.
#[tokio::test]
async fn a_multiplexed_subscription_falls_behind_and_comes_back() {
    let mut rig = Rig::new(4);
    let mut client = Client::bare(&rig);
    client.send(r#"{"type":"subscribe","id":"a","query":"*:t"}"#);
    client.next().await;
    client.send(r#"{"type":"subscribe","id":"b","query":"insert:t:id.gt.100"}"#);
    client.next().await;
    rig.commit_rows(150);
    let mut a = Vec::new();
    let mut b = Vec::new();
    while a.len() < 150 || b.len() < 50 {
        let v = client.next().await;
        assert_eq!(v["type"], "change", "{v}");
        let n = v["new"]["id"].as_i64().unwrap();
        match v["id"].as_str().unwrap() {
            "a" => a.push(n),
            "b" => b.push(n),
            other => panic!("frame for {other}"),
        }
    }
    assert_eq!(a, (1..=150).collect::<Vec<_>>());
    assert_eq!(b, (101..=150).collect::<Vec<_>>());
    assert!(rig.ctx.metrics.sessions_behind.get() >= 1);
}

impl Client {
    /// The next message of any kind (pings and the close included), waiting as long as it takes
    /// (the tests below run on a paused clock, which jumps to the next timer).
    async fn message(&mut self) -> Option<Message> {
        tokio::time::timeout(Duration::from_secs(3600), self.out.next())
            .await
            .expect("a message or the end within an hour")
    }
}

/// The client stops reading: the session's next write never completes (the sink is never ready
/// again). At the write timeout the session ends, counted, and lets go of its subscription.
#[tokio::test(start_paused = true)]
async fn a_live_session_whose_writes_stall_ends_at_the_write_timeout() {
    let mut rig = Rig::new(1024);
    let mut client = Client::start(&rig, Start::Live, None);
    assert_eq!(client.next().await["type"], "subscribed");
    let started = tokio::time::Instant::now();
    // The first change fills the client's buffer; the second write never completes.
    rig.commit_rows(10);
    tokio::time::timeout(Duration::from_secs(3600), client.task)
        .await
        .expect("the session ends")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(30));
    let m = &rig.ctx.metrics;
    assert_eq!(m.sessions_timed_out("write"), 1);
    assert_eq!(m.sessions_timed_out("idle"), 0);
    assert_eq!((m.sessions.get(), m.subscriptions.get()), (0, 0));
}

/// Same while catching up from the journal: the write blocks inside a replay batch, and the
/// journal reader is let go.
#[tokio::test(start_paused = true)]
async fn a_catching_up_session_whose_writes_stall_lets_go_of_its_journal_reader() {
    let mut rig = Rig::new(1024);
    let mut first = Client::start(&rig, Start::Live, None);
    assert_eq!(first.next().await["type"], "subscribed");
    rig.commit_rows(500);
    let from: Pos = first.next().await["pos"].as_str().unwrap().parse().unwrap();
    first.task.abort();
    let reader = rig.ctx.journal.reader(from).unwrap();
    let mut resumed = Client::start(&rig, Start::After(from, reader), None);
    assert_eq!(resumed.next().await["type"], "subscribed");
    assert_eq!(resumed.next().await["type"], "change");
    assert_eq!(rig.ctx.metrics.catchup_sessions.get(), 1);
    // No more reads: the replay blocks.
    tokio::time::timeout(Duration::from_secs(3600), resumed.task)
        .await
        .expect("the session ends")
        .unwrap();
    let m = &rig.ctx.metrics;
    assert_eq!(m.sessions_timed_out("write"), 1);
    assert_eq!(m.catchup_sessions.get(), 0);
}

/// The clock measures time without progress: a client that reads one frame every 20 s (below
/// the 30 s write timeout) gets everything.
#[tokio::test(start_paused = true)]
async fn a_slow_reader_that_keeps_reading_is_not_timed_out() {
    let mut rig = Rig::new(1024);
    let mut client = Client::start(&rig, Start::Live, None);
    assert_eq!(client.next().await["type"], "subscribed");
    rig.commit_rows(5);
    let mut ids = Vec::new();
    while ids.len() < 5 {
        tokio::time::sleep(Duration::from_secs(20)).await;
        match client.message().await.expect("the session is open") {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                ids.push(v["new"]["id"].as_i64().unwrap());
            }
            // Pings are answered, so the idle timeout does not end the session either.
            Message::Ping(p) => client
                .to_server
                .unbounded_send(Ok(Message::Pong(p)))
                .unwrap(),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    assert_eq!(rig.ctx.metrics.sessions_timed_out("write"), 0);
}

/// A half-open client (reads, never answers): pinged every 20 s, closed with 4009 once nothing
/// came from it for 60 s.
#[tokio::test(start_paused = true)]
async fn a_client_that_never_answers_is_pinged_then_closed_idle() {
    let rig = Rig::new(16);
    let mut client = Client::start(&rig, Start::Live, None);
    let started = tokio::time::Instant::now();
    assert_eq!(client.next().await["type"], "subscribed");
    let mut pings = Vec::new();
    let close = loop {
        match client.message().await.expect("a close frame") {
            Message::Ping(_) => pings.push(started.elapsed().as_secs()),
            Message::Close(Some(frame)) => break frame,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(pings, [20, 40]);
    assert_eq!(close.code, close_code::IDLE_TIMEOUT);
    assert!(
        close.reason.contains("sessions.idle_timeout"),
        "{}",
        close.reason
    );
    assert_eq!(started.elapsed(), Duration::from_secs(60));
    assert_eq!(rig.ctx.metrics.sessions_timed_out("idle"), 1);
    client.task.await.unwrap();
    assert_eq!(rig.ctx.metrics.subscriptions.get(), 0);
}

/// A client that answers pings stays open well past the idle timeout, and still gets changes.
#[tokio::test(start_paused = true)]
async fn a_client_that_answers_pings_stays_open() {
    let mut rig = Rig::new(16);
    let mut client = Client::start(&rig, Start::Live, None);
    assert_eq!(client.next().await["type"], "subscribed");
    for _ in 0..10 {
        match client.message().await.expect("the session is open") {
            Message::Ping(p) => client
                .to_server
                .unbounded_send(Ok(Message::Pong(p)))
                .unwrap(),
            other => panic!("{other:?}"),
        }
    }
    rig.commit_rows(1);
    assert_eq!(client.ids(1).await, [1]);
    assert_eq!(rig.ctx.metrics.sessions_timed_out("idle"), 0);
}
