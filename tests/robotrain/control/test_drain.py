from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from robotrain.control.drain import Drainer, parse_message
from robotrain.errors import LaunchError, QueueUnavailable, StoreUnavailable
from robotrain.jobs.lifecycle import apply_transition, job_message
from robotrain.jobs.models import Job, JobStatus
from robotrain.jobs.service import JobService
from robotrain.ports import Components
from tests.support.components import FakeLauncher, fast_spec, make_components
from tests.support.round_trips import counting_round_trips

S = JobStatus


def setup(tmp_path: Path, **settings) -> tuple[Components, JobService, Drainer, FakeLauncher]:
    launcher = FakeLauncher()
    components = make_components(tmp_path, launcher, **settings)
    return components, JobService(components), Drainer(components, launch_backoff_base_s=0), launcher


def lenient_submitter(components: Components) -> JobService:
    """A JobService whose submit-time cap on unfinished jobs is high, so a user can have more jobs queued than the
    drain's per-user running cap lets run: the case the drain must hold."""
    lenient = components.settings.model_copy(update={"max_active_jobs_per_user": 100})
    return JobService(replace(components, settings=lenient))


def queue_depth(components: Components) -> int:
    return components.queue.approximate_depth() + components.queue.approximate_in_flight()


def test_a_queued_job_is_claimed_launched_and_its_message_deleted(tmp_path: Path) -> None:
    components, service, drainer, launcher = setup(tmp_path)
    job = service.submit("alice", fast_spec())
    report = drainer.drain_once()
    assert report.launched == [job.id]
    assert launcher.launched == [(job.id, 1)]
    stored = components.store.get(job.id)
    assert (stored.status, stored.attempt, stored.launch_handle) == (S.STARTING, 1, f"fake:{job.id}:1")
    assert queue_depth(components) == 0


def test_duplicate_messages_lead_to_one_claim(tmp_path: Path) -> None:
    components, service, drainer, launcher = setup(tmp_path, max_concurrent_jobs=5)
    job = service.submit("alice", fast_spec())
    components.queue.send(job_message(job.id))
    components.queue.send(job_message(job.id))
    report = drainer.drain_once()
    assert launcher.launched == [(job.id, 1)]
    assert report.skipped == 2 and report.launched == [job.id]
    assert queue_depth(components) == 0
    assert components.store.get(job.id).attempt == 1


def test_a_job_cancelled_before_it_is_claimed_stays_cancelled_and_its_message_goes(tmp_path: Path) -> None:
    components, service, drainer, launcher = setup(tmp_path)
    job = service.submit("alice", fast_spec())
    service.cancel("alice", job.id)
    report = drainer.drain_once()
    assert launcher.launched == [] and report.skipped == 1
    assert components.store.get(job.id).status is S.CANCELLED
    assert queue_depth(components) == 0


def test_a_failed_launch_puts_the_job_back_and_it_is_retried_later(tmp_path: Path) -> None:
    components, service, drainer, launcher = setup(tmp_path)
    launcher.failures.append(LaunchError("no capacity"))
    job = service.submit("alice", fast_spec())
    first = drainer.drain_once()
    assert first.launch_failures == 1 and first.launched == []
    back = components.store.get(job.id)
    assert (back.status, back.attempt, back.launch_handle) == (S.QUEUED, 1, None)
    assert queue_depth(components) == 1  # the message stays, hidden for its backoff (0 s here)
    second = drainer.drain_once()
    assert second.launched == [job.id]
    assert launcher.launched == [(job.id, 2)]
    assert components.store.get(job.id).status is S.STARTING
    reasons = [e.message for e in service.events("alice", job.id) if e.kind == "status"]
    assert reasons[:3] == ["queued", "starting", "queued: launch failed (LaunchError: no capacity)"]


