"""The Spark engine against the local engine (same seed → same factors), and its failure modes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from movierec_common import als
from movierec_trainer.spark_als import (
    SparkALS,
    SparkHalfSteps,
    block_root,
    distinct_columns,
    load_resident,
    make_blocks,
    save_resident,
    share_ratings,
    split_rows,
)

pytestmark = pytest.mark.spark

EXPLICIT = als.ExplicitParams(rank=8, reg=0.1, iterations=4, seed=7)
RANKING = als.ImplicitParams(rank=6, reg=5.0, alpha=2.0, iterations=3, seed=7)


def _synthetic(n_users: int = 120, n_items: int = 90, seed: int = 3):
    """Low-rank ratings with long-tailed activity, so blocks have uneven row lengths."""
    rng = np.random.default_rng(seed)
    pu, qi = rng.normal(size=(n_users, 3)), rng.normal(size=(n_items, 3))
    per_user = np.minimum(5 + rng.zipf(1.6, n_users), n_items)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    rows, cols = [], []
    for u, n in enumerate(per_user):
        items = rng.choice(n_items, size=n, replace=False, p=pop / pop.sum())
        rows += [u] * n
        cols += items.tolist()
    u, i = np.array(rows), np.array(cols)
    r = np.clip(np.round((3.5 + 0.6 * np.sum(pu[u] * qi[i], axis=1)) * 2) / 2, 0.5, 5.0)
    inter, _, _ = als.index_ratings(u, i, r)
    train, test = als.random_holdout(inter.user_idx, inter.item_idx, 0.2, 1)
    return inter.subset(train), inter.subset(test)


@pytest.fixture(scope="module")
def data():
    return _synthetic()


@pytest.fixture(scope="module")
def local_models(data):
    train, valid = data
    return als.fit_explicit(train, EXPLICIT, valid), als.fit_implicit(train, RANKING)


def test_split_rows_balances_ratings_and_covers_every_row() -> None:
    indptr = np.cumsum([0, 50, 1, 1, 1, 1, 1, 45, 2, 2])
    parts = split_rows(indptr, 2)
    assert parts[0][0] == 0 and parts[-1][1] == 9
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
    sizes = [int(indptr[hi] - indptr[lo]) for lo, hi in parts]
    assert max(sizes) <= 60  # 104 ratings in two blocks of ~52, not 50 + 54 rows-wise
    # More blocks than rows degrades to one row per block, never an empty block.
    assert split_rows(np.array([0, 3, 5]), 8) == [(0, 1), (1, 2)]


def test_distinct_columns_is_numpys_unique_with_inverse() -> None:
    rng = np.random.default_rng(3)
    for n_cols, n in ((1, 5), (50, 1000), (70_000, 20_000), (10, 0)):
        idx = rng.integers(0, n_cols, n).astype(np.int32)
        needed, local = distinct_columns(idx, n_cols)
        want, inverse = np.unique(idx, return_inverse=True)
        np.testing.assert_array_equal(needed, want)
        np.testing.assert_array_equal(local, inverse.reshape(-1))
        assert needed.dtype == np.int64 and local.dtype == np.int32


def test_shares_build_exactly_the_blocks_make_blocks_builds(data) -> None:
    """What the executors build from their shares (Share.block) is, array for array, what
    make_blocks builds from all the ratings on one machine, for both sides and both models."""
    train, _ = data
    implicit = als.implicit_signal(train.rating, 2.5)
    for rows, cols, n_rows, n_cols in (
        (train.user_idx, train.item_idx, train.n_users, train.n_items),
        (train.item_idx, train.user_idx, train.n_items, train.n_users),
    ):
        for n_parts in (1, 3):
            want = make_blocks(rows, cols, n_rows, n_parts, train.rating, implicit, n_cols)
            shares = share_ratings(rows, cols, n_rows, n_cols, n_parts, train.rating, implicit)
            assert len(shares) == len(want)
            assert sum(len(s.rows) for s in shares) == len(train)
            for share, ref in zip(shares, want, strict=True):
                got = share.block()
                for name in ("rows", "indptr", "indices", "needed"):
                    np.testing.assert_array_equal(getattr(got, name), getattr(ref, name))
                for plan, ref_plan in ((got.explicit, ref.explicit), (got.implicit, ref.implicit)):
                    assert plan.n_rows == ref_plan.n_rows
                    for b, rb in zip(plan.buckets, ref_plan.buckets, strict=True):
                        for f in ("rows", "cols", "vals", "valid", "counts"):
                            np.testing.assert_array_equal(getattr(b, f), getattr(rb, f))


def test_blocks_hold_each_rating_once(data) -> None:
    train, _ = data
    blocks = make_blocks(train.user_idx, train.item_idx, train.n_users, 3, train.rating, None)
    assert sum(len(b.indices) for b in blocks) == len(train)
    assert np.array_equal(np.concatenate([b.rows for b in blocks]), np.arange(train.n_users))
    assert all(b.implicit is None and b.explicit is not None for b in blocks)


def test_spark_float64_broadcast_equals_local_engine(spark, data, local_models) -> None:
    """Same seed, same iteration order: factors agree elementwise to 1e-6 relative."""
    train, valid = data
    loc_e, loc_r = local_models
    engine = SparkALS(spark.sparkContext, train, num_partitions=3, broadcast_dtype=np.float64)
    e, r = engine.fit(EXPLICIT, RANKING, valid)
    for got, ref in ((e.P, loc_e.P), (e.Q, loc_e.Q), (r.X, loc_r.X), (r.Y, loc_r.Y)):
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(e.user_bias, loc_e.user_bias, rtol=1e-12)
    np.testing.assert_allclose(e.item_bias, loc_e.item_bias, rtol=1e-12)
    assert e.mu == pytest.approx(loc_e.mu, rel=1e-12)
    for h_spark, h_local in zip(e.history, loc_e.history, strict=True):
        assert h_spark["train_rmse"] == pytest.approx(h_local["train_rmse"], rel=1e-9)
        assert h_spark["valid_rmse"] == pytest.approx(h_local["valid_rmse"], rel=1e-9)
    assert [h["iteration"] for h in r.history] == [1, 2, 3]


def test_spark_float32_broadcast_stays_within_1e6(spark, data) -> None:
    """The default compact broadcast: the factors stay within 1e-6 of the local engine run at
    the same precision (float32 factors: the conjugate-gradient steps run in the factors'
    precision, as the trainer runs both engines), relative to the matrix scale."""
    train, valid = data
    loc_e = als.fit_explicit(train, EXPLICIT, valid, dtype=np.float32)
    loc_r = als.fit_implicit(train, RANKING, dtype=np.float32)
    e, r = SparkALS(spark.sparkContext, train, num_partitions=2).fit(EXPLICIT, RANKING, valid)
    for got, ref in ((e.P, loc_e.P), (e.Q, loc_e.Q), (r.X, loc_r.X), (r.Y, loc_r.Y)):
        scale = float(np.abs(ref).max())
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6 * scale)


def test_explicit_only_fit_with_more_iterations_than_ranking(spark, data, local_models) -> None:
    train, valid = data
    loc_e, _ = local_models
    e, r = SparkALS(spark.sparkContext, train, broadcast_dtype=np.float64).fit(
        EXPLICIT, None, valid
    )
    assert r is None
    np.testing.assert_allclose(e.P, loc_e.P, rtol=1e-6, atol=1e-12)
    assert len(e.history) == EXPLICIT.iterations


def test_singular_system_raises_training_diverged(spark) -> None:
    """Users with 2 ratings, rank 10 and reg = 0: the normal equations are singular on the
    executors; the fit must stop with TrainingDivergedError, never return a silent model."""
    rng = np.random.default_rng(0)
    u = np.repeat(np.arange(30), 2)
    i = rng.integers(0, 40, u.shape[0])
    keep = np.unique(np.stack([u, i], 1), axis=0)
    r = rng.choice([1.0, 3.0, 5.0], keep.shape[0])
    inter, _, _ = als.index_ratings(keep[:, 0], keep[:, 1], r)
    bad = als.ExplicitParams(rank=10, reg=0.0, iterations=3)
    with pytest.raises(als.TrainingDivergedError, match="iteration 1"):
        SparkALS(spark.sparkContext, inter).fit(bad, None)


def test_nan_rating_is_refused(spark, data) -> None:
    train, _ = data
    rating = train.rating.copy()
    rating[5] = np.nan
    poisoned = als.Interactions(
        train.user_idx, train.item_idx, rating, train.n_users, train.n_items
    )
    with pytest.raises(als.TrainingDivergedError, match="NaN"):
        SparkALS(spark.sparkContext, poisoned).fit(EXPLICIT, None)


def test_on_iteration_can_stop_the_fit(spark, data) -> None:
    """The worker cancels by raising from the progress callback between iterations."""
    train, _ = data
    seen: list[int] = []

    class Stop(Exception):
        pass

    def cb(model: str, entry: dict) -> None:
        seen.append(entry["iteration"])
        if entry["iteration"] == 2:
            raise Stop

    with pytest.raises(Stop):
        SparkALS(spark.sparkContext, train).fit(EXPLICIT, None, None, cb)
    assert seen == [1, 2]


def test_blocks_read_only_their_columns_and_plans_index_into_them(data) -> None:
    """`needed` is exactly the block's distinct columns, and the plan's column ids map back to
    the CSR's global ids through it (so shipping fixed[needed] gathers the same rows)."""
    train, _ = data
    blocks = make_blocks(train.item_idx, train.user_idx, train.n_items, 3, train.rating, None)
    for b in blocks:
        np.testing.assert_array_equal(b.needed, np.unique(b.indices))
        assert len(b.needed) < train.n_users  # 3 item blocks never read every user
        for bucket in b.explicit.buckets:
            for row, cols, valid in zip(bucket.rows, bucket.cols, bucket.valid, strict=True):
                got = np.sort(b.needed[cols[valid]])
                want = np.sort(b.indices[b.indptr[row] : b.indptr[row + 1]])
                np.testing.assert_array_equal(got, want)


