"""Read LeRobot datasets v3.0 and v2.1 (v2.0 too: same layout, no per-episode stats); the writers live in
training.data.lerobot_writer and are re-exported here.

Facts: /work/shared/reference/robot_learning.md §1.1. The reader loads the vector features a policy consumes
(observation.state, observation.environment_state, action) and says where every camera feature's frames are stored
(`image`: PNG/JPEG bytes in the Parquet; `video`: MP4 files looked up by timestamp); training.data.frame_cache
decodes them. Every problem is a DatasetError that says what is wrong and where, with paths relative to the root.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from training.data.dataset import (
    ACTION_KEY,
    VECTOR_OBSERVATION_KEYS,
    CameraSource,
    EpisodeDataset,
    EpisodeFrames,
    Feature,
    is_camera_key,
)
from training.data.lerobot_format import (
    CAMERA_DTYPES,
    DEFAULT_CHUNK_SIZE,
    SUPPORTED_VERSIONS,
    V2_DATA_PATH,
    V3,
    VECTOR_DTYPES,
    camera_hwc,
    compute_stats,
)
from training.data.lerobot_writer import write_v3, write_v21
from training.errors import DatasetError

__all__ = ["compute_stats", "read_dataset", "write_v3", "write_v21"]

_V3_EPISODE_COLUMNS = (
    "episode_index",
    "length",
    "data/chunk_index",
    "data/file_index",
    "dataset_from_index",
    "dataset_to_index",
)


def read_dataset(root: Path) -> EpisodeDataset:
    """Load the vector features of a LeRobot v3.0 / v2.1 / v2.0 dataset directory, and locate its cameras."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset directory {root} does not exist")
    return _Reader(root).read()


