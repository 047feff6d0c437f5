//! Cohorts: the subscriptions of one table that asked for exactly the same thing (operations,
//! conditions, `select=`, plugin group). A change is evaluated and framed once per cohort and
//! appended once to the cohort's bounded log; each member session reads the log from its own
//! cursor. So fan-out to N identical subscribers costs one append plus N cursor reads, and
//! writers are woken once per burst of changes, not once per frame. Does not write to sockets.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::task::AtomicWaker;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;

use super::signal::{close_code, Frame, SessionSignal};

/// How many frames may pile up past the slowest reader before the log scans its members to drop
/// what everyone has read. Scanning costs one atomic load per member, so it is amortised over
/// this many appends.
const TRIM_SLACK: usize = 32;

/// The frames not yet read by every member. `first` is the sequence number of `frames[0]`.
struct Log {
    first: u64,
    frames: VecDeque<Frame>,
    /// Length at which the next append tries to trim.
    trim_at: usize,
}

impl Log {
    fn end(&self) -> u64 {
        self.first + self.frames.len() as u64
    }

    /// Drop the frames every member has read.
    fn trim(&mut self, members: &[Arc<Member>]) {
        let slowest = members
            .iter()
            .map(|m| m.cursor.load(Ordering::Acquire))
            .min()
            .unwrap_or(self.end());
        let read = slowest.saturating_sub(self.first) as usize;
        self.frames.drain(..read.min(self.frames.len()));
        self.first += read as u64;
        // Keep a drained log from holding on to a burst's worth of slots forever.
        if self.frames.is_empty() && self.frames.capacity() > 4 * TRIM_SLACK {
            self.frames = VecDeque::new();
        }
        self.trim_at = self.frames.len() + TRIM_SLACK;
    }
}

/// One session's place in a cohort. Shared by the hub (which wakes it) and the session writer.
pub struct Member {
    /// Sequence number of the next frame this member reads.
    cursor: AtomicU64,
    waker: AtomicWaker,
    signal: Arc<SessionSignal>,
}

/// Outcome of appending a frame to a cohort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// Appended; the value is how many members will read it.
    Queued(usize),
    /// The log holds `capacity` frames its slowest member has not read: the caller waits for
    /// room (`push_by`) or gives up.
    Full,
}

pub struct Cohort {
    log: RwLock<Log>,
    members: Mutex<Vec<Arc<Member>>>,
    capacity: usize,
    /// Set while the hub waits for room; readers then signal `space` as they advance.
    producer_waiting: AtomicBool,
    space: Notify,
    /// Frames were appended since the members were last woken.
    unwoken: AtomicBool,
    /// Every member was told to close (its plugin kept failing): the hub offers it nothing more
    /// and new subscribers with the same request get a fresh cohort.
    closed: AtomicBool,
}

impl Cohort {
    pub fn new(capacity: usize) -> Arc<Cohort> {
        Arc::new(Cohort {
            log: RwLock::new(Log {
                first: 0,
                frames: VecDeque::new(),
                trim_at: TRIM_SLACK,
            }),
            members: Mutex::new(Vec::new()),
            capacity: capacity.max(1),
            producer_waiting: AtomicBool::new(false),
            space: Notify::new(),
            unwoken: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        })
    }

    /// Add a member that reads every frame appended from now on.
    pub fn join(self: &Arc<Self>, signal: Arc<SessionSignal>) -> Reader {
        // The log lock orders this against appends: the new cursor is exactly the next frame.
        let log = self.log.read();
        let member = Arc::new(Member {
            cursor: AtomicU64::new(log.end()),
            waker: AtomicWaker::new(),
            signal,
        });
        self.members.lock().push(member.clone());
        drop(log);
        Reader {
            cohort: self.clone(),
            member,
        }
    }

    /// Remove a member; returns how many remain.
    pub fn leave(&self, member: &Arc<Member>) -> usize {
        let mut members = self.members.lock();
        members.retain(|m| !Arc::ptr_eq(m, member));
        let left = members.len();
        drop(members);
        // A member that leaves may have been the slowest: let a waiting producer re-check.
        if self.producer_waiting.load(Ordering::Acquire) {
            self.space.notify_one();
        }
        left
    }

    pub fn member_count(&self) -> usize {
        self.members.lock().len()
    }

