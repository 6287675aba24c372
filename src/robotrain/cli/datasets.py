"""The dataset commands: `robotrain datasets upload DIR|ARCHIVE`, `datasets list`, `datasets rm ID`, and the upload
`submit` does when a spec's dataset.uri is a local directory.

A directory is packed as a gzipped tar of its regular files (a symlink in it is refused here, as the server would
refuse it) in a temporary file and streamed; an archive (.tar, .tar.gz/.tgz, .zip) is streamed as it is."""

from __future__ import annotations

import argparse
import json
import os
import stat
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robotrain.cli.client import ApiClient, CliError, add_paging, print_page

UPLOAD_TIMEOUT_S = 600.0  # the server unpacks and reads the dataset before it answers
_SUFFIX_TYPES = (
    (".tar.gz", "application/gzip"),
    (".tgz", "application/gzip"),
    (".tar", "application/x-tar"),
    (".zip", "application/zip"),
)


def pack_directory(directory: Path, archive: Path) -> Path:
    """`directory`'s files and subdirectories as a gzipped tar with the dataset at its top."""
    with tarfile.open(archive, "w:gz") as tar:
        for current, subdirs, files in os.walk(directory):
            subdirs.sort()
            for name in sorted([*subdirs, *files]):
                path = Path(current, name)
                relative = path.relative_to(directory).as_posix()
                mode = os.lstat(path).st_mode
                if stat.S_ISLNK(mode):
                    raise CliError("unsafe_dataset", f"{relative} in {directory} is a symlink; copy the file instead")
                if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                    raise CliError("unsafe_dataset", f"{relative} in {directory} is not a regular file")
                tar.add(path, arcname=relative, recursive=False)
    return archive


def _media_type(path: Path) -> str:
    for suffix, media_type in _SUFFIX_TYPES:
        if path.name.lower().endswith(suffix):
            return media_type
    raise CliError("unsupported_archive", f"{path} is not a directory, .tar, .tar.gz, .tgz or .zip")


def upload(api: ApiClient, path: Path, name: str | None = None) -> dict[str, Any]:
    """Upload a dataset directory or archive; the server's dataset record."""
    if not path.exists():
        raise CliError("not_found", f"{path} does not exist")
    with tempfile.TemporaryDirectory(prefix="robotrain-upload-") as scratch:
        if path.is_dir():
            archive, media_type = pack_directory(path, Path(scratch) / "dataset.tgz"), "application/gzip"
        else:
            archive, media_type = path, _media_type(path)
        with archive.open("rb") as body:
            return api.json(
                "POST",
                "/datasets",
                params={"name": name or path.name},
                content=body,
                headers={"Content-Type": media_type},
                timeout=UPLOAD_TIMEOUT_S,
            )


def local_dataset(uri: Any) -> Path | None:
    """The local directory a spec's dataset.uri names when it is a path rather than a URI; None for a URI."""
    if not isinstance(uri, str) or "://" in uri:
        return None
    path = Path(uri).expanduser()
    if not path.is_dir():
        raise CliError("not_found", f"dataset.uri {uri!r} is neither a URI nor a local dataset directory")
    return path


def _line(dataset: dict[str, Any]) -> str:
    return (
        f"{dataset['id']}  {dataset['created_at'][:19]}  {dataset['episodes']:>6} episodes  "
        f"{dataset['bytes']:>12,} bytes  {dataset['name']}"
    )


def cmd_upload(api: ApiClient, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    dataset = upload(api, Path(args.path), args.name)
    if args.json:
        out(json.dumps(dataset))
        return 0
    out(f"uploaded {args.path} as {dataset['uri']}")
    out(_line(dataset))
    return 0


def cmd_list(api: ApiClient, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    return print_page(api, "/datasets", args, out, _line)


def cmd_rm(api: ApiClient, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    api.request("DELETE", f"/datasets/{args.dataset_id}")
    out(json.dumps({"deleted": args.dataset_id}) if args.json else f"deleted {args.dataset_id}")
    return 0


COMMANDS = {"upload": cmd_upload, "list": cmd_list, "rm": cmd_rm}


def cmd_datasets(api: ApiClient, args: argparse.Namespace, out: Callable[[str], None]) -> int:
    return COMMANDS[args.datasets_command](api, args, out)


def add_parser(commands: Any, as_json: argparse.ArgumentParser) -> None:
    """`as_json`: the parent parser that gives every client command its --json."""
    datasets = commands.add_parser("datasets", help="upload, list and delete your datasets")
    sub = datasets.add_subparsers(dest="datasets_command", required=True, metavar="COMMAND")
    uploading = sub.add_parser(
        "upload", parents=[as_json], help="upload a LeRobot dataset directory or archive (.tar, .tgz, .zip)"
    )
    uploading.add_argument("path")
    uploading.add_argument("--name", help="a name to show in listings (default: the file or directory name)")
    listing = sub.add_parser("list", parents=[as_json], help="list your datasets, newest first")
    add_paging(listing)
    sub.add_parser(
        "rm", parents=[as_json], help="delete a dataset (refused while a queued, starting or running job uses it)"
    ).add_argument("dataset_id")
