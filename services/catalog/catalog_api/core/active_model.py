"""Which movies the active model (MODEL_DIR/CURRENT) has factors for: the catalog's "new" flag.

A movie is *new* (issue 17) when an admin added it (`added_at`) and the active model has no
factors for it yet, so the recommender serves it through its content profile; after a retrain
that learned it (or a rollback to a version that had it) the flag goes, in lists and on the
detail page alike. CURRENT is re-read at most every `ttl_seconds`; a version's item ids are
read once (a few KB of factors.npz) and kept while it stays active.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from movierec_common import artifacts

log = logging.getLogger(__name__)


class ActiveModelItems:
    def __init__(self, model_dir: str | Path | None, ttl_seconds: float = 2.0) -> None:
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.ttl_seconds = ttl_seconds
        self._checked = 0.0
        self._version: str | None = None
        self._ids: frozenset[int] = frozenset()
        self._lock = asyncio.Lock()

    def _read(self, known: str | None) -> tuple[str | None, frozenset[int] | None]:
        assert self.model_dir is not None
        version = artifacts.current_version(self.model_dir)
        if version is None or version == known:
            return version, None
        return version, frozenset(artifacts.item_ids(self.model_dir, version).tolist())

    async def trained(self) -> frozenset[int]:
        """movieIds of the active version; empty when none is published or it is unreadable."""
        if self.model_dir is None:
            return frozenset()
        async with self._lock:
            now = time.monotonic()
            if now - self._checked >= self.ttl_seconds:
                self._checked = now
                try:
                    version, ids = await asyncio.to_thread(self._read, self._version)
                except (OSError, artifacts.ArtifactError) as exc:
                    log.warning("active model unreadable for the new flag", extra={"error": exc})
                    version, ids = None, frozenset()
                if version is None:
                    self._ids = frozenset()
                elif ids is not None:
                    self._ids = ids
                self._version = version
            return self._ids

    async def mark(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Copies of movie documents whose `new` (added by an admin) is also false once the
        active model has factors for the movie."""
        if not any(d.get("new") for d in docs):
            return docs
        trained = await self.trained()
        return [{**d, "new": d["movieId"] not in trained} if d.get("new") else d for d in docs]
