"""A/B experiments between two model versions: arm assignment and the interval on a hit rate.

Written once here and used by the recommender (which arm serves a user) and the catalog (the
admin API that reports each arm). Pure Python, no I/O.

Experiment document (collection `experiments`): `_id` (str, 24 hex chars), `control` (the version
that was CURRENT when it started), `candidate` (the other version), `split` (share of users in
the candidate arm, 0 < split < 1), `status` ("running" | "ended"), `started_at`, `ended_at`,
`winner` ("control" | "candidate" | None), `started_by`. At most one is running.
"""

from __future__ import annotations

import hashlib
import math
from typing import Literal

Arm = Literal["control", "candidate"]
ARMS: tuple[Arm, Arm] = ("control", "candidate")


def unit_hash(user_id: int, experiment_id: str) -> float:
    """Stable uniform number in [0, 1) from (user id, experiment id): BLAKE2b, first 8 bytes.

    The same pair gives the same number in every process and release (no Python `hash`
    randomisation); a new experiment id reshuffles users independently of earlier experiments.
    """
    digest = hashlib.blake2b(
        f"{experiment_id}:{int(user_id)}".encode(), digest_size=8, person=b"movierec-ab"
    ).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def assign_arm(user_id: int, experiment_id: str, split: float) -> Arm:
    """`candidate` for a `split` share of users (by unit_hash), `control` for the rest."""
    return "candidate" if unit_hash(user_id, experiment_id) < split else "control"


def wilson_interval(hits: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion hits/n (default 95 %, z = 1.96).

    Source: E. B. Wilson (1927), "Probable inference, the law of succession, and statistical
    inference", JASA 22:209-212. Returns (0.0, 1.0) when n == 0. Raises ValueError when
    hits > n or either is negative.
    """
    if n < 0 or hits < 0 or hits > n:
        raise ValueError(f"need 0 <= hits <= n, got hits={hits}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = hits / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)
