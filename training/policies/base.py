"""The policy interface every policy family implements (LeRobot's PreTrainedPolicy, reduced to what we use).

Training: `forward(batch)` returns (loss, metrics). A batch holds, for every observation key k, `k` of shape
(B, len(observation_delta_indices), dim) and `k_is_pad` (B, To) bool; `action` (B, len(action_delta_indices), A) and
`action_is_pad` (B, Ta) bool, all unnormalised (the policy normalises inside, with stats it holds as buffers).

Inference: `reset()` at each episode start, then `select_action(observation)` once per control step, where
`observation[k]` is (B, dim) for one time step; it returns unnormalised actions (B, action_dim). History, action
queues and ensembling state live inside the policy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor, nn

from training.data.dataset import ACTION_KEY, PolicyFeatures
from training.policies.configuration_base import PolicyConfigBase
from training.policies.normalize import Normalizer


class Policy(nn.Module, ABC):
    name: ClassVar[str]
    # How every feature (each observation and the action) is normalised: "mean_std" or "min_max" (normalize.py).
    normalization: ClassVar[str]

    def __init__(self, config: PolicyConfigBase, features: PolicyFeatures, stats: dict[str, dict[str, Tensor]] | None):
        """`stats` maps feature name -> {mean, std, min, max} tensors. It is None when the policy is rebuilt from
        a checkpoint; the normalisation buffers are then filled by `load_state_dict`."""
        super().__init__()
        if not features.observation:
            raise ValueError(f"the {self.name} policy needs at least one observation feature")
        self.config = config
        self.features = features
        self.observation_keys = list(features.observation)
        normalized = {**features.observation, ACTION_KEY: features.action_dim}
        self.normalizer = Normalizer(normalized, stats, dict.fromkeys(normalized, self.normalization))

    @property
    def observation_delta_indices(self) -> list[int]:
        return self.config.observation_delta_indices

    @property
    def action_delta_indices(self) -> list[int]:
        return self.config.action_delta_indices

    @abstractmethod
    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]: ...

    @abstractmethod
    def reset(self) -> None: ...

    @abstractmethod
    @torch.no_grad()
    def select_action(self, observation: dict[str, Tensor]) -> Tensor: ...
