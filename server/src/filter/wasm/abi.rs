//! The `walcast_v1` contract on the host side: return codes, the import table with signatures and
//! the load-time checks of a module's imports and exports. Does not implement the host functions
//! (see `linker`) nor call the guest (see `engine`).

use wasmtime::{ExternType, FuncType, Module, ValType};

/// The only import module a v1 guest may use.
pub(crate) const IMPORT_MODULE: &str = "walcast_v1";
/// The ABI version this host serves.
pub(crate) const ABI_VERSION: i32 = 1;

pub(crate) const EXPORT_MEMORY: &str = "memory";
pub(crate) const EXPORT_ABI_VERSION: &str = "walcast_abi_version";
pub(crate) const EXPORT_INIT: &str = "walcast_init";
pub(crate) const EXPORT_FILTER: &str = "walcast_filter";

/// Return codes shared by all host functions (ABI.md "Host functions").
pub(crate) const ABSENT: i32 = -1;
pub(crate) const WRONG_TYPE: i32 = -2;
pub(crate) const BAD_HANDLE: i32 = -3;
pub(crate) const BAD_UTF8: i32 = -4;
pub(crate) const BAD_JSON: i32 = -5;
pub(crate) const NO_CHANGE: i32 = -6;

/// Verdicts of `walcast_filter`.
pub(crate) const DROP: i32 = 0;
pub(crate) const PASS: i32 = 1;
pub(crate) const PASS_REWRITTEN: i32 = 2;
pub(crate) const ERROR: i32 = 3;

/// Every `walcast_v1` function with its signature written as `params>results`
/// (`i` = i32, `I` = i64, `F` = f64). The linker must define exactly these; a test checks it.
pub(crate) const IMPORTS: &[(&str, &str)] = &[
    ("op", ">i"),
    ("schema", "ii>i"),
    ("table", "ii>i"),
    ("field", "iii>i"),
    ("field_type", "i>i"),
    ("field_i64", "ii>i"),
    ("field_f64", "ii>i"),
    ("field_bool", "i>i"),
    ("field_str", "iii>i"),
    ("field_eq_str", "iii>i"),
    ("field_raw", "iii>i"),
    ("field_changed", "ii>i"),
    ("field_count", "i>i"),
    ("field_at", "ii>i"),
    ("field_name", "iii>i"),
    ("param", "iiii>i"),
    ("out_clear", "i>i"),
    ("out_copy", "iii>i"),
    ("out_remove", "iii>i"),
    ("out_set_null", "iii>i"),
    ("out_set_bool", "iiii>i"),
    ("out_set_i64", "iiiI>i"),
    ("out_set_f64", "iiiF>i"),
    ("out_set_str", "iiiii>i"),
    ("out_set_json", "iiiii>i"),
    ("log", "iii>"),
    ("set_error", "ii>"),
];

/// `params>results` of a function type, in the notation of [`IMPORTS`].
pub(crate) fn signature(ty: &FuncType) -> String {
    let code = |v: ValType| match v {
        ValType::I32 => 'i',
        ValType::I64 => 'I',
        ValType::F32 => 'f',
        ValType::F64 => 'F',
        _ => '?',
    };
    let mut s: String = ty.params().map(code).collect();
    s.push('>');
    s.extend(ty.results().map(code));
    s
}

/// Human form of a signature code: `(i32, i32) -> i32`.
fn readable(sig: &str) -> String {
    let names = |part: &str| -> Vec<&'static str> {
        part.chars()
            .map(|c| match c {
                'i' => "i32",
                'I' => "i64",
                'f' => "f32",
                'F' => "f64",
                _ => "ref",
            })
            .collect()
    };
    let (params, results) = sig.split_once('>').unwrap_or((sig, ""));
    let results = names(results);
    let results = match results.len() {
        0 => "()".to_owned(),
        1 => results[0].to_owned(),
        _ => format!("({})", results.join(", ")),
    };
    format!("({}) -> {}", names(params).join(", "), results)
}

/// Refuse imports outside `walcast_v1`, unknown names and known names with another signature,
/// and check the four required exports. The ABI version itself needs an instance (see `engine`).
pub(crate) fn check_module(plugin: &str, module: &Module) -> Result<(), String> {
    for import in module.imports() {
        let (m, n) = (import.module(), import.name());
        if m != IMPORT_MODULE {
            return Err(format!(
                "plugin \"{plugin}\" imports {m}::{n}, which is not part of the walcast_v1 ABI \
                 (plugins may import only walcast_v1 functions: no WASI, no env)"
            ));
        }
        let Some((_, want)) = IMPORTS.iter().find(|(name, _)| *name == n) else {
            return Err(format!(
                "plugin \"{plugin}\" imports {m}::{n}, which is not part of the walcast_v1 ABI"
            ));
        };
        let ExternType::Func(ty) = import.ty() else {
            return Err(format!(
                "plugin \"{plugin}\" imports {m}::{n} as a non-function; walcast_v1 defines it \
                 as a function {}",
                readable(want)
            ));
        };
        let got = signature(&ty);
        if got != *want {
            return Err(format!(
                "plugin \"{plugin}\" imports {m}::{n} with type {}, but walcast_v1 defines it as {}",
                readable(&got),
                readable(want)
            ));
        }
    }
    match module.get_export(EXPORT_MEMORY) {
        Some(ExternType::Memory(_)) => {}
        Some(_) => {
            return Err(format!(
                "plugin \"{plugin}\" exports \"memory\" but not as a memory"
            ))
        }
        None => {
            return Err(format!(
                "plugin \"{plugin}\" does not export its \"memory\""
            ))
        }
    }
    for name in [EXPORT_ABI_VERSION, EXPORT_INIT, EXPORT_FILTER] {
        match module.get_export(name) {
            Some(ExternType::Func(ty)) if signature(&ty) == ">i" => {}
            Some(ExternType::Func(ty)) => {
                return Err(format!(
                    "plugin \"{plugin}\" exports {name} with type {}, expected () -> i32",
                    readable(&signature(&ty))
                ))
            }
            Some(_) => {
                return Err(format!(
                    "plugin \"{plugin}\" exports {name} but not as a function"
                ))
            }
            None if name == EXPORT_ABI_VERSION => {
                return Err(format!(
                    "plugin \"{plugin}\" does not export {name}: it requires an unknown ABI \
                     version, this walcast supports {ABI_VERSION}"
                ))
            }
            None => return Err(format!("plugin \"{plugin}\" does not export {name}")),
        }
    }
    Ok(())
}

/// The message for a module whose `walcast_abi_version` is not ours.
pub(crate) fn wrong_version(plugin: &str, version: i32) -> String {
    format!(
        "plugin \"{plugin}\" requires ABI version {version}, this walcast supports {ABI_VERSION}"
    )
}
