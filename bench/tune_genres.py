"""How the served blend's genre part was chosen (issue 20): its profile rule, genre-row scaling
and weight, on validation carves of ml-latest-small's training part only.

The trainer's seeded 80/20 split (seed 42) gives the training part; from it, 12 seeded 80/20
validation carves (`tdata.random_holdout(train, 0.2, seed)`). On each carve the shipped models
are fitted on the fit part (`pipeline.fit_models`, no genres, so the blend is the shipped one
without a genre part), and each candidate part is added as w·z(part) to the served blend
(`pipeline.served_parts`, `ease.blend_ranking`). Printed: the gain in validation NDCG@10 over
the shipped blend per carve, its mean, standard deviation across carves, and how many carves
gained. The test split is never read.

    .venv/bin/python bench/tune_genres.py [--data-dir data/ml-latest-small] [--carves 12]

A candidate is a profile rule (which of the user's ratings count, with what weight) and a
genre-row scaling (√ of the genre count, as shipped; the count; none). `movierec_common.genres`
is the shipped rule ("≥ own mean, > 2★", √).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from movierec_common import ease as easelib
from movierec_common import genres as genrelib
from movierec_trainer import data as tdata
from movierec_trainer import pipeline
from movierec_trainer.evaluate import Evaluator
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (42, 7, 1234, 1, 2, 3, 4, 5, 6, 8, 9, 10)
WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7)

# (stars, the user's mean per rating) → the weight each rating gives its movie's genre row
Rule = Callable[[np.ndarray, np.ndarray], np.ndarray]
RULES: dict[str, Rule] = {
    "every rating": lambda r, m: np.ones_like(r),
    "r / 5": lambda r, m: r / 5,
    "≥ 3.5★": lambda r, m: (r >= 3.5).astype(float),
    "≥ 4★": lambda r, m: (r >= 4).astype(float),
    "≥ own mean": lambda r, m: (r >= m).astype(float),
    "≥ own mean, > 2★ (shipped)": lambda r, m: ((r >= m) & (r > 2)).astype(float),
    "shipped − dislikes (≤ 2★)": lambda r, m: ((r >= m) & (r > 2)) - (r <= 2).astype(float),
}
SCALINGS = {
    "√ count (shipped)": lambda g: genrelib.genre_rows(g).astype(np.float64),
    "count (cosine)": lambda g: g / np.maximum(g.sum(axis=1, keepdims=True), 1),
    "none": lambda g: g.astype(np.float64),
}


def carve(train, genres_of, seed: int) -> dict[tuple[str, str, float], float]:
    """Gain in validation NDCG@10 of every (rule, scaling, weight) on one carve."""
    v = tdata.random_holdout(train, 0.2, seed)
    fit = pipeline.fit_models(v.train, pipeline.TrainConfig())
    u, i = fit.index(v.test)
    ev = Evaluator(
        fit.inter.n_users,
        fit.inter.n_items,
        fit.inter.user_idx,
        fit.inter.item_idx,
        u,
        i,
        v.test.ratings,
    )
    users = ev.eval_users
    a, e, s, _ = pipeline.served_parts(fit)(users)
    pop = easelib.popularity_scores(fit.item_counts)
    base = easelib.blend_ranking(a, e, s, fit.blend, popularity=pop)

    def ndcg(total: np.ndarray) -> float:
        return float(ev.user_ndcg(lambda b: total[np.searchsorted(users, b)], users).mean())

    b0 = ndcg(base)
    indicators, _ = genrelib.genre_indicators(fit.item_ids, genres_of)
    ui, ii = fit.inter.user_idx, fit.inter.item_idx
    r = fit.inter.rating.astype(np.float64)
    n_users = fit.inter.n_users
    mean = np.bincount(ui, r, n_users) / np.maximum(np.bincount(ui, minlength=n_users), 1)
    out: dict[tuple[str, str, float], float] = {}
    for sname, scale in SCALINGS.items():
        rows = scale(indicators)
        for rname, rule in RULES.items():
            if sname != "√ count (shipped)" and rname != "≥ 4★":
                continue  # the scalings compared on one rule
            weight = rule(r, mean[ui])
            profile = np.zeros((n_users, rows.shape[1]))
            np.add.at(profile, ui, rows[ii] * weight[:, None])
            part = easelib.standardize(profile[users] @ rows.T)
            for w in WEIGHTS:
                out[(rname, sname, w)] = ndcg(base + w * part) - b0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data" / "ml-latest-small")
    ap.add_argument("--carves", type=int, default=len(SEEDS))
    args = ap.parse_args()
    threadpool_limits(1)
    ds = tdata.load_dataset_dir(args.data_dir)
    genres_of = {m.movieId: m.genres for m in ds.movies}
    train = tdata.random_holdout(ds.ratings, 0.2, 42).train
    gains: dict[tuple[str, str, float], list[float]] = {}
    for seed in SEEDS[: args.carves]:
        for key, g in carve(train, genres_of, seed).items():
            gains.setdefault(key, []).append(g)
        print(f"carve seed {seed} done", flush=True)
    print("| profile rule | genre rows | w | mean gain | sd | carves gaining |")
    print("|---|---|---:|---:|---:|---:|")
    for (rname, sname, w), g in gains.items():
        x = np.asarray(g)
        print(
            f"| {rname} | {sname} | {w:g} | {x.mean():+.4f} | {x.std():.4f} | "
            f"{int((x > 0).sum())} / {x.size} |"
        )


if __name__ == "__main__":
    main()
