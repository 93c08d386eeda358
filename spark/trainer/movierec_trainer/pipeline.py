"""One training job: split → choose the explicit λ, EASE's λ, the EASE rating term's weight,
the ranking model's λ and the served blend's weights, on validation carved from the training
part (`movierec_trainer.tune`, when `TrainConfig.reg_candidates` / `ease_reg_candidates` /
`ranking_reg_candidates`) → fit the models → evaluate →
(optionally refit on all) → arrays and manifest ready for `movierec_common.artifacts.save_model`.

The CLI (`train`, `retrain`) and the worker all call `train_job`; they differ only in where the
ratings come from and what happens to the outcome (publish now, or pass a validation gate first).

What gets published. With a holdout, the metrics describe the model trained on the training
part. `publish_full=False` (the CLI default) publishes exactly that model, so the manifest's
numbers are the published model's own. `publish_full=True` (the worker default; `--publish-full`
on the CLI) then refits the same parameters on ALL ratings and publishes the refit — serving
wants every rating, including the newest — and the manifest says `"published": "full_refit"`
with the holdout metrics kept as the estimate. With `--holdout 0` everything is trained on all
data and only training metrics exist.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from movierec_common import als
from movierec_common import ease as easelib
from movierec_common import genres as genrelib
from movierec_common.data_model import RATING_MAX, RATING_MIN
from movierec_common.movielens import Ratings

from movierec_trainer import data as tdata
from movierec_trainer.evaluate import (
    Evaluator,
    ScoreFn,
    blended_scores,
    explicit_scores,
    factor_scores,
    mae,
    rmse,
)

log = logging.getLogger(__name__)

Engine = Literal["local", "spark"]
RATED_SINCE_SLACK_S = 3600
"""How far before the newest rating in the data the recommender starts asking MongoDB for a
user's ratings: covers a rating stamped just before the snapshot but committed after the read
passed it, and modest clock skew between catalog replicas."""
ProgressFn = Callable[[str, dict], None]
"""Called as (model name, history entry) after every iteration; may raise to stop the job."""
GenresOf = Mapping[int, Sequence[str]]
"""movieId → its genre names (the catalogue's), for the blend's genre part."""


@dataclass(frozen=True)
class TrainConfig:
    engine: Engine = "local"
    explicit: als.ExplicitParams = als.DEFAULT_EXPLICIT
    ranking: als.ImplicitParams | None = als.DEFAULT_IMPLICIT
    ease: easelib.EaseParams | None = easelib.DEFAULT_EASE
    blend: easelib.BlendParams = easelib.DEFAULT_BLEND
    holdout: float = 0.2
    split_seed: int = 42
    publish_full: bool = False
    num_partitions: int | None = None
    broadcast_dtype: str = "float32"  # precision of the half-steps, both engines
    # λ candidates for the explicit model, chosen on validation carved from the training
    # ratings by `train_job` (movierec_trainer.tune); None: `explicit.reg` as given.
    reg_candidates: tuple[float, ...] | None = None
    # The ranking model's λ candidates, searched on the same split when `reg_candidates` is
    # set too; the served blend's weights are then chosen on it as well. None: `ranking.reg`
    # and `blend` as given.
    ranking_reg_candidates: tuple[float, ...] | None = None
    # EASE's λ candidates, searched on the same split when `reg_candidates` is set too (before
    # the EASE rating weight γ and the blend, which are chosen with that EASE). None: as given.
    ease_reg_candidates: tuple[float, ...] | None = None
    # False once `blend.rating` was chosen on validation (movierec_trainer.tune): the
    # training-fit cap (`capped_rating_weight`) is for a weight that was not.
    cap_rating_weight: bool = True

    def describe(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "explicit": self.explicit.to_dict(),
            "ranking": None if self.ranking is None else self.ranking.to_dict(),
            "ease": None if self.ease is None else self.ease.to_dict(),
            "blend": self.blend.to_dict(),
            "holdout": self.holdout,
            "split_seed": self.split_seed,
            "publish_full": self.publish_full,
            "num_partitions": self.num_partitions,
            "broadcast_dtype": self.broadcast_dtype,
            "reg_candidates": None if self.reg_candidates is None else list(self.reg_candidates),
            "ranking_reg_candidates": (
                None if self.ranking_reg_candidates is None else list(self.ranking_reg_candidates)
            ),
            "ease_reg_candidates": (
                None if self.ease_reg_candidates is None else list(self.ease_reg_candidates)
            ),
            "cap_rating_weight": self.cap_rating_weight,
        }


def index_pairs(
    user_ids: np.ndarray, item_ids: np.ndarray, r: Ratings
) -> tuple[np.ndarray, np.ndarray]:
    """The model indices (int32, shape (len(r),) each) of `r`'s (userId, movieId) pairs in a
    fit's sorted id arrays. Every id must be among them: the holdout splits
    (`tdata.random_holdout`) keep each user and movie of the held-out part in the fitted part."""
    return (
        np.searchsorted(user_ids, r.user_ids).astype(np.int32),
        np.searchsorted(item_ids, r.movie_ids).astype(np.int32),
    )


def serves_ease(cfg: TrainConfig) -> bool:
    """Whether a fit with `cfg` has EASE: only beside the ranking model (`--no-ranking` and a
    job's `no_ranking` publish the explicit model alone, whose list is its own order)."""
    return cfg.ease is not None and cfg.ranking is not None


@dataclass
class FitResult:
    explicit: als.ExplicitModel
    ranking: als.ImplicitModel | None
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_counts: np.ndarray
    inter: als.Interactions
    seconds: float
    ease: easelib.EaseModel | None = None
    blend: easelib.BlendParams = easelib.DEFAULT_BLEND
    ease_seconds: float = 0.0
    # The movies' genres (`genrelib.genre_indicators`): uint8 (n_items, n_genres) and the
    # column names; None / () when the data has no genres (the blend then has no genre part).
    item_genres: np.ndarray | None = None
    genre_names: tuple[str, ...] = ()

    @property
    def genre_rows(self) -> np.ndarray | None:
        """ĝ (n_items, n_genres) float32 of the genre part, or None without genres."""
        return None if self.item_genres is None else genrelib.genre_rows(self.item_genres)

    def index(self, r: Ratings) -> tuple[np.ndarray, np.ndarray]:
        """`index_pairs` of `r` in this fit: (user indices, item indices)."""
        return index_pairs(self.user_ids, self.item_ids, r)


@dataclass
class TrainOutcome:
    arrays: dict[str, np.ndarray]
    manifest: dict[str, Any]
    metrics: dict[str, Any]
    phases: dict[str, float] = field(default_factory=dict)


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def run_als(
    inter: als.Interactions,
    cfg: TrainConfig,
    explicit: als.ExplicitParams | None,
    ranking: als.ImplicitParams | None,
    valid_inter: als.Interactions | None = None,
    spark_context: Any = None,
    progress: ProgressFn | None = None,
) -> tuple[als.ExplicitModel | None, als.ImplicitModel | None]:
    """`als.fit_als` of the requested models on `cfg.engine` (the Spark engine needs
    `spark_context`), at `cfg.broadcast_dtype`. Raises ValueError without a SparkContext for
    the Spark engine, and what `als.fit_als` raises."""
    # One precision for both engines: the factors the half-steps see (Spark's broadcast, and
    # the arithmetic of the conjugate-gradient steps on either engine).
    dtype = np.dtype(cfg.broadcast_dtype).type
    if cfg.engine == "spark":
        from movierec_trainer.spark_als import SparkALS

        if spark_context is None:
            raise ValueError("the spark engine needs a SparkContext")
        engine = SparkALS(
            spark_context, inter, num_partitions=cfg.num_partitions, broadcast_dtype=dtype
        )
        return engine.fit(explicit, ranking, valid_inter, progress)
    return als.fit_als(
        als.LocalHalfSteps(inter), inter, explicit, ranking, valid_inter, progress, dtype=dtype
    )


def with_genres(fit: FitResult, genres_of: GenresOf | None) -> FitResult:
    """`fit` with its movies' genres from `genres_of` (movieId → genre names); unchanged when
    `genres_of` is None or none of the fit's movies has a genre."""
    if not genres_of:
        return fit
    indicators, names = genrelib.genre_indicators(fit.item_ids, genres_of)
    if not names:
        return fit
    return replace(fit, item_genres=indicators, genre_names=names)


def fit_models(
    ratings: Ratings,
    cfg: TrainConfig,
    *,
    valid: Ratings | None = None,
    spark_context: Any = None,
    progress: ProgressFn | None = None,
    genres_of: GenresOf | None = None,
) -> FitResult:
    """Index the ratings and fit the explicit (and ranking) model with the chosen engine (and
    EASE beside the ranking model); the movies' genres from `genres_of` (`with_genres`)."""
    inter, user_ids, item_ids = als.index_ratings(
        ratings.user_ids, ratings.movie_ids, ratings.ratings
    )
    valid_inter = None
    if valid is not None and len(valid):
        valid_inter = als.Interactions(
            *index_pairs(user_ids, item_ids, valid),
            valid.ratings.astype(np.float32),
            inter.n_users,
            inter.n_items,
        )
    start = time.perf_counter()
    emodel, rmodel = run_als(
        inter, cfg, cfg.explicit, cfg.ranking, valid_inter, spark_context, progress
    )
    assert emodel is not None
    ease_model = None
    ease_start = time.perf_counter()
    if serves_ease(cfg):
        if cfg.engine == "spark":
            # XᵀX over the covered movies is one m×m matrix (m ≤ max_items) and its inverse a
            # single dense LAPACK call: nothing to distribute, so the driver computes both.
            log.info(
                "EASE fitted on the driver (local kernel): its Gram matrix and inverse are "
                "dense %s-bounded m×m arrays, not a distributed computation",
                cfg.ease.max_items,
            )
        ease_model = easelib.fit_ease(inter, cfg.ease)
        log.info(
            "EASE: %d movies covered of %d, λ %g, %.2f s",
            ease_model.items.size,
            inter.n_items,
            cfg.ease.reg,
            ease_model.seconds,
        )
    blend = cfg.blend
    if ease_model is not None and blend.rating > 0 and cfg.cap_rating_weight:
        blend = capped_rating_weight(inter, emodel, ease_model, blend)
    ease_seconds = time.perf_counter() - ease_start
    seconds = time.perf_counter() - start
    counts = np.bincount(inter.item_idx, minlength=inter.n_items).astype(np.int64)
    fit = FitResult(
        emodel,
        rmodel,
        user_ids,
        item_ids,
        counts,
        inter,
        seconds,
        ease_model,
        blend,
        ease_seconds,
    )
    return with_genres(fit, genres_of)


RATING_WEIGHT_TRAIN_FACTOR = 2.0
"""The EASE rating term's weight is at most this multiple of the weight that fits the explicit
model's TRAINING residuals. On ml-latest-small the validation-chosen 4.5 is 1.9× the training
fit (2.36): ALS shrinks its own training residuals about twice. On data where the term does not
help (or B is on another scale: few users, small λ) the training fit is small and the term is
scaled down with it, instead of a weight tuned on one data set hurting another."""
RATING_WEIGHT_USERS = 2000


def capped_rating_weight(
    inter: als.Interactions,
    explicit: als.ExplicitModel,
    model: easelib.EaseModel,
    blend: easelib.BlendParams,
) -> easelib.BlendParams:
    """`blend` with `rating` ≤ RATING_WEIGHT_TRAIN_FACTOR·γ_train, where γ_train is the least-
    squares weight of (d_u·B)_i for the explicit model's training residuals r_ui − r̂_ui (B's
    zero diagonal keeps a rating out of its own correction). Uses an even sample of at most
    RATING_WEIGHT_USERS users; per user O(n_u²) over their covered ratings."""
    indptr, indices, stars = als.to_csr(inter.user_idx, inter.item_idx, inter.rating, inter.n_users)
    users = np.unique(np.linspace(0, inter.n_users - 1, min(inter.n_users, RATING_WEIGHT_USERS)))
    e = explicit
    num = den = 0.0
    for u in users.astype(np.int64):
        idx = indices[indptr[u] : indptr[u + 1]].astype(np.int64)
        r = stars[indptr[u] : indptr[u + 1]]
        pos, d = easelib.residual_signal(model, idx, r, e.mu, float(e.user_bias[u]), e.item_bias)
        if pos.size < 2:
            continue
        corr = d @ model.B[np.ix_(pos, pos)].astype(np.float64)
        covered = model.items[pos]
        resid = r[np.isin(idx, covered)] - (
            e.mu + e.user_bias[u] + e.item_bias[covered] + e.Q[covered] @ e.P[u]
        )
        num += float(resid @ corr)
        den += float(corr @ corr)
    fitted = num / den if den > 0 else 0.0
    cap = RATING_WEIGHT_TRAIN_FACTOR * max(fitted, 0.0)
    if cap >= blend.rating:
        log.info("EASE rating weight %g (training fit %.3g)", blend.rating, fitted)
        return blend
    log.info(
        "EASE rating weight %g capped to %.3g: %g × the training fit %.3g",
        blend.rating,
        cap,
        RATING_WEIGHT_TRAIN_FACTOR,
        fitted,
    )
    return replace(blend, rating=float(cap))


def predict_clipped(model: als.ExplicitModel, u: np.ndarray, i: np.ndarray) -> np.ndarray:
    """Predicted stars clipped to the rating scale, as served."""
    return np.clip(als.predict_explicit(model, u, i), RATING_MIN, RATING_MAX)


def served_predictions(fit: FitResult, u: np.ndarray, i: np.ndarray) -> np.ndarray:
    """The served stars for aligned (user, item) index pairs, unclipped: the explicit model
    plus, with EASE, `BlendParams.rating`·(d_u·B)_i from the user's training ratings."""
    pred = als.predict_explicit(fit.explicit, u, i)
    if fit.ease is None or fit.blend.rating == 0:
        return pred
    e = fit.explicit
    indptr, indices, stars = als.to_csr(
        fit.inter.user_idx, fit.inter.item_idx, fit.inter.rating, fit.inter.n_users
    )
    users, inverse = np.unique(np.asarray(u, np.int64), return_inverse=True)
    out = pred.copy()
    for s in range(0, users.size, 512):
        block = users[s : s + 512]
        _, corr = easelib.batch_scores(
            fit.ease,
            block,
            indptr,
            indices,
            stars,
            fit.inter.n_items,
            (e.mu, e.user_bias, e.item_bias),
        )
        assert corr is not None
        sel = (inverse >= s) & (inverse < s + block.size)
        out[sel] += fit.blend.rating * corr[inverse[sel] - s, np.asarray(i)[sel]]
    return out


PartsFn = Callable[
    [np.ndarray], tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray | None]
]
"""Maps user indices to the blend's personal parts for them, each (len(users), n_items):
(x_u·y_i or None without a ranking model, EASE's x_u·B, the served stars, the genre part
ĝ_i·p_u or None without genres)."""


def served_parts(fit: FitResult) -> PartsFn:
    """The personal parts the served list blends (`easelib.blend_ranking`), for blocks of
    users of a fit with EASE: the ranking model's scores, EASE's, the served stars
    (explicit model + `fit.blend.rating`·(d_u·B)_i, as `served_predictions`) and the genre part
    (`genrelib.batch_scores` of the users' training ratings). Raises ValueError when the fit
    has no EASE."""
    if fit.ease is None:
        raise ValueError("the fit has no EASE: its list is one model's order")
    e = fit.explicit
    by_rating = explicit_scores(e.mu, e.user_bias, e.item_bias, e.P, e.Q)
    indptr, indices, stars = als.to_csr(
        fit.inter.user_idx, fit.inter.item_idx, fit.inter.rating, fit.inter.n_users
    )
    model, rating, ranking = fit.ease, fit.blend.rating, fit.ranking
    rows = fit.genre_rows

    def parts(
        users: np.ndarray,
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray | None]:
        e_scores, corr = easelib.batch_scores(
            model,
            users,
            indptr,
            indices,
            stars,
            fit.inter.n_items,
            (e.mu, e.user_bias, e.item_bias),
        )
        assert corr is not None
        a_scores = None if ranking is None else ranking.X[users] @ ranking.Y.T
        g_scores = (
            None if rows is None else genrelib.batch_scores(rows, users, indptr, indices, stars)
        )
        return a_scores, e_scores, by_rating(users) + rating * corr, g_scores

    return parts


def served_scores(fit: FitResult) -> ScoreFn:
    """The served list's order for blocks of users: `easelib.blend_ranking` of the ranking
    model, EASE, the served stars, the genre part and popularity (`served_parts`; only the
    ranking model when EASE is off; the explicit model's stars when neither ranking model
    exists)."""
    if fit.ease is None:
        if fit.ranking is None:
            e = fit.explicit
            return explicit_scores(e.mu, e.user_bias, e.item_bias, e.P, e.Q)
        return factor_scores(fit.ranking.X, fit.ranking.Y)
    parts, blend = served_parts(fit), fit.blend
    popularity = easelib.popularity_scores(fit.item_counts)

    def scores(users: np.ndarray) -> np.ndarray:
        a, e, s, g = parts(users)
        return easelib.blend_ranking(a, e, s, blend, popularity=popularity, genre=g)

    return scores


def evaluate_fit(fit: FitResult, test: Ratings, *, bench: bool = False) -> dict[str, Any]:
    """Holdout metrics for a fit; `bench=True` adds the explicit-order and blended rankings."""
    u, i = fit.index(test)
    pred_raw = served_predictions(fit, u, i)
    pred = np.clip(pred_raw, RATING_MIN, RATING_MAX)
    out: dict[str, Any] = {
        "rmse": rmse(pred, test.ratings),
        "mae": mae(pred, test.ratings),
        "rmse_unclipped": rmse(pred_raw, test.ratings),
        "n_test": len(test),
    }
    ev = Evaluator(
        fit.inter.n_users,
        fit.inter.n_items,
        fit.inter.user_idx,
        fit.inter.item_idx,
        u,
        i,
        test.ratings,
    )
    e = fit.explicit
    by_rating = explicit_scores(e.mu, e.user_bias, e.item_bias, e.P, e.Q)
    out.update(ev.topn(served_scores(fit)).as_dict())
    out["served_ranking"] = (
        ("ranking" if fit.ranking is None else "ranking+ease")
        if fit.ease is not None
        else ("explicit" if fit.ranking is None else "ranking")
    )
    if fit.ease is not None:
        out["explicit_only_rmse"] = rmse(
            np.clip(als.predict_explicit(fit.explicit, u, i), RATING_MIN, RATING_MAX),
            test.ratings,
        )
        if fit.ranking is not None:
            out.update(
                ev.topn(factor_scores(fit.ranking.X, fit.ranking.Y)).as_dict("ranking_only_")
            )
    out.update(ev.topn(ev.popularity_scores()).as_dict("popularity_"))
    out["n_eval_users"] = len(ev.eval_users)
    if bench:
        out.update(ev.topn(by_rating).as_dict("explicit_"))
        out.update(ev.topn(blended_scores(by_rating, fit.item_counts)).as_dict("blended_"))
    return {k: (_finite_or_none(v) if isinstance(v, float) else v) for k, v in out.items()}


def model_arrays(fit: FitResult) -> dict[str, np.ndarray]:
    e = fit.explicit
    arrays: dict[str, np.ndarray] = {
        "P": np.asarray(e.P, np.float64),
        "Q": np.asarray(e.Q, np.float64),
        "user_bias": np.asarray(e.user_bias, np.float64),
        "item_bias": np.asarray(e.item_bias, np.float64),
        "global_mean": np.asarray(e.mu, np.float64),
        "user_ids": fit.user_ids.astype(np.int64),
        "item_ids": fit.item_ids.astype(np.int64),
        "item_counts": fit.item_counts.astype(np.int64),
    }
    if fit.ranking is not None:
        arrays["rank_X"] = np.asarray(fit.ranking.X, np.float64)
        arrays["rank_Y"] = np.asarray(fit.ranking.Y, np.float64)
    if fit.ease is not None:
        arrays["ease_B"] = np.asarray(fit.ease.B, np.float32)
        arrays["ease_items"] = fit.ease.items.astype(np.int64)
        if fit.item_genres is not None:
            arrays["item_genres"] = fit.item_genres.astype(np.uint8)
    return arrays


def rated_lists(
    ratings: Ratings, user_ids: np.ndarray, db_read_started_at: int | None = None
) -> dict[str, np.ndarray]:
    """Each model user's rated movieIds (and their stars) from ALL the data (holdout
    included), as a CSR.

    With these in the artifact the recommender excludes a heavy rater's movies without reading
    thousands of rating documents per request; it asks MongoDB only for the user's ratings
    stamped at or after `rated_since`, which must cover every rating this data lacks. Ratings in
    the data are all older than its newest one, and a database read started at T saw every
    rating committed before T, so anything missing was stamped after min(newest, T), less slack.
    """
    n = int(user_ids.shape[0])
    pos = np.minimum(np.searchsorted(user_ids, ratings.user_ids), max(n - 1, 0))
    keep = (user_ids[pos] == ratings.user_ids) if n else np.zeros(len(ratings), bool)
    u, m = pos[keep], ratings.movie_ids[keep].astype(np.int64)
    order = np.lexsort((m, u))
    indptr = als.row_pointers(u, n)
    newest = int(ratings.timestamps.max()) if len(ratings) else 0
    # Never after the training time, whatever the data's clock says (a timestamp in the
    # future would hide every later rating from the recommender).
    newest = min(newest, int(time.time()))
    if db_read_started_at is not None:
        newest = min(newest, int(db_read_started_at))
    movie_ids = m[order]
    if movie_ids.size and movie_ids.max() < 2**31 and movie_ids.min() >= 0:
        movie_ids = movie_ids.astype(np.int32)  # half the bytes to checksum and load
    return {
        "rated_indptr": indptr,
        "rated_movie_ids": movie_ids,
        "rated_since": np.asarray(newest - RATED_SINCE_SLACK_S, np.int64),
        "rated_stars": np.asarray(ratings.ratings[keep], np.float32)[order],
    }


def _history(fit: FitResult) -> list[dict]:
    rows = [{"model": "explicit", **h} for h in fit.explicit.history]
    if fit.ranking is not None:
        rows += [{"model": "ranking", **h} for h in fit.ranking.history]
    return [
        {k: (_finite_or_none(v) if isinstance(v, float) else v) for k, v in row.items()}
        for row in rows
    ]


def choose_on_validation(
    train: Ratings,
    cfg: TrainConfig,
    *,
    spark_context: Any = None,
    progress: ProgressFn | None = None,
    genres_of: GenresOf | None = None,
) -> tuple[TrainConfig, dict[str, Any]]:
    """`cfg` with the settings chosen on validation carved from `train` (the training ratings,
    never an evaluation holdout), and the manifest's `tuning` record of each choice: the
    explicit λ (`cfg.reg_candidates`), EASE's λ (`cfg.ease_reg_candidates`), the EASE rating
    term's weight γ, then, with
    `cfg.ranking_reg_candidates`, the ranking model's λ and the served blend's weights, all
    on the explicit λ search's split (`movierec_trainer.tune`; the blend's genre part from
    `genres_of`). `cfg` unchanged and {} without
    `reg_candidates`. Raises what the searches raise (TrainingDivergedError when every
    candidate diverges; a `progress` exception to cancel)."""
    if not cfg.reg_candidates:
        return cfg, {}
    from movierec_trainer import tune

    tuning: dict[str, Any] = {}
    search = tune.choose_explicit_reg(
        train, cfg, cfg.reg_candidates, spark_context=spark_context, progress=progress
    )
    cfg = replace(cfg, explicit=replace(cfg.explicit, reg=search.reg))
    tuning["explicit_reg"] = search.describe()
    ease_model = None
    if cfg.ease_reg_candidates and serves_ease(cfg):
        eased = tune.choose_ease_reg(search, cfg, cfg.ease_reg_candidates)
        if eased is not None:
            cfg = replace(cfg, ease=replace(cfg.ease, reg=eased.reg))
            tuning["ease_reg"] = eased.describe()
            ease_model = eased.model
    gamma = tune.choose_rating_weight(search, cfg, ease_model)
    if gamma is not None:
        ease_model = gamma.model
        cfg = replace(cfg, blend=replace(cfg.blend, rating=gamma.rating), cap_rating_weight=False)
        tuning["ease_rating_weight"] = gamma.describe()
    if cfg.ranking_reg_candidates and cfg.ranking is not None:
        ranked = tune.choose_ranking_reg(
            search,
            cfg,
            cfg.ranking_reg_candidates,
            spark_context=spark_context,
            progress=progress,
        )
        if ranked is not None:
            cfg = replace(cfg, ranking=replace(cfg.ranking, reg=ranked.reg))
            tuning["ranking_reg"] = ranked.describe()
            chosen = tune.choose_blend(search, ranked, cfg, ease_model, genres_of=genres_of)
            if chosen is not None:
                cfg = replace(cfg, blend=chosen.blend)
                tuning["blend"] = chosen.describe()
    return cfg, tuning


def train_job(
    ratings: Ratings,
    cfg: TrainConfig,
    *,
    spark_context: Any = None,
    progress: ProgressFn | None = None,
    source: dict[str, Any] | None = None,
    phase: Callable[[str], None] | None = None,
    genres_of: GenresOf | None = None,
) -> TrainOutcome:
    """Split, choose λ (if `cfg.reg_candidates`), fit, evaluate, and build the artifact; the
    refit with `publish_full` uses the chosen λ. `phase(name)` announces each phase;
    `genres_of` (movieId → genre names, the catalogue's) gives the blend its genre part."""
    phases: dict[str, float] = {}
    announce = phase or (lambda _name: None)
    t0 = time.perf_counter()
    if cfg.holdout > 0:
        split = tdata.random_holdout(ratings, cfg.holdout, cfg.split_seed)
        train, test = split.train, split.test
        split_info: dict[str, Any] = split.describe()
    else:
        train, test = ratings, None
        split_info = {"protocol": "none", "fraction": 0.0, "n_train": len(ratings), "n_test": 0}
    phases["split_s"] = time.perf_counter() - t0

    tuning: dict[str, Any] = {}
    if cfg.reg_candidates:
        announce("tune")
        t0 = time.perf_counter()
        cfg, tuning = choose_on_validation(
            train, cfg, spark_context=spark_context, progress=progress, genres_of=genres_of
        )
        phases["tune_s"] = time.perf_counter() - t0

    announce("train")
    t0 = time.perf_counter()
    fit = fit_models(
        train,
        cfg,
        valid=test,
        spark_context=spark_context,
        progress=progress,
        genres_of=genres_of,
    )
    phases["train_s"] = time.perf_counter() - t0

    announce("validate")
    t0 = time.perf_counter()
    last = fit.explicit.history[-1] if fit.explicit.history else {}
    metrics: dict[str, Any] = {
        "train_rmse": _finite_or_none(last.get("train_rmse")),
        "train_mae": _finite_or_none(last.get("train_mae")),
    }
    if test is not None and len(test):
        metrics.update(evaluate_fit(fit, test))
    metrics["train_seconds"] = fit.seconds
    metrics["ease_seconds"] = fit.ease_seconds
    phases["validate_s"] = time.perf_counter() - t0

    published = "train_part" if cfg.holdout > 0 else "all_data"
    publish_fit = fit
    if cfg.holdout > 0 and cfg.publish_full:
        announce("refit")
        t0 = time.perf_counter()
        publish_fit = fit_models(
            ratings, cfg, spark_context=spark_context, progress=progress, genres_of=genres_of
        )
        phases["refit_s"] = time.perf_counter() - t0
        published = "full_refit"

    arrays = model_arrays(publish_fit)
    manifest: dict[str, Any] = {
        "params": {
            "explicit": cfg.explicit.to_dict(),
            "ranking": None if cfg.ranking is None else cfg.ranking.to_dict(),
            # The settings of the EASE actually published (None when there is none).
            "ease": None if publish_fit.ease is None else publish_fit.ease.params.to_dict(),
            "blend": publish_fit.blend.to_dict(),
            # The columns of the `item_genres` array (the genre part's genres), in order.
            "genres": list(publish_fit.genre_names) if "item_genres" in arrays else [],
            "engine": cfg.engine,
            "num_partitions": cfg.num_partitions,
            "broadcast_dtype": cfg.broadcast_dtype,
        },
        "data": {
            "n_ratings": len(ratings),
            "n_users": int(publish_fit.inter.n_users),
            "n_items": int(publish_fit.inter.n_items),
            "n_train_ratings": len(publish_fit.inter),
            "fingerprint": tdata.fingerprint(ratings),
            **(source or {}),
        },
        "evaluation": {
            **split_info,
            "relevant_min_rating": 4.0,
            "k": 10,
            "predictions": "clipped to 0.5–5.0",
            "published": published,
            "note": (
                "metrics come from the model trained on the training part; "
                + (
                    "the published model is a refit on all ratings with the same parameters"
                    if published == "full_refit"
                    else "the published model is that model"
                    if published == "train_part"
                    else "no holdout: training metrics only"
                )
            ),
        },
        "metrics": metrics,
        "tuning": tuning,
        "history": _history(fit),
    }
    arrays.update(
        rated_lists(ratings, arrays["user_ids"], (source or {}).get("db_read_started_at"))
    )
    manifest["data"]["rated_since"] = int(arrays["rated_since"])
    return TrainOutcome(arrays, manifest, metrics, phases)


class ConsoleProgress:
    """Per-iteration log lines always; a rich progress bar too when stderr is a terminal."""

    def __init__(self, cfg: TrainConfig | None = None, enabled: bool | None = None) -> None:
        """Bars sized by `cfg`'s iteration counts, or, without `cfg`, by each model's first
        progress entry (its `of`)."""
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress = None
        self._tasks: dict[str, Any] = {}
        self._totals: dict[str, int] = {}
        if cfg is not None:
            self._totals["explicit"] = cfg.explicit.iterations
            if cfg.ranking is not None:
                self._totals["ranking"] = cfg.ranking.iterations

    def __enter__(self) -> ConsoleProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, model: str, entry: dict) -> None:
        fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
        info = (
            f"train RMSE {fmt(entry.get('train_rmse'))} MAE {fmt(entry.get('train_mae'))}"
            f" · valid RMSE {fmt(entry.get('valid_rmse'))} MAE {fmt(entry.get('valid_mae'))}"
            f" · {entry['seconds']:.2f}s"
        )
        log.info(
            "%s iteration %d/%d: %s",
            model,
            entry["iteration"],
            entry["of"],
            info,
            extra={"model": model, **{k: v for k, v in entry.items() if k != "model"}},
        )
        if self._progress is not None:
            if model not in self._tasks:
                self._tasks[model] = self._progress.add_task(
                    model, total=self._totals.get(model, entry["of"]), info=""
                )
            self._progress.update(self._tasks[model], completed=entry["iteration"], info=info)
