"""The one way to build a filesystem path from input (a URI, an object key, an archive member, an owner id): the
result never leaves its root.

`relative_parts` refuses what could climb or jump (`..`, `.`, absolute paths, empty segments, backslashes, NUL,
Windows drive letters); `inside` joins the checked parts onto the root and then proves the resolved path (symlinks
followed) is still the root or below it, so a symlink planted anywhere on the way cannot redirect a write. Callers
that rename or delete use `replace_inside` / `remove_inside`, which prove the same for every path they touch. The
service and the training library both use this module; it imports nothing of either.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
from pathlib import Path

_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafePathError(ValueError):
    """A path built from input would leave its root. The message names the input, never the root."""


def relative_parts(text: str, *, what: str = "path") -> tuple[str, ...]:
    """The segments of a relative POSIX path taken from input, or UnsafePathError. A trailing slash is allowed
    (directory names in archives end with one); nothing else that is not a plain name is."""
    if not isinstance(text, str) or not text:
        raise UnsafePathError(f"{what} is empty")
    if "\x00" in text or "\\" in text:
        raise UnsafePathError(f"{what} {text!r} contains a backslash or NUL")
    if text.startswith("/") or _DRIVE.match(text):
        raise UnsafePathError(f"{what} {text!r} is absolute")
    segments = text[:-1].split("/") if text.endswith("/") else text.split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise UnsafePathError(f"{what} {text!r} has an empty, '.' or '..' segment")
    return tuple(segments)


def is_inside(root: Path, path: Path) -> bool:
    """Whether `path`, with every symlink resolved, is `root` (resolved) or lies below it."""
    return Path(path).resolve().is_relative_to(Path(root).resolve())


def inside(root: Path, *parts: str, what: str = "path") -> Path:
    """`root` joined with each of `parts` (each a relative path checked by `relative_parts`), proven to stay inside
    `root` once resolved. Returns the joined (unresolved) path, so a caller sees the names it asked for."""
    root = Path(root)
    segments: list[str] = []
    for part in parts:
        segments += relative_parts(part, what=what)
    candidate = root.joinpath(*segments)
    if not is_inside(root, candidate):
        raise UnsafePathError(f"{what} {'/'.join(segments)!r} leaves its directory (through a symlink)")
    return candidate


def owner_dir_name(owner: str) -> str:
    """A directory name for an owner id, whatever characters the id holds: a fixed-width hash."""
    return "u" + hashlib.sha256(owner.encode()).hexdigest()[:32]


def digest_name(*values: str) -> str:
    """A directory name for a source (a bucket and prefix, a repo and revision): a hash of its parts."""
    digest = hashlib.sha256()
    for value in values:
        digest.update(value.encode())
        digest.update(b"\x00")
    return digest.hexdigest()[:40]


def _require_strictly_inside(root: Path, path: Path, action: str) -> None:
    # The path itself may be a symlink: judge where its parent resolves to, plus its own name, so a link is
    # replaced or removed as a link and never followed to its target.
    parent = path.parent.resolve()
    real_root = Path(root).resolve()
    if not parent.is_relative_to(real_root) or path.name in ("", ".", ".."):
        raise UnsafePathError(f"refusing to {action} {path.name!r}: it is not inside its directory")


def replace_inside(root: Path, source: Path, target: Path) -> None:
    """os.replace(source, target) after proving both lie strictly inside `root`."""
    _require_strictly_inside(root, source, "move")
    _require_strictly_inside(root, target, "replace")
    os.replace(source, target)


def rename_inside(root: Path, source: Path, target: Path) -> None:
    """os.rename(source, target) (which refuses to replace a non-empty directory) after the same proof."""
    _require_strictly_inside(root, source, "move")
    _require_strictly_inside(root, target, "create")
    os.rename(source, target)


def remove_inside(root: Path, path: Path) -> None:
    """Delete `path` (a directory tree, a file or a link; a link is removed, never followed) if it lies strictly
    inside `root`; nothing when it does not exist."""
    _require_strictly_inside(root, path, "delete")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path, ignore_errors=True)  # rmtree never follows symlinks inside the tree
    else:
        Path(path).unlink(missing_ok=True)


def check_tree(root: Path) -> int:
    """Walk a directory that will be read as a dataset: every entry must be a regular file or a directory, or a
    symlink whose target stays inside `root`. Returns the total size of the regular files; UnsafePathError names
    the first offending entry relative to `root`."""
    root = Path(root)
    real_root = root.resolve()
    total = 0
    for directory, subdirs, files in os.walk(root):  # followlinks=False: a linked directory is checked, not entered
        for name in [*subdirs, *files]:
            path = Path(directory, name)
            relative = path.relative_to(root).as_posix()
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                if not path.resolve().is_relative_to(real_root):
                    raise UnsafePathError(f"{relative} is a symlink that points outside the dataset")
                continue
            if stat.S_ISREG(mode):
                total += os.lstat(path).st_size
            elif not stat.S_ISDIR(mode):
                raise UnsafePathError(f"{relative} is not a regular file or directory")
    return total
