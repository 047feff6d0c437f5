// A walcast filter plugin: passes a change when a column equals a value, and hides a column.
//   plugin=<name>&plugin.column=status&plugin.equals=active[&plugin.hide=password]
// Rename, then replace the bodies of walcast_init and walcast_filter with your logic.

import { Change, Image, Op, Output, Params, Verdict, setError } from "@walcast/filter-sdk";

// Required export: the host checks it returns ABI version 1. Keep this line.
export { walcast_abi_version } from "@walcast/filter-sdk";

// Params are read once per instance in walcast_init and kept in globals.
let column: string = "";
let equals: string = "";
let hide: string | null = null;

// Called once per instance. Return 0 to accept the subscription; anything else rejects it with
// HTTP 400 plugin_rejected and the message given to setError.
export function walcast_init(): i32 {
  let c = Params.require("column"); // sets `param "column" is required` when absent
  if (c === null) return 1;
  let e = Params.require("equals");
  if (e === null) return 1;
  if (c.length == 0) {
    setError("param \"column\" must not be empty");
    return 1;
  }
  column = c;
  equals = e;
  hide = Params.get("hide"); // optional
  return 0;
}

// Called once per change. Return a Verdict.
export function walcast_filter(): i32 {
  // Deletes carry only the old row (replica identity); the others are read in the new row.
  let image = Change.op() == Op.DELETE ? Image.OLD : Image.NEW;
  let f = Change.field(image, column);
  if (f === null) return Verdict.DROP; // column absent (or a truncate)
  if (!f.eqStr(equals)) return Verdict.DROP; // compared on the host: no copy

  let h = hide;
  if (h !== null) {
    Output.remove(Image.NEW, h);
    Output.remove(Image.OLD, h);
    return Verdict.PASS_REWRITTEN; // deliver the edited images
  }
  return Verdict.PASS; // deliver unchanged
}
