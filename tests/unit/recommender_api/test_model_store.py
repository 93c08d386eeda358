"""The recommender's model store on real artifact directories: load through the artifact
reader, swap on a new CURRENT, refuse a corrupt version and keep the active one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from movierec_common import als, artifacts
from recommender_api.model_store import ModelStore, load_serving_model

from tests.support.toy_model import explicit_arrays


def _publish(model_dir: Path, seed: int, ranking: bool = True) -> str:
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(20), 5)
    items = rng.integers(0, 9, users.size)
    keep = np.unique(users * 100 + items, return_index=True)[1]
    ratings = rng.choice(np.arange(1, 11) / 2, keep.size).astype(np.float32)
    inter, uids, iids = als.index_ratings(users[keep] + 1, items[keep] * 10 + 1, ratings)
    ep = als.ExplicitParams(rank=3, iterations=3)
    ip = als.ImplicitParams(rank=3, reg=1.0, iterations=3)
    em, im = als.fit_als(als.LocalHalfSteps(inter), inter, ep, ip if ranking else None)
    arrays = explicit_arrays(em, inter, uids, iids)
    if im is not None:
        arrays |= {"rank_X": im.X, "rank_Y": im.Y}
    manifest = {
        "params": {"explicit": ep.to_dict(), "ranking": ip.to_dict() if ranking else None},
        "data": {"n_ratings": len(inter), "n_users": inter.n_users, "n_items": inter.n_items},
        "metrics": {"rmse": 1.0},
        "history": [],
    }
    return artifacts.save_model(model_dir, arrays, manifest)


def test_every_artifact_array_reaches_the_serving_model(tmp_path: Path) -> None:
    version = _publish(tmp_path, seed=1)
    model = load_serving_model(tmp_path, version, "auto", 1)
    assert model.version == version and model.has_ranking
    art = artifacts.load_model(tmp_path, version)
    np.testing.assert_array_equal(model.users.ids, art.user_ids)


def test_refresh_swaps_on_a_new_current_and_refuses_a_corrupt_version(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = ModelStore(tmp_path, similar_min_ratings=1, watch=False)
        assert not await store.refresh("start")  # nothing published yet
        v1 = _publish(tmp_path, seed=1)
        assert await store.refresh("poll") and store.current.version == v1
        assert not await store.refresh("poll")  # same CURRENT: no reload
        v2 = _publish(tmp_path, seed=2, ranking=False)
        (tmp_path / artifacts.VERSIONS / v2 / "factors.npz").write_bytes(b"not a zip")
        assert not await store.refresh("poll")
        assert store.current.version == v1  # the active model stays
        assert store.reloads_failed == 1 and v2 in (store.last_error or "")
        assert not await store.refresh("poll")  # a refused version is not retried …
        assert await store.refresh("poll", force=True) is False  # … unless forced (still bad)
        assert store.reloads_failed == 2

    asyncio.run(scenario())
