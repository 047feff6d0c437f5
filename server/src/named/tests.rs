//! Tests of the named subscriptions' store: claims, acks, persistence, bounds, expiry.

use super::*;
use crate::vocab::close_code::SUBSCRIPTION_ENDED as DELETED_CLOSE_CODE;
use crate::vocab::Lsn;

fn signal() -> Arc<SessionSignal> {
    SessionSignal::new(&CancellationToken::new())
}

fn pos(commit: u64, ordinal: u32) -> Pos {
    Pos::new(Lsn(commit), ordinal)
}

const Q: &str = "query=insert%3Apeople";
const ANON: &Owner = &Owner::Anonymous;

fn open_with(dir: &Path, cfg: NamedConfig) -> Arc<Store> {
    Store::open(dir, cfg, Arc::new(Metrics::new())).unwrap()
}

fn open(dir: &Path) -> Arc<Store> {
    open_with(dir, NamedConfig::default())
}

fn subject(sub: &str) -> Owner {
    Owner::Subject(sub.to_owned())
}

/// A claim by `owner` of `name` with `Q`.
fn take(store: &Arc<Store>, name: &str, owner: &Owner) -> Result<Claim, ClaimError> {
    store.claim(name, Q, "public.people", owner, signal())
}

/// Creates `name` for `owner` at `start`, without a writer task (the file is written here).
fn create(store: &Arc<Store>, name: &str, owner: &Owner, start: Pos) -> Claim {
    let mut claim = take(store, name, owner).unwrap();
    {
        let mut entries = store.entries.lock();
        let entry = entries.get_mut(name).unwrap();
        entry.pending = false;
        entry.stored.acked = start;
        entry.durable = start;
    }
    claim.resume = Some(start);
    store.mark_changed();
    store.persist().unwrap();
    claim
}

fn writer(store: &Arc<Store>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(
        store
            .clone()
            .run_writer(Arc::new(Metrics::new()), CancellationToken::new()),
    )
}

#[tokio::test]
async fn a_created_subscription_and_its_acks_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut claim = take(&store, "orders", ANON).unwrap();
    assert_eq!(claim.resume_after(), None);
    let writer = writer(&store);
    claim.create(pos(10, 0)).await;
    claim.ack(pos(20, 3));
    claim.ack(pos(20, 1)); // older: ignored
    let persisted = claim
        .persisted()
        .wait_for(|p| *p == pos(20, 3))
        .await
        .is_ok();
    assert!(persisted);
    writer.abort();
    drop(claim);

    let reopened = open(dir.path());
    let listed = reopened.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "orders");
    assert_eq!(listed[0].query, Q);
    assert_eq!(listed[0].acked, pos(20, 3));
    assert_eq!(listed[0].owner, None);
    assert!(!listed[0].connected && !listed[0].expired);
    let again = take(&reopened, "orders", ANON).unwrap();
    assert_eq!(again.resume_after(), Some(pos(20, 3)));
}

#[test]
fn one_socket_per_name_and_the_query_must_match() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let first = take(&store, "a", ANON).unwrap();
    assert_eq!(take(&store, "a", ANON).err(), Some(ClaimError::Busy));
    drop(first);
    // Never created for good: the name is free again, with any query.
    let other = store
        .claim("a", "query=people", "public.people", ANON, signal())
        .unwrap();
    store.entries.lock().get_mut("a").unwrap().pending = false;
    drop(other);
    assert_eq!(
        take(&store, "a", ANON).err(),
        Some(ClaimError::Mismatch {
            stored: "query=people".into()
        })
    );
}

