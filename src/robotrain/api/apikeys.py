"""The API key routes: create (the secret is shown once), list (never a secret), revoke. Creating a key needs a
session: a key cannot mint more keys, so a leaked key cannot outlive its own revocation."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from robotrain.api.deps import CurrentPrincipal, CurrentUser, get_api_keys
from robotrain.api.schemas import ErrorBody
from robotrain.apikeys.errors import ApiKeyCannotCreateKeys
from robotrain.apikeys.models import ApiKey
from robotrain.apikeys.service import ApiKeyService
from robotrain.errors import AppError

router = APIRouter(prefix="/api-keys", tags=["api keys"])


class ApiKeysDisabled(AppError):
    status_code = 404
    code = "api_keys_disabled"


def api_key_service(service: Annotated[ApiKeyService | None, Depends(get_api_keys)]) -> ApiKeyService:
    if service is None:
        raise ApiKeysDisabled("this server does not issue API keys")
    return service


ApiKeysDep = Annotated[ApiKeyService, Depends(api_key_service)]


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="What the key is for, e.g. `laptop` or `ci`.")
    expires_in_days: int | None = Field(None, ge=1, le=3650, description="Null: the key does not expire.")


class ApiKeyOut(BaseModel):
    id: str
    name: str
    created_at: datetime
    expires_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyOut:
        return cls(id=key.id, name=key.name, created_at=key.created_at, expires_at=key.expires_at)


class NewApiKeyOut(ApiKeyOut):
    key: str = Field(description="The secret, `rt_...`: shown only in this answer. Send it as `Bearer <key>`.")


class ApiKeyList(BaseModel):
    data: list[ApiKeyOut]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Unparsable body",
        401: "Missing or invalid token",
        403: "An API key cannot create API keys",
        404: "No such key (or not yours, or revoked)",
        409: "Too many API keys",
        413: "Body over the size limit",
        422: "Invalid input; `details` names each field",
        503: "A dependency (identity provider, store) is unreachable",
    }
    return {code: {"model": ErrorBody, "description": descriptions[code]} for code in codes}


@router.post("", status_code=201, response_model=NewApiKeyOut, responses=_errors(400, 401, 403, 409, 413, 422, 503))
def create_api_key(body: ApiKeyCreate, principal: CurrentPrincipal, service: ApiKeysDep) -> NewApiKeyOut:
    """Create a personal API key for the CLI or scripts. Needs a session token: an API key cannot create keys."""
    if principal.credential == "api_key":
        raise ApiKeyCannotCreateKeys()
    key, secret = service.create(principal.user_id, body.name, expires_in_days=body.expires_in_days)
    return NewApiKeyOut(**ApiKeyOut.of(key).model_dump(), key=secret)


@router.get("", response_model=ApiKeyList, responses=_errors(401, 503))
def list_api_keys(user: CurrentUser, service: ApiKeysDep) -> ApiKeyList:
    """Your keys that are not revoked, newest first, without their secrets."""
    return ApiKeyList(data=[ApiKeyOut.of(key) for key in service.list(user)])


@router.delete("/{key_id}", status_code=204, response_class=Response, responses=_errors(401, 404, 422, 503))
def revoke_api_key(key_id: str, user: CurrentUser, service: ApiKeysDep) -> Response:
    """Revoke a key: it is refused from then on (by other API processes within ROBOTRAIN_API_KEY_CACHE_TTL_S)."""
    service.revoke(user, key_id)
    return Response(status_code=204)
