//! A plugin group: the one instance serving every subscription with the same (plugin, params,
//! visible columns).
//! Runs `walcast_filter` per change, turns the result into a `Verdict`, replaces the instance after
//! a trap or deadline hit (reporting it to the plugin's status and log), remembers its last failure
//! for the 4010 close reason, and moves to a newly loaded module version at a change boundary.
//! Under a policy rule the group's instance sees only the rule's columns (see `visible`), on
//! live, catch-up and snapshot changes alike, since they all come through `evaluate`.
//! Does not know which sessions belong to it (see `hub`).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::abi::{DROP, ERROR, PASS, PASS_REWRITTEN};
use super::engine::{CallError, Instance, Shared};
use super::error::{one_line, truncate};
use super::plugin::{ModuleVersion, PluginEntry};
use super::quota::{LivePlace, Slot, RESERVED_SLOTS};
use super::visible::Visible;
use super::{PluginError, Rewrite, Verdict};
use crate::decode::{Change, Format, FrameEncoder};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Longest `failure_reason`: a WebSocket close reason holds at most 123 bytes.
const MAX_REASON: usize = 100;

pub struct PluginGroup {
    id: u64,
    shared: Arc<Shared>,
    pub(crate) plugin: Arc<PluginEntry>,
    params: Arc<[(String, String)]>,
    /// The columns its guest may see; `None`: every column.
    visible: Option<Arc<Visible>>,
    state: Mutex<State>,
    failures: AtomicU32,
    /// The message of the latest failed call (kept apart from `state` so reading it never waits
    /// for a running call).
    last_failure: Mutex<Option<String>>,
    /// A subscription of the group asked for `format=wal2json-v1`: rewrites are rendered in
    /// that format too.
    serves_v1: AtomicBool,
    /// The pool slot of the group's instance.
    _slot: Slot,
    /// The group's place among its plugin's groups (`limits.max_groups_per_plugin`); `None`
    /// outside the plugin host (`walcast plugin run`, tests).
    _place: Option<LivePlace>,
}

struct State {
    module: Arc<ModuleVersion>,
    /// `None` after a trap until the next evaluation re-instantiates.
    instance: Option<Instance>,
    /// A version whose `walcast_init` refused these params: not retried until a newer one loads.
    refused: u64,
    encoder: FrameEncoder,
}

impl PluginGroup {
    /// Take a pool slot, instantiate the plugin's current version and run `walcast_init` with
    /// `params`; the guest sees only the columns of `visible` (`None`: all).
    /// `PluginError::Capacity` when every slot groups may hold is taken.
    pub(crate) fn new(
        shared: Arc<Shared>,
        plugin: Arc<PluginEntry>,
        module: Arc<ModuleVersion>,
        params: Vec<(String, String)>,
        visible: Option<&[String]>,
        place: Option<LivePlace>,
    ) -> Result<Arc<PluginGroup>, PluginError> {
        let slot = shared.slots.acquire().ok_or_else(|| {
            PluginError::Capacity(format!(
                "plugin \"{}\": the plugin instance pool is full ({} groups run; \
                 plugins.max_instances = {}, of which {RESERVED_SLOTS} are kept for reloads); \
                 retry once groups close, or raise plugins.max_instances",
                plugin.name,
                shared.slots.capacity(),
                shared.cfg.max_instances,
            ))
        })?;
        let params: Arc<[(String, String)]> = params.into();
        let visible = visible.map(|names| Arc::new(Visible::new(names)));
        let instance = start(&shared, &plugin, &module, &params, &visible)?;
        Ok(Arc::new(PluginGroup {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            shared,
            plugin,
            params,
            visible,
            state: Mutex::new(State {
                module,
                instance: Some(instance),
                refused: 0,
                encoder: FrameEncoder::new(),
            }),
            failures: AtomicU32::new(0),
            last_failure: Mutex::new(None),
            serves_v1: AtomicBool::new(false),
            _slot: slot,
            _place: place,
        }))
    }

    /// Stable per group, for per-change verdict caching in the hub.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The plugin's name (for logs and error frames).
    pub fn plugin_name(&self) -> &str {
        &self.plugin.name
    }

    /// Consecutive failed calls reached `plugins.max_failures`: the hub closes the group's
    /// sessions with 4010.
    pub fn failing(&self) -> bool {
        let max = self.shared.cfg.max_failures;
        max > 0 && self.failures.load(Ordering::Relaxed) >= max
    }

    /// Why the group is failing, for the 4010 close frame: the latest failure on one line, naming
    /// the plugin and the cause (e.g. `plugin "threshold" exceeded its call deadline of 10 ms`),
    /// at most 100 bytes (cut on a char boundary). `None` before any call failed.
    pub fn failure_reason(&self) -> Option<String> {
        let last = self.last_failure.lock();
        last.as_deref()
            .map(|msg| truncate(&one_line(msg), MAX_REASON))
    }