#[test]
fn a_name_belongs_to_its_subject_and_tells_others_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let alice = subject("alice");
    let held = create(&store, "orders", &alice, pos(5, 1));
    // Another subject: forbidden with any query, and while the owner's socket holds it (not
    // "busy", which would tell it the name is in use).
    for query in [Q, "query=people", "query=people&tenant=acme"] {
        for who in [subject("bob"), Owner::Anonymous, subject("Alice")] {
            let got = store.claim("orders", query, "public.people", &who, signal());
            assert_eq!(got.err(), Some(ClaimError::Forbidden), "{who:?} {query}");
        }
    }
    assert_eq!(take(&store, "orders", &alice).err(), Some(ClaimError::Busy));
    drop(held);
    let mismatch = store.claim("orders", "query=people", "public.people", &alice, signal());
    assert_eq!(
        mismatch.err(),
        Some(ClaimError::Mismatch { stored: Q.into() })
    );
    let bob = take(&store, "orders", &subject("bob"));
    assert_eq!(bob.err(), Some(ClaimError::Forbidden));
    let back = take(&store, "orders", &alice).unwrap();
    assert_eq!(back.resume_after(), Some(pos(5, 1)));
    drop(back);
    store.persist().unwrap();

    // The owner is in the file.
    let reopened = open(dir.path());
    assert_eq!(reopened.list()[0].owner.as_deref(), Some("alice"));
    assert_eq!(
        take(&reopened, "orders", &subject("bob")).err(),
        Some(ClaimError::Forbidden)
    );
    assert!(take(&reopened, "orders", &alice).is_ok());
}

#[test]
fn a_file_of_an_earlier_release_belongs_to_the_anonymous_subject() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"{{"version":1,"subscriptions":[{{"name":"old","query":"{Q}","table":"public.people","acked":"{}","created_at":1700000000}}]}}"#,
        pos(7, 2)
    );
    std::fs::write(dir.path().join(FILE_NAME), text).unwrap();
    let store = open(dir.path());
    assert_eq!(
        take(&store, "old", &subject("alice")).err(),
        Some(ClaimError::Forbidden)
    );
    let claim = take(&store, "old", ANON).unwrap();
    assert_eq!(claim.resume_after(), Some(pos(7, 2)));
    drop(claim);
    // Written back as version 2, with the owner stated.
    store.persist().unwrap();
    let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
    assert!(
        text.contains("\"version\": 2") && text.contains("\"owner\": null"),
        "{text}"
    );
    // A version this release does not know is refused.
    std::fs::write(
        dir.path().join(FILE_NAME),
        r#"{"version":3,"subscriptions":[]}"#,
    )
    .unwrap();
    let error = Store::open(dir.path(), NamedConfig::default(), Arc::new(Metrics::new()))
        .err()
        .unwrap();
    assert!(error.to_string().contains("unknown version 3"), "{error}");
}

#[test]
fn new_names_are_bounded_in_all_and_per_subject() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(
        dir.path(),
        NamedConfig {
            max_subscriptions: 3,
            max_per_subject: 2,
            ..NamedConfig::default()
        },
    );
    let (alice, bob, carol) = (subject("alice"), subject("bob"), subject("carol"));
    let a1 = create(&store, "a1", &alice, pos(1, 0));
    // A reservation that has not started yet counts too.
    let a2 = take(&store, "a2", &alice).unwrap();
    assert_eq!(
        take(&store, "a3", &alice).err(),
        Some(ClaimError::TooMany(Bound::PerSubject(2)))
    );
    let b1 = take(&store, "b1", &bob).unwrap();
    assert_eq!(
        take(&store, "c1", &carol).err(),
        Some(ClaimError::TooMany(Bound::Total(3)))
    );
    // At the bounds, existing names are still served to their owners.
    drop(a1);
    assert!(take(&store, "a1", &alice).is_ok());
    // A reservation given up, or a name deleted, frees a place.
    drop(a2);
    let c1 = take(&store, "c1", &carol).unwrap();
    assert_eq!(
        take(&store, "c2", &carol).err(),
        Some(ClaimError::TooMany(Bound::Total(3)))
    );
    drop(b1);
    assert!(store.delete("a1"));
    let c2 = take(&store, "c2", &carol).unwrap();
    assert_eq!(
        take(&store, "c3", &carol).err(),
        Some(ClaimError::TooMany(Bound::PerSubject(2)))
    );
    drop((c1, c2));
}

