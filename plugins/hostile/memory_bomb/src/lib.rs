//! Hostile test module `memory_bomb`: `walcast_filter` grows linear memory one page at a time until
//! `memory.grow` fails (walcast's memory cap), writes to every page it got, then traps. With
//! `plugin.after=pass` it returns PASS instead of trapping (to check the instance survives).

#![no_std]

use core::arch::wasm32::{memory_grow, memory_size};
use walcast_filter_sdk::{export_filter, panic_handler, Change, Params, Verdict};

panic_handler!();
export_filter!(filter);

const PAGE: usize = 65536;

fn filter(_change: &Change) -> Verdict {
    let start = memory_size(0);
    while memory_grow(0, 1) != usize::MAX {}
    let end = memory_size(0);
    for page in start..end {
        // SAFETY: `page` lies between the old and the new memory size, so the address is in
        // bounds, and nothing else uses memory the module grew itself.
        unsafe { core::ptr::write_volatile((page * PAGE) as *mut u8, 0xAB) };
    }
    let mut buf = [0u8; 8];
    if Params.get("after", &mut buf) == Some("pass") {
        return Verdict::Pass;
    }
    walcast_filter_sdk::__private::abort()
}
