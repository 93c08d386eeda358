"""Choose the shipped ALS defaults on a validation split, then report them once on the test split.

Protocol (the project's contract, issue 2 / issue 8):
  1. ml-latest-small, `als.random_holdout(fraction=0.2, seed=42)` → train (80 %) / test.
  2. From TRAIN only, `als.random_holdout(fraction=0.2, seed=42)` again → fit / validation.
  3. Every candidate is fitted on `fit` and scored on `validation`:
       explicit: validation RMSE over λ × {scaled λ·n, plain λ} × init scale (rank 20,
                 20 iterations and bias λ 10 are the contract and stay fixed);
       ranking:  validation NDCG@10 (relevant = validation ratings ≥ 4, candidates = training
                 movies the user has not rated in `fit`, top 10) over α × λ, then rank and
                 iterations at the best α, λ.
  4. The winners are refitted on the whole train part and evaluated ONCE on the test split.
     The test split never takes part in a choice.

Run: .venv/bin/python bench/tune_defaults.py [--data-dir data/ml-latest-small] [--quick]
Output is printed and also written to bench/out/tune_defaults.txt.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from movierec_common import als
from movierec_common.als import ExplicitParams, ImplicitParams, Interactions
from movierec_common.loader import load_dataset
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parent.parent
K = 10
RELEVANT = 4.0


# ------------------------------------------------------------------- top-N metrics (NumPy)


def _csr(rows: np.ndarray, cols: np.ndarray, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    indptr, indices, _ = als.to_csr(rows, cols, np.zeros(len(rows)), n_rows)
    return indptr, indices


def topn_metrics(
    score_rows, train: Interactions, test: Interactions, k: int = K, chunk: int = 256
) -> dict[str, float]:
    """Precision/Recall/NDCG@k and catalogue coverage, averaged over test users with ≥ 1
    relevant test rating. `score_rows(users) -> (len(users), n_items)` scores."""
    seen_items = np.bincount(train.item_idx, minlength=train.n_items) > 0
    t_ptr, t_idx = _csr(train.user_idx, train.item_idx, train.n_users)
    rel = test.rating >= RELEVANT
    r_ptr, r_idx = _csr(test.user_idx[rel], test.item_idx[rel], test.n_users)
    users = np.flatnonzero(np.diff(r_ptr) > 0)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    prec = rec = ndcg = 0.0
    shown = np.zeros(train.n_items, dtype=bool)
    for s in range(0, users.size, chunk):
        batch = users[s : s + chunk]
        scores = np.array(score_rows(batch), dtype=np.float64)
        scores[:, ~seen_items] = -np.inf
        for j, u in enumerate(batch):  # mask each user's own training movies
            scores[j, t_idx[t_ptr[u] : t_ptr[u + 1]]] = -np.inf
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable")
        top = np.take_along_axis(part, order, 1)
        shown[top.ravel()] = True
        for j, u in enumerate(batch):
            relevant = r_idx[r_ptr[u] : r_ptr[u + 1]]
            hits = np.isin(top[j], relevant)
            n_hit = int(hits.sum())
            prec += n_hit / k
            rec += n_hit / relevant.size
            ideal = discounts[: min(k, relevant.size)].sum()
            ndcg += float((hits * discounts).sum() / ideal)
    n = max(users.size, 1)
    return {
        "ndcg": ndcg / n,
        "precision": prec / n,
        "recall": rec / n,
        "coverage": float(shown.sum() / max(seen_items.sum(), 1)),
        "users": int(users.size),
    }


def rmse_mae(model: als.ExplicitModel, test: Interactions) -> tuple[float, float]:
    pred = model.predict(test.user_idx, test.item_idx)
    d = pred - test.rating.astype(np.float64)
    return float(np.sqrt(np.mean(d * d))), float(np.mean(np.abs(d)))


def popularity_scores(train: Interactions):
    counts = np.bincount(train.item_idx, minlength=train.n_items).astype(np.float64)
    return lambda users: np.broadcast_to(counts, (len(users), counts.size))


def explicit_scores(m: als.ExplicitModel):
    return lambda users: (
        m.mu + m.user_bias[users][:, None] + m.item_bias[None, :] + m.P[users] @ m.Q.T
    )


def implicit_scores(model: als.ImplicitModel):
    return lambda users: model.X[users] @ model.Y.T


# ------------------------------------------------------------------------------- the search


def explicit_grid(quick: bool) -> list[ExplicitParams]:
    base = ExplicitParams()
    scaled = [0.05, 0.1, 0.12, 0.15, 0.18, 0.2, 0.22, 0.25, 0.3] if not quick else [0.1, 0.2]
    plain = [1.0, 5.0, 10.0, 15.0, 20.0, 30.0, 50.0] if not quick else [10.0, 20.0]
    inits = [0.01, 0.1, 0.5] if not quick else [0.1]
    grid = [replace(base, reg=r, reg_scaled=True, init_scale=s) for r in scaled for s in inits]
    grid += [replace(base, reg=r, reg_scaled=False, init_scale=s) for r in plain for s in inits]
    return grid


def _naive_fit_seconds(inter: Interactions, p: ExplicitParams) -> float:
    """The same explicit fit with the per-row Python-loop reference solve (for the ratio)."""
    t0 = time.perf_counter()
    mu, b_u, b_i = als.compute_biases(inter, p.bias_reg)
    resid = inter.rating - mu - b_u[inter.user_idx] - b_i[inter.item_idx]
    by_item = als.to_csr(inter.item_idx, inter.user_idx, resid, inter.n_items)
    by_user = als.to_csr(inter.user_idx, inter.item_idx, resid, inter.n_users)
    P = als.init_factors(inter.n_users, p.rank, p.seed, als.USER_SALT, p.init_scale)
    for _ in range(p.iterations):
        Q = als.naive_solve_explicit(P, *by_item, p.reg, p.reg_scaled)
        P = als.naive_solve_explicit(Q, *by_user, p.reg, p.reg_scaled)
    return time.perf_counter() - t0


def speed_table(inter: Interactions, console: Console, repeats: int = 3) -> None:
    """Fit time of the shipped defaults on ALL ratings, best of `repeats`, per BLAS thread count."""
    table = Table(title=f"Kernel speed on all {len(inter)} ratings (best of {repeats})")
    for col in ("model", "BLAS threads", "wall s", "CPU s", "vs naive loop"):
        table.add_column(col, justify="right")
    naive = None
    for threads in (1, 2):
        with threadpool_limits(threads):
            for label, fn in (
                ("explicit DEFAULT", lambda: als.fit_explicit(inter)),
                ("ranking DEFAULT", lambda: als.fit_implicit(inter)),
            ):
                best_wall = best_cpu = math.inf
                for _ in range(repeats):
                    w, c = time.perf_counter(), time.process_time()
                    fn()
                    best_wall = min(best_wall, time.perf_counter() - w)
                    best_cpu = min(best_cpu, time.process_time() - c)
                ratio = ""
                if label.startswith("explicit"):
                    if naive is None:
                        naive = _naive_fit_seconds(inter, als.DEFAULT_EXPLICIT)
                    ratio = f"{naive / best_wall:.1f}× faster (naive {naive:.1f} s)"
                table.add_row(label, str(threads), f"{best_wall:.3f}", f"{best_cpu:.3f}", ratio)
    console.print(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data" / "ml-latest-small")
    ap.add_argument("--quick", action="store_true", help="a tiny grid, for smoke runs")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (the box has 2 cores)")
    ap.add_argument("--speed-only", action="store_true", help="only the kernel speed table")
    args = ap.parse_args()
    out_dir = ROOT / "bench" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    console = Console(record=True, width=120)
    threadpool_limits(args.threads)

    raw = load_dataset(args.data_dir).ratings
    inter, _, _ = als.index_ratings(raw.user_ids, raw.movie_ids, raw.ratings)
    if args.speed_only:
        speed_table(inter, console)
        (out_dir / "kernel_speed.txt").write_text(console.export_text())
        return
    tr_mask, te_mask = als.random_holdout(inter.user_idx, inter.item_idx, 0.2, seed=42)
    train, test = inter.subset(tr_mask), inter.subset(te_mask)
    f_mask, v_mask = als.random_holdout(train.user_idx, train.item_idx, 0.2, seed=42)
    fit, valid = train.subset(f_mask), train.subset(v_mask)
    console.print(
        f"ratings {len(inter)}  train {len(train)}  test {len(test)} "
        f"(dropped {len(inter) - len(train) - len(test)})  fit {len(fit)}  valid {len(valid)}"
    )

    # ---- explicit: validation RMSE
    grid = explicit_grid(args.quick)
    rows: list[tuple[ExplicitParams, float, float, float]] = []
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("explicit grid", total=len(grid))
        for p in grid:
            t0 = time.process_time()
            m = als.fit_explicit(fit, p, valid=valid)
            h = m.history[-1]
            rows.append((p, h["valid_rmse"], h["valid_mae"], time.process_time() - t0))
            bar.advance(task)
    table = Table(title="Explicit model: validation split (fit on 64 %, scored on 16 %)")
    for col in ("convention", "λ", "init scale", "valid RMSE", "valid MAE", "fit CPU s"):
        table.add_column(col, justify="right")
    for p, vr, va, sec in sorted(rows, key=lambda r: r[1]):
        conv = "λ·n (scaled)" if p.reg_scaled else "λ (plain)"
        table.add_row(
            conv, f"{p.reg:g}", f"{p.init_scale:g}", f"{vr:.4f}", f"{va:.4f}", f"{sec:.2f}"
        )
    console.print(table)
    best_exp = min(rows, key=lambda r: r[1])[0]
    best_plain = min((r for r in rows if not r[0].reg_scaled), key=lambda r: r[1])[0]

    # ---- ranking: validation NDCG@10, α × λ first, then rank × iterations
    alphas = [0.5, 1.0, 2.0, 5.0] if not args.quick else [1.0]
    regs = [1.0, 5.0, 10.0, 20.0, 30.0, 50.0, 100.0] if not args.quick else [10.0]
    stage1 = [
        ImplicitParams(rank=20, reg=r, alpha=a, iterations=10)
        for a, r in itertools.product(alphas, regs)
    ]
    results: list[tuple[ImplicitParams, dict, float]] = []

    # Cost rule (issue 8: both models together ≤ 1.5× the explicit fit, so the ranking model
    # may cost at most half of it). Counted in flops of the half-steps, iterations ×
    # (nnz·k² + rows·k³), not in measured seconds, so noise from other load on the box cannot
    # flip the choice. At rank 20 this allows 10 iterations, at rank 32 two, at rank 50 none.
    def cost(rank: int, iterations: int) -> float:
        return iterations * (len(fit) * rank**2 + (fit.n_users + fit.n_items) * rank**3)

    budget = 0.5 * cost(best_exp.rank, best_exp.iterations)

    def run(params: ImplicitParams) -> dict:
        if any(p == params for p, _, _ in results):
            return {}
        t0 = time.process_time()
        m = als.fit_implicit(fit, params)
        sec = time.process_time() - t0
        met = topn_metrics(implicit_scores(m), fit, valid)
        results.append((params, met, sec))
        return met

    def best_within_budget() -> ImplicitParams:
        ok = [r for r in results if cost(r[0].rank, r[0].iterations) <= budget] or results
        return max(ok, key=lambda r: r[1]["ndcg"])[0]

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("ranking α×λ", total=len(stage1))
        for p in stage1:
            run(p)
            bar.advance(task)
        best = max(results, key=lambda r: r[1]["ndcg"])[0]
        ranks = [10, 20, 32, 50] if not args.quick else [20]
        iters = [3, 5, 8, 10, 15] if not args.quick else [10]
        stage2 = [replace(best, rank=k, iterations=it) for k in ranks for it in iters]
        task = bar.add_task("ranking rank×iterations", total=len(stage2))
        for p in stage2:
            run(p)
            bar.advance(task)
        best = best_within_budget()
        factors = [0.5, 0.7, 1.4, 2.0] if not args.quick else []
        stage3 = [replace(best, reg=best.reg * f) for f in factors]
        stage3 += [replace(best, alpha=a) for a in ([0.7, 1.5] if not args.quick else [])]
        task = bar.add_task("ranking λ/α refinement", total=len(stage3))
        for p in stage3:
            run(p)
            bar.advance(task)
    pop_valid = topn_metrics(popularity_scores(fit), fit, valid)
    table = Table(title="Ranking model: validation NDCG@10 (fit on 64 %, scored on 16 %)")
    for col in ("rank", "α", "λ", "iters", "NDCG@10", "P@10", "R@10", "coverage", "fit CPU s"):
        table.add_column(col, justify="right")
    table.add_row(
        "popularity",
        "",
        "",
        "",
        f"{pop_valid['ndcg']:.4f}",
        f"{pop_valid['precision']:.4f}",
        f"{pop_valid['recall']:.4f}",
        f"{pop_valid['coverage']:.3f}",
        "",
    )
    for p, met, sec in sorted(results, key=lambda r: -r[1]["ndcg"]):
        table.add_row(
            str(p.rank),
            f"{p.alpha:g}",
            f"{p.reg:g}",
            str(p.iterations),
            f"{met['ndcg']:.4f}",
            f"{met['precision']:.4f}",
            f"{met['recall']:.4f}",
            f"{met['coverage']:.3f}",
            f"{sec:.2f}",
        )
    console.print(table)
    best_imp = best_within_budget()
    console.print(
        f"ranking budget: ≤ {budget / 1e9:.2f} GFLOP (half the explicit default's fit); "
        f"best within budget {best_imp}; best overall "
        f"{max(results, key=lambda r: r[1]['ndcg'])[0]}"
    )

    # ---- once, on the test split
    table = Table(title="Chosen defaults on the TEST split (fit on the whole 80 % train part)")
    for col in ("model", "params", "RMSE", "MAE", "NDCG@10", "P@10", "R@10", "cov.", "CPU s"):
        table.add_column(col, justify="right")
    mean = float(train.rating.mean())
    d = mean - test.rating.astype(np.float64)
    table.add_row(
        "global mean",
        "",
        f"{math.sqrt(np.mean(d * d)):.4f}",
        f"{np.mean(np.abs(d)):.4f}",
        "",
        "",
        "",
        "",
        "",
    )
    bias_only = als.fit_explicit(train, replace(best_exp, iterations=0))
    r, a = rmse_mae(bias_only, test)
    table.add_row("biases only (λ_b 10)", "", f"{r:.4f}", f"{a:.4f}", "", "", "", "", "")
    for label, p in (("explicit, best plain λ", best_plain), ("explicit DEFAULT", best_exp)):
        t0 = time.process_time()
        m = als.fit_explicit(train, p)
        sec = time.process_time() - t0
        r, a = rmse_mae(m, test)
        conv = "scaled" if p.reg_scaled else "plain"
        by_rating = topn_metrics(explicit_scores(m), train, test)
        table.add_row(
            label,
            f"λ={p.reg:g} {conv} init={p.init_scale:g}",
            f"{r:.4f}",
            f"{a:.4f}",
            f"{by_rating['ndcg']:.4f}",
            f"{by_rating['precision']:.4f}",
            f"{by_rating['recall']:.4f}",
            f"{by_rating['coverage']:.3f}",
            f"{sec:.2f}",
        )
    pop = topn_metrics(popularity_scores(train), train, test)
    table.add_row(
        "popularity (most rated)",
        "",
        "",
        "",
        f"{pop['ndcg']:.4f}",
        f"{pop['precision']:.4f}",
        f"{pop['recall']:.4f}",
        f"{pop['coverage']:.3f}",
        "",
    )
    t0 = time.process_time()
    mi = als.fit_implicit(train, best_imp)
    sec = time.process_time() - t0
    met = topn_metrics(implicit_scores(mi), train, test)
    table.add_row(
        "ranking DEFAULT",
        f"rank={best_imp.rank} α={best_imp.alpha:g} λ={best_imp.reg:g} it={best_imp.iterations}",
        "",
        "",
        f"{met['ndcg']:.4f}",
        f"{met['precision']:.4f}",
        f"{met['recall']:.4f}",
        f"{met['coverage']:.3f}",
        f"{sec:.2f}",
    )
    console.print(table)
    console.print(f"ratio ranking/popularity NDCG@10: {met['ndcg'] / pop['ndcg']:.2f}×")
    console.print(f"chosen: DEFAULT_EXPLICIT = {best_exp}")
    console.print(f"chosen: DEFAULT_IMPLICIT = {best_imp}")
    speed_table(inter, console)
    (out_dir / "tune_defaults.txt").write_text(console.export_text())


if __name__ == "__main__":
    main()
