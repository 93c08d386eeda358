"""Movies added after the model was trained: item vectors from a content profile (issue 17).

A movie an admin added (catalogue `added_at`) that the serving model has no factors for gets
every item-side vector (explicit q and b, ranking y, similar-movie unit vector) as the weighted
mean of the trained movies that share its genres: weight = Jaccard(genres)², over trained
movies with at least `min_ratings` ratings and Jaccard ≥ 0.5 (all sharing movies when none
reaches 0.5). The similar-movie vector is re-normalised. This is the classic "average of
content neighbours" cold-start profile; it places the new movie where similar movies sit in
factor space, so users whose tastes match its genres score it highly.

Serving policy: a personalised or fold-in list keeps its first k - slots movies from the model
and offers its last `slots` positions to the best-scoring new movies the user has not rated
whose predicted rating is at least `min_predicted` (falls back to the model's items otherwise),
marked `"new": true`. Similar lists: a new movie's own neighbours come from its profile; a new
movie enters a trained movie's similar list in the last position when its cosine beats the
list's last one. Once a retrain gives the movie factors it is an ordinary model item (the
profile is only built for movies the model lacks).

Profiles are built once per (model version, movie snapshot) on first use after a model swap or
a movie refresh and memoised: NumPy, about a millisecond for tens of new movies.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import ranking
from .movies import MovieCatalog
from .ranking import ServingModel, UserVectors

MIN_JACCARD = 0.5


@dataclass(frozen=True)
class ContentItems:
    ids: np.ndarray  # int64 (n,)
    Q: np.ndarray  # float32 (n, k)
    item_bias: np.ndarray  # float32 (n,)
    Y: np.ndarray | None  # float32 (n, k_rank)
    sim_unit: np.ndarray  # float32 (n, d)


def build(model: ServingModel, catalog: MovieCatalog, min_ratings: int) -> ContentItems | None:
    """Profiles for the catalogue's new movies that `model` has no factors for; None if none."""
    new = [m for m in catalog.new_ids if model.items.get(m) is None]
    genres = sorted({g for m in new for g in catalog.meta[m].genres})
    if not new or not genres:
        return None
    col = {g: j for j, g in enumerate(genres)}
    trained = np.zeros((model.n_items, len(genres)), np.float32)
    sizes = np.zeros(model.n_items, np.float32)
    for i, mid in enumerate(model.items.ids.tolist()):
        meta = catalog.meta.get(mid)
        if meta is None:
            continue
        sizes[i] = len(meta.genres)
        for g in meta.genres:
            j = col.get(g)
            if j is not None:
                trained[i, j] = 1.0
    ok = model.item_counts >= min_ratings
    rows: list[tuple[int, np.ndarray]] = []
    for mid in new:
        g = np.zeros(len(genres), np.float32)
        for name in catalog.meta[mid].genres:
            g[col[name]] = 1.0
        inter = trained @ g
        jac = np.where(ok, inter / np.maximum(sizes + g.sum() - inter, 1.0), 0.0)
        w = np.where(jac >= MIN_JACCARD, jac, 0.0)
        if not w.any():
            w = jac
        if not w.any():
            continue
        rows.append((mid, (w * w).astype(np.float64)))
    if not rows:
        return None
    W = np.stack([w / w.sum() for _, w in rows])
    sim = (W @ model.sim_unit).astype(np.float32)
    sim /= np.maximum(np.linalg.norm(sim, axis=1, keepdims=True), 1e-12)
    return ContentItems(
        ids=np.asarray([m for m, _ in rows], np.int64),
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
    blocked = np.union1d(rated_ids, np.asarray(exclude or [], np.int64))
    keep &= ~np.isin(content.ids, blocked)
    keep &= ~np.isin(content.ids, [it["movieId"] for it in items])
    if genre is not None:
        keep &= np.isin(content.ids, catalog.genre_ids.get(genre, np.empty(0, np.int64)))
    if not keep.any():
        return
    order_used = result.get("order")
    if order_used == "ranking" and content.Y is not None and user.x_u is not None:
        scores = content.Y @ user.x_u
    else:
        scores = predicted
    cand = np.flatnonzero(keep)
    best = cand[np.lexsort((cand, -predicted[cand]))][: min(slots, len(items))]
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
