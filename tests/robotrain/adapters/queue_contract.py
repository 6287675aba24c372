"""The behaviour every JobQueue adapter must show (SQS semantics, services.md §3), as a reusable pytest class.

Use it by subclassing and providing a fresh, empty queue built with the class's `max_receives` and
`default_visibility_timeout_s`:

    class TestLocalJobQueue(JobQueueContract):
        @pytest.fixture
        def queue(self, tmp_path):
            return LocalJobQueue(tmp_path / "queue.sqlite3", max_receives=self.max_receives,
                                 visibility_timeout_s=self.default_visibility_timeout_s)

Override `dead_letter_bodies` when the adapter's dead letters are read another way (an SQS subclass reads its DLQ).
Set `stale_receipt_handles_rejected = False` with a `stale_receipt_handles_skip_reason` where the backend cannot
tell an old receipt handle from the latest one (moto deletes with a stale handle; AWS "may" ignore it; §3.4): the
tests marked below then skip with that reason.

Timing uses real clocks and short visibility timeouts (1 s) because the backends (moto included) use wall time; those
tests are marked `realtime`. Their lower bounds (it waited at least this long) hold on any machine; their upper bounds
are far from what they guard against (a receive that waits out a 20 s long poll), never a guess at how fast it runs.
"""

from __future__ import annotations

import threading
import time

import pytest

from robotrain.ports import MAX_MESSAGE_BYTES, JobQueue, MessageTooLarge, QueueMessage, ReceiptHandleInvalid


