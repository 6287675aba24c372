import os
import threading
from pathlib import Path

import boto3
import numpy as np
import pytest

from tests.support import moto
from training.data import sources
from training.data.lerobot import write_v3
from training.data.sources import builtin_cache_path, load_dataset, resolve_dataset, write_builtin_dataset
from training.envs import push2d
from training.errors import DatasetError

from .builders import FEATURES, synthetic_episodes


# ------------------------------------------------------------------------------------------------------ builtin
def test_builtin_push2d_is_generated_as_v3_and_read_back(tmp_path):
    dataset = load_dataset("builtin://push2d?episodes=6&seed=2", tmp_path)
    root = builtin_cache_path(tmp_path, "push2d", 6, 2)
    assert dataset.root == root and dataset.codebase_version == "v3.0"
    assert dataset.num_episodes == 6 and dataset.fps == push2d.FPS
    assert dataset.observation_keys == ["observation.state", "observation.environment_state"]
    expected = push2d.generate_demonstrations(6, seed=2)
    assert np.array_equal(dataset.frames["action"], np.concatenate([e["action"] for e in expected]))
    assert set(dataset.stats["observation.environment_state"]) >= {"mean", "std", "min", "max"}


def test_builtin_second_load_reuses_the_cache(tmp_path, monkeypatch):
    load_dataset("builtin://push2d?episodes=3&seed=1", tmp_path)
    info = builtin_cache_path(tmp_path, "push2d", 3, 1) / "meta" / "info.json"
    written = info.stat().st_mtime_ns

    def must_not_regenerate(*args, **kwargs):
        raise AssertionError("the cached dataset was regenerated")

    monkeypatch.setattr(push2d, "generate_demonstrations", must_not_regenerate)
    dataset = load_dataset("builtin://push2d?episodes=3&seed=1", tmp_path)
    assert dataset.num_episodes == 3 and info.stat().st_mtime_ns == written


def test_builtin_generation_racing_in_two_threads_ends_with_one_complete_dataset(tmp_path):
    results, errors = [], []

    def load():
        try:
            results.append(load_dataset("builtin://push2d?episodes=4&seed=5", tmp_path).num_frames)
        except Exception as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 2 and results[0] == results[1]
    assert [p.name for p in (tmp_path / "builtin").iterdir()] == ["push2d-v1-e4-s5"]


def test_builtin_defaults_and_bad_parameters(tmp_path):
    assert resolve_dataset("builtin://push2d?episodes=2", tmp_path).name == "push2d-v1-e2-s0"
    with pytest.raises(DatasetError, match=r"unknown parameter\(s\) \['speed'\]"):
        resolve_dataset("builtin://push2d?speed=3", tmp_path)
    with pytest.raises(DatasetError, match="parameter episodes must be one non-negative integer"):
        resolve_dataset("builtin://push2d?episodes=-1", tmp_path)
    with pytest.raises(DatasetError, match="unknown builtin dataset 'aloha'; allowed: push2d, pusht"):
        resolve_dataset("builtin://aloha", tmp_path)
    with pytest.raises(DatasetError, match="obs_type must be one of state, pixels, pixels_agent_pos"):
        resolve_dataset("builtin://push2d?obs_type=depth", tmp_path)
    with pytest.raises(DatasetError, match="parameter video must be 0 or 1"):
        resolve_dataset("builtin://push2d?obs_type=pixels&video=yes", tmp_path)
    with pytest.raises(DatasetError, match="seed 0..9999"):
        resolve_dataset("builtin://push2d?seed=10000", tmp_path)


def test_builtin_pusht_keypoints_follow_lerobot_pusht_keypoints(tmp_path):
    dataset = load_dataset("builtin://pusht?episodes=2&seed=1&obs_type=environment_state_agent_pos", tmp_path)
    assert dataset.observation_keys == ["observation.state", "observation.environment_state"]
    assert dataset.policy_features().observation == {"observation.state": 2, "observation.environment_state": 16}
    assert not dataset.cameras and dataset.frames["observation.environment_state"].shape[1] == 16
    with pytest.raises(DatasetError, match="video=1 needs the camera layout"):
        resolve_dataset("builtin://pusht?obs_type=environment_state_agent_pos&video=1", tmp_path)
    with pytest.raises(DatasetError, match="LeRobot's PushT layouts only"):
        resolve_dataset("builtin://pusht?obs_type=pixels", tmp_path)


def test_write_builtin_dataset_refuses_a_non_empty_directory(tmp_path):
    root = write_builtin_dataset("push2d", tmp_path / "out", episodes=2, seed=0)
    assert (root / "meta" / "info.json").is_file()
    with pytest.raises(DatasetError, match="already exists and is not empty"):
        write_builtin_dataset("push2d", tmp_path / "out", episodes=2, seed=0)


def test_unknown_scheme_lists_the_allowed_ones(tmp_path):
    with pytest.raises(DatasetError, match=r"unknown scheme; allowed: builtin://, file://, hf://, s3://"):
        resolve_dataset("ftp://host/data", tmp_path)


