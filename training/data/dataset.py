"""The in-memory form of a LeRobot dataset: what readers return and samplers consume."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

ACTION_KEY = "action"
# Vector observation features a policy can consume, in the order they are concatenated.
VECTOR_OBSERVATION_KEYS = ("observation.state", "observation.environment_state")
# Camera observation features are named `observation.image` or `observation.images.<camera>` (LeRobot's convention).
IMAGE_KEY = "observation.image"
IMAGES_PREFIX = "observation.images."


def is_camera_key(key: str) -> bool:
    return key == IMAGE_KEY or key.startswith(IMAGES_PREFIX)


@dataclass(frozen=True)
class Feature:
    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class PolicyFeatures:
    """What a policy needs to know about the data to build its layers: each vector observation feature's width, each
    camera's (channels, height, width) as stored in the dataset, and the action's width. Saved in the checkpoint's
    config.json so a policy can be rebuilt without the dataset."""

    observation: dict[str, int]
    action_dim: int
    images: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        data: dict = {"observation": dict(self.observation), "action_dim": self.action_dim}
        if self.images:
            data["images"] = {key: list(shape) for key, shape in self.images.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict) -> PolicyFeatures:
        images = data.get("images") or {}
        return cls(
            observation={k: int(v) for k, v in data["observation"].items()},
            action_dim=int(data["action_dim"]),
            images={k: (int(v[0]), int(v[1]), int(v[2])) for k, v in images.items()},
        )


@dataclass(frozen=True)
class EpisodeFrames:
    """Where one episode's frames of one camera are stored, `file` relative to the dataset root.

    image: rows `rows` of the Parquet file (one PNG/JPEG per row, in frame order);
    video: the frames shown at `timestamps` (seconds, ascending) of the MP4 file."""

    episode: int
    file: str
    first_frame: int  # global index of the episode's first frame
    rows: tuple[int, int] | None = None
    timestamps: np.ndarray | None = None


@dataclass(frozen=True)
class CameraSource:
    key: str
    dtype: Literal["image", "video"]
    height: int
    width: int
    channels: int
    episodes: list[EpisodeFrames]


@dataclass
class EpisodeDataset:
    """All frames, concatenated episode after episode.

    `frames[key]` is a float32 array of shape (num_frames, dim) for every vector observation key and the action;
    `cameras[key]` says where each camera's frames are stored, and `images[key]` holds them decoded, uint8
    (num_frames, C, H, W) at the policy's input size, once `training.data.frame_cache.decode_cameras` has run;
    `episode_ranges[e] = (from, to)` is episode e's global row range; `stats[key]` holds at least mean, std, min,
    max (float32 arrays of shape (dim,), or (C,) per channel for cameras) taken from the dataset's meta/stats.json.
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
    cameras: dict[str, CameraSource] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.frames[self.action_key].shape[0])

    @property
    def num_episodes(self) -> int:
        return int(self.episode_ranges.shape[0])

    @property
    def vector_keys(self) -> list[str]:
        return [key for key in self.observation_keys if key not in self.cameras]

    @property
    def camera_keys(self) -> list[str]:
        return [key for key in self.observation_keys if key in self.cameras]

    def policy_features(self) -> PolicyFeatures:
        return PolicyFeatures(
            observation={k: int(self.frames[k].shape[1]) for k in self.vector_keys},
            action_dim=int(self.frames[self.action_key].shape[1]),
            images={
                k: (self.cameras[k].channels, self.cameras[k].height, self.cameras[k].width) for k in self.camera_keys
            },
        )
