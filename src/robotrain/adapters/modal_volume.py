"""The ArtifactStore port on a mounted Modal Volume: a LocalArtifactStore over the mount whose reads see the latest
commit (reload first) and whose writes other containers see once published (commit)."""

from __future__ import annotations

import logging
from pathlib import Path

import modal

from robotrain.adapters.local_artifacts import LocalArtifactStore
from robotrain.ports import Artifact

log = logging.getLogger(__name__)


class VolumeArtifactStore(LocalArtifactStore):
    def __init__(self, root: Path, volume: modal.Volume):
        super().__init__(root)
        self._volume = volume

    def _reload(self) -> None:
        try:
            self._volume.reload()
        except (
            RuntimeError
        ) as exc:  # raised while files of the volume are open in this container (Modal docs, "Volumes": reload)
            log.warning("volume reload skipped: %s", exc)

    def list_files(self, job_id: str) -> list[Artifact]:
        self._reload()
        return super().list_files(job_id)

    def resolve(self, job_id: str, path: str) -> Path:
        self._reload()
        return super().resolve(job_id, path)

    def publish(self, job_id: str) -> None:
        # Modal commits volumes when a container exits; a preempted container may not exit cleanly, so commit
        # each checkpoint as it lands (Modal docs, "Preemption").
        self._volume.commit()


class VolumeDatasetFiles:
    """The DatasetFiles port on the artifacts Volume: the API commits an upload (or a deletion) once its files are in
    place; a worker reloads before reading, in case its container started before the commit."""

    def __init__(self, root: Path, volume: modal.Volume):
        self.root = Path(root)
        self._volume = volume

    def publish(self) -> None:
        self._volume.commit()

    def refresh(self) -> None:
        try:
            self._volume.reload()
        except RuntimeError as exc:  # files of the volume are open in this container (Modal docs, "Volumes": reload)
            log.warning("volume reload skipped: %s", exc)
