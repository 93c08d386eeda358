"""A small serving model fitted with the real kernel, for recommender unit tests."""

from __future__ import annotations

import numpy as np
from movierec_common import als
from recommender_api.ranking import ServingModel, build_serving_model


def explicit_arrays(
    em: als.ExplicitModel, inter: als.Interactions, uids: np.ndarray, iids: np.ndarray
) -> dict[str, np.ndarray]:
    """The artifact arrays of an explicit fit (artifacts.REQUIRED_KEYS): factors, biases, μ,
    the id maps `als.index_ratings` returned and each movie's rating count."""
    return {
        "P": em.P,
        "Q": em.Q,
        "user_bias": em.user_bias,
        "item_bias": em.item_bias,
        "global_mean": np.asarray(em.mu),
        "user_ids": uids,
        "item_ids": iids,
        "item_counts": np.bincount(inter.item_idx, minlength=inter.n_items),
    }


def toy_model(
    ranking_factors: bool = True, min_ratings: int = 0
) -> tuple[ServingModel, als.Interactions, als.ExplicitModel, als.ImplicitModel | None]:
    """A serving model fitted on 30 users x 12 movies (ids 10u+7 and 100i+1), rank 4, with the
    ranking factors unless `ranking_factors=False`; returns (model, interactions, explicit
    fit, implicit fit or None)."""
    rng = np.random.default_rng(0)
    n_users, n_items, k = 30, 12, 4
    users = np.repeat(np.arange(n_users), 6)
    items = rng.integers(0, n_items, users.size)
    keep = np.unique(users * 100 + items, return_index=True)[1]
    users, items = users[keep], items[keep]
    ratings = rng.choice(np.arange(1, 11) / 2, users.size).astype(np.float32)
    user_ids = np.arange(n_users) * 10 + 7
    item_ids = np.arange(n_items) * 100 + 1
    inter, uids, iids = als.index_ratings(user_ids[users], item_ids[items], ratings)
    ep = als.ExplicitParams(rank=k, reg=0.1, iterations=8)
    ip = als.ImplicitParams(rank=k, reg=1.0, alpha=2.0, iterations=8)
    em = als.fit_explicit(inter, ep)
    arrays = explicit_arrays(em, inter, uids, iids)
    params = {"explicit": ep.to_dict(), "ranking": None}
    im = None
    if ranking_factors:
        im = als.fit_implicit(inter, ip)
        arrays |= {"rank_X": im.X, "rank_Y": im.Y}
        params["ranking"] = ip.to_dict()
    model = build_serving_model(
        version="v1",
        manifest={"params": params},
        arrays=arrays,
        similar_min_ratings=min_ratings,
    )
    return model, inter, em, im
