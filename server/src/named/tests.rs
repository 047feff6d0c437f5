use super::*;
use crate::source::Lsn;

fn signal() -> Arc<SessionSignal> {
    SessionSignal::new(&CancellationToken::new())
}

fn pos(commit: u64, ordinal: u32) -> Pos {
    Pos::new(Lsn(commit), ordinal)
}

const Q: &str = "query=insert%3Apeople";

#[tokio::test]
async fn a_created_subscription_and_its_acks_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut claim = store.claim("orders", Q, "public.people", signal()).unwrap();
    assert_eq!(claim.resume_after(), None);
    let writer = tokio::spawn(store.clone().run_writer(
        Arc::new(crate::metrics::Metrics::new()),
        CancellationToken::new(),
    ));
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

    let reopened = Store::open(dir.path()).unwrap();
    let listed = reopened.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "orders");
    assert_eq!(listed[0].query, Q);
    assert_eq!(listed[0].acked, pos(20, 3));
    assert!(!listed[0].connected);
    let again = reopened
        .claim("orders", Q, "public.people", signal())
        .unwrap();
    assert_eq!(again.resume_after(), Some(pos(20, 3)));
}

#[test]
fn one_socket_per_name_and_the_query_must_match() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let first = store.claim("a", Q, "public.people", signal()).unwrap();
    assert_eq!(
        store.claim("a", Q, "public.people", signal()).err(),
        Some(ClaimError::Busy)
    );
    drop(first);
    // Never created for good: the name is free again, with any query.
    let mut other = store
        .claim("a", "query=people", "public.people", signal())
        .unwrap();
    other.resume = None;
    {
        let mut entries = store.entries.lock();
        entries.get_mut("a").unwrap().pending = false;
    }
    drop(other);
    assert_eq!(
        store.claim("a", Q, "public.people", signal()).err(),
        Some(ClaimError::Mismatch {
            stored: "query=people".into()
        })
    );
}

#[test]
fn a_reservation_that_never_started_is_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    drop(store.claim("gone", Q, "public.people", signal()).unwrap());
    assert!(store.is_empty());
    assert_eq!(store.keep_after(), None);
    store.persist().unwrap();
    assert!(!dir.path().join(FILE_NAME).exists(), "nothing to write");
}

#[tokio::test]
async fn keep_after_is_the_lowest_ack_and_delete_closes_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let writer = tokio::spawn(store.clone().run_writer(
        Arc::new(crate::metrics::Metrics::new()),
        CancellationToken::new(),
    ));
    let slow_signal = signal();
    let mut slow = store
        .claim("slow", Q, "public.people", slow_signal.clone())
        .unwrap();
    let mut fast = store.claim("fast", Q, "public.people", signal()).unwrap();
    slow.create(pos(5, 1)).await;
    fast.create(pos(5, 1)).await;
    fast.ack(pos(9, 2));
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
    let reopened = Store::open(dir.path()).unwrap();
    let names: Vec<String> = reopened.list().into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["fast"]);
}

#[test]
fn a_damaged_file_fails_the_open_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE_NAME), b"{\"version\":1,").unwrap();
    let error = Store::open(dir.path()).err().unwrap().to_string();
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
