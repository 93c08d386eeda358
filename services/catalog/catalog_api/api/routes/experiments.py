"""Admin routes for online evaluation: hit-rate metrics per model version and A/B experiments.

Metrics are computed from the `impressions` the recommender records and the ratings users
give (movierec_common.online_metrics has the definition). An experiment splits users between
the CURRENT version (control) and another published version (candidate); every recommender
replica picks it up within EXPERIMENTS_POLL_SECONDS. Promoting the candidate makes it CURRENT
through the same verified activation as POST /api/admin/models/{version}/activate (so rollback
works as before) and ends the experiment.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from movierec_common import artifacts
from movierec_common.api_errors import ApiError

from ...repositories.experiments import ExperimentConflict
from ...schemas import ExperimentEnd, ExperimentStart
from ..deps import Admin, AppState, State, reject_operator_keys

router = APIRouter(
    prefix="/api/admin",
    tags=["admin: online evaluation"],
    dependencies=[Depends(reject_operator_keys)],
)

ExperimentId = Annotated[str, Path(pattern=r"^[0-9a-f]{24}$", description="Experiment id")]
Days = Annotated[int, Query(ge=1, le=90, description="Impressions of the last N days")]


def _out(doc: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(doc["_id"]), **{k: v for k, v in doc.items() if k != "_id"}}


async def _summary(
    state: AppState, since: dt.datetime, experiment_id: str | None = None
) -> dict[str, Any]:
    return await state.repos.experiments.online_metrics(
        since,
        window_days=state.settings.hit_window_days,
        experiment_id=experiment_id,
        engine=state.settings.online_metrics_engine,
    )


@router.get("/online-metrics", summary="Hit rate (daily, by position) and coverage per version")
async def get_online_metrics(_: Admin, state: State, days: Days = 14) -> dict[str, Any]:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    return {"days": days, **await _summary(state, since)}


@router.get("/experiments", summary="A/B experiments, newest first; `running` is the active one")
async def list_experiments(
    _: Admin, state: State, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> dict[str, Any]:
    docs = await state.repos.experiments.page(limit)
    running = next((d for d in docs if d.get("status") == "running"), None)
    running = running or await state.repos.experiments.running()
    return {"items": [_out(d) for d in docs], "running": _out(running) if running else None}


@router.post(
    "/experiments",
    status_code=201,
    summary="Start an A/B experiment: CURRENT (control) against `candidate` for `split` of users",
    responses={
        404: {"description": "unknown candidate version"},
        409: {"description": "an experiment already runs, no CURRENT, or candidate broken"},
    },
)
async def start_experiment(body: ExperimentStart, admin: Admin, state: State) -> dict[str, Any]:
    model_dir = state.settings.model_dir
    control = await asyncio.to_thread(artifacts.current_version, model_dir)
    if control is None:
        raise ApiError(409, "no_current_model", "no model is CURRENT: nothing to compare against")
    if body.candidate == control:
        raise ApiError(
            422, "validation_error", "candidate is the CURRENT version; pick another version"
        )
    if not (FsPath(model_dir) / artifacts.VERSIONS / body.candidate).is_dir():
        raise ApiError(404, "version_not_found", f"no model version {body.candidate!r}")
    try:  # the same verification the recommender runs before serving a version
        await asyncio.to_thread(artifacts.load_model, model_dir, body.candidate)
    except artifacts.ArtifactError as exc:
        raise ApiError(
            409, "version_invalid", f"version {body.candidate!r} is not loadable: {exc}"
        ) from exc
    try:
        doc = await state.repos.experiments.start(
            control, body.candidate, body.split, admin.username or admin.role
        )
    except ExperimentConflict as exc:
        details = {"running": _out(exc.running)} if exc.running else None
        raise ApiError(
            409, "experiment_running", "an experiment is already running", details
        ) from exc
    return _out(doc)


@router.get("/experiments/{experiment_id}", summary="One experiment and each arm's hit rate")
async def get_experiment(experiment_id: ExperimentId, _: Admin, state: State) -> dict[str, Any]:
    doc = await state.repos.experiments.get(experiment_id)
    if doc is None:
        raise ApiError(404, "experiment_not_found", f"no experiment {experiment_id}")
    started = doc["started_at"]
    if started.tzinfo is None:
        started = started.replace(tzinfo=dt.UTC)
    summary = await _summary(state, started, experiment_id)
    return {**_out(doc), "metrics": summary}


@router.post(
    "/experiments/{experiment_id}/end",
    summary="End the experiment; winner=candidate also makes the candidate CURRENT (verified)",
    responses={404: {"description": "no such running experiment"}, 409: {"description": "broken"}},
)
async def end_experiment(
    experiment_id: ExperimentId, body: ExperimentEnd, admin: Admin, state: State
) -> dict[str, Any]:
    doc = await state.repos.experiments.get(experiment_id)
    if doc is None or doc.get("status") != "running":
        raise ApiError(404, "experiment_not_running", f"no running experiment {experiment_id}")
    previous = None
    if body.winner == "candidate":
        model_dir = state.settings.model_dir
        previous = await asyncio.to_thread(artifacts.current_version, model_dir)
        try:
            await asyncio.to_thread(artifacts.activate, model_dir, doc["candidate"])
        except artifacts.ArtifactError as exc:
            raise ApiError(
                409, "version_invalid", f"version {doc['candidate']!r} is not loadable: {exc}"
            ) from exc
    ended = await state.repos.experiments.end(
        experiment_id, body.winner, admin.username or admin.role
    )
    if ended is None:
        raise ApiError(404, "experiment_not_running", f"no running experiment {experiment_id}")
    return {**_out(ended), "previous_current": previous}
