//! What one client can take from the plugin host: the live (plugin, params) groups per plugin
//! (`limits.max_groups_per_plugin`), and the instance slots of the shared pool
//! (`plugins.max_instances`), of which `RESERVED_SLOTS` are kept back so that validating a new
//! module version (the reload probe) and moving a group to it always find room. Does not create
//! instances (see `engine`, `group`) and does not decide when groups are shared (see `registry`).
//!
//! Without these, `plugin.x=1` ... `plugin.x=256` made 256 groups, each holding a pool slot: new
//! groups of every other client were refused, and so was every reload (its probe instance had no
//! slot either).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

/// A group's identity: plugin name, params sorted by key, and the columns its guest may see
/// (sorted; `None`: every column). Subscriptions that differ in any of the three never share a
/// group: a guest attached under a rule must not serve a subscriber who may see more, nor one who
/// may see less.
pub(crate) type GroupKey = (String, Vec<(String, String)>, Option<Vec<String>>);

/// Pool slots no group may take: one for the reload probe (`Shared::compile`, one at a time) and
/// one for a group moving to a new version (it holds its old instance until the new one
/// initialised; groups move one at a time, a group that finds the slot taken moves at a later
/// change).
pub(crate) const RESERVED_SLOTS: u32 = 2;

/// Live groups per plugin, plus admissions in flight (a subscription admitted before its group
/// is created counts, so two requests racing for the last place do not both get it).
pub(crate) struct GroupQuota {
    cap: u32,
    state: Mutex<QuotaState>,
}

#[derive(Default)]
struct QuotaState {
    keys: HashMap<GroupKey, KeyUse>,
    /// Keys in use (live or admitted) per plugin name.
    per_plugin: HashMap<String, u32>,
}

#[derive(Default)]
struct KeyUse {
    /// Groups alive with this key (two while a removed and re-added plugin's old group lives).
    live: u32,
    /// Admissions held.
    admitted: u32,
}

/// The plugin already has `cap` live groups and this key is not one of them.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct AtCap {
    pub(crate) cap: u32,
}

impl GroupQuota {
    pub(crate) fn new(cap: u32) -> Arc<GroupQuota> {
        Arc::new(GroupQuota {
            cap,
            state: Mutex::new(QuotaState::default()),
        })
    }

    pub(crate) fn cap(&self) -> u32 {
        self.cap
    }

    /// A place for `key`'s group: always granted when the key is live or admitted already (its
    /// subscriptions share the group), else while the plugin has fewer than `cap` keys in use.
    pub(crate) fn admit(self: &Arc<Self>, key: &GroupKey) -> Result<Admission, AtCap> {
        let mut st = self.state.lock();
        if let Some(used) = st.keys.get_mut(key) {
            used.admitted += 1;
        } else {
            let count = st.per_plugin.get(&key.0).copied().unwrap_or(0);
            if count >= self.cap {
                return Err(AtCap { cap: self.cap });
            }
            st.per_plugin.insert(key.0.clone(), count + 1);
            st.keys.insert(
                key.clone(),
                KeyUse {
                    live: 0,
                    admitted: 1,
                },
            );
        }
        Ok(Admission {
            quota: self.clone(),
            key: key.clone(),
        })
    }

    /// Keys in use for `plugin`.
    #[cfg(test)]
    pub(crate) fn in_use(&self, plugin: &str) -> u32 {
        self.state
            .lock()
            .per_plugin
            .get(plugin)
            .copied()
            .unwrap_or(0)
    }

    fn release(&self, key: &GroupKey, live: bool) {
        let mut st = self.state.lock();
        let Some(used) = st.keys.get_mut(key) else {
            return;
        };
        if live {
            used.live = used.live.saturating_sub(1);
        } else {
            used.admitted = used.admitted.saturating_sub(1);
        }
        if used.live == 0 && used.admitted == 0 {
            st.keys.remove(key);
            if let Some(count) = st.per_plugin.get_mut(&key.0) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    st.per_plugin.remove(&key.0);
                }
            }
        }
    }
}

/// A place held for a group key while its group is found or created; released on drop.
pub struct Admission {
    quota: Arc<GroupQuota>,
    key: GroupKey,
}

impl Admission {
    /// The group was created: it holds the place for as long as it lives.
    pub(crate) fn live(&self) -> LivePlace {
        if let Some(used) = self.quota.state.lock().keys.get_mut(&self.key) {
            used.live += 1;
        }
        LivePlace {
            quota: self.quota.clone(),
            key: self.key.clone(),
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.quota.release(&self.key, false);
    }
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission").field("key", &self.key).finish()
    }
}

/// A live group's place in its plugin's quota; released when the group is dropped.
pub(crate) struct LivePlace {
    quota: Arc<GroupQuota>,
    key: GroupKey,
}

impl Drop for LivePlace {
    fn drop(&mut self) {
        self.quota.release(&self.key, true);
    }
}

/// The pool's instance slots that groups may hold: `plugins.max_instances - RESERVED_SLOTS`.
pub(crate) struct Slots {
    capacity: u32,
    used: AtomicU32,
}

impl Slots {
    pub(crate) fn new(max_instances: u32) -> Arc<Slots> {
        Arc::new(Slots {
            capacity: max_instances.saturating_sub(RESERVED_SLOTS).max(1),
            used: AtomicU32::new(0),
        })
    }

    pub(crate) fn capacity(&self) -> u32 {
        self.capacity
    }

    /// One slot, `None` when every slot groups may hold is taken.
    pub(crate) fn acquire(self: &Arc<Self>) -> Option<Slot> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < self.capacity).then_some(used + 1)
            })
            .ok()?;
        Some(Slot(self.clone()))
    }
}

/// A slot held by a group (its one instance, or the one it re-creates after a trap).
pub(crate) struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(plugin: &str, x: &str) -> GroupKey {
        (plugin.into(), vec![("x".into(), x.into())], None)
    }

    #[test]
    fn cap_counts_distinct_keys_per_plugin() {
        let quota = GroupQuota::new(2);
        let a = quota.admit(&key("p", "1")).expect("first");
        let a2 = quota.admit(&key("p", "1")).expect("same key shares");
        let b = quota.admit(&key("p", "2")).expect("second");
        assert_eq!(quota.admit(&key("p", "3")).unwrap_err(), AtCap { cap: 2 });
        let other = quota
            .admit(&key("q", "3"))
            .expect("another plugin has its own cap");
        assert_eq!(quota.in_use("p"), 2);
        // A live group keeps its place after its admissions are gone.
        let live = b.live();
        drop(b);
        drop(a);
        drop(a2);
        assert_eq!(quota.in_use("p"), 1);
        let c = quota.admit(&key("p", "3")).expect("a place is free again");
        assert!(quota.admit(&key("p", "4")).is_err());
        drop(live);
        drop(c);
        drop(other);
        assert_eq!((quota.in_use("p"), quota.in_use("q")), (0, 0));
    }

    #[test]
    fn slots_keep_the_reserve() {
        let slots = Slots::new(4);
        assert_eq!(slots.capacity(), 4 - RESERVED_SLOTS);
        let a = slots.acquire().expect("1");
        let _b = slots.acquire().expect("2");
        assert!(slots.acquire().is_none());
        drop(a);
        assert!(slots.acquire().is_some());
    }
}
