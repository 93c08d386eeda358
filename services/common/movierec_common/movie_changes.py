"""Which movies changed since a process last read them: the contract every movie writer and
every in-memory movie snapshot (the catalog's read model, the recommender's metadata) share.

Every write to a movie document sets its change stamp `CHANGE_STAMP` (`stats_updated_at`, a
UTC datetime from the writer's clock, indexed): the catalog's rating writes and stats repairs,
an admin's new movie, and mongo-init's import, recount and tag sync. A reader notes when it
last read (`ChangeMark`) and asks for the movies stamped at or after that minus `OVERLAP`,
which covers writers whose stamp was taken a moment before a read but committed after it (and
modest clock skew between containers). So a refresh reads the movies that changed,
not the whole collection: at 62k movies a full read keeps the embedded server busy for seconds
and stalls every other query meanwhile (measured: a 9.7k-movie read every 60 s was the ~0.3 s
stall in the recommender's p99, bench/REPORT.md).

A full read still runs at start-up and every few minutes as a safety net (a document changed
by hand, without the stamp), in batches of `READ_BATCH` documents so the server answers other
queries between them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

CHANGE_STAMP = "stats_updated_at"
OVERLAP = timedelta(seconds=10)
READ_BATCH = 500
FULL_RELOAD_SECONDS = 600.0  # the safety net's default period


def stamp() -> dict[str, datetime]:
    """The `$set` (or insert) fields that mark a movie document changed now."""
    return {CHANGE_STAMP: datetime.now(UTC)}


class ChangeMark:
    """When a reader last read the movies, by its own clock; the filter for what changed since.

    The reader's clock, not the highest stamp it saw: after a bulk write (an import stamps
    every movie at once) the next reads must not keep returning that bulk."""

    def __init__(self, read_at: datetime | None = None) -> None:
        self.read_at = read_at

    @classmethod
    def now(cls) -> ChangeMark:
        """Taken just before a read; becomes the reader's mark once the read succeeded."""
        return cls(datetime.now(UTC))

    def changed_filter(self) -> dict[str, Any]:
        """The query for the movies stamped since this mark, minus the overlap."""
        since = (self.read_at or datetime.now(UTC)) - OVERLAP
        return {CHANGE_STAMP: {"$gte": since}}
