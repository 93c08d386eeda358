"""Model artifacts: round trip, strict refusal of anything corrupt or unknown, atomic publish."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from movierec_common import artifacts
from movierec_common.artifacts import ArtifactError


def _arrays(n_users: int = 5, n_items: int = 7, k: int = 3, ranking: bool = False, seed: int = 0):
    rng = np.random.default_rng(seed)
    a = {
        "P": rng.standard_normal((n_users, k)),
        "Q": rng.standard_normal((n_items, k)),
        "user_bias": rng.standard_normal(n_users),
        "item_bias": rng.standard_normal(n_items),
        "global_mean": np.array(3.5),
        "user_ids": np.arange(1, n_users + 1, dtype=np.int64) * 10,
        "item_ids": np.arange(1, n_items + 1, dtype=np.int64) * 3,
        "item_counts": rng.integers(1, 50, n_items),
    }
    if ranking:
        a["rank_X"] = rng.standard_normal((n_users, k + 1)).astype(np.float32)
        a["rank_Y"] = rng.standard_normal((n_items, k + 1)).astype(np.float32)
    return a


def _manifest() -> dict:
    return {
        "params": {"explicit": {"rank": 3, "reg": 0.1}, "ranking": None},
        "data": {"n_ratings": 20, "n_users": 5, "n_items": 7, "fingerprint": "abc"},
        "metrics": {"rmse": 0.9, "mae": 0.7},
        "history": [{"iteration": 1, "train_rmse": 1.0}],
    }


def _rewrite_manifest(model_dir: Path, version: str, **changes) -> None:
    path = model_dir / "versions" / version / "manifest.json"
    m = json.loads(path.read_text())
    m.update(changes)
    path.write_text(json.dumps(m))


def _factors(model_dir: Path, version: str) -> Path:
    return model_dir / "versions" / version / "factors.npz"


def _replace_factors_consistently(model_dir: Path, version: str, arrays: dict) -> None:
    """Write a new npz AND a matching checksum, so only the content checks can refuse it."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    blob = buf.getvalue()
    _factors(model_dir, version).write_bytes(blob)
    _rewrite_manifest(
        model_dir,
        version,
        files={"factors.npz": {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}},
    )


def test_round_trip_explicit_only(tmp_path: Path) -> None:
    arrays = _arrays()
    version = artifacts.save_model(tmp_path, arrays, _manifest())
    assert artifacts.current_version(tmp_path) == version
    model = artifacts.load_model(tmp_path)
    assert model.version == version
    assert not model.has_ranking
    assert model.rank_X is None and model.rank_Y is None
    for key in ("P", "Q", "user_bias", "item_bias", "user_ids", "item_ids", "item_counts"):
        np.testing.assert_array_equal(getattr(model, key), arrays[key])
    assert model.global_mean == 3.5
    m = model.manifest
    assert m["format_version"] == artifacts.FORMAT_VERSION
    assert m["version"] == version
    assert m["models"] == ["explicit"]
    assert m["metrics"]["rmse"] == 0.9
    assert m["history"] == [{"iteration": 1, "train_rmse": 1.0}]
    assert len(m["files"]["factors.npz"]["sha256"]) == 64
    assert m["files"]["factors.npz"]["bytes"] == _factors(tmp_path, version).stat().st_size
    assert m["created_at"]


def test_round_trip_with_ranking(tmp_path: Path) -> None:
    arrays = _arrays(ranking=True)
    artifacts.save_model(tmp_path, arrays, _manifest())
    model = artifacts.load_model(tmp_path)
    assert model.has_ranking
    assert model.manifest["models"] == ["explicit", "ranking"]
    np.testing.assert_array_equal(model.rank_X, arrays["rank_X"])
    np.testing.assert_array_equal(model.rank_Y, arrays["rank_Y"])


def test_no_pickle_in_npz(tmp_path: Path) -> None:
    b = np.full((3, 3), 0.01, np.float32)
    np.fill_diagonal(b, 0.0)
    ease = {"ease_B": b, "ease_items": np.array([0, 2, 5], np.int64)}  # 3 of the 7 movies
    item_genres = np.eye(7, 3, dtype=np.uint8)  # movies 0-2 one genre each, the rest none
    arrays = {**_arrays(ranking=True), **_rated(), **ease, "item_genres": item_genres}
    manifest = {**_manifest(), "params": {"genres": ["Action", "Comedy", "Drama"]}}
    version = artifacts.save_model(tmp_path, arrays, manifest)
    with np.load(_factors(tmp_path, version), allow_pickle=False) as npz:
        assert set(npz.files) == set(artifacts.KNOWN_KEYS)
    loaded = artifacts.load_model(tmp_path)
    assert loaded.item_genres is not None
    np.testing.assert_array_equal(loaded.item_genres, item_genres)


