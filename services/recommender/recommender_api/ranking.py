"""Serving-side numerics: the immutable in-memory model, scoring, top-k, fold-in, similar movies.

NumPy only (plus the NumPy kernel for fold-in), no I/O, so every function here is unit-tested
without a server. A `ServingModel` is built once per model version, off the event loop, and never
mutated afterwards: requests that started on one version finish on it even if a reload swaps the
store's reference meanwhile.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from movierec_common import als
from movierec_common import ease as easelib
from movierec_common import genres as genrelib
from movierec_common.data_model import RATING_MAX, RATING_MIN

log = logging.getLogger(__name__)

SimilarSource = Literal["explicit", "ranking", "blend", "cooccurrence"]


class IdIndex:
    """External id → dense row index, vectorised.

    A dict would be simpler for single lookups, but requests map whole rating lists and genre
    lists at once. Ids that are small non-negative integers (MovieLens movie and user ids) get
    a dense id → row table (one gather per id; at 25M rated movie ids 0.8 s against 3.1 s for
    the binary search, measured), others a binary search over a sorted copy.
    """

    # The dense table is used while it costs at most this many int32 slots per id plus 1M.
    TABLE_SLOTS_PER_ID = 8

    def __init__(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        self._sorted = ids[order]
        if self._sorted.size > 1 and np.any(np.diff(self._sorted) == 0):
            raise ValueError("ids must be unique")
        self._order = order.astype(np.int64)
        self.ids = ids
        self._table: np.ndarray | None = None
        if ids.size and self._sorted[0] >= 0:
            top = int(self._sorted[-1])
            if top < self.TABLE_SLOTS_PER_ID * ids.size + 1_000_000:
                self._table = np.full(top + 1, -1, dtype=np.int32)
                self._table[ids] = np.arange(ids.size, dtype=np.int32)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def take(self, ids: np.ndarray | list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(row indices of the found ids, boolean mask of which input ids were found)."""
        q = np.asarray(ids, dtype=np.int64).reshape(-1)
        if self._sorted.size == 0 or q.size == 0:
            return np.empty(0, dtype=np.int64), np.zeros(q.shape, dtype=bool)
        if self._table is not None:
            inside = (q >= 0) & (q < self._table.size)
            rows = self._table[np.where(inside, q, 0)]
            found = inside & (rows >= 0)
            return rows[found].astype(np.int64), found
        pos = np.searchsorted(self._sorted, q)
        pos_c = np.minimum(pos, self._sorted.size - 1)
        found = self._sorted[pos_c] == q
        return self._order[pos_c[found]], found

    def get(self, one_id: int) -> int | None:
        idx, found = self.take(np.asarray([one_id]))
        return int(idx[0]) if found[0] else None


@dataclass(frozen=True, eq=False)
class ServingModel:
    """Everything a request needs from one model version, precomputed once."""

    version: str
    manifest: dict[str, Any]
    mu: float
    users: IdIndex
    items: IdIndex
    user_bias: np.ndarray  # float32 (n_users,)
    item_bias: np.ndarray  # float32 (n_items,)
    P: np.ndarray  # float32 (n_users, k)
    Q: np.ndarray  # float32 (n_items, k), scoring
    Q64: np.ndarray  # float64 (n_items, k), fold-in: same precision as training
    item_bias64: np.ndarray
    item_counts: np.ndarray  # int64 (n_items,)
    explicit_params: Any
    X: np.ndarray | None = None  # ranking (implicit) user factors, float32
    Y: np.ndarray | None = None  # ranking item factors, float32
    Y64: np.ndarray | None = None
    gram: np.ndarray | None = None  # YᵀY in float64, shared by every implicit fold-in
    x_mean: np.ndarray | None = None  # float64 (k_rank,), the average trained user's x_u
    y_mean: np.ndarray | None = None  # float64 (k_rank,), the average movie's y_i
    y_norms: np.ndarray | None = None  # float64 (n_items,), ‖y_i‖ (`ranked_top_k`'s bound)
    y_longest: np.ndarray | None = None  # int64, the BOUND_HEAD_MAX longest y_i, longest first
    implicit_params: Any = None
    sim_source: SimilarSource = "explicit"
    sim_unit: np.ndarray = field(default_factory=lambda: np.empty((0, 0), np.float32))
    sim_ok: np.ndarray = field(default_factory=lambda: np.empty(0, bool))
    rated_indptr: np.ndarray | None = None  # CSR over users: movieIds rated in the data
    # int32 or int64 as the artifact stores them; None when `cooc` holds every rated movie as
    # a model row (`CoRated.complete`), from which `rated_in_data` reads them instead
    rated_movie_ids: np.ndarray | None = None
    rated_since: int | None = None  # ratings missing from the CSR are stamped at or after this
    # aligned with the rated lists: uint8 half-star codes (`star_codes`), or float32 stars
    rated_stars: np.ndarray | None = None
    cooc: CoRated | None = None  # for sim_source == "cooccurrence"
    ease: easelib.EaseModel | None = None  # item-to-item model blended into list and stars
    blend: easelib.BlendParams = easelib.DEFAULT_BLEND
    popularity: np.ndarray | None = None  # float64 (n_items,) `easelib.popularity_scores`
    genre_rows: np.ndarray | None = None  # float32 (n_items, n_genres) ĝ, `genrelib.genre_rows`
    genre_mean: np.ndarray | None = None  # float64 (n_genres,) ḡ, `genrelib.mean_row`
    user_parts: TrainedUserParts | None = None  # trained users' precomputed parts
    loaded_at: float = 0.0
    load_seconds: float = 0.0

    @property
    def has_ranking(self) -> bool:
        """A ranking order exists: ALS ranking factors, EASE, or both (blended)."""
        return self.Y is not None or self.ease is not None

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def has_rated(self) -> bool:
        return self.rated_indptr is not None and self.rated_since is not None

    def rated_in_data(self, u: int) -> np.ndarray:
        """The movieIds user row `u` had rated in the data this model was built from."""
        assert self.rated_indptr is not None
        if self.rated_movie_ids is None:  # held by the co-rating index as model rows
            return self.items.ids[self.rated_rows_in_data(u)]
        return self.rated_movie_ids[self.rated_indptr[u] : self.rated_indptr[u + 1]]

    def rated_rows_in_data(self, u: int) -> np.ndarray | None:
        """The model rows of `rated_in_data(u)` (int32, same order) when every rated movie is a
        model item (`CoRated.complete`), else None."""
        if self.cooc is None or not self.cooc.complete:
            return None
        return self.cooc.user_items[self.cooc.user_indptr[u] : self.cooc.user_indptr[u + 1]]

    def stars_in_data(self, u: int) -> np.ndarray | None:
        """The stars (float32) aligned with `rated_in_data(u)`, or None for artifacts without
        them."""
        if self.rated_stars is None or self.rated_indptr is None:
            return None
        stars = self.rated_stars[self.rated_indptr[u] : self.rated_indptr[u + 1]]
        return stars * np.float32(0.5) if stars.dtype == np.uint8 else stars


