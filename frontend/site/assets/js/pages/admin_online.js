// Admin: online evaluation. Hit rate per model version (daily and by position, with coverage)
// from GET /api/admin/online-metrics, and the A/B experiment panel: start one (CURRENT against
// another version, with a traffic split), each arm's hit rate with its 95 % Wilson interval and
// number of users, and one click to promote the winner (the candidate becomes CURRENT through
// the verified activation) or keep the control; either ends the experiment.

import { api, asList } from "../api.js";
import { h, replace } from "../dom.js";
import { errorBox, fmt, spinner, toast } from "../components.js";
import { lineChart } from "../chart.js";

const SERIES = ["series-train", "series-valid"];
const pct = (x) => (x === null || x === undefined || !Number.isFinite(x) ? "–" : `${(100 * x).toFixed(1)} %`);
const ci = (c) => (Array.isArray(c) ? `${pct(c[0])} – ${pct(c[1])}` : "–");

function panel(title, id, ...children) {
  return h("section", { class: "panel space-y-3", id, "aria-labelledby": `${id}-h` }, h("h2", { class: "panel-title", id: `${id}-h` }, title), ...children);
}

function note(text) {
  return h("p", { class: "text-sm text-slate-600 dark:text-slate-400" }, text);
}

function table(head, rows, cls) {
  return h(
    "div",
    // Focusable, so a keyboard user can scroll a table wider than a phone's screen (axe:
    // scrollable-region-focusable); named by its first column heading.
    { class: "overflow-x-auto", tabindex: "0", role: "region", "aria-label": `Table: ${head[0]}` },
    h(
      "table",
      { class: `w-full text-left text-sm ${cls || ""}` },
      h("thead", null, h("tr", null, head.map((c) => h("th", { class: "px-2 py-1 font-semibold" }, c)))),
      h("tbody", null, rows.map((r) => h("tr", { class: "border-t border-slate-200 dark:border-slate-800" }, r.map((c) => h("td", { class: "px-2 py-1 tabular-nums" }, c))))),
    ),
  );
}

function metricsBody(data) {
  const versions = data.versions || [];
  if (!versions.length) return note("No impressions yet in this period: lists appear here once users are shown recommendations.");
  const days = [...new Set(versions.flatMap((v) => v.daily.map((d) => d.day)))].sort();
  const daily = versions.slice(-2).map((v, i) => ({
    key: v.version,
    label: v.version,
    cls: SERIES[i % SERIES.length],
    points: v.daily.map((d) => [days.indexOf(d.day) + 1, d.hit_rate]),
  }));
  const byPos = versions.slice(-2).map((v, i) => ({
    key: v.version,
    label: v.version,
    cls: SERIES[i % SERIES.length],
    points: v.by_position.map((p) => [p.position + 1, p.hit_rate]),
  }));
  return h(
    "div",
    { class: "space-y-4" },
    table(
      ["Version", "Lists", "Hit rate", "95 % interval", "Users", "Coverage"],
      versions.map((v) => [v.version, String(v.lists), pct(v.hit_rate), ci(v.ci95), String(v.users), pct(v.coverage)]),
      "online-versions",
    ),
    note(`Days: ${days.map((d, i) => `${i + 1} = ${d}`).join(", ")}. A list is a hit when its user rates one of its movies within ${fmt(data.window_days, 0)} days.`),
    lineChart({ title: "Daily hit rate per model version", series: daily, xLabel: "Day", yLabel: "Hit rate" }),
    lineChart({ title: "Hit rate by position per model version", series: byPos, xLabel: "Position", yLabel: "Hit rate" }),
  );
}

export function onlineMetricsPanel(ctx) {
  const body = h("div", null, spinner("Loading online metrics…"));
  const load = async () => {
    try {
      const data = await api("/api/admin/online-metrics", { query: { days: 14 }, signal: ctx.signal });
      replace(body, metricsBody(data));
    } catch (err) {
      if (!ctx.signal.aborted) replace(body, errorBox(err, load));
    }
  };
  load();
  return panel("Online metrics (last 14 days)", "online-metrics", body);
}

