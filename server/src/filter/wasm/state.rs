//! Per-instance store data (the change copy, params, output builder, error message, cached guest
//! memory, limits and where guest log lines go) and the checked access to guest memory. Does not
//! define host functions (see `linker`).

use std::io::Write;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use wasmtime::{Caller, Memory, ResourceLimiter, StoreLimits};

use super::output::OutBuilder;
use super::snapshot::ChangeCopy;

/// At most this much of a `set_error` message is kept (ABI.md).
const MAX_ERROR: usize = 1024;
/// `log` lines per second per instance before lines are dropped.
const LOG_PER_SECOND: u32 = 20;

/// The store's `StoreLimits`, plus a count of `memory.grow` calls refused at
/// `plugins.memory_limit`: the guest only sees -1, so without the count a plugin that runs out of
/// memory (and then misbehaves or traps) would look like a plugin bug.
pub(crate) struct Limiter {
    limits: StoreLimits,
    /// The plugin's counter (shared by all its instances; `/v1/plugins` `memory_grow_refused`).
    grow_refused: Arc<AtomicU64>,
}

impl Limiter {
    pub(crate) fn new(limits: StoreLimits, grow_refused: Arc<AtomicU64>) -> Self {
        Limiter {
            limits,
            grow_refused,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if !allowed {
            self.grow_refused.fetch_add(1, Ordering::Relaxed);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// Where guest `log` lines go.
#[derive(Clone, Default)]
pub(crate) enum LogSink {
    /// walcast's log (`tracing`, with the plugin name), rate-limited per instance.
    #[default]
    Tracing,
    /// `walcast plugin run`: every line, as `[plugin] level: text`, to this writer (stderr): a
    /// developer wants to see all of them, and one call is bounded by the deadline anyway.
    Writer(Arc<Mutex<dyn Write + Send>>),
}

impl LogSink {
    /// Every line to the process's stderr.
    pub(crate) fn stderr() -> LogSink {
        LogSink::Writer(Arc::new(Mutex::new(std::io::stderr())))
    }
}

/// Everything host functions need, owned by the instance's `Store`.
pub(crate) struct StoreData {
    pub(crate) limits: Limiter,
    pub(crate) log_sink: LogSink,
    /// Cached right after instantiation so host functions skip the export lookup.
    pub(crate) memory: Option<Memory>,
    pub(crate) plugin: Arc<str>,
    pub(crate) params: Arc<[(String, String)]>,
    pub(crate) change: ChangeCopy,
    pub(crate) out: OutBuilder,
    /// Last `set_error` message (reset before each call).
    pub(crate) error: String,
    /// Reusable buffer for `field_raw`.
    pub(crate) scratch: String,
    log_window: Instant,
    log_lines: u32,
    log_dropped: u64,
}

impl StoreData {
    pub(crate) fn new(
        plugin: Arc<str>,
        params: Arc<[(String, String)]>,
        limits: Limiter,
        log_sink: LogSink,
    ) -> Self {
        StoreData {
            limits,
            log_sink,
            memory: None,
            plugin,
            params,
            change: ChangeCopy::default(),
            out: OutBuilder::default(),
            error: String::new(),
            scratch: String::new(),
            log_window: Instant::now(),
            log_lines: 0,
            log_dropped: 0,
        }
    }

    pub(crate) fn set_error(&mut self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let mut end = text.len().min(MAX_ERROR);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.error.clear();
        self.error.push_str(&text[..end]);
    }

    /// Rate limit for guest `log` lines: `Some(dropped_since_last)` when this line may be written.
    pub(crate) fn log_permit(&mut self) -> Option<u64> {
        let now = Instant::now();
        if now.duration_since(self.log_window).as_secs() >= 1 {
            self.log_window = now;
            self.log_lines = 0;
        }
        if self.log_lines >= LOG_PER_SECOND {
            self.log_dropped += 1;
            return None;
        }
        self.log_lines += 1;
        Some(std::mem::take(&mut self.log_dropped))
    }
}

/// Guest memory and store data at once, so a host function can read a name from the guest and
/// look it up in the change copy without copying it.
pub(crate) fn split<'a>(
    caller: &'a mut Caller<'_, StoreData>,
) -> wasmtime::Result<(&'a mut [u8], &'a mut StoreData)> {
    let Some(memory) = caller.data().memory else {
        wasmtime::bail!("walcast_v1 function called before the guest memory was available");
    };
    Ok(memory.data_and_store_mut(caller))
}

/// The guest range `(ptr, len)` after checking it lies inside memory; out of range traps the
/// call (ABI.md "Memory ownership"). Both are read as unsigned, so a negative length is huge and
/// fails the check.
pub(crate) fn range(mem: &[u8], ptr: i32, len: i32) -> wasmtime::Result<Range<usize>> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(len as u32 as usize);
    match end {
        Some(end) if end <= mem.len() => Ok(start..end),
        _ => wasmtime::bail!(
            "guest passed the range ({ptr}, {len}) outside its {} byte memory",
            mem.len()
        ),
    }
}

/// Guest bytes at `(ptr, len)`.
pub(crate) fn bytes(mem: &[u8], ptr: i32, len: i32) -> wasmtime::Result<&[u8]> {
    let r = range(mem, ptr, len)?;
    Ok(&mem[r])
}

/// Copy `value` into the guest buffer `(ptr, cap)`: at most `cap` bytes, returns the full length.
pub(crate) fn copy_out(mem: &mut [u8], ptr: i32, cap: i32, value: &[u8]) -> wasmtime::Result<i32> {
    let r = range(mem, ptr, cap)?;
    let n = value.len().min(r.len());
    mem[r.start..r.start + n].copy_from_slice(&value[..n]);
    Ok(i32::try_from(value.len()).unwrap_or(i32::MAX))
}

/// Write 8 little-endian bytes at `ptr`.
pub(crate) fn write8(mem: &mut [u8], ptr: i32, value: [u8; 8]) -> wasmtime::Result<()> {
    let r = range(mem, ptr, 8)?;
    mem[r].copy_from_slice(&value);
    Ok(())
}
