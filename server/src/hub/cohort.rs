//! Cohorts: the subscriptions of one table that asked for exactly the same thing (operations,
//! conditions, `select=`, plugin group). A change is evaluated and framed once per cohort and
//! appended once to the cohort's bounded log; each member session reads the log from its own
//! cursor. So fan-out to N identical subscribers costs one append plus N cursor reads, and
//! writers are woken once per burst of changes, not once per frame.
//!
//! The log is only the in-memory tail of the stream: appending never waits. When it is full,
//! the members still holding its oldest frame are detached (their reader reports `Next::Behind`)
//! and go on from the journal at their own pace (see `ws::session`). Does not write to sockets
//! and does not read the journal.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::task::AtomicWaker;
use parking_lot::{Mutex, RwLock};

use crate::vocab::{Frame, Pos, SessionSignal};

use super::schema_events::Rebinding;

/// How many frames may pile up past the slowest reader before the log scans its members to drop
/// what everyone has read. Scanning costs one atomic load per member, so it is amortised over
/// this many appends.
const TRIM_SLACK: usize = 32;

/// One frame of the log and the stream position of the change it is about (`None` for a frame
/// about no one change, such as a `gap`): a member that falls behind resumes from the journal
/// right after the last position it took.
#[derive(Clone, Debug)]
pub struct Entry {
    pub pos: Option<Pos>,
    pub frame: Frame,
}

/// The frames not yet read by every member. `first` is the sequence number of `frames[0]`.
struct Log {
    first: u64,
    frames: VecDeque<Entry>,
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
    /// The log was full while this member still held its oldest frame: it was dropped from the
    /// cohort and reads nothing more from it.
    behind: AtomicBool,
}

/// What a reader got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Frames were appended to the caller's buffer.
    Frames,
    /// The session was told to close.
    Closed,
    /// The reader fell behind the log and was detached: what follows the last frame it took
    /// must come from the journal.
    Behind,
}

