// @walcast/filter-sdk: AssemblyScript wrappers over walcast filter ABI v1 (filter-sdk/ABI.md).
// Owns the string conversions (AssemblyScript strings are UTF-16, the ABI speaks UTF-8) and the
// grow-and-retry copy protocol; owns nothing of the host side. The API mirrors the Rust SDK:
// Change, Field, Params, Output, log, setError, Verdict.
//
// A plugin's entry file re-exports `walcast_abi_version` and defines its own `walcast_init` and
// `walcast_filter` (see README.md). Build with `--runtime incremental --use abort=` so the module
// imports nothing outside `walcast_v1` and garbage is collected between changes.

import * as abi from "./abi";

export { abi };

/** The ABI version this SDK speaks; `walcast_abi_version` returns it. */
export const ABI_VERSION: i32 = 1;

/** Required guest export: the host refuses a module that does not return 1. */
export function walcast_abi_version(): i32 {
  return ABI_VERSION;
}

/** Return values of `walcast_filter`. */
export enum Verdict {
  /** The change is not delivered to this group. */
  DROP = 0,
  /** Delivered unchanged. */
  PASS = 1,
  /** Delivered with the row images built through `Output`. */
  PASS_REWRITTEN = 2,
  /** The plugin failed on this change (message via `setError`). */
  ERROR = 3,
}

/** The change's operation. */
export enum Op {
  INSERT = 1,
  UPDATE = 2,
  DELETE = 3,
  TRUNCATE = 4,
}

/** Which row image: the new row, or the old row / replica identity. */
export enum Image {
  NEW = 0,
  OLD = 1,
}

/** The JSON kind of a field's value. */
export enum Kind {
  NULL = 0,
  BOOL = 1,
  NUMBER = 2,
  STRING = 3,
  /** A `json`/`jsonb` column. */
  JSON = 4,
}

/** Result of `Change.changed` on an update. */
export enum Changed {
  /** The old row does not carry the column (replica identity too narrow), or not an update. */
  UNKNOWN = -1,
  SAME = 0,
  CHANGED = 1,
}

/** `log` levels. */
export enum LogLevel {
  ERROR = 0,
  WARN = 1,
  INFO = 2,
  DEBUG = 3,
}

/** Negative return codes common to all host functions. */
export enum Status {
  OK = 0,
  ABSENT = -1,
  WRONG_TYPE = -2,
  BAD_HANDLE = -3,
  BAD_UTF8 = -4,
  BAD_JSON = -5,
  NO_CHANGE = -6,
}

// --- String plumbing ---

// Lone surrogates become U+FFFD instead of WTF-8 bytes, which the host would refuse as BAD_UTF8.
function utf8(s: string): ArrayBuffer {
  return String.UTF8.encode(s, false, String.UTF8.ErrorMode.REPLACE);
}

// 8 bytes of static memory for the i64/f64 out-parameters (never moved by the GC).
const NUM_OUT: usize = memory.data(8);

// One reusable buffer for every copy function, grown on demand so steady state allocates only the
// resulting string. Shrunk back after an unusually large value so one big row is not kept forever.
const SCRATCH_DEFAULT: i32 = 256;
const SCRATCH_KEEP_MAX: i32 = 64 * 1024;
let scratch = new ArrayBuffer(SCRATCH_DEFAULT);

// The copy protocol, written out at each call site so a module imports only the host functions
// it really uses: call with the scratch buffer; when the returned full length exceeds the
// capacity, grow the buffer to that length and call once more (the value cannot change within one
// `walcast_filter` call); then decode. A negative code means absent/null.
// @ts-ignore: decorator
@inline function scratchPtr(): usize {
  return changetype<usize>(scratch);
}

// @ts-ignore: decorator
@inline function scratchCap(): i32 {
  return scratch.byteLength;
}

// True when a retry is needed; grows the scratch buffer to `n` bytes.
function needsRetry(n: i32): bool {
  if (n <= scratch.byteLength) return false;
  scratch = new ArrayBuffer(n);
  return true;
}

// The first `n` bytes of the scratch buffer as a string, or null for a negative code (or a length
// that still does not fit, which a well-behaved host never returns).
function takeString(n: i32): string | null {
  let cap = scratch.byteLength;
  if (n < 0 || n > cap) return null;
  let s = String.UTF8.decodeUnsafe(changetype<usize>(scratch), <usize>n);
  if (cap > SCRATCH_KEEP_MAX) scratch = new ArrayBuffer(SCRATCH_DEFAULT);
  return s;
}

// --- The change ---

/** A column of one row image of the current change. Valid only during this `walcast_filter` call. */
export class Field {
  constructor(public readonly handle: i32) {}

  /** The value's kind; negative (a `Status`) when the handle is not valid. */
  kind(): Kind {
    return abi.field_type(this.handle);
  }

  isNull(): bool {
    return abi.field_type(this.handle) == Kind.NULL;
  }

