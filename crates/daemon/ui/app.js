// Keel's dashboard: gets the bearer token (URL fragment or form), polls the
// daemon's API and draws the panels. Talks to its own origin only.

import { legend, linePlot, svgEl } from "./plot.js";
import {
  RESOURCES, h, renderHeatmap, renderMigrations, renderPlans, renderSummary,
} from "./panels.js";

const POLL_MS = 3000;
const TOKEN_KEY = "keel.token";
const SUBJECT_KEY = "keel.subject";
// Points kept per series when the daemon has no history to give.
const LOCAL_POINTS = 600;
const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  cluster: null,
  plansDoc: null,
  plansSignature: "",
  openPlans: new Set(),
  busy: new Set(),
  // Plans applied from this page, announced when they finish.
  watching: new Set(),
  // Whose usage history is shown: "vm:<name>" or "host:<name>".
  subject: sessionStorage.getItem(SUBJECT_KEY),
  subjectNames: "",
  // Seen while this page is open, for when the daemon keeps no history.
  localImbalance: [],
  localVm: new Map(),
  localHost: new Map(),
  lastObserved: 0,
  timer: null,
  // GET /api/v1/settings as last read (null: the daemon has no such route).
  settings: null,
};

// ---- the token -----------------------------------------------------------

function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (token) {
    sessionStorage.setItem(TOKEN_KEY, token.trim());
    // Out of the address bar and the history at once.
    history.replaceState(null, "", location.pathname + location.search);
  }
}

function showLogin(message) {
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  clearTimeout(state.timer);
  $("main").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message ?? "";
  $("token-input").focus();
  setStatus("Not signed in", "idle");
}

function start() {
  state.token = sessionStorage.getItem(TOKEN_KEY);
  if (!state.token) {
    showLogin();
    return;
  }
  $("login").hidden = true;
  $("main").hidden = false;
  $("logout").hidden = false;
  poll();
}

// ---- the API -------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
  });
  const text = await res.text();
  let doc = null;
  try {
    doc = text ? JSON.parse(text) : null;
  } catch {
    doc = null;
  }
  if (!res.ok) {
    throw new ApiError(res.status, doc?.code ?? "http", doc?.message ?? `HTTP ${res.status}`);
  }
  return doc;
}

// A route the daemon may not have (an older daemon: history, settings): null.
async function fetchOptional(path) {
  try {
    return await api("GET", path);
  } catch (e) {
    if (e.status === 404 || e.status === 501 || e.status === 503) return null;
    throw e;
  }
}

function setStatus(text, kind) {
  const el = $("status");
  el.textContent = text;
  el.dataset.kind = kind;
}

// ---- polling -------------------------------------------------------------

async function poll() {
  clearTimeout(state.timer);
  try {
    const [cluster, plansDoc] = await Promise.all([
      api("GET", "/api/v1/cluster").catch((e) => {
        if (e.code === "not_ready") return null;
        throw e;
      }),
      api("GET", "/api/v1/plans?limit=50"),
    ]);
    state.plansDoc = plansDoc;
    if (cluster) {
      state.cluster = cluster;
      remember(cluster);
      drawCluster();
    }
    drawPlans();
    await drawSettings();
    await drawHistory();
    const seen = cluster ? new Date(cluster.observed_unix_ms).toLocaleTimeString() : "not yet";
    setStatus(`Connected · observed ${seen} · refreshing every ${POLL_MS / 1000} s`, "ok");
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      showLogin(`The daemon refused the token (${e.message}).`);
      return;
    }
    setStatus(`Cannot reach the daemon: ${e.message}; retrying`, "error");
  }
  if (state.token) state.timer = setTimeout(poll, document.hidden ? POLL_MS * 5 : POLL_MS);
}

function remember(cluster) {
  if (cluster.observed_unix_ms === state.lastObserved) return;
  state.lastObserved = cluster.observed_unix_ms;
  const t = cluster.observed_unix_ms;
  push(state.localImbalance, { t, v: cluster.imbalance.std_dev });
  for (const vm of cluster.vms) {
    if (!state.localVm.has(vm.name)) state.localVm.set(vm.name, []);
    push(state.localVm.get(vm.name), { t, demand: vm.demand });
  }
  for (const host of cluster.hosts) {
    if (!state.localHost.has(host.name)) state.localHost.set(host.name, []);
    push(state.localHost.get(host.name), { t, load: host.load });
  }
}

