"use strict";
// The Circulatory console's dashboard: a single page over the JSON admin API.
//
// Sections, in order:
//   1. DOM building        building elements (text only through textContent: nothing from the
//                          server is ever parsed as HTML)
//   2. Formatting          numbers, durations, times
//   3. API                 fetch with the sign-in cookie, the CSRF header, problem+json errors
//   4. Chrome              sign-in, who is signed in, banner, flash messages, dialog
//   5. Tables              rows keyed by id, updated in place on every refresh
//   6. Charts              sparklines and line charts as inline SVG
//   7. Pages               one function per page: overview, group, events, realtime, dead
//                          letters, topology
//   8. Router and polling  hash routes; the visible page refreshes every 2 s, paused while the
//                          tab is hidden
(() => {
  const API = "/admin/circulatory";
  /** Every page refresh is at least this far apart (start to start). */
  const POLL_MS = 2000;
  /** History is stored per minute: it is read again at this pace only. */
  const HISTORY_EVERY_MS = 30000;
  const CSRF_COOKIE = "circ_console_csrf";
  const SVG_NS = "http://www.w3.org/2000/svg";

  // ---- 1. DOM building ------------------------------------------------------------------------

  /** Appends children (nodes, strings as text, arrays, null skipped) to `node`. */
  function append(node, children) {
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      if (Array.isArray(child)) append(node, child);
      else if (child instanceof Node) node.appendChild(child);
      else node.appendChild(document.createTextNode(String(child)));
    }
    return node;
  }

  /** Sets attributes: `class`, `text`, `data` (dataset), `on` (listeners), others as attributes. */
  function applyAttrs(node, attrs) {
    if (!attrs) return node;
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
      else if (name === "text") node.textContent = String(value);
      else if (name === "data") for (const [k, v] of Object.entries(value)) { if (v !== null && v !== undefined) node.dataset[k] = String(v); }
      else if (name === "on") for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
      else if (value === true) node.setAttribute(name, "");
      else node.setAttribute(name, String(value));
    }
    return node;
  }

  /** Appends children as `append` does (the DOM's own `append` would print `null`). */
  function add(node, ...children) {
    return append(node, children);
  }

  /** Replaces every child of `node`. */
  function put(node, ...children) {
    node.replaceChildren();
    return append(node, children);
  }

  function el(tag, attrs, ...children) {
    return append(applyAttrs(document.createElement(tag), attrs), children);
  }

  function svgEl(tag, attrs, ...children) {
    return append(applyAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
  }

  /** Writes text only when it changed (no churn for screen readers and selections). */
  function setText(node, value) {
    const text = value === null || value === undefined ? "" : String(value);
    if (node.textContent !== text) node.textContent = text;
  }

  function setTitle(node, value) {
    const text = value || "";
    if (node.title !== text) node.title = text;
  }

  /** Rebuilds `node`'s content from `build()` when `signature` differs from the last one. */
  function sync(node, signature, build) {
    if (node._signature === signature) return;
    node._signature = signature;
    node.replaceChildren();
    append(node, [build()]);
  }

  function $(id) {
    return document.getElementById(id);
  }

  // ---- 2. Formatting --------------------------------------------------------------------------

  const DASH = "—";
  const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

  function fmtInt(n) {
    return n === null || n === undefined || Number.isNaN(Number(n)) ? DASH : integer.format(Number(n));
  }

  function fmtPct(p) {
    if (p === null || p === undefined) return DASH;
    const v = Number(p);
    return `${v >= 99.95 || v === 0 ? v.toFixed(0) : v.toFixed(1)}%`;
  }

  function fmtMs(ms) {
    if (ms === null || ms === undefined) return DASH;
    const v = Number(ms);
    if (v < 10) return `${v.toFixed(v === 0 ? 0 : 2)} ms`;
    if (v < 1000) return `${v.toFixed(0)} ms`;
    return fmtSeconds(v / 1000);
  }

  function fmtSeconds(s) {
    if (s === null || s === undefined) return DASH;
    const v = Number(s);
    if (v === 0) return "0 s";
    if (v < 10) return `${Number.isInteger(v) ? v : v.toFixed(1)} s`;
    if (v < 60) return `${Math.round(v)} s`;
    const total = Math.round(v);
    const d = Math.floor(total / 86400), h = Math.floor((total % 86400) / 3600);
    const m = Math.floor((total % 3600) / 60), sec = total % 60;
    if (d > 0) return `${d} d ${h} h`;
    if (h > 0) return `${h} h ${m} m`;
    return `${m} m ${sec} s`;
  }

  const pad = (n) => String(n).padStart(2, "0");

  function fmtTime(ms) {
    if (!ms) return DASH;
    const d = new Date(Number(ms));
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  function fmtClock(ms) {
    const d = new Date(Number(ms));
    return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  function fmtAgo(ms) {
    if (!ms) return DASH;
    return `${fmtSeconds(Math.max(0, (Date.now() - Number(ms)) / 1000))} ago`;
  }

  function fmtBytes(n) {
    if (n === null || n === undefined) return DASH;
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  }

  function fmtRetention(ms) {
    if (ms === null || ms === undefined) return DASH;
    const v = Number(ms);
    if (v < 0) return "infinite";
    if (v % 86400000 === 0) return `${v / 86400000} d`;
    if (v % 3600000 === 0) return `${v / 3600000} h`;
    return fmtSeconds(v / 1000);
  }

  /** `t.a:0, t.a:1, t.a:2, t.b:5` as `t.a: 0–2 · t.b: 5`. */
  function fmtPartitions(names) {
    const byTopic = new Map();
    for (const name of names || []) {
      const at = name.lastIndexOf(":");
      const topic = at < 0 ? name : name.slice(0, at);
      if (!byTopic.has(topic)) byTopic.set(topic, []);
      byTopic.get(topic).push(Number(name.slice(at + 1)));
    }
    const parts = [];
    for (const topic of Array.from(byTopic.keys()).sort(byName)) {
      const ps = byTopic.get(topic).sort((a, b) => a - b);
      const ranges = [];
      let start = ps[0], prev = ps[0];
      for (const p of ps.slice(1).concat([NaN])) {
        if (p === prev + 1) {
          prev = p;
          continue;
        }
        ranges.push(start === prev ? `${start}` : `${start}–${prev}`);
        start = prev = p;
      }
      parts.push(`${topic}: ${ranges.join(", ")}`);
    }
    return parts.length ? parts.join(" · ") : DASH;
  }

  const words = (s) => String(s || "").replace(/_/g, " ");
  const list = (xs) => (xs && xs.length ? xs.join(", ") : DASH);
  const byName = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

  // ---- 3. API ---------------------------------------------------------------------------------

  /** A failed request: the status and the server's words (problem+json `detail`). */
  class ApiError extends Error {
    constructor(status, message, errors) {
      super(message);
      this.status = status;
      this.errors = errors || [];
    }
  }

  function cookie(name) {
    for (const part of document.cookie.split(";")) {
      const [key, ...rest] = part.trim().split("=");
      if (key === name) return decodeURIComponent(rest.join("="));
    }
    return "";
  }

  function csrfToken() {
    return cookie(CSRF_COOKIE) || (signedIn.current && signedIn.current.csrf) || "";
  }

  async function request(method, path, body) {
    const headers = { Accept: "application/json" };
    const init = { method, headers, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, `the console did not answer (${e.message})`);
    }
    const text = await response.text();
    let json = null;
    if (text) {
      try {
        json = JSON.parse(text);
      } catch (_) {
        json = null;
      }
    }
    if (!response.ok) {
      const detail = (json && (json.detail || json.title)) || `${response.status} ${response.statusText}`;
      throw new ApiError(response.status, detail, json && Array.isArray(json.errors) ? json.errors : []);
    }
    return json;
  }

  const api = {
    get: (path) => request("GET", API + path),
    post: (path, body) => request("POST", API + path, body === undefined ? {} : body),
  };

  /** `?a=1&b=2` from the non-empty values of `params`. */
  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, String(v));
    const s = q.toString();
    return s ? `?${s}` : "";
  }

  const enc = encodeURIComponent;

  // ---- 4. Chrome: sign-in, banner, flash, dialog ----------------------------------------------

  const signedIn = { current: null };

  function canAct() {
    return Boolean(signedIn.current && signedIn.current.mayAct);
  }

  function showSignedIn(s) {
    signedIn.current = s;
    setText($("who-sub"), s.sub);
    const role = $("who-role");
    setText(role, s.role);
    role.className = `badge role-${s.role}`;
    document.body.classList.toggle("can-act", canAct());
    $("who").hidden = false;
    $("nav").hidden = false;
    $("sign-in").hidden = true;
    $("app").hidden = false;
  }

  function showSignIn(message) {
    signedIn.current = null;
    stopPolling();
    leavePage();
    document.body.classList.remove("can-act");
    $("who").hidden = true;
    $("nav").hidden = true;
    $("app").hidden = true;
    $("app").replaceChildren();
    banner.fetchError = null;
    banner.viewErrors = [];
    renderBanner();
    $("sign-in").hidden = false;
    const error = $("sign-in-error");
    error.hidden = !message;
    setText(error, message || "");
    $("token").focus();
  }

  async function signIn(token) {
    const button = document.querySelector('[data-test="sign-in"]');
    button.disabled = true;
    try {
      const s = await request("POST", "/admin/session", { token: token.trim() });
      $("token").value = "";
      showSignedIn(s);
      route();
    } catch (e) {
      const error = $("sign-in-error");
      error.hidden = false;
      setText(error, e.status === 401 ? `That token was refused: ${e.message}` : e.message);
    } finally {
      button.disabled = false;
    }
  }

  async function signOut() {
    try {
      await request("DELETE", "/admin/session");
    } catch (_) {
      // The cookies expire on their own; the page forgets who was signed in either way.
    }
    showSignIn("Signed out.");
  }

  const banner = { viewErrors: [], fetchError: null, takenAtMs: null };

  function renderBanner() {
    const node = $("banner");
    const lines = [];
    if (banner.fetchError) lines.push(`Could not refresh this page: ${banner.fetchError}`);
    if (banner.viewErrors.length) {
      lines.push("The cluster view is incomplete (the figures from these sources are missing, not zero):");
      for (const e of banner.viewErrors) lines.push(`• ${e}`);
    } else if (banner.takenAtMs === 0) {
      lines.push("The console has not read the cluster yet.");
    } else if (banner.takenAtMs && Date.now() - banner.takenAtMs > 15000) {
      lines.push(`The cluster view is ${fmtSeconds((Date.now() - banner.takenAtMs) / 1000)} old: its refresh is slow or stuck.`);
    }
    sync(node, lines.join("\n"), () => lines.map((l) => el("div", { class: "banner-line" }, l)));
    node.hidden = lines.length === 0;
  }

  /** The view's own errors (e.g. Kafka unreachable), read from `/readyz` with each refresh. */
  async function refreshReadiness() {
    try {
      const response = await fetch("/readyz", { cache: "no-store", credentials: "same-origin" });
      const body = await response.json();
      banner.viewErrors = Array.isArray(body.errors) ? body.errors.map(String) : [];
      banner.takenAtMs = typeof body.takenAtMs === "number" ? body.takenAtMs : null;
    } catch (_) {
      // The page's own request reports an unreachable console.
    }
  }

  let flashTimer = 0;

  /** A message about an action: `ok`, `info` or `error` (errors stay until dismissed). */
  function flash(message, kind) {
    const node = $("flash");
    clearTimeout(flashTimer);
    node.replaceChildren(
      el("span", { class: "flash-text", data: { test: "flash-text" } }, message),
      el("button", { type: "button", class: "link-button", "aria-label": "Dismiss", on: { click: () => { node.hidden = true; } } }, "✕"),
    );
    node.className = `flash flash-${kind || "ok"}`;
    node.dataset.kind = kind || "ok";
    node.hidden = false;
    if (kind !== "error") flashTimer = setTimeout(() => { node.hidden = true; }, 8000);
  }

  function flashError(what, error) {
    if (error.status === 401) {
      showSignIn(`You were signed out: ${error.message}. Sign in again.`);
      return;
    }
    flash(`${what}: ${error.message}`, "error");
  }

  /**
   * The one modal dialog: resolves `{ ok, reason }`. `body` is a node; `reason` adds the
   * optional reason field.
   */
  let dismissDialog = null;

  function openDialog({ title, body, confirmLabel, reason, danger }) {
    const dialog = $("dialog");
    if (dismissDialog) dismissDialog();
    setText($("dialog-title"), title);
    $("dialog-body").replaceChildren();
    append($("dialog-body"), [body]);
    $("dialog-reason-row").hidden = !reason;
    $("dialog-reason").value = "";
    const confirm = $("dialog-confirm");
    setText(confirm, confirmLabel || "Confirm");
    confirm.classList.toggle("danger", Boolean(danger));
    return new Promise((resolve) => {
      const finish = (ok) => {
        dismissDialog = null;
        $("dialog-form").onsubmit = null;
        $("dialog-cancel").onclick = null;
        dialog.oncancel = null;
        if (dialog.open) dialog.close();
        resolve({ ok, reason: $("dialog-reason").value.trim() });
      };
      $("dialog-form").onsubmit = (e) => { e.preventDefault(); finish(true); };
      $("dialog-cancel").onclick = () => finish(false);
      dialog.oncancel = (e) => { e.preventDefault(); finish(false); };
      dismissDialog = () => finish(false);
      dialog.showModal();
      (reason ? $("dialog-reason") : confirm).focus();
    });
  }

  // ---- 5. Tables ------------------------------------------------------------------------------

  /** A column showing `value(item)` as text (`num`: right-aligned figures). */
  function col(label, value, opts) {
    const o = opts || {};
    return {
      label,
      num: o.num,
      test: o.test,
      help: o.help,
      cls: o.cls,
      render: (td, item) => {
        setText(td, value(item));
        if (o.title) setTitle(td, o.title(item));
      },
    };
  }

  /** A header cell's classes: alignment, and the classes that hide or size a whole column. */
  function headClass(c) {
    const keep = String(c.cls || "").split(" ").filter((k) => k === "check" || k === "optional");
    return [c.num && "num", ...keep];
  }

  /**
   * A table whose rows are keyed: `update(items)` adds, moves, updates and removes rows in
   * place. `columns`: `{ label, render(td, item, tr), num, test, help }`; `row(item)`: the
   * attributes of a new row; `after(tr, item)`: per-row work after the cells.
   */
  function dataTable({ columns, key, row, after, empty, test, head }) {
    const thead = el("thead", {}, head || el("tr", {}, columns.map((c) =>
      el("th", { class: headClass(c), title: c.help, scope: "col" }, c.label))));
    const tbody = el("tbody");
    const table = el("table", { class: "data", data: { test } }, thead, tbody);
    const wrap = el("div", { class: "table-wrap" }, table);
    const emptyRow = el("tr", { class: "empty" }, el("td", { colspan: columns.length }, empty || "Nothing to show."));

    function create(item) {
      const tr = el("tr", row ? row(item) : {});
      tr._cells = columns.map((c) => el("td", { class: [c.num && "num", c.cls], data: { test: c.test } }));
      append(tr, tr._cells);
      return tr;
    }

    function update(items) {
      const existing = new Map();
      for (const tr of Array.from(tbody.children)) {
        if (tr._key !== undefined) existing.set(tr._key, tr);
        else tr.remove();
      }
      let i = 0;
      for (const item of items) {
        const k = key(item);
        let tr = existing.get(k);
        if (tr) existing.delete(k);
        else {
          tr = create(item);
          tr._key = k;
        }
        columns.forEach((c, n) => c.render(tr._cells[n], item, tr));
        if (after) after(tr, item);
        const at = tbody.children[i];
        if (at !== tr) tbody.insertBefore(tr, at || null);
        i += 1;
      }
      for (const tr of existing.values()) tr.remove();
      if (items.length === 0) tbody.appendChild(emptyRow);
    }

    return { root: wrap, table, tbody, update };
  }

  /** A labelled figure ("card") whose value is updated in place. */
  function figure(label, test, help) {
    const value = el("div", { class: "figure-value", data: { test } }, DASH);
    const root = el("div", { class: "figure", title: help }, el("div", { class: "figure-label" }, label), value);
    return { root, set: (text) => setText(value, text), value };
  }

  function section(title, ...children) {
    return el("section", { class: "section" }, el("h2", {}, title), children);
  }

  // ---- Badges ----

  function healthBadge(health) {
    const status = (health && health.status) || "unknown";
    const reasons = (health && health.reasons) || [];
    return el("span", {
      class: `badge health health-${status}`,
      title: reasons.length ? reasons.join("\n") : words(status),
      data: { test: "health", status },
    }, words(status));
  }

  function breakerBadges(breakers) {
    const entries = Object.entries(breakers || {}).sort(([a], [b]) => byName(a, b));
    if (!entries.length) return el("span", { class: "muted" }, DASH);
    return entries.map(([dependency, state]) =>
      el("span", { class: `badge breaker breaker-${state}`, title: `${dependency}: breaker ${words(state)}`, data: { test: "breaker", state } },
        `${dependency}: ${words(state)}`));
  }

  /** Operator pause and flood-guard stop, as badges. */
  function pauseBadges(g) {
    const out = [];
    const paused = g.control || (g.instances || []).some((i) => i.operatorPaused);
    if (paused) {
      const c = g.control || {};
      const tip = c.by ? `paused by ${c.by}${c.atMs ? ` at ${fmtTime(c.atMs)}` : ""}${c.reason ? `: ${c.reason}` : ""}` : "paused by an operator";
      out.push(el("span", { class: "badge paused", title: tip, data: { test: "operator-paused" } }, c.by ? `paused by ${c.by}` : "paused"));
    }
    if (g.stopped) {
      out.push(el("span", { class: "badge stopped", title: `${g.stopped.reason || "stopped"} (${g.stopped.instance || "?"}, ${fmtTime(g.stopped.atMs)})`, data: { test: "stopped" } }, "stopped"));
    }
    return out.length ? out : el("span", { class: "muted" }, DASH);
  }

  function stateBadge(state) {
    return el("span", { class: `badge dlq-state dlq-${state}`, data: { test: "state" } }, state);
  }

  // ---- 6. Charts (inline SVG) -----------------------------------------------------------------

  /** The smallest 1, 2 or 5 × 10^n at or above `v` (axis tops). */
  function niceCeil(v) {
    if (!(v > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  /** A small line of `values` (no axes); `label` is its tooltip. */
  function sparkline(values, cls, label) {
    const w = 120, h = 28, padY = 3;
    const root = svgEl("svg", { class: `spark ${cls}`, viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: "img", "aria-label": label });
    if (!values || values.length < 2) {
      root.appendChild(svgEl("line", { class: "spark-none", x1: 0, y1: h - padY, x2: w, y2: h - padY }));
      root.appendChild(svgEl("title", {}, `${label}: no history yet`));
      return root;
    }
    const max = Math.max(...values), min = Math.min(0, ...values);
    const span = max - min || 1;
    const step = w / (values.length - 1);
    const points = values.map((v, i) => `${(i * step).toFixed(1)},${(h - padY - ((v - min) / span) * (h - 2 * padY)).toFixed(1)}`);
    root.appendChild(svgEl("polyline", { points: points.join(" ") }));
    root.appendChild(svgEl("title", {}, `${label}: last ${fmtInt(values[values.length - 1])}, peak ${fmtInt(max)}`));
    return root;
  }

  /**
   * A line chart of `points` (`{ t, ... }`, oldest first), one line per series
   * (`{ key, label, cls }`), with a readout of the point under the pointer.
   */
  function lineChart(points, series, opts) {
    const o = opts || {};
    const W = 640, H = 190, L = 52, R = 12, T = 10, B = 26;
    const box = el("div", { class: "chart", data: { test: o.test } });
    const legend = el("div", { class: "legend" }, series.map((s) =>
      el("span", { class: `legend-item ${s.cls}` }, el("span", { class: "legend-swatch" }), s.label)));
    const readout = el("div", { class: "readout muted", data: { test: "readout" } }, " ");
    if (!points || points.length < 2) {
      add(box, el("div", { class: "chart-empty muted" }, "No history yet: the console stores one sample per minute."), legend);
      return box;
    }
    const fmt = o.format || fmtInt;
    const tick = (v) => (Number.isInteger(v) ? fmt(v) : v.toFixed(1));
    const t0 = points[0].t, t1 = points[points.length - 1].t;
    const max = niceCeil(Math.max(0, ...points.flatMap((p) => series.map((s) => Number(p[s.key]) || 0))));
    const x = (t) => L + ((t - t0) / (t1 - t0 || 1)) * (W - L - R);
    const y = (v) => T + (1 - v / max) * (H - T - B);
    const root = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "line-chart", role: "img", "aria-label": o.label || "chart" });
    for (const v of [0, max / 2, max]) {
      root.appendChild(svgEl("line", { class: "grid", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      root.appendChild(svgEl("text", { class: "axis", x: L - 6, y: y(v) + 4, "text-anchor": "end" }, tick(v)));
    }
    root.appendChild(svgEl("text", { class: "axis", x: L, y: H - 6, "text-anchor": "start" }, fmtClock(t0)));
    root.appendChild(svgEl("text", { class: "axis", x: W - R, y: H - 6, "text-anchor": "end" }, fmtClock(t1)));
    for (const s of series) {
      const pts = points.map((p) => `${x(p.t).toFixed(1)},${y(Number(p[s.key]) || 0).toFixed(1)}`).join(" ");
      root.appendChild(svgEl("polyline", { class: `series ${s.cls}`, points: pts }));
    }
    const cursor = svgEl("line", { class: "cursor", x1: 0, x2: 0, y1: T, y2: H - B, visibility: "hidden" });
    root.appendChild(cursor);
    const overlay = svgEl("rect", { class: "overlay", x: L, y: T, width: W - L - R, height: H - T - B });
    root.appendChild(overlay);
    overlay.addEventListener("mousemove", (e) => {
      const r = root.getBoundingClientRect();
      const px = ((e.clientX - r.left) / r.width) * W;
      const t = t0 + ((px - L) / (W - L - R)) * (t1 - t0);
      let best = points[0];
      for (const p of points) if (Math.abs(p.t - t) < Math.abs(best.t - t)) best = p;
      cursor.setAttribute("x1", x(best.t));
      cursor.setAttribute("x2", x(best.t));
      cursor.setAttribute("visibility", "visible");
      setText(readout, `${fmtTime(best.t)} — ${series.map((s) => `${s.label}: ${best[s.key] === null ? DASH : fmt(Number(best[s.key]) || 0)}`).join(", ")}`);
    });
    overlay.addEventListener("mouseleave", () => {
      cursor.setAttribute("visibility", "hidden");
      setText(readout, " ");
    });
    add(box, root, legend, readout);
    return box;
  }

  // ---- 7. Pages -------------------------------------------------------------------------------
  // Each page function fills `root` and returns `{ refresh }`: the poller calls `refresh` every
  // 2 s while the page is shown; it updates what it built, in place.

  const groupLink = (name) => el("a", { href: `#/groups/${enc(name)}`, data: { test: "group-link" } }, name);

  // ---- Overview ----

  function overviewPage(root) {
    const totals = el("p", { class: "muted", data: { test: "totals" } }, "Loading…");
    let series = {};
    let historyAt = 0;

    const table = dataTable({
      test: "groups",
      key: (g) => g.group,
      row: (g) => ({ data: { test: "group-row", group: g.group } }),
      empty: "No group in the topology.",
      columns: [
        { label: "Group", test: "name", render: (td, g) => sync(td, g.group, () => groupLink(g.group)) },
        { label: "Health", test: "health-cell", render: (td, g) => sync(td, JSON.stringify(g.health), () => healthBadge(g.health)) },
        col("Waiting", (g) => fmtInt(g.waiting), { num: true, test: "waiting", help: "Records waiting on the main topics" }),
        col("Delayed", (g) => fmtInt(g.delayed), { num: true, test: "delayed", help: "Records waiting in the retry topics" }),
        col("Time lag", (g) => fmtSeconds(g.timeLagSeconds), { num: true, test: "time-lag", help: "Age of the oldest record waiting" }),
        col("Active", (g) => fmtInt(g.active), { num: true, test: "active", help: "Handler calls running now" }),
        col("Completed", (g) => fmtInt(g.completed), { num: true, test: "completed" }),
        col("Failed", (g) => fmtInt(g.failed), { num: true, test: "failed" }),
        col("Success", (g) => fmtPct(g.successRate), { num: true, test: "success-rate" }),
        {
          label: "Open DLQ", num: true, test: "dlq-open", help: "Dead letters nobody decided on yet",
          render: (td, g) => {
            const open = g.dlq ? g.dlq.open : null;
            sync(td, `${g.group}|${open}`, () => (open ? el("a", { href: `#/dead-letters?group=${enc(g.group)}`, class: "dlq-link" }, fmtInt(open)) : fmtInt(open)));
          },
        },
        {
          label: "Members / instances", num: true, test: "members", help: "Kafka's group members / instances reporting a heartbeat",
          render: (td, g) => {
            const m = (g.members || []).length, i = (g.instances || []).length;
            setText(td, `${m} / ${i}`);
            td.classList.toggle("warn", m !== i);
          },
        },
        { label: "Breakers", test: "breakers", render: (td, g) => sync(td, JSON.stringify(g.breakers || {}), () => breakerBadges(g.breakers)) },
        { label: "Paused", test: "paused", render: (td, g) => sync(td, JSON.stringify([g.control, g.stopped, (g.instances || []).map((i) => i.operatorPaused)]), () => pauseBadges(g)) },
        {
          label: "Lag (1 h)", test: "spark-lag",
          render: (td, g) => {
            const values = (series[g.group] || []).map((p) => p.lag);
            sync(td, values.join(","), () => sparkline(values, "spark-lag", `${g.group} lag`));
          },
        },
        {
          label: "Completed / min (1 h)", test: "spark-throughput",
          render: (td, g) => {
            const values = (series[g.group] || []).map((p) => p.completed);
            sync(td, values.join(","), () => sparkline(values, "spark-throughput", `${g.group} completed per minute`));
          },
        },
      ],
    });

    add(root, el("h1", {}, "Groups"), totals, table.root);

    return {
      async refresh() {
        const wantHistory = Date.now() - historyAt >= HISTORY_EVERY_MS;
        const [queues, fresh] = await Promise.all([
          api.get("/queues"),
          wantHistory ? api.get("/history/groups?range=1h").catch(() => null) : null,
        ]);
        if (wantHistory) historyAt = Date.now();
        if (fresh) series = fresh;
        const groups = Object.values(queues || {}).sort((a, b) => byName(a.group, b.group));
        table.update(groups);
        const waiting = groups.reduce((n, g) => n + (g.waiting || 0), 0);
        const open = groups.reduce((n, g) => n + ((g.dlq && g.dlq.open) || 0), 0);
        const unhealthy = groups.filter((g) => g.health && !["ok", "idle"].includes(g.health.status)).length;
        setText(totals, `${groups.length} groups · ${fmtInt(waiting)} records waiting · ${fmtInt(open)} open dead letters · ${unhealthy} not ok`);
      },
    };
  }

  // ---- Group ----

  function groupPage(root, params, name) {
    let range = "1h";
    let historyAt = 0;
    let points = [];

    const badge = el("span", { data: { test: "group-health" } });
    const stateText = el("span", { class: "muted", data: { test: "group-state" } });
    const description = el("p", { class: "muted" });
    const reasons = el("ul", { class: "reasons", data: { test: "reasons" } });
    const controlLine = el("p", { class: "control-line", data: { test: "control" } });
    const pause = el("button", { type: "button", class: "danger", data: { test: "pause" }, on: { click: () => act("pause") } }, "Pause");
    const resume = el("button", { type: "button", class: "primary", data: { test: "resume" }, on: { click: () => act("resume") } }, "Resume");
    const actions = el("div", { class: "actions" }, canAct() ? [pause, resume] : null);

    const figures = {
      waiting: figure("Waiting", "waiting", "Records waiting on the main topics"),
      delayed: figure("Delayed", "delayed", "Records waiting in the retry topics"),
      replaying: figure("Replaying", "replaying", "Replays not run yet"),
      timeLag: figure("Time lag", "time-lag", "Age of the oldest record waiting"),
      active: figure("Active", "active", "Handler calls running now"),
      completed: figure("Completed", "completed"),
      failed: figure("Failed", "failed"),
      retried: figure("Retried", "retried"),
      deadLettered: figure("Dead-lettered", "dead-lettered"),
      avgDuration: figure("Avg duration", "avg-duration", "Mean duration of a successful handler call"),
      p99Duration: figure("p99 duration", "p99-duration", "99th percentile of successful handler calls since the counters started (per minute: the chart)"),
      successRate: figure("Success rate", "success-rate"),
      dlqOpen: figure("Open dead letters", "dlq-open"),
    };

    const rangeButtons = ["1h", "6h", "24h"].map((r) =>
      el("button", { type: "button", class: "range", "aria-pressed": r === range ? "true" : "false", data: { test: `range-${r}`, range: r }, on: { click: () => setRange(r) } }, r));
    const throughputChart = el("div", { class: "chart-slot" });
    const lagChart = el("div", { class: "chart-slot" });
    const durationChart = el("div", { class: "chart-slot" });

    const partitions = dataTable({
      test: "partitions",
      key: (p) => `${p.topic}:${p.partition}`,
      row: (p) => ({ data: { test: "partition-row", topic: p.topic, partition: p.partition } }),
      empty: "No partition read yet.",
      columns: [
        col("Topic", (p) => p.topic),
        col("Role", (p) => p.role),
        col("Partition", (p) => p.partition, { num: true }),
        col("Committed", (p) => (p.committed === null || p.committed === undefined ? "none" : fmtInt(p.committed)), { num: true, test: "committed" }),
        col("End", (p) => fmtInt(p.end), { num: true, test: "end" }),
        col("Lag", (p) => fmtInt(p.lag), { num: true, test: "lag" }),
        col("Time lag", (p) => (p.timeLagSeconds === null || p.timeLagSeconds === undefined ? DASH : fmtSeconds(p.timeLagSeconds)), { num: true }),
        { label: "Paused", test: "paused", render: (td, p) => sync(td, (p.paused || []).join(","), () => ((p.paused || []).length ? p.paused.map((r) => el("span", { class: "badge paused" }, words(r))) : DASH)) },
        col("Owner", (p) => p.owner || DASH, { test: "owner" }),
      ],
    });

    const members = dataTable({
      test: "members",
      key: (m) => m.memberId,
      row: () => ({ data: { test: "member-row" } }),
      empty: "No member in Kafka's group.",
      columns: [
        col("Member id", (m) => m.memberId, { cls: "mono" }),
        col("Instance", (m) => m.instance || DASH),
        col("Client id", (m) => m.clientId),
        col("Host", (m) => m.host),
        col("Partitions", (m) => fmtPartitions(m.partitions), { cls: "wrap" }),
      ],
    });

    const instances = dataTable({
      test: "instances",
      key: (h) => h.instance,
      row: () => ({ data: { test: "instance-row" } }),
      empty: "No instance reports a heartbeat.",
      columns: [
        col("Instance", (h) => h.instance),
        col("Host", (h) => h.host || DASH),
        col("Pid", (h) => h.pid || DASH, { num: true }),
        col("Active", (h) => fmtInt(h.active), { num: true }),
        col("Waiting", (h) => fmtInt(h.waiting), { num: true }),
        col("Delayed", (h) => fmtInt(h.delayed), { num: true }),
        col("Partitions", (h) => fmtPartitions(h.partitions), { cls: "wrap" }),
        { label: "Breakers", render: (td, h) => sync(td, JSON.stringify(h.breakers || {}), () => breakerBadges(h.breakers)) },
        col("Operator paused", (h) => (h.operatorPaused ? "yes" : "no")),
        col("Started", (h) => fmtTime(h.startedAtMs)),
        col("Heartbeat", (h) => fmtAgo(h.updatedAtMs), { test: "heartbeat" }),
      ],
    });

    const breakers = dataTable({
      test: "breakers",
      key: (b) => b[0],
      empty: "No breaker: no dependency failed yet.",
      columns: [
        col("Dependency", (b) => b[0]),
        { label: "State", render: (td, b) => sync(td, b[1], () => el("span", { class: `badge breaker breaker-${b[1]}` }, words(b[1]))) },
      ],
    });

    add(root,
      el("p", { class: "crumbs" }, el("a", { href: "#/" }, "Groups"), " / ", name),
      el("div", { class: "title-row" }, el("h1", { data: { test: "group-name" } }, name), badge, stateText, actions),
      description, reasons, controlLine,
      el("div", { class: "figures" }, Object.values(figures).map((f) => f.root)),
      section("Charts",
        el("div", { class: "ranges", role: "group", "aria-label": "Range" }, rangeButtons),
        el("div", { class: "charts" },
          el("div", {}, el("h3", {}, "Per minute"), throughputChart),
          el("div", {}, el("h3", {}, "Lag"), lagChart),
          el("div", {}, el("h3", {}, "Duration"), durationChart))),
      section("Partitions", partitions.root),
      section("Members (Kafka)", members.root),
      section("Instances (heartbeats)", instances.root),
      section("Breakers", breakers.root),
    );

    function drawCharts() {
      put(throughputChart, lineChart(points, [
        { key: "completed", label: "completed", cls: "s-completed" },
        { key: "failed", label: "failed", cls: "s-failed" },
        { key: "deadLettered", label: "dead-lettered", cls: "s-dead" },
      ], { test: "chart-throughput", label: `${name}: handled per minute` }));
      put(lagChart, lineChart(points, [{ key: "lag", label: "lag", cls: "s-lag" }], { test: "chart-lag", label: `${name}: lag` }));
      put(durationChart, lineChart(points, [
        { key: "durationP50Ms", label: "p50", cls: "s-p50" },
        { key: "durationP99Ms", label: "p99", cls: "s-p99" },
      ], { test: "chart-duration", label: `${name}: handler duration per minute`, format: fmtMs }));
    }

    async function loadHistory() {
      const asked = range;
      try {
        const all = await api.get(`/history/groups${query({ range: asked, name })}`);
        if (asked !== range) return;
        points = (all && all[name]) || [];
      } catch (_) {
        points = [];
      }
      historyAt = Date.now();
      drawCharts();
    }

    function setRange(r) {
      range = r;
      for (const b of rangeButtons) b.setAttribute("aria-pressed", b.dataset.range === r ? "true" : "false");
      loadHistory();
    }

    async function act(what) {
      const pausing = what === "pause";
      const answer = await openDialog({
        title: pausing ? `Pause ${name}?` : `Resume ${name}?`,
        body: el("p", {}, pausing
          ? "Its instances stop taking records within about a second (events in flight finish). Nothing is lost: what arrives meanwhile waits in Kafka."
          : "Its instances take records again."),
        confirmLabel: pausing ? "Pause" : "Resume",
        reason: pausing,
        danger: pausing,
      });
      if (!answer.ok) return;
      try {
        const out = await api.post(`/queues/${enc(name)}/${what}`, pausing ? { reason: answer.reason || null } : {});
        flash(`${name} ${pausing ? "paused" : "resumed"} (${out.instances} instance${out.instances === 1 ? "" : "s"})${out.audited ? "" : "; the audit event could not be written"}`, "ok");
      } catch (e) {
        flashError(pausing ? "Pause failed" : "Resume failed", e);
      }
    }

    return {
      async refresh() {
        const wantHistory = Date.now() - historyAt >= HISTORY_EVERY_MS;
        let g;
        try {
          g = await api.get(`/queues/${enc(name)}`);
        } catch (e) {
          if (e.status === 404) {
            put(root, el("h1", {}, name), el("p", { class: "error-text" }, e.message), el("a", { href: "#/" }, "Back to the groups"));
            return;
          }
          throw e;
        }
        if (wantHistory) loadHistory();
        sync(badge, JSON.stringify(g.health), () => healthBadge(g.health));
        setText(stateText, `Kafka group ${g.groupId || ""}: ${g.state || DASH}`);
        setText(description, g.description || "");
        sync(reasons, JSON.stringify((g.health && g.health.reasons) || []), () => ((g.health && g.health.reasons) || []).map((r) => el("li", {}, r)));
        const c = g.control;
        const lines = [];
        if (c) lines.push(`Paused by ${c.by || "an operator"}${c.atMs ? ` at ${fmtTime(c.atMs)}` : ""}${c.reason ? `: ${c.reason}` : ""}.`);
        if (g.stopped) lines.push(`Stopped by the flood guard on ${g.stopped.instance || "an instance"} at ${fmtTime(g.stopped.atMs)}: ${g.stopped.reason}.`);
        setText(controlLine, lines.join(" "));
        controlLine.hidden = lines.length === 0;
        pause.hidden = Boolean(c);
        resume.hidden = !c;
        figures.waiting.set(fmtInt(g.waiting));
        figures.delayed.set(fmtInt(g.delayed));
        figures.replaying.set(fmtInt(g.replaying));
        figures.timeLag.set(fmtSeconds(g.timeLagSeconds));
        figures.active.set(fmtInt(g.active));
        figures.completed.set(fmtInt(g.completed));
        figures.failed.set(fmtInt(g.failed));
        figures.retried.set(fmtInt(g.retried));
        figures.deadLettered.set(fmtInt(g.deadLettered));
        figures.avgDuration.set(fmtMs(g.avgDuration));
        figures.p99Duration.set(fmtMs(g.durationP99Ms));
        figures.successRate.set(fmtPct(g.successRate));
        figures.dlqOpen.set(fmtInt(g.dlq ? g.dlq.open : null));
        partitions.update(g.partitions || []);
        members.update(g.members || []);
        instances.update(g.instances || []);
        breakers.update(Object.entries(g.breakers || {}).sort(([a], [b]) => byName(a, b)));
      },
    };
  }

  // ---- Events ----

  function eventsPage(root) {
    const table = dataTable({
      test: "events",
      key: (e) => e.type,
      row: (e) => ({ data: { test: "event-row", type: e.type } }),
      empty: "No event type in the catalog.",
      columns: [
        col("Type", (e) => e.type, { test: "type" }),
        col("Domain", (e) => e.domain),
        col("Topic", (e) => e.topic || "ephemeral", { cls: "mono" }),
        col("Groups", (e) => list(e.groups), { cls: "wrap" }),
        col("Published", (e) => fmtInt(e.published), { num: true, test: "published" }),
        {
          label: "Published by", test: "published-by",
          render: (td, e) => {
            const entries = Object.entries(e.publishedBy || {}).sort(([a], [b]) => byName(a, b));
            sync(td, JSON.stringify(entries), () => (entries.length ? entries.map(([who, n]) => el("span", { class: "badge neutral" }, `${who}: ${fmtInt(n)}`)) : DASH));
          },
        },
        col("Processed", (e) => fmtInt(e.processed), { num: true, test: "processed" }),
        col("Failed", (e) => fmtInt(e.failed), { num: true, test: "failed" }),
        col("Dead-lettered", (e) => fmtInt(e.deadLettered), { num: true }),
        col("Avg duration", (e) => fmtMs(e.avgDuration), { num: true }),
        col("p99", (e) => fmtMs(e.durationP99Ms), { num: true, help: "99th percentile of successful handler calls" }),
        col("Success", (e) => fmtPct(e.successRate), { num: true }),
      ],
    });
    add(root, el("h1", {}, "Events"), el("p", { class: "muted" }, "Per event type: published (by the ingest API and by groups), and processed by the subscribed groups."), table.root);
    return {
      async refresh() {
        const events = await api.get("/events");
        table.update(Object.values(events || {}).sort((a, b) => byName(a.type, b.type)));
      },
    };
  }

  // ---- Realtime ----

  function realtimePage(root) {
    const table = dataTable({
      test: "channels",
      key: (c) => c.channel,
      row: (c) => ({ data: { test: "channel-row", channel: c.channel } }),
      empty: "No realtime channel in the topology.",
      columns: [
        col("Channel", (c) => c.channel, { cls: "mono" }),
        col("Scope", (c) => c.scope),
        col("Subscribers", (c) => fmtInt(c.subscribers), { num: true, test: "subscribers" }),
        col("Received", (c) => fmtInt(c.received), { num: true }),
        col("Messages", (c) => fmtInt(c.messages), { num: true, test: "messages" }),
        col("Avg latency", (c) => fmtMs(c.avgLatency), { num: true, help: "Publish → written to the client" }),
        col("Dropped", (c) => fmtInt(c.dropped), { num: true }),
      ],
    });
    add(root, el("h1", {}, "Realtime"), el("p", { class: "muted" }, "Per channel template, as the gateways report it."), table.root);
    return {
      async refresh() {
        const body = await api.get("/realtime");
        table.update(Object.values((body && body.channels) || {}).sort((a, b) => byName(a.channel, b.channel)));
      },
    };
  }

  // ---- Dead letters ----

  const DLQ_STATES = ["open", "replayed", "discarded", "quarantined", "edited", "all"];
  const ERROR_CLASSES = ["permanent", "retryable", "dependency", "undecodable"];
  const PAGE_SIZE = 50;

  function toLocalInput(ms) {
    if (!ms) return "";
    const d = new Date(Number(ms));
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  }

  function deadLettersPage(root, params) {
    const filter = {
      group: params.get("group") || "",
      type: params.get("type") || "",
      errorClass: params.get("errorClass") || "",
      text: params.get("text") || "",
      since: params.get("since") || "",
      until: params.get("until") || "",
      state: params.get("state") || "open",
    };
    let cursor = 0;
    const previous = [];
    let items = [];
    let nextCursor = null;
    let total = 0;
    const selected = new Map();
    let job = null;
    let shown = null;

    // Filters.
    const groupSelect = el("select", { id: "f-group", name: "group", data: { test: "filter-group" } }, el("option", { value: "" }, "all groups"));
    const typeInput = el("input", { id: "f-type", name: "type", type: "text", list: "f-types", placeholder: "any type", data: { test: "filter-type" } });
    const typeList = el("datalist", { id: "f-types" });
    const classInput = el("input", { id: "f-class", name: "errorClass", type: "text", list: "f-classes", placeholder: "any class", data: { test: "filter-error-class" } });
    const classList = el("datalist", { id: "f-classes" }, ERROR_CLASSES.map((c) => el("option", { value: c })));
    const textInput = el("input", { id: "f-text", name: "text", type: "search", placeholder: "error or event id", data: { test: "filter-text" } });
    const sinceInput = el("input", { id: "f-since", name: "since", type: "datetime-local", data: { test: "filter-since" } });
    const untilInput = el("input", { id: "f-until", name: "until", type: "datetime-local", data: { test: "filter-until" } });
    const stateSelect = el("select", { id: "f-state", name: "state", data: { test: "filter-state" } }, DLQ_STATES.map((s) => el("option", { value: s }, s)));
    const field = (label, input, ...extra) => el("label", { class: "field" }, el("span", {}, label), input, extra);
    const form = el("form", { class: "filters card", data: { test: "dlq-filters" } },
      field("Group", groupSelect),
      field("Type", typeInput, typeList),
      field("Error class", classInput, classList),
      field("Text", textInput),
      field("Since", sinceInput),
      field("Until", untilInput),
      field("State", stateSelect),
      el("div", { class: "filter-buttons" },
        el("button", { type: "submit", class: "primary", data: { test: "apply-filter" } }, "Apply"),
        el("button", { type: "button", data: { test: "reset-filter" }, on: { click: resetFilter } }, "Reset")));

    function showFilter() {
      if (filter.group && !Array.from(groupSelect.options).some((o) => o.value === filter.group)) add(groupSelect, el("option", { value: filter.group }, filter.group));
      groupSelect.value = filter.group;
      typeInput.value = filter.type;
      classInput.value = filter.errorClass;
      textInput.value = filter.text;
      sinceInput.value = toLocalInput(filter.since);
      untilInput.value = toLocalInput(filter.until);
      stateSelect.value = filter.state;
    }

    function readFilter() {
      const ms = (v) => (v ? String(new Date(v).getTime()) : "");
      filter.group = groupSelect.value;
      filter.type = typeInput.value.trim();
      filter.errorClass = classInput.value.trim();
      filter.text = textInput.value.trim();
      filter.since = ms(sinceInput.value);
      filter.until = ms(untilInput.value);
      filter.state = stateSelect.value || "open";
    }

    function filterChanged() {
      cursor = 0;
      previous.length = 0;
      selected.clear();
      history.replaceState(null, "", `#/dead-letters${query(filter.state === "open" ? { ...filter, state: "" } : filter)}`);
      reload();
    }

    form.addEventListener("submit", (e) => {
      e.preventDefault();
      readFilter();
      filterChanged();
    });

    function resetFilter() {
      Object.assign(filter, { group: "", type: "", errorClass: "", text: "", since: "", until: "", state: "open" });
      showFilter();
      filterChanged();
    }

    /** The filter of a bulk action (always the open letters). */
    function bulkFilter() {
      const f = {};
      for (const k of ["group", "type", "errorClass", "text", "since", "until"]) if (filter[k]) f[k] = filter[k];
      return f;
    }

    // Bulk bar and job.
    const selectedCount = el("span", { class: "muted", data: { test: "selected-count" } }, "none selected");
    const retrySelected = el("button", { type: "button", data: { test: "retry-selected" }, disabled: true, on: { click: () => actOnSelected("retry") } }, "Retry selected");
    const discardSelected = el("button", { type: "button", data: { test: "discard-selected" }, disabled: true, on: { click: () => actOnSelected("discard") } }, "Discard selected");
    const bulkBar = el("div", { class: "bulk-bar card", data: { test: "bulk-bar" } },
      el("div", { class: "bulk-group" },
        el("span", {}, "Every open letter matching the filter:"),
        el("button", { type: "button", class: "primary", data: { test: "bulk-retry" }, on: { click: () => bulk("retry") } }, "Retry all…"),
        el("button", { type: "button", class: "danger", data: { test: "bulk-discard" }, on: { click: () => bulk("discard") } }, "Discard all…")),
      el("div", { class: "bulk-group" }, selectedCount, retrySelected, discardSelected));
    const jobBox = el("div", { class: "job card", data: { test: "job" }, hidden: true });

    // List.
    const totalLine = el("p", { class: "muted", data: { test: "dlq-total" } }, "Loading…");
    const incomplete = el("p", { class: "warn-text", data: { test: "dlq-incomplete" }, hidden: true }, "Still reading the dead-letter topics from their start: the list may be incomplete.");
    const selectAll = el("input", { type: "checkbox", "aria-label": "Select every letter of this page", data: { test: "select-all" } });
    const keyOf = (s) => `${s.group}/${s.id}`;

    const columns = [
      {
        label: "", cls: "check", test: "check",
        render: (td, s) => {
          if (!td.firstChild) {
            const box = el("input", { type: "checkbox", "aria-label": `Select ${s.id}`, data: { test: "select" } });
            box.addEventListener("change", () => {
              if (box.checked) selected.set(keyOf(s), td._item);
              else selected.delete(keyOf(s));
              showSelection();
            });
            td.appendChild(box);
          }
          td._item = s;
          td.firstChild.checked = selected.has(keyOf(s));
          td.firstChild.disabled = s.state !== "open";
        },
      },
      col("Dead-lettered", (s) => fmtTime(s.deadLetteredAtMs), { test: "at", cls: "nowrap" }),
      col("Group", (s) => s.group, { test: "group" }),
      col("Id", (s) => s.id, { test: "id", cls: "mono" }),
      col("Type", (s) => s.type || DASH, { test: "type" }),
      col("Event id", (s) => s.eventId || DASH, { cls: "mono small optional" }),
      col("Reason", (s) => (s.reason && s.errorClass && s.reason !== s.errorClass ? `${s.reason} · ${s.errorClass}` : s.reason || s.errorClass || DASH), { test: "error-class", help: "Why it was dead-lettered · the error's class" }),
      col("Error", (s) => s.error || DASH, { cls: "error-cell optional", title: (s) => s.error || "" }),
      col("Attempts / replays", (s) => `${s.attempts} / ${s.replays}`, { num: true, test: "attempts" }),
      { label: "State", render: (td, s) => sync(td, s.state, () => stateBadge(s.state)) },
      {
        label: "", cls: "row-actions", test: "actions",
        render: (td, s) => sync(td, `${s.state}|${canAct()}`, () => el("span", { class: "row-buttons" },
          canAct() && s.state === "open" ? el("button", { type: "button", class: "small primary", data: { test: "retry" }, on: { click: (e) => retryOne(td._item, e.currentTarget) } }, "Retry") : null,
          canAct() && s.state === "open" ? el("button", { type: "button", class: "small", data: { test: "discard" }, on: { click: (e) => discardOne(td._item, e.currentTarget) } }, "Discard") : null,
          el("button", { type: "button", class: "small", data: { test: "details" }, on: { click: () => openDetails(td._item) } }, "Details"))),
      },
    ];
    // The actions cell keeps the row's latest summary for its buttons.
    const table = dataTable({
      test: "dead-letters",
      key: keyOf,
      row: (s) => ({ data: { test: "dlq-row", id: s.id, group: s.group } }),
      after: (tr, s) => {
        tr.dataset.state = s.state;
        tr._cells[tr._cells.length - 1]._item = s;
        const isShown = Boolean(shown && keyOf(shown) === keyOf(s));
        tr.classList.toggle("shown", isShown);
        if (isShown && shown.state !== s.state) {
          // Decided elsewhere (another console, `circ dlq`): the panel follows.
          shown.state = s.state;
          if (panel._refreshState) panel._refreshState();
        }
      },
      empty: "No dead letter matches the filter.",
      columns,
      head: el("tr", {}, columns.map((c, i) => el("th", { class: headClass(c), title: c.help, scope: "col" }, i === 0 ? selectAll : c.label))),
    });
    selectAll.addEventListener("change", () => {
      for (const s of items) {
        if (s.state !== "open") continue;
        if (selectAll.checked) selected.set(keyOf(s), s);
        else selected.delete(keyOf(s));
      }
      table.update(items);
      showSelection();
    });

    const prev = el("button", { type: "button", data: { test: "prev-page" }, on: { click: () => { cursor = previous.pop() || 0; reload(); } } }, "← Newer");
    const next = el("button", { type: "button", data: { test: "next-page" }, on: { click: () => { if (nextCursor !== null) { previous.push(cursor); cursor = nextCursor; reload(); } } } }, "Older →");
    const pageLine = el("span", { class: "muted", data: { test: "page-line" } });
    const pager = el("div", { class: "pager" }, prev, pageLine, next);

    // Details panel.
    const panel = el("aside", { class: "details", data: { test: "details-panel" }, hidden: true, "aria-label": "Dead letter details" });
    // With the panel open, the list leaves out its widest columns (event id, error).
    const layout = el("div", { class: "dlq-layout" }, el("div", { class: "dlq-list" }, table.root, pager), panel);

    add(root,
      el("h1", {}, "Dead letters"),
      form,
      canAct() ? bulkBar : null,
      jobBox,
      totalLine, incomplete,
      layout,
    );
    showFilter();

    function showSelection() {
      const n = selected.size;
      setText(selectedCount, n ? `${n} selected` : "none selected");
      retrySelected.disabled = n === 0;
      discardSelected.disabled = n === 0;
      const open = items.filter((s) => s.state === "open");
      selectAll.checked = open.length > 0 && open.every((s) => selected.has(keyOf(s)));
    }

    function render() {
      const visible = filter.state === "all" ? items : items.filter((s) => s.state === filter.state);
      table.update(visible);
      const from = visible.length ? cursor + 1 : 0;
      setText(totalLine, `${fmtInt(total)} ${filter.state === "all" ? "" : `${filter.state} `}dead letter${total === 1 ? " matches" : "s match"} the filter`);
      setText(pageLine, visible.length ? `${fmtInt(from)}–${fmtInt(cursor + visible.length)} of ${fmtInt(total)}` : "");
      prev.disabled = cursor === 0;
      next.disabled = nextCursor === null;
      showSelection();
    }

    async function load() {
      const listed = await api.get(`/dead-letters${query({ ...filter, limit: PAGE_SIZE, cursor })}`);
      if (listed.items.length === 0 && cursor > 0 && listed.total > 0) {
        cursor = 0;
        previous.length = 0;
        return load();
      }
      items = listed.items;
      nextCursor = listed.nextCursor === undefined ? null : listed.nextCursor;
      total = listed.total;
      incomplete.hidden = listed.complete !== false;
      // A selected letter that is no longer open is no longer selectable.
      for (const s of items) if (s.state !== "open") selected.delete(keyOf(s));
      render();
    }

    function reload() {
      load().catch((e) => flashError("Could not list the dead letters", e));
    }

    /** Marks a letter decided at once (the next refresh confirms it). */
    function decided(s, state) {
      for (const item of items) if (keyOf(item) === keyOf(s)) item.state = state;
      selected.delete(keyOf(s));
      if (shown && keyOf(shown) === keyOf(s)) {
        shown.state = state;
        panel._refreshState && panel._refreshState();
      }
      render();
    }

    async function retryOne(s, button) {
      if (button) button.disabled = true;
      try {
        const out = await api.post(`/dead-letters/${enc(s.group)}/${enc(s.id)}/retry`);
        flash(`Dead letter ${s.id} of ${s.group} replayed to ${out.replayTopic || "its replay topic"}`, "ok");
        decided(s, out.state || "replayed");
      } catch (e) {
        if (button) button.disabled = false;
        flashError(`Retry of ${s.id} failed`, e);
        if (e.status === 409) reload();
      }
    }

    async function discardOne(s, button) {
      const answer = await openDialog({
        title: `Discard dead letter ${s.id}?`,
        body: el("p", {}, `It stays in ${s.group}'s dead-letter topic; the decision is recorded and audited.`),
        confirmLabel: "Discard",
        reason: true,
        danger: true,
      });
      if (!answer.ok) return;
      if (button) button.disabled = true;
      try {
        const out = await api.post(`/dead-letters/${enc(s.group)}/${enc(s.id)}/discard`, { reason: answer.reason || null });
        flash(`Dead letter ${s.id} of ${s.group} discarded`, "ok");
        decided(s, out.state || "discarded");
      } catch (e) {
        if (button) button.disabled = false;
        flashError(`Discard of ${s.id} failed`, e);
      }
    }

    async function actOnSelected(action) {
      const chosen = Array.from(selected.values());
      if (!chosen.length) return;
      const answer = await openDialog({
        title: `${action === "retry" ? "Retry" : "Discard"} ${chosen.length} selected dead letter${chosen.length === 1 ? "" : "s"}?`,
        body: el("p", {}, action === "retry" ? "Each is replayed to its own group only; one replayed too often already is quarantined instead." : "They stay in their topics; the decisions are recorded and audited."),
        confirmLabel: action === "retry" ? "Retry" : "Discard",
        reason: action === "discard",
        danger: action === "discard",
      });
      if (!answer.ok) return;
      let done = 0;
      const failures = [];
      for (const s of chosen) {
        try {
          const path = `/dead-letters/${enc(s.group)}/${enc(s.id)}/${action}`;
          const out = await api.post(path, action === "discard" ? { reason: answer.reason || null } : {});
          decided(s, out.state);
          done += 1;
        } catch (e) {
          failures.push(`${s.id}: ${e.message}`);
        }
      }
      const verb = action === "retry" ? "replayed" : "discarded";
      if (failures.length) flash(`${done} ${verb}; ${failures.length} failed — ${failures.slice(0, 3).join("; ")}`, "error");
      else flash(`${done} dead letter${done === 1 ? "" : "s"} ${verb}`, "ok");
      reload();
    }

    // Bulk by filter: dry run, confirmation, then the job.
    function histogramTable(title, entries, test, wide) {
      if (!entries.length) return null;
      return el("div", { class: ["histogram", wide && "wide"] }, el("h3", {}, title),
        el("table", { class: "data compact", data: { test } }, el("tbody", {}, entries.map(([label, n]) =>
          el("tr", {}, el("td", { class: "wrap" }, label || "(no message)"), el("td", { class: "num" }, fmtInt(n)))))));
    }

    async function bulk(action) {
      const f = bulkFilter();
      let dry;
      try {
        dry = await api.post("/dead-letters/bulk", { action, filter: f, dryRun: true });
      } catch (e) {
        flashError("The dry run failed", e);
        return;
      }
      if (!dry.count) {
        flash("No open dead letter matches the filter: nothing to do.", "info");
        return;
      }
      const h = dry.histogram || {};
      const body = el("div", { data: { test: "dry-run" } },
        el("p", {}, el("strong", { data: { test: "dry-count" } }, fmtInt(dry.count)),
          ` open dead letter${dry.count === 1 ? "" : "s"} match${dry.count === 1 ? "es" : ""} the filter`,
          f.group ? ` in ${f.group}` : " in every group", "."),
        action === "retry"
          ? el("p", {}, el("strong", { data: { test: "dry-quarantine" } }, fmtInt(dry.wouldQuarantine)),
            " would be quarantined by the loop guard instead of replayed (replayed too often already).")
          : null,
        dry.estimatedSeconds ? el("p", { class: "muted" }, `About ${fmtSeconds(dry.estimatedSeconds)} at the configured replay rate.`) : null,
        el("div", { class: "histograms" },
          histogramTable("By error class", Object.entries(h.byErrorClass || {}).sort((a, b) => b[1] - a[1]), "dry-classes"),
          histogramTable("By type", Object.entries(h.byType || {}).sort((a, b) => b[1] - a[1]), "dry-types"),
          histogramTable("Top errors", (h.topErrors || []).map((pair) => [pair[0], pair[1]]), "dry-top-errors", true)));
      const answer = await openDialog({
        title: action === "retry" ? "Retry every matching dead letter?" : "Discard every matching dead letter?",
        body,
        confirmLabel: `${action === "retry" ? "Retry" : "Discard"} ${fmtInt(dry.count)}`,
        reason: true,
        danger: action === "discard",
      });
      if (!answer.ok) return;
      try {
        const started = await api.post("/dead-letters/bulk", { action, filter: f, dryRun: false, expectCount: dry.count, reason: answer.reason || null });
        job = started.job;
        showJob();
        flash(`Bulk ${action} started: ${fmtInt(job.total)} dead letters`, "info");
      } catch (e) {
        flashError(`Bulk ${action} refused`, e);
      }
    }

    function showJob() {
      if (!job) {
        jobBox.hidden = true;
        return;
      }
      jobBox.hidden = false;
      const status = job.finished ? "finished" : "running";
      jobBox.dataset.status = status;
      put(jobBox,
        el("div", { class: "job-head" },
          el("strong", {}, `Bulk ${job.action}`), " ",
          el("span", { class: `badge job-${status}`, data: { test: "job-status" } }, status), " ",
          el("span", { class: "muted" }, `by ${job.actor}${job.group ? ` on ${job.group}` : ""}, started ${fmtTime(job.startedAtMs)}`),
          job.finished ? el("button", { type: "button", class: "link-button", on: { click: () => { job = null; showJob(); } } }, "✕") : null),
        el("progress", { max: Math.max(1, job.total), value: job.done, data: { test: "job-progress" } }),
        el("p", { data: { test: "job-figures" } },
          `${fmtInt(job.done)} of ${fmtInt(job.total)} done — replayed ${fmtInt(job.replayed)}, discarded ${fmtInt(job.discarded)}, quarantined ${fmtInt(job.quarantined)}, failed ${fmtInt(job.failed)}`),
        job.errors && job.errors.length ? el("ul", { class: "job-errors" }, job.errors.map((e) => el("li", {}, e))) : null,
      );
    }

    async function pollJob() {
      if (!job || job.finished) return;
      try {
        job = await api.get(`/dead-letters/jobs/${enc(job.id)}`);
      } catch (e) {
        if (e.status === 404) job = null;
        else throw e;
      }
      showJob();
      if (job && job.finished) flash(`Bulk ${job.action} finished: ${fmtInt(job.done)} of ${fmtInt(job.total)} done, ${fmtInt(job.failed)} failed`, job.failed ? "error" : "ok");
    }

    // Details (loaded when opened, not polled).
    async function openDetails(s) {
      shown = { ...s };
      table.update(filter.state === "all" ? items : items.filter((i) => i.state === filter.state));
      panel.hidden = false;
      layout.classList.add("with-details");
      panel.dataset.id = s.id;
      panel.dataset.group = s.group;
      const close = el("button", { type: "button", class: "link-button", "aria-label": "Close", data: { test: "close-details" }, on: { click: closeDetails } }, "✕");
      put(panel, el("div", { class: "details-head" }, el("h2", {}, `${s.group} / ${s.id}`), close), el("p", { class: "muted", data: { test: "details-loading" } }, "Loading…"));
      let d;
      try {
        d = await api.get(`/dead-letters/${enc(s.group)}/${enc(s.id)}`);
      } catch (e) {
        if (!shown || keyOf(shown) !== keyOf(s)) return;
        put(panel, el("div", { class: "details-head" }, el("h2", {}, `${s.group} / ${s.id}`), close), el("p", { class: "error-text" }, e.message));
        return;
      }
      if (!shown || keyOf(shown) !== keyOf(s)) return;
      shown = { ...s, ...d, state: s.state };
      renderDetails(d, close);
    }

    function closeDetails() {
      shown = null;
      panel.hidden = true;
      layout.classList.remove("with-details");
      panel.replaceChildren();
      panel._refreshState = null;
      render();
    }

    function renderDetails(d, close) {
      const s = shown;
      const kv = (label, value, test) => [el("dt", {}, label), el("dd", { data: { test } }, value === null || value === undefined || value === "" ? DASH : String(value))];
      const stateSlot = el("span");
      const actionSlot = el("div", { class: "actions" });
      const origin = d.origin ? `${d.origin.topic}:${d.origin.partition} @ ${d.origin.offset}` : DASH;
      const headers = Object.entries(d.headers || {}).sort(([a], [b]) => byName(a, b));

      let dataBlock;
      if (d.data !== null && d.data !== undefined) {
        dataBlock = el("pre", { class: "json", data: { test: "details-data" } }, JSON.stringify(d.data, null, 2));
      } else if (d.truncated) {
        dataBlock = el("div", {},
          el("p", { class: "warn-text", data: { test: "truncated-note" } }, "The data is larger than the console shows: this is its beginning, as text. Use `circ dlq` to read it whole."),
          el("pre", { class: "json", data: { test: "details-data-text" } }, d.dataText || ""));
      } else if (d.undecodable) {
        dataBlock = el("p", { class: "warn-text", data: { test: "undecodable" } }, `The value could not be decoded: ${d.undecodable}`);
      } else {
        dataBlock = el("p", { class: "muted" }, "The record has no value.");
      }

      const editor = el("div", { class: "editor", data: { test: "editor" } });
      function buildEditor() {
        editor.replaceChildren();
        if (!canAct() || s.state !== "open") return;
        if (!d.type) {
          add(editor, el("p", { class: "muted" }, "This letter names no event type: it cannot be edited."));
          return;
        }
        if (d.truncated) {
          add(editor, el("p", { class: "muted" }, "Too large to edit here."));
          return;
        }
        const text = el("textarea", { rows: 12, spellcheck: "false", class: "mono", "aria-label": "Corrected data (JSON)", data: { test: "edit-data" } });
        text.value = d.data !== null && d.data !== undefined ? JSON.stringify(d.data, null, 2) : "{}";
        const errors = el("ul", { class: "field-errors", data: { test: "edit-errors" }, hidden: true });
        const submit = el("button", { type: "submit", class: "primary", data: { test: "edit-submit" } }, "Validate and retry");
        const form = el("form", { class: "edit-form" }, text, errors, submit);
        form.addEventListener("submit", async (e) => {
          e.preventDefault();
          errors.replaceChildren();
          errors.hidden = true;
          let data;
          try {
            data = JSON.parse(text.value);
          } catch (err) {
            add(errors, el("li", {}, `Not JSON: ${err.message}`));
            errors.hidden = false;
            return;
          }
          submit.disabled = true;
          try {
            const out = await api.post(`/dead-letters/${enc(s.group)}/${enc(s.id)}/edit`, { data });
            flash(`Dead letter ${s.id} of ${s.group} edited and replayed to ${out.replayTopic || "its replay topic"}`, "ok");
            decided(s, out.state || "edited");
          } catch (err) {
            add(errors, el("li", { class: "field-error-detail" }, err.message));
            for (const fe of err.errors || []) add(errors, el("li", { data: { test: "edit-field-error", path: fe.path } }, el("code", {}, fe.path || "/"), ` ${fe.message}`));
            errors.hidden = false;
          } finally {
            submit.disabled = false;
          }
        });
        add(editor, el("h3", {}, "Edit and retry"), el("p", { class: "muted" }, "The corrected data is checked against the type's schema before anything is sent."), form);
      }

      function refreshState() {
        sync(stateSlot, s.state, () => stateBadge(s.state));
        sync(actionSlot, `${s.state}|${canAct()}`, () => (canAct() && s.state === "open" ? [
          el("button", { type: "button", class: "primary", data: { test: "retry" }, on: { click: (e) => retryOne(s, e.currentTarget) } }, "Retry"),
          el("button", { type: "button", data: { test: "discard" }, on: { click: (e) => discardOne(s, e.currentTarget) } }, "Discard"),
        ] : null));
        if (editor._state !== s.state) {
          editor._state = s.state;
          buildEditor();
        }
      }
      panel._refreshState = refreshState;

      put(panel,
        el("div", { class: "details-head" }, el("h2", {}, `${s.group} / ${s.id}`), close),
        el("div", { class: "details-state" }, stateSlot, actionSlot),
        el("dl", { class: "kv" },
          kv("Event id", d.eventId, "details-event-id"),
          d.eventId ? [el("dt", {}, "Trace"), el("dd", {}, traceLink(d.eventId, "every group's view of it"))] : null,
          kv("Type", d.type, "details-type"),
          kv("Reason", d.reason),
          kv("Error class", d.errorClass),
          kv("Attempts", d.attempts, "details-attempts"),
          kv("Replays", d.replays, "details-replays"),
          kv("Dead-lettered", fmtTime(d.deadLetteredAtMs)),
          kv("Origin", origin, "details-origin"),
          kv("Correlation id", d.correlationId),
          kv("Key", d.key),
          kv("Size", fmtBytes(d.sizeBytes))),
        el("h3", {}, "Error"),
        el("pre", { class: "error-block", data: { test: "details-error" } }, d.error || DASH),
        el("h3", {}, "Data"),
        dataBlock,
        editor,
        el("h3", {}, "Headers"),
        el("table", { class: "data compact", data: { test: "details-headers" } }, el("tbody", {}, headers.map(([k, v]) =>
          el("tr", {}, el("th", { scope: "row", class: "mono" }, k), el("td", { class: "mono wrap" }, v))))),
      );
      refreshState();
    }

    // Options for the filters, once.
    api.get("/topology").then((t) => {
      const groups = (t.groups || []).map((g) => g.name).sort(byName);
      for (const g of groups) if (!Array.from(groupSelect.options).some((o) => o.value === g)) add(groupSelect, el("option", { value: g }, g));
      groupSelect.value = filter.group;
      const types = new Set();
      for (const g of t.groups || []) for (const s of g.subscribe || []) types.add(s);
      put(typeList, Array.from(types).sort(byName).map((s) => el("option", { value: s })));
    }).catch(() => {});
    // A job started elsewhere (or before a reload) is shown too.
    api.get("/dead-letters/jobs").then((jobs) => {
      const running = (jobs || []).find((j) => !j.finished);
      if (running && !job) {
        job = running;
        showJob();
      }
    }).catch(() => {});

    return {
      async refresh() {
        await Promise.all([load(), pollJob()]);
      },
    };
  }

  // ---- Topology ----

  function topologyPage(root) {
    const topicFilter = el("input", { type: "search", placeholder: "filter topics", "aria-label": "Filter topics", data: { test: "topic-filter" } });
    let topics = [];
    const differs = (t) => !t.actual || t.actual.partitions !== t.partitions || t.actual.replicas !== t.replicationFactor;

    const topicTable = dataTable({
      test: "topics",
      key: (t) => t.name,
      row: (t) => ({ data: { test: "topic-row", topic: t.name } }),
      after: (tr, t) => tr.classList.toggle("differs", differs(t)),
      empty: "No topic matches.",
      columns: [
        col("Topic", (t) => t.name, { cls: "mono" }),
        col("Kind", (t) => words(t.kind)),
        col("Owner", (t) => t.owner),
        col("Partitions", (t) => t.partitions, { num: true, help: "Declared in topics.yaml" }),
        { label: "Actual", num: true, test: "actual-partitions", help: "On the cluster", render: (td, t) => { setText(td, t.actual ? t.actual.partitions : "missing"); td.classList.toggle("warn", !t.actual || t.actual.partitions !== t.partitions); } },
        col("Replicas", (t) => t.replicationFactor, { num: true, help: "Declared (a local single broker overrides it to 1)" }),
        { label: "Actual", num: true, test: "actual-replicas", render: (td, t) => { setText(td, t.actual ? t.actual.replicas : "missing"); td.classList.toggle("warn", !t.actual || t.actual.replicas !== t.replicationFactor); } },
        col("Min ISR", (t) => t.minInsyncReplicas, { num: true }),
        col("Retention", (t) => fmtRetention(t.retentionMs), { num: true }),
        col("Cleanup", (t) => t.cleanupPolicy),
      ],
    });

    const groupTable = dataTable({
      test: "topology-groups",
      key: (g) => g.name,
      row: (g) => ({ data: { test: "topology-group-row", group: g.name } }),
      empty: "No group.",
      columns: [
        { label: "Group", render: (td, g) => sync(td, g.name, () => groupLink(g.name)) },
        col("Description", (g) => g.description, { cls: "wrap" }),
        col("Subscribes to", (g) => list(g.subscribe), { cls: "wrap" }),
        col("Topics", (g) => list(g.topics), { cls: "wrap mono small" }),
        col("Retry ladder", (g) => `${g.maxAttempts} attempt${g.maxAttempts === 1 ? "" : "s"}${(g.retryDelaysMs || []).length ? `: ${g.retryDelaysMs.map(fmtMs).join(" → ")}` : ""}`, { test: "retry-ladder" }),
        col("Timeout", (g) => fmtMs(g.timeoutMs), { num: true }),
        col("Max in flight", (g) => g.maxInFlight, { num: true }),
        col("Lag threshold", (g) => g.lagThreshold, { num: true, help: "Records waiting per replica before an autoscaler adds one" }),
      ],
    });

    const channelTable = dataTable({
      test: "topology-channels",
      key: (c) => c.template,
      empty: "No channel.",
      columns: [
        col("Channel", (c) => c.template, { cls: "mono" }),
        col("Scope", (c) => c.scope),
        col("Description", (c) => c.description, { cls: "wrap" }),
        col("Events", (c) => list(c.events), { cls: "wrap" }),
      ],
    });

    function showTopics() {
      const needle = topicFilter.value.trim().toLowerCase();
      topicTable.update(needle ? topics.filter((t) => `${t.name} ${t.kind} ${t.owner}`.toLowerCase().includes(needle)) : topics);
    }
    topicFilter.addEventListener("input", showTopics);

    add(root,
      el("h1", {}, "Topology"),
      el("p", { class: "muted" }, "As topics.yaml declares it, beside what the cluster has. Rows that differ are marked."),
      section("Topics", topicFilter, topicTable.root),
      section("Groups", groupTable.root),
      section("Channels", channelTable.root),
    );

    return {
      async refresh() {
        const t = await api.get("/topology");
        topics = (t.topics || []).slice().sort((a, b) => byName(a.name, b.name));
        showTopics();
        groupTable.update((t.groups || []).slice().sort((a, b) => byName(a.name, b.name)));
        channelTable.update((t.channels || []).slice().sort((a, b) => byName(a.template, b.template)));
      },
    };
  }

  /** Statuses a trace gives a group, with what each one means. */
  const TRACE_STATUS = {
    processed: "Its committed offset passed the event (or it reported success after a retry or a replay)",
    waiting: "Not reached yet: its committed offset is at or before the event",
    retrying: "Failed; waiting in a retry topic for its next attempt",
    dead_lettered: "In the group's dead letters",
    replaying: "Sent back from the dead letters; not run again yet",
    discarded: "Dead-lettered, then discarded by an operator",
    quarantined: "Dead-lettered and held by the loop guard",
    unknown: "The group's offsets could not be read",
  };

  function traceBadge(status) {
    return el("span", { class: `badge trace-${status}`, title: TRACE_STATUS[status] || "", data: { test: "trace-status", status } }, words(status));
  }

  const traceLink = (id, label) => el("a", { href: `#/trace${query({ q: id })}`, class: "mono", data: { test: "trace-link" } }, label || id);

  /** One traced event: where it is, what each group did with it, what it caused. */
  function traceCard(e) {
    const where = e.topic ? `${e.topic} [${e.partition}] @ ${e.offset}` : "not located (published before the index or outside its window)";
    const groups = dataTable({
      test: "trace-groups",
      key: (g) => g.group,
      row: (g) => ({ data: { test: "trace-group-row", group: g.group } }),
      empty: "No group reads this type.",
      columns: [
        { label: "Group", render: (td, g) => sync(td, g.group, () => groupLink(g.group)) },
        { label: "Status", render: (td, g) => sync(td, g.status, () => traceBadge(g.status)) },
        col("Attempt", (g) => (g.attempt ? g.attempt : DASH), { num: true }),
        col("Due", (g) => (g.status === "retrying" && g.dueAtMs ? fmtTime(g.dueAtMs) : DASH), { help: "When the next attempt may run" }),
        col("Error", (g) => (g.error ? `${g.errorClass ? `${g.errorClass}: ` : ""}${g.error}` : DASH), { cls: "wrap" }),
        col("Where", (g) => g.topic || DASH, { cls: "mono small" }),
        col("From", (g) => {
          if (g.source !== "committed_offset") return `reported ${fmtAgo(g.reportedAtMs)}`;
          return g.committed === null || g.committed === undefined ? "no committed offset yet" : `committed offset ${fmtInt(g.committed)}`;
        }, { help: "What the answer is read from: the group's committed offset on the event's partition, or what the group reported" }),
        { label: "", render: (td, g) => sync(td, g.deadLetter || "", () => (g.deadLetter
          ? el("a", { href: `#/dead-letters${query({ group: g.group, type: e.type, state: g.status === "dead_lettered" ? "" : "all" })}`, data: { test: "trace-dead-letter" } }, "dead letters")
          : "")) },
      ],
    });
    groups.update(e.groups || []);
    const caused = (e.caused || []).length
      ? e.caused.map((c) => el("div", {}, traceLink(c.id), " ", c.type || ""))
      : DASH;
    return el("article", { class: "trace-event", data: { test: "trace-event", id: e.id } },
      el("h2", {}, e.type || "unknown type", " ", el("span", { class: "mono small muted" }, e.id)),
      el("dl", {},
        el("dt", {}, "Where"), el("dd", { class: "mono", data: { test: "trace-where" } }, where),
        el("dt", {}, "Time"), el("dd", {}, fmtTime(e.timeMs)),
        el("dt", {}, "Source"), el("dd", {}, e.source || DASH),
        el("dt", {}, "Correlation"), el("dd", {}, e.correlationId ? traceLink(e.correlationId) : DASH),
        el("dt", {}, "Caused by"), el("dd", {}, e.cause ? [traceLink(e.cause.id), " ", e.cause.type || ""] : DASH),
        el("dt", {}, "Caused"), el("dd", { data: { test: "trace-caused" } }, caused)),
      groups.root);
  }

  function tracePage(root, params) {
    const q = (params.get("q") || "").trim();
    $("trace-q").value = q;
    const summary = el("p", { class: "muted", data: { test: "trace-summary" } });
    const results = el("div", { data: { test: "trace-results" } });
    add(root,
      el("h1", {}, "Trace"),
      el("p", { class: "muted" }, "Where an event is and what every group reading its type did with it, from the trace index (kept 24 h) and the groups' committed offsets: no topic is read."),
      summary, results);
    return {
      async refresh() {
        if (!q) {
          setText(summary, "Type an event id or a correlation id in the search box.");
          return;
        }
        let found;
        try {
          found = await api.get(`/trace${query({ q })}`);
        } catch (e) {
          if (e.status !== 404) throw e;
          setText(summary, `Nothing traced for “${q}”: not published, older than the index's window, or mistyped.`);
          results.replaceChildren();
          return;
        }
        const n = found.events.length;
        setText(summary, found.matched === "id" ? "Event id." : `Correlation id: ${n} event${n === 1 ? "" : "s"}, oldest first.`);
        const signature = JSON.stringify(found.events.map((e) => [e.id, e.offset, e.caused, e.groups.map((g) => [g.status, g.attempt, g.dueAtMs, g.error, g.committed])]));
        sync(results, signature, () => found.events.map(traceCard));
      },
    };
  }

  function notFoundPage(root, params, path) {
    add(root, el("h1", {}, "Not found"), el("p", {}, `Nothing at #${path}. `, el("a", { href: "#/" }, "Back to the groups")));
    return { async refresh() {} };
  }

  // ---- 8. Router and polling ------------------------------------------------------------------

  const ROUTES = [
    { pattern: /^\/$/, nav: "overview", page: overviewPage },
    { pattern: /^\/groups\/([^/]+)$/, nav: "overview", page: groupPage },
    { pattern: /^\/events$/, nav: "events", page: eventsPage },
    { pattern: /^\/realtime$/, nav: "realtime", page: realtimePage },
    { pattern: /^\/dead-letters$/, nav: "dead-letters", page: deadLettersPage },
    { pattern: /^\/topology$/, nav: "topology", page: topologyPage },
    { pattern: /^\/trace$/, nav: "trace", page: tracePage },
  ];

  /** The page shown: `{ page, busy, lastStart }`. */
  let current = null;
  let timer = 0;

  function stopPolling() {
    clearTimeout(timer);
    timer = 0;
  }

  function leavePage() {
    stopPolling();
    current = null;
  }

  function schedule(delay) {
    stopPolling();
    if (!current || document.hidden) return;
    timer = setTimeout(tick, Math.max(0, delay));
  }

  function setLive(state) {
    const live = $("live");
    live.className = `live live-${state}`;
    setText(live, state === "ok" ? "live" : state === "paused" ? "paused" : "stale");
  }

  async function tick() {
    const view = current;
    if (!view || view.busy || document.hidden) return;
    view.busy = true;
    view.lastStart = Date.now();
    try {
      await Promise.all([view.page.refresh(), refreshReadiness()]);
      if (view !== current) return;
      banner.fetchError = null;
      setLive("ok");
    } catch (e) {
      if (view !== current) return;
      if (e.status === 401) {
        showSignIn(`You were signed out: ${e.message}. Sign in again.`);
        return;
      }
      banner.fetchError = e.message;
      setLive("stale");
    } finally {
      view.busy = false;
    }
    renderBanner();
    schedule(Math.max(POLL_MS - (Date.now() - view.lastStart), 500));
  }

  function decodeSegment(segment) {
    try {
      return decodeURIComponent(segment);
    } catch (_) {
      return segment;
    }
  }

  function parseHash() {
    const raw = location.hash.replace(/^#/, "") || "/";
    const at = raw.indexOf("?");
    const path = at < 0 ? raw : raw.slice(0, at);
    return { path: path || "/", params: new URLSearchParams(at < 0 ? "" : raw.slice(at + 1)) };
  }

  function route() {
    if (!signedIn.current) return;
    leavePage();
    const { path, params } = parseHash();
    const app = $("app");
    app.replaceChildren();
    let match = null, found = null;
    for (const r of ROUTES) {
      match = r.pattern.exec(path);
      if (match) {
        found = r;
        break;
      }
    }
    for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", Boolean(found) && a.dataset.route === found.nav);
    const page = found
      ? found.page(app, params, ...match.slice(1).map(decodeSegment))
      : notFoundPage(app, params, path);
    app.dataset.page = found ? found.nav : "not-found";
    current = { page, busy: false, lastStart: 0 };
    schedule(0);
  }

  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      stopPolling();
      if (current) setLive("paused");
    } else if (current) {
      schedule(current.lastStart + POLL_MS - Date.now());
    }
  });

  window.addEventListener("hashchange", route);

  $("sign-in-form").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn($("token").value);
  });
  $("sign-out").addEventListener("click", signOut);
  $("trace-search").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = $("trace-q").value.trim();
    if (q) location.hash = `#/trace${query({ q })}`;
  });

  async function boot() {
    try {
      const s = await request("GET", "/admin/session");
      showSignedIn(s);
      route();
    } catch (e) {
      showSignIn(e.status === 401 ? "" : e.message);
    }
  }

  boot();
})();
