// A plugin that calls every SDK function, so check.mjs can verify each host import's signature
// against ABI.md and each wrapper's behaviour against the fake host. Not an example to copy: see
// ../template for that.

import {
  Change, Field, Image, LogLevel, Op, Output, Params, Verdict, log, setError,
} from "../index";

export { walcast_abi_version } from "../index";

let threshold: f64 = 0;

export function walcast_init(): i32 {
  if (Params.require("name") === null) return 1;
  threshold = Params.getF64("threshold", -1);
  if (Params.has("num")) {
    let v = Params.getF64("num");
    if (isNaN(v)) return 1;
    setError("num=" + v.toString());
    return 1;
  }
  if (Params.has("need_num") && isNaN(Params.requireF64("missing_num"))) return 1;
  if (Params.has("reject")) {
    setError("rejected: " + (Params.get("reject") as string));
    return 1;
  }
  log(LogLevel.INFO, "init threshold=" + threshold.toString());
  return 0;
}

function describe(f: Field): string {
  let s = f.name() + ":" + (<i32>f.kind()).toString();
  s += " i64=" + f.asI64(-7).toString();
  s += " f64=" + f.asF64(-7.5).toString();
  s += " bool=" + (f.asBool() ? "t" : "f");
  let t = f.asString();
  s += " str=" + (t === null ? "<null>" : t);
  s += " raw=" + f.raw();
  s += " null=" + (f.isNull() ? "t" : "f");
  return s;
}

export function walcast_filter(): i32 {
  let table = Change.table();
  if (table == "fail") {
    setError("failed on " + Change.schema() + "." + table);
    return Verdict.ERROR;
  }
  if (Change.op() == Op.TRUNCATE) return Verdict.DROP;
  if (Change.op() == Op.DELETE) return Verdict.PASS;

  let n = Change.fieldCount(Image.NEW);
  let descr = "";
  for (let i = 0; i < n; i++) {
    let f = Change.fieldAt(Image.NEW, i);
    if (f !== null) descr += describe(f) + "\n";
  }
  if (Change.fieldAt(Image.NEW, n) !== null) descr += "past-end!";

  let s = Change.field(Image.NEW, "s");
  let eq = s !== null && s.eqStr("hello ✓");
  let absent = Change.field(Image.NEW, "nope") === null;
  let ch = Change.changed("s");
  let fromOld = Change.column("only_old");
  let colNew = Change.column("s");
  let colOk = Change.column("nope") === null;
  if (fromOld === null || !fromOld.eqStr("o")) colOk = false;
  if (colNew === null || !colNew.eqStr("hello ✓")) colOk = false;

  Output.clear(Image.OLD);
  let copied = Output.copy(Image.OLD, "id");
  let copiedMissing = Output.copy(Image.OLD, "nope");
  let removed = Output.remove(Image.NEW, "drop_me");
  Output.setNull(Image.NEW, "n_null");
  Output.setBool(Image.NEW, "n_bool", true);
  Output.setI64(Image.NEW, "n_i64", -9007199254740993);
  Output.setF64(Image.NEW, "n_f64", 2.5);
  Output.setF64(Image.NEW, "n_inf", Infinity);
  Output.setStr(Image.NEW, "n_str", "ünïcødé ✓");
  let jsonOk = Output.setJson(Image.NEW, "n_json", "{\"k\":[1,2]}");
  let jsonBad = Output.setJson(Image.NEW, "n_bad", "{nope");
  Output.setStr(Image.NEW, "describe", descr);
  Output.setStr(Image.NEW, "meta",
    Change.schema() + "." + table + " op=" + (<i32>Change.op()).toString() +
    " eq=" + (eq ? "t" : "f") + " absent=" + (absent ? "t" : "f") +
    " changed=" + (<i32>ch).toString() + " copied=" + (copied ? "t" : "f") +
    " copiedMissing=" + (copiedMissing ? "t" : "f") + " removed=" + (removed ? "t" : "f") + " column=" + (colOk ? "t" : "f") +
    " json=" + (jsonOk ? "t" : "f") + (jsonBad ? "t" : "f") +
    " threshold=" + threshold.toString() + " name=" + (Params.get("name") as string));
  log(LogLevel.DEBUG, "rewrote " + table);
  return Verdict.PASS_REWRITTEN;
}

