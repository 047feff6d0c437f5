//! The `walcast_v1` host functions, defined once on the engine's `Linker`. Each reads only the
//! change copy and params in store data and the guest ranges it was given. Does not decide what a
//! verdict means (see `group`).

use wasmtime::{Caller, Linker, Result};

use super::abi::{ABSENT, BAD_HANDLE, BAD_UTF8, IMPORT_MODULE as M, NO_CHANGE, WRONG_TYPE};
use super::output::OutValue;
use super::snapshot::{image_of, ChangeCopy, Kind};
use super::state::{bytes, copy_out, split, write8, LogSink, StoreData};
use crate::decode::Image;
use crate::vocab::Op;

type C<'a> = Caller<'a, StoreData>;
/// Picks one of the change's names (schema or table).
type NameOf = fn(&ChangeCopy) -> &str;

/// Define every function of [`super::abi::IMPORTS`].
pub(crate) fn define(linker: &mut Linker<StoreData>) -> Result<()> {
    linker.func_wrap(M, "op", |c: C<'_>| -> i32 {
        match c.data().change.op {
            None => NO_CHANGE,
            Some(Op::Insert) => 1,
            Some(Op::Update) => 2,
            Some(Op::Delete) => 3,
            Some(Op::Truncate) => 4,
        }
    })?;
    // `schema` and `table`: copy a name of the change into the guest's buffer.
    let names: [(&str, NameOf); 2] = [("schema", ChangeCopy::schema), ("table", ChangeCopy::table)];
    for (export, pick) in names {
        linker.func_wrap(
            M,
            export,
            move |mut c: C<'_>, ptr: i32, cap: i32| -> Result<i32> {
                let (mem, d) = split(&mut c)?;
                if d.change.op.is_none() {
                    return Ok(NO_CHANGE);
                }
                copy_out(mem, ptr, cap, pick(&d.change).as_bytes())
            },
        )?;
    }
    linker.func_wrap(
        M,
        "field",
        |mut c: C<'_>, image: i32, p: i32, n: i32| -> Result<i32> {
            let (mem, d) = split(&mut c)?;
            let name = bytes(mem, p, n)?;
            if d.change.op.is_none() {
                return Ok(NO_CHANGE);
            }
            let Some(image) = image_of(image) else {
                return Ok(BAD_HANDLE);
            };
            Ok(match d.change.find(image, name) {
                Some(k) => ChangeCopy::handle(image, k),
                None => ABSENT,
            })
        },
    )?;
    linker.func_wrap(M, "field_type", |c: C<'_>, h: i32| -> i32 {
        with_col(&c.data().change, h, |_, col| match col.kind {
            Kind::Null => 0,
            Kind::Bool(_) => 1,
            Kind::Number => 2,
            Kind::String => 3,
            Kind::Json => 4,
        })
    })?;
    linker.func_wrap(
        M,
        "field_i64",
        |mut c: C<'_>, h: i32, out: i32| -> Result<i32> {
            let (mem, d) = split(&mut c)?;
            super::state::range(mem, out, 8)?;
            let mut value = None;
            let code = with_col(&d.change, h, |ch, col| match col.kind {
                Kind::Null => ABSENT,
                Kind::Number => match parse_i64(ch.slice(&col.value)) {
                    Some(n) => {
                        value = Some(n);
                        0
                    }
                    None => WRONG_TYPE,
                },
                _ => WRONG_TYPE,
            });
            if let Some(n) = value {
                write8(mem, out, n.to_le_bytes())?;
            }
            Ok(code)
        },
    )?;
    linker.func_wrap(
        M,
        "field_f64",
        |mut c: C<'_>, h: i32, out: i32| -> Result<i32> {
            let (mem, d) = split(&mut c)?;
            super::state::range(mem, out, 8)?;
            let mut value = None;
            let code = with_col(&d.change, h, |ch, col| match col.kind {
                Kind::Null => ABSENT,
                Kind::Number => match ch.slice(&col.value).parse::<f64>() {
                    Ok(x) => {
                        value = Some(x);
                        0
                    }
                    Err(_) => WRONG_TYPE,
                },
                _ => WRONG_TYPE,
            });
            if let Some(x) = value {
                write8(mem, out, x.to_le_bytes())?;
            }
            Ok(code)
        },
    )?;
    linker.func_wrap(M, "field_bool", |c: C<'_>, h: i32| -> i32 {
        with_col(&c.data().change, h, |_, col| match col.kind {
            Kind::Null => ABSENT,
            Kind::Bool(b) => i32::from(b),
            _ => WRONG_TYPE,
        })
    })?;
    linker.func_wrap(
        M,
        "field_str",
        |mut c: C<'_>, h: i32, ptr: i32, cap: i32| -> Result<i32> {
            let (mem, d) = split(&mut c)?;
            let ch = &d.change;
            match check_handle(ch, h) {
                Err(code) => Ok(code),
                Ok(col) => match ch.text_of(col) {
                    None => Ok(ABSENT),
                    Some(text) => copy_out(mem, ptr, cap, text.as_bytes()),
                },
            }
        },
    )?;
    linker.func_wrap(
        M,
        "field_eq_str",
        |mut c: C<'_>, h: i32, ptr: i32, len: i32| -> Result<i32> {
            let (mem, d) = split(&mut c)?;
            let want = bytes(mem, ptr, len)?;
            Ok(with_col(&d.change, h, |ch, col| {
                i32::from(ch.text_of(col).is_some_and(|t| t.as_bytes() == want))
            }))
        },
    )?;
    linker.func_wrap(
        M,
        "field_raw",
        |mut c: C<'_>, h: i32, ptr: i32, cap: i32| -> Result<i32> {
            let (mem, d) = split(&mut c)?;
            match check_handle(&d.change, h) {
                Err(code) => Ok(code),
                Ok(col) => {
                    d.scratch.clear();
                    d.change.put_raw(&mut d.scratch, col);
                    copy_out(mem, ptr, cap, d.scratch.as_bytes())
                }
            }
        },
    )?;
    linker.func_wrap(
        M,
        "field_changed",
        |mut c: C<'_>, p: i32, n: i32| -> Result<i32> {
            let (mem, d) = split(&mut c)?;
            let name = bytes(mem, p, n)?;
            let ch = &d.change;
            match ch.op {
                None => return Ok(NO_CHANGE),
                Some(Op::Update) => {}
                Some(_) => return Ok(ABSENT),
            }
            let Some(old) = ch.find(Image::Old, name) else {
                return Ok(ABSENT);
            };
            // Absent from the new row but present in the old one: an unchanged TOAST value.
            let Some(new) = ch.find(Image::New, name) else {
                return Ok(0);
            };
            let (a, b) = (&ch.cols(Image::New)[new], &ch.cols(Image::Old)[old]);
            let same = a.kind == b.kind && ch.slice(&a.value) == ch.slice(&b.value);
            Ok(i32::from(!same))
        },
    )?;
    linker.func_wrap(M, "field_count", |c: C<'_>, image: i32| -> i32 {
        let ch = &c.data().change;
        match (ch.op, image_of(image)) {
            (None, _) => NO_CHANGE,
            (_, None) => BAD_HANDLE,
            (_, Some(image)) => ch.cols(image).len() as i32,
        }
    })?;
    linker.func_wrap(M, "field_at", |c: C<'_>, image: i32, index: i32| -> i32 {
        let ch = &c.data().change;
        match (ch.op, image_of(image)) {
            (None, _) => NO_CHANGE,
            (_, None) => BAD_HANDLE,
            (_, Some(image)) => match usize::try_from(index) {
                Ok(k) if k < ch.cols(image).len() => ChangeCopy::handle(image, k),
                _ => ABSENT,
            },
        }
    })?;
    linker.func_wrap(
        M,
        "field_name",
        |mut c: C<'_>, h: i32, ptr: i32, cap: i32| -> Result<i32> {
            let (mem, d) = split(&mut c)?;
            match check_handle(&d.change, h) {
                Err(code) => Ok(code),
                Ok(col) => copy_out(mem, ptr, cap, d.change.slice(&col.name).as_bytes()),
            }
        },
    )?;
    linker.func_wrap(
        M,
        "param",
        |mut c: C<'_>, kp: i32, kl: i32, ptr: i32, cap: i32| -> Result<i32> {
            let (mem, d) = split(&mut c)?;
            let key = bytes(mem, kp, kl)?;
            let params = d.params.clone();
            match params.iter().find(|(k, _)| k.as_bytes() == key) {
                Some((_, v)) => copy_out(mem, ptr, cap, v.as_bytes()),
                None => Ok(ABSENT),
            }
        },
    )?;
    define_output(linker)?;
    define_diagnostics(linker)
}

