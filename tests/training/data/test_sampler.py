from pathlib import Path

import numpy as np
import pytest
import torch

from training.data.dataset import EpisodeDataset, Feature
from training.data.sampler import WindowSampler, split_episodes

LENGTHS = [4, 1, 6, 3, 2]
OBSERVATION_DELTAS = [-2, -1, 0]
ACTION_DELTAS = [0, 1, 2, 3]


def make_dataset() -> EpisodeDataset:
    ends = np.cumsum(LENGTHS)
    ranges = np.stack([ends - np.array(LENGTHS), ends], axis=1)
    total = int(ends[-1])
    # Each frame's values encode its global index, so a wrong row is easy to spot.
    frames = {
        "observation.state": np.stack([np.arange(total), -np.arange(total)], axis=1).astype(np.float32),
        "observation.environment_state": (np.arange(total)[:, None] * 10 + np.arange(3)).astype(np.float32),
        "action": (np.arange(total)[:, None] + 0.5).astype(np.float32),
    }
    features = {k: Feature(k, "float32", (v.shape[1],)) for k, v in frames.items()}
    return EpisodeDataset(
        root=Path("."),
        codebase_version="v3.0",
        fps=10,
        features=features,
        frames=frames,
        episode_ranges=ranges,
        stats={},
        observation_keys=["observation.state", "observation.environment_state"],
    )


def naive_window(dataset: EpisodeDataset, anchor: int, deltas: list[int], key: str):
    """The reference: find the anchor's episode by scanning, then clamp frame by frame."""
    for start, end in dataset.episode_ranges:
        if start <= anchor < end:
            break
    values, pads = [], []
    for delta in deltas:
        frame = anchor + delta
        pads.append(not start <= frame < end)
        values.append(dataset.frames[key][min(max(frame, start), end - 1)])
    return np.stack(values), np.array(pads)


def test_windows_and_masks_match_the_naive_reference_at_every_frame():
    dataset = make_dataset()
    sampler = WindowSampler(dataset, np.arange(len(LENGTHS)), OBSERVATION_DELTAS, ACTION_DELTAS)
    batch = sampler.gather(torch.arange(dataset.num_frames))
    for anchor in range(dataset.num_frames):
        for key in dataset.observation_keys:
            values, pads = naive_window(dataset, anchor, OBSERVATION_DELTAS, key)
            assert np.array_equal(batch[key][anchor].numpy(), values), (key, anchor)
            assert np.array_equal(batch[f"{key}_is_pad"][anchor].numpy(), pads), (key, anchor)
        values, pads = naive_window(dataset, anchor, ACTION_DELTAS, "action")
        assert np.array_equal(batch["action"][anchor].numpy(), values), anchor
        assert np.array_equal(batch["action_is_pad"][anchor].numpy(), pads), anchor


def test_batch_shapes_and_dtypes():
    sampler = WindowSampler(make_dataset(), np.arange(len(LENGTHS)), OBSERVATION_DELTAS, ACTION_DELTAS)
    batch = sampler.sample(8, torch.Generator().manual_seed(0))
    assert batch["observation.state"].shape == (8, 3, 2) and batch["observation.state"].dtype == torch.float32
    assert batch["observation.environment_state"].shape == (8, 3, 3)
    assert batch["observation.state_is_pad"].shape == (8, 3) and batch["observation.state_is_pad"].dtype == torch.bool
    assert batch["action"].shape == (8, 4, 1) and batch["action_is_pad"].shape == (8, 4)


def test_first_and_last_frames_of_an_episode_are_padded_on_the_right_side():
    sampler = WindowSampler(make_dataset(), np.arange(len(LENGTHS)), OBSERVATION_DELTAS, ACTION_DELTAS)
    batch = sampler.gather(torch.tensor([5, 10]))  # first and last frame of episode 2 (frames 5..10)
    assert batch["observation.state_is_pad"].tolist() == [[True, True, False], [False, False, False]]
    assert batch["observation.state"][0, :, 0].tolist() == [5, 5, 5]
    assert batch["action_is_pad"].tolist() == [[False, False, False, False], [False, True, True, True]]
    assert batch["action"][1, :, 0].tolist() == [10.5, 10.5, 10.5, 10.5]


def test_only_frames_of_the_chosen_episodes_are_anchors():
    dataset = make_dataset()
    sampler = WindowSampler(dataset, np.array([1, 3]), [0], [0])
    assert len(sampler) == LENGTHS[1] + LENGTHS[3]
    anchors = sampler.sample(500, torch.Generator().manual_seed(1))["observation.state"][:, 0, 0]
    assert set(anchors.int().tolist()) == {4, 11, 12, 13}


def test_sampling_is_reproducible_from_the_generator_state():
    sampler = WindowSampler(make_dataset(), np.arange(len(LENGTHS)), OBSERVATION_DELTAS, ACTION_DELTAS)
    generator = torch.Generator().manual_seed(123)
    sampler.sample(16, generator)
    state = generator.get_state()
    first = sampler.sample(16, generator)
    generator.set_state(state)
    again = sampler.sample(16, generator)
    assert all(torch.equal(first[k], again[k]) for k in first)
    other = sampler.sample(16, generator)
    assert not torch.equal(first["action"], other["action"])


def test_batches_visit_every_anchor_once_in_order():
    sampler = WindowSampler(make_dataset(), np.array([0, 2, 4]), [0], [0])
    seen = torch.cat([batch["action"][:, 0, 0] for batch in sampler.batches(4)])
    assert (seen - 0.5).int().tolist() == [0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 14, 15]


def test_sampler_refuses_bad_episode_indices():
    with pytest.raises(ValueError, match="episode indices"):
        WindowSampler(make_dataset(), np.array([7]), [0], [0])
    with pytest.raises(ValueError, match="at least one episode"):
        WindowSampler(make_dataset(), np.array([], dtype=np.int64), [0], [0])


def test_split_episodes_is_disjoint_complete_and_deterministic():
    train, val = split_episodes(50, 0.1, seed=3)
    assert len(val) == 5 and len(train) == 45
    assert set(train).isdisjoint(val) and set(train) | set(val) == set(range(50))
    again_train, again_val = split_episodes(50, 0.1, seed=3)
    assert np.array_equal(train, again_train) and np.array_equal(val, again_val)
    assert not np.array_equal(val, split_episodes(50, 0.1, seed=4)[1])


def test_split_episodes_edge_cases():
    assert split_episodes(10, 0.0, 0)[1].size == 0
    train, val = split_episodes(1, 0.3, 0)
    assert train.tolist() == [0] and val.size == 0
    train, val = split_episodes(2, 0.01, 0)
    assert len(train) == 1 and len(val) == 1
