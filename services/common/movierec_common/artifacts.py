"""Versioned model artifacts: publish atomically, verify before anyone serves them.

Layout: MODEL_DIR/versions/<version>/{factors.npz, manifest.json} and MODEL_DIR/CURRENT, a text
file naming the active version. A publisher writes the whole version into a temporary directory
next to versions/, fsyncs it, renames it into place (a rename within one file system is atomic),
and only then replaces CURRENT through a temporary file + os.replace. A reader therefore sees
either the old complete version or the new complete version, never half of one.

Loading is strict on purpose: the npz is mapped read-only once (hashed and parsed from the same
mapping, so the model's size is not held twice in process memory), its sha256 and size must match
the manifest, every key must be known, every shape must agree with every other, floats must be
finite, and pickle is never allowed. Anything unexpected raises ArtifactError, so a corrupt or
foreign model is refused and the serving process keeps its old one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import mmap
import os
import re
import secrets
import shutil
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from movierec_common.data_model import RATING_MAX, RATING_MIN

FORMAT_VERSION = 1
FACTORS = "factors.npz"
MANIFEST = "manifest.json"
CURRENT = "CURRENT"
VERSIONS = "versions"
REQUIRED_KEYS = (
    "P",
    "Q",
    "user_bias",
    "item_bias",
    "global_mean",
    "user_ids",
    "item_ids",
    "item_counts",
)
RANKING_KEYS = ("rank_X", "rank_Y")
# Optional: every trained user's rated movieIds (CSR over user_ids) from all the data the model
# was built from, holdout included, and `rated_since`: any rating missing from those lists has
# a timestamp at or after it. The recommender then reads only a user's newer ratings.
RATED_KEYS = ("rated_indptr", "rated_movie_ids", "rated_since")
# Optional with the rated lists: the star value of each rated movie (float32, aligned with
# rated_movie_ids), so "because you rated …" explanations need no per-request rating read.
RATED_STARS_KEY = "rated_stars"
# Optional: the EASE item-to-item model (movierec_common.ease): B (m, m) float32 with a zero
# diagonal over the m covered movies, and their item indices (ascending, into item_ids).
EASE_KEYS = ("ease_B", "ease_items")
# Optional: the movies' genres for the blend's genre part (movierec_common.genres), uint8 0/1
# (n_items, n_genres); the manifest's params.genres names the columns.
GENRES_KEY = "item_genres"
ARRAY_KEYS = (
    *REQUIRED_KEYS,
    *RANKING_KEYS,
    *RATED_KEYS,
    RATED_STARS_KEY,
    *EASE_KEYS,
    GENRES_KEY,
)  # every array a version may hold
KNOWN_KEYS = frozenset(ARRAY_KEYS)
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"  # also the admin routes' path pattern
_VERSION_RE = re.compile(VERSION_PATTERN)
_FLOAT_KEYS = (
    "P",
    "Q",
    "user_bias",
    "item_bias",
    "global_mean",
    "rank_X",
    "rank_Y",
    RATED_STARS_KEY,
    "ease_B",
)
_INT_KEYS = ("user_ids", "item_ids", "item_counts", *RATED_KEYS, "ease_items", GENRES_KEY)


class ArtifactError(Exception):
    """The model directory or a version in it is missing, corrupt, or not understood."""


@dataclass(frozen=True)
class ModelArtifact:
    """One published model version as loaded: explicit factors P (n_users, k) and Q
    (n_items, k) with biases in stars (r̂ = global_mean + user_bias + item_bias + P·Q), the dense
    index → MovieLens id maps, per-item training counts, the optional ranking factors rank_X /
    rank_Y (n_users / n_items, k_rank) and the optional per-user rated lists (CSR over movie
    ids, `rated_since` = newest rating timestamp in the training data, seconds)."""

    version: str
    manifest: dict[str, Any]
    P: np.ndarray
    Q: np.ndarray
    user_bias: np.ndarray
    item_bias: np.ndarray
    global_mean: float
    user_ids: np.ndarray
    item_ids: np.ndarray
    item_counts: np.ndarray
    rank_X: np.ndarray | None = None
    rank_Y: np.ndarray | None = None
    rated_indptr: np.ndarray | None = None
    rated_movie_ids: np.ndarray | None = None
    rated_since: int | None = None
    rated_stars: np.ndarray | None = None
    ease_B: np.ndarray | None = None
    ease_items: np.ndarray | None = None
    item_genres: np.ndarray | None = None

    @property
    def has_ranking(self) -> bool:
        return self.rank_X is not None and self.rank_Y is not None

    @property
    def has_rated(self) -> bool:
        return self.rated_indptr is not None

    @property
    def n_users(self) -> int:
        return int(self.user_ids.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_ids.shape[0])

    def arrays(self) -> dict[str, Any]:
        """The arrays by their key in `factors.npz` (ARRAY_KEYS; optional ones absent from the
        version are left out; `global_mean` is a float), for code that takes a mapping."""
        found = {key: getattr(self, key) for key in ARRAY_KEYS}
        return {key: value for key, value in found.items() if value is not None}


# --------------------------------------------------------------------------------------------
# Validation shared by save and load
# --------------------------------------------------------------------------------------------


def check_version_name(version: str) -> str:
    """Version names end up in paths and URLs: allow only a safe, boring alphabet."""
    if not isinstance(version, str) or not _VERSION_RE.fullmatch(version) or ".." in version:
        raise ArtifactError(f"invalid model version name {version!r}")
    return version


def validate_arrays(arrays: dict[str, np.ndarray]) -> None:
    """Every key known, all required keys present, shapes mutually consistent, floats finite."""
    unknown = sorted(set(arrays) - KNOWN_KEYS)
    if unknown:
        raise ArtifactError(f"unknown array(s) in model: {unknown}")
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise ArtifactError(f"model is missing array(s): {missing}")
    has_x, has_y = "rank_X" in arrays, "rank_Y" in arrays
    if has_x != has_y:
        raise ArtifactError("ranking factors need both rank_X and rank_Y")
    a = {k: np.asarray(v) for k, v in arrays.items()}
    for key, value in a.items():
        if value.dtype == object:
            raise ArtifactError(f"{key}: object arrays are not allowed")
        if key in _FLOAT_KEYS and value.dtype.kind != "f":
            raise ArtifactError(f"{key}: expected a float array, got {value.dtype}")
        if key in _INT_KEYS and value.dtype.kind not in "iu":
            raise ArtifactError(f"{key}: expected an integer array, got {value.dtype}")
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise ArtifactError(f"{key}: contains NaN or inf")
    if a["global_mean"].shape != ():
        raise ArtifactError(
            f"global_mean: expected a 0-d array, got shape {a['global_mean'].shape}"
        )
    n_users, n_items = a["user_ids"].shape, a["item_ids"].shape
    if len(n_users) != 1 or len(n_items) != 1:
        raise ArtifactError("user_ids and item_ids must be 1-d")
    nu, ni = n_users[0], n_items[0]
    if a["P"].ndim != 2 or a["Q"].ndim != 2:
        raise ArtifactError("P and Q must be 2-d")
    expected = {
        "P": (nu, a["P"].shape[1]),
        "Q": (ni, a["P"].shape[1]),
        "user_bias": (nu,),
        "item_bias": (ni,),
        "item_counts": (ni,),
    }
    if has_x:
        if a["rank_X"].ndim != 2:
            raise ArtifactError("rank_X must be 2-d")
        expected["rank_X"] = (nu, a["rank_X"].shape[1])
        expected["rank_Y"] = (ni, a["rank_X"].shape[1])
    for key, shape in expected.items():
        if a[key].shape != shape:
            raise ArtifactError(f"{key}: expected shape {shape}, got {a[key].shape}")
    for key in ("user_ids", "item_ids"):
        ids = a[key]
        if ids.size > 1 and not np.all(ids[1:] > ids[:-1]):
            raise ArtifactError(f"{key}: must be strictly increasing (sorted, unique)")
    _validate_rated(a, nu)
    _validate_ease(a, ni)
    _validate_genres(a, ni)
    check_sanity(a)


# Sanity bounds (issue 19 F1): finite is not enough, a model multiplied by 1e19 is finite too.
# A trained ALS model on the 0.5–5 star scale has factor rows of norm ~0.1–10, biases within a
# few stars, and predictions that fall almost all inside the scale. The bounds are loose enough
# for any real model (and for random test factors) and tight enough for a scaled or corrupted
# one.
MAX_FACTOR_NORM = 1e3  # largest allowed row norm of P, Q, rank_X, rank_Y
MAX_ABS_BIAS = 50.0  # stars
PREDICTION_MARGIN = 5.0  # stars beyond the rating scale a raw prediction may reach ...
MIN_IN_RANGE = 0.95  # ... for at least this fraction of the sampled (user, item) pairs
SANITY_SAMPLE_USERS = 256
SANITY_SAMPLE_ITEMS = 4096


def _even_sample(n: int, k: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, num=min(n, k)).astype(np.int64)) if n else np.arange(0)


NORM_SLICE_ROWS = 1 << 16  # rows per float64 slice in _max_row_norm


def _max_row_norm(m: np.ndarray) -> float:
    """The largest Euclidean row norm of a 2-d array, in float64, a slice of rows at a time: a
    float64 copy of the whole matrix and its square would be two more 166 MB arrays at 25M
    ratings (rank_X), while a hot reload already holds the old version."""
    worst = 0.0
    for start in range(0, m.shape[0], NORM_SLICE_ROWS):
        block = np.asarray(m[start : start + NORM_SLICE_ROWS], dtype=np.float64)
        worst = max(worst, float(np.sqrt(np.max(np.einsum("ij,ij->i", block, block)))))
    return worst


def check_sanity(a: dict[str, np.ndarray]) -> None:
    """Refuse a model whose numbers cannot come from training on the star scale.

    Checks: global mean inside the scale; every factor row norm at most MAX_FACTOR_NORM; every
    bias at most MAX_ABS_BIAS in absolute value; and raw explicit predictions
    (mean + user bias + item bias + P·Q) of an even sample of up to 256 users × 4096 items:
    the median inside the scale and at least 95 % within PREDICTION_MARGIN stars of it.
    Computed in float64 (a float32 product of huge factors would overflow to inf). Raises
    ArtifactError naming the failed check; costs a few ms (one 256 × 4096 product).
    """
    lo, hi = RATING_MIN, RATING_MAX
    mu = float(a["global_mean"])
    if not lo <= mu <= hi:
        raise ArtifactError(f"sanity: global_mean {mu:.4g} is outside the {lo}–{hi} scale")
    for key in ("P", "Q", "rank_X", "rank_Y"):
        if key in a and a[key].size:
            norm = _max_row_norm(a[key])
            if norm > MAX_FACTOR_NORM:
                raise ArtifactError(
                    f"sanity: {key} has a factor row of norm {norm:.3g} (> {MAX_FACTOR_NORM:g})"
                )
    for key in ("user_bias", "item_bias"):
        if a[key].size:
            worst = float(np.max(np.abs(a[key].astype(np.float64))))
            if worst > MAX_ABS_BIAS:
                raise ArtifactError(f"sanity: {key} reaches {worst:.3g} stars (> {MAX_ABS_BIAS:g})")
    users = _even_sample(a["P"].shape[0], SANITY_SAMPLE_USERS)
    items = _even_sample(a["Q"].shape[0], SANITY_SAMPLE_ITEMS)
    if users.size == 0 or items.size == 0:
        return
    P = a["P"][users].astype(np.float64)
    Q = a["Q"][items].astype(np.float64)
    pred = mu + a["user_bias"][users, None] + a["item_bias"][None, items] + P @ Q.T
    median = float(np.median(pred))
    inside = float(np.mean((pred >= lo - PREDICTION_MARGIN) & (pred <= hi + PREDICTION_MARGIN)))
    if not lo - 1.0 <= median <= hi + 1.0 or inside < MIN_IN_RANGE:
        raise ArtifactError(
            f"sanity: sampled predictions have median {median:.3g} and only {inside:.1%} "
            f"within {lo - PREDICTION_MARGIN:g}–{hi + PREDICTION_MARGIN:g} stars "
            f"(need the median in {lo - 1:g}–{hi + 1:g} and {MIN_IN_RANGE:.0%})"
        )


def _validate_rated(a: dict[str, np.ndarray], n_users: int) -> None:
    present = [k for k in RATED_KEYS if k in a]
    if not present:
        if RATED_STARS_KEY in a:
            raise ArtifactError(f"{RATED_STARS_KEY} needs the rated lists {list(RATED_KEYS)}")
        return
    if len(present) != len(RATED_KEYS):
        raise ArtifactError(f"rated lists need all of {list(RATED_KEYS)}, got {present}")
    indptr, movies = a["rated_indptr"], a["rated_movie_ids"]
    if a["rated_since"].shape != ():
        raise ArtifactError("rated_since: expected a 0-d array")
    if indptr.shape != (n_users + 1,) or movies.ndim != 1:
        raise ArtifactError(
            f"rated_indptr: expected shape {(n_users + 1,)}, got {indptr.shape}; "
            "rated_movie_ids must be 1-d"
        )
    if indptr[0] != 0 or indptr[-1] != movies.shape[0] or np.any(np.diff(indptr) < 0):
        raise ArtifactError("rated_indptr: must start at 0, never decrease, end at the length")
    stars = a.get(RATED_STARS_KEY)
    if stars is not None and stars.shape != movies.shape:
        raise ArtifactError(
            f"{RATED_STARS_KEY}: expected shape {movies.shape} (one per rated movie), "
            f"got {stars.shape}"
        )


def _validate_ease(a: dict[str, np.ndarray], n_items: int) -> None:
    present = [k for k in EASE_KEYS if k in a]
    if not present:
        return
    if len(present) != len(EASE_KEYS):
        raise ArtifactError(f"the EASE model needs both of {list(EASE_KEYS)}, got {present}")
    b, items = a["ease_B"], a["ease_items"]
    m = items.shape[0] if items.ndim == 1 else -1
    if m < 0 or b.shape != (m, m):
        raise ArtifactError(
            f"ease_B: expected shape (m, m) with m = len(ease_items), got {b.shape} and "
            f"ease_items {items.shape}"
        )
    if m and (items[0] < 0 or items[-1] >= n_items or np.any(np.diff(items) <= 0)):
        raise ArtifactError("ease_items: must be strictly increasing item indices < n_items")
    if m and np.any(np.diagonal(b) != 0):
        raise ArtifactError("ease_B: the diagonal must be zero (a movie never scores itself)")
    if b.size and float(np.max(np.abs(b))) > MAX_ABS_EASE:
        raise ArtifactError(f"sanity: ease_B reaches {float(np.max(np.abs(b))):.3g} (> 10)")


MAX_ABS_EASE = 10.0  # EASE weights of a trained model are well below 1 in magnitude


MAX_GENRE_COLUMNS = 256  # the trainer keeps at most genres.MAX_GENRES (64)


def _validate_genres(a: dict[str, np.ndarray], n_items: int) -> None:
    g = a.get(GENRES_KEY)
    if g is None:
        return
    if g.ndim != 2 or g.shape[0] != n_items:
        raise ArtifactError(
            f"{GENRES_KEY}: expected shape (n_items, n_genres) = ({n_items}, …), got {g.shape}"
        )
    if g.shape[1] > MAX_GENRE_COLUMNS:
        raise ArtifactError(f"{GENRES_KEY}: {g.shape[1]} genres (at most {MAX_GENRE_COLUMNS})")
    if g.size and (g.min() < 0 or g.max() > 1):
        raise ArtifactError(f"{GENRES_KEY}: must hold 0/1 indicators")
    if "ease_B" not in a:
        raise ArtifactError(f"{GENRES_KEY}: the genre part is blended with EASE; no ease_B")


def check_genre_names(arrays: dict[str, Any], manifest: dict[str, Any]) -> None:
    """With `item_genres`, the manifest's `params.genres` must name its columns: a list of
    strings, one per column (the admin page shows the part by them)."""
    g = arrays.get(GENRES_KEY)
    if g is None:
        return
    names = (manifest.get("params") or {}).get("genres")
    if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
        raise ArtifactError(f"{GENRES_KEY}: the manifest's params.genres must list its columns")
    if len(names) != np.asarray(g).shape[1]:
        raise ArtifactError(
            f"{GENRES_KEY}: {np.asarray(g).shape[1]} columns, params.genres names {len(names)}"
        )


def model_names(arrays: dict[str, Any]) -> list[str]:
    """The manifest's `models` list for these arrays: explicit, then ranking, then ease."""
    names = ["explicit"]
    if "rank_X" in arrays:
        names.append("ranking")
    if "ease_B" in arrays:
        names.append("ease")
    return names


