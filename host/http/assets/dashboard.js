// The trellis dashboard: everything it shows comes from /api/v1 and its event stream; every
// action is one API call after a confirmation. Plain script, no build step, no network beyond
// the server that serves it.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const TOKEN_KEY = "trellis-http-token";
const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  hosts: [],
  vitals: {},
  // Component id → samples of the last minutes (from /vitals?history=true).
  history: {},
  inventories: {},
  apps: [],
  versions: {},   // app -> [{version, deployed}]
  selected: {},   // app -> the version chosen in its row
  rollouts: {},   // app -> its current or last rollout
  timers: {},
};

// Markup is written only in this file. Everything else (names, versions, messages, counts:
// whatever the API answers, which plugins, manifests and hosts decide) is text. Templates are
// written html`…`, which escapes every ${…} unless it is itself html`…` (or a list of them),
// so data cannot become markup by a forgotten call; show() is the only way markup reaches the
// page. Text alone goes through textContent.
function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  }[c]));
}

class Markup {
  constructor(text) { this.text = text; }
}

function piece(value) {
  if (value instanceof Markup) return value.text;
  if (Array.isArray(value)) return value.map(piece).join("");
  return esc(value);
}

function html(strings, ...values) {
  return new Markup(strings.reduce((out, text, i) => out + piece(values[i - 1]) + text));
}

function show(element, markup) {
  element.innerHTML = piece(markup);
}

function shortId(id) {
  return id && id.length > 12 ? id.slice(0, 10) + "…" : id || "";
}

// One API call. Answers the JSON body with the HTTP status; a 401 asks for the token.
async function api(method, path, body, contentType) {
  const used = state.token;
  const headers = {};
  if (used) headers.Authorization = "Bearer " + used;
  if (body !== undefined) headers["Content-Type"] = contentType || "application/json";
  const response = await fetch("/api/v1" + path, { method, headers, body });
  let data = null;
  try { data = await response.json(); } catch (_) { /* an empty or non-JSON body */ }
  if (response.status === 401) {
    // A token given while this request was on its way: ask again with it.
    if (used !== state.token) return api(method, path, body, contentType);
    showTokenBox();
    throw new Error((data && data.error) || "this server needs its API token");
  }
  return { ok: response.ok, status: response.status, data };
}

function said(data) {
  return (data && (data.message || data.error)) || "";
}

function showError(text) {
  const bar = $("#error-bar");
  bar.textContent = text;
  bar.hidden = !text;
}

function showTokenBox() {
  $("#token-box").hidden = false;
}

// Runs `fn` once, `ms` after the last of a burst of calls.
function debounce(key, ms, fn) {
  clearTimeout(state.timers[key]);
  state.timers[key] = setTimeout(fn, ms);
}

// ---- hosts -------------------------------------------------------------------------------

async function refreshHosts() {
  try {
    // The controller's view (health, last resources) beside the hosts' own answers; a lattice
    // without a controller still lists its hosts.
    const [{ ok, data }, vitals] = await Promise.all([
      api("GET", "/hosts"),
      api("GET", "/vitals?history=true").catch(() => ({ ok: false })),
    ]);
    if (!ok) { showError("hosts: " + said(data)); return; }
    state.vitals = {};
    for (const v of (vitals.ok && vitals.data.hosts) || []) state.vitals[v.host_id] = v;
    state.history = {};
    for (const c of (vitals.ok && vitals.data.components) || []) state.history[c.component_id] = c.history;
    // Hosts the controller knows that did not answer (frozen, or lately unreachable).
    const answered = new Set(data.map((h) => h.id));
    for (const v of Object.values(state.vitals)) {
      if (!answered.has(v.host_id)) {
        data.push({ id: v.host_id, friendly_name: v.friendly_name, labels: {}, silent: true });
      }
    }
    state.hosts = data;
    const inventories = await Promise.all(data.map((h) =>
      api("GET", "/hosts/" + encodeURIComponent(h.id)).then((r) => (r.ok ? r.data : null)).catch(() => null)));
    state.inventories = {};
    data.forEach((h, i) => { state.inventories[h.id] = inventories[i]; });
    renderHosts();
    renderMap();
    renderCharts();
  } catch (e) {
    showError(String(e.message || e));
  }
}