  /** The column name. */
  name(): string {
    let n = abi.field_name(this.handle, scratchPtr(), scratchCap());
    if (needsRetry(n)) n = abi.field_name(this.handle, scratchPtr(), scratchCap());
    let s = takeString(n);
    return s === null ? "" : s;
  }

  /** The value as an integer; `orElse` when null, not a number, or not an integer in i64 range. */
  asI64(orElse: i64 = 0): i64 {
    if (abi.field_i64(this.handle, NUM_OUT) != 0) return orElse;
    return load<i64>(NUM_OUT);
  }

  /** The value as a float (nearest value); `orElse` when null or not a number. */
  asF64(orElse: f64 = NaN): f64 {
    if (abi.field_f64(this.handle, NUM_OUT) != 0) return orElse;
    return load<f64>(NUM_OUT);
  }

  /** The value as a boolean; `orElse` when null or not a bool. */
  asBool(orElse: bool = false): bool {
    let r = abi.field_bool(this.handle);
    if (r < 0) return orElse;
    return r == 1;
  }

  /** The text of a string or json value (numbers: their text); null for SQL NULL. */
  asString(): string | null {
    let n = abi.field_str(this.handle, scratchPtr(), scratchCap());
    if (needsRetry(n)) n = abi.field_str(this.handle, scratchPtr(), scratchCap());
    return takeString(n);
  }

  /** Whether the value's text equals `s`, compared on the host without copying the value. */
  eqStr(s: string): bool {
    let b = utf8(s);
    return abi.field_eq_str(this.handle, changetype<usize>(b), b.byteLength) == 1;
  }

  /** The value as JSON text (`"a\"b"`, `12.50`, `null`, `{"k":1}`). */
  raw(): string {
    let n = abi.field_raw(this.handle, scratchPtr(), scratchCap());
    if (needsRetry(n)) n = abi.field_raw(this.handle, scratchPtr(), scratchCap());
    let s = takeString(n);
    return s === null ? "null" : s;
  }
}

/** The change being filtered. Only usable inside `walcast_filter`. */
export class Change {
  static op(): Op {
    return abi.op();
  }

  static schema(): string {
    let n = abi.schema(scratchPtr(), scratchCap());
    if (needsRetry(n)) n = abi.schema(scratchPtr(), scratchCap());
    let s = takeString(n);
    return s === null ? "" : s;
  }

  static table(): string {
    let n = abi.table(scratchPtr(), scratchCap());
    if (needsRetry(n)) n = abi.table(scratchPtr(), scratchCap());
    let s = takeString(n);
    return s === null ? "" : s;
  }

  /** A column of `image`, or null when absent (an unchanged TOASTed column is absent from NEW). */
  static field(image: Image, name: string): Field | null {
    let b = utf8(name);
    let h = abi.field(image, changetype<usize>(b), b.byteLength);
    return h < 0 ? null : new Field(h);
  }

  /**
   * The column of the row the change is about: the new row, falling back to the old row (deletes,
   * and unchanged TOASTed columns under `REPLICA IDENTITY FULL`). Null when neither carries it.
   */
  static column(name: string): Field | null {
    let f = Change.field(Image.NEW, name);
    return f !== null ? f : Change.field(Image.OLD, name);
  }

  /**
   * Update only: whether the column differs between the old and the new row. The old row is the
   * table's replica identity: by default only the primary key, so other columns are UNKNOWN unless
   * the table has `REPLICA IDENTITY FULL`.
   */
  static changed(name: string): Changed {
    let b = utf8(name);
    let r = abi.field_changed(changetype<usize>(b), b.byteLength);
    if (r == 1) return Changed.CHANGED;
    if (r == 0) return Changed.SAME;
    return Changed.UNKNOWN;
  }

  /** Number of columns in `image`. */
  static fieldCount(image: Image): i32 {
    let n = abi.field_count(image);
    return n < 0 ? 0 : n;
  }

  /** The column at `index` (table order), or null past the end. */
  static fieldAt(image: Image, index: i32): Field | null {
    let h = abi.field_at(image, index);
    return h < 0 ? null : new Field(h);
  }
}

// --- Params ---

/** The subscription's `plugin.<key>=<value>` parameters. Readable in `walcast_init`. */
export class Params {
  /** The value of `plugin.<key>`, or null when not given. */
  static get(key: string): string | null {
    let k = utf8(key);
    let kp = changetype<usize>(k);
    let n = abi.param(kp, k.byteLength, scratchPtr(), scratchCap());
    // `k` stays a live local across the growth below, so the GC keeps it in place.
    if (needsRetry(n)) n = abi.param(kp, k.byteLength, scratchPtr(), scratchCap());
    return takeString(n);
  }

  static has(key: string): bool {
    let k = utf8(key);
    return abi.param(changetype<usize>(k), k.byteLength, 0, 0) >= 0;
  }

