import os
import threading
from pathlib import Path

import boto3
import numpy as np
import pytest

from tests.support import moto
from training.data import sources
from training.data.access import DatasetAccess
from training.data.lerobot import write_v3
from training.data.sources import builtin_cache_path, load_dataset, resolve_dataset, write_builtin_dataset
from training.envs import push2d
from training.errors import DatasetAccessDenied, DatasetError, LimitExceeded
from training.paths import owner_dir_name

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
    with pytest.raises(DatasetError, match=r"unknown scheme; allowed: builtin://, dataset://, file://, hf://, s3://"):
        resolve_dataset("ftp://host/data", tmp_path)


# --------------------------------------------------------------------------------------------------------- file
def allow_files(*roots: Path, **fields) -> DatasetAccess:
    return DatasetAccess(file_roots=tuple(roots), **fields)


def test_file_uri_reads_a_directory_under_an_allowed_root(tmp_path):
    write_v3(tmp_path / "my data", synthetic_episodes([3, 4]), fps=10, features=FEATURES, task="push")
    dataset = load_dataset((tmp_path / "my data").as_uri(), tmp_path / "cache", allow_files(tmp_path))
    assert dataset.num_frames == 7


def test_file_uri_to_a_missing_directory_under_a_root(tmp_path):
    with pytest.raises(DatasetError, match=r"dataset directory .*nowhere does not exist"):
        load_dataset(f"file://{tmp_path}/nowhere", tmp_path, allow_files(tmp_path))
    with pytest.raises(DatasetError, match="absolute path"):
        load_dataset("file://relative/path", tmp_path, allow_files(tmp_path))


def test_file_uri_outside_every_root_is_refused_alike_whether_or_not_it_exists(tmp_path):
    write_v3(tmp_path / "elsewhere" / "ds", synthetic_episodes([2]), fps=10, features=FEATURES, task="push")
    (tmp_path / "allowed").mkdir()
    access = allow_files(tmp_path / "allowed")
    messages = []
    for target in (tmp_path / "elsewhere" / "ds", tmp_path / "elsewhere" / "missing"):
        with pytest.raises(DatasetAccessDenied) as refused:
            load_dataset(target.as_uri(), tmp_path / "cache", access)
        messages.append(refused.value.message.replace(str(target), "<path>"))
    assert messages[0] == messages[1] and "ROBOTRAIN_FILE_DATASET_ROOTS" in messages[0]
    with pytest.raises(DatasetAccessDenied):  # the default: no file:// at all
        load_dataset((tmp_path / "elsewhere" / "ds").as_uri(), tmp_path / "cache")


@pytest.mark.parametrize(
    "suffix",
    ["allowed/../elsewhere/ds", "allowed/%2e%2e/elsewhere/ds", "allowed/.%2E/elsewhere/ds", "allowed//ds"],
)
def test_file_uri_that_climbs_in_plain_or_encoded_form_is_refused(tmp_path, suffix):
    write_v3(tmp_path / "elsewhere" / "ds", synthetic_episodes([2]), fps=10, features=FEATURES, task="push")
    (tmp_path / "allowed").mkdir()
    with pytest.raises(DatasetError, match="segment"):
        load_dataset(f"file://{tmp_path}/{suffix}", tmp_path / "cache", allow_files(tmp_path / "allowed"))


def test_file_uri_through_a_symlink_out_of_the_root_is_refused(tmp_path):
    write_v3(tmp_path / "elsewhere" / "ds", synthetic_episodes([2]), fps=10, features=FEATURES, task="push")
    (tmp_path / "allowed").mkdir()
    (tmp_path / "allowed" / "link").symlink_to(tmp_path / "elsewhere" / "ds")
    with pytest.raises(DatasetAccessDenied, match="must lie under a directory the operator allows"):
        load_dataset((tmp_path / "allowed" / "link").as_uri(), tmp_path / "cache", allow_files(tmp_path / "allowed"))


def test_a_file_in_a_dataset_that_links_out_of_it_is_refused_before_reading(tmp_path):
    root = write_v3(tmp_path / "allowed" / "ds", synthetic_episodes([2]), fps=10, features=FEATURES, task="push")
    (tmp_path / "secret.json").write_text("{}")
    (root / "meta" / "stats.json").unlink()
    (root / "meta" / "stats.json").symlink_to(tmp_path / "secret.json")
    with pytest.raises(DatasetError, match=r"meta/stats.json is a symlink that points outside the dataset"):
        load_dataset(root.as_uri(), tmp_path / "cache", allow_files(tmp_path / "allowed"))


def test_the_services_own_state_is_never_a_file_dataset_even_under_a_root(tmp_path):
    write_v3(tmp_path / "srv" / "data" / "ds", synthetic_episodes([2]), fps=10, features=FEATURES, task="push")
    access = allow_files(tmp_path / "srv", private_dirs=(tmp_path / "srv" / "data",))
    for target in (tmp_path / "srv" / "data" / "ds", tmp_path / "srv"):
        with pytest.raises(DatasetAccessDenied):
            load_dataset(target.as_uri(), tmp_path / "cache", access)


