"""Test doubles and builders for the domain and dispatch tests.

FakeLauncher stands in for the Launcher port in drain and service unit tests (an in-repo fake recording calls, as
Netflix Dispatch's plugin fakes do): those tests are about the drain's decisions, and a real launch would start a
training process per claim. The real SubprocessLauncher is tested on its own and end to end in the worker tests.
Everything else here is real: the SQLite store, the SQLite queue with SQS semantics, the artifact directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robotrain.adapters.local_artifacts import LocalArtifactStore
from robotrain.adapters.local_dataset_files import LocalDatasetFiles
from robotrain.adapters.local_queue import LocalJobQueue
from robotrain.adapters.sqlite_datasets import SqliteDatasetStore
from robotrain.adapters.sqlite_store import SqliteJobStore
from robotrain.jobs.models import Job
from robotrain.ports import Components
from robotrain.settings import Settings
from training.spec import TrainSpec

FAST_SPEC: dict[str, Any] = {
    "name": "tiny",
    "policy": {"type": "mlp", "hidden_dims": [32, 32]},
    "dataset": {"uri": "builtin://push2d?episodes=4&seed=3"},
    "training": {"steps": 20, "batch_size": 16, "checkpoint_every": 10, "log_every": 5, "device": "cpu"},
    "eval": {"env": None},
}


def fast_spec(**overrides: Any) -> TrainSpec:
    return TrainSpec.model_validate({**FAST_SPEC, **overrides})


@dataclass
class FakeLauncher:
    """Records launches and cancels; `failures` are raised by the next launches, in order."""

    failures: list[BaseException] = field(default_factory=list)
    launched: list[tuple[str, int]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    alive: dict[str, bool | None] = field(default_factory=dict)

    def launch(self, job: Job) -> str:
        if self.failures:
            raise self.failures.pop(0)
        self.launched.append((job.id, job.attempt))
        handle = f"fake:{job.id}:{job.attempt}"
        self.alive[handle] = True
        return handle

    def is_alive(self, handle: str) -> bool | None:
        return self.alive.get(handle, False)

    def cancel(self, handle: str) -> None:
        self.cancelled.append(handle)
        self.alive[handle] = False


def make_components(tmp_path: Path, launcher: Any = None, **settings: Any) -> Components:
    values: dict[str, Any] = {"data_dir": tmp_path / "data", "queue_visibility_timeout_s": 30, **settings}
    config = Settings(**values)
    store = SqliteJobStore(config.data_dir / "robotrain.sqlite3")
    return Components(
        settings=config,
        store=store,
        queue=LocalJobQueue(
            config.data_dir / "queue.sqlite3",
            max_receives=config.queue_max_receives,
            visibility_timeout_s=config.queue_visibility_timeout_s,
        ),
        launcher=launcher if launcher is not None else FakeLauncher(),
        artifacts=LocalArtifactStore(config.resolved_artifacts_dir),
        datasets=SqliteDatasetStore(store.path),
        dataset_files=LocalDatasetFiles(config.resolved_datasets_dir),
    )
