// An app's rollout in the apps table: the versions, the state and step, the share of requests
// and instances each version has, both versions' figures (the analysis) and why it stands
// where it does, with Promote and Abort while it runs. Loaded before dashboard.js, which asks
// /api/v1/apps/{name}/rollout for each app and calls renderRollout; values pass through its
// escaping `html` templates.
"use strict";

const ROLLOUT_ACTIVE = ["progressing", "waiting_for_promotion", "rolling_back", "finishing"];

function rolloutActive(rollout) {
  return Boolean(rollout) && ROLLOUT_ACTIVE.includes(rollout.state);
}

// A bar split between the old (left) and the new version (right) by `newPercent`.
function splitBar(label, newPercent) {
  const p = Math.min(100, Math.max(0, Number(newPercent) || 0));
  return html`<div class="gauge"><span class="small muted">${label} ${100 - p}% old · ${p}% new</span><svg viewBox="0 0 100 6" preserveAspectRatio="none" class="gauge-bar"><rect class="fill old" width="${100 - p}" height="6"></rect><rect class="fill new" x="${100 - p}" width="${p}" height="6"></rect></svg></div>`;
}

function figuresRow(which, f) {
  if (!f) return "";
  const rate = f.requests ? (100 * f.failed / f.requests).toFixed(1) : "0.0";
  return html`<tr><td>${which}</td><td>${f.version}</td><td>${f.instances}/${f.wanted}</td><td>${(f.requests_per_second || 0).toFixed(1)}</td><td>${f.failed}</td><td>${rate}%</td><td>${Math.round(f.p99_ms || 0)}</td></tr>`;
}

// The rollout of `app` (the current one, or the last one, shown smaller).
function renderRollout(app, rollout) {
  if (!rollout) return "";
  const active = rolloutActive(rollout);
  const target = rollout.target || {};
  const hosts = target.hosts ? html` <span class="muted small">new on ${target.hosts.label}=${(target.hosts.new_values || []).join(",")}</span>` : "";
  const buttons = active ? html`<div class="row">
      ${rollout.state === "waiting_for_promotion" ? html`<button data-action="promote" data-app="${app}" class="primary">Promote</button>` : ""}
      <button data-action="abort" data-app="${app}" class="danger">Abort</button>
    </div>` : "";
  const figures = (rollout.old || rollout.new) ? html`<table class="figures small"><thead><tr><th></th><th>version</th><th>instances</th><th>req/s</th><th>failed</th><th>errors</th><th>p99 ms</th></tr></thead>
      <tbody>${figuresRow("old", rollout.old)}${figuresRow("new", rollout.new)}</tbody></table>` : "";
  return html`<div class="rollout ${active ? "active" : "over"}" data-rollout-state="${rollout.state}">
    <div><strong>rollout</strong> ${rollout.from} → ${rollout.to} <span class="muted">(${rollout.strategy})</span>
      <span class="badge rollout ${rollout.state}">${String(rollout.state).replace(/_/g, " ")}</span> step ${rollout.step}${hosts}</div>
    ${active ? html`${splitBar("requests", target.traffic)}${splitBar("instances", target.new_instances)}` : ""}
    <div class="reason small">${rollout.message || ""}</div>
    ${active ? figures : ""}
    ${buttons}
  </div>`;
}
