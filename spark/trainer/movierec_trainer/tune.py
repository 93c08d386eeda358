"""The explicit model's regularization λ, chosen on validation data carved from the training
ratings at every training run.

Why at train time: λ is scaled by each row's rating count (ALS-WR, Zhou et al. 2008), and the
value that fits depends on how much signal is left after the biases. 0.18 was chosen on
ml-latest-small's validation split; on the synthetic MovieLens-shaped sets the same λ zeroes
every factor (validation RMSE 0.7881 = the biases alone at 1M ratings, against 0.7696 at
λ 0.09), so a constant tuned on one data set was a biases-only model on another. Spark MLlib
leaves λ to the caller (`regParam`, with `CrossValidator`); Surprise and implicit likewise.

Protocol: `tdata.random_holdout(ratings, VALID_FRACTION, seed)` splits the ratings the model is
about to be trained on (never the evaluation holdout); each candidate is fitted on the rest for
SEARCH_ITERATIONS iterations from the same start (SEARCH_INIT_SCALE), with the configured
engine, and scored by the RMSE of its clipped predictions on the carved part; the lowest wins.
A best at an end of the grid is followed beyond it (synthetic-10m chose the smallest
candidate). SEARCH_ITERATIONS is fewer than a full fit: from that start the validation RMSE is
nearly flat after a few iterations, and the candidates' order at 8 iterations matched the
order at 20 on ml-latest-small, synthetic-1m and synthetic-10m.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from movierec_common import als
from movierec_common import ease as easelib
from movierec_common.movielens import Ratings

from movierec_trainer import data as tdata
from movierec_trainer.evaluate import Evaluator, factor_scores, rmse
from movierec_trainer.pipeline import (
    FitResult,
    GenresOf,
    ProgressFn,
    TrainConfig,
    fit_models,
    predict_clipped,
    run_als,
    served_parts,
    served_predictions,
    serves_ease,
    with_genres,
)

log = logging.getLogger(__name__)

REG_CANDIDATES: tuple[float, ...] = (0.064, 0.09, 0.127, 0.18, 0.255)
"""λ candidates, a factor √2 apart around ml-latest-small's 0.18 (count-scaled, as `reg`)."""
SEARCH_ITERATIONS = 8
SEARCH_INIT_SCALE = 0.1
"""The candidates start from N(0, 0.1²) factors. From the fit's 0.01 a λ near the edge of
killing the factors leaves the near-zero start only after several iterations (synthetic-10m,
λ 0.09: at the biases' RMSE until iteration 6), so 8 iterations would judge it before it
converged; from 0.1 it does within them (validation RMSE 0.7639 at 8 iterations against
0.7626 converged, where the 0.01 start gave 0.7749). The choice is the same on
ml-latest-small and synthetic-1m."""
MAX_EXTENSIONS = 4
"""At most this many candidates added beyond an end of the grid when the best lies there."""
VALID_FRACTION = 0.2
MIN_VALID_RATINGS = 1000
"""Below this many carved validation ratings the RMSE differences are noise: λ is kept."""


@dataclass(frozen=True)
class RegSearch:
    """The outcome: `reg` the chosen λ; `rows` one {reg, valid_rmse, train_rmse, seconds} (or
    {reg, error} for a candidate that diverged) per candidate in the order fitted, empty when
    `skipped` says why none was fitted; sizes of the carved fit / validation parts."""

    reg: float
    rows: list[dict[str, Any]]
    n_fit: int
    n_valid: int
    iterations: int
    seed: int
    skipped: str | None = None
    fit: FitResult | None = field(default=None, repr=False, compare=False)
    """The chosen candidate's fit on the carved fit part (None when skipped)."""
    valid: Ratings | None = field(default=None, repr=False, compare=False)
    """The carved validation ratings (None when skipped)."""
    fit_part: Ratings | None = field(default=None, repr=False, compare=False)
    """The carved fit part's ratings (None when skipped)."""

    def describe(self) -> dict[str, Any]:
        return {
            "parameter": "explicit.reg",
            "chosen": self.reg,
            "skipped": self.skipped,
            "candidates": self.rows,
            "protocol": (
                f"random {VALID_FRACTION:g} of the training ratings (seed {self.seed}), "
                f"{self.iterations} iterations per candidate, RMSE of clipped predictions"
            ),
            "n_fit": self.n_fit,
            "n_valid": self.n_valid,
        }


