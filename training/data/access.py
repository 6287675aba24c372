"""Who may read which dataset source: the rules every dataset URI passes before anything is read.

- `builtin://` is generated here and open to everyone.
- `file://` only under a root the operator lists (ROBOTRAIN_FILE_DATASET_ROOTS), never inside the service's own
  state (keys, artifacts, caches), and never through a symlink that leaves the root.
- `s3://` only for the buckets the operator lists (ROBOTRAIN_S3_BUCKETS): they are read with the service's
  credentials, so an unlisted bucket would lend those credentials to every user.
- `hf://` for everyone, read anonymously (public repos only); the service's Hugging Face token is used only for the
  organisations the operator lists (ROBOTRAIN_HF_ORGS).
- `dataset://<id>` only for the owner of that upload (the service resolves it to a directory before training).

The URI's structure is checked too (the same parsers serve the spec's validation): no `..`, `.`, empty segments or
backslashes in a path, prefix or revision, in plain or percent-encoded form. Refusals are DatasetAccessDenied, whose
message names the rule and never says whether anything exists beyond it. This module is light (no numpy, torch or
cloud SDK) so the API can check a URI at submit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from training.errors import DatasetAccessDenied
from training.paths import UnsafePathError, is_inside, relative_parts

UPLOAD_SCHEME = "dataset"
UPLOAD_ID = re.compile(r"^ds_[0-9a-z]{26}$")
HF_REPO = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)/([A-Za-z0-9][A-Za-z0-9._-]*)$")
S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
ENV_FILE_ROOTS = "ROBOTRAIN_FILE_DATASET_ROOTS"
ENV_S3_BUCKETS = "ROBOTRAIN_S3_BUCKETS"
ENV_HF_ORGS = "ROBOTRAIN_HF_ORGS"


class UriError(ValueError):
    """A dataset URI whose structure is wrong (the spec turns it into a validation error)."""


def _csv(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


@dataclass(frozen=True)
class DatasetAccess:
    """What one run may read. The default allows only builtin datasets and public Hugging Face repos."""

    file_roots: tuple[Path, ...] = ()
    s3_buckets: frozenset[str] = frozenset()
    hf_orgs: frozenset[str] = frozenset()
    # Whose run this is: caches of private sources are kept per owner. None for a single-user run (the CLI).
    owner: str | None = None
    # The uploads this run may read: dataset id -> its directory (filled by the service for the job's owner).
    uploads: Mapping[str, Path] = field(default_factory=dict)
    # The service's own state, never readable as a file:// dataset even under an allowed root.
    private_dirs: tuple[Path, ...] = ()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> DatasetAccess:
        """The operator's rules from the same variables the service reads (for `python -m training run`)."""
        return cls(
            file_roots=tuple(Path(root).expanduser().absolute() for root in _csv(environ.get(ENV_FILE_ROOTS))),
            s3_buckets=frozenset(_csv(environ.get(ENV_S3_BUCKETS))),
            hf_orgs=frozenset(_csv(environ.get(ENV_HF_ORGS))),
        )

    def with_file_roots(self, roots: Iterable[Path]) -> DatasetAccess:
        return DatasetAccess(
            file_roots=(*self.file_roots, *roots),
            s3_buckets=self.s3_buckets,
            hf_orgs=self.hf_orgs,
            owner=self.owner,
            uploads=self.uploads,
            private_dirs=self.private_dirs,
        )


# ------------------------------------------------------------------------------------------------------ parsing
def _checked(text: str, what: str) -> tuple[str, ...]:
    """Segments of a path taken from a URI, checked in plain and percent-decoded form."""
    try:
        relative_parts(text, what=what)
        return relative_parts(unquote(text), what=what)
    except UnsafePathError as error:
        raise UriError(str(error)) from None


def file_path(uri: str) -> Path:
    """The absolute path a file:// URI names (percent-decoded)."""
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
        raise UriError("file:// URIs need an absolute path: file:///abs/path")
    if parts.query or parts.fragment:
        raise UriError("file:// URIs take no query or fragment")
    body = parts.path.lstrip("/")
    return Path("/").joinpath(*_checked(body, "file:// path")) if body else Path("/")