@pytest.mark.parametrize(
    ("item_genres", "names", "message"),
    [
        (np.ones((6, 3), np.uint8), ["a", "b", "c"], "n_items"),  # one row short
        (np.ones(7, np.uint8), ["a"], "n_items"),  # not 2-d
        (np.full((7, 3), 2, np.uint8), ["a", "b", "c"], "0/1"),
        (np.ones((7, 3), np.float32), ["a", "b", "c"], "integer"),
        (np.ones((7, 300), np.uint8), ["a"] * 300, "at most"),
        (np.ones((7, 3), np.uint8), ["a", "b"], "names 2"),  # the manifest names 2 columns
        (np.ones((7, 3), np.uint8), None, "params.genres"),
    ],
)
def test_malformed_item_genres_refused(
    tmp_path: Path, item_genres: np.ndarray, names: list[str] | None, message: str
) -> None:
    b = np.zeros((1, 1), np.float32)
    arrays = {**_arrays(), "ease_B": b, "ease_items": np.array([0]), "item_genres": item_genres}
    manifest = {**_manifest(), "params": {"genres": names}}
    with pytest.raises(ArtifactError, match=message):
        artifacts.save_model(tmp_path, arrays, manifest)


def test_item_genres_without_ease_refused(tmp_path: Path) -> None:
    manifest = {**_manifest(), "params": {"genres": ["a"]}}
    arrays = {**_arrays(), "item_genres": np.ones((7, 1), np.uint8)}
    with pytest.raises(ArtifactError, match="no ease_B"):
        artifacts.save_model(tmp_path, arrays, manifest)


def test_truncated_factors_refused(tmp_path: Path) -> None:
    version = artifacts.save_model(tmp_path, _arrays(), _manifest())
    path = _factors(tmp_path, version)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="bytes"):
        artifacts.load_model(tmp_path)


def test_tampered_byte_refused(tmp_path: Path) -> None:
    version = artifacts.save_model(tmp_path, _arrays(), _manifest())
    path = _factors(tmp_path, version)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        artifacts.load_model(tmp_path)


def test_truncated_npz_with_matching_checksum_refused(tmp_path: Path) -> None:
    """Even a consistent checksum cannot make a broken zip loadable."""
    version = artifacts.save_model(tmp_path, _arrays(), _manifest())
    data = _factors(tmp_path, version).read_bytes()[:200]
    _factors(tmp_path, version).write_bytes(data)
    _rewrite_manifest(
        tmp_path,
        version,
        files={"factors.npz": {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}},
    )
    with pytest.raises(ArtifactError, match="not a valid npz"):
        artifacts.load_model(tmp_path)


@pytest.mark.parametrize(
    ("key", "bad"),
    [
        ("P", np.zeros((4, 3))),  # wrong number of users
        ("Q", np.zeros((7, 2))),  # rank differs from P
        ("item_bias", np.zeros(6)),
        ("global_mean", np.array([3.5])),
        ("user_ids", np.array([10, 20, 20, 40, 50])),  # not unique
        ("P", np.full((5, 3), np.nan)),
    ],
)
def test_wrong_shapes_or_values_refused(tmp_path: Path, key: str, bad: np.ndarray) -> None:
    version = artifacts.save_model(tmp_path, _arrays(), _manifest())
    broken = _arrays()
    broken[key] = bad
    _replace_factors_consistently(tmp_path, version, broken)
    with pytest.raises(ArtifactError):
        artifacts.load_model(tmp_path)
    # and the writer refuses to publish the same thing in the first place
    with pytest.raises(ArtifactError):
        artifacts.save_model(tmp_path / "other", broken, _manifest())


def test_unknown_npz_key_refused(tmp_path: Path) -> None:
    version = artifacts.save_model(tmp_path, _arrays(), _manifest())
    arrays = _arrays()
    arrays["surprise"] = np.zeros(3)
    _replace_factors_consistently(tmp_path, version, arrays)
    with pytest.raises(ArtifactError, match="unknown array"):
        artifacts.load_model(tmp_path)


