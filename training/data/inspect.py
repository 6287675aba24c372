"""What a dataset holds, summarised for a catalogue (the service's uploads): read once through the one reader, so a
summary exists only for a dataset that trains. Also the features of the builtin datasets, known without generating
them, so a spec on one can be sized at submit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.data.dataset import ACTION_KEY, VECTOR_OBSERVATION_KEYS, PolicyFeatures
from training.data.sources import read_local


@dataclass(frozen=True)
class DatasetSummary:
    episodes: int
    frames: int
    features: dict[str, dict[str, Any]]  # meta/info.json's features: name -> {dtype, shape, names}
    policy_features: PolicyFeatures  # what a policy trained on it consumes


def summarize(root: Path, *, max_bytes: int | None = None) -> DatasetSummary:
    """Read the dataset at `root` (DatasetError, with paths relative to `root`, when it would not train) and
    summarise it."""
    dataset = read_local(root, max_bytes=max_bytes)
    info = json.loads((Path(root) / "meta" / "info.json").read_text())  # the reader has parsed it already
    features = {
        name: {"dtype": spec["dtype"], "shape": list(spec["shape"]), "names": spec.get("names")}
        for name, spec in info["features"].items()
    }
    return DatasetSummary(
        episodes=dataset.num_episodes,
        frames=dataset.num_frames,
        features=features,
        policy_features=dataset.policy_features(),
    )


def builtin_policy_features(name: str) -> PolicyFeatures:
    """The features a policy sees on builtin dataset `name` (as the reader would select them)."""
    from training.envs import push2d

    if name != "push2d":
        raise ValueError(f"unknown builtin dataset {name!r}")
    features = push2d.DATASET_FEATURES
    return PolicyFeatures(
        observation={key: features[key]["shape"][0] for key in VECTOR_OBSERVATION_KEYS if key in features},
        action_dim=features[ACTION_KEY]["shape"][0],
    )
