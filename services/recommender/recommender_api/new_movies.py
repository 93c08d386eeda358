"""Movies added after the model was trained: item vectors from a content profile (issue 17).

A movie an admin added (catalogue `added_at`) that the serving model has no factors for gets
every item-side vector (explicit q and b, ranking y, similar-movie unit vector) as the
similarity-weighted mean of its nearest trained movies in content space, the "attribute-to-
factor" kNN mapping of Gantner et al., *Learning Attribute-to-Feature Mappings for Cold-Start
Recommendations* (ICDM 2010):

- content: a movie's genres and its tags (MovieLens tags.csv, at most 20 per movie, stored in
  `movies.tags` by mongo-init; an admin gives a new movie's tags), each block a binary TF-IDF
  vector (smoothed idf over the trained movies, ln((1+N)/(1+df)) + 1), L2-normalised;
- similarity = (1 − α)·cos(genres) + α·cos(tags), α = `tag_weight` (a movie without tags: the
  genre cosine alone);
- the `neighbours` most similar trained movies with at least `min_ratings` ratings and
  similarity > 0, weight = similarity^`power`, normalised to sum 1.

The defaults (α 0.75, 300 neighbours, power 2) were chosen on a validation split of
ml-latest-small (bench/tune_content_profile.py: 250 existing movies held out of training and
treated as new; bench/REPORT.md has the tables). On 250 other held-out test movies, against the
genre-only profile that came before (Jaccard² of genres, ≥ 0.5): recall@10 of the liked new
movies within the new-movie pool 0.187 vs 0.146, user AUC 0.857 vs 0.853, RMSE 0.936 vs 0.942.
The similar-movie vector is re-normalised. A movie sharing no genre or tag with any trained
movie gets no profile (it is not offered).

Serving policy: a personalised or fold-in list keeps its first k - slots movies from the model
and offers its last `slots` positions to the best-scoring new movies the user has not rated
whose predicted rating is at least `min_predicted` (falls back to the model's items otherwise),
marked `"new": true`. Similar lists: a new movie's own neighbours come from its profile; a new
movie enters a trained movie's similar list in the last position when its cosine beats the
list's last one. Once a retrain gives the movie factors it is an ordinary model item (the
profile is only built for movies the model lacks).

Profiles are built once per (model version, movie snapshot) on first use after a model swap or
a movie refresh and memoised: NumPy, milliseconds for tens of new movies.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from . import ranking
from .movies import MovieCatalog
from .ranking import ServingModel, UserVectors


@dataclass(frozen=True)
class ProfileParams:
    """tag_weight α in [0, 1]; neighbours K ≥ 1 (0: every similar movie); power p > 0;
    tag_first: a new movie with tags takes its neighbours only among the movies sharing one of
    its tags when there are any (genres alone otherwise)."""

    tag_weight: float = 0.75
    neighbours: int = 300
    power: float = 2.0
    tag_first: bool = False


DEFAULT_PARAMS = ProfileParams()

Terms = tuple[Sequence[str], Sequence[str]]  # (genres, tags) of one movie


@dataclass(frozen=True)
class ContentItems:
    ids: np.ndarray  # int64 (n,)
    Q: np.ndarray  # float32 (n, k)
    item_bias: np.ndarray  # float32 (n,)
    Y: np.ndarray | None  # float32 (n, k_rank)
    sim_unit: np.ndarray  # float32 (n, d)

    @cached_property
    def index(self) -> ranking.IdIndex:
        """movieId → row of `ids`."""
        return ranking.IdIndex(self.ids)

    def rows_not_in(self, *movie_ids: np.ndarray | list[int]) -> np.ndarray:
        """(n,) bool: True where the movie is in none of `movie_ids` (each looked up, not
        sorted: O(len) per list)."""
        keep = np.ones(self.ids.shape, dtype=bool)
        for ids in movie_ids:
            keep[self.index.take(ids)[0]] = False
        return keep


def _block(
    trained: Sequence[Sequence[str]], eligible: np.ndarray, new: Sequence[Sequence[str]]
) -> tuple[np.ndarray, np.ndarray]:
    """One TF-IDF block: unit rows for the trained movies (n_trained, V) and the new ones
    (n_new, V) over V = the new movies' terms (other terms only enter the trained norms)."""
    n_ok = int(eligible.sum())
    df: Counter[str] = Counter()
    for i, terms in enumerate(trained):
        if eligible[i]:
            df.update(set(terms))
    vocab = sorted({t for terms in new for t in terms})
    col = {t: j for j, t in enumerate(vocab)}

    def idf(t: str) -> float:
        return math.log((1.0 + n_ok) / (1.0 + df.get(t, 0))) + 1.0

    T = np.zeros((len(trained), len(vocab)), np.float64)
    for i, terms in enumerate(trained):
        if not eligible[i] or not terms:
            continue
        uniq = set(terms)
        norm = math.sqrt(sum(idf(t) ** 2 for t in uniq))
        for t in uniq:
            j = col.get(t)
            if j is not None:
                T[i, j] = idf(t) / norm
    N = np.zeros((len(new), len(vocab)), np.float64)
    for r, terms in enumerate(new):
        for t in set(terms):
            N[r, col[t]] = idf(t)
    N /= np.maximum(np.linalg.norm(N, axis=1, keepdims=True), 1e-12)
    return T, N


