"""Write LeRobot datasets: v3.0 (the current layout) and v2.1 (one file per episode), with vector features and
camera features stored as `image` (PNG bytes inside the Parquet) or `video` (MP4 through PyAV).

Both writers assemble the dataset in a temporary sibling directory and rename it into place, so a reader never sees
half a dataset; FileExistsError if `root` already holds something.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from training.data import lerobot_format as fmt
from training.data.video import DEFAULT_VIDEO_CODEC, VIDEO_CODECS, encode_video

_ARROW_TYPES = {"float32": pa.float32(), "float64": pa.float64(), "int64": pa.int64(), "bool": pa.bool_()}
IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


# ------------------------------------------------------------------------------------------------ episode checking
@dataclass
class _Episodes:
    """The episodes to write, checked, with every tabular column concatenated over all frames."""

    fps: int
    features: dict  # as given, camera entries completed with names (and video info)
    lengths: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    columns: dict[str, np.ndarray]  # vector features and the default features, (frames, width)
    cameras: dict[str, list[np.ndarray]]  # camera key -> per episode (T, H, W, 3) uint8
    camera_dtype: dict[str, str]

    @property
    def total_frames(self) -> int:
        return int(self.ends[-1])

    def all_features(self) -> dict:
        return {**self.features, **fmt.DEFAULT_FEATURES}


def _check_episodes(episodes: list[dict[str, np.ndarray]], features: dict, fps: int, video_codec: str) -> _Episodes:
    if not episodes:
        raise ValueError("a dataset needs at least one episode")
    if video_codec not in VIDEO_CODECS:
        raise ValueError(f"video_codec must be one of {sorted(VIDEO_CODECS)}, got {video_codec!r}")
    completed = {}
    for name, spec in features.items():
        if name in fmt.DEFAULT_FEATURES:
            raise ValueError(f"feature {name!r} is one of LeRobot's default features; it is written automatically")
        if spec["dtype"] in fmt.CAMERA_DTYPES:
            if len(spec["shape"]) != 3 or spec["shape"][2] != 3:
                raise ValueError(f"camera feature {name!r} must have shape [H, W, 3]")
            completed[name] = {**spec, "names": fmt.CAMERA_NAMES}
            if spec["dtype"] == "video":
                height, width, channels = spec["shape"]
                completed[name]["info"] = {
                    "video.height": height,
                    "video.width": width,
                    "video.codec": video_codec,
                    "video.pix_fmt": "yuv420p",
                    "video.is_depth_map": False,
                    "video.fps": fps,
                    "video.channels": channels,
                    "has_audio": False,
                }
        elif spec["dtype"] not in _ARROW_TYPES or len(spec["shape"]) != 1:
            raise ValueError(f"feature {name!r}: only float32/float64/int64/bool vectors and cameras can be written")
        else:
            completed[name] = spec
    lengths = []
    for number, episode in enumerate(episodes):
        missing = set(features) - set(episode)
        if missing:
            raise ValueError(f"episode {number} lacks feature(s) {sorted(missing)}")
        episode_lengths = {len(episode[name]) for name in features}
        if len(episode_lengths) != 1 or 0 in episode_lengths:
            raise ValueError(f"episode {number}: features have different or zero lengths {sorted(episode_lengths)}")
        lengths.append(episode_lengths.pop())
    ends = np.cumsum(lengths)
    starts = ends - np.asarray(lengths)
    columns: dict[str, np.ndarray] = {}
    cameras: dict[str, list[np.ndarray]] = {}
    for name, spec in features.items():
        if spec["dtype"] in fmt.CAMERA_DTYPES:
            cameras[name] = [_as_frames(e[name], spec, name) for e in episodes]
        else:
            columns[name] = np.concatenate([_as_rows(e[name], spec, name) for e in episodes])
    total = int(ends[-1])
    frame_index = np.arange(total) - np.repeat(starts, lengths)
    columns["timestamp"] = (frame_index / fps).astype(np.float32)[:, None]
    columns["frame_index"] = frame_index[:, None]
    columns["episode_index"] = np.repeat(np.arange(len(episodes)), lengths)[:, None]
    columns["index"] = np.arange(total)[:, None]
    columns["task_index"] = np.zeros((total, 1), dtype=np.int64)
    camera_dtype = {name: spec["dtype"] for name, spec in features.items() if spec["dtype"] in fmt.CAMERA_DTYPES}
    return _Episodes(fps, completed, np.asarray(lengths), starts, ends, columns, cameras, camera_dtype)


def _as_rows(values: np.ndarray, spec: dict, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.dtype(spec["dtype"]))
    array = array.reshape(len(array), -1)
    if array.shape[1] != spec["shape"][0]:
        raise ValueError(f"feature {name!r} has width {array.shape[1]}, declared {spec['shape']}")
    return array


def _as_frames(values: np.ndarray, spec: dict, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype != np.uint8 or array.shape[1:] != tuple(spec["shape"]):
        raise ValueError(
            f"camera {name!r} needs uint8 frames of shape {spec['shape']}, got {array.dtype} {array.shape}"
        )
    return array


# ------------------------------------------------------------------------------------------------ columns and stats
def _arrow_column(values: np.ndarray, spec: dict) -> pa.Array:
    """Shape [1] as a plain column, [D] as a fixed-size list column (how LeRobot's HF features store them)."""
    arrow_type = _ARROW_TYPES[spec["dtype"]]
    if spec["shape"] == [1]:
        return pa.array(values[:, 0], type=arrow_type)
    flat = pa.array(np.ascontiguousarray(values).reshape(-1), type=arrow_type)
    return pa.FixedSizeListArray.from_arrays(flat, spec["shape"][0])


def png_bytes(frame: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return buffer.getvalue()


def _image_column(frames: np.ndarray) -> pa.Array:
    """LeRobot's `image` feature: a {bytes, path} struct per row holding the PNG (path unset: bytes are embedded)."""
    return pa.array([{"bytes": png_bytes(frame), "path": None} for frame in frames], type=IMAGE_STRUCT)


def _table(data: _Episodes, rows: slice, episodes: range) -> pa.Table:
    all_features = data.all_features()
    columns = {}
    for name, spec in all_features.items():
        dtype = spec["dtype"]
        if dtype == "video":
            continue
        if dtype == "image":
            columns[name] = _image_column(np.concatenate([data.cameras[name][e] for e in episodes]))
        else:
            columns[name] = _arrow_column(data.columns[name][rows], spec)
    return pa.table(columns)


def _feature_stats(data: _Episodes, rows: slice, episodes: range) -> dict[str, dict[str, np.ndarray]]:
    stats = {}
    for name, spec in data.all_features().items():
        if spec["dtype"] in fmt.CAMERA_DTYPES:
            stats[name] = fmt.compute_image_stats(np.concatenate([data.cameras[name][e] for e in episodes]))
        else:
            stats[name] = fmt.compute_stats(data.columns[name][rows])
    return stats


def _write_json(path: Path, data: object, indent: int = 4) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=indent))


