// imagerouter dashboard: one EventSource, the newest snapshot only, DOM nodes built once and
// updated in place in a requestAnimationFrame. No framework, no build step, no CDN.
"use strict";

const PALETTE = ["#2563eb", "#16a34a", "#d97706", "#db2777", "#0891b2", "#7c3aed", "#4b5563"];
const JOB_ROWS = 12;
const RECEIVER_ROWS = 8; // the server sends at most this many (RECEIVERS_SHOWN)
const $ = (sel, root = document) => root.querySelector(sel);

const state = {
  snapshot: null, // the newest snapshot; older ones are dropped unseen
  receivedAt: 0, // performance.now() when it arrived (countdowns run from here)
  frame: 0, // pending requestAnimationFrame id
  source: null,
  cards: new Map(), // provider name -> {root, fields…}
  colors: new Map(), // provider name -> colour
  jobRows: [],
  receiverRows: [],
  farmRows: new Map(),
  farmLoaded: false,
};

// --- small DOM helpers: write only what changed -------------------------------------------

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}
function setAttr(el, name, value) {
  if (el.getAttribute(name) !== value) el.setAttribute(name, value);
}
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k === "swatch") node.style.setProperty("--swatch", v); // CSSOM: allowed by the CSP
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}
function colorOf(name) {
  if (!state.colors.has(name)) state.colors.set(name, PALETTE[state.colors.size % PALETTE.length]);
  return state.colors.get(name);
}
const fmtPct = (x) => (x == null ? "–" : `${(x * 100).toFixed(1)} %`);
const fmtMs = (x) => (x == null ? "–" : x >= 1000 ? `≈ ${(x / 1000).toFixed(2)} s` : `≈ ${Math.round(x)} ms`);
const fmtSecs = (x) => `${x.toFixed(1)} s`;

// --- connection -------------------------------------------------------------------------------

function setConnection(kind, text) {
  const pill = $("#connection");
  setAttr(pill, "data-state", kind);
  setText(pill, text);
}

function showLogin(message) {
  if (state.source) state.source.close();
  state.source = null;
  $("#board").hidden = true;
  $("#sign-out").hidden = true;
  $("#login").hidden = false;
  setText($("#login-message"), message || "");
  setConnection("signed-out", "signed out");
  $("#admin-key").focus();
}

async function checkAccess() {
  // EventSource hides the status of a refused stream: ask the snapshot route why.
  try {
    const answer = await fetch("/v1/admin/snapshot", { credentials: "same-origin" });
    if (answer.status === 401) return showLogin("");
    if (answer.status === 403) return showLogin("Admin routes are off: set the server's admin_key.");
  } catch (_) {
    /* the server is away: keep retrying */
  }
  setConnection("reconnecting", "reconnecting…");
  setTimeout(connect, 2000);
}

function connect() {
  if (state.source) state.source.close();
  const source = new EventSource("/v1/admin/stream");
  state.source = source;
  source.addEventListener("snapshot", (event) => {
    state.snapshot = JSON.parse(event.data);
    state.receivedAt = performance.now();
    if (!state.frame) state.frame = requestAnimationFrame(render);
  });
  source.addEventListener("open", () => {
    $("#login").hidden = true;
    $("#board").hidden = false;
    $("#sign-out").hidden = false;
    setConnection("live", "live");
  });
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      source.close();
      checkAccess();
    } else {
      setConnection("reconnecting", "reconnecting…");
    }
  });
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = $("#admin-key").value;
  const answer = await fetch("/v1/admin/session", {
    method: "POST",
    headers: { Authorization: `Bearer ${key}` },
    credentials: "same-origin",
  });
  $("#admin-key").value = "";
  if (answer.ok) connect();
  else showLogin(answer.status === 403 ? "Admin routes are off on this server." : "Wrong admin key.");
});

$("#sign-out").addEventListener("click", async () => {
  await fetch("/v1/admin/session", { method: "DELETE", credentials: "same-origin" });
  showLogin("");
});

// --- rendering --------------------------------------------------------------------------------

function render() {
  state.frame = 0;
  const snap = state.snapshot;
  if (!snap) return;
  setText($("#t-submitted"), String(snap.totals.submitted));
  setText($("#t-completed"), String(snap.totals.completed));
  setText($("#t-failed"), String(snap.totals.failed));
  setText($("#t-running"), snap.workers ? `${snap.workers.running} / ${snap.workers.size}` : "–");
  const budgets = snap.retry_budget_available;  // retries each provider's budget still allows
  setText($("#t-budget"), String(Object.values(budgets).reduce((sum, n) => sum + n, 0)));
  for (const provider of snap.providers) renderCard(provider);
  renderLegend(snap.providers);
  drawChart(snap);
  renderJobs(snap.jobs);
  renderWebhooks(snap.webhooks);
  renderFarm(snap.farm);
  tick();
}