# --------------------------------------------------------------------------------------------------------- file
def test_file_uri_reads_a_directory(tmp_path):
    write_v3(tmp_path / "my data", synthetic_episodes([3, 4]), fps=10, features=FEATURES, task="push")
    dataset = load_dataset((tmp_path / "my data").as_uri(), tmp_path / "cache")
    assert dataset.num_frames == 7


def test_file_uri_to_a_missing_directory(tmp_path):
    with pytest.raises(DatasetError, match=r"dataset directory .*nowhere does not exist"):
        load_dataset(f"file://{tmp_path}/nowhere", tmp_path)
    with pytest.raises(DatasetError, match="absolute path"):
        load_dataset("file://relative/path", tmp_path)


# ------------------------------------------------------------------------------------------------- Hugging Face
# No Hub can run here: the error path uses a closed loopback port, the success path huggingface_hub's own offline
# mode over a snapshot laid out in its documented cache format.
def test_hf_unreachable_hub_is_a_clear_dataset_error(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{moto.free_port()}")
    with pytest.raises(DatasetError, match=r"hf://org/name: could not download the dataset from the Hugging Face Hub"):
        load_dataset("hf://org/name", tmp_path)


def test_hf_offline_without_a_cached_copy_is_a_clear_dataset_error(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DatasetError, match=r"hf://org/name@v3\.0: could not download"):
        load_dataset("hf://org/name@v3.0", tmp_path)


def test_hf_snapshot_in_the_hub_cache_is_read(tmp_path, monkeypatch):
    import huggingface_hub.constants

    repo_cache = tmp_path / "hf" / "datasets--org--name"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo_cache / "refs").mkdir(parents=True)
    (repo_cache / "refs" / "main").write_text(commit)
    (repo_cache / "snapshots").mkdir()
    write_v3(repo_cache / "snapshots" / commit, synthetic_episodes([2, 5]), fps=10, features=FEATURES, task="push")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    dataset = load_dataset("hf://org/name", tmp_path)
    assert dataset.num_frames == 7 and dataset.root == repo_cache / "snapshots" / commit


def test_hf_malformed_repo(tmp_path):
    with pytest.raises(DatasetError, match="expected hf://org/name"):
        resolve_dataset("hf://justname", tmp_path)


# ----------------------------------------------------------------------------------------------------------- S3
@pytest.fixture
def s3(aws_env, moto_endpoint, monkeypatch):
    moto.reset(moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    return boto3.client("s3", endpoint_url=moto_endpoint)


def upload_dataset(client, bucket: str, prefix: str, root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(root).as_posix()}")


def test_s3_prefix_is_downloaded_and_read(s3, tmp_path):
    write_v3(tmp_path / "src", synthetic_episodes([4, 2, 3]), fps=10, features=FEATURES, task="push")
    s3.create_bucket(Bucket="robot-data")
    upload_dataset(s3, "robot-data", "sets/push", tmp_path / "src")
    s3.put_object(Bucket="robot-data", Key="sets/pushier/meta/info.json", Body=b"{}")  # a sibling prefix, not ours
    dataset = load_dataset("s3://robot-data/sets/push", tmp_path / "cache")
    assert dataset.num_episodes == 3 and dataset.num_frames == 9
    root = dataset.root
    assert root == tmp_path / "cache" / "s3" / "robot-data" / "sets" / "push"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet")) == [
        "data/chunk-000/file-000.parquet",
        "meta/episodes/chunk-000/file-000.parquet",
        "meta/tasks.parquet",
    ]
    # A second load refreshes the copy in place and leaves no temporary directories behind.
    assert load_dataset("s3://robot-data/sets/push/", tmp_path / "cache").num_frames == 9
    assert sorted(os.listdir(root.parent)) == ["push"]


def test_s3_missing_bucket(s3, tmp_path):
    with pytest.raises(DatasetError, match=r"s3://no-such-bucket/x: bucket 'no-such-bucket' does not exist"):
        load_dataset("s3://no-such-bucket/x", tmp_path)


def test_s3_empty_prefix(s3, tmp_path):
    s3.create_bucket(Bucket="robot-data")
    s3.put_object(Bucket="robot-data", Key="other/file.txt", Body=b"x")
    with pytest.raises(DatasetError, match=r"s3://robot-data/sets/none: no objects under this prefix"):
        load_dataset("s3://robot-data/sets/none", tmp_path)
    assert not list((tmp_path / "s3" / "robot-data" / "sets").iterdir())


def test_s3_unreachable_endpoint(aws_env, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{moto.free_port()}")
    monkeypatch.setattr(sources, "S3_RETRIES", {"mode": "standard", "max_attempts": 1})
    with pytest.raises(DatasetError, match=r"s3://robot-data/p: could not reach S3"):
        load_dataset("s3://robot-data/p", tmp_path)
