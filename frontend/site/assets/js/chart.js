// Training-curve chart drawn as inline SVG (no chart library, no CDN): per-iteration RMSE
// series from the model manifest's `history`. Colours come from CSS classes, so the chart
// follows dark mode and the strict CSP (no inline styles) holds.

import { h, s } from "./dom.js";

const PAD = { l: 66, r: 16, t: 16, b: 40 };

function niceTicks(min, max, count = 5) {
  if (!(max > min)) return [min];
  const raw = (max - min) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw) || raw;
  const ticks = [];
  for (let v = Math.ceil(min / step) * step; v <= max + 1e-12; v += step) ticks.push(Number(v.toFixed(10)));
  return ticks;
}

/**
 * series: [{key, label, cls, points: [[x, y], ...]}]
 */
export function lineChart({ title, series, xLabel = "Iteration", yLabel = "RMSE" }) {
  // A narrower drawing on phones keeps the tick labels legible instead of scaling them down.
  const narrow = window.innerWidth < 640;
  const W = narrow ? 380 : 640;
  const H = narrow ? 240 : 260;
  const all = series.flatMap((se) => se.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  if (!all.length) return null;
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const xMin = Math.min(...xs);
  const xMax = Math.max(...xs) === xMin ? xMin + 1 : Math.max(...xs);
  let yMin = Math.min(...ys);
  let yMax = Math.max(...ys);
  const span = yMax - yMin || Math.abs(yMax) * 0.1 || 1;
  yMin -= span * 0.08;
  yMax += span * 0.08;
  const sx = (x) => PAD.l + ((x - xMin) / (xMax - xMin)) * (W - PAD.l - PAD.r);
  const sy = (y) => H - PAD.b - ((y - yMin) / (yMax - yMin)) * (H - PAD.t - PAD.b);

  const grid = niceTicks(yMin, yMax).map((v) =>
    s(
      "g",
      null,
      s("line", { x1: PAD.l, x2: W - PAD.r, y1: sy(v), y2: sy(v), class: "chart-grid" }),
      s("text", { x: PAD.l - 8, y: sy(v) + 4, "text-anchor": "end", class: "chart-tick" }, v.toFixed(3)),
    ),
  );
  const xt = niceTicks(xMin, xMax, Math.min(narrow ? 5 : 10, xMax - xMin)).filter((v) => Number.isInteger(v));
  const xticks = xt.map((v) =>
    s("text", { x: sx(v), y: H - PAD.b + 18, "text-anchor": "middle", class: "chart-tick" }, String(v)),
  );
  const lines = series
    .filter((se) => se.points.length)
    .map((se) => {
      const pts = se.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
      const d = pts.map(([x, y], i) => `${i ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ");
      return s(
        "g",
        { class: se.cls, "data-series": se.key },
        s("path", { d, fill: "none", class: "chart-line" }),
        pts.map(([x, y]) =>
          s("circle", { cx: sx(x).toFixed(1), cy: sy(y).toFixed(1), r: 3, class: "chart-dot" }, s("title", null, `${se.label} @ ${x}: ${y.toFixed(4)}`)),
        ),
      );
    });
  const id = `chart-${Math.random().toString(36).slice(2, 8)}`;
  const last = series
    .filter((se) => se.points.length)
    .map((se) => `${se.label} ${se.points[se.points.length - 1][1].toFixed(4)}`)
    .join(", ");
  const svg = s(
    "svg",
    { viewBox: `0 0 ${W} ${H}`, class: "chart w-full h-auto", role: "img", "aria-labelledby": `${id}-t ${id}-d` },
    s("title", { id: `${id}-t` }, title),
    s("desc", { id: `${id}-d` }, `${yLabel} per ${xLabel.toLowerCase()}; final values: ${last}.`),
    grid,
    s("line", { x1: PAD.l, x2: W - PAD.r, y1: H - PAD.b, y2: H - PAD.b, class: "chart-axis" }),
    xticks,
    s("text", { x: (PAD.l + W - PAD.r) / 2, y: H - 6, "text-anchor": "middle", class: "chart-label" }, xLabel),
    s("text", { x: 14, y: (PAD.t + H - PAD.b) / 2, "text-anchor": "middle", transform: `rotate(-90 14 ${(PAD.t + H - PAD.b) / 2})`, class: "chart-label" }, yLabel),
    lines,
  );
  const legend = h(
    "ul",
    { class: "mt-2 flex flex-wrap gap-4 text-xs text-slate-600 dark:text-slate-300" },
    series
      .filter((se) => se.points.length)
      .map((se) => h("li", { class: `flex items-center gap-2 ${se.cls}` }, h("span", { class: "legend-swatch", "aria-hidden": "true" }), se.label)),
  );
  return h("figure", { class: "training-chart" }, svg, legend);
}

export function historySeries(history) {
  const rows = Array.isArray(history) ? history : [];
  const pick = (key) =>
    rows
      .map((r, i) => [Number(r.iteration ?? i + 1), r[key] === null || r[key] === undefined ? NaN : Number(r[key])])
      .filter(([, y]) => Number.isFinite(y));
  return [
    { key: "train_rmse", label: "Train RMSE", cls: "series-train", points: pick("train_rmse") },
    { key: "valid_rmse", label: "Validation RMSE", cls: "series-valid", points: pick("valid_rmse") },
  ];
}
