//! `threshold` filter plugin: passes a change when a numeric column compares to a value.
//! Params: `column` (required), `op` = gt | gte | lt | lte | eq (default gte), `value` (required).
//! Reads the new row (the old row for deletes); a null or absent column drops the change.
//! Does not rewrite rows.

#![no_std]

use walcast_filter_sdk::{
    export_filter, panic_handler, Change, Kind, Name, ParamError, Params, Slot, StackStr, Verdict,
};

panic_handler!();
export_filter!(init, filter);

#[derive(Clone, Copy)]
enum Cmp {
    Gt,
    Gte,
    Lt,
    Lte,
    Eq,
}

#[derive(Clone, Copy)]
struct Config {
    column: Name,
    cmp: Cmp,
    value: f64,
}

static CONFIG: Slot<Config> = Slot::new();

fn init(params: &Params) -> Result<(), ParamError> {
    let column = params.require_text::<64>("column")?;
    let mut buf = [0u8; 8];
    let cmp = match params.get_copied("op", &mut buf).map(|c| c.complete()) {
        None => Cmp::Gte,
        Some(Some("gt")) => Cmp::Gt,
        Some(Some("gte")) => Cmp::Gte,
        Some(Some("lt")) => Cmp::Lt,
        Some(Some("lte")) => Cmp::Lte,
        Some(Some("eq")) => Cmp::Eq,
        Some(_) => {
            let mut raw = [0u8; 64];
            let got = params.get_copied("op", &mut raw).map(|c| c.text).unwrap_or("");
            return Err(ParamError::invalid("op", got, "one of gt, gte, lt, lte, eq"));
        }
    };
    let value = params.require_f64("value")?;
    CONFIG.set(Config { column, cmp, value });
    Ok(())
}

fn filter(change: &Change) -> Verdict {
    let cfg = match CONFIG.get() {
        Some(cfg) => cfg,
        None => return Verdict::fail("threshold: not initialised"),
    };
    let field = match change.column(&cfg.column) {
        Some(f) => f,
        None => return Verdict::Drop,
    };
    let v = match field.kind() {
        Kind::Null => return Verdict::Drop,
        Kind::Number => field.as_f64(),
        // numeric columns that arrive as text (e.g. NaN) and string-typed numbers.
        Kind::String => field
            .with_str(|c| c.complete().and_then(|s| s.trim().parse::<f64>().ok()))
            .flatten(),
        _ => None,
    };
    let v = match v {
        Some(v) => v,
        None => {
            let mut m = StackStr::<128>::new();
            m.push("threshold: column \"").push(&cfg.column).push("\" is not a number");
            return Verdict::fail(&m);
        }
    };
    let pass = match cfg.cmp {
        Cmp::Gt => v > cfg.value,
        Cmp::Gte => v >= cfg.value,
        Cmp::Lt => v < cfg.value,
        Cmp::Lte => v <= cfg.value,
        Cmp::Eq => v == cfg.value,
    };
    if pass {
        Verdict::Pass
    } else {
        Verdict::Drop
    }
}
