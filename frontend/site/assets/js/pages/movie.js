// Movie page: details and stats, your half-star rating (set, change, remove), what the model
// predicts for you, and "Similar movies" from the item factors.

import { api, ApiError } from "../api.js";
import { h, replace } from "../dom.js";
import * as session from "../session.js";
import {
  cardRow,
  displayTitle,
  emptyState,
  errorBox,
  fmt,
  linkButton,
  poster,
  ratingControl,
  section,
  skeletonRow,
  yearOf,
} from "../components.js";

const SAVE_DELAY_MS = 350;

function stat(label, value, hint) {
  return h(
    "div",
    { class: "min-w-0 rounded-xl border border-slate-200 bg-white px-3 py-3 sm:px-4 dark:border-slate-800 dark:bg-slate-900" },
    h("dt", { class: "truncate text-[0.65rem] font-semibold uppercase tracking-wide text-slate-500 sm:text-xs dark:text-slate-400" }, label),
    h("dd", { class: "mt-1 text-lg font-bold text-slate-900 sm:text-xl dark:text-white" }, value),
    hint ? h("dd", { class: "hidden text-xs text-slate-500 sm:block dark:text-slate-400" }, hint) : null,
  );
}

function myRatingOf(movie) {
  for (const k of ["my_rating", "user_rating", "your_rating"]) {
    const v = movie[k];
    if (v && typeof v === "object" && "rating" in v) return v.rating;
    if (v !== undefined) return v;
  }
  return undefined;
}

function ratingCard(ctx, movie, movieId) {
  const u = session.user();
  if (!u) {
    return h(
      "div",
      { class: "panel" },
      h("h2", { class: "panel-title" }, "Your rating"),
      h("p", { class: "mt-1 text-sm text-slate-600 dark:text-slate-400" }, "Log in to rate this movie and get picks made for you."),
      h("div", { class: "mt-3 flex gap-2" }, linkButton(`/login?next=/movies/${movieId}`, "Log in"), linkButton("/signup", "Sign up", "btn-secondary")),
    );
  }
  let current = myRatingOf(movie) ?? null;
  const status = h("p", { class: "rating-status min-h-5 text-sm text-slate-600 dark:text-slate-400", role: "status", "aria-live": "polite" });
  const valueText = h("span", { class: "rating-value text-2xl font-bold tabular-nums" });
  const prediction = h("p", { class: "prediction text-sm text-slate-600 dark:text-slate-400" });
  const removeBtn = h("button", { type: "button", class: "btn-secondary", id: "remove-rating" }, "Remove my rating");
  let timer = null;
  let seq = 0;

  const showValue = () => {
    replace(valueText, current ? `${fmt(current, 1)} ★` : "Not rated");
    removeBtn.disabled = !current;
  };

  // Saves run one after another, so the last value clicked is the one the database keeps.
  let queue = Promise.resolve();
  const save = (v) => {
    const mine = ++seq;
    queue = queue.then(() => (mine === seq ? doSave(v, mine) : undefined));
    return queue;
  };
  const doSave = async (v, mine) => {
    replace(status, "Saving…");
    try {
      if (v === null) await api(`/api/movies/${movieId}/rating`, { method: "DELETE" });
      else await api(`/api/movies/${movieId}/rating`, { method: "PUT", body: { rating: v } });
      if (mine !== seq) return;
      current = v;
      showValue();
      replace(status, v === null ? "Rating removed." : `Saved: ${fmt(v, 1)} stars.`);
      status.dataset.state = "saved";
    } catch (err) {
      if (mine !== seq) return;
      status.dataset.state = "error";
      replace(status, h("span", { class: "text-rose-700 dark:text-rose-300", role: "alert" }, `Could not save: ${err.message}`));
      control.set(current);
    }
  };

  const control = ratingControl(current, (v) => {
    status.dataset.state = "pending";
    clearTimeout(timer);
    timer = setTimeout(() => save(v), SAVE_DELAY_MS);
  });
  removeBtn.addEventListener("click", () => {
    clearTimeout(timer);
    control.set(null);
    save(null);
  });
  showValue();

  const loadPrediction = async () => {
    if (u.userId === undefined || u.userId === null) return;
    try {
      const p = await api("/api/recs/predict", { query: { userId: u.userId, movieId }, signal: ctx.signal });
      if (current === null && p.user_rating !== undefined && p.user_rating !== null && myRatingOf(movie) === undefined) {
        current = p.user_rating;
        control.set(current);
        showValue();
      }
      if (p.predicted_rating !== undefined && p.predicted_rating !== null) {
        replace(
          prediction,
          "We think you'd give it ",
          h("strong", { class: "text-slate-900 dark:text-white" }, `${fmt(p.predicted_rating, 1)} ★`),
          p.strategy === "baseline" ? " (from what everyone thinks — rate more movies to sharpen this)" : "",
        );
      }
    } catch (err) {
      if (err.name === "AbortError") return;
      if (err instanceof ApiError && err.status === 404) return;
      replace(prediction, `Prediction unavailable: ${err.message}`);
    }
  };
  loadPrediction();

  return h(
    "div",
    { class: "panel", id: "rating-panel" },
    h("h2", { class: "panel-title" }, "Your rating"),
    h("div", { class: "mt-2 flex flex-wrap items-center gap-4" }, control.el, valueText),
    status,
    prediction,
    h("div", { class: "mt-3" }, removeBtn),
  );
}

