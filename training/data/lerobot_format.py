"""LeRobot dataset format facts shared by the writer and the reader: versions, path templates, default features,
camera feature shapes and LeRobot's per-feature statistics (/work/shared/reference/robot_learning.md §1.1)."""

from __future__ import annotations

import numpy as np

V3 = "v3.0"
V21 = "v2.1"
V2_VERSIONS = (V21, "v2.0")
SUPPORTED_VERSIONS = (V3, *V2_VERSIONS)
DEFAULT_CHUNK_SIZE = 1000
DEFAULT_DATA_FILE_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILE_SIZE_IN_MB = 200
V3_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
V3_EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V2_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V2_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
CAMERA_DTYPES = ("image", "video")
VECTOR_DTYPES = ("float32", "float64")
CAMERA_NAMES = ["height", "width", "channels"]
# LeRobot computes image stats on a subsample of frames; this many at most, spread evenly.
IMAGE_STATS_MAX_FRAMES = 1000


def camera_hwc(shape: list[int], names: object) -> tuple[int, int, int]:
    """(height, width, channels) of a camera feature. LeRobot writes [H, W, C] with names height/width/channel(s);
    a few older datasets list [C, H, W] and say so in `names`."""
    if isinstance(names, list) and len(names) == 3 and str(names[0]).startswith("channel"):
        channels, height, width = shape
        return height, width, channels
    height, width, channels = shape
    return height, width, channels


def compute_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """LeRobot's per-feature stats over frames (N, D): min, max, mean, std, count and the q01..q99 quantiles."""
    data = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    stats = {
        "min": data.min(axis=0),
        "max": data.max(axis=0),
        "mean": data.mean(axis=0),
        "std": data.std(axis=0),
        "count": np.array([len(data)]),
    }
    quantiles = np.quantile(data, list(QUANTILES.values()), axis=0)
    stats.update({name: quantiles[i] for i, name in enumerate(QUANTILES)})
    return stats


def compute_image_stats(frames: np.ndarray, channels_last: bool = True) -> dict[str, np.ndarray]:
    """Per-channel min, max, mean and std of uint8 frames scaled to [0, 1], shaped (C, 1, 1) as LeRobot stores
    camera stats, over at most IMAGE_STATS_MAX_FRAMES frames spread evenly over the data."""
    count = len(frames)
    picked = np.linspace(0, count - 1, min(count, IMAGE_STATS_MAX_FRAMES)).round().astype(np.int64)
    sample = np.asarray(frames[np.unique(picked)], dtype=np.float64) / 255.0
    axes = (0, 1, 2) if channels_last else (0, 2, 3)
    stats = {
        "min": sample.min(axis=axes),
        "max": sample.max(axis=axes),
        "mean": sample.mean(axis=axes),
        "std": sample.std(axis=axes),
    }
    shaped = {name: value.reshape(-1, 1, 1) for name, value in stats.items()}
    shaped["count"] = np.array([len(sample)])
    return shaped


def stats_to_json(stats: dict[str, np.ndarray]) -> dict[str, list]:
    return {name: value.tolist() for name, value in stats.items()}