def choose_explicit_reg(
    ratings: Ratings,
    cfg: TrainConfig,
    candidates: tuple[float, ...] = REG_CANDIDATES,
    *,
    spark_context: Any = None,
    progress: ProgressFn | None = None,
    say: Callable[[str], None] = log.info,
) -> RegSearch:
    """Fit the explicit model once per λ in `candidates` on a validation split carved from
    `ratings` (the training ratings, shape n rows) and return the λ with the lowest validation
    RMSE. Uses `cfg`'s engine, rank, bias shrinkage and seed; the ranking model and EASE are not
    fitted. `progress` gets each candidate's iterations as model "explicit λ <value>" (it may
    raise to cancel). With fewer than MIN_VALID_RATINGS validation ratings, `cfg.explicit.reg`
    is kept and nothing is fitted. When the best is at an end of the grid, candidates beyond
    it (by the grid's ratio) are added while they improve, at most MAX_EXTENSIONS. A candidate
    that diverges is skipped (its row says why).
    Raises ValueError when `candidates` is empty; TrainingDivergedError when every one
    diverges."""
    if not candidates:
        raise ValueError("no λ candidates to choose from")
    split = tdata.random_holdout(ratings, VALID_FRACTION, cfg.split_seed)
    fit_part, valid = split.train, split.test
    iterations = min(SEARCH_ITERATIONS, cfg.explicit.iterations)
    if len(valid) < MIN_VALID_RATINGS:
        why = f"{len(valid)} validation ratings (< {MIN_VALID_RATINGS}): λ kept"
        say(f"explicit λ {cfg.explicit.reg:g} kept: {why}")
        return RegSearch(
            cfg.explicit.reg, [], len(fit_part), len(valid), iterations, cfg.split_seed, why
        )
    rows: list[dict[str, Any]] = []
    scored: list[tuple[float, float]] = []  # (validation RMSE unrounded, λ)
    best: list[FitResult] = []  # the best candidate's fit so far (one kept, not every one)

    def score(reg: float) -> bool:
        """Fit and score one candidate; False if it diverged."""
        name = f"explicit λ {reg:g}"
        trial = replace(
            cfg,
            explicit=replace(
                cfg.explicit,
                reg=reg,
                iterations=iterations,
                init_scale=max(cfg.explicit.init_scale, SEARCH_INIT_SCALE),
            ),
            ranking=None,
            ease=None,
        )
        relay = None if progress is None else (lambda _m, e: progress(name, e))
        t0 = time.perf_counter()
        try:
            fit = fit_models(
                fit_part, trial, valid=valid, spark_context=spark_context, progress=relay
            )
        except als.TrainingDivergedError as exc:  # that λ only: the others may still fit
            rows.append({"reg": reg, "error": str(exc)[:200]})
            say(f"{name}: diverged ({exc}); skipped")
            return False
        u, i = fit.index(valid)
        valid_rmse = rmse(predict_clipped(fit.explicit, u, i), valid.ratings)
        last = fit.explicit.history[-1] if fit.explicit.history else {}
        rows.append(
            {
                "reg": reg,
                "valid_rmse": round(valid_rmse, 5),
                "train_rmse": round(float(last.get("train_rmse", float("nan"))), 5),
                "seconds": round(time.perf_counter() - t0, 2),
            }
        )
        if not scored or (valid_rmse, reg) < min(scored):  # the order `min(scored)` picks by
            best[:] = [fit]
        scored.append((valid_rmse, reg))
        say(f"{name}: validation RMSE {valid_rmse:.4f} ({rows[-1]['seconds']:.1f}s)")
        return True

    walk_grid(candidates, score, lambda: min(scored)[1] if scored else None)
    if not scored:
        raise als.TrainingDivergedError(f"every λ candidate diverged: {rows}")
    best_rmse, best_reg = min(scored)
    say(f"explicit λ {best_reg:g} chosen (validation RMSE {best_rmse:.4f})")
    return RegSearch(
        float(best_reg),
        rows,
        len(fit_part),
        len(valid),
        iterations,
        cfg.split_seed,
        fit=best[0],
        valid=valid,
        fit_part=fit_part,
    )


def walk_grid(
    candidates: tuple[float, ...],
    score: Callable[[float], bool],
    best: Callable[[], float | None],
) -> list[float]:
    """Score every candidate (ascending), then, while the best (`best()`, None when nothing
    scored) is at an end of the values tried, step beyond it by the grid's own ratio (√2 for
    a single candidate), at most MAX_EXTENSIONS times. `score(value)` returns False when the
    value could not be scored (diverged), which ends the walk outwards. Returns the values
    tried, in order. Raises ValueError when `candidates` is empty."""
    grid = sorted(set(candidates))
    if not grid:
        raise ValueError("no candidates to choose from")
    tried = list(grid)
    for value in grid:
        score(value)
    # The best at an end of the grid: the optimum may lie beyond it (on synthetic-10m the
    # smallest λ candidate won). Step on by the grid's own ratio while it keeps improving.
    step = grid[1] / grid[0] if len(grid) > 1 else 2**0.5
    for _ in range(MAX_EXTENSIONS):
        chosen = best()
        if chosen is None:
            break
        lo, hi = min(tried), max(tried)
        if chosen == lo:
            beyond = round(lo / step, 6)
        elif chosen == hi:
            beyond = round(hi * step, 6)
        else:
            break
        tried.append(beyond)
        if not score(beyond):
            break
    return tried


