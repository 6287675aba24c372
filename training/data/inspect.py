"""What a dataset holds, summarised for a catalogue (the service's uploads): read once through the one reader, so a
summary exists only for a dataset that trains. Also the features of the builtin datasets, known without generating
them, so a spec on one can be sized at submit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.data.dataset import ACTION_KEY, VECTOR_OBSERVATION_KEYS, PolicyFeatures, is_camera_key
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


def builtin_policy_features(name: str, query: str = "") -> PolicyFeatures:
    """The features a policy sees on builtin dataset `name` with these URI parameters (as the reader would select
    them from the dataset the generator writes), without generating it."""
    from training.data.lerobot_format import CAMERA_DTYPES
    from training.data.sources import parse_builtin_params
    from training.envs import push2d, pusht

    params = parse_builtin_params(name, query)
    if name == "pusht":
        features = pusht.dataset_features(params.video)
    elif name == "push2d":
        features = push2d.dataset_features(params.obs_type, params.image_size, params.video)
    else:
        raise ValueError(f"unknown builtin dataset {name!r}")
    return PolicyFeatures(
        observation={key: features[key]["shape"][0] for key in VECTOR_OBSERVATION_KEYS if key in features},
        action_dim=features[ACTION_KEY]["shape"][0],
        images={
            key: (spec["shape"][2], spec["shape"][0], spec["shape"][1])  # stored (height, width, channels)
            for key, spec in features.items()
            if is_camera_key(key) and spec["dtype"] in CAMERA_DTYPES
        },
    )