    /// Run the plugin on one change for the whole group. Called synchronously by the hub's
    /// dispatch; bounded by the call deadline.
    pub fn evaluate(&self, change: &Change<'_>) -> Verdict {
        if change.op().is_none() {
            return Verdict::Pass;
        }
        let mut guard = self.state.lock();
        let st = &mut *guard;
        self.upgrade(st);
        if st.instance.is_none() {
            match start(
                &self.shared,
                &self.plugin,
                &st.module,
                &self.params,
                &self.visible,
            ) {
                Ok(i) => st.instance = Some(i),
                Err(e) => {
                    let msg = e.to_string();
                    self.plugin.call_failed(&msg);
                    return self.fail(msg);
                }
            }
        }
        let Some(instance) = st.instance.as_mut() else {
            return self.fail(format!("plugin \"{}\" has no instance", self.plugin.name));
        };
        {
            let data = instance.store.data_mut();
            data.change.fill(change);
            data.out.reset();
        }
        let started = Instant::now();
        let result = instance.filter();
        let metrics = &self.plugin.metrics;
        metrics.record_call(started.elapsed());
        let name = &self.plugin.name;
        match result {
            Ok(DROP) => self.succeed(Verdict::Drop),
            Ok(PASS) => self.succeed(Verdict::Pass),
            Ok(PASS_REWRITTEN) => {
                let data = instance.store.data();
                let walcast = data.out.render(&mut st.encoder, change, &data.change);
                let v1 = self
                    .serves_v1
                    .load(Ordering::Relaxed)
                    .then(|| data.out.render_v1(&mut st.encoder, change, &data.change));
                self.succeed(Verdict::Rewritten(Rewrite { walcast, v1 }))
            }
            Ok(code) => {
                metrics.errors.fetch_add(1, Ordering::Relaxed);
                let msg = &instance.store.data().error;
                let msg = match (code, msg.is_empty()) {
                    (ERROR, false) => format!("plugin \"{name}\" returned ERROR: {msg}"),
                    (ERROR, true) => format!("plugin \"{name}\" returned ERROR (no message set)"),
                    _ => format!("plugin \"{name}\" returned the unknown verdict {code}"),
                };
                self.fail(msg)
            }
            Err(CallError::Deadline) => {
                metrics.deadline_hits.fetch_add(1, Ordering::Relaxed);
                // The instance may be mid-update of its own state: never reuse it.
                st.instance = None;
                let ms = self.shared.cfg.call_deadline.as_secs_f64() * 1e3;
                let msg = format!("plugin \"{name}\" exceeded its call deadline of {ms} ms");
                self.plugin.call_failed(&msg);
                self.fail(msg)
            }
            Err(CallError::Trap(msg)) => {
                metrics.traps.fetch_add(1, Ordering::Relaxed);
                st.instance = None;
                let msg = format!("plugin \"{name}\" trapped: {msg}");
                self.plugin.call_failed(&msg);
                self.fail(msg)
            }
        }
    }

    /// A subscription in `format` joins the group: rewrites are rendered in that format from now
    /// on (the flag is never cleared; a spare rendering costs less than tracking members).
    pub fn serve(&self, format: Format) {
        if format == Format::Wal2jsonV1 {
            self.serves_v1.store(true, Ordering::Relaxed);
        }
    }

    fn succeed(&self, verdict: Verdict) -> Verdict {
        self.failures.store(0, Ordering::Relaxed);
        verdict
    }

    fn fail(&self, msg: String) -> Verdict {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self.last_failure.lock() = Some(msg.clone());
        Verdict::Error(msg)
    }

    /// Move to the newest module version if there is one this group has not tried yet. On a
    /// refused `walcast_init` the old instance keeps running and the plugin records the error.
    fn upgrade(&self, st: &mut State) {
        let latest = self.plugin.current.load();
        let Some(latest) = latest.as_ref() else {
            return;
        };
        if latest.version == st.module.version || latest.version == st.refused {
            return;
        }
        // The new instance needs the reserved upgrade slot while the old one lives; when
        // another group holds it, this one keeps its version until a later change.
        let Some(_upgrade_slot) = self.shared.upgrade.try_lock() else {
            return;
        };
        match start(
            &self.shared,
            &self.plugin,
            latest,
            &self.params,
            &self.visible,
        ) {
            Ok(instance) => {
                st.module = latest.clone();
                st.instance = Some(instance);
                tracing::info!(plugin = %self.plugin.name, version = latest.version, group = self.id, "plugin group moved to new version");
            }
            Err(e) => {
                st.refused = latest.version;
                let (refused, serving) = (latest.version, st.module.version);
                let error = one_line(&e.to_string());
                tracing::warn!(plugin = %self.plugin.name, version = refused, serving_version = serving, group = self.id, error = %error, "new plugin version refused by walcast_init; the previous version keeps serving");
                self.plugin.init_refused(
                    refused,
                    serving,
                    &format!("version {refused} refused, version {serving} keeps serving: {error}"),
                );
            }
        }
    }
}

/// Instantiate `module`, limit what its guest sees to `visible` and run `walcast_init`.
fn start(
    shared: &Shared,
    plugin: &PluginEntry,
    module: &ModuleVersion,
    params: &Arc<[(String, String)]>,
    visible: &Option<Arc<Visible>>,
) -> Result<Instance, PluginError> {
    let grow_refused = plugin.metrics.memory_grow_refused.clone();
    let mut instance = shared
        .instantiate(
            &module.pre,
            plugin.name.clone(),
            params.clone(),
            grow_refused,
        )
        .map_err(|e| {
            PluginError::Invalid(format!(
                "plugin \"{}\" cannot be instantiated: {}",
                plugin.name,
                super::engine::describe(&e)
            ))
        })?;
    instance
        .store
        .data_mut()
        .change
        .set_visible(visible.clone());
    instance.init()?;
    Ok(instance)
}
