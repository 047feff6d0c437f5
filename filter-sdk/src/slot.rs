//! `Slot<T>`: a `static` cell for state computed in `init` (parsed params) and read in `filter`,
//! without `unsafe` or an allocator in the plugin. Not a general-purpose synchronisation primitive.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

/// A cell holding an optional `T: Copy`, usable as a `static`.
///
/// ```ignore
/// static CONFIG: Slot<Config> = Slot::new();
/// fn init(p: &Params) -> Result<(), ParamError> { CONFIG.set(Config::parse(p)?); Ok(()) }
/// fn filter(c: &Change) -> Verdict { let cfg = match CONFIG.get() { Some(c) => c, None => return Verdict::Error }; ... }
/// ```
///
/// `get` returns a copy and no reference to the contents ever escapes. Accesses take a tiny spin
/// lock that no user code runs under, so the type is sound on any target (a wasm instance is
/// single-threaded and never contends; the lock only matters for host-side `cargo test`).
pub struct Slot<T> {
    busy: AtomicBool,
    value: UnsafeCell<Option<T>>,
}

impl<T> Slot<T> {
    /// An empty slot.
    pub const fn new() -> Self {
        Slot { busy: AtomicBool::new(false), value: UnsafeCell::new(None) }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Option<T>) -> R) -> R {
        while self
            .busy
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        // SAFETY: `busy` gives exclusive access; `f` is one of the private closures below, which
        // only move a `T: Copy` in or out and cannot reenter the slot.
        let r = f(unsafe { &mut *self.value.get() });
        self.busy.store(false, Ordering::Release);
        r
    }
}

impl<T: Copy> Slot<T> {
    /// Stores `value`.
    pub fn set(&self, value: T) {
        self.with(|v| *v = Some(value))
    }

    /// A copy of the stored value.
    pub fn get(&self) -> Option<T> {
        self.with(|v| *v)
    }

    /// Empties the slot.
    pub fn clear(&self) {
        self.with(|v| *v = None)
    }
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every access to `value` happens under the `busy` lock (see `with`); `T: Send` because
// values move in and out across threads.
unsafe impl<T: Send> Sync for Slot<T> {}

#[cfg(test)]
mod tests {
    use super::Slot;

    #[test]
    fn set_get_clear() {
        static S: Slot<(u8, f64)> = Slot::new();
        assert_eq!(S.get(), None);
        S.set((1, 2.5));
        assert_eq!(S.get(), Some((1, 2.5)));
        S.clear();
        assert_eq!(S.get(), None);
    }
}
