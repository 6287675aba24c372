"""The worker: trains one attempt of one job. Locally each attempt is a process (`python -m
robotrain.entrypoints.worker JOB_ID ATTEMPT`); Modal's `train` function calls `run_worker` the same way.

Its first write is the compare-and-set starting → running fenced on ATTEMPT: if that fails, another worker owns this
attempt or the job was cancelled, and it exits without training. Every later write is fenced on the attempt too.
The job's artifact directory is the training out_dir, so a requeued attempt resumes from the last checkpoint.

Training runs under the job owner's dataset access and the operator's limits (robotrain.tenancy): an upload resolves
only for its owner, and the size of the job's artifacts is recorded after each checkpoint and held to the per-user
storage limit. What the job shows its user (events, error messages) carries no traceback and no host path: a crash
is logged here with its traceback and an error id, and the job gets the id and a one-line cause.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import stat
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from robotrain.datasets.models import dataset_dir
from robotrain.errors import StoreUnavailable
from robotrain.jobs.lifecycle import apply_transition, enqueue
from robotrain.jobs.models import ErrorCode, EventKind, Job, JobError, JobStatus, Progress
from robotrain.ports import Components, JobStore
from robotrain.tenancy import dataset_access, training_limits
from robotrain.worker.redact import new_error_id, one_line_cause, redact_paths
from robotrain.worker.reporter import JobReporter, StopReason

if TYPE_CHECKING:
    from training.spec import TrainSpec
    from training.trainer import TrainResult

log = logging.getLogger(__name__)

_MAX_ERROR_MESSAGE = 1000


def run_worker(components: Components, job_id: str, attempt: int, *, resume_own_attempt: bool = False) -> None:
    """Train `attempt` of `job_id`. With `resume_own_attempt` (Modal's `train`, whose platform re-runs the very same
    input after a preemption or crash, and never runs one input twice at once) a job already running at this attempt
    is taken over and resumes from its last checkpoint; otherwise such a job belongs to another worker."""
    running = _take_attempt(components.store, job_id, attempt, resume_own_attempt=resume_own_attempt)
    if running is None:
        return
    try:
        spec = running.train_spec
    except ValidationError as exc:
        _fail(components.store, running, ErrorCode.TRAINING_ERROR, f"the stored spec is no longer valid: {exc}")
        return
    outcome = _train(components, running, spec)
    if outcome is not None:
        _finish(components, running, spec, *outcome)


def _take_attempt(store: JobStore, job_id: str, attempt: int, *, resume_own_attempt: bool) -> Job | None:
    """The job as running at `attempt`, owned by this worker; None when there is nothing for it to run."""
    job = store.get(job_id)
    if job is None:
        log.warning("no job %s; nothing to run", job_id)
        return None
    if resume_own_attempt and job.status is JobStatus.RUNNING and job.attempt == attempt:
        store.append_event(job_id, EventKind.LOG, f"attempt {attempt} restarted by the platform; resuming", {})
        return job
    if job.status is not JobStatus.STARTING or job.attempt != attempt:
        log.info("%s is %s at attempt %d; attempt %d has nothing to run", job_id, job.status, job.attempt, attempt)
        return None
    running = apply_transition(store, job, JobStatus.RUNNING)
    if running is None:
        log.info("%s attempt %d was taken or cancelled before it began", job_id, attempt)
    return running


def _train(
    components: Components, running: Job, spec: TrainSpec
) -> tuple[TrainResult, StopReason | None, str | None] | None:
    """Run training under a reporter fenced on this attempt; the result, why it stopped early (if it did) and the
    signal that asked it to (if one did), or None when training failed (the job is then already failed)."""
    # Imported here so the service (which only imports this module for run_worker) does not load torch.
    from training.data.access import UPLOAD_SCHEME, scheme, upload_id
    from training.errors import TrainingError
    from training.trainer import run as train

    settings = components.settings
    job_id = running.id
    out_dir = components.artifacts.job_dir(job_id)
    known = _known_paths(components, out_dir)
    uploads: dict[str, Path] = {}
    if scheme(spec.dataset.uri) == UPLOAD_SCHEME:
        upload = _owned_upload(components, running, upload_id(spec.dataset.uri))
        if upload is None:
            message = f"{spec.dataset.uri} is not one of your uploaded datasets (was it deleted?)"
            _fail(components.store, running, ErrorCode.DATASET_FORBIDDEN, message)
            return None
        uploads[upload_id(spec.dataset.uri)] = upload

    def after_checkpoint() -> None:
        components.artifacts.publish(job_id)
        _account_storage(components, running, out_dir)

    reporter = JobReporter(
        components.store,
        running,
        out_dir=out_dir,
        heartbeat_interval_s=settings.heartbeat_interval_s,
        progress_interval_s=settings.progress_interval_s,
        on_checkpoint=after_checkpoint,
        redact=lambda text: redact_paths(text, known),
    )
    with reporter, _stop_on_signals(reporter) as signals:
        try:
            result = train(
                spec,
                out_dir,
                reporter,
                cache_dir=settings.resolved_dataset_cache_dir,
                report_interval_s=settings.progress_interval_s,
                weights_dir=settings.weights_dir,
                access=dataset_access(settings, owner=running.user_id, uploads=uploads),
                limits=training_limits(settings),
            )
        except TrainingError as exc:
            _fail(components.store, running, exc.code, redact_paths(exc.message, known))
            return None
        except Exception as exc:  # noqa: BLE001 - the worker's top level: any crash must still end the job truthfully
            error_id = new_error_id()
            log.error("%s attempt %d crashed (error id %s)", job_id, running.attempt, error_id, exc_info=True)
            cause = f"{one_line_cause(exc, known)} (error id {error_id})"
            reporter.log(f"training crashed: {cause}")
            _fail(components.store, running, ErrorCode.TRAINING_ERROR, cause)
            return None
        finally:
            _record_storage(components, running, out_dir)
    components.artifacts.publish(job_id)
    return result, reporter.stop_reason, signals.received


def _known_paths(components: Components, out_dir: Path) -> Mapping[Path, str]:
    """Directories a message may mention, and what a user sees instead: paths in the job's own directory become
    relative to it; the service's directories become labels."""
    settings = components.settings
    return {
        out_dir: "",
        settings.resolved_dataset_cache_dir: "<dataset cache>",
        settings.resolved_datasets_dir: "<uploads>",
        settings.resolved_artifacts_dir: "<artifacts>",
        settings.data_dir: "<data dir>",
    }