function push(list, item) {
  list.push(item);
  if (list.length > LOCAL_POINTS) list.splice(0, list.length - LOCAL_POINTS);
}

// ---- drawing -------------------------------------------------------------

function drawCluster() {
  const c = state.cluster;
  renderSummary($("summary"), c, state.plansDoc, state.settings?.automation);
  renderHeatmap($("heatmap"), c, { onMaintenance: maintenance, onHost: (name) => pick(`host:${name}`) });
  const byName = (a, b) => a.localeCompare(b, undefined, { numeric: true });
  const hosts = c.hosts.map((x) => `host:${x.name}`).sort(byName);
  const vms = c.vms.map((v) => `vm:${v.name}`).sort(byName);
  const key = `${hosts.join("\n")}|${vms.join("\n")}`;
  if (key !== state.subjectNames) {
    state.subjectNames = key;
    const option = (value) => h("option", { value }, value.slice(value.indexOf(":") + 1));
    $("subject-select").replaceChildren(
      h("optgroup", { label: "Hosts" }, hosts.map(option)),
      h("optgroup", { label: "VMs" }, vms.map(option)));
    if (!state.subject || !(hosts.includes(state.subject) || vms.includes(state.subject))) {
      state.subject = `vm:${defaultVm(vms.map((v) => v.slice(3)))}`;
    }
    $("subject-select").value = state.subject;
  }
}

function pick(subject) {
  state.subject = subject;
  sessionStorage.setItem(SUBJECT_KEY, subject);
  $("subject-select").value = subject;
  drawSubject().catch((e) => announce(e.message, true));
}

// The first VM the newest plan moves, else the busiest VM.
function defaultVm(names) {
  const plans = state.plansDoc?.plans ?? [];
  const moved = plans.length ? plans[plans.length - 1].moves[0]?.vm : undefined;
  if (moved && names.includes(moved)) return moved;
  const vms = state.cluster.vms.slice().sort((a, b) => b.demand.cpu_cores - a.demand.cpu_cores);
  return vms[0]?.name ?? names[0];
}

function drawPlans() {
  const doc = state.plansDoc;
  const plans = doc.plans;
  const signature = plans.map((p) => `${p.id}:${p.state}:${p.updated_unix_ms}`).join(",") +
    `|${[...state.busy].join(",")}`;
  for (const id of state.watching) {
    const p = plans.find((x) => x.id === id);
    if (!p || p.state === "applying" || p.state === "recommended") continue;
    state.watching.delete(id);
    const failed = p.outcomes.filter((o) => o.error).length;
    announce(`Plan ${id} ${p.state}: ${p.outcomes.length - failed} of ${p.moves.length} migrations succeeded.`,
      p.state !== "done");
  }
  if (signature === state.plansSignature) return;
  state.plansSignature = signature;
  renderPlans($("plans"), plans, { open: state.openPlans, act, busy: state.busy });
  renderMigrations($("migrations-body"), plans);
  if (state.cluster) renderSummary($("summary"), state.cluster, doc, state.settings?.automation);
}

async function drawHistory() {
  const since = Date.now() - 3600_000;
  const remote = await fetchOptional(`/api/v1/imbalance?since_ms=${since}&limit=1000`);
  let points;
  if (remote && remote.points.length > 0) {
    points = remote.points.map((p) => ({
      t: p.t_ms,
      v: typeof p.imbalance === "number" ? p.imbalance : p.imbalance.std_dev,
    }));
    $("imbalance-note").textContent = "The last hour, as the daemon recorded it.";
  } else {
    points = state.localImbalance;
    $("imbalance-note").textContent = remote
      ? "No history recorded yet: showing what this page saw since it opened."
      : "The daemon keeps no history (no history route): showing what this page saw since it opened.";
  }
  const markers = (state.plansDoc?.plans ?? [])
    .filter((p) => p.state === "done" || p.state === "failed")
    .map((p) => ({ t: p.updated_unix_ms, label: `#${p.id}` }));
  linePlot($("imbalance-plot"), {
    title: "Cluster imbalance (std-dev of host loads) over time",
    series: [{ label: "imbalance", className: "s-imbalance", points }],
    yFormat: (v) => v.toFixed(3),
    markers,
    empty: "no history yet",
  });
  await drawSubject();
}

