"""Kernel fit time side by side with implicit's ALS (issue 20 item 4), one process, one run.

For ml-latest-small (seeded 80/20 split, training part) and a seeded 5M-rating synthetic set
(bench/synth.py), at rank 20 and rank 128, the same iterations and the same problem:
  * MovieRec's local engine as the trainer runs it (float32 half-steps), ranking model,
    whitened conjugate-gradient half-steps (the default 2 steps per row, and implicit's 3;
    the last user half-step exact), the same with that last step in CG too (implicit's work
    per iteration; not shipped) and the exact solver (the reference);
  * implicit's AlternatingLeastSquares (CPU, conjugate gradient, 3 steps), given the same
    confidence c = 1 + α·r and regularisation, with 1 thread (as our engine) and 2 threads;
  * the explicit model, exact vs CG (ml-latest-small only);
  * both shipped models together at the shipped defaults.
NDCG@10 on the ml-latest-small test split is shown so equal time means equal work done.
BLAS is capped at one thread (threadpoolctl) for every row; the load average is printed,
because the machine is shared.

implicit is a benchmark-only peer, never a runtime dependency:
    .venv/bin/pip install implicit==0.7.3
    .venv/bin/python bench/bench_kernel.py                    # ~3-5 min on 2 cores
    .venv/bin/python bench/bench_kernel.py --skip-exact-128   # skip the slow exact reference
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from movierec_common import als
from movierec_common.movielens import load_ratings
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from movierec_trainer.evaluate import Evaluator, factor_scores  # noqa: E402
from synth import generate  # noqa: E402


def timed(fn: Callable[[], object], repeat: int = 1) -> tuple[object, float]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return out, best


class CgThroughout(als.LocalHalfSteps):
    """Bench only: the model's last user half-step takes CG steps like every other (implicit's
    work per iteration), where the shipped loop solves it exactly so that fold-in reproduces a
    trained user's vector. Shows what that exact step costs."""

    def __init__(self, inter: als.Interactions, steps: int) -> None:
        super().__init__(inter)
        self.steps = steps

    def solve_users(
        self, explicit: als.ExplicitStep | None, implicit: als.ImplicitStep | None, errors: bool
    ) -> als.StepResult:
        if implicit is not None and implicit.cg_steps == 0:
            implicit = replace(implicit, cg_steps=self.steps)
        return super().solve_users(explicit, implicit, errors)


def cg_throughout(data: als.Interactions, p: als.ImplicitParams) -> als.ImplicitModel:
    _, m = als.fit_als(CgThroughout(data, p.cg_steps), data, None, p, dtype=np.float32)
    assert m is not None
    return m


