"""The NumPy ALS kernel against references, known answers and its own contracts."""

from __future__ import annotations

import numpy as np
import pytest
from movierec_common import als
from movierec_common.als import ExplicitParams, ImplicitParams, Interactions


def _random_block(n_rows: int, n_fixed: int, k: int, seed: int, max_len: int = 60):
    """A CSR block with empty rows, 1-rating rows, rows shorter and longer than k."""
    rng = np.random.default_rng(seed)
    lens = rng.integers(0, max_len, n_rows)
    lens[:4] = [0, 1, 2, k + 5]
    rows, cols = [], []
    for r, n in enumerate(lens):
        picked = rng.choice(n_fixed, size=min(int(n), n_fixed), replace=False)
        rows += [r] * len(picked)
        cols += list(picked)
    rows_a, cols_a = np.array(rows), np.array(cols)
    vals = rng.standard_normal(rows_a.shape[0])
    fixed = rng.standard_normal((n_fixed, k))
    return fixed, als.to_csr(rows_a, cols_a, vals, n_rows)


def _lstsq_reference(fixed, indptr, indices, values, reg, reg_scaled):
    """Ridge as stacked least squares: min ‖[Y; √λ' I] x − [r; 0]‖²."""
    k = fixed.shape[1]
    out = np.zeros((len(indptr) - 1, k))
    for row in range(len(indptr) - 1):
        s, e = indptr[row], indptr[row + 1]
        if e == s:
            continue
        lam = reg * (e - s) if reg_scaled else reg
        a = np.vstack([fixed[indices[s:e]], np.sqrt(lam) * np.eye(k)])
        b = np.concatenate([values[s:e], np.zeros(k)])
        out[row] = np.linalg.lstsq(a, b, rcond=None)[0]
    return out


def _synthetic(n_users=120, n_items=150, k=4, density=0.3, noise=0.1, seed=3):
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((n_users, k))
    V = rng.standard_normal((n_items, k))
    mask = rng.random((n_users, n_items)) < density
    u, i = np.nonzero(mask)
    r = 3.0 + 0.5 * rng.standard_normal(n_users)[u] + (U[u] * V[i]).sum(1) * 0.5
    r = r + noise * rng.standard_normal(u.shape[0])
    return Interactions(
        u.astype(np.int32), i.astype(np.int32), r.astype(np.float32), n_users, n_items
    )


# ------------------------------------------------------------------------------------- helpers


def test_index_ratings_dense_and_reversible() -> None:
    users = np.array([50, 7, 50, 9, 7])
    movies = np.array([300, 1, 1, 300, 2])
    inter, uids, iids = als.index_ratings(users, movies, np.array([4, 3.5, 2, 5, 1]))
    assert inter.user_idx.dtype == np.int32 and inter.item_idx.dtype == np.int32
    assert inter.rating.dtype == np.float32
    assert (inter.n_users, inter.n_items) == (3, 3)
    np.testing.assert_array_equal(uids[inter.user_idx], users)
    np.testing.assert_array_equal(iids[inter.item_idx], movies)
    assert list(uids) == [7, 9, 50] and list(iids) == [1, 2, 300]


def test_to_csr_groups_rows_stably() -> None:
    indptr, indices, data = als.to_csr(
        np.array([2, 0, 2, 0]), np.array([5, 6, 7, 8]), np.array([1.0, 2, 3, 4]), 4
    )
    assert list(indptr) == [0, 2, 2, 4, 4]
    assert list(indices) == [6, 8, 5, 7]
    assert list(data) == [2, 4, 1, 3]


def test_compute_biases_items_first_then_users() -> None:
    inter = _synthetic(n_users=30, n_items=40, seed=1)
    lam = 10.0
    mu, b_u, b_i = als.compute_biases(inter, lam)
    r = inter.rating.astype(float)
    assert mu == pytest.approx(r.mean())
    for i in range(inter.n_items):
        sel = inter.item_idx == i
        assert b_i[i] == pytest.approx((r[sel] - mu).sum() / (sel.sum() + lam))
    for u in range(inter.n_users):
        sel = inter.user_idx == u
        expected = (r[sel] - mu - b_i[inter.item_idx[sel]]).sum() / (sel.sum() + lam)
        assert b_u[u] == pytest.approx(expected)


