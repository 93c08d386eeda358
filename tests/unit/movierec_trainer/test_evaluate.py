"""Evaluation metrics on cases small enough to compute by hand, and the holdout protocols."""

from __future__ import annotations

import math

import numpy as np
import pytest
from movierec_trainer import data as tdata
from movierec_trainer.evaluate import (
    Evaluator,
    explicit_scores,
    factor_scores,
    mae,
    rmse,
    top_k_from_scores,
)


def test_rmse_mae_by_hand() -> None:
    pred = np.array([3.0, 4.0, 5.0])
    actual = np.array([4.0, 4.0, 3.0])
    assert rmse(pred, actual) == pytest.approx(math.sqrt((1 + 0 + 4) / 3))
    assert mae(pred, actual) == pytest.approx((1 + 0 + 2) / 3)


def test_top_k_orders_best_first_and_breaks_ties_by_index() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.9, -1.0]])
    assert top_k_from_scores(scores, 3).tolist() == [[1, 3, 2]]


def _tiny() -> Evaluator:
    # 2 users × 6 items. Train: user 0 rated items 0,1; user 1 rated item 0.
    # Test: user 0 liked items 2 (5★) and 5 (4★), disliked 3 (2★); user 1 liked item 4 (4.5★).
    return Evaluator(
        n_users=2,
        n_items=6,
        train_user=np.array([0, 0, 1]),
        train_item=np.array([0, 1, 0]),
        test_user=np.array([0, 0, 0, 1]),
        test_item=np.array([2, 5, 3, 4]),
        test_rating=np.array([5.0, 4.0, 2.0, 4.5]),
        k=3,
    )


def test_precision_recall_ndcg_hand_computed() -> None:
    ev = _tiny()
    # Fixed per-user scores: user 0 ranks 0(train, masked),3,2,5…; user 1 ranks 4 fourth.
    table = np.array(
        [
            [9.0, 8.0, 6.0, 7.0, 1.0, 5.0],  # candidates 3,2,5 → hits at ranks 2 and 3
            [9.0, 8.0, 7.0, 6.0, 1.0, 5.0],  # candidates 1,2,3 → no hit (4 is ranked 5th)
        ]
    )
    m = ev.topn(lambda users: table[users])
    assert m.n_users == 2
    # user 0: 2 hits of 3 → P=2/3, R=2/2; user 1: 0 hits → P=0, R=0.
    assert m.precision_at_k == pytest.approx((2 / 3 + 0) / 2)
    assert m.recall_at_k == pytest.approx((1.0 + 0) / 2)
    dcg0 = 1 / math.log2(3) + 1 / math.log2(4)
    idcg0 = 1 + 1 / math.log2(3)
    assert m.ndcg_at_k == pytest.approx((dcg0 / idcg0 + 0) / 2)
    # Lists {3,2,5} ∪ {1,2,3} = {1,2,3,5}: 4 of 6 items.
    assert m.coverage_at_k == pytest.approx(4 / 6)


def test_training_items_are_never_recommended() -> None:
    ev = _tiny()
    recs = ev.recommend(lambda users: np.tile(np.arange(6.0)[::-1], (len(users), 1)))
    assert 0 not in recs[0] and 1 not in recs[0]
    assert 0 not in recs[1]


def test_perfect_model_scores_one() -> None:
    ev = _tiny()
    oracle = np.zeros((2, 6))
    oracle[0, [2, 5]] = 1.0
    oracle[1, 4] = 1.0
    m = ev.topn(lambda users: oracle[users])
    assert m.ndcg_at_k == pytest.approx(1.0)
    assert m.recall_at_k == pytest.approx(1.0)


def test_popularity_reranker_shows_low_coverage() -> None:
    """A model that only re-ranks the popular movies covers a sliver of the catalogue, while
    a personalised model that fits each user's taste covers much more — coverage tells them
    apart even when both are 'accurate' on the head."""
    rng = np.random.default_rng(0)
    n_users, n_items = 200, 100
    # Each user likes a private block of 5 items; everyone also rated the 5 blockbusters 0-4.
    tu, ti, su, si, sr = [], [], [], [], []
    for u in range(n_users):
        block = 5 + (u % 19) * 5 + np.arange(5)
        for i in range(5):
            tu.append(u)
            ti.append(i)
        liked = rng.permutation(block)
        tu += [u, u]
        ti += liked[:2].tolist()
        su += [u] * 3
        si += liked[2:].tolist()
        sr += [5.0] * 3
    ev = Evaluator(
        n_users, n_items, np.array(tu), np.array(ti), np.array(su), np.array(si), np.array(sr)
    )
    pop = ev.topn(ev.popularity_scores())
    taste = np.zeros((n_users, n_items))
    for u in range(n_users):
        taste[u, 5 + (u % 19) * 5 : 10 + (u % 19) * 5] = 1.0
    pers = ev.topn(lambda users: taste[users] + 1e-3 * ev.item_counts[None, :])
    assert pop.coverage_at_k < 0.25  # 10 head/near-head items of 100
    assert pers.coverage_at_k > 0.9
    assert pers.ndcg_at_k > pop.ndcg_at_k


