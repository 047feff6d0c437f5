// keyword: passes a change when its text column contains a word, case-insensitively.
// Params: plugin.column (the column to search), plugin.word (the word). A null or absent column
// drops the change. The column is read from the new row, falling back to the old row (deletes, and
// unchanged TOASTed values under REPLICA IDENTITY FULL); truncates carry no row and are dropped.

import { Change, Params, Verdict, setError } from "@walcast/filter-sdk";

// Required by the host: returns the ABI version (1).
export { walcast_abi_version } from "@walcast/filter-sdk";

let column: string = "";
let word: string = "";

export function walcast_init(): i32 {
  let c = Params.require("column");
  if (c === null) return 1;
  let w = Params.require("word");
  if (w === null) return 1;
  if (w.length == 0) {
    setError("param \"word\" must not be empty");
    return 1;
  }
  column = c;
  // Lowercase once here; each change lowercases only its own text.
  word = w.toLowerCase();
  return 0;
}

export function walcast_filter(): i32 {
  let f = Change.column(column);
  if (f === null) return Verdict.DROP;
  let text = f.asString();
  if (text === null) return Verdict.DROP;
  return text.toLowerCase().includes(word) ? Verdict.PASS : Verdict.DROP;
}
