//! Many WebSocket subscribers in this process: the open-file budget they need, opening them
//! concurrently from several loopback source addresses, and a lean receive loop per client that
//! feeds one shared latency histogram and checks that `pos` increases.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures_util::{stream, StreamExt, TryStreamExt};
use nix::sys::socket::{setsockopt, sockopt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use walcast_tests::Walcast;

use crate::measure::{frame_pos, frame_ts, now_micros, ts_micros, Histogram, Quantiles};

pub type Ws = WebSocketStream<TcpStream>;

/// Handshakes in flight while opening clients: enough to hide the round trips, few enough not to
/// overflow walcast's accept backlog.
const IN_FLIGHT: usize = 64;
/// Clients per loopback source address: one address has ~28,000 ephemeral ports.
const PER_SOURCE: usize = 20_000;
/// Per-client read buffer: a burst of ten frames fits.
const READ_BUFFER: usize = 8 * 1024;
/// Sockets beyond the clients that each process needs (Postgres connections, files, epoll).
const HEADROOM: u64 = 512;

/// This process' open-file limit after raising the soft limit to the hard one. walcast is spawned
/// by the bench, so it inherits the same limit.
fn fd_limit() -> u64 {
    static LIMIT: OnceLock<u64> = OnceLock::new();
    *LIMIT.get_or_init(|| match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(got) => got,
        Err(e) => {
            eprintln!("walcast-bench: cannot raise the open-file limit: {e}");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(1024)
        }
    })
}

/// How many of each of `wanted` client counts can be measured, and a note for each count the OS
/// refuses (the largest round count that fits is measured instead). Callers print the notes under
/// the table title, so a reader sees why a row differs from the command line.
pub fn fit_all(wanted: &[usize]) -> (Vec<usize>, Vec<String>) {
    let limit = fd_limit();
    let mut notes = Vec::new();
    let counts = wanted
        .iter()
        .map(|&n| {
            if n as u64 + HEADROOM <= limit {
                return n;
            }
            let fits = if limit > 2_000 {
                (limit - 1_000) / 1_000 * 1_000
            } else {
                limit.saturating_sub(HEADROOM).max(1)
            } as usize;
            notes.push(format!(
                "# {n} clients refused by the OS: open-file hard limit is {limit} per process \
                 (walcast and this bench each hold one socket per client); measuring {fits} instead"
            ));
            fits
        })
        .collect();
    (counts, notes)
}

/// Opens `n` clients, client `i` on `/ws?{query(i)}`, each counted once its `subscribed` frame
/// arrived (from then on every commit reaches it). Returned in index order.
pub async fn open(server: &Walcast, n: usize, query: impl Fn(usize) -> String) -> Result<Vec<Ws>> {
    open_paths(server, n, |i| format!("/ws?{}", query(i)), true).await
}

/// Opens `n` `/listen/...` sockets, socket `i` on `path(i)`, each counted once upgraded (walcast
/// answers the upgrade only once the LISTEN is in effect; no frame follows). Index order.
pub async fn open_listeners(
    server: &Walcast,
    n: usize,
    path: impl Fn(usize) -> String,
) -> Result<Vec<Ws>> {
    open_paths(server, n, path, false).await
}

