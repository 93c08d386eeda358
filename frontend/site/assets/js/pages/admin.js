// Admin: the active model and its metrics, its training curve, every stored version with
// activate (rollback), a retrain button with live job progress, and the job history.

import { api, asList } from "../api.js";
import { h, replace } from "../dom.js";
import { emptyState, errorBox, fmt, spinner, toast } from "../components.js";
import { historySeries, lineChart } from "../chart.js";
import { experimentPanel, onlineMetricsPanel } from "./admin_online.js";
import { addMoviePanel } from "./admin_movies.js";

const POLL_MS = 1000;
const TERMINAL = new Set(["succeeded", "failed", "rejected", "cancelled"]);
const METRICS = [
  ["rmse", "RMSE", 4],
  ["mae", "MAE", 4],
  ["ndcg_at_10", "NDCG@10", 4],
  ["precision_at_10", "Precision@10", 4],
  ["recall_at_10", "Recall@10", 4],
  ["coverage_at_10", "Coverage@10", 3],
  ["popularity_ndcg_at_10", "Popularity NDCG@10", 4],
  ["train_rmse", "Train RMSE", 4],
  ["train_mae", "Train MAE", 4],
  ["train_seconds", "Train time (s)", 1],
];

const jobId = (j) => j.id ?? j._id ?? j.job_id;

