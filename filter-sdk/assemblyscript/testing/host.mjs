// A JavaScript stand-in for walcast's side of filter ABI v1 (filter-sdk/ABI.md), for unit-testing
// plugins in node without running walcast. It follows the ABI's return codes and range checks but
// is not the real host: rate limits, deadlines and memory caps are not modelled.
//
//   import { FakeHost, Json, Verdict, checkModule } from "@walcast/filter-sdk/testing/host.mjs";
//   const host = await FakeHost.load(fs.readFileSync("build/x.wasm"), { word: "hello" });
//   host.init();                                   // 0 accepts; host.error holds a rejection
//   host.filter({ op: 1, schema: "public", table: "t", new: { body: "Hello" } });  // -> Verdict

/** Verdicts returned by walcast_filter. */
export const Verdict = Object.freeze({ DROP: 0, PASS: 1, PASS_REWRITTEN: 2, ERROR: 3 });

/** Operations returned by op(). */
export const Op = Object.freeze({ INSERT: 1, UPDATE: 2, DELETE: 3, TRUNCATE: 4 });

/** A json/jsonb column value, given as its JSON text. */
export class Json {
  constructor(text) {
    this.text = text;
  }
}

const ABSENT = -1;
const WRONG_TYPE = -2;
const BAD_HANDLE = -3;
const BAD_UTF8 = -4;
const BAD_JSON = -5;
const NO_CHANGE = -6;

const I32 = 0x7f;
const I64 = 0x7e;
const F64 = 0x7c;

/** Every host function of walcast_v1 with its exact signature: [params, results]. */
export const WALCAST_V1 = Object.freeze({
  op: [[], [I32]],
  schema: [[I32, I32], [I32]],
  table: [[I32, I32], [I32]],
  field: [[I32, I32, I32], [I32]],
  field_type: [[I32], [I32]],
  field_i64: [[I32, I32], [I32]],
  field_f64: [[I32, I32], [I32]],
  field_bool: [[I32], [I32]],
  field_str: [[I32, I32, I32], [I32]],
  field_eq_str: [[I32, I32, I32], [I32]],
  field_raw: [[I32, I32, I32], [I32]],
  field_changed: [[I32, I32], [I32]],
  field_count: [[I32], [I32]],
  field_at: [[I32, I32], [I32]],
  field_name: [[I32, I32, I32], [I32]],
  param: [[I32, I32, I32, I32], [I32]],
  out_clear: [[I32], [I32]],
  out_copy: [[I32, I32, I32], [I32]],
  out_remove: [[I32, I32, I32], [I32]],
  out_set_null: [[I32, I32, I32], [I32]],
  out_set_bool: [[I32, I32, I32, I32], [I32]],
  out_set_i64: [[I32, I32, I32, I64], [I32]],
  out_set_f64: [[I32, I32, I32, F64], [I32]],
  out_set_str: [[I32, I32, I32, I32, I32], [I32]],
  out_set_json: [[I32, I32, I32, I32, I32], [I32]],
  log: [[I32, I32, I32], []],
  set_error: [[I32, I32], []],
});

const REQUIRED_EXPORTS = ["memory", "walcast_abi_version", "walcast_init", "walcast_filter"];

// --- Module checks (what walcast refuses at load) ---

function readU32(bytes, pos) {
  let result = 0;
  let shift = 0;
  for (;;) {
    const b = bytes[pos.at++];
    result |= (b & 0x7f) << shift;
    if ((b & 0x80) === 0) return result >>> 0;
    shift += 7;
  }
}

function readName(bytes, pos) {
  const len = readU32(bytes, pos);
  const s = new TextDecoder().decode(bytes.subarray(pos.at, pos.at + len));
  pos.at += len;
  return s;
}

