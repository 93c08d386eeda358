// Home: "Recommended for you" (labelled by how the list was made) and popular picks per genre.

import { api, asList } from "../api.js";
import { h, replace } from "../dom.js";
import * as session from "../session.js";
import {
  cardGrid,
  cardRow,
  emptyState,
  errorBox,
  linkButton,
  movieIdOf,
  section,
  skeletonRow,
} from "../components.js";

export const FOLD_IN_MIN = 5;
const GENRE_ROWS = 4;
const ROW_LEN = 12;
// A genre row asks for more than it shows, so it can skip movies already shown above it.
const ROW_FETCH = 60;

export function strategyLabel(recs) {
  const n = recs.n_user_ratings ?? 0;
  if (recs.strategy === "personalized") return "Personalised for you";
  if (recs.strategy === "fold-in") return `From your ${n} rating${n === 1 ? "" : "s"}`;
  const more = Math.max(FOLD_IN_MIN - n, 1);
  return n > 0
    ? `Popular right now — rate ${more} more movie${more === 1 ? "" : "s"} to get personalised picks`
    : `Popular right now — rate ${FOLD_IN_MIN} movies to get personalised picks`;
}

// The genre filter of the personal list: the recommender's `genre` parameter, offered here.
function recsGenreFilter(ctx, onChange) {
  const select = h(
    "select",
    { class: "input", name: "recs-genre", id: "recs-genre", "aria-label": "Only this genre" },
    h("option", { value: "" }, "All genres"),
  );
  select.addEventListener("change", () => onChange(select.value));
  api("/api/genres", { signal: ctx.signal })
    .then((data) => {
      for (const g of asList(data, "genres").items) {
        const name = genreName(g);
        if (name && name !== "(no genres listed)") select.append(h("option", { value: name }, name));
      }
    })
    .catch(() => select.remove());
  return select;
}

function recsSection(ctx, done, shown) {
  const body = h("div", null, skeletonRow());
  const sub = h("span", null, "Loading your picks…");
  const el = section("Recommended for you", sub, body, { id: "recommended" });
  let genre = "";
  el.firstChild.append(
    h(
      "label",
      { class: "text-sm text-slate-600 dark:text-slate-400" },
      "Genre ",
      recsGenreFilter(ctx, (g) => {
        genre = g;
        load();
      }),
    ),
  );
  const load = async () => {
    replace(body, skeletonRow());
    try {
      const query = genre ? { k: ROW_LEN, genre } : { k: ROW_LEN };
      const recs = await api("/api/recs/me", { query, signal: ctx.signal });
      if (!genre) for (const m of recs.items || []) shown.add(movieIdOf(m));
      el.dataset.strategy = recs.strategy;
      el.dataset.genre = genre;
      replace(sub, h("span", { class: `strategy-label strategy-${recs.strategy}` }, strategyLabel(recs)));
      if (!recs.items || recs.items.length === 0) {
        replace(body, emptyState("Nothing to recommend yet", "Rate a few movies you have seen and we will find more like them.", linkButton("/browse", "Browse movies")));
        return;
      }
      const showPred = recs.strategy !== "popular";
      replace(
        body,
        cardGrid(recs.items, (m) =>
          showPred
            ? { badge: m.predicted_rating, badgeLabel: "Predicted rating for you" }
            : { badge: null },
        ),
        recs.strategy === "popular"
          ? h(
              "p",
              { class: "mt-4 text-sm text-slate-600 dark:text-slate-400" },
              "Tip: open any movie and give it stars. After ",
              String(FOLD_IN_MIN),
              " ratings this list is made just for you. ",
              h("a", { href: "/browse", "data-link": "", class: "link" }, "Find movies to rate →"),
            )
          : null,
      );
    } catch (err) {
      if (err.name === "AbortError") return;
      replace(sub, "");
      replace(body, errorBox(err, load));
    }
  };
  load().finally(done);
  return el;
}

function genreName(g) {
  return typeof g === "string" ? g : g.genre ?? g.name ?? g._id ?? "";
}

function genreCount(g) {
  return typeof g === "string" ? 0 : Number(g.count ?? g.n_movies ?? g.movies ?? 0);
}

