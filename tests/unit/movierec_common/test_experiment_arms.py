"""A/B arm assignment and the Wilson interval (movierec_common.experiments)."""

from __future__ import annotations

import hashlib

import pytest
from movierec_common.experiments import assign_arm, unit_hash, wilson_interval

USERS = range(1, 10_001)


@pytest.mark.parametrize("split", [0.1, 0.3, 0.5, 0.8])
def test_arms_follow_the_split_over_10k_users(split: float) -> None:
    share = sum(assign_arm(u, "0123456789abcdef01234567", split) == "candidate" for u in USERS)
    assert abs(share / len(USERS) - split) < 0.02, share


def test_assignment_is_stable_and_matches_the_documented_hash() -> None:
    exp = "aaaaaaaaaaaaaaaaaaaaaaaa"
    first = [assign_arm(u, exp, 0.5) for u in USERS]
    assert first == [assign_arm(u, exp, 0.5) for u in USERS]
    # Recomputed independently: BLAKE2b-64 of "<experiment>:<user>", person "movierec-ab".
    for u in (1, 610, 99999):
        d = hashlib.blake2b(f"{exp}:{u}".encode(), digest_size=8, person=b"movierec-ab").digest()
        assert unit_hash(u, exp) == int.from_bytes(d, "big") / 2**64
    # Monotone in the split: a user in the candidate arm at 0.2 stays there at 0.5.
    assert all(
        assign_arm(u, exp, 0.5) == "candidate"
        for u in USERS
        if assign_arm(u, exp, 0.2) == "candidate"
    )


def test_a_new_experiment_reshuffles_users() -> None:
    a = [assign_arm(u, "exp-one", 0.5) for u in USERS]
    b = [assign_arm(u, "exp-two", 0.5) for u in USERS]
    agree = sum(x == y for x, y in zip(a, b, strict=True)) / len(USERS)
    assert 0.47 < agree < 0.53  # independent halves agree half of the time


def test_wilson_interval_known_values() -> None:
    # Reference values (Wilson 1927; e.g. statsmodels proportion_confint(method="wilson")).
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.236593, abs=1e-6) and hi == pytest.approx(0.763407, abs=1e-6)
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.161125, abs=1e-6)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