/** Function imports with their signatures, parsed from the type and import sections. */
export function listImports(bytes) {
  bytes = new Uint8Array(bytes);
  const types = [];
  const imports = [];
  const pos = { at: 8 };
  while (pos.at < bytes.length) {
    const id = bytes[pos.at++];
    const size = readU32(bytes, pos);
    const end = pos.at + size;
    if (id === 1) {
      const n = readU32(bytes, pos);
      for (let i = 0; i < n; i++) {
        pos.at++; // 0x60 func
        const np = readU32(bytes, pos);
        const params = Array.from(bytes.subarray(pos.at, pos.at + np));
        pos.at += np;
        const nr = readU32(bytes, pos);
        const results = Array.from(bytes.subarray(pos.at, pos.at + nr));
        pos.at += nr;
        types.push([params, results]);
      }
    } else if (id === 2) {
      const n = readU32(bytes, pos);
      for (let i = 0; i < n; i++) {
        const module = readName(bytes, pos);
        const name = readName(bytes, pos);
        const kind = bytes[pos.at++];
        if (kind === 0) {
          imports.push({ module, name, kind: "function", type: types[readU32(bytes, pos)] });
        } else {
          imports.push({ module, name, kind: ["function", "table", "memory", "global"][kind] });
          break; // non-function imports are refused anyway; their descriptors are not parsed
        }
      }
    }
    pos.at = end;
  }
  return imports;
}

const TYPE_NAMES = { [I32]: "i32", [I64]: "i64", [F64]: "f64", 0x7d: "f32" };

function sig([params, results]) {
  const p = params.map((t) => TYPE_NAMES[t] ?? `0x${t.toString(16)}`).join(", ");
  const r = results.map((t) => TYPE_NAMES[t] ?? `0x${t.toString(16)}`).join(", ");
  return `(${p}) -> (${r})`;
}

/**
 * The reasons walcast would refuse this module at load (an empty array when it would load): imports
 * outside walcast_v1, unknown names or wrong signatures, missing exports.
 */
export function checkModule(bytes) {
  const problems = [];
  for (const imp of listImports(bytes)) {
    const want = imp.module === "walcast_v1" ? WALCAST_V1[imp.name] : undefined;
    if (!want || imp.kind !== "function") {
      problems.push(`import ${imp.module}.${imp.name} is outside walcast_v1`);
    } else if (sig(want) !== sig(imp.type)) {
      problems.push(`import walcast_v1.${imp.name} has ${sig(imp.type)}, ABI says ${sig(want)}`);
    }
  }
  const exports = WebAssembly.Module.exports(new WebAssembly.Module(bytes)).map((e) => e.name);
  for (const name of REQUIRED_EXPORTS) {
    if (!exports.includes(name)) problems.push(`missing export ${name}`);
  }
  return problems;
}

/** `sig` for reports: each function import as `module.name (params) -> (results)`. */
export function describeImports(bytes) {
  return listImports(bytes).map((i) => `${i.module}.${i.name} ${i.type ? sig(i.type) : i.kind}`);
}

// --- The fake host ---

const utf8 = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

function kindOf(v) {
  if (v === null || v === undefined) return 0;
  if (typeof v === "boolean") return 1;
  if (typeof v === "number" || typeof v === "bigint") return 2;
  if (typeof v === "string") return 3;
  if (v instanceof Json) return 4;
  throw new Error(`unsupported fake field value ${v}`);
}

function textOf(v) {
  if (v === null || v === undefined) return null;
  if (v instanceof Json) return v.text;
  return String(v);
}

function rawOf(v) {
  if (v === null || v === undefined) return "null";
  if (v instanceof Json) return v.text;
  if (typeof v === "bigint") return v.toString();
  return JSON.stringify(v);
}

export class FakeHost {
  /** Compiles and instantiates `bytes` against this host; `params` are the plugin.<key> values. */
  static async load(bytes, params = {}) {
    const problems = checkModule(bytes);
    if (problems.length) throw new Error(`walcast would refuse the module: ${problems.join("; ")}`);
    const host = new FakeHost(params);
    const { instance } = await WebAssembly.instantiate(bytes, host.imports());
    host.instance = instance;
    host.exports = instance.exports;
    return host;
  }

  constructor(params = {}) {
    this.params = params;
    this.change = null;
    this.handles = [];
    this.out = null;
    this.output = null;
    this.error = null;
    this.logs = [];
  }

  abiVersion() {
    return this.exports.walcast_abi_version();
  }

