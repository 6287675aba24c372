"""Behaviour cloning: an MLP from the normalised observation history (all features, concatenated; each camera frame
encoded to spatial-softmax keypoints by Diffusion Policy's image encoder) to the current normalised action."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.data.dataset import ACTION_KEY, PolicyFeatures
from training.policies.base import Policy
from training.policies.history import ObservationHistory
from training.policies.mlp.configuration_mlp import MlpConfig
from training.policies.vision.encoders import KeypointEncoder

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


def build_mlp(
    in_dim: int, hidden_dims: tuple[int, ...], out_dim: int, activation: str, dropout: float
) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_dim
    for hidden in hidden_dims:
        layers += [nn.Linear(width, hidden), _ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = hidden
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class MlpPolicy(Policy):
    name = "mlp"
    normalization = "mean_std"
    config: MlpConfig

    def __init__(self, config: MlpConfig, features: PolicyFeatures, stats: dict[str, dict[str, Tensor]] | None):
        super().__init__(config, features, stats)
        per_step = sum(features.observation.values())
        self.image_encoder: KeypointEncoder | None = None
        if self.cameras is not None:
            self.image_encoder = KeypointEncoder(
                config.vision_backbone,
                config.backbone_norm(),
                self.cameras.crop_hw,
                config.spatial_softmax_num_keypoints,
            )
            per_step += len(self.image_keys) * self.image_encoder.out_dim
        in_dim = config.n_obs_steps * per_step
        self.network = build_mlp(in_dim, config.hidden_dims, features.action_dim, config.activation, config.dropout)
        self._history = ObservationHistory(config.n_obs_steps)

    def _normalized_history(self, observations: dict[str, Tensor]) -> Tensor:
        """{key: (B, n_obs_steps, ...)} unnormalised -> (B, n_obs_steps * total_dim) normalised (and encoded)."""
        parts = [self.normalizer.normalize(key, observations[key]) for key in self.observation_keys]
        if self.image_encoder is not None:
            parts.append(self.encode_camera_history(observations, self.image_encoder))
        return torch.cat(parts, dim=-1).flatten(start_dim=1)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        predicted = self.network(self._normalized_history(batch))
        target = self.normalizer.normalize(ACTION_KEY, batch[ACTION_KEY][:, 0])
        l1 = F.l1_loss(predicted, target)
        loss = l1 if self.config.loss == "l1" else F.mse_loss(predicted, target)
        return loss, {"l1": l1.item()}

    def reset(self) -> None:
        self._history.reset()

    @torch.no_grad()
    def select_action(self, observation: dict[str, Tensor]) -> Tensor:
        device = next(self.parameters()).device
        window = self._history.push(observation, self.input_keys, device)
        predicted = self.network(self._normalized_history(window))
        return self.normalizer.unnormalize(ACTION_KEY, predicted)
