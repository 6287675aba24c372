"""Jobs dispatched per second by the real drain, through SQS on moto's server (127.0.0.1, started here), as a ratio
to a bare receive-and-delete loop on the same server in the same run: receive 10, DeleteMessageBatch, nothing else,
which is as fast as this queue can be emptied here (the physical limit).

    .venv/bin/python bench/drain_throughput.py [--jobs 200] [--rounds 3] [--cloud] [--deadline-s 600]

Each measurement starts from a fresh queue holding `--jobs` messages: for the drain, jobs submitted through the
JobService (not timed), drained by Dispatcher.drain_once() until every one is launched by a no-op launcher (what is
measured is dispatch, not compute); for the bare loop, the same number of plain messages. The drain runs on a fresh
SQLite store, and with `--cloud` also on the Supabase stand-in (PostgreSQL 15 behind the PostgREST-subset server in
its own process, bench/standins.py). Per batch of ten the drain makes one receive, one claim call, one call
recording the launches and one batched delete. Rounds alternate the order of the modes; medians are shown.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

# The repository root and bench/, for the stand-ins the tests use.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from robotrain.adapters.local_artifacts import LocalArtifactStore
from robotrain.adapters.sqlite_store import SqliteJobStore
from robotrain.adapters.sqs_queue import SqsJobQueue, create_queue_with_dlq, make_client
from robotrain.control import Dispatcher
from robotrain.jobs.models import Job
from robotrain.jobs.service import JobService
from robotrain.ports import Components, JobStore
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


def fresh_queue(endpoint: str, name: str) -> SqsJobQueue:
    client = make_client(region=REGION, endpoint_url=endpoint)
    url, _ = create_queue_with_dlq(client, name, max_receive_count=5, visibility_timeout_s=60)
    return SqsJobQueue(url, region=REGION, endpoint_url=endpoint, visibility_timeout_s=60)


def drain_jobs_per_second(
    endpoint: str, name: str, jobs: int, store: JobStore, data_dir: Path, *, deadline: float
) -> float:
    settings = Settings(
        _env_file=None,
        data_dir=data_dir,
        max_concurrent_jobs=jobs + 10,
        max_active_jobs_per_user=jobs + 10,
        max_running_jobs_per_user=jobs + 10,
        submit_rate_per_minute=10**6,
    )
    sqs = fresh_queue(endpoint, name)
    components = Components(
        settings=settings,
        store=store,
        queue=sqs,
        launcher=NoOpLauncher(),
        artifacts=LocalArtifactStore(data_dir / "artifacts"),
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
    depth = sqs.approximate_depth()
    if depth["visible"] or depth["in_flight"]:
        raise SystemExit("messages left in the queue after every job launched")
    return jobs / elapsed


def bare_messages_per_second(endpoint: str, name: str, messages: int, *, deadline: float) -> float:
    """The physical limit: receive 10 and delete them in one batch, nothing else."""
    queue = fresh_queue(endpoint, name)
    for i in range(messages):
        queue.send(f'{{"n": {i}}}')
    done = 0
    started = time.perf_counter()
    while done < messages:
        if time.monotonic() > deadline:
            raise SystemExit(f"deadline reached with {done}/{messages} messages consumed")
        batch = queue.receive(max_messages=10)
        if batch and queue.delete([m.receipt_handle for m in batch]):
            raise SystemExit("a batch delete failed")
        done += len(batch)
    return messages / (time.perf_counter() - started)


@contextmanager
def sqlite_store() -> Iterator[tuple[JobStore, Path]]:
    with tempfile.TemporaryDirectory(prefix="robotrain-bench-") as tmp:
        store = SqliteJobStore(Path(tmp) / "robotrain.sqlite3")
        try:
            yield store, Path(tmp)
        finally:
            store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200, help="jobs (messages) per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurements of each mode")
    parser.add_argument("--cloud", action="store_true", help="also drain on the Supabase stand-in")
    parser.add_argument("--deadline-s", type=float, default=600, help="stop the whole bench after this long")
    args = parser.parse_args()
    deadline = time.monotonic() + args.deadline_s
    for name, value in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}.items():
        os.environ.setdefault(name, value)  # moto accepts any credentials; nothing leaves 127.0.0.1

    with ExitStack() as stack:
        endpoint = stack.enter_context(moto_server())
        standins = None
        if args.cloud:
            from standins import cloud_standins

            from robotrain.adapters.supabase_store import SupabaseJobStore

            standins = stack.enter_context(cloud_standins())
        modes: dict[str, Callable[[str], float]] = {
            "bare": lambda name: bare_messages_per_second(endpoint, name, args.jobs, deadline=deadline),
        }

        def drain_on_sqlite(name: str) -> float:
            with sqlite_store() as (store, data_dir):
                return drain_jobs_per_second(endpoint, name, args.jobs, store, data_dir, deadline=deadline)

        modes["drain, SQLite store"] = drain_on_sqlite
        if standins is not None:

            def drain_on_supabase(name: str) -> float:
                standins.empty_store()
                store = SupabaseJobStore(standins.supabase_url, standins.service_key)
                try:
                    with tempfile.TemporaryDirectory(prefix="robotrain-bench-") as tmp:
                        return drain_jobs_per_second(endpoint, name, args.jobs, store, Path(tmp), deadline=deadline)
                finally:
                    store.close()

            modes["drain, Supabase store"] = drain_on_supabase
        results: dict[str, list[float]] = {mode: [] for mode in modes}
        for round_ in range(args.rounds):
            order = list(modes) if round_ % 2 == 0 else list(modes)[::-1]
            for index, mode in enumerate(order):
                results[mode].append(modes[mode](f"bench-{round_}-{index}"))

    bare = statistics.median(results["bare"])
    print(f"drain_throughput: {args.jobs} jobs x {args.rounds} rounds, SQS on moto server 127.0.0.1, no-op launcher")
    for mode, values in results.items():
        rates = ", ".join(f"{value:.1f}" for value in values)
        unit = "msg/s" if mode == "bare" else "jobs/s"
        print(f"  {mode:<24}: {statistics.median(values):8.1f} {unit:<6}  [{rates}]")
    for mode, values in results.items():
        if mode != "bare":
            print(f"  {mode} / bare receive-and-delete: {statistics.median(values) / bare:.2f}x")


if __name__ == "__main__":
    main()