/// Opens `n` clients, client `i` on `path(i)` (from `/`), `IN_FLIGHT` handshakes at a time, each
/// waiting for its `subscribed` frame when `subscribed`. Returned in index order.
async fn open_paths(
    server: &Walcast,
    n: usize,
    path: impl Fn(usize) -> String,
    subscribed: bool,
) -> Result<Vec<Ws>> {
    let addr = server.addr();
    let base = server.ws_base();
    let mut opened: Vec<(usize, Ws)> = stream::iter(0..n)
        .map(|i| {
            let url = format!("{base}{}", path(i));
            async move {
                let source = source_addr(i);
                let ws = if subscribed {
                    open_one(addr, &url, source).await
                } else {
                    upgrade(addr, &url, source, None).await
                }
                .with_context(|| format!("client {i} of {n} ({url})"))?;
                anyhow::Ok((i, ws))
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_collect()
        .await?;
    opened.sort_unstable_by_key(|(i, _)| *i);
    Ok(opened.into_iter().map(|(_, ws)| ws).collect())
}

/// 127.0.0.2, 127.0.0.3, ...: each source address has its own ephemeral ports.
fn source_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (i / PER_SOURCE) as u8)
}

/// One client: TCP from `source`, WebSocket upgrade, then the `subscribed` frame.
pub async fn open_one(server: SocketAddr, url: &str, source: Ipv4Addr) -> Result<Ws> {
    open_one_with(server, url, source, None).await
}

/// `open_one` with the kernel receive buffer (`SO_RCVBUF`) fixed at `rcvbuf` bytes (Linux doubles
/// the value and turns off receive autotuning for the socket) and tungstenite's read chunk cut to
/// the same size: a client that reads slowly then holds a few KiB of frames, not megabytes.
pub async fn open_one_with(
    server: SocketAddr,
    url: &str,
    source: Ipv4Addr,
    rcvbuf: Option<u32>,
) -> Result<Ws> {
    let mut ws = upgrade(server, url, source, rcvbuf).await?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.starts_with("{\"type\":\"subscribed\"") => Ok(ws),
        other => bail!("expected a subscribed frame, got {other:?}"),
    }
}

/// TCP from `source` and the WebSocket upgrade, as `open_one_with` (without waiting for a frame).
async fn upgrade(
    server: SocketAddr,
    url: &str,
    source: Ipv4Addr,
    rcvbuf: Option<u32>,
) -> Result<Ws> {
    let socket = TcpSocket::new_v4()?;
    if let Some(bytes) = rcvbuf {
        // Before connect: the window scale is agreed in the handshake.
        socket.set_recv_buffer_size(bytes).context("SO_RCVBUF")?;
    }
    // Ports of the previous run's clients linger in TIME_WAIT; reuse lets the next run bind them.
    socket.set_reuseaddr(true)?;
    // Choose the port at connect time, by the whole 4-tuple: a port reserved at bind time would be
    // taken from the range every other connection on the machine (walcast to Postgres) draws from,
    // and 19,000 clients plus the previous run's TIME_WAIT ones exhaust it.
    setsockopt(&socket, sockopt::IpBindAddressNoPort, &true).context("IP_BIND_ADDRESS_NO_PORT")?;
    socket
        .bind(SocketAddrV4::new(source, 0).into())
        .with_context(|| format!("cannot bind {source}:0"))?;
    let tcp = socket.connect(server).await.context("connect")?;
    tcp.set_nodelay(true)?;
    // tungstenite's default read buffer is 128 KiB and is zeroed on every read attempt: with
    // thousands of clients that memset, not the frames, would be the bench's main cost (and
    // inflate every latency it reports). Frames here are a few hundred bytes.
    let read_buffer = rcvbuf.map_or(READ_BUFFER, |b| READ_BUFFER.min(b as usize));
    let config = WebSocketConfig::default().read_buffer_size(read_buffer);
    let (ws, _) = match tokio_tungstenite::client_async_with_config(url, tcp, Some(config)).await {
        Ok(ok) => ok,
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp.body().as_deref().map(String::from_utf8_lossy);
            bail!(
                "upgrade refused with {}: {}",
                resp.status(),
                body.unwrap_or_default()
            );
        }
        Err(e) => return Err(e).context("WebSocket upgrade"),
    };
    Ok(ws)
}

/// How every change frame starts (and nothing else does).
pub const CHANGE: &str = "{\"type\":\"change\"";
const ERROR: &str = "{\"type\":\"error\"";

/// Progress shared by all clients of a fleet.
struct Tally {
    frames: AtomicU64,
    /// Clients that have not yet received all the frames they expect.
    pending: AtomicUsize,
    all_in: Notify,
    latency: Histogram,
}

/// What one client saw.
#[derive(Default)]
struct Receipt {
    frames: u64,
    expected: u64,
    last_us: i64,
    wrong_key: u64,
    /// Change frames whose `pos` is not above the previous frame's.
    unordered: u64,
    errors: u64,
    ended: Option<String>,
}

/// Receiving clients, each in its own task, until `finish`.
pub struct Fleet {
    tasks: Vec<JoinHandle<Receipt>>,
    tally: Arc<Tally>,
    stop: watch::Sender<bool>,
}