def content_weights(
    trained: Sequence[Terms],
    eligible: np.ndarray,
    new: Sequence[Terms],
    params: ProfileParams = DEFAULT_PARAMS,
) -> np.ndarray:
    """Neighbour weights (n_new, n_trained), float64: row r sums to 1 over the `neighbours`
    trained movies most similar to new movie r (see the module docstring), or is all zero when
    no eligible trained movie shares a genre or tag with it. `eligible`: bool (n_trained,)."""
    eligible = np.asarray(eligible, bool)
    if not new:
        return np.zeros((0, len(trained)))
    Tg, Ng = _block([g for g, _ in trained], eligible, [g for g, _ in new])
    Tt, Nt = _block([t for _, t in trained], eligible, [t for _, t in new])
    has_tags = np.asarray([len(t) > 0 for _, t in new])
    alpha = np.where(has_tags, params.tag_weight, 0.0)[:, None]
    cos_t = Nt @ Tt.T
    sim = (1.0 - alpha) * (Ng @ Tg.T) + alpha * cos_t
    sim = np.where(eligible[None, :] & (sim > 1e-9), sim, 0.0)
    if params.tag_first:
        shares = (cos_t > 1e-9) & eligible[None, :]
        sim = np.where(shares.any(axis=1, keepdims=True) & ~shares, 0.0, sim)
    k = params.neighbours
    if 0 < k < sim.shape[1]:
        cut = -np.partition(-sim, k - 1, axis=1)[:, k - 1 : k]  # the k-th largest per row
        # Ties at the cut: keep the lowest indices so exactly k neighbours count.
        above = sim > cut
        at = (sim == cut) & (sim > 0)
        room = k - above.sum(axis=1, keepdims=True)
        at &= np.cumsum(at, axis=1) <= room
        sim = np.where(above | at, sim, 0.0)
    w = sim**params.power
    total = w.sum(axis=1, keepdims=True)
    return np.divide(w, total, out=np.zeros_like(w), where=total > 0)


def build(
    model: ServingModel,
    catalog: MovieCatalog,
    min_ratings: int,
    params: ProfileParams = DEFAULT_PARAMS,
) -> ContentItems | None:
    """Profiles for the catalogue's new movies that `model` has no factors for; None if none."""
    new = [m for m in catalog.new_ids if model.items.get(m) is None]
    if not new:
        return None
    trained: list[Terms] = []
    for mid in model.items.ids.tolist():
        meta = catalog.meta.get(mid)
        trained.append((meta.genres, meta.tags) if meta is not None else ((), ()))
    eligible = model.item_counts >= min_ratings
    W = content_weights(
        trained, eligible, [(catalog.meta[m].genres, catalog.meta[m].tags) for m in new], params
    )
    keep = np.flatnonzero(W.sum(axis=1) > 0)
    if keep.size == 0:
        return None
    W = W[keep]
    sim = (W @ model.sim_unit).astype(np.float32)
    sim /= np.maximum(np.linalg.norm(sim, axis=1, keepdims=True), 1e-12)
    return ContentItems(
        ids=np.asarray([new[i] for i in keep], np.int64),
        Q=(W @ model.Q).astype(np.float32),
        item_bias=(W @ model.item_bias).astype(np.float32),
        Y=(W @ model.Y).astype(np.float32) if model.Y is not None else None,
        sim_unit=sim,
    )


class ContentProfiles:
    """Memo of `build` per (model version, movie snapshot): rebuilt after a swap or refresh."""

    def __init__(self, min_ratings: int) -> None:
        self.min_ratings = min_ratings
        self._memo: dict[tuple[str, float], ContentItems | None] = {}
        self._lock = threading.Lock()  # batch lists run in a worker thread

    def get(self, model: ServingModel | None, catalog: MovieCatalog) -> ContentItems | None:
        if model is None or not catalog.new_ids:
            return None
        key = (model.version, catalog.loaded_at)
        with self._lock:
            if key not in self._memo:
                if len(self._memo) > 8:  # old snapshots: a model swap or a movie refresh ago
                    self._memo.clear()
                self._memo[key] = build(model, catalog, self.min_ratings)
            return self._memo[key]


