"""The process's one model reference: loaded at start, hot-reloaded when CURRENT changes.

Loading (read, checksum, shape checks, float32 copies, unit vectors) runs in a worker thread so
requests keep flowing; the result replaces `ModelStore.current` in one assignment. Readers take
the reference once per request and use only that object, so a request never mixes versions. A
version that fails verification is logged and remembered, and the previous model keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from movierec_common import artifacts
from watchfiles import awatch

from .ranking import ServingModel, build_serving_model, star_codes

log = logging.getLogger(__name__)


def load_serving_model(
    model_dir: Path,
    version: str | None,
    similar_factors: str,
    similar_min_ratings: int,
    user_parts_bytes: int = 0,
) -> ServingModel:
    """Blocking: verify through the artifact reader, then precompute the serving form."""
    start = time.perf_counter()
    art = artifacts.load_model(model_dir, version)
    loaded_version, manifest, arrays = art.version, dict(art.manifest), art.arrays()
    del art
    # Per-user matrices are served in float32: converted before the build, their float64
    # originals (at 25M ratings ~190 MB) are freed instead of held beside the conversions while
    # the old version still serves (a hot reload holds both).
    for key in ("P", "rank_X"):
        if arrays.get(key) is not None:
            arrays[key] = np.asarray(arrays[key], dtype=np.float32)
    # Likewise the rated lists' stars, to the 1-byte codes the model keeps (`star_codes`).
    if arrays.get("rated_stars") is not None:
        arrays["rated_stars"] = star_codes(arrays["rated_stars"])
    elapsed = time.perf_counter() - start
    model = build_serving_model(
        version=loaded_version,
        manifest=manifest,
        arrays=arrays,
        similar_factors=similar_factors,
        similar_min_ratings=similar_min_ratings,
        loaded_at=time.time(),
        load_seconds=0.0,
        user_parts_bytes=user_parts_bytes,
    )
    total = time.perf_counter() - start
    log.debug("artifact read", extra={"version": loaded_version, "read_s": round(elapsed, 4)})
    # frozen dataclass: the load time is only known once the object exists.
    object.__setattr__(model, "load_seconds", round(total, 4))
    return model


RETRY_MAX_SECONDS = 60.0


class ModelStore:
    def __init__(
        self,
        model_dir: Path,
        *,
        similar_factors: str = "auto",
        similar_min_ratings: int = 10,
        user_parts_bytes: int = 0,
        debounce_ms: int = 300,
        poll_seconds: float = 5.0,
        watch: bool = True,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.similar_factors = similar_factors
        self.similar_min_ratings = similar_min_ratings
        self.user_parts_bytes = user_parts_bytes
        self.debounce_ms = debounce_ms
        self.poll_seconds = poll_seconds
        self.watch = watch
        self.current: ServingModel | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.reloads_ok = 0
        self.reloads_failed = 0
        self._failed_version: str | None = None
        # A refused version is retried when its folder's files change, and otherwise after a
        # back-off (poll period, doubling up to RETRY_MAX_SECONDS): a CURRENT written before
        # its folder was complete is picked up once the folder is (issue 19 C).
        self._failed_files: tuple | None = None
        self._retry_at = 0.0
        self._retry_backoff = poll_seconds
        self.wanted: str | None = None  # the version CURRENT named at the last look
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self.on_swap: list[Any] = []  # callbacks(model): metrics gauges
        self.on_fail: list[Any] = []  # callbacks(version, message)
        # The A/B experiment's other version, held beside the active one (experiments.py).
        self.other: ServingModel | None = None

    async def hold_other(self, version: str | None) -> ServingModel | None:
        """Load (verified, like CURRENT) and keep `version` beside the active model, or drop the
        held one when `version` is None. The active version is shared, never loaded twice.
        Raises what the artifact reader raises for a missing or corrupt version."""
        if version is None:
            self.other = None
            return None
        if self.other is not None and self.other.version == version:
            return self.other
        if self.current is not None and self.current.version == version:
            self.other = self.current
            return self.other
        self.other = await asyncio.to_thread(
            load_serving_model,
            self.model_dir,
            version,
            self.similar_factors,
            self.similar_min_ratings,
            self.user_parts_bytes,
        )
        return self.other

    async def refresh(self, reason: str, force: bool = False) -> bool:
        """Load CURRENT if it names a version other than the active (or last refused) one."""
        async with self._lock:
            try:
                wanted = await asyncio.to_thread(artifacts.current_version, self.model_dir)
            except Exception as exc:  # an unreadable CURRENT is a bad publish, not a crash
                self._fail(None, f"cannot read CURRENT: {exc}")
                return False
            self.wanted = wanted
            if wanted is None:
                return False
            active = self.current.version if self.current else None
            if wanted == active:
                return False
            if wanted == self._failed_version and not force and not self._retry_due(wanted):
                return False
            try:
                model = await asyncio.to_thread(
                    load_serving_model,
                    self.model_dir,
                    wanted,
                    self.similar_factors,
                    self.similar_min_ratings,
                    self.user_parts_bytes,
                )
            except Exception as exc:
                self._fail(wanted, f"{type(exc).__name__}: {exc}")
                return False
            self.current = model  # the swap: one reference assignment
            self._failed_version = None
            self._retry_backoff = self.poll_seconds
            self.reloads_ok += 1
            log.info(
                "model activated",
                extra={
                    "version": model.version,
                    "previous": active,
                    "reason": reason,
                    "load_s": model.load_seconds,
                    "has_ranking": model.has_ranking,
                },
            )
            for cb in self.on_swap:
                cb(model)
            return True

    def _version_files(self, version: str) -> tuple | None:
        """(path, size, mtime_ns) of every file in the version's folder; None if absent."""
        root = self.model_dir / "versions" / version
        try:
            return tuple(
                sorted(
                    (str(f.relative_to(root)), f.stat().st_size, f.stat().st_mtime_ns)
                    for f in root.rglob("*")
                    if f.is_file()
                )
            )
        except (OSError, ValueError):
            return None

    def _retry_due(self, version: str) -> bool:
        """A refused version is tried again once its files changed or its back-off expired."""
        if time.monotonic() >= self._retry_at:
            return True
        return self._version_files(version) != self._failed_files

    @property
    def out_of_date(self) -> bool:
        """CURRENT names a version other than the one served (refused or not loaded yet)."""
        served = self.current.version if self.current else None
        return self.wanted is not None and self.wanted != served

    def _fail(self, version: str | None, message: str) -> None:
        if version is not None:
            if version == self._failed_version:
                self._retry_backoff = min(self._retry_backoff * 2, RETRY_MAX_SECONDS)
            else:
                self._retry_backoff = self.poll_seconds
            self._failed_files = self._version_files(version)
            self._retry_at = time.monotonic() + self._retry_backoff
        self._failed_version = version
        self.last_error = f"{version}: {message}" if version else message
        self.last_error_at = time.time()
        self.reloads_failed += 1
        log.error(
            "model refused, keeping the active one",
            extra={
                "version": version,
                "error": message[:500],
                "active": self.current.version if self.current else None,
            },
        )
        for cb in self.on_fail:
            cb(version, message)

    async def start(self) -> None:
        self.model_dir.mkdir(parents=True, exist_ok=True)
        await self.refresh("startup")
        if self.current is None:
            log.warning(
                "no model yet: serving popularity only", extra={"model_dir": str(self.model_dir)}
            )
        self._stop.clear()
        self._tasks = [asyncio.create_task(self._poll(), name="model-poll")]
        if self.watch:
            self._tasks.append(asyncio.create_task(self._watch(), name="model-watch"))

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    async def _watch(self) -> None:
        """inotify via watchfiles; any event naming CURRENT triggers a refresh."""
        while not self._stop.is_set():
            try:
                async for changes in awatch(
                    self.model_dir,
                    watch_filter=None,
                    debounce=self.debounce_ms,
                    step=30,
                    stop_event=self._stop,
                    recursive=False,
                ):
                    if any(Path(p).name == artifacts.CURRENT for _, p in changes):
                        # A write to CURRENT is a deliberate act: retry even a version that
                        # was refused before (its files may have been repaired since).
                        await self.refresh("watch", force=True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # watcher died (dir removed, inotify limit): poll covers
                log.warning("model watcher restarting", extra={"error": str(exc)[:200]})
                await asyncio.sleep(self.poll_seconds)

    async def _poll(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self.poll_seconds)
            if self._stop.is_set():
                return
            try:
                await self.refresh("poll")
            except Exception as exc:
                log.warning("model poll failed", extra={"error": str(exc)[:200]})
