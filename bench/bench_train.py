"""Training benchmark (issue 2 item 8, issue 8 item 4): one process, one split, one SparkSession.

For each data set (ml-latest-small; a seeded synthetic 10M-rating set from bench/synth.py):
  * explicit ALS, rank 20, 20 iterations, the shipped regularisation, fitted by
      - our local NumPy engine,
      - our Spark engine on local[2] (2 and, on the small set, 8 partitions),
      - Spark MLlib ALS (pyspark.ml.recommendation.ALS) in the same SparkSession, regParam
        tuned over {0.05, 0.1, 0.2} (its best is the reference for the ratios),
      - a naive "seed-style" Spark version: ratings grouped into Python lists per user/movie
        (groupByKey) and one np.linalg.solve per row in a Python loop inside mapPartitions;
    with fit seconds, test RMSE/MAE (predictions clipped to 0.5–5 for every model) and the peak
    RSS of the whole process tree (this Python driver + the JVM + its Python workers), sampled
    every 50 ms by psutil;
  * a ranking table: popularity, explicit-by-rating, blended, ranking model, EASE, served
    (ranking model's top-10 with the explicit model's stars) — NDCG@10, P@10, R@10, coverage@10
    and fit seconds.

    .venv/bin/python bench/bench_train.py --sizes small          # ~5 min on 2 busy cores
    .venv/bin/python bench/bench_train.py --sizes small,10m      # + the 10M set (long)

Tables go to stdout and to bench/out/train.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import psutil
from movierec_common import als, ease
from movierec_common.movielens import Ratings
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from movierec_trainer import data as tdata  # noqa: E402
from movierec_trainer import pipeline, tune  # noqa: E402
from movierec_trainer.evaluate import (  # noqa: E402
    Evaluator,
    blended_scores,
    explicit_scores,
    factor_scores,
    mae,
    rmse,
)
from movierec_trainer.session import build_spark  # noqa: E402
from movierec_trainer.spark_als import SparkALS  # noqa: E402
from synth import generate  # noqa: E402

console = Console()
MLLIB_REGS = (0.05, 0.1, 0.2)
NAIVE_BUDGET_S = 600.0
NAIVE_COST: dict[str, float] = {}


# ------------------------------------------------------------------------------ measurement


class PeakRSS:
    """Peak resident memory of this process and all its descendants (JVM, Python workers)."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._me = psutil.Process()

    def _sample(self) -> int:
        total = 0
        procs = [self._me]
        with contextlib.suppress(psutil.Error):
            procs += self._me.children(recursive=True)
        for p in procs:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total

    def __enter__(self) -> PeakRSS:
        self.peak = self._sample()
        self._stop.clear()

        def run() -> None:
            while not self._stop.wait(self.interval):
                self.peak = max(self.peak, self._sample())

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self._sample())


@dataclass
class Row:
    name: str
    seconds: float | None
    rmse: float | None
    mae: float | None
    peak_gb: float | None
    note: str = ""
    extra: dict = field(default_factory=dict)


@dataclass
class Dataset:
    name: str
    train: als.Interactions
    test: als.Interactions
    n_ratings: int
    train_ratings: Ratings  # the training part as the trainer reads it (same row order)
    genres_of: dict = field(default_factory=dict)  # movieId → genres (the genre part)


def _clip(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.5, 5.0)


def load_dataset(size: str, data_dir: Path) -> Dataset:
    if size == "small":
        loaded = tdata.load_dataset_dir(data_dir)
        r = loaded.ratings
        genres_of = {m.movieId: m.genres for m in loaded.movies}
        name = "ml-latest-small"
    else:
        n = {"10m": 10_000_000, "1m": 1_000_000}[size]
        cache = ROOT / "bench" / "out" / f"synth_{size}.npz"
        if cache.exists():
            with np.load(cache, allow_pickle=False) as z:
                u, i, rr, ts = z["u"], z["i"], z["r"], z["t"]
        else:
            with console.status(f"generating the synthetic {size} set (seeded) …"):
                u, i, rr, ts = generate(n)
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, u=u, i=i, r=rr, t=ts)
        r = tdata.make_ratings(u, i, rr, ts)
        genres_of = {}  # the generator writes ratings only
        name = f"synthetic {n / 1e6:.0f}M"
    split = tdata.random_holdout(r, 0.2, 42)
    inter, users, items = als.index_ratings(
        split.train.user_ids, split.train.movie_ids, split.train.ratings
    )
    test = als.Interactions(
        np.searchsorted(users, split.test.user_ids).astype(np.int32),
        np.searchsorted(items, split.test.movie_ids).astype(np.int32),
        split.test.ratings,
        inter.n_users,
        inter.n_items,
    )
    return Dataset(name, inter, test, len(r), split.train, genres_of)


