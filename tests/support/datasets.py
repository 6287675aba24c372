"""Uploaded datasets for tests: a small real push2d dataset packed as a gzipped tar and stored through the real
DatasetService (unpacked, read by the one reader, recorded), so tests start from what an upload really leaves."""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path

from robotrain.datasets.models import Dataset
from robotrain.datasets.service import DatasetService
from robotrain.ports import Components
from training.data.sources import write_builtin_dataset


def pack(directory: Path, archive: Path, *, top: str | None = None) -> Path:
    """`directory` as a gzipped tar: its contents at the archive's top, or under `top`."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(directory, arcname=top or ".")
    return archive


def push2d_archive(where: Path, *, episodes: int = 4) -> Path:
    dataset = write_builtin_dataset("push2d", where / "push2d", episodes=episodes, seed=3)
    return pack(dataset, where / "push2d.tgz")


def make_upload(components: Components, user_id: str, *, name: str = "push2d demo") -> Dataset:
    with tempfile.TemporaryDirectory() as scratch:
        archive = push2d_archive(Path(scratch))
        return DatasetService(components).create(user_id, name, archive, "application/gzip")
