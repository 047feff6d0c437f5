//! Hostile test module `stray_import`: imports `fd_write` from `wasi_snapshot_preview1` and calls
//! it, so walcast must refuse it at load, naming the import.

#![no_std]

use walcast_filter_sdk::{export_filter, panic_handler, Change, Verdict};

panic_handler!();
export_filter!(filter);

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn fd_write(fd: i32, iovs: *const u32, iovs_len: i32, nwritten: *mut u32) -> i32;
}

fn filter(_change: &Change) -> Verdict {
    let msg = b"escaped\n";
    let iov = [msg.as_ptr() as u32, msg.len() as u32];
    let mut written = 0u32;
    // SAFETY: (never reached on walcast) the iovec and counter are live locals.
    let rc = unsafe { fd_write(1, iov.as_ptr(), 1, &mut written) };
    if rc == 0 {
        Verdict::Pass
    } else {
        Verdict::Error
    }
}
