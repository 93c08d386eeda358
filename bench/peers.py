"""Open-source peers for `make bench-train` (issue 20 item 5): same split, same run, same evaluator.

Every peer is tuned on a validation split carved from the TRAINING part only
(`als.random_holdout(train, 0.2, seed 42)`: fit on 64 %, score on 16 %); the chosen settings are
refitted on the whole training part and scored once on the test part by MovieRec's own
evaluator (NDCG@10 over test users with a ≥ 4★ test rating; RMSE of clipped predictions).

  * popularity (most rated in train);
  * EASE (Steck 2019), closed form B = I − P·diag(1/diag P), P = (XᵀX + λI)⁻¹ on the binary
    user × movie matrix, written here in NumPy (memory O(items²): 9.7k movies ≈ 0.75 GB float64);
  * implicit's AlternatingLeastSquares (confidence 1 + α·r, its CPU conjugate-gradient solver);
  * Surprise's SVD (biased matrix factorisation by SGD) for RMSE;
  * Spark MLlib ALS with implicitPrefs for ranking (its explicit ALS is in the accuracy table).

`implicit` and `scikit-surprise` are benchmark-only dependencies (`pip install -e '.[bench]'`,
done by `make bench-train`); a peer whose package is missing is reported as such, not skipped
silently. Nothing here is imported by the product.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from movierec_common import als
from movierec_trainer.evaluate import Evaluator, ScoreFn, factor_scores, rmse

VALID_SEED = 42


@dataclass
class PeerRow:
    name: str
    ndcg: float | None = None
    rmse: float | None = None
    fit_s: float | None = None
    settings: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def carve_validation(train: als.Interactions) -> tuple[als.Interactions, als.Interactions]:
    """(fit, validation) from the training part only, the project's seeded random holdout."""
    f, v = als.random_holdout(train.user_idx, train.item_idx, 0.2, VALID_SEED)
    return train.subset(f), train.subset(v)


def evaluator(train: als.Interactions, test: als.Interactions) -> Evaluator:
    return Evaluator(
        train.n_users,
        train.n_items,
        train.user_idx,
        train.item_idx,
        test.user_idx,
        test.item_idx,
        test.rating,
    )


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _tune(
    grid: list[dict],
    fit: Callable[[als.Interactions, dict], Any],
    score: Callable[[Any, als.Interactions, als.Interactions], float],
    train: als.Interactions,
    lower_is_better: bool = False,
) -> tuple[dict, list[tuple[dict, float]]]:
    """Fit each setting on the 64 % part, score it on the 16 % validation part."""
    fit_part, valid_part = carve_validation(train)
    results = []
    for g in grid:
        model = fit(fit_part, g)
        results.append((g, score(model, fit_part, valid_part)))
    pick = min if lower_is_better else max
    return pick(results, key=lambda r: r[1])[0], results


def _ndcg(fn_of_model: Callable[[Any], ScoreFn]):
    def score(model: Any, train: als.Interactions, test: als.Interactions) -> float:
        return evaluator(train, test).topn(fn_of_model(model)).ndcg_at_k

    return score


# ------------------------------------------------------------------------------------ EASE


def fit_ease(train: als.Interactions, lam: float) -> np.ndarray:
    """B (n_items × n_items, float32) of EASE on the binary rated / not-rated matrix."""
    x = np.zeros((train.n_users, train.n_items), dtype=np.float32)
    x[train.user_idx, train.item_idx] = 1.0
    g = (x.T @ x).astype(np.float64)
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = p / (-np.diag(p))
    b[np.diag_indices_from(b)] = 0.0
    return b.astype(np.float32)


def ease_scores(train: als.Interactions, b: np.ndarray) -> ScoreFn:
    indptr, indices, _ = als.to_csr(
        train.user_idx, train.item_idx, np.ones(len(train)), train.n_users
    )

    def fn(users: np.ndarray) -> np.ndarray:
        x = np.zeros((len(users), b.shape[0]), dtype=np.float32)
        for j, u in enumerate(users):
            x[j, indices[indptr[u] : indptr[u + 1]]] = 1.0
        return x @ b

    return fn