def implicit_fit(train: als.Interactions, p: als.ImplicitParams, threads: int):
    """implicit's ALS on the same confidence matrix C = 1 + α·r (its CG uses c as given)."""
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares

    conf = sp.csr_matrix(
        (1.0 + p.alpha * train.rating.astype(np.float32), (train.user_idx, train.item_idx)),
        shape=(train.n_users, train.n_items),
        dtype=np.float32,
    )
    model = AlternatingLeastSquares(
        factors=p.rank,
        regularization=p.reg,
        alpha=1.0,
        iterations=p.iterations,
        use_cg=True,
        calculate_training_loss=False,
        num_threads=threads,
        random_state=p.seed,
    )
    model.cg_steps = 3  # its default, an attribute rather than an argument
    model.fit(conf, show_progress=False)
    return model.user_factors, model.item_factors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "ml-latest-small")
    ap.add_argument("--synth-ratings", type=int, default=5_000_000)
    ap.add_argument("--skip-exact-128", action="store_true")
    args = ap.parse_args()
    threadpool_limits(limits=1)
    print(f"load average at start: {os.getloadavg()}", flush=True)

    raw = load_ratings(args.data / "ratings.csv")
    inter, _, _ = als.index_ratings(raw.user_ids, raw.movie_ids, raw.ratings)
    tr_m, te_m = als.random_holdout(inter.user_idx, inter.item_idx, 0.2, seed=42)
    small, test = inter.subset(tr_m), inter.subset(te_m)
    ev = Evaluator(
        small.n_users, small.n_items, small.user_idx, small.item_idx,
        test.user_idx, test.item_idx, test.rating,
    )  # fmt: skip
    u, i, r, _ = generate(args.synth_ratings, n_users=60_000, n_items=20_000)
    big, _, _ = als.index_ratings(u, i, r)

    rows: list[tuple] = []

    def row(data: str, rank: int, iters: int, engine: str, secs: float, ndcg: float | None):
        rows.append((data, rank, iters, engine, secs, ndcg))
        nd = "" if ndcg is None else f"  NDCG@10 {ndcg:.4f}"
        print(f"{data:>18} k={rank:<3} it={iters:<2} {engine:<56} {secs:7.2f} s{nd}", flush=True)

    cases = [("ml-latest-small", small, 20, 10), ("ml-latest-small", small, 128, 15)]
    cases += [
        (f"synthetic {len(big) / 1e6:.0f}M", big, 20, 5),
        (f"synthetic {len(big) / 1e6:.0f}M", big, 128, 5),
    ]
    for name, data, rank, iters in cases:
        p = replace(als.DEFAULT_IMPLICIT, rank=rank, iterations=iters)
        is_small = data is small

        def score(X, Y, is_small=is_small):
            return ev.topn(factor_scores(X, Y)).ndcg_at_k if is_small else None

        m, s = timed(lambda p=p, data=data: als.fit_implicit(data, p, dtype=np.float32))
        label = f"MovieRec local, CG {p.cg_steps} steps (float32)"
        row(name, rank, iters, label, s, score(m.X, m.Y))
        if p.cg_steps != 3:  # implicit's step count, for the same number of steps as well
            p3 = replace(p, cg_steps=3)
            m, s = timed(lambda p=p3, data=data: als.fit_implicit(data, p, dtype=np.float32))
            row(name, rank, iters, "MovieRec local, CG 3 steps (float32)", s, score(m.X, m.Y))
        m, s = timed(lambda p=p, data=data: cg_throughout(data, p))
        label = f"MovieRec, CG {p.cg_steps} steps, last user step too (not shipped)"
        row(name, rank, iters, label, s, score(m.X, m.Y))
        for threads in (1, 2):
            (X, Y), s = timed(lambda p=p, data=data, t=threads: implicit_fit(data, p, t))
            row(name, rank, iters, f"implicit ALS (CG), {threads} thread(s)", s, score(X, Y))
        if rank == 128 and (args.skip_exact_128 or not is_small):
            continue
        m, s = timed(
            lambda p=p, data=data: als.fit_implicit(data, replace(p, cg_steps=0), dtype=np.float32)
        )
        row(name, rank, iters, "MovieRec local, exact (reference)", s, score(m.X, m.Y))

    for rank in (20, 128):
        for steps in (0, 3):
            p = replace(als.DEFAULT_EXPLICIT, rank=rank, cg_steps=steps)
            m, s = timed(lambda p=p: als.fit_explicit(small, p, dtype=np.float32))
            pred = np.clip(m.predict(test.user_idx, test.item_idx), 0.5, 5.0)
            rmse = float(np.sqrt(np.mean((pred - test.rating) ** 2)))
            label = "exact" if steps == 0 else f"CG {steps} steps"
            rows.append(("ml-latest-small", rank, p.iterations, f"explicit {label}", s, None))
            print(f"explicit k={rank} {label}: {s:.2f} s, RMSE {rmse:.4f}", flush=True)

    def both():  # as the trainer runs them: one loop, float32 half-steps
        als.fit_als(
            als.LocalHalfSteps(small),
            small,
            als.DEFAULT_EXPLICIT,
            als.DEFAULT_IMPLICIT,
            dtype=np.float32,
        )

    _, s = timed(both, repeat=3)
    print(f"both shipped models, ml-latest-small train part: {s:.2f} s (best of 3)")
    print(f"load average at end: {os.getloadavg()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
