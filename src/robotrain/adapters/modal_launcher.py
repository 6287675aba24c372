"""The Launcher port on Modal: each attempt of a job is one spawned call of the app's GPU `train` function.

The handle is the FunctionCall id (`fc-...`), which outlives this process, so a restarted drain can still ask about
or cancel a call it did not spawn. A job's `compute.gpu` and `compute.timeout_minutes` are applied per call with
`Function.with_options` (Modal docs, `Function.with_options` and `FunctionCall.get`); the function's own decorator sets the defaults.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import modal
import modal.exception

from robotrain.errors import LaunchError
from robotrain.jobs.models import Job
from training.spec import PLATFORM_MAX_TIMEOUT_S, TIMEOUT_GRACE_S

log = logging.getLogger(__name__)

# TIMEOUT_GRACE_S: extra seconds past the job's own timeout. The worker enforces `timeout_minutes` itself and ends
# the job `timeout` with a checkpoint; Modal's hard limit is the backstop if the worker cannot. The spec refuses a
# timeout whose call would pass Modal's 24 h cap (training.spec.MAX_TIMEOUT_MINUTES), so every launch is accepted.

# Modal could not be asked right now (its servers, the connection, a rate limit or quota): repeating the same call
# later may succeed. Launches and cancels that raise one of these become LaunchError, which the drain retries with
# backoff and the sweep repeats; anything else Modal raises (an invalid GPU name, a function that is not deployed)
# is permanent and propagates, so the drain fails the job at once. modal.exception.Error is not an OSError, so
# nothing of Modal's would be retried without this tuple.
TRANSIENT_MODAL_ERRORS: tuple[type[Exception], ...] = (
    modal.exception.ConnectionError,
    modal.exception.ServiceError,
    modal.exception.InternalError,
    modal.exception.ResourceExhaustedError,
    modal.exception.InternalFailure,  # "Retriable internal error" (modal.exception)
    OSError,
)
# Liveness cannot be told when Modal cannot be asked, or refuses to answer us: these say nothing about the call.
# (InternalFailure is not among them: get() raises it as the outcome of a call that ended.)
LIVENESS_UNKNOWN_ERRORS: tuple[type[Exception], ...] = (
    modal.exception.ConnectionError,
    modal.exception.ServiceError,
    modal.exception.InternalError,
    modal.exception.ResourceExhaustedError,
    OSError,
    modal.exception.AuthError,
    modal.exception.PermissionDeniedError,
)


class SpawnableFunction(Protocol):
    def with_options(self, **options: Any) -> SpawnableFunction: ...

    def spawn(self, *args: Any) -> Any: ...


class ModalLauncher:
    def __init__(
        self,
        train_function: SpawnableFunction,
        *,
        default_gpu: str,
        function_call_from_id: Callable[[str], Any] = modal.FunctionCall.from_id,
    ):
        self._train = train_function
        self._default_gpu = default_gpu
        self._call_from_id = function_call_from_id

    def launch(self, job: Job) -> str:
        compute = job.compute
        gpu = compute.gpu or self._default_gpu
        timeout_s = min(compute.timeout_minutes * 60 + TIMEOUT_GRACE_S, PLATFORM_MAX_TIMEOUT_S)
        try:
            call = self._train.with_options(gpu=gpu, timeout=timeout_s).spawn(job.id, job.attempt)
        except TRANSIENT_MODAL_ERRORS as exc:
            raise LaunchError(f"Modal could not spawn the worker: {type(exc).__name__}: {exc}") from exc
        return str(call.object_id)

    def is_alive(self, handle: str) -> bool | None:
        call = self._call_from_id(handle)
        try:
            call.get(timeout=0)
        except (
            TimeoutError
        ):  # the builtin one: the call has not finished (Modal docs, `Function.with_options` and `FunctionCall.get`)
            return True
        except LIVENESS_UNKNOWN_ERRORS as exc:
            log.warning("cannot ask Modal about %s: %s", handle, exc)
            return None
        except BaseException:  # noqa: BLE001 - get() re-raises the call's own outcome, whatever it was (below)
            # The call ended: with the worker's own exception, which Modal deserializes and raises here (a preempted
            # worker's KeyboardInterrupt or SystemExit included, hence BaseException), or with Modal's
            # FunctionTimeoutError, InternalFailure, RemoteError or OutputExpiredError.
            return False
        return False

    def cancel(self, handle: str) -> None:
        # terminate_containers: a train container runs one input (single_use_containers), so killing it stops the
        # GPU at once even when the input is stuck in a long CUDA call that would see InputCancellation late.
        try:
            self._call_from_id(handle).cancel(terminate_containers=True)
        except TRANSIENT_MODAL_ERRORS as exc:
            raise LaunchError(f"Modal could not cancel {handle}: {type(exc).__name__}: {exc}") from exc


def spawn_quietly(function: Any, *args: Any) -> None:
    """Spawn a function of the app (a drain kick) and only log a failure: the drain's schedule runs anyway, so a
    lost kick costs latency, never a job."""
    try:
        function.spawn(*args)
    except modal.exception.Error as exc:
        log.warning("could not spawn %s: %s", function, exc)