def ease_row(train: als.Interactions, test: als.Interactions, lams: list[float]) -> PeerRow:
    best, tried = _tune(
        [{"lam": v} for v in lams],
        lambda t, g: fit_ease(t, g["lam"]),
        lambda b, tr, va: evaluator(tr, va).topn(ease_scores(tr, b)).ndcg_at_k,
        train,
    )
    b, secs = _timed(lambda: fit_ease(train, best["lam"]))
    ndcg = evaluator(train, test).topn(ease_scores(train, b)).ndcg_at_k
    return PeerRow(
        "EASE (NumPy, binary)",
        ndcg=ndcg,
        fit_s=secs,
        settings=f"λ {best['lam']:g} (of {', '.join(format(g['lam'], 'g') for g, _ in tried)})",
    )


# ----------------------------------------------------------------------------- implicit ALS


def _implicit_fit(train: als.Interactions, g: dict):
    import scipy.sparse as sp
    from implicit.cpu.als import AlternatingLeastSquares

    conf = 1.0 + g["alpha"] * train.rating.astype(np.float32)
    ui = sp.csr_matrix(
        (conf, (train.user_idx, train.item_idx)), shape=(train.n_users, train.n_items)
    )
    model = AlternatingLeastSquares(
        factors=g["factors"],
        regularization=g["reg"],
        iterations=g["iterations"],
        random_state=42,
        calculate_training_loss=False,
    )
    model.fit(ui, show_progress=False)
    return np.asarray(model.user_factors), np.asarray(model.item_factors)


def implicit_row(train: als.Interactions, test: als.Interactions, grid: list[dict]) -> PeerRow:
    try:
        import implicit  # noqa: F401
    except ImportError:
        return PeerRow("implicit ALS", note="not installed: pip install -e '.[bench]'")
    best, _ = _tune(grid, _implicit_fit, _ndcg(lambda m: factor_scores(*m)), train)
    (x, y), secs = _timed(lambda: _implicit_fit(train, best))
    ndcg = evaluator(train, test).topn(factor_scores(x, y)).ndcg_at_k
    return PeerRow(
        "implicit ALS (tuned)",
        ndcg=ndcg,
        fit_s=secs,
        settings=f"{best['factors']} factors, λ {best['reg']:g}, c = 1 + {best['alpha']:g}·r, "
        f"{best['iterations']} it.",
        extra={"params": best},
    )


# ---------------------------------------------------------------------------- Surprise SVD


def _surprise_fit(train: als.Interactions, g: dict):
    import pandas as pd
    from surprise import SVD, Dataset, Reader

    df = pd.DataFrame({"u": train.user_idx, "i": train.item_idx, "r": train.rating})
    data = Dataset.load_from_df(df[["u", "i", "r"]], Reader(rating_scale=(0.5, 5.0)))
    algo = SVD(
        n_factors=g["factors"],
        n_epochs=g["epochs"],
        reg_all=g["reg"],
        lr_all=g["lr"],
        random_state=42,
    )
    algo.fit(data.build_full_trainset())
    return algo


def _surprise_rmse(algo, _train: als.Interactions, test: als.Interactions) -> float:
    pred = np.array(
        [
            algo.predict(int(u), int(i)).est
            for u, i in zip(test.user_idx, test.item_idx, strict=True)
        ]
    )
    return rmse(np.clip(pred, 0.5, 5.0), test.rating)


def surprise_row(train: als.Interactions, test: als.Interactions, grid: list[dict]) -> PeerRow:
    try:
        import surprise  # noqa: F401
    except ImportError:
        return PeerRow("Surprise SVD", note="not installed: pip install -e '.[bench]'")
    best, _ = _tune(grid, _surprise_fit, _surprise_rmse, train, lower_is_better=True)
    algo, secs = _timed(lambda: _surprise_fit(train, best))
    return PeerRow(
        "Surprise SVD (tuned)",
        rmse=_surprise_rmse(algo, train, test),
        fit_s=secs,
        settings=f"{best['factors']} factors, {best['epochs']} epochs, reg {best['reg']:g}, "
        f"lr {best['lr']:g}",
    )


# ------------------------------------------------------------------- Spark MLlib implicit ALS