  /**
   * The value parsed as a finite float (surrounding spaces ignored); `orElse` when not given. A
   * value that is not a number returns NaN and sets the error
   * `param "key" must be a number, got "value"`, so `walcast_init` can `return 1` on `isNaN`.
   */
  static getF64(key: string, orElse: f64 = NaN): f64 {
    let s = Params.get(key);
    if (s === null) return orElse;
    let v = parseNumber(s.trim());
    if (isNaN(v)) setError("param \"" + key + "\" must be a number, got \"" + clip(s) + "\"");
    return v;
  }

  /** Like `getF64`, with `param "key" is required` (and NaN) when not given. */
  static requireF64(key: string): f64 {
    if (!Params.has(key)) {
      setError("param \"" + key + "\" is required");
      return NaN;
    }
    return Params.getF64(key);
  }

  /**
   * The value of `plugin.<key>`; when not given, sets the error `param "<key>" is required` and
   * returns null, so `walcast_init` can simply `return 1`.
   */
  static require(key: string): string | null {
    let s = Params.get(key);
    if (s === null) setError("param \"" + key + "\" is required");
    return s;
  }
}

// A decimal number (`-1.5`, `+2e3`, `.5`, `5.`), finite; NaN for anything else (parseFloat alone
// would read `12abc` as 12).
function parseNumber(s: string): f64 {
  let i = 0;
  let n = s.length;
  if (i < n && (s.charCodeAt(i) == 43 || s.charCodeAt(i) == 45)) i++; // + -
  let mantissa = 0;
  while (i < n && isDigit(s.charCodeAt(i))) { i++; mantissa++; }
  if (i < n && s.charCodeAt(i) == 46) { // .
    i++;
    while (i < n && isDigit(s.charCodeAt(i))) { i++; mantissa++; }
  }
  if (mantissa == 0) return NaN;
  if (i < n && (s.charCodeAt(i) | 32) == 101) { // e E
    i++;
    if (i < n && (s.charCodeAt(i) == 43 || s.charCodeAt(i) == 45)) i++;
    let exp = 0;
    while (i < n && isDigit(s.charCodeAt(i))) { i++; exp++; }
    if (exp == 0) return NaN;
  }
  if (i != n) return NaN;
  let v = parseFloat(s);
  return isFinite(v) ? v : NaN;
}

// @ts-ignore: decorator
@inline function isDigit(c: i32): bool {
  return c >= 48 && c <= 57;
}

// Quoted values in error messages are cut to 64 characters.
function clip(s: string): string {
  return s.length > 64 ? s.substring(0, 64) : s;
}

// --- Output builder ---

/**
 * Edits the output row images (which start as copies of the change's images). Takes effect only
 * when `walcast_filter` returns `Verdict.PASS_REWRITTEN`. Methods return true on success.
 */
export class Output {
  /** Removes every column from the output image (then `copy`/`set*` the ones to keep). */
  static clear(image: Image): void {
    abi.out_clear(image);
  }

  /** Copies the original column into the output image; false when the change has no such column. */
  static copy(image: Image, name: string): bool {
    let n = utf8(name);
    return abi.out_copy(image, changetype<usize>(n), n.byteLength) == 0;
  }

  static remove(image: Image, name: string): bool {
    let n = utf8(name);
    return abi.out_remove(image, changetype<usize>(n), n.byteLength) == 0;
  }

  static setNull(image: Image, name: string): bool {
    let n = utf8(name);
    return abi.out_set_null(image, changetype<usize>(n), n.byteLength) == 0;
  }

  static setBool(image: Image, name: string, value: bool): bool {
    let n = utf8(name);
    return abi.out_set_bool(image, changetype<usize>(n), n.byteLength, value ? 1 : 0) == 0;
  }

  static setI64(image: Image, name: string, value: i64): bool {
    let n = utf8(name);
    return abi.out_set_i64(image, changetype<usize>(n), n.byteLength, value) == 0;
  }

  /** Non-finite values become null on the host. */
  static setF64(image: Image, name: string, value: f64): bool {
    let n = utf8(name);
    return abi.out_set_f64(image, changetype<usize>(n), n.byteLength, value) == 0;
  }

  static setStr(image: Image, name: string, value: string): bool {
    let n = utf8(name);
    let v = utf8(value);
    return abi.out_set_str(
      image, changetype<usize>(n), n.byteLength, changetype<usize>(v), v.byteLength,
    ) == 0;
  }

  /** Sets a JSON value; false (nothing set) when `json` is not valid JSON. */
  static setJson(image: Image, name: string, json: string): bool {
    let n = utf8(name);
    let v = utf8(json);
    return abi.out_set_json(
      image, changetype<usize>(n), n.byteLength, changetype<usize>(v), v.byteLength,
    ) == 0;
  }
}

// --- Diagnostics ---

/** Writes to walcast's log under the plugin's name (rate-limited by the host). */
export function log(level: LogLevel, msg: string): void {
  let b = utf8(msg);
  abi.log(level, changetype<usize>(b), b.byteLength);
}

/** The message for a rejecting `walcast_init` or an `ERROR` verdict (the host keeps 1 KiB). */
export function setError(msg: string): void {
  let b = utf8(msg);
  abi.set_error(changetype<usize>(b), b.byteLength);
}