fn define_output(linker: &mut Linker<StoreData>) -> Result<()> {
    linker.func_wrap(M, "out_clear", |mut c: C<'_>, image: i32| -> i32 {
        let d = c.data_mut();
        match (d.change.op, image_of(image)) {
            (None, _) => NO_CHANGE,
            (_, None) => BAD_HANDLE,
            (_, Some(image)) => d.out.clear(&d.change, image),
        }
    })?;
    linker.func_wrap(
        M,
        "out_copy",
        |mut c: C<'_>, image: i32, p: i32, n: i32| -> Result<i32> {
            edit(&mut c, image, p, n, |d, image, name| {
                d.out.copy(&d.change, image, name)
            })
        },
    )?;
    linker.func_wrap(
        M,
        "out_remove",
        |mut c: C<'_>, image: i32, p: i32, n: i32| -> Result<i32> {
            edit(&mut c, image, p, n, |d, image, name| {
                d.out.remove(&d.change, image, name)
            })
        },
    )?;
    linker.func_wrap(
        M,
        "out_set_null",
        |mut c: C<'_>, image: i32, p: i32, n: i32| -> Result<i32> {
            edit(&mut c, image, p, n, |d, image, name| {
                d.out.put(&d.change, image, name, OutValue::Null)
            })
        },
    )?;
    linker.func_wrap(
        M,
        "out_set_bool",
        |mut c: C<'_>, image: i32, p: i32, n: i32, v: i32| -> Result<i32> {
            let v = OutValue::Bool(v != 0);
            edit(&mut c, image, p, n, |d, image, name| {
                d.out.put(&d.change, image, name, v)
            })
        },
    )?;
    linker.func_wrap(
        M,
        "out_set_i64",
        |mut c: C<'_>, image: i32, p: i32, n: i32, v: i64| -> Result<i32> {
            let v = OutValue::I64(v);
            edit(&mut c, image, p, n, |d, image, name| {
                d.out.put(&d.change, image, name, v)
            })
        },
    )?;
    linker.func_wrap(
        M,
        "out_set_f64",
        |mut c: C<'_>, image: i32, p: i32, n: i32, v: f64| -> Result<i32> {
            let v = if v.is_finite() {
                OutValue::F64(v)
            } else {
                OutValue::Null
            };
            edit(&mut c, image, p, n, |d, image, name| {
                d.out.put(&d.change, image, name, v)
            })
        },
    )?;
    linker.func_wrap(
        M,
        "out_set_str",
        |mut c: C<'_>, image: i32, p: i32, n: i32, vp: i32, vl: i32| -> Result<i32> {
            edit_with_value(&mut c, image, p, n, vp, vl, |d, image, name, value| {
                d.out.set_str(&d.change, image, name, value)
            })
        },
    )?;
    linker.func_wrap(
        M,
        "out_set_json",
        |mut c: C<'_>, image: i32, p: i32, n: i32, vp: i32, vl: i32| -> Result<i32> {
            edit_with_value(&mut c, image, p, n, vp, vl, |d, image, name, value| {
                d.out.set_json(&d.change, image, name, value)
            })
        },
    )?;
    Ok(())
}