async function drawSubject() {
  if (!state.subject || !state.cluster) return;
  const name = state.subject.slice(state.subject.indexOf(":") + 1);
  if (state.subject.startsWith("host:")) await drawHost(name);
  else await drawVm(name);
}

// Four small plots, one per resource, in the history panel.
function smallPlots() {
  const plots = $("history-plots");
  if (plots.children.length !== RESOURCES.length) {
    plots.replaceChildren(...RESOURCES.map(() => h("figure", {}, h("figcaption"), svgEl("svg"))));
  }
  return [...plots.children];
}

const HOST_FIELDS = {
  cpu_cores: "cpu_load",
  memory_bytes: "memory_load",
  disk_bytes_per_second: "disk_load",
  network_bytes_per_second: "network_load",
};

async function drawHost(name) {
  const host = state.cluster.hosts.find((x) => x.name === name);
  const remote = await fetchOptional(
    `/api/v1/hosts/${encodeURIComponent(name)}/samples?since_ms=${Date.now() - 3600_000}&limit=720`,
  );
  let samples;
  if (remote && remote.samples.length > 0) {
    samples = remote.samples.map((s) => ({
      t: s.t_ms,
      load: Object.fromEntries(RESOURCES.map((r) => [r.key, s[HOST_FIELDS[r.key]]])),
    }));
    $("history-note").textContent = `Loads of ${name} (demand over capacity), the last hour.`;
  } else {
    samples = state.localHost.get(name) ?? [];
    $("history-note").textContent =
      `No recorded samples for ${name}: its loads since this page opened.`;
  }
  smallPlots().forEach((fig, i) => {
    const r = RESOURCES[i];
    const measured = host ? host.capacity[r.key] > 0 : true;
    fig.querySelector("figcaption").textContent = `${r.name} load (%)`;
    linePlot(fig.querySelector("svg"), {
      title: `${name}: ${r.name} load`,
      series: [{
        label: r.name, className: `s-${r.key}`,
        points: measured ? samples.map((s) => ({ t: s.t, v: Math.max(s.load[r.key] ?? 0, 0) })) : [],
      }],
      yFormat: (v) => `${Math.round(v * 100)}`,
      ceiling: { v: 1, label: "capacity" },
      width: 320,
      height: 130,
      empty: measured ? "no samples yet" : "not measured on this host",
    });
  });
}

async function drawVm(name) {
  const vm = state.cluster.vms.find((v) => v.name === name);
  const remote = await fetchOptional(
    `/api/v1/vms/${encodeURIComponent(name)}/samples?since_ms=${Date.now() - 3600_000}&limit=720`,
  );
  let samples;
  if (remote && remote.samples.length > 0) {
    samples = remote.samples.map((s) => ({ t: s.t_ms, demand: s }));
    $("history-note").textContent = `Usage of ${name} (on ${remote.host ?? vm?.host}), the last hour.`;
  } else {
    samples = state.localVm.get(name) ?? [];
    $("history-note").textContent =
      `No recorded samples for ${name}: its estimated demand since this page opened. On ${vm?.host ?? "?"}.`;
  }
  smallPlots().forEach((fig, i) => {
    const r = RESOURCES[i];
    const size = vm?.size?.[r.key];
    fig.querySelector("figcaption").textContent = `${r.name} (${r.unit})`;
    linePlot(fig.querySelector("svg"), {
      title: `${name}: ${r.name} usage in ${r.unit}`,
      series: [{
        label: r.name, className: `s-${r.key}`,
        points: samples.map((s) => ({ t: s.t, v: (s.demand[r.key] ?? 0) / r.scale })),
      }],
      yFormat: (v) => v.toFixed(r.digits),
      ceiling: size > 0 ? { v: size / r.scale, label: `size ${(size / r.scale).toFixed(r.digits)}` } : undefined,
      width: 320,
      height: 130,
      empty: "no samples yet",
    });
  });
}