def s3_location(uri: str) -> tuple[str, str]:
    """(bucket, key prefix without surrounding slashes) of an s3:// URI. The prefix is used as given (S3 keys are
    not percent-decoded); its decoded form must be just as plain."""
    parts = urlsplit(uri)
    if not S3_BUCKET.match(parts.netloc):
        raise UriError("s3:// URIs look like s3://bucket/prefix with a valid bucket name")
    if parts.query or parts.fragment:
        raise UriError("s3:// URIs take no query or fragment")
    prefix = parts.path.strip("/")
    if prefix:
        _checked(prefix, "s3:// prefix")
    return parts.netloc, prefix


def hf_location(uri: str) -> tuple[str, str | None]:
    """(org/name, revision or None) of an hf:// URI. A revision may hold slashes (a branch like `refs/pr/1`) but no
    segment that could climb out of the Hub cache's refs directory."""
    parts = urlsplit(uri)
    if parts.query or parts.fragment:
        raise UriError("hf:// URIs take no query or fragment")
    repo, at, revision = (parts.netloc + parts.path).partition("@")
    if not HF_REPO.match(repo):
        raise UriError("hf:// URIs look like hf://org/name or hf://org/name@revision")
    if at:
        if not re.fullmatch(r"[A-Za-z0-9._/-]+", revision):
            raise UriError("an hf:// revision may hold only letters, digits, '.', '_', '-' and '/'")
        _checked(revision, "hf:// revision")
    return repo, (revision if at else None)


def upload_id(uri: str) -> str:
    """The dataset id of a dataset:// URI."""
    parts = urlsplit(uri)
    if parts.path or parts.query or parts.fragment or not UPLOAD_ID.match(parts.netloc):
        raise UriError("dataset:// URIs look like dataset://ds_<26 lowercase letters and digits>")
    return parts.netloc


def scheme(uri: str) -> str:
    return urlsplit(uri).scheme


# ------------------------------------------------------------------------------------------------------- rules
def check_access(uri: str, access: DatasetAccess) -> None:
    """Raise DatasetAccessDenied unless `access` allows reading `uri` (whose structure must already be valid)."""
    kind = scheme(uri)
    if kind == "builtin" or kind == "hf":
        return
    if kind == "file":
        check_file_path(file_path(uri), access)
        return
    if kind == "s3":
        bucket, _ = s3_location(uri)
        if bucket not in access.s3_buckets:
            raise DatasetAccessDenied(
                f"s3:// datasets are limited to the buckets the operator allows (ROBOTRAIN_S3_BUCKETS); "
                f"{bucket!r} is not one of them"
            )
        return
    if kind == UPLOAD_SCHEME:
        dataset_id = upload_id(uri)
        if dataset_id not in access.uploads:
            raise DatasetAccessDenied(f"dataset://{dataset_id} is not one of your uploaded datasets")
        return
    raise DatasetAccessDenied(f"dataset.uri {uri!r}: unknown scheme")


def check_file_path(path: Path, access: DatasetAccess) -> Path:
    """The resolved directory a file:// dataset may be read from, or DatasetAccessDenied. The answer is the same
    whether or not the path exists, so refusals reveal nothing about the host's files."""
    refusal = DatasetAccessDenied(
        f"file:// datasets must lie under a directory the operator allows (ROBOTRAIN_FILE_DATASET_ROOTS); "
        f"{path.as_uri()} does not"
    )
    # Lexically first (the path has no '..' segments), so nothing on disk is consulted for a path outside every
    # root; then resolved, so a symlink inside a root cannot point out of it.
    roots = [Path(root).absolute() for root in access.file_roots]
    if not any(path == root or path.is_relative_to(root) for root in roots):
        raise refusal
    if not any(is_inside(root, path) for root in roots):
        raise refusal
    real = path.resolve()
    for private in access.private_dirs:
        real_private = Path(private).resolve()
        if real.is_relative_to(real_private) or real_private.is_relative_to(real):
            raise refusal
    return real


def hf_token_allowed(repo: str, access: DatasetAccess) -> bool:
    """Whether the service's Hugging Face token may be used for `org/name`: only for listed organisations."""
    return repo.split("/", 1)[0] in access.hf_orgs
