"""Unpacking an uploaded dataset archive (tar, gzipped tar, zip) member by member, so nothing it holds can land
outside the directory it is unpacked into.

Every member name goes through training.paths (no `..`, absolute names, empty segments, backslashes; the joined path
must resolve inside the target), and only regular files and directories are created: symlinks, hard links, devices
and FIFOs refuse the whole archive, as do encrypted zip members and a name given twice. Files are created with
O_EXCL | O_NOFOLLOW and their bytes are counted as they are written (not taken from the headers, which a zip bomb
understates), so the extracted total never passes `max_bytes`.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO

from training.paths import UnsafePathError, inside

TAR_TYPES = ("application/x-tar", "application/gzip", "application/x-gzip", "application/tar+gzip")
ZIP_TYPES = ("application/zip", "application/x-zip-compressed")
MEDIA_TYPES = (*TAR_TYPES, *ZIP_TYPES)
MAX_MEMBERS = 100_000
_CHUNK = 1 << 20


class ArchiveError(ValueError):
    """The archive cannot be unpacked safely; the message names the member."""


class ArchiveTooLarge(ValueError):
    """The archive unpacks to more than the allowed bytes."""


@dataclass(frozen=True)
class _Member:
    name: str
    is_dir: bool
    open: Callable[[], IO[bytes] | None] | None  # for files


def extract(archive: Path, media_type: str, target: Path, *, max_bytes: int, max_members: int = MAX_MEMBERS) -> int:
    """Unpack `archive` (of `media_type`) into the existing empty directory `target`; return the bytes written."""
    members = _tar_members if media_type in TAR_TYPES else _zip_members
    written = 0
    count = 0
    name = ""
    try:
        for member in members(archive, media_type):
            count += 1
            if count > max_members:
                raise ArchiveError(f"the archive holds more than {max_members} entries")
            name = member.name[2:] if member.name.startswith("./") else member.name
            if name in ("", ".", "./"):
                continue  # the archive's own top directory
            try:
                path = inside(target, name, what="archive member")
            except UnsafePathError as error:
                raise ArchiveError(str(error)) from None
            if member.is_dir or member.open is None:
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            source = member.open()
            if source is None:
                raise ArchiveError(f"archive member {name!r} cannot be read")
            written += _write_file(path, source, max_bytes - written, name)
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise ArchiveError(f"the archive is damaged at {name!r} ({type(error).__name__})") from None
    except OSError as error:  # a member that does not fit the tree so far (a file where a directory is due), ...
        raise ArchiveError(f"archive member {name!r} cannot be unpacked ({error.strerror or error})") from None
    return written


def _write_file(path: Path, source: IO[bytes], budget: int, name: str) -> int:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except FileExistsError:
        raise ArchiveError(f"archive member {name!r} appears twice") from None
    except IsADirectoryError:
        raise ArchiveError(f"archive member {name!r} is both a file and a directory") from None
    size = 0
    with os.fdopen(descriptor, "wb") as out, source:
        while chunk := source.read(_CHUNK):
            size += len(chunk)
            if size > budget:
                raise ArchiveTooLarge(name)
            out.write(chunk)
    return size


def _tar_members(archive: Path, media_type: str) -> Iterator[_Member]:
    gzipped = media_type != "application/x-tar"  # a plain tar type may still hold a gzipped tar: "r:*" detects it
    try:
        with tarfile.open(archive, "r:gz" if gzipped else "r:*") as tar:
            for info in tar:  # streamed: members are read as they come, none is buffered whole
                if info.isdir():
                    yield _Member(info.name, True, None)
                elif info.isreg():
                    yield _Member(info.name, False, partial(tar.extractfile, info))
                else:
                    kind = "a link" if info.issym() or info.islnk() else "a device or FIFO"
                    raise ArchiveError(f"archive member {info.name!r} is {kind}; only files and directories are taken")
    except (tarfile.TarError, EOFError, OSError) as error:
        raise ArchiveError(f"not a readable {'gzipped ' if gzipped else ''}tar archive ({error})") from None


def _zip_members(archive: Path, media_type: str) -> Iterator[_Member]:
    try:
        with zipfile.ZipFile(archive) as bundle:
            for info in bundle.infolist():
                kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip records permissions only
                if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                    raise ArchiveError(f"archive member {info.filename!r} is a link or special file")
                if info.flag_bits & 0x1:
                    raise ArchiveError(f"archive member {info.filename!r} is encrypted")
                if info.is_dir():
                    yield _Member(info.filename, True, None)
                else:
                    yield _Member(info.filename, False, partial(bundle.open, info))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError) as error:
        raise ArchiveError(f"not a readable zip archive ({error})") from None


def dataset_root(extracted: Path) -> Path:
    """The dataset inside an unpacked archive: its top level (packed as `tar -C DIR .`), or its one top-level
    directory (packed as `tar czf x.tgz DIR`)."""
    if (extracted / "meta" / "info.json").is_file():
        return extracted
    entries = [entry for entry in extracted.iterdir() if not entry.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and (entries[0] / "meta" / "info.json").is_file():
        return entries[0]
    raise ArchiveError(
        "the archive holds no LeRobot dataset: expected meta/info.json at its top or in its one top-level directory"
    )
