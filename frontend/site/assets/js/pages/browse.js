// Browse and search: title search, genre and year filters, sorting and pagination. The filter
// state lives in the URL, so results can be bookmarked and the back button works.

import { api, asList } from "../api.js";
import { h, replace } from "../dom.js";
import { cardGrid, emptyState, errorBox, pagination, spinner } from "../components.js";

export const PAGE_SIZE = 24;

export const SORTS = [
  ["popularity", "Most popular"],
  ["rating", "Highest rated"],
  ["count", "Most rated"],
  ["title", "Title A–Z"],
  ["year_desc", "Newest first"],
  ["year", "Oldest first"],
];

function field(label, control, id) {
  control.id = id;
  return h(
    "div",
    { class: "flex min-w-0 flex-col gap-1" },
    h("label", { for: id, class: "text-xs font-semibold uppercase tracking-wide text-slate-600 dark:text-slate-400" }, label),
    control,
  );
}

export async function browsePage(ctx) {
  const q = ctx.query;
  const state = {
    q: q.get("q") || "",
    genre: q.get("genre") || "",
    year_from: q.get("year_from") || "",
    year_to: q.get("year_to") || "",
    sort: q.get("sort") || (q.get("q") ? "" : "popularity"),
    page: Math.max(1, Number(q.get("page")) || 1),
  };

  const search = h("input", { type: "search", class: "input", value: state.q, placeholder: "e.g. Toy Story", autocomplete: "off", name: "q" });
  const genre = h("select", { class: "input", name: "genre" }, h("option", { value: "" }, "All genres"));
  const yearFrom = h("input", { type: "number", class: "input", min: "1874", max: "2100", step: "1", value: state.year_from, placeholder: "1900", inputmode: "numeric", name: "year_from" });
  const yearTo = h("input", { type: "number", class: "input", min: "1874", max: "2100", step: "1", value: state.year_to, placeholder: String(new Date().getFullYear()), inputmode: "numeric", name: "year_to" });
  const sort = h(
    "select",
    { class: "input", name: "sort" },
    state.q ? h("option", { value: "" }, "Best match") : null,
    SORTS.map(([v, label]) => h("option", { value: v, selected: v === state.sort }, label)),
  );

  const go = (patch) => {
    const next = { ...state, ...patch };
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(next)) if (v && !(k === "page" && Number(v) === 1)) qs.set(k, String(v));
    ctx.navigate(`/browse${qs.toString() ? `?${qs}` : ""}`);
  };

  // On a phone the genre, year and sort fields fold away behind "Filters" (open when one of them
  // is in use), so the results start on the first screen; from sm up they are always shown.
  const filtering = Boolean(state.genre || state.year_from || state.year_to);
  const more = h(
    "div",
    { id: "browse-more", class: `col-span-2 grid grid-cols-2 gap-3 sm:col-span-4 sm:grid-cols-4${filtering ? "" : " max-sm:hidden"}` },
    field("Genre", genre, "browse-genre"),
    field("Sort by", sort, "browse-sort"),
    field("From year", yearFrom, "browse-year-from"),
    field("To year", yearTo, "browse-year-to"),
  );
  const moreButton = h(
    "button",
    {
      type: "button",
      id: "browse-more-button",
      class: "btn-secondary mr-auto sm:hidden",
      "aria-controls": "browse-more",
      "aria-expanded": String(filtering),
      onclick: (e) => {
        const open = more.classList.toggle("max-sm:hidden") === false;
        e.currentTarget.setAttribute("aria-expanded", String(open));
      },
    },
    "Filters",
  );

  const form = h(
    "form",
    {
      class: "grid grid-cols-2 gap-3 rounded-2xl border border-slate-200 bg-white p-4 shadow-sm sm:grid-cols-6 dark:border-slate-800 dark:bg-slate-900",
      role: "search",
      onsubmit: (e) => {
        e.preventDefault();
        go({ q: search.value.trim(), genre: genre.value, year_from: yearFrom.value, year_to: yearTo.value, sort: sort.value, page: 1 });
      },
    },
    h("div", { class: "col-span-2 sm:col-span-2" }, field("Search titles", search, "browse-q")),
    more,
    h(
      "div",
      { class: "col-span-2 flex flex-wrap justify-end gap-2 sm:col-span-6" },
      moreButton,
      h("button", { type: "button", class: "btn-secondary", onclick: () => ctx.navigate("/browse") }, "Clear filters"),
      h("button", { type: "submit", class: "btn-primary" }, "Search"),
    ),
  );
  sort.addEventListener("change", () => form.requestSubmit());
  genre.addEventListener("change", () => form.requestSubmit());

  api("/api/genres", { signal: ctx.signal })
    .then((data) => {
      for (const g of asList(data, "genres").items) {
        const name = typeof g === "string" ? g : g.genre ?? g.name;
        if (!name || name === "(no genres listed)") continue;
        genre.append(h("option", { value: name, selected: name === state.genre }, name));
      }
    })
    .catch((err) => {
      if (err.name !== "AbortError") genre.after(h("p", { class: "text-xs text-rose-700 dark:text-rose-300", role: "alert" }, `Genres unavailable: ${err.message}`));
    });

  const results = h("div", { id: "browse-results", "aria-live": "polite" }, spinner("Finding movies…"));
  const summary = h("p", { class: "text-sm text-slate-600 dark:text-slate-400", id: "browse-summary" });

  const load = async () => {
    replace(results, spinner("Finding movies…"));
    try {
      const data = await api("/api/movies", {
        query: {
          q: state.q,
          genre: state.genre,
          year_min: state.year_from,
          year_max: state.year_to,
          sort: state.sort,
          page: state.page,
          page_size: PAGE_SIZE,
        },
        signal: ctx.signal,
      });
      const { items, total } = asList(data, "movies");
      const pages = data && data.pages ? data.pages : Math.max(1, Math.ceil(total / PAGE_SIZE));
      replace(summary, total ? `${total.toLocaleString()} movie${total === 1 ? "" : "s"}` : "");
      if (!items.length) {
        replace(
          results,
          emptyState(
            "No movies match",
            state.q ? `Nothing found for “${state.q}”. Check the spelling or clear some filters.` : "Try a different genre or a wider year range.",
            h("button", { type: "button", class: "btn-secondary", onclick: () => ctx.navigate("/browse") }, "Clear filters"),
          ),
        );
        return;
      }
      replace(
        results,
        h("h2", { class: "sr-only" }, "Results"),
        cardGrid(items, (m) => ({ badge: m.avg_rating, badgeLabel: "Average rating", extra: m.rating_count ? h("span", { class: "text-xs text-slate-500 dark:text-slate-400" }, `${m.rating_count} ratings`) : null })),
        pagination({ page: state.page, pages, onPage: (p) => go({ page: p }) }),
      );
    } catch (err) {
      if (err.name === "AbortError") return;
      replace(results, errorBox(err, load));
    }
  };
  load();

  return h(
    "div",
    { class: "space-y-6", dataset: { page: "browse" } },
    h(
      "div",
      { class: "flex flex-wrap items-end justify-between gap-2" },
      h("h1", { class: "text-2xl font-extrabold tracking-tight sm:text-3xl" }, state.q ? `Results for “${state.q}”` : "Browse movies"),
      summary,
    ),
    form,
    results,
  );
}
