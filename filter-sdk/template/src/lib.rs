//! `my_filter`: passes changes whose column `plugin.column` equals `plugin.equals` (compared on
//! the host, no copy); with `plugin.tag=...` it also rewrites the row, adding a `tag` column.
//!
//! Subscribe with `?query=*:people&plugin=my_filter&plugin.column=status&plugin.equals=active`.

#![no_std]

use walcast_filter_sdk::{
    export_filter, log_info, panic_handler, Change, Image, Name, Op, ParamError, Params, Slot,
    StackStr, Verdict,
};

// A no_std cdylib needs a panic handler: a panic traps this instance and walcast replaces it.
panic_handler!();
// Exports walcast_abi_version (1), walcast_init -> init, walcast_filter -> filter.
export_filter!(init, filter);

/// What `init` parsed from the params, kept for every `filter` call (no allocator: fixed sizes).
#[derive(Clone, Copy)]
struct Config {
    column: Name,
    equals: StackStr<256>,
    tag: Option<StackStr<64>>,
}

static CONFIG: Slot<Config> = Slot::new();

/// Runs once per instance. `Err` rejects the subscription: the client gets HTTP 400
/// `plugin_rejected` with the message, e.g. `param "column" is required`.
fn init(params: &Params) -> Result<(), ParamError> {
    let column = params.require_text::<64>("column")?;
    let equals = params.require_text::<256>("equals")?;
    let tag = params.get_text::<64>("tag")?;
    log_info!("my_filter ready");
    CONFIG.set(Config { column, equals, tag });
    Ok(())
}

/// Runs once per change. Read only the fields you need; nothing else crosses the boundary.
fn filter(change: &Change) -> Verdict {
    let cfg = match CONFIG.get() {
        Some(cfg) => cfg,
        None => return Verdict::fail("my_filter: not initialised"),
    };
    // The new row, or the old row for deletes.
    let field = match change.column(&cfg.column) {
        Some(field) => field,
        None => return Verdict::Drop,
    };
    if !field.eq_str(&cfg.equals) {
        return Verdict::Drop;
    }
    // A delete carries only the old row: tag the image the row is in.
    let image = if change.op() == Op::Delete { Image::Old } else { Image::New };
    match cfg.tag {
        None => Verdict::Pass,
        Some(tag) => match change.output().set_str(image, "tag", &tag) {
            Ok(()) => Verdict::PassRewritten,
            Err(e) => Verdict::fail(&e),
        },
    }
}
