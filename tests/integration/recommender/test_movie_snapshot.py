"""The recommender's in-memory movie snapshot against a real SecantusDB: a refresh reads only
the movies whose change stamp moved (movierec_common.movie_changes) and gives the same
snapshot a whole read would; a document changed by hand without the stamp is caught by the
full reload; a bulk stamp is not re-read once it is older than the overlap."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import numpy as np
from movierec_common import data_model as model
from movierec_common.movie_changes import CHANGE_STAMP, OVERLAP, ChangeMark, stamp
from pymongo import AsyncMongoClient
from recommender_api.movies import MovieCache, MovieCatalog
from recommender_api.repository import Repository


def _movie(i: int, at: datetime) -> dict:
    return {
        "movieId": i,
        "title": f"Movie {i}",
        "year": 1990 + i,
        "genres": ["Drama"] if i % 2 else ["Comedy", "Drama"],
        "rating_count": 10 * i,
        "popularity_score": 3.0 + i / 100,
        "tags": ["slow burn"] if i == 3 else [],
        CHANGE_STAMP: at,
    }


def _same(a: MovieCatalog, b: MovieCatalog) -> None:
    assert a.meta == b.meta
    assert a.popular_ids.tolist() == b.popular_ids.tolist()
    assert {g: v.tolist() for g, v in a.genre_ids.items()} == {
        g: v.tolist() for g, v in b.genre_ids.items()
    }
    assert a.genre_names == b.genre_names and a.new_ids == b.new_ids


def test_a_refresh_reads_what_changed_and_the_full_reload_the_rest(
    mongo_url: str, db_name: str
) -> None:
    async def run() -> None:
        client = AsyncMongoClient(mongo_url, serverSelectionTimeoutMS=10_000)
        try:
            movies = client[db_name][model.MOVIES]
            an_hour_ago = datetime.now(UTC) - timedelta(hours=1)  # a bulk import, long done
            await movies.insert_many([_movie(i, an_hour_ago) for i in range(1, 31)])
            cache = MovieCache(Repository(client[db_name]), 3600, full_reload_seconds=3600)
            assert await cache.refresh()
            first = cache.catalog
            assert len(first.meta) == 30 and first.popular_ids[0] == 30
            assert await cache.refresh()  # nothing stamped since: nothing read, same snapshot
            assert cache.catalog is first

            # Stamped writes: a rating made movie 1 the most popular, an admin added a movie in
            # a genre nobody had. A change made by hand, without the stamp, to movie 2.
            await movies.update_one(
                {"movieId": 1}, {"$set": {"popularity_score": 4.9, "rating_count": 999, **stamp()}}
            )
            added = {**_movie(31, datetime.now(UTC)), "genres": ["Horror"], "added_at": 1}
            await movies.insert_one({**added, "popularity_score": None, "rating_count": 0})
            await movies.update_one({"movieId": 2}, {"$set": {"title": "Renamed by hand"}})
            assert await cache.refresh()
            inc = cache.catalog
            assert first.meta[1].rating_count == 10 and 31 not in first.meta  # old one untouched
            assert inc.popular_ids[0] == 1 and inc.meta[1].rating_count == 999
            assert inc.new_ids == (31,) and inc.resolve_genre("horror") == "Horror"
            assert inc.genre_ids["Horror"].tolist() == [31]
            assert 31 not in inc.popular_ids  # no popularity score yet
            assert inc.meta[2].title == "Movie 2"  # unstamped: not read by a refresh
            assert inc.meta[3].tags == ("slow burn",)

            # The full reload (due now) reads everything: the hand edit appears, and the
            # incrementally built snapshot equals a whole read in everything else.
            cache.full_reload_seconds = 0
            assert await cache.refresh()
            full = cache.catalog
            assert full.meta[2].title == "Renamed by hand"
            rebuilt = MovieCatalog.from_docs(
                [{**d, "title": "Movie 2"} if d["movieId"] == 2 else d async for d in movies.find()]
            )
            _same(inc, rebuilt)
        finally:
            await client.close()

    asyncio.run(run())


def test_the_mark_is_the_readers_clock_not_the_newest_stamp() -> None:
    """An import stamps every movie at once; once that is older than the overlap, a reader
    that has read since asks for nothing of it (the highest stamp seen would ask again and
    again for the whole bulk)."""
    bulk_at = datetime.now(UTC) - OVERLAP - timedelta(seconds=5)
    mark = ChangeMark.now()
    since = mark.changed_filter()[CHANGE_STAMP]["$gte"]
    assert since > bulk_at
    assert ChangeMark(bulk_at).changed_filter()[CHANGE_STAMP]["$gte"] == bulk_at - OVERLAP
    assert np.isclose((datetime.now(UTC) - since).total_seconds(), OVERLAP.total_seconds(), 0.1)
