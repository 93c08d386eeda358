"""Choose the served models' defaults on validation carved from the training part (issue 20).

Protocol (the same as bench/tune_defaults.py and bench/peers.py):
  1. ml-latest-small, the trainer's seeded 80/20 holdout (`data.random_holdout`, seed 42)
     → train / test, exactly the split `make bench-train` and `train --holdout 0.2` score.
  2. From TRAIN only, `als.random_holdout(0.2, seed 42)` → fit (64 %) / validation (16 %).
  3. Every candidate is fitted on `fit` and scored on `validation` with the trainer's own
     code (`pipeline.served_scores` / `served_predictions`, the Evaluator's NDCG@10, RMSE of
     clipped predictions):
       ranking: ALS rank × iterations; EASE λ × min_count × dislikes; the served blend
                als·z(ALS) + ease·z(EASE) + stars·z(served stars) over a weight grid;
       stars:   the EASE rating term's weight γ (r̂ += γ·(d_u·B)_i).
  4. `--test` fits the shipped defaults on the whole train part and scores them ONCE on the
     test part, for the report; the test split never takes part in a choice.

    OMP_NUM_THREADS=1 .venv/bin/python bench/tune_models.py [--quick] [--test]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from movierec_common import als, ease
from movierec_common.movielens import Ratings
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from movierec_trainer import data as tdata  # noqa: E402
from movierec_trainer import pipeline  # noqa: E402
from movierec_trainer.evaluate import Evaluator, rmse  # noqa: E402


def split(data_dir: Path) -> tuple[Ratings, Ratings, Ratings, Ratings]:
    """(train, test, fit, validation) as Ratings: test from the trainer's split, validation
    carved from train only."""
    r = tdata.load_ratings_dir(data_dir)
    s = tdata.random_holdout(r, 0.2, 42)
    inter, _, _ = als.index_ratings(s.train.user_ids, s.train.movie_ids, s.train.ratings)
    f, v = als.random_holdout(inter.user_idx, inter.item_idx, 0.2, 42)
    return s.train, s.test, tdata.subset(s.train, f), tdata.subset(s.train, v)


def fit_parts(
    ratings: Ratings, ranking: als.ImplicitParams | None, ease_p: ease.EaseParams | None
) -> tuple[pipeline.FitResult, dict[str, float]]:
    cfg = pipeline.TrainConfig(ranking=ranking, ease=None)
    t0 = time.perf_counter()
    fit = pipeline.fit_models(ratings, cfg)
    secs = {"als_s": time.perf_counter() - t0}
    if ease_p is not None:
        fit.ease = ease.fit_ease(fit.inter, ease_p)
        secs["ease_s"] = fit.ease.seconds
    return fit, secs


def scorer(fit: pipeline.FitResult, valid: Ratings) -> tuple[Evaluator, np.ndarray, np.ndarray]:
    u, i = fit.index(valid)
    ev = Evaluator(
        fit.inter.n_users,
        fit.inter.n_items,
        fit.inter.user_idx,
        fit.inter.item_idx,
        u,
        i,
        valid.ratings,
    )
    return ev, u, i


def served(fit: pipeline.FitResult, valid: Ratings, blend: ease.BlendParams) -> tuple[float, float]:
    fit.blend = blend
    ev, u, i = scorer(fit, valid)
    nd = ev.topn(pipeline.served_scores(fit)).ndcg_at_k
    pred = np.clip(pipeline.served_predictions(fit, u, i), 0.5, 5.0)
    return nd, rmse(pred, valid.ratings)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data" / "ml-latest-small")
    ap.add_argument("--quick", action="store_true", help="the defaults' neighbourhood only")
    ap.add_argument("--test", action="store_true", help="also score the defaults on the test part")
    args = ap.parse_args()
    threadpool_limits(1)
    train, test, fit_r, valid = split(args.data_dir)
    off = ease.BlendParams(als=1.0, ease=0.0, stars=0.0, rating=0.0, genre=0.0)
    print("## validation (fit 64 %, score 16 % carved from train)\n")
    print("| candidate | NDCG@10 | RMSE | fit s |\n|---|---:|---:|---:|")
    ranks = [(128, 15)] if args.quick else [(20, 10), (64, 10), (128, 10), (128, 15), (200, 15)]
    for rank, it in ranks:
        p = replace(als.DEFAULT_IMPLICIT, rank=rank, iterations=it)
        fit, secs = fit_parts(fit_r, p, None)
        nd, rm = served(fit, valid, off)
        print(
            f"| ALS rank {rank}, {it} it., λ {p.reg:g}, α {p.alpha:g} | {nd:.4f} | {rm:.4f} "
            f"| {secs['als_s']:.2f} |",
            flush=True,
        )
    eases = (
        [ease.DEFAULT_EASE]
        if args.quick
        else [
            ease.EaseParams(reg=lam, min_count=m, negative_at=neg, negative_weight=nw)
            for lam in (200.0, 400.0, 800.0, 1500.0)
            for m in (3, 5)
            for neg, nw in ((None, 0.0), (2.0, 0.0), (2.0, 1.0))
        ]
    )
    ease_only = ease.BlendParams(als=0.0, ease=1.0, stars=0.0, rating=0.0, genre=0.0)
    best = None
    fit, _ = fit_parts(fit_r, als.DEFAULT_IMPLICIT, None)
    for ep in eases:
        fit.ease = ease.fit_ease(fit.inter, ep)
        nd, _ = served(fit, valid, ease_only)
        print(
            f"| EASE λ {ep.reg:g}, ≥ {ep.min_count} ratings, dislikes ≤ {ep.negative_at} "
            f"count {-ep.negative_weight:g} ({fit.ease.items.size} movies) | {nd:.4f} | — "
            f"| {fit.ease.seconds:.2f} |",
            flush=True,
        )
        if best is None or nd > best[0]:
            best = (nd, ep)
    chosen = ease.DEFAULT_EASE
    fit.ease = ease.fit_ease(fit.inter, chosen)
    for g in (0.0, 2.0, 3.0, 4.0, 4.5, 5.0, 6.0):
        _, rm = served(fit, valid, replace(off, rating=g))
        print(
            f"| stars + {g:g}·(d_u·B) (EASE {chosen.reg:g}/≥{chosen.min_count}) | — | {rm:.4f} | |",
            flush=True,
        )
    grid = (
        [(0.8, 0.4)]
        if args.quick
        else list(itertools.product((0.5, 0.6, 0.7, 0.8, 0.9, 1.0), (0.0, 0.2, 0.3, 0.4, 0.5)))
    )
    for wa, ws in grid:
        b = ease.BlendParams(als=wa, ease=round(1 - wa, 2), stars=ws, rating=4.5, genre=0.0)
        nd, _ = served(fit, valid, b)
        print(
            f"| blend {wa:g}·z(ALS) + {1 - wa:g}·z(EASE) + {ws:g}·z(stars) | {nd:.4f} | — | |",
            flush=True,
        )
    if best is not None:
        print(f"\nbest EASE alone on validation: {best[1]} ({best[0]:.4f})")
    if args.test:
        print("\n## test (defaults fitted on the whole train part, scored once)\n")
        t0 = time.perf_counter()
        full = pipeline.fit_models(train, pipeline.TrainConfig())
        secs = time.perf_counter() - t0
        m = pipeline.evaluate_fit(full, test)
        nan = float("nan")
        print(
            f"served NDCG@10 {m['ndcg_at_10']:.4f} "
            f"(ALS alone {m.get('ranking_only_ndcg_at_10', nan):.4f}), "
            f"RMSE {m['rmse']:.4f} (explicit alone {m.get('explicit_only_rmse', nan):.4f}), "
            f"popularity {m['popularity_ndcg_at_10']:.4f}, fit {secs:.2f} s "
            f"(EASE {full.ease_seconds:.2f} s)"
        )


if __name__ == "__main__":
    main()
