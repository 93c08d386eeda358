"""Bounded load through nginx (browse + rate + recommend at a fixed rate), then an audit of
MongoDB against every acknowledged write. The longer run with latency tables is in make bench
(bench/run_all.py); this one checks correctness only."""

from __future__ import annotations

import asyncio

import pytest

from bench.load_mix import MIX, audit, markdown, run_load
from tests.hardening.conftest import HStack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]
RATE = 10.0  # req/s; bench/REPORT.md has the sweep up to 20 req/s


def test_mixed_load_through_nginx_has_no_errors_and_loses_no_rating(hstack: HStack) -> None:
    result = asyncio.run(
        run_load(hstack.base_url, duration=30, rate=RATE, n_users=8, seed=11, mix=MIX)
    )
    summary = result.summary()
    report = audit(hstack.mongo_url, hstack.db_name, result.acknowledged)
    print(markdown(summary, report))
    by_op = summary["by_op"]
    # The mix really ran: every operation kind was exercised, and writes were acknowledged.
    for op in ("browse_list", "browse_detail", "rate_put", "recs_me", "recs_similar"):
        assert by_op.get(op, {}).get("requests", 0) > 0, (op, by_op)
    assert result.acknowledged, "no rating write was acknowledged"
    assert summary["completed"] >= 0.9 * 30 * RATE, summary
    assert result.errors == 0, summary["error_examples"]
    assert result.skipped_busy == 0, f"the stack fell behind a {RATE} req/s schedule"
    assert not report.missing_or_wrong, report.missing_or_wrong[:10]
    assert not report.stats_mismatches, report.stats_mismatches[:10]
    assert report.checked_movies > 9000
