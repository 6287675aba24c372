"""Decode a dataset's camera frames once into a cache of uint8 arrays (N, C, H, W) at the policy's input size.

The cache is a .npy file under `<cache_dir>/frames/`, keyed by the dataset's files and the size, so later runs on
the same dataset skip decoding. It is loaded into RAM when it fits in `ram_fraction` of the available memory and
memory-mapped otherwise; either way the sampler indexes it by frame. Decoding errors are DatasetErrors naming the
episode, the feature and the file (relative to the dataset root).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from training.data.dataset import CameraSource, EpisodeDataset, EpisodeFrames
from training.data.lerobot_format import compute_image_stats
from training.data.video import VideoError, decode_at_timestamps
from training.errors import DatasetError

FRAMES_DIR = "frames"
# Bump when the decoded layout changes, so stale caches are not reused.
CACHE_FORMAT_VERSION = 1
DEFAULT_RAM_FRACTION = 0.5


def decode_cameras(
    dataset: EpisodeDataset,
    sizes: dict[str, tuple[int, int]],
    cache_dir: Path,
    *,
    ram_fraction: float = DEFAULT_RAM_FRACTION,
    log: Callable[[str], None] = lambda _: None,
) -> None:
    """Fill dataset.images[key] for every camera in `sizes` ((height, width) to decode at), and the camera's
    per-channel stats when meta/stats.json lacks them."""
    for key, size in sizes.items():
        source = dataset.cameras[key]
        path = Path(cache_dir).expanduser() / FRAMES_DIR / f"{_cache_key(dataset, source, size)}.npy"
        if not path.is_file():
            log(f"decoding {dataset.num_frames} frames of {key} ({source.dtype}) at {size[0]}x{size[1]}")
            _decode_to_file(dataset, source, size, path)
        dataset.images[key] = _open(path, ram_fraction)
        if key not in dataset.stats:
            stats = compute_image_stats(dataset.images[key], channels_last=False)
            dataset.stats[key] = {
                name: stats[name].reshape(-1).astype(np.float32) for name in ("mean", "std", "min", "max")
            }


def _cache_key(dataset: EpisodeDataset, source: CameraSource, size: tuple[int, int]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([CACHE_FORMAT_VERSION, str(dataset.root.resolve()), source.key, list(size)]).encode())
    digest.update((dataset.root / "meta" / "info.json").read_bytes())
    for file in sorted({frames.file for frames in source.episodes}):
        status = (dataset.root / file).stat()
        digest.update(f"{file}:{status.st_size}:{status.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


def _open(path: Path, ram_fraction: float) -> np.ndarray:
    mapped = np.load(path, mmap_mode="r")
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # no sysconf: assume it fits
        available = mapped.nbytes * 2
    if mapped.nbytes <= ram_fraction * available:
        return np.array(mapped)
    return mapped


def _decode_to_file(dataset: EpisodeDataset, source: CameraSource, size: tuple[int, int], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(dataset.num_frames, 3, *size))
        by_file: dict[str, list[EpisodeFrames]] = defaultdict(list)
        for frames in source.episodes:
            by_file[frames.file].append(frames)
        for file, episodes in by_file.items():
            if source.dtype == "video":
                _decode_video_file(dataset.root, source, file, episodes, size, out)
            else:
                _decode_image_file(dataset.root, source, file, episodes, size, out)
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _decode_video_file(
    root: Path, source: CameraSource, file: str, episodes: list[EpisodeFrames], size: tuple[int, int], out: np.ndarray
) -> None:
    timestamps = np.concatenate([e.timestamps for e in episodes if e.timestamps is not None])
    targets = np.concatenate(
        [np.arange(e.first_frame, e.first_frame + len(e.timestamps)) for e in episodes if e.timestamps is not None]
    )
    owner = np.concatenate([np.full(len(e.timestamps), e.episode) for e in episodes if e.timestamps is not None])
    decoded = np.empty((len(timestamps), 3, *size), dtype=np.uint8)
    try:
        decode_at_timestamps(root / file, timestamps, (source.height, source.width), decoded, size)
    except VideoError as error:
        if error.index is not None:
            where = f"episode {int(owner[error.index])}"
        else:
            first, last = int(owner.min()), int(owner.max())
            where = f"episode {first}" if first == last else f"episodes {first}-{last}"
        raise DatasetError(f"{where}, feature {source.key!r}: video file {file}: {error.message}") from None
    out[targets] = decoded


def _decode_image_file(
    root: Path, source: CameraSource, file: str, episodes: list[EpisodeFrames], size: tuple[int, int], out: np.ndarray
) -> None:
    import pyarrow.parquet as pq
    from PIL import Image, UnidentifiedImageError

    column = pq.read_table(root / file, columns=[source.key]).column(source.key).to_pylist()
    for frames in episodes:
        assert frames.rows is not None
        begin, end = frames.rows
        for offset, row in enumerate(range(begin, end)):
            where = f"episode {frames.episode}, feature {source.key!r}: {file} row {row}"
            cell = column[row]
            data = cell.get("bytes") if isinstance(cell, dict) else cell
            if data is None and isinstance(cell, dict) and cell.get("path"):
                image_path = root / str(cell["path"])
                if not image_path.is_file():
                    raise DatasetError(f"{where}: image file {cell['path']} is missing")
                data = image_path.read_bytes()
            if not isinstance(data, bytes | bytearray):
                raise DatasetError(f"{where}: holds no image bytes")
            try:
                image: Image.Image = Image.open(io.BytesIO(data))
                image.load()
            except (UnidentifiedImageError, OSError) as error:
                raise DatasetError(f"{where}: the image is corrupt ({error})") from None
            if image.size != (source.width, source.height):
                raise DatasetError(
                    f"{where}: the image is {image.size[1]}x{image.size[0]}, "
                    f"meta/info.json declares {source.height}x{source.width}"
                )
            image = image.convert("RGB")
            if image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            out[frames.first_frame + offset] = np.asarray(image).transpose(2, 0, 1)
