"""Where a dataset's decoded camera frames live while a run trains, and how a batch's frames are gathered.

The frame cache (training.data.frame_cache) leaves each camera's uint8 frames (N, C, H, W) in RAM or, when they do
not fit there, memory-mapped. From there, per camera:

- "device": copied once to the training device, so a batch is one indexing op there. On the CPU this is the array
  in RAM itself (no copy). On a GPU only while every camera placed so far fits in `device_fraction` of the device's
  free memory at the start of the run: the rest is the model's, its activations' and the optimizer's.
- "host": kept in RAM; a batch's rows are gathered on the CPU into page-locked (pinned) memory when the device is a
  GPU, and copied over asynchronously. Pinning only the batch, not the whole array, keeps RAM use at one copy.
- "mapped": read from the memory-mapped cache file per batch, then copied over as for "host".

The train and validation samplers share one CameraFrames, so the frames are placed (and on a GPU held) once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch

from training.data.dataset import EpisodeDataset
from training.device import free_memory

Placement = Literal["device", "host", "mapped"]
# Share of the device's free memory the frames may take, all cameras together.
DEFAULT_DEVICE_FRACTION = 0.5


def choose_placements(
    sizes: dict[str, int],
    mapped: set[str],
    device: torch.device,
    free_bytes: int | None,
    device_fraction: float = DEFAULT_DEVICE_FRACTION,
) -> dict[str, Placement]:
    """Each camera's placement, in order: `sizes` maps a camera to its frames' bytes, `mapped` names the cameras
    whose cache is memory-mapped, `free_bytes` is the device's free memory (None: no device of its own, the CPU).

    On the CPU a camera in RAM is already where training reads it. On another device a camera goes there while the
    running total fits in `device_fraction` of `free_bytes`, and stays in host memory otherwise; a memory-mapped
    camera never goes to the device (it did not even fit in RAM)."""
    if not 0.0 <= device_fraction <= 1.0:
        raise ValueError("device_fraction must be in [0, 1]")
    placements: dict[str, Placement] = {}
    budget = None if free_bytes is None else device_fraction * free_bytes
    for key, nbytes in sizes.items():
        if key in mapped:
            placements[key] = "mapped"
        elif device.type == "cpu" or budget is None:
            placements[key] = "device"
        elif nbytes <= budget:
            placements[key] = "device"
            budget -= nbytes
        else:
            placements[key] = "host"
    return placements


class CameraFrames:
    """Every camera's frames, placed once for a run; `gather(key, rows)` returns frames `rows` (any shape of row
    indices, on the device) as uint8 (*rows.shape, C, H, W) on the device."""

    def __init__(
        self,
        dataset: EpisodeDataset,
        device: torch.device | str,
        *,
        device_fraction: float = DEFAULT_DEVICE_FRACTION,
        free_bytes: Callable[[torch.device], int | None] = free_memory,
    ):
        self.device = torch.device(device)
        arrays: dict[str, np.ndarray] = {}
        for key in dataset.camera_keys:
            if key not in dataset.images:
                raise ValueError(f"camera {key!r} has not been decoded (training.data.frame_cache.decode_cameras)")
            arrays[key] = dataset.images[key]
        mapped = {key for key, images in arrays.items() if isinstance(images, np.memmap)}
        free = free_bytes(self.device) if arrays and self.device.type != "cpu" else None
        self.placements = choose_placements(
            {key: int(images.nbytes) for key, images in arrays.items()}, mapped, self.device, free, device_fraction
        )
        self._on_device: dict[str, torch.Tensor] = {}
        self._on_host: dict[str, np.ndarray] = {}
        for key, images in arrays.items():
            if self.placements[key] == "device":
                self._on_device[key] = torch.from_numpy(images).to(self.device)
            else:
                self._on_host[key] = images
        self._pin = self.device.type == "cuda"

    def __contains__(self, key: str) -> bool:
        return key in self.placements

    def describe(self) -> str:
        """One line for the run's log: where each camera's frames are and how big they are."""
        where = {"device": f"on {self.device}", "host": "in host memory", "mapped": "memory-mapped"}
        parts = []
        for key, placement in self.placements.items():
            array = self._on_device[key] if key in self._on_device else self._on_host[key]
            parts.append(f"{key} ({array.nbytes / 2**20:.0f} MiB) {where[placement]}")
        return "camera frames: " + ", ".join(parts)

    def gather(self, key: str, rows: torch.Tensor) -> torch.Tensor:
        if key in self._on_device:
            return self._on_device[key][rows]
        source = self._on_host[key]
        flat = rows.reshape(-1).cpu().numpy()
        staging = torch.empty((flat.size, *source.shape[1:]), dtype=torch.uint8, pin_memory=self._pin)
        # Fancy indexing reads only the wanted rows (from RAM or from the mapped file) straight into the staging batch.
        np.take(source, flat, axis=0, out=staging.numpy())
        frames = staging.to(self.device, non_blocking=self._pin)
        return frames.reshape(*rows.shape, *source.shape[1:])
