// Runs build/plugin.wasm against a JavaScript fake of walcast's host. `npm run build && node test.mjs`
import assert from "node:assert/strict";
import fs from "node:fs";
import { checkModule, FakeHost, Op, Verdict } from "@walcast/filter-sdk/testing/host.mjs";

const wasm = fs.readFileSync(new URL("./build/plugin.wasm", import.meta.url));

// walcast would load it: imports only walcast_v1, exports memory + the three functions.
assert.deepEqual(checkModule(wasm), []);

// init rejects missing params with a message.
const bad = await FakeHost.load(wasm, { column: "status" });
assert.equal(bad.init(), 1);
assert.equal(bad.error, 'param "equals" is required');

const host = await FakeHost.load(wasm, { column: "status", equals: "active", hide: "password" });
assert.equal(host.init(), 0, host.error);
const change = (status) => ({
  op: Op.INSERT, schema: "public", table: "users",
  new: { id: 1, status, password: "hunter2" },
});
assert.equal(host.filter(change("active")), Verdict.PASS_REWRITTEN);
assert.deepEqual(host.output.new, { id: 1, status: "active" });
assert.equal(host.filter(change("banned")), Verdict.DROP);
assert.equal(host.filter(change(null)), Verdict.DROP);
console.log("template tests passed");