fn define_diagnostics(linker: &mut Linker<StoreData>) -> Result<()> {
    linker.func_wrap(
        M,
        "log",
        |mut c: C<'_>, level: i32, ptr: i32, len: i32| -> Result<()> {
            let (mem, d) = split(&mut c)?;
            let text = bytes(mem, ptr, len)?;
            let text = &text[..text.len().min(4096)];
            if let LogSink::Writer(out) = &d.log_sink {
                write_log_line(&mut *out.lock(), &d.plugin, level, text);
                return Ok(());
            }
            let Some(dropped) = d.log_permit() else {
                return Ok(());
            };
            let text = String::from_utf8_lossy(text);
            let plugin = &*d.plugin;
            match level {
                0 => tracing::error!(plugin, dropped, "{text}"),
                1 => tracing::warn!(plugin, dropped, "{text}"),
                2 => tracing::info!(plugin, dropped, "{text}"),
                _ => tracing::debug!(plugin, dropped, "{text}"),
            }
            Ok(())
        },
    )?;
    linker.func_wrap(
        M,
        "set_error",
        |mut c: C<'_>, ptr: i32, len: i32| -> Result<()> {
            let (mem, d) = split(&mut c)?;
            d.set_error(bytes(mem, ptr, len)?);
            Ok(())
        },
    )?;
    Ok(())
}

