"""Builds the adapters behind each port from settings. The only place that knows which classes implement them."""

from __future__ import annotations

from dataclasses import dataclass

from robotrain.ports import ArtifactStore, JobQueue, JobStore, Launcher
from robotrain.settings import Settings


@dataclass
class Components:
    settings: Settings
    store: JobStore
    queue: JobQueue
    launcher: Launcher
    artifacts: ArtifactStore


def build_components(settings: Settings) -> Components:
    """Embedded adapters under `settings.data_dir`. Cloud adapters are imported inside their branches, so their SDKs
    load only when selected."""
    from robotrain.adapters.local_artifacts import LocalArtifactStore
    from robotrain.adapters.local_queue import LocalJobQueue
    from robotrain.adapters.sqlite_store import SqliteJobStore
    from robotrain.adapters.subprocess_launcher import SubprocessLauncher

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = SqliteJobStore(settings.data_dir / "robotrain.sqlite3")
    queue = LocalJobQueue(
        settings.data_dir / "queue.sqlite3",
        max_receives=settings.queue_max_receives,
        visibility_timeout_s=settings.queue_visibility_timeout_s,
    )
    return Components(
        settings=settings,
        store=store,
        queue=queue,
        launcher=SubprocessLauncher(settings),
        artifacts=LocalArtifactStore(settings.resolved_artifacts_dir),
    )
