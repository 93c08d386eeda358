"""Impressions: every list the recommender returns, written to MongoDB off the request path.

`ImpressionRecorder.record(...)` builds one small document and puts it on a bounded asyncio
queue with `put_nowait`; it never awaits and never touches the database. One background task
takes up to `batch_size` lists at a time and writes them as one document (a bucket; one per
A/B experiment when a batch spans two), bounded by `write_timeout` seconds. When the queue is
full (the database is slow or down) the new impression is dropped; when a write fails or times
out its batch is dropped. Both are counted (`movierec_recs_impressions_dropped_total{reason}`),
so recording can lose impressions under pressure but can never slow or fail a request.

The documents' shape, and why one per write: movierec_common.impressions.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from movierec_common import impressions as shape
from prometheus_client import Counter
from pymongo.asynchronous.collection import AsyncCollection

log = logging.getLogger(__name__)


class ImpressionRecorder:
    """Bounded, batched, never-blocking writer of impression documents."""

    def __init__(
        self,
        collection: AsyncCollection | None,
        *,
        enabled: bool,
        queue_size: int,
        batch_size: int,
        flush_seconds: float,
        write_timeout: float,
        written: Counter,
        dropped: Counter,
    ) -> None:
        self.collection = collection
        self.enabled = enabled and collection is not None
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.write_timeout = write_timeout
        self.written = written
        self.dropped = dropped
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=queue_size)
        self._writing = False  # lists are taken off the queue and not yet written
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def new_list_id() -> str:
        return uuid.uuid4().hex

    def record(
        self,
        *,
        list_id: str,
        user_id: int | None,
        kind: str,
        movie_ids: Sequence[int],
        model_version: str | None,
        strategy: str,
        experiment_id: str | None = None,
        arm: str | None = None,
        source_movie_id: int | None = None,
    ) -> bool:
        """Queue one impression; True if queued, False if recording is off or it was dropped."""
        if not self.enabled:
            return False
        doc: dict[str, Any] = {
            "list_id": list_id,
            "userId": user_id,
            "kind": kind,
            "movieIds": list(movie_ids),
            "model_version": model_version,
            "strategy": strategy,
            "ts": dt.datetime.now(dt.UTC),
        }
        if experiment_id is not None:
            doc["experiment_id"] = experiment_id
            doc["arm"] = arm
        if source_movie_id is not None:
            doc["source_movieId"] = source_movie_id
        try:
            self.queue.put_nowait(doc)
        except asyncio.QueueFull:
            self.dropped.labels("queue_full").inc()
            return False
        return True

    def record_result(
        self,
        result: dict[str, Any],
        *,
        kind: str,
        user_id: int | None,
        experiment_id: str | None = None,
        arm: str | None = None,
        source_movie_id: int | None = None,
    ) -> None:
        """Record a list as service.py built it (`items`, `model_version`, `strategy`) and add
        its `list_id` (and `experiment_id`/`arm` when served inside an experiment) to it."""
        if not self.enabled:
            return
        list_id = self.new_list_id()
        result["list_id"] = list_id
        if experiment_id is not None:
            result["experiment_id"] = experiment_id
            result["arm"] = arm
        self.record(
            list_id=list_id,
            user_id=user_id,
            kind=kind,
            movie_ids=[it["movieId"] for it in result.get("items", ())],
            model_version=result.get("model_version"),
            strategy=str(result.get("strategy") or result.get("factors") or "similar"),
            experiment_id=experiment_id,
            arm=arm,
            source_movie_id=source_movie_id,
        )

    async def start(self) -> None:
        if self.enabled:
            self._task = asyncio.create_task(self._run(), name="impressions-writer")

    async def stop(self, drain_seconds: float = 2.0) -> None:
        """Flush what is queued (bounded by drain_seconds), then end the writer."""
        if self._task is None:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._drain(), timeout=drain_seconds)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _drain(self) -> None:
        while not self.queue.empty() or self._writing:
            await asyncio.sleep(0.05)

    async def _next_batch(self) -> list[dict[str, Any]]:
        batch = [await self.queue.get()]
        self._writing = True  # stop() waits for what is taken to be written
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.flush_seconds
        while len(batch) < self.batch_size:
            if not self.queue.empty():
                batch.append(self.queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), timeout=remaining))
            except TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        assert self.collection is not None
        while True:
            batch = await self._next_batch()
            try:
                await asyncio.wait_for(
                    self.collection.insert_many(shape.buckets(batch), ordered=False),
                    timeout=self.write_timeout,
                )
                self.written.inc(len(batch))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # slow or unreachable database: drop, count, go on
                self.dropped.labels("write_failed").inc(len(batch))
                log.warning(
                    "impressions dropped",
                    extra={"n": len(batch), "error": f"{type(exc).__name__}: {exc}"[:200]},
                )
            finally:
                self._writing = False