def test_half_ranking_model_refused(tmp_path: Path) -> None:
    arrays = _arrays(ranking=True)
    del arrays["rank_Y"]
    with pytest.raises(ArtifactError, match="rank_X and rank_Y"):
        artifacts.save_model(tmp_path, arrays, _manifest())


def test_pickled_object_array_refused(tmp_path: Path) -> None:
    version = artifacts.save_model(tmp_path, _arrays(), _manifest())
    arrays = _arrays()
    arrays["item_counts"] = np.array([{"x": 1}] * 7, dtype=object)
    _replace_factors_consistently(tmp_path, version, arrays)
    with pytest.raises(ArtifactError):
        artifacts.load_model(tmp_path)


def test_unknown_format_version_refused(tmp_path: Path) -> None:
    version = artifacts.save_model(tmp_path, _arrays(), _manifest())
    _rewrite_manifest(tmp_path, version, format_version=99)
    with pytest.raises(ArtifactError, match="format_version"):
        artifacts.load_model(tmp_path)


def test_models_field_must_match_arrays(tmp_path: Path) -> None:
    version = artifacts.save_model(tmp_path, _arrays(), _manifest())
    _rewrite_manifest(tmp_path, version, models=["explicit", "ranking"])
    with pytest.raises(ArtifactError, match="models"):
        artifacts.load_model(tmp_path)


def test_missing_current_target_refused(tmp_path: Path) -> None:
    artifacts.save_model(tmp_path, _arrays(), _manifest())
    (tmp_path / "CURRENT").write_text("v-does-not-exist\n")
    with pytest.raises(ArtifactError, match="does not exist"):
        artifacts.load_model(tmp_path)


def test_nothing_published(tmp_path: Path) -> None:
    assert artifacts.current_version(tmp_path) is None
    assert artifacts.list_versions(tmp_path) == []
    with pytest.raises(ArtifactError, match="no model"):
        artifacts.load_model(tmp_path)


@pytest.mark.parametrize("name", ["../etc", "a/b", "", ".hidden", "x" * 200])
def test_path_like_version_names_refused(tmp_path: Path, name: str) -> None:
    artifacts.save_model(tmp_path, _arrays(), _manifest())
    with pytest.raises(ArtifactError, match="invalid"):
        artifacts.load_model(tmp_path, name)
    with pytest.raises(ArtifactError):
        artifacts.activate(tmp_path, name)


def test_keep_n_pruning_never_removes_active(tmp_path: Path) -> None:
    first = artifacts.save_model(tmp_path, _arrays(seed=0), _manifest(), version="v001")
    # later versions are published without activating them: the old one keeps serving
    for i in range(2, 8):
        artifacts.save_model(
            tmp_path, _arrays(seed=i), _manifest(), version=f"v{i:03d}", activate=False, keep=3
        )
    names = {m["version"] for m in artifacts.list_versions(tmp_path)}
    assert names == {"v001", "v005", "v006", "v007"}
    assert artifacts.current_version(tmp_path) == first
    artifacts.load_model(tmp_path)  # still loadable


def test_keep_n_pruning_keeps_newest(tmp_path: Path) -> None:
    versions = [
        artifacts.save_model(tmp_path, _arrays(seed=i), _manifest(), keep=2) for i in range(5)
    ]
    listed = artifacts.list_versions(tmp_path)
    assert [m["version"] for m in listed] == versions[-1:-3:-1]
    assert [m["active"] for m in listed] == [True, False]


def test_list_versions_newest_first_with_active_flag(tmp_path: Path) -> None:
    a = artifacts.save_model(tmp_path, _arrays(), _manifest(), version="v1")
    b = artifacts.save_model(tmp_path, _arrays(), _manifest(), version="v2")
    listed = artifacts.list_versions(tmp_path)
    assert [m["version"] for m in listed] == [b, a]
    assert [m["active"] for m in listed] == [True, False]
    assert listed[0]["metrics"]["rmse"] == 0.9


def test_activate_rollback_and_refusal_of_corrupt(tmp_path: Path) -> None:
    a = artifacts.save_model(tmp_path, _arrays(seed=1), _manifest(), version="va")
    b = artifacts.save_model(tmp_path, _arrays(seed=2), _manifest(), version="vb")
    artifacts.activate(tmp_path, a)
    assert artifacts.current_version(tmp_path) == a
    np.testing.assert_array_equal(artifacts.load_model(tmp_path).P, _arrays(seed=1)["P"])
    # corrupt b: activating it is refused and CURRENT stays on a
    path = _factors(tmp_path, b)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError):
        artifacts.activate(tmp_path, b)
    assert artifacts.current_version(tmp_path) == a