/// One guest `log` line for `walcast plugin run`: `[plugin] level: text`. A failed write (closed
/// stderr) is not the guest's problem, so it is ignored.
pub(crate) fn write_log_line(out: &mut dyn std::io::Write, plugin: &str, level: i32, text: &[u8]) {
    let level = match level {
        0 => "error",
        1 => "warn",
        2 => "info",
        _ => "debug",
    };
    let text = String::from_utf8_lossy(text);
    let _ = writeln!(out, "[{plugin}] {level}: {}", text.trim_end());
}

/// Column of a handle, or the ABI code saying why not.
fn check_handle(ch: &ChangeCopy, h: i32) -> std::result::Result<&super::snapshot::Col, i32> {
    if ch.op.is_none() {
        return Err(NO_CHANGE);
    }
    ch.resolve(h).ok_or(BAD_HANDLE)
}

fn with_col(
    ch: &ChangeCopy,
    h: i32,
    f: impl FnOnce(&ChangeCopy, &super::snapshot::Col) -> i32,
) -> i32 {
    match check_handle(ch, h) {
        Ok(col) => f(ch, col),
        Err(code) => code,
    }
}

/// Shared prologue of the `out_*` functions that take `(image, name_ptr, name_len)`.
fn edit(
    c: &mut C<'_>,
    image: i32,
    p: i32,
    n: i32,
    f: impl FnOnce(&mut StoreData, Image, &str) -> i32,
) -> Result<i32> {
    let (mem, d) = split(c)?;
    let name = bytes(mem, p, n)?;
    if d.change.op.is_none() {
        return Ok(NO_CHANGE);
    }
    let Some(image) = image_of(image) else {
        return Ok(BAD_HANDLE);
    };
    let Ok(name) = std::str::from_utf8(name) else {
        return Ok(BAD_UTF8);
    };
    Ok(f(d, image, name))
}

#[allow(clippy::too_many_arguments)]
fn edit_with_value(
    c: &mut C<'_>,
    image: i32,
    p: i32,
    n: i32,
    vp: i32,
    vl: i32,
    f: impl FnOnce(&mut StoreData, Image, &str, &str) -> i32,
) -> Result<i32> {
    let (mem, d) = split(c)?;
    let name = bytes(mem, p, n)?;
    let value = bytes(mem, vp, vl)?;
    if d.change.op.is_none() {
        return Ok(NO_CHANGE);
    }
    let Some(image) = image_of(image) else {
        return Ok(BAD_HANDLE);
    };
    let (Ok(name), Ok(value)) = (std::str::from_utf8(name), std::str::from_utf8(value)) else {
        return Ok(BAD_UTF8);
    };
    Ok(f(d, image, name, value))
}

/// An integer from number text; `12.00` counts as 12 (numeric columns print their scale).
fn parse_i64(text: &str) -> Option<i64> {
    let int = match text.split_once('.') {
        Some((int, frac)) if frac.bytes().all(|b| b == b'0') => int,
        Some(_) => return None,
        None => text,
    };
    int.parse().ok()
}
