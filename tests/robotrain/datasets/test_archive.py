"""Unpacking uploads: what the attack suite sends over HTTP is refused here too (quickly, per case), plus the cases
that need a hand-made archive: a name given twice, a file where a directory is due, encrypted zip members, too many
entries."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from robotrain.datasets.archive import ArchiveError, ArchiveTooLarge, dataset_root, extract


def tar_of(tmp_path: Path, members: list[tuple[str, bytes | None]]) -> Path:
    """A gzipped tar of (name, bytes) files, or directories where the bytes are None."""
    path = tmp_path / "upload.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def target(tmp_path: Path) -> Path:
    (tmp_path / "out").mkdir()
    return tmp_path / "out"


def test_files_and_directories_are_unpacked_and_counted(tmp_path: Path, target: Path) -> None:
    archive = tar_of(tmp_path, [("./", None), ("ds/", None), ("ds/meta/info.json", b"{}"), ("ds/data/a", b"12345")])
    assert extract(archive, "application/gzip", target, max_bytes=100) == 7
    assert (target / "ds" / "data" / "a").read_bytes() == b"12345"
    assert dataset_root(target) == target / "ds"


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([("a", b"1"), ("a", b"2")], "appears twice"),
        ([("a", b"1"), ("a/b", b"2")], "cannot be unpacked"),
        ([("../a", b"1")], "segment"),
        ([("/abs", b"1")], "absolute"),
        ([("a\\..\\b", b"1")], "backslash"),
    ],
)
def test_members_that_collide_or_climb_refuse_the_archive(tmp_path, target, members, message) -> None:
    with pytest.raises(ArchiveError, match=message):
        extract(tar_of(tmp_path, members), "application/gzip", target, max_bytes=100)


def test_bytes_are_counted_as_written_not_as_declared(tmp_path: Path, target: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("big", b"\0" * 10_000)
    with pytest.raises(ArchiveTooLarge):
        extract(archive, "application/zip", target, max_bytes=9_999)


def test_encrypted_zip_members_and_too_many_entries_are_refused(tmp_path: Path, target: Path) -> None:
    archive = tmp_path / "locked.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("a", b"1")
    raw = bytearray(archive.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # set the "encrypted" flag bit
        at = raw.find(signature) + offset
        raw[at] |= 1
    archive.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match="encrypted"):
        extract(archive, "application/zip", target, max_bytes=100)
    many = tar_of(tmp_path, [(f"f{i}", b"") for i in range(5)])
    with pytest.raises(ArchiveError, match="more than 4 entries"):
        extract(many, "application/gzip", target, max_bytes=100, max_members=4)


def test_an_archive_without_a_dataset_at_its_top_or_in_one_directory_is_refused(tmp_path, target) -> None:
    extract(tar_of(tmp_path, [("a/meta/info.json", b"{}"), ("b/x", b"")]), "application/gzip", target, max_bytes=100)
    with pytest.raises(ArchiveError, match="holds no LeRobot dataset"):
        dataset_root(target)
