"""LocalJobQueue: the shared queue contract, plus what only a SQLite file shared by processes can show."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from robotrain.adapters.local_queue import LocalJobQueue
from robotrain.errors import QueueUnavailable
from tests.robotrain.adapters.queue_contract import JobQueueContract


class TestLocalJobQueue(JobQueueContract):
    @pytest.fixture
    def queue(self, tmp_path: Path):
        queue = LocalJobQueue(
            tmp_path / "queue.sqlite3",
            max_receives=self.max_receives,
            visibility_timeout_s=self.default_visibility_timeout_s,
        )
        yield queue
        queue.close()


@pytest.fixture
def queue_path(tmp_path: Path) -> Path:
    return tmp_path / "queue.sqlite3"


def _receive_until_empty(path: str, name: str, start, results) -> None:
    queue = LocalJobQueue(Path(path), visibility_timeout_s=60)
    start.wait(timeout=30)
    received: list[str] = []
    while batch := queue.receive(max_messages=2):
        received += [message.message_id for message in batch]
    results.put((name, received))
    queue.close()


def test_two_processes_never_receive_the_same_message_within_its_visibility_timeout(queue_path: Path) -> None:
    queue = LocalJobQueue(queue_path)
    sent = {queue.send(f'{{"job_id": "job_{i}"}}') for i in range(200)}
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    processes = [
        context.Process(target=_receive_until_empty, args=(str(queue_path), name, start, results))
        for name in ("drain-a", "drain-b")
    ]
    for process in processes:
        process.start()
    start.set()
    by_process = dict(results.get(timeout=60) for _ in processes)
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    a, b = by_process["drain-a"], by_process["drain-b"]
    assert not set(a) & set(b)
    assert len(a) + len(b) == len(sent) and set(a) | set(b) == sent
    queue.close()


def test_dead_letters_keep_the_message_id_body_and_receive_count(queue_path: Path) -> None:
    queue = LocalJobQueue(queue_path, max_receives=1)
    message_id = queue.send("poison")
    message = queue.receive()[0]
    queue.change_visibility(message.receipt_handle, 0)
    assert queue.receive() == []
    [letter] = queue.dead_letters()
    assert (letter.message_id, letter.body, letter.receive_count) == (message_id, "poison", 1)
    assert letter.sent_at <= letter.moved_at


def test_depth_counts_visible_and_in_flight_messages_separately(queue_path: Path) -> None:
    queue = LocalJobQueue(queue_path)
    for i in range(3):
        queue.send(f"m{i}")
    queue.receive(max_messages=1)
    assert (queue.approximate_depth(), queue.approximate_in_flight()) == (2, 1)


def test_queues_with_different_names_share_a_file_but_not_messages(queue_path: Path) -> None:
    jobs = LocalJobQueue(queue_path, name="jobs")
    other = LocalJobQueue(queue_path, name="other")
    jobs.send("for jobs")
    assert other.receive() == []
    message = jobs.receive()[0]
    assert other.delete([message.receipt_handle]) == [message.receipt_handle]
    assert jobs.delete([message.receipt_handle]) == []


def test_deleting_with_a_handle_twice_reports_the_second_as_failed(queue_path: Path) -> None:
    queue = LocalJobQueue(queue_path)
    queue.send("once")
    handle = queue.receive()[0].receipt_handle
    assert queue.delete([handle]) == []
    assert queue.delete([handle]) == [handle]


def test_the_queue_survives_reopening(queue_path: Path) -> None:
    first = LocalJobQueue(queue_path)
    message_id = first.send("durable")
    first.close()
    second = LocalJobQueue(queue_path)
    assert [m.message_id for m in second.receive()] == [message_id]


def test_a_lock_held_past_busy_timeout_raises_queue_unavailable(queue_path: Path) -> None:
    queue = LocalJobQueue(queue_path, busy_timeout_ms=100)
    blocker = sqlite3.connect(queue_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(QueueUnavailable, match="unavailable"):
            queue.send("blocked")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    queue.send("unblocked")


@pytest.mark.parametrize("arguments", [{"max_receives": 0}, {"visibility_timeout_s": -1}])
def test_the_constructor_refuses_impossible_settings(queue_path: Path, arguments: dict) -> None:
    with pytest.raises(ValueError):
        LocalJobQueue(queue_path, **arguments)
