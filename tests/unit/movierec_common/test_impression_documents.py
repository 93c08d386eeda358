"""The impressions document shape (movierec_common.impressions): one bucket per write and
experiment, its ts the latest list's, and readers that return each list once, filtered by time
and experiment, from buckets and from the one-list documents of earlier releases alike."""

from __future__ import annotations

import datetime as dt

import pytest
from movierec_common.impressions import bucket_filter, buckets, list_stages, lists_of

T0 = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
SEC = dt.timedelta(seconds=1)


def lst(i: int, ts: dt.datetime, **kw) -> dict:
    return {"list_id": f"{i:032x}", "userId": i, "movieIds": [i], "ts": ts, **kw}


def test_one_bucket_per_experiment_with_the_latest_time() -> None:
    e = {"experiment_id": "e1", "arm": "control"}
    lists = [lst(0, T0 + 2 * SEC), lst(1, T0, **e), lst(2, T0 + SEC), lst(3, T0 + 5 * SEC, **e)]
    got = buckets(lists)
    assert [(b.get("experiment_id"), b["n"], b["ts"]) for b in got] == [
        (None, 2, T0 + 2 * SEC),
        ("e1", 2, T0 + 5 * SEC),
    ]
    assert [x["userId"] for x in got[0]["lists"]] == [0, 2]
    assert [x["userId"] for x in got[1]["lists"]] == [1, 3]
    got[0]["lists"][0]["userId"] = 99
    assert lists[0]["userId"] == 0  # the bucket holds copies


@pytest.mark.parametrize(
    "bad",
    [[], [{"userId": 1, "ts": T0}], [{"list_id": "a", "ts": "2026-12-01"}], [{"list_id": "a"}]],
)
def test_buckets_refuse_lists_the_metrics_cannot_count(bad: list[dict]) -> None:
    with pytest.raises(ValueError):
        buckets(bad)


def test_lists_of_filters_each_list_and_reads_one_list_documents() -> None:
    since = T0 + 10 * SEC
    straddling = buckets([lst(0, T0), lst(1, T0 + 20 * SEC)])[0]  # ts inside, first list not
    legacy = {"_id": "old", "userId": 2, "movieIds": [2], "ts": T0 + 30 * SEC}
    inside = buckets([lst(3, T0 + 40 * SEC, experiment_id="e1", arm="candidate")])[0]
    docs = [straddling, legacy, inside]
    assert [x["userId"] for x in lists_of(docs)] == [0, 1, 2, 3]
    assert [x["userId"] for x in lists_of(docs, since)] == [1, 2, 3]
    assert [x["list_id"] for x in lists_of(docs, since)][1] == "old"  # its _id stands in
    assert [x["userId"] for x in lists_of(docs, since, "e1")] == [3]
    naive = {"list_id": "n", "userId": 4, "ts": (T0 + 50 * SEC).replace(tzinfo=None)}
    assert [x["userId"] for x in lists_of([naive], since)] == [4]  # naive = UTC


def test_database_stages_select_buckets_by_the_index_then_filter_lists() -> None:
    since = T0
    assert bucket_filter() == {}
    assert bucket_filter(since, "e1") == {"ts": {"$gte": since}, "experiment_id": "e1"}
    stages = list_stages(since, "e1")
    assert stages[0] == {"$match": bucket_filter(since, "e1")}  # on the indexed bucket fields
    assert stages[-1] == {"$match": bucket_filter(since, "e1")}  # again on each list
    assert stages[1]["$unwind"]["path"] == "$lists"
