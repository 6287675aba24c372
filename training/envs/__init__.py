"""Simulated environments for evaluation: `push2d` (pure numpy, built in) and `pusht` (the gym-pusht package, the
Diffusion Policy / LeRobot benchmark, imported only when used)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from training.envs import push2d
from training.errors import EnvironmentError_

ENV_NAMES = ("push2d", "pusht")
# Demonstration seeds are below DEMO_SEED_LIMIT, evaluation seeds start at EVAL_SEED_BASE: they never overlap.
DEMO_SEED_LIMIT = push2d.DEMO_SEED_LIMIT
EVAL_SEED_BASE = push2d.EVAL_SEED_BASE


class VectorEnv(Protocol):
    """N episodes of one task stepped together. Observations map a vector feature name -> (N, dim) float32 and a
    camera feature name -> (N, H, W, 3) uint8 (as gym environments render); step returns (observation, reward (N,)
    float in [0, 1], is_success (N,) bool, done (N,) bool: success or time limit). An environment that is done
    stays frozen until the next reset."""

    num_envs: int
    max_episode_steps: int
    fps: int
    observation_features: dict[str, int]
    image_features: dict[str, tuple[int, int, int]]  # camera -> (C, H, W)
    action_dim: int

    def reset(self, seeds: Sequence[int]) -> dict[str, np.ndarray]: ...

    def step(self, actions: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]: ...

    def video_frames(self, count: int | None = None) -> np.ndarray:
        """What a viewer sees of the first `count` environments (all: None) now, (count, H, W, 3) uint8 with even H
        and W."""
        ...


def make_env(name: str, num_envs: int, image_size: tuple[int, int] | None = None) -> VectorEnv:
    """`image_size` (height, width): render camera observations at this size (push2d renders only when asked)."""
    if name == "push2d":
        return push2d.Push2DEnv(num_envs, image_size)
    if name == "pusht":
        from training.envs import pusht

        return pusht.PushTEnv(num_envs, image_size)
    raise EnvironmentError_(f"unknown evaluation environment {name!r}; allowed: {', '.join(ENV_NAMES)}")
