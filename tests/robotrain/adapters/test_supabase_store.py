"""SupabaseJobStore: the shared store contract through the real supabase-py client, the PostgREST-subset server and
real PostgreSQL 15; then what only this adapter has (wire values, error mapping, bounded retries)."""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator

import httpx
import pytest

from robotrain.adapters import supabase_store
from robotrain.adapters.supabase_store import StoreError, SupabaseJobStore
from robotrain.errors import InvalidRequest, StoreUnavailable
from robotrain.jobs.models import JobChanges, JobStatus, MetricPoint, Progress
from robotrain.settings import Settings
from tests.robotrain.adapters.round_trip_contract import OneRoundTripContract
from tests.robotrain.adapters.store_contract import JobStoreContract, at, make_job
from tests.support import postgrest
from tests.support.supabase_env import JWT_SECRET, SupabaseStack

_opened: list[httpx.Client] = []


def make_store(url: str, key: str, *, requests: list[httpx.Request] | None = None, **kwargs) -> SupabaseJobStore:
    """A store whose httpx client records every request it sends (when `requests` is given)."""
    hooks = {"request": [requests.append]} if requests is not None else {}
    http = httpx.Client(timeout=5, event_hooks=hooks)
    _opened.append(http)
    return SupabaseJobStore(url, key, http_client=http, **kwargs)


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _opened:
        _opened.pop().close()


class TestSupabaseJobStore(JobStoreContract, OneRoundTripContract):
    @pytest.fixture
    def store(self, supabase: SupabaseStack) -> Iterator[SupabaseJobStore]:
        store = SupabaseJobStore(supabase.url, supabase.service_key, timeout_s=5)
        yield store
        store.close()


@pytest.fixture
def store(supabase: SupabaseStack) -> Iterator[SupabaseJobStore]:
    store = SupabaseJobStore(supabase.url, supabase.service_key, timeout_s=5)
    yield store
    store.close()


