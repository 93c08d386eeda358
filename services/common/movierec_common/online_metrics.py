"""Online metrics from impressions and ratings: hit rates per model version and per A/B arm.

Definition (the contract the admin page shows): a movie shown to a user at time t (an
impression, see recommender_api/impressions.py) is a *hit* when that user has a rating of that
movie stamped in [floor(t), t + window_days]; a list is a hit when at least one of its movies
is. Only lists shown to a known user count towards hit rates (anonymous similar-movie lists
cannot be attributed); every list counts towards coverage. A rating is counted for every list
that showed the movie within the window before it (two lists showing the same movie both hit).
This measures positive feedback, like Gorse's online positive-feedback rate, not causality.

Pure Python; the catalog reads the documents and passes them in.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

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
