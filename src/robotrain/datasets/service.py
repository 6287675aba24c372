"""The dataset service: what a user may do with their uploads: upload one, list, read and delete them. Routes call
it; it calls the DatasetStore and DatasetFiles ports.

An upload arrives as an archive file the route streamed to disk inside the datasets root. It is unpacked member by
member with the path proof (robotrain.datasets.archive), read by the training library's one reader (a summary
exists only for a dataset that trains), renamed atomically into <root>/<owner hash>/<dataset id>/ and only then
recorded and published. Nothing is ever written, renamed or deleted outside the datasets root.
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

from robotrain.datasets.archive import MEDIA_TYPES, ArchiveError, ArchiveTooLarge, dataset_root, extract
from robotrain.datasets.errors import DatasetInvalid, DatasetNotFound, UnsupportedArchive
from robotrain.datasets.models import Dataset, DatasetPage, dataset_dir, new_dataset_id
from robotrain.errors import PayloadTooLarge, ServiceUnavailable
from robotrain.jobs.models import utcnow
from robotrain.ports import Components, DatasetFiles, DatasetStore
from training.data.access import UPLOAD_ID
from training.paths import inside, remove_inside, rename_inside

log = logging.getLogger(__name__)

STAGING = ".staging"  # uploads and unpacked archives being checked, inside the datasets root
_STALE_STAGING_S = 3600  # what an interrupted upload left behind is removed by a later one


class DatasetService:
    def __init__(self, components: Components):
        self._settings = components.settings
        self._store_or_none = components.datasets
        self._files_or_none = components.dataset_files

    @property
    def _store(self) -> DatasetStore:
        if self._store_or_none is None:
            raise ServiceUnavailable("dataset uploads are not available on this server")
        return self._store_or_none

    @property
    def _files(self) -> DatasetFiles:
        if self._files_or_none is None:
            raise ServiceUnavailable("dataset uploads are not available on this server")
        return self._files_or_none

    # --- uploads ------------------------------------------------------------------------------------------------

    @staticmethod
    def check_media_type(media_type: str) -> None:
        if media_type not in MEDIA_TYPES:
            raise UnsupportedArchive(
                f"upload a dataset directory as a tar (optionally gzipped) or zip archive, with Content-Type "
                f"application/x-tar, application/gzip or application/zip (got {media_type or 'none'!r})"
            )

    def staging_file(self) -> Path:
        """A fresh path inside the datasets root for an upload's body (same file system as its final place)."""
        staging = inside(self._files.root, STAGING)
        staging.mkdir(parents=True, exist_ok=True)
        self._remove_stale(staging)
        return staging / f"{uuid.uuid4().hex}.upload"

    def create(self, user_id: str, name: str, archive: Path, media_type: str) -> Dataset:
        """Unpack, check and store the uploaded `archive` as a new dataset of `user_id`. DatasetInvalid (422) names
        what is wrong, relative to the dataset's root; PayloadTooLarge (413) when it unpacks to more than the
        dataset limit or the user's remaining storage."""
        self.check_media_type(media_type)
        root = self._files.root
        dataset_id = new_dataset_id()
        quota = self._settings.max_artifacts_bytes_per_user
        headroom = quota - self._store.usage_bytes(user_id)
        max_bytes = min(self._settings.max_dataset_bytes, headroom)
        if max_bytes <= 0:
            raise PayloadTooLarge(f"your datasets and job artifacts already use your {quota:,} bytes")
        work = inside(root, STAGING, f"{dataset_id}.d")
        work.mkdir(parents=True)
        final = dataset_dir(root, user_id, dataset_id)
        try:
            try:
                size = extract(archive, media_type, work, max_bytes=max_bytes)
                source = dataset_root(work)
            except ArchiveTooLarge:
                raise PayloadTooLarge(self._too_large(max_bytes, headroom)) from None
            except ArchiveError as error:
                raise DatasetInvalid(str(error)) from None
            summary = self._summarize(source, max_bytes, headroom)
            final.parent.mkdir(parents=True, exist_ok=True)
            rename_inside(root, source, final)
        finally:
            remove_inside(root, work)
        dataset = Dataset(
            id=dataset_id,
            user_id=user_id,
            name=name,
            bytes=size,
            episodes=summary.episodes,
            frames=summary.frames,
            features=summary.features,
            policy_features=summary.policy_features.to_dict(),
            created_at=utcnow(),
        )
        try:
            created = self._store.create(dataset)
        except BaseException:
            remove_inside(root, final)
            raise
        self._files.publish()
        return created

    def _summarize(self, source: Path, max_bytes: int, headroom: int):
        from training.data.inspect import summarize  # the reader (numpy, pyarrow) loads with the first upload
        from training.errors import DatasetError, LimitExceeded

        try:
            return summarize(source, max_bytes=max_bytes)
        except LimitExceeded:
            raise PayloadTooLarge(self._too_large(max_bytes, headroom)) from None
        except DatasetError as error:
            raise DatasetInvalid(f"not a usable LeRobot dataset: {error.message}") from None

    def _too_large(self, max_bytes: int, headroom: int) -> str:
        if max_bytes == headroom:
            return f"the dataset unpacks to more than the {headroom:,} bytes left of your storage"
        return f"the dataset unpacks to more than {max_bytes:,} bytes, this service's limit"

    @staticmethod
    def _remove_stale(staging: Path) -> None:
        cutoff = time.time() - _STALE_STAGING_S
        for entry in staging.iterdir():
            try:
                if entry.lstat().st_mtime < cutoff:
                    remove_inside(staging, entry)
            except FileNotFoundError:
                continue

    # --- reads and deletes --------------------------------------------------------------------------------------

    def get(self, user_id: str, dataset_id: str) -> Dataset:
        dataset = self._store.get(dataset_id, user_id=user_id) if UPLOAD_ID.match(dataset_id) else None
        if dataset is None:
            raise DatasetNotFound(dataset_id)
        return dataset

    def list_datasets(self, user_id: str, *, limit: int = 20, cursor: str | None = None) -> DatasetPage:
        return self._store.list_datasets(user_id=user_id, limit=limit, cursor=cursor)

    def delete(self, user_id: str, dataset_id: str) -> None:
        """Delete the user's dataset and its files; DatasetInUse (409) while a queued or running job names it."""
        if not UPLOAD_ID.match(dataset_id) or not self._store.delete(dataset_id, user_id=user_id):
            raise DatasetNotFound(dataset_id)
        remove_inside(self._files.root, dataset_dir(self._files.root, user_id, dataset_id))
        self._files.publish()