    /// Append without waiting and without waking anyone (see `wake`). Returns whether the
    /// cohort had not been marked unwoken yet, so the caller can remember it once per burst.
    pub fn push(&self, frame: &Frame) -> (Push, bool) {
        let mut log = self.log.write();
        if log.frames.len() >= log.trim_at || log.frames.len() >= self.capacity {
            log.trim(&self.members.lock());
        }
        if log.frames.len() >= self.capacity {
            return (Push::Full, false);
        }
        log.frames.push_back(frame.clone());
        drop(log);
        let first_mark = !self.unwoken.swap(true, Ordering::AcqRel);
        (Push::Queued(self.member_count()), first_mark)
    }

    /// Wake every member if frames were appended since the last wake.
    pub fn wake(&self) {
        if self.unwoken.swap(false, Ordering::AcqRel) {
            for m in self.members.lock().iter() {
                m.waker.wake();
            }
        }
    }

    /// Append, waiting for room until `deadline`. Members still holding the oldest frame at the
    /// deadline are closed with 4008 (slow consumer) and dropped from the cohort, so the others
    /// go on. Returns how many members the frame was queued for.
    pub async fn push_by(&self, frame: &Frame, deadline: tokio::time::Instant) -> (usize, usize) {
        loop {
            let notified = self.space.notified();
            self.producer_waiting.store(true, Ordering::Release);
            let (push, _) = self.push(frame);
            if let Push::Queued(n) = push {
                self.producer_waiting.store(false, Ordering::Release);
                // The caller does not track this cohort for the end-of-burst wake.
                self.wake();
                return (n, 0);
            }
            // Readers only advance when woken.
            self.unwoken.store(true, Ordering::Release);
            self.wake();
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                self.producer_waiting.store(false, Ordering::Release);
                let evicted = self.evict_laggards();
                let (push, _) = self.push(frame);
                let n = match push {
                    Push::Queued(n) => n,
                    Push::Full => 0,
                };
                self.wake();
                return (n, evicted);
            }
        }
    }

    /// Close (4008) and drop every member that has not read the oldest frame. Their writers may
    /// still be reading when the remaining members trim past them: `Reader::take` handles that.
    fn evict_laggards(&self) -> usize {
        let log = self.log.read();
        let mut members = self.members.lock();
        let before = members.len();
        members.retain(|m| {
            let behind = m.cursor.load(Ordering::Acquire) <= log.first;
            if behind {
                m.signal.close(close_code::SLOW_CONSUMER);
                m.waker.wake();
            }
            !behind
        });
        before - members.len()
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Close every member with `code` and, for the close frame, `reason` (plugin failing).
    pub fn close_all(&self, code: u16, reason: Option<&str>) {
        self.closed.store(true, Ordering::Release);
        for m in self.members.lock().iter() {
            m.signal.close_with(code, reason);
            m.waker.wake();
        }
    }
}

/// A session's read end of its cohort.
pub struct Reader {
    cohort: Arc<Cohort>,
    member: Arc<Member>,
}

impl Reader {
    pub(crate) fn member(&self) -> &Arc<Member> {
        &self.member
    }

    /// Wait for frames and move up to `max` of them into `out` (appended in order). Returns false
    /// when the session was told to close.
    pub async fn next_batch(&self, out: &mut Vec<Frame>, max: usize) -> bool {
        std::future::poll_fn(|cx| {
            if self.member.signal.is_closing() {
                return std::task::Poll::Ready(false);
            }
            if self.take(out, max) {
                return std::task::Poll::Ready(true);
            }
            // Register first, then look again: an append and wake in between is not lost.
            self.member.waker.register(cx.waker());
            if self.member.signal.is_closing() {
                return std::task::Poll::Ready(false);
            }
            if self.take(out, max) {
                return std::task::Poll::Ready(true);
            }
            std::task::Poll::Pending
        })
        .await
    }