def test_reader_messages_name_files_relative_to_the_dataset(tmp_path):
    root = write_v3(tmp_path / "ds", synthetic_episodes([2]), fps=10, features=FEATURES, task="push")
    (root / "meta" / "info.json").write_text("{not json")
    with pytest.raises(DatasetError) as refused:
        load_dataset(root.as_uri(), tmp_path / "cache", allow_files(tmp_path))
    assert refused.value.message.startswith("meta/info.json is not valid JSON") and str(tmp_path) not in str(
        refused.value
    )


def test_a_dataset_over_the_byte_limit_is_refused(tmp_path):
    root = write_v3(tmp_path / "ds", synthetic_episodes([20]), fps=10, features=FEATURES, task="push")
    with pytest.raises(LimitExceeded, match="this service reads at most 100"):
        load_dataset(root.as_uri(), tmp_path / "cache", allow_files(tmp_path), max_bytes=100)


def test_an_upload_resolves_only_when_the_run_is_given_it(tmp_path):
    root = write_v3(tmp_path / "uploads" / "ds", synthetic_episodes([2, 3]), fps=10, features=FEATURES, task="push")
    dataset_id = "ds_" + "0" * 26
    uri = f"dataset://{dataset_id}"
    assert load_dataset(uri, tmp_path / "cache", DatasetAccess(uploads={dataset_id: root})).num_frames == 5
    with pytest.raises(DatasetAccessDenied, match="is not one of your uploaded datasets"):
        load_dataset(uri, tmp_path / "cache", DatasetAccess(uploads={"ds_" + "1" * 26: root}))


# ------------------------------------------------------------------------------------------------- Hugging Face
# No Hub can run here: the error path uses a closed loopback port, the token path a loopback server that records
# what the client sends, the success path huggingface_hub's own offline mode over a snapshot laid out in its
# documented cache format.
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


def hub_snapshot(hub_cache: Path, repo: str) -> Path:
    repo_cache = hub_cache / ("datasets--" + repo.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo_cache / "refs").mkdir(parents=True)
    (repo_cache / "refs" / "main").write_text(commit)
    (repo_cache / "snapshots").mkdir()
    return write_v3(repo_cache / "snapshots" / commit, synthetic_episodes([2, 5]), fps=10, features=FEATURES, task="p")


def test_hf_snapshot_in_the_hub_cache_is_read(tmp_path, monkeypatch):
    import huggingface_hub.constants

    snapshot = hub_snapshot(tmp_path / "hf", "org/name")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    dataset = load_dataset("hf://org/name", tmp_path, max_bytes=10**6)  # the worker always passes a limit
    assert dataset.num_frames == 7 and dataset.root == snapshot
    with pytest.raises(LimitExceeded):  # offline, the copy itself is measured
        load_dataset("hf://org/name", tmp_path, max_bytes=100)


def test_hf_repos_of_listed_orgs_are_cached_per_owner(tmp_path, monkeypatch):
    import huggingface_hub.constants

    access = DatasetAccess(hf_orgs=frozenset({"team"}), owner="user_alice")
    snapshot = hub_snapshot(tmp_path / "hf-private" / owner_dir_name("user_alice"), "team/name")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert load_dataset("hf://team/name", tmp_path, access).root == snapshot
    with pytest.raises(DatasetError, match="could not download"):  # bob's cache holds no copy of alice's
        load_dataset("hf://team/name", tmp_path, DatasetAccess(hf_orgs=frozenset({"team"}), owner="user_bob"))


class RecordingHub:
    """A loopback HTTP server that answers 404 to everything and records each request's Authorization header."""

    def __init__(self) -> None:
        import http.server

        seen = self.authorization = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                seen.append(self.headers.get("Authorization"))
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_GET

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_hf_sends_the_services_token_only_for_listed_orgs(tmp_path, monkeypatch):
    import huggingface_hub.constants

    hub = RecordingHub()
    try:
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", "hf_service_token")
        access = DatasetAccess(hf_orgs=frozenset({"team"}), owner="user_alice")
        for uri in ("hf://public/name", "hf://team/name"):
            with pytest.raises(DatasetError, match="could not download"):
                load_dataset(uri, tmp_path, access, max_bytes=10**6)  # the size-asking dry run goes first
            assert hub.authorization, f"{uri}: the hub saw no request"
            sent = set(hub.authorization)
            hub.authorization.clear()
            assert sent == ({None} if uri == "hf://public/name" else {"Bearer hf_service_token"}), uri
    finally:
        hub.close()


def test_hf_malformed_repo_or_climbing_revision(tmp_path):
    with pytest.raises(DatasetError, match="expected hf://org/name|look like hf://org/name"):
        resolve_dataset("hf://justname", tmp_path)
    with pytest.raises(DatasetError, match="segment"):
        resolve_dataset("hf://org/name@../../../../keys", tmp_path)


