/**
 * The live dashboard the admin listener serves at `/`: one self-contained
 * HTML document (inline CSS and script, no external URL, no build step), so it
 * is embedded in the compiled executable and works on a machine without
 * internet access.
 *
 * The page polls `GET /api/status` every second and keeps, per frontend, the
 * last five minutes (300 samples) of new connections per second and bytes per
 * second (both directions), computed from the deltas of the `accepted` and
 * `bytes_from_*` counters between two polls and drawn as inline SVG line
 * charts. A UDP frontend (`transport: "udp"`) shows flows where a TCP one
 * shows connections: new flows per second (from `flows_total`), flows open,
 * and flows per backend. Each backend row has Drain, Disable and Enable buttons that
 * `POST /api/frontends/{frontend}/backends/{backend}/{action}` with a bearer
 * token asked once with `window.prompt` and kept in `sessionStorage`. With
 * the same token, each frontend has an "add backend" form (name, address,
 * weight: `POST …/backends`), each backend a weight field (`PATCH`), and a
 * backend made through the API (marked "api") a Remove button (`DELETE`).
 *
 * Rows and charts are updated in place rather than rebuilt, so a button under
 * the pointer is never replaced between a press and its release. Names from
 * the config reach the page through `textContent` only, never as markup.
 *
 * Hooks for tests: each frontend's section has `data-frontend` and
 * `data-transport`, its rate chart's title the class `title`, its table's
 * active column header the class `active`; each backend row has
 * `data-frontend` and `data-backend`,
 * its cells the classes `state` and `active`, its buttons `data-action`
 * (`weight` beside the input `.weight-input`, `remove`), its name cell the
 * class `source-api` when the API made it; each frontend's form has the
 * class `add-backend` and inputs named `name`, `forward_to` and `weight`; the
 * element `#accepted-total` shows the sum of `accepted` over the frontends and
 * `#message` the outcome of the last action.
 *
 * @module
 */

/**
 * The dashboard page, to serve as `text/html; charset=utf-8`.
 *
 * The inline script avoids backticks, `${` and backslashes so that this
 * template literal holds it verbatim.
 */
