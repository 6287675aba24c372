"""LeRobot dataset format: write v3.0, read v3.0 and v2.1 (v2.0 too: same layout, no per-episode stats).

Facts: /work/shared/reference/robot_learning.md §1.1. Only the low-dimensional vector features a policy consumes
(observation.state, observation.environment_state, action) are loaded; a camera feature (`image` / `video`) is
refused by name until cameras are supported. Every problem is a DatasetError that says what is wrong and where.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from training.data.dataset import ACTION_KEY, VECTOR_OBSERVATION_KEYS, EpisodeDataset, Feature
from training.errors import DatasetError

V3 = "v3.0"
V2_VERSIONS = ("v2.1", "v2.0")
SUPPORTED_VERSIONS = (V3, *V2_VERSIONS)
DEFAULT_CHUNK_SIZE = 1000
DEFAULT_DATA_FILE_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILE_SIZE_IN_MB = 200
V3_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
V3_EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V2_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
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
_ARROW_TYPES = {"float32": pa.float32(), "float64": pa.float64(), "int64": pa.int64(), "bool": pa.bool_()}


# --------------------------------------------------------------------------------------------------------- stats
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


def _stats_to_json(stats: dict[str, np.ndarray]) -> dict[str, list]:
    return {name: value.tolist() for name, value in stats.items()}


# -------------------------------------------------------------------------------------------------------- writer
def write_v3(
    root: Path,
    episodes: list[dict[str, np.ndarray]],
    *,
    fps: int,
    features: dict,
    task: str,
    robot_type: str | None = None,
    data_files_size_in_mb: float = DEFAULT_DATA_FILE_SIZE_IN_MB,
    chunks_size: int = DEFAULT_CHUNK_SIZE,
) -> Path:
    """Write `episodes` (each maps every key of `features` to an array with one row per frame) as a LeRobot v3.0
    dataset at `root`, for one task. The dataset is assembled in a temporary sibling directory and renamed into
    place, so a reader never sees half a dataset; FileExistsError if `root` already holds something."""
    root = Path(root)
    if not episodes:
        raise ValueError("write_v3 needs at least one episode")
    for name, spec in features.items():
        if name in DEFAULT_FEATURES:
            raise ValueError(f"feature {name!r} is one of LeRobot's default features; it is written automatically")
        if spec["dtype"] not in _ARROW_TYPES or len(spec["shape"]) != 1:
            raise ValueError(f"feature {name!r}: only float32/float64/int64/bool vectors can be written")
    lengths = []
    for number, episode in enumerate(episodes):
        missing = set(features) - set(episode)
        if missing:
            raise ValueError(f"episode {number} lacks feature(s) {sorted(missing)}")
        episode_lengths = {len(episode[name]) for name in features}
        if len(episode_lengths) != 1 or 0 in episode_lengths:
            raise ValueError(f"episode {number}: features have different or zero lengths {sorted(episode_lengths)}")
        lengths.append(episode_lengths.pop())
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} already exists and is not empty")

    all_features = {**features, **DEFAULT_FEATURES}
    ends = np.cumsum(lengths)
    starts = ends - np.asarray(lengths)
    total_frames = int(ends[-1])
    columns: dict[str, np.ndarray] = {}
    for name, spec in features.items():
        columns[name] = np.concatenate([_as_rows(e[name], spec, name) for e in episodes])
    episode_index = np.repeat(np.arange(len(episodes)), lengths)
    frame_index = np.arange(total_frames) - np.repeat(starts, lengths)
    columns["timestamp"] = (frame_index / fps).astype(np.float32)[:, None]
    columns["frame_index"] = frame_index[:, None]
    columns["episode_index"] = episode_index[:, None]
    columns["index"] = np.arange(total_frames)[:, None]
    columns["task_index"] = np.zeros((total_frames, 1), dtype=np.int64)

    # Split the frames into files of about data_files_size_in_mb, at episode boundaries (as LeRobot does).
    bytes_per_frame = sum(np.dtype(s["dtype"]).itemsize * s["shape"][0] for s in all_features.values())
    frames_per_file = max(1, int(data_files_size_in_mb * 1024 * 1024 / bytes_per_frame))
    episode_file = (starts // frames_per_file).astype(np.int64)
    _, episode_file = np.unique(episode_file, return_inverse=True)

    tmp = root.parent / f".{root.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir(parents=True)
    try:
        file_locations = []
        for file_number in range(int(episode_file.max()) + 1):
            chunk_index, file_index = divmod(file_number, chunks_size)
            members = np.flatnonzero(episode_file == file_number)
            rows = slice(int(starts[members[0]]), int(ends[members[-1]]))
            table = pa.table({name: _arrow_column(columns[name][rows], all_features[name]) for name in all_features})
            path = tmp / V3_DATA_PATH.format(chunk_index=chunk_index, file_index=file_index)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path, compression="snappy", use_dictionary=True)
            file_locations.append((chunk_index, file_index))

        numeric = [name for name in all_features if all_features[name]["dtype"] in _ARROW_TYPES]
        episode_table: dict[str, list] = {
            "episode_index": list(range(len(episodes))),
            "tasks": [[task] for _ in episodes],
            "length": lengths,
            "data/chunk_index": [file_locations[f][0] for f in episode_file],
            "data/file_index": [file_locations[f][1] for f in episode_file],
            "dataset_from_index": starts.tolist(),
            "dataset_to_index": ends.tolist(),
            "meta/episodes/chunk_index": [0] * len(episodes),
            "meta/episodes/file_index": [0] * len(episodes),
        }
        for name in numeric:
            per_episode = [compute_stats(columns[name][s:e]) for s, e in zip(starts, ends, strict=True)]
            for stat in per_episode[0]:
                episode_table[f"stats/{name}/{stat}"] = [stats[stat].tolist() for stats in per_episode]
        path = tmp / V3_EPISODES_PATH.format(chunk_index=0, file_index=0)
        path.parent.mkdir(parents=True)
        pq.write_table(pa.table(episode_table), path, compression="snappy")

        _write_tasks_parquet(tmp / "meta" / "tasks.parquet", [task])
        stats = {name: _stats_to_json(compute_stats(columns[name])) for name in numeric}
        (tmp / "meta" / "stats.json").write_text(json.dumps(stats, indent=2))
        info = {
            "codebase_version": V3,
            "robot_type": robot_type,
            "total_episodes": len(episodes),
            "total_frames": total_frames,
            "total_tasks": 1,
            "chunks_size": chunks_size,
            "data_files_size_in_mb": data_files_size_in_mb,
            "video_files_size_in_mb": DEFAULT_VIDEO_FILE_SIZE_IN_MB,
            "fps": fps,
            "splits": {"train": f"0:{len(episodes)}"},
            "data_path": V3_DATA_PATH,
            "video_path": None,
            "features": all_features,
        }
        (tmp / "meta" / "info.json").write_text(json.dumps(info, indent=4))
        try:
            os.rename(tmp, root)  # atomic; replaces an empty directory, fails on a non-empty one
        except OSError as error:
            raise FileExistsError(f"{root} was created by someone else while writing") from error
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _as_rows(values: np.ndarray, spec: dict, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.dtype(spec["dtype"]))
    array = array.reshape(len(array), -1)
    if array.shape[1] != spec["shape"][0]:
        raise ValueError(f"feature {name!r} has width {array.shape[1]}, declared {spec['shape']}")
    return array


def _arrow_column(values: np.ndarray, spec: dict) -> pa.Array:
    """Shape [1] as a plain column, [D] as a fixed-size list column (how LeRobot's HF features store them)."""
    arrow_type = _ARROW_TYPES[spec["dtype"]]
    if spec["shape"] == [1]:
        return pa.array(values[:, 0], type=arrow_type)
    flat = pa.array(np.ascontiguousarray(values).reshape(-1), type=arrow_type)
    return pa.FixedSizeListArray.from_arrays(flat, spec["shape"][0])


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


# -------------------------------------------------------------------------------------------------------- reader
def read_dataset(root: Path) -> EpisodeDataset:
    """Load the vector features of a LeRobot v3.0 / v2.1 / v2.0 dataset directory into an EpisodeDataset."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset directory {root} does not exist")
    info_path = root / "meta" / "info.json"
    info = _read_info(info_path)
    version = info["codebase_version"]
    features, observation_keys = _select_features(info, info_path)
    keys = [*observation_keys, ACTION_KEY]
    if version == V3:
        frames, episode_ranges = _read_v3_frames(root, info, features, keys)
    else:
        frames, episode_ranges = _read_v2_frames(root, info, features, keys)
    for key in keys:
        bad = ~np.isfinite(frames[key])
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise DatasetError(f"{root / 'data'}: feature {key!r} has non-finite values (first at frame {row})")
    stats = _load_stats(root, frames, keys)
    return EpisodeDataset(
        root=root,
        codebase_version=version,
        fps=int(info["fps"]),
        features={k: features[k] for k in keys},
        frames=frames,
        episode_ranges=episode_ranges,
        stats=stats,
        observation_keys=observation_keys,
        action_key=ACTION_KEY,
    )


def _read_info(info_path: Path) -> dict:
    if not info_path.is_file():
        raise DatasetError(f"{info_path} is missing: not a LeRobot dataset")
    try:
        info = json.loads(info_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{info_path} is not valid JSON: {error}") from None
    if not isinstance(info, dict):
        raise DatasetError(f"{info_path} must hold a JSON object")
    for field, kind in (("codebase_version", str), ("fps", int | float), ("features", dict)):
        if field not in info:
            raise DatasetError(f"{info_path}: required field {field!r} is missing")
        if not isinstance(info[field], kind) or isinstance(info[field], bool):
            raise DatasetError(f"{info_path}: field {field!r} has the wrong type ({type(info[field]).__name__})")
    if info["codebase_version"] not in SUPPORTED_VERSIONS:
        raise DatasetError(
            f"{info_path}: unknown codebase_version {info['codebase_version']!r}; "
            f"supported: {', '.join(SUPPORTED_VERSIONS)}"
        )
    if not info["fps"] > 0:
        raise DatasetError(f"{info_path}: field 'fps' must be positive")
    return info


def _select_features(info: dict, info_path: Path) -> tuple[dict[str, Feature], list[str]]:
    """Parse features, refuse cameras, and pick the observation keys (in VECTOR_OBSERVATION_KEYS order)."""
    features: dict[str, Feature] = {}
    for name, spec in info["features"].items():
        where = f"{info_path}: features[{name!r}]"
        if not isinstance(spec, dict) or "dtype" not in spec or "shape" not in spec:
            raise DatasetError(f"{where} must be an object with 'dtype' and 'shape'")
        if spec["dtype"] in CAMERA_DTYPES:
            raise DatasetError(
                f"{where} is a camera feature (dtype {spec['dtype']!r}); image and video features are not "
                "supported yet, only vector features"
            )
        shape = spec["shape"]
        if not isinstance(shape, list) or not all(isinstance(d, int) and d > 0 for d in shape):
            raise DatasetError(f"{where}: shape must be a list of positive integers, got {shape!r}")
        features[name] = Feature(name=name, dtype=str(spec["dtype"]), shape=tuple(shape))

    def usable(name: str) -> bool:
        feature = features[name]
        if feature.dtype not in VECTOR_DTYPES or len(feature.shape) != 1:
            raise DatasetError(
                f"{info_path}: features[{name!r}] must be a float32/float64 vector with shape [D], "
                f"got dtype {feature.dtype!r} shape {list(feature.shape)}"
            )
        return True

    if ACTION_KEY not in features:
        raise DatasetError(f"{info_path}: no {ACTION_KEY!r} feature; a policy needs actions to imitate")
    usable(ACTION_KEY)
    observation_keys = [key for key in VECTOR_OBSERVATION_KEYS if key in features and usable(key)]
    if not observation_keys:
        raise DatasetError(
            f"{info_path}: no usable observation feature; expected one of {', '.join(VECTOR_OBSERVATION_KEYS)}"
        )
    return features, observation_keys


def _vector_column(table: pa.Table, name: str, dim: int, path: Path) -> np.ndarray:
    """Column `name` as float32 (rows, dim): a list / fixed-size-list column, or a plain column when dim is 1."""
    if name not in table.column_names:
        raise DatasetError(f"{path}: column {name!r} declared in meta/info.json is missing")
    column = table.column(name).combine_chunks()
    if column.null_count:
        raise DatasetError(f"{path}: column {name!r} has null values")
    kind = column.type
    if pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind):
        widths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
        if len(widths) and not np.all(widths == dim):
            found = sorted({int(w) for w in widths if w != dim})[:3]
            raise DatasetError(f"{path}: column {name!r} has vectors of length {found}, meta/info.json says [{dim}]")
        values = column.flatten()
        if values.null_count:
            raise DatasetError(f"{path}: column {name!r} has null values")
        if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
            raise DatasetError(f"{path}: column {name!r} holds {values.type}, not numbers")
        return values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(column), dim)
    if pa.types.is_floating(kind) or pa.types.is_integer(kind):
        if dim != 1:
            raise DatasetError(f"{path}: column {name!r} holds scalars, meta/info.json says [{dim}]")
        return column.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, 1)
    raise DatasetError(f"{path}: column {name!r} has type {kind}, expected a list of numbers")


def _int_column(table: pa.Table, name: str, path: Path) -> np.ndarray:
    if name not in table.column_names:
        raise DatasetError(f"{path}: required column {name!r} is missing")
    column = table.column(name).combine_chunks()
    if column.null_count or not pa.types.is_integer(column.type):
        raise DatasetError(f"{path}: column {name!r} must hold integers without nulls")
    return column.to_numpy().astype(np.int64)


def _read_parquet(path: Path, columns: Iterable[str] | None = None) -> pa.Table:
    if not path.is_file():
        raise DatasetError(f"{path} is missing")
    try:
        if columns is not None:
            present = set(pq.read_schema(path).names)
            columns = [c for c in columns if c in present]
        return pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, OSError) as error:
        raise DatasetError(f"{path} is not a readable Parquet file: {error}") from None


def _read_v3_frames(
    root: Path, info: dict, features: dict[str, Feature], keys: list[str]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    info_path = root / "meta" / "info.json"
    data_path = info.get("data_path")
    if not isinstance(data_path, str):
        raise DatasetError(f"{info_path}: field 'data_path' is missing or not a string")
    episode_files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not episode_files:
        raise DatasetError(f"{root / 'meta' / 'episodes'}: no episode metadata files (chunk-*/file-*.parquet)")
    needed = [
        "episode_index",
        "length",
        "data/chunk_index",
        "data/file_index",
        "dataset_from_index",
        "dataset_to_index",
    ]
    parts: dict[str, list[np.ndarray]] = {name: [] for name in needed}
    for path in episode_files:
        table = _read_parquet(path, needed)
        for name in needed:
            parts[name].append(_int_column(table, name, path))
    meta = {name: np.concatenate(values) for name, values in parts.items()}
    episodes_where = root / "meta" / "episodes"
    if len(meta["episode_index"]) == 0:
        raise DatasetError(f"{episodes_where}: the dataset has no episodes")
    order = np.argsort(meta["episode_index"], kind="stable")
    meta = {name: values[order] for name, values in meta.items()}
    if not np.array_equal(meta["episode_index"], np.arange(len(order))):
        raise DatasetError(f"{episodes_where}: episode_index must run 0..{len(order) - 1} without gaps or repeats")

    frame_parts: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    row_index, row_episode = [], []
    locations = sorted(
        {(int(c), int(f)) for c, f in zip(meta["data/chunk_index"], meta["data/file_index"], strict=True)}
    )
    for chunk_index, file_index in locations:
        try:
            relative = data_path.format(chunk_index=chunk_index, file_index=file_index)
        except (KeyError, IndexError, ValueError):
            raise DatasetError(f"{info_path}: field 'data_path' {data_path!r} is not a v3.0 path template") from None
        path = root / relative
        table = _read_parquet(path, [*keys, "index", "episode_index"])
        for key in keys:
            frame_parts[key].append(_vector_column(table, key, features[key].shape[0], path))
        row_index.append(_int_column(table, "index", path))
        row_episode.append(_int_column(table, "episode_index", path))
    frames = {key: np.concatenate(values) for key, values in frame_parts.items()}
    index = np.concatenate(row_index)
    episode_of_row = np.concatenate(row_episode)
    if len(index) == 0:
        raise DatasetError(f"{root / 'data'}: the dataset has no frames")
    if not np.array_equal(index, np.arange(len(index))):
        order = np.argsort(index, kind="stable")
        if not np.array_equal(index[order], np.arange(len(index))):
            raise DatasetError(f"{root / 'data'}: column 'index' must number the frames 0..{len(index) - 1}")
        frames = {key: values[order] for key, values in frames.items()}
        episode_of_row = episode_of_row[order]
    ranges = np.stack([meta["dataset_from_index"], meta["dataset_to_index"]], axis=1)
    _check_ranges(ranges, meta["length"], episode_of_row, episodes_where)
    _check_totals(info, info_path, len(ranges), len(index))
    return frames, ranges


def _read_v2_frames(
    root: Path, info: dict, features: dict[str, Feature], keys: list[str]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    info_path = root / "meta" / "info.json"
    episodes_path = root / "meta" / "episodes.jsonl"
    records = _read_jsonl(episodes_path)
    if not records:
        raise DatasetError(f"{episodes_path}: the dataset has no episodes")
    try:
        records.sort(key=lambda record: int(record["episode_index"]))
        episode_indices = np.array([int(record["episode_index"]) for record in records])
        lengths = np.array([int(record["length"]) for record in records])
    except (KeyError, TypeError, ValueError):
        raise DatasetError(f"{episodes_path}: every line needs integer 'episode_index' and 'length'") from None
    if not np.array_equal(episode_indices, np.arange(len(records))):
        raise DatasetError(f"{episodes_path}: episode_index must run 0..{len(records) - 1} without gaps or repeats")
    data_path = info.get("data_path", V2_DATA_PATH)
    chunks_size = info.get("chunks_size", DEFAULT_CHUNK_SIZE)
    if not isinstance(data_path, str) or not isinstance(chunks_size, int) or chunks_size < 1:
        raise DatasetError(f"{info_path}: fields 'data_path' / 'chunks_size' are malformed")
    frame_parts: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    row_episode = []
    for episode, length in zip(episode_indices, lengths, strict=True):
        try:
            relative = data_path.format(episode_chunk=episode // chunks_size, episode_index=episode)
        except (KeyError, IndexError, ValueError):
            raise DatasetError(f"{info_path}: field 'data_path' {data_path!r} is not a v2.x path template") from None
        path = root / relative
        table = _read_parquet(path, [*keys, "episode_index"])
        if table.num_rows != length:
            raise DatasetError(f"{path}: has {table.num_rows} rows, {episodes_path} says length {length}")
        for key in keys:
            frame_parts[key].append(_vector_column(table, key, features[key].shape[0], path))
        row_episode.append(_int_column(table, "episode_index", path))
    frames = {key: np.concatenate(values) for key, values in frame_parts.items()}
    if len(frames[ACTION_KEY]) == 0:
        raise DatasetError(f"{root / 'data'}: the dataset has no frames")
    ends = np.cumsum(lengths)
    ranges = np.stack([ends - lengths, ends], axis=1)
    _check_ranges(ranges, lengths, np.concatenate(row_episode), episodes_path)
    _check_totals(info, info_path, len(ranges), int(ends[-1]))
    return frames, ranges


def _read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise DatasetError(f"{path} is missing")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetError(f"{path}: line {number} is not valid JSON: {error}") from None
        if not isinstance(record, dict):
            raise DatasetError(f"{path}: line {number} must be a JSON object")
        records.append(record)
    return records


def _check_ranges(ranges: np.ndarray, lengths: np.ndarray, episode_of_row: np.ndarray, where: Path) -> None:
    """Episodes must tile the frames in order, and each frame's episode_index must name its episode."""
    total = len(episode_of_row)
    starts, ends = ranges[:, 0], ranges[:, 1]
    if np.any(lengths < 1) or not np.array_equal(ends - starts, lengths):
        bad = int(np.flatnonzero((lengths < 1) | (ends - starts != lengths))[0])
        raise DatasetError(
            f"{where}: episode {bad} has length {int(lengths[bad])} but frame range "
            f"[{int(starts[bad])}, {int(ends[bad])})"
        )
    if starts[0] != 0 or ends[-1] != total or not np.array_equal(starts[1:], ends[:-1]):
        raise DatasetError(
            f"{where}: episode frame ranges do not tile the {total} frames of the data "
            f"(first starts at {int(starts[0])}, last ends at {int(ends[-1])})"
        )
    expected = np.repeat(np.arange(len(ranges)), lengths)
    if not np.array_equal(expected, episode_of_row):
        row = int(np.flatnonzero(expected != episode_of_row)[0])
        raise DatasetError(
            f"{where}: frame {row} belongs to episode {int(episode_of_row[row])} in the data "
            f"but to episode {int(expected[row])} by the episode ranges"
        )


def _check_totals(info: dict, info_path: Path, episodes: int, frames: int) -> None:
    for field, actual in (("total_episodes", episodes), ("total_frames", frames)):
        if field in info and info[field] != actual:
            raise DatasetError(f"{info_path}: {field} is {info[field]} but the data has {actual}")


def _load_stats(root: Path, frames: dict[str, np.ndarray], keys: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """meta/stats.json where it covers a feature (checked against the data's width); computed from frames else."""
    path = root / "meta" / "stats.json"
    stored: dict = {}
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DatasetError(f"{path} is not valid JSON: {error}") from None
        if not isinstance(stored, dict):
            raise DatasetError(f"{path} must hold a JSON object")
    stats = {}
    for key in keys:
        dim = frames[key].shape[1]
        entry = stored.get(key)
        if entry is None:
            computed = compute_stats(frames[key])
            stats[key] = {name: value.astype(np.float32) for name, value in computed.items() if name != "count"}
            continue
        if not isinstance(entry, dict) or not {"mean", "std", "min", "max"} <= set(entry):
            raise DatasetError(f"{path}: stats of {key!r} need at least mean, std, min and max")
        stats[key] = {}
        for name, value in entry.items():
            if name == "count":
                continue
            try:
                array = np.asarray(value, dtype=np.float32).reshape(-1)
            except (TypeError, ValueError):
                raise DatasetError(f"{path}: {key}.{name} is not a list of numbers") from None
            if array.shape != (dim,):
                raise DatasetError(f"{path}: {key}.{name} has {array.size} values, the data has width {dim}")
            if not np.all(np.isfinite(array)):
                raise DatasetError(f"{path}: {key}.{name} has non-finite values")
            stats[key][name] = array
    return stats
