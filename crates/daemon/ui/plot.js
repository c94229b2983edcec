// Plots as inline SVG, drawn from scratch (no library): time-series line
// plots with axes, markers and a hover read-out, and the heat map's colours.

const SVG_NS = "http://www.w3.org/2000/svg";

// The drawing's default width in its own units; the SVG scales to its box,
// so a plot shown small gets a smaller width to keep its text legible.
const WIDTH = 640;
const MARGIN = { left: 58, right: 14, top: 14, bottom: 26 };

/** An SVG element with attributes. */
export function svgEl(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

/** About `count` round tick values covering [lo, hi]. */
export function niceTicks(lo, hi, count) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  // No 2.5 steps: their labels would need a digit more than the data's.
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  return ticks;
}

const TIME_STEPS_SECONDS = [
  1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
  43200, 86400,
];

/** Tick times (ms) between t0 and t1, at most about `count` of them. */
export function timeTicks(t0, t1, count) {
  const span = (t1 - t0) / 1000;
  const step =
    (TIME_STEPS_SECONDS.find((s) => span / s <= count) ?? 86400) * 1000;
  const ticks = [];
  for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) ticks.push(t);
  return { ticks, stepMs: step };
}

/** Local clock time of a Unix-epoch millisecond. */
export function clockTime(tMs, withSeconds = true) {
  const d = new Date(tMs);
  const two = (n) => String(n).padStart(2, "0");
  const hm = `${two(d.getHours())}:${two(d.getMinutes())}`;
  return withSeconds ? `${hm}:${two(d.getSeconds())}` : hm;
}

/**
 * Draws a time-series plot into `svg` (its children are replaced).
 * opts: {
 *   title: accessible name,
 *   series: [{label, className, points: [{t, v}]}] (t in ms),
 *   yFormat: value -> short text,
 *   width, height: drawing size in text-sized units (default 640 x 200),
 *   markers: [{t, label}] vertical lines (plans applied...),
 *   ceiling: {v, label} a dashed reference line (a VM's size...),
 *   empty: text shown when there is no point,
 * }
 */
export function linePlot(svg, opts) {
  const width = opts.width ?? WIDTH;
  const height = opts.height ?? 200;
  const fmt = opts.yFormat ?? ((v) => v.toFixed(2));
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.classList.add("plot");
  const series = opts.series.filter((s) => s.points.length > 0);
  const all = series.flatMap((s) => s.points);
  // The latest value, for tests and scripts (the title says it in words).
  const first = series[0]?.points;
  if (first) svg.dataset.latest = String(first[first.length - 1].v);
  else delete svg.dataset.latest;
  const title = svgEl("title", {}, describe(opts.title, series, fmt));
  svg.append(title);
  svg.setAttribute("aria-label", title.textContent);
  if (all.length === 0) {
    svg.append(
      svgEl(
        "text",
        { x: width / 2, y: height / 2, class: "plot-empty", "text-anchor": "middle" },
        opts.empty ?? "no data yet",
      ),
    );
    return;
  }
  let t0 = Math.min(...all.map((p) => p.t));
  let t1 = Math.max(...all.map((p) => p.t));
  if (t1 - t0 < 10_000) {
    // One point or a few: show a minute around them.
    t0 -= 30_000;
    t1 += 30_000;
  }
  let yMax = Math.max(...all.map((p) => p.v), opts.ceiling?.v ?? 0);
  yMax = yMax > 0 ? yMax * 1.1 : 1;
  const x0 = MARGIN.left;
  const x1 = width - MARGIN.right;
  const y0 = height - MARGIN.bottom;
  const y1 = MARGIN.top;
  const sx = (t) => x0 + ((t - t0) / (t1 - t0)) * (x1 - x0);
  const sy = (v) => y0 - (v / yMax) * (y0 - y1);

  const grid = svgEl("g", { class: "plot-grid", "aria-hidden": "true" });
  for (const v of niceTicks(0, yMax, 4)) {
    grid.append(svgEl("line", { x1: x0, x2: x1, y1: sy(v), y2: sy(v) }));
    grid.append(
      svgEl("text", { x: x0 - 6, y: sy(v) + 4, "text-anchor": "end" }, fmt(v)),
    );
  }
  const { ticks, stepMs } = timeTicks(t0, t1, Math.max(3, Math.round(width / 110)));
  for (const t of ticks) {
    const x = sx(t);
    // Labels near an edge grow inwards rather than being cut.
    let anchor = "middle";
    if (x > x1 - 24) anchor = "end";
    else if (x < x0 + 24) anchor = "start";
    grid.append(svgEl("line", { x1: x, x2: x, y1: y0, y2: y0 + 4 }));
    grid.append(
      svgEl("text", { x, y: height - 6, "text-anchor": anchor }, clockTime(t, stepMs < 60_000)),
    );
  }
  grid.append(svgEl("line", { class: "axis", x1: x0, x2: x1, y1: y0, y2: y0 }));
  svg.append(grid);

  if (opts.ceiling) {
    const y = sy(opts.ceiling.v);
    svg.append(svgEl("line", { class: "plot-ceiling", x1: x0, x2: x1, y1: y, y2: y }));
    svg.append(
      svgEl("text", { class: "plot-ceiling-label", x: x1 - 4, y: y - 4, "text-anchor": "end" },
        opts.ceiling.label),
    );
  }
  for (const m of opts.markers ?? []) {
    if (m.t < t0 || m.t > t1) continue;
    const x = sx(m.t);
    const g = svgEl("g", { class: "plot-marker" });
    g.append(svgEl("line", { x1: x, x2: x, y1: y1, y2: y0 }));
    g.append(svgEl("text", { x: x + 3, y: y1 + 9 }, m.label));
    g.append(svgEl("title", {}, `${m.label} at ${clockTime(m.t)}`));
    svg.append(g);
  }
  for (const s of series) {
    const d = s.points
      .map((p, i) => `${i ? "L" : "M"}${sx(p.t).toFixed(1)},${sy(p.v).toFixed(1)}`)
      .join("");
    svg.append(svgEl("path", { class: `plot-line ${s.className ?? ""}`, d }));
    const last = s.points[s.points.length - 1];
    svg.append(
      svgEl("circle", { class: `plot-dot ${s.className ?? ""}`, cx: sx(last.t), cy: sy(last.v), r: 3 }),
    );
  }
  addReadout(svg, series, { sx, x0, x1, y0, y1, fmt, width });
}