RATING_WEIGHT_MULTIPLES = (0.0, 0.5, 0.75, 1.0, 1.25, 1.5)
"""The EASE rating term's weight γ is scored at these multiples of its least-squares fit to the
validation residuals (clipping makes the RMSE optimum differ a little from that fit)."""


@dataclass(frozen=True)
class RatingWeightChoice:
    """The EASE rating term's weight γ chosen on the λ search's validation part: `rows` one
    {rating, valid_rmse} per candidate, `least_squares` the unclipped fit; `model` the EASE
    fit on the search's fit part (the blend choice scores it)."""

    rating: float
    least_squares: float
    rows: list[dict[str, float]]
    n_valid: int
    ease_items: int
    seconds: float
    model: easelib.EaseModel | None = field(default=None, repr=False, compare=False)

    def describe(self) -> dict[str, Any]:
        return {
            "parameter": "blend.rating",
            "chosen": self.rating,
            "least_squares": self.least_squares,
            "candidates": self.rows,
            "protocol": (
                "EASE fitted on the λ search's fit part; γ in r̂ + γ·(d_u·B)_i at multiples "
                f"{list(RATING_WEIGHT_MULTIPLES)} of its least-squares fit to the validation "
                "residuals of the chosen λ's model, RMSE of clipped predictions"
            ),
            "n_valid": self.n_valid,
            "ease_items": self.ease_items,
            "seconds": self.seconds,
        }


def choose_rating_weight(
    search: RegSearch,
    cfg: TrainConfig,
    ease_model: easelib.EaseModel | None = None,
    *,
    say: Callable[[str], None] = log.info,
) -> RatingWeightChoice | None:
    """The served stars' EASE term weight γ (`BlendParams.rating`: r̂_ui + γ·(d_u·B)_i), chosen
    on the validation part the λ search carved, with the chosen λ's model from that search.

    Why: the shipped γ 4.5 was chosen on ml-latest-small; on synthetic-1m the term made the
    served RMSE worse than the explicit model alone (0.7704 against 0.7651, with γ already
    capped to 1.81 by `pipeline.capped_rating_weight`). Here EASE (`cfg.ease`) is fitted on
    the search's fit part (or `ease_model`, already fitted there); γ_ls = Σ e·c / Σ c² over
    the validation ratings (e the explicit model's residual, c the correction (d_u·B)_i from
    the user's fit-part ratings), and the multiple of γ_ls (RATING_WEIGHT_MULTIPLES, 0
    included, negative γ_ls taken as 0) with the lowest clipped RMSE wins. Returns None (γ left
    to the cap) when the search was skipped or EASE / the rating term is off. Cost: one EASE
    fit on 80 % of the training ratings when `ease_model` is None."""
    fit, valid = search.fit, search.valid
    if fit is None or valid is None or not serves_ease(cfg):
        return None
    if cfg.blend.rating <= 0:
        return None
    t0 = time.perf_counter()
    model = ease_model if ease_model is not None else easelib.fit_ease(fit.inter, cfg.ease)
    u, i = fit.index(valid)
    base = als.predict_explicit(fit.explicit, u, i)
    with_term = replace(fit, ease=model, blend=replace(cfg.blend, rating=1.0))
    corr = served_predictions(with_term, u, i) - base
    resid = valid.ratings.astype(np.float64) - base
    den = float(corr @ corr)
    fitted = float(resid @ corr) / den if den > 0 else 0.0
    least_squares = fitted if np.isfinite(fitted) and fitted > 0 else 0.0
    rows: list[dict[str, float]] = []
    for gamma in sorted({round(least_squares * m, 4) for m in RATING_WEIGHT_MULTIPLES}):
        pred = np.clip(base + gamma * corr, 0.5, 5.0)
        rows.append({"rating": gamma, "valid_rmse": round(rmse(pred, valid.ratings), 5)})
    chosen = min(rows, key=lambda row: (row["valid_rmse"], row["rating"]))["rating"]
    secs = round(time.perf_counter() - t0, 2)
    say(
        f"EASE rating weight {chosen:g} chosen (least squares {least_squares:.3g}, validation "
        f"RMSE {min(r['valid_rmse'] for r in rows):.4f}; {model.items.size} movies, {secs}s)"
    )
    return RatingWeightChoice(
        float(chosen),
        round(least_squares, 4),
        rows,
        len(valid),
        int(model.items.size),
        secs,
        model,
    )