def test_saved_block_maps_back_and_solves_identically(data, tmp_path) -> None:
    """The Python-worker copy (.npy files, memory-mapped) solves exactly as the block itself."""
    train, _ = data
    b = make_blocks(train.user_idx, train.item_idx, train.n_users, 2, train.rating, train.rating)[1]
    save_resident(b.resident(), tmp_path / "user-1")
    save_resident(b.resident(), tmp_path / "user-1")  # a second writer keeps the first copy
    back = load_resident(tmp_path / "user-1")
    assert back is not None and load_resident(tmp_path / "absent") is None
    assert isinstance(back.explicit.buckets[0].cols, np.memmap)
    rng = np.random.default_rng(0)
    fixed = rng.normal(size=(len(b.needed), 4))
    x0 = rng.normal(size=(len(b.rows), 4))
    for plan_a, plan_b in ((b.explicit, back.explicit), (b.implicit, back.implicit)):
        for steps in (0, 3):
            got = als.solve_explicit_planned(fixed, plan_b, 0.1, True, x0=x0, cg_steps=steps)
            ref = als.solve_explicit_planned(fixed, plan_a, 0.1, True, x0=x0, cg_steps=steps)
            np.testing.assert_array_equal(got[0], ref[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["user-1"]  # no temporary left


def test_half_steps_use_the_workers_blocks_and_ship_only_needed_rows(spark, data) -> None:
    """After the upload no half-step reads a block from the JVM (no fallback job), each block
    is shipped only the factor rows it reads, and close() removes the host's block files."""
    train, valid = data
    engine = SparkHalfSteps(spark.sparkContext, train, 3, np.float64)
    als.fit_als(engine, train, EXPLICIT, None, valid, dtype=np.float64)
    steps = 2 * EXPLICIT.iterations
    assert engine.stats["tasks"] == 3 * steps and engine.stats["fallback"] == 0
    whole = EXPLICIT.iterations * (train.n_users + train.n_items) * 3
    assert engine.stats["shipped_rows"] < whole
    assert not (block_root() / engine.token).exists()


def test_blocks_missing_on_a_host_are_solved_from_the_uploaded_ones(
    spark, data, local_models
) -> None:
    """A host without a block (another container, files gone) answers "missing"; the driver
    solves those blocks from their broadcasts, and the factors are still the local engine's."""
    train, valid = data
    loc_e, loc_r = local_models
    engine = SparkHalfSteps(spark.sparkContext, train, 3, np.float64)
    original = engine.token

    def lose_blocks(model: str, entry: dict) -> None:
        if model == "explicit" and entry["iteration"] == 1:
            # What a fresh host sees: no directory and no mapped copy under this fit's token.
            engine.token = "moved-" + original
            import shutil

            shutil.rmtree(block_root() / original, ignore_errors=True)

    e, r = als.fit_als(engine, train, EXPLICIT, RANKING, valid, lose_blocks, dtype=np.float64)
    assert engine.stats["fallback"] == 3 * 2  # both sides once, then resident again
    for got, ref in ((e.P, loc_e.P), (e.Q, loc_e.Q), (r.X, loc_r.X), (r.Y, loc_r.Y)):
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-12)
    assert not (block_root() / engine.token).exists()