/// Totals of a fleet after `finish`.
#[derive(Debug, Default)]
pub struct FleetReport {
    /// Change frames received, by all clients.
    pub frames: u64,
    pub expected: u64,
    /// When the last change frame arrived (wall clock µs), 0 if none did.
    pub last_us: i64,
    /// Clients that received fewer / more frames than they expect.
    pub short: usize,
    pub over: usize,
    /// Frames for another key than the client's (`selective`).
    pub wrong_key: u64,
    /// Change frames whose `pos` was not above the previous one of the same client.
    pub unordered: u64,
    pub error_frames: u64,
    /// Clients that did not get exactly their expected frames, each for their key and in
    /// increasing `pos` order, without error frames.
    pub failed: usize,
    /// Clients whose connection ended before `finish`, and one reason.
    pub ended: usize,
    pub ended_reason: Option<String>,
    pub latency: Quantiles,
}

impl FleetReport {
    /// Deliveries per second from `start_us` (first commit) to the last delivery.
    pub fn msgs_per_s(&self, start_us: i64) -> f64 {
        self.frames as f64 / ((self.last_us - start_us) as f64 / 1e6).max(1e-6)
    }

    /// Share of the expected deliveries that arrived.
    pub fn fraction(&self) -> f64 {
        self.frames as f64 / self.expected.max(1) as f64
    }

    /// A stderr line on anything but exactly the expected frames at every client.
    pub fn warn_if_incomplete(&self, what: &str) {
        if self.failed == 0 {
            return;
        }
        eprintln!(
            "  {what}: {} of {} frames; {} clients short, {} over, {} wrong-key frames, \
             {} out-of-order frames, {} error frames, {} connections ended{}",
            self.frames,
            self.expected,
            self.short,
            self.over,
            self.wrong_key,
            self.unordered,
            self.error_frames,
            self.ended,
            self.ended_reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
    }
}

impl Fleet {
    /// Starts receiving on every client; client `i` expects `expected(i)` change frames and, with
    /// `key`, only frames whose `new.id` is `key(i)`.
    pub fn spawn(
        clients: Vec<Ws>,
        expected: impl Fn(usize) -> u64,
        key: Option<&dyn Fn(usize) -> i64>,
    ) -> Fleet {
        let counts: Vec<u64> = (0..clients.len()).map(&expected).collect();
        let tally = Arc::new(Tally {
            frames: AtomicU64::new(0),
            pending: AtomicUsize::new(counts.iter().filter(|c| **c > 0).count()),
            all_in: Notify::new(),
            latency: Histogram::new(),
        });
        if tally.pending.load(Ordering::Relaxed) == 0 {
            tally.all_in.notify_one();
        }
        let (stop, stopped) = watch::channel(false);
        let tasks = clients
            .into_iter()
            .enumerate()
            .map(|(i, ws)| {
                let k = key.map(|f| f(i));
                tokio::spawn(receive(ws, counts[i], k, tally.clone(), stopped.clone()))
            })
            .collect();
        Fleet { tasks, tally, stop }
    }

    /// Change frames received so far, by all clients.
    pub fn frames(&self) -> u64 {
        self.tally.frames.load(Ordering::Relaxed)
    }

    /// Waits until every client has its expected frames (true), or until no frame arrived for
    /// `stall` (false: some were lost, or a client was closed).
    pub async fn wait_all(&self, stall: Duration) -> bool {
        wait_quiet(&self.tally.all_in, &self.tally.frames, stall).await
    }

