"""The job's typed view of its spec: the compute defaults live in one place (training's ComputeSpec)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from robotrain.jobs.models import Job, JobStatus, utcnow
from training.spec import ComputeSpec


def a_job(spec: dict) -> Job:
    now = utcnow()
    return Job(id="job_x", user_id="u", name="n", status=JobStatus.QUEUED, spec=spec, created_at=now, updated_at=now)


MINIMAL = {"policy": {"type": "mlp"}, "dataset": {"uri": "builtin://push2d"}}


def test_a_spec_without_compute_gets_the_specs_defaults() -> None:
    compute = a_job(MINIMAL).compute

    assert compute == ComputeSpec()
    assert compute.timeout_minutes == ComputeSpec.model_fields["timeout_minutes"].default
    assert compute.gpu is None  # the operator's default GPU applies


def test_the_compute_section_as_stored_is_read_typed() -> None:
    job = a_job({**MINIMAL, "compute": {"gpu": "H100", "timeout_minutes": 7}})

    assert (job.compute.gpu, job.compute.timeout_minutes) == ("H100", 7)
    assert job.train_spec.compute == job.compute


def test_a_stored_spec_that_no_longer_validates_raises_when_read_typed() -> None:
    job = a_job({**MINIMAL, "policy": {"type": "transformer-xl"}})

    with pytest.raises(ValidationError):
        _ = job.train_spec