def test_current_replaced_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CURRENT is never written in place: a temp file in the same dir is os.replace'd onto it."""
    artifacts.save_model(tmp_path, _arrays(), _manifest(), version="v1")
    calls: list[tuple[Path, Path]] = []
    real_replace = os.replace

    def spy(src, dst):
        src, dst = Path(src), Path(dst)
        calls.append((src, dst))
        # at the moment of the swap, the temp file is complete and CURRENT still names v1
        assert src.read_text().strip() == "v2"
        assert (tmp_path / "CURRENT").read_text().strip() == "v1"
        real_replace(src, dst)

    monkeypatch.setattr(artifacts.os, "replace", spy)
    artifacts.save_model(tmp_path, _arrays(), _manifest(), version="v2")
    assert len(calls) == 1
    src, dst = calls[0]
    assert dst == tmp_path / "CURRENT"
    assert src.parent == tmp_path and src.name != "CURRENT"
    assert not src.exists()
    assert artifacts.current_version(tmp_path) == "v2"
    # no temp files left behind anywhere
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in {"CURRENT", "versions"}]
    assert leftovers == []
    assert sorted(p.name for p in (tmp_path / "versions").iterdir()) == ["v1", "v2"]


def test_failed_write_leaves_no_partial_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    artifacts.save_model(tmp_path, _arrays(), _manifest(), version="v1")

    def boom(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(artifacts.os, "rename", boom)
    with pytest.raises(OSError, match="disk full"):
        artifacts.save_model(tmp_path, _arrays(), _manifest(), version="v2")
    assert sorted(p.name for p in (tmp_path / "versions").iterdir()) == ["v1"]
    assert artifacts.current_version(tmp_path) == "v1"


def test_duplicate_version_refused(tmp_path: Path) -> None:
    artifacts.save_model(tmp_path, _arrays(), _manifest(), version="v1")
    with pytest.raises(ArtifactError, match="exists"):
        artifacts.save_model(tmp_path, _arrays(), _manifest(), version="v1")


def test_unreadable_manifest_listed_but_not_loadable(tmp_path: Path) -> None:
    artifacts.save_model(tmp_path, _arrays(), _manifest(), version="v1")
    (tmp_path / "versions" / "v1" / "manifest.json").write_text("{not json")
    listed = artifacts.list_versions(tmp_path)
    assert listed[0]["version"] == "v1" and "error" in listed[0] and listed[0]["active"]
    with pytest.raises(ArtifactError):
        artifacts.load_model(tmp_path)


def test_npz_is_a_plain_zip_of_npy(tmp_path: Path) -> None:
    version = artifacts.save_model(tmp_path, _arrays(), _manifest())
    with zipfile.ZipFile(_factors(tmp_path, version)) as zf:
        assert all(name.endswith(".npy") for name in zf.namelist())


def test_concurrent_publish_and_load_never_sees_a_partial_model(tmp_path: Path) -> None:
    """A reader loading CURRENT in a loop while a publisher publishes (and prunes, keep=1) 25
    versions must only ever get complete, self-consistent models."""
    import threading

    def arrays_for(i: int) -> dict:
        a = _arrays(n_users=40, n_items=60, k=8)
        a["P"] = np.full_like(a["P"], float(i))
        # Q scaled down so every version passes the sanity check (predictions near the scale).
        a["Q"] = np.full_like(a["Q"], 1e-4 * i)
        return a

    artifacts.save_model(tmp_path, arrays_for(0), _manifest(), version="v000", keep=1)
    done = threading.Event()
    errors: list[BaseException] = []
    seen: set[int] = set()

    def publisher() -> None:
        try:
            for i in range(1, 26):
                artifacts.save_model(
                    tmp_path, arrays_for(i), _manifest(), version=f"v{i:03d}", keep=1
                )
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=publisher)
    thread.start()
    loads = 0
    try:
        while not done.is_set() or loads < 5:
            model = artifacts.load_model(tmp_path)
            value = float(model.P[0, 0])
            assert np.array_equal(model.P, np.full_like(model.P, value))
            assert np.array_equal(model.Q, np.full_like(model.Q, 1e-4 * value))
            assert model.version == f"v{int(value):03d}"
            seen.add(int(value))
            loads += 1
    finally:
        thread.join()
    assert not errors, errors
    assert artifacts.current_version(tmp_path) == "v025"
    assert len(seen) >= 2  # the reader really overlapped with the publisher
    assert len(artifacts.list_versions(tmp_path)) == 1


