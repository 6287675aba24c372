"""Faults in the store, the queue and the launcher, and races between users and the drain, on the in-process stack
(real SQLite store and queue, real training on worker threads). Each test ends with assert_truthful: no job lost,
none run twice, every job terminal with a truthful status and error."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from robotrain.adapters.local_queue import LocalJobQueue
from robotrain.adapters.sqlite_store import SqliteJobStore
from robotrain.auth.local_keys import LocalKeys
from robotrain.control.drain import Drainer
from robotrain.control.loop import Dispatcher
from robotrain.errors import LaunchError, QueueUnavailable, StoreUnavailable
from robotrain.jobs.lifecycle import job_message
from robotrain.jobs.models import JobChanges, JobStatus, utcnow
from robotrain.ports import Components
from tests.faults.harness import TrainingRuns, assert_truthful, build_stack, tiny_spec
from tests.faults.injection import FailOn, Intercept, Outage
from tests.support.app import api_app

S = JobStatus


def test_queue_down_at_submit_jobs_are_accepted_and_run_once_it_is_back(tmp_path: Path, runs: TrainingRuns) -> None:
    outage = {}

    def queue_down(components):
        outage["queue"] = components.queue = Outage(components.queue, lambda: QueueUnavailable("connection refused"))

    stack = build_stack(tmp_path, runs, wrap=queue_down)
    queue = outage["queue"]
    queue.down = True
    app = api_app(stack.components)
    token = LocalKeys(stack.components.settings.data_dir).mint("alice")
    with TestClient(app) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"store": "ok", "queue": "unavailable"}
        assert client.get("/healthz").status_code == 200  # alive, just not ready
        spec = tiny_spec().model_dump(mode="json")
        answers = [client.post("/jobs", json=spec, headers={"Authorization": f"Bearer {token}"}) for _ in range(3)]
        assert [a.status_code for a in answers] == [202, 202, 202], [a.text for a in answers]
        ids = [a.json()["id"] for a in answers]
        stack.tick()  # the sweep tries to re-send while the queue is still down: nothing is lost
        assert all(stack.store.get(job_id).enqueued_at is None for job_id in ids)
        queue.down = False
        assert client.get("/readyz").json() == {"status": "ready", "checks": {"store": "ok", "queue": "ok"}}
    stack.run_until_terminal(ids)
    assert_truthful(stack.store, {job_id: (S.SUCCEEDED, None) for job_id in ids}, runs, {i: 1 for i in ids})


def test_store_down_during_a_drain_leaves_the_messages_and_the_next_drains_finish(
    tmp_path: Path, runs: TrainingRuns
) -> None:
    faulty = {}

    def store_down(components):
        # the 1st batch claim and the 3rd read of a job fail as an unreachable store does; metrics writes blink too
        faulty["store"] = components.store = FailOn(
            components.store,
            lambda: StoreUnavailable("database is locked"),
            claim_many={1},
            get={3},
            append_metrics={1, 2},
        )

    stack = build_stack(tmp_path, runs, wrap=store_down)
    ids = [stack.service.submit("alice", tiny_spec()).id for _ in range(3)]
    first = stack.dispatcher.drain_once()
    assert first.launched == [] and first.deferred >= 1  # the outage ended that drain; the messages stay
    stack.run_until_terminal(ids)
    # the failed claim, then at least two batches (two slots: max_concurrent_jobs=2 leaves the third job for later)
    assert faulty["store"].calls["claim_many"] >= 3 and faulty["store"].calls["append_metrics"] > 2
    assert_truthful(stack.store, {job_id: (S.SUCCEEDED, None) for job_id in ids}, runs, {i: 1 for i in ids})


def test_a_launcher_that_raises_is_retried_with_backoff_then_fails_the_job(tmp_path: Path, runs: TrainingRuns) -> None:
    faulty = {}

    def launcher_raises(components):
        # launches 1-2 fail (the first job then starts on its 3rd try); from the 4th on every launch fails
        faulty["launcher"] = components.launcher = FailOn(
            components.launcher, lambda: LaunchError("no capacity"), launch={1, 2, *range(4, 100)}
        )

    stack = build_stack(tmp_path, runs, wrap=launcher_raises, queue_max_receives=3)
    lucky = stack.service.submit("alice", tiny_spec()).id
    stack.run_until_terminal([lucky])
    unlucky = stack.service.submit("alice", tiny_spec()).id
    stack.run_until_terminal([unlucky])
    assert_truthful(stack.store, {lucky: (S.SUCCEEDED, None), unlucky: (S.FAILED, "launch_failed")}, runs, {lucky: 1})
    failed = stack.store.get(unlucky)
    assert "after 3 tries" in failed.error.message and "no capacity" in failed.error.message
    assert stack.store.get(lucky).attempt == 3  # each try was its own attempt; only the last one ran


def test_the_same_message_delivered_three_times_to_two_dispatchers_runs_once(
    tmp_path: Path, runs: TrainingRuns
) -> None:
    stack = build_stack(tmp_path, runs, max_concurrent_jobs=4)
    ids = [stack.service.submit("alice", tiny_spec()).id for _ in range(2)]
    for job_id in ids:
        for _ in range(2):
            stack.components.queue.send(job_message(job_id))  # three deliveries of each job in all
    # A second dispatcher with its own connections to the same files, as another process would have.
    mine = stack.components
    other = Components(
        settings=mine.settings,
        store=SqliteJobStore(mine.store.path),
        queue=LocalJobQueue(mine.queue.path, max_receives=mine.queue.max_receives, visibility_timeout_s=1),
        launcher=mine.launcher,
        artifacts=mine.artifacts,
    )
    second = Dispatcher(other, drainer=Drainer(other, launch_backoff_base_s=0))
    barrier = threading.Barrier(2)

    def drain(dispatcher: Dispatcher) -> None:
        barrier.wait()
        for _ in range(5):
            dispatcher.drain_once()

    threads = [threading.Thread(target=drain, args=(d,)) for d in (stack.dispatcher, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    stack.run_until_terminal(ids)
    assert_truthful(stack.store, {job_id: (S.SUCCEEDED, None) for job_id in ids}, runs, {i: 1 for i in ids})
    assert all(stack.store.get(job_id).attempt == 1 for job_id in ids)


def test_a_cancel_racing_with_the_claim_wins_and_nothing_trains(tmp_path: Path, runs: TrainingRuns) -> None:
    stack = build_stack(tmp_path, runs)
    cancel = stack.service.cancel
    real_store = stack.components.store
    # Job `before` is cancelled just before the drain claims its batch.
    before = stack.service.submit("alice", tiny_spec())
    stack.components.store = Intercept(real_store, before={"claim_many": lambda: cancel("alice", before.id)})
    assert stack.dispatcher.drain_once().skipped == 1
    # Job `after` is cancelled right after its claim, before its launch: the drain then finds it cancelled when it
    # records the handle, and stops that worker, which in any case loses its starting -> running compare-and-set.
    after = stack.service.submit("alice", tiny_spec())
    stack.components.store = Intercept(real_store, after={"claim_many": lambda claimed: cancel("alice", after.id)})
    assert stack.dispatcher.drain_once().launched == []
    stack.components.store = real_store
    jobs = stack.run_until_terminal([before.id, after.id])
    assert_truthful(stack.store, {before.id: (S.CANCELLED, None), after.id: (S.CANCELLED, None)}, runs, {})
    assert jobs[0].attempt == 0 and jobs[1].attempt == 1
    launcher = stack.components.launcher
    for job in (real_store.get(after.id),):
        assert job.launch_handle is None or launcher.is_alive(job.launch_handle) is False
    assert stack.components.queue.approximate_depth() + stack.components.queue.approximate_in_flight() == 0


def test_a_job_past_its_timeout_fails_with_timeout_and_its_worker_stops(tmp_path: Path, runs: TrainingRuns) -> None:
    stack = build_stack(tmp_path, runs)
    job = stack.service.submit("alice", tiny_spec(steps=1_000_000, checkpoint_every=50).model_copy(
        update={"compute": tiny_spec().compute.model_copy(update={"timeout_minutes": 1})}
    ))  # fmt: skip
    stack.run_until(lambda: stack.store.get(job.id).progress.step > 0, 60)
    # The injected fault: the attempt has run for 10 minutes (as if its worker could not enforce its own deadline).
    stack.store.update(job.id, JobChanges(started_at=utcnow() - timedelta(minutes=10)), expected={S.RUNNING})
    stack.run_until_terminal([job.id])
    assert_truthful(stack.store, {job.id: (S.FAILED, "timeout")}, runs, {job.id: 1})
    handle = stack.store.get(job.id).launch_handle
    stack.run_until(lambda: handle is None or stack.components.launcher.is_alive(handle) is False, 30)
    stack.run_until(lambda: stack.store.get(job.id).launch_handle is None, 10)  # the sweep recorded the release
    assert any(e.message.startswith("compute released") for e in stack.store.list_events(job.id))


def test_poison_messages_dead_letter_and_the_job_they_name_fails_truthfully(tmp_path: Path, runs: TrainingRuns) -> None:
    stack = build_stack(tmp_path, runs, queue_visibility_timeout_s=0, queue_max_receives=2, max_concurrent_jobs=4)
    queue = stack.components.queue
    healthy = stack.service.submit("alice", tiny_spec()).id
    named = stack.service.submit("bob", tiny_spec()).id
    stack.store.update(named, JobChanges(enqueued_at=utcnow()), expected={S.QUEUED})
    # Bob's own message is lost and a damaged one naming his job arrives instead; plus plain garbage.
    for message in queue.receive(max_messages=10, visibility_timeout=0):
        if named in message.body:
            queue.delete([message.receipt_handle])
    queue.send(f'{{"job_id": "{named}"')
    queue.send("\x00garbage")
    stack.run_until_terminal([healthy, named])
    assert_truthful(stack.store, {healthy: (S.SUCCEEDED, None), named: (S.FAILED, "poison_message")}, runs,
                    {healthy: 1})  # fmt: skip
    assert len(queue.dead_letters()) == 2


def test_a_submit_retried_after_a_lost_response_with_its_idempotency_key_runs_once(
    tmp_path: Path, runs: TrainingRuns
) -> None:
    stack = build_stack(tmp_path, runs)
    app = api_app(stack.components)
    auth = {"Authorization": f"Bearer {LocalKeys(stack.components.settings.data_dir).mint('alice')}"}
    spec = tiny_spec().model_dump(mode="json")
    with TestClient(app) as client:
        # The client never saw the first answer (the fault) and sends the same request twice more.
        answers = [client.post("/jobs", json=spec, headers=auth | {"Idempotency-Key": "submit-1"}) for _ in range(3)]
        assert [a.status_code for a in answers] == [202, 202, 202]
        assert len({a.json()["id"] for a in answers}) == 1
        other = client.post("/jobs", json={**spec, "name": "other"}, headers=auth | {"Idempotency-Key": "submit-1"})
        assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
        assert len(client.get("/jobs", headers=auth).json()["data"]) == 1
    job_id = answers[0].json()["id"]
    stack.run_until_terminal([job_id])
    assert_truthful(stack.store, {job_id: (S.SUCCEEDED, None)}, runs, {job_id: 1})
