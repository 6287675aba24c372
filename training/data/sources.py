"""Where datasets come from: `builtin://`, `dataset://`, `file://`, `hf://` and `s3://` URIs, resolved to a local
LeRobot dataset directory and read through the one reader (training.data.lerobot).

Every URI first passes the access rules (training.data.access): what a run may read is decided by its operator and
its owner, never by the URI alone. Every path built from a URI, an object key or an owner id goes through
training.paths, so nothing is written, renamed or deleted outside the cache. Caches of private sources (S3, Hub repos
read with the service's token) are kept per owner; builtin datasets and public Hub repos are shared. A dataset is
checked before it is read (no entry may leave its directory, the total size is bounded), and the reader's messages
name files relative to the dataset's root.

The Hub and S3 clients are imported only inside their functions, so the library works without them; both read
their own endpoint and credential variables (HF_ENDPOINT / HF_TOKEN, AWS_ENDPOINT_URL_S3 / AWS_*).
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from training.data.access import (
    UPLOAD_SCHEME,
    DatasetAccess,
    UriError,
    check_access,
    check_file_path,
    file_path,
    hf_location,
    hf_token_allowed,
    s3_location,
    upload_id,
)
from training.data.dataset import EpisodeDataset
from training.data.lerobot import read_dataset, write_v3
from training.errors import DatasetError, LimitExceeded
from training.paths import (
    UnsafePathError,
    check_tree,
    digest_name,
    inside,
    owner_dir_name,
    remove_inside,
    rename_inside,
    replace_inside,
)

DEFAULT_CACHE_DIR = Path("~/.cache/robotrain/datasets")
SCHEMES = ("builtin", UPLOAD_SCHEME, "file", "hf", "s3")
BUILTIN_NAMES = ("push2d", "pusht")
DEFAULT_BUILTIN_EPISODES = 200
DEFAULT_BUILTIN_SEED = 0
HF_ALLOW_PATTERNS = ["meta/*", "data/*"]
# botocore's "standard" retry mode retries only the errors it classifies as transient (throttling, 5xx, timeouts).
S3_RETRIES = {"mode": "standard", "max_attempts": 5}


def load_dataset(
    uri: str, cache_dir: Path | None = None, access: DatasetAccess | None = None, *, max_bytes: int | None = None
) -> EpisodeDataset:
    """Fetch (or generate) the dataset `uri` names into the cache when `access` allows it, then read it. The
    default access allows builtin datasets and public Hub repos only."""
    return read_local(resolve_dataset(uri, cache_dir, access, max_bytes=max_bytes), max_bytes=max_bytes)


def read_local(root: Path, *, max_bytes: int | None = None) -> EpisodeDataset:
    """Read the dataset directory `root` with the one reader, once no entry of it leaves it (a symlink out of it,
    a device) and its files total at most `max_bytes`. Messages name files relative to `root`."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError("the dataset directory does not exist")
    try:
        size = check_tree(root)
    except UnsafePathError as error:
        raise DatasetError(f"the dataset cannot be read: {error}") from None
    if max_bytes is not None and size > max_bytes:
        raise LimitExceeded(f"the dataset holds {size:,} bytes; this service reads at most {max_bytes:,}")
    try:
        return read_dataset(root)
    except DatasetError as error:
        raise DatasetError(relative_message(error.message, root)) from None


def relative_message(message: str, root: Path) -> str:
    """A reader message with the dataset's location taken out: `<root>/meta/info.json` becomes `meta/info.json`."""
    for form in dict.fromkeys((str(root), str(Path(root).resolve()))):
        message = message.replace(form + "/", "").replace(form, "the dataset directory")
    return message


def resolve_dataset(
    uri: str, cache_dir: Path | None = None, access: DatasetAccess | None = None, *, max_bytes: int | None = None
) -> Path:
    """The local directory holding the LeRobot dataset `uri` names, once `access` allows reading it."""
    access = access if access is not None else DatasetAccess()
    cache = Path(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR).expanduser()
    parts = urlsplit(uri)
    if parts.scheme == "builtin":
        return _builtin(parts.netloc, parts.query, cache)
    if parts.scheme not in SCHEMES:
        raise DatasetError(f"dataset.uri {uri!r}: unknown scheme; allowed: {', '.join(s + '://' for s in SCHEMES)}")
    try:
        check_access(uri, access)
        if parts.scheme == "file":
            root = check_file_path(file_path(uri), access)
            if not root.is_dir():
                raise DatasetError(f"dataset directory {file_path(uri).as_uri()} does not exist")
            return root
        if parts.scheme == UPLOAD_SCHEME:
            return access.uploads[upload_id(uri)]
        if parts.scheme == "hf":
            repo, revision = hf_location(uri)
            return _huggingface(repo, revision, cache, access, max_bytes)
        bucket, prefix = s3_location(uri)
        return _s3(bucket, prefix, cache, access, max_bytes)
    except UriError as error:
        raise DatasetError(f"dataset.uri {uri!r}: {error}") from None