def _write_atomically(root: Path, build: Callable[[Path], None]) -> Path:
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} already exists and is not empty")
    tmp = root.parent / f".{root.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir(parents=True)
    try:
        build(tmp)
        try:
            os.rename(tmp, root)  # atomic; replaces an empty directory, fails on a non-empty one
        except OSError as error:
            raise FileExistsError(f"{root} was created by someone else while writing") from error
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _info(data: _Episodes, version: str, fps: int, robot_type: str | None, chunks_size: int, **storage) -> dict:
    return {
        "codebase_version": version,
        "robot_type": robot_type,
        "total_episodes": len(data.lengths),
        "total_frames": data.total_frames,
        "total_tasks": 1,
        **storage,
        "chunks_size": chunks_size,
        "fps": fps,
        "splits": {"train": f"0:{len(data.lengths)}"},
        "features": data.all_features(),
    }


# -------------------------------------------------------------------------------------------------------- v3.0
def write_v3(
    root: Path,
    episodes: list[dict[str, np.ndarray]],
    *,
    fps: int,
    features: dict,
    task: str,
    robot_type: str | None = None,
    data_files_size_in_mb: float = fmt.DEFAULT_DATA_FILE_SIZE_IN_MB,
    chunks_size: int = fmt.DEFAULT_CHUNK_SIZE,
    video_codec: str = DEFAULT_VIDEO_CODEC,
) -> Path:
    """Write `episodes` (each maps every key of `features` to one row per frame; cameras as (T, H, W, 3) uint8) as
    a LeRobot v3.0 dataset at `root`, for one task. Frames go into data files of about `data_files_size_in_mb`,
    split at episode boundaries; each camera stored as video gets one MP4 per data file, the episodes concatenated
    in it, each episode's window given by from_timestamp / to_timestamp in meta/episodes."""
    data = _check_episodes(episodes, features, fps, video_codec)
    file_of_episode = _split_into_files(data, data_files_size_in_mb)

    def build(tmp: Path) -> None:
        episode_table = _v3_episode_table(data, task, file_of_episode, chunks_size)
        for file_number in range(int(file_of_episode.max()) + 1):
            chunk_index, file_index = divmod(file_number, chunks_size)
            members = np.flatnonzero(file_of_episode == file_number)
            episode_range = range(int(members[0]), int(members[-1]) + 1)
            rows = slice(int(data.starts[members[0]]), int(data.ends[members[-1]]))
            path = tmp / fmt.V3_DATA_PATH.format(chunk_index=chunk_index, file_index=file_index)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(_table(data, rows, episode_range), path, compression="snappy", use_dictionary=True)
            for key, dtype in data.camera_dtype.items():
                if dtype == "video":
                    video = tmp / fmt.V3_VIDEO_PATH.format(
                        video_key=key, chunk_index=chunk_index, file_index=file_index
                    )
                    frames = (frame for e in episode_range for frame in data.cameras[key][e])
                    encode_video(video, frames, fps, video_codec)
        path = tmp / fmt.V3_EPISODES_PATH.format(chunk_index=0, file_index=0)
        path.parent.mkdir(parents=True)
        pq.write_table(pa.table(episode_table), path, compression="snappy")
        _write_tasks_parquet(tmp / "meta" / "tasks.parquet", [task])
        stats = _feature_stats(data, slice(0, data.total_frames), range(len(data.lengths)))
        _write_json(tmp / "meta" / "stats.json", {k: fmt.stats_to_json(v) for k, v in stats.items()}, indent=2)
        has_video = "video" in data.camera_dtype.values()
        storage = {
            "data_files_size_in_mb": data_files_size_in_mb,
            "video_files_size_in_mb": fmt.DEFAULT_VIDEO_FILE_SIZE_IN_MB,
            "data_path": fmt.V3_DATA_PATH,
            "video_path": fmt.V3_VIDEO_PATH if has_video else None,
        }
        _write_json(tmp / "meta" / "info.json", _info(data, fmt.V3, fps, robot_type, chunks_size, **storage))

    return _write_atomically(root, build)


