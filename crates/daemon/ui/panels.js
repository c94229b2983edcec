// The dashboard's panels as DOM, built with createElement only (names come
// from drivers: never parsed as HTML).

import { clockTime, loadColor } from "./plot.js";

/** An element with attributes (`class`, `data-*`, aria-*) and children. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const RESOURCES = [
  { key: "cpu_cores", name: "CPU", unit: "cores", scale: 1, digits: 1 },
  { key: "memory_bytes", name: "Memory", unit: "GiB", scale: 2 ** 30, digits: 0 },
  { key: "disk_bytes_per_second", name: "Disk", unit: "MB/s", scale: 1e6, digits: 1 },
  { key: "network_bytes_per_second", name: "Network", unit: "MB/s", scale: 1e6, digits: 1 },
];

/** A host is hot when any of its loads reaches this. */
export const HOT_LOAD = 0.85;

export const pct = (x) => `${Math.round(x * 100)} %`;
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
const amount = (r, x) => `${(x / r.scale).toFixed(r.digits)} ${r.unit}`;

/**
 * Summary tiles: imbalance, hosts, VMs, automation, plans waiting.
 * `automation` is the setting now (the cluster view's lags a round).
 */
export function renderSummary(root, cluster, plansDoc, automation = cluster.automation) {
  const hosts = cluster.hosts;
  const hot = hosts.filter((x) => maxLoad(x) >= HOT_LOAD).length;
  const maint = hosts.filter((x) => x.maintenance).length;
  const waiting = plansDoc ? plansDoc.plans.filter((p) => p.state === "recommended").length : 0;
  let ok = 0;
  let failed = 0;
  for (const p of plansDoc?.plans ?? []) {
    for (const o of p.outcomes) o.error ? failed++ : ok++;
  }
  const tile = (label, value, detail, cls) =>
    h("div", { class: `tile ${cls ?? ""}` },
      h("span", { class: "tile-label" }, label),
      h("span", { class: "tile-value" }, value),
      h("span", { class: "tile-detail" }, detail));
  root.replaceChildren(
    tile("Imbalance", cluster.imbalance.std_dev.toFixed(3),
      `std-dev of host loads; normalised ${cluster.imbalance.normalized.toFixed(3)}`),
    tile("Hosts", String(hosts.length),
      `${hot} hot, ${maint} in maintenance`, hot ? "warn" : ""),
    tile("VMs", String(cluster.vms.length), `driver ${cluster.driver}`),
    tile("Automation", automation,
      automation === "full" ? "plans run at once" : "plans wait for an operator"),
    tile("Plans waiting", String(waiting), "recommended, to apply or reject", waiting ? "attn" : ""),
    tile("Migrations", String(ok), failed ? `${failed} failed` : "none failed", failed ? "warn" : ""),
  );
}

export function maxLoad(host) {
  return Math.max(...RESOURCES.map((r) => (host.capacity[r.key] > 0 ? host.load[r.key] : 0)));
}

/**
 * The heat map: a table, hosts x resources, each cell coloured by its load
 * and showing it. `onMaintenance(host, enter)` is called by the buttons,
 * `onHost(host)` by a click on a host's name (shows its history).
 */
