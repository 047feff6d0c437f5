//! The one `Engine` + `Linker` of the process with its epoch ticker, module compilation and
//! validation into a pre-linked `ModuleVersion`, and instances (one `Store` each) with their
//! limits and deadline-bounded calls. Does not know about plugin names on disk (see `registry`)
//! or verdict bookkeeping (see `group`).
//!
//! Why epochs and not fuel: epoch interruption costs a load and a compare at loop headers and
//! function entries, fuel costs a counter update per instruction (several times slower guests).
//! The deadline only needs to be coarse (milliseconds), which is what one ticker thread bumping
//! the engine's epoch every millisecond gives.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module, OptLevel,
    PoolingAllocationConfig, Store, StoreLimitsBuilder, Trap, TypedFunc, WasmBacktrace,
};

use parking_lot::Mutex;

use super::abi::{self, EXPORT_ABI_VERSION, EXPORT_FILTER, EXPORT_INIT, EXPORT_MEMORY};
use super::error::one_line;
use super::quota::Slots;
use super::state::{Limiter, LogSink, StoreData};
use super::PluginError;
use crate::config::PluginsConfig;

/// Epoch tick period of the ticker thread.
const TICK: Duration = Duration::from_millis(1);

/// Engine, linker, limits and the ticker, shared by the host and every group (so a group that
/// outlives the host still has its deadlines enforced).
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<StoreData>,
    pub(crate) cfg: PluginsConfig,
    /// The pool slots groups may hold (`plugins.max_instances` minus the reserve).
    pub(crate) slots: Arc<Slots>,
    /// The reserved slot of the reload probe: one validation at a time.
    probe: Mutex<()>,
    /// The reserved slot of a group moving to a new version (its old instance lives until the
    /// new one initialised): one group at a time, the others move at a later change.
    pub(crate) upgrade: Mutex<()>,
    /// Where the guests' `log` lines go (walcast's log; stderr for `walcast plugin run`).
    log_sink: LogSink,
    deadline_ticks: u64,
    _ticker: Ticker,
}

struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Shared {
    pub(crate) fn new(cfg: &PluginsConfig) -> Result<Arc<Shared>, PluginError> {
        Shared::with_log_sink(cfg, LogSink::Tracing)
    }

    /// Like `new`, with the guests' `log` lines sent to `log_sink`.
    pub(crate) fn with_log_sink(
        cfg: &PluginsConfig,
        log_sink: LogSink,
    ) -> Result<Arc<Shared>, PluginError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.max_wasm_stack(cfg.stack_limit);
        config.cranelift_opt_level(OptLevel::Speed);
        let mut pool = PoolingAllocationConfig::new();
        // One slot per live group, plus the reserve of `quota::RESERVED_SLOTS` (the reload
        // probe and a group moving to a new version); each reserves address space only.
        pool.total_core_instances(cfg.max_instances)
            .total_memories(cfg.max_instances)
            .total_tables(cfg.max_instances)
            .max_memory_size(cfg.memory_limit);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        // The pool reserves address space up front; where that is refused (a low `ulimit -v`),
        // fall back to allocating each instance on demand rather than running no plugins.
        let engine = match Engine::new(&config) {
            Ok(engine) => engine,
            Err(err) => {
                tracing::warn!(error = %err, "pooling allocator unavailable, allocating on demand");
                config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
                Engine::new(&config).map_err(|e| PluginError::Engine(e.to_string()))?
            }
        };
        let mut linker = Linker::new(&engine);
        super::linker::define(&mut linker).map_err(|e| PluginError::Engine(e.to_string()))?;

        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::Builder::new()
                .name("walcast-epoch".into())
                .spawn(move || {
                    // Count ticks from elapsed time, not from sleeps: a loaded machine oversleeps,
                    // and the deadline is meant in wall-clock milliseconds.
                    let start = Instant::now();
                    let mut ticks: u128 = 0;
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                        let due = start.elapsed().as_micros() / TICK.as_micros();
                        while ticks < due {
                            engine.increment_epoch();
                            ticks += 1;
                        }
                    }
                })
                .map_err(|e| PluginError::Engine(format!("epoch ticker thread: {e}")))?
        };
        // A deadline of N ticks expires between N-1 and N ms after it is set; +1 so a call always
        // gets at least the configured time.
        let ticks = cfg.call_deadline.as_micros().div_ceil(TICK.as_micros()) as u64 + 1;
        Ok(Arc::new(Shared {
            engine,
            linker,
            cfg: cfg.clone(),
            slots: Slots::new(cfg.max_instances),
            probe: Mutex::new(()),
            upgrade: Mutex::new(()),
            log_sink,
            deadline_ticks: ticks.max(2),
            _ticker: Ticker {
                stop,
                thread: Some(thread),
            },
        }))
    }

    fn setup_ticks(&self) -> u64 {
        self.deadline_ticks.max(SETUP_TICKS)
    }

    /// Compile and validate a module: imports and exports against the ABI, link, and one probe
    /// instance whose `walcast_abi_version` must return 1. Runs off the hot path. The error is
    /// one line (it goes to the log and `/v1/plugins` `last_error`).
    pub(crate) fn compile(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> Result<InstancePre<StoreData>, String> {
        self.validate(name, bytes).map_err(|e| one_line(&e))
    }

    fn validate(&self, name: &str, bytes: &[u8]) -> Result<InstancePre<StoreData>, String> {
        let module = Module::from_binary(&self.engine, bytes)
            .map_err(|e| format!("plugin \"{name}\" is not a loadable WebAssembly module (invalid, or beyond the configured limits): {e:#}"))?;
        abi::check_module(name, &module)?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| format!("plugin \"{name}\" does not link: {e:#}"))?;
        // The probe uses the reserved slot no group may take: a pool full of groups does not
        // stop a reload.
        let _probe_slot = self.probe.lock();
        let mut probe = self
            .instantiate(&pre, name.into(), Arc::from([]), Arc::default())
            .map_err(|e| format!("plugin \"{name}\" cannot be instantiated: {}", describe(&e)))?;
        let version = probe.call(&probe.abi_version.clone()).map_err(|e| {
            format!(
                "plugin \"{name}\": walcast_abi_version failed: {}",
                describe(&e)
            )
        })?;
        if version != abi::ABI_VERSION {
            return Err(abi::wrong_version(name, version));
        }
        Ok(pre)
    }

    /// A fresh instance (own store, limits, deadline) with params available to `walcast_init`.
    /// `grow_refused` counts its `memory.grow` calls refused at `plugins.memory_limit`.
    pub(crate) fn instantiate(
        &self,
        pre: &InstancePre<StoreData>,
        plugin: Arc<str>,
        params: Arc<[(String, String)]>,
        grow_refused: Arc<AtomicU64>,
    ) -> wasmtime::Result<Instance> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.cfg.memory_limit)
            .instances(1)
            .memories(1)
            .tables(4)
            .build();
        let data = StoreData::new(
            plugin,
            params,
            Limiter::new(limits, grow_refused),
            self.log_sink.clone(),
        );
        let mut store = Store::new(&self.engine, data);
        store.limiter(|d| &mut d.limits);
        store.epoch_deadline_trap();
        // A start function runs during instantiation: it gets the setup deadline, like init.
        store.set_epoch_deadline(self.setup_ticks());
        let instance = pre.instantiate(&mut store)?;
        let memory = instance
            .get_memory(&mut store, EXPORT_MEMORY)
            .ok_or_else(|| wasmtime::format_err!("no memory export"))?;
        store.data_mut().memory = Some(memory);
        Ok(Instance {
            abi_version: instance.get_typed_func(&mut store, EXPORT_ABI_VERSION)?,
            init: instance.get_typed_func(&mut store, EXPORT_INIT)?,
            filter: instance.get_typed_func(&mut store, EXPORT_FILTER)?,
            store,
            deadline_ticks: self.deadline_ticks,
        })
    }
}

