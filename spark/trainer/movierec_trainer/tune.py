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
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from movierec_common import als
from movierec_common import ease as easelib
from movierec_common.movielens import Ratings

from movierec_trainer import data as tdata
from movierec_trainer.evaluate import rmse
from movierec_trainer.pipeline import (
    FitResult,
    ProgressFn,
    TrainConfig,
    fit_models,
    predict_clipped,
    served_predictions,
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

    grid = sorted(set(candidates))
    for reg in grid:
        score(reg)
    # The best at an end of the grid: the optimum may lie beyond it (on synthetic-10m the
    # smallest candidate won). Step on by the grid's own ratio while it keeps improving.
    step = grid[1] / grid[0] if len(grid) > 1 else 2**0.5
    for _ in range(MAX_EXTENSIONS):
        if not scored:
            break
        best_reg = min(scored)[1]
        lo, hi = min(r["reg"] for r in rows), max(r["reg"] for r in rows)
        if best_reg == lo:
            beyond = round(lo / step, 6)
        elif best_reg == hi:
            beyond = round(hi * step, 6)
        else:
            break
        if not score(beyond):
            break
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
    )


RATING_WEIGHT_MULTIPLES = (0.0, 0.5, 0.75, 1.0, 1.25, 1.5)
"""The EASE rating term's weight γ is scored at these multiples of its least-squares fit to the
validation residuals (clipping makes the RMSE optimum differ a little from that fit)."""


@dataclass(frozen=True)
class RatingWeightChoice:
    """The EASE rating term's weight γ chosen on the λ search's validation part: `rows` one
    {rating, valid_rmse} per candidate, `least_squares` the unclipped fit."""

    rating: float
    least_squares: float
    rows: list[dict[str, float]]
    n_valid: int
    ease_items: int
    seconds: float

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
    search: RegSearch, cfg: TrainConfig, *, say: Callable[[str], None] = log.info
) -> RatingWeightChoice | None:
    """The served stars' EASE term weight γ (`BlendParams.rating`: r̂_ui + γ·(d_u·B)_i), chosen
    on the validation part the λ search carved, with the chosen λ's model from that search.

    Why: the shipped γ 4.5 was chosen on ml-latest-small; on synthetic-1m the term made the
    served RMSE worse than the explicit model alone (0.7704 against 0.7651, with γ already
    capped to 1.81 by `pipeline.capped_rating_weight`). Here EASE (`cfg.ease`) is fitted on
    the search's fit part; γ_ls = Σ e·c / Σ c² over the validation ratings (e the explicit
    model's residual, c the correction (d_u·B)_i from the user's fit-part ratings), and the
    multiple of γ_ls (RATING_WEIGHT_MULTIPLES, 0 included, negative γ_ls taken as 0) with the
    lowest clipped RMSE wins. Returns None (γ left to the cap) when the search was skipped or
    EASE / the rating term is off. Cost: one EASE fit on 80 % of the training ratings."""
    fit, valid = search.fit, search.valid
    if fit is None or valid is None or cfg.ease is None or cfg.ranking is None:
        return None
    if cfg.blend.rating <= 0:
        return None
    t0 = time.perf_counter()
    model = easelib.fit_ease(fit.inter, cfg.ease)
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
        float(chosen), round(least_squares, 4), rows, len(valid), int(model.items.size), secs
    )
