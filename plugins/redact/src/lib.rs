//! `redact` filter plugin: rewrites every change to hide columns. Params: `columns` (required,
//! comma-separated names), `mode` = `mask` (default: string values become "***", other values
//! null) or `drop` (the columns are removed). Applies to both the new and the old row image.
//! Never drops a change.

#![no_std]

use walcast_filter_sdk::{
    export_filter, panic_handler, Change, HostError, Image, Kind, Op, ParamError, Params, Slot,
    StackStr, Verdict,
};

panic_handler!();
export_filter!(init, filter);

const MASK: &str = "***";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Mask,
    Drop,
}

#[derive(Clone, Copy)]
struct Config {
    columns: StackStr<1024>,
    mode: Mode,
}

static CONFIG: Slot<Config> = Slot::new();

fn names(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn init(params: &Params) -> Result<(), ParamError> {
    let columns = params.require_text::<1024>("columns")?;
    if names(&columns).next().is_none() {
        return Err(ParamError::invalid("columns", &columns, "a comma-separated list of columns"));
    }
    let mut buf = [0u8; 64];
    let mode = match params.get_copied("mode", &mut buf) {
        None => Mode::Mask,
        Some(c) => match c.complete() {
            Some("mask") => Mode::Mask,
            Some("drop") => Mode::Drop,
            _ => return Err(ParamError::invalid("mode", c.text, "mask or drop")),
        },
    };
    CONFIG.set(Config { columns, mode });
    Ok(())
}

/// `Absent` only means the image does not carry the column: nothing to hide.
fn ignore_absent(r: Result<(), HostError>) -> Result<(), HostError> {
    match r {
        Err(HostError::Absent) => Ok(()),
        other => other,
    }
}

fn filter(change: &Change) -> Result<Verdict, HostError> {
    let cfg = match CONFIG.get() {
        Some(cfg) => cfg,
        None => return Ok(Verdict::fail("redact: not initialised")),
    };
    if change.op() == Op::Truncate {
        return Ok(Verdict::Pass);
    }
    let out = change.output();
    for name in names(&cfg.columns) {
        for image in Image::BOTH {
            match cfg.mode {
                Mode::Drop => ignore_absent(out.remove(image, name))?,
                Mode::Mask => {
                    let field = match change.field(image, name) {
                        Some(f) => f,
                        None => continue,
                    };
                    if field.kind() == Kind::String {
                        out.set_str(image, name, MASK)?;
                    } else {
                        out.set_null(image, name)?;
                    }
                }
            }
        }
    }
    Ok(Verdict::PassRewritten)
}
