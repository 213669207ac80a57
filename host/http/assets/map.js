// The lattice map and the apps' charts, drawn as SVG from the controller's view of the hosts
// (/api/v1/vitals, with history) and the hosts' inventories. Loaded before dashboard.js, which
// calls drawMap and appChart; values pass through its escaping `html` templates, and colours
// and sizes are SVG attributes (the page's policy allows no inline style).
"use strict";

// A stable colour per app, from its name.
function appColour(app) {
  let hue = 0;
  for (const ch of String(app)) hue = (hue * 31 + ch.codePointAt(0)) % 360;
  return `hsl(${hue} 65% 48%)`;
}

// A horizontal gauge of `fraction` (0–1), labelled.
function gauge(label, fraction, kind) {
  const f = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
  const width = Math.round(f * 100);
  const level = f > 0.85 ? "high" : f > 0.6 ? "mid" : "low";
  return html`<div class="gauge"><span class="small muted">${label}</span><svg viewBox="0 0 100 6" preserveAspectRatio="none" class="gauge-bar"><rect class="track" width="100" height="6"></rect><rect class="fill ${kind} ${level}" width="${width}" height="6"></rect><title>${label} ${Math.round(f * 100)} %</title></svg></div>`;
}

// Up to this many instance squares per host; the rest is counted.
const MAP_SQUARES = 40;

// One card per host: name and health, CPU (the machine's and the host's own) and memory in
// use, and a square per instance, coloured by app.
function drawMap(hosts, vitals, inventories) {
  if (!hosts.length) return html`<p class="muted">No host yet.</p>`;
  return hosts.map((host) => {
    const v = vitals[host.id];
    const res = host.resources || (v && v.resources);
    const health = (v && v.health) || "unknown";
    const inv = inventories[host.id];
    const squares = [];
    for (const c of (inv && inv.components) || []) {
      const app = (c.annotations || {})["wasmcloud.dev/appspec"] || c.id;
      for (let i = 0; i < (c.max_instances || 0); i++) squares.push({ app, what: c.name || c.id });
    }
    for (const p of (inv && inv.providers) || []) {
      squares.push({ app: (p.annotations || {})["wasmcloud.dev/appspec"] || p.id, what: p.name || p.id });
    }
    const shown = squares.slice(0, MAP_SQUARES);
    const cells = shown.map((s, i) => html`<rect x="${(i % 10) * 9}" y="${Math.floor(i / 10) * 9}" width="7" height="7" rx="1" fill="${appColour(s.app)}"><title>${s.app}: ${s.what}</title></rect>`);
    const rows = Math.max(1, Math.ceil(shown.length / 10));
    const more = squares.length > shown.length ? html`<span class="small muted">+${squares.length - shown.length}</span>` : "";
    const gauges = res
      ? [
        gauge("CPU", res.cpu_use, "cpu"),
        gauge("own", res.process_cpu_use, "own"),
        gauge("mem", res.memory_total_bytes ? 1 - res.memory_available_bytes / res.memory_total_bytes : 0, "mem"),
      ]
      : html`<span class="small muted">no load reported</span>`;
    return html`<div class="node ${health}" data-host-id="${host.id}" data-health="${health}">
      <div class="node-name"><strong>${host.friendly_name || shortId(host.id)}</strong> <span class="badge ${health}">${health}</span></div>
      ${gauges}
      <svg class="instances" viewBox="0 0 90 ${rows * 9}" width="180" height="${rows * 18}">${cells}</svg>${more}
    </div>`;
  });
}

// A chart of one app over the last minutes: its instances (line) and requests per second
// (area), from the per-component samples of the app's components.
function appChart(samplesByComponent, componentsOfApp) {
  const series = componentsOfApp.map((id) => samplesByComponent[id]).filter(Boolean);
  if (!series.length) return html`<span class="muted small">—</span>`;
  const length = Math.max(...series.map((s) => s.length));
  const points = [];
  for (let i = 0; i < length; i++) {
    let instances = 0;
    let rps = 0;
    for (const s of series) {
      const sample = s[i - (length - s.length)];
      if (sample) {
        instances += sample.instances || 0;
        rps += (sample.traffic && sample.traffic.requests_per_second) || 0;
      }
    }
    points.push({ instances, rps });
  }
  const w = 120;
  const h = 28;
  const maxInstances = Math.max(1, ...points.map((p) => p.instances));
  const maxRps = Math.max(1, ...points.map((p) => p.rps));
  const x = (i) => (length > 1 ? (i / (length - 1)) * w : w);
  const line = points.map((p, i) => `${x(i).toFixed(1)},${(h - 2 - (p.instances / maxInstances) * (h - 4)).toFixed(1)}`).join(" ");
  const area = `0,${h} ` + points.map((p, i) => `${x(i).toFixed(1)},${(h - (p.rps / maxRps) * (h - 2)).toFixed(1)}`).join(" ") + ` ${w},${h}`;
  const last = points[points.length - 1];
  return html`<div class="chart"><svg viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" class="spark"><polygon class="rps" points="${area}"></polygon><polyline class="instances" points="${line}"></polyline><title>instances (line, up to ${maxInstances}) and requests per second (area, up to ${Math.round(maxRps)}) over the last ${length} samples</title></svg><span class="small muted">${last.instances} inst · ${last.rps.toFixed(1)} req/s</span></div>`;
}
