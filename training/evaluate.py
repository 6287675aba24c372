"""Policy evaluation by seeded, vectorised rollouts in simulation, reported as LeRobot's eval does.

`pc_success` is a percentage (0..100), as LeRobot logs it; its Wilson 95% interval bounds are percentages too.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from training.envs import EVAL_SEED_BASE, make_env
from training.policies.base import Policy

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
) -> dict:
    """Roll `policy` out for `episodes` episodes of `env_name`, `batch_size` at a time; episode i uses seed
    `seed_base + i`, so results are reproducible and never share seeds with the demonstrations.

    Returns pc_success (percent, 0..100), pc_success_ci_low / pc_success_ci_high (Wilson 95%, percent),
    avg_max_reward, avg_sum_reward, n_episodes, eval_s, eval_ep_s and per_episode records
    {episode_ix, seed, success, sum_reward, max_reward} as LeRobot writes them."""
    if episodes < 1:
        raise ValueError("episodes must be at least 1")
    device = torch.device(device)
    was_training = policy.training
    policy.eval()
    keys = list(policy.features.observation)
    started = time.perf_counter()
    per_episode: list[dict] = []
    try:
        with isolated_rng(seed_base % 2**63, device):
            for first in range(0, episodes, batch_size):
                count = min(batch_size, episodes - first)
                env = make_env(env_name, count)
                seeds = [seed_base + first + i for i in range(count)]
                observation = env.reset(seeds)
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
                    action = policy.select_action(batch)
                    action = action.detach().to("cpu").numpy() if isinstance(action, torch.Tensor) else action
                    observation, reward, is_success, step_done = env.step(action)
                    active = ~done  # an env stops counting once it is done
                    sum_reward[active] += reward[active]
                    max_reward[active] = np.maximum(max_reward[active], reward[active])
                    success[active] |= np.asarray(is_success, dtype=bool)[active]
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
    finally:
        policy.train(was_training)
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
    }