def test_random_holdout_is_seeded_and_drops_unknown() -> None:
    inter = _synthetic(n_users=50, n_items=400, density=0.02, seed=9)
    train, test = als.random_holdout(inter.user_idx, inter.item_idx, 0.2, seed=42)
    again = als.random_holdout(inter.user_idx, inter.item_idx, 0.2, seed=42)
    np.testing.assert_array_equal(train, again[0])
    np.testing.assert_array_equal(test, again[1])
    assert not np.any(train & test)
    assert train.sum() == len(inter) - round(0.2 * len(inter))
    dropped = ~train & ~test
    assert dropped.sum() > 0  # sparse items: some test rows have no training rating
    assert set(inter.user_idx[test]) <= set(inter.user_idx[train])
    assert set(inter.item_idx[test]) <= set(inter.item_idx[train])
    for row in np.flatnonzero(dropped):
        assert (
            inter.item_idx[row] not in inter.item_idx[train]
            or inter.user_idx[row] not in inter.user_idx[train]
        )


def test_init_factors_deterministic_and_salted() -> None:
    a = als.init_factors(10, 4, seed=42, salt=als.USER_SALT)
    np.testing.assert_array_equal(a, als.init_factors(10, 4, seed=42, salt=als.USER_SALT))
    assert not np.allclose(a, als.init_factors(10, 4, seed=42, salt=als.ITEM_SALT))
    assert not np.allclose(a, als.init_factors(10, 4, seed=43, salt=als.USER_SALT))
    assert a.dtype == np.float64 and a.shape == (10, 4)


# ------------------------------------------------------------------------------- block solves


@pytest.mark.parametrize("reg_scaled", [True, False])
@pytest.mark.parametrize("chunk", [als.DEFAULT_CHUNK, 37])
def test_batched_explicit_solve_matches_naive_and_lstsq(reg_scaled: bool, chunk: int) -> None:
    k = 8
    fixed, (indptr, indices, values) = _random_block(80, 120, k, seed=5)
    reg = 0.3
    got = als.solve_explicit_block(fixed, indptr, indices, values, reg, reg_scaled, chunk=chunk)
    naive = als.naive_solve_explicit(fixed, indptr, indices, values, reg, reg_scaled)
    ref = _lstsq_reference(fixed, indptr, indices, values, reg, reg_scaled)
    np.testing.assert_allclose(naive, ref, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-10)
    assert np.all(got[0] == 0)  # the empty row
    assert np.any(got[1] != 0)


def test_batched_explicit_solve_accepts_float32_fixed() -> None:
    fixed, (indptr, indices, values) = _random_block(30, 50, 6, seed=2)
    f32 = fixed.astype(np.float32)
    got = als.solve_explicit_block(f32, indptr, indices, values, 0.1)
    ref = als.naive_solve_explicit(f32.astype(np.float64), indptr, indices, values, 0.1)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-10)


def test_plan_is_reusable_and_matches_unplanned() -> None:
    fixed, csr = _random_block(40, 70, 5, seed=8)
    plan = als.plan_block(*csr)
    a = als.solve_explicit_block(fixed, *csr, 0.2, plan=plan)
    b = als.solve_explicit_block(fixed * 2, *csr, 0.2, plan=plan)
    np.testing.assert_allclose(a, als.solve_explicit_block(fixed, *csr, 0.2), rtol=1e-12)
    np.testing.assert_allclose(b, als.naive_solve_explicit(fixed * 2, *csr, 0.2), rtol=1e-9)


@pytest.mark.parametrize("k", [5, 20])
def test_implicit_solve_matches_dense_reference(k: int) -> None:
    """Full confidence matrix over ALL items per row: (Yᵀ C_u Y + λI) x = Yᵀ C_u p_u.

    k=20 sends rows with fewer than 20 ratings through the whitened L×L (Woodbury) path, longer
    ones through the whitened k×k path, and a row solved alone through the plain k×k solve;
    all must agree with the dense definition."""
    n_items, alpha, reg = 60, 2.0, 0.7
    rng = np.random.default_rng(11)
    fixed, (indptr, indices, _) = _random_block(25, n_items, k, seed=11, max_len=30)
    ratings = rng.choice(np.arange(0.5, 5.01, 0.5), size=indices.shape[0])
    got = als.solve_implicit_block(fixed, fixed.T @ fixed, indptr, indices, ratings, alpha, reg)
    for row in range(25):
        c = np.ones(n_items)
        p = np.zeros(n_items)
        s, e = indptr[row], indptr[row + 1]
        c[indices[s:e]] = 1 + alpha * ratings[s:e]
        p[indices[s:e]] = 1.0
        a = fixed.T @ (c[:, None] * fixed) + reg * np.eye(k)
        expected = np.linalg.solve(a, fixed.T @ (c * p))
        np.testing.assert_allclose(got[row], expected, rtol=1e-9, atol=1e-12)
        # One row alone (as a fold-in) takes the unwhitened direct solve: the same answer.
        alone = als.solve_implicit_block(
            fixed, fixed.T @ fixed, np.array([0, e - s]), indices[s:e], ratings[s:e], alpha, reg
        )
        np.testing.assert_allclose(alone[0], expected, rtol=1e-9, atol=1e-12)
    assert np.all(got[0] == 0)