def _owned_upload(components: Components, job: Job, dataset_id: str) -> Path | None:
    """The directory of the job owner's upload `dataset_id`; None when it is not theirs (or no longer exists)."""
    if components.datasets is None or components.dataset_files is None:
        return None
    if components.datasets.get(dataset_id, user_id=job.user_id) is None:
        return None
    components.dataset_files.refresh()
    directory = dataset_dir(components.dataset_files.root, job.user_id, dataset_id)
    return directory if directory.is_dir() else None


def _artifacts_size(out_dir: Path) -> int:
    total = 0
    for directory, _, files in os.walk(out_dir):
        for name in files:
            try:
                info = os.lstat(Path(directory, name))
            except FileNotFoundError:  # a temporary file renamed away meanwhile
                continue
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total


def _record_storage(components: Components, job: Job, out_dir: Path) -> int | None:
    """Record what the job's artifacts weigh now; None when the store could not be told (it is told next time)."""
    if components.datasets is None:
        return None
    size = _artifacts_size(out_dir)
    try:
        components.datasets.record_artifact_bytes(job.id, user_id=job.user_id, size=size)
    except StoreUnavailable as exc:
        log.warning("could not record the artifacts of %s: %s", job.id, exc)
        return None
    return size


def _account_storage(components: Components, job: Job, out_dir: Path) -> None:
    """After a checkpoint: record the job's size and stop training (LimitExceeded, the checkpoint kept) once the
    user's datasets and artifacts pass their limit."""
    from training.errors import LimitExceeded

    if _record_storage(components, job, out_dir) is None or components.datasets is None:
        return
    quota = components.settings.max_artifacts_bytes_per_user
    try:
        used = components.datasets.usage_bytes(job.user_id)
    except StoreUnavailable as exc:
        log.warning("could not read the storage use of %s: %s", job.user_id, exc)
        return
    if used > quota:
        raise LimitExceeded(
            f"your datasets and job artifacts take {used:,} bytes, over this service's limit of {quota:,} per user; "
            "training stopped after saving its last checkpoint"
        )


def _finish(
    components: Components,
    running: Job,
    spec: TrainSpec,
    result: TrainResult,
    reason: StopReason | None,
    signal_name: str | None,
) -> None:
    """The attempt's last transition, decided by why training returned."""
    store = components.store
    if reason is StopReason.TIMEOUT:
        minutes = spec.compute.timeout_minutes
        _fail(store, running, ErrorCode.TIMEOUT, f"the job ran past compute.timeout_minutes ({minutes})")
    elif reason is StopReason.TERMINATED:
        # Asked to exit without a cancel (preempted, or the machine shutting down): hand the job back; the next
        # attempt resumes from the checkpoint just saved. A cancel that raced with the signal makes this a no-op.
        requeued = apply_transition(store, running, JobStatus.QUEUED, reason="preempted", launch_handle=None)
        if requeued is not None:
            store.append_event(
                running.id,
                EventKind.LOG,
                f"preempted ({signal_name or 'asked to stop'}) at step {result.steps_done}: checkpoint "
                f"{result.checkpoint} saved; the next attempt resumes from it",
                {"signal": signal_name, "step": result.steps_done, "checkpoint": result.checkpoint},
            )
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


def job_result(result: TrainResult) -> dict[str, Any]:
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
        "videos": result.videos,
    }


def _fail(store: JobStore, job: Job, code: ErrorCode | str, message: str) -> None:
    error = JobError(code=ErrorCode(code), message=message[:_MAX_ERROR_MESSAGE])
    apply_transition(store, job, JobStatus.FAILED, error=error)


# The signals that ask a worker to checkpoint and hand its job back: SIGTERM (a local cancel, a machine shutting
# down) and SIGINT, which Modal sends first when it preempts a container (SIGKILL follows about 30 s later; Modal's
# preemption guide). Without a handler SIGINT would raise KeyboardInterrupt in the middle of a training step.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class _ReceivedSignal:
    received: str | None = None


@contextmanager
def _stop_on_signals(reporter: JobReporter) -> Iterator[_ReceivedSignal]:
    """While training runs, STOP_SIGNALS ask it to finish its step, checkpoint and return (the handler only sets a
    flag). Python delivers signals to the main thread only, so elsewhere (a test's thread) nothing is installed."""
    signals = _ReceivedSignal()
    if threading.current_thread() is not threading.main_thread():
        yield signals
        return

    def stop(signum: int, frame: object) -> None:
        signals.received = signal.Signals(signum).name
        reporter.request_stop(StopReason.TERMINATED)

    previous = {number: signal.signal(number, stop) for number in STOP_SIGNALS}
    try:
        yield signals
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
