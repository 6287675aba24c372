"""ACT: Action Chunking with Transformers (Zhao et al. 2023), low-dimensional variant.

A CVAE: during training a transformer encoder reads [CLS, state, action chunk] and produces a latent z (dim
`latent_dim`); the policy transformer decodes `chunk_size` actions from the observation tokens and z. At inference
z = 0. The loss is L1 over the chunk, masked where the chunk runs past the episode end, plus `kl_weight` * KL.
Execution: run `n_action_steps` of each chunk open-loop, or set `temporal_ensemble_coeff` (then n_action_steps must
be 1) to query every step and average all predictions for the current step with weights exp(-k*i), oldest first.
Defaults follow LeRobot's ACTConfig except the backbone, which does not exist for vector observations.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from training.policies.configuration_base import OptimizerPreset, PolicyConfigBase


class ActConfig(PolicyConfigBase):
    type: Literal["act"] = "act"
    chunk_size: int = Field(100, ge=1, le=1000)
    n_action_steps: int = Field(100, ge=1, le=1000)
    dim_model: int = Field(512, ge=8, le=4096)
    n_heads: int = Field(8, ge=1, le=64)
    dim_feedforward: int = Field(3200, ge=8, le=32768)
    n_encoder_layers: int = Field(4, ge=1, le=32)
    n_decoder_layers: int = Field(1, ge=1, le=32)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    use_vae: bool = True
    latent_dim: int = Field(32, ge=1, le=1024)
    n_vae_encoder_layers: int = Field(4, ge=1, le=32)
    kl_weight: float = Field(10.0, ge=0.0)
    # Weights exp(-coeff * i), i = 0 the oldest prediction: coeff > 0 favours old predictions, < 0 new ones (LeRobot
    # allows both). On a reactive task ensembling lags behind the state; see the README.
    temporal_ensemble_coeff: float | None = Field(None, ge=-10.0, le=10.0)

    # LeRobot's ACT trains at a constant 1e-5, tuned for 100k+ steps with a pretrained backbone; these are measured
    # for runs of thousands of steps (bench/policy_quality.py, README).
    PRESETS: ClassVar[dict[str, OptimizerPreset]] = {
        "state": OptimizerPreset(lr=1e-4, weight_decay=1e-4, warmup_steps=0, scheduler="constant"),
        "camera": OptimizerPreset(lr=1e-4, weight_decay=1e-4, warmup_steps=0, scheduler="constant"),
    }

    @model_validator(mode="after")
    def _check_execution(self) -> ActConfig:
        if self.n_action_steps > self.chunk_size:
            raise ValueError(f"n_action_steps ({self.n_action_steps}) must be at most chunk_size ({self.chunk_size})")
        if self.temporal_ensemble_coeff is not None and self.n_action_steps != 1:
            raise ValueError("temporal_ensemble_coeff needs n_action_steps = 1 (the policy is queried every step)")
        if self.dim_model % self.n_heads:
            raise ValueError(f"dim_model ({self.dim_model}) must be divisible by n_heads ({self.n_heads})")
        return self

    @property
    def observation_delta_indices(self) -> list[int]:
        return [0]

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(self.chunk_size))