def test_launch_backoff_grows_exponentially_and_is_capped(tmp_path: Path) -> None:
    components = make_components(tmp_path)
    drainer = Drainer(components, launch_backoff_base_s=2, launch_backoff_max_s=20)
    assert [drainer.launch_backoff_s(n) for n in (1, 2, 3, 4, 5)] == [2, 4, 8, 16, 20]


def test_a_job_whose_launch_keeps_failing_ends_failed_after_n_tries(tmp_path: Path) -> None:
    components, service, drainer, launcher = setup(tmp_path, queue_max_receives=3)
    launcher.failures.extend(LaunchError("fork failed") for _ in range(5))
    job = service.submit("alice", fast_spec())
    for _ in range(3):
        drainer.drain_once()
    failed = components.store.get(job.id)
    assert failed.status is S.FAILED and failed.error.code == "launch_failed"
    assert "after 3 tries" in failed.error.message and "fork failed" in failed.error.message
    assert queue_depth(components) == 0 and components.queue.dead_letters() == []
    assert len(launcher.failures) == 2 and launcher.launched == []


def test_an_unclassified_launch_error_fails_the_job_without_retrying(tmp_path: Path) -> None:
    components, service, drainer, launcher = setup(tmp_path)
    launcher.failures.extend([TypeError("launch() got an unexpected keyword"), LaunchError("unused")])
    job = service.submit("alice", fast_spec())
    report = drainer.drain_once()
    assert report.failed == [job.id]
    failed = components.store.get(job.id)
    assert failed.status is S.FAILED and failed.error.code == "launch_failed"
    assert "TypeError" in failed.error.message
    assert len(launcher.failures) == 1  # not retried
    assert queue_depth(components) == 0


def finish(components: Components, job_id: str) -> None:
    job = components.store.get(job_id)
    running = apply_transition(components.store, job, S.RUNNING)
    apply_transition(components.store, running, S.SUCCEEDED, result={})


def test_the_concurrency_cap_holds_and_waiting_jobs_keep_their_deliveries(tmp_path: Path) -> None:
    components, service, drainer, launcher = setup(tmp_path, max_concurrent_jobs=2)
    jobs = [service.submit("alice", fast_spec()) for _ in range(3)]
    report = drainer.drain_once()
    assert report.launched == [jobs[0].id, jobs[1].id]
    assert drainer.drain_once().at_capacity
    assert components.store.get(jobs[2].id).status is S.QUEUED
    # The waiting message was never received, so it cannot drift towards the dead-letter queue.
    waiting = components.queue.receive(max_messages=10, visibility_timeout=0)
    assert [m.receive_count for m in waiting] == [1]
    finish(components, jobs[0].id)
    assert drainer.drain_once().launched == [jobs[2].id]


def test_the_per_user_cap_defers_only_that_users_jobs(tmp_path: Path) -> None:
    components, _, drainer, launcher = setup(tmp_path, max_concurrent_jobs=5, max_running_jobs_per_user=1)
    service = lenient_submitter(components)
    alice = [service.submit("alice", fast_spec()) for _ in range(2)]
    bob = service.submit("bob", fast_spec())
    report = drainer.drain_once()
    assert sorted(report.launched) == sorted([alice[0].id, bob.id])
    assert report.deferred == 1
    assert components.store.get(alice[1].id).status is S.QUEUED


def test_malformed_and_orphan_messages_go_to_the_dead_letter_queue_and_the_drain_goes_on(tmp_path: Path) -> None:
    # visibility 0: a poison message is redelivered at once, so one drain walks it through all its deliveries
    components, service, drainer, launcher = setup(
        tmp_path, queue_visibility_timeout_s=0, queue_max_receives=2, max_concurrent_jobs=10
    )
    bodies = ["not json", '{"job_id": 5}', "[1, 2]", '{"job_id": "../etc"}', job_message("job_" + "0" * 26)]
    for body in bodies:
        components.queue.send(body)
    job = service.submit("alice", fast_spec())
    report = drainer.drain_once()
    assert report.launched == [job.id]
    assert report.poison == 2 * len(bodies)  # each delivered max_receives times, never deleted
    assert components.queue.receive(max_messages=10, visibility_timeout=0) == []  # moved on this receive
    assert sorted(d.body for d in components.queue.dead_letters()) == sorted(bodies)