RANKING_REG_CANDIDATES: tuple[float, ...] = (30.0, 100.0, 300.0)
"""The ranking model's λ candidates, a factor ~3 apart from ml-latest-small's 30 upwards.
Its λ does not carry over between data sets: the data term of a movie's half-step grows with
its ratings, and on synthetic-1m (270 ratings per movie against ml-latest-small's 10) λ 30 left
the ranking model below popularity (validation NDCG@10 0.0352 against 0.0401), where λ 300
scores 0.0645."""
RANKING_SEARCH_ITERATIONS = 8
NDCG_TOLERANCE = 0.005
"""In the ranking and EASE λ searches, candidates within this share of the best validation NDCG
count as equal, and the one nearest the given λ wins: a difference that small is below the
validation noise (synthetic-10m: ranking λ 300, 1000, 3333 and 11111 scored 0.0617–0.0619),
and each step outwards costs one more fit (a ranking fit: 6–9 minutes at 25M on 2 × 1 core)."""


def _contenders(scored: dict[float, float]) -> list[float]:
    """The values of `scored` (value → validation NDCG) within NDCG_TOLERANCE of the best."""
    top = max(scored.values())
    return [v for v, nd in scored.items() if nd >= top * (1 - NDCG_TOLERANCE)]


def nearest_within(scored: dict[float, float], given: float) -> float | None:
    """The value nearest `given` (on a log scale; the smaller on a tie) among `_contenders`;
    None when nothing was scored."""
    if not scored:
        return None
    return min(_contenders(scored), key=lambda v: (abs(math.log(v / given)), v))


@dataclass
class NdcgWalk:
    """What `walk_by_ndcg` found: `reg` the chosen value (None when no candidate could be
    scored), `rows` one {reg, valid_ndcg, seconds} or {reg, error} per candidate in the order
    tried, `ndcg` and `model` the chosen candidate's."""

    reg: float | None
    rows: list[dict[str, Any]]
    ndcg: float = math.nan
    model: Any = None


def walk_by_ndcg(
    candidates: tuple[float, ...],
    given: float,
    fit: Callable[[float], tuple[Any, float]],
    name: str,
    failures: tuple[type[Exception], ...],
    say: Callable[[str], None],
) -> NdcgWalk:
    """The ranking and EASE λ searches' shared walk: `fit(λ)` → (model, validation NDCG) for
    each λ `walk_grid` tries (a `failures` exception skips that λ, and its row says why),
    `nearest_within` from `given` as the choice, and only the contenders' models kept in
    memory. `name` labels the log lines ("<name> λ <value>: …")."""
    rows: list[dict[str, Any]] = []
    scored: dict[float, float] = {}  # λ → validation NDCG
    models: dict[float, Any] = {}  # only the candidates still in the running

    def score(reg: float) -> bool:
        label = f"{name} λ {reg:g}"
        t0 = time.perf_counter()
        try:
            model, ndcg = fit(reg)
        except failures as exc:
            rows.append({"reg": reg, "error": str(exc)[:200]})
            say(f"{label}: failed ({exc}); skipped")
            return False
        secs = round(time.perf_counter() - t0, 2)
        rows.append({"reg": reg, "valid_ndcg": round(ndcg, 5), "seconds": secs})
        scored[reg] = ndcg if math.isfinite(ndcg) else -math.inf
        models[reg] = model
        keep = set(_contenders(scored))
        for other in [v for v in models if v not in keep]:
            del models[other]  # out of the running: free its factors
        say(f"{label}: validation NDCG@{TOP_K} {ndcg:.4f} ({secs:.1f}s)")
        return True

    walk_grid(candidates, score, lambda: nearest_within(scored, given))
    reg = nearest_within(scored, given)
    if reg is None:
        return NdcgWalk(None, rows)
    return NdcgWalk(reg, rows, scored[reg], models[reg])


@dataclass(frozen=True)
class RankingRegSearch:
    """The ranking model's λ chosen on the λ search's split: `rows` one {reg, valid_ndcg,
    seconds} (or {reg, error}) per candidate in the order fitted; `model` the chosen
    candidate's fit on the fit part, in the same index as `RegSearch.fit`."""

    reg: float
    rows: list[dict[str, Any]]
    n_users: int
    iterations: int
    model: als.ImplicitModel | None = field(default=None, repr=False, compare=False)

    def describe(self) -> dict[str, Any]:
        return {
            "parameter": "ranking.reg",
            "chosen": self.reg,
            "candidates": self.rows,
            "protocol": (
                f"the explicit λ search's split; {self.iterations} iterations per candidate, "
                f"NDCG@{TOP_K} of the ranking model alone over {self.n_users} validation users"
            ),
        }


