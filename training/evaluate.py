"""Policy evaluation by seeded, vectorised rollouts in simulation, reported as LeRobot's eval does.

`pc_success` is a percentage (0..100), as LeRobot logs it; its Wilson 95% interval bounds are percentages too.
Camera observations reach the policy as LeRobot passes them: batched, channels first, float in [0, 1]. The first
rollouts can be saved as videos: VP9 in WebM, which every Chromium build plays (no proprietary codec needed).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from training.data.video import encode_video
from training.envs import EVAL_SEED_BASE, make_env
from training.policies.base import Policy

VIDEO_CODEC = "vp9"
VIDEO_SUFFIX = ".webm"

WILSON_Z95 = 1.959963984540054
# A guard against an environment that never reports done (push2d ends at 120 steps).
MAX_ROLLOUT_STEPS = 100_000


def wilson_interval(successes: int, trials: int, z: float = WILSON_Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion, as fractions in [0, 1]."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    z2 = z * z
    denominator = 1.0 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / trials + z2 / (4 * trials * trials)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def student_t_975(df: int) -> float:
    """The 97.5% quantile of Student's t with `df` degrees of freedom, by the Cornish-Fisher expansion around the
    normal quantile (within 0.003 of the exact value for df >= 5; exact tabulated values below that)."""
    if df < 1:
        raise ValueError("df must be at least 1")
    if df < 5:
        return (12.706, 4.303, 3.182, 2.776)[df - 1]
    z = WILSON_Z95
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def mean_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, low, high): the mean of `values` with its two-sided 95% Student-t interval, e.g. of the per-episode
    max rewards, or of their differences between two policies evaluated on the same seeds (a paired comparison)."""
    if not values:
        raise ValueError("mean_interval needs at least one value")
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, mean, mean
    half = student_t_975(len(values) - 1) * float(np.std(values, ddof=1)) / math.sqrt(len(values))
    return mean, mean - half, mean + half


@contextmanager
def isolated_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block under its own seed and restore every global RNG afterwards, so evaluation and validation neither
    depend on nor disturb the training RNG (which keeps resumed runs identical to uninterrupted ones)."""
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices, device_type="cuda"):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


@torch.no_grad()
def evaluate(
    policy: Policy,
    env_name: str,
    episodes: int,
    *,
    device: str | torch.device = "cpu",
    seed_base: int = EVAL_SEED_BASE,
    batch_size: int = 50,
    video_dir: Path | None = None,
    videos: int = 0,
) -> dict:
    """Roll `policy` out for `episodes` episodes of `env_name`, `batch_size` at a time; episode i uses seed
    `seed_base + i`, so results are reproducible and never share seeds with the demonstrations.

    Returns pc_success (percent, 0..100), pc_success_ci_low / pc_success_ci_high (Wilson 95%, percent),
    avg_max_reward, avg_sum_reward, n_episodes, eval_s, eval_ep_s and per_episode records
    {episode_ix, seed, success, sum_reward, max_reward} as LeRobot writes them. With `video_dir`, the first
    `videos` episodes are written there as episode_<k>.webm, listed (as paths) under "videos"."""
    if episodes < 1:
        raise ValueError("episodes must be at least 1")
    device = torch.device(device)
    was_training = policy.training
    policy.eval()
    keys = list(policy.features.observation)
    camera_keys = list(getattr(policy.features, "images", {}))
    image_size = None
    if camera_keys:
        _, height, width = policy.features.images[camera_keys[0]]
        image_size = (height, width)
    started = time.perf_counter()
    per_episode: list[dict] = []
    recorded: list[list[np.ndarray]] = []
    fps = 10
    try:
        with isolated_rng(seed_base % 2**63, device):
            for first in range(0, episodes, batch_size):
                count = min(batch_size, episodes - first)
                env = make_env(env_name, count, image_size)
                fps = env.fps
                seeds = [seed_base + first + i for i in range(count)]
                observation = env.reset(seeds)
                record = max(0, min(count, (videos if video_dir is not None else 0) - first))
                clips: list[list[np.ndarray]] = [[] for _ in range(record)]
                if record:
                    _append_frames(clips, env.video_frames(record), np.zeros(count, dtype=bool))
                policy.reset()
                done = np.zeros(count, dtype=bool)
                success = np.zeros(count, dtype=bool)
                sum_reward = np.zeros(count)
                max_reward = np.full(count, -np.inf)
                for _ in range(MAX_ROLLOUT_STEPS):
                    if done.all():
                        break
                    batch = {
                        k: torch.as_tensor(np.asarray(observation[k]), dtype=torch.float32, device=device) for k in keys
                    }
                    for key in camera_keys:  # (N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1]
                        frames = torch.as_tensor(np.asarray(observation[key]), device=device)
                        batch[key] = frames.permute(0, 3, 1, 2).float() / 255.0
                    action = policy.select_action(batch)
                    actions = action.detach().to("cpu").numpy() if isinstance(action, torch.Tensor) else action
                    observation, reward, is_success, step_done = env.step(np.asarray(actions))
                    active = ~done  # an env stops counting once it is done
                    sum_reward[active] += reward[active]
                    max_reward[active] = np.maximum(max_reward[active], reward[active])
                    success[active] |= np.asarray(is_success, dtype=bool)[active]
                    if record:
                        _append_frames(clips, env.video_frames(record), done)
                    done |= np.asarray(step_done, dtype=bool)
                else:
                    raise RuntimeError(f"{env_name} episodes did not finish within {MAX_ROLLOUT_STEPS} steps")
                per_episode += [
                    {
                        "episode_ix": first + i,
                        "seed": seeds[i],
                        "success": bool(success[i]),
                        "sum_reward": float(sum_reward[i]),
                        "max_reward": float(max_reward[i]),
                    }
                    for i in range(count)
                ]
                recorded.extend(clips)
    finally:
        policy.train(was_training)
    video_paths = []
    if video_dir is not None:
        for k, clip in enumerate(recorded):
            path = Path(video_dir) / f"episode_{k}{VIDEO_SUFFIX}"
            encode_video(path, clip, fps, VIDEO_CODEC)
            video_paths.append(str(path))
    elapsed = time.perf_counter() - started
    successes = sum(e["success"] for e in per_episode)
    low, high = wilson_interval(successes, episodes)
    return {
        "pc_success": 100.0 * successes / episodes,
        "pc_success_ci_low": 100.0 * low,
        "pc_success_ci_high": 100.0 * high,
        "avg_max_reward": float(np.mean([e["max_reward"] for e in per_episode])),
        "avg_sum_reward": float(np.mean([e["sum_reward"] for e in per_episode])),
        "n_episodes": episodes,
        "eval_s": elapsed,
        "eval_ep_s": elapsed / episodes,
        "per_episode": per_episode,
        "videos": video_paths,
    }


def _append_frames(clips: list[list[np.ndarray]], frames: np.ndarray, done: np.ndarray) -> None:
    """Add the current frame to each recorded episode that has not finished."""
    for i, clip in enumerate(clips):
        if not done[i]:
            clip.append(frames[i])