class _Reader:
    """One dataset directory being read; each method reads one part of the layout."""

    def __init__(self, root: Path):
        self.root = root
        self.info_path = root / "meta" / "info.json"

    def rel(self, path: Path) -> str:
        """A path as users of the service see it: relative to the dataset root."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    # --------------------------------------------------------------------------------------------- whole dataset
    def read(self) -> EpisodeDataset:
        info = self.read_info()
        features, vector_keys, camera_keys = self.select_features(info)
        keys = [*vector_keys, ACTION_KEY]
        if info["codebase_version"] == V3:
            frames, ranges, timestamps, cameras = self.read_v3(info, features, keys, camera_keys)
        else:
            frames, ranges, timestamps, cameras = self.read_v2(info, features, keys, camera_keys)
        for key in keys:
            bad = ~np.isfinite(frames[key])
            if bad.any():
                row = int(np.argwhere(bad)[0][0])
                raise DatasetError(f"data: feature {key!r} has non-finite values (first at frame {row})")
        stats = self.load_stats(frames, keys, camera_keys, features)
        return EpisodeDataset(
            root=self.root,
            codebase_version=info["codebase_version"],
            fps=int(info["fps"]),
            features={k: features[k] for k in [*keys, *camera_keys]},
            frames=frames,
            episode_ranges=ranges,
            stats=stats,
            observation_keys=[*vector_keys, *camera_keys],
            action_key=ACTION_KEY,
            cameras=cameras,
        )

    def read_info(self) -> dict:
        where = self.rel(self.info_path)
        if not self.info_path.is_file():
            raise DatasetError(f"{where} is missing: not a LeRobot dataset")
        try:
            info = json.loads(self.info_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DatasetError(f"{where} is not valid JSON: {error}") from None
        if not isinstance(info, dict):
            raise DatasetError(f"{where} must hold a JSON object")
        for field, kind in (("codebase_version", str), ("fps", int | float), ("features", dict)):
            if field not in info:
                raise DatasetError(f"{where}: required field {field!r} is missing")
            if not isinstance(info[field], kind) or isinstance(info[field], bool):
                raise DatasetError(f"{where}: field {field!r} has the wrong type ({type(info[field]).__name__})")
        if info["codebase_version"] not in SUPPORTED_VERSIONS:
            raise DatasetError(
                f"{where}: unknown codebase_version {info['codebase_version']!r}; "
                f"supported: {', '.join(SUPPORTED_VERSIONS)}"
            )
        if not info["fps"] > 0:
            raise DatasetError(f"{where}: field 'fps' must be positive")
        return info

    def select_features(self, info: dict) -> tuple[dict[str, Feature], list[str], list[str]]:
        """Parse features; pick the vector observation keys (in VECTOR_OBSERVATION_KEYS order) and the camera
        observation keys (observation.image, observation.images.*, sorted)."""
        info_where = self.rel(self.info_path)
        features: dict[str, Feature] = {}
        camera_keys = []
        for name, spec in info["features"].items():
            where = f"{info_where}: features[{name!r}]"
            if not isinstance(spec, dict) or "dtype" not in spec or "shape" not in spec:
                raise DatasetError(f"{where} must be an object with 'dtype' and 'shape'")
            shape = spec["shape"]
            if not isinstance(shape, list) or not all(isinstance(d, int) and d > 0 for d in shape):
                raise DatasetError(f"{where}: shape must be a list of positive integers, got {shape!r}")
            if spec["dtype"] in CAMERA_DTYPES:
                if len(shape) != 3:
                    raise DatasetError(f"{where}: a camera feature needs shape [height, width, channels], got {shape}")
                height, width, channels = camera_hwc(shape, spec.get("names"))
                if channels != 3:
                    raise DatasetError(f"{where}: only RGB cameras (3 channels) are supported, got {channels}")
                features[name] = Feature(name=name, dtype=str(spec["dtype"]), shape=(height, width, channels))
                if is_camera_key(name):
                    camera_keys.append(name)
            else:
                features[name] = Feature(name=name, dtype=str(spec["dtype"]), shape=tuple(shape))

        def usable(name: str) -> bool:
            feature = features[name]
            if feature.dtype not in VECTOR_DTYPES or len(feature.shape) != 1:
                raise DatasetError(
                    f"{info_where}: features[{name!r}] must be a float32/float64 vector with shape [D], "
                    f"got dtype {feature.dtype!r} shape {list(feature.shape)}"
                )
            return True

        if ACTION_KEY not in features:
            raise DatasetError(f"{info_where}: no {ACTION_KEY!r} feature; a policy needs actions to imitate")
        usable(ACTION_KEY)
        vector_keys = [key for key in VECTOR_OBSERVATION_KEYS if key in features and usable(key)]
        if not vector_keys and not camera_keys:
            raise DatasetError(
                f"{info_where}: no usable observation feature; expected one of {', '.join(VECTOR_OBSERVATION_KEYS)}"
                " or a camera (observation.image, observation.images.<camera>)"
            )
        return features, vector_keys, sorted(camera_keys)

    # ----------------------------------------------------------------------------------------------------- v3.0
    def read_v3(
        self, info: dict, features: dict[str, Feature], keys: list[str], camera_keys: list[str]
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, dict[str, CameraSource]]:
        data_path = info.get("data_path")
        if not isinstance(data_path, str):
            raise DatasetError(f"{self.rel(self.info_path)}: field 'data_path' is missing or not a string")
        video_keys = [k for k in camera_keys if features[k].dtype == "video"]
        image_keys = [k for k in camera_keys if features[k].dtype == "image"]
        meta = self.read_v3_episodes(video_keys)

        frame_parts: dict[str, list[np.ndarray]] = {key: [] for key in keys}
        row_index, row_episode, row_time = [], [], []
        image_files: list[tuple[str, np.ndarray, np.ndarray]] = []  # file, global index and episode of each row
        locations = sorted(
            {(int(c), int(f)) for c, f in zip(meta["data/chunk_index"], meta["data/file_index"], strict=True)}
        )
        for chunk_index, file_index in locations:
            path = self.root / self.format_path(data_path, "v3.0", chunk_index=chunk_index, file_index=file_index)
            table = self.read_parquet(path, [*keys, "index", "episode_index", "timestamp"])
            for key in keys:
                frame_parts[key].append(self.vector_column(table, key, features[key].shape[0], path))
            index = self.int_column(table, "index", path)
            episode = self.int_column(table, "episode_index", path)
            row_index.append(index)
            row_episode.append(episode)
            if video_keys:
                row_time.append(self.vector_column(table, "timestamp", 1, path)[:, 0].astype(np.float64))
            if image_keys:
                self.require_image_columns(path, image_keys)
                image_files.append((self.rel(path), index, episode))
        frames = {key: np.concatenate(values) for key, values in frame_parts.items()}
        index = np.concatenate(row_index)
        episode_of_row = np.concatenate(row_episode)
        timestamps = np.concatenate(row_time) if row_time else np.zeros(len(index))
        if len(index) == 0:
            raise DatasetError("data: the dataset has no frames")
        if not np.array_equal(index, np.arange(len(index))):
            order = np.argsort(index, kind="stable")
            if not np.array_equal(index[order], np.arange(len(index))):
                raise DatasetError(f"data: column 'index' must number the frames 0..{len(index) - 1}")
            frames = {key: values[order] for key, values in frames.items()}
            episode_of_row, timestamps = episode_of_row[order], timestamps[order]
        ranges = np.stack([meta["dataset_from_index"], meta["dataset_to_index"]], axis=1)
        self.check_ranges(ranges, meta["length"], episode_of_row, "meta/episodes")
        self.check_totals(info, len(ranges), len(index))
        cameras = {key: self.image_source(key, features[key], image_files) for key in image_keys}
        video_path = info.get("video_path")
        for key in video_keys:
            locate = [
                (
                    self.format_path(
                        video_path, "v3.0", video_key=key, chunk_index=int(chunk), file_index=int(file), what="video"
                    ),
                    float(start),
                )
                for chunk, file, start in zip(
                    meta[f"videos/{key}/chunk_index"],
                    meta[f"videos/{key}/file_index"],
                    meta[f"videos/{key}/from_timestamp"],
                    strict=True,
                )
            ]
            cameras[key] = self.video_source(key, features[key], ranges, timestamps, locate)
        return frames, ranges, timestamps, cameras

    def read_v3_episodes(self, video_keys: list[str]) -> dict[str, np.ndarray]:
        episodes_dir = self.root / "meta" / "episodes"
        episode_files = sorted(episodes_dir.glob("chunk-*/file-*.parquet"))
        if not episode_files:
            raise DatasetError("meta/episodes: no episode metadata files (chunk-*/file-*.parquet)")
        int_columns = list(_V3_EPISODE_COLUMNS)
        int_columns += [f"videos/{k}/{c}" for k in video_keys for c in ("chunk_index", "file_index")]
        float_columns = [f"videos/{k}/{c}" for k in video_keys for c in ("from_timestamp", "to_timestamp")]
        parts: dict[str, list[np.ndarray]] = {name: [] for name in int_columns + float_columns}
        for path in episode_files:
            table = self.read_parquet(path, int_columns + float_columns)
            for name in int_columns:
                parts[name].append(self.int_column(table, name, path))
            for name in float_columns:
                if name not in table.column_names:
                    raise DatasetError(f"{self.rel(path)}: column {name!r} is missing (needed for the video feature)")
                parts[name].append(self.vector_column(table, name, 1, path)[:, 0].astype(np.float64))
        meta = {name: np.concatenate(values) for name, values in parts.items()}
        if len(meta["episode_index"]) == 0:
            raise DatasetError("meta/episodes: the dataset has no episodes")
        order = np.argsort(meta["episode_index"], kind="stable")
        meta = {name: values[order] for name, values in meta.items()}
        if not np.array_equal(meta["episode_index"], np.arange(len(order))):
            raise DatasetError(f"meta/episodes: episode_index must run 0..{len(order) - 1} without gaps or repeats")
        return meta

    # ----------------------------------------------------------------------------------------------------- v2.x
    def read_v2(
        self, info: dict, features: dict[str, Feature], keys: list[str], camera_keys: list[str]
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, dict[str, CameraSource]]:
        episodes_path = self.root / "meta" / "episodes.jsonl"
        records = self.read_jsonl(episodes_path)
        if not records:
            raise DatasetError("meta/episodes.jsonl: the dataset has no episodes")
        try:
            records.sort(key=lambda record: int(record["episode_index"]))
            episode_indices = np.array([int(record["episode_index"]) for record in records])
            lengths = np.array([int(record["length"]) for record in records])
        except (KeyError, TypeError, ValueError):
            raise DatasetError("meta/episodes.jsonl: every line needs integer 'episode_index' and 'length'") from None
        if not np.array_equal(episode_indices, np.arange(len(records))):
            raise DatasetError(
                f"meta/episodes.jsonl: episode_index must run 0..{len(records) - 1} without gaps or repeats"
            )
        data_path = info.get("data_path", V2_DATA_PATH)
        chunks_size = info.get("chunks_size", DEFAULT_CHUNK_SIZE)
        if not isinstance(data_path, str) or not isinstance(chunks_size, int) or chunks_size < 1:
            raise DatasetError(f"{self.rel(self.info_path)}: fields 'data_path' / 'chunks_size' are malformed")
        video_keys = [k for k in camera_keys if features[k].dtype == "video"]
        image_keys = [k for k in camera_keys if features[k].dtype == "image"]
        frame_parts: dict[str, list[np.ndarray]] = {key: [] for key in keys}
        row_episode, row_time = [], []
        image_files: list[tuple[str, np.ndarray, np.ndarray]] = []
        start = 0
        for episode, length in zip(episode_indices, lengths, strict=True):
            relative = self.format_path(data_path, "v2.x", episode_chunk=episode // chunks_size, episode_index=episode)
            path = self.root / relative
            table = self.read_parquet(path, [*keys, "episode_index", "timestamp"])
            if table.num_rows != length:
                raise DatasetError(f"{relative}: has {table.num_rows} rows, meta/episodes.jsonl says length {length}")
            for key in keys:
                frame_parts[key].append(self.vector_column(table, key, features[key].shape[0], path))
            row_episode.append(self.int_column(table, "episode_index", path))
            if video_keys:
                row_time.append(self.vector_column(table, "timestamp", 1, path)[:, 0].astype(np.float64))
            if image_keys:
                self.require_image_columns(path, image_keys)
                image_files.append((relative, np.arange(start, start + length), row_episode[-1]))
            start += int(length)
        frames = {key: np.concatenate(values) for key, values in frame_parts.items()}
        if len(frames[ACTION_KEY]) == 0:
            raise DatasetError("data: the dataset has no frames")
        ends = np.cumsum(lengths)
        ranges = np.stack([ends - lengths, ends], axis=1)
        self.check_ranges(ranges, lengths, np.concatenate(row_episode), "meta/episodes.jsonl")
        self.check_totals(info, len(ranges), int(ends[-1]))
        timestamps = np.concatenate(row_time) if row_time else np.zeros(int(ends[-1]))
        cameras = {key: self.image_source(key, features[key], image_files) for key in image_keys}
        video_path = info.get("video_path")
        for key in video_keys:
            locate = [
                (
                    self.format_path(
                        video_path,
                        "v2.x",
                        episode_chunk=int(e) // chunks_size,
                        video_key=key,
                        episode_index=int(e),
                        what="video",
                    ),
                    0.0,
                )
                for e in episode_indices
            ]
            cameras[key] = self.video_source(key, features[key], ranges, timestamps, locate)
        return frames, ranges, timestamps, cameras

    # -------------------------------------------------------------------------------------------------- cameras
    def image_source(self, key: str, feature: Feature, files: list[tuple[str, np.ndarray, np.ndarray]]) -> CameraSource:
        """Each episode's rows in the data files that hold its frames, in frame order."""
        episodes = []
        for relative, index, episode_of_row in files:
            boundaries = np.flatnonzero(np.diff(episode_of_row)) + 1
            for begin, end in zip(np.r_[0, boundaries], np.r_[boundaries, len(index)], strict=True):
                if not np.array_equal(index[begin:end], np.arange(index[begin], index[begin] + end - begin)):
                    raise DatasetError(
                        f"{relative}: the rows of episode {int(episode_of_row[begin])} are not in frame order, "
                        f"which camera feature {key!r} needs"
                    )
                episodes.append(
                    EpisodeFrames(
                        episode=int(episode_of_row[begin]),
                        file=relative,
                        first_frame=int(index[begin]),
                        rows=(int(begin), int(end)),
                    )
                )
        height, width, channels = feature.shape
        return CameraSource(key, "image", height, width, channels, episodes)

    def require_image_columns(self, path: Path, image_keys: list[str]) -> None:
        present = set(pq.read_schema(path).names)
        for key in image_keys:
            if key not in present:
                raise DatasetError(
                    f"{self.rel(path)}: column {key!r} of camera feature {key!r} (dtype image) is missing"
                )

    def video_source(
        self,
        key: str,
        feature: Feature,
        ranges: np.ndarray,
        timestamps: np.ndarray,
        locate: list[tuple[str, float]],
    ) -> CameraSource:
        """Episode e's frames are at from_timestamp + timestamp of each of its frames in file locate[e][0]."""
        episodes = []
        for episode, ((relative, start_time), (begin, end)) in enumerate(zip(locate, ranges, strict=True)):
            if not (self.root / relative).is_file():
                raise DatasetError(f"episode {episode}, feature {key!r}: video file {relative} is missing")
            episodes.append(
                EpisodeFrames(
                    episode=episode,
                    file=relative,
                    first_frame=int(begin),
                    timestamps=start_time + timestamps[int(begin) : int(end)],
                )
            )
        height, width, channels = feature.shape
        return CameraSource(key, "video", height, width, channels, episodes)

    def format_path(self, template: object, version: str, *, what: str = "data", **values: int | str) -> str:
        field = "data_path" if what == "data" else "video_path"
        if not isinstance(template, str):
            raise DatasetError(f"{self.rel(self.info_path)}: field {field!r} is missing or not a string")
        try:
            return template.format(**values)
        except (KeyError, IndexError, ValueError):
            raise DatasetError(
                f"{self.rel(self.info_path)}: field {field!r} {template!r} is not a {version} path template"
            ) from None

    # -------------------------------------------------------------------------------------------------- columns
    def vector_column(self, table: pa.Table, name: str, dim: int, path: Path) -> np.ndarray:
        """Column `name` as float32 (rows, dim): a list / fixed-size-list column, or a plain column when dim is 1."""
        where = self.rel(path)
        if name not in table.column_names:
            raise DatasetError(f"{where}: column {name!r} declared in meta/info.json is missing")
        column = table.column(name).combine_chunks()
        if column.null_count:
            raise DatasetError(f"{where}: column {name!r} has null values")
        kind = column.type
        if pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind):
            widths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
            if len(widths) and not np.all(widths == dim):
                found = sorted({int(w) for w in widths if w != dim})[:3]
                raise DatasetError(
                    f"{where}: column {name!r} has vectors of length {found}, meta/info.json says [{dim}]"
                )
            values = column.flatten()
            if values.null_count:
                raise DatasetError(f"{where}: column {name!r} has null values")
            if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
                raise DatasetError(f"{where}: column {name!r} holds {values.type}, not numbers")
            return values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(column), dim)
        if pa.types.is_floating(kind) or pa.types.is_integer(kind):
            if dim != 1:
                raise DatasetError(f"{where}: column {name!r} holds scalars, meta/info.json says [{dim}]")
            return column.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, 1)
        raise DatasetError(f"{where}: column {name!r} has type {kind}, expected a list of numbers")

    def int_column(self, table: pa.Table, name: str, path: Path) -> np.ndarray:
        if name not in table.column_names:
            raise DatasetError(f"{self.rel(path)}: required column {name!r} is missing")
        column = table.column(name).combine_chunks()
        if column.null_count or not pa.types.is_integer(column.type):
            raise DatasetError(f"{self.rel(path)}: column {name!r} must hold integers without nulls")
        return column.to_numpy().astype(np.int64)

    def read_parquet(self, path: Path, columns: Iterable[str] | None = None) -> pa.Table:
        if not path.is_file():
            raise DatasetError(f"{self.rel(path)} is missing")
        try:
            if columns is not None:
                present = set(pq.read_schema(path).names)
                columns = [c for c in columns if c in present]
            return pq.read_table(path, columns=columns)
        except (pa.ArrowInvalid, OSError) as error:
            raise DatasetError(f"{self.rel(path)} is not a readable Parquet file: {error}") from None

    def read_jsonl(self, path: Path) -> list[dict]:
        if not path.is_file():
            raise DatasetError(f"{self.rel(path)} is missing")
        records = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetError(f"{self.rel(path)}: line {number} is not valid JSON: {error}") from None
            if not isinstance(record, dict):
                raise DatasetError(f"{self.rel(path)}: line {number} must be a JSON object")
            records.append(record)
        return records

    # ------------------------------------------------------------------------------------------------- checking
    def check_ranges(self, ranges: np.ndarray, lengths: np.ndarray, episode_of_row: np.ndarray, where: str) -> None:
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

    def check_totals(self, info: dict, episodes: int, frames: int) -> None:
        for field, actual in (("total_episodes", episodes), ("total_frames", frames)):
            if field in info and info[field] != actual:
                raise DatasetError(f"{self.rel(self.info_path)}: {field} is {info[field]} but the data has {actual}")

    def load_stats(
        self, frames: dict[str, np.ndarray], keys: list[str], camera_keys: list[str], features: dict[str, Feature]
    ) -> dict[str, dict[str, np.ndarray]]:
        """meta/stats.json where it covers a feature (checked against the data's width); vector stats are computed
        from the frames otherwise, camera stats once the frames are decoded (training.data.frame_cache)."""
        path = self.root / "meta" / "stats.json"
        stored: dict = {}
        if path.is_file():
            try:
                stored = json.loads(path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise DatasetError(f"meta/stats.json is not valid JSON: {error}") from None
            if not isinstance(stored, dict):
                raise DatasetError("meta/stats.json must hold a JSON object")
        stats = {}
        widths = {key: frames[key].shape[1] for key in keys}
        widths.update({key: features[key].shape[2] for key in camera_keys})  # one value per channel
        for key, dim in widths.items():
            entry = stored.get(key)
            if entry is None:
                if key in frames:
                    computed = compute_stats(frames[key])
                    stats[key] = {name: value.astype(np.float32) for name, value in computed.items() if name != "count"}
                continue
            if not isinstance(entry, dict) or not {"mean", "std", "min", "max"} <= set(entry):
                raise DatasetError(f"meta/stats.json: stats of {key!r} need at least mean, std, min and max")
            stats[key] = {}
            for name, value in entry.items():
                if name == "count":
                    continue
                try:
                    array = np.asarray(value, dtype=np.float32).reshape(-1)
                except (TypeError, ValueError):
                    raise DatasetError(f"meta/stats.json: {key}.{name} is not a list of numbers") from None
                if array.shape != (dim,):
                    raise DatasetError(
                        f"meta/stats.json: {key}.{name} has {array.size} values, the data has width {dim}"
                    )
                if not np.all(np.isfinite(array)):
                    raise DatasetError(f"meta/stats.json: {key}.{name} has non-finite values")
                stats[key][name] = array
        return stats