export const DASHBOARD_HTML: string = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mini-balancer</title>
<style>
  :root { --fg: #1d2330; --muted: #687085; --line: #e2e5ec; --bg: #f6f7f9; --card: #fff;
    --up: #1a7f37; --down: #cf222e; --draining: #b35900; --disabled: #6e7781; --accent: #2f6feb; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
    color: var(--fg); background: var(--bg); }
  header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 6px 24px;
    padding: 14px 24px; background: var(--card); border-bottom: 1px solid var(--line); }
  header h1 { margin: 0; font-size: 18px; }
  .meta { color: var(--muted); }
  .meta b { color: var(--fg); font-weight: 600; font-variant-numeric: tabular-nums; }
  #conn.lost { color: var(--down); font-weight: 600; }
  #message { min-height: 1.45em; margin: 0 24px; padding-top: 8px; color: var(--muted); }
  #message.error { color: var(--down); }
  main { padding: 4px 24px 24px; display: grid; gap: 20px; }
  section { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
    padding: 16px 18px; }
  section h2 { margin: 0 0 2px; font-size: 16px; }
  .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(280px, 1fr));
    gap: 16px; margin: 12px 0 14px; }
  .chart .head { display: flex; justify-content: space-between; color: var(--muted); }
  .chart .value { color: var(--fg); font-weight: 600; font-variant-numeric: tabular-nums; }
  .chart svg { display: block; width: 100%; height: 64px; background: #fafbfc;
    border: 1px solid var(--line); border-radius: 4px; }
  .chart polyline { fill: none; stroke: var(--accent); stroke-width: 1.5; }
  .chart polygon { fill: var(--accent); opacity: 0.12; }
  .chart .axis { display: flex; justify-content: space-between; font-size: 11px;
    color: var(--muted); }
  table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
  th, td { text-align: left; padding: 6px 8px; border-top: 1px solid var(--line); }
  th { color: var(--muted); font-weight: 500; border-top: 0; }
  td.num, th.num { text-align: right; }
  .state { font-weight: 600; }
  .state::before { content: ""; display: inline-block; width: 8px; height: 8px;
    border-radius: 50%; margin-right: 6px; background: currentColor; }
  .state.up { color: var(--up); }
  .state.down { color: var(--down); }
  .state.draining { color: var(--draining); }
  .state.disabled { color: var(--disabled); }
  tr.disabled td:not(.actions) { opacity: 0.6; }
  .check { color: var(--muted); font-size: 12px; }
  .actions { white-space: nowrap; text-align: right; }
  button { font: inherit; font-size: 12px; padding: 2px 8px; margin-left: 4px; cursor: pointer;
    border: 1px solid var(--line); border-radius: 4px; background: #f3f4f6; color: var(--fg); }
  button:hover { border-color: var(--muted); }
  .weight-input { width: 4em; margin-left: 4px; }
  form.add-backend { margin: 6px 0 0; } form.add-backend input { margin-right: 4px; }
</style>
</head>
<body>
<header>
  <h1>mini-balancer</h1>
  <span class="meta">version <b id="version">?</b></span>
  <span class="meta">runtime <b id="runtime">?</b></span>
  <span class="meta">uptime <b id="uptime">?</b></span>
  <span class="meta">accepted <b id="accepted-total">0</b></span>
  <span class="meta">last reload <b id="reload">none</b></span>
  <span class="meta" id="conn">connecting</span>
</header>
<div id="message" role="status"></div>
<main id="frontends"></main>
<script>
"use strict";
const POINTS = 300;
const TOKEN_KEY = "mini-balancer-admin-token";
const frontends = new Map();
let messageTimer = 0;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function svgEl(tag) {
  return document.createElementNS("http://www.w3.org/2000/svg", tag);
}

function formatBytes(perSecond) {
  const units = ["B/s", "KiB/s", "MiB/s", "GiB/s"];
  let value = perSecond;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return (unit === 0 ? Math.round(value) : value.toFixed(1)) + " " + units[unit];
}

function formatRate(perSecond, unit) {
  return (perSecond < 10 ? perSecond.toFixed(1) : Math.round(perSecond)) + " " + unit;
}

function formatDuration(seconds) {
  const s = Math.floor(seconds);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
  return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
}

function chart(title, format) {
  const root = el("div", "chart");
  const head = el("div", "head");
  const value = el("span", "value", "-");
  const titleNode = el("span", "title", title);
  head.append(titleNode, value);
  const svg = svgEl("svg");
  svg.setAttribute("viewBox", "0 0 " + (POINTS - 1) + " 100");
  svg.setAttribute("preserveAspectRatio", "none");
  const area = svgEl("polygon");
  const line = svgEl("polyline");
  line.setAttribute("vector-effect", "non-scaling-stroke");
  svg.append(area, line);
  const axis = el("div", "axis");
  const peak = el("span", "", "");
  axis.append(el("span", "", "5 min ago"), peak, el("span", "", "now"));
  root.append(head, svg, axis);
  const samples = [];
  return {
    root,
    title: titleNode,
    push(sample) {
      samples.push(sample);
      if (samples.length > POINTS) samples.shift();
      const max = Math.max(1, ...samples);
      const offset = POINTS - samples.length;
      const points = samples.map((v, i) =>
        (offset + i) + "," + (98 - (v / max) * 94).toFixed(1)).join(" ");
      line.setAttribute("points", points);
      area.setAttribute("points", offset + ",100 " + points + " " + (POINTS - 1) + ",100");
      value.textContent = format(sample);
      peak.textContent = "peak " + format(Math.max(0, ...samples));
    },
  };
}

function frontendView(name) {
  const section = el("section");
  section.dataset.frontend = name;
  const title = el("h2", "", name);
  const meta = el("div", "meta");
  // Flows for a UDP frontend, connections for a TCP one: set at each render.
  const labels = { unit: "conn/s" };
  const rate = chart("New connections", (v) => formatRate(v, labels.unit));
  const throughput = chart("Throughput (both ways)", formatBytes);
  const charts = el("div", "charts");
  charts.append(rate.root, throughput.root);
  const table = el("table");
  const head = el("tr");
  const headers = {};
  for (const [label, cls] of [["Backend", ""], ["Address", ""], ["State", ""],
      ["Weight", "num"], ["Active", "num active"], ["Total", "num total"], ["Last check", ""],
      ["", ""]]) {
    headers[label] = el("th", cls, label);
    head.append(headers[label]);
  }
  const body = el("tbody");
  table.append(el("thead"), body);
  table.tHead.append(head);
  const form = el("form", "add-backend");
  for (const [field, hint, type] of [["name", "name", "text"], ["forward_to", "host:port", "text"],
      ["weight", "weight", "number"]]) {
    const input = el("input");
    Object.assign(input, { name: field, placeholder: hint, type });
    form.append(input);
  }
  form.append(el("button", "", "Add backend"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const table = {};
    for (const input of form.querySelectorAll("input")) {
      if (input.value === "") continue;
      table[input.name] = input.type === "number" ? Number(input.value) : input.value;
    }
    const url = "/api/frontends/" + encodeURIComponent(name) + "/backends";
    send("POST", url, table, "add " + (table.name || table.forward_to || "backend"))
      .then((ok) => { if (ok) form.reset(); });
  });
  section.append(title, meta, charts, table, form);
  document.getElementById("frontends").append(section);
  return {
    section, meta, rate, throughput, body, rows: new Map(), last: null, labels,
    activeHeader: headers.Active, totalHeader: headers.Total,
  };
}

/** Labels a frontend's view for its transport: flows for UDP, connections for TCP. */
function label(view, udp) {
  view.section.dataset.transport = udp ? "udp" : "tcp";
  view.labels.unit = udp ? "flows/s" : "conn/s";
  view.rate.title.textContent = udp ? "New flows" : "New connections";
  view.activeHeader.textContent = udp ? "Flows" : "Active";
  view.totalHeader.textContent = udp ? "Total flows" : "Total";
}

function backendRow(frontend, backend) {
  const row = el("tr");
  row.dataset.frontend = frontend;
  row.dataset.backend = backend;
  const cells = {
    name: el("td", "", backend), address: el("td"), state: el("td", "state"),
    weight: el("td", "num"), active: el("td", "num active"), total: el("td", "num total"),
    check: el("td", "check"), actions: el("td", "actions"),
  };
  for (const action of ["drain", "disable", "enable"]) {
    const button = el("button", "", action[0].toUpperCase() + action.slice(1));
    button.dataset.action = action;
    button.addEventListener("click", () => act(frontend, backend, action));
    cells.actions.append(button);
  }
  const url = "/api/frontends/" + encodeURIComponent(frontend) + "/backends/" +
    encodeURIComponent(backend);
  const weight = el("input", "weight-input");
  Object.assign(weight, { type: "number", min: 1, max: 256, title: "weight" });
  const set = el("button", "", "Set weight");
  set.dataset.action = "weight";
  set.addEventListener("click", () =>
    send("PATCH", url, { weight: Number(weight.value) }, "weight of " + backend));
  const remove = el("button", "", "Remove");
  remove.dataset.action = "remove";
  remove.addEventListener("click", () => send("DELETE", url, undefined, "remove " + backend));
  cells.actions.append(weight, set, remove);
  row.append(...Object.values(cells));
  return { row, cells, weight, remove };
}

function describeCheck(check) {
  if (!check) return "not checked yet";
  const time = check.duration_ms.toFixed(1) + " ms";
  return check.ok ? "ok, " + time : "failed: " + (check.reason || "no reason") + ", " + time;
}

function renderBackends(view, frontend, udp) {
  const seen = new Set();
  for (const backend of frontend.backends) {
    seen.add(backend.name);
    let entry = view.rows.get(backend.name);
    if (!entry) {
      entry = backendRow(frontend.name, backend.name);
      view.rows.set(backend.name, entry);
    }
    view.body.append(entry.row);
    const c = entry.cells;
    c.address.textContent = backend.address + (backend.backup ? " (backup)" : "");
    c.state.textContent = backend.state + (backend.agent ? " (agent: " + backend.agent + ")" : "");
    c.state.className = "state " + backend.state;
    entry.row.className = backend.state;
    c.weight.textContent = backend.effectiveWeight !== undefined &&
        backend.effectiveWeight !== backend.weight
      ? backend.effectiveWeight + " of " + backend.weight
      : backend.weight;
    // Not while someone types in it.
    if (document.activeElement !== entry.weight) entry.weight.value = backend.weight;
    const api = backend.source === "api";
    c.name.textContent = backend.name + (api ? " · api" : "");
    c.name.className = api ? "source-api" : "";
    entry.remove.hidden = !api || backend.removing === true;
    if (backend.removing) c.state.textContent += " (removing)";
    c.active.textContent = backend.active;
    c.total.textContent = udp ? backend.flows_total : backend.total;
    c.check.textContent = describeCheck(backend.last_check);
  }
  for (const [name, entry] of view.rows) {
    if (!seen.has(name)) {
      entry.row.remove();
      view.rows.delete(name);
    }
  }
}

function render(status, now) {
  document.getElementById("version").textContent = status.version;
  document.getElementById("runtime").textContent = status.runtime;
  document.getElementById("uptime").textContent = formatDuration(status.uptime_s);
  const reload = status.last_reload;
  document.getElementById("reload").textContent = reload
    ? (reload.success ? "ok" : "failed") + " at " + new Date(reload.at).toLocaleTimeString()
    : "none";
  let accepted = 0;
  const seen = new Set();
  for (const frontend of status.frontends) {
    seen.add(frontend.name);
    accepted += frontend.accepted;
    let view = frontends.get(frontend.name);
    if (!view) {
      view = frontendView(frontend.name);
      frontends.set(frontend.name, view);
    }
    const udp = frontend.transport === "udp";
    label(view, udp);
    view.meta.textContent = udp
      ? frontend.address + " · " + frontend.algorithm + " · " + frontend.active +
        " flows open · " + frontend.flows_total + " opened"
      : frontend.address + " · " + frontend.algorithm + " · " + frontend.active + " active · " +
        frontend.queued + " queued · " + frontend.accepted + " accepted";
    const bytes = frontend.bytes_from_client + frontend.bytes_from_backend;
    // New flows of a UDP frontend, new connections of a TCP one.
    const opened = udp ? frontend.flows_total : frontend.accepted;
    if (view.last) {
      const seconds = Math.max(0.001, (now - view.last.at) / 1000);
      // Counters restart from zero when a reload replaces a frontend: no negative rates.
      view.rate.push(Math.max(0, opened - view.last.opened) / seconds);
      view.throughput.push(Math.max(0, bytes - view.last.bytes) / seconds);
    }
    view.last = { at: now, opened, bytes };
    renderBackends(view, frontend, udp);
  }
  for (const [name, view] of frontends) {
    if (!seen.has(name)) {
      view.section.remove();
      frontends.delete(name);
    }
  }
  document.getElementById("accepted-total").textContent = accepted;
}

function say(text, isError) {
  const node = document.getElementById("message");
  node.textContent = text;
  node.className = isError ? "error" : "";
  clearTimeout(messageTimer);
  messageTimer = setTimeout(() => { node.textContent = ""; }, 5000);
}

function act(frontend, backend, action) {
  const url = "/api/frontends/" + encodeURIComponent(frontend) + "/backends/" +
    encodeURIComponent(backend) + "/" + action;
  return send("POST", url, undefined, action + " " + backend);
}

/** Sends a change with the token (asked once), says the outcome; true when done. */
async function send(method, url, body, what) {
  let ok = false;
  for (;;) {
    let token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) {
      token = window.prompt("Admin token for " + what);
      if (!token) return say(what + ": cancelled, no token", true);
      sessionStorage.setItem(TOKEN_KEY, token);
    }
    let response;
    try {
      response = await fetch(url, {
        method,
        headers: { Authorization: "Bearer " + token },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      return say(what + ": " + error.message, true);
    }
    // The API's one-line reason (the config file's message for a bad backend).
    const reason = response.ok ? "" : await response.json().then((j) => j.error, () => "");
    say(what + ": " + response.status + " " + response.statusText + (reason ? ": " + reason : ""),
      !response.ok);
    ok = response.ok;
    if (response.status !== 401) break;
    sessionStorage.removeItem(TOKEN_KEY);
  }
  poll();
  return ok;
}

let timer = 0;
async function poll() {
  const conn = document.getElementById("conn");
  try {
    const response = await fetch("/api/status", { cache: "no-store" });
    if (!response.ok) throw new Error("status " + response.status);
    render(await response.json(), performance.now());
    conn.textContent = "live";
    conn.className = "meta";
  } catch (error) {
    conn.textContent = "connection lost (" + error.message + ")";
    conn.className = "meta lost";
  }
  // An action polls at once too; clearing first keeps a single chain of polls.
  clearTimeout(timer);
  timer = setTimeout(poll, 1000);
}
poll();
</script>
</body>
</html>
`;