def _mllib_implicit_fit(spark, train: als.Interactions, g: dict):
    import pandas as pd
    from pyspark.ml.recommendation import ALS

    df = spark.createDataFrame(
        pd.DataFrame({"u": train.user_idx, "i": train.item_idx, "r": train.rating})
    ).repartition(2)
    model = ALS(
        rank=g["rank"],
        maxIter=g["iterations"],
        regParam=g["reg"],
        alpha=g["alpha"],
        implicitPrefs=True,
        userCol="u",
        itemCol="i",
        ratingCol="r",
        seed=42,
        numUserBlocks=2,
        numItemBlocks=2,
    ).fit(df)
    x = np.zeros((train.n_users, g["rank"]))
    y = np.zeros((train.n_items, g["rank"]))
    for row in model.userFactors.collect():
        x[row["id"]] = row["features"]
    for row in model.itemFactors.collect():
        y[row["id"]] = row["features"]
    return x, y


def mllib_implicit_row(
    spark, train: als.Interactions, test: als.Interactions, grid: list[dict]
) -> PeerRow:
    best, _ = _tune(
        grid,
        lambda t, g: _mllib_implicit_fit(spark, t, g),
        _ndcg(lambda m: factor_scores(*m)),
        train,
    )
    (x, y), secs = _timed(lambda: _mllib_implicit_fit(spark, train, best))
    return PeerRow(
        "Spark MLlib ALS, implicitPrefs (tuned)",
        ndcg=evaluator(train, test).topn(factor_scores(x, y)).ndcg_at_k,
        fit_s=secs,
        settings=f"rank {best['rank']}, regParam {best['reg']:g}, alpha {best['alpha']:g}, "
        f"{best['iterations']} it.",
    )


def popularity_row(train: als.Interactions, test: als.Interactions) -> PeerRow:
    ev = evaluator(train, test)
    return PeerRow("popularity (most rated)", ndcg=ev.topn(ev.popularity_scores()).ndcg_at_k)


# ---------------------------------------------------------------------------------- the table

IMPLICIT_GRID = [
    {"factors": f, "reg": r, "alpha": 1.0, "iterations": 15}
    for f in (64, 128)
    for r in (10.0, 30.0)
]
SURPRISE_GRID = [
    {"factors": 100, "epochs": 20, "reg": 0.02, "lr": 0.005},
    {"factors": 100, "epochs": 50, "reg": 0.05, "lr": 0.005},
    {"factors": 200, "epochs": 100, "reg": 0.1, "lr": 0.005},
    {"factors": 200, "epochs": 100, "reg": 0.05, "lr": 0.005},
]
MLLIB_GRID = [{"rank": 64, "reg": r, "alpha": 1.0, "iterations": 10} for r in (0.01, 0.1, 1.0)]
EASE_LAMBDAS = [100.0, 200.0, 500.0, 1000.0]


def peer_rows(spark, train: als.Interactions, test: als.Interactions) -> list[PeerRow]:
    rows = [popularity_row(train, test), ease_row(train, test, EASE_LAMBDAS)]
    rows.append(implicit_row(train, test, IMPLICIT_GRID))
    rows.append(surprise_row(train, test, SURPRISE_GRID))
    if spark is not None:
        rows.append(mllib_implicit_row(spark, train, test, MLLIB_GRID))
    return rows


def render_peers(
    rows: list[PeerRow], ours_ndcg: float, ours_rmse: float, ours_s: float
) -> list[str]:
    """Markdown lines, one per peer, with ratios to MovieRec's served models. NDCG: peer /
    MovieRec (below 1: MovieRec is ahead); RMSE: peer / MovieRec (above 1: MovieRec is ahead)."""
    md = [
        "| model | NDCG@10 | peer / MovieRec | RMSE | peer / MovieRec | fit s "
        "| settings (chosen on validation carved from train) |",
        "|---|---:|---:|---:|---:|---:|---|",
        f"| **MovieRec served** | {ours_ndcg:.4f} | 1.00 | {ours_rmse:.4f} | 1.00 | {ours_s:.2f} "
        "| as `train` chooses them: explicit λ, EASE λ, γ, ranking λ, blend weights (genre "
        "part included) |",
    ]
    for r in rows:
        nd = "—" if r.ndcg is None else f"{r.ndcg:.4f}"
        ndr = "—" if r.ndcg is None else f"{r.ndcg / ours_ndcg:.3f}"
        rm = "—" if r.rmse is None else f"{r.rmse:.4f}"
        rmr = "—" if r.rmse is None else f"{r.rmse / ours_rmse:.3f}"
        fs = "—" if r.fit_s is None else f"{r.fit_s:.2f}"
        md.append(f"| {r.name} | {nd} | {ndr} | {rm} | {rmr} | {fs} | {r.settings or r.note} |")
    return md
