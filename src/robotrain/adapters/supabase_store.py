"""The production JobStore: Supabase (PostgreSQL behind PostgREST) through supabase-py, with the service_role key.

The schema is supabase/migrations/*.sql. Every status change is one PATCH filtered on the id and the allowed
current statuses (and the attempt when given) with `return=representation`: PostgreSQL applies it atomically, and
an empty result means another writer changed the row first (the race was lost). What an API request or a drain batch
needs in one round trip is one PostgreSQL function called with `rpc` (20261202120000_one_round_trip.sql): a submit
with its checks, the list with its (created_at, id) cursor, the events and metrics of a user's own job, a batch of
claims and of recorded launches.

Errors: postgrest's APIError carries PostgreSQL's SQLSTATE (or PostgREST's PGRSTxxx) in `.code`; codes are mapped to
domain errors below. An answer that did not come from PostgREST but from the API gateway in front of it (a wrong
`apikey`, the gateway's own 5xx, a proxy's HTML error page) has no such code: postgrest-py then sets `.code` to the
HTTP status (a body that is not JSON) or to None (JSON without a code, e.g. Supabase's 401 "Invalid API key"), and
never exposes the status itself, so the store reads it from the response as it arrives. A gateway answer is never
the caller's mistake nor a bug in a query: it is StoreUnavailable (503), retried like any transient error when the
status says the gateway or its upstream was briefly unavailable (408, 429, 5xx), and not retried otherwise (a key
the gateway refuses stays refused). Only the errors in
TRANSIENT_ERRORS are retried, a bounded number of times with backoff, and only for reads and idempotent writes
(upserts, deletes); a compare-and-set or an insert is never retried blindly, because its first try may have been
applied before the answer was lost. supabase-py's own retry (GET only, sleeps of 1, 2, 4 s) is turned off so that
this module alone decides.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

import httpx
from postgrest import APIError, APIResponse, CountMethod, ReturnMethod
from supabase import Client, ClientOptions, create_client

from robotrain.errors import AppError, InvalidRequest, JobConflict, JobNotFound, StoreUnavailable
from robotrain.jobs.claims import Capped, CapScope, ClaimBatch, Claimed, ClaimOutcome, LaunchRecord, Missing, NotQueued
from robotrain.jobs.cursor import decode_cursor, encode_cursor, format_time
from robotrain.jobs.models import Job, JobChanges, JobEvent, JobStatus, MetricPoint, NewEvent, Page, Progress, utcnow
from robotrain.jobs.submission import (
    Created,
    KeyReused,
    OverActiveCap,
    OverStorage,
    Replayed,
    SubmitOutcome,
    SubmitRateLimited,
    SubmitRequest,
)
from robotrain.settings import Settings

# PostgREST answers at most this many rows per request on Supabase (the project's "max rows", 1000 by default).
MAX_ROWS_PER_REQUEST = 1000
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_BACKOFF_S = 0.25
# Connections kept open to PostgREST, shared by every request of the process. httpx keeps only 20 idle by default:
# with more concurrent requests than that, the rest would open (on Supabase: TLS handshake) and close one each time.
DEFAULT_POOL_CONNECTIONS = 64

# APIError codes that mean "the database or the gateway is briefly unavailable": connection exceptions (08xxx),
# insufficient resources (53xxx), operator intervention such as a restart (57P0x), serialization failures and
# deadlocks (40001, 40P01), PostgREST losing its connection pool (PGRST000-PGRST003), and gateway statuses.
TRANSIENT_CODE_PREFIXES = ("08", "53", "57P0")
TRANSIENT_CODES = frozenset({"40001", "40P01", "PGRST000", "PGRST001", "PGRST002", "PGRST003"})
# Gateway statuses worth repeating the request for: a timeout, rate limiting, and every 5xx (the gateway's own, its
# upstream's, a CDN's 52x).
TRANSIENT_GATEWAY_STATUSES = frozenset({408, 429})
# The key was refused: misconfiguration on our side, not the caller's fault, and not worth retrying.
REFUSED_KEY_CODES = frozenset({"42501", "PGRST301", "PGRST302", "PGRST303"})


class TransientApiError(Exception):
    """An APIError whose code is in TRANSIENT_CODES / TRANSIENT_CODE_PREFIXES, or a gateway answer with a status that
    is transient (TRANSIENT_GATEWAY_STATUSES, 5xx)."""

    def __init__(self, error: APIError):
        super().__init__(f"{error.code or 'the API gateway'}: {error.message}")
        self.error = error


TRANSIENT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, TransientApiError)


class StoreError(AppError):
    """Supabase rejected a request in a way that is neither the caller's mistake nor transient (a bug or a schema
    that does not match this code)."""

    status_code = 500
    code = "store_error"


def _is_transient_code(code: str | None) -> bool:
    return code is not None and (code in TRANSIENT_CODES or code.startswith(TRANSIENT_CODE_PREFIXES))


def _gateway_status(error: APIError, last_status: int | None) -> int | None:
    """The HTTP status of an answer that came from the gateway rather than PostgREST, or None for PostgREST's own
    errors. PostgREST always sets `code` (a 5-character SQLSTATE or PGRSTxxx); postgrest-py puts the 3-digit status
    there for a body that is not JSON, and leaves it None for JSON without a code (module doc)."""
    code = error.code
    if code is None or code == "":
        return last_status or 0
    if len(code) == 3 and code.isdigit():
        return int(code)
    return None


def _is_transient_status(status: int) -> bool:
    return status >= 500 or status in TRANSIENT_GATEWAY_STATUSES


def _execute_range(query: Callable[[], Any], start: int, end: int) -> APIResponse:
    return query().range(start, end).execute()


def _rows(response: APIResponse) -> list[dict[str, Any]]:
    """The rows of a PostgREST answer: every request here selects rows (or returns the changed ones), so `data` is a
    JSON array of objects."""
    return cast(list[dict[str, Any]], response.data)


def _gateway_refusal(error: APIError, status: int, doing: str) -> str:
    what = error.message or "no message"
    if status in (401, 403):
        return (
            f"the Supabase API gateway refused the backend's key while {doing} (HTTP {status}: {what}); "
            "SUPABASE_KEY must be the service_role (or secret) key of the project SUPABASE_URL names"
        )
    return f"the Supabase API gateway answered HTTP {status} while {doing} ({what}); check SUPABASE_URL"


def _domain_error(error: APIError, doing: str, job_id: str | None) -> AppError:
    code = error.code or ""
    detail = f"{code}: {error.message}" + (f" ({error.details})" if error.details else "")
    if code == "23505":
        return JobConflict(f"{doing}: already exists ({error.details or error.message})")
    if code in ("23503", "PGRST116") and job_id is not None:
        return JobNotFound(job_id)
    if code in REFUSED_KEY_CODES:
        return StoreUnavailable(
            f"the job store refused the backend's key while {doing} ({detail}); SUPABASE_KEY must be the "
            "service_role key of this project"
        )
    if code.startswith("22"):  # data exception: a value PostgreSQL cannot store (e.g. a \u0000 in JSON text)
        return InvalidRequest(f"the job store cannot store this value: {error.message}")
    return StoreError(f"the job store failed while {doing}: {detail}")


# --- values on the wire ---------------------------------------------------------------------------------------------


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _optional_time(text: str | None) -> datetime | None:
    return None if text is None else parse_time(text)


def _metric_value(value: float) -> float | str:
    """JSON has no NaN or Infinity; PostgreSQL's float8 accepts (and to_json answers) them as strings."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _json_safe(value: Any) -> Any:
    """Non-finite floats (a diverged loss in progress or result) as the strings PostgreSQL and pydantic read back
    as floats; supabase-py refuses to send NaN, which is not JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return _metric_value(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def _column_value(field: str, value: Any) -> Any:
    """A Job / JobChanges field as the JSON its column takes."""
    if isinstance(value, datetime):
        return format_time(value)
    if field == "progress":
        # progress is never null on a Job: an explicit None resets it
        return _json_safe((value or Progress()).model_dump(mode="json"))
    if field == "error":
        return None if value is None else value.model_dump(mode="json")
    if field == "status":
        return JobStatus(value).value
    return _json_safe(value)


_JOB_FIELDS = tuple(Job.model_fields)
_TIME_FIELDS = ("created_at", "updated_at", "started_at", "finished_at", "heartbeat_at", "enqueued_at")


def _row_to_job(row: dict[str, Any]) -> Job:
    values = dict(row)
    for field in _TIME_FIELDS:
        values[field] = _optional_time(values.get(field))
    return Job.model_validate(values)


def _row_to_event(row: dict[str, Any]) -> JobEvent:
    return JobEvent(
        id=row["id"],
        job_id=row["job_id"],
        at=parse_time(row["at"]),
        kind=row["kind"],
        message=row["message"],
        data=row["data"] or {},
    )


def _statuses(statuses: Collection[JobStatus]) -> list[str]:
    return sorted({JobStatus(status).value for status in statuses})


def _job_row(job: Job) -> dict[str, Any]:
    return {field: _column_value(field, getattr(job, field)) for field in _JOB_FIELDS}


def _series(points: dict[str, list[list[Any]]]) -> dict[str, list[tuple[int, float]]]:
    """list_owned_metrics' series (NaN and +-Infinity arrive as strings, which float() reads)."""
    return {name: [(int(step), float(value)) for step, value in pairs] for name, pairs in sorted(points.items())}


