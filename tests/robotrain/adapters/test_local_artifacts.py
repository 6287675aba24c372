from __future__ import annotations

import os
from pathlib import Path

import pytest

from robotrain.adapters.local_artifacts import LocalArtifactStore
from robotrain.errors import ArtifactNotFound
from robotrain.ports import Artifact

JOB = "job_01hzzzzzzzzzzzzzzzzzzzzzzz"


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    artifacts = LocalArtifactStore(tmp_path / "artifacts")
    job_dir = artifacts.job_dir(JOB)
    (job_dir / "checkpoints" / "000010" / "pretrained_model").mkdir(parents=True)
    (job_dir / "checkpoints" / "000010" / "pretrained_model" / "model.safetensors").write_bytes(b"x" * 10)
    (job_dir / "result.json").write_text("{}")
    (job_dir / ".result.json.tmp").write_text("half")
    (job_dir / "checkpoints" / "000020.tmp").mkdir()
    (job_dir / "checkpoints" / "000020.tmp" / "model.safetensors").write_bytes(b"y")
    (tmp_path / "secret.txt").write_text("not yours")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "key").write_text("not yours")
    os.symlink(tmp_path / "secret.txt", job_dir / "escape.txt")
    os.symlink(tmp_path / "outside", job_dir / "escape_dir")
    os.symlink(job_dir / "result.json", job_dir / "inside_link.json")
    return artifacts


def test_job_dir_is_created_per_job(tmp_path: Path) -> None:
    artifacts = LocalArtifactStore(tmp_path)
    assert artifacts.job_dir(JOB) == tmp_path / JOB and (tmp_path / JOB).is_dir()


def test_list_gives_relative_paths_and_sizes_without_temp_files_or_escapes(store: LocalArtifactStore) -> None:
    assert store.list_files(JOB) == [
        Artifact(path="checkpoints/000010/pretrained_model/model.safetensors", size=10),
        Artifact(path="inside_link.json", size=2),
        Artifact(path="result.json", size=2),
    ]


def test_list_of_a_job_without_files_is_empty(tmp_path: Path) -> None:
    assert LocalArtifactStore(tmp_path).list_files("job_01hyyyyyyyyyyyyyyyyyyyyyyy") == []


def test_resolve_returns_the_file_inside_the_job(store: LocalArtifactStore) -> None:
    path = store.resolve(JOB, "checkpoints/000010/pretrained_model/model.safetensors")
    assert path.read_bytes() == b"x" * 10


@pytest.mark.parametrize(
    "bad",
    [
        "../secret.txt",
        "checkpoints/../../secret.txt",
        "/etc/passwd",
        "escape.txt",
        "escape_dir/key",
        "missing.bin",
        "checkpoints",
        "",
        "a//b",
        "result.json\x00",
        "..\\secret.txt",
    ],
)
def test_resolve_refuses_paths_that_leave_the_job_or_do_not_exist(store: LocalArtifactStore, bad: str) -> None:
    with pytest.raises(ArtifactNotFound):
        store.resolve(JOB, bad)


def test_resolve_refuses_a_job_id_that_is_a_path(store: LocalArtifactStore) -> None:
    with pytest.raises(ArtifactNotFound):
        store.resolve("..", "secret.txt")