def _item(catalog: MovieCatalog, mid: int, **extra: Any) -> dict[str, Any]:
    m = catalog.meta.get(mid)
    base = {"movieId": mid, "title": None, "year": None, "genres": []}
    if m is not None:
        base = {"movieId": mid, "title": m.title, "year": m.year, "genres": m.genres}
    return {**base, **extra, "new": True}


def offer_in_list(
    result: dict[str, Any],
    model: ServingModel | None,
    catalog: MovieCatalog,
    content: ContentItems | None,
    user: UserVectors | None,
    rated_ids: np.ndarray,
    *,
    slots: int,
    min_predicted: float,
    genre: str | None,
    exclude: list[int] | None,
) -> None:
    """Put up to `slots` new movies into the last positions of a personalised list (in place)."""
    items = result.get("items") or []
    if content is None or user is None or model is None or slots <= 0 or not items:
        return
    predicted = content.Q @ user.p_u + content.item_bias + np.float32(model.mu + user.b_u)
    keep = predicted >= min_predicted
    keep &= content.rows_not_in(rated_ids, exclude or [], [it["movieId"] for it in items])
    if genre is not None:
        keep &= np.isin(content.ids, catalog.genre_ids.get(genre, np.empty(0, np.int64)))
    if not keep.any():
        return
    cand = np.flatnonzero(keep)
    best = cand[np.lexsort((cand, -predicted[cand]))][: min(slots, len(items))]
    if result.get("order") == "ranking" and content.Y is not None and user.x_u is not None:
        scores = np.zeros(predicted.shape, np.float32)
        scores[best] = content.Y[best] @ user.x_u  # only the offered movies' scores are shown
    else:
        scores = predicted
    strategy = result.get("strategy")
    offered = [
        _item(
            catalog,
            int(content.ids[j]),
            predicted_rating=round(float(ranking.clip_rating(predicted[j])), 3),
            score=float(scores[j]),
            strategy=strategy,
        )
        for j in best
    ]
    result["items"] = items[: len(items) - len(offered)] + offered


def similar_to_new(
    model: ServingModel, catalog: MovieCatalog, content: ContentItems | None, movie_id: int, k: int
) -> dict[str, Any] | None:
    """A new movie's neighbours (trained movies, by its profile vector); None if not new."""
    if content is None:
        return None
    pos = np.flatnonzero(content.ids == movie_id)
    if pos.size == 0:
        return None
    sims = model.sim_unit @ content.sim_unit[pos[0]]
    sims = np.where(model.sim_ok, sims, -np.inf).astype(np.float32)
    idx = ranking.top_k(sims, k)
    items = []
    for i in idx:
        mid = int(model.items.ids[i])
        m = catalog.meta.get(mid)
        items.append(
            {
                "movieId": mid,
                "title": m.title if m else None,
                "year": m.year if m else None,
                "genres": m.genres if m else [],
                "similarity": round(float(sims[i]), 5),
            }
        )
    return {
        "movieId": movie_id,
        "factors": model.sim_source,
        "min_ratings": 0,
        "model_version": model.version,
        "new": True,
        "items": items,
    }


def offer_in_similar(
    result: dict[str, Any],
    model: ServingModel,
    catalog: MovieCatalog,
    content: ContentItems | None,
    movie_id: int,
    genre: str | None = None,
) -> None:
    """A new movie takes a trained movie's last similar slot when it is closer to the query in
    factor space than that last movie is (both compared by factor cosine, whatever measure
    ranked the trained neighbours); with `genre`, only a new movie of that genre."""
    items = result.get("items") or []
    i = model.items.get(movie_id)
    if content is None or i is None or not items:
        return
    sims = content.sim_unit @ model.sim_unit[i]
    if genre is not None:
        meta = [catalog.meta.get(int(m)) for m in content.ids]
        has = np.array([m is not None and genre in m.genres for m in meta])
        sims = np.where(has, sims, -np.inf)
    j = int(np.argmax(sims))
    last = model.items.get(int(items[-1]["movieId"]))
    bar = float(model.sim_unit[i] @ model.sim_unit[last]) if last is not None else 1.0
    if np.isfinite(sims[j]) and float(sims[j]) > bar:
        mid = int(content.ids[j])
        items[-1] = _item(catalog, mid, similarity=round(float(sims[j]), 5))
