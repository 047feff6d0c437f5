//! `PluginHost`: the process-wide registry of plugins loaded from the plugin directory, the
//! shared groups per (plugin, params, visible columns) with their cap per plugin
//! (`limits.max_groups_per_plugin`, see `quota`), and hot reload (the directory looked at by
//! `reload::Watch`, compile off the hot path, atomic swap). Does not run guest calls itself (see
//! `group`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::engine::Shared;
use super::group::PluginGroup;
use super::plugin::PluginEntry;
use super::quota::{Admission, AtCap, GroupKey, GroupQuota};
use super::{PluginError, PluginInfo};
use crate::config::Limits;
use crate::config::PluginsConfig;
use crate::filter::{code, PluginRef, QueryError};
use crate::reload::{self, Watch};

/// How often the plugin directory is looked at for new, changed and removed files. A change is
/// taken once it has been quiet for `reload::SETTLE` (editors and `cp` write a file in several
/// steps), so a new version runs within about this plus that plus its compilation.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// One per process: engine, loaded plugins and live groups.
pub struct PluginHost {
    shared: Arc<Shared>,
    /// The plugin directory as last read, when there is one. Its lock serialises rescans
    /// (startup, the reload task, explicit `reload`).
    watch: Option<Arc<Mutex<Watch>>>,
    plugins: RwLock<HashMap<String, Arc<PluginEntry>>>,
    groups: Mutex<HashMap<GroupKey, Weak<PluginGroup>>>,
    /// Live groups per plugin, at most `limits.max_groups_per_plugin`.
    quota: Arc<GroupQuota>,
}

impl PluginHost {
    /// Start the engine and load every `*.wasm` in `cfg.dir` (a broken file is reported by
    /// `list()`, it does not stop the others), under the default `Limits`.
    pub fn new(cfg: &PluginsConfig) -> Result<Arc<PluginHost>, PluginError> {
        PluginHost::with_limits(cfg, &Limits::DEFAULT)
    }

    /// `new` with the group cap of `limits` (`max_groups_per_plugin`, by default a quarter of
    /// `cfg.max_instances`).
    pub fn with_limits(
        cfg: &PluginsConfig,
        limits: &Limits,
    ) -> Result<Arc<PluginHost>, PluginError> {
        let host = PluginHost {
            shared: Shared::new(cfg)?,
            watch: cfg
                .dir
                .as_deref()
                .map(|dir| Arc::new(Mutex::new(Watch::dir("plugin directory", dir, "wasm")))),
            plugins: RwLock::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
            quota: GroupQuota::new(limits.groups_per_plugin(cfg.max_instances)),
        };
        if let Some(watch) = &host.watch {
            // An unreadable directory at startup is a configuration error, unlike during reload.
            let read = watch
                .lock()
                .read()
                .map_err(|e| PluginError::io(e.path, e.source))?;
            host.apply(read);
        }
        Ok(Arc::new(host))
    }

    /// Rescan the plugin directory now: compile new or changed files (blocking: call it off the
    /// hot path), swap them in, drop plugins whose file is gone.
    pub fn reload(&self) {
        let Some(watch) = &self.watch else { return };
        let mut watch = watch.lock();
        match watch.read() {
            Ok(read) => self.apply(read),
            Err(error) => {
                tracing::warn!(%error, "cannot read the plugin directory; the plugins loaded stay")
            }
        }
    }

    /// Load the directory's files as read (a file whose contents are already running, or
    /// already failed, is skipped) and drop plugins whose file is gone. A listed file that
    /// could not be read keeps its plugin.
    fn apply(&self, read: reload::Read) {
        let mut present = Vec::new();
        for file in &read.files {
            if let Some(name) = plugin_name(&file.path) {
                self.load(&name, file);
                present.push(name);
            }
        }
        present.extend(read.unreadable.iter().filter_map(|p| plugin_name(p)));
        self.plugins.write().retain(|name, _| {
            let keep = present.contains(name);
            if !keep {
                tracing::info!(plugin = %name, "plugin file removed; running groups keep their instance");
            }
            keep
        });
    }

    fn load(&self, name: &str, file: &reload::File) {
        let bytes = &file.bytes;
        let hash = file.sha256_hex();
        let entry = self.plugins.read().get(name).cloned();
        let entry = match entry {
            Some(entry) if entry.is_current(&hash) => return,
            Some(entry) => entry,
            None => {
                let entry = Arc::new(PluginEntry::new(name));
                self.plugins.write().insert(name.to_owned(), entry.clone());
                entry
            }
        };
        match self.shared.compile(name, bytes) {
            Ok(pre) => {
                let version = entry.install(hash, pre);
                tracing::info!(plugin = %name, version, "plugin loaded");
            }
            Err(error) => {
                match entry.current.load().as_ref() {
                    Some(serving) => {
                        tracing::warn!(plugin = %name, serving_version = serving.version, error = %error, "plugin file refused; the previous version keeps serving")
                    }
                    None => tracing::warn!(plugin = %name, error = %error, "plugin file refused"),
                }
                entry.load_failed(hash, &error);
            }
        }
    }