def test_manifest_with_numpy_values_and_nan_is_plain_json(tmp_path: Path) -> None:
    manifest = _manifest()
    manifest["metrics"] = {
        "rmse": np.float64(0.85),
        "n": np.int64(7),
        "valid_rmse": float("nan"),
        "worst": np.float32(np.inf),
    }
    manifest["history"] = [{"iteration": np.int32(1), "valid_rmse": np.nan}]
    manifest["shape"] = np.array([3, 4])
    version = artifacts.save_model(tmp_path, _arrays(), manifest)
    text = (tmp_path / "versions" / version / "manifest.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    loaded = artifacts.load_model(tmp_path).manifest
    assert loaded["metrics"] == {"rmse": 0.85, "n": 7, "valid_rmse": None, "worst": None}
    assert loaded["history"] == [{"iteration": 1, "valid_rmse": None}]
    assert loaded["shape"] == [3, 4]


def _rated(n_users: int = 5) -> dict:
    lengths = np.arange(n_users) % 3  # 0, 1, 2, 0, 1: users without ratings too
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return {
        "rated_indptr": indptr,
        "rated_movie_ids": np.arange(indptr[-1], dtype=np.int64) * 3 + 3,
        "rated_since": np.asarray(1_500_000_000, np.int64),
        "rated_stars": np.linspace(0.5, 5.0, int(indptr[-1])).astype(np.float32),
    }


def test_rated_lists_round_trip_and_are_optional(tmp_path: Path) -> None:
    version = artifacts.save_model(tmp_path, {**_arrays(), **_rated()}, _manifest())
    model = artifacts.load_model(tmp_path, version)
    assert model.has_rated and model.rated_since == 1_500_000_000
    assert model.rated_indptr.tolist() == [0, 0, 1, 3, 3, 4]
    assert model.rated_movie_ids.tolist() == [3, 6, 9, 12]
    assert model.rated_stars.tolist() == [0.5, 2.0, 3.5, 5.0]
    plain = artifacts.load_model(tmp_path, artifacts.save_model(tmp_path, _arrays(), _manifest()))
    assert not plain.has_rated and plain.rated_since is None


@pytest.mark.parametrize(
    "change, message",
    [
        ({"rated_indptr": np.array([0, 0, 1, 3, 3], np.int64)}, "rated_indptr: expected shape"),
        ({"rated_indptr": np.array([0, 2, 1, 3, 3, 4], np.int64)}, "never decrease"),
        ({"rated_indptr": np.array([1, 1, 2, 3, 3, 4], np.int64)}, "start at 0"),
        ({"rated_movie_ids": np.arange(5, dtype=np.int64)}, "end at the length"),
        ({"rated_since": np.array([1], np.int64)}, "rated_since: expected a 0-d"),
        ({"rated_since": np.asarray(1.5)}, "expected an integer array"),
        ({"rated_movie_ids": None}, "rated lists need all of"),
        ({"rated_stars": np.ones(3, np.float32)}, "rated_stars: expected shape"),
        ({"rated_stars": np.ones(4, np.int64)}, "rated_stars: expected a float array"),
        (
            {"rated_indptr": None, "rated_movie_ids": None, "rated_since": None},
            "rated_stars needs the rated lists",
        ),
    ],
)
def test_inconsistent_rated_lists_refused(tmp_path: Path, change: dict, message: str) -> None:
    arrays = {**_arrays(), **_rated(), **change}
    arrays = {k: v for k, v in arrays.items() if v is not None}
    with pytest.raises(ArtifactError, match=message):
        artifacts.save_model(tmp_path, arrays, _manifest())


@pytest.mark.parametrize("ranking", [False, True])
def test_arrays_of_a_loaded_version_are_what_was_saved(tmp_path: Path, ranking: bool) -> None:
    saved = _arrays(ranking=ranking)
    version = artifacts.save_model(tmp_path, saved, _manifest())
    got = artifacts.load_model(tmp_path, version).arrays()
    assert set(got) == set(saved) and set(got) <= set(artifacts.ARRAY_KEYS)
    for key, value in saved.items():
        np.testing.assert_array_equal(np.asarray(got[key]), value, err_msg=key)
