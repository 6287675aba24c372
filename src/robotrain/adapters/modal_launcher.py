"""The Launcher port on Modal: each attempt of a job is one spawned call of the app's GPU `train` function.

The handle is the FunctionCall id (`fc-...`), which outlives this process, so a restarted drain can still ask about
or cancel a call it did not spawn. A job's `compute.gpu` and `compute.timeout_minutes` are applied per call with
`Function.with_options` (modal.md §3); the function's own decorator sets the defaults.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

import modal
import modal.exception

from robotrain.jobs.models import Job

log = logging.getLogger(__name__)

# Extra seconds past the job's own timeout: the worker enforces `timeout_minutes` itself and ends the job `timeout`
# with a checkpoint; Modal's hard limit is the backstop if the worker cannot.
TIMEOUT_GRACE_S = 300

# Errors that say nothing about the call, only that Modal could not be asked right now.
UNKNOWN_STATE_ERRORS: tuple[type[BaseException], ...] = (
    modal.exception.ConnectionError,
    modal.exception.ServiceError,
    modal.exception.AuthError,
    OSError,
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
        compute = job.spec.get("compute") or {}
        gpu = compute.get("gpu") or self._default_gpu
        timeout_s = int(compute.get("timeout_minutes", 60)) * 60 + TIMEOUT_GRACE_S
        call = self._train.with_options(gpu=gpu, timeout=timeout_s).spawn(job.id, job.attempt)
        return call.object_id

    def is_alive(self, handle: str) -> bool | None:
        call = self._call_from_id(handle)
        try:
            call.get(timeout=0)
        except TimeoutError:  # the builtin one: the call has not finished (modal.md §3)
            return True
        except UNKNOWN_STATE_ERRORS as exc:
            log.warning("cannot ask Modal about %s: %s", handle, exc)
            return None
        except Exception:  # noqa: BLE001 - get() re-raises the call's own failure (or expiry): either way it ended
            return False
        return False

    def cancel(self, handle: str) -> None:
        # terminate_containers: a train container runs one input (single_use_containers), so killing it stops the
        # GPU at once even when the input is stuck in a long CUDA call that would see InputCancellation late.
        self._call_from_id(handle).cancel(terminate_containers=True)
