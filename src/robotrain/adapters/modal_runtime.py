"""What the Modal functions in modal_app.py do, kept here so that file stays a thin, literate list of functions.

Inside the app every container builds the same Components from the environment (the Modal secret supplies the
Supabase, SQS and Clerk variables), with two Modal-specific parts: the Launcher spawns the app's `train` function,
and the artifact store is the mounted Volume, reloaded before reads and committed after each checkpoint so the API
container sees what a GPU container wrote.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import modal

from robotrain.adapters.local_artifacts import LocalArtifactStore
from robotrain.adapters.modal_launcher import ModalLauncher, SpawnableFunction
from robotrain.ports import Artifact
from robotrain.settings import Settings
from robotrain.wiring import Components, build_components

log = logging.getLogger(__name__)


class VolumeArtifactStore(LocalArtifactStore):
    """A LocalArtifactStore over a mounted Modal Volume: reads see the latest commit, writes are committed."""

    def __init__(self, root: Path, volume: modal.Volume):
        super().__init__(root)
        self._volume = volume

    def _reload(self) -> None:
        try:
            self._volume.reload()
        except RuntimeError as exc:  # raised while files of the volume are open in this container (modal.md §1)
            log.warning("volume reload skipped: %s", exc)

    def list(self, job_id: str) -> list[Artifact]:
        self._reload()
        return super().list(job_id)

    def resolve(self, job_id: str, path: str) -> Path:
        self._reload()
        return super().resolve(job_id, path)

    def publish(self, job_id: str) -> None:
        # Modal commits volumes when a container exits; a preempted container may not exit cleanly, so commit
        # each checkpoint as it lands (modal.md §5).
        self._volume.commit()


def modal_components(settings: Settings, *, train: SpawnableFunction, volume: modal.Volume) -> Components:
    return build_components(
        settings,
        launcher=ModalLauncher(train, default_gpu=settings.default_gpu),
        artifacts=VolumeArtifactStore(settings.resolved_artifacts_dir, volume),
    )


def api_app(settings: Settings, *, train: SpawnableFunction, drain: Any, volume: modal.Volume) -> Any:
    from robotrain.api.app import create_app

    components = modal_components(settings, train=train, volume=volume)
    # No in-process loop on Modal: each submit spawns the drain function, and its schedule is the safety net.
    return create_app(settings, components=components, start_dispatch=False, kick=_spawner(drain))


def drain_and_sweep(settings: Settings, *, train: SpawnableFunction, volume: modal.Volume) -> dict[str, Any]:
    from robotrain.dispatch import Dispatcher

    dispatcher = Dispatcher(modal_components(settings, train=train, volume=volume))
    drained = dispatcher.drain_once()
    swept = dispatcher.sweep()
    return {"drain": repr(drained), "sweep": repr(swept)}


def train_attempt(
    settings: Settings, job_id: str, attempt: int, *, train: SpawnableFunction, drain: Any, volume: modal.Volume
) -> None:
    from robotrain.dispatch.worker import run_worker

    components = modal_components(settings, train=train, volume=volume)
    try:
        # A restarted input (preemption, a crash retried by Modal) carries the same (job, attempt): it takes the
        # attempt over and resumes from the last committed checkpoint instead of waiting for the sweep.
        run_worker(components, job_id, attempt, resume_own_attempt=True)
    finally:
        volume.commit()
        _spawner(drain)()  # a slot is free: dispatch the next queued job now, not at the next schedule tick


def _spawner(function: Any) -> Callable[[], None]:
    def kick() -> None:
        try:
            function.spawn()
        except modal.exception.Error as exc:  # the schedule will drain anyway; a failed kick only costs latency
            log.warning("could not spawn %s: %s", function, exc)

    return kick


class _VolumeCommittingReporter:
    """Prints progress like the CLI and commits the Volume after each checkpoint (for `modal run`)."""

    def __init__(self, volume: modal.Volume):
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


def train_one_spec(spec_json: str, run_dir: Path, *, volume: modal.Volume) -> dict[str, Any]:
    """Train one spec outside the service (modal run). Rerunning with the same run name resumes."""
    import training

    spec = training.TrainSpec.model_validate_json(spec_json)
    result = training.run(spec, run_dir, _VolumeCommittingReporter(volume))
    volume.commit()
    return result.model_dump(mode="json")
