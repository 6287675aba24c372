"""What one user's job may read and use, from the operator's settings: the training library's DatasetAccess (which
dataset sources) and Limits (how big). The API checks a spec against them at submit; the worker hands the same
ones to `training.run`, which checks again."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from robotrain.settings import Settings
from training.data.access import DatasetAccess
from training.spec import Limits


def training_limits(settings: Settings) -> Limits:
    return Limits(
        max_parameters=settings.max_policy_parameters,
        max_batch_bytes=settings.max_batch_bytes,
        max_steps=settings.max_steps,
        max_eval_episodes=settings.max_eval_episodes,
        max_builtin_episodes=settings.max_builtin_episodes,
        max_checkpoint_saves=settings.max_checkpoint_saves,
        max_dataset_bytes=settings.max_dataset_bytes,
        checkpoints_kept=settings.checkpoints_kept,
    )


def private_dirs(settings: Settings) -> tuple[Path, ...]:
    """The service's own state, never a file:// dataset: the data dir (keys, stores, logs), artifacts, the dataset
    cache and the uploads."""
    return tuple(
        path.absolute()
        for path in (
            settings.data_dir,
            settings.resolved_artifacts_dir,
            settings.resolved_dataset_cache_dir,
            settings.resolved_datasets_dir,
        )
    )


def dataset_access(settings: Settings, *, owner: str, uploads: Mapping[str, Path] | None = None) -> DatasetAccess:
    return DatasetAccess(
        file_roots=tuple(root.absolute() for root in settings.file_dataset_roots),
        s3_buckets=frozenset(settings.s3_buckets),
        hf_orgs=frozenset(settings.hf_orgs),
        owner=owner,
        uploads=dict(uploads or {}),
        private_dirs=private_dirs(settings),
    )
