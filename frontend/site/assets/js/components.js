// Shared UI pieces: movie cards with generated posters, star displays, the half-star rating
// control, and the loading / empty / error states every page uses.

import { h, s, replace } from "./dom.js";

export const POSTER_COLOURS = 12;

export function titleOf(m) {
  return m.title || m.clean_title || `Movie #${m.movieId ?? m.movie_id ?? "?"}`;
}

export function movieIdOf(m) {
  return m.movieId ?? m.movie_id ?? m.id;
}

export function yearOf(m) {
  if (m.year) return m.year;
  const match = /\((\d{4})\)\s*$/.exec(m.title || "");
  return match ? Number(match[1]) : null;
}

export function displayTitle(m) {
  // MovieLens titles end with "(1995)"; the year is shown separately.
  const t = titleOf(m).replace(/\s*\(\d{4}\)\s*$/, "");
  // ...and put articles back in front: "Usual Suspects, The" → "The Usual Suspects".
  const moved = /^(.+), (The|A|An|Les|La|Le|L'|Il|Das|Der|Die|El|Los|Las)(\s*\(.*\))?$/.exec(t);
  if (!moved) return t;
  const article = moved[2];
  return `${article}${article.endsWith("'") ? "" : " "}${moved[1]}${moved[3] || ""}`;
}

function initials(title) {
  const words = title
    .replace(/^(the|a|an)\s+/i, "")
    .replace(/[^\p{L}\p{N}\s]/gu, " ")
    .split(/\s+/)
    .filter(Boolean);
  return ((words[0]?.[0] || "?") + (words[1]?.[0] || "")).toUpperCase();
}

export function poster(m, size = "md") {
  const id = Number(movieIdOf(m)) || 0;
  const title = displayTitle(m);
  const big = size === "lg";
  return h(
    "div",
    {
      class: `poster poster-${id % POSTER_COLOURS} ${big ? "poster-lg" : ""}`,
      "aria-hidden": "true",
    },
    h("span", { class: "poster-initials" }, initials(title)),
    h("span", { class: "poster-caption" }, title),
  );
}

export function fmt(n, digits = 1) {
  return Number.isFinite(Number(n)) && n !== null ? Number(n).toFixed(digits) : "–";
}

export function starBadge(value, label) {
  if (value === undefined || value === null || !Number.isFinite(Number(value))) return null;
  return h(
    "span",
    {
      class:
        "inline-flex items-center gap-1 rounded-full bg-amber-100 px-2 py-0.5 text-xs font-semibold text-amber-900 dark:bg-amber-400/15 dark:text-amber-200",
      title: label,
    },
    h("span", { "aria-hidden": "true" }, "★"),
    h("span", { class: "sr-only" }, `${label}: `),
    fmt(value, 1),
  );
}

// "Because you rated A, B": the rated movies that contributed most to a personalised item.
export function becauseLine(m) {
  const reasons = Array.isArray(m.because) ? m.because.filter((r) => r && r.title) : [];
  if (!reasons.length) return null;
  return h(
    "p",
    { class: "because line-clamp-2 text-xs text-slate-600 dark:text-slate-400", title: reasons.map((r) => `${r.title} (you: ${r.rating}★)`).join("\n") },
    "Because you rated ",
    reasons.slice(0, 2).map((r) => displayTitle(r)).join(", "),
  );
}

export function movieCard(m, { badge, badgeLabel = "Predicted rating", extra } = {}) {
  const id = movieIdOf(m);
  const year = yearOf(m);
  const genres = Array.isArray(m.genres) ? m.genres.filter((g) => g && g !== "(no genres listed)") : [];
  return h(
    "article",
    {
      class: "movie-card group relative",
      dataset: { movieId: String(id), year: year ? String(year) : "", genres: genres.join("|") },
    },
    h(
      "a",
      {
        href: `/movies/${id}`,
        class:
          "block rounded-xl focus-visible:outline-2 focus-visible:outline-offset-2 focus-visible:outline-indigo-500",
        "data-link": "",
      },
      poster(m),
      h(
        "div",
        { class: "mt-2 space-y-1 px-0.5" },
        h(
          "h3",
          { class: "line-clamp-2 text-sm font-semibold leading-snug text-slate-900 group-hover:text-indigo-700 dark:text-slate-100 dark:group-hover:text-indigo-300" },
          displayTitle(m),
        ),
        h(
          "p",
          { class: "flex flex-wrap items-center gap-x-2 gap-y-1 text-xs text-slate-600 dark:text-slate-400" },
          year ? h("span", null, String(year)) : null,
          genres.length ? h("span", { class: "truncate" }, genres.slice(0, 2).join(" · ")) : null,
        ),
        h(
          "div",
          { class: "flex flex-wrap gap-1" },
          starBadge(badge, badgeLabel),
          // Added by an admin after the model was trained (served from its content profile).
          m.new ? h("span", { class: "status-pill status-running new-badge", title: "Added after the last model training" }, "New") : null,
          extra || null,
        ),
        becauseLine(m),
      ),
    ),
  );
}

export function cardGrid(items, opts) {
  return h(
    "div",
    { class: "grid grid-cols-2 gap-4 sm:grid-cols-3 md:grid-cols-4 lg:grid-cols-5 xl:grid-cols-6" },
    items.map((m) => movieCard(m, typeof opts === "function" ? opts(m) : opts)),
  );
}

export function cardRow(items, opts) {
  return h(
    "div",
    { class: "card-row", role: "list" },
    items.map((m) =>
      h("div", { role: "listitem", class: "relative w-36 shrink-0 sm:w-40" }, movieCard(m, typeof opts === "function" ? opts(m) : opts)),
    ),
  );
}

export function spinner(text = "Loading…") {
  return h(
    "div",
    { class: "flex items-center gap-3 py-8 text-sm text-slate-600 dark:text-slate-300", role: "status", "aria-live": "polite" },
    h("span", { class: "spinner", "aria-hidden": "true" }),
    text,
  );
}

export function skeletonRow(n = 6) {
  return h(
    "div",
    { class: "card-row", "aria-hidden": "true" },
    Array.from({ length: n }, () => h("div", { class: "w-36 shrink-0 sm:w-40" }, h("div", { class: "poster skeleton" }))),
  );
}

export function errorBox(err, retry) {
  const msg = err && err.message ? err.message : String(err);
  return h(
    "div",
    {
      class:
        "error-box rounded-xl border border-rose-300 bg-rose-50 p-4 text-sm text-rose-900 dark:border-rose-500/40 dark:bg-rose-950/40 dark:text-rose-100",
      role: "alert",
    },
    h("p", { class: "font-semibold" }, "Something went wrong"),
    h("p", { class: "mt-1" }, msg),
    err && err.code ? h("p", { class: "mt-1 font-mono text-xs opacity-75" }, `code: ${err.code}`) : null,
    retry
      ? h("button", { type: "button", class: "btn-secondary mt-3", onclick: retry }, "Try again")
      : null,
  );
}

export function emptyState(title, text, action) {
  return h(
    "div",
    {
      class:
        "empty-state rounded-2xl border border-dashed border-slate-300 bg-white/60 p-8 text-center dark:border-slate-700 dark:bg-slate-900/40",
    },
    h("p", { class: "text-base font-semibold text-slate-900 dark:text-slate-100" }, title),
    text ? h("p", { class: "mx-auto mt-1 max-w-md text-sm text-slate-600 dark:text-slate-400" }, text) : null,
    action ? h("div", { class: "mt-4" }, action) : null,
  );
}

export function linkButton(href, text, cls = "btn-primary") {
  return h("a", { href, class: cls, "data-link": "" }, text);
}

// Half-star rating control: ten native radio buttons (so arrow keys, focus and screen readers
// work without extra code) drawn as the left and right halves of five SVG stars.
let ratingSeq = 0;

function halfStar(side) {
  const viewBox = side === "left" ? "0 0 12 24" : "12 0 12 24";
  return s(
    "svg",
    { viewBox, width: "16", height: "32", "aria-hidden": "true", focusable: "false" },
    s("path", {
      d: "M12 1.5l3.09 6.26 6.91 1-5 4.87 1.18 6.88L12 17.27l-6.18 3.24L7 13.63 2 8.76l6.91-1z",
      fill: "currentColor",
    }),
  );
}

export function ratingControl(current, onChange) {
  const name = `rating-${++ratingSeq}`;
  let value = current ?? null;
  const labels = [];
  const inputs = [];
  const paint = (v) => {
    labels.forEach((lab, i) => lab.classList.toggle("on", v !== null && (i + 1) * 0.5 <= v));
  };
  const group = h("div", {
    class: "star-input relative inline-flex items-center",
    role: "radiogroup",
    "aria-label": "Your rating",
    onmouseleave: () => paint(value),
  });
  for (let i = 1; i <= 10; i++) {
    const v = i * 0.5;
    const id = `${name}-${i}`;
    const input = h("input", {
      type: "radio",
      name,
      id,
      value: String(v),
      class: "peer sr-only",
      checked: value === v,
      onchange: () => {
        value = v;
        paint(v);
        onChange(v);
      },
    });
    const label = h(
      "label",
      {
        for: id,
        class: `star-half ${i % 2 ? "left" : "right"}`,
        title: `${v} star${v === 1 ? "" : "s"}`,
        onmouseenter: () => paint(v),
      },
      halfStar(i % 2 ? "left" : "right"),
      h("span", { class: "sr-only" }, `${v} star${v === 1 ? "" : "s"}`),
    );
    inputs.push(input);
    labels.push(label);
    group.append(input, label);
  }
  paint(value);
  return {
    el: group,
    set(v) {
      value = v;
      inputs.forEach((inp) => {
        inp.checked = Number(inp.value) === v;
      });
      paint(v);
    },
  };
}

export function pagination({ page, pages, onPage }) {
  if (!pages || pages <= 1) return null;
  const btn = (label, p, disabled, aria) =>
    h(
      "button",
      { type: "button", class: "btn-secondary", disabled, "aria-label": aria, onclick: () => onPage(p) },
      label,
    );
  return h(
    "nav",
    { class: "mt-6 flex items-center justify-center gap-3", "aria-label": "Pagination" },
    btn("← Previous", page - 1, page <= 1, "Previous page"),
    h("span", { class: "text-sm text-slate-600 dark:text-slate-300", "aria-current": "page" }, `Page ${page} of ${pages}`),
    btn("Next →", page + 1, page >= pages, "Next page"),
  );
}

export function section(title, subtitle, body, { id, headingLevel = "h2" } = {}) {
  return h(
    "section",
    { class: "space-y-3", id },
    h(
      "div",
      { class: "flex flex-wrap items-end justify-between gap-2" },
      h(
        "div",
        null,
        h(headingLevel, { class: "text-lg font-bold tracking-tight text-slate-900 sm:text-xl dark:text-white" }, title),
        subtitle ? h("p", { class: "section-subtitle text-sm text-slate-600 dark:text-slate-400" }, subtitle) : null,
      ),
    ),
    body,
  );
}

export function toast(message, kind = "info") {
  const region = document.getElementById("toasts");
  if (!region) return;
  const el = h(
    "div",
    {
      class: `toast ${kind === "error" ? "toast-error" : kind === "success" ? "toast-success" : ""}`,
      role: kind === "error" ? "alert" : "status",
    },
    message,
  );
  region.append(el);
  setTimeout(() => el.remove(), kind === "error" ? 8000 : 3500);
}

export function setBusy(container, node) {
  replace(container, node);
}
