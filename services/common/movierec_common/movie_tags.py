"""Per-movie tags from MovieLens tag applications (tags.csv / tags.dat): the `tags` field of a
movie document, which the recommender's content profile of a new movie uses (issue 17).

A movie's tags are its distinct normalised tags (`normalise_tag`), most-applied first (ties in
alphabetical order), at most `MAX_TAGS_PER_MOVIE`; an admin-added movie's `tags` (catalog
POST /api/admin/movies) are normalised the same way when profiles are built.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from .loader import Tag, clean_text

MAX_TAGS_PER_MOVIE = 20


def normalise_tag(tag: str) -> str:
    """One spelling per tag: `clean_text` (NFC, single spaces), case-folded ("Pixar " → "pixar")."""
    return clean_text(tag).casefold()


def movie_tags(tags: Iterable[Tag], limit: int = MAX_TAGS_PER_MOVIE) -> dict[int, list[str]]:
    """{movieId: up to `limit` distinct normalised tags, most users first} from tag rows."""
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    for t in tags:
        name = normalise_tag(t.tag)
        if name:
            counts[t.movieId][name] += 1
    return {
        mid: [name for name, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]]
        for mid, c in counts.items()
    }