#[test]
fn a_reservation_that_never_started_is_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    drop(take(&store, "gone", ANON).unwrap());
    assert!(store.is_empty());
    assert_eq!(store.keep_after(), None);
    store.persist().unwrap();
    assert!(!dir.path().join(FILE_NAME).exists(), "nothing to write");
}

#[tokio::test]
async fn keep_after_is_the_lowest_ack_and_delete_closes_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let writer = writer(&store);
    let slow_signal = signal();
    let mut slow = store
        .claim("slow", Q, "public.people", ANON, slow_signal.clone())
        .unwrap();
    let mut fast = take(&store, "fast", ANON).unwrap();
    slow.create(pos(5, 1)).await;
    fast.create(pos(5, 1)).await;
    fast.ack(pos(9, 2));
    let persisted = fast.persisted().wait_for(|p| *p == pos(9, 2)).await;
    assert!(persisted.is_ok());
    assert_eq!(store.keep_after(), Some((pos(5, 1), "slow".into())));

    assert!(store.delete("slow"));
    assert!(!store.delete("slow"));
    assert!(slow_signal.is_closing());
    assert_eq!(slow_signal.code(), DELETED_CLOSE_CODE);
    assert_eq!(store.keep_after(), Some((pos(9, 2), "fast".into())));
    slow.ack(pos(100, 1)); // the deleted one's acks go nowhere
    drop(slow);
    store.durable().await;
    writer.abort();
    let reopened = open(dir.path());
    let names: Vec<String> = reopened.list().into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["fast"]);
}

#[test]
fn retention_keeps_after_the_ack_in_the_file_not_the_one_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let claim = create(&store, "n", ANON, pos(5, 1));
    claim.ack(pos(9, 2));
    store.persist().unwrap();
    assert_eq!(store.keep_after(), Some((pos(9, 2), "n".into())));
    // Acknowledged, not yet written: retention must not go past the ack the file holds, or a
    // crash now would leave the subscription after a position the journal no longer has.
    claim.ack(pos(30, 0));
    assert_eq!(store.list()[0].acked, pos(30, 0));
    assert_eq!(store.keep_after(), Some((pos(9, 2), "n".into())));
    drop(claim);
    assert_eq!(store.keep_after(), Some((pos(9, 2), "n".into())));
    store.persist().unwrap();
    assert_eq!(store.keep_after(), Some((pos(30, 0), "n".into())));
    assert_eq!(open(dir.path()).list()[0].acked, pos(30, 0));
}

#[test]
fn a_write_that_began_before_a_re_creation_does_not_vouch_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let old = create(&store, "n", ANON, pos(5, 1));
    old.ack(pos(50, 0));
    // What a write in flight took from the table...
    let generation = store.entries.lock()["n"].generation;
    drop(old);
    assert!(store.delete("n"));
    let _new = create(&store, "n", ANON, pos(60, 0));
    // ...lands after the name was deleted and created again: the new one is another generation.
    assert_ne!(store.entries.lock()["n"].generation, generation);
    assert_eq!(store.keep_after(), Some((pos(60, 0), "n".into())));
}