def score(model: als.ExplicitModel, test: als.Interactions) -> tuple[float, float]:
    pred = _clip(als.predict_explicit(model, test.user_idx, test.item_idx))
    return rmse(pred, test.rating), mae(pred, test.rating)


def timed(fn: Callable[[], object]) -> tuple[object, float, float]:
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        out = fn()
        secs = time.perf_counter() - t0
    return out, secs, mem.peak / 2**30


# ------------------------------------------------------------------------------ the engines


def run_mllib(spark, ds: Dataset, reg: float, iterations: int, rank: int, parts: int):
    from pyspark.ml.recommendation import ALS

    train_df, test_df = _frames(spark, ds)
    als_ml = ALS(
        rank=rank,
        maxIter=iterations,
        regParam=reg,
        userCol="u",
        itemCol="i",
        ratingCol="r",
        seed=42,
        numUserBlocks=parts,
        numItemBlocks=parts,
        coldStartStrategy="nan",
    )

    def fit():
        model = als_ml.fit(train_df)
        # Force both factor tables, so lazy work is inside the timing.
        model.userFactors.count()
        model.itemFactors.count()
        return model

    model, secs, peak = timed(fit)
    pred = model.transform(test_df).select("u", "i", "r", "prediction").toPandas()
    # Every test user/movie is in train; NaN would mean a cold start, which must not happen.
    p = pred["prediction"].to_numpy(dtype=np.float64)
    if np.isnan(p).any():
        raise RuntimeError("MLlib produced NaN predictions for warm users/items")
    return secs, rmse(_clip(p), pred["r"].to_numpy()), mae(_clip(p), pred["r"].to_numpy()), peak


_FRAMES: dict[str, tuple] = {}


def _frames(spark, ds: Dataset):
    if ds.name not in _FRAMES:
        import pandas as pd

        tr = pd.DataFrame({"u": ds.train.user_idx, "i": ds.train.item_idx, "r": ds.train.rating})
        te = pd.DataFrame({"u": ds.test.user_idx, "i": ds.test.item_idx, "r": ds.test.rating})
        train_df = spark.createDataFrame(tr).repartition(2).cache()
        test_df = spark.createDataFrame(te).cache()
        train_df.count()
        test_df.count()
        _FRAMES.clear()
        _FRAMES[ds.name] = (train_df, test_df)
    return _FRAMES[ds.name]


def _naive_solve_rows(fixed_bc, reg: float):
    def run(rows):
        fixed = fixed_bc.value
        k = fixed.shape[1]
        eye = np.eye(k)
        for row, pairs in rows:
            idx = np.fromiter((p[0] for p in pairs), dtype=np.int64)
            vals = np.fromiter((p[1] for p in pairs), dtype=np.float64)
            y = fixed[idx]
            x = np.linalg.solve(y.T @ y + reg * len(idx) * eye, y.T @ vals)
            yield row, x

    return run