function when(t) {
  if (!t) return "–";
  const d = new Date(typeof t === "number" ? (t < 1e12 ? t * 1000 : t) : t);
  return Number.isNaN(d.getTime()) ? String(t) : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function statusPill(status) {
  return h("span", { class: `status-pill status-${status || "unknown"}` }, status || "unknown");
}

function panel(title, id, ...children) {
  return h("section", { class: "panel space-y-3", id, "aria-labelledby": `${id}-h` }, h("h2", { class: "panel-title", id: `${id}-h` }, title), ...children);
}

function metricsList(metrics) {
  const rows = METRICS.filter(([k]) => metrics && Number.isFinite(metrics[k]));
  if (!rows.length) return h("p", { class: "text-sm text-slate-600 dark:text-slate-400" }, "No metrics recorded for this version.");
  return h(
    "dl",
    { class: "grid grid-cols-2 gap-3 sm:grid-cols-4" },
    rows.map(([k, label, d]) =>
      h(
        "div",
        { class: "rounded-xl bg-slate-50 px-3 py-2 dark:bg-slate-800/60", dataset: { metric: k } },
        h("dt", { class: "text-xs font-semibold uppercase tracking-wide text-slate-500 dark:text-slate-400" }, label),
        h("dd", { class: "text-lg font-bold tabular-nums" }, fmt(metrics[k], d)),
      ),
    ),
  );
}

function servedLine(active, served) {
  return h(
    "p",
    { class: "served-version text-sm text-slate-600 dark:text-slate-400" },
    "Recommender is serving ",
    h("span", { class: "font-mono" }, served.version || "no model (popularity only)"),
    served.version && active && served.version !== active.version ? " — it reloads within a few seconds." : ".",
    served.last_error ? h("span", { class: "block text-rose-700 dark:text-rose-300" }, `Last reload error: ${served.last_error}`) : null,
  );
}

// After a publish or rollback the recommender picks the new CURRENT up within seconds; keep
// the "serving" line honest by re-checking until it matches (or a minute has passed).
function watchServed(ctx, active, line) {
  const deadline = Date.now() + 60_000;
  const tick = async () => {
    if (ctx.signal.aborted || !line.isConnected || Date.now() > deadline) return;
    try {
      const served = await api("/api/recs/model", { signal: ctx.signal });
      const fresh = servedLine(active, served);
      line.replaceWith(fresh);
      line = fresh;
      if (served.version === active.version) return;
    } catch (err) {
      if (err.name === "AbortError") return;
    }
    setTimeout(tick, 2000);
  };
  setTimeout(tick, 1500);
}

function activeModelPanel(ctx, active, served) {
  if (!active) {
    return panel("Active model", "active-model", emptyState("No model yet", "Train the first model with the Retrain button below."));
  }
  const m = active;
  const data = m.data || {};
  const params = (m.params && (m.params.explicit || m.params)) || {};
  // The history holds both models' iterations; the RMSE curve is the explicit model's (the
  // ranking model's squared error is on confidence-weighted preferences, another scale).
  const explicitHistory = (m.history || []).filter((r) => !r.model || r.model === "explicit");
  const chart = lineChart({ title: `Training curve of ${m.version}`, series: historySeries(explicitHistory) });
  const servedEl = served ? servedLine(m, served) : null;
  if (servedEl && served.version !== m.version) watchServed(ctx, m, servedEl);
  return panel(
    "Active model",
    "active-model",
    h(
      "div",
      { class: "flex flex-wrap items-baseline gap-x-3 gap-y-1" },
      h("span", { class: "active-version break-all font-mono text-lg font-bold", dataset: { version: m.version } }, m.version),
      h("span", { class: "status-pill status-succeeded" }, "active"),
      h("span", { class: "text-sm text-slate-600 dark:text-slate-400" }, `trained ${when(m.created_at)}`),
    ),
    servedEl,
    h(
      "p",
      { class: "text-sm text-slate-600 dark:text-slate-400" },
      [
        data.n_ratings !== undefined && `${Number(data.n_ratings).toLocaleString()} ratings`,
        data.n_users !== undefined && `${Number(data.n_users).toLocaleString()} users`,
        data.n_items !== undefined && `${Number(data.n_items).toLocaleString()} movies`,
        params.rank !== undefined && `rank ${params.rank}`,
        params.reg !== undefined && `λ ${params.reg}${m.tuning?.explicit_reg?.candidates?.length ? " (chosen on validation)" : ""}`,
        params.iterations !== undefined && `${params.iterations} iterations`,
        m.params?.ease?.reg !== undefined &&
          `EASE λ ${formatReg(m.params.ease.reg)}${m.tuning?.ease_reg ? " (chosen on validation)" : ""}`,
        m.params?.blend?.rating !== undefined &&
          `stars' EASE weight γ ${Number(m.params.blend.rating).toFixed(2)}${m.tuning?.ease_rating_weight ? " (chosen on validation)" : ""}`,
        m.params?.ranking?.reg !== undefined &&
          `ranking λ ${formatReg(m.params.ranking.reg)}${m.tuning?.ranking_reg ? " (chosen on validation)" : ""}`,
        m.params?.ease && m.params?.blend?.als !== undefined && blendLine(m.params.blend, Boolean(m.tuning?.blend), (m.params.genres || []).length > 0),
      ]
        .filter(Boolean)
        .join(" · "),
    ),
    metricsList(m.metrics),
    h("h3", { class: "pt-2 text-sm font-semibold" }, "Training curve"),
    chart || h("p", { class: "text-sm text-slate-600 dark:text-slate-400" }, "This version has no per-iteration history."),
  );
}

// A λ as a plain number: whole above 100 (51200, not 5.12e+4 or 51,200), else 3 significant digits.
function formatReg(value) {
  const x = Number(value);
  return String(Math.abs(x) >= 100 ? Math.round(x) : Number(x.toPrecision(3)));
}

// The served list's blend weights, e.g. "list = 0.8·ALS + 0.2·EASE + 0.4·stars + 0.3·genres
// + 0.1·popularity"; the genre part only when the model has the movies' genres.
function blendLine(blend, chosen, hasGenres) {
  const parts = [
    ["ALS", blend.als],
    ["EASE", blend.ease],
    ["stars", blend.stars],
    ["genres", hasGenres ? (blend.genre ?? 0) : 0],
    ["popularity", blend.popularity ?? 0],
  ].filter(([, w]) => Number(w) !== 0);
  const sum = parts.map(([name, w], i) => `${i && Number(w) > 0 ? "+ " : i ? "− " : ""}${i ? Math.abs(Number(w)) : Number(w)}·${name}`).join(" ");
  return `list = ${sum}${chosen ? " (chosen on validation)" : ""}`;
}

function versionsPanel(versions, reload) {
  if (!versions.length) return panel("Versions", "versions", emptyState("No versions stored", "Published models appear here."));
  const rows = versions.map((v) => {
    let armed = false;
    const btn = h(
      "button",
      {
        type: "button",
        class: "btn-secondary activate-button",
        "aria-label": `Activate version ${v.version}`,
        onclick: async () => {
          if (!armed) {
            armed = true;
            btn.textContent = "Confirm rollback";
            btn.classList.add("btn-warning");
            setTimeout(() => {
              armed = false;
              btn.textContent = "Activate";
              btn.classList.remove("btn-warning");
            }, 5000);
            return;
          }
          btn.disabled = true;
          btn.textContent = "Activating…";
          try {
            await api(`/api/admin/models/${encodeURIComponent(v.version)}/activate`, { method: "POST" });
            toast(`Version ${v.version} is now active.`, "success");
            reload();
          } catch (err) {
            btn.disabled = false;
            btn.textContent = "Activate";
            toast(`Activation failed: ${err.message}`, "error");
          }
        },
      },
      "Activate",
    );
    return h(
      "tr",
      { class: v.active ? "bg-indigo-50/70 dark:bg-indigo-500/10" : "", dataset: { version: v.version } },
      h("td", { class: "break-all py-2 pr-3 font-mono text-xs sm:text-sm" }, v.version),
      h("td", { class: "hidden py-2 pr-3 text-sm sm:table-cell" }, when(v.created_at)),
      h("td", { class: "py-2 pr-3 text-sm tabular-nums" }, fmt(v.metrics && v.metrics.rmse, 4)),
      h("td", { class: "hidden py-2 pr-3 text-sm tabular-nums md:table-cell" }, fmt(v.metrics && v.metrics.ndcg_at_10, 4)),
      h("td", { class: "py-2 text-right" }, v.active ? h("span", { class: "status-pill status-succeeded" }, "active") : btn),
    );
  });
  return panel(
    "Versions",
    "versions",
    h(
      "div",
      { class: "-mx-1 overflow-x-auto px-1" },
      h(
        "table",
        { class: "w-full text-left" },
        h("caption", { class: "sr-only" }, "Stored model versions, newest first"),
        h(
          "thead",
          { class: "text-xs uppercase tracking-wide text-slate-500 dark:text-slate-400" },
          h("tr", null, h("th", { scope: "col", class: "py-2 pr-3" }, "Version"), h("th", { scope: "col", class: "hidden py-2 pr-3 sm:table-cell" }, "Trained"), h("th", { scope: "col", class: "py-2 pr-3" }, "RMSE"), h("th", { scope: "col", class: "hidden py-2 pr-3 md:table-cell" }, "NDCG@10"), h("th", { scope: "col", class: "py-2 text-right" }, h("span", { class: "sr-only" }, "Action"))),
        ),
        h("tbody", { class: "divide-y divide-slate-200 dark:divide-slate-800" }, rows),
      ),
    ),
  );
}

// The phases a retrain job goes through (movierec_trainer.worker / pipeline), in order.
const PHASES = [
  ["starting", "Starting"],
  ["snapshot", "Snapshot of the ratings (MongoDB + CSV)"],
  ["tune", "Choosing the regularization on validation data"],
  ["train", "Training"],
  ["validate", "Validating against the active model"],
  ["refit", "Refitting on all ratings"],
  ["publish", "Publishing"],
];
const phaseSince = new Map(); // "jobId:phase" -> when this page first saw the phase (ms)

function phaseLabel(job, p) {
  const i = PHASES.findIndex(([name]) => name === p.phase);
  if (i < 0) return p.phase;
  const key = `${jobId(job)}:${p.phase}`;
  if (!phaseSince.has(key)) phaseSince.set(key, Date.now());
  const secs = Math.round((Date.now() - phaseSince.get(key)) / 1000);
  return `Step ${i + 1} of ${PHASES.length}: ${PHASES[i][1]}${TERMINAL.has(job.status) ? "" : ` · ${secs} s`}`;
}

function jobProgress(job) {
  const p = job.progress || {};
  const of = Number(p.of) || 0;
  const it = Number(p.iteration) || 0;
  // The snapshot's MongoDB read reports ratings read of the expected count.
  const expected = p.phase === "snapshot" ? Number(p.expected) || 0 : 0;
  const read = Number(p.read) || 0;
  const share = of ? it / of : expected ? read / expected : 0;
  const pct = job.status === "succeeded" ? 100 : Math.min(100, Math.round(100 * share));
  // Phases without iterations (validate, publish) show a moving bar, not an empty one.
  const working = !TERMINAL.has(job.status) && !of && !expected;
  const bar = working
    ? h("progress", { class: "progress w-full", max: "100", "aria-label": "Training progress", "aria-valuetext": p.phase || job.status }, "working")
    : h("progress", { class: "progress w-full", max: "100", value: String(pct), "aria-label": "Training progress" }, `${pct}%`);
  const logs = Array.isArray(job.log_tail) ? job.log_tail.slice(-6) : [];
  return h(
    "div",
    { class: "job-progress space-y-2", dataset: { status: job.status || "", jobId: String(jobId(job)) } },
    h(
      "div",
      { class: "flex flex-wrap items-center gap-2 text-sm" },
      statusPill(job.status),
      p.phase ? h("span", { class: "job-phase font-medium", dataset: { phase: p.phase } }, phaseLabel(job, p)) : null,
      of ? h("span", { class: "job-iteration tabular-nums" }, `${p.model ? `${p.model}: ` : ""}iteration ${it} of ${of}`) : null,
      expected ? h("span", { class: "job-read tabular-nums" }, `${read.toLocaleString()} of ~${expected.toLocaleString()} ratings read`) : null,
      p.train_rmse !== undefined && p.train_rmse !== null ? h("span", { class: "tabular-nums text-slate-600 dark:text-slate-400" }, `train RMSE ${fmt(p.train_rmse, 4)}`) : null,
      p.valid_rmse !== undefined && p.valid_rmse !== null ? h("span", { class: "tabular-nums text-slate-600 dark:text-slate-400" }, `validation RMSE ${fmt(p.valid_rmse, 4)}`) : null,
    ),
    bar,
    job.status === "succeeded" && job.model_version
      ? h("p", { class: "job-result text-sm font-medium text-emerald-700 dark:text-emerald-300" }, "Published version ", h("span", { class: "font-mono" }, job.model_version))
      : null,
    !TERMINAL.has(job.status)
      ? h(
          "button",
          {
            type: "button",
            class: "btn-secondary cancel-job",
            disabled: Boolean(job.cancel_requested),
            onclick: async (e) => {
              const btn = e.currentTarget;
              btn.disabled = true;
              btn.textContent = "Cancelling…";
              try {
                await api(`/api/admin/jobs/${encodeURIComponent(jobId(job))}/cancel`, { method: "POST" });
              } catch (err) {
                btn.disabled = false;
                btn.textContent = "Cancel job";
                toast(`Cancel failed: ${err.message}`, "error");
              }
            },
          },
          job.cancel_requested ? "Cancelling…" : "Cancel job",
        )
      : null,
    job.error ? h("p", { class: "text-sm text-rose-700 dark:text-rose-300", role: "alert" }, `Error: ${typeof job.error === "string" ? job.error : JSON.stringify(job.error)}`) : null,
    logs.length ? h("pre", { class: "job-log max-h-40 overflow-auto rounded-lg bg-slate-900 p-3 text-xs text-slate-100" }, logs.join("\n")) : null,
  );
}

function jobsPanel(jobs) {
  if (!jobs.length) return panel("Job history", "jobs", emptyState("No retrain jobs yet", "Jobs started here, on schedule or after many new ratings show up in this list."));
  return panel(
    "Job history",
    "jobs",
    h(
      "div",
      { class: "-mx-1 overflow-x-auto px-1" },
      h(
        "table",
        { class: "w-full text-left text-sm" },
        h("caption", { class: "sr-only" }, "Recent retrain jobs, newest first"),
        h(
          "thead",
          { class: "text-xs uppercase tracking-wide text-slate-500 dark:text-slate-400" },
          h("tr", null, ["Requested", "Status", "Trigger", "Version", "RMSE"].map((t, i) => h("th", { scope: "col", class: `py-2 pr-3 ${i === 2 || i === 4 ? "hidden sm:table-cell" : ""}` }, t))),
        ),
        h(
          "tbody",
          { class: "divide-y divide-slate-200 dark:divide-slate-800" },
          jobs.map((j) =>
            h(
              "tr",
              { dataset: { jobId: String(jobId(j)) } },
              h("td", { class: "py-2 pr-3" }, when(j.created_at)),
              h("td", { class: "py-2 pr-3" }, statusPill(j.status), j.error ? h("span", { class: "ml-2 text-xs text-rose-700 dark:text-rose-300" }, String(j.error).slice(0, 80)) : null),
              h("td", { class: "hidden py-2 pr-3 sm:table-cell" }, j.trigger || "–"),
              h("td", { class: "break-all py-2 pr-3 font-mono text-xs" }, j.model_version || "–"),
              h("td", { class: "hidden py-2 pr-3 tabular-nums sm:table-cell" }, fmt(j.metrics && j.metrics.rmse, 4)),
            ),
          ),
        ),
      ),
    ),
  );
}

function retrainPanel(ctx, onDone, runningJob) {
  const progress = h("div", { id: "job-progress", "aria-live": "polite" });
  const dbOnly = h("input", { type: "checkbox", id: "retrain-db-only", class: "h-4 w-4 accent-indigo-600" });
  const button = h("button", { type: "button", class: "btn-primary", id: "retrain-button" }, "Retrain now");

  const poll = async (id) => {
    while (!ctx.signal.aborted) {
      let job;
      try {
        job = await api(`/api/admin/jobs/${encodeURIComponent(id)}`, { signal: ctx.signal });
      } catch (err) {
        if (err.name === "AbortError") return;
        replace(progress, errorBox(err));
        button.disabled = false;
        return;
      }
      replace(progress, jobProgress(job));
      if (TERMINAL.has(job.status)) {
        button.disabled = false;
        if (job.status === "succeeded") toast(`Retrain finished: version ${job.model_version} published.`, "success");
        else toast(`Retrain ${job.status}${job.error ? `: ${job.error}` : ""}`, "error");
        onDone();
        return;
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  };

  button.addEventListener("click", async () => {
    button.disabled = true;
    replace(progress, spinner("Queueing a retrain job…"));
    try {
      const res = await api("/api/admin/retrain", { method: "POST", body: dbOnly.checked ? { db_only: true } : {} });
      const job = res && res.job ? res.job : res;
      replace(progress, jobProgress({ status: "queued", ...job }));
      poll(jobId(job));
    } catch (err) {
      button.disabled = false;
      replace(progress, errorBox(err));
    }
  });

  if (runningJob) {
    button.disabled = true;
    replace(progress, jobProgress(runningJob));
    poll(jobId(runningJob));
  }

  return panel(
    "Retrain",
    "retrain",
    h("p", { class: "text-sm text-slate-600 dark:text-slate-400" }, "Train a new model from the MovieLens CSV plus every rating made here. It is validated before it goes live; a worse or broken model is rejected and the current one keeps serving."),
    h(
      "div",
      { class: "flex flex-wrap items-center gap-4" },
      button,
      h("label", { for: "retrain-db-only", class: "flex items-center gap-2 text-sm" }, dbOnly, "Only ratings from the database"),
    ),
    progress,
  );
}

export async function adminPage(ctx) {
  const top = h("div", { class: "grid items-start gap-6 lg:grid-cols-[3fr_2fr]" });
  const versionsSlot = h("div");
  const jobsSlot = h("div");
  const onlineSlot = h("div", { class: "space-y-6" });
  let retrain = null;

  // Each source loads on its own, so one failing endpoint shows its error in its own panel
  // while the rest of the page still works.
  const reload = async () => {
    const [models, served, jobs] = await Promise.allSettled([
      api("/api/admin/models", { signal: ctx.signal }),
      api("/api/recs/model", { signal: ctx.signal }),
      api("/api/admin/jobs", { query: { limit: 20 }, signal: ctx.signal }),
    ]);
    if (ctx.signal.aborted) return;
    const jobList = jobs.status === "fulfilled" ? asList(jobs.value, "jobs").items : [];
    const running = jobList.find((j) => j.status === "queued" || j.status === "running");
    if (!retrain) retrain = retrainPanel(ctx, () => setTimeout(reload, 300), running);
    const servedInfo =
      served.status === "fulfilled" ? served.value : { version: null, last_error: served.reason.message };
    if (models.status === "fulfilled") {
      const current = models.value && models.value.current;
      const versions = asList(models.value, "versions", "models").items.map((v) => ({
        ...v,
        active: v.active === undefined ? v.version === current : Boolean(v.active),
      }));
      const active = versions.find((v) => v.active) || null;
      replace(top, activeModelPanel(ctx, active, servedInfo), retrain);
      replace(versionsSlot, versionsPanel(versions, reload));
      replace(onlineSlot, experimentPanel(ctx, versions, current, reload), onlineMetricsPanel(ctx));
    } else {
      replace(top, panel("Active model", "active-model", errorBox(models.reason, reload)), retrain);
      replace(versionsSlot);
    }
    replace(jobsSlot, jobs.status === "fulfilled" ? jobsPanel(jobList) : panel("Job history", "jobs", errorBox(jobs.reason, reload)));
  };
  replace(top, spinner("Loading models and jobs…"));
  reload();
  return h(
    "div",
    { dataset: { page: "admin" } },
    h("h1", { class: "mb-6 text-2xl font-extrabold tracking-tight sm:text-3xl" }, "Model admin"),
    h("div", { class: "space-y-6" }, top, versionsSlot, onlineSlot, addMoviePanel(ctx), jobsSlot),
  );
}
