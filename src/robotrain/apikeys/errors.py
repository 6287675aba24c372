"""API key errors, each with its HTTP status (rendered by robotrain.api.errors like every AppError)."""

from __future__ import annotations

from robotrain.errors import AppError, Forbidden


class ApiKeyNotFound(AppError):
    status_code = 404
    code = "api_key_not_found"

    def __init__(self, key_id: str):
        super().__init__(f"no API key {key_id!r}")


class TooManyApiKeys(AppError):
    status_code = 409
    code = "too_many_api_keys"


class ApiKeyCannotCreateKeys(Forbidden):
    code = "api_key_not_allowed"

    def __init__(self) -> None:
        super().__init__("an API key cannot create API keys; sign in (a session token) to create one")
