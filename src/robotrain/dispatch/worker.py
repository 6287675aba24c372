"""The worker: trains one attempt of one job. `python -m robotrain.dispatch.worker JOB_ID ATTEMPT` locally; Modal's
`train` function calls `run_worker` the same way.

Its first write is the compare-and-set starting → running fenced on ATTEMPT: if that fails, another worker owns this
attempt or the job was cancelled, and it exits 0 without training. Every later write is fenced on the attempt too.
The job's artifact directory is the training out_dir, so a requeued attempt resumes from the last checkpoint.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import ValidationError

from robotrain.dispatch.reporter import STOP_TERMINATED, STOP_TIMEOUT, JobReporter
from robotrain.jobs.models import ErrorCode, Job, JobError, JobStatus, Progress
from robotrain.jobs.service import apply_transition, enqueue
from robotrain.wiring import Components

log = logging.getLogger(__name__)

_MAX_ERROR_MESSAGE = 1000
_MAX_TRACEBACK = 8000


def run_worker(components: Components, job_id: str, attempt: int, *, resume_own_attempt: bool = False) -> None:
    """Train `attempt` of `job_id`. With `resume_own_attempt` (Modal's `train`, whose platform re-runs the very same
    input after a preemption or crash, and never runs one input twice at once) a job already running at this attempt
    is taken over and resumes from its last checkpoint; otherwise such a job belongs to another worker."""
    store = components.store
    settings = components.settings
    job = store.get(job_id)
    if job is None:
        log.warning("no job %s; nothing to run", job_id)
        return
    restarted = resume_own_attempt and job.status is JobStatus.RUNNING and job.attempt == attempt
    if restarted:
        running = job
        store.append_event(job_id, "log", f"attempt {attempt} restarted by the platform; resuming", {})
    else:
        if job.status is not JobStatus.STARTING or job.attempt != attempt:
            log.info("%s is %s at attempt %d; attempt %d has nothing to run", job_id, job.status, job.attempt, attempt)
            return
        running = apply_transition(store, job, JobStatus.RUNNING)
        if running is None:
            log.info("%s attempt %d was taken or cancelled before it began", job_id, attempt)
            return

    # Imported here so the service (which only imports this module for run_worker) does not load torch.
    from training.errors import TrainingError
    from training.spec import TrainSpec
    from training.trainer import run as train

    try:
        spec = TrainSpec.model_validate(running.spec)
    except ValidationError as exc:
        _fail(store, running, ErrorCode.TRAINING_ERROR, f"the stored spec is no longer valid: {exc}")
        return

    out_dir = components.artifacts.job_dir(job_id)
    reporter = JobReporter(
        store,
        running,
        out_dir=out_dir,
        heartbeat_interval_s=settings.heartbeat_interval_s,
        progress_interval_s=settings.progress_interval_s,
        on_checkpoint=lambda: components.artifacts.publish(job_id),
    )
    with reporter, _stop_on_sigterm(reporter):
        try:
            result = train(
                spec,
                out_dir,
                reporter,
                cache_dir=settings.resolved_dataset_cache_dir,
                report_interval_s=settings.progress_interval_s,
            )
        except TrainingError as exc:
            _fail(store, running, exc.code, exc.message)
            return
        except Exception as exc:  # noqa: BLE001 - the worker's top level: any crash must still end the job truthfully
            text = traceback.format_exc()
            reporter.log(f"training crashed:\n{text[-_MAX_TRACEBACK:]}")
            _fail(store, running, ErrorCode.TRAINING_ERROR, f"{type(exc).__name__}: {exc}")
            return

    components.artifacts.publish(job_id)
    reason = reporter.stop_reason
    if reason == STOP_TIMEOUT:
        minutes = spec.compute.timeout_minutes
        _fail(store, running, ErrorCode.TIMEOUT, f"the job ran past compute.timeout_minutes ({minutes})")
    elif reason == STOP_TERMINATED:
        # Asked to exit without a cancel (e.g. preempted): hand the job back; the next attempt resumes from the
        # checkpoint just saved. A cancel that raced with the signal makes this a no-op.
        requeued = apply_transition(store, running, JobStatus.QUEUED, reason="preempted", launch_handle=None)
        if requeued is not None:
            enqueue(components, requeued)
    elif reason is None:
        # The final progress comes from the result: an attempt that resumed at the last step reports no progress.
        final = Progress(
            step=result.steps_done,
            total_steps=spec.training.steps,
            metrics={name: value for name, value in result.final_metrics.items() if math.isfinite(value)},
        )
        apply_transition(store, running, JobStatus.SUCCEEDED, result=job_result(result), progress=final)
    # cancelled or superseded: the job is someone else's business now.


def job_result(result: Any) -> dict[str, Any]:
    """The job's `result` from training's TrainResult; `checkpoint` is relative to the job's artifact directory."""
    return {
        "eval": result.eval,
        "metrics": result.final_metrics,
        "checkpoint": result.checkpoint,
        "steps": result.steps_done,
        "resumed_from_step": result.resumed_from_step,
        "device": result.device,
        "num_parameters": result.num_parameters,
        "train_s": result.train_s,
    }


def _fail(store, job: Job, code: str, message: str) -> None:
    error = JobError(code=code, message=message[:_MAX_ERROR_MESSAGE])
    apply_transition(store, job, JobStatus.FAILED, error=error)


@contextmanager
def _stop_on_sigterm(reporter: JobReporter) -> Iterator[None]:
    """SIGTERM (a cancel, or the platform reclaiming the machine) asks training to checkpoint and return."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: reporter.request_stop(STOP_TERMINATED))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or not args[1].isdigit():
        print("usage: python -m robotrain.dispatch.worker JOB_ID ATTEMPT", file=sys.stderr)
        return 2
    from robotrain.settings import Settings
    from robotrain.wiring import build_components

    settings = Settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_worker(build_components(settings), args[0], int(args[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
