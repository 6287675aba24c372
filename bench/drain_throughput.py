"""Jobs dispatched per second through SQS (moto's server on 127.0.0.1, started here) by the real Dispatcher with a
no-op launcher, as a ratio to a one-message-at-a-time receive loop (MaxNumberOfMessages=1, one delete per message)
measured in the same run on the same machine.

    .venv/bin/python bench/drain_throughput.py [--jobs 150] [--rounds 2] [--deadline-s 240]

Two comparisons, each on a fresh queue and a fresh SQLite store in a temp dir:
1. drain: Dispatcher.drain_once() until every job is launched, with receives of up to 10 messages, versus the same
   Dispatcher whose queue receives one message per call. The per-job store work (read, claim, record, event) is the
   same in both, so the ratio is what batched receives buy in the real drain.
2. transport: the queue alone (no store): receive 10 + DeleteMessageBatch versus receive 1 + a delete each. The
   ceiling that SQS round trips set.
No training runs: the launcher only returns a handle (what is measured is dispatch, not compute).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# The repository root, for the moto server helper the tests use.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from robotrain.adapters.local_artifacts import LocalArtifactStore
from robotrain.adapters.sqlite_store import SqliteJobStore
from robotrain.adapters.sqs_queue import SqsJobQueue, create_queue_with_dlq, make_client
from robotrain.control import Dispatcher
from robotrain.jobs.models import Job
from robotrain.jobs.service import JobService
from robotrain.ports import Components, QueueMessage
from robotrain.settings import Settings
from tests.support.moto import moto_server
from training.spec import TrainSpec

REGION = "us-east-1"
SPEC = TrainSpec.model_validate(
    {
        "name": "bench",
        "policy": {"type": "mlp", "hidden_dims": [32, 32]},
        "dataset": {"uri": "builtin://push2d?episodes=4&seed=3"},
        "training": {"steps": 20, "batch_size": 16, "checkpoint_every": 10, "log_every": 5, "device": "cpu"},
        "eval": {"env": None},
    }
)


class NoOpLauncher:
    """Launches nothing: the bench measures dispatch, not compute."""

    def launch(self, job: Job) -> str:
        return f"noop:{job.id}:{job.attempt}"

    def is_alive(self, handle: str) -> bool | None:
        return True

    def cancel(self, handle: str) -> None:
        return None


class OneAtATimeQueue:
    """The baseline consumer: the same SQS queue, received one message per call."""

    def __init__(self, queue: SqsJobQueue):
        self._queue = queue

    def send(self, body: str) -> str:
        return self._queue.send(body)

    def receive(
        self, *, max_messages: int = 10, visibility_timeout: int | None = None, wait_seconds: float = 0
    ) -> list[QueueMessage]:
        return self._queue.receive(max_messages=1, visibility_timeout=visibility_timeout, wait_seconds=wait_seconds)

    def delete(self, receipt_handles: list[str]) -> list[str]:
        return [h for h in receipt_handles if self._queue.delete([h])]

    def change_visibility(self, receipt_handle: str, timeout_seconds: int) -> None:
        self._queue.change_visibility(receipt_handle, timeout_seconds)


def fresh_queue(endpoint: str, name: str) -> SqsJobQueue:
    client = make_client(region=REGION, endpoint_url=endpoint)
    url, _ = create_queue_with_dlq(client, name, max_receive_count=5, visibility_timeout_s=60)
    return SqsJobQueue(url, region=REGION, endpoint_url=endpoint, visibility_timeout_s=60)


def drain_jobs_per_second(endpoint: str, name: str, jobs: int, *, batched: bool, deadline: float) -> float:
    with tempfile.TemporaryDirectory(prefix="robotrain-bench-") as tmp:
        settings = Settings(
            _env_file=None,
            data_dir=Path(tmp),
            max_concurrent_jobs=jobs + 10,
            max_active_jobs_per_user=jobs + 10,
            max_running_jobs_per_user=jobs + 10,
        )
        sqs = fresh_queue(endpoint, name)
        store = SqliteJobStore(Path(tmp) / "robotrain.sqlite3")
        components = Components(
            settings=settings,
            store=store,
            queue=sqs if batched else OneAtATimeQueue(sqs),
            launcher=NoOpLauncher(),
            artifacts=LocalArtifactStore(Path(tmp) / "artifacts"),
        )
        service = JobService(components)
        for i in range(jobs):
            service.submit(f"user_{i % 7}", SPEC)
        dispatcher = Dispatcher(components)
        launched = 0
        started = time.perf_counter()
        while launched < jobs:
            if time.monotonic() > deadline:
                raise SystemExit(f"deadline reached with {launched}/{jobs} jobs launched")
            report = dispatcher.drain_once()
            if not report.launched and not report.received:
                time.sleep(0.05)  # nothing visible this instant (SQS sampling); ask again
            launched += len(report.launched)
        elapsed = time.perf_counter() - started
        if sqs.approximate_depth()["visible"] or sqs.approximate_depth()["in_flight"]:
            raise SystemExit("messages left in the queue after every job launched")
        return jobs / elapsed


def transport_messages_per_second(endpoint: str, name: str, messages: int, *, batched: bool, deadline: float) -> float:
    queue = fresh_queue(endpoint, name)
    for i in range(messages):
        queue.send(f'{{"n": {i}}}')
    done = 0
    started = time.perf_counter()
    while done < messages:
        if time.monotonic() > deadline:
            raise SystemExit(f"deadline reached with {done}/{messages} messages consumed")
        batch = queue.receive(max_messages=10 if batched else 1)
        if batched:
            failed = queue.delete([m.receipt_handle for m in batch])
        else:
            failed = [m.receipt_handle for m in batch if queue.delete([m.receipt_handle])]
        if failed:
            raise SystemExit(f"{len(failed)} deletes failed")
        done += len(batch)
    return messages / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=150, help="jobs per measured drain")
    parser.add_argument("--rounds", type=int, default=2, help="alternating measurements of each mode")
    parser.add_argument("--deadline-s", type=float, default=240, help="stop the whole bench after this long")
    args = parser.parse_args()
    deadline = time.monotonic() + args.deadline_s
    for name, value in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}.items():
        os.environ.setdefault(name, value)  # moto accepts any credentials; nothing leaves 127.0.0.1

    with moto_server() as endpoint:
        results: dict[str, list[float]] = {"drain_batched": [], "drain_one": [], "queue_batched": [], "queue_one": []}
        for round_ in range(args.rounds):
            # Alternate the order so neither mode always runs on a warmer machine.
            for batched in (True, False) if round_ % 2 == 0 else (False, True):
                key = "drain_batched" if batched else "drain_one"
                name = f"bench-drain-{round_}-{int(batched)}"
                results[key].append(
                    drain_jobs_per_second(endpoint, name, args.jobs, batched=batched, deadline=deadline)
                )
                key = "queue_batched" if batched else "queue_one"
                name = f"bench-queue-{round_}-{int(batched)}"
                results[key].append(
                    transport_messages_per_second(endpoint, name, args.jobs, batched=batched, deadline=deadline)
                )

    def median(key: str) -> float:
        return statistics.median(results[key])

    print(f"drain_throughput: {args.jobs} jobs x {args.rounds} rounds, SQS on moto server 127.0.0.1, no-op launcher")
    print(f"  Dispatcher, receive up to 10    : {median('drain_batched'):8.1f} jobs/s  {results['drain_batched']}")
    print(f"  Dispatcher, receive 1 (baseline): {median('drain_one'):8.1f} jobs/s  {results['drain_one']}")
    print(f"  ratio batched / one-at-a-time   : {median('drain_batched') / median('drain_one'):8.2f}x")
    print(f"  queue only, receive 10 + batch delete: {median('queue_batched'):8.1f} msg/s")
    print(f"  queue only, receive 1 + delete each  : {median('queue_one'):8.1f} msg/s")
    print(f"  ratio queue only                      : {median('queue_batched') / median('queue_one'):8.2f}x")


if __name__ == "__main__":
    main()
