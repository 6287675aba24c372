"""Camera features in LeRobot datasets: every layout the writer produces (v3.0 and v2.1; PNG images and AV1 / H.264
video) reads back to the frames written, and each kind of broken camera data fails before training with a message
naming the episode, the feature and the file (relative to the dataset root)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from training.data.frame_cache import decode_cameras
from training.data.lerobot import read_dataset, write_v3, write_v21
from training.data.video import encode_video
from training.errors import DatasetError

LENGTHS = [4, 2, 5]
SIZE = 16


def camera_episodes(lengths=LENGTHS) -> list[dict[str, np.ndarray]]:
    """Flat-coloured frames whose colour encodes (episode, frame), so a frame from the wrong place is obvious even
    after lossy video compression."""
    episodes = []
    for e, length in enumerate(lengths):
        frames = np.zeros((length, SIZE, SIZE, 3), dtype=np.uint8)
        for t in range(length):
            frames[t] = (40 * e + 30, 20 * t + 20, 128)
        episodes.append(
            {
                "observation.state": np.full((length, 2), e, dtype=np.float32),
                "action": np.arange(length * 2, dtype=np.float32).reshape(length, 2),
                "observation.image": frames,
                "observation.images.wrist": frames[:, ::-1].copy(),
            }
        )
    return episodes


def features(dtype: str) -> dict:
    camera = {"dtype": dtype, "shape": [SIZE, SIZE, 3], "names": None}
    return {
        "observation.state": {"dtype": "float32", "shape": [2], "names": None},
        "action": {"dtype": "float32", "shape": [2], "names": None},
        "observation.image": camera,
        "observation.images.wrist": camera,
    }


def written(episodes: list[dict[str, np.ndarray]], key: str) -> np.ndarray:
    return np.concatenate([e[key] for e in episodes]).transpose(0, 3, 1, 2)


@pytest.mark.parametrize(
    ("writer", "dtype", "codec", "tolerance"),
    [
        (write_v3, "image", "av1", 0),  # PNG is lossless
        (write_v21, "image", "av1", 0),
        (write_v3, "video", "av1", 12),
        (write_v3, "video", "h264", 12),
        (write_v21, "video", "av1", 12),
        (write_v21, "video", "h264", 12),
    ],
)
def test_camera_layouts_round_trip(tmp_path, writer, dtype, codec, tolerance):
    episodes = camera_episodes()
    root = writer(tmp_path / "ds", episodes, fps=10, features=features(dtype), task="t", video_codec=codec)
    dataset = read_dataset(root)
    assert dataset.camera_keys == ["observation.image", "observation.images.wrist"]
    assert dataset.policy_features().images == {
        "observation.image": (3, SIZE, SIZE),
        "observation.images.wrist": (3, SIZE, SIZE),
    }
    decode_cameras(dataset, {k: (SIZE, SIZE) for k in dataset.camera_keys}, tmp_path / "cache")
    for key in dataset.camera_keys:
        frames = dataset.images[key]
        assert frames.dtype == np.uint8 and frames.shape == (sum(LENGTHS), 3, SIZE, SIZE)
        error = np.abs(frames.astype(int) - written(episodes, key).astype(int)).max()
        assert error <= tolerance, error
        # Per-channel stats, as LeRobot stores them for cameras (values in [0, 1]).
        assert dataset.stats[key]["mean"].shape == (3,)
        np.testing.assert_allclose(dataset.stats[key]["mean"], frames.mean(axis=(0, 2, 3)) / 255, atol=0.03)


def test_v3_video_layout_follows_lerobot(tmp_path):
    root = write_v3(tmp_path / "ds", camera_episodes(), fps=10, features=features("video"), task="t")
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    assert info["features"]["observation.image"]["info"]["video.codec"] == "av1"
    assert (root / "videos" / "observation.image" / "chunk-000" / "file-000.mp4").is_file()
    episodes = pq.read_table(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pydict()
    assert episodes["videos/observation.image/from_timestamp"] == pytest.approx([0.0, 0.4, 0.6])
    assert episodes["videos/observation.image/to_timestamp"] == pytest.approx([0.4, 0.6, 1.1])


def test_decoded_frames_are_cached_and_resized(tmp_path):
    root = write_v3(tmp_path / "ds", camera_episodes(), fps=10, features=features("video"), task="t")
    cache = tmp_path / "cache"
    decode_cameras(read_dataset(root), {"observation.image": (8, 8)}, cache)
    cached = list((cache / "frames").glob("*.npy"))
    assert len(cached) == 1
    dataset = read_dataset(root)
    decode_cameras(dataset, {"observation.image": (8, 8)}, cache)
    assert dataset.images["observation.image"].shape == (sum(LENGTHS), 3, 8, 8)
    assert list((cache / "frames").glob("*.npy")) == cached  # read back, not decoded again
    # Too big for the RAM budget: memory-mapped instead of loaded.
    mapped = read_dataset(root)
    decode_cameras(mapped, {"observation.image": (8, 8)}, cache, ram_fraction=0.0)
    assert isinstance(mapped.images["observation.image"], np.memmap)


# ------------------------------------------------------------------------------------------------ bad camera data
def video_root(tmp_path: Path, writer=write_v3) -> Path:
    return writer(tmp_path / "ds", camera_episodes(), fps=10, features=features("video"), task="t")


def decode_all(root: Path, tmp_path: Path) -> None:
    dataset = read_dataset(root)
    decode_cameras(dataset, {k: (SIZE, SIZE) for k in dataset.camera_keys}, tmp_path / "cache")


def test_missing_video_is_named(tmp_path):
    root = video_root(tmp_path, write_v21)
    (root / "videos/chunk-000/observation.images.wrist/episode_000001.mp4").unlink()
    with pytest.raises(
        DatasetError,
        match=r"^episode 1, feature 'observation.images.wrist': video file "
        r"videos/chunk-000/observation.images.wrist/episode_000001.mp4 is missing$",
    ):
        read_dataset(root)


def test_corrupt_video_is_named(tmp_path):
    root = video_root(tmp_path)
    path = root / "videos/observation.image/chunk-000/file-000.mp4"
    path.write_bytes(b"not a video at all" * 10)
    with pytest.raises(
        DatasetError,
        match=r"^episodes 0-2, feature 'observation.image': video file "
        r"videos/observation.image/chunk-000/file-000.mp4: cannot open the video",
    ):
        decode_all(root, tmp_path)


def test_timestamp_outside_the_video_is_named(tmp_path):
    root = video_root(tmp_path)
    path = root / "meta/episodes/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    column = "videos/observation.image/from_timestamp"
    shifted = table.set_column(table.schema.get_field_index(column), column, [[0.0, 0.4, 0.9]])
    pq.write_table(shifted, path)
    with pytest.raises(
        DatasetError,
        match=r"^episode 2, feature 'observation.image': video file videos/observation.image/chunk-000/"
        r"file-000.mp4: timestamp 1.1000 s is outside the file \(its last frame is at 1.0000 s\)$",
    ):
        decode_all(root, tmp_path)


def test_frame_of_the_wrong_size_is_named(tmp_path):
    root = video_root(tmp_path, write_v21)
    path = root / "videos/chunk-000/observation.image/episode_000002.mp4"
    encode_video(path, [np.zeros((SIZE * 2, SIZE, 3), np.uint8)] * LENGTHS[2], fps=10)
    with pytest.raises(
        DatasetError,
        match=r"^episode 2, feature 'observation.image': video file videos/chunk-000/observation.image/"
        r"episode_000002.mp4: frame at 0.0000 s is 32x16, meta/info.json declares 16x16$",
    ):
        decode_all(root, tmp_path)


def test_corrupt_image_is_named(tmp_path):
    root = write_v3(tmp_path / "ds", camera_episodes(), fps=10, features=features("image"), task="t")
    path = root / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    cells = table.column("observation.image").to_pylist()
    cells[5] = {"bytes": b"\x89PNG broken", "path": None}
    index = table.schema.get_field_index("observation.image")
    column = pa.array(cells, type=table.schema.field(index).type)
    pq.write_table(table.set_column(index, table.schema.field(index), column), path)
    with pytest.raises(
        DatasetError,
        match=r"^episode 1, feature 'observation.image': data/chunk-000/file-000.parquet row 5: the image is corrupt",
    ):
        decode_all(root, tmp_path)


def test_missing_image_column_is_named(tmp_path):
    root = write_v3(tmp_path / "ds", camera_episodes(), fps=10, features=features("image"), task="t")
    path = root / "data/chunk-000/file-000.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["observation.images.wrist"]), path)
    with pytest.raises(DatasetError, match=r"^data/chunk-000/file-000.parquet: column 'observation.images.wrist'"):
        read_dataset(root)
