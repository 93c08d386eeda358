"""The running A/B experiment as this replica sees it, and which model serves a given user.

Every replica polls the `experiments` collection (one indexed find_one every
`experiments_poll_seconds`), and while an experiment runs keeps its candidate version loaded
beside the active one (`ModelStore.hold_other`). A user's arm is
`movierec_common.experiments.assign_arm(user id, experiment id, split)`, the same in every
replica. The control arm is served by the active model only while it is still the experiment's
control version; after a promotion or a rollback lists are served outside the experiment (no
arm recorded), so neither arm's numbers mix versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from movierec_common.data_model import EXPERIMENTS
from movierec_common.experiments import Arm, assign_arm
from pymongo.asynchronous.database import AsyncDatabase

from .model_store import ModelStore
from .ranking import ServingModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunningExperiment:
    id: str
    control: str
    candidate: str
    split: float


@dataclass(frozen=True)
class Assignment:
    model: ServingModel | None
    experiment_id: str | None = None
    arm: Arm | None = None


class ExperimentRunner:
    def __init__(self, db: AsyncDatabase, store: ModelStore, poll_seconds: float) -> None:
        self.db = db
        self.store = store
        self.poll_seconds = poll_seconds
        self.running: RunningExperiment | None = None
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None

    def assign(self, user_id: int | None) -> Assignment:
        """The model for this user's list, and the experiment and arm it counts towards."""
        current = self.store.current
        exp = self.running
        if exp is None or user_id is None:
            return Assignment(current)
        arm = assign_arm(user_id, exp.id, exp.split)
        if arm == "candidate":
            other = self.store.other
            if other is not None and other.version == exp.candidate:
                return Assignment(other, exp.id, arm)
            return Assignment(current)
        if current is not None and current.version == exp.control:
            return Assignment(current, exp.id, arm)
        return Assignment(current)

    async def refresh(self) -> None:
        """Re-read the running experiment; load its candidate, or drop it when none runs."""
        try:
            doc = await self.db[EXPERIMENTS].find_one({"status": "running"})
        except Exception as exc:  # database away: keep what we have, retry next poll
            self.last_error = f"{type(exc).__name__}: {exc}"[:300]
            return
        if doc is None:
            if self.running is not None:
                log.info("experiment ended", extra={"experiment": self.running.id})
            self.running = None
            await self.store.hold_other(None)
            return
        exp = RunningExperiment(
            id=str(doc["_id"]),
            control=str(doc["control"]),
            candidate=str(doc["candidate"]),
            split=float(doc["split"]),
        )
        try:
            await self.store.hold_other(exp.candidate)
        except Exception as exc:  # missing/corrupt candidate: serve everyone the active model
            self.last_error = f"candidate {exp.candidate}: {type(exc).__name__}: {exc}"[:300]
            log.error("experiment candidate not loadable", extra={"error": self.last_error})
            self.running = None
            await self.store.hold_other(None)
            return
        if self.running != exp:
            log.info("experiment running", extra={"experiment": exp.id, "split": exp.split})
        self.running = exp
        self.last_error = None

    async def start(self) -> None:
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="experiments-poll")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("experiment poll failed", extra={"error": str(exc)[:200]})

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