def run_naive(sc, ds: Dataset, params: als.ExplicitParams, parts: int, max_iterations: int):
    """Seed-style: Python tuples per rating, groupByKey, a np.linalg.solve per row."""
    from pyspark import StorageLevel

    inter = ds.train
    mu, b_u, b_i = als.compute_biases(inter, params.bias_reg)
    resid = inter.rating.astype(np.float64) - mu - b_u[inter.user_idx] - b_i[inter.item_idx]
    triples = list(
        zip(inter.user_idx.tolist(), inter.item_idx.tolist(), resid.tolist(), strict=True)
    )
    base = sc.parallelize(triples, parts)
    by_user = (base.map(lambda t: (t[0], (t[1], t[2]))).groupByKey(parts).mapValues(list)).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    by_item = (base.map(lambda t: (t[1], (t[0], t[2]))).groupByKey(parts).mapValues(list)).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    by_user.count()
    by_item.count()
    P = als.init_factors(inter.n_users, params.rank, params.seed, als.USER_SALT, params.init_scale)
    Q = np.zeros((inter.n_items, params.rank))

    def half(rdd, fixed: np.ndarray, n_rows: int) -> np.ndarray:
        bc = sc.broadcast(fixed)
        out = np.zeros((n_rows, params.rank))
        for row, x in rdd.mapPartitions(_naive_solve_rows(bc, params.reg)).collect():
            out[row] = x
        bc.unpersist()
        return out

    t0 = time.perf_counter()
    for _ in range(max_iterations):
        Q = half(by_item, P, inter.n_items)
        P = half(by_user, Q, inter.n_users)
    secs_loop = time.perf_counter() - t0
    by_user.unpersist()
    by_item.unpersist()
    return als.ExplicitModel(mu, b_u, b_i, P, Q, []), secs_loop


# ------------------------------------------------------------------------------ the benchmark


def accuracy_table(spark, ds: Dataset, args) -> list[Row]:
    sc = spark.sparkContext
    params = replace(als.DEFAULT_EXPLICIT, rank=args.rank, iterations=args.iterations)
    rows: list[Row] = []
    console.rule(f"[bold]{ds.name}: {len(ds.train):,} train / {len(ds.test):,} test ratings")

    model, secs, peak = timed(lambda: als.fit_explicit(ds.train, params))
    r, m = score(model, ds.test)
    rows.append(Row("ours, local engine (NumPy)", secs, r, m, peak))
    console.print(rows[-1])
    local_model = model

    small = ds.n_ratings < 1_000_000
    # Untimed warm-up (JIT, Python workers, first broadcast), so the first timed Spark run
    # does not pay for what every later one gets for free.
    SparkALS(sc, ds.train).fit(replace(params, iterations=2), None)
    for parts in [2, 8] if small else [2]:
        for dtype in (np.float32, np.float64) if parts == 2 and small else (np.float32,):
            model, secs, peak = timed(
                lambda parts=parts, dtype=dtype: SparkALS(
                    sc, ds.train, num_partitions=parts, broadcast_dtype=dtype
                ).fit(params, None)[0]
            )
            r, m = score(model, ds.test)
            drift = float(np.abs(model.P - local_model.P).max() / np.abs(local_model.P).max())
            rows.append(
                Row(
                    f"ours, Spark local[2], {parts} partitions, {np.dtype(dtype).name} bcast",
                    secs,
                    r,
                    m,
                    peak,
                    note=f"max abs ΔP vs local engine {drift:.1e} (relative)",
                )
            )
            console.print(rows[-1])

    best = None
    run_mllib(spark, ds, 0.1, 2, args.rank, 2)  # untimed warm-up, same reason
    regs = MLLIB_REGS if small else tuple(float(x) for x in args.mllib_regs_big.split(","))
    for reg in regs:
        secs, r, m, peak = run_mllib(spark, ds, reg, args.iterations, args.rank, 2)
        row = Row(f"Spark MLlib ALS, regParam {reg}", secs, r, m, peak)
        rows.append(row)
        console.print(row)
        if best is None or r < best.rmse:
            best = row
    assert best is not None
    best.note = "best MLlib (reference)"
    best.extra["reference"] = True

    if not small and not args.naive_10m:
        # The naive engine's cost grows with the ratings (one Python tuple and one solve per
        # row): project it from the small set measured in this run instead of burning hours.
        per_rating = NAIVE_COST.get("per_rating_s")
        projected = None if per_rating is None else per_rating * len(ds.train)
        if projected is None or projected > NAIVE_BUDGET_S:
            why = (
                "skipped: not measured (run with --sizes small,… to project it)"
                if projected is None
                else f"skipped: projected {projected / 60:.0f} min from the small set's "
                f"{per_rating * 1e6:.0f} µs/rating > 10 min budget"
            )
            rows.append(
                Row(
                    "naive seed-style Spark (np.linalg.solve per row)",
                    None,
                    None,
                    None,
                    None,
                    note=why,
                )
            )
            console.print(rows[-1])
            return rows
    (model, loop_secs), secs, peak = timed(lambda: run_naive(sc, ds, params, 2, args.iterations))
    r, m = score(model, ds.test)
    if small:
        NAIVE_COST["per_rating_s"] = secs / len(ds.train)
    rows.append(
        Row(
            "naive seed-style Spark (np.linalg.solve per row)",
            secs,
            r,
            m,
            peak,
            note=f"incl. groupByKey setup; iterations alone {loop_secs:.1f} s",
        )
    )
    console.print(rows[-1])
    return rows