def star_codes(stars: np.ndarray) -> np.ndarray:
    """Stars (n,) as uint8 half-star codes 2·r when every one is a multiple of 0.5 in
    [0, 127.5] (the rating scale's are): 1 byte a rating instead of 4, 75 MB less per model
    version at 25M ratings; otherwise the stars as float32, unchanged. Codes (uint8) are
    returned as they are."""
    if stars.dtype == np.uint8:
        return stars  # codes already
    stars = np.asarray(stars, np.float32)
    codes = stars * np.float32(2.0)
    if stars.size and not (
        np.all(codes == np.round(codes)) and codes.min() >= 0 and codes.max() <= 255
    ):
        return stars
    return codes.astype(np.uint8)


COOC_SHRINK = 100.0
TAKE_SLICE = 1 << 20  # ids per IdIndex.take while the co-rating index is built
TRANSPOSE_SLICE = 1 << 22  # ratings per slice of the co-rating index's item side
COOC_POWER = 0.7
COOC_MAX_USERS = 2000


def _transpose(rows: np.ndarray, u_ptr: np.ndarray, i_ptr: np.ndarray) -> np.ndarray:
    """The item side of a user → item-rows CSR (`u_ptr`, `rows`): the users (int32) of each
    item row in CSR order `i_ptr`, ascending, i.e. `user_of[stable_argsort_rows(rows)]`.
    Computed over slices of item rows holding at most TRANSPOSE_SLICE entries each (a single
    larger row is a slice of its own), with each entry's user found from `u_ptr`, so the
    temporaries are a slice's, not those of all 25M ratings."""
    out = np.empty(rows.shape[0], np.int32)
    n_items = i_ptr.shape[0] - 1
    lo = 0
    while lo < n_items:
        hi = int(np.searchsorted(i_ptr, i_ptr[lo] + TRANSPOSE_SLICE, side="right")) - 1
        hi = min(max(hi, lo + 1), n_items)
        if i_ptr[hi] > i_ptr[lo]:
            at = np.flatnonzero((rows >= lo) & (rows < hi))
            at = at[als.stable_argsort_rows(rows[at] - lo)]
            out[i_ptr[lo] : i_ptr[hi]] = np.searchsorted(u_ptr, at, side="right") - 1
        lo = hi
    return out


@dataclass(frozen=True, eq=False)
class CoRated:
    """Who rated what, both ways, for co-rating neighbours (asymmetric cosine, Aiolli 2013):

        sim(i, j) = |U_i ∩ U_j| / (n_i^0.5 · n_j^0.7 + 100)

    The larger exponent on the candidate's count n_j discounts blockbusters that co-occur with
    everything; the shrink term damps pairs with little support. Chosen in bench/bench_recs.py
    on a validation split carved from the training part (among settings that keep Toy Story 2
    in Toy Story's top 3, the best hit rate of co-rated validation pairs). Values lie in
    [0, 1). A movie rated by more than COOC_MAX_USERS users is compared through an evenly
    strided sample of them (counts rescaled), so one request costs at most about
    COOC_MAX_USERS × (ratings per user) gathered indices.
    """

    user_indptr: np.ndarray  # CSR over users (rated lists order): item rows
    user_items: np.ndarray  # int32
    item_indptr: np.ndarray  # CSR over item rows: user positions
    item_users: np.ndarray  # int32
    counts: np.ndarray  # float64 (n_items,): ratings per movie in the lists
    complete: bool = False  # every rated movie is a model item: user_items mirrors the lists

    @classmethod
    def build(cls, rated_indptr: np.ndarray, rated_movie_ids: np.ndarray, items: IdIndex):
        # int32 from the start and looked up in slices: at 25M ratings every int64 temporary
        # of the whole list is 200 MB (IdIndex.take makes several), and this runs beside the
        # serving model during a hot reload.
        n = int(rated_movie_ids.shape[0])
        rows = np.empty(n, np.int32)
        found = np.empty(n, bool)
        for start in range(0, n, TAKE_SLICE):
            end = min(n, start + TAKE_SLICE)
            part, found[start:end] = items.take(rated_movie_ids[start:end])
            rows[start:end][found[start:end]] = part
        n_users = rated_indptr.shape[0] - 1
        complete = bool(found.all())
        if complete:
            u_ptr = np.array(rated_indptr, dtype=np.int64)
        else:
            user_of = np.repeat(np.arange(n_users, dtype=np.int32), np.diff(rated_indptr))[found]
            rows = rows[found]
            u_ptr = als.row_pointers(user_of, n_users)
            del user_of
        del found
        i_ptr = als.row_pointers(rows, len(items))
        item_users = _transpose(rows, u_ptr, i_ptr)
        return cls(u_ptr, rows, i_ptr, item_users, np.diff(i_ptr).astype(np.float64), complete)

    def similarity(self, item: int) -> np.ndarray:
        users = self.item_users[self.item_indptr[item] : self.item_indptr[item + 1]]
        n_i = float(users.size)
        if users.size > COOC_MAX_USERS:
            users = users[:: int(np.ceil(users.size / COOC_MAX_USERS))]
        starts, ends = self.user_indptr[users], self.user_indptr[users + 1]
        lens = ends - starts
        total = int(lens.sum())
        offs = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
        gathered = self.user_items[offs + np.arange(total)]
        co = np.bincount(gathered, minlength=self.counts.shape[0]).astype(np.float64)
        if users.size and users.size < n_i:
            co *= n_i / users.size
        sims = co / (np.sqrt(n_i) * self.counts**COOC_POWER + COOC_SHRINK)
        return np.where(co > 0, sims, -np.inf)  # never rated together: not a neighbour


@dataclass(frozen=True)
class UserVectors:
    """A user's factors in both models: from the trained matrices or solved by fold-in."""

    b_u: float
    p_u: np.ndarray  # float32 (k,)
    x_u: np.ndarray | None  # float32 (k_rank,), None without a ranking model
    folded_in: bool
    ease_scores: np.ndarray | None = None  # float32 (n_items,) x_u·B, None without EASE
    ease_correction: np.ndarray | None = None  # float32 (n_items,) d_u·B (unweighted)
    # float32 (n_items,) the genre part ĝ_i·p_u (`genrelib.scores`), None without EASE or genres
    genre_scores: np.ndarray | None = None


def _params_from(cls: type, values: dict[str, Any] | None, fallback: Any) -> Any:
    """Rebuild kernel params from a manifest, ignoring (with a warning: the model was trained
    by a newer trainer, and this recommender serves it without those settings) keys this
    kernel version does not know."""
    if not values:
        return fallback
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        log.warning("%s: manifest keys %s unknown to this version, ignored", cls.__name__, unknown)
    return dataclasses.replace(fallback, **{k: v for k, v in values.items() if k in names})


def unit_rows(m: np.ndarray) -> np.ndarray:
    """Row-normalised float32 copy; all-zero rows stay zero (cosine 0 with everything)."""
    m = np.asarray(m, dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    return np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)


def whiten(m: np.ndarray) -> np.ndarray:
    """M·(MᵀM)^(-1/2): removes the shared "popularity" direction that dominates implicit factors,
    so cosine compares tastes rather than how often two movies are watched at all."""
    m = np.asarray(m, dtype=np.float64)
    w, v = np.linalg.eigh(m.T @ m)
    return m @ (v * (1.0 / np.sqrt(np.maximum(w, 1e-12)))) @ v.T


