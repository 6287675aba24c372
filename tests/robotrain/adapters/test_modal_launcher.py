"""ModalLauncher at its seam. Modal cannot run here (no account, no network), so the fake spawnable function and
FunctionCalls of tests/support/modal_fakes.py stand in for it; they record exactly what the launcher asks of Modal."""

from __future__ import annotations

from datetime import UTC, datetime

import modal.exception
import pytest

from robotrain.adapters.modal_launcher import TIMEOUT_GRACE_S, ModalLauncher
from robotrain.errors import LaunchError
from robotrain.jobs.models import Job, JobStatus
from tests.support.modal_fakes import FakeFunction
from training.spec import MAX_TIMEOUT_MINUTES


def a_job(compute: dict | None = None, attempt: int = 1) -> Job:
    now = datetime.now(UTC)
    spec = {"policy": {"type": "mlp"}, "dataset": {"uri": "builtin://push2d"}}
    if compute is not None:
        spec["compute"] = compute
    return Job(
        id="job_abc",
        user_id="u",
        name="n",
        status=JobStatus.STARTING,
        spec=spec,
        attempt=attempt,
        created_at=now,
        updated_at=now,
    )


@pytest.fixture
def train() -> FakeFunction:
    return FakeFunction()


@pytest.fixture
def launcher(train: FakeFunction) -> ModalLauncher:
    return ModalLauncher(train, default_gpu="A10G", function_call_from_id=lambda handle: train.calls[handle])


def test_launch_spawns_the_attempt_with_the_jobs_gpu_and_timeout(launcher, train):
    handle = launcher.launch(a_job({"gpu": "H100", "timeout_minutes": 30}, attempt=2))

    assert handle == "fc-1"
    assert train.options == [{"gpu": "H100", "timeout": 30 * 60 + TIMEOUT_GRACE_S}]
    assert train.spawned == [("job_abc", 2)]


def test_launch_falls_back_to_the_default_gpu_and_timeout(launcher, train):
    launcher.launch(a_job())
    launcher.launch(a_job({"gpu": None}))

    assert train.options == [{"gpu": "A10G", "timeout": 60 * 60 + TIMEOUT_GRACE_S}] * 2


# Modal's own exception types (modal.exception.Error is not an OSError): what the platform raises when it cannot be
# asked right now is a LaunchError, which the drain retries with backoff.
@pytest.mark.parametrize(
    "error",
    [
        modal.exception.ConnectionError("connection reset"),
        modal.exception.ServiceError("unavailable"),
        modal.exception.InternalError("internal"),
        modal.exception.ResourceExhaustedError("rate limited"),
    ],
)
def test_a_transient_spawn_error_is_a_launch_error(launcher, train, error):
    train.spawn_errors.append(error)

    with pytest.raises(LaunchError, match=type(error).__name__):
        launcher.launch(a_job())

    assert launcher.launch(a_job()) == "fc-1"  # the next try goes through


@pytest.mark.parametrize(
    "error", [modal.exception.InvalidError("Invalid GPU config"), modal.exception.NotFoundError("not deployed")]
)
def test_a_permanent_spawn_error_is_not_retried(launcher, train, error):
    train.spawn_errors.append(error)

    with pytest.raises(type(error)):
        launcher.launch(a_job())


def test_a_call_that_has_not_finished_is_alive(launcher, train):
    handle = launcher.launch(a_job())
    train.calls[handle].outcome = TimeoutError()

    assert launcher.is_alive(handle) is True


def test_a_finished_call_is_not_alive(launcher, train):
    handle = launcher.launch(a_job())

    assert launcher.is_alive(handle) is False


@pytest.mark.parametrize(
    "outcome",
    [modal.exception.OutputExpiredError("gone"), modal.exception.FunctionTimeoutError("slow"), RuntimeError("boom")],
)
def test_a_call_that_failed_expired_or_timed_out_is_not_alive(launcher, train, outcome):
    handle = launcher.launch(a_job())
    train.calls[handle].outcome = outcome

    assert launcher.is_alive(handle) is False


@pytest.mark.parametrize(
    "outcome",
    [
        modal.exception.ConnectionError("unreachable"),
        modal.exception.ServiceError("unavailable"),
        modal.exception.AuthError("token revoked"),
    ],
)
def test_when_modal_cannot_be_asked_liveness_is_unknown(launcher, train, outcome):
    handle = launcher.launch(a_job())
    train.calls[handle].outcome = outcome

    assert launcher.is_alive(handle) is None


@pytest.mark.parametrize("outcome", [KeyboardInterrupt(), SystemExit(1), modal.exception.InputCancellation()])
def test_a_call_that_died_of_a_base_exception_is_not_alive(launcher, train, outcome):
    # get() re-raises the worker's own exception here; a preempted worker dies of SIGINT's KeyboardInterrupt.
    handle = launcher.launch(a_job())
    train.calls[handle].outcome = outcome

    assert launcher.is_alive(handle) is False


def test_cancel_terminates_the_container(launcher, train):
    handle = launcher.launch(a_job())

    launcher.cancel(handle)

    assert train.calls[handle].cancelled_with == [True]


def test_a_transient_cancel_error_is_a_launch_error(launcher, train):
    handle = launcher.launch(a_job())
    train.calls[handle].cancel_error = modal.exception.ServiceError("unavailable")

    with pytest.raises(LaunchError):
        launcher.cancel(handle)


def test_the_longest_timeout_a_spec_allows_launches_within_modals_24_hour_cap(launcher, train):
    launcher.launch(a_job({"timeout_minutes": MAX_TIMEOUT_MINUTES}))

    assert train.options[0]["timeout"] <= 24 * 60 * 60