  /** Calls walcast_init; returns its code (0 accepts). The message is in `this.error`. */
  init() {
    this.error = null;
    return this.exports.walcast_init();
  }

  /**
   * Runs walcast_filter on `change` = { op, schema, table, new: {col: value}, old: {col: value} }
   * (values: null, boolean, number, bigint, string or Json). Returns the verdict; after
   * PASS_REWRITTEN, `this.output` holds { new, old } as plain objects.
   */
  filter(change) {
    this.change = { op: 1, schema: "public", table: "t", new: {}, old: {}, ...change };
    this.change.new ??= {};
    this.change.old ??= {};
    this.handles = [];
    this.out = null;
    this.output = null;
    this.error = null;
    try {
      const verdict = this.exports.walcast_filter();
      if (verdict === Verdict.PASS_REWRITTEN) {
        this.outImage(0);
        const [n, o] = this.out;
        this.output = { new: Object.fromEntries(n), old: Object.fromEntries(o) };
      }
      return verdict;
    } finally {
      this.change = null;
      this.out = null;
    }
  }

  // The output images start as copies of the change's images (made on first use).
  outImage(i) {
    this.out ??= [new Map(Object.entries(this.change.new)), new Map(Object.entries(this.change.old))];
    return this.out[i];
  }

  bytes(ptr, len) {
    const mem = new Uint8Array(this.exports.memory.buffer);
    if (ptr < 0 || len < 0 || ptr + len > mem.length) {
      throw new RangeError(`guest range (${ptr}, ${len}) is outside its memory`);
    }
    return mem.subarray(ptr, ptr + len);
  }

  str(ptr, len) {
    try {
      return utf8.decode(this.bytes(ptr, len));
    } catch (e) {
      if (e instanceof RangeError) throw e;
      return null;
    }
  }

  copyOut(text, ptr, cap) {
    const dest = this.bytes(ptr, cap);
    const src = encoder.encode(text);
    dest.set(src.subarray(0, Math.min(cap, src.length)));
    return src.length;
  }

  value(h) {
    const entry = this.handles[h];
    if (!this.change || !entry) return { bad: true };
    const [image, name] = entry;
    return { v: (image === 0 ? this.change.new : this.change.old)[name] };
  }

