"""The policy interface every policy family implements (LeRobot's PreTrainedPolicy, reduced to what we use).

Training: `forward(batch)` returns (loss, metrics). A batch holds, for every vector observation key k, `k` of shape
(B, len(observation_delta_indices), dim) and `k_is_pad` (B, To) bool; for every camera key, (B, To, C, H, W) uint8
frames at the policy's input size; `action` (B, len(action_delta_indices), A) and `action_is_pad` (B, Ta) bool, all
unnormalised (the policy normalises inside, with stats it holds as buffers).

Inference: `reset()` at each episode start, then `select_action(observation)` once per control step, where
`observation[k]` is (B, dim) for a vector feature and (B, C, H, W) float in [0, 1] for a camera (LeRobot's
convention) at one time step; it returns unnormalised actions (B, action_dim). History, action queues and ensembling
state live inside the policy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import Tensor, nn

from training.data.dataset import ACTION_KEY, PolicyFeatures
from training.policies.configuration_base import PolicyConfigBase
from training.policies.normalize import NormalizationMode, Normalizer
from training.policies.vision.encoders import CameraGeometry
from training.policies.vision.resnet import ResNet18


class Policy(nn.Module, ABC):
    name: ClassVar[str]
    # How every vector feature (each observation and the action) is normalised: "mean_std" or "min_max"
    # (normalize.py). Cameras are always normalised per channel by mean and std, as LeRobot does.
    normalization: ClassVar[NormalizationMode]

    def __init__(self, config: PolicyConfigBase, features: PolicyFeatures, stats: dict[str, dict[str, Tensor]] | None):
        """`stats` maps feature name -> {mean, std, min, max} tensors. It is None when the policy is rebuilt from
        a checkpoint; the normalisation buffers are then filled by `load_state_dict`."""
        super().__init__()
        if not features.observation and not features.images:
            raise ValueError(f"the {self.name} policy needs at least one observation feature")
        self.config = config
        self.features = features
        self.observation_keys = list(features.observation)  # vector features
        self.image_keys = list(features.images)
        widths = {**features.observation, **{k: shape[0] for k, shape in features.images.items()}}
        widths[ACTION_KEY] = features.action_dim
        modes: dict[str, NormalizationMode] = dict.fromkeys(widths, self.normalization)
        modes.update(dict.fromkeys(self.image_keys, "mean_std"))
        self.normalizer = Normalizer(widths, stats, modes, image_keys=tuple(self.image_keys))
        self.cameras = (
            CameraGeometry(features.images, config.image_size, config.crop_ratio) if self.image_keys else None
        )

    @property
    def input_keys(self) -> list[str]:
        """Every observation feature the policy reads: vectors, then cameras."""
        return [*self.observation_keys, *self.image_keys]

    @property
    def observation_delta_indices(self) -> list[int]:
        return self.config.observation_delta_indices

    @property
    def action_delta_indices(self) -> list[int]:
        return self.config.action_delta_indices

    def camera_inputs(self, key: str, frames: Tensor) -> Tensor:
        """(N, C, H, W) frames of camera `key` -> cropped, normalised float (random crop in training mode)."""
        assert self.cameras is not None
        return self.normalizer.normalize(key, self.cameras.to_input(frames, self.training))

    def encode_camera_history(self, observations: Mapping[str, Tensor], encoder: nn.Module) -> Tensor:
        """{camera: (B, T, C, H, W)} -> (B, T, cameras * features): every frame through the shared encoder."""
        parts = []
        for key in self.image_keys:
            frames = observations[key]
            batch, steps = frames.shape[:2]
            encoded = encoder(self.camera_inputs(key, frames.flatten(0, 1)))
            parts.append(encoded.reshape(batch, steps, -1))
        return torch.cat(parts, dim=-1)

    def load_backbone_weights(self, state: Mapping[str, Tensor]) -> None:
        """Load torchvision ImageNet weights into every ResNet-18 backbone the policy has (ValueError if none)."""
        backbones = [module for module in self.modules() if isinstance(module, ResNet18)]
        if not backbones:
            raise ValueError("the policy has no resnet18 backbone to load ImageNet weights into")
        for backbone in backbones:
            backbone.load_torchvision_state_dict(state)

    @abstractmethod
    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]: ...

    @abstractmethod
    def reset(self) -> None: ...

    @abstractmethod
    @torch.no_grad()
    def select_action(self, observation: dict[str, Tensor]) -> Tensor: ...