TOP_K = 10


def validation_evaluator(
    search: RegSearch, max_users: int | None = None, chunk: int = 512
) -> Evaluator:
    """The top-N evaluator of the λ search's validation part over its fit part's index
    (`max_users` a seeded sample of the evaluation users, `chunk` users per scored block).
    Raises ValueError when the search was skipped."""
    fit, valid = search.fit, search.valid
    if fit is None or valid is None:
        raise ValueError("the λ search was skipped: no validation part")
    u, i = fit.index(valid)
    inter = fit.inter
    return Evaluator(
        inter.n_users,
        inter.n_items,
        inter.user_idx,
        inter.item_idx,
        u,
        i,
        valid.ratings,
        k=TOP_K,
        chunk=chunk,
        max_users=max_users,
    )


def choose_ranking_reg(
    search: RegSearch,
    cfg: TrainConfig,
    candidates: tuple[float, ...] = RANKING_REG_CANDIDATES,
    *,
    spark_context: Any = None,
    progress: ProgressFn | None = None,
    say: Callable[[str], None] = log.info,
) -> RankingRegSearch | None:
    """Fit the ranking model (`cfg.ranking` at each λ of `candidates`, RANKING_SEARCH_ITERATIONS
    iterations, `cfg`'s engine) on the λ search's fit part and keep the λ whose x_u·y_i
    ranks the validation part best (NDCG@10 over the evaluation users, the trainer's
    protocol, `evaluate.Evaluator`); beyond an end of the grid as `walk_grid`. `progress` gets
    each candidate's iterations as model "ranking λ <value>" (it may raise to cancel).
    Scores within NDCG_TOLERANCE of the best count as equal, and the λ nearest
    `cfg.ranking.reg` among them wins (so the walk stops stepping outwards on a plateau).
    Returns None (λ kept) when there is no ranking model, the search was skipped, or the
    validation part has fewer than MIN_TOPN_USERS users with a relevant rating. Raises
    TrainingDivergedError when every candidate diverges."""
    if cfg.ranking is None or search.fit is None or search.valid is None:
        return None
    inter = search.fit.inter
    ev = validation_evaluator(search)
    if len(ev.eval_users) < MIN_TOPN_USERS:
        say(
            f"ranking λ {cfg.ranking.reg:g} kept: {len(ev.eval_users)} validation users "
            f"(< {MIN_TOPN_USERS})"
        )
        return None
    iterations = min(RANKING_SEARCH_ITERATIONS, cfg.ranking.iterations)

    def fit(reg: float) -> tuple[als.ImplicitModel, float]:
        name = f"ranking λ {reg:g}"
        params = replace(cfg.ranking, reg=reg, iterations=iterations)  # type: ignore[arg-type]
        relay = None if progress is None else (lambda _m, e: progress(name, e))
        _, model = run_als(inter, cfg, None, params, None, spark_context, relay)
        assert model is not None
        return model, ev.topn(factor_scores(model.X, model.Y)).ndcg_at_k

    walk = walk_by_ndcg(
        candidates, cfg.ranking.reg, fit, "ranking", (als.TrainingDivergedError,), say
    )
    if walk.reg is None:
        raise als.TrainingDivergedError(f"every ranking λ candidate diverged: {walk.rows}")
    say(f"ranking λ {walk.reg:g} chosen (validation NDCG@{TOP_K} {walk.ndcg:.4f})")
    return RankingRegSearch(float(walk.reg), walk.rows, len(ev.eval_users), iterations, walk.model)


EASE_REG_CANDIDATES: tuple[float, ...] = (200.0, 800.0, 3200.0)
"""EASE's λ candidates, a factor 4 apart around ml-latest-small's 800. Like the ranking λ it
does not carry over: it is added to XᵀX's diagonal, whose entries are the movies' like counts.
On synthetic-1m's validation part (the trainer's split, 2,000 users) EASE alone scores NDCG@10
0.0466 at λ 800 and 0.0577 at 51,200; ml-latest-small 0.1868 / 0.1906 / 0.1768 at 200 / 800 /
3200."""


@dataclass(frozen=True)
class EaseRegSearch:
    """EASE's λ chosen on the λ search's split: `rows` one {reg, valid_ndcg, seconds} (or {reg,
    error}) per candidate in the order solved; `model` the chosen candidate's EASE on the fit
    part (what the EASE rating weight and the blend are then chosen with)."""

    reg: float
    rows: list[dict[str, Any]]
    n_users: int
    ease_items: int
    seconds: float
    model: easelib.EaseModel | None = field(default=None, repr=False, compare=False)

    def describe(self) -> dict[str, Any]:
        return {
            "parameter": "ease.reg",
            "chosen": self.reg,
            "candidates": self.rows,
            "protocol": (
                "the explicit λ search's split; XᵀX of the fit part's likes built once and "
                f"solved per candidate, NDCG@{TOP_K} of EASE alone over {self.n_users} "
                "validation users"
            ),
            "ease_items": self.ease_items,
            "seconds": self.seconds,
        }


