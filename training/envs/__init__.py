"""Simulations a trained policy is evaluated in, behind one vectorised interface (`VectorEnv`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from training.envs import push2d
from training.errors import EnvironmentError_

ENV_NAMES = ("push2d",)
# Demonstration seeds are below DEMO_SEED_LIMIT, evaluation seeds start at EVAL_SEED_BASE: they never overlap.
DEMO_SEED_LIMIT = push2d.DEMO_SEED_LIMIT
EVAL_SEED_BASE = push2d.EVAL_SEED_BASE


class VectorEnv(Protocol):
    """N episodes of one task stepped together. Observations map feature name -> (N, dim) float32; step returns
    (observation, reward (N,) float in [0, 1], is_success (N,) bool, done (N,) bool: success or time limit).
    An environment that is done stays frozen until the next reset."""

    num_envs: int
    max_episode_steps: int
    fps: int
    observation_features: dict[str, int]
    action_dim: int

    def reset(self, seeds: Sequence[int]) -> dict[str, np.ndarray]: ...

    def step(self, actions: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]: ...


def make_env(name: str, num_envs: int) -> VectorEnv:
    if name == "push2d":
        return push2d.Push2DEnv(num_envs)
    raise EnvironmentError_(f"unknown evaluation environment {name!r}; allowed: {', '.join(ENV_NAMES)}")