function card(name) {
  let c = state.cards.get(name);
  if (c) return c;
  const field = (label, cls) => {
    const dd = el("dd", { class: cls || "" });
    return [el("dt", { text: label }), dd];
  };
  const health = field("health");
  const bar = el("div", { class: "bar" }, el("span"));
  health[1].append(el("span", { class: "value" }), bar);
  const probe = field("next probe");
  const cooldown = field("Retry-After", "cooldown");
  const pace = field("paced by 429s", "pace");
  const inflight = field("in flight");
  const spend = field("spend", "spend");
  const success = field("success (1 min)");
  const p95 = field("p95 (1 min)");
  const rate = field("jobs/s");
  const root = el(
    "article",
    { class: "card", "data-provider": name, swatch: colorOf(name) },
    el(
      "header",
      {},
      el("div", {}, el("h3", { text: name }), el("span", { class: "plugin" })),
      el("span", { class: "breaker" }),
    ),
    el("dl", {}, ...health, ...probe, ...cooldown, ...pace, ...inflight, ...spend, ...success, ...p95, ...rate),
  );
  $("#providers").append(root);
  c = {
    root,
    plugin: $(".plugin", root),
    breaker: $(".breaker", root),
    health: $(".value", health[1]),
    bar: $(".bar span", health[1]),
    probe: probe[1],
    cooldown: cooldown[1],
    pace: pace[1],
    inflight: inflight[1],
    spend: spend[1],
    success: success[1],
    p95: p95[1],
    rate: rate[1],
    probeAt: null,
    coolAt: null,
  };
  state.cards.set(name, c);
  return c;
}

function renderCard(p) {
  const c = card(p.name);
  setAttr(c.root, "data-breaker", p.breaker);
  setAttr(c.root, "data-rate", p.rate.toFixed(2));
  setText(c.plugin, p.plugin === p.name ? "" : p.plugin);
  setText(c.breaker, p.breaker.replace("_", "-"));
  setText(c.health, p.health.toFixed(2));
  const width = `${Math.round(p.health * 100)}%`;
  if (c.bar.style.width !== width) c.bar.style.width = width;
  c.bar.style.background = p.health > 0.8 ? "var(--ok)" : p.health > 0.4 ? "var(--warn)" : "var(--bad)";
  c.probeAt = p.next_probe_in_s == null ? null : state.receivedAt + p.next_probe_in_s * 1000;
  c.coolAt = p.cooldown_s > 0 ? state.receivedAt + p.cooldown_s * 1000 : null;
  setText(c.pace, p.pace_per_s == null ? "–" : `${p.pace_per_s.toFixed(1)} calls/s`);
  setText(c.inflight, p.in_flight == null ? "– (no limit)" : `${p.in_flight} / ${p.limit}`);
  // Spend against each cap ("$0.42 / $5.00 h"); capped windows are flagged on the card.
  const windows = Object.entries(p.spend || {});
  setAttr(c.root, "data-capped", String(windows.some(([, s]) => s.capped)));
  setText(
    c.spend,
    windows.length
      ? windows.map(([win, s]) => `$${s.spent_usd.toFixed(2)} / $${s.cap_usd.toFixed(2)} ${win[0]}`).join(", ")
      : "– (no cap)",
  );
  const w = p.window;
  setText(c.success, w.calls ? `${fmtPct(w.success_rate)} of ${w.calls}` : "–");
  setText(c.p95, fmtMs(w.p95_ms));
  setText(c.rate, p.rate.toFixed(1));
}

// Countdowns run locally between snapshots.
function tick() {
  const now = performance.now();
  for (const c of state.cards.values()) {
    const breaker = c.root.getAttribute("data-breaker");
    let probe = "–";
    if (breaker === "open" && c.probeAt != null) probe = `in ${fmtSecs(Math.max(0, (c.probeAt - now) / 1000))}`;
    else if (breaker === "half_open") probe = c.probeAt == null ? "probes out" : "now";
    setText(c.probe, probe);
    const cooling = c.coolAt != null && c.coolAt > now;
    setAttr(c.root, "data-cooling", String(cooling));
    setText(c.cooldown, cooling ? `cooling ${fmtSecs((c.coolAt - now) / 1000)}` : "–");
  }
}
(function countdowns() {
  tick();
  setTimeout(() => requestAnimationFrame(countdowns), 100);
})();