// A vertical rule and the nearest value under the pointer.
function addReadout(svg, series, g) {
  const rule = svgEl("line", { class: "plot-readout", y1: g.y1, y2: g.y0, visibility: "hidden" });
  const label = svgEl("text", { class: "plot-readout-text", y: g.y1 + 22, visibility: "hidden" });
  const hit = svgEl("rect", {
    x: g.x0, y: g.y1, width: g.x1 - g.x0, height: g.y0 - g.y1, class: "plot-hit",
  });
  svg.append(rule, label, hit);
  const points = series[0].points;
  hit.addEventListener("pointermove", (ev) => {
    const box = svg.getBoundingClientRect();
    const x = ((ev.clientX - box.left) / box.width) * g.width;
    let best = points[0];
    for (const p of points) if (Math.abs(g.sx(p.t) - x) < Math.abs(g.sx(best.t) - x)) best = p;
    const px = g.sx(best.t);
    rule.setAttribute("x1", px);
    rule.setAttribute("x2", px);
    const right = px > (g.x0 + g.x1) / 2;
    label.setAttribute("x", right ? px - 6 : px + 6);
    label.setAttribute("text-anchor", right ? "end" : "start");
    label.textContent = `${clockTime(best.t)}  ${g.fmt(best.v)}`;
    rule.setAttribute("visibility", "visible");
    label.setAttribute("visibility", "visible");
  });
  hit.addEventListener("pointerleave", () => {
    rule.setAttribute("visibility", "hidden");
    label.setAttribute("visibility", "hidden");
  });
}

function describe(title, series, fmt) {
  const parts = series.map((s) => {
    const vs = s.points.map((p) => p.v);
    const last = vs[vs.length - 1];
    return `${s.label}: ${vs.length} points from ${clockTime(s.points[0].t)} to ${clockTime(
      s.points[s.points.length - 1].t,
    )}, latest ${fmt(last)}, min ${fmt(Math.min(...vs))}, max ${fmt(Math.max(...vs))}`;
  });
  return parts.length ? `${title}. ${parts.join("; ")}` : `${title}: no data yet`;
}

// Heat-map colour stops, light yellow (idle) to dark red (full), a
// sequential scale readable by most colour-blind people; overload beyond.
const STOPS = [
  [0.0, [255, 255, 204]],
  [0.25, [254, 217, 118]],
  [0.5, [253, 141, 60]],
  [0.75, [227, 26, 28]],
  [1.0, [128, 0, 38]],
];

/** Background colour of a load in 0..1 (clamped), and whether text on it should be light. */
export function loadColor(load) {
  const x = Math.min(Math.max(load, 0), 1);
  let i = 1;
  while (i < STOPS.length - 1 && x > STOPS[i][0]) i++;
  const [a, ca] = STOPS[i - 1];
  const [b, cb] = STOPS[i];
  const f = (x - a) / (b - a);
  const c = ca.map((v, k) => Math.round(v + (cb[k] - v) * f));
  return { css: `rgb(${c[0]}, ${c[1]}, ${c[2]})`, light: x > 0.6 };
}

/** The legend's gradient stops, for a CSS-free SVG legend. */
export function legend(svg) {
  svg.replaceChildren();
  svg.setAttribute("viewBox", "0 0 250 30");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "Colour scale: light yellow is an idle resource, dark red a full one");
  const grad = svgEl("linearGradient", { id: "load-gradient" });
  for (const [at, c] of STOPS) {
    grad.append(svgEl("stop", { offset: at, "stop-color": `rgb(${c.join(",")})` }));
  }
  const defs = svgEl("defs");
  defs.append(grad);
  svg.append(defs);
  svg.append(svgEl("rect", { x: 15, y: 2, width: 220, height: 12, fill: "url(#load-gradient)", class: "legend-bar" }));
  for (const [at, text] of [[0, "0 %"], [0.5, "50 %"], [1, "100 %"]]) {
    svg.append(svgEl("text", { x: 15 + at * 220, y: 27, "text-anchor": "middle" }, text));
  }
}