def _check_manifest(manifest: Any, version: str) -> dict[str, Any]:
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{version}: manifest is not a JSON object")
    fv = manifest.get("format_version")
    if fv != FORMAT_VERSION:
        raise ArtifactError(
            f"{version}: unknown manifest format_version {fv!r} (this code reads {FORMAT_VERSION})"
        )
    if manifest.get("version") != version:
        raise ArtifactError(
            f"{version}: manifest names version {manifest.get('version')!r}, not its directory"
        )
    entry = (manifest.get("files") or {}).get(FACTORS)
    if not isinstance(entry, dict) or "sha256" not in entry or "bytes" not in entry:
        raise ArtifactError(f"{version}: manifest has no checksum for {FACTORS}")
    return manifest


# --------------------------------------------------------------------------------------------
# Paths and small atomic-file helpers
# --------------------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _jsonable(value: Any) -> Any:
    """Plain JSON for the manifest: NumPy scalars/arrays become Python values, and NaN/inf
    (e.g. a validation metric with no validation rows) become null instead of invalid JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _new_version_name() -> str:
    now = datetime.now(UTC)
    return f"v{now:%Y%m%dT%H%M%S}{now.microsecond // 1000:03d}Z-{secrets.token_hex(3)}"


def current_version(model_dir: str | Path) -> str | None:
    """The active version named by CURRENT, or None when nothing was published yet."""
    try:
        text = (Path(model_dir) / CURRENT).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return text or None


def _write_current(model_dir: Path, version: str) -> None:
    """Replace CURRENT atomically: temp file in the same directory, fsync, os.replace."""
    tmp = model_dir / f".{CURRENT}.{secrets.token_hex(6)}.tmp"
    try:
        _write_file(tmp, (version + "\n").encode())
        os.replace(tmp, model_dir / CURRENT)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(model_dir)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def save_model(
    model_dir: str | Path,
    arrays: dict[str, np.ndarray],
    manifest: dict[str, Any],
    *,
    activate: bool = True,
    keep: int = 5,
    version: str | None = None,
) -> str:
    """Publish a new version (and make it CURRENT unless activate=False); returns its name.

    The manifest is completed here: format_version, version, created_at (unless given), models
    and the sha256/size of factors.npz.
    """
    validate_arrays(arrays)
    check_genre_names(arrays, manifest)
    root = Path(model_dir)
    versions = root / VERSIONS
    versions.mkdir(parents=True, exist_ok=True)
    clean_leftovers(root)
    version = check_version_name(version or _new_version_name())
    if (versions / version).exists():
        raise ArtifactError(f"version {version} already exists")

    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    blob = buf.getvalue()
    full = dict(manifest)
    full.update(
        format_version=FORMAT_VERSION,
        version=version,
        created_at=manifest.get("created_at") or datetime.now(UTC).isoformat(),
        models=model_names(arrays),
        files={FACTORS: {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}},
    )
    manifest_bytes = json.dumps(_jsonable(full), indent=2, sort_keys=True, allow_nan=False).encode()

    tmp = versions / f".tmp-{version}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        _write_file(tmp / FACTORS, blob)
        _write_file(tmp / MANIFEST, manifest_bytes)
        _fsync_dir(tmp)
        os.rename(tmp, versions / version)
        _fsync_dir(versions)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if activate:
        _write_current(root, version)
    prune(root, keep)
    return version


def activate(model_dir: str | Path, version: str) -> None:
    """Make an existing version CURRENT (rollback); it is fully verified first."""
    load_model(model_dir, version)
    _write_current(Path(model_dir), version)


def load_model(model_dir: str | Path, version: str | None = None) -> ModelArtifact:
    """Load and verify a version (CURRENT when not given); ArtifactError on any problem.

    Without an explicit version, a version that vanishes while it is being read (a concurrent
    publisher pruned it right after moving CURRENT on) is retried against the new CURRENT; a
    version that is genuinely broken is refused.
    """
    root = Path(model_dir)
    if version is not None:
        return _load_version(root, version)
    for _ in range(5):
        active = current_version(root)
        if active is None:
            raise ArtifactError(f"no model published in {root} (CURRENT is missing or empty)")
        try:
            return _load_version(root, active)
        except ArtifactError:
            if current_version(root) == active:
                raise
    return _load_version(root, current_version(root) or "")


class _Mapping(mmap.mmap):
    """A read-only file mapping that zipfile accepts as a seekable file (mmap has read, seek
    and tell, but `seekable` only from Python 3.13)."""

    def seekable(self) -> bool:
        return True


def _load_version(root: Path, version: str) -> ModelArtifact:
    check_version_name(version)
    vdir = root / VERSIONS / version
    if not vdir.is_dir():
        raise ArtifactError(f"version {version} does not exist in {root / VERSIONS}")
    try:
        manifest = json.loads((vdir / MANIFEST).read_text(encoding="utf-8"))
        entry = _check_manifest(manifest, version)["files"][FACTORS]
        with contextlib.ExitStack() as stack:
            f = stack.enter_context(open(vdir / FACTORS, "rb"))
            size = os.fstat(f.fileno()).st_size
            if size != entry["bytes"]:
                raise ArtifactError(
                    f"{version}: {FACTORS} has {size} bytes, manifest says {entry['bytes']}"
                )
            # Page-cache backed, not a private copy: at 25M ratings the artifact is ~0.6 GB.
            blob = stack.enter_context(_Mapping(f.fileno(), 0, access=mmap.ACCESS_READ))
            if hashlib.sha256(blob).hexdigest() != entry["sha256"]:
                raise ArtifactError(f"{version}: {FACTORS} sha256 does not match the manifest")
            try:
                with np.load(blob, allow_pickle=False) as npz:  # parses the hashed mapping
                    arrays = {k: npz[k] for k in npz.files}
            except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
                raise ArtifactError(f"{version}: {FACTORS} is not a valid npz: {exc}") from exc
    except (OSError, ValueError) as exc:  # ArtifactError (not a ValueError) passes through
        raise ArtifactError(f"{version}: cannot read artifact files: {exc}") from exc
    validate_arrays(arrays)
    models = manifest.get("models")
    expected_models = model_names(arrays)
    if models != expected_models:
        raise ArtifactError(f"{version}: manifest models {models!r} do not match the arrays")
    check_genre_names(arrays, manifest)
    return ModelArtifact(
        version=version,
        manifest=manifest,
        P=arrays["P"],
        Q=arrays["Q"],
        user_bias=arrays["user_bias"],
        item_bias=arrays["item_bias"],
        global_mean=float(arrays["global_mean"]),
        user_ids=arrays["user_ids"],
        item_ids=arrays["item_ids"],
        item_counts=arrays["item_counts"],
        rank_X=arrays.get("rank_X"),
        rank_Y=arrays.get("rank_Y"),
        rated_indptr=arrays.get("rated_indptr"),
        rated_movie_ids=arrays.get("rated_movie_ids"),
        rated_since=int(arrays["rated_since"]) if "rated_since" in arrays else None,
        rated_stars=arrays.get(RATED_STARS_KEY),
        ease_B=arrays.get("ease_B"),
        ease_items=arrays.get("ease_items"),
        item_genres=arrays.get(GENRES_KEY),
    )


def _read_arrays(model_dir: str | Path, version: str, names: tuple[str, ...]) -> list[np.ndarray]:
    """Named arrays of a version's factors.npz, read without loading or verifying the rest (the
    version was verified when it was activated). Raises ArtifactError when the version or one
    of the arrays cannot be read."""
    check_version_name(version)
    path = Path(model_dir) / VERSIONS / version / FACTORS
    try:
        with np.load(path, allow_pickle=False) as npz:
            return [np.asarray(npz[name]) for name in names]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ArtifactError(
            f"{version}: cannot read {', '.join(names)} from {FACTORS}: {exc}"
        ) from exc


def item_ids(model_dir: str | Path, version: str) -> np.ndarray:
    """The movieIds a version has factors for (int64, shape (n_items,)); raises ArtifactError
    (see `_read_arrays`)."""
    return _read_arrays(model_dir, version, ("item_ids",))[0].astype(np.int64)


def user_rating_counts(model_dir: str | Path, version: str) -> tuple[np.ndarray, np.ndarray]:
    """(user_ids int64 (n_users,) sorted, each user's number of ratings in the data the version
    was built from int64 (n_users,)), from its rated lists; raises ArtifactError (see
    `_read_arrays`), also for a version without rated lists."""
    users, indptr = _read_arrays(model_dir, version, ("user_ids", "rated_indptr"))
    if indptr.shape != (users.shape[0] + 1,):
        raise ArtifactError(f"{version}: rated_indptr does not match user_ids")
    return users.astype(np.int64), np.diff(indptr).astype(np.int64)


def _version_dirs(root: Path) -> list[Path]:
    vroot = root / VERSIONS
    if not vroot.is_dir():
        return []
    return [p for p in vroot.iterdir() if p.is_dir() and _VERSION_RE.fullmatch(p.name)]


def _read_manifest(vdir: Path) -> dict[str, Any]:
    try:
        m = json.loads((vdir / MANIFEST).read_text(encoding="utf-8"))
        if not isinstance(m, dict):
            raise ValueError("not a JSON object")
        return m
    except (OSError, ValueError) as exc:
        return {"version": vdir.name, "error": f"unreadable manifest: {exc}"}


def list_versions(model_dir: str | Path) -> list[dict[str, Any]]:
    """Manifests of every published version, newest first, each with "active": bool.

    A version whose manifest cannot be read is still listed, with an "error" field, so an
    operator can see it; it is never loadable.
    """
    root = Path(model_dir)
    active = current_version(root)
    out = []
    for vdir in _version_dirs(root):
        m = _read_manifest(vdir)
        m["version"] = vdir.name
        m["active"] = vdir.name == active
        out.append(m)
    out.sort(key=lambda m: (str(m.get("created_at", "")), m["version"]), reverse=True)
    return out


# A publish writes into versions/.tmp-<version>-<hex>/ and MODEL_DIR/.CURRENT.<hex>.tmp; one
# killed midway leaves them behind. Only files older than this are removed, so a publish or
# an activation running right now in another process keeps its own.
LEFTOVER_AGE_SECONDS = 600.0
_TMP_DIR_RE = re.compile(r"^\.tmp-.+")
_TMP_CURRENT_RE = re.compile(rf"^\.{CURRENT}\..+\.tmp$")


def clean_leftovers(
    model_dir: str | Path, min_age_seconds: float = LEFTOVER_AGE_SECONDS
) -> list[str]:
    """Remove what killed publishes left behind (temporary version directories and CURRENT
    temporaries) older than `min_age_seconds`; returns the names removed. Called by every
    publish and when the trainer worker starts."""
    root = Path(model_dir)
    now = datetime.now(UTC).timestamp()
    removed = []
    candidates = [(p, True) for p in _iterdir(root / VERSIONS) if _TMP_DIR_RE.match(p.name)]
    candidates += [(p, False) for p in _iterdir(root) if _TMP_CURRENT_RE.match(p.name)]
    for path, is_dir in candidates:
        try:
            if now - path.lstat().st_mtime < min_age_seconds:
                continue
            if is_dir and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue
        except OSError:
            continue  # not ours to remove (permissions): left for an operator
        removed.append(path.name)
    return removed


def _iterdir(path: Path) -> list[Path]:
    try:
        return list(path.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def prune(model_dir: str | Path, keep: int = 5) -> list[str]:
    """Delete all but the newest `keep` versions; the active version is never deleted."""
    root = Path(model_dir)
    active = current_version(root)
    removed = []
    for m in list_versions(root)[max(keep, 0) :]:
        if m["version"] == active:
            continue
        shutil.rmtree(root / VERSIONS / m["version"], ignore_errors=True)
        removed.append(m["version"])
    return removed