#[test]
fn an_idle_subscription_stops_holding_the_journal_after_the_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let cfg = NamedConfig {
        idle_expiry: Duration::from_secs(60),
        ..NamedConfig::default()
    };
    let store = Store::open(dir.path(), cfg.clone(), metrics.clone()).unwrap();
    let idle = create(&store, "idle", ANON, pos(5, 1));
    let busy = create(&store, "busy", ANON, pos(9, 1));
    drop(idle);
    let now = SystemTime::now();
    let later = |secs| now + Duration::from_secs(secs);
    assert_eq!(
        store.keep_after_at(later(30)),
        Some((pos(5, 1), "idle".into()))
    );
    assert_eq!(
        store.keep_after_at(later(60)),
        Some((pos(5, 1), "idle".into()))
    );
    // Past the expiry: the connected one holds, the idle one no longer does.
    assert_eq!(
        store.keep_after_at(later(62)),
        Some((pos(9, 1), "busy".into()))
    );
    assert_eq!(metrics.named_expired.get(), 1);
    assert!(store.list().iter().any(|l| l.name == "idle" && l.expired));
    // A connected subscription never expires, however long.
    assert_eq!(
        store.keep_after_at(later(3600)),
        Some((pos(9, 1), "busy".into()))
    );
    assert_eq!(metrics.named_expired.get(), 1, "counted once");
    drop(busy);
    // The expiry is in the file: a restart does not make it hold again.
    store.persist().unwrap();
    let reopened = Store::open(dir.path(), cfg, metrics.clone()).unwrap();
    let listed = reopened.list();
    assert!(listed.iter().any(|l| l.name == "idle" && l.expired));
    assert!(listed.iter().any(|l| l.name == "busy" && !l.expired));
    assert_eq!(reopened.keep_after(), Some((pos(9, 1), "busy".into())));

    // It comes back and the journal still has what follows its ack: it holds again.
    let back = take(&reopened, "idle", ANON).unwrap();
    assert_eq!(back.resume_after(), Some(pos(5, 1)));
    assert_eq!(reopened.keep_after(), Some((pos(9, 1), "busy".into())));
    back.resumable();
    assert_eq!(reopened.keep_after(), Some((pos(5, 1), "idle".into())));
    // Its position found gone: it never holds again.
    back.position_gone();
    assert_eq!(reopened.keep_after(), Some((pos(9, 1), "busy".into())));
    drop(back);
    assert_eq!(metrics.named_expired.get(), 1);
}

#[test]
fn a_file_written_while_a_socket_held_the_name_restarts_its_idle_clock() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = NamedConfig {
        idle_expiry: Duration::from_secs(60),
        ..NamedConfig::default()
    };
    let store = open_with(dir.path(), cfg.clone());
    let held = create(&store, "held", ANON, pos(5, 1));
    store.persist().unwrap();
    // walcast is killed while the socket holds it: the file says so (no idle_since).
    std::mem::forget(held);
    let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
    assert!(text.contains("\"idle_since\": null"), "{text}");
    let reopened = open_with(dir.path(), cfg);
    let now = SystemTime::now();
    assert_eq!(
        reopened.keep_after_at(now + Duration::from_secs(59)),
        Some((pos(5, 1), "held".into()))
    );
    assert_eq!(reopened.keep_after_at(now + Duration::from_secs(62)), None);
}

#[test]
fn a_temporary_slot_serves_no_name_and_holds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    drop(create(&store, "kept", ANON, pos(5, 1)));
    let temporary = open_with(
        dir.path(),
        NamedConfig {
            temporary: true,
            ..NamedConfig::default()
        },
    );
    assert_eq!(
        take(&temporary, "kept", ANON).err(),
        Some(ClaimError::Unavailable)
    );
    assert_eq!(
        take(&temporary, "new", ANON).err(),
        Some(ClaimError::Unavailable)
    );
    assert_eq!(temporary.keep_after(), None);
    assert_eq!(temporary.len(), 1, "the file is left as it is");
}

#[test]
fn a_damaged_file_fails_the_open_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE_NAME), b"{\"version\":1,").unwrap();
    let error = Store::open(dir.path(), NamedConfig::default(), Arc::new(Metrics::new()))
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains(FILE_NAME), "{error}");
}

#[test]
fn names_are_checked() {
    for good in ["a", "orders-v2", "team.app_1", &"x".repeat(64)] {
        assert!(valid_name(good), "{good}");
    }
    for bad in ["", "a b", "a/b", "é", &"x".repeat(65)] {
        assert!(!valid_name(bad), "{bad}");
    }
}
