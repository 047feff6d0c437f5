//! Hostile test module `endless_loop`: `walcast_filter` never returns, so walcast's epoch deadline
//! must interrupt it. With `plugin.where=init`, `walcast_init` loops instead.

#![no_std]

use walcast_filter_sdk::{export_filter, panic_handler, Change, Params, Verdict};

panic_handler!();
export_filter!(init, filter);

/// Loops forever; the volatile read keeps the optimiser from treating the loop as removable.
fn spin() -> ! {
    let cell = 0u32;
    loop {
        // SAFETY: reads a live local.
        let _ = unsafe { core::ptr::read_volatile(&cell) };
    }
}

fn init(params: &Params) {
    let mut buf = [0u8; 8];
    if params.get("where", &mut buf) == Some("init") {
        spin()
    }
}

fn filter(_change: &Change) -> Verdict {
    spin()
}
