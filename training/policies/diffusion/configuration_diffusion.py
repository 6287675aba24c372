"""Diffusion Policy (Chi et al. 2023), the 1D conditional UNet variant for vector observations.

The observation history (`n_obs_steps` frames) is flattened into a global condition applied by FiLM in every residual
block. Training adds DDPM noise (`squaredcos_cap_v2`, `num_train_timesteps`) to a `horizon`-long action window that
starts at the first observation frame and regresses the noise (epsilon prediction). Inference denoises with DDIM in
`num_inference_steps` and executes `n_action_steps` actions starting at the current frame (receding horizon).
Evaluation uses EMA weights (power 0.75, capped at `ema_max_decay`). Action and state are min-max normalised to [-1, 1].
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from training.policies.configuration_base import LayerWidth, OptimizerPreset, PolicyConfigBase


class DiffusionConfig(PolicyConfigBase):
    type: Literal["diffusion"] = "diffusion"
    n_obs_steps: int = Field(2, ge=1, le=32)
    horizon: int = Field(16, ge=2, le=1024)
    n_action_steps: int = Field(8, ge=1, le=1024)
    down_dims: tuple[LayerWidth, ...] = Field((256, 512, 1024), min_length=1, max_length=6)
    kernel_size: int = Field(5, ge=1, le=15)
    n_groups: int = Field(8, ge=1, le=64)
    diffusion_step_embed_dim: int = Field(128, ge=8, le=4096)
    use_film_scale_modulation: bool = True
    num_train_timesteps: int = Field(100, ge=2, le=10000)
    beta_schedule: Literal["squaredcos_cap_v2", "linear"] = "squaredcos_cap_v2"
    beta_start: float = Field(1e-4, gt=0, lt=1)
    beta_end: float = Field(0.02, gt=0, lt=1)
    prediction_type: Literal["epsilon"] = "epsilon"
    clip_sample: bool = True
    clip_sample_range: float = Field(1.0, gt=0)
    num_inference_steps: int = Field(10, ge=1, le=10000)
    do_mask_loss_for_padding: bool = False
    use_ema: bool = True
    ema_power: float = Field(0.75, gt=0)
    ema_max_decay: float = Field(0.9999, ge=0, lt=1)

    # Camera encoder (Diffusion Policy's): backbone, spatial-softmax keypoints, linear + ReLU.
    spatial_softmax_num_keypoints: int = Field(32, ge=1, le=1024)
    use_group_norm: bool | None = Field(
        None, description="GroupNorm in resnet18 instead of (frozen) batch norm; null: unless pretrained_backbone."
    )

    PRESETS: ClassVar[dict[str, OptimizerPreset]] = {
        "state": OptimizerPreset(lr=1e-4, weight_decay=1e-6, warmup_steps=500, scheduler="cosine"),
        "camera": OptimizerPreset(lr=1e-4, weight_decay=1e-6, warmup_steps=500, scheduler="cosine"),
    }
    optimizer_betas: tuple[float, float] = (0.95, 0.999)

    @model_validator(mode="after")
    def _check_group_norm(self) -> DiffusionConfig:
        if self.use_group_norm and self.pretrained_backbone:
            raise ValueError("use_group_norm would discard the pretrained batch-norm weights; leave it unset")
        return self

    def backbone_norm(self) -> Literal["frozen_batch", "group"]:
        use_group_norm = self.use_group_norm if self.use_group_norm is not None else not self.pretrained_backbone
        return "group" if use_group_norm else "frozen_batch"

    @model_validator(mode="after")
    def _check_horizons(self) -> DiffusionConfig:
        if self.n_action_steps > self.horizon - self.n_obs_steps + 1:
            raise ValueError(
                f"n_action_steps ({self.n_action_steps}) must be at most horizon - n_obs_steps + 1 "
                f"({self.horizon - self.n_obs_steps + 1})"
            )
        if self.num_inference_steps > self.num_train_timesteps:
            raise ValueError("num_inference_steps must be at most num_train_timesteps")
        downsamplings = len(self.down_dims) - 1
        if self.horizon % (2**downsamplings):
            raise ValueError(
                f"horizon ({self.horizon}) must be divisible by 2**(len(down_dims) - 1) = {2**downsamplings}"
            )
        if any(d % self.n_groups for d in self.down_dims):
            raise ValueError(f"every down_dims entry must be divisible by n_groups ({self.n_groups})")
        return self

    @property
    def observation_delta_indices(self) -> list[int]:
        return list(range(1 - self.n_obs_steps, 1))

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(1 - self.n_obs_steps, 1 - self.n_obs_steps + self.horizon))
