"""Domain errors that know their HTTP status. One handler (robotrain.api.errors) renders every one of them as
`{"error": {"code": ..., "message": ...}}`."""

from __future__ import annotations


class AppError(Exception):
    status_code = 500
    code = "internal"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidRequest(AppError):
    status_code = 422
    code = "invalid_request"


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str = "a valid bearer token is required"):
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class OriginRefused(Forbidden):
    """A state-changing request authenticated by the session cookie came from an origin not in the allow-list
    (cross-site request forgery)."""

    code = "origin_refused"


class JobNotFound(AppError):
    status_code = 404
    code = "job_not_found"

    def __init__(self, job_id: str):
        super().__init__(f"no job {job_id!r}")


class ArtifactNotFound(AppError):
    status_code = 404
    code = "artifact_not_found"


class JobConflict(AppError):
    """The job is not in a state that allows this (e.g. cancelling a finished job)."""

    status_code = 409
    code = "job_conflict"


class IdempotencyConflict(AppError):
    status_code = 409
    code = "idempotency_key_reused"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


class RateLimited(AppError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message, headers={"Retry-After": str(max(1, int(retry_after_s)))})


class ServiceUnavailable(AppError):
    """A dependency (store, queue, identity provider) cannot be reached right now."""

    status_code = 503
    code = "service_unavailable"


class AuthUnavailable(ServiceUnavailable):
    code = "auth_unavailable"


class StoreUnavailable(ServiceUnavailable):
    code = "store_unavailable"


class QueueUnavailable(ServiceUnavailable):
    code = "queue_unavailable"


class LaunchError(Exception):
    """A launcher could not start (or stop) a worker right now: the platform refused or could not be reached.
    Not an AppError: no client sees it. The dispatcher retries launches that raise it, with backoff, and fails the
    job with `launch_failed` after N tries; launcher adapters wrap their SDK's transient errors in it."""


class LimitExceeded(AppError):
    """A request over one of the operator's limits (model size, steps, storage, ...): the message names the field
    and the limit."""

    status_code = 422
    code = "limit_exceeded"