def _submit_outcome(answer: dict[str, Any]) -> SubmitOutcome:
    outcome = answer.get("outcome")
    if outcome == "created":
        return Created(_row_to_job(answer["job"]))
    if outcome == "replayed":
        return Replayed(_row_to_job(answer["job"]))
    if outcome == "key_reused":
        return KeyReused()
    if outcome == "over_active_cap":
        return OverActiveCap(int(answer["unfinished"]))
    if outcome == "rate_limited":
        return SubmitRateLimited(int(answer["retry_after_s"]))
    if outcome == "over_storage":
        return OverStorage(int(answer["used_bytes"]))
    raise StoreError(f"submit_job answered an unknown outcome: {answer!r}"[:300])


def _claim_outcome(answer: dict[str, Any]) -> ClaimOutcome:
    outcome = answer.get("outcome")
    if outcome == "claimed":
        return Claimed(_row_to_job(answer["job"]))
    if outcome == "not_queued":
        return NotQueued(JobStatus(answer["status"]))
    if outcome == "missing":
        return Missing()
    if outcome == "capped":
        return Capped(CapScope(answer["scope"]), _row_to_job(answer["job"]))
    raise StoreError(f"claim_jobs answered an unknown outcome: {answer!r}"[:300])


class SupabaseJobStore:
    """JobStore on Supabase. Thread-safe (one shared httpx client; every call builds its own request)."""

    def __init__(
        self,
        url: str,
        key: str,
        *,
        timeout_s: float = 10.0,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        backoff_s: float = DEFAULT_BACKOFF_S,
        pool_connections: int = DEFAULT_POOL_CONNECTIONS,
        http_client: httpx.Client | None = None,
    ):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        limits = httpx.Limits(max_connections=pool_connections, max_keepalive_connections=pool_connections)
        self._http = http_client or httpx.Client(timeout=timeout_s, limits=limits)
        self._owns_http = http_client is None
        # The status of the last answer in this thread: postgrest-py does not expose it on a gateway's error (module
        # doc). Requests are synchronous, so the hook runs in the thread that then reads the status.
        self._answers = threading.local()
        self._http.event_hooks["response"].append(self._remember_status)
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self.client: Client = create_client(
            url,
            key,
            options=ClientOptions(
                httpx_client=self._http,
                postgrest_client_retry=False,
                auto_refresh_token=False,
                persist_session=False,
            ),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> SupabaseJobStore:
        if not settings.uses_supabase:
            raise ValueError("SUPABASE_URL and SUPABASE_KEY must both be set for the Supabase store")
        assert settings.supabase_url is not None and settings.supabase_key is not None  # uses_supabase says so
        return cls(
            settings.supabase_url,
            settings.supabase_key.get_secret_value(),
            timeout_s=settings.supabase_timeout_s,
            pool_connections=settings.pool_connections,
        )

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def _remember_status(self, response: httpx.Response) -> None:
        self._answers.status = response.status_code

    # --- calling PostgREST ------------------------------------------------------------------------------------

    def _table(self, name: str):
        return self.client.table(name)

    def _read_pages(self, doing: str, query: Callable[[], Any], *, limit: int | None = None) -> list[dict[str, Any]]:
        """Every row the ordered `query()` selects (at most `limit`), fetched in requests of MAX_ROWS_PER_REQUEST
        because Supabase caps the rows of one response."""
        rows: list[dict[str, Any]] = []
        while limit is None or len(rows) < limit:
            size = MAX_ROWS_PER_REQUEST if limit is None else min(limit - len(rows), MAX_ROWS_PER_REQUEST)
            offset = len(rows)
            chunk = self._call_rows(
                doing,
                partial(_execute_range, query, offset, offset + size - 1),
                idempotent=True,
            )
            rows += chunk
            if len(chunk) < size:
                break
        return rows

    def _call_rows(
        self, doing: str, request: Callable[[], APIResponse], *, idempotent: bool, job_id: str | None = None
    ) -> list[dict[str, Any]]:
        return _rows(self._call(doing, request, idempotent=idempotent, job_id=job_id))

    def request(self, doing: str, request: Callable[[], APIResponse], *, idempotent: bool) -> APIResponse:
        """One PostgREST request with this store's retries and error mapping, for the adapters of other tables that
        share its client (robotrain.adapters.supabase_api_keys)."""
        return self._call(doing, request, idempotent=idempotent)

    def _call(
        self, doing: str, request: Callable[[], APIResponse], *, idempotent: bool, job_id: str | None = None
    ) -> APIResponse:
        attempts = self._max_attempts if idempotent else 1
        for attempt in range(1, attempts + 1):
            try:
                self._answers.status = None
                try:
                    return request()
                except APIError as error:
                    status = _gateway_status(error, self._answers.status)
                    if status is not None and not _is_transient_status(status):
                        raise StoreUnavailable(_gateway_refusal(error, status, doing)) from error
                    if status is not None or _is_transient_code(error.code):
                        raise TransientApiError(error) from error
                    raise
            except TRANSIENT_ERRORS as error:
                if attempt >= attempts:
                    raise StoreUnavailable(f"the job store is unavailable while {doing}: {error!s}") from error
                time.sleep(self._backoff_s * 2 ** (attempt - 1))
            except APIError as error:
                raise _domain_error(error, doing, job_id) from error
        raise AssertionError("unreachable: the loop returns or raises")

    # --- jobs -------------------------------------------------------------------------------------------------

    def create(self, job: Job) -> Job:
        row = _job_row(job)
        response = self._call(
            f"creating job {job.id}", lambda: self._table("jobs").insert(row).execute(), idempotent=False
        )
        return _row_to_job(_rows(response)[0])

    def _rpc(self, doing: str, function: str, arguments: dict[str, Any], *, idempotent: bool) -> Any:
        """One call of a function of the migrations: its JSON answer."""
        return self._call(doing, lambda: self.client.rpc(function, arguments).execute(), idempotent=idempotent).data

    def submit(self, request: SubmitRequest) -> SubmitOutcome:
        job = request.job
        arguments = {
            "p_job": _job_row(job),
            "p_event_kind": request.event.kind,
            "p_event_message": request.event.message,
            "p_event_data": _json_safe(request.event.data),
            "p_now": format_time(request.now),
            "p_rate_per_minute": request.rate_per_minute,
            "p_max_unfinished": request.max_unfinished,
            "p_unfinished_statuses": _statuses(request.unfinished_statuses),
            "p_idempotency_key": request.idempotency_key,
            "p_request_hash": request.request_hash,
            "p_storage_needed": request.storage_needed_bytes,
            "p_storage_quota": request.storage_quota_bytes,
        }
        # Retried like a read: a repeat of an applied call finds the job by its id and answers Created with it
        answer = self._rpc(f"submitting job {job.id}", "submit_job", arguments, idempotent=True)
        return _submit_outcome(answer)

    def get(self, job_id: str, *, user_id: str | None = None) -> Job | None:
        def request() -> APIResponse:
            query = self._table("jobs").select("*").eq("id", job_id)
            if user_id is not None:
                query = query.eq("user_id", user_id)
            return query.limit(1).execute()

        rows = self._call_rows(f"reading job {job_id}", request, idempotent=True)
        return _row_to_job(rows[0]) if rows else None

    def list_jobs(
        self, *, user_id: str, status: JobStatus | None = None, limit: int = 20, cursor: str | None = None
    ) -> Page:
        if limit < 1:
            raise InvalidRequest("limit must be at least 1")
        limit = min(limit, MAX_ROWS_PER_REQUEST - 1)
        arguments: dict[str, Any] = {"p_user_id": user_id, "p_limit": limit + 1}
        if status is not None:
            arguments["p_status"] = JobStatus(status).value
        if cursor is not None:
            after_created, after_id = decode_cursor(cursor)
            arguments |= {"p_after_created": format_time(after_created), "p_after_id": after_id}
        rows = self._rpc("listing jobs", "list_jobs", arguments, idempotent=True)
        jobs = [_row_to_job(row) for row in rows[:limit]]
        next_cursor = encode_cursor(jobs[-1].created_at, jobs[-1].id) if len(rows) > limit else None
        return Page(data=jobs, next_cursor=next_cursor)

    def update(
        self,
        job_id: str,
        changes: JobChanges,
        *,
        expected: Collection[JobStatus],
        expected_attempt: int | None = None,
    ) -> Job | None:
        expected_values = _statuses(expected)
        if not expected_values:
            return None
        values: dict[str, Any] = {"updated_at": format_time(utcnow())}
        for field in sorted(changes.model_fields_set):
            value = getattr(changes, field)
            if field in ("status", "attempt") and value is None:
                continue  # not nullable on a Job; None means "leave alone"
            values[field] = _column_value(field, value)

        def request() -> APIResponse:
            query = self._table("jobs").update(values).eq("id", job_id).in_("status", expected_values)
            if expected_attempt is not None:
                query = query.eq("attempt", expected_attempt)
            return query.execute()

        # a compare-and-set is not retried: a lost answer to an applied change would look like a lost race
        rows = self._call_rows(f"updating job {job_id}", request, idempotent=False, job_id=job_id)
        return _row_to_job(rows[0]) if rows else None

    def find(
        self,
        *,
        statuses: Collection[JobStatus],
        limit: int = 100,
        unsent: bool = False,
        holding_compute: bool = False,
    ) -> list[Job]:
        values = _statuses(statuses)
        if not values or limit < 1:
            return []

        def filtered(query):
            query = query.in_("status", values)
            if unsent:
                query = query.is_("enqueued_at", "null")
            if holding_compute:
                # "not null": handles are never empty, and null compares as unknown, which gt leaves out
                query = query.gt("launch_handle", "")
            return query

        rows = self._read_pages(
            "finding jobs",
            lambda: filtered(self._table("jobs").select("*")).order("created_at").order("id"),
            limit=limit,
        )
        return [_row_to_job(row) for row in rows]

    def claim(self, job_id: str, *, max_active: int, max_active_per_user: int) -> Job | None:
        arguments = {
            "p_job_id": job_id,
            "p_max_active": max_active,
            "p_max_active_per_user": max_active_per_user,
            "p_now": format_time(utcnow()),
        }
        # a claim is a compare-and-set: not retried (a lost answer to an applied claim would look like a lost race;
        # the sweep requeues a starting job that never got a launch handle)
        rows = self._call_rows(
            f"claiming job {job_id}",
            lambda: self.client.rpc("claim_job", arguments).execute(),
            idempotent=False,
            job_id=job_id,
        )
        return _row_to_job(rows[0]) if rows else None

    def claim_many(
        self, job_ids: Sequence[str], *, max_active: int, max_active_per_user: int, event: NewEvent
    ) -> ClaimBatch:
        unique = list(dict.fromkeys(job_ids))
        arguments = {
            "p_job_ids": unique,
            "p_max_active": max_active,
            "p_max_active_per_user": max_active_per_user,
            "p_now": format_time(utcnow()),
            "p_event_kind": event.kind,
            "p_event_message": event.message,
            "p_event_data": _json_safe(event.data),
        }
        # claims are compare-and-sets: not retried, as `claim`
        answer = self._rpc(f"claiming {len(unique)} jobs", "claim_jobs", arguments, idempotent=False)
        outcomes = {item["id"]: _claim_outcome(item) for item in answer["outcomes"]}
        return ClaimBatch(outcomes=outcomes, active=int(answer["active"]))

    def record_launches(self, launches: Sequence[LaunchRecord], *, expected: Collection[JobStatus]) -> set[str]:
        if not launches or not expected:
            return set()
        arguments = {
            "p_launches": [
                {
                    "job_id": launch.job_id,
                    "attempt": launch.attempt,
                    "handle": launch.handle,
                    "event_kind": launch.event.kind,
                    "event_message": launch.event.message,
                    "event_data": _json_safe(launch.event.data),
                }
                for launch in launches
            ],
            "p_expected": _statuses(expected),
            "p_now": format_time(utcnow()),
        }
        # not retried: a repeat of an applied call would append each launch's event twice
        recorded = self._rpc(f"recording {len(launches)} launches", "record_launches", arguments, idempotent=False)
        return set(recorded)

    def ping(self) -> None:
        self._call(
            "checking the job store",
            lambda: self._table("jobs").select("id").limit(1).execute(),
            idempotent=False,
        )

    def count(self, *, statuses: Collection[JobStatus], user_id: str | None = None) -> int:
        values = _statuses(statuses)
        if not values:
            return 0

        def request() -> APIResponse:
            query = self._table("jobs").select("id", count=CountMethod.exact, head=True).in_("status", values)
            if user_id is not None:
                query = query.eq("user_id", user_id)
            return query.execute()

        count = self._call("counting jobs", request, idempotent=True).count
        if count is None:
            raise StoreError("the job store answered a count request without a count")
        return count

    # --- events and metrics -----------------------------------------------------------------------------------

    def append_event(self, job_id: str, kind: str, message: str, data: dict[str, Any] | None = None) -> JobEvent:
        row = {
            "job_id": job_id,
            "at": format_time(utcnow()),
            "kind": kind,
            "message": message,
            "data": _json_safe(data or {}),
        }
        response = self._call(
            f"appending an event to job {job_id}",
            lambda: self._table("events").insert(row).execute(),
            idempotent=False,
            job_id=job_id,
        )
        return _row_to_event(_rows(response)[0])

    def list_events(self, job_id: str, *, after: int = 0, limit: int = 500) -> list[JobEvent]:
        events: list[JobEvent] = []
        last = after
        while len(events) < limit:
            size = min(limit - len(events), MAX_ROWS_PER_REQUEST)
            rows = self._call_rows(
                f"listing events of job {job_id}",
                partial(self._events_after, job_id, last, size),
                idempotent=True,
            )
            events += [_row_to_event(row) for row in rows]
            if len(rows) < size:
                break
            last = events[-1].id
        return events

    def append_metrics(self, job_id: str, points: list[MetricPoint]) -> None:
        """Upsert the points; a (name, step) reported again (a resumed attempt) replaces the earlier value. An upsert
        is idempotent, so it is retried like a read."""
        if not points:
            return
        latest = {(point.name, point.step): point.value for point in points}  # one row per key in one statement
        rows = [
            {"job_id": job_id, "name": name, "step": step, "value": _metric_value(value)}
            for (name, step), value in latest.items()
        ]
        for start in range(0, len(rows), MAX_ROWS_PER_REQUEST):
            chunk = rows[start : start + MAX_ROWS_PER_REQUEST]
            self._call(
                f"appending metrics to job {job_id}",
                partial(self._upsert_metrics, chunk),
                idempotent=True,
                job_id=job_id,
            )

    def list_owned_events(
        self, job_id: str, *, user_id: str, after: int = 0, limit: int = 500
    ) -> list[JobEvent] | None:
        arguments = {"p_job_id": job_id, "p_user_id": user_id, "p_after": after, "p_limit": max(0, limit)}
        answer = self._rpc(f"listing events of job {job_id}", "list_owned_events", arguments, idempotent=True)
        if not answer["owned"]:
            return None
        return [_row_to_event(row) for row in answer["events"]]

    def list_owned_metrics(self, job_id: str, *, user_id: str) -> dict[str, list[tuple[int, float]]] | None:
        arguments = {"p_job_id": job_id, "p_user_id": user_id}
        answer = self._rpc(f"listing metrics of job {job_id}", "list_owned_metrics", arguments, idempotent=True)
        return _series(answer["series"]) if answer["owned"] else None

    def _events_after(self, job_id: str, after: int, size: int) -> APIResponse:
        return self._table("events").select("*").eq("job_id", job_id).gt("id", after).order("id").limit(size).execute()

    def _upsert_metrics(self, rows: list[dict[str, Any]]) -> APIResponse:
        upsert = self._table("metrics").upsert(rows, on_conflict="job_id,name,step", returning=ReturnMethod.minimal)
        return upsert.execute()

    def list_metrics(self, job_id: str) -> dict[str, list[tuple[int, float]]]:
        # Offset paging: rows are only ever added, so a concurrent append can shift a row into the next page (seen
        # twice, deduplicated by the dict) but never out of it.
        rows = self._read_pages(
            f"listing metrics of job {job_id}",
            lambda: self._table("metrics").select("name,step,value").eq("job_id", job_id).order("name").order("step"),
        )
        values = {(row["name"], row["step"]): float(row["value"]) for row in rows}
        series: dict[str, list[tuple[int, float]]] = {}
        for (name, step), value in sorted(values.items()):
            series.setdefault(name, []).append((step, value))
        return series

    # --- idempotency keys -------------------------------------------------------------------------------------

    def forget_idempotency_keys(self, older_than: datetime) -> int:
        # a retried delete deletes nothing more; the count it reports is then the retry's (a lower bound)
        response = self._call(
            "forgetting idempotency keys",
            lambda: (
                self._table("idempotency_keys")
                .delete(count=CountMethod.exact, returning=ReturnMethod.minimal)
                .lt("created_at", format_time(older_than))
                .execute()
            ),
            idempotent=True,
        )
        return response.count or 0