def _owner_part(access: DatasetAccess) -> str:
    return owner_dir_name(access.owner) if access.owner is not None else "local"


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
def _huggingface(
    repo: str, revision: str | None, cache_dir: Path, access: DatasetAccess, max_bytes: int | None
) -> Path:
    """Download the repo's meta/ and data/ into the Hub cache. Anonymously (public repos only) unless the operator
    lists the repo's organisation; then with the service's token, into a cache kept per owner."""
    import httpx2  # huggingface_hub's HTTP client; its errors can escape snapshot_download
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    where = f"hf://{repo}" + (f"@{revision}" if revision else "")
    private = hf_token_allowed(repo, access)
    hub_cache = inside(cache_dir, "hf-private", _owner_part(access)) if private else cache_dir / "hf"
    token: bool | None = None if private else False  # None: the service's own token (HF_TOKEN); False: anonymous
    try:
        # The dry run asks the Hub for sizes; offline there is nothing to download, and read_local bounds the copy.
        if max_bytes is not None and not constants.HF_HUB_OFFLINE:
            planned = snapshot_download(
                repo,
                repo_type="dataset",
                revision=revision,
                cache_dir=hub_cache,
                token=token,
                allow_patterns=HF_ALLOW_PATTERNS,
                dry_run=True,
            )
            size = sum(info.file_size or 0 for info in planned)
            if size > max_bytes:
                raise LimitExceeded(f"{where} holds {size:,} bytes; this service reads at most {max_bytes:,}")
        path = snapshot_download(
            repo,
            repo_type="dataset",
            revision=revision,
            cache_dir=hub_cache,
            token=token,
            allow_patterns=HF_ALLOW_PATTERNS,
        )
    except (LocalEntryNotFoundError, HfHubHTTPError, httpx2.HTTPError, OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DatasetError(
            f"{where}: could not download the dataset from the Hugging Face Hub ({type(error).__name__}: {first_line})"
        ) from None
    return Path(path)


# ---------------------------------------------------------------------------------------------------------- S3
def s3_cache_path(cache_dir: Path, bucket: str, prefix: str, owner: str | None) -> Path:
    """Where an S3 prefix is copied: per owner (it is read with the service's credentials), named by a hash of the
    bucket and prefix, so no part of the URI becomes a path."""
    owner_part = owner_dir_name(owner) if owner is not None else "local"
    return inside(cache_dir, "s3", owner_part, digest_name(bucket, prefix))


def _s3(bucket: str, prefix: str, cache_dir: Path, access: DatasetAccess, max_bytes: int | None) -> Path:
    """Download every object under s3://bucket/prefix/ into the cache (into a fresh directory inside it, swapped in
    when complete, so a reader never sees a partial copy). Each object key becomes a path only through
    training.paths: a key that would climb out of the copy fails the whole dataset."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    where = f"s3://{bucket}/{prefix}"
    key_prefix = f"{prefix}/" if prefix else ""
    dest = s3_cache_path(cache_dir, bucket, prefix, access.owner)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = inside(dest.parent, f".{dest.name}.tmp-{uuid.uuid4().hex}")
    try:
        try:
            client = boto3.client("s3", config=Config(retries=S3_RETRIES))
            objects: list[tuple[str, int]] = []
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key_prefix):
                objects.extend((item["Key"], int(item.get("Size", 0))) for item in page.get("Contents", []))
            files = [(key, size) for key, size in objects if not key.endswith("/")]  # skip "folder" markers
            if not files:
                raise DatasetError(f"{where}: no objects under this prefix")
            listed = sum(size for _, size in files)
            if max_bytes is not None and listed > max_bytes:
                raise LimitExceeded(f"{where} holds {listed:,} bytes; this service reads at most {max_bytes:,}")
            targets = []
            for key, _ in files:
                try:
                    targets.append((key, inside(tmp, key[len(key_prefix) :], what="object key")))
                except UnsafePathError:
                    raise DatasetError(f"{where}: object key {key!r} would escape the dataset directory") from None
            downloaded = 0
            for key, target in targets:
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, key, str(target))
                downloaded += target.stat().st_size
                if max_bytes is not None and downloaded > max_bytes:  # an object grew after the listing
                    raise LimitExceeded(f"{where} holds more than {max_bytes:,} bytes; this service reads no more")
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchBucket", "404"):
                raise DatasetError(f"{where}: bucket {bucket!r} does not exist") from None
            raise DatasetError(f"{where}: S3 refused the request ({code})") from None
        except BotoCoreError as error:
            raise DatasetError(f"{where}: could not reach S3 ({type(error).__name__})") from None
        except OSError as error:  # e.g. keys "a" and "a/b": a file where a directory is due
            raise DatasetError(f"{where}: the objects do not form a directory tree ({error.strerror})") from None
    except BaseException:
        remove_inside(cache_dir, tmp)
        raise
    _swap_in(cache_dir, tmp, dest)
    return dest


def _swap_in(cache_dir: Path, fresh: Path, dest: Path) -> None:
    """Replace `dest` by `fresh` with renames only, each proven to stay inside the cache. If another process swaps
    in its own copy at the same moment, whichever rename lands last wins and the other copy is discarded; both are
    complete."""
    old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex}"
    with contextlib.suppress(FileNotFoundError):
        rename_inside(cache_dir, dest, old)
    try:
        replace_inside(cache_dir, fresh, dest)
    except OSError:
        remove_inside(cache_dir, fresh)  # someone else's complete copy is in place
    remove_inside(cache_dir, old)
