"""Camera inputs of a policy: frames to cropped, normalised tensors, and the encoders that turn them into features.

Frames reach a policy as uint8 (training batches, from the frame cache, already at the input size) or as float in
[0, 1] (select_action, LeRobot's convention), channels first. They are resized to the input size when needed,
cropped (randomly in training, centred in evaluation: the augmentation runs on the policy's device), and
normalised per channel. One encoder is shared by all cameras, as LeRobot does by default.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.policies.vision.geometry import crop_size, input_size
from training.policies.vision.resnet import Norm, ResNet18
from training.policies.vision.small_cnn import SmallCnn

Backbone = Literal["resnet18", "small_cnn"]


def make_backbone(name: Backbone, norm: Norm) -> nn.Module:
    return ResNet18(norm) if name == "resnet18" else SmallCnn()


class CameraGeometry:
    """Input and crop sizes shared by every camera of a policy (derived from the cameras' native sizes)."""

    def __init__(self, images: dict[str, tuple[int, int, int]], image_size: tuple[int, int] | None, crop_ratio: float):
        sizes = {key: input_size((shape[1], shape[2]), image_size) for key, shape in images.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(
                f"the cameras have different sizes {sizes}; set policy.image_size to decode them all at one size"
            )
        self.keys = list(images)
        self.input_hw: tuple[int, int] = next(iter(sizes.values()))
        self.crop_hw: tuple[int, int] = crop_size(self.input_hw, crop_ratio)

    def to_input(self, frames: Tensor, training: bool) -> Tensor:
        """(N, C, H, W) uint8 or float in [0, 1] -> (N, C, crop_h, crop_w) float in [0, 1]."""
        if frames.ndim != 4:
            raise ValueError(
                f"camera frames must have shape (batch, channels, height, width), got {tuple(frames.shape)}"
            )
        if tuple(frames.shape[-2:]) != self.input_hw:
            frames = frames.float() if frames.dtype == torch.uint8 else frames
            frames = F.interpolate(frames, size=self.input_hw, mode="bilinear", align_corners=False, antialias=True)
        frames = random_crop(frames, self.crop_hw) if training else center_crop(frames, self.crop_hw)
        return frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()


def random_crop(frames: Tensor, crop_hw: tuple[int, int]) -> Tensor:
    """An independent random crop of each frame (N, C, H, W), drawn from the frames' device RNG."""
    count, _, height, width = frames.shape
    crop_h, crop_w = crop_hw
    if (height, width) == crop_hw:
        return frames
    device = frames.device
    top = torch.randint(0, height - crop_h + 1, (count,), device=device)
    left = torch.randint(0, width - crop_w + 1, (count,), device=device)
    rows = (top[:, None] + torch.arange(crop_h, device=device))[:, :, None]
    cols = (left[:, None] + torch.arange(crop_w, device=device))[:, None, :]
    # Advanced indices around a slice put their dimensions first: (N, crop_h, crop_w, C).
    return frames[torch.arange(count, device=device)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)


def center_crop(frames: Tensor, crop_hw: tuple[int, int]) -> Tensor:
    height, width = frames.shape[-2:]
    top, left = (height - crop_hw[0]) // 2, (width - crop_hw[1]) // 2
    return frames[..., top : top + crop_hw[0], left : left + crop_hw[1]]


def _feature_map_shape(backbone: nn.Module, crop_hw: tuple[int, int]) -> tuple[int, int, int]:
    with torch.no_grad():
        shape = backbone(torch.zeros(1, 3, *crop_hw)).shape
    return int(shape[1]), int(shape[2]), int(shape[3])


class SpatialSoftmax(nn.Module):
    """Keypoints from a feature map (Levine et al. 2016, as Diffusion Policy uses it): a 1x1 convolution gives one
    map per keypoint, a softmax over positions turns each into a distribution, and its expected (x, y) in [-1, 1]^2
    is the keypoint."""

    positions: Tensor

    def __init__(self, in_channels: int, feature_hw: tuple[int, int], num_keypoints: int):
        super().__init__()
        self.keypoints = nn.Conv2d(in_channels, num_keypoints, 1)
        ys, xs = torch.meshgrid(
            torch.linspace(-1.0, 1.0, feature_hw[0]), torch.linspace(-1.0, 1.0, feature_hw[1]), indexing="ij"
        )
        self.register_buffer("positions", torch.stack([xs, ys], dim=-1).reshape(-1, 2), persistent=False)

    def forward(self, features: Tensor) -> Tensor:
        """(N, C, h, w) -> (N, num_keypoints, 2)."""
        attention = torch.softmax(self.keypoints(features).flatten(start_dim=2), dim=-1)
        return attention @ self.positions


class KeypointEncoder(nn.Module):
    """Diffusion Policy's image encoder: backbone, spatial softmax, then a linear layer and ReLU -> (N, out_dim)."""

    def __init__(self, backbone: Backbone, norm: Norm, crop_hw: tuple[int, int], num_keypoints: int):
        super().__init__()
        self.backbone = make_backbone(backbone, norm)
        channels, height, width = _feature_map_shape(self.backbone, crop_hw)
        self.pool = SpatialSoftmax(channels, (height, width), num_keypoints)
        self.out_dim = 2 * num_keypoints
        self.out = nn.Linear(self.out_dim, self.out_dim)

    def forward(self, frames: Tensor) -> Tensor:
        return torch.relu(self.out(self.pool(self.backbone(frames)).flatten(start_dim=1)))


def sinusoidal_positions_2d(height: int, width: int, dim: int, temperature: float = 10000.0) -> Tensor:
    """DETR/ACT 2-D positions (height * width, dim): the first half of the channels encodes the row, the second the
    column, each as interleaved sin/cos of the normalised coordinate (scaled to 2*pi) at geometric frequencies."""
    half = dim // 2
    exponents = 2 * (torch.arange(half) // 2) / half
    frequencies = temperature**exponents

    def encode(count: int) -> Tensor:
        coordinate = torch.arange(1, count + 1, dtype=torch.float32) / (count + 1e-6) * 2 * math.pi
        angles = coordinate[:, None] / frequencies
        return torch.where(torch.arange(half) % 2 == 0, angles.sin(), angles.cos())

    rows = encode(height)[:, None, :].expand(height, width, half)
    cols = encode(width)[None, :, :].expand(height, width, dim - half if dim - half == half else half)
    table = torch.cat([rows, cols], dim=-1)
    if table.shape[-1] < dim:  # odd dim: pad one zero channel
        table = F.pad(table, (0, dim - table.shape[-1]))
    return table.reshape(height * width, dim)


class FeatureMapEncoder(nn.Module):
    """ACT's image encoder: backbone feature map projected to `dim_model` by a 1x1 convolution, one token per
    position, with fixed 2-D sinusoidal position embeddings."""

    positions: Tensor

    def __init__(self, backbone: Backbone, norm: Norm, crop_hw: tuple[int, int], dim_model: int):
        super().__init__()
        self.backbone = make_backbone(backbone, norm)
        channels, height, width = _feature_map_shape(self.backbone, crop_hw)
        self.proj = nn.Conv2d(channels, dim_model, 1)
        self.num_tokens = height * width
        self.register_buffer("positions", sinusoidal_positions_2d(height, width, dim_model), persistent=False)

    def forward(self, frames: Tensor) -> Tensor:
        """(N, C, h, w) -> tokens (N, num_tokens, dim_model), positions not added."""
        return self.proj(self.backbone(frames)).flatten(start_dim=2).transpose(1, 2)