  imports() {
    const host = this;
    const image = (i) => (i === 0 ? host.change.new : host.change.old);
    const withOut = (fn) => (img, np, nl, ...rest) => {
      if (!host.change) return NO_CHANGE;
      if (img !== 0 && img !== 1) return BAD_HANDLE;
      const name = host.str(np, nl);
      if (name === null) return BAD_UTF8;
      return fn(img, host.outImage(img), name, ...rest);
    };
    const v1 = {
      op: () => (host.change ? host.change.op : NO_CHANGE),
      schema: (p, c) => (host.change ? host.copyOut(host.change.schema, p, c) : NO_CHANGE),
      table: (p, c) => (host.change ? host.copyOut(host.change.table, p, c) : NO_CHANGE),
      field: (img, np, nl) => {
        if (!host.change) return NO_CHANGE;
        const name = host.str(np, nl);
        if (name === null) return BAD_UTF8;
        if ((img !== 0 && img !== 1) || !(name in image(img))) return ABSENT;
        host.handles.push([img, name]);
        return host.handles.length - 1;
      },
      field_type: (h) => {
        const { bad, v } = host.value(h);
        return bad ? BAD_HANDLE : kindOf(v);
      },
      field_i64: (h, p) => {
        const { bad, v } = host.value(h);
        if (bad) return BAD_HANDLE;
        if (v === null || v === undefined) return ABSENT;
        let n;
        if (typeof v === "bigint") n = v;
        else if (typeof v === "number" && Number.isInteger(v)) n = BigInt(v);
        else return WRONG_TYPE;
        if (n < -(2n ** 63n) || n >= 2n ** 63n) return WRONG_TYPE;
        new DataView(host.exports.memory.buffer).setBigInt64(host.bytes(p, 8).byteOffset, n, true);
        return 0;
      },
      field_f64: (h, p) => {
        const { bad, v } = host.value(h);
        if (bad) return BAD_HANDLE;
        if (v === null || v === undefined) return ABSENT;
        if (typeof v !== "number" && typeof v !== "bigint") return WRONG_TYPE;
        new DataView(host.exports.memory.buffer).setFloat64(host.bytes(p, 8).byteOffset, Number(v), true);
        return 0;
      },
      field_bool: (h) => {
        const { bad, v } = host.value(h);
        if (bad) return BAD_HANDLE;
        if (v === null || v === undefined) return ABSENT;
        return typeof v === "boolean" ? (v ? 1 : 0) : WRONG_TYPE;
      },
      field_str: (h, p, c) => {
        const { bad, v } = host.value(h);
        if (bad) return BAD_HANDLE;
        const t = textOf(v);
        return t === null ? ABSENT : host.copyOut(t, p, c);
      },
      field_eq_str: (h, p, l) => {
        const { bad, v } = host.value(h);
        if (bad) return BAD_HANDLE;
        const s = host.str(p, l);
        if (s === null) return BAD_UTF8;
        return textOf(v) === s ? 1 : 0;
      },
      field_raw: (h, p, c) => {
        const { bad, v } = host.value(h);
        return bad ? BAD_HANDLE : host.copyOut(rawOf(v), p, c);
      },
      field_changed: (np, nl) => {
        if (!host.change) return NO_CHANGE;
        const name = host.str(np, nl);
        if (name === null) return BAD_UTF8;
        if (host.change.op !== Op.UPDATE || !(name in host.change.old)) return ABSENT;
        return rawOf(host.change.old[name]) === rawOf(host.change.new[name]) ? 0 : 1;
      },
      field_count: (img) => {
        if (!host.change) return NO_CHANGE;
        return img === 0 || img === 1 ? Object.keys(image(img)).length : ABSENT;
      },
      field_at: (img, i) => {
        if (!host.change) return NO_CHANGE;
        if (img !== 0 && img !== 1) return ABSENT;
        const names = Object.keys(image(img));
        if (i < 0 || i >= names.length) return ABSENT;
        host.handles.push([img, names[i]]);
        return host.handles.length - 1;
      },
      field_name: (h, p, c) => {
        const entry = host.handles[h];
        if (!host.change || !entry) return BAD_HANDLE;
        return host.copyOut(entry[1], p, c);
      },
      param: (kp, kl, p, c) => {
        const key = host.str(kp, kl);
        if (key === null) return BAD_UTF8;
        const v = host.params[key];
        return v === undefined ? ABSENT : host.copyOut(String(v), p, c);
      },
      out_clear: (img) => {
        if (!host.change) return NO_CHANGE;
        if (img !== 0 && img !== 1) return BAD_HANDLE;
        host.outImage(img).clear();
        return 0;
      },
      out_copy: withOut((img, o, name) => {
        const src = image(img);
        if (!(name in src)) return ABSENT;
        o.set(name, src[name]);
        return 0;
      }),
      out_remove: withOut((_img, o, name) => (o.delete(name) ? 0 : ABSENT)),
      out_set_null: withOut((_img, o, name) => (o.set(name, null), 0)),
      out_set_bool: withOut((_img, o, name, v) => (o.set(name, v !== 0), 0)),
      out_set_i64: withOut((_img, o, name, v) => (o.set(name, v), 0)),
      out_set_f64: withOut((_img, o, name, v) => (o.set(name, Number.isFinite(v) ? v : null), 0)),
      out_set_str: withOut((_img, o, name, p, l) => {
        const s = host.str(p, l);
        if (s === null) return BAD_UTF8;
        o.set(name, s);
        return 0;
      }),
      out_set_json: withOut((_img, o, name, p, l) => {
        const s = host.str(p, l);
        if (s === null) return BAD_UTF8;
        try {
          JSON.parse(s);
        } catch {
          return BAD_JSON;
        }
        o.set(name, new Json(s));
        return 0;
      }),
      log: (level, p, l) => {
        host.logs.push({ level, msg: host.str(p, l) });
      },
      set_error: (p, l) => {
        const s = host.str(p, l);
        host.error = s === null ? "<bad utf-8>" : s.slice(0, 1024);
      },
    };
    return { walcast_v1: v1 };
  }
}
