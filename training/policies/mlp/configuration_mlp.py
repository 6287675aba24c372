"""Behaviour cloning with an MLP over a short observation history (the robomimic BC baseline)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from training.policies.configuration_base import LayerWidth, OptimizerPreset, PolicyConfigBase


class MlpConfig(PolicyConfigBase):
    """`n_obs_steps` frames of every vector observation feature, concatenated, map to the current action."""

    type: Literal["mlp"] = "mlp"
    n_obs_steps: int = Field(2, ge=1, le=64)
    hidden_dims: tuple[LayerWidth, ...] = Field((256, 256, 256), min_length=1, max_length=16)
    activation: Literal["relu", "gelu"] = "relu"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    loss: Literal["l1", "mse"] = "l1"

    # Camera encoder (Diffusion Policy's): backbone, spatial-softmax keypoints, linear + ReLU.
    spatial_softmax_num_keypoints: int = Field(32, ge=1, le=1024)
    use_group_norm: bool | None = Field(
        None, description="GroupNorm in resnet18 instead of (frozen) batch norm; null: unless pretrained_backbone."
    )

    PRESETS: ClassVar[dict[str, OptimizerPreset]] = {
        "state": OptimizerPreset(lr=1e-3, weight_decay=1e-4, warmup_steps=100, scheduler="cosine"),
        "camera": OptimizerPreset(lr=1e-3, weight_decay=1e-4, warmup_steps=100, scheduler="cosine"),
    }

    @model_validator(mode="after")
    def _check_group_norm(self) -> MlpConfig:
        if self.use_group_norm and self.pretrained_backbone:
            raise ValueError("use_group_norm would discard the pretrained batch-norm weights; leave it unset")
        return self

    def backbone_norm(self) -> Literal["frozen_batch", "group"]:
        use_group_norm = self.use_group_norm if self.use_group_norm is not None else not self.pretrained_backbone
        return "group" if use_group_norm else "frozen_batch"

    @property
    def observation_delta_indices(self) -> list[int]:
        return list(range(1 - self.n_obs_steps, 1))

    @property
    def action_delta_indices(self) -> list[int]:
        return [0]