/// Minimum deadline (ticks of 1 ms) for instantiation (start functions) and `walcast_init`.
const SETUP_TICKS: u64 = 100;

/// One guest instance and its store.
pub(crate) struct Instance {
    pub(crate) store: Store<StoreData>,
    abi_version: TypedFunc<(), i32>,
    init: TypedFunc<(), i32>,
    filter: TypedFunc<(), i32>,
    deadline_ticks: u64,
}

/// How a guest call failed.
pub(crate) enum CallError {
    /// The epoch deadline expired.
    Deadline,
    /// Any other trap (including a host function refusing a guest range).
    Trap(String),
}

impl Instance {
    fn call(&mut self, f: &TypedFunc<(), i32>) -> wasmtime::Result<i32> {
        self.store.set_epoch_deadline(self.deadline_ticks);
        self.store.data_mut().error.clear();
        f.call(&mut self.store, ())
    }

    /// `walcast_init` with the instance's params; `Err(message)` when it rejects or fails.
    /// Init runs once per instance, mostly off the hot path, so it gets the roomier setup
    /// deadline: a wall-clock deadline of a few ms would fail healthy plugins whose thread was
    /// merely descheduled on a busy machine.
    pub(crate) fn init(&mut self) -> Result<(), PluginError> {
        self.store.data_mut().change.clear();
        let plugin = self.store.data().plugin.clone();
        let init = self.init.clone();
        self.store
            .set_epoch_deadline(self.deadline_ticks.max(SETUP_TICKS));
        self.store.data_mut().error.clear();
        match init.call(&mut self.store, ()) {
            Ok(0) => Ok(()),
            Ok(code) => {
                let msg = &self.store.data().error;
                Err(PluginError::Rejected(if msg.is_empty() {
                    format!("plugin \"{plugin}\" rejected the subscription (walcast_init returned {code})")
                } else {
                    format!("plugin \"{plugin}\" rejected the subscription: {msg}")
                }))
            }
            Err(e) => Err(PluginError::Invalid(format!(
                "plugin \"{plugin}\" failed in walcast_init: {}",
                describe(&e)
            ))),
        }
    }

    /// `walcast_filter` on the change already copied into store data.
    pub(crate) fn filter(&mut self) -> Result<i32, CallError> {
        let result = self.call(&self.filter.clone());
        self.store.data_mut().change.clear();
        result.map_err(|e| match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => CallError::Deadline,
            _ => CallError::Trap(describe(&e)),
        })
    }
}

/// A short one-line text for a guest failure: the trap kind, or the host function's message
/// (the error's cause chain joined with ": "). The wasm backtrace wasmtime attaches as context
/// is left out: it spans lines and names code offsets, not the cause.
pub(crate) fn describe(err: &wasmtime::Error) -> String {
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => return "call deadline exceeded".to_owned(),
        Some(trap) => {
            let text = trap.to_string();
            return one_line(text.strip_prefix("wasm trap: ").unwrap_or(&text));
        }
        None => {}
    }
    let backtrace = err.downcast_ref::<WasmBacktrace>().map(|b| b.to_string());
    let causes: Vec<String> = err
        .chain()
        .map(|cause| cause.to_string())
        .filter(|text| backtrace.as_ref() != Some(text))
        .filter(|text| !text.starts_with("error while executing at wasm backtrace"))
        .collect();
    one_line(&causes.join(": "))
}
