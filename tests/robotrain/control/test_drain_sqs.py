"""The drain over the real SqsJobQueue (moto, through an HTTP front that answers as AWS does where moto cannot)."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3

from robotrain.adapters.sqs_queue import SqsJobQueue, create_queue_with_dlq
from robotrain.control.drain import Drainer
from robotrain.jobs.models import JobStatus
from robotrain.jobs.service import JobService
from tests.support.components import fast_spec, make_components
from tests.support.sqs_front import FaultySqsFront

REGION = "us-east-1"
AWS_EXPIRED_HANDLE = (
    "Value AQEBexample for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for "
    "visibility timeout change."
)


def test_an_expired_receipt_handle_while_deferring_a_job_is_not_a_poison_message(tmp_path: Path, aws_env: str):
    client = boto3.client("sqs", endpoint_url=aws_env, region_name=REGION)
    queue_url, _ = create_queue_with_dlq(client, f"drain-{uuid.uuid4().hex[:12]}", max_receive_count=5)
    components = make_components(tmp_path, max_concurrent_jobs=5, max_running_jobs_per_user=1)
    with FaultySqsFront(
        aws_env,
        failures=10,
        status=400,
        code="InvalidParameterValue",
        operation="AmazonSQS.ChangeMessageVisibility",
        message=AWS_EXPIRED_HANDLE,
        fault="Sender",
    ) as front:
        components.queue = SqsJobQueue(queue_url, region=REGION, endpoint_url=front.url)
        service = JobService(components)
        first, held = service.submit("alice", fast_spec()), service.submit("alice", fast_spec())

        report = Drainer(components).drain_once()

        assert front.failed == 1  # the held job's message could not be re-hidden: received again elsewhere
    assert report.launched == [first.id]
    assert (report.deferred, report.poison, report.failed) == (1, 0, [])
    assert components.store.get(held.id).status is JobStatus.QUEUED


def test_the_modal_drain_long_polls_so_a_sampled_empty_answer_does_not_hide_a_waiting_job(
    tmp_path: Path, aws_env: str
) -> None:
    from robotrain.entrypoints import modal as entry
    from robotrain.settings import Settings
    from tests.support.modal_fakes import FakeFunction, FakeVolume

    client = boto3.client("sqs", endpoint_url=aws_env, region_name=REGION)
    queue_url, _ = create_queue_with_dlq(client, f"drain-{uuid.uuid4().hex[:12]}", max_receive_count=5)
    train = FakeFunction()
    with FaultySqsFront(aws_env, failures=0, status=500, code="none", short_polls_answer_empty=True) as front:
        settings = Settings(
            _env_file=None,
            data_dir=tmp_path / "data",
            SQS_QUEUE_URL=queue_url,
            AWS_REGION=REGION,
            AWS_ENDPOINT_URL_SQS=front.url,
        )
        entry._dispatchers.clear()
        try:
            components = entry._container_dispatcher(settings, train=train, volume=FakeVolume()).components
            job = JobService(components).submit("alice", fast_spec())
            short_polled = Drainer(components).drain_once()  # the embedded loop's way: no wait
            assert short_polled.launched == [] and front.short_polls == 1  # the sampled empty answer hid the job

            entry.drain_and_sweep(settings, train=train, volume=FakeVolume())  # the scheduled Modal drain
        finally:
            entry._dispatchers.clear()
    assert train.spawned == [(job.id, 1)]
