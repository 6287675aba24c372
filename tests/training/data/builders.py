"""Small LeRobot datasets for the data tests: synthetic episodes, and a v2.1 layout built directly with pyarrow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

FEATURES = {
    "observation.state": {"dtype": "float32", "shape": [3], "names": None},
    "action": {"dtype": "float32", "shape": [2], "names": None},
    "next.reward": {"dtype": "float32", "shape": [1], "names": None},
}


def synthetic_episodes(lengths: list[int], seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "observation.state": rng.normal(size=(length, 3)).astype(np.float32),
            "action": rng.normal(size=(length, 2)).astype(np.float32),
            "next.reward": rng.uniform(size=length).astype(np.float32),
        }
        for length in lengths
    ]


def write_v21(root: Path, episodes: list[dict[str, np.ndarray]], *, with_stats_json: bool = False) -> None:
    """The v2.1 layout: one Parquet file per episode (variable-size list columns, as older writers produced),
    meta/episodes.jsonl, meta/tasks.jsonl, meta/episodes_stats.jsonl and optionally meta/stats.json."""
    (root / "meta").mkdir(parents=True)
    features = {
        "observation.state": {"dtype": "float64", "shape": [3], "names": None},
        "action": {"dtype": "float32", "shape": [2], "names": None},
        "timestamp": {"dtype": "float32", "shape": [1], "names": None},
        "frame_index": {"dtype": "int64", "shape": [1], "names": None},
        "episode_index": {"dtype": "int64", "shape": [1], "names": None},
        "index": {"dtype": "int64", "shape": [1], "names": None},
        "task_index": {"dtype": "int64", "shape": [1], "names": None},
    }
    total = sum(len(e["action"]) for e in episodes)
    info = {
        "codebase_version": "v2.1",
        "robot_type": None,
        "total_episodes": len(episodes),
        "total_frames": total,
        "total_tasks": 1,
        "total_videos": 0,
        "total_chunks": 1,
        "chunks_size": 1000,
        "fps": 10,
        "splits": {"train": f"0:{len(episodes)}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": None,
        "features": features,
    }
    (root / "meta" / "info.json").write_text(json.dumps(info))
    start = 0
    episode_lines, stats_lines = [], []
    for index, episode in enumerate(episodes):
        length = len(episode["action"])
        table = pa.table(
            {
                "observation.state": pa.array(
                    episode["observation.state"].astype(np.float64).tolist(), pa.list_(pa.float64())
                ),
                "action": pa.array(episode["action"].tolist(), pa.list_(pa.float32())),
                "timestamp": pa.array(np.arange(length) / 10, pa.float32()),
                "frame_index": pa.array(np.arange(length), pa.int64()),
                "episode_index": pa.array(np.full(length, index), pa.int64()),
                "index": pa.array(np.arange(start, start + length), pa.int64()),
                "task_index": pa.array(np.zeros(length, np.int64), pa.int64()),
            }
        )
        path = root / f"data/chunk-000/episode_{index:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        start += length
        episode_lines.append(json.dumps({"episode_index": index, "tasks": ["push"], "length": length}))
        stats_lines.append(json.dumps({"episode_index": index, "stats": {}}))
    (root / "meta" / "episodes.jsonl").write_text("\n".join(episode_lines) + "\n")
    (root / "meta" / "episodes_stats.jsonl").write_text("\n".join(stats_lines) + "\n")
    (root / "meta" / "tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "push"}) + "\n")
    if with_stats_json:
        stats = {
            key: {"mean": [9.0] * dim, "std": [2.0] * dim, "min": [-1.0] * dim, "max": [1.0] * dim}
            for key, dim in (("observation.state", 3), ("action", 2))
        }
        (root / "meta" / "stats.json").write_text(json.dumps(stats))