    /// Stops every client (dropping its connection) and adds up what they saw.
    pub async fn finish(self) -> Result<FleetReport> {
        let _ = self.stop.send(true);
        let mut r = FleetReport::default();
        for task in self.tasks {
            let c = task.await.context("client task")?;
            r.frames += c.frames;
            r.expected += c.expected;
            r.last_us = r.last_us.max(c.last_us);
            r.short += usize::from(c.frames < c.expected);
            r.over += usize::from(c.frames > c.expected);
            r.wrong_key += c.wrong_key;
            r.unordered += c.unordered;
            r.error_frames += c.errors;
            r.failed +=
                usize::from(c.frames != c.expected || c.wrong_key + c.unordered + c.errors > 0);
            if let Some(reason) = c.ended {
                r.ended += 1;
                r.ended_reason.get_or_insert(reason);
            }
        }
        r.latency = self.tally.latency.quantiles();
        Ok(r)
    }
}

/// The per-client loop. Kept lean (one clock read, byte searches for `ts` and `pos`, one timestamp
/// parse per transaction) so the bench's own 2-core share does not cap what walcast delivers.
async fn receive(
    mut ws: Ws,
    expected: u64,
    key: Option<i64>,
    tally: Arc<Tally>,
    mut stop: watch::Receiver<bool>,
) -> Receipt {
    let mut r = Receipt {
        expected,
        ..Receipt::default()
    };
    let stopped = stop.changed();
    tokio::pin!(stopped);
    // Shared counters are touched once per `FLUSH` frames, not per frame: 19,000 clients on two
    // threads bumping the same cache lines would cost more than walcast's side of a delivery.
    let mut unflushed = 0u64;
    let mut latencies: Vec<u64> = Vec::new();
    // Rows of one transaction carry the same commit `ts`: parse it once.
    let mut last_ts = (String::new(), 0i64);
    // Positions are fixed-width hex: text order is position order.
    let mut last_pos = String::new();
    loop {
        let msg = tokio::select! {
            _ = &mut stopped => break,
            msg = ws.next() => msg,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(cf))) => {
                r.ended = Some(format!("closed: {cf:?}"));
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                r.ended = Some(e.to_string());
                break;
            }
            None => {
                r.ended = Some("end of stream".into());
                break;
            }
        };
        if !text.starts_with(CHANGE) {
            r.errors += u64::from(text.starts_with(ERROR));
            continue;
        }
        let now = now_micros();
        r.frames += 1;
        r.last_us = now;
        unflushed += 1;
        if let Some(ts) = frame_ts(&text) {
            if ts != last_ts.0 {
                if let Some(commit) = ts_micros(ts) {
                    last_ts = (ts.to_owned(), commit);
                }
            }
            if ts == last_ts.0 {
                latencies.push((now - last_ts.1).max(0) as u64);
            }
        }
        if key.is_some() && new_id(&text) != key {
            r.wrong_key += 1;
        }
        if let Some(pos) = frame_pos(&text) {
            r.unordered += u64::from(pos <= last_pos.as_str());
            last_pos.clear();
            last_pos.push_str(pos);
        }
        if unflushed >= FLUSH || r.frames == expected {
            flush(&tally, &mut unflushed, &mut latencies);
        }
        if r.frames == expected && tally.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            tally.all_in.notify_one();
        }
    }
    flush(&tally, &mut unflushed, &mut latencies);
    r
}

/// Frames a client counts locally before adding them to the fleet's totals.
const FLUSH: u64 = 64;

fn flush(tally: &Tally, unflushed: &mut u64, latencies: &mut Vec<u64>) {
    tally.frames.fetch_add(*unflushed, Ordering::Relaxed);
    *unflushed = 0;
    for micros in latencies.drain(..) {
        tally.latency.record(micros);
    }
}

/// `new.id` of a change frame, by byte search (the `id` column comes first in `new`).
fn new_id(frame: &str) -> Option<i64> {
    const KEY: &str = "\"new\":{\"id\":";
    let start = frame.find(KEY)? + KEY.len();
    let digits = frame[start..]
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'-')
        .count();
    frame[start..start + digits].parse().ok()
}

/// Waits until `done` is notified (true), or until `frames` did not move for `stall` (false).
pub async fn wait_quiet(done: &Notify, frames: &AtomicU64, stall: Duration) -> bool {
    let mut seen = frames.load(Ordering::Relaxed);
    let mut quiet = Duration::ZERO;
    let tick = Duration::from_millis(250);
    loop {
        tokio::select! {
            _ = done.notified() => return true,
            _ = tokio::time::sleep(tick) => {}
        }
        let now = frames.load(Ordering::Relaxed);
        quiet = if now == seen {
            quiet + tick
        } else {
            Duration::ZERO
        };
        seen = now;
        if quiet >= stall {
            return false;
        }
    }
}
