"""A small synthetic imitation task for policy tests: actions are a fixed linear function of the current observation
(plus a per-step drift along the chunk), so a policy can fit it and its loss must fall."""

from __future__ import annotations

import torch
from torch import Tensor

from training.data.dataset import PolicyFeatures
from training.policies.configuration_base import PolicyConfigBase

FEATURES = PolicyFeatures(observation={"observation.state": 4, "observation.environment_state": 3}, action_dim=2)


class SyntheticTask:
    def __init__(self, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        obs_dim = sum(FEATURES.observation.values())
        self.weight = torch.randn(obs_dim, FEATURES.action_dim, generator=generator) / obs_dim**0.5
        self.drift = torch.randn(FEATURES.action_dim, generator=generator) * 0.1
        # Off-centre, differently scaled features, so normalisation matters.
        self.obs_offset = {k: torch.randn(d, generator=generator) * 3 for k, d in FEATURES.observation.items()}
        self.obs_scale = {k: torch.rand(d, generator=generator) * 4 + 0.5 for k, d in FEATURES.observation.items()}

    def _observation(self, key: str, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        return torch.randn(*shape, generator=generator) * self.obs_scale[key] + self.obs_offset[key]

    def action_at(self, current: dict[str, Tensor], offsets: Tensor) -> Tensor:
        """current {key: (B, dim)}, offsets (T,) frame offsets from the current frame -> actions (B, T, A)."""
        stacked = torch.cat([(current[k] - self.obs_offset[k]) / self.obs_scale[k] for k in FEATURES.observation], -1)
        base = stacked @ self.weight
        return base.unsqueeze(1) + offsets.view(1, -1, 1).float() * self.drift

    def batch(self, config: PolicyConfigBase, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        """A training batch as the sampler builds it: histories oldest first, the current frame last."""
        n_obs = len(config.observation_delta_indices)
        batch: dict[str, Tensor] = {}
        current = {}
        for key, dim in FEATURES.observation.items():
            frames = self._observation(key, (batch_size, n_obs, dim), generator)
            batch[key] = frames
            batch[f"{key}_is_pad"] = torch.zeros(batch_size, n_obs, dtype=torch.bool)
            current[key] = frames[:, -1]
        offsets = torch.tensor(config.action_delta_indices)
        batch["action"] = self.action_at(current, offsets)
        batch["action_is_pad"] = torch.zeros(batch_size, len(offsets), dtype=torch.bool)
        return batch

    def stats(self, config: PolicyConfigBase, generator: torch.Generator) -> dict[str, dict[str, Tensor]]:
        sample = self.batch(config, 2048, generator)
        stats = {}
        for key in [*FEATURES.observation, "action"]:
            flat = sample[key].reshape(-1, sample[key].shape[-1])
            stats[key] = {"mean": flat.mean(0), "std": flat.std(0), "min": flat.amin(0), "max": flat.amax(0)}
        return stats


def small_config(policy_type: str, **overrides) -> PolicyConfigBase:
    """Configs small enough to train a few hundred steps on one CPU thread in seconds."""
    from training.policies.act.configuration_act import ActConfig
    from training.policies.diffusion.configuration_diffusion import DiffusionConfig
    from training.policies.mlp.configuration_mlp import MlpConfig

    if policy_type == "mlp":
        return MlpConfig(**{"hidden_dims": (64, 64), **overrides})
    if policy_type == "act":
        defaults = dict(
            dim_model=32, n_heads=4, dim_feedforward=32, n_encoder_layers=1, n_decoder_layers=1,
            n_vae_encoder_layers=1, chunk_size=5, n_action_steps=5, latent_dim=8, dropout=0.0,
        )  # fmt: skip
        return ActConfig(**{**defaults, **overrides})
    if policy_type == "diffusion":
        defaults = dict(
            down_dims=(16, 32), n_groups=4, kernel_size=3, diffusion_step_embed_dim=16, horizon=8, n_action_steps=4,
            num_inference_steps=5,
        )  # fmt: skip
        return DiffusionConfig(**{**defaults, **overrides})
    raise ValueError(policy_type)