BLEND_EXPLICIT_WEIGHT = 0.3


def similarity_vectors(source: SimilarSource, Q: np.ndarray, Y: np.ndarray | None) -> np.ndarray:
    """Unit rows whose dot product is the similarity the source defines.

    `blend` = 0.3·cos(explicit q) + 0.7·cos(whitened ranking y), built as one concatenated unit
    vector so a neighbour query stays a single matrix-vector product.
    """
    if source == "explicit" or Y is None:
        return unit_rows(Q)
    if source == "ranking":
        return unit_rows(Y)
    w = BLEND_EXPLICIT_WEIGHT
    return np.hstack([np.sqrt(w) * unit_rows(Q), np.sqrt(1.0 - w) * unit_rows(whiten(Y))]).astype(
        np.float32
    )


def choose_similar_source(
    preference: str, has_ranking: bool, has_rated: bool = False
) -> SimilarSource:
    """`auto` = `cooccurrence` when the artifact has rated lists, else `blend` when ranking
    factors exist. Measured in bench/bench_recs.py (hit rate of co-rated held-out pairs, seeded
    80/20): asymmetric co-rating cosine 0.072 with Toy Story 2 first for Toy Story, against
    0.046-0.051 and #8-#10 for the factor blend; ranking y ≈ blend ≫ explicit q."""
    if preference == "cooccurrence" or (preference == "auto" and has_rated):
        return "cooccurrence" if has_rated else choose_similar_source("auto", has_ranking)
    if preference == "explicit" or not has_ranking:
        return "explicit"
    if preference == "ranking":
        return "ranking"
    return "blend"


def build_serving_model(
    *,
    version: str,
    manifest: dict[str, Any],
    arrays: dict[str, np.ndarray | None],
    similar_factors: str = "auto",
    similar_min_ratings: int = 0,
    loaded_at: float = 0.0,
    load_seconds: float = 0.0,
    user_parts_bytes: int = 0,
) -> ServingModel:
    """Derive the serving form (float32 copies, id maps, unit vectors, YᵀY) from artifact
    arrays; with `user_parts_bytes` > 0 also the heaviest raters' `TrainedUserParts` within
    that many bytes."""
    Q64 = np.asarray(arrays["Q"], dtype=np.float64)
    item_bias64 = np.asarray(arrays["item_bias"], dtype=np.float64)
    params = manifest.get("params") or {}
    explicit_params = _params_from(als.ExplicitParams, params.get("explicit"), als.DEFAULT_EXPLICIT)
    X = arrays.get("rank_X")
    Y = arrays.get("rank_Y")
    Y64 = gram = implicit_params = x_mean = y_mean = y_norms = y_longest = None
    if Y is not None and X is not None:
        Y64 = np.asarray(Y, dtype=np.float64)
        gram = Y64.T @ Y64
        y_mean = Y64.mean(axis=0)
        y_norms = np.sqrt(np.einsum("ij,ij->i", Y64, Y64))
        y_longest = np.argsort(-y_norms, kind="stable")[:BOUND_HEAD_MAX]
        x_mean = np.asarray(X).mean(axis=0, dtype=np.float64)  # no float64 copy of X
        implicit_params = _params_from(
            als.ImplicitParams, params.get("ranking"), als.DEFAULT_IMPLICIT
        )
        if params.get("ranking") and "negative_at" not in params["ranking"]:
            # Trained before low ratings counted against: fold in the way it was trained.
            implicit_params = dataclasses.replace(implicit_params, negative_at=None)
    else:
        X = Y = None
    counts = arrays.get("item_counts")
    item_counts = (
        np.asarray(counts, dtype=np.int64)
        if counts is not None
        else np.zeros(Q64.shape[0], dtype=np.int64)
    )
    rated_indptr, rated_movie_ids = arrays.get("rated_indptr"), arrays.get("rated_movie_ids")
    rated_since = arrays.get("rated_since")
    rated_stars = arrays.get("rated_stars")
    items_index = IdIndex(np.asarray(arrays["item_ids"]))
    has_rated = rated_indptr is not None and rated_movie_ids is not None
    source = choose_similar_source(similar_factors, Y is not None, has_rated)
    cooc = None
    if source == "cooccurrence":
        cooc = CoRated.build(np.asarray(rated_indptr), np.asarray(rated_movie_ids), items_index)
        # Neighbours come from co-ratings; the factor-space vectors stay for what has no
        # ratings yet (new movies' content profiles compare in factor space).
        factor_source = choose_similar_source("auto", Y is not None)
        sim_unit = similarity_vectors(factor_source, Q64, Y)
        sim_ok = item_counts >= similar_min_ratings
    else:
        sim_unit = similarity_vectors(source, Q64, Y)
        sim_ok = (item_counts >= similar_min_ratings) & (np.abs(sim_unit).sum(axis=1) > 0)
    ease_model = None
    blend = _params_from(easelib.BlendParams, params.get("blend"), easelib.DEFAULT_BLEND)
    if arrays.get("ease_B") is not None and arrays.get("ease_items") is not None:
        ease_model = easelib.EaseModel(
            np.ascontiguousarray(arrays["ease_B"], dtype=np.float32),
            np.asarray(arrays["ease_items"], dtype=np.int64),
            _params_from(easelib.EaseParams, params.get("ease"), easelib.DEFAULT_EASE),
        )
    genre_rows = (
        None
        if ease_model is None or arrays.get("item_genres") is None
        else genrelib.genre_rows(np.asarray(arrays["item_genres"]))
    )
    model = ServingModel(
        version=version,
        manifest=manifest,
        mu=float(np.asarray(arrays["global_mean"])),
        users=IdIndex(np.asarray(arrays["user_ids"])),
        items=items_index,
        user_bias=np.asarray(arrays["user_bias"], dtype=np.float32),
        item_bias=item_bias64.astype(np.float32),
        P=np.ascontiguousarray(arrays["P"], dtype=np.float32),
        Q=np.ascontiguousarray(Q64, dtype=np.float32),
        Q64=Q64,
        item_bias64=item_bias64,
        item_counts=item_counts,
        popularity=easelib.popularity_scores(item_counts),
        explicit_params=explicit_params,
        X=None if X is None else np.ascontiguousarray(X, dtype=np.float32),
        Y=None if Y is None else np.ascontiguousarray(Y, dtype=np.float32),
        Y64=Y64,
        gram=gram,
        x_mean=x_mean,
        y_mean=y_mean,
        y_norms=y_norms,
        y_longest=y_longest,
        implicit_params=implicit_params,
        sim_source=source,
        sim_unit=sim_unit,
        sim_ok=sim_ok,
        cooc=cooc,
        rated_indptr=None if rated_indptr is None else np.asarray(rated_indptr, np.int64),
        # kept in the artifact's integer type (int32: 100 MB less at 25M than an int64 copy),
        # and not at all when the co-rating index holds the same lists as model rows
        rated_movie_ids=None
        if rated_movie_ids is None or (cooc is not None and cooc.complete)
        else np.asarray(rated_movie_ids),
        rated_since=None if rated_since is None else int(np.asarray(rated_since)),
        rated_stars=None if rated_stars is None else star_codes(rated_stars),
        ease=ease_model,
        blend=blend,
        genre_rows=genre_rows,
        genre_mean=None if genre_rows is None else genrelib.mean_row(genre_rows),
        loaded_at=loaded_at,
        load_seconds=load_seconds,
    )
    if user_parts_bytes > 0:
        model = dataclasses.replace(model, user_parts=trained_user_parts(model, user_parts_bytes))
    return model


