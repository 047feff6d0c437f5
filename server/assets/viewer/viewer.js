// walcast live viewer: subscribes to one table (`/ws` + a `subscribe` message) or one NOTIFY
// channel (`/listen/{channel}?format=json`) and shows what arrives, newest first.
//
// Plain script, no build step. The page's CSP allows no inline script or style and no eval, so
// everything is built with createElement/textContent (server data is never parsed as HTML).
//
// A token (auth.mode = "jwt") lives in the password field only: it goes out as
// `Authorization: Bearer` on fetches and as the `bearer.<jwt>` subprotocol on sockets, never in a
// URL the page builds or shows. `/#access_token=<jwt>` fills the field, then leaves the address bar.
"use strict";

(() => {
  const MAX_ROWS = 500; // rows kept in the DOM; also the bound of what a pause holds
  const OPS = ["insert", "update", "delete", "truncate"];
  const SUMMARY_COLUMNS = 4;
  /** What a WebSocket subprotocol (and so a `bearer.<jwt>` entry) may hold: RFC 7230 tchar. */
  const TOKEN_CHARS = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

  const $ = (id) => document.getElementById(id);
  const ui = {
    modeTable: $("mode-table"),
    modeChannel: $("mode-channel"),
    tablePanel: $("table-panel"),
    channelPanel: $("channel-panel"),
    token: $("token"),
    table: $("table"),
    reloadTables: $("reload-tables"),
    ops: OPS.map((op) => $(`ops-${op}`)),
    filter: $("filter"),
    select: $("select"),
    columns: $("columns"),
    channel: $("channel"),
    form: $("controls"),
    subscribe: $("subscribe"),
    stop: $("stop"),
    pause: $("pause"),
    clear: $("clear"),
    copy: $("copy"),
    url: $("url"),
    status: $("status"),
    error: $("error"),
    rows: $("rows"),
    empty: $("empty"),
    count: $("count"),
  };

  /** Tables from `/v1/tables`, in the order of the select's options. */
  let tables = [];
  /** The current connection: {ws, req, id, opened, live, quiet}. */
  let conn = null;
  let seq = 0;
  let paused = false;
  /** Frames that arrived while paused (the newest MAX_ROWS) and how many arrived in all. */
  let held = [];
  let heldCount = 0;
  let received = 0;

  // ---- small helpers ------------------------------------------------------------------------

  function node(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  /** A name as the query language takes it: double-quoted when it holds `.` `:` `,` `"` or space. */
  function quoteIdent(name) {
    return name === "" || /[.:,"\s]/.test(name) ? `"${name.replaceAll('"', '""')}"` : name;
  }

  /** Filter conditions: split on whitespace outside double quotes (`name.in.("a b",c)` stays whole). */
  function splitConditions(text) {
    const out = [];
    let cur = "";
    let quoted = false;
    for (const ch of text) {
      if (ch === '"') quoted = !quoted;
      if (!quoted && /\s/.test(ch)) {
        if (cur) out.push(cur);
        cur = "";
      } else {
        cur += ch;
      }
    }
    if (cur) out.push(cur);
    return out;
  }

  function mode() {
    return ui.modeChannel.checked ? "channel" : "table";
  }

  function wsOrigin() {
    return `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}`;
  }

  /** What the form asks for, or `{problem}` when it is incomplete. */
  function request() {
    if (mode() === "channel") {
      const channel = ui.channel.value;
      if (channel.trim() === "") return { problem: "type a channel name" };
      return { kind: "channel", channel, label: `channel “${channel}”` };
    }
    const t = tables[ui.table.selectedIndex];
    if (!t || ui.table.value === "") return { problem: "choose a table" };
    const ops = OPS.filter((_, i) => ui.ops[i].checked);
    if (ops.length === 0) return { problem: "choose at least one kind of change" };
    const types = ops.length === OPS.length ? "*" : ops.join(",");
    const name = `${quoteIdent(t.schema)}.${quoteIdent(t.table)}`;
    return {
      kind: "table",
      query: `${types}:${name}`,
      filter: splitConditions(ui.filter.value),
      select: ui.select.value.trim(),
      label: `${t.schema}.${t.table}`,
      types,
    };
  }

  /** The path (and query) a standalone client would open for the same view. */
  function standalonePath(req) {
    if (req.kind === "channel") return `/listen/${encodeURIComponent(req.channel)}`;
    const params = [`query=${encodeURIComponent(req.query)}`];
    for (const f of req.filter) params.push(`filter=${encodeURIComponent(f)}`);
    if (req.select) params.push(`select=${encodeURIComponent(req.select)}`);
    return `/ws?${params.join("&")}`;
  }

  function updateUrl() {
    const req = request();
    ui.url.value = req.problem ? "" : wsOrigin() + standalonePath(req);
    ui.url.placeholder = req.problem ? `(${req.problem})` : "";
    // The URL never carries the token: another client brings its own.
    ui.url.title = token()
      ? "without the token: give your client one as Authorization: Bearer, the bearer.<jwt> subprotocol or access_token="
      : "";
  }

  function setStatus(state, text) {
    ui.status.dataset.state = state;
    ui.status.textContent = text;
    ui.status.title = text;
  }

  /** Shows an error: its code, the message and, optionally, what to do; `from` tags its origin. */
  function showError(code, message, advice, from) {
    ui.error.replaceChildren(node("span", "code", code), node("span", "message", message || ""));
    if (advice) ui.error.append(node("span", "advice", advice));
    ui.error.dataset.from = from || "";
    ui.error.hidden = false;
  }

  function clearError() {
    ui.error.replaceChildren();
    ui.error.dataset.from = "";
    ui.error.hidden = true;
  }

  // ---- the token ----------------------------------------------------------------------------

  /** The token in the field (a pasted `Bearer ` prefix dropped), or "" when none. */
  function token() {
    return ui.token.value.trim().replace(/^bearer\s+/i, "");
  }

  /** Why the token cannot be sent, or "" when it can (or there is none). */
  function tokenProblem() {
    const t = token();
    if (t === "" || TOKEN_CHARS.test(t)) return "";
    return "the token holds characters a JWT has not (spaces, quotes, ...): paste the token alone";
  }

  /** Headers for a JSON request, with the token when there is one. */
  function jsonHeaders() {
    const headers = { accept: "application/json" };
    const t = token();
    if (t) headers.authorization = `Bearer ${t}`;
    return headers;
  }

  /** After a 401: marks the field, and says what to do (`then` names the next step). */
  function tokenAdvice(then) {
    ui.token.setAttribute("aria-invalid", "true");
    return token()
      ? `The token was refused: paste a valid, unexpired one in the Token field, then ${then}.`
      : `This server requires a token: paste a JWT in the Token field, then ${then}.`;
  }

  /**
   * `#access_token=<jwt>` in the page's URL: into the field, then out of the address bar (and of
   * the history entry), so it is not left on screen. Other fragment parameters stay.
   */
  function takeTokenFromFragment() {
    if (!location.hash) return false;
    const params = new URLSearchParams(location.hash.slice(1));
    const t = params.get("access_token");
    if (t === null) return false;
    params.delete("access_token");
    const rest = params.toString();
    history.replaceState(history.state, "", `${location.pathname}${location.search}${rest ? `#${rest}` : ""}`);
    ui.token.value = t.trim();
    ui.token.removeAttribute("aria-invalid");
    return true;
  }

  // ---- the table list -----------------------------------------------------------------------

  async function loadTables() {
    const previous = ui.table.value;
    const problem = tokenProblem();
    if (problem) {
      ui.token.setAttribute("aria-invalid", "true");
      showError("bad_token", problem, "", "tables");
      unavailable();
      return;
    }
    ui.reloadTables.disabled = true;
    try {
      const res = await fetch("/v1/tables", { headers: jsonHeaders() });
      const body = await res.json().catch(() => null);
      if (!res.ok || !body || !Array.isArray(body.tables)) {
        const err = body && body.error ? body : { error: `http_${res.status}`, message: "GET /v1/tables failed" };
        const advice = res.status === 401 ? tokenAdvice("reload the tables (↻)") : "";
        showError(err.error, err.message, advice, "tables");
        unavailable();
        return;
      }
      // The list came: an error of an earlier load, or a token refused before, is over.
      if (ui.error.dataset.from === "tables" || ui.error.dataset.from === "token") clearError();
      ui.token.removeAttribute("aria-invalid");
      tables = body.tables;
      const options = tables.map((t) => {
        const label = `${t.schema}.${t.table}`;
        const o = node("option", "", label);
        o.value = label;
        return o;
      });
      if (options.length === 0) {
        const o = node("option", "", "no tables allowed on this server");
        o.value = "";
        options.push(o);
      }
      ui.table.replaceChildren(...options);
      if (previous && tables.some((t) => `${t.schema}.${t.table}` === previous)) ui.table.value = previous;
    } catch (e) {
      showError("tables_unavailable", `GET /v1/tables failed: ${e.message}`, "", "tables");
      unavailable();
    } finally {
      ui.reloadTables.disabled = false;
      showColumns();
      updateUrl();
    }
  }

  /** A failed first load: the list says so instead of "loading tables…" (a list shown stays). */
  function unavailable() {
    if (tables.length > 0) return;
    const o = node("option", "", "tables unavailable (see the error)");
    o.value = "";
    ui.table.replaceChildren(o);
  }

  function showColumns() {
    const t = tables[ui.table.selectedIndex];
    ui.columns.textContent =
      t && t.columns && t.columns.length
        ? `Columns: ${t.columns.map((c) => `${c.name} ${c.type}`).join(" · ")}`
        : "";
  }

  // ---- connection ---------------------------------------------------------------------------

  function start() {
    const req = request();
    if (req.problem) {
      showError("incomplete", req.problem);
      return;
    }
    stop();
    clearError();
    const problem = tokenProblem();
    if (problem) {
      ui.token.setAttribute("aria-invalid", "true");
      setStatus("error", "not connected");
      showError("bad_token", problem);
      return;
    }
    const path = req.kind === "channel" ? `/listen/${encodeURIComponent(req.channel)}?format=json` : "/ws";
    const c = { req, path, id: `viewer-${++seq}`, opened: false, live: false, quiet: false, ws: null };
    conn = c;
    setStatus("connecting", `connecting to ${req.label}…`);
    let ws;
    try {
      // The token rides in the subprotocol list (browsers set no headers on a WebSocket); the
      // server answers `walcast`.
      const t = token();
      ws = t ? new WebSocket(wsOrigin() + path, ["walcast", `bearer.${t}`]) : new WebSocket(wsOrigin() + path);
    } catch (e) {
      conn = null;
      setStatus("error", "not connected");
      showError("bad_url", e.message);
      return;
    }
    c.ws = ws;
    ui.stop.disabled = false;
    ws.onopen = () => opened(c);
    ws.onmessage = (e) => message(c, e.data);
    ws.onclose = (e) => closed(c, e);
  }

  /** Closes the current connection without reporting its close. */
  function stop() {
    const c = conn;
    conn = null;
    ui.stop.disabled = true;
    if (!c) return;
    c.quiet = true;
    if (c.ws && c.ws.readyState <= WebSocket.OPEN) c.ws.close(1000, "viewer stopped");
    setStatus("idle", `stopped (${c.req.label})`);
  }

  function opened(c) {
    if (conn !== c) return;
    c.opened = true;
    if (c.req.kind === "channel") {
      c.live = true;
      setStatus("live", `listening on ${c.req.label}`);
      return;
    }
    const msg = { type: "subscribe", id: c.id, query: c.req.query };
    if (c.req.filter.length) msg.filter = c.req.filter;
    if (c.req.select) msg.select = c.req.select;
    c.ws.send(JSON.stringify(msg));
    setStatus("connecting", `subscribing to ${c.req.label}…`);
  }

  function message(c, data) {
    if (conn !== c) return;
    let f;
    try {
      f = JSON.parse(data);
    } catch {
      showError("bad_frame", `a frame that is not JSON: ${String(data).slice(0, 200)}`);
      return;
    }
    if (c.req.kind === "channel") {
      if (f.type === "notify" || f.type === "notify_gap") arrived(f);
      return;
    }
    if (f.id !== undefined && f.id !== c.id) return;
    switch (f.type) {
      case "subscribed": {
        c.live = true;
        const types = c.req.types === "*" ? "all changes" : c.req.types.replaceAll(",", ", ");
        const at = f.lsn ? ` since ${f.lsn}` : "";
        setStatus(paused ? "paused" : "live", `subscribed to ${f.table || c.req.label} (${types})${at}`);
        break;
      }
      case "change":
        arrived(f);
        break;
      case "error":
        showError(f.error || "error", f.message || "");
        if (!c.live) {
          // A refused subscribe: the socket has nothing else to carry.
          setStatus("error", `refused: ${f.error}`);
          stopQuietly(c);
        } else if (["plugin_failing", "subscription_deleted", "slow_consumer"].includes(f.error)) {
          setStatus("error", `subscription ended: ${f.error}`);
          stopQuietly(c);
        }
        break;
      default:
        break; // unsubscribed, acked, snapshot frames: not used by the viewer
    }
  }

  function stopQuietly(c) {
    c.quiet = true;
    if (conn === c) {
      conn = null;
      ui.stop.disabled = true;
    }
    c.ws.close(1000, "viewer done");
  }

  async function closed(c, e) {
    if (c.quiet || conn !== c) return;
    conn = null;
    ui.stop.disabled = true;
    if (!c.opened) {
      setStatus("error", `could not connect to ${c.req.label}`);
      await explainRefusal(c);
      return;
    }
    const detail = e.reason ? `${e.code}: ${e.reason}` : `${e.code}`;
    if (e.code === 4001) {
      setStatus("error", `token expired (${detail})`);
      showError(
        "token expired",
        e.reason || "the socket's token expired",
        `Paste a fresh token in the Token field, then ${c.req.kind === "channel" ? "Listen" : "Subscribe"} again.`,
        "token",
      );
      ui.token.setAttribute("aria-invalid", "true");
      return;
    }
    setStatus(e.code === 1000 ? "idle" : "error", `closed (${detail})`);
    if (e.code >= 4000 || e.code === 1011) {
      showError(`closed ${e.code}`, e.reason || "the server closed the connection");
    }
  }

  /**
   * The browser hides why an upgrade was refused: ask again with a plain GET (same token), which
   * answers the same checks. A bare `/ws` that passes them answers `missing_query` (a table
   * socket's subscription goes in a message), a `/listen` one the upgrade rejection (426).
   */
  async function explainRefusal(c) {
    try {
      const res = await fetch(c.path, { headers: jsonHeaders() });
      const body = await res.json().catch(() => null);
      if (body && body.error && res.status !== 426 && body.error !== "missing_query") {
        const advice = res.status === 401 ? tokenAdvice(`${c.req.kind === "channel" ? "Listen" : "Subscribe"} again`) : "";
        showError(body.error, body.message, advice, res.status === 401 ? "token" : "");
        setStatus("error", `refused (HTTP ${res.status})`);
      } else {
        showError(
          "connection_failed",
          `the WebSocket to ${c.path} failed although the server accepts the request (HTTP ${res.status}); a proxy may not pass WebSockets`,
        );
      }
    } catch (err) {
      showError("connection_failed", `cannot reach the server: ${err.message}`);
    }
  }

  // ---- rows ---------------------------------------------------------------------------------

  function arrived(frame) {
    received += 1;
    if (paused) {
      held.push(frame);
      if (held.length > MAX_ROWS) held.shift();
      heldCount += 1;
      updatePause();
    } else {
      render([frame]);
    }
    updateCount();
  }

  /** Adds rows for `frames` (oldest first) at the top, keeping at most MAX_ROWS. */
  function render(frames) {
    if (frames.length === 0) return;
    const fragment = document.createDocumentFragment();
    for (let i = frames.length - 1; i >= 0 && fragment.childNodes.length < MAX_ROWS; i--) {
      fragment.append(buildRow(frames[i]));
    }
    ui.rows.prepend(fragment);
    while (ui.rows.childElementCount > MAX_ROWS) ui.rows.lastElementChild.remove();
    updateCount();
  }

  function buildRow(f) {
    const tr = node("tr", "row fresh");
    let op;
    let source;
    let summary;
    let newer = null;
    let older = null;
    let when = new Date();
    if (f.type === "change") {
      op = f.op;
      tr.classList.add(`op-${f.op}`);
      source = `${f.schema}.${f.table}`;
      newer = f.new;
      older = f.old;
      summary = f.op === "truncate" ? "table truncated" : summarize(f.new || f.old);
      if (f.ts) {
        const d = new Date(f.ts);
        if (!Number.isNaN(d.getTime())) when = d;
      }
      tr.title = [f.lsn && `lsn ${f.lsn}`, f.xid !== undefined && `xid ${f.xid}`, f.ts && `committed ${f.ts}`]
        .filter(Boolean)
        .join(" · ");
    } else if (f.type === "notify") {
      op = "notify";
      tr.classList.add("notify");
      source = f.channel;
      summary = f.payload;
      tr.title = `from backend pid ${f.pid}`;
    } else {
      op = "gap";
      tr.classList.add("gap");
      source = conn && conn.req.kind === "channel" ? conn.req.channel : "";
      summary = f.message || "notifications may have been lost";
    }

    const time = node("td", "c-time", clock(when));
    time.title = when.toISOString();
    const opCell = node("td", "c-op");
    opCell.append(node("span", "op", op));
    const summaryCell = node("td", f.type === "notify" ? "c-summary payload" : "c-summary", summary);
    tr.append(time, opCell, node("td", "c-table", source), summaryCell, jsonCell("c-new", newer), jsonCell("c-old", older));
    tr.addEventListener("animationend", () => tr.classList.remove("fresh"), { once: true });
    return tr;
  }

  function jsonCell(className, value) {
    const td = node("td", className);
    if (value === null || value === undefined) td.append(node("span", "none", "—"));
    else appendJson(td, value);
    return td;
  }

  /**
   * A row as JSON (the cell's text parses as JSON) with a space after each top-level `,` and `:`;
   * each short `"key": value` pair is kept on one line, so long rows wrap between columns.
   */
  function appendJson(td, value) {
    if (!value || typeof value !== "object" || Array.isArray(value)) {
      td.textContent = JSON.stringify(value);
      return;
    }
    td.append("{");
    Object.entries(value).forEach(([k, v], i) => {
      if (i > 0) td.append(", ");
      const pair = `${JSON.stringify(k)}: ${JSON.stringify(v)}`;
      td.append(pair.length <= 48 ? node("span", "pair", pair) : pair);
    });
    td.append("}");
  }

  function summarize(row) {
    if (!row || typeof row !== "object") return "";
    const entries = Object.entries(row);
    const parts = entries.slice(0, SUMMARY_COLUMNS).map(([k, v]) => `${k}=${short(v)}`);
    if (entries.length > SUMMARY_COLUMNS) parts.push("…");
    return parts.join("  ");
  }

  function short(v) {
    const s = typeof v === "string" ? v : JSON.stringify(v);
    return s.length > 40 ? `${s.slice(0, 39)}…` : s;
  }

  function clock(d) {
    const pad = (n, w = 2) => String(n).padStart(w, "0");
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  }

  function updateCount() {
    const shown = ui.rows.childElementCount;
    ui.empty.hidden = shown > 0;
    if (received === 0 && shown === 0) {
      ui.count.textContent = "no rows yet";
      return;
    }
    let text = `${shown} shown · ${received} received`;
    if (shown >= MAX_ROWS) text += ` · newest ${MAX_ROWS} kept`;
    if (paused) text += ` · ${heldCount} waiting`;
    ui.count.textContent = text;
  }

  function updatePause() {
    ui.pause.textContent = paused ? `Resume (${heldCount} new)` : "Pause";
    ui.pause.classList.toggle("on", paused);
    ui.pause.setAttribute("aria-pressed", String(paused));
  }

  function togglePause() {
    paused = !paused;
    if (!paused) {
      const frames = held;
      held = [];
      heldCount = 0;
      render(frames);
    }
    if (conn && conn.live) {
      ui.status.dataset.state = paused ? "paused" : "live";
    }
    updatePause();
    updateCount();
  }

  function clearRows() {
    ui.rows.replaceChildren();
    held = [];
    heldCount = 0;
    received = 0;
    updatePause();
    updateCount();
  }

  // ---- copy URL -----------------------------------------------------------------------------

  async function copyUrl() {
    updateUrl();
    if (!ui.url.value) return;
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(ui.url.value);
        flash(ui.copy, "Copied");
        return;
      } catch {
        // not allowed (no focus, permission): fall back to selecting the text
      }
    }
    ui.url.focus();
    ui.url.select();
    flash(ui.copy, "Press Ctrl+C");
  }

  function flash(button, text) {
    const original = button.dataset.label || button.textContent;
    button.dataset.label = original;
    button.textContent = text;
    clearTimeout(button.flashTimer);
    button.flashTimer = setTimeout(() => {
      button.textContent = original;
    }, 1500);
  }

  // ---- wiring -------------------------------------------------------------------------------

  function modeChanged() {
    const channel = mode() === "channel";
    ui.tablePanel.hidden = channel;
    ui.channelPanel.hidden = !channel;
    ui.subscribe.textContent = channel ? "Listen" : "Subscribe";
    updateUrl();
  }

  ui.modeTable.addEventListener("change", modeChanged);
  ui.modeChannel.addEventListener("change", modeChanged);
  ui.table.addEventListener("change", () => {
    showColumns();
    updateUrl();
  });
  for (const input of [ui.filter, ui.select, ui.channel, ...ui.ops]) {
    input.addEventListener("input", updateUrl);
    input.addEventListener("change", updateUrl);
  }
  ui.form.addEventListener("submit", (e) => {
    e.preventDefault(); // form-action 'none': the form never navigates
    start();
  });
  ui.stop.addEventListener("click", () => {
    stop();
  });
  ui.pause.addEventListener("click", togglePause);
  ui.clear.addEventListener("click", clearRows);
  ui.copy.addEventListener("click", copyUrl);
  ui.reloadTables.addEventListener("click", loadTables);
  ui.url.addEventListener("focus", () => ui.url.select());
  ui.token.addEventListener("input", () => {
    ui.token.removeAttribute("aria-invalid");
    updateUrl();
  });
  // A new `#access_token=` typed over an open page is no new load: take it, list the tables with it.
  window.addEventListener("hashchange", () => {
    if (takeTokenFromFragment()) loadTables();
  });

  takeTokenFromFragment();
  modeChanged();
  updatePause();
  updateCount();
  setStatus("idle", "idle: choose a table or a channel");
  loadTables();
})();
