"""Device-resident windowed sampling: every frame lives on the training device once, and a batch is a handful of
tensor ops on index tensors (no per-sample Python), with LeRobot's padding semantics at episode edges.

Camera frames are the frame cache's uint8 arrays, placed by training.data.placement: on the device when they fit
(in RAM for the CPU; in a share of free memory for a GPU), otherwise gathered on the CPU per batch and copied over.
Either way a batch is drawn by index."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from training.data.dataset import EpisodeDataset
from training.data.placement import CameraFrames


def split_episodes(num_episodes: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation episode indices (each sorted), disjoint, deterministic in `seed`. Validation is empty
    when the fraction is 0 or there is one episode; otherwise it holds round(fraction * n) episodes, at least one,
    and training keeps at least one."""
    if num_episodes < 1:
        raise ValueError("num_episodes must be at least 1")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError("val_fraction must be in [0, 1)")
    num_val = (
        0
        if val_fraction == 0 or num_episodes == 1
        else min(max(1, round(val_fraction * num_episodes)), num_episodes - 1)
    )
    order = np.random.default_rng(seed).permutation(num_episodes)
    return np.sort(order[num_val:]), np.sort(order[:num_val])


class WindowSampler:
    """Batches of observation / action windows anchored at frames of the chosen episodes.

    For an anchor frame t of episode [start, end), the window at offset d reads frame clamp(t + d, start, end - 1)
    and `<key>_is_pad` is True where t + d falls outside the episode, as LeRobot's delta_timestamps do.
    """

    def __init__(
        self,
        dataset: EpisodeDataset,
        episodes: np.ndarray,
        observation_delta_indices: list[int],
        action_delta_indices: list[int],
        device: torch.device | str = "cpu",
        cameras: CameraFrames | None = None,
    ):
        """`cameras`: the dataset's frames already placed for this device (shared by a run's samplers); placed here
        when None."""
        if not observation_delta_indices or not action_delta_indices:
            raise ValueError("delta indices must not be empty")
        episodes = np.asarray(episodes, dtype=np.int64)
        if episodes.size == 0:
            raise ValueError("a sampler needs at least one episode")
        if episodes.min() < 0 or episodes.max() >= dataset.num_episodes:
            raise ValueError(f"episode indices must be in [0, {dataset.num_episodes})")
        self.device = torch.device(device)
        self.observation_keys = list(dataset.observation_keys)
        self.action_key = dataset.action_key
        self._frames = {
            key: torch.as_tensor(dataset.frames[key], dtype=torch.float32).to(self.device)
            for key in (*dataset.vector_keys, self.action_key)
        }
        self._cameras = cameras if cameras is not None else CameraFrames(dataset, self.device)
        ranges = np.asarray(dataset.episode_ranges, dtype=np.int64)
        lengths = ranges[:, 1] - ranges[:, 0]
        # Per global frame: its episode's first and last frame (inclusive).
        first = np.repeat(ranges[:, 0], lengths)
        last = np.repeat(ranges[:, 1] - 1, lengths)
        self._first = torch.as_tensor(first, device=self.device)
        self._last = torch.as_tensor(last, device=self.device)
        anchors = np.concatenate([np.arange(ranges[e, 0], ranges[e, 1]) for e in episodes])
        self._anchors = torch.as_tensor(anchors, device=self.device)
        self._observation_offsets = torch.as_tensor(observation_delta_indices, dtype=torch.int64, device=self.device)
        self._action_offsets = torch.as_tensor(action_delta_indices, dtype=torch.int64, device=self.device)

    def __len__(self) -> int:
        return int(self._anchors.shape[0])

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """`batch_size` anchors drawn uniformly with replacement, using the CPU `generator` (so its saved state
        reproduces the exact batches on resume)."""
        positions = torch.randint(len(self), (batch_size,), generator=generator)
        return self.gather(self._anchors[positions.to(self.device)])

    def batches(self, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
        """Every anchor exactly once, in order (the last batch may be smaller)."""
        for begin in range(0, len(self), batch_size):
            yield self.gather(self._anchors[begin : begin + batch_size])

    def gather(self, anchors: torch.Tensor) -> dict[str, torch.Tensor]:
        anchors = anchors.to(self.device, torch.int64)
        first = self._first[anchors][:, None]
        last = self._last[anchors][:, None]
        batch: dict[str, torch.Tensor] = {}
        for offsets, keys in (
            (self._observation_offsets, self.observation_keys),
            (self._action_offsets, [self.action_key]),
        ):
            wanted = anchors[:, None] + offsets[None, :]
            is_pad = (wanted < first) | (wanted > last)
            rows = torch.minimum(torch.maximum(wanted, first), last)
            for key in keys:
                batch[key] = self._frames[key][rows] if key in self._frames else self._cameras.gather(key, rows)
                batch[f"{key}_is_pad"] = is_pad
        return batch