function renderHosts() {
  $("#host-count").textContent = `(${state.hosts.length})`;
  if (!state.hosts.length) {
    show($("#hosts"), html`<p class="muted">No host answers. Start one with <code>trellis node</code>.</p>`);
    return;
  }
  show($("#hosts"), state.hosts.map((host) => {
    const inv = state.inventories[host.id];
    const vitals = state.vitals[host.id];
    const health = vitals ? vitals.health : "";
    const res = host.resources || (vitals && vitals.resources);
    const load = res
      ? html`<span class="muted small">CPU ${Math.round(res.cpu_use * 100)}% of ${res.cpus} · ${
        (res.memory_available_bytes / 2 ** 30).toFixed(1)}/${(res.memory_total_bytes / 2 ** 30).toFixed(1)} GiB free</span>`
      : "";
    const seen = host.silent && vitals
      ? html`<span class="muted small">silent ${Math.round(vitals.last_seen_ms / 1000)}s</span>`
      : html`<span class="muted small">up ${host.uptime_human || host.uptime_seconds + "s"}</span>`;
    const labels = Object.entries(host.labels || {})
      .map(([k, v]) => html`<span class="chip">${k}=${v}</span>`);
    let running = html`<li class="muted">inventory unavailable</li>`;
    if (inv) {
      const rows = [];
      for (const c of inv.components || []) {
        const app = (c.annotations || {})["wasmcloud.dev/appspec"];
        rows.push(html`<li class="component" data-component="${c.id}">component <strong>${c.name || c.id}</strong> ×${c.max_instances}${
          app ? html` <span class="chip">app ${app}</span>` : ""} <span class="muted mono small">${c.image_ref}</span></li>`);
      }
      for (const p of inv.providers || []) {
        const app = (p.annotations || {})["wasmcloud.dev/appspec"];
        rows.push(html`<li class="provider" data-provider="${p.id}">provider <strong>${p.name || p.id}</strong>${
          app ? html` <span class="chip">app ${app}</span>` : ""} <span class="muted mono small">${p.image_ref || ""}</span></li>`);
      }
      running = rows.length ? rows : html`<li class="muted">nothing running</li>`;
    }
    return html`<div class="host" data-host-id="${host.id}" data-health="${health}">
      <div class="title"><strong>${host.friendly_name || shortId(host.id)}</strong>
        <span class="id">${host.id}</span>
        ${health ? html`<span class="badge health ${health}">${health}</span>` : ""}
        ${seen} ${load}</div>
      <div>${labels}</div>
      <ul>${running}</ul>
    </div>`;
  }));
}

function renderMap() {
  show($("#map"), drawMap(state.hosts, state.vitals, state.inventories));
}

// ---- apps --------------------------------------------------------------------------------

// The component ids of an app: those its instances are annotated with, and those named after
// it (`{app}-{name}`, the ids the controller gives) that have history.
function componentsOf(app) {
  const ids = new Set();
  for (const inv of Object.values(state.inventories)) {
    for (const c of (inv && inv.components) || []) {
      if ((c.annotations || {})["wasmcloud.dev/appspec"] === app) ids.add(c.id);
    }
  }
  for (const id of Object.keys(state.history)) if (id.startsWith(app + "-")) ids.add(id);
  return [...ids];
}

function renderCharts() {
  for (const cell of document.querySelectorAll("#apps td.chart-cell")) {
    show(cell, appChart(state.history, componentsOf(cell.dataset.app)));
  }
}

// Apps per list request: their summaries stay far below one NATS message (1 MiB).
const APPS_PAGE = 200;

async function refreshApps() {
  try {
    // A page at a time, so no answer outgrows one NATS message however many apps there are.
    const data = [];
    for (;;) {
      const page = await api("GET", `/apps?offset=${data.length}&limit=${APPS_PAGE}`);
      if (!page.ok) { showError("apps: " + said(page.data)); return; }
      data.push(...page.data);
      if (page.data.length < APPS_PAGE) break;
    }
    state.apps = data;
    const versions = await Promise.all(data.map((app) =>
      api("GET", `/apps/${encodeURIComponent(app.name)}/versions`).then((r) => (r.ok ? r.data.versions : [])).catch(() => [])));
    data.forEach((app, i) => { state.versions[app.name] = versions[i]; });
    // 404 for an app that never rolled out: nothing to show.
    const rollouts = await Promise.all(data.map((app) =>
      api("GET", `/apps/${encodeURIComponent(app.name)}/rollout`).then((r) => (r.ok ? r.data.rollout : null)).catch(() => null)));
    data.forEach((app, i) => { state.rollouts[app.name] = rollouts[i]; });
    renderApps();
  } catch (e) {
    showError(String(e.message || e));
  }
}