async function popularRow(ctx, genre, container, shown) {
  try {
    const data = await api("/api/movies/popular", { query: { genre, limit: ROW_FETCH }, signal: ctx.signal });
    // Never repeat a movie already shown above (the personal list, earlier genre rows).
    const items = asList(data).items.filter((m) => !shown.has(movieIdOf(m))).slice(0, ROW_LEN);
    for (const m of items) shown.add(movieIdOf(m));
    if (!items.length) {
      container.remove();
      return;
    }
    replace(container.querySelector("[data-body]"), cardRow(items, (m) => ({ badge: m.avg_rating, badgeLabel: "Average rating" })));
  } catch (err) {
    if (err.name === "AbortError") return;
    replace(container.querySelector("[data-body]"), errorBox(err, () => popularRow(ctx, genre, container, shown)));
  }
}

// Genre rows load after the main list and one at a time: each is a database aggregation,
// and firing them all at once would slow down the list people came for.
function genreSections(ctx, after, shown) {
  const wrap = h("div", { class: "space-y-10", id: "genre-picks" }, skeletonRow());
  (async () => {
    await after;
    try {
      const data = await api("/api/genres", { signal: ctx.signal });
      const genres = asList(data, "genres").items
        .filter((g) => genreName(g) && genreName(g) !== "(no genres listed)")
        .sort((a, b) => genreCount(b) - genreCount(a))
        .slice(0, GENRE_ROWS)
        .map(genreName);
      const rows = genres.map((g) => {
        const row = section(
          `Popular in ${g}`,
          null,
          h("div", { dataset: { body: "" } }, skeletonRow()),
          { id: `genre-${g.toLowerCase().replace(/[^a-z0-9]+/g, "-")}` },
        );
        row.querySelector("h2").append(
          " ",
          h("a", { href: `/browse?genre=${encodeURIComponent(g)}&sort=popularity`, "data-link": "", class: "link ml-2 text-sm font-medium" }, "See all"),
        );
        return [g, row];
      });
      replace(wrap, rows.map(([, row]) => row));
      for (const [g, row] of rows) {
        if (ctx.signal.aborted) return;
        await popularRow(ctx, g, row, shown);
      }
    } catch (err) {
      if (err.name === "AbortError") return;
      replace(wrap, errorBox(err));
    }
  })();
  return wrap;
}

function popularOverall(ctx, done, shown) {
  const body = h("div", null, skeletonRow());
  const el = section("Popular right now", "The best-loved movies on MovieRec", body, { id: "popular" });
  (async () => {
    try {
      const { items } = asList(await api("/api/movies/popular", { query: { limit: ROW_LEN }, signal: ctx.signal }));
      for (const m of items) shown.add(movieIdOf(m));
      replace(body, items.length ? cardGrid(items, (m) => ({ badge: m.avg_rating, badgeLabel: "Average rating" })) : emptyState("No movies yet", "The catalogue is empty — ask an admin to import MovieLens."));
    } catch (err) {
      if (err.name === "AbortError") return;
      replace(body, errorBox(err));
    }
  })().finally(done);
  return el;
}

function gate() {
  let open;
  const opened = new Promise((resolve) => {
    open = resolve;
  });
  return [opened, open];
}

export async function homePage(ctx) {
  const u = session.user();
  const [opened, open] = gate();
  const shown = new Set(); // movieIds already on the page, top to bottom
  if (!u) {
    return h(
      "div",
      { class: "space-y-10", dataset: { page: "home" } },
      h(
        "div",
        { class: "hero rounded-3xl p-6 sm:p-10" },
        h("h1", { class: "max-w-xl text-3xl font-extrabold tracking-tight text-white sm:text-4xl" }, "Find your next favourite film."),
        h("p", { class: "mt-3 max-w-xl text-indigo-100" }, "Rate a handful of movies you know. MovieRec learns your taste from 100,000 ratings and picks what to watch next."),
        h(
          "div",
          { class: "mt-6 flex flex-wrap gap-3" },
          h("a", { href: "/signup", "data-link": "", class: "btn-hero" }, "Create a free account"),
          h("a", { href: "/browse", "data-link": "", class: "btn-hero-ghost" }, "Browse movies"),
        ),
      ),
      popularOverall(ctx, open, shown),
      genreSections(ctx, opened, shown),
    );
  }
  return h(
    "div",
    { class: "space-y-10", dataset: { page: "home" } },
    h(
      "div",
      null,
      h("h1", { class: "text-2xl font-extrabold tracking-tight sm:text-3xl" }, `Hi ${u.username}, what's next?`),
      h("p", { class: "mt-1 text-slate-600 dark:text-slate-400" }, "Picks for tonight, and the crowd favourites in every genre."),
    ),
    recsSection(ctx, open, shown),
    genreSections(ctx, opened, shown),
  );
}