def choose_ease_reg(
    search: RegSearch,
    cfg: TrainConfig,
    candidates: tuple[float, ...] = EASE_REG_CANDIDATES,
    *,
    say: Callable[[str], None] = log.info,
) -> EaseRegSearch | None:
    """EASE's λ (`cfg.ease` otherwise as given), chosen by the NDCG@10 of EASE alone on the λ
    search's validation part, over a seeded sample of ≤ BLEND_MAX_USERS evaluation users.
    λ is chosen on the fit part (80 % of the training ratings) and used as is on the whole
    training part, as the explicit and ranking λs are and as the shipped 800 was (the grid's
    factor 4 is far coarser than the 1.25× more likes).
    G = XᵀX is built once (`easelib.item_gram`) and each λ costs one m×m inversion
    (`easelib.solve_ease`) and the sample's scores; the walk and the tie rule are the ranking
    λ's (`walk_by_ndcg` from `cfg.ease.reg`). No `progress` hook: a cancel
    waits for the search's end (7 inversions at most, ~15 s each at 6,000 movies). Returns None
    (λ kept) without EASE (`pipeline.serves_ease`), without the search's split, or with fewer
    than MIN_TOPN_USERS validation users.
    Raises numpy.linalg.LinAlgError when no candidate can be inverted."""
    if not serves_ease(cfg) or search.fit is None or search.valid is None:
        return None
    assert cfg.ease is not None  # serves_ease
    t0 = time.perf_counter()
    inter = search.fit.inter
    ev = validation_evaluator(search, BLEND_MAX_USERS)
    if len(ev.eval_users) < MIN_TOPN_USERS:
        say(f"EASE λ {cfg.ease.reg:g} kept: {len(ev.eval_users)} validation users")
        return None
    gram, items = easelib.item_gram(inter, cfg.ease)
    indptr, indices, stars = als.to_csr(inter.user_idx, inter.item_idx, inter.rating, inter.n_users)

    def fit(reg: float) -> tuple[easelib.EaseModel, float]:
        model = easelib.solve_ease(gram, items, replace(cfg.ease, reg=reg))  # type: ignore[arg-type]

        def scores(users: np.ndarray) -> np.ndarray:
            return easelib.batch_scores(model, users, indptr, indices, stars, inter.n_items)[0]

        return model, ev.topn(scores).ndcg_at_k

    walk = walk_by_ndcg(candidates, cfg.ease.reg, fit, "EASE", (np.linalg.LinAlgError,), say)
    if walk.reg is None:
        raise np.linalg.LinAlgError(f"no EASE λ candidate could be solved: {walk.rows}")
    secs = round(time.perf_counter() - t0, 2)
    say(
        f"EASE λ {walk.reg:g} chosen (validation NDCG@{TOP_K} {walk.ndcg:.4f}; {items.size} movies)"
    )
    return EaseRegSearch(
        float(walk.reg), walk.rows, len(ev.eval_users), int(items.size), secs, walk.model
    )


BLEND_PARTS = ("als", "ease", "stars", "popularity", "genre")
BLEND_BOUNDS = {
    "als": (0.1, 2.0),  # > 0: the recommender's bounded top-k needs an ALS part
    "ease": (0.0, 2.0),
    "stars": (0.0, 2.0),
    "popularity": (-1.0, 1.0),
    "genre": (0.0, 2.0),
}
BLEND_STEP = 0.1
BLEND_MAX_ROUNDS = 40
BLEND_GATE = 2.5
"""A move is taken only when its mean NDCG gain over the validation users exceeds this many
standard errors of the paired per-user differences. The best of a round's ~8 moves is the one
tested, so the gate is Bonferroni-sized (one-sided 5 % over 8 moves ≈ 2.5 s.e.; with the genre
part a round has ~10 moves, whose bound would be 2.58: kept at 2.5, as measured below). Measured
out of sample (choose on a random half of the validation users, score the other half, 20
halvings; bench/REPORT.md, session 15): at 1 s.e. a move was taken in 50 % (ml-latest-small)
and 70 % (synthetic-1m) of the halves and gained −0.0004 and −0.00003 on the other half; at
2.5 s.e. in 0 % and 10 %, gaining 0 and −0.0001. With each data set's ranking λ chosen, the
shipped weights are already at the optimum both there; the gate keeps the ascent for data
where a part is clearly mis-weighted (with ml-latest-small's λ 30 on synthetic-1m, most steps
gained 3–4 s.e.)."""
BLEND_MAX_USERS = 2000
BLEND_PART_BYTES = 1 << 30
"""The standardised parts of the sampled users are held in float32 (5 parts × users × movies,
4 without genres); fewer users are sampled where the catalogue is large (at 59k movies ~910
with genres, ~1,100 without)."""
BLEND_CHUNK = 128
"""Users per scored block: the evaluator's float64 copy of a block's scores stays small."""
MIN_TOPN_USERS = 50
"""Below this many validation users with a relevant rating, NDCG differences are noise (and
ties are common): the ranking λ and the blend weights are kept as given."""