def ranking_table(spark, ds: Dataset, args) -> tuple[list[dict], dict]:
    ep = replace(als.DEFAULT_EXPLICIT, rank=args.rank, iterations=args.iterations)
    rp = als.DEFAULT_IMPLICIT
    tr, te = ds.train, ds.test
    ev = Evaluator(
        tr.n_users, tr.n_items, tr.user_idx, tr.item_idx, te.user_idx, te.item_idx, te.rating
    )
    emodel, e_secs, _ = timed(lambda: als.fit_explicit(tr, ep))
    rmodel, r_secs, _ = timed(lambda: als.fit_implicit(tr, rp))
    (_, _), joint_secs, _ = timed(lambda: SparkALS(spark.sparkContext, tr).fit(ep, rp))
    (_, _), spark_e_secs, _ = timed(lambda: SparkALS(spark.sparkContext, tr).fit(ep, None))
    by_rating = explicit_scores(emodel.mu, emodel.user_bias, emodel.item_bias, emodel.P, emodel.Q)
    counts = np.bincount(tr.item_idx, minlength=tr.n_items)

    def shipped() -> tuple:
        # What `train` does (`pipeline.choose_on_validation`, then `pipeline.fit_models`,
        # local engine, float32 half-steps): the explicit λ, EASE's λ and rating weight γ, the
        # ranking λ and the blend weights chosen on validation carved from this training part, then
        # the explicit and ranking ALS models in one loop, and EASE.
        cfg = pipeline.TrainConfig(
            reg_candidates=tune.REG_CANDIDATES,
            ranking_reg_candidates=tune.RANKING_REG_CANDIDATES,
            ease_reg_candidates=tune.EASE_REG_CANDIDATES,
        )
        t0 = time.perf_counter()
        cfg, _ = pipeline.choose_on_validation(ds.train_ratings, cfg, genres_of=ds.genres_of)
        tune_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        fit = pipeline.fit_models(ds.train_ratings, cfg, genres_of=ds.genres_of)
        return fit, cfg, tune_s, time.perf_counter() - t0

    (fit, served_cfg, tune_secs, served_secs), _, _ = timed(shipped)
    # The same ratings indexed the same way: the bench's index is the fit's.
    assert (fit.inter.n_users, fit.inter.n_items) == (tr.n_users, tr.n_items)
    s_em, s_ease, s_blend = fit.explicit, fit.ease, fit.blend
    served_rmse = rmse(_clip(pipeline.served_predictions(fit, te.user_idx, te.item_idx)), te.rating)
    ease_only = replace(fit, blend=ease.BlendParams(als=0.0, ease=1.0, stars=0.0, genre=0.0))
    cases = [
        ("popularity (most rated in train)", ev.popularity_scores(), 0.0),
        ("explicit ALS, by predicted rating", by_rating, e_secs),
        ("blended: rating + 0.5·log(1+count)", blended_scores(by_rating, counts), e_secs),
        ("ranking model (implicit ALS) alone", factor_scores(rmodel.X, rmodel.Y), r_secs),
        ("EASE alone", pipeline.served_scores(ease_only), s_ease.seconds),
        (
            "served (blend of ALS, EASE, the served stars, genres and popularity, settings "
            "chosen on validation carved from train; fit s = all three models, tuning apart)",
            pipeline.served_scores(fit),
            served_secs,
        ),
    ]
    out = []
    for name, fn, secs in cases:
        m = ev.topn(fn)
        out.append(
            {
                "name": name,
                "ndcg": m.ndcg_at_k,
                "p": m.precision_at_k,
                "r": m.recall_at_k,
                "cov": m.coverage_at_k,
                "secs": secs,
            }
        )
    costs = {
        "local_explicit_s": e_secs,
        "local_both_s": e_secs + r_secs,
        "served_s": served_secs,
        "served_ease_s": s_ease.seconds,
        "served_rmse": served_rmse,
        "served_blend": s_blend,
        "served_tune_s": tune_secs,
        "served_ranking_reg": served_cfg.ranking.reg,
        "served_ease_reg": served_cfg.ease.reg,
        "served_explicit_rmse": rmse(
            _clip(als.predict_explicit(s_em, te.user_idx, te.item_idx)), te.rating
        ),
        "spark_explicit_s": spark_e_secs,
        "spark_both_joint_s": joint_secs,
        "users": len(ev.eval_users),
    }
    return out, costs