# ----------------------------------------------------------------------------------------------------------- S3
@pytest.fixture
def s3(aws_env, moto_endpoint, monkeypatch):
    moto.reset(moto_endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    return boto3.client("s3", endpoint_url=moto_endpoint)


BUCKETS = DatasetAccess(s3_buckets=frozenset({"robot-data", "no-such-bucket"}), owner="user_alice")


def upload_dataset(client, bucket: str, prefix: str, root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(root).as_posix()}")


def test_s3_prefix_is_downloaded_into_the_owners_cache_and_read(s3, tmp_path):
    write_v3(tmp_path / "src", synthetic_episodes([4, 2, 3]), fps=10, features=FEATURES, task="push")
    s3.create_bucket(Bucket="robot-data")
    upload_dataset(s3, "robot-data", "sets/push", tmp_path / "src")
    s3.put_object(Bucket="robot-data", Key="sets/pushier/meta/info.json", Body=b"{}")  # a sibling prefix, not ours
    dataset = load_dataset("s3://robot-data/sets/push", tmp_path / "cache", BUCKETS)
    assert dataset.num_episodes == 3 and dataset.num_frames == 9
    root = dataset.root
    assert root == sources.s3_cache_path(tmp_path / "cache", "robot-data", "sets/push", "user_alice")
    assert root.parent == tmp_path / "cache" / "s3" / owner_dir_name("user_alice")
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet")) == [
        "data/chunk-000/file-000.parquet",
        "meta/episodes/chunk-000/file-000.parquet",
        "meta/tasks.parquet",
    ]
    # A second load refreshes the copy in place and leaves no temporary directories behind.
    assert load_dataset("s3://robot-data/sets/push/", tmp_path / "cache", BUCKETS).num_frames == 9
    assert sorted(os.listdir(root.parent)) == [root.name]


def test_s3_bucket_not_listed_is_refused_before_any_request(tmp_path):
    with pytest.raises(DatasetAccessDenied, match="ROBOTRAIN_S3_BUCKETS.*'robot-data' is not one of them"):
        load_dataset("s3://robot-data/sets/push", tmp_path)  # no moto: nothing is contacted


@pytest.mark.parametrize("prefix", ["sets/../../keys", "%2e%2e/%2e%2e/keys", "sets//push", "a\\..\\b"])
def test_s3_prefix_that_climbs_is_refused(tmp_path, prefix):
    with pytest.raises(DatasetError, match="segment|backslash"):
        load_dataset(f"s3://robot-data/{prefix}", tmp_path, BUCKETS)


@pytest.mark.parametrize("key", ["sets/push/../../../../escaped", "sets/push//x", "sets/push/a/./b"])
def test_s3_object_key_that_would_climb_out_fails_the_dataset_and_writes_nothing_outside(s3, tmp_path, key):
    write_v3(tmp_path / "src", synthetic_episodes([2]), fps=10, features=FEATURES, task="push")
    s3.create_bucket(Bucket="robot-data")
    upload_dataset(s3, "robot-data", "sets/push", tmp_path / "src")
    s3.put_object(Bucket="robot-data", Key=key, Body=b"planted")
    with pytest.raises(DatasetError, match="would escape the dataset directory"):
        load_dataset("s3://robot-data/sets/push", tmp_path / "cache", BUCKETS)
    assert not (tmp_path / "escaped").exists()
    assert not list((tmp_path / "cache" / "s3" / owner_dir_name("user_alice")).iterdir())  # no copy, no temporaries


def test_s3_prefix_over_the_byte_limit_is_refused_before_downloading(s3, tmp_path):
    write_v3(tmp_path / "src", synthetic_episodes([20]), fps=10, features=FEATURES, task="push")
    s3.create_bucket(Bucket="robot-data")
    upload_dataset(s3, "robot-data", "sets/push", tmp_path / "src")
    with pytest.raises(LimitExceeded, match="this service reads at most 1,000"):
        load_dataset("s3://robot-data/sets/push", tmp_path / "cache", BUCKETS, max_bytes=1000)


def test_s3_missing_bucket(s3, tmp_path):
    with pytest.raises(DatasetError, match=r"s3://no-such-bucket/x: bucket 'no-such-bucket' does not exist"):
        load_dataset("s3://no-such-bucket/x", tmp_path, BUCKETS)


def test_s3_empty_prefix(s3, tmp_path):
    s3.create_bucket(Bucket="robot-data")
    s3.put_object(Bucket="robot-data", Key="other/file.txt", Body=b"x")
    with pytest.raises(DatasetError, match=r"s3://robot-data/sets/none: no objects under this prefix"):
        load_dataset("s3://robot-data/sets/none", tmp_path, BUCKETS)
    assert not list((tmp_path / "s3" / owner_dir_name("user_alice")).iterdir())


def test_s3_unreachable_endpoint(aws_env, tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{moto.free_port()}")
    monkeypatch.setattr(sources, "S3_RETRIES", {"mode": "standard", "max_attempts": 1})
    with pytest.raises(DatasetError, match=r"s3://robot-data/p: could not reach S3"):
        load_dataset("s3://robot-data/p", tmp_path, BUCKETS)
