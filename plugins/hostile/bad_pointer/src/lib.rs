//! Hostile test module `bad_pointer`: logs a line, then hands a host function a `(ptr, len)` range
//! outside its memory, so walcast must trap the call (and say so on one line). It does this in
//! `walcast_filter`, or in `walcast_init` with `plugin.where=init` (an instance that cannot start,
//! or a new version a running group refuses).

#![no_std]

use walcast_filter_sdk::{export_filter, log, panic_handler, raw, Change, Level, Params, Verdict};

panic_handler!();
export_filter!(init, filter);

/// Far past the end of any memory walcast allows (the cap is well under 4 GiB).
const OUT_OF_RANGE: usize = 0xFFFF_0000;

fn misbehave(during: &str) {
    log(Level::Warn, during);
    let mut buf = [0u8; 8];
    // SAFETY: the host checks every range before touching guest memory; this one is refused and
    // the call traps, which is the point of this module.
    unsafe { raw::param(OUT_OF_RANGE as *const u8, 16, buf.as_mut_ptr(), buf.len()) };
}

fn init(params: &Params) {
    let mut buf = [0u8; 8];
    if params.get("where", &mut buf) == Some("init") {
        misbehave("bad_pointer: passing an out-of-range pointer in walcast_init");
    }
}

fn filter(_change: &Change) -> Verdict {
    misbehave("bad_pointer: passing an out-of-range pointer in walcast_filter");
    Verdict::Pass
}