def test_implicit_exact_solve_in_float32_stays_within_float32_precision() -> None:
    """float32 factors make the exact ranking solve run in float32 (the trainer's setting); on
    the whitened, well-conditioned systems it stays within float32 precision of float64."""
    k, rng = 20, np.random.default_rng(4)
    fixed, (indptr, indices, _) = _random_block(60, 90, k, seed=4, max_len=60)
    ratings = rng.choice(np.arange(0.5, 5.01, 0.5), size=indices.shape[0])
    gram = fixed.T @ fixed
    ref = als.solve_implicit_block(fixed, gram, indptr, indices, ratings, 2.0, 0.7)
    f32 = fixed.astype(np.float32)
    got = als.solve_implicit_block(
        f32, f32.astype(np.float64).T @ f32.astype(np.float64), indptr, indices, ratings, 2.0, 0.7
    )
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=2e-4, atol=1e-5)
    assert not np.allclose(got, ref, rtol=1e-12, atol=0)  # really computed in float32


def _dense_implicit(fixed, indptr, indices, ratings, alpha, reg):
    """Hu-Koren-Volinsky by definition, confidence over ALL items per row (float64)."""
    n_items, k = fixed.shape
    out = np.zeros((len(indptr) - 1, k))
    for row in range(len(indptr) - 1):
        c, p = np.ones(n_items), np.zeros(n_items)
        s, e = indptr[row], indptr[row + 1]
        c[indices[s:e]] = 1 + alpha * ratings[s:e]
        p[indices[s:e]] = 1.0
        a = fixed.T @ (c[:, None] * fixed) + reg * np.eye(k)
        out[row] = np.linalg.solve(a, fixed.T @ (c * p))
    return out