def _split_into_files(data: _Episodes, size_in_mb: float) -> np.ndarray:
    """The data file of each episode: consecutive episodes filling about `size_in_mb` (as LeRobot does)."""
    bytes_per_frame = 0
    for spec in data.all_features().values():
        if spec["dtype"] in fmt.CAMERA_DTYPES:
            bytes_per_frame += int(np.prod(spec["shape"])) // 4  # a PNG is a few times smaller than raw pixels
        else:
            bytes_per_frame += np.dtype(spec["dtype"]).itemsize * spec["shape"][0]
    frames_per_file = max(1, int(size_in_mb * 1024 * 1024 / bytes_per_frame))
    _, file_of_episode = np.unique(data.starts // frames_per_file, return_inverse=True)
    return file_of_episode.astype(np.int64)


def _v3_episode_table(data: _Episodes, task: str, file_of_episode: np.ndarray, chunks_size: int) -> dict[str, list]:
    count = len(data.lengths)
    chunk, file = np.divmod(file_of_episode, chunks_size)
    table: dict[str, list] = {
        "episode_index": list(range(count)),
        "tasks": [[task] for _ in range(count)],
        "length": data.lengths.tolist(),
        "data/chunk_index": chunk.tolist(),
        "data/file_index": file.tolist(),
        "dataset_from_index": data.starts.tolist(),
        "dataset_to_index": data.ends.tolist(),
    }
    for key, dtype in data.camera_dtype.items():
        if dtype != "video":
            continue
        # Each file starts at time 0; an episode starts where the previous episodes of its file end.
        first_of_file = np.array([data.starts[np.flatnonzero(file_of_episode == f)[0]] for f in file_of_episode])
        from_timestamp = (data.starts - first_of_file) / data.fps
        table[f"videos/{key}/chunk_index"] = chunk.tolist()
        table[f"videos/{key}/file_index"] = file.tolist()
        table[f"videos/{key}/from_timestamp"] = from_timestamp.tolist()
        table[f"videos/{key}/to_timestamp"] = (from_timestamp + data.lengths / data.fps).tolist()
    table["meta/episodes/chunk_index"] = [0] * count
    table["meta/episodes/file_index"] = [0] * count
    per_episode = [
        _feature_stats(data, slice(int(s), int(e)), range(i, i + 1))
        for i, (s, e) in enumerate(zip(data.starts, data.ends, strict=True))
    ]
    for name in per_episode[0]:
        for stat in per_episode[0][name]:
            table[f"stats/{name}/{stat}"] = [stats[name][stat].tolist() for stats in per_episode]
    return table


def _write_tasks_parquet(path: Path, tasks: list[str]) -> None:
    """meta/tasks.parquet: LeRobot writes it from pandas with the task string as the index; the pandas metadata
    below makes pandas readers see the same frame (this project itself reads it with pyarrow)."""
    pandas_metadata = {
        "index_columns": ["task"],
        "column_indexes": [],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    table = table.replace_schema_metadata({b"pandas": json.dumps(pandas_metadata).encode()})
    pq.write_table(table, path)


# -------------------------------------------------------------------------------------------------------- v2.1
def write_v21(
    root: Path,
    episodes: list[dict[str, np.ndarray]],
    *,
    fps: int,
    features: dict,
    task: str,
    robot_type: str | None = None,
    chunks_size: int = fmt.DEFAULT_CHUNK_SIZE,
    video_codec: str = DEFAULT_VIDEO_CODEC,
) -> Path:
    """Write `episodes` as a LeRobot v2.1 dataset: one Parquet file and one MP4 per camera per episode,
    meta/episodes.jsonl, tasks.jsonl, episodes_stats.jsonl and stats.json."""
    data = _check_episodes(episodes, features, fps, video_codec)

    def build(tmp: Path) -> None:
        episode_lines, stats_lines = [], []
        for episode, (start, end) in enumerate(zip(data.starts, data.ends, strict=True)):
            rows, only = slice(int(start), int(end)), range(episode, episode + 1)
            episode_chunk = episode // chunks_size
            path = tmp / fmt.V2_DATA_PATH.format(episode_chunk=episode_chunk, episode_index=episode)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(_table(data, rows, only), path, compression="snappy")
            for key, dtype in data.camera_dtype.items():
                if dtype == "video":
                    relative = fmt.V2_VIDEO_PATH.format(
                        episode_chunk=episode_chunk, video_key=key, episode_index=episode
                    )
                    encode_video(tmp / relative, data.cameras[key][episode], fps, video_codec)
            length = int(end - start)
            episode_lines.append(json.dumps({"episode_index": episode, "tasks": [task], "length": length}))
            stats = {k: fmt.stats_to_json(v) for k, v in _feature_stats(data, rows, only).items()}
            stats_lines.append(json.dumps({"episode_index": episode, "stats": stats}))
        meta = tmp / "meta"
        meta.mkdir()
        (meta / "episodes.jsonl").write_text("\n".join(episode_lines) + "\n")
        (meta / "episodes_stats.jsonl").write_text("\n".join(stats_lines) + "\n")
        (meta / "tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": task}) + "\n")
        totals = _feature_stats(data, slice(0, data.total_frames), range(len(data.lengths)))
        _write_json(meta / "stats.json", {k: fmt.stats_to_json(v) for k, v in totals.items()}, indent=2)
        videos = sum(dtype == "video" for dtype in data.camera_dtype.values())
        storage = {
            "total_chunks": (len(data.lengths) - 1) // chunks_size + 1,
            "total_videos": videos * len(data.lengths),
            "data_path": fmt.V2_DATA_PATH,
            "video_path": fmt.V2_VIDEO_PATH if videos else None,
        }
        _write_json(meta / "info.json", _info(data, fmt.V21, fps, robot_type, chunks_size, **storage))

    return _write_atomically(root, build)
