"""Small builders the training-run tests share."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from training.data.dataset import PolicyFeatures
from training.envs import push2d

PUSH2D_FEATURES = PolicyFeatures(observation=dict(push2d.OBSERVATION_FEATURES), action_dim=push2d.ACTION_DIM)

# The ACT the learning gates train on CPU: one layer each, an 8-step chunk re-planned every step, a high rate.
TINY_ACT = {
    "type": "act",
    "chunk_size": 8,
    "n_action_steps": 1,
    "dim_model": 64,
    "n_heads": 4,
    "dim_feedforward": 128,
    "n_encoder_layers": 1,
    "n_decoder_layers": 1,
    "n_vae_encoder_layers": 1,
    "latent_dim": 8,
    "kl_weight": 1.0,
    "dropout": 0.0,
    "optimizer_lr": 1e-3,
}


def unit_stats(features: PolicyFeatures = PUSH2D_FEATURES) -> dict[str, dict[str, Tensor]]:
    widths = {**features.observation, "action": features.action_dim}
    return {
        key: {"mean": torch.zeros(d), "std": torch.ones(d), "min": -torch.ones(d), "max": torch.ones(d)}
        for key, d in widths.items()
    }


class ExpertPolicy(nn.Module):
    """push2d's scripted expert behind the Policy inference API, to test the evaluator against a known-good actor."""

    def __init__(self) -> None:
        super().__init__()
        self.features = PUSH2D_FEATURES

    def reset(self) -> None:
        pass

    @torch.no_grad()
    def select_action(self, observation: dict[str, Tensor]) -> Tensor:
        numpy_obs = {k: v.numpy() for k, v in observation.items()}
        return torch.as_tensor(np.asarray(push2d.expert_actions(numpy_obs)))