    /// Move up to `max` waiting frames into `out` without waiting; false when none were waiting,
    /// and from then on for good when the log was trimmed past this reader (see below).
    pub fn take(&self, out: &mut Vec<Frame>, max: usize) -> bool {
        let log = self.cohort.log.read();
        let cursor = self.member.cursor.load(Ordering::Acquire);
        if cursor < log.first {
            // Trimming never passes a member, but `evict_laggards` drops one from `members`
            // before its writer stops reading, and the others then trim past it. The frames it
            // missed are gone: it reads nothing more (its cursor stays below `first`, which only
            // grows) and closes as a slow consumer, unless it was already closing for another
            // reason (the first one wins).
            drop(log);
            self.member.signal.close(close_code::SLOW_CONSUMER);
            return false;
        }
        let from = (cursor - log.first) as usize;
        let n = log.frames.len().saturating_sub(from).min(max);
        if n == 0 {
            return false;
        }
        out.extend(log.frames.range(from..from + n).cloned());
        drop(log);
        self.member
            .cursor
            .store(cursor + n as u64, Ordering::Release);
        if self.cohort.producer_waiting.load(Ordering::Acquire) {
            self.cohort.space.notify_one();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;

    fn frame(i: usize) -> Frame {
        Frame::from(format!("f{i}"))
    }

    #[tokio::test]
    async fn every_member_reads_every_frame_in_order() {
        let root = CancellationToken::new();
        let cohort = Cohort::new(8);
        let a = cohort.join(SessionSignal::new(&root));
        let b = cohort.join(SessionSignal::new(&root));
        for i in 0..5 {
            assert_eq!(cohort.push(&frame(i)).0, Push::Queued(2));
        }
        cohort.wake();
        for reader in [&a, &b] {
            let mut got = Vec::new();
            assert!(reader.next_batch(&mut got, 3).await);
            assert!(reader.next_batch(&mut got, 3).await);
            let got: Vec<&str> = got.iter().map(|f| f.as_str()).collect();
            assert_eq!(got, ["f0", "f1", "f2", "f3", "f4"]);
        }
    }

    #[tokio::test]
    async fn a_late_joiner_sees_only_later_frames() {
        let root = CancellationToken::new();
        let cohort = Cohort::new(8);
        let _a = cohort.join(SessionSignal::new(&root));
        cohort.push(&frame(0));
        let b = cohort.join(SessionSignal::new(&root));
        cohort.push(&frame(1));
        let mut got = Vec::new();
        assert!(b.next_batch(&mut got, 8).await);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].as_str(), "f1");
    }

    #[tokio::test]
    async fn read_frames_are_trimmed_and_capacity_bounds_the_log() {
        let root = CancellationToken::new();
        let cohort = Cohort::new(4);
        let a = cohort.join(SessionSignal::new(&root));
        for i in 0..4 {
            assert!(matches!(cohort.push(&frame(i)).0, Push::Queued(1)));
        }
        assert_eq!(cohort.push(&frame(4)).0, Push::Full);
        let mut got = Vec::new();
        assert!(a.next_batch(&mut got, 2).await);
        // Two read: two slots free again.
        assert!(matches!(cohort.push(&frame(4)).0, Push::Queued(1)));
        assert!(matches!(cohort.push(&frame(5)).0, Push::Queued(1)));
        assert_eq!(cohort.push(&frame(6)).0, Push::Full);
        got.clear();
        assert!(a.next_batch(&mut got, 8).await);
        let got: Vec<&str> = got.iter().map(|f| f.as_str()).collect();
        assert_eq!(got, ["f2", "f3", "f4", "f5"]);
    }

    #[tokio::test]
    async fn readers_are_woken_once_per_wake() {
        let root = CancellationToken::new();
        let cohort = Cohort::new(8);
        let a = cohort.join(SessionSignal::new(&root));
        let task = tokio::spawn(async move {
            let mut got = Vec::new();
            a.next_batch(&mut got, 8).await;
            got.len()
        });
        tokio::task::yield_now().await;
        let (_, first) = cohort.push(&frame(0));
        let (_, second) = cohort.push(&frame(1));
        assert!(first && !second, "a burst is marked once");
        cohort.wake();
        let n = task.await.unwrap();
        assert!(n >= 1);
    }