function armsTable(exp) {
  const arms = (exp.metrics && exp.metrics.arms) || {};
  const row = (name, version) => {
    const a = arms[name] || {};
    return [name, version, String(a.lists ?? 0), pct(a.hit_rate), ci(a.ci95), String(a.users ?? 0)];
  };
  return table(
    ["Arm", "Version", "Lists", "Hit rate", "95 % interval (Wilson)", "Users"],
    [row("control", exp.control), row("candidate", exp.candidate)],
    "experiment-arms",
  );
}

function runningBody(ctx, exp, onChange) {
  const end = async (winner, button) => {
    button.disabled = true;
    try {
      await api(`/api/admin/experiments/${exp.id}/end`, { method: "POST", body: winner ? { winner } : {} });
      toast(winner === "candidate" ? `Promoted ${exp.candidate}: it is now CURRENT.` : "Experiment ended; CURRENT unchanged.", "success");
      onChange();
    } catch (err) {
      button.disabled = false;
      toast(err.message || String(err), "error");
    }
  };
  const promote = h("button", { type: "button", class: "btn-primary", id: "promote-candidate" }, `Promote candidate (${exp.candidate})`);
  const keep = h("button", { type: "button", class: "btn-secondary", id: "keep-control" }, "Keep control and end");
  promote.addEventListener("click", () => end("candidate", promote));
  keep.addEventListener("click", () => end("control", keep));
  return h(
    "div",
    { class: "space-y-3", dataset: { experiment: exp.id } },
    note(`Running since ${new Date(exp.started_at).toLocaleString()}: ${pct(exp.split)} of users see ${exp.candidate}, the rest ${exp.control}.`),
    armsTable(exp),
    h("div", { class: "flex flex-wrap gap-3" }, promote, keep),
  );
}

function startForm(versions, current, onChange) {
  const others = versions.filter((v) => v.version !== current);
  if (!current || !others.length) return note("An experiment needs a CURRENT model and at least one other published version.");
  const select = h("select", { id: "experiment-candidate", class: "input" }, others.map((v) => h("option", { value: v.version }, v.version)));
  const split = h("input", { id: "experiment-split", class: "input w-24", type: "number", min: "1", max: "99", step: "1", value: "50" });
  const start = h("button", { type: "button", class: "btn-primary", id: "start-experiment" }, "Start experiment");
  start.addEventListener("click", async () => {
    start.disabled = true;
    try {
      await api("/api/admin/experiments", { method: "POST", body: { candidate: select.value, split: Number(split.value) / 100 } });
      toast("Experiment started: recommenders pick it up within seconds.", "success");
      onChange();
    } catch (err) {
      start.disabled = false;
      toast(err.message || String(err), "error");
    }
  });
  return h(
    "div",
    { class: "space-y-3" },
    note(`Control: ${current} (CURRENT). Each user's arm is fixed by a hash of their id and the experiment's id.`),
    h(
      "div",
      { class: "flex flex-wrap items-end gap-4" },
      h("label", { for: "experiment-candidate", class: "flex flex-col gap-1 text-sm" }, "Candidate version", select),
      h("label", { for: "experiment-split", class: "flex flex-col gap-1 text-sm" }, "% of users on candidate", split),
      start,
    ),
  );
}

export function experimentPanel(ctx, versions, current, onChange) {
  const body = h("div", null, spinner("Loading experiments…"));
  const load = async () => {
    try {
      const list = await api("/api/admin/experiments", { signal: ctx.signal });
      if (list.running) {
        const exp = await api(`/api/admin/experiments/${list.running.id}`, { signal: ctx.signal });
        replace(body, runningBody(ctx, exp, onChange));
      } else {
        const past = asList(list, "items").items.filter((e) => e.status === "ended").slice(0, 5);
        replace(
          body,
          startForm(versions, current, onChange),
          past.length
            ? table(["Ended experiment", "Control", "Candidate", "Winner"], past.map((e) => [e.id.slice(0, 8), e.control, e.candidate, e.winner || "none"]))
            : null,
        );
      }
    } catch (err) {
      if (!ctx.signal.aborted) replace(body, errorBox(err, load));
    }
  };
  load();
  return panel("A/B experiment", "experiment", body);
}