def test_a_poison_message_naming_a_waiting_job_fails_it_on_its_last_delivery(tmp_path: Path) -> None:
    components, service, drainer, launcher = setup(tmp_path, queue_visibility_timeout_s=0, queue_max_receives=3)
    components.queue = DownQueue(components.queue)  # the job's own message is never sent
    job = service.submit("alice", fast_spec())
    components.queue = components.queue.real
    components.queue.send(f'{{"job_id": "{job.id}", "trailing": ')  # truncated JSON that names the job
    drainer.drain_once()
    failed = components.store.get(job.id)
    assert failed.status is S.FAILED and failed.error.code == "poison_message"
    assert "3 deliveries" in failed.error.message and "dead-letter" in failed.error.message
    assert launcher.launched == []
    assert len(components.queue.dead_letters()) == 1


def test_a_message_whose_handling_raises_does_not_stop_the_drain(tmp_path: Path) -> None:
    components, service, drainer, launcher = setup(tmp_path, max_concurrent_jobs=5)
    bad, good = service.submit("alice", fast_spec()), service.submit("bob", fast_spec())

    class BrokenRow:  # in-repo injection: claiming one job's row raises a bug-class error, not an outage
        def __init__(self, store):
            self._store = store

        def claim_many(self, job_ids, **kwargs):
            if bad.id in job_ids:
                raise ValueError("corrupt row")
            return self._store.claim_many(job_ids, **kwargs)

        def __getattr__(self, name):
            return getattr(self._store, name)

    components.store = BrokenRow(components.store)
    report = drainer.drain_once()
    assert report.launched == [good.id] and report.poison == 1
    assert queue_depth(components) == 1  # the bad one waits for redelivery, then the dead-letter queue


def test_a_job_waiting_for_its_users_cap_never_dead_letters(tmp_path: Path) -> None:
    components, service, drainer, launcher = setup(
        tmp_path, max_concurrent_jobs=5, max_running_jobs_per_user=1, queue_max_receives=2
    )
    drainer = Drainer(components, launch_backoff_base_s=0)
    service = lenient_submitter(components)
    first, second = service.submit("alice", fast_spec()), service.submit("alice", fast_spec())
    assert drainer.drain_once().launched == [first.id]
    for _ in range(4):  # the waiting message is re-received again and again while alice is at her cap
        for message in components.queue.receive(max_messages=10, visibility_timeout=0):
            components.queue.change_visibility(message.receipt_handle, 0)
        drainer.drain_once()
    assert components.queue.dead_letters() == []
    finish(components, first.id)
    assert drainer.drain_once().launched == [second.id]


def test_parse_message_accepts_only_what_the_service_sends() -> None:
    assert parse_message(job_message("job_01hzzzzzzzzzzzzzzzzzzzzzzz")) == "job_01hzzzzzzzzzzzzzzzzzzzzzzz"
    assert parse_message('{"job_id": "job_x"}') is None
    assert parse_message("\udcff") is None


def test_a_job_cancelled_while_it_launches_has_its_worker_stopped(tmp_path: Path) -> None:
    components, service, drainer, launcher = setup(tmp_path)

    class CancelDuringLaunch(FakeLauncher):
        def launch(self, job: Job) -> str:
            handle = super().launch(job)
            service.cancel(job.user_id, job.id)
            return handle

    components.launcher = racing = CancelDuringLaunch()
    drainer = Drainer(components)
    job = service.submit("alice", fast_spec())
    report = drainer.drain_once()
    assert report.launched == []
    assert racing.cancelled == [f"fake:{job.id}:1"]
    assert components.store.get(job.id).status is S.CANCELLED
    assert queue_depth(components) == 0


