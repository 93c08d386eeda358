"""The shipped defaults on the real ml-latest-small split keep the accuracy targets.

Accuracy, not speed: these guard against a kernel change that silently degrades the model
(the speed numbers live in bench/tune_defaults.py).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from movierec_common import als
from movierec_common.movielens import load_ratings


@pytest.fixture(scope="module")
def split(movielens_dir: Path) -> tuple[als.Interactions, als.Interactions]:
    raw = load_ratings(movielens_dir / "ratings.csv")
    inter, _, _ = als.index_ratings(raw.user_ids, raw.movie_ids, raw.ratings)
    train, test = als.random_holdout(inter.user_idx, inter.item_idx, 0.2, seed=42)
    return inter.subset(train), inter.subset(test)


def _ndcg_at_10(scores: np.ndarray, train: als.Interactions, test: als.Interactions) -> float:
    """Mean NDCG@10 over test users with a rating ≥ 4; candidates = training movies the user
    has not rated in training."""
    scores = scores.copy()
    scores[:, np.bincount(train.item_idx, minlength=train.n_items) == 0] = -np.inf
    scores[train.user_idx, train.item_idx] = -np.inf
    relevant = np.zeros(scores.shape, dtype=bool)
    good = test.rating >= 4
    relevant[test.user_idx[good], test.item_idx[good]] = True
    users = np.flatnonzero(relevant.any(axis=1))
    s = scores[users]
    part = np.argpartition(-s, 9, axis=1)[:, :10]
    top = np.take_along_axis(part, np.argsort(-np.take_along_axis(s, part, 1), axis=1), 1)
    hits = np.take_along_axis(relevant[users], top, axis=1)
    disc = 1.0 / np.log2(np.arange(2, 12))
    ideal = np.cumsum(disc)[np.minimum(relevant[users].sum(1), 10) - 1]
    return float(np.mean((hits * disc).sum(1) / ideal))


def test_explicit_defaults_meet_rmse_target(split) -> None:
    train, test = split
    p = als.DEFAULT_EXPLICIT
    assert (p.rank, p.iterations, p.bias_reg) == (20, 20, 10.0)  # the contract's fixed values
    model = als.fit_explicit(train, p, valid=test)
    pred = model.predict(test.user_idx, test.item_idx)
    rmse = float(np.sqrt(np.mean((pred - test.rating) ** 2)))
    assert rmse <= 0.848, rmse
    assert model.history[-1]["valid_rmse"] == pytest.approx(rmse)
    # and the factors really add something over the frozen biases alone
    biases = als.fit_explicit(train, als.ExplicitParams(iterations=0))
    b_pred = biases.predict(test.user_idx, test.item_idx)
    assert float(np.sqrt(np.mean((b_pred - test.rating) ** 2))) > rmse + 0.015


def test_ranking_defaults_beat_popularity(split) -> None:
    train, test = split
    model = als.fit_implicit(train, als.DEFAULT_IMPLICIT)
    ndcg = _ndcg_at_10(model.X @ model.Y.T, train, test)
    counts = np.bincount(train.item_idx, minlength=train.n_items).astype(float)
    pop = _ndcg_at_10(np.tile(counts, (train.n_users, 1)), train, test)
    assert 0.13 < pop < 0.2, pop  # the popularity list scores ≈ 0.16 on this split
    assert ndcg >= 0.25, ndcg
    assert ndcg >= 1.5 * pop


def test_cg_kernel_matches_the_exact_kernel_on_movielens(split) -> None:
    """The conjugate-gradient half-steps (3 warm-started steps per row) give the exact solver's
    accuracy on the real split: ranking NDCG@10 and explicit RMSE within a small margin, in the
    trainer's float32 precision."""
    train, test = split
    ndcg = {}
    for steps in (0, 3):
        m = als.fit_implicit(train, replace(als.DEFAULT_IMPLICIT, cg_steps=steps), dtype=np.float32)
        ndcg[steps] = _ndcg_at_10(m.X @ m.Y.T, train, test)
    assert abs(ndcg[3] - ndcg[0]) <= 0.01, ndcg
    rmse = {}
    for steps in (0, 3):
        e = als.fit_explicit(train, replace(als.DEFAULT_EXPLICIT, cg_steps=steps), dtype=np.float32)
        pred = e.predict(test.user_idx, test.item_idx)
        rmse[steps] = float(np.sqrt(np.mean((pred - test.rating) ** 2)))
    assert abs(rmse[3] - rmse[0]) <= 0.003, rmse
