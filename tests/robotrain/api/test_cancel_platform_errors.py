"""POST /jobs/{id}/cancel when the platform fails to stop the worker: the job is cancelled (the decision is made and
recorded first), the answer is never a 5xx, and the sweep's compute-release pass asks the platform again. The
launcher is the real ModalLauncher over the Modal fakes of tests/support/modal_fakes.py (Modal cannot run here),
raising Modal's own exception types."""

from __future__ import annotations

import modal.exception
import pytest
from fastapi.testclient import TestClient

from robotrain.adapters.modal_launcher import ModalLauncher
from robotrain.control.drain import Drainer
from robotrain.control.sweep import Sweeper
from robotrain.jobs.models import JobStatus
from tests.robotrain.api.conftest import VALID_SPEC
from tests.support.app import api_app
from tests.support.modal_fakes import FakeFunction


@pytest.mark.parametrize(
    "error",
    [
        modal.exception.ServiceError("UNAVAILABLE"),  # transient
        modal.exception.ConnectionError("connection reset by peer"),  # transient
        modal.exception.NotFoundError("function call not found"),  # permanent
        modal.exception.AuthError("token revoked"),  # permanent
    ],
)
def test_cancel_answers_200_when_modal_cannot_stop_the_worker(components, alice, error) -> None:
    train = FakeFunction()
    components.launcher = ModalLauncher(train, default_gpu="A10G", function_call_from_id=train.function_call)
    with TestClient(api_app(components)) as client:
        job_id = client.post("/jobs", json=VALID_SPEC, headers=alice).json()["id"]
        assert Drainer(components).drain_once().launched == [job_id]
        call = train.calls["fc-1"]
        call.outcome, call.cancel_error = TimeoutError(), error  # still running; Modal fails to stop it

        response = client.post(f"/jobs/{job_id}/cancel", headers=alice)

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert components.store.get(job_id).status is JobStatus.CANCELLED

    call.cancel_error = None  # Modal answers again: the sweep stops the worker it still sees running
    assert Sweeper(components, release_grace_s=0).sweep().cancel_retried == [job_id]
    assert call.cancelled_with == [True]