    #[tokio::test]
    async fn after_waiting_for_room_the_next_burst_is_still_marked_for_waking() {
        let root = CancellationToken::new();
        let cohort = Cohort::new(3);
        let a = cohort.join(SessionSignal::new(&root));
        for i in 0..3 {
            cohort.push(&frame(i));
        }
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < 5 && a.next_batch(&mut got, 8).await {}
            got.len()
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        assert_eq!(cohort.push_by(&frame(3), deadline).await, (1, 0));
        let (push, first) = cohort.push(&frame(4));
        assert!(matches!(push, Push::Queued(1)));
        assert!(first, "the hub must learn that this cohort needs a wake");
        cohort.wake();
        assert_eq!(reader.await.unwrap(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_member_is_closed_with_4008_and_the_others_go_on() {
        let root = CancellationToken::new();
        let cohort = Cohort::new(2);
        let stalled_signal = SessionSignal::new(&root);
        let _stalled = cohort.join(stalled_signal.clone());
        let live = cohort.join(SessionSignal::new(&root));
        cohort.push(&frame(0));
        cohort.push(&frame(1));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < 3 && live.next_batch(&mut got, 8).await {}
            got.len()
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let (queued, evicted) = cohort.push_by(&frame(2), deadline).await;
        assert_eq!((queued, evicted), (1, 1));
        assert!(stalled_signal.is_closing());
        assert_eq!(stalled_signal.code(), close_code::SLOW_CONSUMER);
        assert_eq!(reader.await.unwrap(), 3);
        assert_eq!(cohort.member_count(), 1);
    }

    /// `evict_laggards` drops a member before its writer stops reading, so the log can be trimmed
    /// past its cursor: here the writer's next read comes after the eviction and after the
    /// remaining member drove trimming past it (what `next_batch` sees when the eviction lands
    /// between its `is_closing` check and its `take`).
    #[tokio::test]
    async fn an_evicted_reader_trimmed_past_reads_nothing_and_ends() {
        let root = CancellationToken::new();
        let cohort = Cohort::new(2);
        let lagging_signal = SessionSignal::new(&root);
        let lagging = cohort.join(lagging_signal.clone());
        let live = cohort.join(SessionSignal::new(&root));
        cohort.push(&frame(0));
        cohort.push(&frame(1));
        let mut got = Vec::new();
        assert!(live.take(&mut got, 8));
        assert_eq!(cohort.evict_laggards(), 1);
        assert_eq!(cohort.member_count(), 1);
        for i in 2..6 {
            assert_eq!(cohort.push(&frame(i)).0, Push::Queued(1));
            assert!(live.take(&mut got, 8));
        }
        assert_eq!(got.len(), 6, "the remaining member reads on");
        let first = cohort.log.read().first;
        assert!(lagging.member.cursor.load(Ordering::Acquire) < first);

        let mut missed = Vec::new();
        assert!(!lagging.take(&mut missed, 8));
        assert!(!lagging.take(&mut missed, 1));
        assert!(!lagging.next_batch(&mut missed, 8).await);
        assert!(
            missed.is_empty(),
            "trimmed frames are gone, later ones are not its"
        );
        assert!(lagging_signal.is_closing());
        assert_eq!(lagging_signal.code(), close_code::SLOW_CONSUMER);
    }

    /// A failing plugin closed the cohort (4010), then the push of its `error` frame timed out and
    /// evicted the members, which emptied the log: `ws::session` still drains its reader before
    /// closing with 4010.
    #[tokio::test]
    async fn an_evicted_reader_keeps_the_first_close_code() {
        let root = CancellationToken::new();
        let cohort = Cohort::new(1);
        let signal = SessionSignal::new(&root);
        let reader = cohort.join(signal.clone());
        cohort.push(&frame(0));
        cohort.close_all(close_code::PLUGIN_FAILING, None);
        assert_eq!(cohort.evict_laggards(), 1);
        assert_eq!(cohort.push(&frame(1)).0, Push::Queued(0));

        let mut rest = Vec::new();
        while reader.take(&mut rest, 64) {}
        assert!(rest.is_empty());
        assert!(!reader.next_batch(&mut rest, 64).await);
        assert_eq!(signal.code(), close_code::PLUGIN_FAILING);
    }

    #[tokio::test]
    async fn closing_ends_the_reader() {
        let root = CancellationToken::new();
        let cohort = Cohort::new(2);
        let signal = SessionSignal::new(&root);
        let a = cohort.join(signal.clone());
        let task = tokio::spawn(async move { a.next_batch(&mut Vec::new(), 8).await });
        tokio::task::yield_now().await;
        cohort.close_all(close_code::PLUGIN_FAILING, None);
        assert!(cohort.is_closed());
        assert!(!task.await.unwrap());
        assert_eq!(signal.code(), close_code::PLUGIN_FAILING);
    }
}
