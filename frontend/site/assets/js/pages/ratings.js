// My ratings: everything you have rated, newest first, with change and remove in place.

import { api, asList } from "../api.js";
import { h, replace } from "../dom.js";
import {
  displayTitle,
  emptyState,
  errorBox,
  fmt,
  linkButton,
  pagination,
  poster,
  ratingControl,
  spinner,
  toast,
  yearOf,
} from "../components.js";

const PAGE_SIZE = 50;
const DETAIL_CONCURRENCY = 6;

// Rating rows may carry only ids; fill in titles and genres from the catalog when missing.
async function withMovieDetails(items, signal) {
  const todo = items.filter((r) => !(r.title || (r.movie && r.movie.title)));
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      const r = todo[next++];
      try {
        const m = await api(`/api/movies/${r.movieId}`, { signal });
        Object.assign(r, { title: m.title, year: m.year, genres: m.genres });
      } catch (err) {
        if (err.name === "AbortError") throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: DETAIL_CONCURRENCY }, worker));
  return items;
}

function when(r) {
  const t = r.timestamp ?? r.updated_at ?? r.rated_at;
  if (t === undefined || t === null) return "";
  const d = typeof t === "number" ? new Date(t < 1e12 ? t * 1000 : t) : new Date(t);
  return Number.isNaN(d.getTime()) ? "" : d.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
}

function row(r, onRemoved) {
  const movie = r.movie && typeof r.movie === "object" ? { ...r.movie, movieId: r.movieId ?? r.movie.movieId } : r;
  const id = movie.movieId ?? r.movieId;
  const status = h("span", { class: "text-xs text-slate-500 dark:text-slate-400", role: "status" });
  let value = r.rating;
  const control = ratingControl(value, async (v) => {
    replace(status, "Saving…");
    try {
      await api(`/api/movies/${id}/rating`, { method: "PUT", body: { rating: v } });
      value = v;
      replace(status, `Saved ${fmt(v, 1)} ★`);
    } catch (err) {
      control.set(value);
      replace(status, "");
      toast(`Could not save: ${err.message}`, "error");
    }
  });
  const li = h(
    "li",
    { class: "rating-row flex items-center gap-3 py-3 sm:gap-4", dataset: { movieId: String(id) } },
    h("a", { href: `/movies/${id}`, "data-link": "", class: "w-12 shrink-0 sm:w-14", tabindex: "-1", "aria-hidden": "true" }, poster(movie, "sm")),
    h(
      "div",
      { class: "min-w-0 flex-1" },
      h("a", { href: `/movies/${id}`, "data-link": "", class: "link block truncate font-semibold" }, displayTitle(movie)),
      h("p", { class: "text-xs text-slate-500 dark:text-slate-400" }, [yearOf(movie), when(r) && `rated ${when(r)}`].filter(Boolean).join(" · ")),
      h("div", { class: "mt-1 flex flex-wrap items-center gap-2" }, control.el, status),
    ),
    h(
      "button",
      {
        type: "button",
        class: "btn-ghost text-sm",
        "aria-label": `Remove rating for ${displayTitle(movie)}`,
        onclick: async (e) => {
          e.currentTarget.disabled = true;
          try {
            await api(`/api/movies/${id}/rating`, { method: "DELETE" });
            li.remove();
            onRemoved();
            toast(`Removed your rating for ${displayTitle(movie)}.`, "success");
          } catch (err) {
            e.currentTarget.disabled = false;
            toast(`Could not remove: ${err.message}`, "error");
          }
        },
      },
      "Remove",
    ),
  );
  return li;
}

export async function ratingsPage(ctx) {
  const page = Math.max(1, Number(ctx.query.get("page")) || 1);
  const body = h("div", { id: "my-ratings" }, spinner("Loading your ratings…"));
  const count = h("p", { class: "text-sm text-slate-600 dark:text-slate-400" });
  let total = 0;
  const load = async () => {
    replace(body, spinner("Loading your ratings…"));
    try {
      const data = await api("/api/me/ratings", { query: { page, page_size: PAGE_SIZE }, signal: ctx.signal });
      const list = asList(data, "ratings");
      total = list.total;
      const setCount = () => replace(count, total ? `${total} movie${total === 1 ? "" : "s"} rated` : "");
      setCount();
      if (!list.items.length) {
        replace(body, emptyState("You have not rated anything yet", "Rate 5 movies to get personalised picks on your home page.", linkButton("/browse", "Find movies to rate")));
        return;
      }
      await withMovieDetails(list.items, ctx.signal);
      const pages = data && data.pages ? data.pages : Math.ceil(total / PAGE_SIZE);
      replace(
        body,
        h(
          "ul",
          { class: "divide-y divide-slate-200 rounded-2xl border border-slate-200 bg-white px-3 sm:px-5 dark:divide-slate-800 dark:border-slate-800 dark:bg-slate-900" },
          list.items.map((r) =>
            row(r, () => {
              total -= 1;
              setCount();
            }),
          ),
        ),
        pagination({ page, pages, onPage: (p) => ctx.navigate(`/ratings?page=${p}`) }),
      );
    } catch (err) {
      if (err.name === "AbortError") return;
      replace(body, errorBox(err, load));
    }
  };
  load();
  return h(
    "div",
    { class: "space-y-6", dataset: { page: "ratings" } },
    h("div", { class: "flex flex-wrap items-end justify-between gap-2" }, h("h1", { class: "text-2xl font-extrabold tracking-tight sm:text-3xl" }, "My ratings"), count),
    body,
  );
}