@dataclass(frozen=True)
class BlendChoice:
    """The served list's blend weights chosen on the λ search's validation part: `path` one
    {weights, valid_ndcg, gain, se} per accepted move from `start`."""

    blend: easelib.BlendParams
    start: dict[str, float]
    start_ndcg: float
    chosen_ndcg: float
    path: list[dict[str, Any]]
    n_users: int
    seconds: float

    def describe(self) -> dict[str, Any]:
        return {
            "parameter": "blend",
            "chosen": {k: getattr(self.blend, k) for k in BLEND_PARTS},
            "start": self.start,
            "start_ndcg": round(self.start_ndcg, 5),
            "valid_ndcg": round(self.chosen_ndcg, 5),
            "path": self.path,
            "protocol": (
                f"coordinate ascent in steps of {BLEND_STEP:g} from the shipped weights; a "
                f"move needs a mean NDCG@{TOP_K} gain over {BLEND_GATE:g} standard error of "
                f"the paired per-user differences, {self.n_users} validation users; models "
                f"fitted on the λ search's fit part ({RANKING_SEARCH_ITERATIONS} iterations)"
            ),
            "n_users": self.n_users,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class BlendParts:
    """The standardised parts (BLEND_PARTS order: ALS, EASE, stars, popularity, and genre when
    the movies have genres, `has_genre`) of the sampled validation users, (5 or 4, n_users,
    n_items) float32, row j for `users[j]`; `ev` their evaluator."""

    ev: Evaluator
    users: np.ndarray
    parts: np.ndarray
    has_genre: bool = False

    def ndcg(self, weights: tuple[float, ...]) -> np.ndarray:
        """Per-user NDCG@10 (n_users,) of the list Σ_p weights[p]·parts[p]."""
        w = [float(x) for x in weights]
        parts, users = self.parts, self.users

        def fn(block: np.ndarray) -> np.ndarray:
            # The evaluator scores `users` in order, a block of consecutive rows at a time:
            # a view of the parts, no copy.
            lo = int(np.searchsorted(users, block[0]))
            view = parts[:, lo : lo + block.size]
            out = view[0] * np.float32(w[0])
            for p in range(1, min(len(w), view.shape[0])):
                if w[p]:
                    out += view[p] * np.float32(w[p])
            return out

        return self.ev.user_ndcg(fn, users)


def blend_parts(
    search: RegSearch,
    ranking: RankingRegSearch,
    cfg: TrainConfig,
    ease_model: easelib.EaseModel,
    genres_of: GenresOf | None = None,
) -> BlendParts | None:
    """`BlendParts` of a seeded sample of the validation users (≤ BLEND_MAX_USERS, fewer when
    BLEND_PART_BYTES would not hold them), from the models fitted on the search's fit part;
    the stars include `cfg.blend.rating`·(d_u·B), the genre part comes from `genres_of`. None
    with fewer than MIN_TOPN_USERS."""
    if search.fit is None or ranking.model is None:
        return None
    fit = replace(search.fit, ranking=ranking.model, ease=ease_model, blend=cfg.blend)
    fit = with_genres(fit, genres_of)
    n_items = fit.inter.n_items
    n_parts = len(BLEND_PARTS) - (fit.item_genres is None)
    per_user = 4 * n_parts * max(n_items, 1)
    max_users = max(1, min(BLEND_MAX_USERS, BLEND_PART_BYTES // per_user))
    ev = validation_evaluator(search, max_users, chunk=BLEND_CHUNK)
    users = ev.eval_users
    if users.size < MIN_TOPN_USERS:
        return None
    served = served_parts(fit)
    parts = np.empty((n_parts, users.size, n_items), dtype=np.float32)
    parts[3] = easelib.popularity_scores(fit.item_counts)
    for s in range(0, users.size, 256):
        block = users[s : s + 256]
        a, e, stars, genre = served(block)
        assert a is not None  # the ranking model is there
        for p, raw in ((0, a), (1, e), (2, stars), (4, genre)):
            if raw is not None and p < n_parts:
                parts[p, s : s + block.size] = easelib.standardize(raw)
    return BlendParts(ev, users, parts, fit.item_genres is not None)


def blend_ascent(
    score: Callable[[tuple[float, ...]], np.ndarray],
    start: tuple[float, ...],
    gate: float = BLEND_GATE,
    frozen: frozenset[str] = frozenset(),
) -> tuple[tuple[float, ...], np.ndarray, list[dict[str, Any]]]:
    """Coordinate ascent over the blend weights (BLEND_PARTS order) from `start`: each round
    scores every weight but the `frozen` ones ±BLEND_STEP (within BLEND_BOUNDS, at least one
    of ALS, EASE and stars above 0) with
    `score` (per-user NDCG, paired across calls) and takes the best move if its mean gain
    exceeds `gate` standard errors of the paired differences; at most BLEND_MAX_ROUNDS rounds.
    Returns (weights, their per-user NDCG, the accepted moves)."""
    weights, current = start, score(start)
    path: list[dict[str, Any]] = []
    for _ in range(BLEND_MAX_ROUNDS):
        moves: list[tuple[float, ...]] = []
        for c, name in enumerate(BLEND_PARTS):
            if name in frozen:
                continue
            lo, hi = BLEND_BOUNDS[name]
            for d in (-BLEND_STEP, BLEND_STEP):
                w = list(weights)
                w[c] = round(min(hi, max(lo, w[c] + d)), 4)
                if tuple(w) != weights and sum(w[:3]) > 0 and tuple(w) not in moves:
                    moves.append(tuple(w))
        if not moves:
            break
        scored = [(score(w), w) for w in moves]
        best_u, best_w = max(scored, key=lambda t: (float(t[0].mean()), t[1]))
        diff = best_u - current
        gain = float(diff.mean())
        se = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else float("inf")
        if not gain > gate * se:
            break
        weights, current = best_w, best_u
        path.append(
            {
                "weights": dict(zip(BLEND_PARTS, best_w, strict=True)),
                "valid_ndcg": round(float(best_u.mean()), 5),
                "gain": round(gain, 5),
                "se": round(se, 5),
            }
        )
    return weights, current, path


def choose_blend(
    search: RegSearch,
    ranking: RankingRegSearch,
    cfg: TrainConfig,
    ease_model: easelib.EaseModel | None = None,
    *,
    say: Callable[[str], None] = log.info,
    genres_of: GenresOf | None = None,
) -> BlendChoice | None:
    """The served list's weights (`BlendParams` als, ease, stars, popularity, genre) chosen on
    the validation part the λ search carved, from the models fitted on its fit part: the explicit
    model at the chosen λ (`search.fit`), the ranking model at its chosen λ (`ranking.model`)
    and EASE (`ease_model`, fitted here when None), with `cfg.blend.rating` in the stars.

    `blend_ascent` from `cfg.blend` over a seeded sample of the validation users
    (`blend_parts`: each part standardised per user once, as served, so a candidate costs one
    weighted sum and top-k). Returns None without EASE or a ranking model in `cfg`, without a
    fit, or with fewer than MIN_TOPN_USERS validation users."""
    if search.fit is None or search.valid is None or ranking.model is None or not serves_ease(cfg):
        return None
    t0 = time.perf_counter()
    if ease_model is None:
        ease_model = easelib.fit_ease(search.fit.inter, cfg.ease)
    bp = blend_parts(search, ranking, cfg, ease_model, genres_of)
    if bp is None:
        say(f"blend weights kept: fewer than {MIN_TOPN_USERS} validation users")
        return None
    # Without genres there is no genre part: its weight is 0, and not searched.
    given = replace(cfg.blend, genre=cfg.blend.genre if bp.has_genre else 0.0)
    start = tuple(float(getattr(given, k)) for k in BLEND_PARTS)
    start = tuple(max(v, BLEND_BOUNDS[k][0]) for k, v in zip(BLEND_PARTS, start, strict=True))
    first = bp.ndcg(start)
    weights, current, path = blend_ascent(
        lambda w: first if w == start else bp.ndcg(w),
        start,
        frozen=frozenset() if bp.has_genre else frozenset({"genre"}),
    )
    blend = replace(given, **dict(zip(BLEND_PARTS, weights, strict=True)))
    secs = round(time.perf_counter() - t0, 2)
    say(
        f"blend weights {dict(zip(BLEND_PARTS, weights, strict=True))} chosen in {len(path)} "
        f"moves (validation NDCG@{TOP_K} {float(first.mean()):.4f} → "
        f"{float(current.mean()):.4f}, {bp.users.size} users, {secs}s)"
    )
    return BlendChoice(
        blend,
        dict(zip(BLEND_PARTS, start, strict=True)),
        float(first.mean()),
        float(current.mean()),
        path,
        int(bp.users.size),
        secs,
    )
