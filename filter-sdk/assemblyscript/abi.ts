// Raw host imports of walcast filter ABI v1 (import module `walcast_v1`), one declaration per row
// of the tables in filter-sdk/ABI.md. Signatures must match that file exactly: the host refuses a
// module whose import has another signature. Plugins normally use the wrappers in index.ts; these
// are exported for the rare case a wrapper does not fit (e.g. to avoid an allocation).
//
// Pointers are `usize` (i32 on wasm32); every (ptr, len|cap) pair points into this module's memory.

// --- The change ---

// @ts-ignore: decorator
@external("walcast_v1", "op")
export declare function op(): i32;

// @ts-ignore: decorator
@external("walcast_v1", "schema")
export declare function schema(ptr: usize, cap: i32): i32;

// @ts-ignore: decorator
@external("walcast_v1", "table")
export declare function table(ptr: usize, cap: i32): i32;

// @ts-ignore: decorator
@external("walcast_v1", "field")
export declare function field(image: i32, namePtr: usize, nameLen: i32): i32;

// @ts-ignore: decorator
@external("walcast_v1", "field_type")
export declare function field_type(handle: i32): i32;

// @ts-ignore: decorator
@external("walcast_v1", "field_i64")
export declare function field_i64(handle: i32, outPtr: usize): i32;

// @ts-ignore: decorator
@external("walcast_v1", "field_f64")
export declare function field_f64(handle: i32, outPtr: usize): i32;

// @ts-ignore: decorator
@external("walcast_v1", "field_bool")
export declare function field_bool(handle: i32): i32;

// @ts-ignore: decorator
@external("walcast_v1", "field_str")
export declare function field_str(handle: i32, ptr: usize, cap: i32): i32;

// @ts-ignore: decorator
@external("walcast_v1", "field_eq_str")
export declare function field_eq_str(handle: i32, ptr: usize, len: i32): i32;

// @ts-ignore: decorator
@external("walcast_v1", "field_raw")
export declare function field_raw(handle: i32, ptr: usize, cap: i32): i32;

// @ts-ignore: decorator
@external("walcast_v1", "field_changed")
export declare function field_changed(namePtr: usize, nameLen: i32): i32;

// @ts-ignore: decorator
@external("walcast_v1", "field_count")
export declare function field_count(image: i32): i32;

// @ts-ignore: decorator
@external("walcast_v1", "field_at")
export declare function field_at(image: i32, index: i32): i32;

// @ts-ignore: decorator
@external("walcast_v1", "field_name")
export declare function field_name(handle: i32, ptr: usize, cap: i32): i32;

// --- Params ---

// @ts-ignore: decorator
@external("walcast_v1", "param")
export declare function param(keyPtr: usize, keyLen: i32, ptr: usize, cap: i32): i32;

// --- Output builder ---

// @ts-ignore: decorator
@external("walcast_v1", "out_clear")
export declare function out_clear(image: i32): i32;

// @ts-ignore: decorator
@external("walcast_v1", "out_copy")
export declare function out_copy(image: i32, namePtr: usize, nameLen: i32): i32;

// @ts-ignore: decorator
@external("walcast_v1", "out_remove")
export declare function out_remove(image: i32, namePtr: usize, nameLen: i32): i32;

// @ts-ignore: decorator
@external("walcast_v1", "out_set_null")
export declare function out_set_null(image: i32, namePtr: usize, nameLen: i32): i32;

// @ts-ignore: decorator
@external("walcast_v1", "out_set_bool")
export declare function out_set_bool(image: i32, namePtr: usize, nameLen: i32, value: i32): i32;

// @ts-ignore: decorator
@external("walcast_v1", "out_set_i64")
export declare function out_set_i64(image: i32, namePtr: usize, nameLen: i32, value: i64): i32;

// @ts-ignore: decorator
@external("walcast_v1", "out_set_f64")
export declare function out_set_f64(image: i32, namePtr: usize, nameLen: i32, value: f64): i32;

// @ts-ignore: decorator
@external("walcast_v1", "out_set_str")
export declare function out_set_str(
  image: i32, namePtr: usize, nameLen: i32, ptr: usize, len: i32,
): i32;

// @ts-ignore: decorator
@external("walcast_v1", "out_set_json")
export declare function out_set_json(
  image: i32, namePtr: usize, nameLen: i32, ptr: usize, len: i32,
): i32;

// --- Diagnostics ---

// @ts-ignore: decorator
@external("walcast_v1", "log")
export declare function log(level: i32, ptr: usize, len: i32): void;

// @ts-ignore: decorator
@external("walcast_v1", "set_error")
export declare function set_error(ptr: usize, len: i32): void;
