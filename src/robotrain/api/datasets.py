"""The /datasets routes: upload a LeRobot dataset as an archive, list, read and delete your uploads. Each is scoped to
its owner: another user's dataset answers 404 exactly like a missing one.

The upload's body is not JSON and not buffered: the app's body-size middleware lets this one path through
(`UPLOAD_PATHS`), and the route streams the body to a file inside the datasets root, counting bytes against
ROBOTRAIN_MAX_UPLOAD_BYTES (413 past it), before the service unpacks and checks it in a worker thread.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from robotrain.api.deps import CurrentUser, SettingsDep
from robotrain.api.schemas import ErrorBody
from robotrain.datasets.archive import MEDIA_TYPES
from robotrain.datasets.models import Dataset
from robotrain.datasets.service import DatasetService
from robotrain.errors import InvalidRequest, PayloadTooLarge

UPLOAD_PATHS = frozenset({"/datasets", "/datasets/"})
_NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"  # no control characters


class DatasetOut(BaseModel):
    id: str
    name: str
    uri: str = Field(description="Name it in a spec's dataset.uri: dataset://<id>. It resolves only for you.")
    bytes: int = Field(description="Size of the extracted dataset.")
    episodes: int
    frames: int
    features: dict[str, Any] = Field(description="meta/info.json's features: name -> {dtype, shape, names}.")
    created_at: datetime

    @classmethod
    def of(cls, dataset: Dataset) -> DatasetOut:
        return cls(
            id=dataset.id,
            name=dataset.name,
            uri=dataset.uri,
            bytes=dataset.bytes,
            episodes=dataset.episodes,
            frames=dataset.frames,
            features=dataset.features,
            created_at=dataset.created_at,
        )


class DatasetPageOut(BaseModel):
    data: list[DatasetOut]
    next_cursor: str | None


def get_dataset_service(request: Request) -> DatasetService:
    return request.app.state.datasets


DatasetServiceDep = Annotated[DatasetService, Depends(get_dataset_service)]


def _errors(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": text} for code, text in descriptions.items()}


_USER = {401: "Missing or invalid token", 503: "A dependency (identity provider, store) is unreachable"}
datasets_router = APIRouter(prefix="/datasets", tags=["datasets"])

_UPLOAD_BODY = {
    "required": True,
    "content": {media_type: {"schema": {"type": "string", "format": "binary"}} for media_type in MEDIA_TYPES},
    "description": "A LeRobot dataset directory as a tar (optionally gzipped) or zip archive: meta/info.json at the "
    "archive's top or in its one top-level directory. Links, devices and names that leave the directory are refused.",
}


async def _receive(request: Request, target: Path, max_bytes: int) -> None:
    """Stream the request body into `target`, refusing it (413) as soon as it passes `max_bytes`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"the upload exceeds the limit of {max_bytes:,} bytes")
    size = 0
    try:
        async with await anyio.open_file(target, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(f"the upload exceeds the limit of {max_bytes:,} bytes")
                await out.write(chunk)
    except ClientDisconnect:
        raise InvalidRequest("the upload was interrupted") from None


@datasets_router.post(
    "",
    status_code=201,
    response_model=DatasetOut,
    responses=_errors(
        {
            **_USER,
            403: "A cookie-authenticated request from an origin not allowed",
            413: "The archive, or the dataset it unpacks to, is over a size limit or your storage",
            415: "Not a tar, gzipped tar or zip archive",
            422: "Not a safe archive of a readable LeRobot dataset; the message names the file",
        }
    ),
    openapi_extra={"requestBody": _UPLOAD_BODY},
    summary="Upload a dataset",
)
@datasets_router.post("/", status_code=201, response_model=DatasetOut, include_in_schema=False)
async def upload_dataset(
    request: Request,
    user: CurrentUser,
    service: DatasetServiceDep,
    settings: SettingsDep,
    name: Annotated[str, Query(min_length=1, max_length=200, pattern=_NAME_PATTERN)],
) -> DatasetOut:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    service.check_media_type(media_type)
    staging = await run_in_threadpool(service.staging_file)
    try:
        await _receive(request, staging, settings.max_upload_bytes)
        dataset = await run_in_threadpool(service.create, user, name, staging, media_type)
    finally:
        await run_in_threadpool(staging.unlink, True)
    return DatasetOut.of(dataset)


@datasets_router.get("", response_model=DatasetPageOut, responses=_errors({**_USER, 422: "Invalid cursor or limit"}))
@datasets_router.get("/", response_model=DatasetPageOut, include_in_schema=False)
def list_datasets(
    user: CurrentUser,
    service: DatasetServiceDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> DatasetPageOut:
    page = service.list_datasets(user, limit=limit, cursor=cursor)
    return DatasetPageOut(data=[DatasetOut.of(dataset) for dataset in page.data], next_cursor=page.next_cursor)


@datasets_router.get(
    "/{dataset_id}", response_model=DatasetOut, responses=_errors({**_USER, 404: "No such dataset (or not yours)"})
)
def get_dataset(dataset_id: str, user: CurrentUser, service: DatasetServiceDep) -> DatasetOut:
    return DatasetOut.of(service.get(user, dataset_id))


@datasets_router.delete(
    "/{dataset_id}",
    status_code=204,
    response_class=Response,
    responses=_errors(
        {
            **_USER,
            403: "A cookie-authenticated request from an origin not allowed",
            404: "No such dataset (or not yours)",
            409: "A queued, starting or running job uses it",
        }
    ),
)
def delete_dataset(dataset_id: str, user: CurrentUser, service: DatasetServiceDep) -> Response:
    service.delete(user, dataset_id)
    return Response(status_code=204)
