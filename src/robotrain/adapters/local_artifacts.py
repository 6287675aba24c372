"""The ArtifactStore port on a directory: one subdirectory per job under `root`.

Listing and serving never leave the job's directory: `..`, absolute paths and symlinks that point outside are
refused (ArtifactNotFound, the same answer as a missing file, so nothing about the rest of the disk leaks)."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from robotrain.errors import ArtifactNotFound
from robotrain.ports import Artifact

_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def is_temporary(name: str) -> bool:
    """Files being written (atomic writes use a hidden or .tmp name, then rename) are not artifacts yet."""
    return name.startswith(".") or name.endswith((".tmp", ".partial"))


class LocalArtifactStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def job_dir(self, job_id: str) -> Path:
        path = self._job_path(job_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def list_files(self, job_id: str) -> list[Artifact]:
        base = self._job_path(job_id)
        if not base.is_dir():
            return []
        real_base = base.resolve()
        artifacts: list[Artifact] = []
        # os.walk does not descend into symlinked directories (followlinks=False).
        for directory, subdirs, files in os.walk(base):
            subdirs[:] = sorted(d for d in subdirs if not is_temporary(d))
            for name in files:
                if is_temporary(name):
                    continue
                path = Path(directory, name)
                real = path.resolve()
                if not real.is_relative_to(real_base) or not real.is_file():
                    continue  # a symlink out of the job's directory, or a dangling one
                relative = path.relative_to(base).as_posix()
                artifacts.append(Artifact(path=relative, size=real.stat().st_size))
        return sorted(artifacts, key=lambda artifact: artifact.path)

    def resolve(self, job_id: str, path: str) -> Path:
        if not _JOB_ID.match(job_id):
            raise ArtifactNotFound(f"no artifact {path!r}")
        base = self.root / job_id
        candidate = PurePosixPath(path)
        if (
            not path
            or "\x00" in path
            or "\\" in path
            or candidate.is_absolute()
            or any(part in ("..", "") for part in path.split("/"))
        ):
            raise ArtifactNotFound(f"no artifact {path!r}: paths are relative to the job and stay inside it")
        real = (base / candidate).resolve()
        if not base.is_dir() or not real.is_relative_to(base.resolve()) or not real.is_file():
            raise ArtifactNotFound(f"no artifact {path!r}")
        return real

    def publish(self, job_id: str) -> None:
        """Nothing to do: files written to a local directory are already visible to the API."""

    def _job_path(self, job_id: str) -> Path:
        if not _JOB_ID.match(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.root / job_id