# ------------------------------------------------------------------------------ reporting


def _f(v: float | None, fmt: str) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def render(ds: Dataset, rows: list[Row], ranking: list[dict] | None, costs: dict | None) -> str:
    ref = next(r for r in rows if r.extra.get("reference"))
    t = Table(title=f"{ds.name}: explicit ALS, rank {ARGS.rank}, {ARGS.iterations} iterations")
    md = [
        f"### {ds.name} — {ds.n_ratings:,} ratings ({len(ds.train):,} train / "
        f"{len(ds.test):,} test, seeded random 80/20, seed 42)",
        "",
        "| engine | fit s | × MLlib time | test RMSE | test MAE | ΔRMSE vs MLlib | peak RSS GB "
        "| note |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for col in ("engine", "fit s", "× MLlib time", "RMSE", "MAE", "ΔRMSE", "peak GB", "note"):
        t.add_column(col, justify="left" if col in ("engine", "note") else "right")
    for r in rows:
        ratio = None if r.seconds is None else r.seconds / ref.seconds
        d = None if r.rmse is None else r.rmse - ref.rmse
        cells = [
            r.name,
            _f(r.seconds, ".2f"),
            _f(ratio, ".2f"),
            _f(r.rmse, ".4f"),
            _f(r.mae, ".4f"),
            _f(d, "+.4f"),
            _f(r.peak_gb, ".2f"),
            r.note,
        ]
        t.add_row(*cells)
        md.append("| " + " | ".join(cells) + " |")
    console.print(t)
    md.append("")
    if ranking is not None and costs is not None:
        t2 = Table(title=f"{ds.name}: top-10 ranking ({costs['users']} test users with a ≥4★)")
        md += [
            f"Top-10 ranking on the same split ({costs['users']} test users with at least one "
            "test rating ≥ 4; candidates = movies unrated in train). Fit seconds: local engine.",
            "",
            "| list | NDCG@10 | P@10 | R@10 | coverage@10 | fit s |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for col in ("list", "NDCG@10", "P@10", "R@10", "coverage@10", "fit s"):
            t2.add_column(col, justify="left" if col == "list" else "right")
        pop = ranking[0]["ndcg"]
        for x in ranking:
            cells = [
                x["name"],
                f"{x['ndcg']:.4f}",
                f"{x['p']:.4f}",
                f"{x['r']:.4f}",
                f"{x['cov']:.4f}",
                f"{x['secs']:.2f}",
            ]
            t2.add_row(*cells)
            md.append("| " + " | ".join(cells) + " |")
        served = ranking[-1]["ndcg"]
        lines = [
            f"served default / popularity NDCG@10: {served / pop:.2f}×",
            f"both models vs explicit only — local engine: {costs['local_both_s']:.2f} s / "
            f"{costs['local_explicit_s']:.2f} s = "
            f"{costs['local_both_s'] / costs['local_explicit_s']:.2f}×; Spark local[2] (one "
            f"joint job per half-step): {costs['spark_both_joint_s']:.2f} s / "
            f"{costs['spark_explicit_s']:.2f} s = "
            f"{costs['spark_both_joint_s'] / costs['spark_explicit_s']:.2f}×",
        ]
        console.print(t2)
        for line in lines:
            console.print(line)
        md += ["", *[f"- {line}" for line in lines], ""]
    return "\n".join(md)


def peer_section(spark, ds: Dataset, rows: list[Row], ranking: list[dict], costs: dict) -> str:
    """Issue 20 item 5: the open-source peers (bench/peers.py) beside MovieRec's served models."""
    import peers

    served = ranking[-1]
    with console.status("peers: tuning on validation carved from train, then the test split …"):
        peer = peers.peer_rows(spark, ds.train, ds.test)
    md = [
        f"#### {ds.name}: open-source peers, same split, same run",
        "",
        *peers.render_peers(peer, served["ndcg"], costs["served_rmse"], costs["served_s"]),
        "",
        f"MovieRec served: the list is the blend {costs['served_blend']} of the ranking ALS "
        f"(rank {als.DEFAULT_IMPLICIT.rank}, {als.DEFAULT_IMPLICIT.iterations} it., λ "
        f"{costs['served_ranking_reg']:g}), EASE (λ {costs['served_ease_reg']:g}, movies with "
        f"≥ {ease.DEFAULT_EASE.min_count} ratings), the served stars, the genre part (the "
        f"genres of what the user liked, when the data has genres) and popularity; the stars "
        f"are the explicit ALS (test RMSE alone {costs['served_explicit_rmse']:.4f}) plus "
        f"γ·(d_u·B). The explicit λ, EASE's λ, γ, the ranking λ and the blend weights were "
        f"chosen as `train` chooses them, on validation carved from the training part "
        f"({costs['served_tune_s']:.1f} s, not in fit s). "
        f"Fit s = explicit + ranking ALS + EASE, local engine, float32 half-steps, one BLAS "
        f"thread (EASE {costs['served_ease_s']:.2f} s of it).",
        "",
    ]
    console.print("\n".join(md))
    return "\n".join(md)


ARGS: argparse.Namespace


def main() -> None:
    global ARGS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="small", help="comma list of: small, 1m, 10m")
    ap.add_argument("--data-dir", type=Path, default=ROOT / "data" / "ml-latest-small")
    ap.add_argument("--rank", type=int, default=20)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--naive-10m", action="store_true", help="run the naive engine at 10M anyway")
    ap.add_argument(
        "--mllib-regs-big",
        default="0.1",
        help="MLlib regParams on the big sets (each fit takes minutes; small tunes all three)",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "train.md")
    ap.add_argument("--no-peers", action="store_true", help="skip the open-source peer table")
    ARGS = args = ap.parse_args()
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    big = any(s != "small" for s in sizes)
    spark = build_spark("local[2]", "movierec-bench-train", driver_memory="6g" if big else "2g")
    spark.sparkContext.setCheckpointDir(tempfile.mkdtemp(prefix="mllib-ckpt-"))
    load = os.getloadavg()
    header = [
        "# Training benchmark (`make bench-train`)",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}: "
        f"{os.cpu_count()} cores, load average at start {load[0]:.1f} (other work shares the "
        "machine, so absolute seconds are noisy; ratios in one run are the comparison). "
        f"Python {platform.python_version()}, NumPy {np.__version__}, pyspark "
        f"{__import__('pyspark').__version__}, Spark local[2]. Rank {args.rank}, "
        f"{args.iterations} iterations; ours: λ={als.DEFAULT_EXPLICIT.reg} scaled by each row's "
        "rating count (what `train`'s λ search picks on ml-latest-small), bias λ 10. "
        "RMSE/MAE of predictions clipped to 0.5–5 for every engine. "
        "Peak RSS = this process + the JVM + Spark's Python workers.",
        "",
    ]
    sections = []
    try:
        for size in sizes:
            ds = load_dataset(size, args.data_dir)
            rows = accuracy_table(spark, ds, args)
            ranking, costs = (None, None)
            if size == "small":
                ranking, costs = ranking_table(spark, ds, args)
            sections.append(render(ds, rows, ranking, costs))
            if size == "small" and ranking is not None and not args.no_peers:
                sections.append(peer_section(spark, ds, rows, ranking, costs))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text("\n".join(header + sections) + "\n")
    finally:
        spark.stop()
    console.print(f"written to {args.out}")


if __name__ == "__main__":
    main()