// The run-time settings (automation, threshold level), where the daemon
// has the route; a control being used is left alone.
async function drawSettings() {
  const settings = await fetchOptional("/api/v1/settings");
  $("settings").hidden = !settings;
  if (!settings) return;
  if (state.settings?.automation !== settings.automation && state.cluster) {
    state.settings = settings;
    renderSummary($("summary"), state.cluster, state.plansDoc, settings.automation);
  }
  state.settings = settings;
  for (const [id, value] of [["automation-select", settings.automation], ["level-select", settings.level]]) {
    const select = $(id);
    if (document.activeElement !== select) select.value = String(value);
  }
}

async function changeSetting(change) {
  try {
    const now = await api("PATCH", "/api/v1/settings", change);
    announce(`Settings: automation ${now.automation}, migration threshold ${now.level}; the next round uses them.`);
  } catch (e) {
    announce(`Settings refused: ${e.message}`, true);
  }
  poll();
}

// ---- actions -------------------------------------------------------------

async function act(id, verb) {
  state.busy.add(id);
  drawPlans();
  try {
    await api("POST", `/api/v1/plans/${id}/${verb}`, { by: "dashboard" });
    if (verb === "apply") state.watching.add(id);
    announce(verb === "apply" ? `Plan ${id}: applying.` : `Plan ${id} rejected.`);
  } catch (e) {
    announce(`Plan ${id}: ${verb} refused: ${e.message}`, true);
  } finally {
    state.busy.delete(id);
  }
  poll();
}

async function maintenance(host, enter) {
  if (enter && !confirm(`Put ${host} into maintenance? Its VMs are moved off at once.`)) return;
  try {
    const res = await api(enter ? "POST" : "DELETE", `/api/v1/hosts/${encodeURIComponent(host)}/maintenance`,
      enter ? { by: "dashboard" } : undefined);
    if (res?.evacuation_plan) state.watching.add(res.evacuation_plan);
    announce(enter
      ? `${host} entered maintenance${res.evacuation_plan ? `: evacuation plan ${res.evacuation_plan}` : ""}.`
      : `${host} left maintenance.`);
  } catch (e) {
    announce(`${host}: ${e.message}`, true);
  }
  poll();
}

function announce(text, bad = false) {
  const el = $("announce");
  el.textContent = text;
  el.classList.toggle("bad", bad);
}

// ---- wiring --------------------------------------------------------------

// Errors of the page itself, and anything the Content-Security-Policy
// blocked, are shown and counted on <body data-errors> (the browser test
// checks there are none).
let pageErrors = 0;
function pageError(message) {
  pageErrors += 1;
  document.body.dataset.errors = String(pageErrors);
  announce(`Page error: ${message}`, true);
}
window.addEventListener("error", (ev) => pageError(ev.message));
window.addEventListener("unhandledrejection", (ev) => pageError(String(ev.reason)));
document.addEventListener("securitypolicyviolation", (ev) =>
  pageError(`blocked by the page's security policy: ${ev.violatedDirective} ${ev.blockedURI}`));

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const token = $("token-input").value.trim();
  $("token-input").value = "";
  sessionStorage.setItem(TOKEN_KEY, token);
  start();
});
$("logout").addEventListener("click", () => showLogin("Token forgotten."));
$("subject-select").addEventListener("change", (ev) => pick(ev.target.value));
$("automation-select").addEventListener("change", (ev) => changeSetting({ automation: ev.target.value }));
$("level-select").addEventListener("change", (ev) => changeSetting({ level: Number(ev.target.value) }));
window.addEventListener("hashchange", () => {
  takeTokenFromFragment();
  start();
});
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && state.token) poll();
});
legend($("heat-legend"));
takeTokenFromFragment();
start();