def test_score_helpers_agree_with_formulas() -> None:
    rng = np.random.default_rng(1)
    P, Q = rng.normal(size=(3, 2)), rng.normal(size=(4, 2))
    bu, bi = rng.normal(size=3), rng.normal(size=4)
    s = explicit_scores(3.5, bu, bi, P, Q)(np.array([2, 0]))
    assert s[0, 1] == pytest.approx(3.5 + bu[2] + bi[1] + P[2] @ Q[1])
    assert factor_scores(P, Q)(np.array([1]))[0, 3] == pytest.approx(P[1] @ Q[3])


def _ratings(n: int = 2000, seed: int = 0) -> tdata.Ratings:
    rng = np.random.default_rng(seed)
    return tdata.make_ratings(
        rng.integers(0, 50, n),
        rng.integers(0, 1000, n),
        rng.integers(1, 11, n) / 2,
        rng.integers(0, 10**6, n),
    )


def test_random_holdout_is_seeded_and_drops_unseen() -> None:
    r = _ratings()
    a, b, c = (tdata.random_holdout(r, 0.2, s) for s in (7, 7, 8))
    assert np.array_equal(a.test.ratings, b.test.ratings)
    assert not np.array_equal(a.test.movie_ids, c.test.movie_ids)
    assert set(a.test.user_ids) <= set(a.train.user_ids)
    assert set(a.test.movie_ids) <= set(a.train.movie_ids)
    assert a.dropped_test_rows > 0  # 1000 movies × ~2 ratings: ~4 % of movies are test-only
    assert len(a.train) + len(a.test) + a.dropped_test_rows == len(r)
    assert 0.15 < (len(a.test) + a.dropped_test_rows) / len(r) < 0.25


def test_temporal_holdout_takes_each_users_latest() -> None:
    r = tdata.make_ratings(
        [1, 1, 1, 1, 1, 2, 2, 3],
        [10, 11, 12, 13, 14, 10, 11, 12],
        [4, 4, 4, 4, 4, 3, 3, 5],
        [5, 1, 4, 2, 3, 9, 8, 1],
    )
    s = tdata.temporal_holdout(r, 0.4)
    # user 1: 5 ratings → 2 latest (ts 5 → movie 10, ts 4 → movie 12); user 2: 2 → floor(0.8)=0;
    # user 3: a single rating always stays in train.
    got = sorted(zip(s.test.user_ids.tolist(), s.test.movie_ids.tolist(), strict=True))
    assert got == [(1, 10), (1, 12)]
    assert len(s.train) == 6


def test_merge_db_wins_and_fingerprint_is_order_free() -> None:
    csv = tdata.make_ratings([1, 1, 2], [10, 11, 10], [3.0, 4.0, 5.0])
    db = tdata.make_ratings([1, 3], [11, 10], [1.0, 2.5])
    m = tdata.merge_db_over_csv(csv, db)
    got = sorted(zip(m.user_ids.tolist(), m.movie_ids.tolist(), m.ratings.tolist(), strict=True))
    assert got == [(1, 10, 3.0), (1, 11, 1.0), (2, 10, 5.0), (3, 10, 2.5)]
    perm = np.array([3, 1, 0, 2])
    assert tdata.fingerprint(m) == tdata.fingerprint(tdata.subset(m, perm))
    assert tdata.fingerprint(m) != tdata.fingerprint(csv)


def test_topn_is_taken_over_a_seeded_sample_of_users_past_the_cap() -> None:
    rng = np.random.default_rng(3)
    n_users, n_items = 300, 40
    test_user = np.arange(n_users)  # one relevant test rating each: all 300 are eligible
    test_item = rng.integers(0, n_items, n_users)
    args = (n_users, n_items, np.array([0]), np.array([0]), test_user, test_item)
    stars = np.full(n_users, 5.0)
    capped = Evaluator(*args, stars, k=5, max_users=120)
    again = Evaluator(*args, stars, k=5, max_users=120)
    whole = Evaluator(*args, stars, k=5, max_users=None)
    assert capped.n_eligible == whole.n_eligible == n_users
    assert len(capped.eval_users) == 120 and np.array_equal(capped.eval_users, again.eval_users)
    assert np.all(np.diff(capped.eval_users) > 0)
    # A model that finds exactly the sampled users' movies scores 1 on the sample...
    perfect_for = set(capped.eval_users.tolist())

    def score(users: np.ndarray) -> np.ndarray:
        out = np.zeros((len(users), n_items))
        for row, u in enumerate(users):
            if int(u) in perfect_for:
                out[row, test_item[u]] = 1.0
        return out

    assert capped.topn(score).ndcg_at_k == pytest.approx(1.0)
    assert capped.topn(score).n_users == 120
    # ...and only on them: over every user it scores 120/300 (the others' lists are arbitrary).
    assert whole.topn(score).ndcg_at_k < 0.5
