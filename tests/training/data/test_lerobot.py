import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from training.data.lerobot import compute_stats, read_dataset, write_v3
from training.errors import DatasetError

from .builders import FEATURES, synthetic_episodes, write_v21

LENGTHS = [5, 1, 7, 3]


@pytest.fixture
def episodes():
    return synthetic_episodes(LENGTHS)


@pytest.fixture
def v3_root(tmp_path, episodes) -> Path:
    return write_v3(tmp_path / "ds", episodes, fps=10, features=FEATURES, task="push", robot_type="sim")


def concatenated(episodes, key):
    return np.concatenate([e[key] for e in episodes])


def rewrite_parquet(path: Path, change) -> None:
    pq.write_table(change(pq.read_table(path)), path)


def edit_info(root: Path, change) -> None:
    path = root / "meta" / "info.json"
    info = json.loads(path.read_text())
    change(info)
    path.write_text(json.dumps(info))


# ----------------------------------------------------------------------------------------------- v3.0 round trip
def test_v3_round_trip_gives_identical_frames_ranges_and_stats(v3_root, episodes):
    dataset = read_dataset(v3_root)
    assert dataset.codebase_version == "v3.0" and dataset.fps == 10
    assert dataset.observation_keys == ["observation.state"]
    for key in ("observation.state", "action"):
        assert np.array_equal(dataset.frames[key], concatenated(episodes, key))
        assert dataset.frames[key].dtype == np.float32
        expected = compute_stats(concatenated(episodes, key))
        for name in ("mean", "std", "min", "max", "q01", "q99"):
            np.testing.assert_allclose(dataset.stats[key][name], expected[name], rtol=1e-6)
    assert dataset.episode_ranges.tolist() == [[0, 5], [5, 6], [6, 13], [13, 16]]
    assert dataset.policy_features().to_dict() == {"observation": {"observation.state": 3}, "action_dim": 2}


