"""The in-memory form of a LeRobot dataset's low-dimensional part: what readers return and samplers consume."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ACTION_KEY = "action"
# Vector observation features a policy can consume today, in the order they are concatenated.
VECTOR_OBSERVATION_KEYS = ("observation.state", "observation.environment_state")


@dataclass(frozen=True)
class Feature:
    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class PolicyFeatures:
    """What a policy needs to know about the data to build its layers: each observation feature's and the action's
    width. Saved in the checkpoint's config.json so a policy can be rebuilt without the dataset."""

    observation: dict[str, int]
    action_dim: int

    def to_dict(self) -> dict:
        return {"observation": dict(self.observation), "action_dim": self.action_dim}

    @classmethod
    def from_dict(cls, data: dict) -> PolicyFeatures:
        return cls(observation={k: int(v) for k, v in data["observation"].items()}, action_dim=int(data["action_dim"]))


@dataclass
class EpisodeDataset:
    """All frames of the vector features, concatenated episode after episode.

    `frames[key]` is a float32 array of shape (num_frames, dim) for every observation key and the action;
    `episode_ranges[e] = (from, to)` is episode e's global row range; `stats[key]` holds at least mean, std, min,
    max (float32 arrays of shape (dim,)) taken from the dataset's meta/stats.json.
    """

    root: Path
    codebase_version: str
    fps: int
    features: dict[str, Feature]
    frames: dict[str, np.ndarray]
    episode_ranges: np.ndarray
    stats: dict[str, dict[str, np.ndarray]]
    observation_keys: list[str] = field(default_factory=list)
    action_key: str = ACTION_KEY

    @property
    def num_frames(self) -> int:
        return int(self.frames[self.action_key].shape[0])

    @property
    def num_episodes(self) -> int:
        return int(self.episode_ranges.shape[0])

    def policy_features(self) -> PolicyFeatures:
        return PolicyFeatures(
            observation={k: int(self.frames[k].shape[1]) for k in self.observation_keys},
            action_dim=int(self.frames[self.action_key].shape[1]),
        )
