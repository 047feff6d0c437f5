// SDK self-check: compiles test/all.ts (which calls every SDK function), then verifies that every
// walcast_v1 import has ABI.md's signature and nothing else is imported, and runs each wrapper
// against the fake host in ../testing/host.mjs. Run with `npm test` after `npm install`.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import { checkModule, describeImports, FakeHost, Json, listImports, Op, Verdict, WALCAST_V1 } from "../testing/host.mjs";

const root = new URL("..", import.meta.url).pathname;
execFileSync(
  "npx",
  ["asc", "test/all.ts", "--outFile", "build/all.wasm", "--optimize", "--runtime", "incremental", "--use", "abort="],
  { cwd: root, stdio: "inherit" },
);
const wasm = fs.readFileSync(`${root}/build/all.wasm`);

// Note: AssemblyScript prints whole f64 values with ".0" (7.0), unlike JavaScript.

// Imports: exactly the whole of walcast_v1, each with its ABI signature.
assert.deepEqual(checkModule(wasm), []);
const names = listImports(wasm).map((i) => i.name).sort();
assert.deepEqual(names, Object.keys(WALCAST_V1).sort());
console.log(`ok   all ${names.length} walcast_v1 imports match ABI.md signatures`);
for (const line of describeImports(wasm)) console.log(`       ${line}`);

// Params in init.
{
  const host = await FakeHost.load(wasm, { threshold: "3.5" });
  assert.equal(host.abiVersion(), 1);
  assert.equal(host.init(), 1);
  assert.equal(host.error, 'param "name" is required');
  const rejecting = await FakeHost.load(wasm, { name: "x", reject: "because ✓" });
  assert.equal(rejecting.init(), 1);
  assert.equal(rejecting.error, "rejected: because ✓");
  const cases = [
    ["12.5", "num=12.5"], [" -2e3 ", "num=-2000.0"], [".5", "num=0.5"],
    ["12abc", 'param "num" must be a number, got "12abc"'], ["", 'param "num" must be a number, got ""'],
    ["1-2", 'param "num" must be a number, got "1-2"'], ["1e999", 'param "num" must be a number, got "1e999"'],
  ];
  for (const [value, message] of cases) {
    const h = await FakeHost.load(wasm, { name: "x", num: value });
    assert.equal(h.init(), 1);
    assert.equal(h.error, message, `num=${JSON.stringify(value)}`);
  }
  const needs = await FakeHost.load(wasm, { name: "x", need_num: "1" });
  assert.equal(needs.init(), 1);
  assert.equal(needs.error, 'param "missing_num" is required');
  console.log("ok   Params.require / has / get / getF64 / requireF64 and setError in init");
}

const longName = "n".repeat(300);
const longText = "é".repeat(5000);
const host = await FakeHost.load(wasm, { name: "all", threshold: "3.5" });
assert.equal(host.init(), 0, host.error);
assert.deepEqual(host.logs, [{ level: 2, msg: "init threshold=3.5" }]);

const verdict = host.filter({
  op: Op.UPDATE,
  schema: "app",
  table: "things",
  new: {
    id: 7,
    s: "hello ✓",
    f: 1.25,
    b: true,
    z: null,
    j: new Json('{"a":1}'),
    big: 2n ** 62n,
    [longName]: longText,
    drop_me: 1,
  },
  old: { id: 7, s: "bye", only_old: "o" },
});
assert.equal(verdict, Verdict.PASS_REWRITTEN, host.error);
const out = host.output;
const describe = out.new.describe.split("\n");
assert.deepEqual(describe.slice(0, 7), [
  "id:2 i64=7 f64=7.0 bool=f str=7 raw=7 null=f",
  "s:3 i64=-7 f64=-7.5 bool=f str=hello ✓ raw=\"hello ✓\" null=f",
  "f:2 i64=-7 f64=1.25 bool=f str=1.25 raw=1.25 null=f",
  "b:1 i64=-7 f64=-7.5 bool=t str=true raw=true null=f",
  "z:0 i64=-7 f64=-7.5 bool=f str=<null> raw=null null=t",
  "j:4 i64=-7 f64=-7.5 bool=f str={\"a\":1} raw={\"a\":1} null=f",
  "big:2 i64=4611686018427387904 f64=4611686018427388000.0 bool=f str=4611686018427387904 raw=4611686018427387904 null=f",
]);
assert.equal(describe[7], `${longName}:3 i64=-7 f64=-7.5 bool=f str=${longText} raw="${longText}" null=f`);
assert.ok(!out.new.describe.includes("past-end!"));
assert.equal(
  out.new.meta,
  "app.things op=2 eq=t absent=t changed=1 copied=t copiedMissing=f removed=t column=t json=tf threshold=3.5 name=all",
);
assert.deepEqual(out.old, { id: 7 });
assert.equal(out.new.drop_me, undefined);
assert.equal(out.new.n_null, null);
assert.equal(out.new.n_bool, true);
assert.equal(out.new.n_i64, -9007199254740993n);
assert.equal(out.new.n_f64, 2.5);
assert.equal(out.new.n_inf, null);
assert.equal(out.new.n_str, "ünïcødé ✓");
assert.deepEqual(out.new.n_json, new Json('{"k":[1,2]}'));
assert.ok(!("n_bad" in out.new));
assert.deepEqual(host.logs.at(-1), { level: 3, msg: "rewrote things" });
console.log("ok   Change / Field / Output wrappers (incl. values longer than the copy buffer)");

assert.equal(host.filter({ op: Op.DELETE, old: { id: 1 } }), Verdict.PASS);
assert.equal(host.filter({ op: Op.TRUNCATE }), Verdict.DROP);
assert.equal(host.filter({ op: Op.INSERT, schema: "s", table: "fail" }), Verdict.ERROR);
assert.equal(host.error, "failed on s.fail");
console.log("ok   verdicts and setError in filter");

// Huge values shrink the copy buffer back afterwards; memory stays bounded over many changes.
for (let i = 0; i < 5_000; i++) host.filter({ op: Op.INSERT, new: { s: "x".repeat(200) } });
const before = host.exports.memory.buffer.byteLength;
for (let i = 0; i < 20_000; i++) host.filter({ op: Op.INSERT, new: { s: "x".repeat(200) } });
assert.ok(host.exports.memory.buffer.byteLength <= before, "memory grew");
console.log(`ok   memory bounded (${before} bytes); module ${wasm.length} bytes`);
console.log("all SDK checks passed");