@pytest.fixture
def unreachable_url() -> str:
    """A loopback port nothing listens on (bound, then closed): connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def database_down(postgres_cluster) -> Iterator[str]:
    """A PostgREST-subset server whose database cannot be reached (every request is 503 PGRST001)."""
    conninfo = postgres_cluster.conninfo("no_such_database", user="authenticator")
    with postgrest.serve(postgrest.PostgrestSubset(conninfo, JWT_SECRET)) as server:
        yield server.url


# --- values on the wire -------------------------------------------------------------------------------------------


def test_non_finite_metric_values_round_trip(store: SupabaseJobStore) -> None:
    job = store.create(make_job())
    store.append_metrics(
        job.id,
        [
            MetricPoint(step=1, name="loss", value=math.nan),
            MetricPoint(step=2, name="loss", value=math.inf),
            MetricPoint(step=3, name="loss", value=-math.inf),
        ],
    )
    steps, values = zip(*store.list_metrics(job.id)["loss"], strict=True)
    assert steps == (1, 2, 3)
    assert math.isnan(values[0]) and values[1] == math.inf and values[2] == -math.inf


def test_a_diverged_loss_in_progress_round_trips(store: SupabaseJobStore) -> None:
    job = store.create(make_job())
    progress = Progress(step=3, total_steps=10, metrics={"loss": math.nan, "grad": math.inf})
    updated = store.update(job.id, JobChanges(status=JobStatus.STARTING, progress=progress), expected={"queued"})
    assert updated is not None and updated.progress.step == 3
    assert math.isnan(updated.progress.metrics["loss"]) and updated.progress.metrics["grad"] == math.inf


def test_every_time_field_comes_back_timezone_aware_utc(store: SupabaseJobStore) -> None:
    job = store.create(make_job(created_at=at(0)))
    updated = store.update(job.id, JobChanges(status=JobStatus.STARTING, heartbeat_at=at(2)), expected={"queued"})
    assert updated is not None
    for value in (updated.created_at, updated.updated_at, updated.heartbeat_at):
        assert value.utcoffset().total_seconds() == 0


def test_lists_longer_than_one_response_are_paged_by_the_store(supabase: SupabaseStack) -> None:
    # one request per page of MAX_ROWS_PER_REQUEST; shrink it through many events instead of 1000+ rows
    requests: list[httpx.Request] = []
    store = make_store(supabase.url, supabase.service_key, requests=requests)
    job = store.create(make_job())
    for index in range(5):
        store.append_event(job.id, "log", f"line {index}")
    requests.clear()
    assert [event.message for event in store.list_events(job.id, limit=3)] == ["line 0", "line 1", "line 2"]
    assert len(requests) == 1 and "limit=3" in str(requests[0].url)


def test_jobs_and_metrics_beyond_one_response_are_read_page_by_page(
    supabase: SupabaseStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supabase_store, "MAX_ROWS_PER_REQUEST", 2)  # Supabase caps rows per response (1000)
    requests: list[httpx.Request] = []
    store = make_store(supabase.url, supabase.service_key, requests=requests)
    jobs = [store.create(make_job(created_at=at(index))) for index in range(5)]
    store.append_metrics(jobs[0].id, [MetricPoint(step=step, name="train/loss", value=step / 10) for step in range(5)])
    requests.clear()

    assert [job.id for job in store.find(statuses={JobStatus.QUEUED}, limit=4)] == [job.id for job in jobs[:4]]
    assert len(requests) == 2
    series = store.list_metrics(jobs[0].id)["train/loss"]
    assert series == [(step, step / 10) for step in range(5)]


def test_a_value_postgresql_cannot_store_is_an_invalid_request(store: SupabaseJobStore) -> None:
    job = make_job()
    bad = job.model_copy(update={"spec": {"note": "nul \u0000 inside"}})
    with pytest.raises(InvalidRequest, match="cannot store"):
        store.create(bad)


# --- configuration ------------------------------------------------------------------------------------------------


def test_from_settings_uses_the_supabase_variables(supabase: SupabaseStack) -> None:
    settings = Settings(SUPABASE_URL=supabase.url, SUPABASE_KEY=supabase.service_key, SUPABASE_TIMEOUT_S=3)
    store = SupabaseJobStore.from_settings(settings)
    try:
        assert store.get("job_missing") is None
        assert store._http.timeout.read == 3
    finally:
        store.close()


def test_from_settings_without_supabase_variables_is_refused() -> None:
    with pytest.raises(ValueError, match="SUPABASE_URL and SUPABASE_KEY"):
        SupabaseJobStore.from_settings(Settings(SUPABASE_URL=None, SUPABASE_KEY=None))


# --- errors and retries -------------------------------------------------------------------------------------------


def test_a_key_signed_with_another_secret_is_store_unavailable_and_not_retried(supabase: SupabaseStack) -> None:
    requests: list[httpx.Request] = []
    forged = postgrest.mint_jwt("some-other-secret-that-is-also-32-bytes-long", "service_role")
    store = make_store(supabase.url, forged, requests=requests, backoff_s=0)
    with pytest.raises(StoreUnavailable, match="service_role key"):
        store.get("job_x")
    assert len(requests) == 1


def test_the_anon_key_is_refused_by_row_level_security_grants(supabase: SupabaseStack) -> None:
    store = make_store(supabase.url, supabase.anon_key)
    with pytest.raises(StoreUnavailable, match="refused"):
        store.list_jobs(user_id="user_alice")


def test_an_unreachable_supabase_is_retried_then_store_unavailable(unreachable_url: str) -> None:
    requests: list[httpx.Request] = []
    store = make_store(
        unreachable_url,
        postgrest.mint_jwt(JWT_SECRET, "service_role"),
        requests=requests,
        max_attempts=3,
        backoff_s=0.01,
    )
    with pytest.raises(StoreUnavailable, match="unavailable while reading job job_x"):
        store.get("job_x")
    assert len(requests) == 3


def test_a_database_outage_is_retried_for_reads_but_not_for_compare_and_set(database_down: str) -> None:
    requests: list[httpx.Request] = []
    store = make_store(
        database_down, postgrest.mint_jwt(JWT_SECRET, "service_role"), requests=requests, max_attempts=3, backoff_s=0.01
    )
    with pytest.raises(StoreUnavailable):
        store.count(statuses={JobStatus.QUEUED})
    assert [request.method for request in requests] == ["HEAD"] * 3
    requests.clear()
    with pytest.raises(StoreUnavailable):
        store.update("job_x", JobChanges(status=JobStatus.STARTING), expected={JobStatus.QUEUED})
    assert [request.method for request in requests] == ["PATCH"]


def test_a_transient_failure_followed_by_success_returns_the_answer(supabase: SupabaseStack) -> None:
    # the first request meets a database outage, the retry finds the database back
    good = supabase.subset.conninfo
    supabase.subset.conninfo = supabase.cluster.conninfo("no_such_database", user="authenticator")
    supabase.subset.close()  # drop pooled connections so the next request really reconnects
    requests: list[httpx.Request] = []

    def restore(_response: httpx.Response) -> None:
        supabase.subset.conninfo = good

    http = httpx.Client(timeout=5, event_hooks={"request": [requests.append], "response": [restore]})
    _opened.append(http)
    store = SupabaseJobStore(supabase.url, supabase.service_key, http_client=http, backoff_s=0.01)
    try:
        assert store.get("job_missing") is None
        assert len(requests) == 2
    finally:
        supabase.subset.conninfo = good


def test_an_unexpected_rejection_is_a_store_error_not_a_client_error(store: SupabaseJobStore) -> None:
    job = store.create(make_job())

    def bad_status():  # the status check constraint (23514): the state machine never asks for this
        return store.client.table("jobs").update({"status": "exploded"}).eq("id", job.id).execute()

    with pytest.raises(StoreError, match="23514"):
        store._call("forcing a bad status", bad_status, idempotent=False)
    assert store.get(job.id).status is JobStatus.QUEUED


# --- the API gateway in front of PostgREST ------------------------------------------------------------------------


@pytest.fixture
def gateway(supabase: SupabaseStack) -> Iterator[postgrest.PostgrestSubset]:
    """The stack's server answering as Supabase's gateway does (tests/support/postgrest.py), reset afterwards."""
    subset = supabase.subset
    subset.gateway_keys = frozenset({supabase.service_key, supabase.anon_key})
    try:
        yield subset
    finally:
        subset.gateway_keys = None
        subset.gateway_faults.clear()


def test_a_key_the_gateway_refuses_is_store_unavailable_naming_the_key_and_not_retried(
    supabase: SupabaseStack, gateway
) -> None:
    requests: list[httpx.Request] = []
    # a well-formed service_role JWT, but not this project's key: the gateway answers 401 without a PostgREST code
    other_project_key = postgrest.mint_jwt(JWT_SECRET, "service_role", ref="another-project")
    store = make_store(supabase.url, other_project_key, requests=requests, backoff_s=0)

    with pytest.raises(StoreUnavailable, match="SUPABASE_KEY") as raised:
        store.get("job_x")

    assert raised.value.status_code == 503
    assert "Invalid API key" in raised.value.message
    assert len(requests) == 1


@pytest.mark.parametrize(
    "fault", [postgrest.BAD_GATEWAY_HTML, postgrest.UPSTREAM_INVALID_JSON, postgrest.UPSTREAM_TIMEOUT_JSON]
)
def test_a_gateway_5xx_is_retried_for_reads_and_the_answer_then_returned(
    supabase: SupabaseStack, gateway, fault
) -> None:
    requests: list[httpx.Request] = []
    store = make_store(supabase.url, supabase.service_key, requests=requests, max_attempts=3, backoff_s=0.01)
    job = store.create(make_job())
    requests.clear()
    gateway.gateway_faults += [fault, fault]

    assert store.get(job.id) == job
    assert len(requests) == 3


def test_a_gateway_5xx_past_the_attempts_is_store_unavailable_and_a_write_is_not_repeated(
    supabase: SupabaseStack, gateway
) -> None:
    requests: list[httpx.Request] = []
    store = make_store(supabase.url, supabase.service_key, requests=requests, max_attempts=3, backoff_s=0.01)
    gateway.gateway_faults += [postgrest.UPSTREAM_INVALID_JSON] * 4

    with pytest.raises(StoreUnavailable, match="502"):  # a HEAD answer has no body: the status is the code
        store.count(statuses={JobStatus.QUEUED})
    assert len(requests) == 3
    requests.clear()
    with pytest.raises(StoreUnavailable):
        store.update("job_x", JobChanges(status=JobStatus.STARTING), expected={JobStatus.QUEUED})
    assert [request.method for request in requests] == ["PATCH"]