class DownQueue:
    """Fails every send (the queue is unreachable); `real` is the queue underneath."""

    def __init__(self, queue):
        self.real = queue

    def send(self, body: str) -> str:
        raise QueueUnavailable("queue down")

    def __getattr__(self, name):
        return getattr(self.real, name)


class StoreDownOnClaim:
    def __init__(self, store):
        self._store = store

    def claim_many(self, job_ids, **kwargs):
        raise StoreUnavailable("store down")

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_a_store_outage_ends_the_drain_and_leaves_the_messages(tmp_path: Path) -> None:
    components, service, drainer, launcher = setup(tmp_path)
    job = service.submit("alice", fast_spec())
    real_store = components.store
    components.store = StoreDownOnClaim(real_store)
    report = drainer.drain_once()
    assert report.launched == [] and report.deferred == 1
    assert queue_depth(components) == 1  # back after its visibility timeout
    components.store = real_store
    assert real_store.get(job.id).status is S.QUEUED


def test_with_one_delivery_allowed_the_first_launch_error_is_final(tmp_path: Path) -> None:
    components, service, drainer, launcher = setup(tmp_path, queue_max_receives=1)
    launcher.failures.append(LaunchError("down"))
    job = service.submit("alice", fast_spec())
    drainer.drain_once()
    assert components.store.get(job.id).status is S.FAILED


# --- a drain kicked for a job ---------------------------------------------------------------------------------------


def test_a_drain_kicked_for_a_job_whose_message_is_not_visible_yet_waits_for_it(tmp_path: Path) -> None:
    components, service, _, launcher = setup(tmp_path)
    job = service.submit("alice", fast_spec())
    components.queue.receive(max_messages=1, visibility_timeout=1)  # not visible for a second (held elsewhere)

    report = Drainer(components, kick_wait_s=30).drain_once(wait_for=job.id)

    assert report.launched == [job.id] and report.waited_for_seen
    assert launcher.launched == [(job.id, 1)]


def test_a_drain_kicked_for_a_job_already_claimed_does_not_wait(tmp_path: Path) -> None:
    components, service, drainer, _ = setup(tmp_path, max_concurrent_jobs=5)
    job = service.submit("alice", fast_spec())
    assert drainer.drain_once().launched == [job.id]  # an earlier drain took it

    report = Drainer(components, kick_wait_s=30).drain_once(wait_for=job.id)

    assert (report.receives, report.received, report.waited_for_seen) == (1, 0, False)


def test_a_kicked_drain_stops_waiting_when_its_bound_passes(tmp_path: Path) -> None:
    components, service, _, launcher = setup(tmp_path)
    job = service.submit("alice", fast_spec())
    components.queue.receive(max_messages=1, visibility_timeout=600)  # its message is away for long
    clock = iter([0.0, 0.0, 31.0, 31.0, 31.0])  # the deadline, the first check, then past the bound

    report = Drainer(components, kick_wait_s=30, clock=lambda: next(clock)).drain_once(wait_for=job.id)

    assert (report.launched, report.waited_for_seen, report.receives) == ([], False, 2)
    assert components.store.get(job.id).status is S.QUEUED


def test_each_batch_of_ten_costs_two_store_calls_and_two_queue_calls(tmp_path: Path) -> None:
    components, _, drainer, launcher = setup(tmp_path, max_concurrent_jobs=30, max_running_jobs_per_user=30)
    service = lenient_submitter(components)
    jobs = [service.submit(f"user_{i % 3}", fast_spec()) for i in range(25)]
    with counting_round_trips(components) as trips:
        report = drainer.drain_once()
    assert sorted(report.launched) == sorted(job.id for job in jobs)
    # store: the first count, then per batch (10, 10, 5) one claim and one record of the launches;
    # queue: per batch one receive and one delete, and the receive that finds the queue empty
    assert (len(trips.store), len(trips.queue)) == (1 + 2 * 3, 2 * 3 + 1), trips
    assert queue_depth(components) == 0