pub struct Cohort {
    log: RwLock<Log>,
    members: Mutex<Vec<Arc<Member>>>,
    capacity: usize,
    /// Frames were appended since the members were last woken.
    unwoken: AtomicBool,
    /// Every member was told to close (its plugin kept failing): the hub offers it nothing more
    /// and new subscribers with the same request get a fresh cohort.
    closed: AtomicBool,
    /// The filter and binding the last schema event carried the cohort to: a member that
    /// leaves for the journal reads on with it.
    rebound: Mutex<Option<Rebinding>>,
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
            unwoken: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            rebound: Mutex::new(None),
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
            behind: AtomicBool::new(false),
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
        members.len()
    }

    pub fn member_count(&self) -> usize {
        self.members.lock().len()
    }

    /// Append without waiting and without waking anyone (see `wake`). When the log is full, the
    /// members holding its oldest frame are detached first (see `Next::Behind`). Returns how
    /// many members will read the frame, how many were detached, and whether the cohort had not
    /// been marked unwoken yet (so the caller remembers it once per burst).
    pub fn push(&self, pos: Option<Pos>, frame: &Frame) -> Pushed {
        let mut log = self.log.write();
        let mut detached = 0;
        if log.frames.len() >= log.trim_at || log.frames.len() >= self.capacity {
            let mut members = self.members.lock();
            log.trim(&members);
            if log.frames.len() >= self.capacity {
                detached = detach_oldest(&log, &mut members);
                log.trim(&members);
            }
        }
        log.frames.push_back(Entry {
            pos,
            frame: frame.clone(),
        });
        drop(log);
        let first_mark = !self.unwoken.swap(true, Ordering::AcqRel);
        Pushed {
            readers: self.member_count(),
            detached,
            first_mark,
        }
    }

    /// Wake every member if frames were appended since the last wake.
    pub fn wake(&self) {
        if self.unwoken.swap(false, Ordering::AcqRel) {
            for m in self.members.lock().iter() {
                m.waker.wake();
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Remember what a schema event carried the cohort to.
    pub fn set_rebound(&self, rebinding: Rebinding) {
        *self.rebound.lock() = Some(rebinding);
    }

    pub fn rebound(&self) -> Option<Rebinding> {
        self.rebound.lock().clone()
    }

    /// Close every member with `code` and `reason`, the error frame that explains it already in
    /// the log: the session sends the log's frames first and no error frame of its own.
    pub fn end_explained(&self, code: u16, reason: &str) {
        self.closed.store(true, Ordering::Release);
        for m in self.members.lock().iter() {
            m.signal.close_explained(code, reason);
            m.waker.wake();
        }
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

/// Outcome of `Cohort::push`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pushed {
    pub readers: usize,
    pub detached: usize,
    pub first_mark: bool,
}

/// Drop (and wake) every member that has not read the log's oldest frame. Called with the log
/// write-locked, so no reader moves meanwhile.
fn detach_oldest(log: &Log, members: &mut Vec<Arc<Member>>) -> usize {
    let before = members.len();
    members.retain(|m| {
        let behind = m.cursor.load(Ordering::Acquire) <= log.first;
        if behind {
            m.behind.store(true, Ordering::Release);
            m.waker.wake();
        }
        !behind
    });
    before - members.len()
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

    pub(crate) fn cohort(&self) -> &Arc<Cohort> {
        &self.cohort
    }

    /// Wait for frames and move up to `max` of them into `out` (appended in order).
    pub async fn next_batch(&self, out: &mut Vec<Entry>, max: usize) -> Next {
        std::future::poll_fn(|cx| self.poll_next(cx, out, max)).await
    }

    /// `next_batch` as a poll, for a task that waits on several readers at once.
    pub fn poll_next(
        &self,
        cx: &mut std::task::Context<'_>,
        out: &mut Vec<Entry>,
        max: usize,
    ) -> std::task::Poll<Next> {
        if self.member.signal.is_closing() {
            return std::task::Poll::Ready(Next::Closed);
        }
        if let Some(next) = self.take(out, max) {
            return std::task::Poll::Ready(next);
        }
        // Register first, then look again: an append and wake in between is not lost.
        self.member.waker.register(cx.waker());
        if self.member.signal.is_closing() {
            return std::task::Poll::Ready(Next::Closed);
        }
        match self.take(out, max) {
            None => std::task::Poll::Pending,
            Some(next) => std::task::Poll::Ready(next),
        }
    }

    /// Move up to `max` waiting frames into `out` without waiting: `None` when none were
    /// waiting, `Some(Next::Behind)` (for good) once the reader was detached.
    pub fn take(&self, out: &mut Vec<Entry>, max: usize) -> Option<Next> {
        let log = self.cohort.log.read();
        // Read under the log lock: detaching happens under its write lock, so a reader that is
        // not behind here still finds every frame after its cursor in the log.
        if self.member.behind.load(Ordering::Acquire) {
            return Some(Next::Behind);
        }
        let cursor = self.member.cursor.load(Ordering::Acquire);
        let from = cursor.saturating_sub(log.first) as usize;
        let n = log.frames.len().saturating_sub(from).min(max);
        if n == 0 {
            return None;
        }
        out.extend(log.frames.range(from..from + n).cloned());
        drop(log);
        self.member
            .cursor
            .store(cursor + n as u64, Ordering::Release);
        Some(Next::Frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::{close_code, Lsn};
    use tokio_util::sync::CancellationToken;

    fn frame(i: usize) -> Frame {
        Frame::from(format!("f{i}"))
    }

    fn pos(i: usize) -> Pos {
        Pos::new(Lsn(100), i as u32 + 1)
    }

    fn push(cohort: &Cohort, i: usize) -> Pushed {
        cohort.push(Some(pos(i)), &frame(i))
    }

    fn texts(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.frame.as_str()).collect()
    }

    #[tokio::test]
    async fn every_member_reads_every_frame_in_order() {
        let root = CancellationToken::new();
        let cohort = Cohort::new(8);
        let a = cohort.join(SessionSignal::new(&root));
        let b = cohort.join(SessionSignal::new(&root));
        for i in 0..5 {
            assert_eq!(push(&cohort, i).readers, 2);
        }
        cohort.wake();
        for reader in [&a, &b] {
            let mut got = Vec::new();
            assert_eq!(reader.next_batch(&mut got, 3).await, Next::Frames);
            assert_eq!(reader.next_batch(&mut got, 3).await, Next::Frames);
            assert_eq!(texts(&got), ["f0", "f1", "f2", "f3", "f4"]);
            assert_eq!(got[4].pos, Some(pos(4)));
        }
    }

    #[tokio::test]
    async fn a_late_joiner_sees_only_later_frames() {
        let root = CancellationToken::new();
        let cohort = Cohort::new(8);
        let _a = cohort.join(SessionSignal::new(&root));
        push(&cohort, 0);
        let b = cohort.join(SessionSignal::new(&root));
        push(&cohort, 1);
        let mut got = Vec::new();
        assert_eq!(b.next_batch(&mut got, 8).await, Next::Frames);
        assert_eq!(texts(&got), ["f1"]);
    }

    #[tokio::test]
    async fn read_frames_are_trimmed_and_capacity_bounds_the_log() {
        let root = CancellationToken::new();
        let cohort = Cohort::new(4);
        let a = cohort.join(SessionSignal::new(&root));
        for i in 0..4 {
            assert_eq!(push(&cohort, i).detached, 0);
        }
        let mut got = Vec::new();
        assert_eq!(a.take(&mut got, 2), Some(Next::Frames));
        // Two read: two slots free again, nobody detached.
        assert_eq!(push(&cohort, 4).detached, 0);
        assert_eq!(push(&cohort, 5).detached, 0);
        assert!(cohort.log.read().frames.len() <= 4);
        assert_eq!(a.take(&mut got, 8), Some(Next::Frames));
        assert_eq!(texts(&got), ["f0", "f1", "f2", "f3", "f4", "f5"]);
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
        let first = push(&cohort, 0).first_mark;
        let second = push(&cohort, 1).first_mark;
        assert!(first && !second, "a burst is marked once");
        cohort.wake();
        let n = task.await.unwrap();
        assert!(n >= 1);
    }

    /// The log never makes the producer wait: the member holding the oldest frame of a full log
    /// is detached and told so, the others read on, and the log stays within its capacity.
    #[tokio::test]
    async fn a_full_log_detaches_the_laggard_and_never_waits() {
        let root = CancellationToken::new();
        let cohort = Cohort::new(4);
        let lagging = cohort.join(SessionSignal::new(&root));
        let live = cohort.join(SessionSignal::new(&root));
        let mut lagged = Vec::new();
        push(&cohort, 0);
        assert_eq!(lagging.take(&mut lagged, 1), Some(Next::Frames));
        let mut got = Vec::new();
        let mut detached = 0;
        for i in 1..100 {
            let pushed = push(&cohort, i);
            detached += pushed.detached;
            assert_eq!(live.take(&mut got, 8), Some(Next::Frames));
            assert!(cohort.log.read().frames.len() <= 4);
        }
        assert_eq!(detached, 1);
        assert_eq!(cohort.member_count(), 1);
        assert_eq!(got.len(), 100, "the member that keeps up reads on");
        // The laggard learns it is behind, for good; the last frame it took says where the
        // journal must take over.
        assert_eq!(lagging.take(&mut lagged, 8), Some(Next::Behind));
        assert_eq!(lagging.next_batch(&mut lagged, 8).await, Next::Behind);
        assert_eq!(texts(&lagged), ["f0"]);
        assert_eq!(lagged[0].pos, Some(pos(0)));
    }

    /// A lone member that stops reading is detached too: the log's memory stays bounded.
    #[tokio::test]
    async fn a_lone_stalled_member_is_detached_and_its_frames_freed() {
        let root = CancellationToken::new();
        let cohort = Cohort::new(3);
        let stalled = cohort.join(SessionSignal::new(&root));
        for i in 0..10 {
            push(&cohort, i);
        }
        assert_eq!(cohort.member_count(), 0);
        assert!(cohort.log.read().frames.len() <= 3);
        assert_eq!(stalled.take(&mut Vec::new(), 8), Some(Next::Behind));
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
        assert_eq!(task.await.unwrap(), Next::Closed);
        assert_eq!(signal.code(), close_code::PLUGIN_FAILING);
    }
}
