"""The `impressions` collection's documents (issue 17): written once here, for the recommender
that writes them and for the online metrics and tests that read them.

A *list* is one list the recommender returned:
  list_id (32 hex chars, also in the response), userId (int, or None for an anonymous
  similar-movies call), kind ("user" | "batch" | "similar"), movieIds (list of int; a movie's
  position is its index, 0 = top), model_version, strategy, ts (UTC datetime), and for lists
  served inside an A/B experiment experiment_id and arm ("control" | "candidate"); for similar
  lists also source_movieId.

The recommender stores lists in *buckets*, one document per write and experiment:
  {ts: the latest list's ts, experiment_id (only when the lists are in one), n: len(lists),
   lists: [list, ...]}
One insert of one document instead of one per list: on the embedded SecantusDB a write of 20
lists took 4.6–5.0 ms of server CPU as 20 documents and 0.7–0.9 ms as one bucket, and the
server answers no other query while it writes (bench/REPORT.md). The bucket's `ts` is the
*latest* list time, so the `ts` and `experiment_ts` indexes select every bucket that holds a
list at or after a time; the lists are then filtered one by one (`list_stages`, `lists_of`).

Documents from earlier releases hold one list each (the list fields at the top level, no
`lists`); every reader here accepts both.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any


def buckets(lists: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The bucket documents for one write: one per experiment_id (None included), in the order
    each first appears, each with its lists in the given order.

    Raises ValueError on an empty `lists`, or a list without its `list_id` (the metrics count
    lists by it) or a datetime `ts`."""
    if not lists:
        raise ValueError("no lists to store")
    groups: dict[str | None, list[Mapping[str, Any]]] = {}
    for item in lists:
        if not item.get("list_id") or not isinstance(item.get("ts"), dt.datetime):
            raise ValueError("every list needs its list_id and its ts (a datetime)")
        groups.setdefault(item.get("experiment_id"), []).append(item)
    out = []
    for experiment_id, members in groups.items():
        doc: dict[str, Any] = {"ts": max(m["ts"] for m in members)}
        if experiment_id is not None:
            doc["experiment_id"] = experiment_id
        doc["n"] = len(members)
        doc["lists"] = [dict(m) for m in members]
        out.append(doc)
    return out


def bucket_filter(
    since: dt.datetime | None = None, experiment_id: str | None = None
) -> dict[str, Any]:
    """The `find` filter for the documents that may hold a list at or after `since` (and of
    `experiment_id`): uses the `ts` / `experiment_ts` indexes; `lists_of` then filters the lists."""
    flt: dict[str, Any] = {}
    if since is not None:
        flt["ts"] = {"$gte": since}
    if experiment_id is not None:
        flt["experiment_id"] = experiment_id
    return flt


def list_stages(
    since: dt.datetime | None = None, experiment_id: str | None = None
) -> list[dict[str, Any]]:
    """Aggregation stages on `impressions` that yield one document per list (the list fields at
    the top level) with ts ≥ since (and of experiment_id): buckets unwound, one-list documents
    from earlier releases passed through with their `_id` as list_id when they have none."""
    flt = bucket_filter(since, experiment_id)
    return [
        {"$match": flt},
        {"$unwind": {"path": "$lists", "preserveNullAndEmptyArrays": True}},
        {
            "$replaceRoot": {
                "newRoot": {
                    "$ifNull": ["$lists", {"$mergeObjects": [{"list_id": "$_id"}, "$$ROOT"]}]
                }
            }
        },
        {"$match": flt},
    ]


def lists_of(
    docs: Iterable[Mapping[str, Any]],
    since: dt.datetime | None = None,
    experiment_id: str | None = None,
) -> Iterator[dict[str, Any]]:
    """The lists in `impressions` documents (buckets or one-list documents) with ts ≥ since (and
    of experiment_id), as `list_stages` yields them in the database."""
    for doc in docs:
        if "lists" in doc:
            members: Iterable[Mapping[str, Any]] = doc["lists"] or ()
        else:
            members = [{"list_id": doc.get("_id"), **doc}]
        for item in members:
            if since is not None and _as_utc(item.get("ts")) < _as_utc(since):
                continue
            if experiment_id is not None and item.get("experiment_id") != experiment_id:
                continue
            yield dict(item)


def _as_utc(ts: Any) -> dt.datetime:
    if not isinstance(ts, dt.datetime):
        return dt.datetime.min.replace(tzinfo=dt.UTC)
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=dt.UTC)
