"""Behaviour cloning with an MLP over a short observation history (the robomimic BC baseline)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from training.policies.configuration_base import PolicyConfigBase


class MlpConfig(PolicyConfigBase):
    """`n_obs_steps` frames of every vector observation feature, concatenated, map to the current action."""

    type: Literal["mlp"] = "mlp"
    n_obs_steps: int = Field(2, ge=1, le=64)
    hidden_dims: tuple[PositiveInt, ...] = Field((256, 256, 256), min_length=1, max_length=16)
    activation: Literal["relu", "gelu"] = "relu"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    loss: Literal["l1", "mse"] = "l1"

    optimizer_lr: float = Field(1e-3, gt=0, le=1.0)
    optimizer_weight_decay: float = Field(1e-4, ge=0, le=1.0)
    scheduler_warmup_steps: int = Field(100, ge=0)

    @property
    def observation_delta_indices(self) -> list[int]:
        return list(range(1 - self.n_obs_steps, 1))

    @property
    def action_delta_indices(self) -> list[int]:
        return [0]
