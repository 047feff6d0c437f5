//! `PluginHost`: the process-wide registry of plugins loaded from the plugin directory, the
//! shared groups per (plugin, params, visible columns) with their cap per plugin
//! (`limits.max_groups_per_plugin`, see `quota`), and hot reload (watch, debounce, compile off the
//! hot path, atomic swap). Does not run guest calls itself (see `group`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
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
use crate::config::PluginsConfig;
use crate::config::Limits;
use crate::filter::{code, PluginRef, QueryError};

/// Quiet time after the last file event before the directory is rescanned: editors and `cp`
/// write a file in several steps.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// One per process: engine, loaded plugins and live groups.
pub struct PluginHost {
    shared: Arc<Shared>,
    dir: Option<PathBuf>,
    plugins: RwLock<HashMap<String, Arc<PluginEntry>>>,
    groups: Mutex<HashMap<GroupKey, Weak<PluginGroup>>>,
    /// Live groups per plugin, at most `limits.max_groups_per_plugin`.
    quota: Arc<GroupQuota>,
    /// Serialises rescans (startup, watcher, explicit `reload`).
    scan: Mutex<()>,
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
            dir: cfg.dir.clone(),
            plugins: RwLock::new(HashMap::new()),
            groups: Mutex::new(HashMap::new()),
            quota: GroupQuota::new(limits.groups_per_plugin(cfg.max_instances)),
            scan: Mutex::new(()),
        };
        if let Some(dir) = &host.dir {
            // An unreadable directory at startup is a configuration error, unlike during reload.
            std::fs::read_dir(dir).map_err(|e| PluginError::io(dir, e))?;
        }
        host.reload();
        Ok(Arc::new(host))
    }

    /// Rescan the plugin directory now: compile new or changed files (blocking: call it off the
    /// hot path), swap them in, drop plugins whose file is gone.
    pub fn reload(&self) {
        let Some(dir) = &self.dir else { return };
        let _scan = self.scan.lock();
        let files = match wasm_files(dir) {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot read the plugin directory");
                return;
            }
        };
        for (name, path) in &files {
            self.load(name, path);
        }
        self.plugins.write().retain(|name, _| {
            let keep = files.iter().any(|(n, _)| n == name);
            if !keep {
                tracing::info!(plugin = %name, "plugin file removed; running groups keep their instance");
            }
            keep
        });
    }

    fn load(&self, name: &str, path: &Path) {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(plugin = %name, error = %e, "cannot read plugin file");
                return;
            }
        };
        let hash = hex_sha256(&bytes);
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
        match self.shared.compile(name, &bytes) {
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

    /// Hot reload: watch the directory, debounce, rescan on a blocking thread. Ends on `cancel`.
    pub fn watch(self: &Arc<Self>, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        let host = self.clone();
        tokio::spawn(async move {
            let Some(dir) = host.dir.clone() else { return };
            let wake = Arc::new(tokio::sync::Notify::new());
            let waker = wake.clone();
            let watcher =
                notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                    if event.is_ok_and(|e| !e.kind.is_access()) {
                        waker.notify_one();
                    }
                });
            let mut watcher = match watcher {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the plugin directory; hot reload disabled");
                    return;
                }
            };
            use notify::Watcher as _;
            if let Err(e) = watcher.watch(&dir, notify::RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the plugin directory; hot reload disabled");
                return;
            }
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = wake.notified() => {}
                }
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = wake.notified() => continue,
                        _ = tokio::time::sleep(DEBOUNCE) => break,
                    }
                }
                let host = host.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || host.reload()).await {
                    tracing::warn!(error = %e, "plugin reload task failed");
                }
            }
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

/// `(name, path)` of every `*.wasm` whose stem is a usable plugin name.
fn wasm_files(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("wasm") || !path.is_file() {
            continue;
        }
        match path.file_stem().and_then(|s| s.to_str()) {
            Some(stem) if valid_name(stem) => out.push((stem.to_owned(), path)),
            _ => {
                tracing::warn!(path = %path.display(), "ignoring plugin file: its name must be [A-Za-z0-9_-]+.wasm")
            }
        }
    }
    out.sort();
    Ok(out)
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