export function renderHeatmap(table, cluster, { onMaintenance, onHost }) {
  const head = h("tr", {},
    h("th", { scope: "col" }, "Host"),
    RESOURCES.map((r) => h("th", { scope: "col" }, r.name)),
    h("th", { scope: "col" }, "VMs"),
    h("th", { scope: "col" }, "State"),
    h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Maintenance")));
  const rows = cluster.hosts.map((host) => {
    const peak = maxLoad(host);
    const hot = peak >= HOT_LOAD;
    const cells = RESOURCES.map((r) => {
      const cap = host.capacity[r.key];
      const load = host.load[r.key];
      if (!(cap > 0)) {
        return h("td", { class: "heat na", title: `${host.name} ${r.name}: not measured` }, "n/a");
      }
      const color = loadColor(load);
      const td = h("td", {
        class: `heat${color.light ? " light" : ""}${load > 1 ? " over" : ""}`,
        "data-load": load.toFixed(4),
        title: `${host.name} ${r.name}: ${pct(load)} (${amount(r, host.demand[r.key])} of ${amount(r, cap)})`,
      }, pct(load));
      td.style.backgroundColor = color.css;
      return td;
    });
    let state = "in service";
    if (host.safe_to_service) state = "safe to service";
    else if (host.maintenance) state = "evacuating";
    const button = h("button", {
      type: "button",
      class: "small",
      onclick: () => onMaintenance(host.name, !host.maintenance),
      "aria-label": `${host.maintenance ? "Leave" : "Enter"} maintenance: ${host.name}`,
    }, host.maintenance ? "Leave maintenance" : "Maintenance");
    return h("tr", { class: hot ? "hot" : "", "data-host": host.name },
      h("th", { scope: "row" },
        h("button", { type: "button", class: "link", onclick: () => onHost(host.name),
          title: `Show the load history of ${host.name}` }, host.name),
        hot ? h("span", { class: "badge hot", title: `a load at or above ${pct(HOT_LOAD)}` }, "hot") : null),
      cells,
      h("td", { class: "num" }, String(host.vm_count)),
      h("td", { class: `host-state ${host.maintenance ? "maint" : ""}` }, state),
      h("td", {}, button));
  });
  const imb = cluster.imbalance;
  const foot = [
    h("tr", {},
      h("th", { scope: "row" }, "mean load (L)"),
      RESOURCES.map((r) => h("td", { class: "num" }, pct(imb.mean_load[r.key]))),
      h("td", { colspan: 3 })),
    h("tr", {},
      h("th", { scope: "row" }, "std-dev"),
      RESOURCES.map((r) => h("td", { class: "num" }, pct(imb.per_resource_std_dev[r.key]))),
      h("td", { colspan: 3 })),
    h("tr", {},
      h("th", { scope: "row" }, "demand (R)"),
      RESOURCES.map((r) => h("td", { class: "num" }, amount(r, imb.total_demand[r.key]))),
      h("td", { colspan: 3 })),
  ];
  table.replaceChildren(
    h("caption", { class: "visually-hidden" },
      "Load of each host per resource: estimated demand over capacity, in percent"),
    h("thead", {}, head),
    h("tbody", {}, rows),
    h("tfoot", {}, foot));
}

function reasonText(reason) {
  if (!reason) return "";
  const kind = reason.kind.replace("_", " ");
  return reason.rule ? `${kind}: ${reason.rule}` : kind;
}

function outcomeText(outcome) {
  if (!outcome) return "pending";
  if (outcome.error) return `failed: ${outcome.error}`;
  return `ok in ${outcome.seconds?.toFixed(1) ?? "?"} s`;
}

// Two bars, before and after, on the scale of the larger.
function imbalanceBars(before, after) {
  const top = Math.max(before, after, 1e-9);
  const bar = (cls, label, v) => {
    const fill = h("span", { class: `bar-fill ${cls}` });
    fill.style.width = `${(v / top) * 100}%`;
    return h("span", { class: "bar-row" },
      h("span", { class: "bar-label" }, label),
      h("span", { class: "bar-track" }, fill),
      h("span", { class: "bar-value" }, v.toFixed(3)));
  };
  return h("div", { class: "bars", role: "img",
    "aria-label": `imbalance before ${before.toFixed(3)}, after ${after.toFixed(3)}` },
  bar("before", "before", before), bar("after", "after", after));
}

/**
 * The plans, newest first (at most `limit`). `open` is the set of plan ids
 * whose details are expanded (kept across refreshes); `act(id, verb)` is
 * called by the Apply and Reject buttons.
 */
export function renderPlans(root, plans, { open, act, busy, limit = 20 }) {
  const shown = plans.slice(-limit).reverse();
  if (shown.length === 0) {
    root.replaceChildren(h("p", { class: "empty" },
      "No plan yet: the loop records one when moving VMs would pay."));
    return;
  }
  const cards = shown.map((p) => {
    const outcomes = new Map(p.outcomes.map((o) => [o.vm, o]));
    const before = p.imbalance_before.std_dev;
    const after = p.imbalance_after.std_dev;
    const last = p.history[p.history.length - 1];
    const buttons = p.state === "recommended"
      ? h("span", { class: "actions" },
        h("button", { type: "button", class: "apply", "data-plan": p.id,
          disabled: busy.has(p.id), onclick: () => act(p.id, "apply") }, "Apply"),
        h("button", { type: "button", class: "reject secondary", "data-plan": p.id,
          disabled: busy.has(p.id), onclick: () => act(p.id, "reject") }, "Reject"))
      : null;
    const details = h("details", { open: open.has(p.id) },
      h("summary", {}, `${plural(p.moves.length, "move")} and the rules in force`),
      h("table", { class: "moves" },
        h("thead", {}, h("tr", {},
          ["Wave", "VM", "From → to", "Reason", "Benefit", "Cost", "Result"].map((t) =>
            h("th", { scope: "col" }, t)))),
        h("tbody", {}, p.moves.map((m) => h("tr", {},
          h("td", { class: "num" }, String(m.wave)),
          h("td", {}, m.vm),
          h("td", {}, `${m.from} → ${m.to}`),
          h("td", {}, reasonText(m.reason)),
          h("td", { class: "num", title: "imbalance reduction" }, m.imbalance_reduction.toFixed(4)),
          h("td", { class: "num", title: `${(m.migrated_bytes / 2 ** 30).toFixed(1)} GiB copied` },
            `${m.cost_seconds.toFixed(1)} s`),
          h("td", { class: outcomes.get(m.vm)?.error ? "bad" : "" },
            p.state === "recommended" || p.state === "rejected" ? "—" : outcomeText(outcomes.get(m.vm))))))),
      p.unresolved.length
        ? h("p", { class: "bad" }, `Cannot move: ${p.unresolved.map((u) => `${u.vm} (${u.reason})`).join("; ")}`)
        : null,
      h("p", { class: "rules" }, `Rules: ${p.rules.join("; ") || "none"}`));
    details.addEventListener("toggle", () => {
      if (details.open) open.add(p.id);
      else open.delete(p.id);
    });
    return h("article", {
      class: `plan state-${p.state}`, "data-plan-id": p.id, "data-state": p.state,
      "aria-labelledby": `plan-${p.id}-title`,
    },
    h("header", {},
      h("h3", { id: `plan-${p.id}-title` }, `Plan ${p.id}`),
      h("span", { class: `badge state ${p.state}`, "data-role": "state" }, p.state),
      h("span", { class: "trigger" }, p.trigger),
      h("time", { datetime: new Date(p.created_unix_ms).toISOString() }, clockTime(p.created_unix_ms)),
      buttons),
    h("div", { class: "plan-body" },
      imbalanceBars(before, after),
      h("dl", { class: "facts" },
        h("dt", {}, "moves"), h("dd", {}, String(p.moves.length)),
        h("dt", {}, "benefit"), h("dd", { title: "predicted imbalance reduction" }, p.benefit.toFixed(3)),
        h("dt", {}, "cost"), h("dd", { title: "summed migration time estimates" }, `${p.cost_seconds.toFixed(1)} s`),
        h("dt", {}, "planned in"), h("dd", {}, `${(p.plan_seconds * 1000).toFixed(1)} ms`))),
    last ? h("p", { class: "note" }, `${clockTime(last.at_unix_ms)} ${last.state}: ${last.note}`) : null,
    details);
  });
  const more = plans.length > limit
    ? h("p", { class: "empty" }, `Showing the newest ${limit} of ${plans.length} plans.`)
    : null;
  root.replaceChildren(...cards, more ?? "");
}

/** The latest migrations across plans, newest first. */
export function renderMigrations(tbody, plans, limit = 15) {
  const rows = [];
  for (const p of plans.slice().reverse()) {
    const reasons = new Map(p.moves.map((m) => [m.vm, m.reason]));
    for (const o of p.outcomes.slice().reverse()) {
      rows.push(h("tr", { class: o.error ? "bad" : "", "data-result": o.error ? "failed" : "ok" },
        h("td", {}, clockTime(p.updated_unix_ms)),
        h("td", { class: "num" }, String(p.id)),
        h("td", {}, o.vm),
        h("td", {}, `${o.from} → ${o.to}`),
        h("td", {}, reasonText(reasons.get(o.vm))),
        h("td", {}, o.error ? `failed: ${o.error}` : "ok"),
        h("td", { class: "num" }, o.seconds == null ? "—" : `${o.seconds.toFixed(1)} s`)));
      if (rows.length >= limit) break;
    }
    if (rows.length >= limit) break;
  }
  if (rows.length === 0) {
    rows.push(h("tr", {}, h("td", { colspan: 7, class: "empty" }, "No migration yet.")));
  }
  tbody.replaceChildren(...rows);
}
