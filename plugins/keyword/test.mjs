// Checks build/keyword.wasm against a JavaScript fake of walcast's ABI v1 host: the module loads
// the way walcast would load it (imports only walcast_v1, required exports), init validates its
// params, and the filter passes/drops as documented. Run `npm run build` first, then `node test.mjs`.

import assert from "node:assert/strict";
import fs from "node:fs";
import { checkModule, describeImports, FakeHost, Op, Verdict } from "@walcast/filter-sdk/testing/host.mjs";

const wasm = fs.readFileSync(new URL("./build/keyword.wasm", import.meta.url));
let failures = 0;

async function test(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}\n     ${e.stack ?? e}`);
  }
}

async function ready(params) {
  const host = await FakeHost.load(wasm, params);
  assert.equal(host.init(), 0, `init rejected: ${host.error}`);
  return host;
}

const row = (body, op = Op.INSERT) => ({ op, schema: "public", table: "posts", new: { id: 1, body } });

await test("module would load in walcast", () => {
  assert.deepEqual(checkModule(wasm), []);
  const imports = WebAssembly.Module.imports(new WebAssembly.Module(wasm));
  assert.ok(imports.every((i) => i.module === "walcast_v1"), JSON.stringify(imports));
  const exports = WebAssembly.Module.exports(new WebAssembly.Module(wasm)).map((e) => e.name).sort();
  assert.deepEqual(exports, ["memory", "walcast_abi_version", "walcast_filter", "walcast_init"]);
  console.log(`     ${wasm.length} bytes; imports: ${describeImports(wasm).join(", ")}`);
});

await test("abi version is 1", async () => {
  const host = await FakeHost.load(wasm, {});
  assert.equal(host.abiVersion(), 1);
});

await test("init rejects a missing word", async () => {
  const host = await FakeHost.load(wasm, { column: "body" });
  assert.equal(host.init(), 1);
  assert.equal(host.error, 'param "word" is required');
});

await test("init rejects a missing column", async () => {
  const host = await FakeHost.load(wasm, { word: "x" });
  assert.equal(host.init(), 1);
  assert.equal(host.error, 'param "column" is required');
});

await test("init rejects an empty word", async () => {
  const host = await FakeHost.load(wasm, { column: "body", word: "" });
  assert.equal(host.init(), 1);
  assert.equal(host.error, 'param "word" must not be empty');
});

await test("passes when the column contains the word, any case", async () => {
  const host = await ready({ column: "body", word: "World" });
  assert.equal(host.filter(row("hello world")), Verdict.PASS);
  assert.equal(host.filter(row("HELLO WORLD!")), Verdict.PASS);
  assert.equal(host.filter(row("underworldly")), Verdict.PASS);
  assert.equal(host.filter(row("world", Op.UPDATE)), Verdict.PASS);
});

await test("drops when the column does not contain the word", async () => {
  const host = await ready({ column: "body", word: "world" });
  assert.equal(host.filter(row("hello there")), Verdict.DROP);
  assert.equal(host.filter(row("")), Verdict.DROP);
  assert.equal(host.filter(row("wor ld")), Verdict.DROP);
});

await test("drops a null or absent column, and a truncate", async () => {
  const host = await ready({ column: "body", word: "world" });
  assert.equal(host.filter(row(null)), Verdict.DROP);
  assert.equal(host.filter({ op: Op.INSERT, new: { id: 1, title: "world" } }), Verdict.DROP);
  assert.equal(host.filter({ op: Op.TRUNCATE }), Verdict.DROP);
});

await test("a delete is searched in the old row", async () => {
  const host = await ready({ column: "body", word: "world" });
  assert.equal(host.filter({ op: Op.DELETE, old: { id: 1, body: "World peace" } }), Verdict.PASS);
  assert.equal(host.filter({ op: Op.DELETE, old: { id: 1 } }), Verdict.DROP);
});

await test("an update with an unchanged TOASTed column falls back to the old row", async () => {
  const host = await ready({ column: "body", word: "world" });
  assert.equal(host.filter({ op: Op.UPDATE, new: { id: 1 }, old: { id: 1, body: "hello world" } }), Verdict.PASS);
  assert.equal(host.filter({ op: Op.UPDATE, new: { id: 1, body: "hello" }, old: { id: 1, body: "world" } }), Verdict.DROP);
  assert.equal(host.filter({ op: Op.UPDATE, new: { id: 1 }, old: { id: 1 } }), Verdict.DROP);
});

await test("non-ASCII text is lowercased too", async () => {
  const host = await ready({ column: "body", word: "ÉCOLE" });
  assert.equal(host.filter(row("à l'école du village")), Verdict.PASS);
  const greek = await ready({ column: "body", word: "ΣΟΦΙΑ" });
  assert.equal(greek.filter(row("η σοφια")), Verdict.PASS);
});

await test("long values (past the 256-byte copy buffer) and long words", async () => {
  const host = await ready({ column: "body", word: "needle".repeat(60) });
  assert.equal(host.filter(row("x".repeat(100_000) + "NEEDLE".repeat(60))), Verdict.PASS);
  assert.equal(host.filter(row("x".repeat(100_000))), Verdict.DROP);
  assert.equal(host.filter(row("needle".repeat(60))), Verdict.PASS);
});

await test("memory stays bounded over many changes (the GC runs)", async () => {
  const host = await ready({ column: "body", word: "world" });
  const text = "Hello World ".repeat(40);
  for (let i = 0; i < 20_000; i++) host.filter(row(text));
  const before = host.exports.memory.buffer.byteLength;
  for (let i = 0; i < 100_000; i++) assert.equal(host.filter(row(text)), Verdict.PASS);
  const after = host.exports.memory.buffer.byteLength;
  assert.ok(after <= before, `memory grew from ${before} to ${after} bytes`);
  console.log(`     memory after 120,000 changes: ${after} bytes`);
});

if (failures) {
  console.log(`${failures} test(s) failed`);
  process.exit(1);
}
console.log("all keyword tests passed");