function statusType(status) {
  return (status && status.status && status.status.type) || "undeployed";
}

function renderStatus(status) {
  const type = statusType(status);
  const message = status && status.status && status.status.message;
  const scalers = (status && status.scalers) || [];
  const details = scalers.length
    ? html`<ul class="scalers">${scalers.map((s) => {
      const t = (s.status && s.status.type) || "";
      const reason = (s.status && s.status.message) || "";
      return html`<li><span class="badge ${t}">${t}</span> ${s.kind} <strong>${s.name}</strong>${
        reason ? html` <span class="reason">${reason}</span>` : ""}</li>`;
    })}</ul>`
    : (message ? html`<div class="reason muted small">${message}</div>` : "");
  return html`<span class="badge status ${type}">${type}</span>${details}`;
}

function renderApps() {
  const body = $("#apps tbody");
  if (!state.apps.length) {
    show(body, html`<tr><td colspan="6" class="muted">No apps yet: upload a manifest.</td></tr>`);
    return;
  }
  show(body, state.apps.map((app) => {
    const versions = state.versions[app.name] || [{ version: app.version, deployed: false }];
    const chosen = state.selected[app.name] || app.version;
    const options = versions.slice().reverse().map((v) =>
      html`<option value="${v.version}"${v.version === chosen ? html` selected` : ""}>${v.version}${v.deployed ? " (deployed)" : ""}</option>`);
    const deployed = app.deployed_version;
    const disabled = deployed ? "" : html` disabled`;
    return html`<tr data-app="${app.name}">
      <td><strong>${app.name}</strong><div class="muted small">${app.description || ""}</div></td>
      <td><select class="version" data-app="${app.name}">${options}</select></td>
      <td class="deployed-version">${deployed || html`<span class="muted">—</span>`}</td>
      <td class="app-status">${renderStatus(app.detailed_status)}${renderRollout(app.name, state.rollouts[app.name])}</td>
      <td class="chart-cell" data-app="${app.name}">${appChart(state.history, componentsOf(app.name))}</td>
      <td class="actions"><div class="row">
        <button data-action="plan" data-app="${app.name}">Plan</button>
        <button data-action="deploy" data-app="${app.name}" class="primary">Deploy</button>
        <button data-action="undeploy" data-app="${app.name}"${disabled}>Undeploy</button>
        <button data-action="rollback" data-app="${app.name}"${disabled}>Rollback</button>
        <button data-action="delete" data-app="${app.name}" class="danger">Delete</button>
      </div></td>
    </tr>`;
  }));
}

// A status change from the event stream: shown at once, then the list is asked again.
function onStatus(app, status) {
  const summary = state.apps.find((a) => a.name === app);
  if (summary && status) {
    summary.detailed_status = status;
    const cell = $(`#apps tr[data-app="${CSS.escape(app)}"] .app-status`);
    if (cell) show(cell, renderStatus(status));
  }
  debounce("apps", 300, refreshApps);
}

// ---- plan as a diff ----------------------------------------------------------------------

