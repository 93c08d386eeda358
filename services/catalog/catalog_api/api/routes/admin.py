"""Admin routes: retrain jobs and model versions. Admin token or API key (service) only.

Enqueue policy (documented choice): at most one retrain is queued or running. A POST while one
is queued or running answers 409 with that job in `error.details.job`, so the caller can follow
it instead of piling up identical retrains.
"""

from __future__ import annotations

import asyncio
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal

from bson import ObjectId
from fastapi import APIRouter, Depends, Path, Query
from movierec_common import artifacts
from movierec_common.api_errors import ApiError

from ...repositories.jobs import JobConflict
from ...schemas import ActivateResponse, Job, JobPage, ModelsResponse, RetrainRequest
from ..deps import Admin, State, reject_operator_keys

router = APIRouter(
    prefix="/api/admin", tags=["admin"], dependencies=[Depends(reject_operator_keys)]
)

JobId = Annotated[str, Path(pattern=r"^[0-9a-f]{24}$", description="Job id (ObjectId hex)")]
Version = Annotated[str, Path(pattern=artifacts.VERSION_PATTERN)]
JobStatus = Literal["queued", "running", "succeeded", "failed", "rejected", "cancelled"]


def job_out(doc: dict[str, Any]) -> Job:
    return Job(id=str(doc["_id"]), **{k: v for k, v in doc.items() if k != "_id"})


def _check_csv_path(raw: str, data_dir: FsPath) -> str:
    root = data_dir.resolve()
    try:
        path = FsPath(raw)
        path = (path if path.is_absolute() else root / path).resolve()
    except (OSError, ValueError):  # a NUL byte, a symlink loop, ...
        path = root / "\0invalid"  # fails the is_file() check below: a 422, never a 500
    if not path.is_relative_to(root):
        raise ApiError(
            422,
            "validation_error",
            f"csv_path must be inside the data directory ({root})",
            details=[{"loc": ["body", "csv_path"], "msg": "outside DATA_DIR"}],
        )
    try:
        is_file = path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte, ...
        is_file = False
    if not is_file:
        raise ApiError(
            422,
            "validation_error",
            "csv_path does not name an existing file",
            details=[{"loc": ["body", "csv_path"], "msg": "no such file"}],
        )
    return str(path)


@router.post(
    "/retrain",
    status_code=202,
    response_model=Job,
    summary="Queue a retrain (202 + the job); 409 with the active job if one is queued/running",
    responses={409: {"description": "a job is already queued or running (in details.job)"}},
)
async def retrain(body: RetrainRequest, admin: Admin, state: State) -> Job:
    params = body.model_dump(exclude_none=True)
    if body.csv_path is not None:
        params["csv_path"] = _check_csv_path(body.csv_path, state.settings.data_dir)
    who = admin.username or admin.role
    try:
        job = await state.repos.jobs.enqueue(params, who)
    except JobConflict as exc:
        details = {"job": job_out(exc.job).model_dump(mode="json")} if exc.job else None
        raise ApiError(
            409, "job_already_active", "a retrain is already queued or running", details
        ) from exc
    return job_out(job)


@router.get("/jobs", response_model=JobPage, summary="Retrain jobs, newest first")
async def list_jobs(
    _: Admin,
    state: State,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
    limit: Annotated[int | None, Query(ge=1, le=100, description="Alias of page_size")] = None,
    status: JobStatus | None = None,
) -> JobPage:
    size = limit or page_size
    docs, total = await state.repos.jobs.page((page - 1) * size, size, status)
    return JobPage(
        items=[job_out(d) for d in docs],
        total=total,
        page=page,
        page_size=size,
        pages=max(1, -(-total // size)),
    )


@router.get("/jobs/{job_id}", response_model=Job, summary="One job: status, progress, log tail")
async def get_job(job_id: JobId, _: Admin, state: State) -> Job:
    doc = await state.repos.jobs.get(ObjectId(job_id))
    if doc is None:
        raise ApiError(404, "job_not_found", f"no job {job_id}")
    return job_out(doc)


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=Job,
    summary="Cancel: a queued job at once; a running job is asked to stop (cancel_requested)",
    responses={409: {"description": "the job already finished"}},
)
async def cancel_job(job_id: JobId, _: Admin, state: State) -> Job:
    outcome, doc = await state.repos.jobs.cancel(ObjectId(job_id))
    if outcome == "missing" or doc is None:
        raise ApiError(404, "job_not_found", f"no job {job_id}")
    if outcome == "finished":
        raise ApiError(
            409,
            "job_finished",
            f"the job already ended ({doc['status']})",
            {"job": job_out(doc).model_dump(mode="json")},
        )
    return job_out(doc)


@router.get("/models", response_model=ModelsResponse, summary="Model versions, newest first")
async def list_models(_: Admin, state: State) -> ModelsResponse:
    model_dir = state.settings.model_dir
    items = await asyncio.to_thread(artifacts.list_versions, model_dir)
    current = await asyncio.to_thread(artifacts.current_version, model_dir)
    return ModelsResponse(items=items, current=current)


@router.post(
    "/models/{version}/activate",
    response_model=ActivateResponse,
    summary="Make a published version current (rollback or forward); it is verified first",
    responses={404: {"description": "unknown version"}, 409: {"description": "version broken"}},
)
async def activate_model(version: Version, _: Admin, state: State) -> ActivateResponse:
    model_dir = state.settings.model_dir
    if not (FsPath(model_dir) / artifacts.VERSIONS / version).is_dir():
        raise ApiError(404, "version_not_found", f"no model version {version!r}")
    previous = await asyncio.to_thread(artifacts.current_version, model_dir)
    try:
        await asyncio.to_thread(artifacts.activate, model_dir, version)
    except artifacts.ArtifactError as exc:
        raise ApiError(
            409, "version_invalid", f"version {version!r} is not loadable: {exc}"
        ) from exc
    return ActivateResponse(version=version, previous=previous)