function similarSection(ctx, movieId) {
  const body = h("div", null, skeletonRow());
  const el = section("Similar movies", "People who liked this also liked", body, { id: "similar" });
  const load = async () => {
    try {
      const data = await api(`/api/recs/similar/${movieId}`, { query: { k: 12 }, signal: ctx.signal });
      const items = (data && data.items) || [];
      el.dataset.state = (data && data.state) || "";
      if (data && data.state === "too_few_ratings") {
        const n = data.n_ratings ?? 0;
        replace(body, emptyState("Too few ratings to compare", `This movie has ${n} rating${n === 1 ? "" : "s"}; we show neighbours from ${data.min_ratings} on.`));
        return;
      }
      if (!items.length) {
        replace(body, emptyState("No similar movies yet", "This movie has too few ratings for us to find its neighbours."));
        return;
      }
      replace(
        body,
        cardRow(items, (m) => ({
          badge: null,
          extra: Number.isFinite(m.similarity)
            ? h("span", { class: "match-badge" }, `${Math.round(Math.max(0, m.similarity) * 100)}% match`)
            : null,
        })),
      );
    } catch (err) {
      if (err.name === "AbortError") return;
      if (err instanceof ApiError && (err.status === 404 || err.code === "no_model")) {
        replace(body, emptyState("No similar movies yet", err.message || "This movie has too few ratings for us to find its neighbours."));
        return;
      }
      replace(body, errorBox(err, load));
    }
  };
  load();
  return el;
}

export async function moviePage(ctx) {
  const movieId = Number(ctx.params[0]);
  let movie;
  try {
    movie = await api(`/api/movies/${movieId}`, { signal: ctx.signal });
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      ctx.setTitle("Movie not found");
      return emptyState("Movie not found", `There is no movie #${movieId}.`, linkButton("/browse", "Browse movies"));
    }
    throw err;
  }
  if (movie && movie.movie && typeof movie.movie === "object") movie = { ...movie.movie, ...movie, movie: undefined };
  ctx.setTitle(displayTitle(movie));
  const year = yearOf(movie);
  const genres = (movie.genres || []).filter((g) => g !== "(no genres listed)");
  const avg = movie.avg_rating ?? (movie.rating_count ? movie.rating_sum / movie.rating_count : null);
  const imdb = movie.imdbId ? String(movie.imdbId).padStart(7, "0") : null;

  return h(
    "div",
    { class: "space-y-10", dataset: { page: "movie", movieId: String(movieId) } },
    h(
      "div",
      { class: "grid gap-6 md:grid-cols-[14rem_1fr] md:gap-8" },
      h("div", { class: "mx-auto w-44 md:w-full" }, poster(movie, "lg")),
      h(
        "div",
        { class: "min-w-0 space-y-5" },
        h(
          "div",
          null,
          h("h1", { class: "text-3xl font-extrabold tracking-tight sm:text-4xl" }, displayTitle(movie)),
          h(
            "p",
            { class: "mt-2 flex flex-wrap items-center gap-2 text-slate-600 dark:text-slate-400" },
            year ? h("span", { class: "font-medium" }, String(year)) : null,
            movie.new
              ? h("span", { class: "status-pill status-running new-badge", title: "Added after the last model training: recommended from its genres and tags until the next retrain" }, "New")
              : null,
            genres.map((g) => h("a", { href: `/browse?genre=${encodeURIComponent(g)}&sort=popularity`, "data-link": "", class: "chip" }, g)),
          ),
        ),
        h(
          "dl",
          { class: "grid grid-cols-3 gap-2 sm:gap-3" },
          stat("Average", avg ? `${fmt(avg, 2)} ★` : "–", "out of 5"),
          stat("Ratings", (movie.rating_count ?? 0).toLocaleString(), "from MovieRec users"),
          stat("Popularity", movie.popularity_score ? fmt(movie.popularity_score, 2) : "–", "damped average"),
        ),
        ratingCard(ctx, movie, movieId),
        imdb || movie.tmdbId
          ? h(
              "p",
              { class: "text-sm text-slate-600 dark:text-slate-400" },
              "Elsewhere: ",
              imdb ? h("a", { class: "link", href: `https://www.imdb.com/title/tt${imdb}/`, rel: "noopener noreferrer", target: "_blank" }, "IMDb") : null,
              imdb && movie.tmdbId ? " · " : null,
              movie.tmdbId ? h("a", { class: "link", href: `https://www.themoviedb.org/movie/${movie.tmdbId}`, rel: "noopener noreferrer", target: "_blank" }, "TMDb") : null,
            )
          : null,
      ),
    ),
    similarSection(ctx, movieId),
  );
}