// One line per command: `+` starts or links, `-` stops or unlinks, `~` changes a count.
function commandLine(command) {
  const parts = command.subject.split(".");
  // wasmbus.ctl.v1.{lattice}.{noun}.{verb}[.{host}]
  const noun = parts[4] || "";
  const verb = parts[5] || "";
  const host = parts[6] ? ` on ${shortId(parts[6])}` : "";
  const b = command.body || {};
  let sign = "~";
  let text = `${noun}.${verb}`;
  if (noun === "component" && verb === "scale") {
    const count = b.count ?? b.max_instances;
    sign = count === 0 ? "-" : "+";
    text = `${count === 0 ? "stop" : "scale"} component ${b.component_id || ""} to ${count}${host}`;
  } else if (noun === "provider") {
    sign = verb === "stop" ? "-" : "+";
    text = `${verb} provider ${b.provider_id || ""} ${b.provider_ref || ""}${host}`;
  } else if (noun === "link") {
    sign = verb === "del" ? "-" : "+";
    text = `${verb === "del" ? "unlink" : "link"} ${b.source_id || ""} → ${b.target || ""} ${b.wit_namespace || ""}:${b.wit_package || ""}`;
  } else if (noun === "config") {
    sign = verb === "del" ? "-" : "+";
    text = `${verb === "del" ? "delete" : "put"} config ${parts[6] || ""}`;
  }
  const cls = command.held ? "held" : { "+": "add", "-": "del", "~": "chg" }[sign];
  return html`<div class="${cls}" title="${command.subject + " " + JSON.stringify(command.body)}">${sign} ${text}  <span class="muted">[${command.scaler}]${command.held ? " (already in flight)" : ""}</span></div>`;
}

function renderPlan(plan) {
  const commands = plan.commands || [];
  const diff = commands.length
    ? html`<div class="diff">${commands.map(commandLine)}</div>`
    : html`<p class="muted">Nothing to do: the lattice already runs this version.</p>`;
  const scalers = (plan.scalers || []).length ? html`<ul class="scalers">${plan.scalers.map((s) => {
    const status = s.status || {};
    return html`<li><span class="badge ${status.type}">${status.type}</span> ${s.kind} <strong>${s.name}</strong>${
      status.message ? html` <span class="reason">${status.message}</span>` : ""}</li>`;
  })}</ul>` : "";
  return html`${diff}${scalers}`;
}

async function fetchPlan(app, version) {
  const query = version ? "?version=" + encodeURIComponent(version) : "";
  const { ok, data } = await api("GET", `/apps/${encodeURIComponent(app)}/plan${query}`);
  if (!ok) return { html: html`<p class="muted">No plan: ${said(data)}</p>` };
  return { html: renderPlan(data), plan: data };
}

// ---- confirmation ------------------------------------------------------------------------

