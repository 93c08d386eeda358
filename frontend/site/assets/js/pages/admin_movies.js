// Admin: add a movie between retrains (POST /api/admin/movies). It is searchable at once; the
// recommender serves it from a content profile (genres and tags) with a "New" label until a retrain
// gives it factors.

import { api, asList } from "../api.js";
import { h, replace } from "../dom.js";
import { toast } from "../components.js";

export function addMoviePanel(ctx) {
  const title = h("input", { id: "new-movie-title", class: "input", required: "", maxlength: "300", placeholder: "Title" });
  const year = h("input", { id: "new-movie-year", class: "input w-28", type: "number", min: "1870", max: "2100", placeholder: "Year" });
  const imdb = h("input", { id: "new-movie-imdb", class: "input w-36", inputmode: "numeric", pattern: "[0-9]{1,10}", placeholder: "IMDb id (digits)" });
  const tmdb = h("input", { id: "new-movie-tmdb", class: "input w-32", type: "number", min: "1", placeholder: "TMDB id" });
  const tags = h("input", { id: "new-movie-tags", class: "input", maxlength: "1000", placeholder: "e.g. superhero, comic book", "aria-describedby": "new-movie-tags-help" });
  const genres = h("select", { id: "new-movie-genres", class: "input min-h-32", multiple: "", "aria-describedby": "new-movie-genres-help" });
  const add = h("button", { type: "button", class: "btn-primary", id: "add-movie" }, "Add movie");
  const result = h("p", { class: "text-sm", role: "status" });
  api("/api/genres", { signal: ctx.signal })
    .then((data) => {
      const names = asList(data, "genres", "items").items.map((g) => (typeof g === "string" ? g : g.genre)).filter((g) => g && g !== "(no genres listed)");
      replace(genres, ...names.map((g) => h("option", { value: g }, g)));
    })
    .catch(() => {});
  add.addEventListener("click", async () => {
    const chosen = [...genres.selectedOptions].map((o) => o.value);
    if (!title.value.trim() || !chosen.length) {
      toast("A title and at least one genre are needed.", "error");
      return;
    }
    const body = { title: title.value.trim(), genres: chosen };
    if (year.value) body.year = Number(year.value);
    if (imdb.value.trim()) body.imdbId = imdb.value.trim();
    if (tmdb.value) body.tmdbId = Number(tmdb.value);
    const tagList = [...new Set(tags.value.split(",").map((t) => t.trim()).filter(Boolean))];
    if (tagList.length) body.tags = tagList.slice(0, 20);
    add.disabled = true;
    try {
      const movie = await api("/api/admin/movies", { method: "POST", body });
      toast(`Added “${movie.title}” (movie ${movie.movieId}).`, "success");
      replace(result, h("a", { href: `/movies/${movie.movieId}`, "data-link": "", class: "font-semibold text-indigo-700 underline dark:text-indigo-300" }, `${movie.title}: movie ${movie.movieId}`));
      title.value = "";
      tags.value = "";
    } catch (err) {
      toast(err.message || String(err), "error");
    } finally {
      add.disabled = false;
    }
  });
  return h(
    "section",
    { class: "panel space-y-3", id: "add-movie-panel", "aria-labelledby": "add-movie-h" },
    h("h2", { class: "panel-title", id: "add-movie-h" }, "Add a movie"),
    h("p", { class: "text-sm text-slate-600 dark:text-slate-400" }, "It appears in browse and search at once and is recommended from its genres and tags, labelled “New”, until a retrain learns it from ratings."),
    h(
      "div",
      { class: "flex flex-wrap items-end gap-4" },
      h("label", { for: "new-movie-title", class: "flex grow flex-col gap-1 text-sm" }, "Title", title),
      h("label", { for: "new-movie-year", class: "flex flex-col gap-1 text-sm" }, "Year", year),
      h("label", { for: "new-movie-imdb", class: "flex flex-col gap-1 text-sm" }, "IMDb", imdb),
      h("label", { for: "new-movie-tmdb", class: "flex flex-col gap-1 text-sm" }, "TMDB", tmdb),
    ),
    h("label", { for: "new-movie-genres", class: "flex flex-col gap-1 text-sm" }, "Genres", genres, h("span", { id: "new-movie-genres-help", class: "text-xs text-slate-600 dark:text-slate-400" }, "Ctrl/Cmd-click to choose several.")),
    h("label", { for: "new-movie-tags", class: "flex flex-col gap-1 text-sm" }, "Tags", tags, h("span", { id: "new-movie-tags-help", class: "text-xs text-slate-600 dark:text-slate-400" }, "Optional, comma-separated, like MovieLens tags: they place the movie among movies with the same tags.")),
    h("div", { class: "flex items-center gap-4" }, add, result),
  );
}