def test_v3_layout_and_metadata_follow_lerobot(v3_root):
    info = json.loads((v3_root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert info["total_episodes"] == 4 and info["total_frames"] == 16 and info["total_tasks"] == 1
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] is None and info["splits"] == {"train": "0:4"}
    assert {"timestamp", "frame_index", "episode_index", "index", "task_index"} <= set(info["features"])
    data = pq.read_table(v3_root / "data/chunk-000/file-000.parquet")
    assert data.num_rows == 16
    assert data.column("frame_index").to_pylist()[:7] == [0, 1, 2, 3, 4, 0, 0]
    assert data.column("timestamp").to_pylist()[:3] == pytest.approx([0.0, 0.1, 0.2])
    assert (
        pq.ParquetFile(v3_root / "data/chunk-000/file-000.parquet").metadata.row_group(0).column(0).compression
        == "SNAPPY"
    )
    meta = pq.read_table(v3_root / "meta/episodes/chunk-000/file-000.parquet").to_pydict()
    assert meta["length"] == LENGTHS and meta["tasks"] == [["push"]] * 4
    assert meta["dataset_from_index"] == [0, 5, 6, 13] and meta["dataset_to_index"] == [5, 6, 13, 16]
    assert meta["stats/action/mean"][1] == pytest.approx(concatenated(synthetic_episodes(LENGTHS), "action")[5])
    tasks = pq.read_table(v3_root / "meta/tasks.parquet").to_pydict()
    assert tasks == {"task_index": [0], "task": ["push"]}
    stats = json.loads((v3_root / "meta" / "stats.json").read_text())
    assert set(stats["action"]) == {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}
    assert stats["action"]["count"] == [16]


def test_v3_splits_data_across_files_at_episode_boundaries(tmp_path, episodes):
    root = write_v3(tmp_path / "ds", episodes, fps=10, features=FEATURES, task="push", data_files_size_in_mb=0.0005)
    files = sorted((root / "data").glob("chunk-*/file-*.parquet"))
    assert len(files) > 1
    dataset = read_dataset(root)
    assert np.array_equal(dataset.frames["action"], concatenated(episodes, "action"))


def test_write_refuses_an_existing_dataset_and_leaves_no_temporary_files(v3_root, episodes):
    with pytest.raises(FileExistsError):
        write_v3(v3_root, episodes, fps=10, features=FEATURES, task="push")
    assert [p.name for p in v3_root.parent.iterdir()] == ["ds"]


# -------------------------------------------------------------------------------------------------------- v2.1
def test_v21_dataset_is_read_with_stats_computed_from_frames(tmp_path, episodes):
    write_v21(tmp_path / "old", episodes)
    dataset = read_dataset(tmp_path / "old")
    assert dataset.codebase_version == "v2.1"
    assert dataset.episode_ranges.tolist() == [[0, 5], [5, 6], [6, 13], [13, 16]]
    assert np.allclose(dataset.frames["observation.state"], concatenated(episodes, "observation.state"))
    assert np.array_equal(dataset.frames["action"], concatenated(episodes, "action"))
    np.testing.assert_allclose(dataset.stats["action"]["mean"], concatenated(episodes, "action").mean(0), rtol=1e-5)


def test_v21_uses_stats_json_when_present(tmp_path, episodes):
    write_v21(tmp_path / "old", episodes, with_stats_json=True)
    dataset = read_dataset(tmp_path / "old")
    assert dataset.stats["observation.state"]["mean"].tolist() == [9.0, 9.0, 9.0]


def test_v21_episode_file_with_wrong_length_is_named(tmp_path, episodes):
    write_v21(tmp_path / "old", episodes)
    lines = (tmp_path / "old/meta/episodes.jsonl").read_text().splitlines()
    lines[2] = json.dumps({"episode_index": 2, "tasks": ["push"], "length": 6})
    (tmp_path / "old/meta/episodes.jsonl").write_text("\n".join(lines))
    with pytest.raises(DatasetError, match=r"episode_000002\.parquet: has 7 rows.*length 6"):
        read_dataset(tmp_path / "old")


# --------------------------------------------------------------------------------------------- malformed datasets
def test_missing_directory(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        read_dataset(tmp_path / "nowhere")


def test_missing_info_json(v3_root):
    (v3_root / "meta" / "info.json").unlink()
    with pytest.raises(DatasetError, match=r"meta/info\.json is missing"):
        read_dataset(v3_root)


def test_malformed_info_json(v3_root):
    (v3_root / "meta" / "info.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"meta/info\.json is not valid JSON"):
        read_dataset(v3_root)


def test_info_json_without_fps(v3_root):
    edit_info(v3_root, lambda info: info.pop("fps"))
    with pytest.raises(DatasetError, match=r"info\.json: required field 'fps' is missing"):
        read_dataset(v3_root)


def test_unknown_codebase_version(v3_root):
    edit_info(v3_root, lambda info: info.update(codebase_version="v9.9"))
    with pytest.raises(DatasetError, match=r"info\.json: unknown codebase_version 'v9\.9'; supported: v3\.0"):
        read_dataset(v3_root)


def test_no_action_feature(v3_root):
    edit_info(v3_root, lambda info: info["features"].pop("action"))
    with pytest.raises(DatasetError, match=r"info\.json: no 'action' feature"):
        read_dataset(v3_root)


def test_no_usable_observation_feature(v3_root):
    edit_info(v3_root, lambda info: info["features"].pop("observation.state"))
    with pytest.raises(DatasetError, match=r"info\.json: no usable observation feature"):
        read_dataset(v3_root)


def test_observation_that_is_not_a_float_vector(v3_root):
    edit_info(v3_root, lambda info: info["features"]["observation.state"].update(dtype="int64"))
    with pytest.raises(DatasetError, match=r"features\['observation.state'\] must be a float32/float64 vector"):
        read_dataset(v3_root)


def test_camera_feature_without_its_data_is_named(v3_root):
    camera = {"dtype": "image", "shape": [96, 96, 3], "names": ["height", "width", "channels"]}
    edit_info(v3_root, lambda info: info["features"].update({"observation.images.top": camera}))
    with pytest.raises(DatasetError, match=r"file-000\.parquet: column 'observation.images.top' of camera feature"):
        read_dataset(v3_root)


def test_shape_mismatch_between_info_and_data(v3_root):
    edit_info(v3_root, lambda info: info["features"]["action"].update(shape=[3]))
    with pytest.raises(DatasetError, match=r"file-000\.parquet: column 'action' has vectors of length \[2\].*\[3\]"):
        read_dataset(v3_root)


def test_declared_column_missing_from_data(v3_root):
    rewrite_parquet(v3_root / "data/chunk-000/file-000.parquet", lambda t: t.drop_columns(["action"]))
    with pytest.raises(
        DatasetError, match=r"file-000\.parquet: column 'action' declared in meta/info\.json is missing"
    ):
        read_dataset(v3_root)


def test_missing_data_file(v3_root):
    (v3_root / "data/chunk-000/file-000.parquet").unlink()
    with pytest.raises(DatasetError, match=r"data/chunk-000/file-000\.parquet is missing"):
        read_dataset(v3_root)


def test_empty_dataset(v3_root):
    rewrite_parquet(v3_root / "meta/episodes/chunk-000/file-000.parquet", lambda t: t.slice(0, 0))
    with pytest.raises(DatasetError, match=r"meta/episodes: the dataset has no episodes"):
        read_dataset(v3_root)


def test_episode_ranges_inconsistent_with_the_data(v3_root):
    def stretch(table: pa.Table) -> pa.Table:
        ends = table.column("dataset_to_index").to_pylist()
        ends[1] += 1
        return table.set_column(table.column_names.index("dataset_to_index"), "dataset_to_index", pa.array(ends))

    rewrite_parquet(v3_root / "meta/episodes/chunk-000/file-000.parquet", stretch)
    with pytest.raises(DatasetError, match=r"meta/episodes: episode 1 has length 1 but frame range \[5, 7\)"):
        read_dataset(v3_root)


def test_episode_index_of_frames_disagrees_with_ranges(v3_root):
    def relabel(table: pa.Table) -> pa.Table:
        episode = table.column("episode_index").to_pylist()
        episode[5] = 0
        return table.set_column(table.column_names.index("episode_index"), "episode_index", pa.array(episode))

    rewrite_parquet(v3_root / "data/chunk-000/file-000.parquet", relabel)
    with pytest.raises(DatasetError, match=r"frame 5 belongs to episode 0 in the data but to episode 1"):
        read_dataset(v3_root)


def test_totals_in_info_disagree_with_data(v3_root):
    edit_info(v3_root, lambda info: info.update(total_frames=99))
    with pytest.raises(DatasetError, match=r"info\.json: total_frames is 99 but the data has 16"):
        read_dataset(v3_root)


def test_non_finite_values(tmp_path, episodes):
    episodes[2]["action"][3, 1] = np.nan
    root = write_v3(tmp_path / "ds", episodes, fps=10, features=FEATURES, task="push")
    with pytest.raises(DatasetError, match=r"feature 'action' has non-finite values \(first at frame 9\)"):
        read_dataset(root)


def test_stats_json_with_wrong_width(v3_root):
    path = v3_root / "meta" / "stats.json"
    stats = json.loads(path.read_text())
    stats["action"]["mean"] = [0.0]
    path.write_text(json.dumps(stats))
    with pytest.raises(DatasetError, match=r"stats\.json: action\.mean has 1 values, the data has width 2"):
        read_dataset(v3_root)


def test_corrupt_parquet_file(v3_root):
    (v3_root / "data/chunk-000/file-000.parquet").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"file-000\.parquet is not a readable Parquet file"):
        read_dataset(v3_root)