function confirmAction(title, markup, okLabel) {
  const dialog = $("#confirm");
  $("#confirm-title").textContent = title;
  show($("#confirm-body"), markup);
  $("#confirm-ok").textContent = okLabel || "Confirm";
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

async function act(action, app) {
  const version = state.selected[app] || (state.apps.find((a) => a.name === app) || {}).version;
  const path = `/apps/${encodeURIComponent(app)}`;
  let request = null;
  if (action === "plan") {
    const plan = await fetchPlan(app, version);
    $("#plan-title").textContent = `${app} ${version}`;
    show($("#plan"), plan.html);
    $("#plan-box").hidden = false;
    return;
  }
  if (action === "deploy") {
    const plan = await fetchPlan(app, version);
    if (!await confirmAction(`Deploy ${app} ${version}?`, html`<p>The controller would issue now:</p>${plan.html}`, "Deploy")) return;
    request = ["POST", path + "/deploy", JSON.stringify({ version })];
  } else if (action === "undeploy") {
    const question = html`<p>Everything ${app} runs is stopped.</p>
      <label><input type="checkbox" id="non-destructive"> leave what it runs in place (stop managing it only)</label>`;
    const ok = await confirmAction(`Undeploy ${app}?`, question, "Undeploy");
    if (!ok) return;
    request = ["POST", path + "/undeploy", JSON.stringify({ non_destructive: $("#non-destructive").checked })];
  } else if (action === "rollback") {
    const history = await api("GET", path + "/history");
    const entries = (history.ok && history.data.history) || [];
    const lines = entries.slice(-5).map((h) => html`<li>${h.at}: ${h.version ? "deployed " + h.version : "undeployed"}</li>`);
    if (!await confirmAction(`Roll ${app} back?`, html`<p>Deploys the version deployed before the current one. Recent history:</p><ul>${lines}</ul>`, "Roll back")) return;
    request = ["POST", path + "/rollback", undefined];
  } else if (action === "promote") {
    if (!await confirmAction(`Promote the rollout of ${app}?`, html`<p>It goes on past its current step.</p>`, "Promote")) return;
    request = ["POST", path + "/rollout/promote", undefined];
  } else if (action === "abort") {
    const question = html`<p>Every request goes back to the old version at once, then the new version is removed.</p>
      <label>why <input type="text" id="abort-reason" size="32"></label>`;
    if (!await confirmAction(`Abort the rollout of ${app}?`, question, "Abort")) return;
    request = ["POST", path + "/rollout/abort", JSON.stringify({ reason: $("#abort-reason").value })];
  } else if (action === "delete") {
    if (!await confirmAction(`Delete ${app}?`, html`<p>Deletes every stored version of ${app} and undeploys it.</p>`, "Delete")) return;
    request = ["DELETE", path, undefined];
  } else {
    return;
  }
  const { ok, data } = await api(...request);
  showError(ok ? "" : `${action} ${app}: ${said(data)}`);
  refreshApps();
}

// ---- manifests ---------------------------------------------------------------------------

function renderDiagnostics(diagnostics) {
  show($("#diagnostics"), (diagnostics || []).map((d) =>
    html`<li class="diag diag-${d.severity}"><strong>${d.severity}</strong> ${
      d.path ? html`<span class="path">${d.path}</span>: ` : ""}${d.message}${
      d.source ? html` <span class="muted small">(${d.source})</span>` : ""}${
      d.hint ? html`<span class="hint">hint: ${d.hint}</span>` : ""}</li>`));
}

async function validateManifest() {
  const text = $("#manifest-text").value;
  if (!text.trim()) {
    $("#upload-result").textContent = "paste a manifest or choose a file first";
    return null;
  }
  const { ok, data } = await api("POST", "/validate", text, "application/yaml");
  if (!ok) {
    $("#upload-result").textContent = said(data);
    return null;
  }
  renderDiagnostics(data.diagnostics);
  $("#upload-result").textContent = data.valid
    ? (data.diagnostics.length ? "valid, with remarks" : "valid")
    : "not valid: see below";
  return data;
}

async function putManifest() {
  const checked = await validateManifest();
  if (!checked || !checked.valid) return;
  const { ok, data } = await api("POST", "/apps", $("#manifest-text").value, "application/yaml");
  $("#upload-result").textContent = said(data);
  if (ok && data.name) {
    state.selected[data.name] = data.current_version;
  }
  await refreshApps();
}

// ---- plugins -----------------------------------------------------------------------------

async function refreshPlugins() {
  try {
    const { ok, data } = await api("GET", "/plugins");
    if (!ok) { showError("plugins: " + said(data)); return; }
    const us = (v) => (v == null ? "–" : v < 1000 ? v + " µs" : (v / 1000).toFixed(1) + " ms");
    const plugins = data.plugins || [];
    show($("#plugins tbody"), plugins.length ? plugins.map((p) => {
      const failures = Object.entries(p.failures || {}).map(([kind, n]) => `${kind} ${n}`).join(", ");
      return html`<tr data-plugin="${p.name}"><td><strong>${p.name}</strong> <span class="muted small">${p.version}</span>
        <div class="muted small">${p.description}</div></td>
        <td>${p.kind}</td><td>${(p.trait_types || []).map((t) => html`<span class="chip">${t}</span>`)}</td>
        <td>${p.calls}</td><td class="small nowrap">${us(p.p50_us)} / ${us(p.p99_us)}</td>
        <td class="${failures ? "diag-error" : "muted"}">${failures || "none"}</td></tr>`;
    }) : html`<tr><td colspan="6" class="muted">No plugins in ${data.plugin_dir}</td></tr>`);
    show($("#plugin-problems"), (data.problems || []).map((p) =>
      html`<li class="diag diag-error"><span class="path">${p.file}</span>: ${p.error}</li>`));
  } catch (e) {
    showError(String(e.message || e));
  }
}

// ---- events ------------------------------------------------------------------------------

function addEvent(kind, text, time) {
  const list = $("#events");
  const item = document.createElement("li");
  const at = time ? new Date(time) : new Date();
  show(item, html`<span class="time">${at.toLocaleTimeString()}</span><span class="kind">${kind}</span>${text}`);
  list.prepend(item);
  while (list.children.length > 200) list.lastChild.remove();
}

function onLatticeEvent(event) {
  const kind = String(event.type || "").replace("com.wasmcloud.lattice.", "");
  const data = event.data || {};
  if (kind === "host_heartbeat") {
    // Heartbeats carry nothing new for a known host; an unknown one means the list is old.
    if (!state.hosts.some((h) => h.id === event.source)) debounce("hosts", 300, refreshHosts);
    if (!$("#show-heartbeats").checked) return;
  } else {
    debounce("hosts", 300, refreshHosts);
  }
  const what = data.component_id || data.provider_id || data.config_name
    || (data.source_id ? `${data.source_id} → ${data.target || ""}` : "");
  const count = data.max_instances != null ? ` ×${data.max_instances}` : "";
  const error = data.error ? `: ${data.error}` : "";
  addEvent(kind, `${what}${count} on ${shortId(event.source)}${error}`, event.time);
}

function setLive(live, text) {
  const badge = $("#live");
  badge.className = "badge " + (live ? "live" : "down");
  badge.textContent = text || (live ? "live" : "reconnecting");
}

// Server-sent events read through fetch (EventSource cannot send the token header).
async function listen() {
  for (;;) {
    try {
      const used = state.token;
      const headers = used ? { Authorization: "Bearer " + used } : {};
      const response = await fetch("/api/v1/events", { headers });
      if (response.status === 401) {
        // Unless a token came while this request was on its way, wait for one.
        if (used === state.token) {
          showTokenBox();
          setLive(false, "needs token");
          await new Promise((resolve) => { state.tokenGiven = resolve; });
        }
        continue;
      }
      if (!response.ok) throw new Error("events: HTTP " + response.status);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          handleBlock(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (e) {
      console.warn("event stream:", e);
    }
    setLive(false);
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function handleBlock(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (!data.length) return;
  let payload;
  try { payload = JSON.parse(data.join("\n")); } catch (_) { return; }
  if (name === "ready") {
    setLive(true);
    // Whatever happened while the stream was down is read afresh.
    refreshAll();
  } else if (name === "lattice") {
    onLatticeEvent(payload);
  } else if (name === "health") {
    const d = payload.data || {};
    addEvent("health", `${d.friendly_name || shortId(d.host_id || "")}: ${d.from} → ${d.to} (${d.reason})`, payload.time);
    debounce("hosts", 300, refreshHosts);
  } else if (name === "rollout") {
    const d = payload.data || {};
    addEvent("rollout", `${d.app}: ${d.news}`, payload.time);
    debounce("apps", 300, refreshApps);
  } else if (name === "status") {
    onStatus(payload.app, payload.status);
    addEvent("status", `${payload.app}: ${statusType(payload.status)}`
      + ((payload.status && payload.status.status && payload.status.status.message) ? ` (${payload.status.status.message})` : ""));
  }
}

// ---- start -------------------------------------------------------------------------------

function refreshAll() {
  refreshHosts();
  refreshApps();
  refreshPlugins();
}

function start() {
  $("#token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = $("#token-input").value.trim();
    sessionStorage.setItem(TOKEN_KEY, state.token);
    $("#token-box").hidden = true;
    showError("");
    if (state.tokenGiven) { state.tokenGiven(); state.tokenGiven = null; }
    refreshAll();
  });
  $("#manifest-file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    if (file) $("#manifest-text").value = await file.text();
  });
  $("#validate-button").addEventListener("click", validateManifest);
  $("#put-button").addEventListener("click", putManifest);
  $("#plan-close").addEventListener("click", () => { $("#plan-box").hidden = true; });
  $("#apps").addEventListener("change", (e) => {
    if (e.target.matches("select.version")) state.selected[e.target.dataset.app] = e.target.value;
  });
  $("#apps").addEventListener("click", (e) => {
    const button = e.target.closest("button[data-action]");
    if (button) act(button.dataset.action, button.dataset.app).catch((err) => showError(String(err.message || err)));
  });
  api("GET", "/lattice").then(({ data }) => { $("#lattice-name").textContent = data.lattice; }).catch(() => {});
  refreshAll();
  // The event stream keeps the page current; this catches what no event announces
  // (plugin statistics, uptimes).
  setInterval(refreshPlugins, 5000);
  // The map and charts follow the controller's samples (one every 5 s).
  setInterval(refreshHosts, 5000);
  listen();
}

start();
