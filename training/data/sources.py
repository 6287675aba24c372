"""Where datasets come from: `builtin://`, `file://`, `hf://` and `s3://` URIs, resolved to a local LeRobot dataset
directory and read through the one reader (training.data.lerobot).

The Hub and S3 clients are imported only inside their functions, so the library works without them; both read
their own endpoint and credential variables (HF_ENDPOINT / HF_TOKEN, AWS_ENDPOINT_URL_S3 / AWS_*).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlsplit

from training.data.dataset import EpisodeDataset
from training.data.lerobot import read_dataset, write_v3
from training.errors import DatasetError

DEFAULT_CACHE_DIR = Path("~/.cache/robotrain/datasets")
SCHEMES = ("builtin", "file", "hf", "s3")
BUILTIN_NAMES = ("push2d", "pusht")
DEFAULT_BUILTIN_EPISODES = 200
DEFAULT_BUILTIN_SEED = 0
HF_ALLOW_PATTERNS = ["meta/*", "data/*"]
# botocore's "standard" retry mode retries only the errors it classifies as transient (throttling, 5xx, timeouts).
S3_RETRIES = {"mode": "standard", "max_attempts": 5}


def load_dataset(uri: str, cache_dir: Path | None = None) -> EpisodeDataset:
    """Fetch (or generate) the dataset `uri` names into the cache when needed, then read it."""
    return read_dataset(resolve_dataset(uri, cache_dir))


def resolve_dataset(uri: str, cache_dir: Path | None = None) -> Path:
    """The local directory holding the LeRobot dataset `uri` names."""
    cache = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR).expanduser()
    parts = urlsplit(uri)
    if parts.scheme == "builtin":
        return _builtin(parts.netloc, parts.query, cache)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise DatasetError(f"dataset.uri {uri!r}: file:// URIs need an absolute path (file:///abs/path)")
        root = Path(unquote(parts.path))
        if not root.is_dir():
            raise DatasetError(f"dataset directory {root} does not exist")
        return root
    if parts.scheme == "hf":
        return _huggingface(parts.netloc + parts.path, cache)
    if parts.scheme == "s3":
        return _s3(parts.netloc, parts.path, cache)
    raise DatasetError(f"dataset.uri {uri!r}: unknown scheme; allowed: {', '.join(s + '://' for s in SCHEMES)}")


# ------------------------------------------------------------------------------------------------------ builtin
# Bump when a builtin task or its expert changes, so cached datasets from the old generator are not reused.
BUILTIN_GENERATOR_VERSION = 1
BUILTIN_PARAMS = ("episodes", "seed", "obs_type", "image_size", "video")
DEFAULT_BUILTIN_OBS_TYPE = {"push2d": "state", "pusht": "pixels_agent_pos"}
IMAGE_SIZE_RANGE = (16, 512)


@dataclass(frozen=True)
class BuiltinParams:
    """A builtin dataset's parameters: how many episodes from which seed, which observations (push2d: state,
    pixels or pixels_agent_pos; pusht: pixels_agent_pos or environment_state_agent_pos), the camera's size and
    whether it is stored as video."""

    episodes: int = DEFAULT_BUILTIN_EPISODES
    seed: int = DEFAULT_BUILTIN_SEED
    obs_type: str = "state"
    image_size: int = 64
    video: bool = False

    def cache_name(self, name: str) -> str:
        base = f"{name}-v{BUILTIN_GENERATOR_VERSION}-e{self.episodes}-s{self.seed}"
        if self.obs_type == DEFAULT_BUILTIN_OBS_TYPE[name] and name == "push2d":
            return base  # the state-only push2d dataset keeps its original name
        camera = f"-{self.obs_type}-i{self.image_size}" + ("-video" if self.video else "")
        return base + camera


def builtin_cache_path(
    cache_dir: Path, name: str, episodes: int, seed: int, params: BuiltinParams | None = None
) -> Path:
    params = params or BuiltinParams(episodes, seed, DEFAULT_BUILTIN_OBS_TYPE.get(name, "state"))
    return cache_dir / "builtin" / params.cache_name(name)


def write_builtin_dataset(
    name: str,
    out: Path,
    *,
    episodes: int,
    seed: int,
    obs_type: str | None = None,
    image_size: int | None = None,
    video: bool = False,
) -> Path:
    """Generate builtin dataset `name` with its scripted expert and write it as LeRobot v3.0 at `out`."""
    default_size = 96 if name == "pusht" else 64
    params = BuiltinParams(
        episodes, seed, obs_type or DEFAULT_BUILTIN_OBS_TYPE.get(name, "state"), image_size or default_size, video
    )
    try:
        return _generate(name, Path(out), params)
    except FileExistsError:
        raise DatasetError(f"{out} already exists and is not empty; choose a new directory") from None


def _generate(name: str, root: Path, params: BuiltinParams) -> Path:
    if name not in BUILTIN_NAMES:
        raise DatasetError(f"unknown builtin dataset {name!r}; allowed: {', '.join(BUILTIN_NAMES)}")
    from training.envs import push2d

    episodes, seed = params.episodes, params.seed
    if not 1 <= episodes <= 100_000 or not 0 <= seed < push2d.MAX_DATASET_SEED:
        raise DatasetError(
            f"builtin://{name}: episodes must be 1..100000 and seed 0..{push2d.MAX_DATASET_SEED - 1}, "
            f"got episodes={episodes} seed={seed}"
        )
    if not IMAGE_SIZE_RANGE[0] <= params.image_size <= IMAGE_SIZE_RANGE[1] or params.image_size % 2:
        raise DatasetError(f"builtin://{name}: image_size must be an even number in {IMAGE_SIZE_RANGE}")
    if name == "pusht":
        from training.envs import pusht

        if params.obs_type not in pusht.OBS_TYPES or params.image_size != pusht.IMAGE_SIZE:
            raise DatasetError(
                "builtin://pusht: has LeRobot's PushT layouts only (obs_type pixels_agent_pos, 96x96, or "
                "environment_state_agent_pos)"
            )
        if params.obs_type == pusht.KEYPOINTS and params.video:
            raise DatasetError("builtin://pusht: video=1 needs the camera layout (obs_type pixels_agent_pos)")
        demonstrations = pusht.generate_demonstrations(episodes, seed, obs_type=params.obs_type)
        features = pusht.dataset_features(params.video, params.obs_type)
        return write_v3(root, demonstrations, fps=pusht.FPS, features=features, task=pusht.TASK, robot_type="pusht")
    if params.obs_type not in push2d.OBS_TYPES:
        raise DatasetError(f"builtin://push2d: obs_type must be one of {', '.join(push2d.OBS_TYPES)}")
    size = (params.image_size, params.image_size) if params.obs_type != "state" else None
    demonstrations = push2d.generate_demonstrations(episodes, seed, image_size=size)
    features = push2d.dataset_features(params.obs_type, params.image_size, params.video)
    return write_v3(root, demonstrations, fps=push2d.FPS, features=features, task=push2d.TASK, robot_type="push2d")


def parse_builtin_params(name: str, query: str) -> BuiltinParams:
    params = parse_qs(query, keep_blank_values=True)
    unknown = set(params) - set(BUILTIN_PARAMS)
    if unknown:
        raise DatasetError(
            f"builtin://{name}: unknown parameter(s) {sorted(unknown)}; allowed: {', '.join(BUILTIN_PARAMS)}"
        )
    values: dict = {
        "obs_type": DEFAULT_BUILTIN_OBS_TYPE.get(name, "state"),
        "image_size": 96 if name == "pusht" else 64,
    }
    for field, default in (("episodes", DEFAULT_BUILTIN_EPISODES), ("seed", DEFAULT_BUILTIN_SEED)):
        given = params.get(field, [str(default)])
        if len(given) != 1 or not given[0].isdigit():
            raise DatasetError(f"builtin://{name}: parameter {field} must be one non-negative integer")
        values[field] = int(given[0])
    for field in ("obs_type", "image_size", "video"):
        if field in params:
            if len(params[field]) != 1:
                raise DatasetError(f"builtin://{name}: parameter {field} must be given once")
            values[field] = params[field][0]
    if not str(values["image_size"]).isdigit():
        raise DatasetError(f"builtin://{name}: parameter image_size must be one non-negative integer")
    values["image_size"] = int(values["image_size"])
    if str(values.get("video", "0")) not in ("0", "1"):
        raise DatasetError(f"builtin://{name}: parameter video must be 0 or 1")
    values["video"] = str(values.get("video", "0")) == "1"
    return BuiltinParams(**values)


def _builtin(name: str, query: str, cache_dir: Path) -> Path:
    params = parse_builtin_params(name, query)
    if name not in BUILTIN_NAMES:
        raise DatasetError(f"unknown builtin dataset {name!r}; allowed: {', '.join(BUILTIN_NAMES)}")
    root = cache_dir / "builtin" / params.cache_name(name)
    if (root / "meta" / "info.json").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        _generate(name, root, params)
    except FileExistsError:
        # Another process finished the same dataset first; the writer's rename is atomic, so theirs is complete.
        if not (root / "meta" / "info.json").is_file():
            raise DatasetError(f"cache directory {root} exists but holds no dataset; delete it and retry") from None
    return root


# ------------------------------------------------------------------------------------------------- Hugging Face
def _huggingface(repo: str, cache_dir: Path) -> Path:
    import httpx2  # huggingface_hub's HTTP client; its errors can escape snapshot_download
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo_id, _, revision = repo.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise DatasetError(f"hf://{repo}: expected hf://org/name or hf://org/name@revision")
    try:
        path = snapshot_download(
            repo_id=repo_id,
            repo_type="dataset",
            revision=revision or None,
            allow_patterns=HF_ALLOW_PATTERNS,
            cache_dir=cache_dir / "hf",
        )
    except (LocalEntryNotFoundError, HfHubHTTPError, httpx2.HTTPError, OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DatasetError(
            f"hf://{repo}: could not download the dataset from the Hugging Face Hub "
            f"({type(error).__name__}: {first_line})"
        ) from None
    return Path(path)


# ---------------------------------------------------------------------------------------------------------- S3
def _s3(bucket: str, path: str, cache_dir: Path) -> Path:
    """Download every object under s3://bucket/prefix/ into the cache (into a fresh directory, swapped in when
    complete, so a reader never sees a partial copy)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    prefix = path.strip("/")
    where = f"s3://{bucket}/{prefix}"
    key_prefix = f"{prefix}/" if prefix else ""
    dest = cache_dir / "s3" / bucket / (prefix or "_bucket_root")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex}"
    try:
        try:
            client = boto3.client("s3", config=Config(retries=S3_RETRIES))
            keys: list[str] = []
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix):
                keys.extend(item["Key"] for item in page.get("Contents", []))
            files = [key for key in keys if not key.endswith("/")]  # skip "folder" marker objects
            if not files:
                raise DatasetError(f"{where}: no objects under this prefix")
            for key in files:
                relative = PurePosixPath(key[len(key_prefix) :])
                if relative.is_absolute() or ".." in relative.parts:
                    raise DatasetError(f"{where}: object key {key!r} would escape the dataset directory")
                target = tmp.joinpath(*relative.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, key, str(target))
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchBucket", "404"):
                raise DatasetError(f"{where}: bucket {bucket!r} does not exist") from None
            raise DatasetError(f"{where}: S3 refused the request ({code}: {error})") from None
        except BotoCoreError as error:
            raise DatasetError(f"{where}: could not reach S3 ({error})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_in(tmp, dest)
    return dest


def _swap_in(fresh: Path, dest: Path) -> None:
    """Replace `dest` by `fresh` with renames only. If another process swaps in its own copy at the same moment,
    whichever rename lands last wins and the other copy is discarded; both are complete."""
    old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex}"
    with contextlib.suppress(FileNotFoundError):
        os.rename(dest, old)
    try:
        os.rename(fresh, dest)
    except OSError:
        shutil.rmtree(fresh, ignore_errors=True)  # someone else's complete copy is in place
    shutil.rmtree(old, ignore_errors=True)