@pytest.mark.parametrize("force_fallback", [False, True])
def test_exact_implicit_solve_by_cg_to_tolerance(
    force_fallback: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At rank 80 in float32, rows longer than twice the step bound are solved by CG until the
    residual is at float32 precision, the others directly; both are the exact solution. With
    the bound forced to 1 step, CG stops short and the direct solve must finish those rows."""
    k, n_items, alpha, reg = 80, 400, 1.5, 2.0
    rng = np.random.default_rng(21)
    lens = np.concatenate([[0, 1, 3, 20], rng.integers(60, 200, 26)])
    rows = np.repeat(np.arange(lens.size), lens)
    cols = np.concatenate([rng.choice(n_items, n, replace=False) for n in lens])
    stars = rng.choice(np.arange(0.5, 5.01, 0.5), size=cols.size)
    indptr, indices, ratings = als.to_csr(rows, cols, stars, lens.size)
    fixed = rng.standard_normal((n_items, k)) * 0.3
    x0 = rng.standard_normal((lens.size, k)) * 0.1
    if force_fallback:
        monkeypatch.setattr(als, "_exact_steps", lambda kappa, tol: 1)
    direct_rows = []
    real_direct = als._direct_whitened

    def spy(g, w, conf):
        direct_rows.append(g.shape[0])
        return real_direct(g, w, conf)

    monkeypatch.setattr(als, "_direct_whitened", spy)
    f32 = fixed.astype(np.float32)
    f64 = f32.astype(np.float64)
    plan = als.plan_block(indptr, indices, ratings)
    got, sse, sae = als.solve_implicit_planned(
        f32, f64.T @ f64, plan, alpha, reg, x0=x0, fit_error=True
    )
    ref = _dense_implicit(f64, indptr, indices, ratings, alpha, reg)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
    assert np.all(got[0] == 0)
    # The error sums come from y·x carried along CG (and from the direct solve for the rest).
    err = 1.0 - np.einsum("nk,nk->n", got[rows].astype(np.float64), f64[cols])
    assert sse == pytest.approx(float(np.sum(err**2)), rel=1e-4)
    assert sae == pytest.approx(float(np.sum(np.abs(err))), rel=1e-4)
    if force_fallback:
        assert sum(direct_rows) == lens.size - 1  # every row with ratings finished directly
    else:
        assert 0 < sum(direct_rows) <= 4  # only the short rows


def test_float32_fit_reproduces_fold_in_at_a_rank_where_the_exact_step_is_cg() -> None:
    """The trainer's setting: float32 half-steps at a rank where the last user half-step runs
    whitened CG to machine precision (users with more ratings than twice its step count). The
    float64 fold-in of a trained user's ratings must give back their stored vector."""
    inter = _synthetic(n_users=60, n_items=200, k=6, density=0.45, seed=31)
    params = ImplicitParams(rank=64, reg=5.0, alpha=1.0, iterations=4)
    direct_rows = []
    real_direct = als._direct_whitened

    def spy(g, w, conf):
        direct_rows.append(g.shape[0])
        return real_direct(g, w, conf)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(als, "_direct_whitened", spy)
        model = als.fit_implicit(inter, params, dtype=np.float32)
    assert sum(direct_rows) < inter.n_users  # the exact step ran CG for most users
    for u in (0, 17, inter.n_users - 1):
        sel = inter.user_idx == u
        assert sel.sum() > 60
        x_u = als.fold_in_implicit(model.Y, inter.item_idx[sel], inter.rating[sel], params)
        np.testing.assert_allclose(x_u, model.X[u], rtol=2e-5, atol=1e-6)


def test_float32_fit_with_a_tiny_reg_against_rank_deficient_factors() -> None:
    """40 movies at rank 64: YᵀY is singular and λ = 1e-6 barely lifts it. float32 whitening
    would lose every digit (x = Wξ scales ξ's rounding by √cond), so the kernel whitens such a
    system in float64; the fit must succeed and still reproduce fold-in."""
    inter = _synthetic(n_users=200, n_items=40, k=4, density=0.5, seed=32)
    params = ImplicitParams(rank=64, reg=1e-6, alpha=1.0, iterations=3)
    model = als.fit_implicit(inter, params, dtype=np.float32)
    assert np.all(np.isfinite(model.X)) and np.abs(model.X).max() < 1e3
    for u in (0, 99):
        sel = inter.user_idx == u
        x_u = als.fold_in_implicit(model.Y, inter.item_idx[sel], inter.rating[sel], params)
        np.testing.assert_allclose(x_u, model.X[u], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cg_steps", [0, 2])
def test_planned_solves_report_the_fit_error_of_what_they_return(cg_steps: int) -> None:
    """The error sums of a half-step (CG carries y·x along its steps) are those of its rows."""
    k, rng = 10, np.random.default_rng(8)
    fixed, (indptr, indices, _) = _random_block(40, 70, k, seed=8, max_len=30)
    stars = rng.choice(np.arange(0.5, 5.01, 0.5), size=indices.shape[0])
    signal = als.implicit_signal(stars, 2.0)
    x0 = rng.standard_normal((40, k))
    rows = np.repeat(np.arange(40), np.diff(indptr))
    plan = als.plan_block(indptr, indices, signal)
    x, sse, sae = als.solve_implicit_planned(
        fixed, fixed.T @ fixed, plan, 1.5, 0.9, x0=x0, cg_steps=cg_steps, fit_error=True
    )
    err = 1.0 - np.einsum("nk,nk->n", x[rows], fixed[indices])
    assert sse == pytest.approx(float(np.sum(err**2)), rel=1e-9)
    assert sae == pytest.approx(float(np.sum(np.abs(err))), rel=1e-9)
    resid = rng.standard_normal(indices.shape[0])
    plan = als.plan_block(indptr, indices, resid)
    x, sse, sae = als.solve_explicit_planned(
        fixed, plan, 0.3, True, x0=x0, cg_steps=cg_steps, fit_error=True
    )
    err = resid - np.einsum("nk,nk->n", x[rows], fixed[indices])
    assert sse == pytest.approx(float(np.sum(err**2)), rel=1e-9)
    assert sae == pytest.approx(float(np.sum(np.abs(err))), rel=1e-9)


@pytest.mark.parametrize("cg_steps", [0, 3])
def test_cache_slices_do_not_change_the_solution(
    cg_steps: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cutting buckets into one-row slices (the smallest cache budget) solves the same rows."""
    k, rng = 12, np.random.default_rng(6)
    fixed, (indptr, indices, _) = _random_block(50, 80, k, seed=6, max_len=40)
    ratings = rng.choice(np.arange(0.5, 5.01, 0.5), size=indices.shape[0])
    x0 = rng.standard_normal((50, k))
    args = (fixed, fixed.T @ fixed, indptr, indices, ratings, 1.5, 0.9)
    whole = als.solve_implicit_block(*args, x0=x0, cg_steps=cg_steps)
    e_whole = als.solve_explicit_block(fixed, indptr, indices, ratings, 0.3, x0=x0, cg_steps=2)
    monkeypatch.setattr(als, "CG_SLICE_BYTES", 1)
    np.testing.assert_allclose(
        als.solve_implicit_block(*args, x0=x0, cg_steps=cg_steps), whole, rtol=1e-10, atol=1e-12
    )
    e_sliced = als.solve_explicit_block(fixed, indptr, indices, ratings, 0.3, x0=x0, cg_steps=2)
    np.testing.assert_allclose(e_sliced, e_whole, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------- fitting


def test_recovers_synthetic_low_rank_matrix() -> None:
    noise = 0.1
    inter = _synthetic(n_users=200, n_items=250, k=4, density=0.3, noise=noise, seed=4)
    train, test = als.random_holdout(inter.user_idx, inter.item_idx, 0.2, seed=1)
    # rank 4 + 2: subtracting the per-user and per-item biases adds two rank-one terms
    params = ExplicitParams(rank=6, reg=0.01, bias_reg=1.0, iterations=25, seed=0, init_scale=1.0)
    model = als.fit_explicit(inter.subset(train), params, valid=inter.subset(test))
    pred = model.predict(inter.user_idx[test], inter.item_idx[test])
    rmse = float(np.sqrt(np.mean((pred - inter.rating[test]) ** 2)))
    spread = float(np.std(inter.rating[test]))
    assert spread > 0.8  # the matrix has real signal to recover
    assert rmse < 1.5 * noise, rmse
    assert model.history[-1]["valid_rmse"] == pytest.approx(rmse, rel=1e-6)


def test_fit_explicit_history_and_callback() -> None:
    inter = _synthetic(seed=6)
    train, test = als.random_holdout(inter.user_idx, inter.item_idx, 0.2, seed=2)
    seen: list[dict] = []
    model = als.fit_explicit(
        inter.subset(train), ExplicitParams(rank=3, iterations=5), inter.subset(test), seen.append
    )
    assert seen == model.history
    assert [h["iteration"] for h in seen] == [1, 2, 3, 4, 5]
    keys = {"iteration", "of", "train_rmse", "train_mae", "valid_rmse", "valid_mae", "seconds"}
    for h in seen:
        assert set(h) == keys and h["of"] == 5
        assert 0 < h["train_mae"] <= h["train_rmse"]
        assert 0 < h["valid_mae"] <= h["valid_rmse"]
    assert seen[-1]["train_rmse"] <= seen[0]["train_rmse"] + 1e-9
    seconds = [h["seconds"] for h in seen]
    assert seconds == sorted(seconds)
    no_valid = als.fit_explicit(inter.subset(train), ExplicitParams(rank=3, iterations=2))
    assert no_valid.history[-1]["valid_rmse"] is None


def test_fit_explicit_deterministic_for_seed() -> None:
    inter = _synthetic(seed=7)
    p = ExplicitParams(rank=5, iterations=4, seed=123)
    a, b = als.fit_explicit(inter, p), als.fit_explicit(inter, p)
    np.testing.assert_array_equal(a.P, b.P)
    np.testing.assert_array_equal(a.Q, b.Q)
    c = als.fit_explicit(inter, ExplicitParams(rank=5, iterations=4, seed=124))
    assert not np.allclose(a.P, c.P)


def test_fit_explicit_iteration_order_items_then_users() -> None:
    """Final P is one user half-step against final Q (and Q one item step against previous P)."""
    inter = _synthetic(seed=8)
    p = ExplicitParams(rank=4, iterations=3)
    model = als.fit_explicit(inter, p)
    resid = (
        inter.rating.astype(np.float64)
        - model.mu
        - model.user_bias[inter.user_idx]
        - model.item_bias[inter.item_idx]
    )
    by_user = als.to_csr(inter.user_idx, inter.item_idx, resid, inter.n_users)
    np.testing.assert_allclose(
        als.naive_solve_explicit(model.Q, *by_user, p.reg, p.reg_scaled), model.P, rtol=1e-8
    )


@pytest.mark.parametrize("reg_scaled", [True, False])
def test_fold_in_explicit_reproduces_training_user(reg_scaled: bool) -> None:
    inter = _synthetic(seed=10)
    params = ExplicitParams(rank=6, iterations=4, reg=0.05, reg_scaled=reg_scaled)
    model = als.fit_explicit(inter, params)
    for u in (0, 17, inter.n_users - 1):
        sel = inter.user_idx == u
        b_u, p_u = als.fold_in_explicit(
            model.Q, model.item_bias, model.mu, inter.item_idx[sel], inter.rating[sel], params
        )
        assert b_u == pytest.approx(model.user_bias[u], abs=1e-6)
        np.testing.assert_allclose(p_u, model.P[u], rtol=1e-6, atol=1e-6)


def test_fold_in_explicit_without_ratings() -> None:
    inter = _synthetic(seed=10)
    model = als.fit_explicit(inter, ExplicitParams(rank=3, iterations=1))
    b_u, p_u = als.fold_in_explicit(model.Q, model.item_bias, model.mu, [], [])
    assert b_u == 0.0 and p_u.shape == (3,) and not p_u.any()


def test_fold_in_implicit_reproduces_training_user() -> None:
    inter = _synthetic(seed=12)
    params = ImplicitParams(rank=5, reg=0.5, alpha=2.0, iterations=4)
    model = als.fit_implicit(inter, params)
    gram = model.Y.T @ model.Y
    for u in (0, 33, inter.n_users - 1):
        sel = inter.user_idx == u
        x_u = als.fold_in_implicit(model.Y, inter.item_idx[sel], inter.rating[sel], params)
        np.testing.assert_allclose(x_u, model.X[u], rtol=1e-6, atol=1e-9)
        x_g = als.fold_in_implicit(model.Y, inter.item_idx[sel], inter.rating[sel], params, gram)
        np.testing.assert_allclose(x_g, model.X[u], rtol=1e-6, atol=1e-9)


def test_implicit_ranks_two_disjoint_taste_groups() -> None:
    """Group A watches only movies 0..29, group B only 30..59: each must be recommended its own
    group's unseen movies ahead of every movie of the other group."""
    rng = np.random.default_rng(0)
    users, items, ratings = [], [], []
    for u in range(80):
        lo = 0 if u < 40 else 30
        picked = rng.choice(np.arange(lo, lo + 30), size=12, replace=False)
        users += [u] * 12
        items += list(picked)
        ratings += list(rng.choice([3.0, 4.0, 5.0], size=12))
    inter = Interactions(
        np.array(users, np.int32), np.array(items, np.int32), np.array(ratings, np.float32), 80, 60
    )
    model = als.fit_implicit(inter, ImplicitParams(rank=2, reg=1.0, alpha=1.0, iterations=10))
    scores = model.X @ model.Y.T
    for u in range(80):
        own = np.arange(0, 30) if u < 40 else np.arange(30, 60)
        other = np.setdiff1d(np.arange(60), own)
        seen = inter.item_idx[inter.user_idx == u]
        unseen_own = np.setdiff1d(own, seen)
        assert scores[u, unseen_own].min() > scores[u, other].max(), u


def test_fit_implicit_deterministic_and_history() -> None:
    inter = _synthetic(seed=13)
    p = ImplicitParams(rank=4, iterations=3, seed=5)
    seen: list[dict] = []
    a = als.fit_implicit(inter, p, on_iteration=seen.append)
    b = als.fit_implicit(inter, p)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.Y, b.Y)
    assert [h["iteration"] for h in seen] == [1, 2, 3]


# ------------------------------------------------------------------------------- divergence


def test_inf_rating_raises_diverged() -> None:
    inter = _synthetic(seed=14)
    rating = inter.rating.copy()
    rating[5] = np.inf
    poisoned = Interactions(inter.user_idx, inter.item_idx, rating, inter.n_users, inter.n_items)
    with pytest.raises(als.TrainingDivergedError, match="NaN or infinite"):
        als.fit_explicit(poisoned, ExplicitParams(rank=3, iterations=2))
    with pytest.raises(als.TrainingDivergedError):
        als.fit_implicit(poisoned, ImplicitParams(rank=3, iterations=2))


def test_zero_reg_with_rank_above_ratings_raises_diverged() -> None:
    """Users with 2 ratings and rank 10 with reg=0: YᵀY is singular, never a silent model."""
    rng = np.random.default_rng(0)
    n_users, n_items = 30, 40
    u = np.repeat(np.arange(n_users), 2)
    i = rng.integers(0, n_items, u.shape[0])
    keep = np.unique(np.stack([u, i], 1), axis=0)
    r = rng.choice([1.0, 3.0, 5.0], keep.shape[0])
    inter = Interactions(
        keep[:, 0].astype(np.int32),
        keep[:, 1].astype(np.int32),
        r.astype(np.float32),
        n_users,
        n_items,
    )
    with pytest.raises(als.TrainingDivergedError, match="iteration 1"):
        als.fit_explicit(inter, ExplicitParams(rank=10, reg=0.0, iterations=3))


def test_block_solve_memory_is_bounded_for_a_large_partition() -> None:
    """1.25M ratings in one block: the batched solve must not materialise per-rating k×k
    outer products (that alone would be 1.25M·400·8 B = 4 GB)."""
    import tracemalloc

    rng = np.random.default_rng(0)
    n_rows, n_fixed, k, n = 20_000, 5_000, 20, 1_250_000
    # long-tailed row lengths, like real users
    rows = np.minimum(rng.zipf(1.3, n) - 1, n_rows - 1) % n_rows
    cols = rng.integers(0, n_fixed, n)
    csr = als.to_csr(rows, cols, rng.standard_normal(n), n_rows)
    fixed = rng.standard_normal((n_fixed, k))
    tracemalloc.start()
    try:
        out = als.solve_explicit_block(fixed, *csr, 0.1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.shape == (n_rows, k) and np.all(np.isfinite(out))
    inputs = sum(a.nbytes for a in csr)
    assert peak - inputs < 300 * 2**20, f"peak {peak / 2**20:.0f} MB"
    # spot-check a few rows, including the longest, against the reference
    lens = np.diff(csr[0])
    for r in [int(np.argmax(lens)), 1, n_rows - 1]:
        s, e = csr[0][r], csr[0][r + 1]
        ref = als.naive_solve_explicit(fixed, np.array([0, e - s]), csr[1][s:e], csr[2][s:e], 0.1)
        np.testing.assert_allclose(out[r], ref[0], rtol=1e-8, atol=1e-10)


def test_partitioned_solves_equal_the_whole_block() -> None:
    """The Spark engine solves row subsets per partition: bucket composition changes, rows must
    not (explicit and implicit)."""
    k = 10
    fixed, (indptr, indices, values) = _random_block(90, 150, k, seed=21, max_len=80)
    ratings = np.abs(values) + 0.5
    whole_e = als.solve_explicit_block(fixed, indptr, indices, values, 0.2)
    gram = fixed.T @ fixed
    whole_i = als.solve_implicit_block(fixed, gram, indptr, indices, ratings, 1.5, 3.0)
    rng = np.random.default_rng(0)
    part_of = rng.integers(0, 3, 90)
    for part in range(3):
        rows = np.flatnonzero(part_of == part)
        lens = np.diff(indptr)[rows]
        sub_ptr = np.concatenate([[0], np.cumsum(lens)])
        take = np.concatenate([np.arange(indptr[r], indptr[r + 1]) for r in rows])
        sub_e = als.solve_explicit_block(fixed, sub_ptr, indices[take], values[take], 0.2)
        sub_i = als.solve_implicit_block(
            fixed, gram, sub_ptr, indices[take], ratings[take], 1.5, 3.0
        )
        np.testing.assert_allclose(sub_e, whole_e[rows], rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(sub_i, whole_i[rows], rtol=1e-10, atol=1e-13)


def test_implicit_signal_turns_low_ratings_into_evidence_against() -> None:
    r = np.array([0.5, 1.0, 2.0, 2.5, 5.0], np.float32)
    np.testing.assert_allclose(als.implicit_signal(r, 2.0), [-2.0, -1.5, -0.5, 2.5, 5.0])
    np.testing.assert_allclose(als.implicit_signal(r, None), r)


def test_evidence_against_pushes_the_user_away_from_a_disliked_movie() -> None:
    """Spark MLlib's convention: a negative signal is preference 0 with confidence 1 + α|r′|,
    so a 0.5★ movie ends up scored below where a 5★ rating of it would put it, and the same
    ratings give different vectors (a pure "watched" model would give the same)."""
    rng = np.random.default_rng(11)
    y = rng.standard_normal((40, 5))
    p = als.ImplicitParams(rank=5, reg=1.0, alpha=2.0, negative_at=2.0)
    idx = np.array([1, 2, 3, 4])
    loved = als.fold_in_implicit(y, idx, np.array([5.0, 5.0, 5.0, 4.0]), p)
    mixed = als.fold_in_implicit(y, idx, np.array([5.0, 5.0, 5.0, 0.5]), p)
    assert y[4] @ mixed < y[4] @ loved
    assert y[4] @ mixed < 0 < y[4] @ loved
    hated = als.fold_in_implicit(y, idx, np.full(4, 0.5), p)
    np.testing.assert_array_equal(hated, np.zeros(5))
    plain = als.ImplicitParams(rank=5, reg=1.0, alpha=2.0, negative_at=None)
    assert np.all(als.fold_in_implicit(y, idx, np.full(4, 0.5), plain) != 0)


# ------------------------------------------------------------------------- conjugate gradient


@pytest.mark.parametrize("reg_scaled", [True, False])
def test_explicit_cg_converges_to_the_exact_solve(reg_scaled: bool) -> None:
    """Enough CG steps from zero reach the exact ridge solution (a k×k SPD system converges in
    k steps in exact arithmetic); a few steps from the exact solution do not move it. The
    tolerances leave room for CG's rounding over 4k steps."""
    k = 8
    fixed, (indptr, indices, values) = _random_block(60, 90, k, seed=21)
    exact = als.naive_solve_explicit(fixed, indptr, indices, values, 0.3, reg_scaled)
    cg = als.solve_explicit_block(fixed, indptr, indices, values, 0.3, reg_scaled, cg_steps=4 * k)
    np.testing.assert_allclose(cg, exact, rtol=1e-4, atol=1e-5)
    again = als.solve_explicit_block(
        fixed, indptr, indices, values, 0.3, reg_scaled, x0=exact, cg_steps=3
    )
    np.testing.assert_allclose(again, exact, rtol=1e-4, atol=1e-5)
    few = als.solve_explicit_block(fixed, indptr, indices, values, 0.3, reg_scaled, cg_steps=2)
    assert np.abs(few - exact).max() > 1e-3  # two steps are an approximation, not the answer


@pytest.mark.parametrize("k", [3, 16])
def test_implicit_cg_converges_to_the_exact_solve(k: int) -> None:
    fixed, (indptr, indices, _) = _random_block(50, 80, k, seed=22)
    ratings = np.random.default_rng(1).choice([0.5, 3.0, 5.0], size=indices.shape[0])
    gram = fixed.T @ fixed
    exact = als.solve_implicit_block(fixed, gram, indptr, indices, ratings, 2.0, 0.7)
    cg = als.solve_implicit_block(fixed, gram, indptr, indices, ratings, 2.0, 0.7, cg_steps=6 * k)
    np.testing.assert_allclose(cg, exact, rtol=1e-4, atol=1e-5)
    # Warm-started at the answer, CG stays there; empty rows stay zero either way.
    again = als.solve_implicit_block(
        fixed, gram, indptr, indices, ratings, 2.0, 0.7, x0=exact, cg_steps=3
    )
    np.testing.assert_allclose(again, exact, rtol=1e-4, atol=1e-5)
    assert not cg[np.diff(indptr) == 0].any()


def test_cg_fit_is_close_to_the_exact_fit_and_ends_exact() -> None:
    """A warm-started 3-step CG fit lands near the exact fit (scores and training error), and
    its last user half-step is exact: P is the exact solve against the final Q."""
    inter = _synthetic(seed=23, k=4)
    exact = als.fit_implicit(inter, ImplicitParams(rank=6, reg=2.0, iterations=8, cg_steps=0))
    cg = als.fit_implicit(inter, ImplicitParams(rank=6, reg=2.0, iterations=8, cg_steps=3))
    se, sc = exact.X @ exact.Y.T, cg.X @ cg.Y.T
    assert np.abs(se - sc).max() < 0.05 * np.abs(se).max()
    assert cg.history[-1]["train_rmse"] == pytest.approx(exact.history[-1]["train_rmse"], rel=0.02)
    gram = cg.Y.T @ cg.Y
    signal = als.implicit_signal(inter.rating, ImplicitParams().negative_at)
    by_user = als.to_csr(inter.user_idx, inter.item_idx, signal, inter.n_users)
    ref = als.solve_implicit_block(cg.Y, gram, *by_user, 1.0, 2.0)
    np.testing.assert_allclose(cg.X, ref, rtol=1e-8, atol=1e-10)

    p_exact = ExplicitParams(rank=6, iterations=10, reg=0.05, cg_steps=0)
    e_exact = als.fit_explicit(inter, p_exact)
    e_cg = als.fit_explicit(inter, ExplicitParams(rank=6, iterations=10, reg=0.05, cg_steps=3))
    assert e_cg.history[-1]["train_rmse"] == pytest.approx(
        e_exact.history[-1]["train_rmse"], rel=0.02
    )
    r = inter.rating.astype(np.float64)
    resid = r - e_cg.mu - e_cg.user_bias[inter.user_idx] - e_cg.item_bias[inter.item_idx]
    by_user = als.to_csr(inter.user_idx, inter.item_idx, resid, inter.n_users)
    np.testing.assert_allclose(
        als.naive_solve_explicit(e_cg.Q, *by_user, 0.05, True), e_cg.P, rtol=1e-8
    )


def test_stable_argsort_rows_is_numpys_stable_sort_below_and_above_16_bits() -> None:
    rng = np.random.default_rng(2)
    for high in (40, 70_000, 5_000_000):
        rows = rng.integers(0, high, 20_000)
        np.testing.assert_array_equal(
            als.stable_argsort_rows(rows), np.argsort(rows, kind="stable")
        )
    assert als.stable_argsort_rows(np.empty(0, np.int64)).size == 0
    for dtype in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32):
        rows = rng.integers(0, 100, 1_000).astype(dtype)
        np.testing.assert_array_equal(
            als.stable_argsort_rows(rows), np.argsort(rows, kind="stable")
        )
    for bad in (np.array([3, -1, 2]), np.array([0, 2**32])):
        with pytest.raises(ValueError, match="row indices"):
            als.stable_argsort_rows(bad)
