"""The HTTP routes. Thin: parse, authorize, call the JobService, shape the response. Errors are AppErrors raised by
the service or the dependencies and rendered by robotrain.api.errors.

Routes are `async def` and hand the (blocking) service call to the thread pool themselves (`in_thread`), so a
request makes one hop to the pool for its work (plus one for token verification) instead of one per dependency
and one more for validating its response (robotrain.api.deps)."""

from __future__ import annotations

import mimetypes
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import FileResponse, JSONResponse

from robotrain.api.deps import CurrentUser, InternalCaller, OwnedJob, ServiceDep, in_thread
from robotrain.api.schemas import (
    ArtifactList,
    ArtifactOut,
    ErrorBody,
    EventOut,
    EventPage,
    Health,
    JobOut,
    JobPage,
    MetricSeries,
    Readiness,
)
from robotrain.jobs.models import JobStatus
from robotrain.jobs.schemas import StatusUpdate
from training.spec import TrainSpec


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Unparsable body",
        401: "Missing or invalid token",
        403: "Not an internal caller",
        404: "No such job (or not yours)",
        409: "The job's status does not allow this",
        413: "Body over the size limit",
        422: "Invalid input; `details` names each field",
        429: "Too many submissions, or too many active jobs; see Retry-After",
        503: "A dependency (identity provider, store, queue) is unreachable",
    }
    return {code: {"model": ErrorBody, "description": descriptions[code]} for code in codes}


USER = (401, 503)
health_router = APIRouter()
jobs_router = APIRouter(prefix="/jobs", tags=["jobs"])


@health_router.get("/healthz", response_model=Health, tags=["health"])
async def healthz() -> Health:
    return Health(status="ok")


@health_router.get(
    "/readyz",
    response_model=Readiness,
    tags=["health"],
    responses={503: {"model": Readiness, "description": "A dependency (store, queue) is unreachable"}},
)
async def readyz(service: ServiceDep) -> JSONResponse:
    """Whether the store and queue answer now. No auth; /healthz stays the liveness check (the process is up)."""
    checks = await in_thread(service.readiness)
    down = sorted(name for name, state in checks.items() if state == "unavailable")
    if not down:
        return JSONResponse({"status": "ready", "checks": checks})
    error = {"code": "service_unavailable", "message": f"not ready: {', '.join(down)} unavailable"}
    return JSONResponse({"status": "unavailable", "checks": checks, "error": error}, status_code=503)


@jobs_router.post(
    "",
    status_code=202,
    response_model=JobOut,
    responses=_errors(400, *USER, 409, 413, 422, 429),
    summary="Submit a job",
)
@jobs_router.post("/", status_code=202, response_model=JobOut, include_in_schema=False)
async def submit_job(
    spec: TrainSpec,
    user: CurrentUser,
    service: ServiceDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JobOut:
    return JobOut.of(await in_thread(service.submit, user, spec, idempotency_key=idempotency_key))


@jobs_router.get("", response_model=JobPage, responses=_errors(*USER, 422), summary="List your jobs, newest first")
@jobs_router.get("/", response_model=JobPage, include_in_schema=False)
async def list_jobs(
    user: CurrentUser,
    service: ServiceDep,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> JobPage:
    page = await in_thread(service.list_jobs, user, status=status, limit=limit, cursor=cursor)
    return JobPage(data=[JobOut.of(job) for job in page.data], next_cursor=page.next_cursor)


@jobs_router.get("/{job_id}", response_model=JobOut, responses=_errors(*USER, 404, 422))
async def get_job(job: OwnedJob) -> JobOut:
    return JobOut.of(job)


@jobs_router.put(
    "/{job_id}/status",
    response_model=JobOut,
    dependencies=[InternalCaller],
    responses=_errors(400, 401, 403, 404, 409, 413, 422),
    summary="Internal: a worker reports a status change",
)
async def put_status(job_id: str, update: StatusUpdate, service: ServiceDep) -> JobOut:
    return JobOut.of(await in_thread(service.set_status, job_id, update))


@jobs_router.post("/{job_id}/cancel", response_model=JobOut, responses=_errors(*USER, 404, 409, 422))
async def cancel_job(job_id: str, user: CurrentUser, service: ServiceDep) -> JobOut:
    return JobOut.of(await in_thread(service.cancel, user, job_id))


@jobs_router.post(
    "/{job_id}/retry",
    status_code=202,
    response_model=JobOut,
    responses=_errors(*USER, 404, 409, 422, 429),
)
async def retry_job(job_id: str, user: CurrentUser, service: ServiceDep) -> JobOut:
    return JobOut.of(await in_thread(service.retry, user, job_id))


@jobs_router.get("/{job_id}/events", response_model=EventPage, responses=_errors(*USER, 404, 422))
async def job_events(
    job_id: str,
    user: CurrentUser,
    service: ServiceDep,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> EventPage:
    events = await in_thread(service.events, user, job_id, after=after, limit=limit)
    return EventPage(data=[EventOut.of(event) for event in events])


@jobs_router.get("/{job_id}/metrics", response_model=MetricSeries, responses=_errors(*USER, 404, 422))
async def job_metrics(job_id: str, user: CurrentUser, service: ServiceDep) -> MetricSeries:
    return MetricSeries(series=await in_thread(service.metrics, user, job_id))


@jobs_router.get("/{job_id}/artifacts", response_model=ArtifactList, responses=_errors(*USER, 404, 422))
async def job_artifacts(job_id: str, user: CurrentUser, service: ServiceDep) -> ArtifactList:
    artifacts = await in_thread(service.artifacts, user, job_id)
    return ArtifactList(data=[ArtifactOut(path=a.path, size=a.size) for a in artifacts])


@jobs_router.get(
    "/{job_id}/artifacts/{path:path}",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The file"},
        **_errors(*USER, 404, 422),
    },
)
async def download_artifact(job_id: str, path: str, user: CurrentUser, service: ServiceDep) -> FileResponse:
    file = await in_thread(service.artifact_file, user, job_id, path)
    # Media keep their type so a <video> can play them (FileResponse answers Range requests); the rest is opaque.
    guessed = mimetypes.guess_type(file.name)[0]
    media_type = guessed if guessed and guessed.startswith(("video/", "image/")) else "application/octet-stream"
    return FileResponse(file, media_type=media_type, filename=file.name)