def ease_vectors(
    model: ServingModel, item_idx: np.ndarray, ratings: np.ndarray, b_u: float
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(x_u·B, d_u·B) over every movie (float32 (n_items,) each) from one user's ratings (row
    indices, stars), or (None, None) without EASE. Fold-in and trained users alike: EASE has
    no user parameters. Products with the gathered rows of B, or with all of B (dense
    m-vectors) for a user who rated most covered movies, whichever moves fewer bytes. Two
    matrix-vector products, not one (2, n)·B product: OpenBLAS runs the latter as a matrix
    product at about half the memory rate (measured: 5.8 ms against 3.7 ms over a 3,650²
    B), and these products are bound by reading B."""
    e = model.ease
    if e is None:
        return None, None
    pos, x = easelib.user_vector(e, item_idx, ratings)
    pos_d, d = easelib.residual_signal(e, item_idx, ratings, model.mu, b_u, model.item_bias64)
    both = np.zeros((2, model.n_items), dtype=np.float32)
    m = e.items.size
    if pos.size or pos_d.size:
        if max(pos.size, pos_d.size) * 4 <= m * 3:
            # Gathering a row and reading it costs ~1.3× reading it in place (measured), so
            # the gather wins until ~3/4 of B's rows are needed. user_vector and
            # residual_signal pick the same covered ratings, in order.
            rows = e.B[pos]
            both[0, e.items] = x @ rows
            both[1, e.items] = d.astype(np.float32) @ rows
        else:
            dense = np.zeros((2, m), dtype=np.float32)
            dense[0, pos] = x
            dense[1, pos_d] = d
            both[0, e.items] = dense[0] @ e.B
            both[1, e.items] = dense[1] @ e.B
    return both[0], both[1]


def with_ease(
    model: ServingModel, vectors: UserVectors, item_idx: np.ndarray, ratings: np.ndarray
) -> UserVectors:
    """`vectors` with the EASE parts (and the genre part, `with_genre`) of the user's current
    ratings (row indices, stars; NaN stars, i.e. unknown values, are left out); unchanged
    without EASE or without a known star."""
    known = np.isfinite(np.asarray(ratings, dtype=np.float64))
    if model.ease is None or not known.any():
        return vectors
    item_idx, ratings = np.asarray(item_idx)[known], np.asarray(ratings)[known]
    s, c = ease_vectors(model, item_idx, ratings, vectors.b_u)
    return with_genre(
        model, dataclasses.replace(vectors, ease_scores=s, ease_correction=c), item_idx, ratings
    )


def with_genre(
    model: ServingModel, vectors: UserVectors, item_idx: np.ndarray, ratings: np.ndarray
) -> UserVectors:
    """`vectors` with the genre part of the user's current ratings (row indices, known stars):
    ĝ·p_u over every movie (`genrelib.scores`, O(n_ratings·n_genres + n_items·n_genres));
    unchanged when the model has no genres or weighs the part 0."""
    if model.genre_rows is None or model.blend.genre == 0:
        return vectors
    g = genrelib.scores(model.genre_rows, item_idx, ratings)
    return dataclasses.replace(vectors, genre_scores=g)


@dataclass(frozen=True, eq=False)
class TrainedUserParts:
    """What a trained user's list needs from their ratings in the model's data, computed once
    per model version instead of on every request:

    - `ease_scores`, `ease_corrections`: `ease_vectors` (x_u·B, d_u·B) over the movies EASE
      covers (`model.ease.items`; both are 0 elsewhere, so not stored). A heavy rater's
      product reads most of B (7 of the 15 ms a 2,698-rating user's list cost, measured); it
      is linear in the ratings, so `trained_with_ease` adds only the difference the ratings
      since the model make (a few rows of B).
    - `w_inv`: W⁻¹ of the ranking model's user half-step over those ratings (Hu, Koren &
      Volinsky's W = YᵀY + Σ_j (c_j − 1) y_j y_jᵀ + λI), which "because you rated" splits the
      score with (`ranking_contributions`): O(n_r·k² + k³) per request otherwise.

    Rows for the users with the most ratings first, as many as the memory budget holds;
    `slot[u]` is user row u's row here, or −1 (computed per request). None where the model has
    no EASE (scores) or no ranking factors (`w_inv`)."""

    slot: np.ndarray  # int32 (n_users,)
    ease_scores: np.ndarray | None  # float32 (n_slots, len(ease.items)), read-only
    ease_corrections: np.ndarray | None  # float32 (n_slots, len(ease.items)), read-only
    w_inv: np.ndarray | None  # float64 (n_slots, k, k), read-only

    @property
    def n_users(self) -> int:
        return int(np.count_nonzero(self.slot >= 0))

    @property
    def nbytes(self) -> int:
        parts = (self.ease_scores, self.ease_corrections, self.w_inv, self.slot)
        return int(sum(a.nbytes for a in parts if a is not None))


def data_ratings(model: ServingModel, u: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(item rows, stars) of user row u's ratings in the model's data, or None when the
    artifact has no rated lists or no stars."""
    stars = model.stars_in_data(u) if model.has_rated else None
    if stars is None:
        return None
    rows = model.rated_rows_in_data(u)
    if rows is not None:
        return rows.astype(np.int64), stars
    idx, found = model.items.take(model.rated_in_data(u))
    return idx, stars[found]


def trained_user_parts(model: ServingModel, budget_bytes: int) -> TrainedUserParts | None:
    """`TrainedUserParts` for the heaviest raters within `budget_bytes` (2 · len(ease.items)
    float32 with EASE, k² float64 with ranking factors, per user), or None without rated lists and
    stars in the artifact, without EASE and ranking factors, or with a budget under one
    user. Costs one request's worth of those products per chosen user (at load, off the
    loop)."""
    covered = None if model.ease is None else model.ease.items
    with_ease = covered is not None
    with_w = model.Y64 is not None and model.gram is not None
    if not (with_ease or with_w) or model.rated_stars is None or not model.has_rated:
        return None
    k = 0 if model.Y64 is None else model.Y64.shape[1]
    m = 0 if covered is None else covered.size
    per_user = 2 * m * 4 + (k * k * 8 if with_w else 0)
    if per_user == 0:
        return None
    assert model.rated_indptr is not None
    counts = np.diff(model.rated_indptr)
    n_slots = min(int(budget_bytes // per_user), int(np.count_nonzero(counts)))
    if n_slots <= 0:
        return None
    chosen = np.sort(np.argsort(-counts, kind="stable")[:n_slots])
    slot = np.full(counts.size, -1, dtype=np.int32)
    slot[chosen] = np.arange(n_slots, dtype=np.int32)
    scores = np.zeros((n_slots, m), np.float32) if with_ease else None
    corrections = np.zeros((n_slots, m), np.float32) if with_ease else None
    w_inv = np.zeros((n_slots, k, k), np.float64) if with_w else None
    for row, u in enumerate(chosen.tolist()):
        rows = data_ratings(model, u)
        assert rows is not None  # has_rated and rated_stars checked above
        idx, stars = rows
        if scores is not None and corrections is not None:
            known = np.isfinite(stars)
            s, c = ease_vectors(model, idx[known], stars[known], float(model.user_bias[u]))
            assert s is not None and c is not None
            scores[row], corrections[row] = s[covered], c[covered]
        if w_inv is not None:
            w_inv[row] = np.linalg.inv(_normal_matrix(model, idx, stars)[0])
    for a in (scores, corrections, w_inv):
        if a is not None:
            a.flags.writeable = False
    return TrainedUserParts(slot, scores, corrections, w_inv)


def trained_w_inv(model: ServingModel, user_id: int) -> np.ndarray | None:
    """The precomputed W⁻¹ (k, k) of a trained user's data ratings, or None (not held)."""
    parts = model.user_parts
    if parts is None or parts.w_inv is None:
        return None
    u = model.users.get(user_id)
    if u is None or parts.slot[u] < 0:
        return None
    return parts.w_inv[parts.slot[u]]


def _signal_change(
    model: ServingModel,
    before: tuple[np.ndarray, np.ndarray],
    after: tuple[np.ndarray, np.ndarray],
    b_u: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(positions in B, Δx float32, Δd float32) between two rating lists (item rows, known
    stars) of one user, over the positions whose like signal or residual changed; None when
    nothing did. x_u·B and d_u·B are linear in (x, d), so the parts of `after` are those of
    `before` plus Δx·B[pos] and Δd·B[pos]."""
    e = model.ease
    assert e is not None
    sides = []
    for idx, stars in (before, after):
        pos, x = easelib.user_vector(e, idx, stars)
        _, d = easelib.residual_signal(e, idx, stars, model.mu, b_u, model.item_bias64)
        sides.append((pos, x, d))
    union = np.union1d(sides[0][0], sides[1][0])
    dx = np.zeros(union.size, dtype=np.float64)
    dd = np.zeros(union.size, dtype=np.float64)
    for sign, (pos, x, d) in ((-1.0, sides[0]), (1.0, sides[1])):
        at = np.searchsorted(union, pos)
        dx[at] += sign * x
        dd[at] += sign * d
    changed = (dx != 0) | (dd != 0)
    if not changed.any():
        return None
    return union[changed], dx[changed].astype(np.float32), dd[changed].astype(np.float32)


def trained_with_ease(
    model: ServingModel,
    u: int,
    vectors: UserVectors,
    item_idx: np.ndarray,
    ratings: np.ndarray,
) -> UserVectors:
    """`with_ease` for trained user row u: from the precomputed parts of their data's ratings
    plus the difference to their current ratings (item rows, stars; NaN = unknown, left out)
    when `model.user_parts` holds them, computed in full otherwise. Same values as `with_ease`
    up to float32 rounding."""
    parts = model.user_parts
    slot = -1 if parts is None else int(parts.slot[u])
    known = np.isfinite(np.asarray(ratings, dtype=np.float64))
    if (
        parts is None
        or parts.ease_scores is None
        or parts.ease_corrections is None
        or slot < 0
        or model.ease is None
        or not known.any()
    ):
        return with_ease(model, vectors, item_idx, ratings)
    current = (np.asarray(item_idx)[known], np.asarray(ratings)[known])
    data = data_ratings(model, u)
    assert data is not None  # parts are only built from rated lists with stars
    data_idx, data_stars = data
    data_known = np.isfinite(data_stars)
    change = _signal_change(
        model, (data_idx[data_known], data_stars[data_known]), current, vectors.b_u
    )
    s_cov, c_cov = parts.ease_scores[slot], parts.ease_corrections[slot]
    if change is not None:
        pos, dx, dd = change
        rows = model.ease.B[pos]
        s_cov, c_cov = s_cov + dx @ rows, c_cov + dd @ rows
    s = np.zeros(model.n_items, np.float32)
    c = np.zeros(model.n_items, np.float32)
    s[model.ease.items], c[model.ease.items] = s_cov, c_cov
    return with_genre(
        model, dataclasses.replace(vectors, ease_scores=s, ease_correction=c), *current
    )


def trained_user(model: ServingModel, user_id: int) -> UserVectors | None:
    u = model.users.get(user_id)
    if u is None:
        return None
    x_u = model.X[u] if model.X is not None else None
    return UserVectors(float(model.user_bias[u]), model.P[u], x_u, folded_in=False)


def fold_in(model: ServingModel, item_idx: np.ndarray, ratings: np.ndarray) -> UserVectors | None:
    """The exact ALS user half-step against the fixed item factors, one solve per model.

    `item_idx` must already be restricted to movies the model knows; None when nothing is left.
    """
    item_idx = np.asarray(item_idx, dtype=np.int32)
    ratings = np.asarray(ratings, dtype=np.float32)
    if item_idx.size == 0:
        return None
    b_u, p_u = als.fold_in_explicit(
        model.Q64, model.item_bias64, model.mu, item_idx, ratings, model.explicit_params
    )
    x_u = None
    if model.Y64 is not None:
        x_u = als.fold_in_implicit(
            model.Y64, item_idx, ratings, model.implicit_params, gram=model.gram
        )
        if not np.any(x_u):
            x_u = _fold_in_from_average(model, item_idx, ratings)
        x_u = np.asarray(x_u, dtype=np.float32)
    vectors = UserVectors(float(b_u), np.asarray(p_u, dtype=np.float32), x_u, folded_in=True)
    return with_ease(model, vectors, item_idx, ratings)


def _fold_in_from_average(
    model: ServingModel, item_idx: np.ndarray, ratings: np.ndarray
) -> np.ndarray:
    """x_u for a user whose every rating counts against (x_u = 0 in the plain half-step, so
    nothing could be ordered): the same normal equations with the ridge centred on the average
    trained user instead of 0, (YᵀY + Yᵀ(C−I)Y + λI) x = Yᵀ C p + λ·x̄ with p = 0 here. The
    user starts from the crowd's taste and is pushed away from what they disliked (a new user
    who rated eight horror films 0.5★ gets the crowd favourites minus the horror direction)."""
    assert model.Y64 is not None and model.gram is not None and model.x_mean is not None
    params = model.implicit_params
    signal = als.implicit_signal(np.asarray(ratings, np.float32), params.negative_at)
    y_r = model.Y64[np.asarray(item_idx, np.int64)]
    c = 1.0 + params.alpha * np.abs(signal)
    w = model.gram + (y_r * (c - 1.0)[:, None]).T @ y_r + params.reg * np.eye(y_r.shape[1])
    return np.linalg.solve(w, params.reg * model.x_mean)


def predicted_ratings(model: ServingModel, user: UserVectors) -> np.ndarray:
    """μ + b_u + b_i + p_u·q_i (+ γ·(d_u·B)_i with EASE) for every movie, float32, unclipped."""
    pred = model.Q @ user.p_u + (model.item_bias + np.float32(model.mu + user.b_u))
    if user.ease_correction is not None and model.blend.rating:
        pred = pred + np.float32(model.blend.rating) * user.ease_correction
    return pred


def _als_part(model: ServingModel, user: UserVectors) -> np.ndarray | None:
    if model.Y is None or user.x_u is None:
        return None
    return model.Y @ user.x_u


@dataclass(frozen=True)
class PartScales:
    """For one user's blended order: the factor w/σ each part's raw scores (x_u·y_i, x_u·B,
    predicted stars, the genre part) enter the blend with, None where the part is absent or
    weighted 0 (`ease.blend_with_scales`). The explanation multiplies each part's exact split
    by it."""

    als: float | None
    ease: float | None
    stars: float | None
    genre: float | None = None


def ranking_scores(
    model: ServingModel, user: UserVectors, predicted: np.ndarray | None = None
) -> np.ndarray:
    """The served order for every movie (higher = list it first): the ranking model's x_u·y_i,
    or with EASE `ease.blend_ranking` of x_u·y_i, x_u·B and the predicted stars (the
    combination `make bench-train` and the trainer's evaluation score). `predicted` is
    `predicted_ratings(model, user)` when the caller has it already."""
    return blended_scores(model, user, predicted)[0]


def blended_scores(
    model: ServingModel, user: UserVectors, predicted: np.ndarray | None = None
) -> tuple[np.ndarray, PartScales | None]:
    """(`ranking_scores` (n_items,) float32, the blend's `PartScales`, None without EASE).
    Each part is computed once here; `explain_blend` takes the scales instead of recomputing
    the parts. Raises ValueError when the model has neither ranking factors nor EASE."""
    als_part = _als_part(model, user)
    if user.ease_scores is None:
        if als_part is None:
            raise ValueError("model has no ranking factors")
        return als_part, None
    stars = predicted_ratings(model, user) if predicted is None else predicted
    scores, scales = easelib.blend_with_scales(
        als_part,
        user.ease_scores,
        stars,
        model.blend,
        popularity=model.popularity,
        genre=user.genre_scores,
    )
    als_s, ease_s, stars_s, genre_s = (None if x is None else float(x[0]) for x in scales)
    return scores.astype(np.float32), PartScales(als_s, ease_s, stars_s, genre_s)


def clip_rating(values: np.ndarray | float) -> np.ndarray:
    return np.clip(values, RATING_MIN, RATING_MAX)


ARGMAX_TOP_K = 24  # top_k by repeated argmax up to this k; argpartition above


def top_k(
    scores: np.ndarray,
    k: int,
    exclude: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
) -> np.ndarray:
    """Indices of the k best scores, best first, never an excluded one, only allowed ones.

    `allowed` (indices) restricts the candidates (genre filter); `exclude` (indices) removes
    rated and caller-excluded movies. O(k·n) by repeated argmax for the usual small k,
    argpartition (O(n) plus O(k log k)) for larger ones; the same result either way.
    """
    if allowed is not None:
        cand = np.asarray(allowed, dtype=np.int64)
        if exclude is not None and exclude.size:
            cand = cand[~np.isin(cand, exclude)]
        vals = scores[cand].astype(np.float32, copy=True)
    else:
        cand = None
        vals = scores.astype(np.float32, copy=True)
        if exclude is not None and exclude.size:
            vals[exclude] = -np.inf
    finite = np.isfinite(vals)
    n_ok = int(np.count_nonzero(finite))
    k = min(k, n_ok)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k <= ARGMAX_TOP_K and vals.size > 4 * k:
        # k passes of argmax (which returns the first of equal values), each taken one set to
        # −inf: the first k of the stable sort, best first, in k·n SIMD comparisons (k = 10
        # over 51k movies: 0.08 ms, against 0.73 ms with argpartition).
        vals[~finite] = -np.inf
        best = np.empty(k, dtype=np.int64)
        for i in range(k):
            best[i] = j = int(np.argmax(vals))
            vals[j] = -np.inf
        return best if cand is None else cand[best]
    if k < vals.size:
        # argpartition picks arbitrarily among values tied with the k-th: take everything
        # strictly better, then the tied ones by index, so the set (not just the order) is
        # the first k of a stable sort: identical across k, candidate sizes and replicas.
        kth = vals[np.argpartition(-vals, k - 1)[k - 1]]
        above = np.flatnonzero(vals > kth)
        part = np.concatenate([above, np.flatnonzero(vals == kth)[: k - above.size]])
    else:
        part = np.arange(vals.size)
    best = part[np.lexsort((part, -vals[part]))]
    return best if cand is None else cand[best]


@dataclass(frozen=True)
class RankedTop:
    """`ranked_top_k`'s answer: the listed movies (item indices, best first), their ranking
    scores (float32, as `ranking_scores` gives them) and the blend's `PartScales` (None when
    the order is the ranking factors alone)."""

    best: np.ndarray
    scores: np.ndarray
    scales: PartScales | None


BOUND_MIN_ITEMS = 4096  # below this many movies every x_u·y_i is computed
BOUND_HEAD = 8  # the first k-th best is taken among the max(BOUND_HEAD·k, 512) longest y_i
BOUND_HEAD_MAX = 4096  # at most this many of them (ServingModel.y_longest)
BOUND_SLACK = 1e-4  # float32 rounding room in the bound, relative to the ALS part's range


def ranked_top_k(
    model: ServingModel,
    user: UserVectors,
    k: int,
    *,
    predicted: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
) -> RankedTop:
    """`top_k(ranking_scores(model, user), k, exclude, allowed)` with those scores, computing
    x_u·y_i only for the movies that can reach the list.

    Each movie's blended score is a·(x_u·y_i) + r_i, where r_i holds the EASE and stars parts
    and the ALS part's centring (all cheap) and a = w_als/σ_als > 0; since x_u·y_i ≤
    ‖x_u‖‖y_i‖ (Cauchy–Schwarz), r_i + a‖x_u‖‖y_i‖ bounds it. The exact scores of the movies
    with the longest y_i (the popular ones, where lists come from: a threshold as good as the
    highest bounds', measured, without an O(n) selection) give a k-th best t, and only the
    movies whose bound reaches t are scored: the length-based pruning of LEMP (Teflioudi, Gemulla &
    Mykytiuk, "LEMP: Fast Retrieval of Large Entries in a Matrix Product", SIGMOD 2015). The
    ALS part's mean and σ over all n movies come from ȳ and YᵀY (mean x_u·ȳ, variance
    x_uᵀ(YᵀY/n)x_u − mean²), not from n products. Same list as the full computation, scores
    equal to float32 rounding. At 50,906 movies × rank 128 a list scores a median of 1,368
    movies (90th percentile 4,569) instead of 50,906.

    `predicted` is `predicted_ratings(model, user)` when the caller has it. Raises ValueError
    when the model has neither ranking factors nor EASE (as `blended_scores`).
    """
    x = user.x_u
    blend = model.blend
    if (
        model.Y is None
        or x is None
        or model.y_norms is None
        or model.y_mean is None
        or model.y_longest is None
        or model.gram is None
        or model.n_items < BOUND_MIN_ITEMS
        or (user.ease_scores is not None and blend.als == 0)
    ):
        scores, scales = blended_scores(model, user, predicted)
        best = top_k(scores, k, exclude=exclude, allowed=allowed)
        return RankedTop(best, scores[best], scales)
    if k <= 0:
        return RankedTop(np.empty(0, np.int64), np.empty(0, np.float32), None)
    x64 = x.astype(np.float64)
    n = model.n_items
    if user.ease_scores is None:
        a, rest, scales = 1.0, np.zeros(n), None
    else:
        mean = float(model.y_mean @ x64)
        var = float(x64 @ model.gram @ x64) / n - mean * mean
        a = blend.als / (math.sqrt(var) if var > 0 else 1.0)
        stars = predicted_ratings(model, user) if predicted is None else predicted
        genre = None if blend.genre == 0 else user.genre_scores
        if blend.ease == 0 and blend.stars == 0 and genre is None:
            rest, ease_s, stars_s, genre_s = np.zeros(n), None, None, None
        else:
            rest, (_, *vs) = easelib.blend_with_scales(
                None, user.ease_scores, stars, blend, genre=genre
            )
            ease_s, stars_s, genre_s = (None if v is None else float(v[0]) for v in vs)
        if blend.popularity != 0 and model.popularity is not None:
            rest = rest + blend.popularity * model.popularity
        rest = rest - a * mean
        scales = PartScales(a, ease_s, stars_s, genre_s)
    reach = a * float(np.linalg.norm(x64))
    bound = rest + reach * model.y_norms
    if allowed is not None:
        outside = np.ones(n, dtype=bool)
        outside[np.asarray(allowed, dtype=np.int64)] = False
        bound[outside] = -np.inf
    if exclude is not None and exclude.size:
        bound[exclude] = -np.inf

    def exact(idx: np.ndarray) -> np.ndarray:
        s = a * (model.Y[idx] @ x).astype(np.float64) + rest[idx]
        return s.astype(np.float32)

    head = model.y_longest[: max(BOUND_HEAD * k, 512)]
    head = head[np.isfinite(bound[head])]
    if head.size >= k:
        head_scores = exact(head)
        t = float(np.partition(head_scores, head.size - k)[head.size - k])
        slack = BOUND_SLACK * (abs(t) + reach * float(model.y_norms[model.y_longest[0]]))
        cand = np.flatnonzero(bound >= t - slack)
    else:  # a filter that leaves few popular movies: score every allowed one
        cand = np.flatnonzero(np.isfinite(bound))
    scores = exact(cand)
    local = top_k(scores, k)
    return RankedTop(cand[local], scores[local], scales)


def similar(
    model: ServingModel, item: int, k: int, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(indices, cosine) of the k nearest trustworthy movies to `item`, itself excluded, only
    among `allowed` rows when given (genre filter)."""
    sims = model.cooc.similarity(item) if model.cooc is not None else None
    if sims is None:
        sims = model.sim_unit @ model.sim_unit[item]
    sims = np.where(model.sim_ok, sims, -np.inf).astype(np.float32)
    sims[item] = -np.inf
    idx = top_k(sims, k, allowed=allowed)
    idx = idx[np.isfinite(sims[idx])]
    return idx, sims[idx]


EXPLAIN_TOP = 3


def explain_ranking(
    model: ServingModel,
    targets: np.ndarray,
    rated_idx: np.ndarray,
    stars: np.ndarray,
    top: int = EXPLAIN_TOP,
    w_inv: np.ndarray | None = None,
) -> list[list[tuple[int, float]]]:
    """For each target movie, the rated movies that contributed most to its ranking score.

    Hu, Koren & Volinsky (2008) §5, as in implicit's `explain`: the user half-step gives
    x_u = W⁻¹ Σ_j c_j p_j y_j with W = YᵀY + Σ_j (c_j − 1) y_j y_jᵀ + λI, so the score
    y_iᵀ x_u splits exactly into Σ_j c_j p_j · y_iᵀ W⁻¹ y_j over the rated movies j.
    `targets` and `rated_idx` are row indices (n_t,) and (n_r,); `stars` (n_r,) the ratings.
    Returns, per target, up to `top` (rated row, share) pairs with a positive contribution,
    largest first; share = contribution / the sum of that target's positive contributions.
    Cost O(n_r·k² + k³ + n_t·n_r·k): a 2,698-rating user at k=20 is well under a millisecond.
    """
    if rated_idx.size == 0 or targets.size == 0:
        return [[] for _ in range(int(targets.size))]
    if model.Y64 is None:
        if model.ease is None:
            return [[] for _ in range(int(targets.size))]
        return _top_contributions(
            ease_contributions(model, targets, rated_idx, stars), rated_idx, top
        )
    return _top_contributions(
        ranking_contributions(model, targets, rated_idx, stars, w_inv), rated_idx, top
    )


def ease_contributions(
    model: ServingModel, targets: np.ndarray, rated_idx: np.ndarray, stars: np.ndarray
) -> np.ndarray:
    """(n_t, n_r) x_uj·B_ji (EASE's exact split: row i sums to (x_u·B)_i); zero for movies
    EASE does not cover."""
    assert model.ease is not None
    e = model.ease
    out = np.zeros((targets.size, rated_idx.size), dtype=np.float64)
    t_pos, t_ok = easelib.covered_positions(e, np.asarray(targets, np.int64))
    r_pos, r_ok = easelib.covered_positions(e, np.asarray(rated_idx, np.int64))
    if not t_ok.any() or not r_ok.any():
        return out
    x = easelib.like_signal(np.asarray(stars)[r_ok], e.params).astype(np.float64)
    sub = e.B[np.ix_(r_pos[r_ok], t_pos[t_ok])].astype(np.float64)  # (n_r', n_t')
    block = (sub * x[:, None]).T
    out[np.ix_(np.flatnonzero(t_ok), np.flatnonzero(r_ok))] = block
    return out


def explain_blend(
    model: ServingModel,
    user: UserVectors,
    targets: np.ndarray,
    rated_idx: np.ndarray,
    stars: np.ndarray,
    top: int = EXPLAIN_TOP,
    predicted: np.ndarray | None = None,
    scales: PartScales | None = None,
    w_inv: np.ndarray | None = None,
) -> list[list[tuple[int, float]]]:
    """ "Because you rated …" for the blended order (`ranking_scores` with EASE): each part's
    exact per-rating split (ALS: `ranking_contributions`; EASE: `ease_contributions`; stars:
    `explicit_contributions` plus γ·d_uj·B_ji; genre: `genrelib.contributions`, the liked
    movies' shared genres, centred over the movies as the blend centres the part) weighted as
    the blend weights it, w / σ of that part's scores over the movies, so the shares follow
    what moved the served score.
    `predicted` is `predicted_ratings(model, user)` and `scales` the `blended_scores` scales
    when the caller has them already (computed here otherwise); `w_inv` as in
    `ranking_contributions`."""
    if rated_idx.size == 0 or targets.size == 0 or user.ease_scores is None:
        return explain_ranking(model, targets, rated_idx, stars, top, w_inv)
    if scales is None:
        _, scales = blended_scores(model, user, predicted)
    assert scales is not None
    total = np.zeros((targets.size, rated_idx.size), dtype=np.float64)
    if scales.als is not None:
        total += scales.als * ranking_contributions(model, targets, rated_idx, stars, w_inv)
    ease_c = ease_contributions(model, targets, rated_idx, stars)
    if scales.ease is not None:
        total += scales.ease * ease_c
    if scales.stars is not None:
        star_c = explicit_contributions(model, user, targets, rated_idx, stars)
        if model.blend.rating and model.ease is not None:
            star_c = star_c + model.blend.rating * _ease_residual_contributions(
                model, user, rated_idx, stars, ease_c
            )
        total += scales.stars * star_c
    if scales.genre is not None and model.genre_rows is not None:
        total += scales.genre * genrelib.contributions(
            model.genre_rows, targets, rated_idx, stars, model.genre_mean
        )
    # "Because you rated" names movies the user liked: a disliked film's part (pushing away
    # from its neighbours) can be positive for a far-away movie, but it is no reason to watch.
    liked = easelib.like_signal(np.asarray(stars), model.ease.params) > 0 if model.ease else None
    if liked is not None:
        total[:, ~liked] = 0.0
    return _top_contributions(total, rated_idx, top)


def _ease_residual_contributions(
    model: ServingModel,
    user: UserVectors,
    rated_idx: np.ndarray,
    stars: np.ndarray,
    base: np.ndarray,
) -> np.ndarray:
    """(n_t, n_r) d_uj·B_ji: the rating correction's split over the rated movies, from `base`
    = `ease_contributions(model, targets, rated_idx, stars)` (x_uj·B_ji) divided back by x_uj."""
    assert model.ease is not None
    like = easelib.like_signal(np.asarray(stars), model.ease.params).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_b = np.where(like != 0, base / np.where(like != 0, like, 1.0)[None, :], 0.0)
    d = (
        np.asarray(stars, np.float64)
        - model.mu
        - user.b_u
        - model.item_bias64[np.asarray(rated_idx, np.int64)]
    )
    return per_b * d[None, :]


def _confidence(model: ServingModel, stars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(c_j, c_j p_j) per rating (n_r,): confidence 1 + α·|signal| and its liked part."""
    params = model.implicit_params
    signal = als.implicit_signal(np.asarray(stars, np.float32), params.negative_at)
    c = 1.0 + params.alpha * np.abs(signal)
    return c, np.where(signal > 0, c, 0.0)


def _normal_matrix(
    model: ServingModel, rated_idx: np.ndarray, stars: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(W (k, k) float64, c_j p_j (n_r,), y_r (n_r, k) float32) of the ranking model's user
    half-step over the rated movies: W = YᵀY + Σ_j (c_j − 1) y_j y_jᵀ + λI."""
    assert model.Y64 is not None and model.gram is not None and model.Y is not None
    params = model.implicit_params
    c, cp = _confidence(model, stars)
    # The rank-k update Σ_j (c_j − 1) y_j y_jᵀ is O(n_r·k²), most of a heavy rater's cost:
    # formed in float32 (the factors' own precision) over the ratings with c_j ≠ 1 only, then
    # added to the float64 Gram matrix for the solve.
    y_r = model.Y[rated_idx]  # (n_r, k) float32
    k = y_r.shape[1]
    moved = np.flatnonzero(c != 1.0)
    y_m = y_r[moved]
    update = (y_m * (c[moved] - 1.0).astype(np.float32)[:, None]).T @ y_m
    w = model.gram + update.astype(np.float64) + params.reg * np.eye(k)
    return w, cp, y_r


def ranking_contributions(
    model: ServingModel,
    targets: np.ndarray,
    rated_idx: np.ndarray,
    stars: np.ndarray,
    w_inv: np.ndarray | None = None,
) -> np.ndarray:
    """(n_t, n_r) c_j p_j · y_iᵀ W⁻¹ y_j; row i sums to y_iᵀ x_u of the folded-in user.
    `w_inv`: W⁻¹ of these ratings when precomputed (`trained_w_inv`), else solved here."""
    assert model.Y64 is not None
    if w_inv is None:
        w, cp, y_r = _normal_matrix(model, rated_idx, stars)
        left = np.linalg.solve(w, model.Y64[targets].T).T.astype(np.float32)  # (n_t, k)
    else:
        assert model.Y is not None
        cp = _confidence(model, stars)[1]
        y_r = model.Y[rated_idx]
        left = (model.Y64[targets] @ w_inv).astype(np.float32)  # W symmetric: (W⁻¹ y_i)ᵀ
    return (left @ y_r.T).astype(np.float64) * cp[None, :]


def _top_contributions(
    contrib: np.ndarray, rated_idx: np.ndarray, top: int
) -> list[list[tuple[int, float]]]:
    """Per row of (n_t, n_r) contributions: the `top` positive ones as (rated row, share of the
    row's positive total), largest first, ties to the lower rated index. All rows at once, by
    `top` passes of a row-wise argmax (which returns the first of equal values): O(top·n_r) per
    row, where a partition or a sort of a 2,700-rating user's rows cost several times more."""
    n_t, n_r = contrib.shape
    work = np.where(contrib > 0, contrib, 0.0)
    total = work.sum(axis=1)
    total[total == 0] = 1.0
    at = np.arange(n_t)
    rated = np.asarray(rated_idx)
    out: list[list[tuple[int, float]]] = [[] for _ in range(n_t)]
    for _ in range(min(top, n_r)):
        best = work.argmax(axis=1)
        value = work[at, best]
        work[at, best] = -1.0  # taken; the positives left are all larger
        share = value / total
        for r, j, v, s in zip(
            at.tolist(), rated[best].tolist(), value.tolist(), share.tolist(), strict=True
        ):
            if v > 0:
                out[r].append((int(j), s))
    return out


def explain_explicit(
    model: ServingModel,
    user: UserVectors,
    targets: np.ndarray,
    rated_idx: np.ndarray,
    stars: np.ndarray,
    top: int = EXPLAIN_TOP,
) -> list[list[tuple[int, float]]]:
    """The same split for the explicit model's p_u = (Q_JᵀQ_J + λ'I)⁻¹ Q_Jᵀ (r − μ − b_u − b_i):
    movie j adds q_iᵀ W⁻¹ q_j · residual_j to the interaction part of the predicted rating."""
    if rated_idx.size == 0 or targets.size == 0:
        return [[] for _ in range(int(targets.size))]
    contrib = explicit_contributions(model, user, targets, rated_idx, stars)
    return _top_contributions(contrib, rated_idx, top)


def explicit_contributions(
    model: ServingModel,
    user: UserVectors,
    targets: np.ndarray,
    rated_idx: np.ndarray,
    stars: np.ndarray,
) -> np.ndarray:
    """(n_t, n_r) residual_j · q_iᵀ W⁻¹ q_j; row i sums to q_iᵀ p_u of the folded-in user."""
    params = model.explicit_params
    q_r = model.Q64[rated_idx]
    k = q_r.shape[1]
    lam = params.reg * rated_idx.size if params.reg_scaled else params.reg
    resid = np.asarray(stars, np.float64) - model.mu - user.b_u - model.item_bias64[rated_idx]
    w = q_r.T @ q_r + lam * np.eye(k)
    left = np.linalg.solve(w, model.Q64[targets].T).T
    return (left @ q_r.T) * resid[None, :]