class JobQueueContract:
    max_receives = 2
    default_visibility_timeout_s = 30
    stale_receipt_handles_rejected = True
    stale_receipt_handles_skip_reason = ""

    @pytest.fixture
    def queue(self) -> JobQueue:
        """A fresh, empty queue with `self.max_receives` and `self.default_visibility_timeout_s`. Override it."""
        raise NotImplementedError

    def test_ping_answers_when_the_queue_is_reachable(self, queue: JobQueue) -> None:
        queue.ping()

    def dead_letter_bodies(self, queue: JobQueue) -> list[str]:
        """The bodies that ended in the dead-letter queue."""
        return [letter.body for letter in queue.dead_letters()]

    def _requires_stale_handle_rejection(self) -> None:
        if not self.stale_receipt_handles_rejected:
            pytest.skip(self.stale_receipt_handles_skip_reason or "the backend cannot reject stale receipt handles")

    @staticmethod
    def _receive_one(queue: JobQueue, **kwargs) -> QueueMessage:
        messages = queue.receive(max_messages=1, **kwargs)
        assert len(messages) == 1, messages
        return messages[0]

    # --- send / receive --------------------------------------------------------------------------------------

    def test_send_then_receive_returns_the_body_with_the_sent_id(self, queue: JobQueue) -> None:
        body = '{"job_id": "job_01abc", "note": "ünïcødé ✓"}'
        message_id = queue.send(body)
        message = self._receive_one(queue, wait_seconds=1)
        assert (message.message_id, message.body, message.receive_count) == (message_id, body, 1)
        assert message.receipt_handle

    @pytest.mark.realtime
    def test_receiving_from_an_empty_queue_returns_nothing_without_waiting(self, queue: JobQueue) -> None:
        started = time.monotonic()
        assert queue.receive(wait_seconds=0) == []
        assert time.monotonic() - started < 10  # not a long poll (up to 20 s)

    def test_the_default_visibility_timeout_hides_a_received_message(self, queue: JobQueue) -> None:
        queue.send("hidden")
        self._receive_one(queue, wait_seconds=1)
        assert queue.receive(max_messages=10) == []

    @pytest.mark.realtime
    def test_a_message_not_deleted_comes_back_after_its_visibility_timeout(self, queue: JobQueue) -> None:
        message_id = queue.send("comes back")
        first = self._receive_one(queue, wait_seconds=1, visibility_timeout=1)
        started = time.monotonic()
        assert queue.receive(max_messages=10) == []
        again = self._receive_one(queue, wait_seconds=5, visibility_timeout=30)
        assert time.monotonic() - started > 0.5
        assert (again.message_id, again.body, again.receive_count) == (message_id, "comes back", 2)
        assert again.receipt_handle != first.receipt_handle

    def test_a_batch_receive_returns_at_most_ten_and_every_message_once(self, queue: JobQueue) -> None:
        sent = {queue.send(f"message {i}"): f"message {i}" for i in range(12)}
        received: dict[str, str] = {}
        for _ in range(20):
            batch = queue.receive(max_messages=10, wait_seconds=1)
            assert len(batch) <= 10
            for message in batch:
                assert message.message_id not in received
                received[message.message_id] = message.body
            if len(received) == len(sent):
                break
        assert received == sent

    def test_max_messages_one_returns_one(self, queue: JobQueue) -> None:
        for i in range(3):
            queue.send(f"m{i}")
        assert len(queue.receive(max_messages=1, wait_seconds=1)) == 1

    @pytest.mark.parametrize(
        "arguments",
        [{"max_messages": 0}, {"max_messages": 11}, {"visibility_timeout": -1}, {"visibility_timeout": 43_201}]
        + [{"wait_seconds": -1}, {"wait_seconds": 21}],
    )
    def test_receive_refuses_arguments_outside_the_sqs_limits(self, queue: JobQueue, arguments: dict) -> None:
        with pytest.raises(ValueError):
            queue.receive(**arguments)

    # --- delete ----------------------------------------------------------------------------------------------

    @pytest.mark.realtime
    def test_a_deleted_message_is_never_delivered_again(self, queue: JobQueue) -> None:
        queue.send("done")
        message = self._receive_one(queue, wait_seconds=1, visibility_timeout=1)
        assert queue.delete([message.receipt_handle]) == []
        time.sleep(1.5)
        assert queue.receive(max_messages=10) == []

    def test_delete_reports_only_the_unknown_handles_as_failed(self, queue: JobQueue) -> None:
        queue.send("a")
        queue.send("b")
        handles = [m.receipt_handle for m in self._receive_all(queue, 2)]
        bogus = "not-a-receipt-handle"
        assert queue.delete([handles[0], bogus, handles[1]]) == [bogus]
        assert queue.delete([]) == []

    def test_a_stale_handle_does_not_delete_a_message_received_again(self, queue: JobQueue) -> None:
        self._requires_stale_handle_rejection()
        queue.send("received twice")
        first = self._receive_one(queue, wait_seconds=1)
        queue.change_visibility(first.receipt_handle, 0)
        second = self._receive_one(queue, wait_seconds=1)
        assert queue.delete([first.receipt_handle]) == [first.receipt_handle]
        # still there: the latest handle still works
        queue.change_visibility(second.receipt_handle, 0)
        assert queue.delete([second.receipt_handle]) == []

    # --- change visibility -----------------------------------------------------------------------------------

    def test_change_visibility_to_zero_redelivers_at_once(self, queue: JobQueue) -> None:
        message_id = queue.send("retry now")
        first = self._receive_one(queue, wait_seconds=1)
        queue.change_visibility(first.receipt_handle, 0)
        again = self._receive_one(queue, wait_seconds=1)
        assert (again.message_id, again.receive_count) == (message_id, 2)

    @pytest.mark.realtime
    def test_change_visibility_restarts_the_clock_from_now(self, queue: JobQueue) -> None:
        queue.send("keep hidden")
        message = self._receive_one(queue, wait_seconds=1, visibility_timeout=1)
        queue.change_visibility(message.receipt_handle, 30)
        assert queue.receive(max_messages=10, wait_seconds=2) == []

    def test_change_visibility_with_a_stale_handle_raises(self, queue: JobQueue) -> None:
        self._requires_stale_handle_rejection()
        queue.send("received twice")
        first = self._receive_one(queue, wait_seconds=1)
        queue.change_visibility(first.receipt_handle, 0)
        self._receive_one(queue, wait_seconds=1)
        with pytest.raises(ReceiptHandleInvalid):
            queue.change_visibility(first.receipt_handle, 0)

    def test_change_visibility_of_a_deleted_message_raises(self, queue: JobQueue) -> None:
        queue.send("gone")
        message = self._receive_one(queue, wait_seconds=1)
        queue.delete([message.receipt_handle])
        with pytest.raises(ReceiptHandleInvalid):
            queue.change_visibility(message.receipt_handle, 0)

    # --- long polling ----------------------------------------------------------------------------------------

    @pytest.mark.realtime
    def test_long_polling_returns_as_soon_as_a_message_arrives(self, queue: JobQueue) -> None:
        sender = threading.Timer(0.5, queue.send, args=("late arrival",))
        started = time.monotonic()
        sender.start()
        try:
            messages = queue.receive(max_messages=10, wait_seconds=20)
        finally:
            sender.join(timeout=30)
        elapsed = time.monotonic() - started
        assert [m.body for m in messages] == ["late arrival"]
        assert elapsed > 0.4  # it waited for the message...
        assert elapsed < 15  # ...and returned with it, not at the end of the 20 s wait

    @pytest.mark.realtime
    def test_long_polling_an_empty_queue_waits_for_the_whole_wait(self, queue: JobQueue) -> None:
        started = time.monotonic()
        assert queue.receive(wait_seconds=1) == []
        assert time.monotonic() - started >= 0.9

    # --- dead letters ----------------------------------------------------------------------------------------

    def test_a_message_received_more_than_max_receives_times_moves_to_the_dead_letters(self, queue: JobQueue) -> None:
        queue.send("poison")
        for expected_count in range(1, self.max_receives + 1):
            message = self._receive_one(queue, wait_seconds=1)
            assert message.receive_count == expected_count
            queue.change_visibility(message.receipt_handle, 0)
        queue.send("healthy")
        delivered = [m.body for m in queue.receive(max_messages=10, wait_seconds=1)]
        assert delivered == ["healthy"]
        assert self._eventually(lambda: self.dead_letter_bodies(queue) == ["poison"])

    # --- size ------------------------------------------------------------------------------------------------

    def test_the_size_limit_counts_utf8_bytes_not_characters(self, queue: JobQueue) -> None:
        two_byte_body = "é" * 600_000  # 600,000 characters (under 1 MiB) but 1,200,000 bytes (over)
        with pytest.raises(MessageTooLarge):
            queue.send(two_byte_body)
        with pytest.raises(MessageTooLarge):
            queue.send("x" * (MAX_MESSAGE_BYTES + 1))
        assert queue.receive(max_messages=10) == []

    def test_a_body_of_exactly_the_limit_is_accepted(self, queue: JobQueue) -> None:
        body = "é" * (MAX_MESSAGE_BYTES // 2)  # exactly 1,048,576 bytes
        queue.send(body)
        assert self._receive_one(queue, wait_seconds=1).body == body

    # --- concurrency -----------------------------------------------------------------------------------------

    def test_concurrent_receivers_never_get_the_same_message(self, queue: JobQueue) -> None:
        sent = {queue.send(f"job {i}") for i in range(30)}
        received: list[str] = []
        errors: list[Exception] = []
        lock = threading.Lock()

        def drain() -> None:
            try:
                while batch := queue.receive(max_messages=3, visibility_timeout=30, wait_seconds=1):
                    with lock:
                        received.extend(m.message_id for m in batch)
            except Exception as error:  # reported by the assertion below
                errors.append(error)

        threads = [threading.Thread(target=drain) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert sorted(received) == sorted(sent)

    # --- helpers ---------------------------------------------------------------------------------------------

    @staticmethod
    def _receive_all(queue: JobQueue, count: int) -> list[QueueMessage]:
        messages: list[QueueMessage] = []
        for _ in range(10):
            messages += queue.receive(max_messages=10, wait_seconds=1)
            if len(messages) >= count:
                break
        assert len(messages) == count
        return messages

    @staticmethod
    def _eventually(condition, timeout_s: float = 30) -> bool:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True