    /// Hot reload: look at the directory every `LOOK_EVERY` and load what changed, on a
    /// blocking thread. Ends on `cancel`.
    pub fn watch(self: &Arc<Self>, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let host = self.clone();
        tokio::spawn(async move {
            let Some(watch) = host.watch.clone() else {
                return;
            };
            reload::run(watch, LOOK_EVERY, cancel, move |read| host.apply(read)).await;
        })
    }

    /// Every plugin with its status and metrics, by name (for `GET /v1/plugins`).
    pub fn list(&self) -> Vec<PluginInfo> {
        let mut out: Vec<PluginInfo> = self.plugins.read().values().map(|p| p.info()).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// A place for the subscription's group before it is resolved (`group`), held until then:
    /// `too_many_plugin_groups` when the plugin already runs `limits.max_groups_per_plugin`
    /// groups and none has these params and visible columns. Cheap and never waits for a group
    /// being created, so the router calls it on its async thread.
    pub fn admit(&self, plugin: &PluginRef) -> Result<Admission, QueryError> {
        self.quota
            .admit(&group_key(plugin))
            .map_err(|AtCap { cap }| {
                QueryError::new(
                    code::TOO_MANY_PLUGIN_GROUPS,
                    groups_message(&plugin.name, cap),
                )
            })
    }

    /// `limits.max_groups_per_plugin` in force.
    pub fn max_groups_per_plugin(&self) -> u32 {
        self.quota.cap()
    }

    /// Resolve a subscription's plugin. Subscriptions with the same (name, params, visible
    /// columns), in any param or column order, share one group and one instance; its guest sees
    /// only `plugin.columns` when a policy set them. A new group needs a place in the plugin's
    /// quota and a pool slot (`PluginError::Capacity` otherwise).
    pub fn group(&self, plugin: &PluginRef) -> Result<Arc<PluginGroup>, PluginError> {
        let name = plugin.name.as_str();
        let entry = self.plugins.read().get(name).cloned();
        let entry = entry.ok_or_else(|| PluginError::Unknown(name.to_owned()))?;
        let Some(module) = entry.current.load_full() else {
            return Err(PluginError::Invalid(
                entry
                    .last_error()
                    .unwrap_or_else(|| format!("plugin \"{name}\" failed to load")),
            ));
        };
        let key = group_key(plugin);
        // Held across creation so two subscriptions racing on a new key get one group.
        let mut groups = self.groups.lock();
        if let Some(group) = groups.get(&key).and_then(Weak::upgrade) {
            if Arc::ptr_eq(&group.plugin, &entry) {
                return Ok(group);
            }
        }
        groups.retain(|_, g| g.strong_count() > 0);
        let admission = self
            .quota
            .admit(&key)
            .map_err(|AtCap { cap }| PluginError::Capacity(groups_message(name, cap)))?;
        let group = PluginGroup::new(
            self.shared.clone(),
            entry,
            module,
            key.1.clone(),
            key.2.as_deref(),
            Some(admission.live()),
        )?;
        groups.insert(key, Arc::downgrade(&group));
        Ok(group)
    }
}

/// The group identity of a subscription: the name, its params sorted by key, and the columns
/// its guest may see, sorted.
fn group_key(plugin: &PluginRef) -> GroupKey {
    let mut params = plugin.params.clone();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let columns = plugin.columns.as_deref().map(super::visible::canonical);
    (plugin.name.clone(), params, columns)
}

fn groups_message(name: &str, cap: u32) -> String {
    format!(
        "plugin \"{name}\" already runs limits.max_groups_per_plugin = {cap} groups (distinct \
         plugin.* parameter sets); use the parameters of a running group, or retry once groups \
         close"
    )
}

/// The plugin name of a `*.wasm` file: its stem, when that is a usable name.
fn plugin_name(path: &Path) -> Option<String> {
    match path.file_stem().and_then(|s| s.to_str()) {
        Some(stem) if valid_name(stem) => Some(stem.to_owned()),
        _ => {
            tracing::warn!(path = %path.display(), "ignoring plugin file: its name must be [A-Za-z0-9_-]+.wasm");
            None
        }
    }
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub(crate) fn hex_sha256(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest.iter() {
        let _ = write!(s, "{b:02x}");
    }
    s
}
