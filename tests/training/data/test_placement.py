"""Where camera frames live during a run: on the device while they fit in a share of its free memory, otherwise in
host memory (or the memory-mapped cache), with a batch gathered on the CPU and copied over. No GPU here: the decision
is tested with the device's free memory injected, the host-side gathering on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.data.dataset import CameraSource, EpisodeDataset, Feature
from training.data.placement import CameraFrames, choose_placements
from training.data.sampler import WindowSampler

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
MiB = 2**20


def test_on_the_cpu_frames_in_ram_are_used_in_place_and_mapped_ones_stay_mapped():
    sizes = {"observation.image": 900 * MiB, "observation.images.wrist": 10 * MiB}
    assert choose_placements(sizes, set(), CPU, None) == dict.fromkeys(sizes, "device")
    assert choose_placements(sizes, {"observation.image"}, CPU, None) == {
        "observation.image": "mapped",
        "observation.images.wrist": "device",
    }


def test_on_a_gpu_frames_go_to_the_device_only_within_the_share_of_free_memory():
    sizes = {"observation.image": 400 * MiB}
    assert choose_placements(sizes, set(), CUDA, 1000 * MiB) == {"observation.image": "device"}
    assert choose_placements(sizes, set(), CUDA, 700 * MiB) == {"observation.image": "host"}
    assert choose_placements(sizes, set(), CUDA, 700 * MiB, device_fraction=0.6) == {"observation.image": "device"}
    assert choose_placements(sizes, {"observation.image"}, CUDA, 10**6 * MiB) == {"observation.image": "mapped"}


def test_the_share_of_free_memory_is_spent_by_all_cameras_together():
    sizes = {"observation.images.top": 300 * MiB, "observation.images.left": 300 * MiB, "observation.images.w": 100}
    assert choose_placements(sizes, set(), CUDA, 1000 * MiB) == {
        "observation.images.top": "device",
        "observation.images.left": "host",  # 600 MiB would pass the 500 MiB share
        "observation.images.w": "device",  # the smaller one still fits beside the first
    }
    with pytest.raises(ValueError, match="device_fraction"):
        choose_placements(sizes, set(), CUDA, 1000, device_fraction=1.5)


def _camera_dataset(images: np.ndarray, lengths: list[int]) -> EpisodeDataset:
    ends = np.cumsum(lengths)
    total = int(ends[-1])
    frames = {"action": np.arange(total, dtype=np.float32)[:, None]}
    return EpisodeDataset(
        root=Path("."),
        codebase_version="v3.0",
        fps=10,
        features={"action": Feature("action", "float32", (1,))},
        frames=frames,
        episode_ranges=np.stack([ends - np.array(lengths), ends], axis=1),
        stats={},
        observation_keys=["observation.image"],
        cameras={"observation.image": CameraSource("observation.image", "image", *images.shape[2:], 3, [])},
        images={"observation.image": images},
    )


def test_a_gpu_short_of_free_memory_keeps_the_frames_on_the_host():
    images = np.zeros((10, 3, 4, 4), dtype=np.uint8)  # 480 bytes
    frames = CameraFrames(_camera_dataset(images, [10]), CUDA, free_bytes=lambda device: 900)
    assert frames.placements == {"observation.image": "host"}
    assert "observation.image (0 MiB) in host memory" in frames.describe()
    roomy = CameraFrames(_camera_dataset(images, [10]), "cpu", free_bytes=lambda device: 0)
    assert roomy.placements == {"observation.image": "device"}  # the CPU's RAM was budgeted by the frame cache


def test_host_side_gathering_returns_the_same_batches_as_device_resident_frames(tmp_path):
    lengths = [5, 3, 7]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (sum(lengths), 3, 6, 6), dtype=np.uint8)
    mapped = np.lib.format.open_memmap(tmp_path / "frames.npy", mode="w+", dtype=np.uint8, shape=images.shape)
    mapped[:] = images
    mapped.flush()
    in_ram, on_disk = _camera_dataset(images, lengths), _camera_dataset(np.load(tmp_path / "frames.npy", "r"), lengths)
    resident, gathered = CameraFrames(in_ram, CPU), CameraFrames(on_disk, CPU)
    assert resident.placements == {"observation.image": "device"}
    assert gathered.placements == {"observation.image": "mapped"}
    rows = torch.tensor([[0, 1], [14, 14], [7, 3]])
    expected = torch.from_numpy(images[rows.numpy()])
    for frames in (resident, gathered):
        batch = frames.gather("observation.image", rows)
        assert batch.shape == (3, 2, 3, 6, 6) and batch.dtype == torch.uint8
        assert torch.equal(batch, expected)
    # Samplers built on either placement draw identical batches from the same generator state.
    samplers = [WindowSampler(d, np.arange(3), [-1, 0], [0, 1], cameras=c) for d, c in ((in_ram, resident),
                                                                                          (on_disk, gathered))]  # fmt: skip
    first, second = (s.sample(16, torch.Generator().manual_seed(5)) for s in samplers)
    assert torch.equal(first["observation.image"], second["observation.image"])
    assert torch.equal(first["observation.image_is_pad"], second["observation.image_is_pad"])
