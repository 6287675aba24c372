"""What the Modal functions in modal_app.py do, kept here so that file stays a thin, literate list of functions.

Each function is one of the three processes: `api` serves requests, `drain` is the control plane, `train` is a
worker. Every container builds its Components once, from the environment (the Modal secrets supply the Supabase,
SQS and Clerk variables), with two Modal-specific adapters: the Launcher spawns the app's `train` function, and the
artifact store is the mounted Volume, reloaded before reads and committed after each checkpoint so the API container
sees what a GPU container wrote. A warm drain container reuses one Dispatcher (its store and queue clients, and the
sweeper's state, such as when it last forgot old idempotency keys) across its runs, scheduled or kicked; an `api`
container builds its app once (Modal calls the factory once per container); a `train` container runs one input.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robotrain.adapters.modal_launcher import ModalLauncher, SpawnableFunction, spawn_quietly
from robotrain.adapters.modal_volume import VolumeArtifactStore, VolumeDatasetFiles
from robotrain.control import Dispatcher, Drainer
from robotrain.ports import Components
from robotrain.settings import Settings
from robotrain.wiring import build_api_keys, build_components, build_verifier

# One Dispatcher per container (per settings, so tests that run several configurations in one process stay apart).
_dispatchers: dict[str, Dispatcher] = {}
_dispatchers_lock = threading.Lock()


def modal_components(settings: Settings, *, train: SpawnableFunction, volume: Any) -> Components:
    return build_components(
        settings,
        launcher=ModalLauncher(train, default_gpu=settings.default_gpu),
        artifacts=VolumeArtifactStore(settings.resolved_artifacts_dir, volume),
        dataset_files=VolumeDatasetFiles(settings.resolved_datasets_dir, volume),
    )


class DrainKick:
    """Wakes the drain without making a request wait for Modal: `kick(job_id)` only notes the job, and one thread
    spawns the drain function, once for all the kicks that arrived while it was spawning (one drain handles every
    queued job; it waits for the latest one's message, sent after the others'). Started and stopped with the API
    app; stopping still sends a kick that is pending. Before `start()` (or after `stop()`) a kick spawns at once."""

    def __init__(self, spawn: Callable[[str], None]):
        self._spawn = spawn
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: str | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None

    def kick(self, job_id: str) -> None:
        with self._lock:
            if self._thread is None:
                inline = True
            else:
                inline = False
                self._pending = job_id
        if inline:
            self._spawn(job_id)
        else:
            self._wake.set()

    def start(self) -> None:
        with self._lock:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="robotrain-drain-kick", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._lock:
            thread, self._stopping = self._thread, True
        if thread is None:
            return
        self._wake.set()
        thread.join(timeout=30)
        with self._lock:
            self._thread = None

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                pending, self._pending = self._pending, None
                stopping = self._stopping
            if pending is not None:
                self._spawn(pending)
            if stopping:
                return


def api_app(settings: Settings, *, train: SpawnableFunction, drain: Any, volume: Any) -> Any:
    """The ASGI app of an `api` container (Modal calls the factory once per container)."""
    from robotrain.api.app import create_app

    if settings.launcher == "modal" and not settings.uses_clerk:
        # In the service's image (ROBOTRAIN_LAUNCHER=modal) without Clerk, users could only present tokens signed
        # by a key minted inside this container: refuse to start rather than serve an API nobody can use.
        raise RuntimeError(
            "the API on Modal needs Clerk: set CLERK_PUBLISHABLE_KEY (or CLERK_JWT_KEY, CLERK_JWKS_URL, "
            "CLERK_SECRET_KEY) in the robotrain-api secret"
        )
    components = modal_components(settings, train=train, volume=volume)
    # No in-process loop on Modal: a submit wakes the drain function for its job (off the request path: spawning is
    # a call to Modal), and the drain's schedule is the safety net.
    kicker = DrainKick(lambda job_id: spawn_quietly(drain, job_id))
    return create_app(
        components,
        verifier=build_verifier(settings),
        api_keys=build_api_keys(settings, components.store),
        kick=kicker.kick,
        background=[kicker],
    )


def drain_and_sweep(settings: Settings, job_id: str = "", *, train: SpawnableFunction, volume: Any) -> dict[str, Any]:
    """One run of the `drain` function. Kicked for a job (`job_id`), it drains (waiting for that job's message) and
    leaves the sweep to the scheduled runs, so a burst of submits does not sweep once per job."""
    dispatcher = _container_dispatcher(settings, train=train, volume=volume)
    drained = dispatcher.drain_once(wait_for=job_id or None)
    if job_id:
        return {"drain": repr(drained)}
    swept = dispatcher.sweep()
    relayed = dispatcher.relay_webhooks()
    return {"drain": repr(drained), "sweep": repr(swept), "webhooks": repr(relayed)}


def _container_dispatcher(settings: Settings, *, train: SpawnableFunction, volume: Any) -> Dispatcher:
    key = settings.model_dump_json()
    with _dispatchers_lock:
        dispatcher = _dispatchers.get(key)
        if dispatcher is None:
            components = modal_components(settings, train=train, volume=volume)
            drainer = Drainer(
                components, receive_wait_s=settings.drain_receive_wait_s, kick_wait_s=settings.drain_kick_wait_s
            )
            dispatcher = _dispatchers[key] = Dispatcher(components, drainer=drainer)
        return dispatcher


def train_attempt(
    settings: Settings, job_id: str, attempt: int, *, train: SpawnableFunction, drain: Any, volume: Any
) -> None:
    from robotrain.worker.runner import run_worker

    components = modal_components(settings, train=train, volume=volume)
    try:
        # A restarted input (preemption, a crash retried by Modal) carries the same (job, attempt): it takes the
        # attempt over and resumes from the last committed checkpoint instead of waiting for the sweep.
        run_worker(components, job_id, attempt, resume_own_attempt=True)
    finally:
        volume.commit()
        spawn_quietly(drain)  # a slot is free: dispatch the next queued job now, not at the next schedule tick


class _VolumeCommittingReporter:
    """Prints progress like the CLI and commits the Volume after each checkpoint (for `modal run`)."""

    def __init__(self, volume: Any):
        from training.console import ConsoleReporter

        self._console = ConsoleReporter()
        self._volume = volume

    def progress(self, step: int, total: int, metrics: dict[str, float]) -> None:
        self._console.progress(step, total, metrics)

    def checkpoint(self, step: int, path: Path) -> None:
        self._console.checkpoint(step, path)
        self._volume.commit()

    def log(self, message: str) -> None:
        self._console.log(message)

    def should_stop(self) -> bool:
        return False


def train_one_spec(spec_json: str, run_dir: Path, *, volume: Any, weights_dir: Path | None = None) -> dict[str, Any]:
    """Train one spec outside the service (modal run). Rerunning with the same run name resumes."""
    import training

    spec = training.TrainSpec.model_validate_json(spec_json)
    result = training.run(spec, run_dir, _VolumeCommittingReporter(volume), weights_dir=weights_dir)
    volume.commit()
    return result.model_dump(mode="json")