function renderLegend(providers) {
  const legend = $("#legend");
  for (const p of providers) {
    if (!legend.querySelector(`[data-provider="${CSS.escape(p.name)}"]`)) {
      legend.append(el("span", { "data-provider": p.name, swatch: colorOf(p.name), text: p.name }));
    }
  }
}

function drawChart(snap) {
  const canvas = $("#chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth;
  const height = canvas.clientHeight;
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  const left = 34, bottom = 18, top = 6, right = 8;
  const plotW = width - left - right, plotH = height - top - bottom;
  let max = 1;
  for (const p of snap.providers) for (const v of p.series) max = Math.max(max, v);
  const step = niceStep(max / 4);
  max = Math.ceil(max / step) * step;
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillStyle = "#5d6570";
  ctx.strokeStyle = "#eef0f3";
  ctx.lineWidth = 1;
  for (let v = 0; v <= max; v += step) {
    const y = top + plotH - (v / max) * plotH;
    ctx.beginPath();
    ctx.moveTo(left, y);
    ctx.lineTo(left + plotW, y);
    ctx.stroke();
    ctx.fillText(String(v), 4, y + 4);
  }
  const n = snap.window_s;
  ctx.fillText(`-${n} s`, left, height - 4);
  ctx.fillText("now", left + plotW - 22, height - 4);
  ctx.lineWidth = 2;
  for (const p of snap.providers) {
    ctx.strokeStyle = colorOf(p.name);
    ctx.beginPath();
    p.series.forEach((v, i) => {
      const x = left + (i / (n - 1)) * plotW;
      const y = top + plotH - (v / max) * plotH;
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
}

function niceStep(raw) {
  const power = 10 ** Math.floor(Math.log10(Math.max(raw, 1e-9)));
  for (const m of [1, 2, 5, 10]) if (raw <= m * power) return Math.max(1, m * power);
  return Math.max(1, 10 * power);
}

function renderJobs(jobs) {
  const body = $("#jobs tbody");
  while (state.jobRows.length < JOB_ROWS) {
    const cells = Array.from({ length: 6 }, () => el("td"));
    const row = el("tr", { hidden: "" }, ...cells);
    cells[0].append(el("code"));
    body.append(row);
    state.jobRows.push({ row, cells, id: $("code", cells[0]) });
  }
  state.jobRows.forEach((r, i) => {
    const job = jobs[i];
    r.row.hidden = !job;
    if (!job) return;
    setAttr(r.row, "data-status", job.status);
    setAttr(r.row, "data-provider", job.provider || "");
    setText(r.id, job.id);
    setText(r.cells[1], job.model || "–");
    setText(r.cells[2], job.status);
    setText(r.cells[3], job.provider || (job.error_code ? `– (${job.error_code})` : "–"));
    setText(r.cells[4], job.duration_ms == null ? "–" : `${job.duration_ms} ms`);
    setText(r.cells[5], job.attempts.map(describeAttempt).join("  →  ") || "–");
  });
}

function renderWebhooks(hooks) {
  $("#webhooks").hidden = !hooks;
  if (!hooks) return;
  const r = hooks.receivers;
  setText(
    $("#webhooks-totals"),
    `(${hooks.in_flight} attempts in flight, ${hooks.slow} slow; ${r.receivers} receivers, ` +
      `${r.above_floor} given more than the floor, ${r.paused} paused; ` +
      `their limits shared by ${hooks.senders} ${hooks.senders === 1 ? "replica" : "replicas"}; ` +
      `${r.waiting} waiting in line; given back unsent: ${hooks.deferred.busy} for a full ` +
      `line, ${hooks.deferred.paused} for a pause)`,
  );
  const body = $("#receivers tbody");
  while (state.receiverRows.length < RECEIVER_ROWS) {
    const cells = Array.from({ length: 5 }, () => el("td"));
    const row = el("tr", { hidden: "" }, ...cells);
    body.append(row);
    state.receiverRows.push({ row, cells });
  }
  state.receiverRows.forEach((r, i) => {
    const receiver = hooks.busiest[i];
    r.row.hidden = !receiver;
    if (!receiver) return;
    setAttr(r.row, "data-receiver", receiver.receiver);
    setAttr(r.row, "data-waiting", String(receiver.waiting));
    setAttr(r.row, "data-paused", String(receiver.paused_s));
    setText(r.cells[0], receiver.receiver);
    setText(r.cells[1], String(receiver.limit));
    setText(r.cells[2], String(receiver.in_flight));
    setText(r.cells[3], String(receiver.waiting));
    setText(r.cells[4], receiver.paused_s ? `${receiver.paused_s} s` : "–");
  });
}

function describeAttempt(a) {
  if (a.outcome === "skipped") return `${a.provider} skipped (${(a.reason || "").split(":")[0]})`;
  const mark = a.outcome === "ok" ? "✓" : a.outcome === "canceled" ? "⊘" : "✗";
  const detail = a.outcome === "error" ? ` ${a.status || a.error_class}` : "";
  const took = a.latency_ms == null ? "" : ` ${a.latency_ms} ms`;
  return `${a.provider} ${mark}${detail}${took}`;
}

// --- the farm panel ---------------------------------------------------------------------------

const PRESETS = {
  healthy: (base) => base,
  down: (base) => ({ ...base, down: true }),
  "429 storm": (base) => ({ ...base, error_rates: { 429: 0.6 }, retry_after_s: 2 }),
  "5xx": (base) => ({ ...base, error_rates: { 503: 0.5 } }),
  slow: (base) => ({ ...base, latency_ms: { dist: "lognormal", p50: 1500, p95: 4000 } }),
};

function healthyBase(faults) {
  const base = { ...faults };
  for (const key of ["down", "error_rates", "retry_after_s", "phases"]) delete base[key];
  return base;
}

async function loadFarm() {
  state.farmLoaded = true;
  const answer = await fetch("/v1/admin/farm", { credentials: "same-origin" });
  if (!answer.ok) return;
  const doc = await answer.json();
  const body = $("#farm-table tbody");
  for (const [name, entry] of Object.entries(doc.providers)) {
    const base = healthyBase(entry.faults || {});
    const now = el("td");
    const presets = el("div", { class: "presets" });
    for (const preset of Object.keys(PRESETS)) {
      const button = el("button", { type: "button", "data-farm-provider": name, "data-preset": preset, text: preset });
      button.addEventListener("click", () => setFaults(name, PRESETS[preset](base)));
      presets.append(button);
    }
    const editor = el("textarea", { spellcheck: "false", "aria-label": `${name} fault profile` });
    editor.value = JSON.stringify(entry.faults || {}, null, 1);
    const apply = el("button", { type: "button", text: "apply JSON" });
    apply.addEventListener("click", () => {
      let profile;
      try {
        profile = JSON.parse(editor.value);
      } catch (err) {
        return setText($("#farm-message"), `${name}: not JSON (${err.message})`);
      }
      setFaults(name, profile);
    });
    const details = el("details", {}, el("summary", { text: "custom profile" }), editor, apply);
    const row = el("tr", { "data-farm": name }, el("td", { text: name }), now, el("td", {}, presets, details));
    body.append(row);
    state.farmRows.set(name, { row, now, editor });
  }
}

async function setFaults(name, profile) {
  const answer = await fetch(`/v1/admin/farm/providers/${encodeURIComponent(name)}/faults`, {
    method: "PUT",
    headers: { "Content-Type": "application/json" },
    credentials: "same-origin",
    body: JSON.stringify(profile),
  });
  const doc = await answer.json().catch(() => ({}));
  if (answer.ok) {
    setText($("#farm-message"), `${name}: fault profile set ${JSON.stringify(doc.faults || profile)}`);
    const row = state.farmRows.get(name);
    if (row) row.editor.value = JSON.stringify(doc.faults || profile, null, 1);
  } else {
    const why = doc.error && doc.field !== undefined ? `${doc.field}: ${doc.reason}` : JSON.stringify(doc);
    setText($("#farm-message"), `${name}: refused (${answer.status}) ${why}`);
  }
}

function renderFarm(farm) {
  $("#farm").hidden = !farm;
  if (!farm) return;
  if (!state.farmLoaded) loadFarm();
  for (const [name, live] of Object.entries(farm.providers)) {
    const row = state.farmRows.get(name);
    if (!row) continue;
    setAttr(row.row, "data-down", String(live.down));
    const rates = Object.entries(live.error_rates).map(([k, v]) => `${k} ${Math.round(v * 100)} %`);
    setText(row.now, live.down ? "down" : rates.length ? rates.join(", ") : "healthy");
  }
}

connect();
