"""Online metrics from impressions and ratings: hit rates per model version and per A/B arm.

Definition (the contract the admin page shows): a movie shown to a user at time t (an
impression, see recommender_api/impressions.py) is a *hit* when that user has a rating of that
movie stamped in [floor(t), t + window_days]; a list is a hit when at least one of its movies
is. Only lists shown to a known user count towards hit rates (anonymous similar-movie lists
cannot be attributed); every list counts towards coverage. A rating is counted for every list
that showed the movie within the window before it (two lists showing the same movie both hit).
This measures positive feedback, like Gorse's online positive-feedback rate, not causality.

Two implementations of one definition: `pipeline` + `from_pipeline` compute it inside MongoDB
(one `aggregate` on `ratings` that brings in the impressions' lists with $unionWith, unwinds
each list's movies with their positions, groups them with the ratings of the same user and
movie, then $facet/$group per version, day, position and arm),
which is what the catalog serves, so only the summary crosses the wire; `summarise` is the
plain-Python reference over documents (tests compare the two on the embedded server).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from . import impressions
from .data_model import IMPRESSIONS
from .experiments import ARMS, wilson_interval

DAY = 86400.0


def _epoch(ts: Any) -> float:
    if isinstance(ts, dt.datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=dt.UTC)
        return ts.timestamp()
    return float(ts)


def rating_index(ratings: Iterable[Mapping[str, Any]]) -> dict[tuple[int, int], float]:
    """{(userId, movieId): rating timestamp in seconds} from rating documents."""
    out: dict[tuple[int, int], float] = {}
    for r in ratings:
        try:
            out[(int(r["userId"]), int(r["movieId"]))] = float(r["timestamp"])
        except (KeyError, TypeError, ValueError):
            continue
    return out


def list_hits(
    imp: Mapping[str, Any], rated_at: Mapping[tuple[int, int], float], window_days: float
) -> list[bool]:
    """Per position of one impression: was that movie rated by the user within the window?"""
    user = imp.get("userId")
    if user is None:
        return [False] * len(imp.get("movieIds") or ())
    t = _epoch(imp["ts"])
    lo, hi = float(int(t)), t + window_days * DAY
    out = []
    for m in imp.get("movieIds") or ():
        r = rated_at.get((int(user), int(m)))
        out.append(r is not None and lo <= r <= hi)
    return out


def _rate(hits: int, n: int) -> dict[str, Any]:
    lo, hi = wilson_interval(hits, n)
    return {"lists": n, "hit_lists": hits, "hit_rate": hits / n if n else None, "ci95": [lo, hi]}


def summarise(
    impressions: Iterable[Mapping[str, Any]],
    ratings: Iterable[Mapping[str, Any]],
    *,
    window_days: float,
    catalogue_size: int,
    experiment_id: str | None = None,
) -> dict[str, Any]:
    """Per model version: overall and daily hit rate (UTC days of the impression), hit rate by
    position (0 = top), coverage (distinct movies shown / catalogue_size), users; and, when
    experiment_id is given, the same list hit rate per arm of that experiment with a 95 % Wilson
    interval and the number of distinct users.

    Returns {"window_days", "catalogue_size", "versions": [...], "arms": {...} | None}.
    """
    rated_at = rating_index(ratings)
    per: dict[str, dict[str, Any]] = {}
    arms: dict[str, dict[str, Any]] = {
        a: {"lists": 0, "hits": 0, "users": set(), "version": set()} for a in ARMS
    }
    for imp in impressions:
        version = str(imp.get("model_version"))
        v = per.setdefault(
            version,
            {
                "lists": 0,
                "hits": 0,
                "users": set(),
                "movies": set(),
                "daily": defaultdict(lambda: [0, 0]),
                "pos": defaultdict(lambda: [0, 0]),
            },
        )
        movies = imp.get("movieIds") or []
        v["movies"].update(int(m) for m in movies)
        if imp.get("userId") is None:
            continue
        hits = list_hits(imp, rated_at, window_days)
        hit = any(hits)
        day = dt.datetime.fromtimestamp(_epoch(imp["ts"]), dt.UTC).date().isoformat()
        v["lists"] += 1
        v["hits"] += hit
        v["users"].add(int(imp["userId"]))
        v["daily"][day][0] += 1
        v["daily"][day][1] += hit
        for p, h in enumerate(hits):
            v["pos"][p][0] += 1
            v["pos"][p][1] += h
        if experiment_id is not None and imp.get("experiment_id") == experiment_id:
            a = arms.get(str(imp.get("arm")))
            if a is not None:
                a["lists"] += 1
                a["hits"] += hit
                a["users"].add(int(imp["userId"]))
                a["version"].add(version)
    versions = []
    for version, v in sorted(per.items()):
        versions.append(
            {
                "version": version,
                **_rate(v["hits"], v["lists"]),
                "users": len(v["users"]),
                "movies_shown": len(v["movies"]),
                "coverage": len(v["movies"]) / catalogue_size if catalogue_size else None,
                "daily": [
                    {"day": d, "lists": n, "hit_lists": h, "hit_rate": h / n}
                    for d, (n, h) in sorted(v["daily"].items())
                ],
                "by_position": [
                    {"position": p, "shown": n, "hits": h, "hit_rate": h / n}
                    for p, (n, h) in sorted(v["pos"].items())
                ],
            }
        )
    arm_out = None
    if experiment_id is not None:
        arm_out = {
            name: {
                **_rate(a["hits"], a["lists"]),
                "users": len(a["users"]),
                "versions": sorted(a["version"]),
            }
            for name, a in arms.items()
        }
    return {
        "window_days": window_days,
        "catalogue_size": catalogue_size,
        "versions": versions,
        "arms": arm_out,
    }


def pipeline(
    since: dt.datetime, window_days: float, experiment_id: str | None = None
) -> list[dict[str, Any]]:
    """The aggregation over `impressions` (ts ≥ since; only that experiment's lists when
    experiment_id is given) that yields one document for `from_pipeline`: facets `movies`
    (distinct movies per version), `users` (distinct users per version), `positions` (shown and
    hits per version and position), `days` (lists and hit lists per version and UTC day) and
    `arms` (per arm of experiment_id: lists, hit lists, distinct users, versions).

    A hit is a rating of (userId, movieId) stamped in [floor(t), t + window_days] seconds, t the
    impression time: the ratings stamped since `since` ($unionWith, the timestamp index) are
    grouped with the impression rows by (userId, movieId) and each row checks the window.
    Needs MongoDB ≥ 4.4 ($unionWith) or SecantusDB (tested)."""
    known = {"userId": {"$ne": None}}
    per_list = {
        "$group": {
            "_id": "$list_id",
            "v": {"$first": "$model_version"},
            "day": {"$first": "$day"},
            "u": {"$first": "$userId"},
            "arm": {"$first": "$arm"},
            "hit": {"$max": "$h"},
        }
    }
    facets: dict[str, list[dict[str, Any]]] = {
        "movies": [
            {"$match": {"movieIds": {"$ne": None}}},
            {"$group": {"_id": {"v": "$model_version", "m": "$movieIds"}}},
            {"$group": {"_id": "$_id.v", "n": {"$sum": 1}}},
        ],
        "users": [
            {"$match": known},
            {"$group": {"_id": {"v": "$model_version", "u": "$userId"}}},
            {"$group": {"_id": "$_id.v", "n": {"$sum": 1}}},
        ],
        "positions": [
            {"$match": {**known, "pos": {"$ne": None}}},
            {
                "$group": {
                    "_id": {"v": "$model_version", "p": "$pos"},
                    "shown": {"$sum": 1},
                    "hits": {"$sum": "$h"},
                }
            },
        ],
        "days": [
            {"$match": known},
            per_list,
            {
                "$group": {
                    "_id": {"v": "$v", "day": "$day"},
                    "lists": {"$sum": 1},
                    "hits": {"$sum": "$hit"},
                }
            },
        ],
    }
    if experiment_id is not None:
        facets["arms"] = [
            {"$match": {**known, "experiment_id": experiment_id}},
            per_list,
            {
                "$group": {
                    "_id": "$arm",
                    "lists": {"$sum": 1},
                    "hits": {"$sum": "$hit"},
                    "users": {"$addToSet": "$u"},
                    "versions": {"$addToSet": "$v"},
                }
            },
            {"$project": {"lists": 1, "hits": 1, "users": {"$size": "$users"}, "versions": 1}},
        ]
    since_s = int(since.timestamp())
    seconds = {"$divide": [{"$toLong": "$rows.ts"}, 1000]}  # after the $group below
    in_window = {
        "$and": [
            {"$gte": ["$$this", {"$floor": seconds}]},
            {"$lte": ["$$this", {"$add": [seconds, window_days * DAY]}]},
        ]
    }
    impression_rows = [
        *impressions.list_stages(since, experiment_id),
        {
            "$project": {
                "list_id": 1,
                "userId": 1,
                "movieIds": 1,
                "model_version": 1,
                "ts": 1,
                "experiment_id": 1,
                "arm": 1,
                "day": {"$dateToString": {"format": "%Y-%m-%d", "date": "$ts"}},
            }
        },
        {
            "$unwind": {
                "path": "$movieIds",
                "includeArrayIndex": "pos",
                "preserveNullAndEmptyArrays": True,
            }
        },
    ]
    # Runs on `ratings`: the ratings given since the look-back start (timestamp index) and the
    # impression rows ($unionWith) meet in one $group by (user, movie): no per-row lookup
    # (SecantusDB runs a $lookup, or a $match inside $unionWith, as a collection scan).
    return [
        {"$match": {"timestamp": {"$gte": since_s}}},
        {"$project": {"_id": 0, "userId": 1, "movieIds": "$movieId", "rt": "$timestamp"}},
        {"$unionWith": {"coll": IMPRESSIONS, "pipeline": impression_rows}},
        {
            "$group": {
                "_id": {"u": "$userId", "m": "$movieIds"},
                "rows": {
                    "$push": {"$cond": [{"$eq": [{"$type": "$rt"}, "missing"]}, "$$ROOT", None]}
                },
                "rts": {"$push": "$rt"},
            }
        },
        {"$unwind": "$rows"},
        {"$match": {"rows": {"$ne": None}}},
        {
            "$replaceRoot": {
                "newRoot": {
                    "$mergeObjects": [
                        "$rows",
                        {
                            "h": {
                                "$cond": [
                                    {
                                        "$and": [
                                            {"$ne": [{"$ifNull": ["$rows.userId", None]}, None]},
                                            {
                                                "$anyElementTrue": [
                                                    {
                                                        "$map": {
                                                            "input": {
                                                                "$filter": {
                                                                    "input": "$rts",
                                                                    "as": "r",
                                                                    "cond": {"$ne": ["$$r", None]},
                                                                }
                                                            },
                                                            "in": in_window,
                                                        }
                                                    }
                                                ]
                                            },
                                        ]
                                    },
                                    1,
                                    0,
                                ]
                            }
                        },
                    ]
                }
            }
        },
        {"$facet": facets},
    ]


def from_pipeline(
    doc: Mapping[str, Any],
    *,
    window_days: float,
    catalogue_size: int,
    experiment_id: str | None = None,
) -> dict[str, Any]:
    """The `summarise` shape from the one document `pipeline` yields."""

    def version(key: Any) -> str:
        return str(key)

    movies = {version(d["_id"]): int(d["n"]) for d in doc.get("movies", [])}
    users = {version(d["_id"]): int(d["n"]) for d in doc.get("users", [])}
    pos: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for d in doc.get("positions", []):
        pos[version(d["_id"].get("v"))].append((int(d["_id"]["p"]), d["shown"], d["hits"]))
    days: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    for d in doc.get("days", []):
        days[version(d["_id"].get("v"))].append((d["_id"]["day"], d["lists"], d["hits"]))
    versions = []
    for v in sorted(set(movies) | set(days)):
        n = sum(lists for _, lists, _ in days[v])
        hits = sum(h for _, _, h in days[v])
        versions.append(
            {
                "version": v,
                **_rate(hits, n),
                "users": users.get(v, 0),
                "movies_shown": movies.get(v, 0),
                "coverage": movies.get(v, 0) / catalogue_size if catalogue_size else None,
                "daily": [
                    {"day": day, "lists": ln, "hit_lists": h, "hit_rate": h / ln}
                    for day, ln, h in sorted(days[v])
                ],
                "by_position": [
                    {"position": p, "shown": sh, "hits": h, "hit_rate": h / sh}
                    for p, sh, h in sorted(pos[v])
                ],
            }
        )
    arm_out = None
    if experiment_id is not None:
        got = {str(d["_id"]): d for d in doc.get("arms", [])}
        arm_out = {}
        for name in ARMS:
            a = got.get(name, {})
            arm_out[name] = {
                **_rate(int(a.get("hits", 0)), int(a.get("lists", 0))),
                "users": int(a.get("users", 0)),
                "versions": sorted(str(x) for x in a.get("versions", [])),
            }
    return {
        "window_days": window_days,
        "catalogue_size": catalogue_size,
        "versions": versions,
        "arms": arm_out,
    }
